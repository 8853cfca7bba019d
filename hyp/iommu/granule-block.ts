/**
 * The idmap maps host memory with the largest blocks that fit (2 MiB and 1 GiB at the 4 KiB
 * granule), a block only where every page of it is host-accessible, and splits a block when
 * part of it leaves the host (designs.md §1.9, "future work: block mappings"). Fewer table
 * pages and shorter stage-2 walks, paid for on the donations that land inside a block.
 *
 * A split (the block of `size` at `base`, of which [lo, hi) leaves the host) is
 * break-before-make, as the architecture requires to change a block into a table:
 *  1. break: the block descriptor is made invalid (the io-pgtable unmaps the one block);
 *  2. invalidate: TLBI_S2_IPA (VMID 0, leaf, TTL = the block's level) over the block +
 *     CMD_SYNC, TLBI_NH_ALL (VMID 0) + CMD_SYNC, through the shadow queue, waited for;
 *  3. make: what stays with the host, [base, lo) and [hi, base+size), is mapped again with the
 *     largest pieces that fit: a table of the next level in the block's slot, and below it
 *     tables down to the page around [lo, hi).
 * From 1 to the end of 3 a DMA to any page of the block faults: the break-before-make window
 * (counted in windows, and in the host pages it made unreachable). [lo, hi) is never mapped
 * again; the idmap then issues the pages' own invalidation as it does for the page granule
 * (redundant after step 2, kept so a donation costs at least what it costs under pkvm).
 * If step 2 cannot complete, the block descriptor is written back as it was (the same value:
 * nothing a TLB may still hold differs from it) and the change is refused.
 *
 * A whole block that leaves the host is unmapped and invalidated at its own level (the idmap's
 * page-level invalidation has TTL 3, which does not reach a block entry).
 *
 * Blocks are not re-formed when pages come back: a block is mapped only into an empty slot,
 * never over a table (replacing a table is a change that needs its own break-before-make), so
 * a region once split stays split: no window on a reclaim, at the cost of its table pages.
 */
import type { IoPgtable, IotlbGather, Prot } from '../../hw/vmsa/io-pgtable.ts';
import { PAGE } from '../mem/ownership.ts';
import { HYP_STATS } from '../probes.ts';
import type { IdmapGranule, IdmapInvalidate } from './granule.ts';

export class BlockGranule implements IdmapGranule {
  readonly stats = HYP_STATS.stage2Blocks.create();

  map(pt: IoPgtable, base: number, size: number, prot: Prot): number {
    const end = base + size;
    const sizes = pt.pgsizeBitmap;
    let a = base;
    while (a < end) {
      const w = pt.walkEnd(a);
      if (w === null || w.pte !== 0n) break; // beyond the table, or already mapped: refused
      // the largest leaf that fits, is aligned, and goes into the empty slot the walk stopped
      // at or below it (a larger one would replace a table)
      const room = pt.blockSize(w.level);
      let s = 0;
      for (let i = sizes.length - 1; i >= 0 && s === 0; i--) {
        const z = sizes[i]!;
        if (z <= room && a % z === 0 && a + z <= end) s = z;
      }
      if (s === 0) break;
      // pages: up to the end of their table at once; blocks: one at a time, as the slot of
      // the next one may hold a table
      const n = pt.map(a, a, s, s === PAGE ? (end - a) / PAGE : 1, prot);
      if (n === 0) break;
      a += n;
    }
    return a - base;
  }

  unmap(
    pt: IoPgtable,
    base: number,
    size: number,
    gather: IotlbGather,
    inv: IdmapInvalidate,
  ): number {
    const end = base + size;
    let a = base;
    try {
      while (a < end) {
        const e = pt.lookup(a);
        if (e === null) break; // not mapped: the caller reports it
        const s = pt.blockSize(e.level);
        if (s === PAGE) {
          const n = pt.unmap(a, PAGE, (end - a) / PAGE, gather);
          if (n === 0) break;
          a += n;
          continue;
        }
        const b = a - (a % s);
        const hi = Math.min(end, b + s);
        if (b === a && hi === b + s) {
          // the whole block leaves: unmapped and invalidated at its level
          if (pt.unmap(b, s, 1, gather) !== s) break;
          a = hi;
          this.stats.blockUnmaps++;
          inv.leaves(b, s, s);
        } else {
          this.split(pt, b, s, a, hi, gather, inv);
          a = hi;
        }
      }
    } catch (e) {
      // an invalidation could not complete: the change is refused, so what this call already
      // unmapped is mapped again (its invalidations did complete: nothing stale can be cached)
      if (a > base) this.map(pt, base, a - base, inv.prot);
      throw e;
    }
    return a - base;
  }

  /** Steps 1–3 above: split the block of `size` at `base` so that [lo, hi) is left unmapped. */
  private split(
    pt: IoPgtable,
    base: number,
    size: number,
    lo: number,
    hi: number,
    gather: IotlbGather,
    inv: IdmapInvalidate,
  ): void {
    // 1. break
    if (pt.unmap(base, size, 1, gather) !== size)
      throw new Error(`idmap: the block at 0x${base.toString(16)} could not be made invalid`);
    const st = this.stats;
    st.bbmWindows++;
    st.bbmPages += (size - (hi - lo)) / PAGE;
    // 2. invalidate, and wait
    let tlbis: number;
    try {
      tlbis = inv.leaves(base, size, size);
    } catch (e) {
      pt.map(base, base, size, 1, inv.prot); // the block as it was: the change is refused
      throw e;
    }
    st.blockSplits++;
    st.splitTlbis += tlbis;
    if (tlbis > 0) st.splitSyncs += 2;
    // 3. make
    if (lo > base) pt.mapRange(base, base, lo - base, inv.prot);
    if (hi < base + size) pt.mapRange(hi, hi, base + size - hi, inv.prot);
  }
}
