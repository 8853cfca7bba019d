import { describe, expect, it } from 'vitest';
import {
  bits,
  dw,
  get,
  set,
  getBig,
  setBig,
  build,
  place,
  wordMask,
  definedMask,
  join,
  hex,
  toDwords,
  fromDwords,
} from '../../hw/bits.ts';
import { STE, L1STD } from '../../hw/smmu/ste.ts';
import { CD } from '../../hw/smmu/cd.ts';

/** Split 64-bit double-words into little-endian 32-bit words (written independently of bits.ts). */
function words(...d: bigint[]): Uint32Array {
  const w = new Uint32Array(d.length * 2);
  d.forEach((v, i) => {
    w[2 * i] = Number(v & 0xffff_ffffn);
    w[2 * i + 1] = Number(v >> 32n);
  });
  return w;
}

describe('bits: field declarations', () => {
  it('bits() records lsb, width, word, shift and mask', () => {
    const f = bits('F', 13, 12);
    expect(f).toMatchObject({
      name: 'F',
      lsb: 12,
      width: 2,
      word: 0,
      shift: 12,
      mask: 3,
      single: true,
    });
    const g = bits('G', 95, 92);
    expect(g).toMatchObject({ lsb: 92, width: 4, word: 2, shift: 28, mask: 0xf, single: true });
    expect(() => bits('bad', 3, 4)).toThrow();
  });

  it('dw(n, hi, lo) is absolute bits [64n+hi : 64n+lo] (STE.S1DSS is [65:64], EATS [93:92])', () => {
    expect(dw(1, 'S1DSS', 1, 0)).toMatchObject({ lsb: 64, width: 2 });
    expect(STE.S1DSS.lsb).toBe(64);
    expect(STE.EATS.lsb).toBe(92);
    expect(STE.S2TTB).toMatchObject({ lsb: 196, width: 52 });
  });

  it('a field crossing a 32-bit word boundary is not single', () => {
    const f = dw(0, 'ptr', 55, 6);
    expect(f.single).toBe(false);
    expect(f.word).toBe(0);
    expect(f.width).toBe(50);
  });
});

describe('bits: get/set', () => {
  it('decodes the Linux STE for SID 8 (linux-sequence.md §3)', () => {
    const w = words(0x000000004806c00bn, 0x00000000000000d6n);
    expect(get(w, STE.V)).toBe(1);
    expect(get(w, STE.Config)).toBe(0b101);
    expect(get(w, STE.S1Fmt)).toBe(0);
    expect(get(w, STE.S1ContextPtr) * 64).toBe(0x4806c000);
    expect(get(w, STE.S1CDMax)).toBe(0);
    expect(get(w, STE.S1DSS)).toBe(2);
    expect(get(w, STE.S1CIR)).toBe(1);
    expect(get(w, STE.S1COR)).toBe(1);
    expect(get(w, STE.S1CSH)).toBe(3);
    expect(get(w, STE.EATS)).toBe(0);
    expect(get(w, STE.STRW)).toBe(0);
    expect(get(w, STE.SHCFG)).toBe(0);
  });

  it('decodes the Linux CD (linux-sequence.md §3)', () => {
    const w = words(0x0001e204c0003510n, 0x0000000048089000n, 0n, 0xfffffffff404ff44n);
    expect(get(w, CD.T0SZ)).toBe(16);
    expect(get(w, CD.TG0)).toBe(0);
    expect(get(w, CD.IR0)).toBe(1);
    expect(get(w, CD.OR0)).toBe(1);
    expect(get(w, CD.SH0)).toBe(3);
    expect(get(w, CD.EPD0)).toBe(0);
    expect(get(w, CD.EPD1)).toBe(1);
    expect(get(w, CD.V)).toBe(1);
    expect(get(w, CD.IPS)).toBe(4);
    expect(get(w, CD.AA64)).toBe(1);
    expect(get(w, CD.R)).toBe(1);
    expect(get(w, CD.A)).toBe(1);
    expect(get(w, CD.ASET)).toBe(1);
    expect(get(w, CD.ASID)).toBe(1);
    expect(get(w, CD.TTB0) * 16).toBe(0x48089000);
    expect(getBig(w, CD.MAIR0)).toBe(0xf404ff44n);
    expect(getBig(w, CD.MAIR1)).toBe(0xffffffffn);
  });

  it('decodes the Linux L1STD 0x7aa60009: Span=9, L2Ptr=0x7aa60000', () => {
    const w = words(0x7aa60009n);
    expect(get(w, L1STD.Span)).toBe(9);
    expect(get(w, L1STD.L2Ptr) * 64).toBe(0x7aa60000);
  });

  it('set() writes only the field and drops bits above its width', () => {
    const w = new Uint32Array([0xffffffff, 0xffffffff]);
    set(w, bits('F', 7, 4), 0x123);
    expect(w[0]).toBe(0xffffff3f);
    expect(w[1]).toBe(0xffffffff);
  });

  it('set()/get() round-trip a 50-bit field spanning two words', () => {
    const f = dw(0, 'ptr', 55, 6);
    const w = new Uint32Array(2);
    const v = 0x3_1234_5678_9abc / 4; // < 2^50
    set(w, f, v);
    expect(get(w, f)).toBe(v);
    expect(getBig(w, f)).toBe(BigInt(v));
    expect(w[0]! & 0x3f).toBe(0);
    expect(w[1]! >>> 24).toBe(0);
  });

  it('setBig()/getBig() handle a full 64-bit field', () => {
    const f = dw(1, 'X', 63, 0);
    const w = new Uint32Array(4);
    setBig(w, f, 0xfedc_ba98_7654_3210n);
    expect(w[2]).toBe(0x76543210);
    expect(w[3]).toBe(0xfedcba98);
    expect(getBig(w, f)).toBe(0xfedc_ba98_7654_3210n);
  });

  it('place() and wordMask() position a single-word field', () => {
    const f = bits('CS', 13, 12);
    expect(place(f, 2)).toBe(0x2000);
    expect(place(f, 7)).toBe(0x3000);
    expect(wordMask(f)).toBe(0x3000);
    expect(wordMask(bits('top', 31, 31))).toBe(0x8000_0000);
    expect(() => place(dw(0, 'x', 40, 20), 1)).toThrow();
  });

  it('definedMask() covers exactly the declared bits', () => {
    const m = definedMask([bits('a', 3, 0), bits('b', 35, 34)], 2);
    expect(Array.from(m)).toEqual([0xf, 0xc]);
  });

  it('build() assembles a structure and rejects unknown field names', () => {
    const w = build(STE, 16, { V: 1, Config: 4 });
    expect(w[0]).toBe(0x9);
    expect(() => build(STE, 16, { Nope: 1 })).toThrow();
  });

  it('join, hex, toDwords and fromDwords', () => {
    expect(join(0x89abcdef, 0x1234)).toBe(0x1234_89abcdef);
    expect(hex(255, 4)).toBe('0x00ff');
    expect(toDwords([0x0fc02046, 0, 1, 0x80000000])).toEqual([0x0fc02046n, 0x8000000000000001n]);
    expect(Array.from(fromDwords([0x0000000800000003n, 1n]))).toEqual([3, 8, 1, 0]);
  });
});
