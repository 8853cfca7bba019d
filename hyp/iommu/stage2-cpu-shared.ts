/**
 * The SMMU's stage-2 for the host (VMID 0) as the host CPU's own stage-2 (strategy (c),
 * 'cpu-shared'): the future work the pKVM covers name, "share the CPU S2 with the SMMU
 * directly (needs S2 fault handling, BBM)" (designs.md §1.9, §2.3).
 *
 * There is one VMSAv8-64 stage-2 table (ARM_64_LPAE_S2, built with the same io-pgtable as the
 * idmap, in hyp memory from the pool). The host STEs' S2TTB points at it, and the host CPU's
 * stage-2 check on the bus reads it too, through `hostMapped`: a byte per page that follows
 * every change of the table, the CPU's view of it (its TLB, whose invalidation is counted).
 *
 * As pKVM's host stage-2 it is filled lazily (host_stage2_idmap): it starts empty, and the
 * host CPU's first access to an unmapped page is a stage-2 fault the hypervisor handles by
 * mapping the largest aligned block around it (1 GiB, 2 MiB or 4 KiB) that lies in one memory
 * region, holds only pages the host may access, and has no table below it already (a table,
 * once made, stays: as pKVM, a fault maps at the level its walk ended on); then the access is
 * retried. What this gives up:
 *  - a device DMA to host memory the CPU never touched faults at stage 2 (F_TRANSLATION, S2=1):
 *    the SMMU cannot fault it in (no stall or PRI here). It is counted (`lazyDmaFaults`), and
 *    it is not an isolation breach;
 *  - a donation inside a block splits it by break-before-make: the block entry is made invalid,
 *    the CPU's TLB (a count) and the SMMU's (TLBI_S2_IPA + TLBI_NH_ALL VMID 0 + CMD_SYNC) are
 *    invalidated, and only then the rest of the block is mapped again with the next smaller
 *    entries. In that window a DMA to any page of the block faults (`bbmWindows`, and the probe
 *    `hyp.shared-s2.bbm` fires inside it).
 * What it saves: the idmap's table pages (the SMMU has none of its own: `tablePages` is 0 and
 * the shared table's are `cpuS2Pages`), the snapshot at boot, and the invalidation of
 * donations of memory the host never touched (nothing was mapped, so nothing is cached).
 * A reclaim maps nothing: the host faults the pages in again when it touches them.
 */
import type { MmioBus } from '../../hw/bus.ts';
import { encodeCommand } from '../../hw/smmu/commands.ts';
import { E_IPA, E_S2, EVT } from '../../hw/smmu/events.ts';
import { get } from '../../hw/bits.ts';
import { layerLogger } from '../../hw/log.ts';
import { Probe } from '../../hw/probe.ts';
import {
  IoPgtable,
  newGather,
  type IotlbGather,
  type Prot,
  type S2PgtableCfg,
} from '../../hw/vmsa/io-pgtable.ts';
import { PoolExhausted, type HypPool } from '../mem/pool.ts';
import { PAGE, type OwnershipChange, type PageOwnership } from '../mem/ownership.ts';
import { HypBootError } from '../boot-error.ts';
import { HYP_PROBES, HYP_STATS, type BbmWindow } from '../probes.ts';
import { hypStage2Pgtable } from './hyp-pgtable.ts';
import type { IdmapFlush, IdmapRegion, SmmuStage2 } from './stage2.ts';

const log = layerLogger('hyp');

const RAM_PROT: Prot = { read: true, write: true, cache: true };
const MMIO_PROT: Prot = { read: true, write: true, mmio: true };

const SZ_2M = 2 ** 21;
const SZ_1G = 2 ** 30;
const PAGES_2M = SZ_2M / PAGE;
const PAGES_1G = SZ_1G / PAGE;
/** the physical space the per-page map covers at most (256 GiB: 64 MiB of map) */
const MAX_PAGES = 2 ** 26;

/** The host CPU's stage-2, shared with the SMMU (strategy (c), 'cpu-shared'). */
export class CpuSharedStage2 implements SmmuStage2 {
  readonly pgtable: IoPgtable;
  /** hyp.shared-s2 (hyp/probes.ts) */
  readonly stats = HYP_STATS.sharedS2.create();
  /** splits and their break-before-make windows, counted as the idmap's block granule counts them */
  readonly blocks = HYP_STATS.stage2Blocks.create();
  readonly probes = { bbm: new Probe(HYP_PROBES.bbmWindow) } as const;
  /** the SMMU has no table pages of its own: its stage-2 is the CPU's */
  readonly tablePages = 0;
  /** pages mapped (as pages or inside blocks) */
  mappedPages = 0;
  /** the CPU's view of the table: one byte per page from PA 0, 1 = mapped */
  hostMapped = new Uint8Array(0);

