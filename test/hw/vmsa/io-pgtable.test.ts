/**
 * hw/vmsa/io-pgtable.ts against the reference (smmuv3.md §4.4, §6; linux-sequence.md §3) and against
 * the simulated SMMU's own table walker (hw/smmu/walk.ts).
 *
 * Expected encodings are written out here from the reference (bit positions of §6.2, the
 * captured Linux PTEs, the geometry formulas of §6.1/§6.3), never taken from the implementation.
 * The tables are read back through an independent walk written in this file and through
 * `walk()`, configured from the CD/STE fields the page table reports (TG/TSZ/IPS/SL0...).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ExternalAbort, PhysicalMemory } from '../../../hw/memory.ts';
import {
  walk,
  newStageCfg,
  newWalkOut,
  s1StartLevel,
  PERM,
  type StageCfg,
  type DescReader,
} from '../../../hw/smmu/walk.ts';
import { s2StartLevel, s2GranuleShift, s2WalkConsistent } from '../../../hw/smmu/ste.ts';
import {
  IoPgtable,
  IoPgtableError,
  newGather,
  rangeInvCommands,
  iommuPgsize,
  type FlushOps,
  type IotlbGather,
  type PgtableAlloc,
  type PgtableCfg,
  type Prot,
} from '../../../hw/vmsa/io-pgtable.ts';

// ---- constants from the reference ------------------------------------------------------------

const K = 1024;
const M = 1024 * K;
const G = 1024 * M;
const T = 1024 * G;
/** F_TRANSLATION (§5.1) */
const F_TRANSLATION = 0x10;
/** IPS/PS encodings (§1.4, CD.IPS / STE.S2PS): 32, 36, 40, 42, 44, 48, 52 bits */
const PS_BITS = [32, 36, 40, 42, 44, 48, 52];
/** CD.TG0 / STE.S2TG: 0 4KB, 1 64KB, 2 16KB */
const TG_SHIFT: Record<number, number> = { 0: 12, 1: 16, 2: 14 };
const S1 = 'ARM_64_LPAE_S1' as const;
const S2 = 'ARM_64_LPAE_S2' as const;
const SIZES_4K = [4 * K, 2 * M, 1 * G];
const SIZES_16K = [16 * K, 32 * M];
const SIZES_64K = [64 * K, 512 * M];

const RAM_BASE = 0x4000_0000;
const RAM_SIZE = 0x4000_0000;

// ---- rig ---------------------------------------------------------------------------------------

class BumpAlloc implements PgtableAlloc {
  private next = RAM_BASE;
  readonly live = new Map<number, number>();
  allocs = 0;
  alloc(bytes: number, align: number): number {
    const addr = Math.ceil(this.next / align) * align;
    if (addr + bytes > RAM_BASE + RAM_SIZE) throw new Error('out of memory');
    this.next = addr + bytes;
    this.live.set(addr, bytes);
    this.allocs++;
    return addr;
  }
  free(addr: number, bytes: number): void {
    if (this.live.get(addr) !== bytes)
      throw new Error(`bad free 0x${addr.toString(16)} (${bytes})`);
    this.live.delete(addr);
  }
}

type FlushCall = ['all'] | ['walk', number, number, number] | ['page', number, number];

class RecordingFlush implements FlushOps {
  calls: FlushCall[] = [];
  gathers: IotlbGather[] = [];
  tlbFlushAll(): void {
    this.calls.push(['all']);
  }
  tlbFlushWalk(iova: number, size: number, granule: number): void {
    this.calls.push(['walk', iova, size, granule]);
  }
  tlbAddPage(gather: IotlbGather, iova: number, granule: number): void {
    this.calls.push(['page', iova, granule]);
    this.gathers.push(gather);
  }
  take(): FlushCall[] {
    const c = this.calls;
    this.calls = [];
    this.gathers = [];
    return c;
  }
}

interface Rig {
  mem: PhysicalMemory;
  alloc: BumpAlloc;
  flush: RecordingFlush;
  pt: IoPgtable;
}

function rig(cfg: Partial<PgtableCfg> & { fmt: PgtableCfg['fmt']; pgsizeBitmap: number[] }): Rig {
  const mem = new PhysicalMemory();
  mem.addRam('ram', RAM_BASE, RAM_SIZE);
  const alloc = new BumpAlloc();
  const flush = new RecordingFlush();
  const pt = new IoPgtable({ ias: 48, oas: 44, coherentWalk: true, ...cfg }, mem, alloc, flush);
  return { mem, alloc, flush, pt };
}

// ---- independent readers -----------------------------------------------------------------------

/**
 * The descriptors a walk of `iova` reads (reference §6.1/§6.2): index at level L is
 * (addr >> shift(L)) & mask, the start level indexing IAS - shift(start) bits; a table
 * descriptor (0b11 below level 3) holds the next table address in bits [47:g].
 */
function refDescs(
  mem: PhysicalMemory,
  root: number,
  g: number,
  start: number,
  ias: number,
  iova: number,
): bigint[] {
  const out: bigint[] = [];
  const stride = g - 3;
  let table = BigInt(root);
  for (let level = start; level <= 3; level++) {
    const sh = BigInt(g + (3 - level) * stride);
    const bits = BigInt(level === start ? ias - Number(sh) : stride);
    const idx = (BigInt(iova) >> sh) & ((1n << bits) - 1n);
    const d = mem.read64(Number(table + idx * 8n));
    out.push(d);
    if ((d & 3n) !== 3n || level === 3) break;
    table = d & ((1n << 48n) - (1n << BigInt(g)));
  }
  return out;
}

/** The SMMU stage configuration a CD (stage 1) or STE (stage 2) built from the table's fields gives. */
function stageCfgOf(pt: IoPgtable): StageCfg {
  const c = newStageCfg();
  if (pt.s1) {
    c.stage = 1;
    c.g = TG_SHIFT[pt.s1.tg]!;
    c.ias = 64 - pt.s1.tsz;
    c.start = s1StartLevel(c.g, c.ias);
    c.ttb = pt.s1.ttbr;
    c.oas = PS_BITS[pt.s1.ips]!;
  } else {
    const s2 = pt.s2!;
    c.stage = 2;
    c.g = s2GranuleShift(s2.tg);
    c.ias = 64 - s2.tsz;
    c.start = s2StartLevel(s2.sl, s2.tg);
    c.ttb = s2.vttbr;
    c.oas = PS_BITS[s2.ps]!;
  }
  return c;
}

function reader(mem: PhysicalMemory): DescReader {
  return {
    read(addr, _level, out, desc) {
      try {
        mem.readPair(addr, desc);
        return addr;
      } catch (e) {
        if (!(e instanceof ExternalAbort)) throw e;
        out.fetchAddr = addr;
        return -1;
      }
    },
  };
}

interface HwResult {
  fault: number;
  pa: number;
  perm: number;
  attr: number;
  level: number;
  pageShift: number;
  global: boolean;
}

/** Translate with the simulated SMMU's walker. */
function hw(r: Rig, iova: number, cfg: StageCfg = stageCfgOf(r.pt)): HwResult {
  const out = newWalkOut();
  const fault = walk(cfg, iova, reader(r.mem), out);
  return {
    fault,
    pa: out.oa + (iova % 2 ** out.pageShift),
    perm: out.perm,
    attr: out.attr,
    level: out.level,
    pageShift: out.pageShift,
    global: out.global,
  };
}

/**
 * The permissions a mapping should give (reference §6.2): stage 1 AP[2:1] 01 RW / 11 RO for
 * unprivileged mappings, 00 / 10 for privileged ones (a write-only mapping is RW: there is no
 * write-only AP); UXN/PXN unless exec, and no privileged execution of EL0-writable pages.
 * Stage 2: S2AP read/write, XN unless exec.
 */
