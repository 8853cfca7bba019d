/**
 * Builders for the STEs and CDs the host driver installs — the same values Linux's
 * arm-smmu-v3 "make" functions produce (reference smmuv3.md §8.4, linux-sequence.md §3),
 * written here from those descriptions. Every entry is 16 little-endian 32-bit words, and
 * every field is set through the field tables in hw/smmu/ste.ts and cd.ts.
 *
 * Pointers are masked the way Linux masks them (bits [51:x]), which is narrower than the
 * architectural fields ([55:x]).
 */
import type { S1PgtableCfg } from '../../hw/vmsa/io-pgtable.ts';
import { set, setBig } from '../../hw/bits.ts';
import { STE, STE_WORDS, CFG, EATS, S1FMT, STRW, SHCFG } from '../../hw/smmu/ste.ts';
import { CD, CD_WORDS } from '../../hw/smmu/cd.ts';
import type { SmmuFeatures } from '../../hw/smmu/features.ts';
import { S1DSS } from './entry.ts';
import { RGN, SH } from '../../hw/vmsa/tcr.ts';
import { tg0Encoding } from '../../hw/vmsa/geometry.ts';

export { S1DSS };

/** STE.S1Fmt, SHCFG and STRW encodings, declared beside the fields. */
export { S1FMT, STRW };
/** STE.S1CIR/S1COR and CD.IRx/ORx: write-back read-allocate (STE) / write-back RA+WA (CD). */
export const CACHE_WB = RGN.WBWA;
/** Shareability: Inner Shareable. */
export const SH_ISH = SH.ISH;

/** The SMMU features the builders depend on (the driver's view, from the ID registers). */
export interface HostSmmuFeatures {
  /** IDR1.ATTR_TYPES_OVR: the STE attribute overrides (SHCFG...) exist */
  attrTypesOvr: boolean;
  /** stalling is possible (STALL_MODEL 0b00 or 0b10) */
  stalls: boolean;
  /** stalling is forced (STALL_MODEL 0b10) */
  stallForce?: boolean;
  /** the SMMU runs in the E2H StreamWorld (CR2.E2H=1, Linux's FEAT_E2H) */
  e2h?: boolean;
  /** IDR0.ATS (informational: whether a master gets ATS is the caller's `MasterOpts.ats`) */
  ats?: boolean;
}

/** How a master is attached. */
export interface MasterOpts {
  /** ATS is enabled for this master: EATS=TRANS */
  ats?: boolean;
  /** the master may stall: no S1STALLD, CD.S=1, STE.S2S=1 */
  stallEnabled?: boolean;
}

/** The driver's feature view of a simulated SMMU (CR2.E2H is not used by the host driver). */
export function hostFeaturesFrom(ft: Readonly<SmmuFeatures>): HostSmmuFeatures {
  return {
    attrTypesOvr: ft.attrTypesOvr,
    stalls: ft.stallModel !== 1,
    stallForce: ft.stallModel === 2,
    e2h: false,
    ats: ft.ats,
  };
}

const GENMASK_51_6 = ((1n << 52n) - 1n) & ~((1n << 6n) - 1n);
const GENMASK_51_4 = ((1n << 52n) - 1n) & ~((1n << 4n) - 1n);

function ste(): Uint32Array {
  return new Uint32Array(STE_WORDS);
}

function setMair(w: Uint32Array, mair: bigint): void {
  const m = BigInt.asUintN(64, mair);
  set(w, CD.MAIR0, Number(m & 0xffffffffn));
  set(w, CD.MAIR1, Number(m >> 32n));
}

/** Abort STE: V=1, Config=abort. */
export function makeAbortSte(): Uint32Array {
  const w = ste();
  set(w, STE.V, 1);
  set(w, STE.Config, CFG.ABORT);
  return w;
}

/** Bypass STE: V=1, Config=bypass, SHCFG=incoming when the overrides exist. */
export function makeBypassSte(ft: HostSmmuFeatures): Uint32Array {
  const w = ste();
  set(w, STE.V, 1);
  set(w, STE.Config, CFG.BYPASS);
  if (ft.attrTypesOvr) set(w, STE.SHCFG, SHCFG.INCOMING);
  return w;
}

/** Where a master's CD table is. */
export interface CdTableInfo {
  /** physical address of the CD (S1CDMax=0) or of the CD table */
  dma: bigint;
  /** log2 of the number of CDs (the field keeps 5 bits) */
  s1cdmax: number;
  /** S1FMT */
  s1fmt: number;
}

/**
 * Stage-1 STE pointing at a CD table (Linux arm_smmu_make_cdtable_ste): CD fetches WB-RA
 * Inner Shareable, S1STALLD for a non-stalling master on a stall-capable SMMU, EATS=TRANS with
 * ATS, SHCFG=incoming when S1DSS=bypass, STRW NS-EL1 (S2VMID 0) or EL2 with E2H.
 */
