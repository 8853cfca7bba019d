import { describe, expect, it } from 'vitest';
import { Machine, type MachineOptions } from '../../../hw/machine.ts';
import { steIllegal } from '../../../hw/smmu/ste.ts';
import { newLookup } from '../../../hw/smmu/strtab.ts';
import { DEFAULT_FEATURES, type SmmuFeatures } from '../../../hw/smmu/features.ts';
import {
  CFGI_ALL,
  CMDQ_PA,
  DMA_BUF,
  E,
  EVTQ_PA,
  NO_RAM,
  R,
  RAM,
  RECINVSID,
  SMMUEN,
  STE_ABORT,
  STE_BYPASS,
  STE_INVALID,
  STRTAB_PA,
  SYNC_NONE,
  Sw,
  bytes,
  cfgiRange,
  cfgiSte,
  initCmdq,
  initEvtq,
  initStrtab,
  l1std,
  readEvent,
  rig,
  steAddr,
  strtabCfg,
  writeSte,
} from '../helpers.ts';

function setup2(
  opts: MachineOptions & { log2: number; split: number; recinvsid?: boolean; base?: number },
) {
  const m = new Machine(opts);
  const sw = new Sw(m);
  if (opts.recinvsid ?? true) sw.w32(R.CR2, RECINVSID);
  initStrtab(sw, opts.base ?? STRTAB_PA, strtabCfg(opts.log2, 1, opts.split));
  const q = initCmdq(sw, CMDQ_PA, 6);
  initEvtq(sw, EVTQ_PA, 4);
  sw.cr0(sw.r32(R.CR0) | SMMUEN);
  const dev = (sid: number) => m.deviceBySid(sid) ?? m.addDevice({ name: `s${sid}`, sid });
  return { m, sw, q, dev };
}

const events = (m: Machine) => m.smmu.evtq.log.map((e) => [e.type, e.sid]);

describe('SMMUEN=0: GBPA decides (reference §2.1 step 1)', () => {
  it('GBPA.ABORT=0 (reset 0x1000): DMA bypasses, data lands at PA = IOVA', () => {
    const m = new Machine({ devices: [{ name: 'dev', sid: 5 }] });
    const dev = m.devices.get('dev')!;
    expect(dev.write(DMA_BUF + 0x10, bytes(0xde, 0xad))).toMatchObject({
      ok: true,
      pa: DMA_BUF + 0x10,
    });
    expect(m.mem.read16(DMA_BUF + 0x10)).toBe(0xadde);
  });

  it('GBPA.ABORT=1: every transaction aborts and no event is recorded', () => {
    const m = new Machine({ devices: [{ name: 'dev', sid: 5 }] });
    const sw = new Sw(m);
    initEvtq(sw, EVTQ_PA, 4);
    sw.w32(R.GBPA, 0x8010_0000);
    const dev = m.devices.get('dev')!;
    expect(dev.write(DMA_BUF, bytes(1)).ok).toBe(false);
    expect(dev.read(DMA_BUF, 1).ok).toBe(false);
    expect(m.mem.read8(DMA_BUF)).toBe(0);
    expect(sw.r32(R.EVENTQ_PROD)).toBe(0);
    expect(m.smmu.evtq.log).toHaveLength(0);
    // clearing ABORT (with Update) lets traffic through again
    sw.w32(R.GBPA, 0x8000_1000);
    expect(dev.read(DMA_BUF, 1).ok).toBe(true);
  });

  it('GBPA.ABORT=1 as the reset value', () => {
    const m = new Machine({ devices: [{ name: 'dev', sid: 5 }], smmu: { gbpaReset: 0x10_0000 } });
    expect(m.devices.get('dev')!.read(DMA_BUF, 1).ok).toBe(false);
  });

  it('with SMMUEN=1 GBPA.ABORT is not used: the STE decides', () => {
    const { m, sw } = rig();
    sw.w32(R.GBPA, 0x8010_0000);
    writeSte(m, steAddr(5), [STE_BYPASS]);
    expect(m.devices.get('dev')!.read(DMA_BUF, 1).ok).toBe(true);
  });
});

