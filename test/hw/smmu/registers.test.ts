import { describe, expect, it } from 'vitest';
import { Machine } from '../../../hw/machine.ts';
import type { SmmuFeatures } from '../../../hw/smmu/features.ts';
import { OFF, REGISTERS, regNameAt, ID_REG_NAMES } from '../../../hw/smmu/regs.ts';
import {
  CMDQEN,
  CMDQ_PA,
  EVENTQEN,
  EVENTQ_IRQEN,
  EVTQ_PA,
  GERROR_IRQEN,
  PRIQEN,
  PRIQ_IRQEN,
  R,
  RAM,
  SMMU,
  SMMUEN,
  STRTAB_PA,
  Sw,
} from '../helpers.ts';

const fresh = (opts: ConstructorParameters<typeof Machine>[0] = {}) => new Sw(new Machine(opts));

/** The QEMU 10.0.2 `virt` SMMU (linux-sequence.md §1) as a feature set. */
const QEMU_FEATURES = {
  s1p: true,
  s2p: true,
  ttf: 2,
  cohacc: true,
  btm: false,
  httu: 0,
  dormhint: false,
  hyp: false,
  ats: false,
  ns1ats: false,
  asid16: true,
  msi: false,
  sev: false,
  atos: false,
  pri: false,
  vmw: false,
  vmid16: true,
  cd2l: false,
  ttendian: 2,
  stallModel: 1,
  termModel: true,
  twoLevelStrtab: true,
  sidSize: 16,
  ssidSize: 0,
  cmdqs: 19,
  eventqs: 19,
  priqs: 0,
  attrTypesOvr: false,
  attrPermsOvr: false,
  had: true,
  xnx: true,
  stt: false,
  ril: true,
  bbml: 2,
  mpam: false,
  oas: 44,
  gran4k: true,
  gran16k: true,
  gran64k: true,
  vax: 0,
  iidr: 0,
  archMinor: 1,
} as const;

describe('register map declarations (regs.ts) match the reference offsets', () => {
  it('OFF', () => {
    expect(OFF).toMatchObject({
      IDR0: 0x0,
      IDR1: 0x4,
      IDR2: 0x8,
      IDR3: 0xc,
      IDR4: 0x10,
      IDR5: 0x14,
      IIDR: 0x18,
      AIDR: 0x1c,
      CR0: 0x20,
      CR0ACK: 0x24,
      CR1: 0x28,
      CR2: 0x2c,
      STATUSR: 0x40,
      GBPA: 0x44,
      AGBPA: 0x48,
      IRQ_CTRL: 0x50,
      IRQ_CTRLACK: 0x54,
      GERROR: 0x60,
      GERRORN: 0x64,
      GERROR_IRQ_CFG0: 0x68,
      GERROR_IRQ_CFG1: 0x70,
      GERROR_IRQ_CFG2: 0x74,
      STRTAB_BASE: 0x80,
      STRTAB_BASE_CFG: 0x88,
      CMDQ_BASE: 0x90,
      CMDQ_PROD: 0x98,
      CMDQ_CONS: 0x9c,
      EVENTQ_BASE: 0xa0,
      EVENTQ_IRQ_CFG0: 0xb0,
      EVENTQ_IRQ_CFG1: 0xb8,
      EVENTQ_IRQ_CFG2: 0xbc,
      PRIQ_BASE: 0xc0,
      PRIQ_IRQ_CFG0: 0xd0,
      PRIQ_IRQ_CFG1: 0xd8,
      PRIQ_IRQ_CFG2: 0xdc,
      GATOS_CTRL: 0x100,
      GATOS_SID: 0x108,
      GATOS_ADDR: 0x110,
      GATOS_PAR: 0x118,
      EVENTQ_PROD: 0x100a8,
      EVENTQ_CONS: 0x100ac,
      PRIQ_PROD: 0x100c8,
      PRIQ_CONS: 0x100cc,
    });
  });

  it('64-bit registers and read-only registers', () => {
    const w8 = REGISTERS.filter((r) => r.width === 8)
      .map((r) => r.name)
      .sort();
    expect(w8).toEqual([
      'CMDQ_BASE',
      'EVENTQ_BASE',
      'EVENTQ_IRQ_CFG0',
      'GERROR_IRQ_CFG0',
      'PRIQ_BASE',
      'PRIQ_IRQ_CFG0',
      'STRTAB_BASE',
    ]);
    const ro = REGISTERS.filter((r) => r.access === 'RO')
      .map((r) => r.name)
      .sort();
    expect(ro).toEqual([
      'AIDR',
      'CR0ACK',
      'GERROR',
      'IDR0',
      'IDR1',
      'IDR2',
      'IDR3',
      'IDR4',
      'IDR5',
      'IIDR',
      'IRQ_CTRLACK',
      'STATUSR',
    ]);
  });

  it('regNameAt names halves, ID registers and unknown offsets', () => {
    expect(regNameAt(0x80)).toBe('STRTAB_BASE');
    expect(regNameAt(0x84)).toBe('STRTAB_BASE[63:32]');
    expect(regNameAt(0x100ac)).toBe('EVENTQ_CONS');
    expect(regNameAt(0xfd0)).toBe('PIDR4');
    expect(regNameAt(0xfe0)).toBe('PIDR0');
    expect(regNameAt(0xffc)).toBe('CIDR3');
    expect(ID_REG_NAMES).toHaveLength(12);
    expect(regNameAt(0x38)).toBe('page0+0x38');
    expect(regNameAt(0x10020)).toBe('page1+0x20');
  });
});

