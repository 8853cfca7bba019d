/**
 * io-pgtable: VMSAv8-64 LPAE page tables for the SMMU, behaving like Linux's io-pgtable-arm
 * formats ARM_64_LPAE_S1 and ARM_64_LPAE_S2 (written here from the reference, smmuv3.md §6, and
 * linux-sequence.md §3; not from Linux's source). A neutral library, as pKVM shares
 * io-pgtable-arm: the host driver and the hypervisor both import it, and it imports only
 * hw/vmsa (descriptor fields, level geometry, TCR encodings).
 *
 * What it does, in Linux's terms:
 *  - Configuration: the granule is PAGE_SIZE (4 KiB) when the page-size bitmap has it, else the
 *    largest smaller size, else the smallest larger one; the bitmap is then cut down to the
 *    granule's page and block sizes (4K: 4K|2M|1G, 16K: 16K|32M, 64K: 64K|512M, +4T with a
 *    52-bit OAS); IAS/OAS are capped at 48 bits (52 with 64K). levels = ceil((IAS - g)/(g - 3)).
 *    Stage 2 starting at level 0 with at most 16 start-level entries instead starts one level
 *    lower with concatenated tables (4K/IAS 40: two L1 tables, SL0=1).
 *  - Tables are written through the CPU's view of memory (`PgtableMem`), allocated zeroed from
 *    `PgtableAlloc` with the page-order size and alignment Linux's page allocator gives
 *    (at least 4 KiB, naturally aligned). Tables are never freed by unmapping leaves; they go
 *    when a block replaces them (map), when an unmap at a block size finds a table (unmap,
 *    with a walk flush), and on `free()`.
 *  - `map()`/`unmap()` are map_pages/unmap_pages: they stop at the end of the current table
 *    (at most one last-level table's worth of entries per call) and return the bytes done; the
 *    caller loops like the IOMMU core does (`mapRange`/`unmapRange` below do that).
 *
 * Descriptors (reference §6.2):
 *  - stage 1: nG always; AP[2:1] = 01 (RW, unprivileged), 11 (read-only, unprivileged), 00 / 10
 *    with `priv`; a write-only mapping is RW (AP[2] is set only for read-without-write).
 *    AttrIndx 2 (Device-nGnRE) for mmio, else 1 (WBWA) for cache, else 0 (Normal NC), against
 *    MAIR 0xf404ff44. SH = ISH when `cache`, else OSH. AF. PXN|UXN (bits 54:53) unless `exec`.
 *  - stage 2: S2AP bit 6 read, bit 7 write; MemAttr 0b0001 (Device-nGnRE) for mmio, 0b1111
 *    (Normal, Outer+Inner Write-Back) for cache, else 0b0101 (Normal, Outer+Inner Non-cacheable);
 *    SH as stage 1; AF; XN as bits 54:53 both set unless `exec` (Linux's XN value).
 *  - tables: type 0b11 and the next table's address; with a non-coherent walk Linux marks a
 *    table entry it has cleaned to memory with software bit 55 (SW_SYNC), and so does this.
 */

import {
  DESC,
  DESC_TYPE,
  AP_BIT,
  SH,
  S2AP,
  S2_XN,
  S2_MEMATTR,
  S2_DESC,
  placeBig,
  s1LeafAttrs,
  s2LeafAttrs,
  oaToDesc,
  descToOa,
} from './descriptor.ts';
import {
  LAST_LEVEL,
  levelShift,
  indexBits,
  s1StartLevel,
  s2ConcatStartLevel,
  s2Sl0,
  tg0Encoding,
} from './geometry.ts';
import { RGN, psEncoding } from './tcr.ts';

export { S2_MEMATTR };

// ---- public types ----------------------------------------------------------------------------

/** The CPU's view of memory (through the bus, as the host). */
export interface PgtableMem {
  read64(addr: number): bigint;
  write64(addr: number, v: bigint): void;
}

/** Zeroed, aligned memory for tables. */
export interface PgtableAlloc {
  alloc(bytes: number, align: number): number;
  free?(addr: number, bytes: number): void;
}

/** Linux's IOMMU_READ / WRITE / NOEXEC (as the inverse `exec`) / PRIV / MMIO / CACHE. */
export interface Prot {
  read: boolean;
  write: boolean;
  /** executable: without it (undefined or false) the mapping is IOMMU_NOEXEC (XN set) */
  exec?: boolean;
  priv?: boolean;
  mmio?: boolean;
  cache?: boolean;
}

