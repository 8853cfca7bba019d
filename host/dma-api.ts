/**
 * The DMA API over a stage-1 DMA domain, as Linux's iommu-dma does it in strict mode:
 *  - map: allocate an IOVA (size-aligned, top-down below the 32-bit DMA limit, so the first
 *    allocation is 0xfffff000 as in the capture), write PTEs, and issue no command;
 *  - unmap: clear the PTEs, gather the range, then one batch of TLBI_NH_VA (range form with
 *    TG/TTL/NUM/SCALE when IDR3.RIL, else one per page, Leaf=1) + one CMD_SYNC.
 * The domain's io-pgtable flush ops are the driver's: walk flushes are Leaf=0 range TLBIs with a
 * sync, flush-all is TLBI_NH_ASID + sync.
 */
import type { ArmSmmuV3 } from './driver/driver.ts';
import { DriverError } from './driver/driver.ts';
import type { DomainManager, Domain, AttachOptions } from './driver/domain.ts';
import {
  IoPgtable,
  newGather,
  rangeInvCommands,
  rangeInvInto,
  newRangeInvBuf,
  type FlushOps,
  type IotlbGather,
  type Prot,
} from '../hw/vmsa/io-pgtable.ts';
import { encodeTlbiNhVa as encodeTlbiNhVaImported, type Command } from './driver/cmdq.ts';

// module-local aliases of what the map/unmap path calls (imported bindings are getters under the loader)
const encodeTlbiNhVa = encodeTlbiNhVaImported;
const rangeInv = rangeInvInto;

/** iommu-dma's prot for each direction (DMA_TO_DEVICE → read, FROM_DEVICE → write, both → both; cacheable, no NOEXEC) */
const PROT_TO_DEVICE: Prot = Object.freeze({ read: true, write: false, cache: true, exec: true });
const PROT_FROM_DEVICE: Prot = Object.freeze({ read: false, write: true, cache: true, exec: true });
const PROT_BIDIRECTIONAL: Prot = Object.freeze({
  read: true,
  write: true,
  cache: true,
  exec: true,
});

export type DmaDirection = 'to-device' | 'from-device' | 'bidirectional';

/** a.splice(i, 0, v) without the array splice returns */
function insertAt(a: number[], i: number, v: number): void {
  a.push(v);
  for (let j = a.length - 1; j > i; j--) a[j] = a[j - 1]!;
  a[i] = v;
}

/** a.splice(i, 1) without the array splice returns */
function removeAt(a: number[], i: number): void {
  for (let j = i; j < a.length - 1; j++) a[j] = a[j + 1]!;
  a.pop();
}

/**
 * Linux's IOVA allocator, simplified: size-aligned power-of-two ranges, allocated top-down.
 * Like Linux's cached node, a search continues below the last allocation and retries from the
 * top when nothing fits; freeing a range at or above that point moves it back up.
 */
export class IovaAllocator {
  // the allocated ranges [starts[i], ends[i]), sorted by start
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private cursor: number;

  constructor(
    readonly granule: number,
    readonly limit: number,
    readonly floor: number,
  ) {
    this.cursor = limit;
  }

  private search(bytes: number, top: number): number {
    const starts = this.starts;
    const ends = this.ends;
    let hi = top;
    for (let i = starts.length - 1; i >= -1; i--) {
      if (i >= 0 && starts[i]! >= hi) continue; // entirely above the search window
      const lo = i >= 0 ? ends[i]! : this.floor;
      const start = Math.floor((Math.min(hi, top) - bytes) / bytes) * bytes;
      if (start >= lo && start + bytes <= hi) {
        insertAt(starts, i + 1, start);
        insertAt(ends, i + 1, start + bytes);
        return start;
      }
      if (i >= 0) hi = starts[i]!;
    }
    return -1;
  }

  alloc(size: number): number {
    const pages = Math.ceil(size / this.granule);
    const bytes = (pages === 1 ? 1 : 2 ** Math.ceil(Math.log2(pages))) * this.granule;
    let start = this.search(bytes, this.cursor);
    if (start < 0) start = this.search(bytes, this.limit);
    if (start < 0) throw new DriverError(`IOVA space exhausted (${size} bytes)`);
    this.cursor = start;
    return start;
  }

