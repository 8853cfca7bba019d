/**
 * VMSAv8-64 translation table walks (reference §6), one stage at a time.
 *
 * `walk()` is a pure function of memory (through a descriptor reader), the stage
 * configuration and the input address: it keeps no state, and the caches sit in front of it.
 * For a nested walk the caller's reader translates each stage-1 table address through stage 2
 * before reading it (see translate.ts).
 *
 * Granules 4 KB, 16 KB and 64 KB; blocks and pages; the contiguous hint; stage-2 concatenated
 * start-level tables; hierarchical attributes (APTable, XNTable, PXNTable) unless HAD; the
 * Access flag with AFFD and HA; output address size checks. Fault order within a stage follows
 * §5.4: input range, then per level F_WALK_EABT, F_TRANSLATION, F_ADDR_SIZE, then F_ACCESS.
 * Permissions are returned, and checked by the caller (F_PERMISSION comes last).
 */
import { EVT } from './events.ts';
import { inWord, type Field } from '../bits.ts';
import {
  DESC,
  DESC_TYPE,
  DESC_VALID,
  S1_DESC,
  S2_DESC,
  TABLE_DESC,
  AP_BIT,
  S2AP,
  S2_XN,
  descOA,
} from '../vmsa/descriptor.ts';
import {
  levelShift,
  levelIndex,
  blockAllowed,
  contigBits,
  oaFolds52,
  LAST_LEVEL,
} from '../vmsa/geometry.ts';

export { levelShift, s1StartLevel, blockAllowed, contigBits } from '../vmsa/geometry.ts';

/** Permission bits of a translation (stage 1 sets priv/unpriv separately; stage 2 sets both alike). */
export const PERM = { R_P: 1, W_P: 2, X_P: 4, R_U: 8, W_U: 16, X_U: 32, ALL: 63 } as const;

export interface StageCfg {
  stage: 1 | 2;
  /** log2 granule: 12, 14 or 16 */
  g: number;
  /** input address size in bits (64 - TxSZ or 64 - S2T0SZ) */
  ias: number;
  /** start level */
  start: number;
  /** table base (aligned by the walker to the start table size) */
  ttb: number;
  /** effective output address size in bits */
  oas: number;
  affd: boolean;
  ha: boolean;
  /** big-endian descriptors */
  be: boolean;
  // stage 1 only
  /** EL2 (non-E2H) regime: AP[1] ignored, no unprivileged access, XN at bit 54 */
  el2: boolean;
  /** hierarchical attributes disabled (CD.HADx with IDR3.HAD) */
  had: boolean;
  wxn: boolean;
  pan: boolean;
  // stage 2 only
  /** FEAT_XNX: S2 XN is two bits */
  xnx: boolean;
}

export function newStageCfg(): StageCfg {
  return {
    stage: 1,
    g: 12,
    ias: 48,
    start: 0,
    ttb: 0,
    oas: 48,
    affd: false,
    ha: false,
    be: false,
    el2: false,
    had: false,
    wxn: false,
    pan: false,
    xnx: false,
  };
}

/** One descriptor read, for explainers and traces. */
export interface WalkTraceStep {
  stage: 1 | 2;
  level: number;
  /** address used for the descriptor (IPA for nested stage-1 tables) */
  addr: number;
  /** PA read */
  pa: number;
  desc: bigint;
  /** 'range': no descriptor was read, the input is beyond the stage's input size (addr = the input, pa = -1) */
  kind: 'table' | 'block' | 'page' | 'invalid' | 'abort' | 'range';
  /** the bits that decided the step, e.g. "type=0b11 table → 0x4008a000" */
  note: string;
}

