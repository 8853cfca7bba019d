/**
 * Stream Table Entry (IHI 0070 5.2): 64 bytes. Fields, decode and the SteIllegal() checks
 * (reference §2.4), declared once and shared by the SMMU, the hypervisor's sanitizer, the
 * host driver and the decoders.
 */
import { dw, get, definedMask, type Field } from '../bits.ts';
import type { SmmuFeatures } from './features.ts';
import { OAS_BITS } from './features.ts';
import { s2StartLevel, s2WalkConsistent, tg0Shift } from '../vmsa/geometry.ts';

export const STE_WORDS = 16;
export const STE_BYTES = 64;

const cache = {
  0: 'Non-cacheable',
  1: 'WB read-allocate',
  2: 'WT read-allocate',
  3: 'WB no read-allocate',
};
const share = { 0: 'Non-shareable', 1: 'reserved', 2: 'Outer Shareable', 3: 'Inner Shareable' };

export const CONFIG_MEANING: Readonly<Record<number, string>> = {
  0: 'abort',
  1: 'reserved (abort)',
  2: 'reserved (abort)',
  3: 'reserved (abort)',
  4: 'S1 bypass, S2 bypass',
  5: 'S1 translate, S2 bypass',
  6: 'S1 bypass, S2 translate',
  7: 'S1 translate, S2 translate (nested)',
};