function expectedPerm(stage: 1 | 2, p: Prot): number {
  if (stage === 2) {
    let v = 0;
    if (p.read) v |= PERM.R_P | PERM.R_U;
    if (p.write) v |= PERM.W_P | PERM.W_U;
    if (p.exec) v |= PERM.X_P | PERM.X_U;
    return v;
  }
  const ro = p.read && !p.write;
  const unpriv = !p.priv;
  let v = PERM.R_P | (ro ? 0 : PERM.W_P);
  if (unpriv) v |= PERM.R_U | (ro ? 0 : PERM.W_U);
  if (p.exec) {
    if (unpriv) v |= PERM.X_U;
    if (!(unpriv && !ro)) v |= PERM.X_P;
  }
  return v;
}

/** Stage-1 AttrIndx (MAIR 0xf404ff44: 0 NC, 1 WBWA, 2 Device-nGnRE) or stage-2 MemAttr (Device-nGnRE 0b0001, Normal WB 0b1111, Normal NC 0b0101). */
function expectedAttr(stage: 1 | 2, p: Prot): number {
  if (stage === 1) return p.mmio ? 2 : p.cache ? 1 : 0;
  return p.mmio ? 0x1 : p.cache ? 0xf : 0x5;
}

function expectMapped(r: Rig, iova: number, pa: number, prot: Prot, leafShift: number): void {
  const what = `IOVA 0x${iova.toString(16)}`;
  expect(r.pt.iovaToPhys(iova), what).toBe(pa);
  const stage = r.pt.s1 ? 1 : 2;
  const h = hw(r, iova);
  expect(h.fault, `${what}: walk fault`).toBe(0);
  expect(h.pa, `${what}: walk PA`).toBe(pa);
  expect(h.pageShift, `${what}: leaf size`).toBe(leafShift);
  expect(h.perm, `${what}: permissions`).toBe(expectedPerm(stage, prot));
  expect(h.attr, `${what}: attributes`).toBe(expectedAttr(stage, prot));
  expect(h.global, `${what}: nG`).toBe(false);
}

function expectUnmapped(r: Rig, iova: number): void {
  expect(r.pt.iovaToPhys(iova), `IOVA 0x${iova.toString(16)}`).toBe(null);
  expect(hw(r, iova).fault, `IOVA 0x${iova.toString(16)}: walk fault`).toBe(F_TRANSLATION);
}

function errnoOf(f: () => unknown): string | null {
  try {
    f();
    return null;
  } catch (e) {
    if (e instanceof IoPgtableError) return e.errno;
    throw e;
  }
}

const RW_CACHE: Prot = { read: true, write: true, cache: true };

// ---- the captured Linux PTEs -----------------------------------------------------------------

describe('reproduces what Linux 6.12 built on QEMU (linux-sequence.md §3)', () => {
  const linux = () =>
    rig({ fmt: S1, pgsizeBitmap: [...SIZES_4K], ias: 48, oas: 44, coherentWalk: true });

  it('CD fields: T0SZ=16, TG0=4K, IRGN0=ORGN0=WBWA, SH0=ISH, IPS=44 bits, MAIR 0xfffffffff404ff44, 4 levels', () => {
    const { pt } = linux();
    expect(pt.s1).toEqual({
      tsz: 16,
      tg: 0,
      irgn: 1,
      orgn: 1,
      sh: 3,
      ips: 4,
      mair: 0xfffffffff404ff44n,
      ttbr: pt.root,
    });
    expect(pt.s2).toBeUndefined();
    expect(pt.granule).toBe(4096);
    expect(pt.levels).toBe(4);
    expect(pt.startLevel).toBe(0);
  });

  it('MSI doorbell: GICv2m 0x08020000 at IOVA 0xfffff000 with IOMMU_WRITE|NOEXEC|MMIO → PTE 0x60000008020e4b', () => {
    const r = linux();
    const msi: Prot = { read: false, write: true, mmio: true };
    expect(r.pt.map(0xfffff000, 0x08020000, 4096, 1, msi)).toBe(4096);
    const d = refDescs(r.mem, r.pt.root, 12, 0, 48, 0xfffff000);
    expect(d.length).toBe(4);
    expect(d[3]!.toString(16)).toBe('60000008020e4b');
    for (const t of d.slice(0, 3)) expect(t & 3n, 'table descriptors').toBe(3n);
    // explicit exec: false is the same
    const r2 = linux();
    r2.pt.map(0xfffff000, 0x08020000, 4096, 1, { ...msi, exec: false });
    expect(refDescs(r2.mem, r2.pt.root, 12, 0, 48, 0xfffff000)[3]).toBe(0x60000008020e4bn);
    // the SMMU sees Device-nGnRE, RW at EL0 and EL1 (AP 01: no write-only at stage 1), never executable
    expectMapped(r, 0xfffff004, 0x08020004, msi, 12);
    expect(hw(r, 0xfffff000).perm & (PERM.X_P | PERM.X_U)).toBe(0);
  });

  it('data page (DMA_BIDIRECTIONAL, coherent: READ|WRITE|CACHE) → …f47 with the output address', () => {
    const r = linux();
    // dma-iommu passes no IOMMU_NOEXEC for data: exec: true gives exactly Linux's descriptor
    r.pt.map(0xffffe000, 0x4812_3000, 4096, 1, { ...RW_CACHE, exec: true });
    expect(refDescs(r.mem, r.pt.root, 12, 0, 48, 0xffffe000)[3]).toBe(0x48123f47n);
    // with exec left out (IOMMU_NOEXEC) the low bits are the same and PXN|UXN are added
    r.pt.map(0xffffd000, 0x4812_4000, 4096, 1, RW_CACHE);
    expect(refDescs(r.mem, r.pt.root, 12, 0, 48, 0xffffd000)[3]).toBe(0x60000048124f47n);
    expectMapped(r, 0xffffe123, 0x4812_3123, { ...RW_CACHE, exec: true }, 12);
    expectMapped(r, 0xffffd000, 0x4812_4000, RW_CACHE, 12);
  });
});

// ---- descriptor encodings --------------------------------------------------------------------

