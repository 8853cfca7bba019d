/**
 * SMMUv3 register map (IHI 0070, Page 0 and Page 1), declared once as data:
 * offset, width, access, fields, and the access semantics (write mask, reset value, guard,
 * acknowledge register). The device model and the vSMMU drive their registers from it through
 * one register file (regfile.ts); the hypervisor's emulation table, the MMIO log and the
 * decoders use the same declarations.
 */
import { bits, definedMask, place, wordMask, type Field } from '../bits.ts';

export type RegAccess = 'RO' | 'RW';

/**
 * A guard (IHI 0070 6.3.9.1, smmuv3.md §1.5): the register may be written only while this
 * enable bit is 0 in its control register and in that register's acknowledge register.
 */
export interface RegGuard {
  readonly reg: 'CR0' | 'IRQ_CTRL';
  readonly field: Field;
}

/**
 * A side effect of a write, named here and given by each instance (RegFileConfig.effects), run
 * after the write took effect: `enable` (CR0: an enable changed, e.g. CMDQEN 0→1 considers the
 * queue), `bypass` (GBPA: the attributes used while SMMUEN=0 changed), `errorAck` (GERRORN: an
 * error acknowledged, e.g. CMDQ_ERR lets consumption resume), `cmdqProd` (CMDQ_PROD: commands to
 * consider).
 */
export type RegEffect = 'enable' | 'bypass' | 'errorAck' | 'cmdqProd';

export interface RegDef {
  readonly name: string;
  /** offset from the SMMU base (Page 1 registers include the 0x10000) */
  readonly offset: number;
  /** 4 or 8 bytes */
  readonly width: 4 | 8;
  readonly access: RegAccess;
  readonly fields: readonly Field[];
  readonly doc?: string;
  /**
   * The bits software may write, per 32-bit word (two for a 64-bit register). Default: the bits
   * of `fields` (a RW register), none (RO). Given where a field is read-only (CMDQ_CONS.ERR).
   */
  readonly wmask?: readonly number[];
  /** the architectural reset value of the low word (default 0; the IMPLEMENTATION DEFINED ones are the instance's) */
  readonly reset?: number;
  /** writes are ignored while this enable is set (from SMMUv3.2; see RegGuard) */
  readonly guard?: RegGuard;
  /** the register that acknowledges a write of this one (CR0ACK, IRQ_CTRLACK): the update completes at once */
  readonly ack?: string;
  /** the side effect of a write (RegEffect) */
  readonly effect?: RegEffect;
}

const f = bits;

// ---- field declarations, by register -------------------------------------------------------

export const IDR0 = {
  S2P: f('S2P', 0, 0),
  S1P: f('S1P', 1, 1),
  TTF: f('TTF', 3, 2, {
    values: { 1: 'AArch32 LPAE', 2: 'AArch64', 3: 'AArch32 LPAE and AArch64' },
  }),
  COHACC: f('COHACC', 4, 4),
  BTM: f('BTM', 5, 5),
  HTTU: f('HTTU', 7, 6, {
    values: { 0: 'none', 1: 'Access flag', 2: 'Access flag and Dirty', 3: 'AF, Dirty and HAFT' },
  }),
  DORMHINT: f('DORMHINT', 8, 8),
  HYP: f('HYP', 9, 9),
  ATS: f('ATS', 10, 10),
  NS1ATS: f('NS1ATS', 11, 11),
  ASID16: f('ASID16', 12, 12),
  MSI: f('MSI', 13, 13),
  SEV: f('SEV', 14, 14),
  ATOS: f('ATOS', 15, 15),
  PRI: f('PRI', 16, 16),
  VMW: f('VMW', 17, 17),
  VMID16: f('VMID16', 18, 18),
  CD2L: f('CD2L', 19, 19),
  VATOS: f('VATOS', 20, 20),
  TTENDIAN: f('TTENDIAN', 22, 21, {
    values: { 0: 'mixed', 1: 'reserved', 2: 'little-endian only', 3: 'big-endian only' },
  }),
  ATSRECERR: f('ATSRECERR', 23, 23),
  STALL_MODEL: f('STALL_MODEL', 25, 24, {
    values: { 0: 'stall and terminate', 1: 'terminate only', 2: 'stall forced', 3: 'reserved' },
  }),
  TERM_MODEL: f('TERM_MODEL', 26, 26),
  ST_LEVEL: f('ST_LEVEL', 28, 27, { values: { 0: 'linear only', 1: '2-level supported' } }),
  RME_IMPL: f('RME_IMPL', 30, 30),
} as const;

