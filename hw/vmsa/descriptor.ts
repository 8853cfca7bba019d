/**
 * VMSAv8-64 translation table descriptors (Arm ARM D8.3, reference smmuv3.md §6.2): the 64-bit
 * table, block and page descriptors of the 4K/16K/64K granules, declared once as fields of two
 * little-endian 32-bit words (lo = bits [31:0], hi = bits [63:32]) and shared by the walker
 * (hw/smmu/walk.ts), the io-pgtable library (hw/vmsa/io-pgtable.ts) and the scenario page-table
 * writer (scenarios/steps/pagetable.ts).
 *
 * The hot paths read a field as `(word >>> f.shift) & f.mask` with `f.word` telling which half;
 * `placeBig` gives a field's bits in a 64-bit descriptor, for the BigInt encoders.
 */
import { bits, place, type Field } from '../bits.ts';

/** Descriptor bits [1:0]. Bit 0 is the valid bit; 0b01 at level 3 is reserved (invalid). */
export const DESC_TYPE = { INVALID: 0b00, BLOCK: 0b01, TABLE: 0b11, PAGE: 0b11 } as const;
/** Type bit 0: the descriptor is valid. */
export const DESC_VALID = 0b01;

/** Shareability, descriptor SH[1:0] (the same encoding as TCR.SH0, CD.SH0 and STE.S2SH0). */
export const SH = { NSH: 0b00, OSH: 0b10, ISH: 0b11 } as const;

/** Fields common to every descriptor, and to both stages' blocks and pages. */
export const DESC = {
  Type: bits('Type', 1, 0, {
    values: { 0: 'invalid', 1: 'block (levels 0-2)', 2: 'invalid', 3: 'table / page (level 3)' },
  }),
  SH: bits('SH', 9, 8, {
    values: { 0: 'Non-shareable', 1: 'reserved', 2: 'Outer Shareable', 3: 'Inner Shareable' },
  }),
  AF: bits('AF', 10, 10, { values: { 0: 'not accessed (Access flag fault)', 1: 'accessed' } }),
  /** the next-level table / output address [47:12]; the granule's low bits are RES0 */
  OA: bits('OutputAddress', 47, 12, { doc: 'bits [47:g] of the next table or output address' }),
  /** 64KB granule with a 52-bit OA: OA[51:48] */
  OA_51_48: bits('OA[51:48]', 15, 12, { doc: '64KB granule, 52-bit PA: OA[51:48]' }),
  DBM: bits('DBM', 51, 51, { doc: 'dirty bit modifier (HTTU dirty state)' }),
  Contiguous: bits('Contiguous', 52, 52, {
    doc: 'one of a run of adjacent entries mapping one contiguous output range',
  }),
  /** ignored by the walk; Linux's io-pgtable uses bit 55 as SW_SYNC */
  SW: bits('Software', 58, 55, { doc: 'reserved for software use' }),
} as const satisfies Record<string, Field>;

/** AP[2:1] bits inside the AP field: AP[1] (EL0 access), AP[2] (read-only). */
export const AP_BIT = { UNPRIV: 0b01, RDONLY: 0b10 } as const;
/** AP[2:1] values (stage 1, EL1&0 regime). */
export const AP = { RW_PRIV: 0b00, RW: 0b01, RO_PRIV: 0b10, RO: 0b11 } as const;

/** Stage-1 block and page attributes. */
export const S1_DESC = {
  AttrIndx: bits('AttrIndx', 4, 2, { doc: 'index of the MAIR attribute' }),
  NS: bits('NS', 5, 5, { doc: 'Non-secure output (Secure translation regimes only)' }),
  AP: bits('AP[2:1]', 7, 6, {
    values: {
      0: 'RW at EL1, no EL0 access',
      1: 'RW at EL1 and EL0',
      2: 'RO at EL1, no EL0 access',
      3: 'RO at EL1 and EL0',
    },
  }),
  nG: bits('nG', 11, 11, { values: { 0: 'global', 1: 'not global (ASID-tagged)' } }),
  PXN: bits('PXN', 53, 53, { doc: 'privileged execute-never' }),
  UXN: bits('UXN', 54, 54, { doc: 'unprivileged execute-never (XN in a one-privilege regime)' }),
} as const satisfies Record<string, Field>;

/** Stage-2 MemAttr[3:0] values this model writes. */
export const S2_MEMATTR = { DEVICE_nGnRE: 0b0001, NORMAL_NC: 0b0101, NORMAL_WB: 0b1111 } as const;
/** S2AP[1:0] bits: bit 6 read, bit 7 write. */
export const S2AP = { NONE: 0b00, READ: 0b01, WRITE: 0b10, RW: 0b11 } as const;
/** Stage-2 XN[1:0] with FEAT_XNX (without it only XN[1] counts: set = execute-never). */
export const S2_XN = { EXEC: 0b00, NO_EL1: 0b01, NONE: 0b10, NO_EL0: 0b11 } as const;