describe('leaf descriptor encodings (reference §6.2)', () => {
  // [prot, expected descriptor for a 4 KB page at PA 0x4567_8000], worked out bit by bit:
  // S1: AttrIndx[4:2], AP[7:6], SH[9:8] (OSH 0b10, ISH 0b11), AF 10, nG 11, PXN 53, UXN 54
  const S1_CASES: Array<[string, Prot, bigint]> = [
    ['RW cacheable', { read: true, write: true, cache: true }, 0x6000_0045678f47n], // AP01 idx1 ISH
    ['RO cacheable', { read: true, write: false, cache: true }, 0x6000_0045678fc7n], // AP11
    [
      'RW privileged cacheable exec',
      { read: true, write: true, cache: true, priv: true, exec: true },
      0x45678f07n,
    ], // AP00
    ['RO privileged non-cacheable', { read: true, write: false, priv: true }, 0x6000_0045678e83n], // AP10 idx0 OSH
    ['write-only non-cacheable', { read: false, write: true }, 0x6000_0045678e43n], // AP01 idx0 OSH
    ['RW MMIO', { read: true, write: true, mmio: true }, 0x6000_0045678e4bn], // idx2 OSH
    ['RW MMIO + CACHE', { read: true, write: true, mmio: true, cache: true }, 0x6000_0045678f4bn], // idx2, ISH (from CACHE)
    ['RO exec', { read: true, write: false, exec: true }, 0x45678ec3n],
  ];
  // S2: MemAttr[5:2], S2AP[7:6] (6 read, 7 write), SH[9:8], AF 10, XN[54:53]
  const S2_CASES: Array<[string, Prot, bigint]> = [
    ['RW cacheable', { read: true, write: true, cache: true }, 0x6000_00456787ffn], // MemAttr 1111, S2AP 11, ISH
    ['RO cacheable exec', { read: true, write: false, cache: true, exec: true }, 0x4567877fn], // S2AP 01
    ['WO non-cacheable', { read: false, write: true }, 0x6000_0045678697n], // MemAttr 0101, S2AP 10, OSH
    ['RW MMIO', { read: true, write: true, mmio: true }, 0x6000_00456786c7n], // MemAttr 0001
    [
      'RW privileged (priv has no stage-2 meaning)',
      { read: true, write: true, priv: true },
      0x6000_00456786d7n,
    ],
  ];

  for (const [name, prot, want] of S1_CASES) {
    it(`stage 1 page, ${name}`, () => {
      const r = rig({ fmt: S1, pgsizeBitmap: SIZES_4K });
      r.pt.map(0x1000_0000, 0x4567_8000, 4096, 1, prot);
      expect(refDescs(r.mem, r.pt.root, 12, 0, 48, 0x1000_0000)[3]!.toString(16)).toBe(
        want.toString(16),
      );
      expectMapped(r, 0x1000_0000, 0x4567_8000, prot, 12);
    });
  }
  for (const [name, prot, want] of S2_CASES) {
    it(`stage 2 page, ${name}`, () => {
      const r = rig({ fmt: S2, pgsizeBitmap: SIZES_4K, ias: 40 });
      r.pt.map(0x1000_0000, 0x4567_8000, 4096, 1, prot);
      expect(refDescs(r.mem, r.pt.root, 12, 1, 40, 0x1000_0000)[2]!.toString(16)).toBe(
        want.toString(16),
      );
      expectMapped(r, 0x1000_0000, 0x4567_8000, prot, 12);
    });
  }

  it('blocks have type 0b01 (stage 1 2 MB and 1 GB; stage 2 2 MB)', () => {
    const r = rig({ fmt: S1, pgsizeBitmap: SIZES_4K });
    r.pt.map(0x20_0000, 0x8_0040_0000, 2 * M, 1, RW_CACHE);
    r.pt.map(0x4000_0000, 0x8_c000_0000, 1 * G, 1, RW_CACHE);
    expect(refDescs(r.mem, r.pt.root, 12, 0, 48, 0x20_0000)[2]).toBe(0x6000_0800400f45n);
    expect(refDescs(r.mem, r.pt.root, 12, 0, 48, 0x4000_0000)[1]).toBe(0x6000_08c0000f45n);
    const r2 = rig({ fmt: S2, pgsizeBitmap: SIZES_4K, ias: 40 });
    r2.pt.map(0x20_0000, 0x8_0040_0000, 2 * M, 1, RW_CACHE);
    expect(refDescs(r2.mem, r2.pt.root, 12, 1, 40, 0x20_0000)[1]).toBe(0x6000_0800_4007fdn);
  });

  it('no read and no write maps nothing and returns 0', () => {
    const r = rig({ fmt: S1, pgsizeBitmap: SIZES_4K });
    expect(r.pt.map(0x1000, 0x4000_1000, 4096, 1, { read: false, write: false, cache: true })).toBe(
      0,
    );
    expectUnmapped(r, 0x1000);
  });

  it('64 KB granule with a 52-bit OAS: PA[51:48] go to descriptor bits [15:12]', () => {
    const r = rig({ fmt: S1, pgsizeBitmap: [...SIZES_64K, 4 * T], ias: 48, oas: 52 });
    expect(r.pt.s1!.ips).toBe(6);
    expect(r.pt.pgsizeBitmap).toEqual([64 * K, 512 * M, 4 * T]); // 4 TB level-1 blocks with 52-bit PAs
    const pa = 0xa_1234_5678_0000; // PA[51:48] = 0xa
    r.pt.map(0x7_0000, pa, 64 * K, 1, RW_CACHE);
    // 64 KB, IAS 48: start level 1 (§6.1), levels 1..3
    const d = refDescs(r.mem, r.pt.root, 16, 1, 48, 0x7_0000);
    // bits [47:16] = PA[47:16], [15:12] = PA[51:48] = 0xa, then the RW/cacheable/XN attributes
    expect(d[2]!.toString(16)).toBe('6012345678af47');
    expect(r.pt.iovaToPhys(0x7_0abc)).toBe(pa + 0xabc);
    expectMapped(r, 0x7_0abc, pa + 0xabc, RW_CACHE, 16);
  });
});

// ---- geometry --------------------------------------------------------------------------------