export const IDR1 = {
  SIDSIZE: f('SIDSIZE', 5, 0),
  SSIDSIZE: f('SSIDSIZE', 10, 6),
  PRIQS: f('PRIQS', 15, 11),
  EVENTQS: f('EVENTQS', 20, 16),
  CMDQS: f('CMDQS', 25, 21),
  ATTR_PERMS_OVR: f('ATTR_PERMS_OVR', 26, 26),
  ATTR_TYPES_OVR: f('ATTR_TYPES_OVR', 27, 27),
  REL: f('REL', 28, 28),
  QUEUES_PRESET: f('QUEUES_PRESET', 29, 29),
  TABLES_PRESET: f('TABLES_PRESET', 30, 30),
  ECMDQ: f('ECMDQ', 31, 31),
} as const;

export const IDR2 = { BA_VATOS: f('BA_VATOS', 9, 0) } as const;

export const IDR3 = {
  HAD: f('HAD', 2, 2),
  PBHA: f('PBHA', 3, 3),
  XNX: f('XNX', 4, 4),
  PPS: f('PPS', 5, 5),
  MPAM: f('MPAM', 7, 7),
  FWB: f('FWB', 8, 8),
  STT: f('STT', 9, 9),
  RIL: f('RIL', 10, 10),
  BBML: f('BBML', 12, 11),
  E0PD: f('E0PD', 13, 13),
  PTWNNC: f('PTWNNC', 14, 14),
  DPT: f('DPT', 15, 15),
} as const;

export const IDR5 = {
  OAS: f('OAS', 2, 0, {
    values: {
      0: '32 bits',
      1: '36 bits',
      2: '40 bits',
      3: '42 bits',
      4: '44 bits',
      5: '48 bits',
      6: '52 bits',
      7: '56 bits',
    },
  }),
  GRAN4K: f('GRAN4K', 4, 4),
  GRAN16K: f('GRAN16K', 5, 5),
  GRAN64K: f('GRAN64K', 6, 6),
  VAX: f('VAX', 11, 10, { values: { 0: '48-bit VA', 1: '52-bit VA', 2: '56-bit VA' } }),
  STALL_MAX: f('STALL_MAX', 31, 16),
} as const;

export const IIDR = {
  Implementer: f('Implementer', 11, 0),
  Revision: f('Revision', 15, 12),
  Variant: f('Variant', 19, 16),
  ProductID: f('ProductID', 31, 20),
} as const;

export const AIDR = {
  ArchMinorRev: f('ArchMinorRev', 3, 0),
  ArchMajorRev: f('ArchMajorRev', 7, 4),
} as const;

export const CR0 = {
  SMMUEN: f('SMMUEN', 0, 0),
  PRIQEN: f('PRIQEN', 1, 1),
  EVENTQEN: f('EVENTQEN', 2, 2),
  CMDQEN: f('CMDQEN', 3, 3),
  ATSCHK: f('ATSCHK', 4, 4),
  VMW: f('VMW', 8, 6),
  DPT_WALK_EN: f('DPT_WALK_EN', 10, 10),
} as const;
/** CR0's (and CR0ACK's) single-bit fields as word masks, for the hot paths and the enables. */
export const CR0_BITS = {
  SMMUEN: wordMask(CR0.SMMUEN),
  PRIQEN: wordMask(CR0.PRIQEN),
  EVENTQEN: wordMask(CR0.EVENTQEN),
  CMDQEN: wordMask(CR0.CMDQEN),
  ATSCHK: wordMask(CR0.ATSCHK),
} as const;

