/**
 * Context Descriptor (IHI 0070 5.4): 64 bytes, and the Level-1 CD descriptor. Fields and the
 * CdIllegal() checks (reference §3.3), declared once.
 */
import { dw, get, type Field } from '../bits.ts';
import type { SmmuFeatures } from './features.ts';
import { effectivePs } from './ste.ts';
import { tg0Shift, tg1Shift } from '../vmsa/geometry.ts';

export const CD_WORDS = 16;
export const CD_BYTES = 64;

const cache = { 0: 'Non-cacheable', 1: 'WB RA WA', 2: 'WT RA', 3: 'WB RA no-WA' };
const share = { 0: 'Non-shareable', 1: 'reserved', 2: 'Outer Shareable', 3: 'Inner Shareable' };
const ips = {
  0: '32 bits',
  1: '36 bits',
  2: '40 bits',
  3: '42 bits',
  4: '44 bits',
  5: '48 bits',
  6: '52 bits',
  7: '56 bits',
};

export const CD = {
  T0SZ: dw(0, 'T0SZ', 5, 0, { doc: 'TTB0 region size: 64 - T0SZ bits' }),
  TG0: dw(0, 'TG0', 7, 6, { values: { 0: '4KB', 1: '64KB', 2: '16KB', 3: 'reserved' } }),
  IR0: dw(0, 'IR0', 9, 8, { values: cache }),
  OR0: dw(0, 'OR0', 11, 10, { values: cache }),
  SH0: dw(0, 'SH0', 13, 12, { values: share }),
  EPD0: dw(0, 'EPD0', 14, 14, {
    values: { 0: 'TTB0 walks enabled', 1: 'no TTB0 walks; a miss gives F_TRANSLATION' },
  }),
  ENDI: dw(0, 'ENDI', 15, 15, { values: { 0: 'little-endian tables', 1: 'big-endian tables' } }),
  T1SZ: dw(0, 'T1SZ', 21, 16, { doc: 'TTB1 region size: 64 - T1SZ bits' }),
  TG1: dw(0, 'TG1', 23, 22, { values: { 0: 'reserved', 1: '16KB', 2: '4KB', 3: '64KB' } }),
  IR1: dw(0, 'IR1', 25, 24, { values: cache }),
  OR1: dw(0, 'OR1', 27, 26, { values: cache }),
  SH1: dw(0, 'SH1', 29, 28, { values: share }),
  EPD1: dw(0, 'EPD1', 30, 30, {
    values: { 0: 'TTB1 walks enabled', 1: 'no TTB1 walks; a miss gives F_TRANSLATION' },
  }),
  V: dw(0, 'V', 31, 31, { values: { 0: 'invalid (C_BAD_CD)', 1: 'valid' } }),
  IPS: dw(0, 'IPS', 34, 32, { values: ips }),
  AFFD: dw(0, 'AFFD', 35, 35, {
    values: { 0: 'Access flag faults enabled', 1: 'no Access flag faults (AF treated as 1)' },
  }),
  WXN: dw(0, 'WXN', 36, 36),
  UWXN: dw(0, 'UWXN', 37, 37),
  TBI: dw(0, 'TBI', 39, 38, {
    values: {
      0: 'no top-byte ignore',
      1: 'top byte ignored for TTB0',
      2: 'top byte ignored for TTB1',
      3: 'top byte ignored for TTB0 and TTB1',
    },
  }),
  PAN: dw(0, 'PAN', 40, 40),
  AA64: dw(0, 'AA64', 41, 41, { values: { 0: 'VMSAv8-32 LPAE tables', 1: 'VMSAv8-64 tables' } }),
  HD: dw(0, 'HD', 42, 42, {
    values: { 0: 'no hardware dirty-state update', 1: 'hardware dirty-state update (HTTU)' },
  }),
  HA: dw(0, 'HA', 43, 43, {
    values: { 0: 'no hardware Access flag update', 1: 'hardware Access flag update (HTTU)' },
  }),
  S: dw(0, 'S', 44, 44, { values: { 0: 'stage-1 faults terminate', 1: 'stage-1 faults stall' } }),
  R: dw(0, 'R', 45, 45, {
    values: { 0: 'stage-1 faults not recorded', 1: 'record stage-1 faults' },
  }),
  A: dw(0, 'A', 46, 46, {
    values: { 0: 'terminated transactions are RAZ/WI', 1: 'terminated transactions abort' },
  }),
  ASET: dw(0, 'ASET', 47, 47, {
    values: { 0: 'shared ASID set (broadcast TLBI applies)', 1: 'excluded from broadcast TLBI' },
  }),
  ASID: dw(0, 'ASID', 63, 48),
  NSCFG0: dw(1, 'NSCFG0', 0, 0),
  HAD0: dw(1, 'HAD0', 1, 1),
  TTB0: dw(1, 'TTB0', 55, 4, { doc: 'TTB0 translation table base, 16-byte aligned' }),
  HWU0: dw(1, 'HWU0g59..62', 63, 60),
  NSCFG1: dw(2, 'NSCFG1', 0, 0),
  HAD1: dw(2, 'HAD1', 1, 1),
  TTB1: dw(2, 'TTB1', 55, 4, { doc: 'TTB1 translation table base, 16-byte aligned' }),
  HWU1: dw(2, 'HWU1g59..62', 63, 60),
  MAIR0: dw(3, 'MAIR0', 31, 0, { doc: 'MAIR Attr0..Attr3 (one byte each)' }),
  MAIR1: dw(3, 'MAIR1', 63, 32, { doc: 'MAIR Attr4..Attr7 (one byte each)' }),
  AMAIR0: dw(4, 'AMAIR0', 31, 0),
  AMAIR1: dw(4, 'AMAIR1', 63, 32),
} as const satisfies Record<string, Field>;