describe('configuration (granule choice, levels, start level, concatenation, CD/STE fields)', () => {
  it('picks the granule like Linux and cuts the bitmap down to its page and block sizes', () => {
    const cases: Array<[number[], number, number[]]> = [
      [[4 * K, 16 * K, 64 * K, 2 * M, 32 * M, 512 * M, 1 * G], 4 * K, [4 * K, 2 * M, 1 * G]],
      [[64 * K, 4 * K], 4 * K, [4 * K]],
      [[64 * K, 16 * K, 32 * M], 16 * K, [16 * K, 32 * M]],
      [[16 * K, 2 * M], 16 * K, [16 * K]],
      [[512 * M, 64 * K], 64 * K, [64 * K, 512 * M]],
    ];
    for (const [bitmap, granule, sizes] of cases) {
      const { pt } = rig({ fmt: S1, pgsizeBitmap: bitmap });
      expect(pt.granule, bitmap.join()).toBe(granule);
      expect([...pt.pgsizeBitmap]).toEqual(sizes);
    }
    expect(() => rig({ fmt: S1, pgsizeBitmap: [2 * M] })).toThrow(IoPgtableError); // no page size
    expect(() => rig({ fmt: S1, pgsizeBitmap: [8 * K] })).toThrow(IoPgtableError); // not a granule
    expect(() => rig({ fmt: S1, pgsizeBitmap: SIZES_4K, oas: 38 })).toThrow(IoPgtableError); // no IPS encoding
  });

  it('caps IAS/OAS at 48 bits (52 only with 64 KB)', () => {
    const { pt } = rig({ fmt: S1, pgsizeBitmap: SIZES_4K, ias: 52, oas: 52 });
    expect(pt.s1!.tsz).toBe(16);
    expect(pt.s1!.ips).toBe(5);
  });

  it('non-coherent walks: SH=OSH, IRGN=ORGN=NC, and table entries carry software bit 55 (SW_SYNC)', () => {
    const r = rig({ fmt: S1, pgsizeBitmap: SIZES_4K, coherentWalk: false });
    expect(r.pt.s1).toMatchObject({ irgn: 0, orgn: 0, sh: 2 });
    r.pt.map(0x1234_5000, 0x4000_0000, 4096, 1, RW_CACHE);
    const d = refDescs(r.mem, r.pt.root, 12, 0, 48, 0x1234_5000);
    for (const t of d.slice(0, 3)) expect((t >> 55n) & 1n).toBe(1n);
    expect((d[3]! >> 55n) & 1n).toBe(0n);
    expectMapped(r, 0x1234_5000, 0x4000_0000, RW_CACHE, 12);
    const s2 = rig({ fmt: S2, pgsizeBitmap: SIZES_4K, ias: 40, coherentWalk: false });
    expect(s2.pt.s2).toMatchObject({ irgn: 0, orgn: 0, sh: 2 });
  });

  // stage 1: start = 4 - ceil((IAS - g)/stride) (§6.1); pgd entries = 2^(IAS - shift(start))
  const S1_GEOMETRY: Array<[string, number[], number, number, number, number]> = [
    // name, sizes, IAS, TG0, start, pgd entries
    ['4K IAS 48', SIZES_4K, 48, 0, 0, 512],
    ['4K IAS 39', SIZES_4K, 39, 0, 1, 512],
    ['4K IAS 32', SIZES_4K, 32, 0, 1, 4],
    ['16K IAS 48', SIZES_16K, 48, 2, 0, 2],
    ['16K IAS 47', SIZES_16K, 47, 2, 1, 2048],
    ['64K IAS 48', SIZES_64K, 48, 1, 1, 64],
    ['64K IAS 42', SIZES_64K, 42, 1, 2, 8192],
  ];
  for (const [name, sizes, ias, tg, start, entries] of S1_GEOMETRY) {
    it(`stage 1 ${name}: TG0=${tg}, start level ${start}, ${entries}-entry pgd`, () => {
      const r = rig({ fmt: S1, pgsizeBitmap: sizes, ias });
      expect(r.pt.s1).toMatchObject({ tsz: 64 - ias, tg });
      expect(r.pt.startLevel).toBe(start);
      expect(r.pt.levels).toBe(4 - start);
      expect(r.pt.root % Math.max(entries * 8, 64)).toBe(0);
      expect(stageCfgOf(r.pt).start).toBe(start);
      // the last pgd entry is used by the top IOVA, entry `entries` would be past the table
      const top = 2 ** ias - sizes[0]!;
      r.pt.map(top, 0x4000_0000, sizes[0]!, 1, RW_CACHE);
      const g = Math.log2(sizes[0]!);
      const startShift = g + (3 - start) * (g - 3);
      expect(r.mem.read64(r.pt.root + (entries - 1) * 8) & 3n).toBe(3n);
      expect(Math.floor(top / 2 ** startShift)).toBe(entries - 1);
      expectMapped(r, top, 0x4000_0000, RW_CACHE, g);
    });
  }

  // stage 2 (§6.3): S2SL0 → start (4K: 2 - SL0, 16K/64K: 3 - SL0); Linux concatenates a level-0
  // start with at most 16 entries into 2^(IAS - shift(1)) level-1 tables
  const S2_GEOMETRY: Array<[string, number[], number, number, number, number, number]> = [
    // name, sizes, IAS, S2TG, SL0, start, concatenated tables (0: a single, possibly partial, table)
    ['4K IAS 40 (2 concatenated L1 tables)', SIZES_4K, 40, 0, 1, 1, 2],
    ['4K IAS 42 (8 concatenated L1 tables)', SIZES_4K, 42, 0, 1, 1, 8],
    ['4K IAS 43 (16 concatenated L1 tables)', SIZES_4K, 43, 0, 1, 1, 16],
    ['4K IAS 44 (level 0, 32 entries: no concatenation)', SIZES_4K, 44, 0, 2, 0, 0],
    ['4K IAS 48', SIZES_4K, 48, 0, 2, 0, 0],
    ['4K IAS 32', SIZES_4K, 32, 0, 1, 1, 0],
    ['16K IAS 48 (2 concatenated L1 tables)', SIZES_16K, 48, 2, 2, 1, 2],
    ['16K IAS 40', SIZES_16K, 40, 2, 2, 1, 0],
    ['64K IAS 48', SIZES_64K, 48, 1, 2, 1, 0],
    ['64K IAS 40', SIZES_64K, 40, 1, 1, 2, 0],
  ];
  for (const [name, sizes, ias, tg, sl, start, concat] of S2_GEOMETRY) {
    it(`stage 2 ${name}: S2TG=${tg}, S2SL0=${sl}, start level ${start}`, () => {
      const r = rig({ fmt: S2, pgsizeBitmap: sizes, ias });
      expect(r.pt.s2).toEqual({
        tsz: 64 - ias,
        sl,
        tg,
        ps: 4,
        irgn: 1,
        orgn: 1,
        sh: 3,
        vttbr: r.pt.root,
      });
      expect(r.pt.s1).toBeUndefined();
      expect(r.pt.startLevel).toBe(start);
      expect(s2StartLevel(sl, tg)).toBe(start);
      expect(s2WalkConsistent(sl, tg, 64 - ias), 'SL0/TG/T0SZ consistent').toBe(true);
      const P = sizes[0]!;
      if (concat) {
        // the concatenated tables are contiguous and aligned to their total size
        expect(r.pt.root % (concat * P)).toBe(0);
        expect(r.alloc.live.get(r.pt.root)).toBe(concat * P);
      }
      // the first and the last IOVA: the first and the last concatenated table
      const top = 2 ** ias - P;
      r.pt.map(0, 0x4000_0000, P, 1, RW_CACHE);
      r.pt.map(top, 0x4100_0000, P, 1, RW_CACHE);
      expectMapped(r, 0, 0x4000_0000, RW_CACHE, Math.log2(P));
      expectMapped(r, top + 8, 0x4100_0008, RW_CACHE, Math.log2(P));
      expectUnmapped(r, P);
      expectUnmapped(r, top - P);
      if (concat) {
        const lastTable = r.pt.root + (concat - 1) * P;
        const used: number[] = [];
        for (let a = lastTable; a < lastTable + P; a += 8)
          if (r.mem.read64(a) !== 0n) used.push((a - lastTable) / 8);
        expect(used).toEqual([P / 8 - 1]);
      }
    });
  }
});

// ---- map / translate with every granule and both stages ---------------------------------------

interface Scenario {
  name: string;
  fmt: typeof S1 | typeof S2;
  sizes: number[];
  ias: number;
  /** the level-2 block size (2 MB, 32 MB, 512 MB) */
  block: number;
  /** a level-1 block (1 GB with 4 KB), or 0 */
  l1block: number;
}

const SCENARIOS: Scenario[] = [
  { name: 'S1 4K IAS 48', fmt: S1, sizes: SIZES_4K, ias: 48, block: 2 * M, l1block: 1 * G },
  { name: 'S1 4K IAS 39', fmt: S1, sizes: SIZES_4K, ias: 39, block: 2 * M, l1block: 1 * G },
  { name: 'S1 16K IAS 48', fmt: S1, sizes: SIZES_16K, ias: 48, block: 32 * M, l1block: 0 },
  { name: 'S1 64K IAS 48', fmt: S1, sizes: SIZES_64K, ias: 48, block: 512 * M, l1block: 0 },
  {
    name: 'S2 4K IAS 40 (concatenated)',
    fmt: S2,
    sizes: SIZES_4K,
    ias: 40,
    block: 2 * M,
    l1block: 1 * G,
  },
  { name: 'S2 4K IAS 48', fmt: S2, sizes: SIZES_4K, ias: 48, block: 2 * M, l1block: 1 * G },
  {
    name: 'S2 16K IAS 48 (concatenated)',
    fmt: S2,
    sizes: SIZES_16K,
    ias: 48,
    block: 32 * M,
    l1block: 0,
  },
  { name: 'S2 64K IAS 48', fmt: S2, sizes: SIZES_64K, ias: 48, block: 512 * M, l1block: 0 },
  { name: 'S2 64K IAS 40', fmt: S2, sizes: SIZES_64K, ias: 40, block: 512 * M, l1block: 0 },
];