export interface WalkOut {
  /** 0 when the walk succeeded, else the EVT.* fault */
  fault: number;
  /** level of the leaf (or of the fault) */
  level: number;
  /** output address of the page/block containing the input (aligned) */
  oa: number;
  /** log2 of the page/block size mapped, the contiguous range included */
  pageShift: number;
  perm: number;
  /** stage 1: AttrIndx[2:0]; stage 2: MemAttr[3:0] */
  attr: number;
  /** stage 1: nG == 0 */
  global: boolean;
  /** descriptor PA whose AF must be set (HA), or -1 */
  afUpdate: number;
  /** PA of the descriptor fetch that aborted (F_WALK_EABT) */
  fetchAddr: number;
  descReads: number;
  /** set by a nested reader when the fault came from stage 2 while reading a stage-1 table */
  nestedS2: boolean;
  /**
   * The table the last descriptor was read from (at `level`), and the hierarchical attributes
   * accumulated above it (HATTR_* bits): another input that this table translates walks the
   * same way down to it, so its walk can start there (`walkFrom`).
   */
  table: number;
  hattr: number;
}

export function newWalkOut(): WalkOut {
  return {
    fault: 0,
    level: 0,
    oa: 0,
    pageShift: 12,
    perm: 0,
    attr: 0,
    global: false,
    afUpdate: -1,
    fetchAddr: 0,
    descReads: 0,
    nestedS2: false,
    table: 0,
    hattr: 0,
  };
}

/** WalkOut.hattr: APTable[1:0] in bits [1:0], XNTable in bit 2, PXNTable in bit 3 (stage 1) */
const HATTR_XN = 4;
const HATTR_PXN = 8;

/**
 * Reads one descriptor. `addr` is the table entry address as the walk computed it (an IPA for
 * nested stage-1 walks). Returns the PA read (≥ 0), or -1 for an external abort (the walk then
 * reports F_WALK_EABT), or -2 when the reader itself reported a fault into `out` (a stage-2
 * fault on a nested stage-1 table read).
 */
export interface DescReader {
  read(addr: number, level: number, out: WalkOut, desc: Uint32Array): number;
}

const TWO32 = 0x1_0000_0000;
const E_TRANSLATION = EVT.F_TRANSLATION;
const E_ADDR_SIZE = EVT.F_ADDR_SIZE;
const E_ACCESS = EVT.F_ACCESS;
const E_WALK_EABT = EVT.F_WALK_EABT;

// Descriptor fields as (shift, mask) inside their 32-bit half, from the declarations
// (hw/vmsa/descriptor.ts); `lo` holds bits [31:0] and `hi` bits [63:32].
const TYPE_SH = inLo(DESC.Type).shift;
const TYPE_M = DESC.Type.mask;
const AF_SH = inLo(DESC.AF).shift;
const AF_M = DESC.AF.mask;
const CONTIG_SH = inHi(DESC.Contiguous).shift;
const CONTIG_M = DESC.Contiguous.mask;
const ATTRINDX_SH = inLo(S1_DESC.AttrIndx).shift;
const ATTRINDX_M = S1_DESC.AttrIndx.mask;
const AP_SH = inLo(S1_DESC.AP).shift;
const AP_M = S1_DESC.AP.mask;
const NG_SH = inLo(S1_DESC.nG).shift;
const NG_M = S1_DESC.nG.mask;
const PXN_SH = inHi(S1_DESC.PXN).shift;
const PXN_M = S1_DESC.PXN.mask;
const UXN_SH = inHi(S1_DESC.UXN).shift;
const UXN_M = S1_DESC.UXN.mask;
const MEMATTR_SH = inLo(S2_DESC.MemAttr).shift;
const MEMATTR_M = S2_DESC.MemAttr.mask;
const S2AP_SH = inLo(S2_DESC.S2AP).shift;
const S2AP_M = S2_DESC.S2AP.mask;
const XN_SH = inHi(S2_DESC.XN).shift;
const XN_M = S2_DESC.XN.mask;
const APTABLE_SH = inHi(TABLE_DESC.APTable).shift;
const APTABLE_M = TABLE_DESC.APTable.mask;
const XNTABLE_SH = inHi(TABLE_DESC.XNTable).shift;
const XNTABLE_M = TABLE_DESC.XNTable.mask;
const PXNTABLE_SH = inHi(TABLE_DESC.PXNTable).shift;
const PXNTABLE_M = TABLE_DESC.PXNTable.mask;

function inLo(f: Field): Field {
  return inWord(f, 0);
}
function inHi(f: Field): Field {
  return inWord(f, 1);
}

