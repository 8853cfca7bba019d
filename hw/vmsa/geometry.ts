/**
 * VMSAv8-64 level geometry (Arm ARM D8.2, reference smmuv3.md §6.1, §6.3), in one place for the
 * walker, the STE and CD checks, io-pgtable and the scenario page-table writer.
 *
 * `g` is log2 of the granule (12, 14 or 16); a table holds 2^(g-3) eight-byte entries, except
 * the start level's, which holds as many as the input size leaves (at stage 2 up to 16
 * concatenated tables). Levels are numbered 0..3, level 3 holding pages.
 */

/** The last level (pages). */
export const LAST_LEVEL = 3;
/** Stage 2 may concatenate up to 16 tables at the start level. */
export const S2_MAX_CONCAT = 16;

/** TCR.TG0, CD.TG0 and STE.S2TG / VTCR.TG0 encodings. */
export const TG0 = { SZ_4K: 0, SZ_64K: 1, SZ_16K: 2 } as const;
/** TCR.TG1 and CD.TG1 encodings. */
export const TG1 = { SZ_16K: 1, SZ_4K: 2, SZ_64K: 3 } as const;

/** log2 granule for a TG0 / S2TG encoding (0 4K, 1 64K, 2 16K), or 0 when reserved. */
export function tg0Shift(tg0: number): number {
  return tg0 === TG0.SZ_4K ? 12 : tg0 === TG0.SZ_64K ? 16 : tg0 === TG0.SZ_16K ? 14 : 0;
}

/** log2 granule for a TG1 encoding (1 16K, 2 4K, 3 64K), or 0 when reserved. */
export function tg1Shift(tg1: number): number {
  return tg1 === TG1.SZ_16K ? 14 : tg1 === TG1.SZ_4K ? 12 : tg1 === TG1.SZ_64K ? 16 : 0;
}

/** The TG0 / S2TG encoding of granule 2^g. */
export function tg0Encoding(g: number): number {
  return g === 16 ? TG0.SZ_64K : g === 14 ? TG0.SZ_16K : TG0.SZ_4K;
}

/** Index bits of a table below the start level: g - 3. */
export function stride(g: number): number {
  return g - 3;
}

/** log2 of the size one entry at `level` maps: g + (3 - level) * (g - 3). */
export function levelShift(g: number, level: number): number {
  return g + (LAST_LEVEL - level) * (g - 3);
}

/** Index bits of the table at `level` of a walk starting at `start` for an `ias`-bit input. */
export function indexBits(g: number, level: number, start: number, ias: number): number {
  return level === start ? ias - levelShift(g, level) : g - 3;
}

/** Bytes of the start-level table (the concatenated tables together, at stage 2). */
export function startTableBytes(g: number, start: number, ias: number): number {
  return 2 ** (ias - levelShift(g, start) + 3);
}

/** Stage-1 start level for an input size (reference §6.1): 4 - ceil((IAS - g) / (g - 3)). */
export function s1StartLevel(g: number, ias: number): number {
  return LAST_LEVEL + 1 - Math.ceil((ias - g) / (g - 3));
}

/**
 * The stage-2 start level io-pgtable chooses: the stage-1 one, except that a level-0 start
 * with at most 16 entries becomes a level-1 start over concatenated tables.
 */
export function s2ConcatStartLevel(g: number, ias: number): number {
  const start = s1StartLevel(g, ias);
  if (start === 0 && 2 ** indexBits(g, 0, 0, ias) <= S2_MAX_CONCAT) return 1;
  return start;
}

/**
 * Start level of a stage-2 walk from SL0 and the TG0 encoding (VTCR_EL2.SL0 without LPA2/TTST),
 * or -1 when reserved: 4KB counts from level 2 (start = 2 - SL0), 16KB/64KB from level 3.
 */
export function s2StartLevel(sl0: number, tg: number): number {
  if (sl0 === 3) return -1;
  return tg === TG0.SZ_4K ? 2 - sl0 : 3 - sl0;
}

/** The SL0 encoding of a stage-2 start level for granule 2^g (the inverse of s2StartLevel). */
export function s2Sl0(start: number, g: number): number {
  return g === 12 ? 2 - start : 3 - start;
}

/**
 * Walk consistency of {SL0, TG, T0SZ} (reference §6.3): with k levels below the start level,
 * min_IAS = k*stride + g + 1 and max_IAS = min_IAS + stride - 1 + 4 (16 concatenated tables).
 */
export function s2WalkConsistent(sl0: number, tg: number, t0sz: number): boolean {
  const start = s2StartLevel(sl0, tg);
  const g = tg0Shift(tg);
  if (start < 0 || g === 0) return false;
  const ias = 64 - t0sz;
  const minIas = (LAST_LEVEL - start) * (g - 3) + g + 1;
  const maxIas = minIas + (g - 3) - 1 + Math.log2(S2_MAX_CONCAT);
  return ias >= minIas && ias <= maxIas;
}

/** Whether a block descriptor is permitted at `level` for granule 2^g and output size. */
export function blockAllowed(g: number, level: number, oas: number): boolean {
  if (g === 12) return level === 1 || level === 2;
  if (g === 14) return level === 2;
  return level === 2 || (level === 1 && oas === 52);
}

/** Contiguous-hint run length (log2 entries) for a granule and level. */
export function contigBits(g: number, level: number): number {
  if (g === 12) return 4; // 16 entries at L2 and L3
  if (g === 14) return level === 3 ? 7 : 5; // 128 x 16KB, 32 x 32MB
  return 5; // 64KB: 32 entries at L2 and L3
}

/** Whether descriptors carry OA[51:48] in bits [15:12]: the 64KB granule with a 52-bit OA. */
export function oaFolds52(g: number, oas: number): boolean {
  return g === 16 && oas === 52;
}

/**
 * Bits [shift+n-1 : shift] of an address given as 32-bit halves (n ≤ 31): the index of the
 * entry at a level whose entries map 2^shift bytes, from a table of 2^n entries.
 */
export function levelIndex(iaLo: number, iaHi: number, shift: number, n: number): number {
  const mask = n >= 31 ? 0x7fffffff : (1 << n) - 1;
  if (shift >= 32) return (iaHi >>> (shift - 32)) & mask;
  if (shift === 0) return iaLo & mask;
  return ((iaLo >>> shift) | (iaHi << (32 - shift))) & mask;
}