describe('reset values', () => {
  it('every RW and status register resets to 0, GBPA to 0x1000', () => {
    const sw = fresh();
    const zero32 = [
      R.CR0,
      R.CR0ACK,
      R.CR1,
      R.CR2,
      R.STATUSR,
      R.AGBPA,
      R.IRQ_CTRL,
      R.IRQ_CTRLACK,
      R.GERROR,
      R.GERRORN,
      R.GERROR_IRQ_CFG1,
      R.GERROR_IRQ_CFG2,
      R.STRTAB_BASE_CFG,
      R.CMDQ_PROD,
      R.CMDQ_CONS,
      R.EVENTQ_IRQ_CFG1,
      R.EVENTQ_IRQ_CFG2,
      R.PRIQ_IRQ_CFG1,
      R.PRIQ_IRQ_CFG2,
      R.EVENTQ_PROD,
      R.EVENTQ_CONS,
      R.PRIQ_PROD,
      R.PRIQ_CONS,
    ];
    for (const off of zero32) expect([off, sw.r32(off)]).toEqual([off, 0]);
    for (const off of [
      R.GERROR_IRQ_CFG0,
      R.STRTAB_BASE,
      R.CMDQ_BASE,
      R.EVENTQ_BASE,
      R.EVENTQ_IRQ_CFG0,
      R.PRIQ_BASE,
      R.PRIQ_IRQ_CFG0,
    ]) {
      expect([off, sw.r64(off)]).toEqual([off, 0n]);
    }
    expect(sw.r32(R.GBPA)).toBe(0x1000);
  });

  it('the GBPA reset value is configurable (IMPLEMENTATION DEFINED)', () => {
    expect(fresh({ smmu: { gbpaReset: 0x100000 } }).r32(R.GBPA)).toBe(0x100000);
  });
});