/** Stage-2 block and page attributes. */
export const S2_DESC = {
  MemAttr: bits('MemAttr', 5, 2, {
    values: {
      [S2_MEMATTR.DEVICE_nGnRE]: 'Device-nGnRE',
      [S2_MEMATTR.NORMAL_NC]: 'Normal, Outer+Inner Non-cacheable',
      [S2_MEMATTR.NORMAL_WB]: 'Normal, Outer+Inner Write-Back',
    },
  }),
  S2AP: bits('S2AP', 7, 6, {
    values: { 0: 'no access', 1: 'read-only', 2: 'write-only', 3: 'read/write' },
  }),
  XN: bits('XN', 54, 53, {
    values: {
      0: 'executable',
      1: 'not executable at EL1 (FEAT_XNX)',
      2: 'not executable',
      3: 'not executable at EL0 (FEAT_XNX)',
    },
  }),
} as const satisfies Record<string, Field>;

/** Table descriptor attributes (stage 1 hierarchical attributes; ignored at stage 2). */
export const TABLE_DESC = {
  PXNTable: bits('PXNTable', 59, 59),
  XNTable: bits('UXNTable', 60, 60, { doc: 'XNTable in a one-privilege regime' }),
  APTable: bits('APTable', 62, 61, {
    values: {
      0: 'no effect',
      1: 'no EL0 access below',
      2: 'no write access below',
      3: 'no write, no EL0 access below',
    },
  }),
  NSTable: bits('NSTable', 63, 63),
} as const satisfies Record<string, Field>;

/** A field's bits inside a 64-bit descriptor (single-word fields). */
export function placeBig(f: Field, value: number): bigint {
  return BigInt(place(f, value)) << BigInt(32 * f.word);
}

/** The mask of a field inside a 64-bit descriptor. */
export function maskBig(f: Field): bigint {
  return ((1n << BigInt(f.width)) - 1n) << BigInt(f.lsb);
}

/** Stage-1 leaf attributes: everything but the type and the address. */
export interface S1LeafAttrs {
  attrIndx: number;
  /** AP[2:1] */
  ap: number;
  sh: number;
  af: boolean;
  ng: boolean;
  pxn: boolean;
  uxn: boolean;
  contiguous?: boolean;
}

/** Stage-2 leaf attributes: everything but the type and the address. */
export interface S2LeafAttrs {
  memAttr: number;
  s2ap: number;
  sh: number;
  af: boolean;
  /** XN[1:0] */
  xn: number;
  contiguous?: boolean;
}

/** The attribute bits of a stage-1 block or page descriptor. */
export function s1LeafAttrs(a: S1LeafAttrs): bigint {
  const lo =
    place(S1_DESC.AttrIndx, a.attrIndx) |
    place(S1_DESC.AP, a.ap) |
    place(DESC.SH, a.sh) |
    place(DESC.AF, a.af ? 1 : 0) |
    place(S1_DESC.nG, a.ng ? 1 : 0);
  let hi = place(S1_DESC.PXN, a.pxn ? 1 : 0) | place(S1_DESC.UXN, a.uxn ? 1 : 0);
  if (a.contiguous) hi |= place(DESC.Contiguous, 1);
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** The attribute bits of a stage-2 block or page descriptor. */
export function s2LeafAttrs(a: S2LeafAttrs): bigint {
  const lo =
    place(S2_DESC.MemAttr, a.memAttr) |
    place(S2_DESC.S2AP, a.s2ap) |
    place(DESC.SH, a.sh) |
    place(DESC.AF, a.af ? 1 : 0);
  let hi = place(S2_DESC.XN, a.xn);
  if (a.contiguous) hi |= place(DESC.Contiguous, 1);
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Bits [47:12] of a descriptor: the table or output address field. */
export const OA_MASK = maskBig(DESC.OA);
/** bits OA[51:48] move down by this much into the 64KB granule's [15:12] */
const OA52_FOLD = BigInt(48 - DESC.OA_51_48.lsb);

/**
 * The address bits of a descriptor for `pa` (granule-aligned): bits [47:12], with `fold52`
 * (64KB granule, 52-bit OA) PA[51:48] in bits [15:12].
 */
export function oaToDesc(pa: number, fold52: boolean): bigint {
  const p = BigInt(pa);
  if (fold52) return (p | (p >> OA52_FOLD)) & OA_MASK;
  return p & OA_MASK;
}

/** The address in a descriptor's address bits (the inverse of oaToDesc). */
export function descToOa(desc: bigint, fold52: boolean): number {
  const p = desc & OA_MASK;
  if (!fold52) return Number(p);
  return Number((p | (p << OA52_FOLD)) & (OA_MASK << 4n));
}

// hot-path caches for the walker, checked against the declarations once
const OA_HI_MASK = (1 << (DESC.OA.lsb + DESC.OA.width - 32)) - 1;
const OA52_SH = DESC.OA_51_48.shift;
const OA52_M = DESC.OA_51_48.mask;
const TWO32 = 0x1_0000_0000;
const TWO48 = 2 ** 48;

/**
 * The address field of a descriptor given as halves, for an entry mapping 2^`shift` bytes:
 * bits [47:shift], plus OA[51:48] from bits [15:12] with `fold52`.
 */
export function descOA(lo: number, hi: number, shift: number, fold52: boolean): number {
  const loPart = shift >= 32 ? 0 : (lo & (-1 << shift)) >>> 0;
  const hiPart = shift > 32 ? hi & OA_HI_MASK & (-1 << (shift - 32)) : hi & OA_HI_MASK;
  let oa = hiPart * TWO32 + loPart;
  if (fold52) oa += ((lo >>> OA52_SH) & OA52_M) * TWO48;
  return oa;
}