const cacheability = {
  0: 'Non-cacheable',
  1: 'Write-Back',
  2: 'Write-Through',
  3: 'reserved (Non-cacheable)',
};
const shareability = {
  0: 'Non-shareable',
  1: 'reserved (Non-shareable)',
  2: 'Outer Shareable',
  3: 'Inner Shareable',
};
export const CR1 = {
  QUEUE_IC: f('QUEUE_IC', 1, 0, { values: cacheability }),
  QUEUE_OC: f('QUEUE_OC', 3, 2, { values: cacheability }),
  QUEUE_SH: f('QUEUE_SH', 5, 4, { values: shareability }),
  TABLE_IC: f('TABLE_IC', 7, 6, { values: cacheability }),
  TABLE_OC: f('TABLE_OC', 9, 8, { values: cacheability }),
  TABLE_SH: f('TABLE_SH', 11, 10, { values: shareability }),
} as const;
/** CR1 *_IC/*_OC and *_SH encodings (smmuv3.md §1.5: not the TCR-style ones) */
export const CR1_CACHE = { NC: 0, WB: 1, WT: 2 } as const;
export const CR1_SH = { NSH: 0, OSH: 2, ISH: 3 } as const;
/** CR1 with queues and tables Write-Back and Inner Shareable: what Linux writes (0xd75) */
export const CR1_WB_ISH =
  (place(CR1.QUEUE_IC, CR1_CACHE.WB) |
    place(CR1.QUEUE_OC, CR1_CACHE.WB) |
    place(CR1.QUEUE_SH, CR1_SH.ISH) |
    place(CR1.TABLE_IC, CR1_CACHE.WB) |
    place(CR1.TABLE_OC, CR1_CACHE.WB) |
    place(CR1.TABLE_SH, CR1_SH.ISH)) >>>
  0;

export const CR2 = {
  E2H: f('E2H', 0, 0),
  RECINVSID: f('RECINVSID', 1, 1),
  PTM: f('PTM', 2, 2),
} as const;
export const CR2_BITS = {
  E2H: wordMask(CR2.E2H),
  RECINVSID: wordMask(CR2.RECINVSID),
  PTM: wordMask(CR2.PTM),
} as const;

export const STATUSR = { DORMANT: f('DORMANT', 0, 0) } as const;

export const GBPA = {
  MemAttr: f('MemAttr', 3, 0),
  MTCFG: f('MTCFG', 4, 4),
  ALLOCCFG: f('ALLOCCFG', 11, 8),
  SHCFG: f('SHCFG', 13, 12, {
    values: { 0: 'Non-shareable', 1: 'use incoming', 2: 'Outer Shareable', 3: 'Inner Shareable' },
  }),
  PRIVCFG: f('PRIVCFG', 17, 16, {
    values: { 0: 'use incoming', 1: 'reserved (use incoming)', 2: 'unprivileged', 3: 'privileged' },
  }),
  INSTCFG: f('INSTCFG', 19, 18, {
    values: { 0: 'use incoming', 1: 'reserved (use incoming)', 2: 'data', 3: 'instruction' },
  }),
  ABORT: f('ABORT', 20, 20),
  Update: f('Update', 31, 31),
} as const;
export const GBPA_BITS = { ABORT: wordMask(GBPA.ABORT), Update: wordMask(GBPA.Update) } as const;

export const IRQ_CTRL = {
  GERROR_IRQEN: f('GERROR_IRQEN', 0, 0),
  PRIQ_IRQEN: f('PRIQ_IRQEN', 1, 1),
  EVENTQ_IRQEN: f('EVENTQ_IRQEN', 2, 2),
} as const;
export const IRQ_CTRL_BITS = {
  GERROR_IRQEN: wordMask(IRQ_CTRL.GERROR_IRQEN),
  PRIQ_IRQEN: wordMask(IRQ_CTRL.PRIQ_IRQEN),
  EVENTQ_IRQEN: wordMask(IRQ_CTRL.EVENTQ_IRQEN),
} as const;

export const GERROR = {
  CMDQ_ERR: f('CMDQ_ERR', 0, 0),
  EVENTQ_ABT_ERR: f('EVENTQ_ABT_ERR', 2, 2),
  PRIQ_ABT_ERR: f('PRIQ_ABT_ERR', 3, 3),
  MSI_CMDQ_ABT_ERR: f('MSI_CMDQ_ABT_ERR', 4, 4),
  MSI_EVENTQ_ABT_ERR: f('MSI_EVENTQ_ABT_ERR', 5, 5),
  MSI_PRIQ_ABT_ERR: f('MSI_PRIQ_ABT_ERR', 6, 6),
  MSI_GERROR_ABT_ERR: f('MSI_GERROR_ABT_ERR', 7, 7),
  SFM_ERR: f('SFM_ERR', 8, 8),
} as const;
/** GERROR bits this model can activate (Linux's ARM_SMMU_GERROR_ERR_MASK is 0x1fd). */
export const GERROR_IMPLEMENTED_MASK = 0x1fd;