function bswap(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

/** 2^i for i in 0..63, so the hot path never calls Math.pow. */
export const POW2 = Float64Array.from({ length: 64 }, (_, i) => 2 ** i);

/**
 * Walk one stage for input address `ia` (already range-checked against cfg.ias by the caller
 * for stage 1; stage 2 checks its own input range). Fills `out`; returns out.fault.
 */
export function walk(
  cfg: StageCfg,
  ia: number,
  reader: DescReader,
  out: WalkOut,
  trace?: WalkTraceStep[],
): number {
  out.fault = 0;
  out.afUpdate = -1;
  out.fetchAddr = 0;
  out.descReads = 0;
  out.nestedS2 = false;
  out.global = false;
  if (ia >= POW2[cfg.ias]!) {
    out.level = cfg.start;
    out.fault = E_TRANSLATION;
    if (trace)
      trace.push({
        stage: cfg.stage,
        level: cfg.start,
        addr: ia,
        pa: -1,
        desc: 0n,
        kind: 'range',
        note: `input 0x${ia.toString(16)} is beyond the ${cfg.ias}-bit input size`,
      });
    return out.fault;
  }
  // table base: aligned to the start table size (concatenated tables included)
  const startTableBytes = POW2[Math.max(cfg.ias - levelShift(cfg.g, cfg.start) + 3, 6)]!;
  return walkLevels(
    cfg,
    ia,
    cfg.start,
    cfg.ttb - (cfg.ttb % startTableBytes),
    0,
    reader,
    out,
    trace,
  );
}

/**
 * The rest of a walk of `ia` from `level`, whose table `table` an earlier walk reached with the
 * hierarchical attributes `hattr` (that walk's out.table / out.hattr at out.level): the caller
 * guarantees that `ia` is in range and is translated by that same table, and that memory has
 * not changed since. The result is the whole walk's (only out.descReads counts fewer reads).
 */
export function walkFrom(
  cfg: StageCfg,
  ia: number,
  level: number,
  table: number,
  hattr: number,
  reader: DescReader,
  out: WalkOut,
): number {
  out.fault = 0;
  out.afUpdate = -1;
  out.fetchAddr = 0;
  out.descReads = 0;
  out.nestedS2 = false;
  out.global = false;
  return walkLevels(cfg, ia, level, table, hattr, reader, out, undefined);
}

function walkLevels(
  cfg: StageCfg,
  ia: number,
  from: number,
  table: number,
  hattr: number,
  reader: DescReader,
  out: WalkOut,
  trace: WalkTraceStep[] | undefined,
): number {
  const g = cfg.g;
  const stride = g - 3;
  const fold52 = oaFolds52(g, cfg.oas);
  const iaLo = ia >>> 0;
  const iaHi = Math.floor(ia / TWO32);
  // hierarchical attributes accumulated through table descriptors (stage 1)
  let apTable = hattr & 3;
  let xnTable = (hattr & HATTR_XN) >>> 2;
  let pxnTable = (hattr & HATTR_PXN) >>> 3;
  out.hattr = hattr;
  const desc = DESC_BUF;
  for (let level = from; level <= LAST_LEVEL; level++) {
    const shift = levelShift(g, level);
    const idxBits = level === cfg.start ? cfg.ias - shift : stride;
    const idx = levelIndex(iaLo, iaHi, shift, idxBits);
    const dAddr = table + idx * 8;
    out.level = level;
    out.table = table;
    const pa = reader.read(dAddr, level, out, desc);
    if (pa === -2) return out.fault; // the reader reported a (stage-2) fault
    if (pa === -1) {
      out.fault = E_WALK_EABT; // the reader set out.fetchAddr to the PA it tried
      if (trace)
        trace.push({
          stage: cfg.stage,
          level,
          addr: dAddr,
          pa: out.fetchAddr,
          desc: 0n,
          kind: 'abort',
          note: 'external abort on the descriptor fetch',
        });
      return out.fault;
    }
    out.descReads++;
    let lo = desc[0]!;
    let hi = desc[1]!;
    if (cfg.be) {
      const t = bswap(lo);
      lo = bswap(hi);
      hi = t;
    }
    const type = (lo >>> TYPE_SH) & TYPE_M;
    if (
      (type & DESC_VALID) === 0 ||
      (type === DESC_TYPE.BLOCK && (level === LAST_LEVEL || !blockAllowed(g, level, cfg.oas)))
    ) {
      out.fault = E_TRANSLATION;
      if (trace)
        trace.push({
          stage: cfg.stage,
          level,
          addr: dAddr,
          pa,
          desc: big(lo, hi),
          kind: 'invalid',
          note:
            type & DESC_VALID
              ? `type=0b01 (block) is not permitted at level ${level}`
              : 'bit[0]=0: invalid descriptor',
        });
      return out.fault;
    }
    if (type === DESC_TYPE.TABLE && level < LAST_LEVEL) {
      // table descriptor
      const next = descOA(lo, hi, g, fold52);
      if (next >= POW2[cfg.oas]!) {
        out.fault = E_ADDR_SIZE;
        if (trace)
          trace.push({
            stage: cfg.stage,
            level,
            addr: dAddr,
            pa,
            desc: big(lo, hi),
            kind: 'table',
            note: `next-level table 0x${next.toString(16)} is beyond the ${cfg.oas}-bit output size`,
          });
        return out.fault;
      }
      if (cfg.stage === 1 && !cfg.had) {
        apTable |= (hi >>> APTABLE_SH) & APTABLE_M;
        xnTable |= (hi >>> XNTABLE_SH) & XNTABLE_M;
        pxnTable |= (hi >>> PXNTABLE_SH) & PXNTABLE_M;
        out.hattr = apTable | (xnTable << 2) | (pxnTable << 3);
      }
      if (trace)
        trace.push({
          stage: cfg.stage,
          level,
          addr: dAddr,
          pa,
          desc: big(lo, hi),
          kind: 'table',
          note: `type=0b11 table → next table at 0x${next.toString(16)}`,
        });
      table = next;
      continue;
    }
    // block or page
    const oaField = descOA(lo, hi, shift, fold52);
    if (oaField >= POW2[cfg.oas]!) {
      out.fault = E_ADDR_SIZE;
      if (trace)
        trace.push({
          stage: cfg.stage,
          level,
          addr: dAddr,
          pa,
          desc: big(lo, hi),
          kind: level === 3 ? 'page' : 'block',
          note: `output address 0x${oaField.toString(16)} is beyond the ${cfg.oas}-bit output size`,
        });
      return out.fault;
    }
    const contig = (hi >>> CONTIG_SH) & CONTIG_M;
    let pageShift = shift;
    let oa = oaField;
    if (contig) {
      pageShift = shift + contigBits(g, level);
      oa = oaField - (oaField % POW2[pageShift]!);
    }
    out.oa = oa;
    out.pageShift = pageShift;
    const af = (lo >>> AF_SH) & AF_M;
    const s1 = cfg.stage === 1;
    if (s1) {
      out.attr = (lo >>> ATTRINDX_SH) & ATTRINDX_M;
      out.global = ((lo >>> NG_SH) & NG_M) === 0;
      out.perm = s1Perm(cfg, lo, hi, apTable, xnTable, pxnTable);
    } else {
      out.attr = (lo >>> MEMATTR_SH) & MEMATTR_M;
      out.global = false;
      out.perm = s2Perm(cfg, lo, hi);
    }
    if (trace) {
      const what = s1
        ? `AP[2:1]=0b${((lo >>> AP_SH) & AP_M).toString(2).padStart(2, '0')} AF=${af} nG=${(lo >>> NG_SH) & NG_M} PXN=${(hi >>> PXN_SH) & PXN_M} UXN=${(hi >>> UXN_SH) & UXN_M}${contig ? ' Contiguous' : ''}`
        : `S2AP=0b${((lo >>> S2AP_SH) & S2AP_M).toString(2).padStart(2, '0')} AF=${af} MemAttr=0b${((lo >>> MEMATTR_SH) & MEMATTR_M).toString(2).padStart(4, '0')} XN=0b${((hi >>> XN_SH) & XN_M).toString(2)}${contig ? ' Contiguous' : ''}`;
      trace.push({
        stage: cfg.stage,
        level,
        addr: dAddr,
        pa,
        desc: big(lo, hi),
        kind: level === 3 ? 'page' : 'block',
        note: `${level === 3 ? 'page' : `level-${level} block`} → 0x${oaField.toString(16)}; ${what}`,
      });
    }
    if (!af) {
      if (cfg.ha) out.afUpdate = pa;
      else if (!cfg.affd) {
        out.fault = E_ACCESS;
        return out.fault;
      }
    }
    return 0;
  }
  // unreachable: level 3 always returns
  out.fault = E_TRANSLATION;
  return out.fault;
}

const DESC_BUF = new Uint32Array(2);

function big(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

function s1Perm(
  cfg: StageCfg,
  lo: number,
  hi: number,
  apTable: number,
  xnTable: number,
  pxnTable: number,
): number {
  const ap = (lo >>> AP_SH) & AP_M;
  const pxn = ((hi >>> PXN_SH) & PXN_M) | pxnTable;
  const uxn = ((hi >>> UXN_SH) & UXN_M) | xnTable;
  let p = 0;
  if (cfg.el2) {
    // EL2 (E2H=0): AP[1] is ignored and treated as 1, so only AP[2] matters (0 RW, 1 RO), for
    // privileged and unprivileged transactions alike; XN is bit 54 (XNTable bit 60)
    const rw = ap & AP_BIT.RDONLY || apTable & AP_BIT.RDONLY ? 0 : 1;
    p = PERM.R_P | PERM.R_U | (rw ? PERM.W_P | PERM.W_U : 0);
    if (!uxn && !(cfg.wxn && rw)) p |= PERM.X_P | PERM.X_U;
    return p;
  }
  const roBelow = apTable & AP_BIT.RDONLY;
  const noUnprivBelow = apTable & AP_BIT.UNPRIV;
  // privileged
  p |= PERM.R_P;
  if (!(ap & AP_BIT.RDONLY) && !roBelow) p |= PERM.W_P;
  // unprivileged
  if (ap & AP_BIT.UNPRIV && !noUnprivBelow) {
    p |= PERM.R_U;
    if (!(ap & AP_BIT.RDONLY) && !roBelow) p |= PERM.W_U;
  }
  const unprivWritable = (p & PERM.W_U) !== 0;
  // privileged execute: not PXN, not writable at EL0 (implied PXN), not WXN-writable
  if (!pxn && !unprivWritable && !(cfg.wxn && p & PERM.W_P)) p |= PERM.X_P;
  if (!uxn && p & PERM.R_U && !(cfg.wxn && p & PERM.W_U)) p |= PERM.X_U;
  // PAN: privileged data accesses to unprivileged-accessible pages fault
  if (cfg.pan && ap & AP_BIT.UNPRIV) p &= ~(PERM.R_P | PERM.W_P);
  return p;
}

function s2Perm(cfg: StageCfg, lo: number, hi: number): number {
  const s2ap = (lo >>> S2AP_SH) & S2AP_M;
  let p = 0;
  if (s2ap & S2AP.READ) p |= PERM.R_P | PERM.R_U;
  if (s2ap & S2AP.WRITE) p |= PERM.W_P | PERM.W_U;
  const xn = (hi >>> XN_SH) & XN_M;
  let xP = true;
  let xU = true;
  if (cfg.xnx) {
    // 00 exec at both, 01 not privileged (EL1), 10 neither, 11 not unprivileged (EL0)
    if (xn === S2_XN.NO_EL1) xP = false;
    else if (xn === S2_XN.NONE) xP = xU = false;
    else if (xn === S2_XN.NO_EL0) xU = false;
  } else if (xn & S2_XN.NONE) {
    xP = xU = false;
  }
  if (xP) p |= PERM.X_P;
  if (xU) p |= PERM.X_U;
  return p;
}

/** The permission bit a transaction needs. */
export function neededPerm(write: boolean, priv: boolean, instr: boolean): number {
  if (instr && !write) return priv ? PERM.X_P : PERM.X_U;
  if (write) return priv ? PERM.W_P : PERM.W_U;
  return priv ? PERM.R_P : PERM.R_U;
}