describe('ID registers', () => {
  it('the QEMU feature set reproduces the IDR values Linux read (linux-sequence.md §1)', () => {
    const sw = fresh({ smmu: { features: QEMU_FEATURES } });
    expect(sw.r32(R.IDR0)).toBe(0x0d44101b);
    expect(sw.r32(R.IDR1)).toBe(0x02730010);
    expect(sw.r32(R.IDR3)).toBe(0x00001414);
    expect(sw.r32(R.IDR5)).toBe(0x00000074);
    expect(sw.r32(R.IIDR)).toBe(0);
    expect(sw.r32(R.AIDR)).toBe(0x1); // v3.1, as QEMU
  });

  it('default feature set: IDR values from the reference field positions', () => {
    const sw = fresh();
    // S2P S1P TTF=2 COHACC HYP ATS ASID16 MSI SEV VMID16 CD2L TTENDIAN=2 STALL_MODEL=1 TERM_MODEL ST_LEVEL=1
    const idr0 =
      0x1 |
      0x2 |
      (2 << 2) |
      0x10 |
      (1 << 9) |
      (1 << 10) |
      (1 << 12) |
      (1 << 13) |
      (1 << 14) |
      (1 << 18) |
      (1 << 19) |
      (2 << 21) |
      (1 << 24) |
      (1 << 26) |
      (1 << 27);
    expect(idr0).toBe(0x0d4c761b);
    expect(sw.r32(R.IDR0)).toBe(0x0d4c761b);
    // SIDSIZE=16 SSIDSIZE=16 PRIQS=0 (no PRI) EVENTQS=19 CMDQS=19
    expect(sw.r32(R.IDR1)).toBe(16 | (16 << 6) | (19 << 16) | (19 << 21));
    expect(sw.r32(R.IDR2)).toBe(0);
    expect(sw.r32(R.IDR3)).toBe(0x1414);
    expect(sw.r32(R.IDR4)).toBe(0);
    expect(sw.r32(R.IDR5)).toBe(5 | 0x10 | 0x20 | 0x40);
    expect(sw.r32(R.AIDR)).toBe(0x2);
    expect(sw.r32(R.STATUSR)).toBe(0);
  });

  it.each([
    ['s2p', 0],
    ['s1p', 1],
    ['cohacc', 4],
    ['btm', 5],
    ['dormhint', 8],
    ['hyp', 9],
    ['ats', 10],
    ['ns1ats', 11],
    ['asid16', 12],
    ['msi', 13],
    ['sev', 14],
    ['atos', 15],
    ['pri', 16],
    ['vmw', 17],
    ['vmid16', 18],
    ['cd2l', 19],
    ['termModel', 26],
    ['twoLevelStrtab', 27],
  ] as const)('IDR0 bit for feature %s is bit %i', (name, bit) => {
    const base = fresh({ smmu: { features: { [name]: false } as Partial<SmmuFeatures> } }).r32(
      R.IDR0,
    );
    const withIt = fresh({ smmu: { features: { [name]: true } as Partial<SmmuFeatures> } }).r32(
      R.IDR0,
    );
    expect((base ^ withIt) >>> 0).toBe((1 << bit) >>> 0);
  });

  it('IDR0 multi-bit fields: TTF[3:2], HTTU[7:6], TTENDIAN[22:21], STALL_MODEL[25:24]', () => {
    const idr0 = (f: Partial<SmmuFeatures>) => fresh({ smmu: { features: f } }).r32(R.IDR0);
    expect((idr0({ ttf: 3 }) >>> 2) & 3).toBe(3);
    expect((idr0({ ttf: 1 }) >>> 2) & 3).toBe(1);
    expect((idr0({ httu: 2 }) >>> 6) & 3).toBe(2);
    expect((idr0({ ttendian: 0 }) >>> 21) & 3).toBe(0);
    expect((idr0({ ttendian: 3 }) >>> 21) & 3).toBe(3);
    expect((idr0({ stallModel: 0 }) >>> 24) & 3).toBe(0);
    expect((idr0({ stallModel: 2 }) >>> 24) & 3).toBe(2);
  });

  it('IDR1 sizes and presets, IDR5 OAS encodings', () => {
    const sw = fresh({
      smmu: {
        features: {
          pri: true,
          priqs: 7,
          cmdqs: 8,
          eventqs: 9,
          sidSize: 20,
          ssidSize: 5,
          attrTypesOvr: true,
          attrPermsOvr: true,
        },
      },
    });
    expect(sw.r32(R.IDR1)).toBe(
      (20 | (5 << 6) | (7 << 11) | (9 << 16) | (8 << 21) | (1 << 26) | (1 << 27)) >>> 0,
    );
    const oas = (o: number) => fresh({ smmu: { features: { oas: o as 48 } } }).r32(R.IDR5) & 7;
    expect([32, 36, 40, 42, 44, 48, 52].map(oas)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    const r5 = fresh({ smmu: { features: { gran16k: false, vax: 1, stallMax: 0x1234 } } }).r32(
      R.IDR5,
    );
    expect(r5).toBe((5 | 0x10 | 0x40 | (1 << 10) | (0x1234 << 16)) >>> 0);
  });

  it('IDR3: STT[9], MPAM[7], BBML[12:11]', () => {
    const r3 = fresh({
      smmu: { features: { stt: true, mpam: true, bbml: 1, had: false, xnx: false } },
    }).r32(R.IDR3);
    expect(r3).toBe((1 << 9) | (1 << 7) | (1 << 11) | (1 << 10));
  });

  it('raw idr overrides read back as given', () => {
    const idr = {
      IDR0: 0x12345678,
      IDR1: 0x9abcdef0,
      IDR2: 0x3ff,
      IDR3: 0x5a5a,
      IDR4: 0xdeadbeef,
      IDR5: 0x80000077,
      IIDR: 0x4b1043b,
      AIDR: 0x3,
    };
    const sw = fresh({ smmu: { idr } });
    expect(
      [R.IDR0, R.IDR1, R.IDR2, R.IDR3, R.IDR4, R.IDR5, R.IIDR, R.AIDR].map((o) => sw.r32(o)),
    ).toEqual(Object.values(idr));
  });

  it('rejects impossible feature sets', () => {
    expect(() => new Machine({ smmu: { features: { s1p: false, s2p: false } } })).toThrow();
    expect(() => new Machine({ smmu: { features: { cmdqs: 20 } } })).toThrow();
    // range invalidation is mandatory from v3.2
    expect(() => new Machine({ smmu: { features: { ril: false, archMinor: 2 } } })).toThrow();
  });

  it('IDRs, IIDR, AIDR, CR0ACK, STATUSR, IRQ_CTRLACK and GERROR ignore writes', () => {
    const sw = fresh();
    const ro = [
      R.IDR0,
      R.IDR1,
      R.IDR2,
      R.IDR3,
      R.IDR4,
      R.IDR5,
      R.IIDR,
      R.AIDR,
      R.CR0ACK,
      R.STATUSR,
      R.IRQ_CTRLACK,
      R.GERROR,
    ];
    const before = ro.map((o) => sw.r32(o));
    expect(before.slice(8)).toEqual([0, 0, 0, 0]);
    for (const o of ro) sw.w32(o, 0xffffffff);
    // 64-bit writes over the ID register pairs
    for (const o of [R.IDR0, R.IDR2, R.IDR4, R.IIDR]) sw.w64(o, 0xffff_ffff_ffff_ffffn);
    expect(ro.map((o) => sw.r32(o))).toEqual(before);
    // the ACK registers follow their control register, not a direct write
    sw.w32(R.CR0, CMDQEN);
    sw.w32(R.CR0ACK, 0);
    sw.w32(R.IRQ_CTRL, EVENTQ_IRQEN);
    sw.w32(R.IRQ_CTRLACK, 0);
    expect([sw.r32(R.CR0ACK), sw.r32(R.IRQ_CTRLACK)]).toEqual([CMDQEN, EVENTQ_IRQEN]);
  });

  it('CoreSight ID registers at 0xFD0..0xFFC are 8-bit, read-only, with the component preamble 0xB105F00D', () => {
    const sw = fresh();
    const ids = Array.from({ length: 12 }, (_, i) => sw.r32(0xfd0 + 4 * i));
    for (const v of ids) expect(v & ~0xff).toBe(0);
    // CIDR0..3 at 0xFF0..0xFFC
    expect(ids.slice(8)).toEqual([0x0d, 0xf0, 0x05, 0xb1]);
    for (let i = 0; i < 12; i++) sw.w32(0xfd0 + 4 * i, 0x55);
    expect(Array.from({ length: 12 }, (_, i) => sw.r32(0xfd0 + 4 * i))).toEqual(ids);
  });
});

describe('RW registers: reserved-bit masking (all-ones written)', () => {
  it.each([
    ['CR1', R.CR1, 0xfff],
    ['CR2 (E2H with HYP)', R.CR2, 0x7],
    ['GBPA (Update=1)', R.GBPA, 0x1f3f1f],
    ['IRQ_CTRL (no PRI)', R.IRQ_CTRL, 0x5],
    ['GERRORN', R.GERRORN, 0x1fd],
    ['GERROR_IRQ_CFG1', R.GERROR_IRQ_CFG1, 0xffffffff],
    ['GERROR_IRQ_CFG2', R.GERROR_IRQ_CFG2, 0x3f],
    ['STRTAB_BASE_CFG', R.STRTAB_BASE_CFG, 0x307ff],
    ['EVENTQ_IRQ_CFG1', R.EVENTQ_IRQ_CFG1, 0xffffffff],
    ['EVENTQ_IRQ_CFG2', R.EVENTQ_IRQ_CFG2, 0x3f],
    ['AGBPA (IMPDEF, RAZ/WI here)', R.AGBPA, 0],
  ])('%s', (_name, off, expected) => {
    const sw = fresh();
    sw.w32(off, 0xffffffff);
    expect(sw.r32(off)).toBe(expected);
  });

  it.each([
    ['GERROR_IRQ_CFG0: ADDR[55:2]', R.GERROR_IRQ_CFG0, 0x00ff_ffff_ffff_fffcn],
    ['STRTAB_BASE: RA[62], ADDR[55:6]', R.STRTAB_BASE, 0x40ff_ffff_ffff_ffc0n],
    ['CMDQ_BASE: RA[62], ADDR[55:5], LOG2SIZE[4:0]', R.CMDQ_BASE, 0x40ff_ffff_ffff_ffffn],
    ['EVENTQ_BASE: WA[62], ADDR[55:5], LOG2SIZE[4:0]', R.EVENTQ_BASE, 0x40ff_ffff_ffff_ffffn],
    ['EVENTQ_IRQ_CFG0', R.EVENTQ_IRQ_CFG0, 0x00ff_ffff_ffff_fffcn],
  ])('%s', (_name, off, expected) => {
    const sw = fresh();
    sw.w64(off, 0xffff_ffff_ffff_ffffn);
    expect(sw.r64(off)).toBe(expected);
  });

  it('CR0: only defined bits are kept, and CR0ACK follows', () => {
    const sw = fresh();
    expect(sw.cr0(0xffffffff) & ~0b101_1101_1111).toBe(0);
    const v = sw.r32(R.CR0);
    expect(v & (SMMUEN | EVENTQEN | CMDQEN)).toBe(SMMUEN | EVENTQEN | CMDQEN);
    expect(sw.r32(R.CR0ACK)).toBe(v);
    expect(v & 0x10).toBe(0x10); // ATSCHK with ATS
    expect(v & PRIQEN).toBe(0); // no PRI
  });

  it('CR0.VMW[8:6] is kept with IDR0.VMW', () => {
    expect(fresh({ smmu: { features: { vmw: true } } }).cr0(0x1c0)).toBe(0x1c0);
  });

  it('CR0: PRIQEN with PRI; CR0.ATSCHK without ATS is RES0', () => {
    expect(fresh({ smmu: { features: { pri: true } } }).cr0(PRIQEN)).toBe(PRIQEN);
    expect(fresh({ smmu: { features: { ats: false } } }).cr0(0x10)).toBe(0);
  });

  it('CR2.E2H is RES0 without HYP; IRQ_CTRL.PRIQ_IRQEN needs PRI', () => {
    const sw = fresh({ smmu: { features: { hyp: false } } });
    sw.w32(R.CR2, 0x7);
    expect(sw.r32(R.CR2)).toBe(0x6);
    expect(fresh({ smmu: { features: { pri: true } } }).irqCtrl(0xffffffff)).toBe(0x7);
  });

  it('queue PROD/CONS: bits [30:20] read as zero; OVFLG/OVACKFLG at bit 31', () => {
    const sw = fresh();
    sw.w32(R.CMDQ_PROD, 0xffffffff);
    sw.w32(R.CMDQ_CONS, 0xffffffff);
    expect(sw.r32(R.CMDQ_PROD) & 0xfff00000).toBe(0);
    expect(sw.r32(R.CMDQ_CONS) & 0xfff00000).toBe(0); // ERR reads 0: no command error
    sw.w32(R.EVENTQ_PROD, 0xffffffff);
    sw.w32(R.EVENTQ_CONS, 0xffffffff);
    expect(sw.r32(R.EVENTQ_PROD) & 0x7ff00000).toBe(0);
    expect(sw.r32(R.EVENTQ_CONS) & 0x7ff00000).toBe(0);
    expect(sw.r32(R.EVENTQ_PROD) >>> 31).toBe(1);
    expect(sw.r32(R.EVENTQ_CONS) >>> 31).toBe(1);
    sw.w32(R.EVENTQ_CONS, 0x5);
    expect(sw.r32(R.EVENTQ_CONS)).toBe(0x5);
  });

  it('STRTAB_BASE_CFG: the Linux value 0x00010210 (FMT=2-level, SPLIT=8, LOG2SIZE=16) reads back', () => {
    const sw = fresh();
    sw.w32(R.STRTAB_BASE_CFG, 0x00010210);
    expect(sw.r32(R.STRTAB_BASE_CFG)).toBe(0x00010210);
  });
});

describe('64-bit registers: 32-bit halves and 64-bit access', () => {
  const regs = [
    ['STRTAB_BASE', R.STRTAB_BASE, 0x4000_0000_4415_1000n],
    ['CMDQ_BASE', R.CMDQ_BASE, 0x4000_0000_7ab0_0010n],
    ['EVENTQ_BASE', R.EVENTQ_BASE, 0x4000_0000_7ac0_000fn],
    ['GERROR_IRQ_CFG0', R.GERROR_IRQ_CFG0, 0x0000_1234_5678_9abcn],
    ['EVENTQ_IRQ_CFG0', R.EVENTQ_IRQ_CFG0, 0x00ab_cdef_0123_4564n],
  ] as const;

  it.each(regs)('%s: a 64-bit write reads back as 64 bits and as two halves', (_n, off, v) => {
    const sw = fresh();
    sw.w64(off, v);
    expect(sw.r64(off)).toBe(v);
    expect(sw.r32(off)).toBe(Number(v & 0xffffffffn));
    expect(sw.r32(off + 4)).toBe(Number(v >> 32n));
  });

  it.each(regs)('%s: two 32-bit writes read back as one 64-bit value', (_n, off, v) => {
    const sw = fresh();
    sw.w32(off + 4, Number(v >> 32n));
    expect(sw.r64(off)).toBe(v & 0xffff_ffff_0000_0000n);
    sw.w32(off, Number(v & 0xffffffffn));
    expect(sw.r64(off)).toBe(v);
    // writing one half leaves the other alone
    sw.w32(off + 4, 0);
    expect(sw.r64(off)).toBe(v & 0xffffffffn);
  });

  it('the low half of STRTAB_BASE drops ADDR[5:0]; of *_IRQ_CFG0 drops bits [1:0]', () => {
    const sw = fresh();
    sw.w32(R.STRTAB_BASE, 0x4415_107f);
    expect(sw.r32(R.STRTAB_BASE)).toBe(0x4415_1040);
    sw.w32(R.GERROR_IRQ_CFG0, 0x1003);
    expect(sw.r32(R.GERROR_IRQ_CFG0)).toBe(0x1000);
    sw.w32(R.GERROR_IRQ_CFG0 + 4, 0xffffffff);
    expect(sw.r32(R.GERROR_IRQ_CFG0 + 4)).toBe(0x00ffffff);
  });

  it('PRIQ registers exist only with PRI (RAZ/WI otherwise)', () => {
    const no = fresh();
    no.w64(R.PRIQ_BASE, 0x4000_0000_0001_0004n);
    no.w32(R.PRIQ_IRQ_CFG0, 0x1000);
    no.w32(R.PRIQ_IRQ_CFG1, 5);
    no.w32(R.PRIQ_PROD, 3);
    no.w32(R.PRIQ_CONS, 3);
    expect([no.r64(R.PRIQ_BASE), no.r64(R.PRIQ_IRQ_CFG0)]).toEqual([0n, 0n]);
    expect([no.r32(R.PRIQ_IRQ_CFG1), no.r32(R.PRIQ_PROD), no.r32(R.PRIQ_CONS)]).toEqual([0, 0, 0]);
    const yes = fresh({ smmu: { features: { pri: true } } });
    yes.w64(R.PRIQ_BASE, 0x4000_0000_0001_0004n);
    yes.w64(R.PRIQ_IRQ_CFG0, 0x1000n);
    yes.w32(R.PRIQ_IRQ_CFG1, 5);
    yes.w32(R.PRIQ_IRQ_CFG2, 0xff);
    yes.w32(R.PRIQ_PROD, 3);
    yes.w32(R.PRIQ_CONS, 0x80000002);
    expect([yes.r64(R.PRIQ_BASE), yes.r64(R.PRIQ_IRQ_CFG0)]).toEqual([
      0x4000_0000_0001_0004n,
      0x1000n,
    ]);
    expect([
      yes.r32(R.PRIQ_IRQ_CFG1),
      yes.r32(R.PRIQ_IRQ_CFG2),
      yes.r32(R.PRIQ_PROD),
      yes.r32(R.PRIQ_CONS),
    ]).toEqual([5, 0x3f, 3, 0x80000002]);
  });
});

describe('handshakes', () => {
  it('CR0 → CR0ACK: each enable acknowledged, one bit at a time as Linux does', () => {
    const sw = fresh();
    expect(sw.cr0(0x8)).toBe(0x8);
    expect(sw.cr0(0xc)).toBe(0xc);
    expect(sw.cr0(0xd)).toBe(0xd);
    expect(sw.cr0(0x0)).toBe(0x0);
  });

  it('IRQ_CTRL → IRQ_CTRLACK', () => {
    const sw = fresh();
    expect(sw.irqCtrl(GERROR_IRQEN | EVENTQ_IRQEN)).toBe(0x5);
    expect(sw.irqCtrl(EVENTQ_IRQEN)).toBe(0x4);
    expect(sw.irqCtrl(0)).toBe(0);
    expect(sw.irqCtrl(PRIQ_IRQEN)).toBe(0); // no PRI
  });

  it('GBPA: a write with Update=0 is ignored; with Update=1 it takes effect and Update reads 0', () => {
    const sw = fresh();
    sw.w32(R.GBPA, 0x100000); // ABORT without Update
    expect(sw.r32(R.GBPA)).toBe(0x1000);
    sw.w32(R.GBPA, 0x8010_0000); // ABORT with Update
    expect(sw.r32(R.GBPA)).toBe(0x0010_0000);
    sw.w32(R.GBPA, 0x0000_1000); // Update=0 again: ignored
    expect(sw.r32(R.GBPA)).toBe(0x0010_0000);
    sw.w32(R.GBPA, 0x8003_2305); // MemAttr=5, ALLOCCFG=3, SHCFG=2, PRIVCFG=3
    expect(sw.r32(R.GBPA)).toBe(0x0003_2305);
    expect(sw.r32(R.GBPA) >>> 31).toBe(0);
  });
});

describe('guarded registers ignore writes while guarded', () => {
  it('CMDQ_BASE (both widths) and CMDQ_CONS while CMDQEN=1; CMDQ_PROD is not guarded', () => {
    const sw = fresh();
    sw.w64(R.CMDQ_BASE, BigInt(CMDQ_PA) | 4n);
    sw.cr0(CMDQEN);
    sw.w64(R.CMDQ_BASE, 0x1234_0000n);
    sw.w32(R.CMDQ_BASE, 0x5678_0000);
    sw.w32(R.CMDQ_BASE + 4, 0x1);
    sw.w32(R.CMDQ_CONS, 3);
    expect(sw.r64(R.CMDQ_BASE)).toBe(BigInt(CMDQ_PA) | 4n);
    expect(sw.r32(R.CMDQ_CONS)).toBe(0);
    sw.cr0(0);
    sw.w32(R.CMDQ_CONS, 3);
    sw.w64(R.CMDQ_BASE, 0x1234_0000n);
    expect(sw.r32(R.CMDQ_CONS)).toBe(3);
    expect(sw.r64(R.CMDQ_BASE)).toBe(0x1234_0000n);
  });

  it('EVENTQ_BASE and EVENTQ_PROD while EVENTQEN=1; EVENTQ_CONS is not guarded', () => {
    const sw = fresh();
    sw.w64(R.EVENTQ_BASE, BigInt(EVTQ_PA) | 4n);
    sw.cr0(EVENTQEN);
    sw.w64(R.EVENTQ_BASE, 0x1234_0000n);
    sw.w32(R.EVENTQ_BASE + 4, 1);
    sw.w32(R.EVENTQ_PROD, 5);
    sw.w32(R.EVENTQ_CONS, 0);
    expect(sw.r64(R.EVENTQ_BASE)).toBe(BigInt(EVTQ_PA) | 4n);
    expect(sw.r32(R.EVENTQ_PROD)).toBe(0);
    sw.cr0(0);
    sw.w32(R.EVENTQ_PROD, 5);
    expect(sw.r32(R.EVENTQ_PROD)).toBe(5);
  });

  it('STRTAB_BASE, STRTAB_BASE_CFG, CR1 and CR2 while SMMUEN=1', () => {
    const sw = fresh();
    sw.w64(R.STRTAB_BASE, BigInt(STRTAB_PA));
    sw.w32(R.STRTAB_BASE_CFG, 8);
    sw.w32(R.CR1, 0xd75);
    sw.w32(R.CR2, 0x6);
    sw.cr0(SMMUEN);
    sw.w64(R.STRTAB_BASE, BigInt(RAM));
    sw.w32(R.STRTAB_BASE, 0);
    sw.w32(R.STRTAB_BASE + 4, 0x4000_0000);
    sw.w32(R.STRTAB_BASE_CFG, 0x10210);
    sw.w32(R.CR1, 0);
    sw.w32(R.CR2, 0);
    expect([
      sw.r64(R.STRTAB_BASE),
      sw.r32(R.STRTAB_BASE_CFG),
      sw.r32(R.CR1),
      sw.r32(R.CR2),
    ]).toEqual([BigInt(STRTAB_PA), 8, 0xd75, 0x6]);
    // CMDQ/EVENTQ registers are not guarded by SMMUEN
    sw.w64(R.CMDQ_BASE, 0x40n);
    expect(sw.r64(R.CMDQ_BASE)).toBe(0x40n);
    sw.cr0(0);
    sw.w32(R.CR1, 0);
    sw.w32(R.STRTAB_BASE_CFG, 0x10210);
    expect([sw.r32(R.CR1), sw.r32(R.STRTAB_BASE_CFG)]).toEqual([0, 0x10210]);
  });

  it('GERROR_IRQ_CFG0/1/2 while GERROR_IRQEN=1, not while only EVENTQ_IRQEN=1', () => {
    const sw = fresh();
    sw.irqCtrl(EVENTQ_IRQEN);
    sw.w64(R.GERROR_IRQ_CFG0, 0x1000n);
    sw.w32(R.GERROR_IRQ_CFG1, 7);
    sw.w32(R.GERROR_IRQ_CFG2, 3);
    expect([
      sw.r64(R.GERROR_IRQ_CFG0),
      sw.r32(R.GERROR_IRQ_CFG1),
      sw.r32(R.GERROR_IRQ_CFG2),
    ]).toEqual([0x1000n, 7, 3]);
    sw.irqCtrl(GERROR_IRQEN);
    sw.w64(R.GERROR_IRQ_CFG0, 0x2000n);
    sw.w32(R.GERROR_IRQ_CFG0, 0x3000);
    sw.w32(R.GERROR_IRQ_CFG0 + 4, 0x1);
    sw.w32(R.GERROR_IRQ_CFG1, 8);
    sw.w32(R.GERROR_IRQ_CFG2, 4);
    expect([
      sw.r64(R.GERROR_IRQ_CFG0),
      sw.r32(R.GERROR_IRQ_CFG1),
      sw.r32(R.GERROR_IRQ_CFG2),
    ]).toEqual([0x1000n, 7, 3]);
  });

  it('EVENTQ_IRQ_CFG0/1/2 while EVENTQ_IRQEN=1, not while only GERROR_IRQEN=1', () => {
    const sw = fresh();
    sw.irqCtrl(GERROR_IRQEN);
    sw.w64(R.EVENTQ_IRQ_CFG0, 0x1000n);
    sw.w32(R.EVENTQ_IRQ_CFG1, 7);
    sw.w32(R.EVENTQ_IRQ_CFG2, 3);
    sw.irqCtrl(EVENTQ_IRQEN);
    sw.w64(R.EVENTQ_IRQ_CFG0, 0x2000n);
    sw.w32(R.EVENTQ_IRQ_CFG0 + 4, 1);
    sw.w32(R.EVENTQ_IRQ_CFG1, 8);
    sw.w32(R.EVENTQ_IRQ_CFG2, 4);
    expect([
      sw.r64(R.EVENTQ_IRQ_CFG0),
      sw.r32(R.EVENTQ_IRQ_CFG1),
      sw.r32(R.EVENTQ_IRQ_CFG2),
    ]).toEqual([0x1000n, 7, 3]);
    sw.irqCtrl(0);
    sw.w32(R.EVENTQ_IRQ_CFG1, 8);
    expect(sw.r32(R.EVENTQ_IRQ_CFG1)).toBe(8);
  });

  it('PRIQ_IRQ_CFG0/1/2 while PRIQ_IRQEN=1 (with PRI)', () => {
    const sw = fresh({ smmu: { features: { pri: true } } });
    sw.w64(R.PRIQ_IRQ_CFG0, 0x1000n);
    sw.w32(R.PRIQ_IRQ_CFG1, 7);
    sw.irqCtrl(PRIQ_IRQEN);
    sw.w64(R.PRIQ_IRQ_CFG0, 0x2000n);
    sw.w32(R.PRIQ_IRQ_CFG1, 8);
    sw.w32(R.PRIQ_IRQ_CFG2, 4);
    expect([sw.r64(R.PRIQ_IRQ_CFG0), sw.r32(R.PRIQ_IRQ_CFG1), sw.r32(R.PRIQ_IRQ_CFG2)]).toEqual([
      0x1000n,
      7,
      0,
    ]);
  });

  it('PRIQ_BASE and PRIQ_PROD while PRIQEN=1 (with PRI)', () => {
    const sw = fresh({ smmu: { features: { pri: true } } });
    sw.w64(R.PRIQ_BASE, 0x4000_1004n);
    sw.cr0(PRIQEN);
    sw.w64(R.PRIQ_BASE, 0x5000_1004n);
    sw.w32(R.PRIQ_PROD, 2);
    sw.w32(R.PRIQ_CONS, 1);
    expect([sw.r64(R.PRIQ_BASE), sw.r32(R.PRIQ_PROD), sw.r32(R.PRIQ_CONS)]).toEqual([
      0x4000_1004n,
      0,
      1,
    ]);
  });
});

describe('address map', () => {
  it('EVENTQ_PROD/CONS live on Page 1 at 0x100A8/0x100AC; the Page 0 aliases are RAZ/WI', () => {
    const sw = fresh();
    sw.w32(0x100ac, 0x3);
    sw.w32(0x100a8, 0x2);
    expect(sw.r32(0x100ac)).toBe(0x3);
    expect(sw.r32(0x100a8)).toBe(0x2);
    expect(sw.r32(0xa8)).toBe(0);
    expect(sw.r32(0xac)).toBe(0);
    sw.w32(0xa8, 0x7);
    sw.w32(0xac, 0x7);
    expect(sw.r32(0x100a8)).toBe(0x2);
    expect(sw.r32(0x100ac)).toBe(0x3);
  });

  it('PRIQ PROD/CONS Page 0 aliases are RAZ/WI', () => {
    const sw = fresh({ smmu: { features: { pri: true } } });
    sw.w32(R.PRIQ_CONS, 1);
    sw.w32(0xcc, 5);
    expect(sw.r32(0xcc)).toBe(0);
    expect(sw.r32(R.PRIQ_CONS)).toBe(1);
  });

  it('undefined Page 0 offsets and the Secure bank (no SECURE_IMPL) are RAZ/WI', () => {
    const sw = fresh();
    for (const off of [
      0x30, 0x34, 0x38, 0x3c, 0x58, 0x78, 0x120, 0x190, 0xe00, 0x8000, 0x8004, 0x8020, 0x8044,
      0x8060, 0x8ffc,
    ]) {
      sw.w32(off, 0xffffffff);
      expect([off, sw.r32(off)]).toEqual([off, 0]);
    }
    // nothing leaked into the real registers
    expect(sw.r32(R.CR0)).toBe(0);
    expect(sw.r32(R.GBPA)).toBe(0x1000);
  });

  it('the SMMU occupies two 64 KiB pages at 0x0905_0000', () => {
    const m = new Machine();
    expect(m.bus.deviceAt(SMMU)?.name).toBe('smmu');
    expect(m.bus.deviceAt(SMMU + 0x1_fffc)?.name).toBe('smmu');
    expect(m.bus.deviceAt(SMMU + 0x2_0000)).toBeUndefined();
    expect(m.bus.deviceAt(SMMU - 4)).toBeUndefined();
  });

  it('a 64-bit access to a pair of 32-bit registers acts on both', () => {
    const sw = fresh();
    // CR1 (0x28) and CR2 (0x2C)
    sw.w64(R.CR1, 0x0000_0006_0000_0d75n);
    expect(sw.r32(R.CR1)).toBe(0xd75);
    expect(sw.r32(R.CR2)).toBe(0x6);
    expect(sw.r64(R.CR1)).toBe(0x0000_0006_0000_0d75n);
    // EVENTQ_PROD/CONS as one 64-bit read on Page 1
    sw.w32(R.EVENTQ_CONS, 1);
    expect(sw.r64(R.EVENTQ_PROD)).toBe(1n << 32n);
  });

  it('8- and 16-bit accesses are RAZ/WI (model choice)', () => {
    const sw = fresh();
    sw.m.bus.write('host', SMMU + R.CR1, 1, 0xffn);
    sw.m.bus.write('host', SMMU + R.CR1, 2, 0xffffn);
    expect(sw.r32(R.CR1)).toBe(0);
    expect(sw.m.bus.read('host', SMMU + R.IDR0, 1)).toBe(0n);
    expect(sw.m.bus.read('host', SMMU + R.GBPA, 2)).toBe(0n);
  });
});
