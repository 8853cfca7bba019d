/**
 * Strategy (d): the granularity at which the idmap maps host memory (policy `idmapGranule`).
 *  - 'page':  4 KiB pages, so any page can be donated without splitting a block (pKVM):
 *             granule-page.ts.
 *  - 'block': the largest blocks that fit, split on donation: not built yet, refused here.
 * MMIO is mapped with blocks whatever the choice (it is never donated at runtime).
 */
import type { IoPgtable, IotlbGather, Prot } from '../../hw/vmsa/io-pgtable.ts';
import { NotBuiltError } from '../policy/not-built.ts';
import type { HypPolicy } from '../policy/policy.ts';
import { PageGranule } from './granule-page.ts';

export interface IdmapGranule {
  /** Identity-map host memory [base, base+size); returns the bytes mapped (less when the table refused). */
  map(pt: IoPgtable, base: number, size: number, prot: Prot): number;
  /** Unmap [base, base+size) into `gather`; returns the bytes unmapped (less when not mapped at this granule). */
  unmap(pt: IoPgtable, base: number, size: number, gather: IotlbGather): number;
}

/** The implementation the policy names, or NotBuiltError. */
export function selectIdmapGranule(policy: HypPolicy): () => IdmapGranule {
  switch (policy.idmapGranule) {
    case 'page':
      return () => new PageGranule();
    case 'block':
      throw new NotBuiltError('idmapGranule', 'block', "'page', pKVM's");
  }
}
