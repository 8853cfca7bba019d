/**
 * Attach, compared with linux-sequence.md §3 "Attaching a device to a DMA (S1) domain":
 * TLBI_NH_ASID + SYNC, CFGI_CD ×2 (+SYNC), CFGI_STE ×2 (+SYNC), PREFETCH_CONFIG without SYNC,
 * giving the STE qword 1 0xd6 and the CD qword 0 0x0001e204c0003510 pattern.
 */
import { describe, expect, it } from 'vitest';
import { Machine, SMMU_BASE } from '../../../hw/machine.ts';
import { opcodeName } from '../../../hw/smmu/commands.ts';
import { ArmSmmuV3 } from '../../../host/driver/driver.ts';
import { DomainManager } from '../../../host/driver/domain.ts';
import { geometry, ptMap, TableAllocator } from '../../../scenarios/steps/pagetable.ts';
import { QEMU_VIRT_SMMU } from '../../reference.ts';

const QEMU = QEMU_VIRT_SMMU;

function setup() {
  const m = new Machine({
    smmu: { features: QEMU },
    devices: [
      { name: 'rng', sid: 8 },
      { name: 'blk', sid: 0x10 },
    ],
  });
  const drv = new ArmSmmuV3(m.bus, {
    base: SMMU_BASE,
    pages: { base: 0x4400_0000, limit: 0x7800_0000 },
  });
  drv.probe();
  const cmds: string[] = [];
  m.smmu.cmdq.onCommand = (w) => cmds.push(opcodeName(w[0]! & 0xff));
  const dm = new DomainManager(drv);
  // a stage-1 table built directly (the io-pgtable is separate): IOVA 0xfffff000 → PA 0x4010_0000
  const root = 0x4800_0000;
  const mem = {
    read64: (a: number) => m.mem.read64(a),
    write64: (a: number, v: bigint) => m.mem.write64(a, v),
    zero: (a: number, n: number) => m.mem.writeBytes(a, new Uint8Array(n)),
  };
  ptMap(
    mem,
    new TableAllocator(0x4801_0000, 0x4810_0000),
    geometry(1, 4096, 48, root, 44),
    0xfffff000,
    0x4010_0000,
    4096,
    { read: true, write: true, exec: false, user: true },
    { af: true, global: false, contiguous: false, attr: 1, sh: 3 },
  );
  // the configuration io-pgtable gives a coherent 4 KB / 48-bit domain (WBWA, Inner Shareable walks)
  const pgtable = {
    s1: { tsz: 16, tg: 0, irgn: 1, orgn: 1, sh: 3, ips: 4, mair: 0xfffffffff404ff44n, ttbr: root },
  };
  return { m, drv, dm, cmds, pgtable };
}

describe('attach (linux-sequence.md §3)', () => {
  it('attaches a DMA domain with the captured command sequence and entry values, and the device DMAs', () => {
    const { m, drv, dm, cmds, pgtable } = setup();
    const d = dm.alloc('dma', pgtable);
    expect(d.asid).toBe(1); // ASIDs are allocated from 1
    dm.attach(8, d);
    expect(cmds).toEqual([
      'TLBI_NH_ASID',
      'CMD_SYNC',
      'CFGI_CD',
      'CMD_SYNC',
      'CFGI_CD',
      'CMD_SYNC',
      'CFGI_STE',
      'CMD_SYNC',
      'CFGI_STE',
      'CMD_SYNC',
      'PREFETCH_CONFIG',
    ]);
    const ste = drv.steAddr(8);
    const q0 = m.mem.read64(ste);
    expect(q0 & 0xfn).toBe(0xbn); // V=1, Config=0b101
    expect(m.mem.read64(ste + 8)).toBe(0xd6n); // S1DSS=SSID0, S1CIR=S1COR=WBRA, S1CSH=ISH
    const cd = Number(q0 & 0x00ff_ffff_ffff_ffc0n);
    expect(m.mem.read64(cd)).toBe(0x0001e204c0003510n); // T0SZ=16, TG0=4K, WBWA ISH, EPD1, V, IPS=44-bit, AA64, R, A, ASET, ASID 1
    expect(m.mem.read64(cd + 24)).toBe(0xfffffffff404ff44n); // MAIR, sign-extended as io-pgtable-arm does
    const out = m.devices.get('rng')!.write(0xfffff010, new Uint8Array([1, 2, 3, 4]));
    expect(out).toMatchObject({ ok: true, pa: 0x4010_0010 });
  });

  it('identity after DMA: CFGI_STE ×2, PREFETCH, CFGI_CD ×2 (clearing the CD), then TLBI_NH_ASID of the old ASID', () => {
    const { m, dm, cmds, pgtable } = setup();
    const d = dm.alloc('dma', pgtable);
    dm.attach(8, d);
    cmds.length = 0;
    dm.attach(8, dm.alloc('identity'));
    expect(cmds).toEqual([
      'CFGI_STE',
      'CMD_SYNC',
      'CFGI_STE',
      'CMD_SYNC',
      'PREFETCH_CONFIG',
      'CFGI_CD',
      'CMD_SYNC',
      'CFGI_CD',
      'CMD_SYNC',
      'TLBI_NH_ASID',
      'CMD_SYNC',
    ]);
    expect(m.devices.get('rng')!.read(0x4020_0000, 4)).toMatchObject({ ok: true, pa: 0x4020_0000 }); // bypass
  });

  it('blocked aborts the device; a second device gets the next ASID', () => {
    const { m, dm, pgtable } = setup();
    const a = dm.alloc('dma', pgtable);
    const b = dm.alloc('dma', pgtable);
    expect([a.asid, b.asid]).toEqual([1, 2]);
    dm.attach(0x10, dm.alloc('blocked'));
    expect(m.devices.get('blk')!.read(0x4020_0000, 4).ok).toBe(false);
  });
});

describe('event handling', () => {
  it('drains and decodes fault records, and acknowledges an overflow by copying OVFLG into CONS.OVACKFLG', () => {
    const { m, drv, dm, pgtable } = setup();
    dm.attach(8, dm.alloc('dma', pgtable));
    expect(m.devices.get('rng')!.read(0x1000, 4).ok).toBe(false); // unmapped IOVA
    const got = drv.events.drain();
    expect(got.map((e) => [e.type, e.sid])).toEqual([['F_TRANSLATION', 8]]);
    expect(got[0]!.fields.InputAddr).toBe('0x1000');
    expect(drv.events.drain()).toEqual([]); // CONS caught up with PROD
    // overflow: fill the 2^15-entry queue, then one more record is dropped and OVFLG toggles
    for (let i = 0; i < 2 ** 15 + 1; i++) m.devices.get('rng')!.read(0x2000, 4);
    expect((m.smmu.evtq.prod >>> 31) & 1).toBe(1);
    expect(drv.events.drain()).toHaveLength(2 ** 15);
    expect(drv.events.overflows).toBe(1);
    expect(m.smmu.evtq.overflowPresent).toBe(false); // acknowledged
  });
});