/** *_IRQ_CFG0: ADDR[55:2] (64-bit) */
export const IRQ_CFG0 = { ADDR: f('ADDR', 55, 2) } as const;
export const IRQ_CFG1 = { DATA: f('DATA', 31, 0) } as const;
export const IRQ_CFG2 = { MemAttr: f('MemAttr', 3, 0), SH: f('SH', 5, 4) } as const;

export const STRTAB_BASE = { ADDR: f('ADDR', 55, 6), RA: f('RA', 62, 62) } as const;
export const STRTAB_BASE_CFG = {
  LOG2SIZE: f('LOG2SIZE', 5, 0),
  SPLIT: f('SPLIT', 10, 6),
  FMT: f('FMT', 17, 16, {
    values: { 0: 'linear', 1: '2-level', 2: 'reserved (linear)', 3: 'reserved (linear)' },
  }),
} as const;

/** CMDQ_BASE, EVENTQ_BASE, PRIQ_BASE share this layout (bit 62 is RA for CMDQ, WA for the others). */
export const Q_BASE = {
  LOG2SIZE: f('LOG2SIZE', 4, 0),
  ADDR: f('ADDR', 55, 5),
  RWA: f('RA/WA', 62, 62),
} as const;
/** *Q_PROD.WR and *Q_CONS.RD: index and wrap, [19:0] at the widest (queue.ts) */
export const Q_PROD = { WR: f('WR', 19, 0) } as const;
export const Q_CONS = { RD: f('RD', 19, 0) } as const;
export const CMDQ_CONS = {
  ERR: f('ERR', 30, 24, {
    values: { 0: 'CERROR_NONE', 1: 'CERROR_ILL', 2: 'CERROR_ABT', 3: 'CERROR_ATC_INV_SYNC' },
  }),
} as const;
/** CMDQ_CONS.ERR values: why command consumption stopped */
export const CERROR = { NONE: 0, ILL: 1, ABT: 2, ATC_INV_SYNC: 3 } as const;
export const EVENTQ_PROD = { OVFLG: f('OVFLG', 31, 31) } as const;
export const EVENTQ_CONS = { OVACKFLG: f('OVACKFLG', 31, 31) } as const;

// ---- offsets -------------------------------------------------------------------------------

export const PAGE1 = 0x10000;
export const SMMU_MMIO_SIZE = 0x20000;

export const OFF = {
  IDR0: 0x000,
  IDR1: 0x004,
  IDR2: 0x008,
  IDR3: 0x00c,
  IDR4: 0x010,
  IDR5: 0x014,
  IIDR: 0x018,
  AIDR: 0x01c,
  CR0: 0x020,
  CR0ACK: 0x024,
  CR1: 0x028,
  CR2: 0x02c,
  STATUSR: 0x040,
  GBPA: 0x044,
  AGBPA: 0x048,
  IRQ_CTRL: 0x050,
  IRQ_CTRLACK: 0x054,
  GERROR: 0x060,
  GERRORN: 0x064,
  GERROR_IRQ_CFG0: 0x068,
  GERROR_IRQ_CFG1: 0x070,
  GERROR_IRQ_CFG2: 0x074,
  STRTAB_BASE: 0x080,
  STRTAB_BASE_CFG: 0x088,
  CMDQ_BASE: 0x090,
  CMDQ_PROD: 0x098,
  CMDQ_CONS: 0x09c,
  EVENTQ_BASE: 0x0a0,
  EVENTQ_IRQ_CFG0: 0x0b0,
  EVENTQ_IRQ_CFG1: 0x0b8,
  EVENTQ_IRQ_CFG2: 0x0bc,
  PRIQ_BASE: 0x0c0,
  PRIQ_IRQ_CFG0: 0x0d0,
  PRIQ_IRQ_CFG1: 0x0d8,
  PRIQ_IRQ_CFG2: 0x0dc,
  GATOS_CTRL: 0x100,
  GATOS_SID: 0x108,
  GATOS_ADDR: 0x110,
  GATOS_PAR: 0x118,
  EVENTQ_PROD: PAGE1 + 0x0a8,
  EVENTQ_CONS: PAGE1 + 0x0ac,
  PRIQ_PROD: PAGE1 + 0x0c8,
  PRIQ_CONS: PAGE1 + 0x0cc,
} as const;
export type RegName = keyof typeof OFF;