export const STE = {
  // DW0
  V: dw(0, 'V', 0, 0, { values: { 0: 'invalid (C_BAD_STE)', 1: 'valid' } }),
  Config: dw(0, 'Config', 3, 1, { values: CONFIG_MEANING }),
  S1Fmt: dw(0, 'S1Fmt', 5, 4, {
    values: {
      0: 'linear',
      1: '2-level, 4KB leaf tables',
      2: '2-level, 64KB leaf tables',
      3: 'reserved (linear)',
    },
  }),
  S1ContextPtr: dw(0, 'S1ContextPtr', 55, 6, {
    doc: 'address of the CD or CD table, 64-byte aligned; an IPA when stage 2 is enabled',
  }),
  S1CDMax: dw(0, 'S1CDMax', 63, 59, {
    doc: 'log2 of the number of CDs; 0 means substreams are disabled (one CD)',
  }),
  // DW1
  S1DSS: dw(1, 'S1DSS', 1, 0, {
    values: { 0: 'terminate', 1: 'bypass stage 1', 2: 'substream 0', 3: 'reserved (terminate)' },
  }),
  S1CIR: dw(1, 'S1CIR', 3, 2, { values: cache }),
  S1COR: dw(1, 'S1COR', 5, 4, { values: cache }),
  S1CSH: dw(1, 'S1CSH', 7, 6, { values: share }),
  S2HWU: dw(1, 'S2HWU59..62', 11, 8, { doc: 'stage-2 PBHA bits 59..62' }),
  DRE: dw(1, 'DRE', 12, 12, { doc: 'destructive read enable' }),
  CONT: dw(1, 'CONT', 16, 13, { doc: 'contiguous hint: 2^CONT identical STEs' }),
  DCP: dw(1, 'DCP', 17, 17),
  PPAR: dw(1, 'PPAR', 18, 18),
  MEV: dw(1, 'MEV', 19, 19, { values: { 0: 'do not merge events', 1: 'events may be merged' } }),
  SW_RESERVED: dw(1, 'SW_RESERVED', 23, 20),
  S1PIE: dw(1, 'S1PIE', 24, 24),
  S2FWB: dw(1, 'S2FWB', 25, 25),
  S1MPAM: dw(1, 'S1MPAM', 26, 26),
  S1STALLD: dw(1, 'S1STALLD', 27, 27, {
    values: { 0: 'stage-1 stalls allowed', 1: 'stage-1 stalls disallowed' },
  }),
  EATS: dw(1, 'EATS', 29, 28, {
    values: {
      0: 'ATS disabled',
      1: 'full ATS',
      2: 'split-stage ATS',
      3: 'full ATS with DPT checks',
    },
  }),
  STRW: dw(1, 'STRW', 31, 30, {
    values: { 0: 'NS-EL1', 1: 'reserved', 2: 'NS-EL2', 3: 'reserved' },
  }),
  MemAttr: dw(1, 'MemAttr', 35, 32, {
    doc: 'memory type override (stage-2 MemAttr encoding), used when MTCFG=1',
  }),
  MTCFG: dw(1, 'MTCFG', 36, 36, {
    values: { 0: 'use incoming memory type', 1: 'replace the type with MemAttr' },
  }),
  ALLOCCFG: dw(1, 'ALLOCCFG', 40, 37, {
    doc: '0b0xxx use incoming allocation hints, 0b1RWT override',
  }),
  SHCFG: dw(1, 'SHCFG', 45, 44, {
    values: { 0: 'Non-shareable', 1: 'use incoming', 2: 'Outer Shareable', 3: 'Inner Shareable' },
  }),
  NSCFG: dw(1, 'NSCFG', 47, 46, { doc: 'Secure STEs only' }),
  PRIVCFG: dw(1, 'PRIVCFG', 49, 48, {
    values: { 0: 'use incoming', 1: 'reserved', 2: 'unprivileged', 3: 'privileged' },
  }),
  INSTCFG: dw(1, 'INSTCFG', 51, 50, {
    values: { 0: 'use incoming', 1: 'reserved', 2: 'data', 3: 'instruction' },
  }),
  IMPDEF1: dw(1, 'IMPLEMENTATION_DEFINED', 63, 52),
  // DW2
  S2VMID: dw(2, 'S2VMID', 15, 0),
  IMPDEF2: dw(2, 'IMPLEMENTATION_DEFINED', 31, 16),
  S2T0SZ: dw(2, 'S2T0SZ', 37, 32, { doc: 'IPA size = 64 - S2T0SZ bits' }),
  S2SL0: dw(2, 'S2SL0', 39, 38, {
    doc: 'stage-2 start level (VTCR_EL2.SL0 encoding, depends on S2TG)',
  }),
  S2IR0: dw(2, 'S2IR0', 41, 40, { values: cache }),
  S2OR0: dw(2, 'S2OR0', 43, 42, { values: cache }),
  S2SH0: dw(2, 'S2SH0', 45, 44, { values: share }),
  S2TG: dw(2, 'S2TG', 47, 46, { values: { 0: '4KB', 1: '64KB', 2: '16KB', 3: 'reserved' } }),
  S2PS: dw(2, 'S2PS', 50, 48, {
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
  S2AA64: dw(2, 'S2AA64', 51, 51, {
    values: { 0: 'VMSAv8-32 LPAE tables', 1: 'VMSAv8-64 tables' },
  }),
  S2ENDI: dw(2, 'S2ENDI', 52, 52, {
    values: { 0: 'little-endian tables', 1: 'big-endian tables' },
  }),
  S2AFFD: dw(2, 'S2AFFD', 53, 53, {
    values: { 0: 'Access flag faults enabled', 1: 'no Access flag faults (AF treated as 1)' },
  }),
  S2PTW: dw(2, 'S2PTW', 54, 54, {
    values: { 0: 'off', 1: 'S1 walks and CD fetches to S2 Device memory fault' },
  }),
  S2HD: dw(2, 'S2HD', 55, 55, {
    values: { 0: 'no hardware dirty-state update', 1: 'hardware dirty-state update (HTTU)' },
  }),
  S2HA: dw(2, 'S2HA', 56, 56, {
    values: { 0: 'no hardware Access flag update', 1: 'hardware Access flag update (HTTU)' },
  }),
  S2S: dw(2, 'S2S', 57, 57, {
    values: { 0: 'stage-2 faults terminate', 1: 'stage-2 faults stall' },
  }),
  S2R: dw(2, 'S2R', 58, 58, {
    values: { 0: 'stage-2 faults not recorded', 1: 'record stage-2 faults' },
  }),
  // DW3
  S2TTB: dw(3, 'S2TTB', 55, 4, {
    doc: 'stage-2 translation table base, 16-byte aligned; must lie within the effective S2PS',
  }),
} as const satisfies Record<string, Field>;

export const STE_FIELDS: readonly Field[] = Object.values(STE);
/** RES0 masks of DW0..DW3 (DW4+ hold features this model does not implement and are IGNORED). */
export const STE_RES0 = definedMask(STE_FIELDS, 8).map((m) => ~m >>> 0);

export const CFG = { ABORT: 0, BYPASS: 4, S1_TRANS: 5, S2_TRANS: 6, NESTED: 7 } as const;
export const EATS = { ABT: 0, TRANS: 1, S1CHK: 2, DPT: 3 } as const;
/** STE.S1Fmt values. */
export const S1FMT = { LINEAR: 0, L2_4K: 1, L2_64K: 2 } as const;
/** STE.S1DSS values. */
export const S1DSS = { TERMINATE: 0, BYPASS: 1, SSID0: 2 } as const;
/** STE.STRW values (Non-secure). */
export const STRW = { NSEL1: 0, EL2: 2 } as const;
/** STE.SHCFG values. */
export const SHCFG = { NSH: 0, INCOMING: 1, OSH: 2, ISH: 3 } as const;
/** STE.PRIVCFG and INSTCFG values (1 is reserved). */
export const PRIVCFG = { INCOMING: 0, UNPRIV: 2, PRIV: 3 } as const;
export const INSTCFG = { INCOMING: 0, DATA: 2, INSTR: 3 } as const;

/** The Level-1 Stream Table Descriptor (IHI 0070 5.1): 8 bytes. */
export const L1STD = {
  Span: dw(0, 'Span', 4, 0, {
    doc: '0 invalid; 1..11: the L2 table holds 2^(Span-1) STEs; 12..31 reserved, behave as 0',
  }),
  L2Ptr: dw(0, 'L2Ptr', 55, 6, {
    doc: 'L2 STE array, aligned to its size: bits [5+(Span-1):0] are treated as 0',
  }),
} as const satisfies Record<string, Field>;

/** The stage-1 and stage-2 enables of a Config value. */
export function cfgStage1(config: number): boolean {
  return (config & 0b101) === 0b101;
}
export function cfgStage2(config: number): boolean {
  return (config & 0b110) === 0b110;
}

/**
 * The stage-2 geometry of S2SL0, S2TG and S2T0SZ is VTCR_EL2's (hw/vmsa/geometry.ts):
 * s2StartLevel(S2SL0, S2TG), s2GranuleShift(S2TG) and s2WalkConsistent(S2SL0, S2TG, S2T0SZ).
 */
export { s2StartLevel, s2WalkConsistent, tg0Shift as s2GranuleShift };

/** Environment the STE checks depend on. */
export interface SteCheckEnv {
  readonly features: SmmuFeatures;
}

/** log2 of the effective output size from a PS/IPS encoding, capped at the OAS. */
export function effectivePs(psEnc: number, oas: number): number {
  const bitsFor = OAS_BITS[psEnc & 7] ?? 56;
  return Math.min(bitsFor, oas);
}

/**
 * SteIllegal(): the reason an STE is ILLEGAL (giving C_BAD_STE), or null when it is legal.
 * V=0 is reported as 'V=0'. Config 0b0xx is *not* illegal (it aborts silently).
 */
export function steIllegal(w: ArrayLike<number>, env: SteCheckEnv): string | null {
  const ft = env.features;
  if (get(w, STE.V) === 0) return 'V=0';
  const config = get(w, STE.Config);
  if ((config & 0b100) === 0) return null; // abort (or reserved, behaves as abort)
  const s1 = cfgStage1(config);
  const s2 = cfgStage2(config);
  if (s1 && !ft.s1p) return `Config=0b${config.toString(2)} enables stage 1 but IDR0.S1P=0`;
  if (s2 && !ft.s2p) return `Config=0b${config.toString(2)} enables stage 2 but IDR0.S2P=0`;

  if (ft.checkRes0) {
    for (let i = 0; i < 8; i++) {
      if ((w[i]! & STE_RES0[i]!) !== 0)
        return `RES0 bits set in DW${i >> 1} (word ${i}: 0x${((w[i]! & STE_RES0[i]!) >>> 0).toString(16)})`;
    }
    // attribute overrides are RES0 unless IDR1.ATTR_TYPES_OVR / ATTR_PERMS_OVR
    if (
      !ft.attrTypesOvr &&
      (get(w, STE.MemAttr) | get(w, STE.MTCFG) | get(w, STE.ALLOCCFG) | get(w, STE.SHCFG)) !== 0
    )
      return 'MemAttr/MTCFG/ALLOCCFG/SHCFG set but IDR1.ATTR_TYPES_OVR=0 (RES0)';
    if (!ft.attrPermsOvr && (get(w, STE.PRIVCFG) | get(w, STE.INSTCFG)) !== 0)
      return 'PRIVCFG/INSTCFG set but IDR1.ATTR_PERMS_OVR=0 (RES0)';
  }

  const s2s = get(w, STE.S2S);
  // ATS
  if (ft.ats && config !== CFG.BYPASS) {
    const eats = get(w, STE.EATS);
    if (eats === EATS.S1CHK) {
      if (config !== CFG.NESTED) return 'EATS=0b10 (split-stage) requires Config=0b111';
      if (s2s) return 'EATS=0b10 (split-stage) with S2S=1';
      if (ft.ns1ats) return 'EATS=0b10 (split-stage) but IDR0.NS1ATS=1';
    }
    if ((eats === EATS.TRANS || eats === EATS.DPT) && s2 && s2s && ft.archMinor >= 1)
      return `EATS=0b${eats.toString(2)} with stage 2 and S2S=1`;
    if (eats === EATS.DPT) return 'EATS=0b11 (DPT checks) but DPT is not implemented';
  }
  // StreamWorld (used for Config 0b101 only; IGNORED for 0b11x)
  if (config === CFG.S1_TRANS) {
    const strw = get(w, STE.STRW);
    if (strw & 1) return `STRW=0b${strw.toString(2)} is reserved for a Non-secure STE`;
    if (strw === 0b10 && !ft.hyp && ft.checkRes0)
      return 'STRW=0b10 (EL2) but IDR0.HYP=0 (STRW is RES0)';
  }
  // Stage 1
  if (s1) {
    if (get(w, STE.S1STALLD) && ft.stallModel !== 0)
      return 'S1STALLD=1 but stalls are not configurable (STALL_MODEL != 0b00)';
    const cdmax = get(w, STE.S1CDMax);
    if (ft.ssidSize !== 0 && cdmax > ft.ssidSize)
      return `S1CDMax=${cdmax} exceeds IDR1.SSIDSIZE=${ft.ssidSize}`;
    const fmt = get(w, STE.S1Fmt);
    if ((fmt === 1 || fmt === 2) && cdmax !== 0 && !ft.cd2l)
      return `S1Fmt=${fmt} (2-level CD table) but IDR0.CD2L=0`;
    const ptr = get(w, STE.S1ContextPtr) * 64;
    if (ptr >= 2 ** ft.oas)
      return `S1ContextPtr 0x${ptr.toString(16)} is outside the ${ft.oas}-bit ${s2 ? 'IPA' : 'PA'} range`;
  }
  // Stage 2
  if (s2) {
    if (s2s && ft.stallModel === 1) return 'S2S=1 but STALL_MODEL=0b01 (terminate only)';
    if (!s2s && ft.stallModel === 2) return 'S2S=0 but STALL_MODEL=0b10 (stall forced)';
    const aa64 = get(w, STE.S2AA64);
    if (aa64 && !(ft.ttf & 2)) return 'S2AA64=1 but AArch64 tables are not supported (IDR0.TTF)';
    if (!aa64 && !(ft.ttf & 1)) return 'S2AA64=0 but AArch32 tables are not supported (IDR0.TTF)';
    if (!aa64 && get(w, STE.S2FWB)) return 'S2FWB=1 with AArch32 stage-2 tables';
    const ha = get(w, STE.S2HA);
    const hd = get(w, STE.S2HD);
    if ((ha || hd) && ft.httu === 0) return 'S2HA/S2HD set but IDR0.HTTU=0';
    if (hd && ft.httu === 1) return 'S2HD=1 but IDR0.HTTU=0b01 (Access flag only)';
    const tg = get(w, STE.S2TG);
    if (tg === 3) return 'S2TG=0b11 is reserved';
    if ((tg === 0 && !ft.gran4k) || (tg === 1 && !ft.gran64k) || (tg === 2 && !ft.gran16k))
      return `S2TG=${tg} selects a granule IDR5 does not support`;
    const ps = effectivePs(get(w, STE.S2PS), ft.oas);
    const ttb = get(w, STE.S2TTB) * 16;
    if (ttb >= 2 ** ps)
      return `S2TTB 0x${ttb.toString(16)} is outside the effective ${ps}-bit S2PS range`;
    const t0sz = get(w, STE.S2T0SZ);
    const g = tg0Shift(tg);
    const maxT0sz = ft.stt ? (g === 16 ? 47 : 48) : 39;
    const ias = ft.ttf & 1 ? Math.max(ft.oas, 40) : ft.oas;
    // 4KB/16KB without DS: MAX(16, 64-IAS); 64KB: MAX(12, 64-IAS); SMMUv3.0: 64-IAS
    const minT0sz = ft.archMinor === 0 ? 64 - ias : Math.max(g === 16 ? 12 : 16, 64 - ias);
    if (t0sz > maxT0sz || t0sz < minT0sz) return `S2T0SZ=${t0sz} is outside ${minT0sz}..${maxT0sz}`;
    const sl0 = get(w, STE.S2SL0);
    if (!s2WalkConsistent(sl0, tg, t0sz))
      return `S2SL0=${sl0}, S2TG=${tg}, S2T0SZ=${t0sz} are inconsistent (start level and input size)`;
    const endi = get(w, STE.S2ENDI);
    if (ft.ttendian === 2 && endi)
      return 'S2ENDI=1 but the SMMU supports little-endian tables only';
    if (ft.ttendian === 3 && !endi) return 'S2ENDI=0 but the SMMU supports big-endian tables only';
  }
  // S2VMID width: used for Config 0b11x, and for 0b101 when S2P=1 and the StreamWorld is NS-EL1
  const vmidUsed = s2 || (config === CFG.S1_TRANS && ft.s2p && get(w, STE.STRW) === 0);
  if (vmidUsed && !ft.vmid16 && get(w, STE.S2VMID) >>> 8 !== 0)
    return `S2VMID=0x${get(w, STE.S2VMID).toString(16)} has bits [15:8] set but IDR0.VMID16=0`;
  return null;
}
