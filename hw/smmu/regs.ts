/**
 * SMMUv3 register map (IHI 0070, Page 0 and Page 1), declared once as data:
 * offset, width, access and fields. The device model, the hypervisor's emulation table,
 * the MMIO log and the decoders all use these declarations.
 */
import { bits, type Field } from '../bits.ts';

export type RegAccess = 'RO' | 'RW';

export interface RegDef {
  readonly name: string;
  /** offset from the SMMU base (Page 1 registers include the 0x10000) */
  readonly offset: number;
  /** 4 or 8 bytes */
  readonly width: 4 | 8;
  readonly access: RegAccess;
  readonly fields: readonly Field[];
  readonly doc?: string;
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

export const CR2 = {
  E2H: f('E2H', 0, 0),
  RECINVSID: f('RECINVSID', 1, 1),
  PTM: f('PTM', 2, 2),
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

export const IRQ_CTRL = {
  GERROR_IRQEN: f('GERROR_IRQEN', 0, 0),
  PRIQ_IRQEN: f('PRIQ_IRQEN', 1, 1),
  EVENTQ_IRQEN: f('EVENTQ_IRQEN', 2, 2),
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
export const CMDQ_CONS = {
  ERR: f('ERR', 30, 24, {
    values: { 0: 'CERROR_NONE', 1: 'CERROR_ILL', 2: 'CERROR_ABT', 3: 'CERROR_ATC_INV_SYNC' },
  }),
} as const;
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

/** Every register the model implements, in offset order. */
export const REGISTERS: readonly RegDef[] = [
  { name: 'IDR0', offset: OFF.IDR0, width: 4, access: 'RO', fields: values(IDR0) },
  { name: 'IDR1', offset: OFF.IDR1, width: 4, access: 'RO', fields: values(IDR1) },
  { name: 'IDR2', offset: OFF.IDR2, width: 4, access: 'RO', fields: values(IDR2) },
  { name: 'IDR3', offset: OFF.IDR3, width: 4, access: 'RO', fields: values(IDR3) },
  {
    name: 'IDR4',
    offset: OFF.IDR4,
    width: 4,
    access: 'RO',
    fields: [],
    doc: 'IMPLEMENTATION DEFINED (reads 0)',
  },
  { name: 'IDR5', offset: OFF.IDR5, width: 4, access: 'RO', fields: values(IDR5) },
  { name: 'IIDR', offset: OFF.IIDR, width: 4, access: 'RO', fields: values(IIDR) },
  { name: 'AIDR', offset: OFF.AIDR, width: 4, access: 'RO', fields: values(AIDR) },
  { name: 'CR0', offset: OFF.CR0, width: 4, access: 'RW', fields: values(CR0) },
  { name: 'CR0ACK', offset: OFF.CR0ACK, width: 4, access: 'RO', fields: values(CR0) },
  { name: 'CR1', offset: OFF.CR1, width: 4, access: 'RW', fields: values(CR1) },
  { name: 'CR2', offset: OFF.CR2, width: 4, access: 'RW', fields: values(CR2) },
  { name: 'STATUSR', offset: OFF.STATUSR, width: 4, access: 'RO', fields: values(STATUSR) },
  { name: 'GBPA', offset: OFF.GBPA, width: 4, access: 'RW', fields: values(GBPA) },
  {
    name: 'AGBPA',
    offset: OFF.AGBPA,
    width: 4,
    access: 'RW',
    fields: [],
    doc: 'IMPLEMENTATION DEFINED (RAZ/WI here)',
  },
  { name: 'IRQ_CTRL', offset: OFF.IRQ_CTRL, width: 4, access: 'RW', fields: values(IRQ_CTRL) },
  {
    name: 'IRQ_CTRLACK',
    offset: OFF.IRQ_CTRLACK,
    width: 4,
    access: 'RO',
    fields: values(IRQ_CTRL),
  },
  { name: 'GERROR', offset: OFF.GERROR, width: 4, access: 'RO', fields: values(GERROR) },
  { name: 'GERRORN', offset: OFF.GERRORN, width: 4, access: 'RW', fields: values(GERROR) },
  {
    name: 'GERROR_IRQ_CFG0',
    offset: OFF.GERROR_IRQ_CFG0,
    width: 8,
    access: 'RW',
    fields: values(IRQ_CFG0),
  },
  {
    name: 'GERROR_IRQ_CFG1',
    offset: OFF.GERROR_IRQ_CFG1,
    width: 4,
    access: 'RW',
    fields: values(IRQ_CFG1),
  },
  {
    name: 'GERROR_IRQ_CFG2',
    offset: OFF.GERROR_IRQ_CFG2,
    width: 4,
    access: 'RW',
    fields: values(IRQ_CFG2),
  },
  {
    name: 'STRTAB_BASE',
    offset: OFF.STRTAB_BASE,
    width: 8,
    access: 'RW',
    fields: values(STRTAB_BASE),
  },
  {
    name: 'STRTAB_BASE_CFG',
    offset: OFF.STRTAB_BASE_CFG,
    width: 4,
    access: 'RW',
    fields: values(STRTAB_BASE_CFG),
  },
  { name: 'CMDQ_BASE', offset: OFF.CMDQ_BASE, width: 8, access: 'RW', fields: values(Q_BASE) },
  { name: 'CMDQ_PROD', offset: OFF.CMDQ_PROD, width: 4, access: 'RW', fields: [f('WR', 19, 0)] },
  {
    name: 'CMDQ_CONS',
    offset: OFF.CMDQ_CONS,
    width: 4,
    access: 'RW',
    fields: [f('RD', 19, 0), CMDQ_CONS.ERR],
  },
  { name: 'EVENTQ_BASE', offset: OFF.EVENTQ_BASE, width: 8, access: 'RW', fields: values(Q_BASE) },
  {
    name: 'EVENTQ_IRQ_CFG0',
    offset: OFF.EVENTQ_IRQ_CFG0,
    width: 8,
    access: 'RW',
    fields: values(IRQ_CFG0),
  },
  {
    name: 'EVENTQ_IRQ_CFG1',
    offset: OFF.EVENTQ_IRQ_CFG1,
    width: 4,
    access: 'RW',
    fields: values(IRQ_CFG1),
  },
  {
    name: 'EVENTQ_IRQ_CFG2',
    offset: OFF.EVENTQ_IRQ_CFG2,
    width: 4,
    access: 'RW',
    fields: values(IRQ_CFG2),
  },
  { name: 'PRIQ_BASE', offset: OFF.PRIQ_BASE, width: 8, access: 'RW', fields: values(Q_BASE) },
  {
    name: 'PRIQ_IRQ_CFG0',
    offset: OFF.PRIQ_IRQ_CFG0,
    width: 8,
    access: 'RW',
    fields: values(IRQ_CFG0),
  },
  {
    name: 'PRIQ_IRQ_CFG1',
    offset: OFF.PRIQ_IRQ_CFG1,
    width: 4,
    access: 'RW',
    fields: values(IRQ_CFG1),
  },
  {
    name: 'PRIQ_IRQ_CFG2',
    offset: OFF.PRIQ_IRQ_CFG2,
    width: 4,
    access: 'RW',
    fields: values(IRQ_CFG2),
  },
  {
    name: 'EVENTQ_PROD',
    offset: OFF.EVENTQ_PROD,
    width: 4,
    access: 'RW',
    fields: [f('WR', 19, 0), EVENTQ_PROD.OVFLG],
  },
  {
    name: 'EVENTQ_CONS',
    offset: OFF.EVENTQ_CONS,
    width: 4,
    access: 'RW',
    fields: [f('RD', 19, 0), EVENTQ_CONS.OVACKFLG],
  },
  {
    name: 'PRIQ_PROD',
    offset: OFF.PRIQ_PROD,
    width: 4,
    access: 'RW',
    fields: [f('WR', 19, 0), EVENTQ_PROD.OVFLG],
  },
  {
    name: 'PRIQ_CONS',
    offset: OFF.PRIQ_CONS,
    width: 4,
    access: 'RW',
    fields: [f('RD', 19, 0), EVENTQ_CONS.OVACKFLG],
  },
];

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
  if (offset >= 0xfd0 && offset <= 0xffc) return ID_REG_NAMES[(offset - 0xfd0) >> 2]!;
  return offset >= PAGE1
    ? `page1+0x${(offset - PAGE1).toString(16)}`
    : `page0+0x${offset.toString(16)}`;
}

export function regAt(offset: number): RegDef | undefined {
  return byOffset.get(offset);
}

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
