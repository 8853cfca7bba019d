import { describe, expect, it } from 'vitest';
import { Machine } from '../../../hw/machine.ts';
import type { SmmuFeatures } from '../../../hw/smmu/features.ts';
import {
  decodeCommand,
  encodeCommand,
  opcodeByName,
  opcodeName,
  OPCODES,
} from '../../../hw/smmu/commands.ts';
import {
  CERROR_ILL,
  CFGI_ALL,
  CMDQ_PA,
  DMA_BUF,
  LINUX_SYNC,
  MSI_PA,
  OPC,
  R,
  RAM,
  SYNC_NONE,
  Sw,
  bytes,
  cfgiRange,
  cfgiSte,
  cmd,
  initCmdq,
  rig,
  steAddr,
  STE_BYPASS,
  STE_INVALID,
  STE_ABORT,
  sync,
  writeSte,
  type Cmd,
} from '../helpers.ts';

/** Run one command on a fresh SMMU; report CMDQ_CONS and GERROR as software reads them. */
function runOne(
  c: Cmd,
  features: Partial<SmmuFeatures> = {},
): { cons: number; gerror: number; m: Machine } {
  const m = new Machine({ smmu: { features } });
  const sw = new Sw(m);
  const q = initCmdq(sw, CMDQ_PA, 4);
  const cons = q.submit(c);
  return { cons, gerror: sw.r32(R.GERROR), m };
}
const ILLEGAL = ((CERROR_ILL << 24) | 0) >>> 0; // CONS.ERR=CERROR_ILL, RD still at the command
function expectAccepted(c: Cmd, features: Partial<SmmuFeatures> = {}): Machine {
  const r = runOne(c, features);
  expect({ cons: r.cons, gerror: r.gerror }).toEqual({ cons: 1, gerror: 0 });
  return r.m;
}
function expectIllegal(c: Cmd, features: Partial<SmmuFeatures> = {}): void {
  const r = runOne(c, features);
  expect({ cons: r.cons, gerror: r.gerror }).toEqual({ cons: ILLEGAL, gerror: 1 });
}

/** Opcodes a default SMMU (S1+S2, HYP, ATS, no PRI, no MPAM, STALL_MODEL=0b01, no DPT, NS queue) accepts. */
const ACCEPTED_BY_DEFAULT = [
  0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x22, 0x23, 0x28, 0x2a,
  0x30, 0x40, 0x46,
];

describe('opcode table (reference §4.2)', () => {
  it('every opcode 0x00..0xFF: the listed ones are accepted, every other one is CERROR_ILL', () => {
    const accepted: number[] = [];
    const m = new Machine();
    const sw = new Sw(m);
    const q = initCmdq(sw, CMDQ_PA, 4);
    for (let op = 0; op < 256; op++) {
      const before = q.prod;
      const cons = q.submit(cmd(op));
      if (sw.gerrorActive() === 0) {
        expect(cons).toBe(q.prod);
        accepted.push(op);
      } else {
        expect(cons).toBe(((CERROR_ILL << 24) | before) >>> 0);
        // Linux's recovery: replace the bad command with a CMD_SYNC and acknowledge
        m.mem.write64(q.slotAddr(before), 0x46n);
        sw.ackGerror();
        expect(sw.r32(R.CMDQ_CONS)).toBe(q.prod);
      }
    }
    expect(accepted).toEqual(ACCEPTED_BY_DEFAULT);
  });

  it('the declared opcode table matches the reference opcode numbers', () => {
    const table = Object.fromEntries(OPCODES.map((d) => [d.name, d.op]));
    expect(table).toEqual({ ...OPC });
    expect(opcodeByName('CFGI_ALL')?.op).toBe(0x04);
    expect(opcodeByName('cmd_sync')?.op).toBe(0x46);
    expect(opcodeName(0x46)).toBe('CMD_SYNC');
    expect(opcodeName(0x47)).toBe('RESERVED(0x47)');
  });

  it('accepted commands are counted per opcode', () => {
    const m = expectAccepted(cmd(OPC.TLBI_NH_ALL));
    expect(m.smmu.cmdq.stats.perOpcode[0x10]).toBe(1);
    expect(m.smmu.cmdq.stats.consumed).toBe(1);
  });
});

