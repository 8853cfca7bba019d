/**
 * The host driver's generic STE/CD writer: moves a live 64-byte structure from its current
 * value to a target value through a sequence of 64-bit writes and synchronisations, so that
 * the SMMU (which reads structures with 64-bit single-copy atomicity and may cache them at any
 * moment) only ever sees the old configuration or the new one — a *hitless* update — or, when
 * that is impossible, an invalid entry in between — a *breaking* update.
 *
 * This follows the algorithm of Linux's arm_smmu_write_entry() as described in the reference
 * (smmuv3.md §8.2–8.3); the code is written here from that description.
 *
 * Entries are Uint32Array of 16 little-endian 32-bit words: qword i is words 2i (low half) and
 * 2i+1 (high half). All masks are derived from the field tables in hw/smmu/ste.ts and cd.ts.
 */
import { definedMask, get, place, type Field } from '../../hw/bits.ts';
import { STE, STE_WORDS, CFG, EATS, S1DSS } from '../../hw/smmu/ste.ts';
import { CD, CD_WORDS } from '../../hw/smmu/cd.ts';

export const ENTRY_WORDS = 16;
export const ENTRY_QWORDS = 8;

if (STE_WORDS !== ENTRY_WORDS || CD_WORDS !== ENTRY_WORDS)
  throw new Error('host/entry: STE and CD must be 16 words');

/** STE.S1DSS encodings (reference §2.2), declared beside the field. */
export { S1DSS };

function mask(...fields: Field[]): Uint32Array {
  return definedMask(fields, ENTRY_WORDS);
}