/** Linux's iommu_iotlb_gather. */
export interface IotlbGather {
  /** leaf size of the pages gathered so far (0: none) */
  pgsize: number;
  /** first byte gathered (Number.MAX_SAFE_INTEGER, Linux's ULONG_MAX, when empty) */
  start: number;
  /** last byte gathered (inclusive; 0 when empty) */
  end: number;
  /** lazy (flush-queue) unmap: the pages are not gathered, the whole ASID/VMID is flushed later */
  queued?: boolean;
}

/** The driver's iommu_flush_ops. */
export interface FlushOps {
  tlbFlushAll(): void;
  /** table entries were removed: invalidate [iova, iova+size) including walk caches (leaf=false) */
  tlbFlushWalk(iova: number, size: number, granule: number): void;
  /** a leaf of size `granule` at `iova` was removed */
  tlbAddPage(gather: IotlbGather, iova: number, granule: number): void;
}

export type PgtableFormat = 'ARM_64_LPAE_S1' | 'ARM_64_LPAE_S2';

export interface PgtableCfg {
  fmt: PgtableFormat;
  /** allowed page and block sizes, in bytes */
  pgsizeBitmap: number[];
  ias: number;
  oas: number;
  coherentWalk: boolean;
}

/** io_pgtable_cfg.arm_lpae_s1_cfg: what a CD needs. */
export interface S1PgtableCfg {
  tsz: number;
  /** CD.TG0: 0 4KB, 1 64KB, 2 16KB */
  tg: number;
  irgn: number;
  orgn: number;
  sh: number;
  /** CD.IPS encoding of the OAS */
  ips: number;
  /** MAIR 0xf404ff44, sign-extended to 64 bits as Linux computes it (the CD's DW3) */
  mair: bigint;
  ttbr: number;
}

/** io_pgtable_cfg.arm_lpae_s2_cfg (VTCR fields + VTTBR): what a stage-2 STE needs. */
export interface S2PgtableCfg {
  tsz: number;
  /** STE.S2SL0 */
  sl: number;
  /** STE.S2TG: 0 4KB, 1 64KB, 2 16KB */
  tg: number;
  /** STE.S2PS encoding of the OAS */
  ps: number;
  irgn: number;
  orgn: number;
  sh: number;
  vttbr: number;
}

export type PgtableErrno = 'EEXIST' | 'EINVAL' | 'ERANGE';

/** A refused request, with the errno Linux would return. */
export class IoPgtableError extends Error {
  constructor(
    readonly errno: PgtableErrno,
    message: string,
  ) {
    super(`${errno}: ${message}`);
    this.name = 'IoPgtableError';
  }
}

// ---- encodings -------------------------------------------------------------------------------

/** The CPU's page size (the host kernel runs with 4 KiB pages). */
export const CPU_PAGE_SIZE = 4096;

/** MAIR attribute indices and the MAIR value (NC 0x44, WBRWA 0xff, Device-nGnRE 0x04, INC_OWBRWA 0xf4). */
export const MAIR_IDX = { NC: 0, CACHE: 1, DEV: 2, INC_OCACHE: 3 } as const;
const MAIR_U32 = (0xf4 << 24) | (0x04 << 16) | (0xff << 8) | 0x44; // a negative 32-bit int, as in C
/** 0xfffffffff404ff44: Linux builds the MAIR in an int, so it is sign-extended into the 64-bit field. */
export const LINUX_MAIR = BigInt.asUintN(64, BigInt(MAIR_U32));

const TYPE_MASK = placeBig(DESC.Type, DESC.Type.mask);
const TYPE_BLOCK = BigInt(DESC_TYPE.BLOCK);
const TYPE_TABLE = BigInt(DESC_TYPE.TABLE);
const TYPE_PAGE = BigInt(DESC_TYPE.PAGE);
/** Linux's software bit: a table entry cleaned to memory for a non-coherent walker */
const PTE_SW_SYNC = placeBig(DESC.SW, 1);

const MAX_LEVELS = LAST_LEVEL + 1;
/** Linux's ARM_LPAE_PTE_XN at stage 2: XN[1:0] = 0b11 */
const S2_XN_BOTH = S2_DESC.XN.mask;
const SZ_4K = 0x1000;
const SZ_16K = 0x4000;
const SZ_64K = 0x10000;
const PA48 = 2 ** 48;

const log2 = (n: number): number => Math.round(Math.log2(n));
/** 2^0 .. 2^64, exact: pow2 is on the walk and invalidation paths, where Math.pow is slow */
const POW2: readonly number[] = Array.from({ length: 65 }, (_, i) => 2 ** i);
const pow2 = (n: number): number => POW2[n] ?? 2 ** n;

// ---- the page table --------------------------------------------------------------------------