export const CD_FIELDS: readonly Field[] = Object.values(CD);

/** Level-1 CD descriptor (8 bytes). */
export const L1CD = {
  V: dw(0, 'V', 0, 0, { values: { 0: 'invalid (C_BAD_SUBSTREAMID)', 1: 'valid' } }),
  L2Ptr: dw(0, 'L2Ptr', 55, 12, { doc: 'L2 CD table, 4KB aligned' }),
} as const satisfies Record<string, Field>;

/** log2 granule for CD.TG0 / CD.TG1: the VMSA encodings. */
export { tg0Shift, tg1Shift };

export interface CdCheckEnv {
  readonly features: SmmuFeatures;
  /** STE.S1STALLD of the STE that located the CD */
  readonly s1stalld: boolean;
  /** the StreamWorld uses only TTB0 (EL2 / EL3) */
  readonly singleRange: boolean;
  /** the STE uses an AArch32 stage 2 */
  readonly s2aa32: boolean;
}

function txszRange(ft: SmmuFeatures, g: number): [number, number] {
  const max = ft.stt ? (g === 16 ? 47 : 48) : 39;
  const min = ft.vax === 1 && g === 16 ? 12 : 16;
  return [min, max];
}

function granSupported(ft: SmmuFeatures, g: number): boolean {
  return (g === 12 && ft.gran4k) || (g === 14 && ft.gran16k) || (g === 16 && ft.gran64k);
}

/** CdIllegal(): the reason a CD is ILLEGAL (C_BAD_CD), or null. */
export function cdIllegal(w: ArrayLike<number>, env: CdCheckEnv): string | null {
  const ft = env.features;
  if (get(w, CD.V) === 0) return 'V=0';
  const s = get(w, CD.S);
  if (env.s1stalld && s) return 'CD.S=1 but STE.S1STALLD=1';
  if (ft.termModel && get(w, CD.A) === 0)
    return 'CD.A=0 but IDR0.TERM_MODEL=1 (terminated transactions must abort)';
  if (ft.stallModel === 1 && s) return 'CD.S=1 but STALL_MODEL=0b01 (terminate only)';
  if (ft.stallModel === 2 && !s) return 'CD.S=0 but STALL_MODEL=0b10 (stall forced)';
  const aa64 = get(w, CD.AA64);
  if (!aa64 && !(ft.ttf & 1)) return 'AA64=0 but AArch32 tables are not supported (IDR0.TTF)';
  if (aa64 && !(ft.ttf & 2)) return 'AA64=1 but AArch64 tables are not supported (IDR0.TTF)';
  if (aa64 && env.s2aa32) return 'AA64=1 with an AArch32 stage 2';
  const ha = get(w, CD.HA);
  const hd = get(w, CD.HD);
  if ((ha || hd) && ft.httu === 0) return 'HA/HD set but IDR0.HTTU=0';
  if (hd && ft.httu === 1) return 'HD=1 but IDR0.HTTU=0b01 (Access flag only)';
  const asid = get(w, CD.ASID);
  if (!ft.asid16 && asid >>> 8 !== 0)
    return `ASID=0x${asid.toString(16)} has bits [15:8] set but IDR0.ASID16=0`;
  const epd0 = env.singleRange ? 0 : get(w, CD.EPD0);
  const epd1 = env.singleRange ? 1 : get(w, CD.EPD1);
  const endi = get(w, CD.ENDI);
  if (!(epd0 && epd1)) {
    if (ft.ttendian === 2 && endi) return 'ENDI=1 but the SMMU supports little-endian tables only';
    if (ft.ttendian === 3 && !endi) return 'ENDI=0 but the SMMU supports big-endian tables only';
  }
  const ipsBits = effectivePs(get(w, CD.IPS), ft.oas);
  if (!epd0) {
    const g = tg0Shift(get(w, CD.TG0));
    if (g === 0) return 'TG0=0b11 is reserved';
    if (!granSupported(ft, g))
      return `TG0 selects a ${1 << (g - 10)}KB granule IDR5 does not support`;
    const [min, max] = txszRange(ft, g);
    const t0sz = get(w, CD.T0SZ);
    if (t0sz < min || t0sz > max) return `T0SZ=${t0sz} is outside ${min}..${max}`;
    const ttb0 = get(w, CD.TTB0) * 16;
    if (ttb0 >= 2 ** ipsBits)
      return `TTB0 0x${ttb0.toString(16)} is outside the effective ${ipsBits}-bit IPS range`;
  }
  if (!epd1) {
    const g = tg1Shift(get(w, CD.TG1));
    if (g === 0) return 'TG1=0b00 is reserved';
    if (!granSupported(ft, g))
      return `TG1 selects a ${1 << (g - 10)}KB granule IDR5 does not support`;
    const [min, max] = txszRange(ft, g);
    const t1sz = get(w, CD.T1SZ);
    if (t1sz < min || t1sz > max) return `T1SZ=${t1sz} is outside ${min}..${max}`;
    const ttb1 = get(w, CD.TTB1) * 16;
    if (ttb1 >= 2 ** ipsBits)
      return `TTB1 0x${ttb1.toString(16)} is outside the effective ${ipsBits}-bit IPS range`;
  }
  return null;
}