describe('the Linux command words (linux-sequence.md §3) decode as stated and are accepted', () => {
  const linux: Array<[string, Cmd, Record<string, number | bigint>]> = [
    ['CFGI_STE_RANGE', [0x0000000000000004n, 0x000000000000001fn], { StreamID: 0, Range: 31 }],
    ['TLBI_NSNH_ALL', [0x0000000000000030n, 0n], {}],
    ['TLBI_NH_ASID', [0x0001000000000011n, 0n], { ASID: 1, VMID: 0 }],
    ['CFGI_CD', [0x0000000800000005n, 0x1n], { StreamID: 8, SubstreamID: 0, Leaf: 1 }],
    ['CFGI_STE', [0x0000000800000003n, 0x1n], { StreamID: 8, Leaf: 1 }],
    ['PREFETCH_CONFIG', [0x0000000800000001n, 0n], { StreamID: 8 }],
    [
      'TLBI_NH_VA',
      [0x0001000000000012n, 0x00000000ffffd701n],
      { ASID: 1, NUM: 0, SCALE: 0, Address: 0xffffd, TG: 1, TTL: 3, Leaf: 1 },
    ],
    [
      'TLBI_NH_VA',
      [0x0002000000100012n, 0x00000000fffee701n],
      { ASID: 2, NUM: 0, SCALE: 1, Address: 0xfffee, TG: 1, TTL: 3, Leaf: 1 },
    ],
    ['CMD_SYNC', LINUX_SYNC, { CS: 2, MSH: 3, MSIAttr: 0xf, MSIData: 0, MSIAddress: 0n }],
  ];
  const toWords = (c: Cmd) =>
    new Uint32Array([
      Number(c[0] & 0xffffffffn),
      Number(c[0] >> 32n),
      Number(c[1] & 0xffffffffn),
      Number(c[1] >> 32n),
    ]);

  it.each(linux)('%s %s', (name, c, fields) => {
    const d = decodeCommand(toWords(c));
    expect(d.name).toBe(name);
    expect(d.fields).toMatchObject(fields);
    expect(d.res0Set).toEqual([0, 0, 0, 0]);
    // accepted with the QEMU feature set Linux ran on, and with RES0 checking on
    expectAccepted(c, {
      hyp: false,
      ats: false,
      msi: false,
      sev: false,
      ssidSize: 0,
      cd2l: false,
      archMinor: 1,
    });
    expectAccepted(c, { checkRes0: true });
  });

  it('CMD_SYNC 0x0fc02046 is CS=SEV: it counts one SEV', () => {
    const m = expectAccepted(LINUX_SYNC);
    expect(m.smmu.sevs).toBe(1);
    expect(m.smmu.cmdq.stats.syncs).toBe(1);
  });

  it('encodeCommand produces the Linux words', () => {
    expect(Array.from(encodeCommand('CMD_SYNC', { CS: 2, MSH: 3, MSIAttr: 0xf }))).toEqual([
      0x0fc02046, 0, 0, 0,
    ]);
    expect(Array.from(encodeCommand('CFGI_ALL'))).toEqual([0x4, 0, 0x1f, 0]);
    expect(
      Array.from(
        encodeCommand('TLBI_NH_VA', {
          asid: 2,
          scale: 1,
          address: 0xfffee,
          tg: 1,
          ttl: 3,
          leaf: 1,
        }),
      ),
    ).toEqual([0x00100012, 0x00020000, 0xfffee701, 0]);
    expect(Array.from(encodeCommand('CFGI_STE', { StreamID: 8, Leaf: 1 }))).toEqual([3, 8, 1, 0]);
    expect(() => encodeCommand('CFGI_STE', { ASID: 1 })).toThrow();
    expect(() => encodeCommand('NOPE')).toThrow();
  });

  it('the whole Linux boot command stream is consumed in batches with one PROD write each', () => {
    const m = new Machine({
      smmu: { features: { hyp: false, ats: false, msi: false, sev: false } },
    });
    const sw = new Sw(m);
    // 2^16 entries x 16 B = 1 MiB, so the base must be 1 MiB aligned
    const q = initCmdq(sw, RAM + 0x0100_0000, 16);
    expect(q.submit(CFGI_ALL, LINUX_SYNC)).toBe(2);
    expect(q.submit(cmd(OPC.TLBI_NSNH_ALL), LINUX_SYNC)).toBe(4);
    expect(m.smmu.tlbiCounts[0x30]).toBe(1);
    expect(m.smmu.sevs).toBe(0); // IDR0.SEV=0: CS=SEV behaves as SIG_NONE
  });
});