export class IoPgtable {
  readonly fmt: PgtableFormat;
  /** table root: the pgd (stage 2 with concatenation: the concatenated start tables) */
  readonly root: number;
  readonly granule: number;
  /** log2 granule */
  readonly pgShift: number;
  /** index bits per level below the start level: pgShift - 3 */
  readonly bitsPerLevel: number;
  readonly levels: number;
  readonly startLevel: number;
  /** index bits of the start level (more than bitsPerLevel with concatenation) */
  readonly pgdBits: number;
  /** the page and block sizes this table supports, ascending (Linux's restricted pgsize_bitmap) */
  readonly pgsizeBitmap: readonly number[];
  /** input and output address sizes after Linux's caps */
  readonly ias: number;
  readonly oas: number;
  readonly coherentWalk: boolean;
  readonly s1?: S1PgtableCfg;
  readonly s2?: S2PgtableCfg;
  private liveTables = 0;
  private freed = false;
  // hot-path geometry, precomputed per level (index by level 0..3): the size one entry maps and
  // the entries in a table at that level (pow2() is a Math.pow call: too slow for every walk step)
  private readonly lvlSize: number[] = [];
  private readonly lvlEntries: number[] = [];
  /** 2^ias and 2^oas */
  private readonly iasLimit: number;
  private readonly oasLimit: number;
  /** protToPte results, indexed by the six Prot flags as bits (read 1, write 2, exec 4, priv 8, mmio 16, cache 32) */
  private readonly attrCache: Array<bigint | undefined> = new Array<bigint | undefined>(64).fill(
    undefined,
  );

  constructor(
    cfg: PgtableCfg,
    private readonly mem: PgtableMem,
    private readonly allocator: PgtableAlloc,
    private readonly tlb: FlushOps,
  ) {
    this.fmt = cfg.fmt;
    this.coherentWalk = cfg.coherentWalk;

    // granule: PAGE_SIZE if offered, else the largest smaller size, else the smallest larger one
    const sizes = [...new Set(cfg.pgsizeBitmap)].filter(
      (s) => Number.isInteger(s) && s > 0 && Number.isInteger(Math.log2(s)),
    );
    sizes.sort((a, b) => a - b);
    const smaller = sizes.filter((s) => s < CPU_PAGE_SIZE);
    const larger = sizes.filter((s) => s > CPU_PAGE_SIZE);
    let granule = 0;
    if (sizes.includes(CPU_PAGE_SIZE)) granule = CPU_PAGE_SIZE;
    else if (smaller.length) granule = smaller[smaller.length - 1]!;
    else if (larger.length) granule = larger[0]!;
    let pageSizes: number[];
    let maxAddrBits = 48;
    switch (granule) {
      case SZ_4K:
        pageSizes = [SZ_4K, 2 ** 21, 2 ** 30];
        break;
      case SZ_16K:
        pageSizes = [SZ_16K, 2 ** 25];
        break;
      case SZ_64K:
        maxAddrBits = 52;
        pageSizes = [SZ_64K, 2 ** 29];
        if (cfg.oas > 48) pageSizes.push(2 ** 42);
        break;
      default:
        pageSizes = [];
    }
    this.pgsizeBitmap = sizes.filter((s) => pageSizes.includes(s));
    if (!this.pgsizeBitmap.includes(granule))
      throw new IoPgtableError(
        'EINVAL',
        `no 4K/16K/64K granule in the page sizes [${cfg.pgsizeBitmap.map(hex).join(', ')}]`,
      );
    this.ias = Math.min(cfg.ias, maxAddrBits);
    this.oas = Math.min(cfg.oas, maxAddrBits);
    this.granule = granule;
    this.pgShift = log2(granule);
    this.bitsPerLevel = this.pgShift - 3;
    const vaBits = this.ias - this.pgShift;
    if (!Number.isInteger(this.ias) || vaBits <= 0)
      throw new IoPgtableError(
        'EINVAL',
        `IAS ${cfg.ias} is too small for a ${granule / 1024} KB granule`,
      );
    const psEnc = psEncoding(this.oas);
    if (psEnc < 0) throw new IoPgtableError('EINVAL', `OAS ${cfg.oas} has no IPS/PS encoding`);

    // stage 2 concatenates a small level-0 start into level-1 tables, to shorten the walk
    const startLevel =
      cfg.fmt === 'ARM_64_LPAE_S2'
        ? s2ConcatStartLevel(this.pgShift, this.ias)
        : s1StartLevel(this.pgShift, this.ias);
    const pgdBits = indexBits(this.pgShift, startLevel, startLevel, this.ias);
    this.levels = MAX_LEVELS - startLevel;
    this.startLevel = startLevel;
    this.pgdBits = pgdBits;
    for (let l = 0; l < MAX_LEVELS; l++) {
      this.lvlSize.push(pow2(this.levelShift(l)));
      this.lvlEntries.push(pow2(l === startLevel ? pgdBits : this.bitsPerLevel));
    }
    this.iasLimit = pow2(this.ias);
    this.oasLimit = pow2(this.oas);

    const sh = cfg.coherentWalk ? SH.ISH : SH.OSH;
    const rgn = cfg.coherentWalk ? RGN.WBWA : RGN.NC;
    const tsz = 64 - this.ias;
    const tg = tg0Encoding(this.pgShift);
    this.root = this.allocTable(this.tableBytes(startLevel));
    if (cfg.fmt === 'ARM_64_LPAE_S1') {
      this.s1 = {
        tsz,
        tg,
        irgn: rgn,
        orgn: rgn,
        sh,
        ips: psEnc,
        mair: LINUX_MAIR,
        ttbr: this.root,
      };
    } else if (cfg.fmt === 'ARM_64_LPAE_S2') {
      // S2SL0: 4K counts from level 2 (start = 2 - SL0), 16K/64K from level 3 (start = 3 - SL0)
      const sl = s2Sl0(startLevel, this.pgShift);
      this.s2 = { tsz, sl, tg, ps: psEnc, irgn: rgn, orgn: rgn, sh, vttbr: this.root };
    } else {
      throw new IoPgtableError('EINVAL', `format ${String(cfg.fmt)}`);
    }
  }

