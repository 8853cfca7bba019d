/**
 * A stage-2 page table the hypervisor owns: Linux's ARM_64_LPAE_S2 format through the shared
 * io-pgtable (hw/vmsa/io-pgtable.ts), 48-bit IPA and PA, 4 KB pages with 2 MB and 1 GB blocks,
 * its tables taken from the hyp pool and read and written as the `hyp` actor on the bus. The
 * caller issues the invalidations itself (the io-pgtable's flush callbacks do nothing), as the
 * idmap and a guest's stage-2 both batch theirs.
 */
import type { MmioBus } from '../../hw/bus.ts';
import { IoPgtable } from '../../hw/vmsa/io-pgtable.ts';
import type { HypPool } from '../mem/pool.ts';
import { PAGE } from '../mem/ownership.ts';

/** A hyp-owned stage-2 table; `what` names its tables in the pool's accounting. */
export function hypStage2Pgtable(bus: MmioBus, pool: HypPool, what: string): IoPgtable {
  return new IoPgtable(
    {
      fmt: 'ARM_64_LPAE_S2',
      pgsizeBitmap: [PAGE, 2 ** 21, 2 ** 30],
      ias: 48,
      oas: 48,
      coherentWalk: true,
    },
    { read64: (a) => bus.read64('hyp', a), write64: (a, v) => bus.write64('hyp', a, v) },
    { alloc: (bytes) => pool.alloc(bytes, what), free: (a, b) => pool.free(a, b) },
    { tlbFlushAll: () => {}, tlbFlushWalk: () => {}, tlbAddPage: () => {} },
  );
}

/**
 * A hyp-owned stage-1 table (Linux's ARM_64_LPAE_S1, 48-bit input, `oas`-bit output, 4 KB pages
 * with 2 MB and 1 GB blocks) in the hyp pool: a paravirtual DMA domain's (hyp/pv/domains.ts).
 * As above, the caller issues the invalidations.
 */
export function hypStage1Pgtable(
  bus: MmioBus,
  pool: HypPool,
  oas: number,
  what: string,
): IoPgtable {
  return new IoPgtable(
    {
      fmt: 'ARM_64_LPAE_S1',
      pgsizeBitmap: [PAGE, 2 ** 21, 2 ** 30],
      ias: 48,
      oas,
      coherentWalk: true,
    },
    { read64: (a) => bus.read64('hyp', a), write64: (a, v) => bus.write64('hyp', a, v) },
    { alloc: (bytes) => pool.alloc(bytes, what), free: (a, b) => pool.free(a, b) },
    { tlbFlushAll: () => {}, tlbFlushWalk: () => {}, tlbAddPage: () => {} },
  );
}