describe('map → iovaToPhys and the SMMU walker agree, every granule, both stages', () => {
  for (const sc of SCENARIOS) {
    it(sc.name, () => {
      const r = rig({ fmt: sc.fmt, pgsizeBitmap: sc.sizes, ias: sc.ias });
      const P = sc.sizes[0]!;
      const B = sc.block;
      const pShift = Math.log2(P);
      const prot: Prot = { read: true, write: true, cache: true };
      const roExec: Prot = { read: true, write: false, exec: true };
      const maps: Array<[number, number, number, Prot, number]> = []; // iova, pa, bytes, prot, leaf shift

      // a page near the top of the input range
      const top = 2 ** sc.ias - 3 * P;
      expect(r.pt.map(top, 0x1_2340_0000, P, 1, prot)).toBe(P);
      maps.push([top, 0x1_2340_0000, P, prot, pShift]);

      // four pages across a last-level table boundary: map_pages stops at the end of the table
      const run = 5 * B - 2 * P;
      expect(r.pt.map(run, 0x2_0000_0000, P, 4, roExec)).toBe(2 * P);
      expect(r.pt.iovaToPhys(5 * B)).toBe(null);
      expect(r.pt.map(5 * B, 0x2_0000_0000 + 2 * P, P, 2, roExec)).toBe(2 * P);
      maps.push([run, 0x2_0000_0000, 4 * P, roExec, pShift]);

      // a level-2 block
      const blkPa = 2 ** 40 + 3 * B;
      expect(r.pt.map(7 * B, blkPa, B, 1, prot)).toBe(B);
      maps.push([7 * B, blkPa, B, prot, Math.log2(B)]);
      // two adjacent blocks in one call
      expect(r.pt.map(10 * B, 0x3_0000_0000, B, 2, prot)).toBe(2 * B);
      maps.push([10 * B, 0x3_0000_0000, 2 * B, prot, Math.log2(B)]);

      if (sc.l1block) {
        const L1 = sc.l1block;
        expect(r.pt.map(9 * L1, 11 * L1, L1, 1, prot)).toBe(L1);
        maps.push([9 * L1, 11 * L1, L1, prot, 30]);
        if (sc.ias === 40) {
          // 1 GB blocks at the start level, in the second concatenated table
          const iova = 2 ** 39 + 2 * L1;
          expect(r.pt.map(iova, 20 * L1, L1, 3, prot)).toBe(3 * L1);
          maps.push([iova, 20 * L1, 3 * L1, prot, 30]);
          // at most to the end of a 512-entry table, even inside the concatenated pgd
          expect(r.pt.map(2 ** 39 - L1, 40 * L1, L1, 4, prot)).toBe(L1);
          maps.push([2 ** 39 - L1, 40 * L1, L1, prot, 30]);
        }
      }

      for (const [iova, pa, bytes, p, leafShift] of maps) {
        for (const off of [
          0,
          8,
          P - 1,
          P,
          Math.floor(bytes / 2 / P) * P + 24,
          bytes - P,
          bytes - 1,
        ]) {
          if (off < 0 || off >= bytes) continue;
          expectMapped(r, iova + off, pa + off, p, leafShift);
        }
        if (iova >= P && !maps.some(([i, , b]) => iova - 1 >= i && iova - 1 < i + b))
          expectUnmapped(r, iova - 1);
        if (
          iova + bytes < 2 ** sc.ias &&
          !maps.some(([i, , b]) => iova + bytes >= i && iova + bytes < i + b)
        )
          expectUnmapped(r, iova + bytes);
      }
      expectUnmapped(r, 0);
      expectUnmapped(r, 2 ** sc.ias - P);
      expectUnmapped(r, 6 * B + P);
      // beyond IAS: no translation from either
      expect(r.pt.iovaToPhys(2 ** sc.ias)).toBe(null);
      expect(hw(r, 2 ** sc.ias).fault).toBe(F_TRANSLATION);
      expect(r.flush.take()).toEqual([]); // map issues no TLB maintenance
    });
  }
});

// ---- refusals ---------------------------------------------------------------------------------

describe('refusals', () => {
  it('EEXIST on an existing leaf, at the target level or a block above it; nothing is written', () => {
    const r = rig({ fmt: S1, pgsizeBitmap: SIZES_4K });
    r.pt.map(0x10_0000, 0x4000_0000, 4096, 1, RW_CACHE);
    expect(errnoOf(() => r.pt.map(0x10_0000, 0x4100_0000, 4096, 1, RW_CACHE))).toBe('EEXIST');
    expect(r.pt.iovaToPhys(0x10_0000)).toBe(0x4000_0000);
    // a run whose third page exists: none of it is mapped
    expect(errnoOf(() => r.pt.map(0x10_0000 - 2 * 4096, 0x4200_0000, 4096, 4, RW_CACHE))).toBe(
      'EEXIST',
    );
    expectUnmapped(r, 0x10_0000 - 2 * 4096);
    expectUnmapped(r, 0x10_0000 - 4096);
    // blocks
    r.pt.map(0x40_0000, 0x4060_0000, 2 * M, 1, RW_CACHE);
    expect(errnoOf(() => r.pt.map(0x40_0000, 0x4080_0000, 2 * M, 1, RW_CACHE))).toBe('EEXIST');
    expect(errnoOf(() => r.pt.map(0x40_3000, 0x4000_3000, 4096, 1, RW_CACHE))).toBe('EEXIST');
    r.pt.map(0x8000_0000, 0x8000_0000, 1 * G, 1, RW_CACHE);
    expect(errnoOf(() => r.pt.map(0x8020_0000, 0x4000_0000, 2 * M, 1, RW_CACHE))).toBe('EEXIST');
    expect(r.pt.iovaToPhys(0x40_3008)).toBe(0x4060_3008);
    expect(r.pt.iovaToPhys(0x8020_0000)).toBe(0x8020_0000);
  });

  it('EINVAL for sizes outside the bitmap or misaligned addresses; ERANGE beyond IAS/OAS', () => {
    const r = rig({ fmt: S1, pgsizeBitmap: SIZES_16K, ias: 40, oas: 40 });
    expect(errnoOf(() => r.pt.map(0, 0x4000_0000, 4096, 1, RW_CACHE))).toBe('EINVAL');
    expect(errnoOf(() => r.pt.map(0, 0x4000_0000, 8192, 1, RW_CACHE))).toBe('EINVAL');
    expect(errnoOf(() => r.pt.map(0, 0x4000_0000, 1 * G, 1, RW_CACHE))).toBe('EINVAL');
    expect(errnoOf(() => r.pt.map(0x1000, 0x4000_0000, 16 * K, 1, RW_CACHE))).toBe('EINVAL');
    expect(errnoOf(() => r.pt.map(0, 0x4000_1000, 16 * K, 1, RW_CACHE))).toBe('EINVAL');
    expect(errnoOf(() => r.pt.map(16 * M, 0x4000_0000, 32 * M, 1, RW_CACHE))).toBe('EINVAL');
    expect(errnoOf(() => r.pt.map(2 ** 40, 0x4000_0000, 16 * K, 1, RW_CACHE))).toBe('ERANGE');
    expect(errnoOf(() => r.pt.map(0, 2 ** 40, 16 * K, 1, RW_CACHE))).toBe('ERANGE');
    expect(errnoOf(() => r.pt.map(0, 2 ** 40 - 16 * K, 16 * K, 1, RW_CACHE))).toBe(null);
  });
});

// ---- unmap and TLB maintenance ------------------------------------------------------------------

