/**
 * hw/vmsa/descriptor.ts and geometry.ts against descriptors worked out by hand from the bit
 * positions of the reference (smmuv3.md §6.1-§6.3), and against what io-pgtable writes.
 */
import { describe, expect, it } from 'vitest';
import { get } from '../../../hw/bits.ts';
import {
  AP,
  DESC,
  DESC_TYPE,
  S1_DESC,
  S2_DESC,
  S2AP,
  S2_MEMATTR,
  SH,
  TABLE_DESC,
  descOA,
  descToOa,
  oaToDesc,
  placeBig,
  s1LeafAttrs,
  s2LeafAttrs,
} from '../../../hw/vmsa/descriptor.ts';
import {
  indexBits,
  levelIndex,
  levelShift,
  s1StartLevel,
  s2ConcatStartLevel,
  s2Sl0,
  s2StartLevel,
  startTableBytes,
} from '../../../hw/vmsa/geometry.ts';
import { IoPgtable, type PgtableCfg } from '../../../hw/vmsa/io-pgtable.ts';

const halves = (d: bigint): [number, number] => [
  Number(d & 0xffff_ffffn),
  Number((d >> 32n) & 0xffff_ffffn),
];

/** An io-pgtable over a sparse 64-bit memory. */
function ioPgtable(cfg: PgtableCfg): { pt: IoPgtable; mem: Map<number, bigint> } {
  const mem = new Map<number, bigint>();
  let next = 0x4000_0000;
  const pt = new IoPgtable(
    cfg,
    { read64: (a) => mem.get(a) ?? 0n, write64: (a, v) => void mem.set(a, v) },
    {
      alloc: (bytes, align) => {
        next += (align - (next % align)) % align;
        const a = next;
        next += bytes;
        return a;
      },
    },
    { tlbFlushAll: () => {}, tlbFlushWalk: () => {}, tlbAddPage: () => {} },
  );
  return { pt, mem };
}

describe('VMSAv8-64 descriptor fields', () => {
  it('stage-1 page for PA 0x4567_8000: AP=0b01 AttrIndx=1 ISH AF nG PXN UXN', () => {
    // lo: type 0b11 | AttrIndx 1 << 2 | AP 0b01 << 6 | SH 0b11 << 8 | AF << 10 | nG << 11
    //   = 0x3 | 0x4 | 0x40 | 0x300 | 0x400 | 0x800 = 0xf47, plus PA 0x4567_8000
    // hi: PXN (bit 53) = 1 << 21, UXN (bit 54) = 1 << 22 = 0x0060_0000
    const want = 0x0060_0000_4567_8f47n;
    const attrs = s1LeafAttrs({
      attrIndx: 1,
      ap: AP.RW,
      sh: SH.ISH,
      af: true,
      ng: true,
      pxn: true,
      uxn: true,
    });
    const d = BigInt(DESC_TYPE.PAGE) | attrs | oaToDesc(0x4567_8000, false);
    expect(d).toBe(want);
    // io-pgtable writes the same word for Linux's IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE
    const { pt, mem } = ioPgtable({
      fmt: 'ARM_64_LPAE_S1',
      pgsizeBitmap: [0x1000, 0x20_0000, 0x4000_0000],
      ias: 48,
      oas: 48,
      coherentWalk: true,
    });
    pt.map(0x1000_0000, 0x4567_8000, 0x1000, 1, { read: true, write: true, cache: true });
    const leaf = pt.lookup(0x1000_0000)!;
    expect(leaf.level).toBe(3);
    expect(mem.get(leaf.ptep)).toBe(want);
    // and each field reads back through its declaration
    const w = halves(d);
    expect(get(w, DESC.Type)).toBe(3);
    expect(get(w, S1_DESC.AttrIndx)).toBe(1);
    expect(get(w, S1_DESC.AP)).toBe(0b01);
    expect(get(w, DESC.SH)).toBe(0b11);
    expect(get(w, DESC.AF)).toBe(1);
    expect(get(w, S1_DESC.nG)).toBe(1);
    expect(get(w, S1_DESC.PXN)).toBe(1);
    expect(get(w, S1_DESC.UXN)).toBe(1);
    expect(get(w, DESC.OA) * 0x1000).toBe(0x4567_8000);
  });

  it('stage-2 block at level 2 for PA 0x8020_0000: MemAttr=0b0101 S2AP=RO OSH AF, XN[1], contiguous', () => {
    // lo: type 0b01 | MemAttr 0b0101 << 2 | S2AP 0b01 << 6 | SH 0b10 << 8 | AF << 10
    //   = 0x1 | 0x14 | 0x40 | 0x200 | 0x400 = 0x655, plus PA 0x8020_0000
    // hi: Contiguous (bit 52) = 1 << 20, XN = 0b10 (bits 54:53) = 1 << 22
    const attrs = s2LeafAttrs({
      memAttr: S2_MEMATTR.NORMAL_NC,
      s2ap: S2AP.READ,
      sh: SH.OSH,
      af: true,
      xn: 0b10,
      contiguous: true,
    });
    expect(BigInt(DESC_TYPE.BLOCK) | attrs | oaToDesc(0x8020_0000, false)).toBe(
      0x0050_0000_8020_0655n,
    );
    expect(get(halves(attrs), S2_DESC.XN)).toBe(0b10);
    expect(get(halves(attrs), S2_DESC.MemAttr)).toBe(0b0101);
  });

  it('table descriptor attributes sit in bits [63:59]', () => {
    expect(placeBig(TABLE_DESC.APTable, 0b10)).toBe(1n << 62n);
    expect(placeBig(TABLE_DESC.XNTable, 1)).toBe(1n << 60n);
    expect(placeBig(TABLE_DESC.PXNTable, 1)).toBe(1n << 59n);
    expect(placeBig(TABLE_DESC.NSTable, 1)).toBe(1n << 63n);
    expect(placeBig(DESC.SW, 1)).toBe(1n << 55n);
  });

  it('64 KB granule with a 52-bit OA keeps OA[51:48] in bits [15:12]', () => {
    const pa = 0x000f_0000_1234_0000; // OA[51:48] = 0xf
    const d = oaToDesc(pa, true);
    expect(d).toBe(0x1234_f000n);
    expect(descToOa(d, true)).toBe(pa);
    const [lo, hi] = halves(d | 3n);
    expect(descOA(lo, hi, 16, true)).toBe(pa);
    // without the fold, bits [15:12] are not address bits at a 64 KB page
    expect(descOA(lo, hi, 16, false)).toBe(0x1234_0000);
    // a 2 MB block's address field drops bits [20:0]
    expect(descOA(0x4567_8f47, 0x60_0000, 21, false)).toBe(0x4560_0000);
  });
});

