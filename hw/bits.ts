/**
 * Bit-field declarations, declared once as data and used everywhere.
 *
 * A structure (STE, CD, command, event record, register) is an array of little-endian
 * 32-bit words. A field is named by its absolute bit position, the way the architecture
 * writes it: `dw(1, 29, 28)` is DW1[29:28], i.e. absolute bits [93:92].
 *
 * Values up to 53 bits come back as exact JavaScript numbers; wider fields (only 64-bit
 * addresses and data) have BigInt accessors. The hot paths use `word`/`shift`/`mask`
 * directly, which are precomputed here.
 */

export interface Field {
  readonly name: string;
  /** absolute least-significant bit */
  readonly lsb: number;
  readonly width: number;
  /** index of the 32-bit word holding the lsb */
  readonly word: number;
  /** bit position of the lsb inside `word` */
  readonly shift: number;
  /** mask of the field's bits inside `word`, after shifting right by `shift` (only for fields that fit in one word) */
  readonly mask: number;
  /** true when the field lies in a single 32-bit word */
  readonly single: boolean;
  /** optional meaning of each value, for decoders */
  readonly values?: Readonly<Record<number, string>>;
  /** free text shown by decoders */
  readonly doc?: string;
}

export interface FieldOpts {
  values?: Record<number, string>;
  doc?: string;
}

/** A field at absolute bits [hi:lo]. */
export function bits(name: string, hi: number, lo: number, opts: FieldOpts = {}): Field {
  if (hi < lo) throw new Error(`field ${name}: hi ${hi} < lo ${lo}`);
  const width = hi - lo + 1;
  const word = lo >>> 5;
  const shift = lo & 31;
  const single = shift + width <= 32;
  const mask = single ? (width === 32 ? 0xffffffff : ((1 << width) >>> 0) - 1) >>> 0 : 0;
  return Object.freeze({ name, lsb: lo, width, word, shift, mask, single, ...opts });
}

/** A field at DWn[hi:lo] (64-bit double-word n). */
export function dw(n: number, name: string, hi: number, lo: number, opts: FieldOpts = {}): Field {
  return bits(name, 64 * n + hi, 64 * n + lo, opts);
}

/** Read a field as a number (exact up to 53 bits). */
export function get(w: ArrayLike<number>, f: Field): number {
  if (f.single) return ((w[f.word]! >>> f.shift) & f.mask) >>> 0;
  let v = 0;
  let scale = 1;
  let remaining = f.width;
  let bit = f.lsb;
  while (remaining > 0) {
    const wi = bit >>> 5;
    const sh = bit & 31;
    const take = Math.min(32 - sh, remaining);
    const m = take === 32 ? 0xffffffff : ((1 << take) >>> 0) - 1;
    v += (((w[wi]! >>> sh) & m) >>> 0) * scale;
    scale *= 2 ** take;
    remaining -= take;
    bit += take;
  }
  return v;
}

/** Read a field as a BigInt (any width). */
export function getBig(w: ArrayLike<number>, f: Field): bigint {
  let v = 0n;
  for (let i = f.width - 1; i >= 0; i--) {
    const b = f.lsb + i;
    v = (v << 1n) | BigInt((w[b >>> 5]! >>> (b & 31)) & 1);
  }
  return v;
}

/** Write a field from a number (exact up to 53 bits); bits above the field width are dropped. */
/** 2^0 .. 2^64 (exact): a table instead of exponentiation on the hot path */
const POW2: readonly number[] = Array.from({ length: 65 }, (_, i) => 2 ** i);

/**
 * Write a field from a number (exact up to 53 bits). `off` is a word offset into `w`, for a
 * structure that starts part-way through a buffer (a batch of commands).
 */
export function set(
  w: { [i: number]: number; length: number },
  f: Field,
  value: number,
  off = 0,
): void {
  const wo = off + f.word;
  if (f.single) {
    const m = (f.mask << f.shift) >>> 0;
    w[wo] = ((w[wo]! & ~m) | (((value & f.mask) << f.shift) & m)) >>> 0;
    return;
  }
  if (f.shift + f.width <= 64 && f.width <= 53) {
    // two words: the low part fills word[wo] from f.shift up, the rest goes to the next word
    const loBits = 32 - f.shift;
    const loScale = POW2[loBits]!;
    const loVal = value % loScale;
    const hiBits = f.width - loBits;
    const hiMask = hiBits >= 32 ? 0xffffffff : ((1 << hiBits) >>> 0) - 1;
    const hiVal = Math.floor(value / loScale) % POW2[hiBits]!;
    const loMaskShifted = (0xffffffff << f.shift) >>> 0;
    w[wo] = ((w[wo]! & ~loMaskShifted) | ((loVal << f.shift) >>> 0)) >>> 0;
    w[wo + 1] = ((w[wo + 1]! & ~hiMask) | (hiVal & hiMask)) >>> 0;
    return;
  }
  let remaining = f.width;
  let bit = f.lsb;
  let v = value;
  while (remaining > 0) {
    const wi = off + (bit >>> 5);
    const sh = bit & 31;
    const take = Math.min(32 - sh, remaining);
    const m = take === 32 ? 0xffffffff : ((1 << take) >>> 0) - 1;
    const part = v % POW2[take]!;
    w[wi] = ((w[wi]! & ~((m << sh) >>> 0)) | ((part & m) << sh)) >>> 0;
    v = Math.floor(v / POW2[take]!);
    remaining -= take;
    bit += take;
  }
}