describe('unmap: sizes returned and the flush ops called', () => {
  it('pages: tlbAddPage per leaf with the leaf size, stopping at a hole; tables stay', () => {
    const r = rig({ fmt: S1, pgsizeBitmap: SIZES_4K });
    r.pt.map(0x1000_0000, 0x4000_0000, 4096, 4, RW_CACHE);
    const tables = r.alloc.live.size;
    const g = newGather();
    expect(r.pt.unmap(0x1000_0000, 4096, 2, g)).toBe(8192);
    expect(r.flush.calls).toEqual([
      ['page', 0x1000_0000, 4096],
      ['page', 0x1000_1000, 4096],
    ]);
    expect(r.flush.gathers.every((x) => x === g)).toBe(true);
    r.flush.take();
    expectUnmapped(r, 0x1000_1000);
    expectMapped(r, 0x1000_2000, 0x4000_2000, RW_CACHE, 12);
    // a count past the last mapped page stops at the first empty entry
    expect(r.pt.unmap(0x1000_2000, 4096, 5, g)).toBe(8192);
    expect(r.flush.take()).toEqual([
      ['page', 0x1000_2000, 4096],
      ['page', 0x1000_3000, 4096],
    ]);
    // nothing left: 0, no calls
    expect(r.pt.unmap(0x1000_0000, 4096, 1, g)).toBe(0);
    expect(r.pt.unmap(0x7000_0000, 4096, 1, g)).toBe(0);
    expect(r.flush.take()).toEqual([]);
    expect(r.alloc.live.size).toBe(tables); // leaf unmaps free no table
    expect(r.pt.tableCount).toBe(4);
  });

  it('pages across a table boundary: one table per call', () => {
    const r = rig({ fmt: S1, pgsizeBitmap: SIZES_4K });
    const base = 0x20_0000 - 2 * 4096;
    expect(r.pt.map(base, 0x4000_0000, 4096, 4, RW_CACHE)).toBe(8192);
    expect(r.pt.map(base + 8192, 0x4000_2000, 4096, 2, RW_CACHE)).toBe(8192);
    const g = newGather();
    expect(r.pt.unmap(base, 4096, 4, g)).toBe(8192);
    expect(r.pt.unmap(base + 8192, 4096, 2, g)).toBe(8192);
    expect(r.flush.take().map((c) => c[1])).toEqual([base, base + 4096, base + 8192, base + 12288]);
  });

  it('blocks: never split (part of a block unmaps 0); a whole block gives tlbAddPage with the block size', () => {
    for (const [sizes, B] of [
      [SIZES_4K, 2 * M],
      [SIZES_16K, 32 * M],
      [SIZES_64K, 512 * M],
    ] as const) {
      const r = rig({ fmt: S2, pgsizeBitmap: [...sizes], ias: 48 });
      const P = sizes[0];
      r.pt.map(3 * B, 5 * B, B, 1, RW_CACHE);
      const g = newGather();
      expect(r.pt.unmap(3 * B + P, P, 1, g)).toBe(0);
      expect(r.pt.unmap(3 * B, P, 1, g)).toBe(0);
      expect(r.flush.take()).toEqual([]);
      expectMapped(r, 3 * B + P, 5 * B + P, RW_CACHE, Math.log2(B));
      expect(r.pt.unmap(3 * B, B, 1, g)).toBe(B);
      expect(r.flush.take()).toEqual([['page', 3 * B, B]]);
      expectUnmapped(r, 3 * B);
    }
  });

  it('1 GB blocks in the second concatenated stage-2 table', () => {
    const r = rig({ fmt: S2, pgsizeBitmap: SIZES_4K, ias: 40 });
    const iova = 2 ** 39 + 5 * G;
    r.pt.map(iova, 2 * G, G, 2, RW_CACHE);
    expectMapped(r, iova + G + 0x1234, 3 * G + 0x1234, RW_CACHE, 30);
    expect(r.pt.unmap(iova, G, 2, newGather())).toBe(2 * G);
    expect(r.flush.take()).toEqual([
      ['page', iova, G],
      ['page', iova + G, G],
    ]);
    expectUnmapped(r, iova);
  });

  it('an unmap at a block size that finds a table removes it: tlbFlushWalk with the granule, table freed', () => {
    for (const [sizes, B] of [
      [SIZES_4K, 2 * M],
      [SIZES_64K, 512 * M],
    ] as const) {
      const r = rig({ fmt: S1, pgsizeBitmap: [...sizes] });
      const P = sizes[0];
      r.pt.map(B, 0x4000_0000, P, 3, RW_CACHE);
      const leafTable = Number(
        refDescs(r.mem, r.pt.root, Math.log2(P), r.pt.startLevel, 48, B).at(-2)! &
          ((1n << 48n) - BigInt(P)),
      );
      expect(r.alloc.live.has(leafTable)).toBe(true);
      const before = r.pt.tableCount;
      expect(r.pt.unmap(B, B, 1, newGather())).toBe(B);
      expect(r.flush.take()).toEqual([['walk', B, B, P]]);
      expect(r.alloc.live.has(leafTable)).toBe(false);
      expect(r.pt.tableCount).toBe(before - 1);
      expectUnmapped(r, B);
      expectUnmapped(r, B + P);
    }
  });

  it('a queued (lazy) gather clears the leaves without tlbAddPage', () => {
    const r = rig({ fmt: S1, pgsizeBitmap: SIZES_4K });
    r.pt.map(0x1000_0000, 0x4000_0000, 4096, 2, RW_CACHE);
    const g = { ...newGather(), queued: true };
    expect(r.pt.unmap(0x1000_0000, 4096, 2, g)).toBe(8192);
    expect(r.flush.take()).toEqual([]);
    expectUnmapped(r, 0x1000_0000);
  });

  it('a block mapped where a table is replaces the table (walk flush, table freed), as Linux does', () => {
    const r = rig({ fmt: S1, pgsizeBitmap: SIZES_4K });
    r.pt.map(0x60_0000, 0x4000_0000, 4096, 1, RW_CACHE);
    r.pt.unmap(0x60_0000, 4096, 1, newGather());
    r.flush.take();
    const tables = r.pt.tableCount;
    // the emptied level-3 table is still there; a 2 MB block replaces it
    expect(r.pt.map(0x60_0000, 0x4060_0000, 2 * M, 1, RW_CACHE)).toBe(2 * M);
    expect(r.flush.take()).toEqual([['walk', 0x60_0000, 2 * M, 4096]]);
    expect(r.pt.tableCount).toBe(tables - 1);
    expectMapped(r, 0x60_1000, 0x4060_1000, RW_CACHE, 21);
    // even a populated table goes: the caller owns the IOVA space
    r.pt.map(0xa0_0000, 0x4000_0000, 4096, 1, RW_CACHE);
    expect(r.pt.map(0xa0_0000, 0x40a0_0000, 2 * M, 1, RW_CACHE)).toBe(2 * M);
    expect(r.pt.iovaToPhys(0xa0_0000)).toBe(0x40a0_0000);
  });

  it('free(): one tlbFlushAll, every table freed', () => {
    const r = rig({ fmt: S2, pgsizeBitmap: SIZES_4K, ias: 40 });
    r.pt.map(0x1000_0000, 0x4000_0000, 4096, 4, RW_CACHE);
    r.pt.map(2 ** 39, 0x4000_0000, 2 * M, 3, RW_CACHE);
    r.pt.map(2 ** 39 + 4 * G, 0x4000_0000, G, 1, RW_CACHE);
    // the concatenated L1 pgd; an L2 and an L3 table for the pages; an L2 table for the 2 MB blocks; the 1 GB block sits in the pgd
    expect(r.alloc.live.size).toBe(4);
    r.pt.free();
    expect(r.flush.take()).toEqual([['all']]);
    expect(r.alloc.live.size).toBe(0);
    expect(() => r.pt.iovaToPhys(0)).toThrow();
  });
});

// ---- range invalidation --------------------------------------------------------------------------