const values = (o: Record<string, Field>): Field[] => Object.values(o);

/** The guards (RegGuard), by the enable they follow. */
export const GUARD = {
  SMMUEN: { reg: 'CR0', field: CR0.SMMUEN },
  CMDQEN: { reg: 'CR0', field: CR0.CMDQEN },
  EVENTQEN: { reg: 'CR0', field: CR0.EVENTQEN },
  PRIQEN: { reg: 'CR0', field: CR0.PRIQEN },
  GERROR_IRQEN: { reg: 'IRQ_CTRL', field: IRQ_CTRL.GERROR_IRQEN },
  EVENTQ_IRQEN: { reg: 'IRQ_CTRL', field: IRQ_CTRL.EVENTQ_IRQEN },
  PRIQ_IRQEN: { reg: 'IRQ_CTRL', field: IRQ_CTRL.PRIQ_IRQEN },
} as const satisfies Record<string, RegGuard>;

const reg = (
  name: RegName,
  width: 4 | 8,
  access: RegAccess,
  fields: readonly Field[],
  more: Omit<Partial<RegDef>, 'name' | 'offset' | 'width' | 'access' | 'fields'> = {},
): RegDef => ({ name, offset: OFF[name], width, access, fields, ...more });

const irqCfg = (q: 'GERROR' | 'EVENTQ' | 'PRIQ', guard: RegGuard): RegDef[] => [
  reg(`${q}_IRQ_CFG0`, 8, 'RW', values(IRQ_CFG0), { guard }),
  reg(`${q}_IRQ_CFG1`, 4, 'RW', values(IRQ_CFG1), { guard }),
  reg(`${q}_IRQ_CFG2`, 4, 'RW', values(IRQ_CFG2), { guard }),
];

/**
 * Every register the model implements, in offset order (Page 0, then Page 1). Reset values are
 * 0 unless given: the ID registers' and GBPA's are IMPLEMENTATION DEFINED, given by the instance.
 */
export const REGISTERS: readonly RegDef[] = [
  reg('IDR0', 4, 'RO', values(IDR0)),
  reg('IDR1', 4, 'RO', values(IDR1)),
  reg('IDR2', 4, 'RO', values(IDR2)),
  reg('IDR3', 4, 'RO', values(IDR3)),
  reg('IDR4', 4, 'RO', [], { doc: 'IMPLEMENTATION DEFINED (reads 0)' }),
  reg('IDR5', 4, 'RO', values(IDR5)),
  reg('IIDR', 4, 'RO', values(IIDR)),
  reg('AIDR', 4, 'RO', values(AIDR)),
  reg('CR0', 4, 'RW', values(CR0), { ack: 'CR0ACK', effect: 'enable' }),
  reg('CR0ACK', 4, 'RO', values(CR0)),
  reg('CR1', 4, 'RW', values(CR1), { guard: GUARD.SMMUEN }),
  reg('CR2', 4, 'RW', values(CR2), { guard: GUARD.SMMUEN }),
  reg('STATUSR', 4, 'RO', values(STATUSR)),
  reg('GBPA', 4, 'RW', values(GBPA), { effect: 'bypass' }),
  reg('AGBPA', 4, 'RW', [], { doc: 'IMPLEMENTATION DEFINED (RAZ/WI here)' }),
  reg('IRQ_CTRL', 4, 'RW', values(IRQ_CTRL), { ack: 'IRQ_CTRLACK' }),
  reg('IRQ_CTRLACK', 4, 'RO', values(IRQ_CTRL)),
  reg('GERROR', 4, 'RO', values(GERROR)),
  reg('GERRORN', 4, 'RW', values(GERROR), { effect: 'errorAck' }),
  ...irqCfg('GERROR', GUARD.GERROR_IRQEN),
  reg('STRTAB_BASE', 8, 'RW', values(STRTAB_BASE), { guard: GUARD.SMMUEN }),
  reg('STRTAB_BASE_CFG', 4, 'RW', values(STRTAB_BASE_CFG), { guard: GUARD.SMMUEN }),
  reg('CMDQ_BASE', 8, 'RW', values(Q_BASE), { guard: GUARD.CMDQEN }),
  reg('CMDQ_PROD', 4, 'RW', [Q_PROD.WR], { effect: 'cmdqProd' }),
  reg('CMDQ_CONS', 4, 'RW', [Q_CONS.RD, CMDQ_CONS.ERR], {
    guard: GUARD.CMDQEN,
    wmask: [wordMask(Q_CONS.RD)], // ERR is the SMMU's
  }),
  reg('EVENTQ_BASE', 8, 'RW', values(Q_BASE), { guard: GUARD.EVENTQEN }),
  ...irqCfg('EVENTQ', GUARD.EVENTQ_IRQEN),
  reg('PRIQ_BASE', 8, 'RW', values(Q_BASE), { guard: GUARD.PRIQEN }),
  ...irqCfg('PRIQ', GUARD.PRIQ_IRQEN),
  // the SMMU owns PROD while the queue is enabled
  reg('EVENTQ_PROD', 4, 'RW', [Q_PROD.WR, EVENTQ_PROD.OVFLG], { guard: GUARD.EVENTQEN }),
  reg('EVENTQ_CONS', 4, 'RW', [Q_CONS.RD, EVENTQ_CONS.OVACKFLG]),
  reg('PRIQ_PROD', 4, 'RW', [Q_PROD.WR, EVENTQ_PROD.OVFLG], { guard: GUARD.PRIQEN }),
  reg('PRIQ_CONS', 4, 'RW', [Q_CONS.RD, EVENTQ_CONS.OVACKFLG]),
];

