/**
 * A read-only view of the SMMU's configuration caches, for checkers that must see what the
 * hardware could use without changing it (the isolation oracle, scenarios/check/oracle.ts):
 * nothing here fills, evicts or counts a cache entry, unlike a lookup.
 *
 * The view is additive: the caches stay private to hw/smmu/strtab.ts and hw/smmu/cdtab.ts, and
 * these accessors are the only way out.
 */
import type { Smmu } from './smmu.ts';
import type { SteEntry } from './strtab.ts';
import type { CdEntry } from './cdtab.ts';
import type { StreamDec } from './translate.ts';

/** An STE as the configuration cache holds it: with the translator's decode once it has been used. */
export type CachedSte = SteEntry & { readonly dec?: StreamDec };

export interface SmmuCacheView {
  /** whether the SMMU has configuration caches at all (Smmu.caching) */
  readonly caching: boolean;
  /** the cached STE of a StreamID */
  ste(sid: number): CachedSte | undefined;
  /** the cached L1STD at an L1 index of the stream table */
  l1std(l1idx: number): number | undefined;
  /** the CDs cached through a StreamID, by SubstreamID */
  cds(sid: number): ReadonlyMap<number, CdEntry> | undefined;
  /** the L1CDs cached through a StreamID, by L1 index */
  l1cds(sid: number): ReadonlyMap<number, number> | undefined;
}

/** The read-only cache view of `smmu`. */
export function inspectCaches(smmu: Smmu): SmmuCacheView {
  const st = smmu.strtab;
  const cd = smmu.cds;
  return {
    caching: smmu.caching,
    ste: (sid) => st.peekSte(sid),
    l1std: (l1idx) => st.peekL1(l1idx),
    cds: (sid) => cd.peekCds(sid),
    l1cds: (sid) => cd.peekL1s(sid),
  };
}