describe('rangeInvCommands (reference §4.4, linux-sequence.md §3)', () => {
  it('the captured commands: a 4 KiB unmap (NUM=0 SCALE=0 TTL=3) and an 8 KiB unmap (NUM=0 SCALE=1)', () => {
    expect(rangeInvCommands(0xffffd000, 4096, 4096, true, 4096)).toEqual([
      { addr: 0xffffd000, tg: 1, ttl: 3, num: 0, scale: 0 },
    ]);
    expect(rangeInvCommands(0xfffee000, 8192, 4096, true, 4096)).toEqual([
      { addr: 0xfffee000, tg: 1, ttl: 3, num: 0, scale: 1 },
    ]);
  });

  it('hand-worked splits', () => {
    // 35 pages = 0b100011: 3 pages at SCALE 0, then 32 at SCALE 5
    expect(rangeInvCommands(0x10_0000, 35 * 4096, 4096, true, 4096)).toEqual([
      { addr: 0x10_0000, tg: 1, ttl: 3, num: 2, scale: 0 },
      { addr: 0x10_3000, tg: 1, ttl: 3, num: 0, scale: 5 },
    ]);
    // 100 pages = 0b1100100: SCALE = 2, NUM + 1 = (100 >> 2) & 31 = 25, so 25 × 4 = 100 pages in one command
    expect(rangeInvCommands(0, 100 * 4096, 4096, true, 4096)).toEqual([
      { addr: 0, tg: 1, ttl: 3, num: 24, scale: 2 },
    ]);
    // 33 leaf pages: 1 at SCALE 0, then 32 at SCALE 5
    expect(rangeInvCommands(0, 33 * 4096, 4096, true, 4096)).toEqual([
      { addr: 0, tg: 1, ttl: 3, num: 0, scale: 0 },
      { addr: 0x1000, tg: 1, ttl: 3, num: 0, scale: 5 },
    ]);
    // non-leaf (walk) invalidations: TTL 0; a count of 1 (mod 32) is rounded up to avoid NUM=SCALE=TTL=0
    expect(rangeInvCommands(0x20_0000, 4096, 4096, false, 4096)).toEqual([
      { addr: 0x20_0000, tg: 1, ttl: 0, num: 0, scale: 1 },
    ]);
    expect(rangeInvCommands(0, 33 * 4096, 4096, false, 4096)).toEqual([
      { addr: 0, tg: 1, ttl: 0, num: 16, scale: 1 },
    ]);
    expect(rangeInvCommands(0x20_0000, 2 * M, 4096, false, 4096)).toEqual([
      { addr: 0x20_0000, tg: 1, ttl: 0, num: 0, scale: 9 },
    ]);
    expect(rangeInvCommands(0, 0, 4096, true, 4096)).toEqual([]);
  });

  it('TG and TTL for blocks and the other granules: TTL = 4 - (log2(leaf) - 3)/(tg - 3)', () => {
    const one = (size: number, granule: number, tgSize: number) =>
      rangeInvCommands(0, size, granule, true, tgSize)[0]!;
    expect(one(2 * M, 2 * M, 4 * K)).toMatchObject({ tg: 1, ttl: 2, num: 0, scale: 9 });
    expect(one(4 * M, 2 * M, 4 * K)).toMatchObject({ tg: 1, ttl: 2, num: 0, scale: 10 });
    expect(one(G, G, 4 * K)).toMatchObject({ tg: 1, ttl: 1, num: 0, scale: 18 });
    expect(one(16 * K, 16 * K, 16 * K)).toMatchObject({ tg: 2, ttl: 3, num: 0, scale: 0 });
    expect(one(32 * M, 32 * M, 16 * K)).toMatchObject({ tg: 2, ttl: 2, num: 0, scale: 11 });
    expect(one(64 * K, 64 * K, 64 * K)).toMatchObject({ tg: 3, ttl: 3, num: 0, scale: 0 });
    expect(one(512 * M, 512 * M, 64 * K)).toMatchObject({ tg: 3, ttl: 2, num: 0, scale: 13 });
  });

  it('property: the commands tile the range from its start, none reserved, each at most 32 × 2^SCALE pages', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(12, 14, 16),
        fc.integer({ min: 1, max: 40_000 }),
        fc.integer({ min: 0, max: 2 ** 20 }),
        fc.boolean(),
        (g, pages, startPage, leaf) => {
          const P = 2 ** g;
          const iova = startPage * P;
          const cmds = rangeInvCommands(iova, pages * P, P, leaf, P);
          let at = iova;
          for (const c of cmds) {
            expect(c.addr).toBe(at);
            expect(c.tg).toBe((g - 10) / 2);
            expect(c.num).toBeGreaterThanOrEqual(0);
            expect(c.num).toBeLessThanOrEqual(31);
            expect(c.ttl).toBe(leaf ? 3 : 0);
            expect(
              c.num === 0 && c.scale === 0 && c.ttl === 0,
              'reserved TG≠0, NUM=SCALE=TTL=0',
            ).toBe(false);
            at += (c.num + 1) * 2 ** c.scale * P; // QEMU's decoding
          }
          const covered = (at - iova) / P;
          if (leaf) expect(covered).toBe(pages);
          else expect(covered).toBe(pages % 32 === 1 ? pages + 1 : pages);
        },
      ),
      { numRuns: 300 },
    );
  });
});

// ---- the IOMMU core's loops ----------------------------------------------------------------------

describe('mapRange / unmapRange / iommuPgsize (the IOMMU core around map_pages)', () => {
  it('iommuPgsize picks the largest aligned size and stops small pages where a block can start', () => {
    // 4K pages up to the next 2 MB boundary, then 2 MB blocks
    expect(iommuPgsize(SIZES_4K, 0x1f_e000, 0x4_001f_e000, 0x40_2000)).toEqual({
      pgsize: 4096,
      count: 2,
    });
    expect(iommuPgsize(SIZES_4K, 0x20_0000, 0x4_0020_0000, 0x40_0000)).toEqual({
      pgsize: 2 * M,
      count: 2,
    });
    // iova and PA differently offset within 2 MB: pages all the way
    expect(iommuPgsize(SIZES_4K, 0x1f_e000, 0x4_001f_f000, 0x40_2000)).toEqual({
      pgsize: 4096,
      count: 0x402,
    });
  });

  it('maps with blocks where they fit and unmaps the same way', () => {
    const r = rig({ fmt: S1, pgsizeBitmap: SIZES_4K });
    const iova = 0x3fe0_0000 - 0x3000;
    const size = 0x3000 + 2 * M + 1 * G + 0x5000; // 3 pages, a 2 MB block up to the 1 GB boundary, a 1 GB block, 5 pages
    expect(r.pt.mapRange(iova, iova + 0x1_0000_0000, size, RW_CACHE)).toBe(size);
    expectMapped(r, iova, iova + 0x1_0000_0000, RW_CACHE, 12);
    expectMapped(r, 0x3fe0_0000, 0x1_3fe0_0000, RW_CACHE, 21);
    expectMapped(r, 0x4000_0000 + 0x1234, 0x1_4000_1234, RW_CACHE, 30);
    expectMapped(r, 0x8000_4000, 0x1_8000_4000, RW_CACHE, 12);
    expect(r.pt.unmapRange(iova, size, newGather())).toBe(size);
    const calls = r.flush.take();
    expect(calls.filter((c) => c[0] === 'page').map((c) => c[2])).toEqual([
      ...Array(3).fill(4096),
      2 * M,
      G,
      ...Array(5).fill(4096),
    ]);
    expectUnmapped(r, 0x4000_0000);
  });
});

describe('walkEnd: where a walk stops (the empty slot or the leaf)', () => {
  it('stops at the first empty entry or at the leaf, as an independent walk of the same memory does', () => {
    const r = rig({ fmt: S2, pgsizeBitmap: SIZES_4K });
    expect(r.pt.startLevel).toBe(0);
    // nothing mapped: the root's entry
    expect(r.pt.walkEnd(0x4000_0000)).toEqual({ level: 0, pte: 0n, ptep: r.pt.root });
    r.pt.map(0x4020_0000, 0x4020_0000, 2 * M, 1, RW_CACHE);
    r.pt.map(0x4060_1000, 0x4060_1000, 4 * K, 1, RW_CACHE);
    const cases: Array<[number, number, boolean]> = [
      // [iova, level the walk stops at, a leaf there]
      [0x4020_1234, 2, true], // inside the 2 MB block
      [0x4000_0000, 2, false], // the L2 table exists, its entry for this 2 MB is empty
      [0x8000_0000, 1, false], // the next 1 GB: its L1 entry is empty
      [0x4060_0000, 3, false], // the L3 table exists, this page's entry is empty
      [0x4060_1000, 3, true], // the page
      [0x80_0000_0000, 0, false], // the next 512 GB: the root entry
    ];
    for (const [iova, level, leaf] of cases) {
      const ref = refDescs(r.mem, r.pt.root, 12, 0, 48, iova);
      const w = r.pt.walkEnd(iova)!;
      expect(w.level, `0x${iova.toString(16)}`).toBe(level);
      expect(ref).toHaveLength(level + 1);
      expect(w.pte).toBe(ref.at(-1));
      expect(w.pte !== 0n).toBe(leaf);
      expect(r.mem.read64(w.ptep)).toBe(w.pte);
      if (leaf) expect(r.pt.lookup(iova)).toEqual(w);
      else expect(r.pt.lookup(iova)).toBe(null);
    }
    // beyond the 48-bit input size
    expect(r.pt.walkEnd(2 ** 48)).toBe(null);
  });
});

// ---- model property ------------------------------------------------------------------------------

/**
 * A reference model of Linux's map_pages/unmap_pages over a window of four last-level-table slots
 * straddling a block-level table boundary: each slot is empty, a block, or a table of pages.
 * Semantics (io-pgtable-arm): a map stops at the end of its table; a leaf in the way is EEXIST
 * (a block map first frees the tables before it, in order); a page map creates its slot's table
 * even if it then fails; an unmap stops at the first empty entry and never splits a block; an
 * unmap at the block size frees a table with a walk flush.
 */
type Slot =
  | { kind: 'block'; pa: number; prot: number }
  | { kind: 'table'; pages: Map<number, { pa: number; prot: number }> };
