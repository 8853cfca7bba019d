/** The idmap maps host memory with 4 KiB pages, so any page of it can leave the host alone. */
import type { IoPgtable, IotlbGather, Prot } from '../../hw/vmsa/io-pgtable.ts';
import { PAGE } from '../mem/ownership.ts';
import { HYP_STATS } from '../probes.ts';
import type { IdmapGranule } from './granule.ts';

export class PageGranule implements IdmapGranule {
  /** no blocks, so never a split: all zero */
  readonly stats = HYP_STATS.stage2Blocks.create();

  map(pt: IoPgtable, base: number, size: number, prot: Prot): number {
    let done = 0;
    while (done < size) {
      const n = pt.map(base + done, base + done, PAGE, (size - done) / PAGE, prot);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  unmap(pt: IoPgtable, base: number, size: number, gather: IotlbGather): number {
    let done = 0;
    while (done < size) {
      const n = pt.unmap(base + done, PAGE, (size - done) / PAGE, gather);
      if (n === 0) break;
      done += n;
    }
    return done;
  }
}