describe('VMSAv8-64 level geometry', () => {
  it('level shifts and start levels', () => {
    expect([0, 1, 2, 3].map((l) => levelShift(12, l))).toEqual([39, 30, 21, 12]);
    expect([1, 2, 3].map((l) => levelShift(16, l))).toEqual([42, 29, 16]);
    expect(levelShift(14, 2)).toBe(25);
    expect(s1StartLevel(12, 48)).toBe(0);
    expect(s1StartLevel(12, 39)).toBe(1);
    expect(s1StartLevel(16, 48)).toBe(1);
    expect(s1StartLevel(14, 48)).toBe(0); // 16 KB: 34 bits = 3 x 11 + 1 → four levels
    expect(s1StartLevel(14, 47)).toBe(1);
  });

  it('stage 2 with a 40-bit IPA on 4 KB: two concatenated level-1 tables, SL0=1', () => {
    expect(s2ConcatStartLevel(12, 40)).toBe(1);
    expect(indexBits(12, 1, 1, 40)).toBe(10);
    expect(startTableBytes(12, 1, 40)).toBe(8192);
    expect(s2Sl0(1, 12)).toBe(1);
    expect(s2StartLevel(1, 0)).toBe(1);
    // 48 bits need level 0 (512 entries: too many to concatenate)
    expect(s2ConcatStartLevel(12, 48)).toBe(0);
    // 64 KB (TG 1), SL0=1: start at level 2
    expect(s2StartLevel(1, 1)).toBe(2);
    expect(s2Sl0(2, 16)).toBe(1);
    expect(s2StartLevel(3, 0)).toBe(-1);
  });

  it('the index of an address at a level', () => {
    const ia = 0x12_3456_7000; // 4 KB: L1 index = ia[38:30], L2 = ia[29:21], L3 = ia[20:12]
    const lo = ia >>> 0;
    const hi = Math.floor(ia / 2 ** 32);
    expect(levelIndex(lo, hi, 30, 9)).toBe(0x48);
    expect(levelIndex(lo, hi, 21, 9)).toBe(0x1a2);
    expect(levelIndex(lo, hi, 12, 9)).toBe(0x167);
    expect(levelIndex(lo, hi, 39, 9)).toBe(0);
  });
});