/** Write a field from a BigInt (any width). */
export function setBig(w: { [i: number]: number; length: number }, f: Field, value: bigint): void {
  for (let i = 0; i < f.width; i++) {
    const b = f.lsb + i;
    const bit = Number((value >> BigInt(i)) & 1n);
    const wi = b >>> 5;
    const m = (1 << (b & 31)) >>> 0;
    w[wi] = bit ? (w[wi]! | m) >>> 0 : (w[wi]! & ~m) >>> 0;
  }
}

/** Field value shifted into place inside a 32-bit word (single-word fields only). */
export function place(f: Field, value: number): number {
  if (!f.single) throw new Error(`place(): field ${f.name} spans words`);
  return ((value & f.mask) << f.shift) >>> 0;
}

/** Mask of a single-word field inside its 32-bit word. */
export function wordMask(f: Field): number {
  if (!f.single) throw new Error(`wordMask(): field ${f.name} spans words`);
  return (f.mask << f.shift) >>> 0;
}

/**
 * Per-word masks of all bits covered by `fields` in a structure of `nwords` words.
 * Used to derive RES0 masks from the field tables, so reserved bits are never listed twice.
 */
export function definedMask(fields: readonly Field[], nwords: number): Uint32Array {
  const m = new Uint32Array(nwords);
  for (const f of fields) {
    for (let i = 0; i < f.width; i++) {
      const b = f.lsb + i;
      if (b >>> 5 < nwords) m[b >>> 5] = (m[b >>> 5]! | (1 << (b & 31))) >>> 0;
    }
  }
  return m;
}

/** Build a structure from field values (numbers or BigInts). Unknown names throw. */
export function build(
  layout: Readonly<Record<string, Field>>,
  nwords: number,
  values: Readonly<Record<string, number | bigint>>,
): Uint32Array {
  const w = new Uint32Array(nwords);
  for (const [k, v] of Object.entries(values)) {
    const f = layout[k];
    if (!f) throw new Error(`unknown field ${k}`);
    if (typeof v === 'bigint') setBig(w, f, v);
    else set(w, f, v);
  }
  return w;
}

/** Join two 32-bit halves into a number (exact while hi < 2^21). */
export function join(lo: number, hi: number): number {
  return hi * 0x1_0000_0000 + (lo >>> 0);
}

export function hex(v: number | bigint, pad = 0): string {
  return '0x' + v.toString(16).padStart(pad, '0');
}

/** Words (little-endian 32-bit) → 64-bit double-words as BigInts. */
export function toDwords(w: ArrayLike<number>): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i + 1 < w.length; i += 2)
    out.push((BigInt(w[i + 1]! >>> 0) << 32n) | BigInt(w[i]! >>> 0));
  return out;
}

/** 64-bit double-words (BigInt) → little-endian 32-bit words. */
export function fromDwords(d: readonly bigint[]): Uint32Array {
  const w = new Uint32Array(d.length * 2);
  d.forEach((v, i) => {
    w[2 * i] = Number(v & 0xffffffffn);
    w[2 * i + 1] = Number((v >> 32n) & 0xffffffffn);
  });
  return w;
}

/**
 * `f`, checked (once, at module load) to start in 32-bit word `w`: for hot paths that cache
 * `f.shift` and `f.mask` and read the word themselves.
 */
export function inWord(f: Field, w: number): Field {
  if (f.word !== w) throw new Error(`field ${f.name} is in word ${f.word}, not ${w}`);
  return f;
}

/** The index of the 32-bit word a field fills completely (checked once, at module load). */
export function wholeWord(f: Field): number {
  if (f.shift !== 0 || f.width !== 32) throw new Error(`field ${f.name} is not a whole word`);
  return f.word;
}

/**
 * Masks of an address field kept in place over words `f.word` (bits from `f.shift` up) and
 * `f.word + 1` (its bits below `topBit`, at most bit 63 of the pair): the address is
 * (w[f.word + 1] & hi) * 2^32 + ((w[f.word] & lo) >>> 0).
 */
export function addressMasks(f: Field, topBit = f.shift + f.width): { lo: number; hi: number } {
  if (f.shift + f.width <= 32) throw new Error(`field ${f.name} lies in one word`);
  return { lo: (0xffffffff << f.shift) >>> 0, hi: 2 ** (Math.min(topBit, 64) - 32) - 1 };
}