  private own: PageOwnership | null = null;
  /** memory and MMIO regions, by address: a block never spans two */
  private regions: IdmapRegion[] = [];
  /** pages the host may not access, per 2 MiB and per 1 GiB (a block over any is refused) */
  private denied2M = new Uint16Array(0);
  private denied1G = new Uint32Array(0);
  /** 1 where a next-level table lies under the 2 MiB / 1 GiB entry (no block goes there) */
  private table2M = new Uint8Array(0);
  private table1G = new Uint8Array(0);
  /**
   * Leaves removed whose SMMU invalidation did not complete (base, size pairs): the IOTLB may
   * still hold them. The pages went back to the host unmapped (the change was refused), so a
   * later donation finds nothing to unmap there and must invalidate these all the same.
   */
  private readonly stale: number[] = [];
  /** the block broken now (a break-before-make window), or size 0 */
  private readonly window: BbmWindow = { base: 0, size: 0 };

  constructor(bus: MmioBus, pool: HypPool) {
    this.pgtable = hypStage2Pgtable(bus, pool, 'shared stage-2 table');
    this.stats.cpuS2Pages = this.pgtable.tableCount;
  }

  get s2(): S2PgtableCfg {
    return this.pgtable.s2!;
  }

  /** the shared table's pages (the CPU's stage-2: in the hyp pool, none the SMMU's own) */
  get cpuS2Pages(): number {
    return this.pgtable.tableCount;
  }

  /**
   * The initial state: nothing mapped (the host faults its memory in). Records the regions and
   * which pages the host may not access, so a fault can pick its block without a search.
   */
  snapshot(regions: readonly IdmapRegion[], own: PageOwnership): void {
    this.own = own;
    this.regions = [...regions].sort((a, b) => a.base - b.base);
    let top = 0;
    for (const r of this.regions) top = Math.max(top, r.base + r.size);
    const pages = Math.ceil(top / PAGE);
    if (pages > MAX_PAGES)
      throw new HypBootError(
        `shared stage-2: physical memory up to 0x${top.toString(16)} is beyond the 0x${(MAX_PAGES * PAGE).toString(16)} the CPU's page map covers`,
      );
    this.hostMapped = new Uint8Array(pages);
    this.denied2M = new Uint16Array(Math.ceil(pages / PAGES_2M));
    this.denied1G = new Uint32Array(Math.ceil(pages / PAGES_1G));
    this.table2M = new Uint8Array(this.denied2M.length);
    this.table1G = new Uint8Array(this.denied1G.length);
    for (const pfn of own.nonHostPfns(0, pages)) this.deny(pfn, 1);
  }

  private deny(pfn: number, d: number): void {
    this.denied2M[Math.floor(pfn / PAGES_2M)]! += d;
    this.denied1G[Math.floor(pfn / PAGES_1G)]! += d;
  }

  private regionOf(addr: number): IdmapRegion | null {
    for (const r of this.regions) if (addr >= r.base && addr < r.base + r.size) return r;
    return null;
  }

  // ---- the host CPU's stage-2 faults ---------------------------------------------------------

  /**
   * A host CPU access at `addr` found no mapping. If the host may access the page, map the
   * largest block around it (see the file comment) and return true: the access is retried.
   * False for a page the host may not access (the fault is a data abort), or when the pool
   * cannot hold the tables (the access aborts; nothing is mapped).
   */
  hostFault(addr: number): boolean {
    const own = this.own;
    if (own === null || !(addr >= 0)) return false;
    const pfn = Math.floor(addr / PAGE);
    if (pfn >= this.hostMapped.length) return false;
    if (this.hostMapped[pfn] === 1) return true;
    const r = this.regionOf(addr);
    if (r === null || !own.hostMay(addr)) return false;
    const i1 = Math.floor(pfn / PAGES_1G);
    const i2 = Math.floor(pfn / PAGES_2M);
    let size = PAGE;
    if (this.table1G[i1] === 0 && this.denied1G[i1] === 0 && inside(r, i1 * SZ_1G, SZ_1G))
      size = SZ_1G;
    else if (this.table2M[i2] === 0 && this.denied2M[i2] === 0 && inside(r, i2 * SZ_2M, SZ_2M))
      size = SZ_2M;
    const base = addr - (addr % size);
    try {
      this.pgtable.map(base, base, size, 1, r.mmio ? MMIO_PROT : RAM_PROT);
    } catch (e) {
      if (!(e instanceof PoolExhausted)) throw e;
      log.warn({ addr: `0x${addr.toString(16)}` }, 'shared stage-2: no pool pages for a fault');
      return false;
    }
    this.mark(base, size);
    const st = this.stats;
    st.s2Faults++;
    if (size === PAGE) st.lazyMaps4K++;
    else if (size === SZ_2M) st.lazyMaps2M++;
    else st.lazyMaps1G++;
    return true;
  }