  free(iova: number): number {
    const starts = this.starts;
    let i = 0;
    while (i < starts.length && starts[i] !== iova) i++;
    if (i === starts.length)
      throw new DriverError(`freeing IOVA 0x${iova.toString(16)} that was not allocated`);
    const s = starts[i]!;
    const e = this.ends[i]!;
    removeAt(starts, i);
    removeAt(this.ends, i);
    if (s >= this.cursor) this.cursor = i < starts.length ? starts[i]! : this.limit;
    return e - s;
  }
}

export interface DmaMapping {
  iova: number;
  pa: number;
  size: number;
}

export class DmaDomain {
  readonly pgtable: IoPgtable;
  readonly iovas: IovaAllocator;
  readonly domain: Domain;
  /** the range TLBIs of one invalidation, and their encoded commands (four words each) */
  private readonly rangeBuf = newRangeInvBuf();
  private cmdWords = new Uint32Array(16 * 4);

  constructor(
    private readonly drv: ArmSmmuV3,
    dm: DomainManager,
  ) {
    const ft = drv.ft;
    const self = this;
    const ops: FlushOps = {
      tlbFlushAll() {
        drv.issue([['TLBI_NH_ASID', { ASID: self.domain.asid, VMID: 0 }]]);
      },
      tlbFlushWalk(iova, size, granule) {
        self.issueInvRange(iova, size, granule, false);
      },
      tlbAddPage(g, iova, granule) {
        // iommu_iotlb_gather_add_page: extend the gathered range (a disjoint range would flush first)
        g.pgsize = granule;
        g.start = Math.min(g.start, iova);
        g.end = Math.max(g.end, iova + granule - 1);
      },
    };
    const mem = {
      read64: (a: number) => drv.readMem64(a),
      write64: (a: number, v: bigint) => drv.writeMem64(a, v),
    };
    const alloc = { alloc: (bytes: number, align: number) => drv.pages.alloc(bytes, align) };
    this.pgtable = new IoPgtable(
      {
        fmt: 'ARM_64_LPAE_S1',
        pgsizeBitmap: ft.pgsizes,
        ias: 48,
        oas: ft.ias,
        coherentWalk: ft.coherent,
      },
      mem,
      alloc,
      ops,
    );
    this.domain = dm.alloc('dma', { s1: this.pgtable.s1! });
    this.iovas = new IovaAllocator(this.pgtable.granule, 2 ** 32, this.pgtable.granule);
  }

  /** The TLBI_NH_VA commands for [iova, iova+size) (Linux __arm_smmu_tlb_inv_range). */
  invRange(iova: number, size: number, granule: number, leaf: boolean): Command[] {
    const asid = this.domain.asid;
    if (this.drv.ft.rangeInv) {
      return rangeInvCommands(iova, size, granule, leaf, this.pgtable.granule).map(
        (c) =>
          [
            'TLBI_NH_VA',
            {
              ASID: asid,
              VMID: 0,
              NUM: c.num,
              SCALE: c.scale,
              TG: c.tg,
              TTL: c.ttl,
              Leaf: leaf ? 1 : 0,
              Address: Math.floor(c.addr / 4096),
            },
          ] as Command,
      );
    }
    const cmds: Command[] = [];
    for (let a = iova; a < iova + size; a += granule)
      cmds.push([
        'TLBI_NH_VA',
        { ASID: asid, VMID: 0, Leaf: leaf ? 1 : 0, Address: Math.floor(a / 4096) },
      ]);
    return cmds;
  }

  /** iommu_iotlb_sync: one batch of invalidations and a CMD_SYNC. */
  sync(g: IotlbGather): void {
    if (g.pgsize === 0) return;
    this.issueInvRange(g.start, g.end - g.start + 1, g.pgsize, true);
  }