export function makeCdtableSte(
  ft: HostSmmuFeatures,
  master: MasterOpts,
  cdt: CdTableInfo,
  s1dss: number,
): Uint32Array {
  const w = ste();
  set(w, STE.V, 1);
  set(w, STE.Config, CFG.S1_TRANS);
  set(w, STE.S1Fmt, cdt.s1fmt);
  setBig(w, STE.S1ContextPtr, (BigInt.asUintN(64, cdt.dma) & GENMASK_51_6) >> 6n);
  set(w, STE.S1CDMax, cdt.s1cdmax);

  set(w, STE.S1DSS, s1dss);
  set(w, STE.S1CIR, CACHE_WB);
  set(w, STE.S1COR, CACHE_WB);
  set(w, STE.S1CSH, SH_ISH);
  if (ft.stalls && !master.stallEnabled) set(w, STE.S1STALLD, 1);
  set(w, STE.EATS, master.ats ? EATS.TRANS : EATS.ABT);
  if (ft.attrTypesOvr && s1dss === S1DSS.BYPASS) set(w, STE.SHCFG, SHCFG.INCOMING);
  if (ft.e2h) {
    set(w, STE.STRW, STRW.EL2);
  } else {
    set(w, STE.STRW, STRW.NSEL1);
    set(w, STE.S2VMID, 0); // VMID 0 is kept for stage-1 (stage-2 bypass) EL1 STEs
  }
  return w;
}

/** A VTCR-style stage-2 configuration (io-pgtable's names), as packed into STE DW2. */
export interface Vtcr {
  tsz: number;
  sl: number;
  irgn: number;
  orgn: number;
  sh: number;
  /** 0 4KB, 1 64KB, 2 16KB */
  tg: number;
  ps: number;
}

export interface S2Config {
  vmid: number;
  vtcr: Vtcr;
  /** stage-2 table base (VTTBR); masked to [51:4] */
  vttbr: bigint;
  /** the page tables use FWB (io-pgtable's S2FWB quirk) */
  s2fwb?: boolean;
  /** big-endian tables */
  endi?: boolean;
}

/**
 * Stage-2 STE (Linux arm_smmu_make_s2_domain_ste): EATS=TRANS with ATS, SHCFG=incoming when the
 * overrides exist, VMID + VTCR + S2AA64 + S2PTW + S2R (+S2S for a stalling master), S2TTB.
 */
export function makeS2Ste(ft: HostSmmuFeatures, master: MasterOpts, s2: S2Config): Uint32Array {
  const w = ste();
  set(w, STE.V, 1);
  set(w, STE.Config, CFG.S2_TRANS);
  set(w, STE.EATS, master.ats ? EATS.TRANS : EATS.ABT);
  if (s2.s2fwb) set(w, STE.S2FWB, 1);
  if (ft.attrTypesOvr) set(w, STE.SHCFG, SHCFG.INCOMING);

  set(w, STE.S2VMID, s2.vmid);
  set(w, STE.S2T0SZ, s2.vtcr.tsz);
  set(w, STE.S2SL0, s2.vtcr.sl);
  set(w, STE.S2IR0, s2.vtcr.irgn);
  set(w, STE.S2OR0, s2.vtcr.orgn);
  set(w, STE.S2SH0, s2.vtcr.sh);
  set(w, STE.S2TG, s2.vtcr.tg);
  set(w, STE.S2PS, s2.vtcr.ps);
  set(w, STE.S2AA64, 1);
  if (s2.endi) set(w, STE.S2ENDI, 1);
  set(w, STE.S2PTW, 1);
  if (master.stallEnabled) set(w, STE.S2S, 1);
  set(w, STE.S2R, 1);

  setBig(w, STE.S2TTB, (BigInt.asUintN(64, s2.vttbr) & GENMASK_51_4) >> 4n);
  return w;
}

/**
 * Nested STE, built as the kunit test builds it (reference §8.4): the stage-2 STE, with DW0
 * from the stage-1 (cdtable) STE and Config=nested, the stage-1 STE's DW1 merged into DW1,
 * and MEV set (merge events, to limit the event rate a guest can cause).
 */
export function makeNestedSte(
  ft: HostSmmuFeatures,
  master: MasterOpts,
  cdt: CdTableInfo,
  s1dss: number,
  s2: S2Config,
  s2Master: MasterOpts = master,
): Uint32Array {
  const w = makeS2Ste(ft, s2Master, s2);
  const s1 = makeCdtableSte(ft, master, cdt, s1dss);
  w[0] = s1[0]!;
  w[1] = s1[1]!;
  set(w, STE.Config, CFG.NESTED);
  w[2] = (w[2]! | s1[2]!) >>> 0;
  w[3] = (w[3]! | s1[3]!) >>> 0;
  set(w, STE.MEV, 1);
  return w;
}