describe('CERROR_ILL for illegal encodings (reference §4.6)', () => {
  it.each([0x00, 0x08, 0x0f, 0x14, 0x24, 0x31, 0x47, 0x80, 0x8f, 0xff])(
    'reserved opcode 0x%s',
    (op) => {
      expectIllegal(cmd(op));
    },
  );

  it.each([
    ['CFGI_STE', OPC.CFGI_STE],
    ['CFGI_STE_RANGE', OPC.CFGI_STE_RANGE],
    ['CFGI_CD', OPC.CFGI_CD],
    ['CFGI_CD_ALL', OPC.CFGI_CD_ALL],
    ['PREFETCH_CONFIG', OPC.PREFETCH_CONFIG],
    ['PREFETCH_ADDR', OPC.PREFETCH_ADDR],
  ])('SSec=1 on the Non-secure queue: %s', (_n, op) => {
    expectAccepted(cmd(op, { ssec: 0, sid: 3 }));
    expectIllegal(cmd(op, { ssec: 1, sid: 3 }));
  });

  it('SSec=1: CFGI_VMS_PIDM (with MPAM), RESUME and STALL_TERM (with STALL_MODEL=0b00)', () => {
    expectAccepted(cmd(OPC.CFGI_VMS_PIDM), { mpam: true });
    expectIllegal(cmd(OPC.CFGI_VMS_PIDM, { ssec: 1 }), { mpam: true });
    expectAccepted(cmd(OPC.RESUME, { sid: 1 }), { stallModel: 0 });
    expectIllegal(cmd(OPC.RESUME, { ssec: 1, sid: 1 }), { stallModel: 0 });
    expectAccepted(cmd(OPC.STALL_TERM, { sid: 1 }), { stallModel: 0 });
    expectIllegal(cmd(OPC.STALL_TERM, { ssec: 1, sid: 1 }), { stallModel: 0 });
  });

  it('CMD_SYNC CS=0b11', () => {
    expectIllegal(sync(3));
    expectAccepted(sync(0));
    expectAccepted(sync(2));
  });

  it.each([
    ['TLBI_EL3_ALL', OPC.TLBI_EL3_ALL],
    ['TLBI_EL3_VA', OPC.TLBI_EL3_VA],
    ['TLBI_S_EL2_ALL', OPC.TLBI_S_EL2_ALL],
    ['TLBI_S_EL2_ASID', OPC.TLBI_S_EL2_ASID],
    ['TLBI_S_EL2_VA', OPC.TLBI_S_EL2_VA],
    ['TLBI_S_EL2_VAA', OPC.TLBI_S_EL2_VAA],
    ['TLBI_S_S12_VMALL', OPC.TLBI_S_S12_VMALL],
    ['TLBI_S_S2_IPA', OPC.TLBI_S_S2_IPA],
    ['TLBI_SNH_ALL', OPC.TLBI_SNH_ALL],
    ['DPTI_ALL', OPC.DPTI_ALL],
    ['DPTI_PA', OPC.DPTI_PA],
  ])('EL3, Secure-only and DPT commands on the Non-secure queue: %s', (_n, op) => {
    expectIllegal(cmd(op));
  });

  it.each([OPC.TLBI_EL2_ALL, OPC.TLBI_EL2_ASID, OPC.TLBI_EL2_VA, OPC.TLBI_EL2_VAA])(
    'TLBI_EL2_* (0x%s) with HYP=0',
    (op) => {
      expectAccepted(cmd(op), { hyp: true });
      expectIllegal(cmd(op), { hyp: false });
    },
  );

  it.each([OPC.TLBI_S2_IPA, OPC.TLBI_S12_VMALL])('stage-2 TLBI 0x%s with S2P=0', (op) => {
    expectAccepted(cmd(op), { s2p: true });
    expectIllegal(cmd(op), { s2p: false });
  });

  it.each([
    OPC.TLBI_NH_ALL,
    OPC.TLBI_NH_ASID,
    OPC.TLBI_NH_VA,
    OPC.TLBI_NH_VAA,
    OPC.CFGI_CD,
    OPC.CFGI_CD_ALL,
  ])('0x%s with S1P=0', (op) => {
    expectAccepted(cmd(op), { s1p: true });
    expectIllegal(cmd(op), { s1p: false, s2p: true });
  });

  it('TLBI_NSNH_ALL is valid on any SMMU (stage-2 only, no HYP)', () => {
    expectAccepted(cmd(OPC.TLBI_NSNH_ALL), { s1p: false, hyp: false });
    expectAccepted(cmd(OPC.TLBI_NSNH_ALL), { s2p: false });
  });

  it('ATC_INV without ATS; Size > 52', () => {
    expectAccepted(cmd(OPC.ATC_INV, { sid: 4, dw1: 52n }), { ats: true });
    expectIllegal(cmd(OPC.ATC_INV, { sid: 4 }), { ats: false });
    expectIllegal(cmd(OPC.ATC_INV, { sid: 4, dw1: 53n }), { ats: true });
  });

  it('PRI_RESP without PRI, or with Resp=0b11', () => {
    const resp = (r: number): Cmd => cmd(OPC.PRI_RESP, { sid: 2, dw1: BigInt(r) << 12n });
    expectIllegal(resp(2), { pri: false });
    for (const r of [0, 1, 2]) expectAccepted(resp(r), { pri: true });
    expectIllegal(resp(3), { pri: true });
  });

  it('RESUME and STALL_TERM with STALL_MODEL=0b01 (terminate only)', () => {
    expectIllegal(cmd(OPC.RESUME, { sid: 1 }), { stallModel: 1 });
    expectIllegal(cmd(OPC.STALL_TERM, { sid: 1 }), { stallModel: 1 });
    expectAccepted(cmd(OPC.RESUME, { sid: 1 }), { stallModel: 2 });
    expectAccepted(cmd(OPC.STALL_TERM, { sid: 1 }), { stallModel: 2 });
  });

  it('CFGI_VMS_PIDM without MPAM', () => {
    expectIllegal(cmd(OPC.CFGI_VMS_PIDM), { mpam: false });
  });

  it('PREFETCH_ADDR with Stride != 0 on SMMUv3.0', () => {
    const pf = cmd(OPC.PREFETCH_ADDR, { sid: 1, dw1: 1n << 5n });
    expectIllegal(pf, { archMinor: 0, ril: false });
    expectAccepted(pf, { archMinor: 2 });
  });

  describe('range invalidation: TG != 0 with NUM = SCALE = TTL = 0 is reserved when RIL=1', () => {
    const rangeOps: Array<[string, number, Record<string, number>]> = [
      ['TLBI_NH_VA', OPC.TLBI_NH_VA, { asid: 1 }],
      ['TLBI_NH_VAA', OPC.TLBI_NH_VAA, {}],
      ['TLBI_EL2_VA', OPC.TLBI_EL2_VA, { asid: 1 }],
      ['TLBI_EL2_VAA', OPC.TLBI_EL2_VAA, {}],
      ['TLBI_S2_IPA', OPC.TLBI_S2_IPA, { vmid: 1 }],
    ];
    it.each(rangeOps)('%s', (_n, op, extra) => {
      const addr = 0x1234_5000n;
      for (const tg of [1, 2, 3]) {
        expectIllegal(cmd(op, { ...extra, tg, addr, leaf: 1 }));
        expectAccepted(cmd(op, { ...extra, tg, addr, ttl: 3, leaf: 1 }));
        expectAccepted(cmd(op, { ...extra, tg, addr, num: 1 }));
        expectAccepted(cmd(op, { ...extra, tg, addr, scale: 1 }));
      }
      // TG=0: a non-range command
      expectAccepted(cmd(op, { ...extra, tg: 0, addr, leaf: 1 }));
      const m = expectAccepted(cmd(op, { ...extra, tg: 1, ttl: 2, addr }));
      expect(m.smmu.tlbiCounts[op]).toBe(1);
    });

    it('SCALE is decoded as 6 bits [25:20]: SCALE=32 alone makes the encoding legal', () => {
      expectAccepted(cmd(OPC.TLBI_NH_VA, { tg: 1, scale: 32 }));
    });
  });

  describe('RES0 bits with features.checkRes0', () => {
    const cases: Array<[string, Cmd]> = [
      ['CFGI_STE DW1[1]', cmd(OPC.CFGI_STE, { sid: 1, leaf: 1, dw1: 2n })],
      ['CFGI_STE DW0[9:8]', cmd(OPC.CFGI_STE, { dw0: 0x300n })],
      ['CFGI_STE_RANGE DW1[5]', cmd(OPC.CFGI_STE_RANGE, { range: 31, dw1: 0x20n })],
      ['TLBI_NSNH_ALL DW0[8]', cmd(OPC.TLBI_NSNH_ALL, { dw0: 0x100n })],
      ['TLBI_NSNH_ALL DW1[63]', cmd(OPC.TLBI_NSNH_ALL, { dw1: 1n << 63n })],
      ['TLBI_NH_ASID DW0[31:12]', cmd(OPC.TLBI_NH_ASID, { asid: 1, dw0: 1n << 12n })],
      ['TLBI_NH_VA DW1[6:1]', cmd(OPC.TLBI_NH_VA, { asid: 1, addr: 0x1000n, dw1: 0x2n })],
      ['CMD_SYNC DW0[21:14]', [0x46n | (1n << 16n), 0n]],
      ['CMD_SYNC MSIAddress[1:0]', [0x46n, 1n]],
      ['CMD_SYNC DW1[63:56]', [0x46n, 1n << 60n]],
      ['PREFETCH_CONFIG DW1', cmd(OPC.PREFETCH_CONFIG, { dw1: 1n })],
    ];
    it.each(cases)('%s: CERROR_ILL with checkRes0, accepted without', (_n, c) => {
      expectIllegal(c, { checkRes0: true });
      expectAccepted(c, { checkRes0: false });
    });

    it('a clean encoding of every accepted opcode passes the RES0 check', () => {
      for (const op of ACCEPTED_BY_DEFAULT) expectAccepted(cmd(op), { checkRes0: true });
    });
  });
});

