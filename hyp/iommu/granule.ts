/**
 * Strategy (d): the granularity at which the idmap maps host memory (policy `idmapGranule`).
 *  - 'page':  4 KiB pages, so any page can be donated without splitting a block (pKVM):
 *             granule-page.ts.
 *  - 'block': the largest blocks that fit where every page is host-accessible, split with
 *             break-before-make when part of one leaves the host (designs.md §1.9, future
 *             work): granule-block.ts.
 * MMIO is mapped with blocks whatever the choice (it is never donated at runtime).
 */
import type { StatRecord } from '../../hw/probe.ts';
import type { IoPgtable, IotlbGather, Prot } from '../../hw/vmsa/io-pgtable.ts';
import type { HypPolicy } from '../policy/policy.ts';
import { HYP_STATS } from '../probes.ts';
import { BlockGranule } from './granule-block.ts';
import { PageGranule } from './granule-page.ts';

/** The counters of the stage-2's blocks and their splits (declared in HYP_STATS.stage2Blocks). */
export type Stage2BlockStats = StatRecord<typeof HYP_STATS.stage2Blocks>;

/**
 * What a granule may ask of the idmap while it unmaps: the TLB invalidation of leaves it has
 * just made invalid (the "break" of break-before-make, before it installs anything else there),
 * and the attributes the rest of a split block is mapped again with.
 */
export interface IdmapInvalidate {
  /** the attributes of the leaves being unmapped (memory or MMIO) */
  readonly prot: Prot;
  /**
   * Invalidate [base, base+size), leaves of `leafSize`, in the SMMU's TLBs: TLBI_S2_IPA (VMID 0)
   * + CMD_SYNC, TLBI_NH_ALL (VMID 0) + CMD_SYNC, waited for. Returns the TLBI commands issued
   * (0 when the policy's weakening skips them). Throws when they cannot complete.
   */
  leaves(base: number, size: number, leafSize: number): number;
}

export interface IdmapGranule {
  /** blocks and splits (all zero for the page granule) */
  readonly stats: Stage2BlockStats;
  /** Identity-map host memory [base, base+size); returns the bytes mapped (less when the table refused). */
  map(pt: IoPgtable, base: number, size: number, prot: Prot): number;
  /**
   * Unmap [base, base+size) into `gather`; returns the bytes unmapped (less when not mapped at
   * this granule). A block only partly in the range is split first, invalidating through `inv`
   * between the break and the make (the page granule never needs it).
   */
  unmap(
    pt: IoPgtable,
    base: number,
    size: number,
    gather: IotlbGather,
    inv: IdmapInvalidate,
  ): number;
}

/** The implementation the policy names. */
export function selectIdmapGranule(policy: HypPolicy): () => IdmapGranule {
  switch (policy.idmapGranule) {
    case 'page':
      return () => new PageGranule();
    case 'block':
      return () => new BlockGranule();
  }
}