/** The PRI queue's registers (implemented with IDR0.PRI=1). */
export const PRIQ_REG_NAMES: readonly string[] = REGISTERS.filter((r) =>
  r.name.startsWith('PRIQ_'),
).map((r) => r.name);
/** The MSI configuration registers, *_IRQ_CFG0..2 (used with IDR0.MSI=1). */
export const IRQ_CFG_REG_NAMES: readonly string[] = REGISTERS.filter((r) =>
  r.name.includes('_IRQ_CFG'),
).map((r) => r.name);

/** The CoreSight-style identification registers at 0xFD0..0xFFC, in offset order. */
export const ID_REG_NAMES = [
  'PIDR4',
  'PIDR5',
  'PIDR6',
  'PIDR7',
  'PIDR0',
  'PIDR1',
  'PIDR2',
  'PIDR3',
  'CIDR0',
  'CIDR1',
  'CIDR2',
  'CIDR3',
] as const;
export const ID_REGS_OFFSET = 0xfd0;
const ID_REGS_LAST = ID_REGS_OFFSET + 4 * (ID_REG_NAMES.length - 1);

/** The identification registers as register definitions (their values are IMPLEMENTATION DEFINED). */
export const ID_REGISTERS: readonly RegDef[] = ID_REG_NAMES.map((name, i) => ({
  name,
  offset: ID_REGS_OFFSET + 4 * i,
  width: 4,
  access: 'RO',
  fields: [],
}));

/** The bits software may write in each 32-bit word of `r` (RegDef.wmask). */
export function writeMask(r: RegDef): readonly number[] {
  if (r.wmask) return r.wmask;
  if (r.access === 'RO') return r.width === 8 ? [0, 0] : [0];
  return [...definedMask(r.fields, r.width / 4)];
}

const byOffset = new Map<number, RegDef>(REGISTERS.map((r) => [r.offset, r]));
const byName = new Map<string, RegDef>(REGISTERS.map((r) => [r.name, r]));

export function regByName(name: string): RegDef | undefined {
  return byName.get(name);
}

/**
 * Name the register an access at `offset` touches: `CMDQ_BASE`, or `CMDQ_BASE[63:32]` for the
 * upper half of a 64-bit register. Unknown offsets are named `page0+0x…` / `page1+0x…`.
 */
export function regNameAt(offset: number): string {
  const r = byOffset.get(offset);
  if (r) return r.name;
  const lo = byOffset.get(offset - 4);
  if (lo && lo.width === 8) return `${lo.name}[63:32]`;
  if (offset >= ID_REGS_OFFSET && offset <= ID_REGS_LAST)
    return ID_REG_NAMES[(offset - ID_REGS_OFFSET) >> 2]!;
  return offset >= PAGE1
    ? `page1+0x${(offset - PAGE1).toString(16)}`
    : `page0+0x${offset.toString(16)}`;
}

export function regAt(offset: number): RegDef | undefined {
  return byOffset.get(offset);
}