  /** Issue invRange's commands and a CMD_SYNC, encoded straight into a reused buffer. */
  private issueInvRange(iova: number, size: number, granule: number, leaf: boolean): void {
    const asid = this.domain.asid;
    const lf = leaf ? 1 : 0;
    let n = 0;
    if (this.drv.ft.rangeInv) {
      const b = this.rangeBuf;
      n = rangeInv(b, iova, size, granule, leaf, this.pgtable.granule);
      const w = this.words(n);
      for (let i = 0; i < n; i++)
        encodeTlbiNhVa(
          w,
          i * 4,
          asid,
          0,
          b.num[i]!,
          b.scale[i]!,
          b.tg,
          b.ttl,
          lf,
          Math.floor(b.addr[i]! / 4096),
        );
    } else {
      for (let a = iova; a < iova + size; a += granule) {
        encodeTlbiNhVa(this.words(n + 1), n * 4, asid, 0, 0, 0, 0, 0, lf, Math.floor(a / 4096));
        n++;
      }
    }
    this.drv.issueWords(this.cmdWords, n);
  }

  /** The command buffer, grown to hold at least `n` commands. */
  private words(n: number): Uint32Array {
    if (this.cmdWords.length < n * 4) {
      const w = new Uint32Array(Math.max(n * 4, this.cmdWords.length * 2));
      w.set(this.cmdWords);
      this.cmdWords = w;
    }
    return this.cmdWords;
  }
}

export class DmaApi {
  private readonly devDomains = new Map<number, DmaDomain>();
  readonly mappings = new Map<string, DmaMapping>();
  maps = 0;
  unmaps = 0;
  /** unmap's gather, reset for each call */
  private readonly gather = newGather();

  constructor(
    private readonly drv: ArmSmmuV3,
    private readonly dm: DomainManager,
  ) {}

  /** Give `sid` a default DMA domain (as iommu_probe_device does) and attach it. */
  attachDefault(sid: number, o: AttachOptions = {}): DmaDomain {
    let d = this.devDomains.get(sid);
    if (!d) {
      d = new DmaDomain(this.drv, this.dm);
      this.devDomains.set(sid, d);
    }
    this.dm.attach(sid, d.domain, o);
    return d;
  }

  domainOf(sid: number): DmaDomain {
    const d = this.devDomains.get(sid);
    if (!d) throw new DriverError(`SID ${sid} has no DMA domain (attach it first)`);
    return d;
  }

  private prot(dir: DmaDirection): Prot {
    // iommu-dma: DMA_TO_DEVICE → read, FROM_DEVICE → write, both → both; data is cacheable, and no NOEXEC
    return dir === 'to-device'
      ? PROT_TO_DEVICE
      : dir === 'from-device'
        ? PROT_FROM_DEVICE
        : PROT_BIDIRECTIONAL;
  }

  /** dma_map_single: returns the IOVA the device must use for `pa`. */
  map(sid: number, pa: number, size: number, dir: DmaDirection = 'bidirectional'): number {
    const d = this.domainOf(sid);
    const g = d.pgtable.granule;
    const off = pa % g;
    const len = Math.ceil((size + off) / g) * g;
    const iova = d.iovas.alloc(len);
    d.pgtable.mapRange(iova, pa - off, len, this.prot(dir));
    this.maps++;
    this.mappings.set(`${sid}:${iova + off}`, { iova: iova + off, pa, size });
    return iova + off;
  }

  /** dma_unmap_single: clear the PTEs, then one TLBI batch + CMD_SYNC (strict mode). */
  unmap(sid: number, iova: number, size: number): void {
    const d = this.domainOf(sid);
    const g = d.pgtable.granule;
    const base = iova - (iova % g);
    const len = Math.ceil((size + (iova % g)) / g) * g;
    const gather = this.gather; // iommu_iotlb_gather_init
    gather.pgsize = 0;
    gather.start = Number.MAX_SAFE_INTEGER;
    gather.end = 0;
    gather.queued = false;
    d.pgtable.unmapRange(base, len, gather);
    d.sync(gather);
    d.iovas.free(base);
    this.unmaps++;
    this.mappings.delete(`${sid}:${iova}`);
  }
}