  // ---- geometry ----

  /** log2 of the size one entry at `level` maps. */
  levelShift(level: number): number {
    return levelShift(this.pgShift, level);
  }

  /** Size one entry at `level` maps (the block or page size there). */
  blockSize(level: number): number {
    return this.lvlSize[level] ?? pow2(this.levelShift(level));
  }

  private tableBytes(level: number): number {
    return level === this.startLevel ? 8 * pow2(this.pgdBits) : this.granule;
  }

  private index(iova: number, level: number): number {
    return Math.floor(iova / this.lvlSize[level]!) % this.lvlEntries[level]!;
  }

  /** Entries from index `idx` to the end of its (granule-sized) table: one concatenated table at the start level. */
  private maxEntries(idx: number): number {
    const perTable = this.granule / 8;
    return perTable - (idx % perTable);
  }

  /** Tables currently allocated (the root included). */
  get tableCount(): number {
    return this.liveTables;
  }

  // ---- descriptors ----

  private paddrToPte(pa: number): bigint {
    // the common case: a granule-aligned PA below 2^48 is its own descriptor address field
    if (this.granule !== SZ_64K && pa >= 0 && pa < PA48 && pa % SZ_4K === 0) return BigInt(pa);
    // 64 KB granule: PA[51:48] go into bits [15:12]
    return oaToDesc(pa, this.granule === SZ_64K);
  }

  private pteToPaddr(pte: bigint): number {
    return descToOa(pte, this.granule === SZ_64K);
  }

  private isLeaf(pte: bigint, level: number): boolean {
    return level === MAX_LEVELS - 1
      ? (pte & TYPE_MASK) === TYPE_PAGE
      : (pte & TYPE_MASK) === TYPE_BLOCK;
  }

  /** The attribute and permission bits of a leaf for `prot` (everything but the type and the address). */
  protToPte(prot: Prot): bigint {
    // they depend only on the truth of prot's six flags: computed once per combination
    const key =
      (prot.read ? 1 : 0) |
      (prot.write ? 2 : 0) |
      (prot.exec ? 4 : 0) |
      (prot.priv ? 8 : 0) |
      (prot.mmio ? 16 : 0) |
      (prot.cache ? 32 : 0);
    const hit = this.attrCache[key];
    if (hit !== undefined) return hit;
    const pte = this.computeProtToPte(prot);
    this.attrCache[key] = pte;
    return pte;
  }