type Op =
  | { op: 'mapPages'; w: number; off: number; count: number; pa: number; prot: number }
  | { op: 'mapBlocks'; w: number; count: number; pa: number; prot: number }
  | { op: 'unmapPages'; w: number; off: number; count: number }
  | { op: 'unmapBlocks'; w: number; count: number };

const PROTS: Prot[] = [
  { read: true, write: true, cache: true },
  { read: true, write: false, exec: true },
  { read: false, write: true, mmio: true },
  { read: true, write: true, priv: true },
];

function modelProperty(
  fmt: typeof S1 | typeof S2,
  sizes: number[],
  ias: number,
  numRuns: number,
): void {
  const P = sizes[0]!;
  const E = P / 8;
  const B = sizes[1]!;
  const slot0 = E - 2; // window slots E-2 .. E+1: the block-level table changes between E-1 and E
  const stage = fmt === S1 ? 1 : 2;
  const offArb = fc.oneof(fc.integer({ min: 0, max: 6 }), fc.integer({ min: E - 6, max: E - 1 }));
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({
      op: fc.constant('mapPages' as const),
      w: fc.integer({ min: 0, max: 3 }),
      off: offArb,
      count: fc.integer({ min: 1, max: 9 }),
      pa: fc.integer({ min: 0, max: 1000 }),
      prot: fc.integer({ min: 0, max: 3 }),
    }),
    fc.record({
      op: fc.constant('mapBlocks' as const),
      w: fc.integer({ min: 0, max: 3 }),
      count: fc.integer({ min: 1, max: 3 }),
      pa: fc.integer({ min: 0, max: 1000 }),
      prot: fc.integer({ min: 0, max: 3 }),
    }),
    fc.record({
      op: fc.constant('unmapPages' as const),
      w: fc.integer({ min: 0, max: 3 }),
      off: offArb,
      count: fc.integer({ min: 1, max: 9 }),
    }),
    fc.record({
      op: fc.constant('unmapBlocks' as const),
      w: fc.integer({ min: 0, max: 3 }),
      count: fc.integer({ min: 1, max: 3 }),
    }),
  );

  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 24 }), (ops) => {
      const r = rig({ fmt, pgsizeBitmap: sizes, ias });
      const model = new Map<number, Slot>();
      const inWindow = (s: number) => s >= slot0 && s < slot0 + 4;
      const modelPa = (iova: number): { pa: number; prot: number; shift: number } | null => {
        const s = Math.floor(iova / B);
        const st = model.get(s);
        if (!st) return null;
        if (st.kind === 'block')
          return { pa: st.pa + (iova % B), prot: st.prot, shift: Math.log2(B) };
        const pg = st.pages.get(Math.floor((iova % B) / P));
        return pg ? { pa: pg.pa + (iova % P), prot: pg.prot, shift: Math.log2(P) } : null;
      };
      // plain comparisons (expect() per page is too slow here); any difference fails with the details
      const check = (iova: number, withHw: boolean) => {
        const m = modelPa(iova);
        const got = r.pt.iovaToPhys(iova);
        const want = m ? m.pa : null;
        if (got !== want) expect(got, `IOVA 0x${iova.toString(16)}: iovaToPhys`).toBe(want);
        if (!withHw) return;
        const h = hw(r, iova);
        const hwGot = m ? [h.fault, h.pa, h.pageShift, h.perm] : [h.fault];
        const hwWant = m
          ? [0, m.pa, m.shift, expectedPerm(stage, PROTS[m.prot]!)]
          : [F_TRANSLATION];
        if (hwGot.some((v, i) => v !== hwWant[i]))
          expect(hwGot, `IOVA 0x${iova.toString(16)}: walk [fault, PA, shift, perm]`).toEqual(
            hwWant,
          );
      };

      for (const o of ops) {
        const s = slot0 + o.w;
        const expectCalls: FlushCall[] = [];
        let want: number | string;
        let got: number | string;
        const run = (f: () => number): number | string => {
          try {
            return f();
          } catch (e) {
            if (e instanceof IoPgtableError) return e.errno;
            throw e;
          }
        };
        switch (o.op) {
          case 'mapPages': {
            const iova = s * B + o.off * P;
            const pa = 2 ** 36 + o.pa * 16 * P;
            got = run(() => r.pt.map(iova, pa, P, o.count, PROTS[o.prot]!));
            const st = model.get(s);
            const n = Math.min(o.count, E - o.off);
            if (st?.kind === 'block') want = 'EEXIST';
            else {
              const t = st ?? { kind: 'table' as const, pages: new Map() };
              model.set(s, t);
              let clash = false;
              for (let i = 0; i < n; i++) if (t.pages.has(o.off + i)) clash = true;
              if (clash) want = 'EEXIST';
              else {
                for (let i = 0; i < n; i++)
                  t.pages.set(o.off + i, { pa: pa + i * P, prot: o.prot });
                want = n * P;
              }
            }
            break;
          }
          case 'mapBlocks': {
            const pa = 2 ** 40 + o.pa * B;
            got = run(() => r.pt.map(s * B, pa, B, o.count, PROTS[o.prot]!));
            const n = Math.min(o.count, E - (s % E));
            want = n * B;
            for (let i = 0; i < n; i++) {
              const st = model.get(s + i);
              if (st?.kind === 'block') {
                want = 'EEXIST';
                break;
              }
              if (st?.kind === 'table') {
                model.delete(s + i);
                expectCalls.push(['walk', (s + i) * B, B, P]);
              }
            }
            if (want !== 'EEXIST')
              for (let i = 0; i < n; i++)
                model.set(s + i, { kind: 'block', pa: pa + i * B, prot: o.prot });
            break;
          }
          case 'unmapPages': {
            const iova = s * B + o.off * P;
            got = run(() => r.pt.unmap(iova, P, o.count, newGather()));
            const st = model.get(s);
            want = 0;
            if (st?.kind === 'table') {
              const n = Math.min(o.count, E - o.off);
              let i = 0;
              for (; i < n && st.pages.has(o.off + i); i++) {
                st.pages.delete(o.off + i);
                expectCalls.push(['page', iova + i * P, P]);
              }
              want = i * P;
            }
            break;
          }
          case 'unmapBlocks': {
            got = run(() => r.pt.unmap(s * B, B, o.count, newGather()));
            const n = Math.min(o.count, E - (s % E));
            let i = 0;
            for (; i < n; i++) {
              const st = model.get(s + i);
              if (!st) break;
              model.delete(s + i);
              expectCalls.push(
                st.kind === 'block' ? ['page', (s + i) * B, B] : ['walk', (s + i) * B, B, P],
              );
            }
            want = i * B;
            break;
          }
        }
        expect(got, JSON.stringify(o)).toEqual(want);
        expect(r.flush.take(), JSON.stringify(o)).toEqual(expectCalls);
        // spot checks around the operation
        const base = s * B + ('off' in o ? o.off * P : 0);
        for (const d of [-P, 0, P, 2 * P, 8 * P, B - P, B, 2 * B + 5]) {
          const a = base + d;
          if (inWindow(Math.floor(a / B))) check(a, false);
        }
      }
      // everything in the window, through iovaToPhys and the SMMU walker
      for (let a = slot0 * B; a < (slot0 + 4) * B; a += P) check(a + ((a / P) % 7) * 8, true);
      // no leaks, no double frees
      r.pt.free();
      expect(r.alloc.live.size).toBe(0);
    }),
    { numRuns },
  );
}

describe('property: random maps/unmaps match a reference model (iovaToPhys and the SMMU walker)', () => {
  it('stage 1, 4 KB (window across the 1 GB boundary)', () => modelProperty(S1, SIZES_4K, 48, 300));
  it('stage 2, 4 KB, IAS 40 with concatenated level-1 tables', () =>
    modelProperty(S2, SIZES_4K, 40, 150));
  it('stage 1, 16 KB (window across the 64 GB boundary)', () =>
    modelProperty(S1, SIZES_16K, 48, 40));
  it('stage 2, 64 KB (window across the 4 TB boundary)', () =>
    modelProperty(S2, SIZES_64K, 48, 12));
});