  /** [base, base+size) is now mapped with leaves of `leaf`, all in one table (one 2 MiB of pages, or one 1 GiB of blocks). */
  private mark(base: number, size: number, leaf = size): void {
    const pfn = base / PAGE;
    this.hostMapped.fill(1, pfn, pfn + size / PAGE);
    this.mappedPages += size / PAGE;
    if (leaf < SZ_1G) this.table1G[Math.floor(pfn / PAGES_1G)] = 1;
    if (leaf < SZ_2M) this.table2M[Math.floor(pfn / PAGES_2M)] = 1;
    this.stats.cpuS2Pages = this.pgtable.tableCount;
  }

  private unmark(base: number, size: number): void {
    const pfn = base / PAGE;
    this.hostMapped.fill(0, pfn, pfn + size / PAGE);
    this.mappedPages -= size / PAGE;
  }

  // ---- ownership changes -----------------------------------------------------------------------

  /**
   * Follow an ownership change before it completes. A page leaving the host is unmapped: a leaf
   * wholly inside the range goes, a block reaching outside it is split by break-before-make;
   * then the TLBs (`flush` throwing refuses the change: what was unmapped stays unmapped, to be
   * faulted in again, and is invalidated by the next donation over it). A page coming back to
   * the host is mapped when the host next touches it.
   */
  update(c: OwnershipChange, flush: IdmapFlush, skipTlbi: boolean): void {
    if (!c.hostAccessChanged) return;
    const first = c.base / PAGE;
    const end = Math.min(first + c.pages, this.hostMapped.length);
    for (let p = first; p < first + c.pages && p < this.hostMapped.length; p++)
      this.deny(p, c.hostCanAccess ? -1 : 1);
    if (c.hostCanAccess) return;
    const lo = c.base;
    const hi = c.base + c.pages * PAGE;
    // the leaves removed (base, size pairs), invalidated together at the end
    const leaves: number[] = [];
    const g = newGather();
    try {
      this.unmapRange(first, end, lo, hi, leaves, g, flush, skipTlbi);
    } catch (e) {
      if (!skipTlbi) this.stale.push(...leaves);
      throw e;
    }
    this.takeStale(lo, hi, leaves);
    if (leaves.length === 0) return;
    this.stats.cpuTlbis++;
    if (!skipTlbi) this.invalidate(leaves, flush);
  }

  /** Unmap the leaves over pages [p, end), splitting those that reach outside [lo, hi). */
  private unmapRange(
    p: number,
    end: number,
    lo: number,
    hi: number,
    leaves: number[],
    g: IotlbGather,
    flush: IdmapFlush,
    skipTlbi: boolean,
  ): void {
    while (p < end) {
      if (this.hostMapped[p] !== 1) {
        p++;
        continue;
      }
      const a = p * PAGE;
      const e = this.pgtable.lookup(a);
      if (e === null)
        throw new Error(`shared stage-2: 0x${a.toString(16)} is marked but not mapped`);
      const size = this.pgtable.blockSize(e.level);
      const lb = a - (a % size);
      if (lb >= lo && lb + size <= hi) {
        if (this.pgtable.unmap(lb, size, 1, g) !== size)
          throw new Error(
            `shared stage-2: cannot unmap 0x${lb.toString(16)}+0x${size.toString(16)}`,
          );
        this.unmark(lb, size);
        this.stats.unmaps++;
        leaves.push(lb, size);
      } else this.split(lb, size, lo, hi, flush, skipTlbi);
      p = (lb + size) / PAGE;
    }
  }

  /** Move the stale leaves that overlap [lo, hi) into `leaves`. */
  private takeStale(lo: number, hi: number, leaves: number[]): void {
    const st = this.stale;
    for (let i = 0; i < st.length;) {
      const b = st[i]!;
      const n = st[i + 1]!;
      if (b < hi && lo < b + n) {
        leaves.push(b, n);
        st.splice(i, 2);
      } else i += 2;
    }
  }