  private computeProtToPte(prot: Prot): bigint {
    const sh = prot.cache ? SH.ISH : SH.OSH;
    if (this.fmt === 'ARM_64_LPAE_S1') {
      // a write-only mapping is RW: AP[2] only for read-without-write
      const ap = (!prot.write && prot.read ? AP_BIT.RDONLY : 0) | (prot.priv ? 0 : AP_BIT.UNPRIV);
      const attrIndx = prot.mmio ? MAIR_IDX.DEV : prot.cache ? MAIR_IDX.CACHE : MAIR_IDX.NC;
      return s1LeafAttrs({
        attrIndx,
        ap,
        sh,
        af: true,
        ng: true,
        pxn: !prot.exec,
        uxn: !prot.exec,
      });
    }
    const s2ap = (prot.read ? S2AP.READ : 0) | (prot.write ? S2AP.WRITE : 0);
    const memAttr = prot.mmio
      ? S2_MEMATTR.DEVICE_nGnRE
      : prot.cache
        ? S2_MEMATTR.NORMAL_WB
        : S2_MEMATTR.NORMAL_NC;
    // Linux's XN sets both XN bits (0b11: XN[1] makes it execute-never without FEAT_XNX)
    return s2LeafAttrs({ memAttr, s2ap, sh, af: true, xn: prot.exec ? S2_XN.EXEC : S2_XN_BOTH });
  }

  // ---- tables ----

  private allocTable(bytes: number): number {
    const size = Math.max(bytes, CPU_PAGE_SIZE); // whole pages, naturally aligned, like alloc_pages()
    const addr = this.allocator.alloc(size, size);
    if (addr % size !== 0)
      throw new Error(
        `io-pgtable: allocator returned 0x${addr.toString(16)}, not aligned to 0x${size.toString(16)}`,
      );
    this.liveTables++;
    return addr;
  }

  private freeTables(level: number, table: number): void {
    const bytes = this.tableBytes(level);
    if (level < MAX_LEVELS - 1) {
      for (let off = 0; off < bytes; off += 8) {
        const pte = this.mem.read64(table + off);
        if (pte === 0n || this.isLeaf(pte, level)) continue;
        this.freeTables(level + 1, this.pteToPaddr(pte));
      }
    }
    this.liveTables--;
    this.allocator.free?.(table, Math.max(bytes, CPU_PAGE_SIZE));
  }

  private installTable(ptep: number): bigint {
    const table = this.allocTable(this.granule);
    let pte = this.paddrToPte(table) | TYPE_TABLE;
    if (!this.coherentWalk) pte |= PTE_SW_SYNC; // cleaned to memory for the walker
    this.mem.write64(ptep, pte);
    return pte;
  }

  private checkLive(): void {
    if (this.freed) throw new Error('io-pgtable: used after free()');
  }

  // ---- operations ----

  /**
   * map_pages: map `pgcount` pages of `pgsize` (a page or block size of this table) from `iova`
   * to `paddr`, up to the end of the table holding the first entry. Returns the bytes mapped:
   * 0 when `prot` has neither read nor write. Throws IoPgtableError: EINVAL for a size not in
   * the bitmap or a misaligned address, ERANGE for an address beyond IAS/OAS, EEXIST when a
   * leaf is already there (at the target level, or a block above it). An empty or populated
   * table where a block goes is replaced (freed, with a walk flush), as Linux does.
   */
  map(iova: number, paddr: number, pgsize: number, pgcount: number, prot: Prot): number {
    this.checkLive();
    if (!this.pgsizeBitmap.includes(pgsize))
      throw new IoPgtableError(
        'EINVAL',
        `page size ${hex(pgsize)} is not in [${this.pgsizeBitmap.map(hex).join(', ')}]`,
      );
    if (!Number.isInteger(pgcount) || pgcount < 0)
      throw new IoPgtableError('EINVAL', `page count ${pgcount}`);
    if (!prot.read && !prot.write) return 0; // no access: nothing to do
    if (!Number.isInteger(iova) || iova < 0 || iova >= this.iasLimit)
      throw new IoPgtableError(
        'ERANGE',
        `IOVA ${hex(iova)} is beyond the ${this.ias}-bit input size`,
      );
    if (!Number.isInteger(paddr) || paddr < 0 || paddr >= this.oasLimit)
      throw new IoPgtableError(
        'ERANGE',
        `PA ${hex(paddr)} is beyond the ${this.oas}-bit output size`,
      );
    if (iova % pgsize || paddr % pgsize)
      throw new IoPgtableError(
        'EINVAL',
        `IOVA ${hex(iova)} / PA ${hex(paddr)} not aligned to ${hex(pgsize)}`,
      );
    if (pgcount === 0) return 0;
    const attrs = this.protToPte(prot);

    let table = this.root;
    for (let level = this.startLevel; level < MAX_LEVELS; level++) {
      const idx = this.index(iova, level);
      const ptep = table + idx * 8;
      if (pgsize === this.lvlSize[level]) {
        const n = Math.min(pgcount, this.maxEntries(idx));
        for (let i = 0; i < n; i++) {
          const old = this.mem.read64(ptep + i * 8);
          if (old === 0n) continue;
          if (this.isLeaf(old, level))
            throw new IoPgtableError(
              'EEXIST',
              `IOVA ${hex(iova + i * pgsize)} is already mapped (level ${level})`,
            );
          // a table where the block goes: unmap and free it first
          if (this.unmapAt(null, iova + i * pgsize, pgsize, 1, level, table) !== pgsize)
            throw new IoPgtableError(
              'EINVAL',
              `cannot replace the table at ${hex(iova + i * pgsize)}`,
            );
        }
        const leaf = attrs | (level === MAX_LEVELS - 1 ? TYPE_PAGE : TYPE_BLOCK);
        for (let i = 0; i < n; i++)
          this.mem.write64(ptep + i * 8, leaf | this.paddrToPte(paddr + i * pgsize));
        return n * pgsize;
      }
      // no table can be allocated below the last level
      if (level >= MAX_LEVELS - 1) break;
      let pte = this.mem.read64(ptep);
      if (pte === 0n) pte = this.installTable(ptep);
      if (this.isLeaf(pte, level))
        throw new IoPgtableError('EEXIST', `IOVA ${hex(iova)} is inside a level-${level} block`);
      table = this.pteToPaddr(pte);
    }
    throw new IoPgtableError(
      'EINVAL',
      `page size ${hex(pgsize)} is not a block or page size below level ${this.startLevel}`,
    );
  }