describe('command effects', () => {
  it('CFGI_STE: a cached STE is used until CFGI_STE + CMD_SYNC', () => {
    const { m, q } = rig();
    const dev = m.devices.get('dev')!;
    writeSte(m, steAddr(5), [STE_BYPASS]);
    expect(dev.write(DMA_BUF, bytes(1, 2, 3, 4))).toMatchObject({ ok: true, pa: DMA_BUF });
    expect(m.mem.read32(DMA_BUF)).toBe(0x04030201);
    // make the STE invalid in memory: the SMMU still uses the cached bypass STE
    writeSte(m, steAddr(5), [STE_INVALID]);
    expect(dev.read(DMA_BUF, 4)).toMatchObject({ ok: true, data: bytes(1, 2, 3, 4) });
    expect(m.smmu.evtq.log).toHaveLength(0);
    q.submit(cfgiSte(5, 1), SYNC_NONE);
    expect(dev.read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STE' });
    expect(m.smmu.evtq.log.map((e) => [e.type, e.sid])).toEqual([['C_BAD_STE', 5]]);
  });

  it('CFGI_STE for another SID leaves the cached STE in place', () => {
    const { m, q } = rig();
    const dev = m.devices.get('dev')!;
    writeSte(m, steAddr(5), [STE_BYPASS]);
    expect(dev.read(DMA_BUF, 4).ok).toBe(true);
    writeSte(m, steAddr(5), [STE_ABORT]);
    q.submit(cfgiSte(4, 1), cfgiSte(6, 0), SYNC_NONE);
    expect(dev.read(DMA_BUF, 4).ok).toBe(true);
    q.submit(cfgiSte(5, 0), SYNC_NONE);
    const r = dev.read(DMA_BUF, 4);
    expect(r.ok).toBe(false);
    expect(m.smmu.evtq.log).toHaveLength(0); // Config=abort: no event
  });

  it('CFGI_STE_RANGE(SID, Range) invalidates SIDs Start..Start+2^(Range+1)-1', () => {
    const { m, q } = rig();
    const devs = [3, 4, 5, 6, 7, 8].map((sid) => m.addDevice({ name: `d${sid}`, sid }));
    for (const d of devs) writeSte(m, steAddr(d.sid), [STE_BYPASS]);
    for (const d of devs) expect(d.read(DMA_BUF, 1).ok).toBe(true);
    for (const d of devs) writeSte(m, steAddr(d.sid), [STE_INVALID]);
    // SID 5, Range 1: Start = 5 & ~3 = 4, SIDs 4..7
    q.submit(cfgiRange(5, 1), SYNC_NONE);
    expect(devs.map((d) => d.read(DMA_BUF, 1).ok)).toEqual([
      true,
      false,
      false,
      false,
      false,
      true,
    ]);
    // Range 0 at SID 3: SIDs 2..3
    q.submit(cfgiRange(3, 0), SYNC_NONE);
    expect(devs[0]!.read(DMA_BUF, 1).ok).toBe(false);
    expect(devs[5]!.read(DMA_BUF, 1).ok).toBe(true);
  });

  it('CFGI_ALL (CFGI_STE_RANGE Range=31) drops every cached STE', () => {
    const { m, q } = rig();
    const a = m.addDevice({ name: 'a', sid: 0 });
    const b = m.addDevice({ name: 'b', sid: 255 });
    writeSte(m, steAddr(0), [STE_BYPASS]);
    writeSte(m, steAddr(255), [STE_BYPASS]);
    expect([a.read(DMA_BUF, 1).ok, b.read(DMA_BUF, 1).ok]).toEqual([true, true]);
    writeSte(m, steAddr(0), [STE_ABORT]);
    writeSte(m, steAddr(255), [STE_ABORT]);
    expect([a.read(DMA_BUF, 1).ok, b.read(DMA_BUF, 1).ok]).toEqual([true, true]);
    q.submit(CFGI_ALL, LINUX_SYNC);
    expect([a.read(DMA_BUF, 1).ok, b.read(DMA_BUF, 1).ok]).toEqual([false, false]);
  });

  it('PREFETCH_CONFIG fetches the STE into the configuration cache (SMMUEN=1)', () => {
    const { m, q } = rig();
    const dev = m.devices.get('dev')!;
    writeSte(m, steAddr(5), [STE_BYPASS]);
    q.submit(cmd(OPC.PREFETCH_CONFIG, { sid: 5 }));
    writeSte(m, steAddr(5), [STE_INVALID]);
    expect(dev.read(DMA_BUF, 4).ok).toBe(true); // uses the prefetched STE
  });

  it('PREFETCH_CONFIG is ignored while SMMUEN=0', () => {
    const { m, q, sw } = rig({ smmuen: false });
    const dev = m.devices.get('dev')!;
    writeSte(m, steAddr(5), [STE_BYPASS]);
    q.submit(cmd(OPC.PREFETCH_CONFIG, { sid: 5 }));
    writeSte(m, steAddr(5), [STE_INVALID]);
    sw.cr0(sw.r32(R.CR0) | 1);
    expect(dev.read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STE' });
  });

  it('CMD_SYNC CS=SIG_SEV counts one SEV per SYNC when IDR0.SEV=1, none when SEV=0', () => {
    const m = expectAccepted(sync(2));
    expect(m.smmu.sevs).toBe(1);
    let sevs = 0;
    const m2 = new Machine();
    m2.smmu.onSev = () => sevs++;
    const q = initCmdq(new Sw(m2), CMDQ_PA, 4);
    q.submit(sync(2), sync(0), sync(2), LINUX_SYNC);
    expect([m2.smmu.sevs, sevs]).toEqual([3, 3]);
    expect(expectAccepted(sync(2), { sev: false }).smmu.sevs).toBe(0);
    expect(expectAccepted(sync(0)).smmu.sevs).toBe(0);
  });

  it('CMD_SYNC CS=SIG_IRQ writes MSIData to MSIAddress in RAM', () => {
    const m = expectAccepted(sync(1, MSI_PA + 0x40, 0xdeadbeef));
    expect(m.mem.read32(MSI_PA + 0x40)).toBe(0xdeadbeef);
    expect(m.smmu.msis).toBe(1);
    expect(m.smmu.irqs.cmdSync).toBe(0);
  });

  it('CMD_SYNC MSI above 4 GiB: MSIAddress[55:2] spans both DW1 words', () => {
    const m = new Machine();
    m.mem.addRam('high', 0x8_0000_0000, 0x1000);
    const q = initCmdq(new Sw(m), CMDQ_PA, 4);
    q.submit(sync(1, 0x8_0000_0010, 0x600df00d));
    expect(m.mem.read32(0x8_0000_0010)).toBe(0x600df00d);
  });

  it('Linux MSIPOLL: MSIAddress = the CMD_SYNC entry itself, MSIData = 0, first word polled to 0', () => {
    const m = new Machine();
    const sw = new Sw(m);
    const q = initCmdq(sw, CMDQ_PA, 4);
    q.put(SYNC_NONE);
    const at = q.slotAddr(q.prod);
    q.put(sync(1, at, 0));
    expect(m.mem.read32(at)).not.toBe(0);
    expect(q.publish()).toBe(2);
    expect(m.mem.read32(at)).toBe(0);
  });

  it('CMD_SYNC CS=SIG_IRQ with MSIAddress=0, or without MSI support, raises the wired interrupt', () => {
    expect(expectAccepted(sync(1, 0, 5)).smmu.irqs.cmdSync).toBe(1);
    const m = expectAccepted(sync(1, MSI_PA, 5), { msi: false });
    expect(m.smmu.irqs.cmdSync).toBe(1);
    expect(m.mem.read32(MSI_PA)).toBe(0);
  });

  it('TLBI commands are validated and counted per opcode', () => {
    const m = new Machine();
    const q = initCmdq(new Sw(m), CMDQ_PA, 5);
    q.submit(
      cmd(OPC.TLBI_NH_ALL, { vmid: 1 }),
      cmd(OPC.TLBI_NH_ASID, { asid: 3 }),
      cmd(OPC.TLBI_NH_ASID, { asid: 4 }),
      cmd(OPC.TLBI_NH_VA, { asid: 1, addr: 0xffffd000n, tg: 1, ttl: 3, leaf: 1 }),
      cmd(OPC.TLBI_NH_VAA, { addr: 0x1000n }),
      cmd(OPC.TLBI_EL2_ALL),
      cmd(OPC.TLBI_EL2_ASID, { asid: 1 }),
      cmd(OPC.TLBI_EL2_VA, { addr: 0x1000n }),
      cmd(OPC.TLBI_EL2_VAA, { addr: 0x1000n }),
      cmd(OPC.TLBI_S12_VMALL, { vmid: 2 }),
      cmd(OPC.TLBI_S2_IPA, { vmid: 2, addr: 0x8000n }),
      cmd(OPC.TLBI_NSNH_ALL),
      SYNC_NONE,
    );
    const t = m.smmu.tlbiCounts;
    expect([
      t[0x10],
      t[0x11],
      t[0x12],
      t[0x13],
      t[0x20],
      t[0x21],
      t[0x22],
      t[0x23],
      t[0x28],
      t[0x2a],
      t[0x30],
    ]).toEqual([1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
  });
});