function orInto(dst: Uint32Array, src: Uint32Array): void {
  for (let i = 0; i < ENTRY_WORDS; i++) dst[i] = (dst[i]! | src[i]!) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// STE used bits (reference §8.2)

const STE_USED_V = mask(STE.V);
const STE_USED_CONFIG = mask(STE.Config);
/** Stage 1 translates (Config bit 0 with bit 2: 0b101, 0b111). */
const STE_USED_S1 = mask(
  STE.S1Fmt,
  STE.S1ContextPtr,
  STE.S1CDMax,
  STE.S1DSS,
  STE.S1CIR,
  STE.S1COR,
  STE.S1CSH,
  STE.S1STALLD,
  STE.STRW,
  STE.EATS,
  STE.MEV,
  STE.S2VMID,
);
/** Stage 2 translates (Config bit 1 with bit 2: 0b110, 0b111). */
const STE_USED_S2 = mask(
  STE.EATS,
  STE.SHCFG,
  STE.MEV,
  STE.S2FWB,
  STE.S2VMID,
  STE.S2T0SZ,
  STE.S2SL0,
  STE.S2IR0,
  STE.S2OR0,
  STE.S2SH0,
  STE.S2TG,
  STE.S2PS,
  STE.S2AA64,
  STE.S2ENDI,
  STE.S2PTW,
  STE.S2S,
  STE.S2R,
  STE.S2TTB,
);
/** SHCFG applies to traffic that bypasses stage 1: Config=bypass, or S1DSS=bypass. */
const STE_USED_SHCFG = mask(STE.SHCFG);

/**
 * The bits of an STE the SMMU uses in the entry's current configuration.
 *
 * Differences from the compact table in smmuv3.md §8.2, both following newer Linux: MEV is
 * used whenever a stage translates (it changes event merging; without it in the used set the
 * "MEV is update-safe" rule would be vacuous), and S2FWB is used when stage 2 translates.
 */
export function steUsed(e: ArrayLike<number>): Uint32Array {
  const used = Uint32Array.from(STE_USED_V);
  if (get(e, STE.V) === 0) return used;
  orInto(used, STE_USED_CONFIG);
  const cfg = get(e, STE.Config);
  // Config 0b0xx aborts (reserved values included): only V and Config matter.
  if ((cfg & 0b100) === 0) return used;
  if (cfg & 0b001) {
    orInto(used, STE_USED_S1);
    if (get(e, STE.S1DSS) === S1DSS.BYPASS) orInto(used, STE_USED_SHCFG);
  }
  if (cfg & 0b010) orInto(used, STE_USED_S2);
  if (cfg === CFG.BYPASS) orInto(used, STE_USED_SHCFG);
  return used;
}

// ---------------------------------------------------------------------------------------------
// STE update-safe bits (reference §8.2 "Update-safe bits")

const EATS_TRANS_BITS = place(STE.EATS, EATS.TRANS);
const EATS_S1CHK_BITS = place(STE.EATS, EATS.S1CHK);
const S2S_MASK = mask(STE.S2S);
const MEV_MASK = mask(STE.MEV);

/**
 * Bits that may change in any order relative to the critical qword, even though both the
 * current and the target configuration use them:
 * - MEV, always (it only affects event merging);
 * - the EATS=TRANS bit, when neither entry has the EATS=S1CHK bit set (EATS 0b10 or 0b11) and
 *   neither has S2S=1 (an intermediate EATS=TRANS with S2S=1 would be ILLEGAL).
 */
export function steUpdateSafe(cur: ArrayLike<number>, target: ArrayLike<number>): Uint32Array {
  const safe = Uint32Array.from(MEV_MASK);
  const w = STE.EATS.word;
  const s1chk = ((cur[w]! | target[w]!) & EATS_S1CHK_BITS) !== 0;
  let s2s = false;
  for (let i = 0; i < ENTRY_WORDS; i++)
    if (((cur[i]! | target[i]!) & S2S_MASK[i]!) !== 0) s2s = true;
  if (!s1chk && !s2s) safe[w] = (safe[w]! | EATS_TRANS_BITS) >>> 0;
  return safe;
}

// ---------------------------------------------------------------------------------------------
// CD used bits (reference §8.2)

const CD_USED_V = mask(CD.V);
const CD_TTB0_GROUP = mask(CD.T0SZ, CD.TG0, CD.IR0, CD.OR0, CD.SH0, CD.TTB0);

/** The bits of a CD the SMMU uses: V alone when invalid; otherwise everything, less the TTB0 walk fields when EPD0=1. */
export function cdUsed(e: ArrayLike<number>): Uint32Array {
  if (get(e, CD.V) === 0) return Uint32Array.from(CD_USED_V);
  const used = new Uint32Array(ENTRY_WORDS).fill(0xffffffff);
  if (get(e, CD.EPD0) === 1)
    for (let i = 0; i < ENTRY_WORDS; i++) used[i] = (used[i]! & ~CD_TTB0_GROUP[i]!) >>> 0;
  return used;
}

// ---------------------------------------------------------------------------------------------
// The writer (reference §8.3)

export interface EntryWriterOps {
  /** the bits the SMMU uses in an entry's configuration (16 words) */
  used(e: Uint32Array): Uint32Array;
  /** bits that may be updated out of order (16 words); none when absent */
  updateSafe?(cur: Uint32Array, target: Uint32Array): Uint32Array;
  /** make the SMMU see the entry as it is now (CFGI + CMD_SYNC in a driver) */
  sync(): void;
  /** qword `qword` of the entry has just become lo/hi (already stored in `cur`) */
  write(qword: number, lo: number, hi: number): void;
}

export interface EntryPlan {
  /** bit i set: qword i has used bits that must change after the unused-bits update */
  diff: number;
  /** the entry with every bit the current configuration ignores set to its final value */
  unusedUpdate: Uint32Array;
  /** bit i set: the target sets bits in qword i that its own configuration does not use */
  targetUnused: number;
}

export interface EntryWriteResult {
  kind: 'hitless' | 'breaking' | 'none';
  /** the critical qword of a hitless update */
  critical: number;
  syncs: number;
  /** qwords the target sets bits in that its configuration ignores (Linux warns about these) */
  targetUnused: number;
}

/** Compute the unused-bits update and the set of qwords whose used bits still differ. */
export function planEntryUpdate(
  cur: Uint32Array,
  target: Uint32Array,
  ops: Pick<EntryWriterOps, 'used' | 'updateSafe'>,
): EntryPlan {
  const curUsed = ops.used(cur);
  const tgtUsed = ops.used(target);
  const safe = ops.updateSafe ? ops.updateSafe(cur, target) : new Uint32Array(ENTRY_WORDS);
  const unusedUpdate = new Uint32Array(ENTRY_WORDS);
  let diff = 0;
  let targetUnused = 0;
  for (let i = 0; i < ENTRY_WORDS; i++) {
    // a safe bit only matters when both configurations use it; otherwise the unused side sequences it
    const s = safe[i]! & tgtUsed[i]! & curUsed[i]!;
    const keep = (curUsed[i]! & ~s) >>> 0;
    unusedUpdate[i] = ((cur[i]! & keep) | (target[i]! & ~keep)) >>> 0;
    if ((unusedUpdate[i]! & tgtUsed[i]!) >>> 0 !== target[i]) diff |= 1 << (i >> 1);
    if ((target[i]! & ~tgtUsed[i]!) !== 0) targetUnused |= 1 << (i >> 1);
  }
  return { diff, unusedUpdate, targetUnused };
}

function popcount8(x: number): number {
  let n = 0;
  for (let i = 0; i < ENTRY_QWORDS; i++) if (x & (1 << i)) n++;
  return n;
}

/**
 * Move `cur` (updated in place) to `target`, calling `ops.write` for each qword that changes
 * and `ops.sync` after each group of writes that changed something:
 *
 * - one qword's used bits differ (hitless): (1) every other qword gets its unused bits updated;
 *   (2) the critical qword is written; (3) the whole target is written, clearing bits the new
 *   configuration ignores. 1 to 3 syncs; V never drops.
 * - two or more (breaking): (1) qword 0 is written as 0, so V=0 and the whole entry is
 *   ignored; (2) qwords 1..7 are written; (3) qword 0 is written. Usually 3 syncs.
 * - none: the target is written as is (only ignored or update-safe bits differ), with one
 *   sync if that changed anything (none when the entry already equals the target).
 */
export function writeEntry(
  cur: Uint32Array,
  target: Uint32Array,
  ops: EntryWriterOps,
): EntryWriteResult {
  if (cur.length !== ENTRY_WORDS || target.length !== ENTRY_WORDS)
    throw new Error(`writeEntry: entries must be ${ENTRY_WORDS} words`);
  const tgt = Uint32Array.from(target); // the caller's target may alias memory the ops touch
  const plan = planEntryUpdate(cur, tgt, ops);
  let syncs = 0;

  /** write qwords [start, start+count) from src where they differ; sync if any did */
  const entrySet = (src: Uint32Array, start: number, count: number): void => {
    let changed = false;
    for (let q = start; q < start + count; q++) {
      const lo = src[2 * q]!;
      const hi = src[2 * q + 1]!;
      if (cur[2 * q] === lo && cur[2 * q + 1] === hi) continue;
      cur[2 * q] = lo;
      cur[2 * q + 1] = hi;
      ops.write(q, lo, hi);
      changed = true;
    }
    if (changed) {
      syncs++;
      ops.sync();
    }
  };

  const n = popcount8(plan.diff);
  if (n === 1) {
    const c = 31 - Math.clz32(plan.diff);
    const upd = plan.unusedUpdate;
    // the critical qword is written whole in the next step, so leave it alone here
    upd[2 * c] = cur[2 * c]!;
    upd[2 * c + 1] = cur[2 * c + 1]!;
    entrySet(upd, 0, ENTRY_QWORDS);
    entrySet(tgt, c, 1);
    entrySet(tgt, 0, ENTRY_QWORDS);
    return { kind: 'hitless', critical: c, syncs, targetUnused: plan.targetUnused };
  }
  if (n > 1) {
    const upd = plan.unusedUpdate;
    upd[0] = 0;
    upd[1] = 0;
    entrySet(upd, 0, 1);
    entrySet(tgt, 1, ENTRY_QWORDS - 1);
    entrySet(tgt, 0, 1);
    return { kind: 'breaking', critical: -1, syncs, targetUnused: plan.targetUnused };
  }
  entrySet(tgt, 0, ENTRY_QWORDS);
  return { kind: 'none', critical: -1, syncs, targetUnused: plan.targetUnused };
}

/** Writer ops for an STE (used bits and update-safe bits), given the sync and write actions. */
export function steWriterOps(
  sync: () => void,
  write: (qword: number, lo: number, hi: number) => void,
): EntryWriterOps {
  return { used: steUsed, updateSafe: steUpdateSafe, sync, write };
}

/** Writer ops for a CD, given the sync and write actions. */
export function cdWriterOps(
  sync: () => void,
  write: (qword: number, lo: number, hi: number) => void,
): EntryWriterOps {
  return { used: cdUsed, sync, write };
}