  /**
   * unmap_pages: unmap `pgcount` leaves of `pgsize` from `iova`, up to the end of the table
   * holding the first, stopping at the first empty entry. Returns the bytes unmapped. Each leaf
   * removed is reported with tlbAddPage (unless the gather is queued); a table found where a
   * leaf of `pgsize` would be is removed with everything below it, tlbFlushWalk'ed and freed.
   * Part of a block is never unmapped (returns 0).
   */
  unmap(iova: number, pgsize: number, pgcount: number, gather: IotlbGather): number {
    this.checkLive();
    if (!this.pgsizeBitmap.includes(pgsize) || !Number.isInteger(pgcount) || pgcount < 1) return 0;
    if (!Number.isInteger(iova) || iova < 0 || iova >= this.iasLimit) return 0;
    return this.unmapAt(gather, iova, pgsize, pgcount, this.startLevel, this.root);
  }

  private unmapAt(
    gather: IotlbGather | null,
    iova: number,
    size: number,
    pgcount: number,
    level: number,
    table: number,
  ): number {
    if (level >= MAX_LEVELS) return 0;
    const idx = this.index(iova, level);
    const ptep = table + idx * 8;
    const pte = this.mem.read64(ptep);
    if (pte === 0n) return 0;
    if (size === this.lvlSize[level]) {
      const n = Math.min(pgcount, this.maxEntries(idx));
      let i = 0;
      for (; i < n; i++) {
        const e = this.mem.read64(ptep + i * 8);
        if (e === 0n) break;
        this.mem.write64(ptep + i * 8, 0n);
        if (!this.isLeaf(e, level)) {
          // flush partial walks through the table, then free it
          this.tlb.tlbFlushWalk(iova + i * size, size, this.granule);
          this.freeTables(level + 1, this.pteToPaddr(e));
        } else if (gather && !gather.queued) {
          this.tlb.tlbAddPage(gather, iova + i * size, size);
        }
      }
      return i * size;
    }
    if (this.isLeaf(pte, level)) return 0; // part of a larger leaf: not split
    return this.unmapAt(gather, iova, size, pgcount, level + 1, this.pteToPaddr(pte));
  }

  /** The PA `iova` translates to, or null when nothing is mapped there. */
  iovaToPhys(iova: number): number | null {
    this.checkLive();
    const e = this.lookup(iova);
    if (!e) return null;
    return this.pteToPaddr(e.pte) + (iova % this.blockSize(e.level));
  }

  /** The leaf descriptor for `iova`: its level, value and address, or null. */
  lookup(iova: number): { level: number; pte: bigint; ptep: number } | null {
    if (!Number.isInteger(iova) || iova < 0 || iova >= this.iasLimit) return null;
    let table = this.root;
    for (let level = this.startLevel; level < MAX_LEVELS; level++) {
      const ptep = table + this.index(iova, level) * 8;
      const pte = this.mem.read64(ptep);
      if (pte === 0n) return null;
      if (this.isLeaf(pte, level)) return { level, pte, ptep };
      table = this.pteToPaddr(pte);
    }
    return null;
  }