/** io-pgtable's stage-1 TCR fields (io_pgtable_cfg.arm_lpae_s1_cfg.tcr): what a CD takes. */
export type S1Tcr = Pick<S1PgtableCfg, 'tsz' | 'tg' | 'irgn' | 'orgn' | 'sh' | 'ips'>;

export interface S1Config {
  asid: number;
  tcr: S1Tcr;
  /** TTBR0 (masked to [51:4]) */
  ttbr: bigint;
  /** the 64-bit MAIR, written to DW3 as is (io-pgtable's value may be sign-extended) */
  mair: bigint;
  /** hardware dirty-state update (io-pgtable's HD quirk): HA and HD */
  hd?: boolean;
  endi?: boolean;
}

/** Linux's default TCR walk attributes for a coherent SMMU: WB-WA, Inner Shareable. */
export const TCR_WBWA_ISH = { irgn: CACHE_WB, orgn: CACHE_WB, sh: SH_ISH } as const;

/**
 * Stage-1 CD (Linux arm_smmu_make_s1_cd): TTB0 walk fields, EPD1, V, IPS, AA64, S (stalling
 * master), R, A, ASET, ASID, HA+HD with the HD quirk; DW1 TTB0; DW3 MAIR.
 */
export function makeS1Cd(ft: HostSmmuFeatures, master: MasterOpts, c: S1Config): Uint32Array {
  const w = new Uint32Array(CD_WORDS);
  set(w, CD.T0SZ, c.tcr.tsz);
  set(w, CD.TG0, c.tcr.tg);
  set(w, CD.IR0, c.tcr.irgn);
  set(w, CD.OR0, c.tcr.orgn);
  set(w, CD.SH0, c.tcr.sh);
  if (c.endi) set(w, CD.ENDI, 1);
  set(w, CD.EPD1, 1);
  set(w, CD.V, 1);
  set(w, CD.IPS, c.tcr.ips);
  set(w, CD.AA64, 1);
  if (master.stallEnabled) set(w, CD.S, 1);
  set(w, CD.R, 1);
  set(w, CD.A, 1);
  set(w, CD.ASET, 1);
  set(w, CD.ASID, c.asid);
  if (c.hd) {
    set(w, CD.HA, 1);
    set(w, CD.HD, 1);
  }
  setBig(w, CD.TTB0, (BigInt.asUintN(64, c.ttbr) & GENMASK_51_4) >> 4n);
  setMair(w, c.mair);
  return w;
}

/** The CPU state an SVA CD copies. */
export interface SvaCpu {
  /** ID_AA64MMFR0_EL1.PARange (the IPS encoding) */
  parange: number;
  mair: bigint;
  /** log2 page size (12, 14 or 16) */
  pageShift?: number;
}

export interface SvaMm {
  /** physical address of the process's pgd */
  pgd: bigint;
  /** VA bits in use (vabits_actual) */
  vaBits: number;
}

/**
 * SVA CD (Linux arm_smmu_make_sva_cd): ASET=0 (broadcast TLBI applies), the CPU's MAIR and
 * PARange. With `mm` null it is the "released" CD: EPD0=1 (every TTB0 walk fails, TTB0 and its
 * walk fields ignored), and S and R cleared unless stalling is forced — same ASID, so the
 * writer can move between the two hitlessly.
 */
export function makeSvaCd(
  ft: HostSmmuFeatures,
  master: MasterOpts,
  mm: SvaMm | null,
  asid: number,
  cpu: SvaCpu,
): Uint32Array {
  const w = new Uint32Array(CD_WORDS);
  set(w, CD.EPD1, 1);
  set(w, CD.V, 1);
  set(w, CD.IPS, cpu.parange);
  set(w, CD.AA64, 1);
  if (master.stallEnabled) set(w, CD.S, 1);
  set(w, CD.R, 1);
  set(w, CD.A, 1);
  set(w, CD.ASID, asid);
  if (mm) {
    const shift = cpu.pageShift ?? 12;
    set(w, CD.T0SZ, 64 - mm.vaBits);
    set(w, CD.TG0, tg0Encoding(shift));
    set(w, CD.IR0, CACHE_WB);
    set(w, CD.OR0, CACHE_WB);
    set(w, CD.SH0, SH_ISH);
    setBig(w, CD.TTB0, (BigInt.asUintN(64, mm.pgd) & GENMASK_51_4) >> 4n);
  } else {
    set(w, CD.EPD0, 1);
    if (!ft.stallForce) {
      set(w, CD.S, 0);
      set(w, CD.R, 0);
    }
  }
  setMair(w, cpu.mair);
  return w;
}

/** A cleared (all-zero, invalid) CD. */
export function makeClearCd(): Uint32Array {
  return new Uint32Array(CD_WORDS);
}