  /**
   * Break-before-make of the block [lb, lb+size) around the donated [lo, hi): make the block
   * entry invalid, invalidate the TLBs, then map the block's pages outside [lo, hi) again with
   * the largest smaller entries that fit.
   */
  private split(
    lb: number,
    size: number,
    lo: number,
    hi: number,
    flush: IdmapFlush,
    skipTlbi: boolean,
  ): void {
    const st = this.stats;
    // break
    if (this.pgtable.unmap(lb, size, 1, newGather()) !== size)
      throw new Error(`shared stage-2: cannot break the block 0x${lb.toString(16)}`);
    this.unmark(lb, size);
    this.blocks.blockSplits++;
    this.blocks.bbmWindows++;
    this.blocks.bbmPages += (size - (Math.min(hi, lb + size) - Math.max(lo, lb))) / PAGE;
    st.cpuTlbis++;
    const w = this.window;
    w.base = lb;
    w.size = size;
    try {
      if (!skipTlbi) this.invalidate([lb, size], flush);
      if (this.probes.bbm.active) this.probes.bbm.fire(w);
    } finally {
      w.size = 0;
    }
    // make: the rest of the block
    const prot = this.regionOf(lb)?.mmio ? MMIO_PROT : RAM_PROT;
    const end = lb + size;
    this.remap(lb, Math.min(Math.max(lo, lb), end), size, prot);
    this.remap(Math.max(Math.min(hi, end), lb), end, size, prot);
  }

  /**
   * Map [a, b) with entries smaller than `parent` (2 MiB blocks where aligned, else pages),
   * skipping what a host fault inside the window has mapped already (as pKVM's fault handler
   * would find it once the donation released the lock).
   */
  private remap(a: number, b: number, parent: number, prot: Prot): void {
    const hm = this.hostMapped;
    try {
      while (a < b) {
        if (parent > SZ_2M && a % SZ_2M === 0 && b - a >= SZ_2M) {
          if (hm[a / PAGE] !== 1) {
            this.pgtable.map(a, a, SZ_2M, 1, prot);
            this.mark(a, SZ_2M);
          }
          a += SZ_2M;
          continue;
        }
        if (hm[a / PAGE] === 1) {
          a += PAGE;
          continue;
        }
        // a run of unmapped pages, inside one 2 MiB (one level-3 table)
        const stop = Math.min(b, a - (a % SZ_2M) + SZ_2M);
        let e = a + PAGE;
        while (e < stop && hm[e / PAGE] !== 1) e += PAGE;
        const n = this.pgtable.map(a, a, PAGE, (e - a) / PAGE, prot);
        if (n !== e - a) throw new Error(`shared stage-2: cannot map 0x${a.toString(16)}`);
        this.mark(a, n, PAGE);
        a = e;
      }
    } catch (e) {
      if (!(e instanceof PoolExhausted)) throw e;
      // the rest stays unmapped: the host faults it in again (or aborts, while the pool is full)
      log.warn(
        { addr: `0x${a.toString(16)}` },
        'shared stage-2: no pool pages to re-make a split block',
      );
    }
  }

  /**
   * TLBI_S2_IPA (VMID 0, leaf) per removed leaf (base, size pairs: one command at the base
   * removes a block's entry), then TLBI_NH_ALL (VMID 0): each batch followed by a CMD_SYNC. If
   * they cannot complete, the leaves stay stale (a later donation over them invalidates them).
   */
  private invalidate(leaves: readonly number[], flush: IdmapFlush): void {
    const cmds: Uint32Array[] = [];
    for (let i = 0; i < leaves.length; i += 2)
      cmds.push(encodeCommand('TLBI_S2_IPA', { VMID: 0, Leaf: 1, Address: leaves[i]! / PAGE }));
    this.stats.smmuTlbis += cmds.length + 1;
    try {
      flush(cmds);
      flush([encodeCommand('TLBI_NH_ALL', { VMID: 0 })]);
    } catch (e) {
      this.stale.push(...leaves);
      throw e;
    }
  }

  // ---- the host devices' faults --------------------------------------------------------------

  /** Count the stage-2 translation faults that are this design's own: host memory not mapped yet. */
  hostEvent(w: Uint32Array): void {
    if ((w[0]! & 0xff) !== EVT.F_TRANSLATION || get(w, E_S2) !== 1) return;
    const ipa = get(w, E_IPA) * PAGE;
    const pfn = Math.floor(ipa / PAGE);
    if (this.own === null || pfn >= this.hostMapped.length || this.hostMapped[pfn] === 1) return;
    if (!this.own.hostMay(ipa)) return; // a protected page: isolation working
    const w0 = this.window;
    if (w0.size !== 0 && ipa >= w0.base && ipa < w0.base + w0.size) this.stats.bbmDmaFaults++;
    else this.stats.lazyDmaFaults++;
  }
}

function inside(r: IdmapRegion, base: number, size: number): boolean {
  return base >= r.base && base + size <= r.base + r.size;
}