  /**
   * Where a walk of `iova` stops: the level, value and address of the last descriptor it reads:
   * a leaf, or an empty entry (pte 0n) at the level where nothing is mapped yet (so a leaf of
   * `blockSize(level)` or smaller could go there without replacing a table). Null beyond IAS.
   */
  walkEnd(iova: number): { level: number; pte: bigint; ptep: number } | null {
    if (!Number.isInteger(iova) || iova < 0 || iova >= this.iasLimit) return null;
    let table = this.root;
    for (let level = this.startLevel; level < MAX_LEVELS; level++) {
      const ptep = table + this.index(iova, level) * 8;
      const pte = this.mem.read64(ptep);
      if (pte === 0n || this.isLeaf(pte, level) || level === MAX_LEVELS - 1)
        return { level, pte, ptep };
      table = this.pteToPaddr(pte);
    }
    return null;
  }

  /** free_io_pgtable_ops: flush the whole context, then free every table. */
  free(): void {
    this.checkLive();
    this.tlb.tlbFlushAll();
    this.freeTables(this.startLevel, this.root);
    this.freed = true;
  }

  // ---- the IOMMU core's loops (iommu_map / __iommu_unmap) over map_pages / unmap_pages ----

  /**
   * Map [iova, iova+size) to paddr with the largest pages that fit, looping like the IOMMU
   * core. Addresses and size must be aligned to the granule. On an error nothing is rolled
   * back: the error carries `mapped` (the bytes mapped before it) for the caller to unmap.
   */
  mapRange(iova: number, paddr: number, size: number, prot: Prot): number {
    const min = this.pgsizeBitmap[0]!;
    if (iova % min || paddr % min || size % min)
      throw new IoPgtableError(
        'EINVAL',
        `IOVA ${hex(iova)}, PA ${hex(paddr)} or size ${hex(size)} not aligned to ${hex(min)}`,
      );
    let done = 0;
    while (done < size) {
      pgsizeInto(this.pgsizeBitmap, iova + done, paddr + done, size - done);
      const pgsize = pg.pgsize;
      const count = pg.count;
      let n: number;
      try {
        n = this.map(iova + done, paddr + done, pgsize, count, prot);
      } catch (e) {
        if (e instanceof IoPgtableError) (e as IoPgtableError & { mapped?: number }).mapped = done;
        throw e;
      }
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  /** Unmap [iova, iova+size) like the IOMMU core's __iommu_unmap; stops at the first piece that unmaps nothing. */
  unmapRange(iova: number, size: number, gather: IotlbGather): number {
    let done = 0;
    while (done < size) {
      pgsizeInto(this.pgsizeBitmap, iova + done, iova + done, size - done);
      const n = this.unmap(iova + done, pg.pgsize, pg.count, gather);
      if (n === 0) break;
      done += n;
    }
    return done;
  }
}

// ---- gathers -----------------------------------------------------------------------------------

/** An empty gather (iommu_iotlb_gather_init). */
export function newGather(): IotlbGather {
  return { pgsize: 0, start: Number.MAX_SAFE_INTEGER, end: 0, queued: false };
}

/** Whether [iova, iova+size) is neither inside nor adjacent to the gathered range (then the gather must be synced first). */
export function gatherIsDisjoint(g: IotlbGather, iova: number, size: number): boolean {
  const end = iova + size - 1;
  return g.end !== 0 && (end + 1 < g.start || iova > g.end + 1);
}

/** Extend the gathered range to cover [iova, iova+size). */
export function gatherAddRange(g: IotlbGather, iova: number, size: number): void {
  const end = iova + size - 1;
  if (g.start > iova) g.start = iova;
  if (g.end < end) g.end = end;
}

// ---- page size choice and range invalidation --------------------------------------------------

/**
 * The IOMMU core's iommu_pgsize: the largest supported page size that fits the remaining size
 * and the alignment of iova|paddr, and how many of them to map before a larger size becomes
 * usable.
 */
export function iommuPgsize(
  pgsizes: readonly number[],
  iova: number,
  paddr: number,
  size: number,
): { pgsize: number; count: number } {
  pgsizeInto(pgsizes, iova, paddr, size);
  return { pgsize: pg.pgsize, count: pg.count };
}

/** iommuPgsize's result for the IOMMU core's loops, reused (no allocation per call). */
const pg = { pgsize: 0, count: 0 };

/** iommuPgsize into `pg`. */
function pgsizeInto(pgsizes: readonly number[], iova: number, paddr: number, size: number): void {
  const align = Math.min(alignOf(iova), alignOf(paddr));
  // the largest size that fits
  let pgsize = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < pgsizes.length; i++) {
    const s = pgsizes[i]!;
    if (s <= size && s <= align && s > pgsize) pgsize = s;
  }
  if (pgsize === Number.NEGATIVE_INFINITY)
    throw new IoPgtableError(
      'EINVAL',
      `no page size for IOVA ${hex(iova)}, PA ${hex(paddr)}, size ${hex(size)}`,
    );
  let count = Math.floor(size / pgsize);
  // the next larger size, if any
  let pgsizeNext = Number.POSITIVE_INFINITY;
  for (let i = 0; i < pgsizes.length; i++) {
    const s = pgsizes[i]!;
    if (s > pgsize && s < pgsizeNext) pgsizeNext = s;
  }
  if (pgsizeNext !== Number.POSITIVE_INFINITY) {
    // a larger page is worth waiting for only if iova and paddr are alike within it
    if (iova % pgsizeNext === paddr % pgsizeNext) {
      const offset = pgsizeNext - (iova % pgsizeNext);
      if (offset + pgsizeNext <= size) count = Math.floor(offset / pgsize);
    }
  }
  pg.pgsize = pgsize;
  pg.count = count;
}

/** The largest power of two dividing `a` (infinite for 0). */
function alignOf(a: number): number {
  if (a === 0) return Number.POSITIVE_INFINITY;
  if (a > 0 && a <= 0xffffffff && Number.isInteger(a)) {
    // a 32-bit value's lowest set bit, without the loop of float remainders
    const lo = a >>> 0;
    return (lo & -lo) >>> 0;
  }
  let al = 1;
  while (a % (al * 2) === 0) al *= 2;
  return al;
}

function lowestSetBit(a: number): number {
  return a === 0 ? -1 : log2(alignOf(a));
}

/** One range TLBI's address fields (reference §4.4). */
export interface RangeInvCmd {
  addr: number;
  /** 1 4KB, 2 16KB, 3 64KB */
  tg: number;
  ttl: number;
  num: number;
  scale: number;
}

const RANGE_NUM_MAX = 31;

/**
 * The range TLBIs Linux issues (with IDR3.RIL) for [iova, iova+size): `granule` is the size of
 * the leaves being invalidated, `tableGranule` the domain's smallest page size (TG). A leaf
 * invalidation gives the leaves' level as TTL; a non-leaf one has TTL 0 and avoids the reserved
 * NUM=SCALE=0 by rounding a count of 1 (mod 32) up to 2. Each command covers
 * (NUM+1) << SCALE pages: 5 bits of the remaining count at its lowest set bit.
 */
export function rangeInvCommands(
  iova: number,
  size: number,
  granule: number,
  leaf: boolean,
  tableGranule: number,
): RangeInvCmd[] {
  const b = newRangeInvBuf();
  rangeInvInto(b, iova, size, granule, leaf, tableGranule);
  const out: RangeInvCmd[] = [];
  for (let i = 0; i < b.n; i++)
    out.push({ addr: b.addr[i]!, tg: b.tg, ttl: b.ttl, num: b.num[i]!, scale: b.scale[i]! });
  return out;
}

/** rangeInvCommands' result as reusable parallel arrays (`n` commands; TG and TTL are common to all). */
export interface RangeInvBuf {
  n: number;
  tg: number;
  ttl: number;
  readonly addr: number[];
  readonly num: number[];
  readonly scale: number[];
}

export function newRangeInvBuf(): RangeInvBuf {
  return { n: 0, tg: 0, ttl: 0, addr: [], num: [], scale: [] };
}

/** rangeInvCommands into `b`, reusing its arrays. Returns the number of commands. */
export function rangeInvInto(
  b: RangeInvBuf,
  iova: number,
  size: number,
  granule: number,
  leaf: boolean,
  tableGranule: number,
): number {
  b.n = 0;
  if (size <= 0) return 0;
  const tg = log2(tableGranule);
  let numPages = Math.floor(size / pow2(tg));
  const tgEnc = (tg - 10) / 2;
  let ttl = 0;
  if (leaf) ttl = 4 - Math.floor((log2(granule) - 3) / (tg - 3));
  else if (numPages % 32 === 1) numPages++;
  b.tg = tgEnc;
  b.ttl = ttl;
  const end = iova + size;
  let addr = iova;
  let n = 0;
  while (addr < end && numPages > 0) {
    const scale = lowestSetBit(numPages);
    const num = Math.floor(numPages / pow2(scale)) % (RANGE_NUM_MAX + 1);
    b.addr[n] = addr;
    b.num[n] = num - 1;
    b.scale[n] = scale;
    n++;
    addr += num * pow2(scale + tg);
    numPages -= num * pow2(scale);
  }
  b.n = n;
  return n;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