describe('linear stream table', () => {
  it('a bypass STE (V=1, Config=0b100) passes DMA; data lands at PA = IOVA, across pages', () => {
    const { m } = rig();
    writeSte(m, steAddr(5), [STE_BYPASS]);
    const dev = m.devices.get('dev')!;
    const data = new Uint8Array(6000).map((_, i) => (i * 13) & 0xff);
    expect(dev.write(DMA_BUF + 0xf00, data)).toMatchObject({ ok: true, pa: DMA_BUF + 0xf00 });
    expect(m.mem.readBytes(DMA_BUF + 0xf00, 6000)).toEqual(data);
    const r = dev.read(DMA_BUF + 0xf00, 6000);
    expect(r.ok && r.data).toEqual(data);
    expect(m.smmu.evtq.log).toHaveLength(0);
  });

  it('a bypassed DMA to a PA with no RAM is a completer abort, not an SMMU event', () => {
    const { m, sw } = rig();
    writeSte(m, steAddr(5), [STE_BYPASS]);
    const r = m.devices.get('dev')!.write(NO_RAM, bytes(1, 2, 3));
    expect(r.ok).toBe(false);
    expect(r.ok ? undefined : r.event).toBeUndefined();
    expect(sw.r32(R.EVENTQ_PROD)).toBe(0);
  });

  it('STE address = base + SID x 64', () => {
    const { m } = rig();
    const d = m.addDevice({ name: 'd200', sid: 200 });
    writeSte(m, STRTAB_PA + 200 * 64, [STE_BYPASS]);
    expect(d.read(DMA_BUF, 4).ok).toBe(true);
    expect(m.devices.get('dev')!.read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STE' });
  });

  it('Config=0b000 aborts silently (no event); reserved 0b001..0b011 behave the same', () => {
    const { m, sw, q } = rig();
    const dev = m.devices.get('dev')!;
    for (const config of [0, 1, 2, 3]) {
      writeSte(m, steAddr(5), [1n | (BigInt(config) << 1n)]);
      q.submit(cfgiSte(5, 1), SYNC_NONE);
      const r = dev.write(DMA_BUF, bytes(9));
      expect(r.ok).toBe(false);
      expect(r.ok ? '' : r.event).toBeUndefined();
    }
    expect(m.mem.read8(DMA_BUF)).toBe(0);
    expect(sw.r32(R.EVENTQ_PROD)).toBe(0);
  });

  it('V=0 gives C_BAD_STE and an abort', () => {
    const { m, sw } = rig();
    const dev = m.devices.get('dev')!;
    writeSte(m, steAddr(5), [STE_INVALID | 0x8n]); // Config=bypass but V=0
    expect(dev.write(DMA_BUF, bytes(9))).toMatchObject({ ok: false, event: 'C_BAD_STE' });
    expect(m.mem.read8(DMA_BUF)).toBe(0);
    expect(sw.r32(R.EVENTQ_PROD)).toBe(1);
    expect(readEvent(m, EVTQ_PA, 0)).toEqual([(5n << 32n) | BigInt(E.C_BAD_STE), 0n, 0n, 0n]);
  });

  it('a SubstreamID with stage 1 disabled (bypass) gives C_BAD_SUBSTREAMID', () => {
    const { m } = rig();
    writeSte(m, steAddr(5), [STE_BYPASS]);
    expect(m.devices.get('dev')!.read(DMA_BUF, 4, { ssid: 3 })).toMatchObject({
      ok: false,
      event: 'C_BAD_SUBSTREAMID',
    });
    expect(readEvent(m, EVTQ_PA, 0)[0]).toBe(
      (5n << 32n) | (3n << 12n) | (1n << 11n) | BigInt(E.C_BAD_SUBSTREAMID),
    );
  });

  it('SID >= 2^LOG2SIZE: C_BAD_STREAMID recorded only with CR2.RECINVSID=1', () => {
    const quiet = rig({ strtabLog2: 4 });
    const d = quiet.m.addDevice({ name: 'd16', sid: 16 });
    writeSte(quiet.m, steAddr(16), [STE_BYPASS]); // beyond the table: never read
    expect(d.read(DMA_BUF, 4).ok).toBe(false);
    expect(quiet.sw.r32(R.EVENTQ_PROD)).toBe(0);
    const loud = rig({ strtabLog2: 4, cr2: RECINVSID });
    const d2 = loud.m.addDevice({ name: 'd16', sid: 16 });
    const d15 = loud.m.addDevice({ name: 'd15', sid: 15 });
    writeSte(loud.m, steAddr(15), [STE_BYPASS]);
    expect(d15.read(DMA_BUF, 4).ok).toBe(true);
    expect(d2.read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STREAMID' });
    expect(readEvent(loud.m, EVTQ_PA, 0)).toEqual([
      (16n << 32n) | BigInt(E.C_BAD_STREAMID),
      0n,
      0n,
      0n,
    ]);
  });

  it('the effective LOG2SIZE is MIN(LOG2SIZE, IDR1.SIDSIZE)', () => {
    const { m } = rig({ strtabLog2: 8, cr2: RECINVSID, smmu: { features: { sidSize: 3 } } });
    const d7 = m.addDevice({ name: 'd7', sid: 7 });
    const d8 = m.addDevice({ name: 'd8', sid: 8 });
    writeSte(m, steAddr(7), [STE_BYPASS]);
    writeSte(m, steAddr(8), [STE_BYPASS]);
    expect(d7.read(DMA_BUF, 4).ok).toBe(true);
    expect(d8.read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STREAMID' });
  });

  it('a table outside RAM: F_STE_FETCH with FetchAddr = the STE address', () => {
    const m = new Machine({ devices: [{ name: 'dev', sid: 5 }] });
    const sw = new Sw(m);
    initStrtab(sw, NO_RAM, strtabCfg(8));
    initEvtq(sw, EVTQ_PA, 4);
    sw.cr0(sw.r32(R.CR0) | SMMUEN);
    expect(m.devices.get('dev')!.read(DMA_BUF + 0x123, 4)).toMatchObject({
      ok: false,
      event: 'F_STE_FETCH',
    });
    const ev = readEvent(m, EVTQ_PA, 0);
    expect(ev[0]).toBe((5n << 32n) | BigInt(E.F_STE_FETCH));
    expect(ev[3]).toBe(BigInt(NO_RAM + 5 * 64)); // FetchAddr[55:3] in DW3
    // a failed fetch is not cached
    expect(m.smmu.strtab.cachedStes).toBe(0);
  });

  it('an out-of-range SID is reported before any fetch (C_BAD_STREAMID has priority over F_STE_FETCH)', () => {
    const m = new Machine({ devices: [{ name: 'dev', sid: 300 }] });
    const sw = new Sw(m);
    sw.w32(R.CR2, RECINVSID);
    initStrtab(sw, NO_RAM, strtabCfg(8));
    initEvtq(sw, EVTQ_PA, 4);
    sw.cr0(sw.r32(R.CR0) | SMMUEN);
    expect(m.devices.get('dev')!.read(DMA_BUF, 4)).toMatchObject({
      ok: false,
      event: 'C_BAD_STREAMID',
    });
  });

  it('the base is aligned to the table size (LOG2SIZE=4: 16 STEs = 1 KiB)', () => {
    const m = new Machine({ devices: [{ name: 'dev', sid: 5 }] });
    const sw = new Sw(m);
    initStrtab(sw, STRTAB_PA + 0x40, strtabCfg(4));
    expect(sw.r64(R.STRTAB_BASE)).toBe(BigInt(STRTAB_PA + 0x40));
    initEvtq(sw, EVTQ_PA, 4);
    sw.cr0(sw.r32(R.CR0) | SMMUEN);
    writeSte(m, STRTAB_PA + 5 * 64, [STE_BYPASS]);
    writeSte(m, STRTAB_PA + 0x40 + 5 * 64, [STE_ABORT]);
    expect(m.devices.get('dev')!.read(DMA_BUF, 4).ok).toBe(true);
  });

  it('STRTAB_BASE_CFG.FMT reserved values behave as linear', () => {
    const m = new Machine({ devices: [{ name: 'dev', sid: 5 }] });
    const sw = new Sw(m);
    initStrtab(sw, STRTAB_PA, strtabCfg(8, 2, 6));
    sw.cr0(SMMUEN);
    writeSte(m, steAddr(5), [STE_BYPASS]);
    expect(m.devices.get('dev')!.read(DMA_BUF, 4).ok).toBe(true);
  });

  it('with caching off every transaction re-reads the STE', () => {
    const { m } = rig({ smmu: { caching: false } });
    const dev = m.devices.get('dev')!;
    writeSte(m, steAddr(5), [STE_BYPASS]);
    expect(dev.read(DMA_BUF, 4).ok).toBe(true);
    writeSte(m, steAddr(5), [STE_ABORT]);
    expect(dev.read(DMA_BUF, 4).ok).toBe(false);
  });

  it('the configuration cache is not filled while SMMUEN=0', () => {
    const { m, sw } = rig({ smmuen: false });
    writeSte(m, steAddr(5), [STE_BYPASS]);
    const lk = m.smmu.strtab.lookup(5, newLookup());
    expect(lk.ste?.config).toBe(4);
    expect(m.smmu.strtab.cachedStes).toBe(0);
    sw.cr0(sw.r32(R.CR0) | SMMUEN);
    writeSte(m, steAddr(5), [STE_ABORT]);
    expect(m.devices.get('dev')!.read(DMA_BUF, 4).ok).toBe(false);
  });
});

describe('2-level stream table (reference §2.1 step 4, L1STD)', () => {
  const L2A = RAM + 0x40_0000;
  const L2B = RAM + 0x41_0000;

  it('the Linux layout: SPLIT=8, LOG2SIZE=16, L1[0] = L2 | Span 9 (256 STEs)', () => {
    const { m, dev } = setup2({ log2: 16, split: 8 });
    m.mem.write64(STRTAB_PA, l1std(L2A, 9));
    for (let i = 0; i < 256; i++) writeSte(m, L2A + 64 * i, [STE_ABORT]);
    writeSte(m, L2A + 64 * 8, [STE_BYPASS]);
    writeSte(m, L2A + 64 * 0x10, [STE_BYPASS]);
    expect(dev(8).read(DMA_BUF, 4).ok).toBe(true);
    expect(dev(0x10).read(DMA_BUF, 4).ok).toBe(true);
    expect(dev(9).read(DMA_BUF, 4).ok).toBe(false);
    expect(dev(255).read(DMA_BUF, 4).ok).toBe(false);
    expect(m.smmu.evtq.log).toHaveLength(0); // abort STEs are silent
    // L1[1] is zero (Span=0): SIDs 256..511 are invalid
    expect(dev(0x100).read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STREAMID' });
    // L1[0xff] at base + 0xff*8 selects SIDs 0xff00..0xffff
    m.mem.write64(STRTAB_PA + 0xff * 8, l1std(L2B, 9));
    writeSte(m, L2B + 64 * 0x34, [STE_BYPASS]);
    expect(dev(0xff34).read(DMA_BUF, 4).ok).toBe(true);
    expect(dev(0x10000).read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STREAMID' });
    expect(events(m)).toEqual([
      ['C_BAD_STREAMID', 0x100],
      ['C_BAD_STREAMID', 0x10000],
    ]);
  });

  it('Span=0 and reserved Span values (12..31) make the L1 range invalid', () => {
    const { m, q, dev } = setup2({ log2: 12, split: 10 });
    for (const span of [0, 12, 31]) {
      m.mem.write64(STRTAB_PA, l1std(L2A, span));
      writeSte(m, L2A, [STE_BYPASS]);
      q.submit(CFGI_ALL, SYNC_NONE);
      expect([span, dev(0).read(DMA_BUF, 4)]).toMatchObject([
        span,
        { ok: false, event: 'C_BAD_STREAMID' },
      ]);
    }
    m.mem.write64(STRTAB_PA, l1std(L2A, 11));
    q.submit(CFGI_ALL, SYNC_NONE);
    expect(dev(0).read(DMA_BUF, 4).ok).toBe(true);
  });

  it('Span > SPLIT+1 is invalid', () => {
    const { m, q, dev } = setup2({ log2: 8, split: 6 });
    writeSte(m, L2A, [STE_BYPASS]);
    m.mem.write64(STRTAB_PA, l1std(L2A, 8));
    expect(dev(0).read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STREAMID' });
    m.mem.write64(STRTAB_PA, l1std(L2A, 7));
    q.submit(CFGI_ALL, SYNC_NONE);
    expect(dev(0).read(DMA_BUF, 4).ok).toBe(true);
  });

  it('an L2 index >= 2^(Span-1) is invalid (spec; QEMU differs)', () => {
    const { m, dev } = setup2({ log2: 8, split: 6 });
    m.mem.write64(STRTAB_PA, l1std(L2A, 2)); // 2 STEs
    writeSte(m, L2A, [STE_BYPASS]);
    writeSte(m, L2A + 64, [STE_BYPASS]);
    writeSte(m, L2A + 128, [STE_BYPASS]);
    expect(dev(0).read(DMA_BUF, 4).ok).toBe(true);
    expect(dev(1).read(DMA_BUF, 4).ok).toBe(true);
    expect(dev(2).read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STREAMID' });
    expect(dev(63).read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STREAMID' });
    // SID 64 is in L1[1]
    m.mem.write64(STRTAB_PA + 8, l1std(L2B, 1)); // 1 STE
    writeSte(m, L2B, [STE_BYPASS]);
    expect(dev(64).read(DMA_BUF, 4).ok).toBe(true);
    expect(dev(65).read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STREAMID' });
  });

  it('invalid L1 ranges are not recorded without CR2.RECINVSID', () => {
    const { m, sw, dev } = setup2({ log2: 8, split: 6, recinvsid: false });
    expect(dev(0).read(DMA_BUF, 4).ok).toBe(false);
    expect(sw.r32(R.EVENTQ_PROD)).toBe(0);
    expect(m.smmu.evtq.log).toHaveLength(0);
  });

  it('L2Ptr is aligned to the L2 array size; bit 5 of the L1STD is ignored', () => {
    const { m, dev } = setup2({ log2: 8, split: 6 });
    // Span=3: 4 STEs = 256 bytes; L2Ptr = L2A + 0x40 is treated as L2A
    m.mem.write64(STRTAB_PA, l1std(L2A + 0x40, 3) | 0x20n);
    writeSte(m, L2A + 64, [STE_BYPASS]);
    writeSte(m, L2A + 0x40 + 64, [STE_ABORT]);
    expect(dev(1).read(DMA_BUF, 4).ok).toBe(true);
  });

  it('with LOG2SIZE <= SPLIT there is one L1STD', () => {
    const { m, dev } = setup2({ log2: 5, split: 8 });
    m.mem.write64(STRTAB_PA, l1std(L2A, 6));
    writeSte(m, L2A + 31 * 64, [STE_BYPASS]);
    expect(dev(31).read(DMA_BUF, 4).ok).toBe(true);
    expect(dev(32).read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STREAMID' });
  });

  it('SPLIT values other than 6, 8, 10 behave as 6', () => {
    const { m, dev } = setup2({ log2: 8, split: 7 });
    m.mem.write64(STRTAB_PA + 8, l1std(L2A, 7)); // L1[1] covers SIDs 64..127 with SPLIT=6
    writeSte(m, L2A + 64 * 3, [STE_BYPASS]);
    expect(dev(67).read(DMA_BUF, 4).ok).toBe(true);
  });

  it('an L1 table outside RAM: F_STE_FETCH with FetchAddr = the L1STD address', () => {
    const { m, dev } = setup2({ log2: 16, split: 8, base: NO_RAM });
    expect(dev(0x305).read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'F_STE_FETCH' });
    const ev = readEvent(m, EVTQ_PA, 0);
    expect(ev[0]).toBe((0x305n << 32n) | BigInt(E.F_STE_FETCH));
    expect(ev[3]).toBe(BigInt(NO_RAM + 3 * 8));
  });

  it('an L2 table outside RAM: F_STE_FETCH with FetchAddr = the STE address', () => {
    const { m, dev } = setup2({ log2: 16, split: 8 });
    m.mem.write64(STRTAB_PA + 8, l1std(NO_RAM, 9));
    expect(dev(0x107).read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'F_STE_FETCH' });
    expect(readEvent(m, EVTQ_PA, 0)[3]).toBe(BigInt(NO_RAM + 7 * 64));
  });

  it('CFGI_STE Leaf=1 leaves a cached L1STD in place; Leaf=0 drops it', () => {
    const { m, q, dev } = setup2({ log2: 8, split: 6 });
    m.mem.write64(STRTAB_PA, l1std(L2A, 7));
    writeSte(m, L2A + 64 * 5, [STE_BYPASS]);
    writeSte(m, L2B + 64 * 5, [STE_ABORT]);
    expect(dev(5).read(DMA_BUF, 4).ok).toBe(true);
    // repoint the L1STD at table B
    m.mem.write64(STRTAB_PA, l1std(L2B, 7));
    expect(dev(5).read(DMA_BUF, 4).ok).toBe(true); // cached STE
    q.submit(cfgiSte(5, 1), SYNC_NONE);
    expect(dev(5).read(DMA_BUF, 4).ok).toBe(true); // STE re-read through the cached L1STD: table A
    q.submit(cfgiSte(5, 0), SYNC_NONE);
    expect(dev(5).read(DMA_BUF, 4).ok).toBe(false); // L1STD re-read: table B, abort STE
    expect(m.smmu.evtq.log).toHaveLength(0);
  });

  it('CFGI_STE_RANGE drops the L1STDs of the SIDs it covers', () => {
    const { m, q, dev } = setup2({ log2: 8, split: 6 });
    m.mem.write64(STRTAB_PA + 8, l1std(L2A, 7)); // SIDs 64..127
    writeSte(m, L2A + 64 * 2, [STE_BYPASS]);
    writeSte(m, L2B + 64 * 2, [STE_ABORT]);
    expect(dev(66).read(DMA_BUF, 4).ok).toBe(true);
    m.mem.write64(STRTAB_PA + 8, l1std(L2B, 7));
    // a range that covers SIDs 0..63 only: L1[1] stays cached
    q.submit(cfgiRange(0, 5), cfgiSte(66, 1), SYNC_NONE);
    expect(dev(66).read(DMA_BUF, 4).ok).toBe(true);
    // SIDs 64..127 (Range=5 at SID 66)
    q.submit(cfgiRange(66, 5), SYNC_NONE);
    expect(dev(66).read(DMA_BUF, 4).ok).toBe(false);
  });

  it('CFGI_ALL drops cached L1STDs', () => {
    const { m, q, dev } = setup2({ log2: 8, split: 6 });
    m.mem.write64(STRTAB_PA, l1std(L2A, 7));
    writeSte(m, L2A, [STE_BYPASS]);
    expect(dev(0).read(DMA_BUF, 4).ok).toBe(true);
    m.mem.write64(STRTAB_PA, 0n);
    q.submit(CFGI_ALL, SYNC_NONE);
    expect(dev(0).read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STREAMID' });
  });

  it('the L1 table base is aligned to the L1 table size (LOG2SIZE=16, SPLIT=8: 256 x 8 B = 2 KiB)', () => {
    const { m, sw, dev } = setup2({ log2: 16, split: 8, base: STRTAB_PA + 0x440 });
    expect(sw.r64(R.STRTAB_BASE)).toBe(BigInt(STRTAB_PA + 0x440));
    m.mem.write64(STRTAB_PA + 8, l1std(L2A, 9));
    writeSte(m, L2A + 64 * 3, [STE_BYPASS]);
    expect(dev(0x103).read(DMA_BUF, 4).ok).toBe(true);
  });

  it('2-level FMT without IDR0.ST_LEVEL support falls back to linear', () => {
    const { m, dev } = setup2({ log2: 8, split: 6, smmu: { features: { twoLevelStrtab: false } } });
    writeSte(m, STRTAB_PA + 64 * 3, [STE_BYPASS]);
    expect(dev(3).read(DMA_BUF, 4).ok).toBe(true);
  });
});

describe('ILLEGAL STEs give C_BAD_STE (reference §2.4)', () => {
  // A legal stage-2 STE: Config=0b110, S2T0SZ=25 (IAS 39), S2SL0=1 (4 KB, start L1), S2PS=5, S2AA64=1, S2TTB aligned
  const S2_DW2 = (25n << 32n) | (1n << 38n) | (5n << 48n) | (1n << 51n);
  const S2_TTB = BigInt(RAM + 0x30_0000);
  const s2 = (dw1 = 0n, dw2 = S2_DW2, dw3 = S2_TTB, dw0 = 0xdn): bigint[] => [dw0, dw1, dw2, dw3];
  // A legal stage-1 STE: Config=0b101, S1ContextPtr in RAM
  const S1_PTR = BigInt(RAM + 0x31_0000);
  const s1 = (dw1 = 0n, dw0extra = 0n): bigint[] => [0xbn | S1_PTR | dw0extra, dw1, 0n, 0n];

  const toWords = (d: bigint[]) => {
    const w = new Uint32Array(16);
    d.forEach((v, i) => {
      w[2 * i] = Number(v & 0xffffffffn);
      w[2 * i + 1] = Number(v >> 32n);
    });
    return w;
  };
  const legal = (d: bigint[], f: Partial<SmmuFeatures> = {}) =>
    steIllegal(toWords(d), { features: { ...DEFAULT_FEATURES, ...f } });

  it('the base stage-1 and stage-2 STEs used below are legal', () => {
    expect(legal(s2())).toBeNull();
    expect(legal(s1())).toBeNull();
    expect(legal(s2(0n, (25n << 32n) | (0n << 38n) | (5n << 48n) | (1n << 51n)))).not.toBeNull();
    expect(legal([STE_BYPASS])).toBeNull();
    expect(legal([STE_ABORT])).toBeNull();
    expect(legal([STE_INVALID])).toBe('V=0');
  });

  const cases: Array<[string, bigint[], Partial<SmmuFeatures>]> = [
    ['EATS=0b10 with Config=0b101', s1(2n << 28n), {}],
    ['EATS=0b10 with Config=0b110', s2(2n << 28n), {}],
    [
      'EATS=0b01 with Config=0b110 and S2S=1',
      s2(1n << 28n, S2_DW2 | (1n << 57n)),
      { stallModel: 0 },
    ],
    ['STRW=0b01 with Config=0b101', s1(1n << 30n), {}],
    ['STRW=0b11 with Config=0b101', s1(3n << 30n), {}],
    ['Config=0b101 with S1P=0', s1(), { s1p: false }],
    ['Config=0b110 with S2P=0', s2(), { s2p: false }],
    ['Config=0b111 with S2P=0', [0xfn | S1_PTR, 0n, S2_DW2, S2_TTB], { s2p: false }],
    ['S1STALLD=1 with STALL_MODEL=0b01', s1(1n << 27n), { stallModel: 1 }],
    ['S1CDMax > IDR1.SSIDSIZE', s1(0n, 17n << 59n), { ssidSize: 16 }],
    [
      'S1Fmt=2-level with S1CDMax != 0 and CD2L=0',
      s1(0n, (4n << 59n) | (1n << 4n)),
      { cd2l: false },
    ],
    ['S1ContextPtr beyond the OAS', [0xbn | (1n << 48n), 0n, 0n, 0n], { oas: 48 }],
    ['S2S=1 with STALL_MODEL=0b01', s2(0n, S2_DW2 | (1n << 57n)), { stallModel: 1 }],
    ['S2S=0 with STALL_MODEL=0b10', s2(), { stallModel: 2 }],
    ['S2AA64=0 without AArch32 tables', s2(0n, S2_DW2 & ~(1n << 51n)), { ttf: 2 }],
    ['S2AA64=1 without AArch64 tables', s2(), { ttf: 1 }],
    ['S2HA=1 with HTTU=0', s2(0n, S2_DW2 | (1n << 56n)), { httu: 0 }],
    ['S2HD=1 with HTTU=0b01', s2(0n, S2_DW2 | (1n << 56n) | (1n << 55n)), { httu: 1 }],
    ['S2TG=0b11 (reserved)', s2(0n, S2_DW2 | (3n << 46n)), {}],
    [
      'S2TG=64 KB not supported',
      s2(0n, (25n << 32n) | (1n << 38n) | (1n << 46n) | (5n << 48n) | (1n << 51n)),
      { gran64k: false },
    ],
    ['S2T0SZ=40 (> 39 without STT)', s2(0n, (40n << 32n) | (5n << 48n) | (1n << 51n)), {}],
    ['S2T0SZ=15 (< 16)', s2(0n, (15n << 32n) | (2n << 38n) | (5n << 48n) | (1n << 51n)), {}],
    [
      'S2SL0/S2TG/S2T0SZ inconsistent (4 KB, start L2, IAS 39)',
      s2(0n, (25n << 32n) | (5n << 48n) | (1n << 51n)),
      {},
    ],
    [
      'S2SL0=3 with 4 KB and no TTST',
      s2(0n, (25n << 32n) | (3n << 38n) | (5n << 48n) | (1n << 51n)),
      {},
    ],
    ['S2ENDI=1 on a little-endian-only SMMU', s2(0n, S2_DW2 | (1n << 52n)), { ttendian: 2 }],
    ['S2ENDI=0 on a big-endian-only SMMU', s2(), { ttendian: 3 }],
    [
      'S2TTB outside the effective S2PS (32 bits)',
      s2(0n, (25n << 32n) | (1n << 38n) | (1n << 51n), 1n << 32n),
      {},
    ],
    ['S2VMID[15:8] != 0 without VMID16', s2(0n, S2_DW2 | 0x100n), { vmid16: false }],
    [
      'S2VMID[15:8] != 0 without VMID16, stage 1 only (NS-EL1, S2P=1)',
      s1(0n).map((d, i) => (i === 2 ? 0x100n : d)),
      { vmid16: false },
    ],
  ];

  it.each(cases)('%s', (_name, ste, features) => {
    expect(legal(ste, features)).not.toBeNull();
    const { m, sw } = rig({ smmu: { features } });
    writeSte(m, steAddr(5), ste);
    expect(m.devices.get('dev')!.read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STE' });
    expect(sw.r32(R.EVENTQ_PROD)).toBe(1);
    expect(readEvent(m, EVTQ_PA, 0)[0]).toBe((5n << 32n) | BigInt(E.C_BAD_STE));
  });

  it('S2 fields are IGNORED for a bypass STE; EATS is not checked for bypass', () => {
    const { m } = rig();
    writeSte(m, steAddr(5), [STE_BYPASS, 2n << 28n, 3n << 46n, 0n]);
    expect(m.devices.get('dev')!.read(DMA_BUF, 4).ok).toBe(true);
  });

  it('S2VMID[15:8] is not checked for a bypass STE', () => {
    const { m } = rig({ smmu: { features: { vmid16: false } } });
    writeSte(m, steAddr(5), [STE_BYPASS, 0n, 0xff00n]);
    expect(m.devices.get('dev')!.read(DMA_BUF, 4).ok).toBe(true);
  });

  it('RES0 bits: C_BAD_STE only when the implementation checks them (features.checkRes0)', () => {
    const ste = [STE_BYPASS | (1n << 57n)]; // DW0[58:56] is RES0
    const off = rig();
    writeSte(off.m, steAddr(5), ste);
    expect(off.m.devices.get('dev')!.read(DMA_BUF, 4).ok).toBe(true);
    const on = rig({ smmu: { features: { checkRes0: true } } });
    writeSte(on.m, steAddr(5), ste);
    expect(on.m.devices.get('dev')!.read(DMA_BUF, 4)).toMatchObject({
      ok: false,
      event: 'C_BAD_STE',
    });
  });
});
