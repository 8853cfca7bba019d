/**
 * The IOMMU stage-2 "idmap" (VMID 0): a shadow of the host CPU stage-2 (designs.md §1.9). It
 * identity-maps (IPA == PA) everything the host may access and nothing it may not. Memory is
 * mapped with 4 KiB pages (so a single page can be unmapped without splitting a block), MMIO
 * with the largest blocks that fit (MMIO is never donated at runtime).
 *
 * It is an ARM_64_LPAE_S2 table built with the same io-pgtable code the host uses (pKVM's
 * hypervisor links io-pgtable-arm too), in hyp memory from the hyp pool. Every ownership
 * change is reflected before it completes: a page leaving the host is unmapped and then
 * TLBI_S2_IPA (VMID 0) + CMD_SYNC, TLBI_NH_ALL (VMID 0) + CMD_SYNC are issued; if they cannot
 * complete, the change is refused.
 */
import type { MmioBus } from '../../hw/bus.ts';
import { encodeCommand } from '../../hw/smmu/commands.ts';
import {
  IoPgtable,
  newGather,
  rangeInvCommands,
  type Prot,
  type S2PgtableCfg,
} from '../../hw/vmsa/io-pgtable.ts';
import type { HypPool } from '../mem/pool.ts';
import { hypStage2Pgtable } from './hyp-pgtable.ts';
import { PAGE, type OwnershipChange, type PageOwnership } from '../mem/ownership.ts';
import type { IdmapGranule } from './granule.ts';
import type { SmmuStage2, IdmapFlush, IdmapRegion } from './stage2.ts';

const RAM_PROT: Prot = { read: true, write: true, cache: true };
const MMIO_PROT: Prot = { read: true, write: true, mmio: true };

/** The SMMU's stage-2 as a shadow of the host CPU stage-2 (strategy (c), 'shadow-idmap'). */
export class Idmap implements SmmuStage2 {
  readonly pgtable: IoPgtable;
  /** pages (RAM) and blocks (MMIO) mapped */
  mappedPages = 0;
  unmaps = 0;
  tlbiCommands = 0;

  constructor(
    bus: MmioBus,
    pool: HypPool,
    private readonly ril: boolean,
    private readonly granule: IdmapGranule,
  ) {
    this.pgtable = hypStage2Pgtable(bus, pool, 'idmap table');
  }

  get s2(): S2PgtableCfg {
    return this.pgtable.s2!;
  }

  /** the idmap's page-table pages (all from the hyp pool) */
  get tablePages(): number {
    return this.pgtable.tableCount;
  }

  /**
   * The initial snapshot: map every page of `regions` the host may access (page by page for
   * memory, blocks for MMIO) and skip the rest.
   */
  snapshot(regions: readonly IdmapRegion[], own: PageOwnership): void {
    for (const r of regions) {
      const end = r.base + r.size;
      // the pages the host may not access, in order: everything between them is host-accessible
      // (visiting only these keeps a boot cheap: the MMIO region below RAM is a GiB of pages)
      const holes = own.nonHostPfns(Math.ceil(r.base / PAGE), Math.ceil(end / PAGE));
      let a = r.base;
      for (let h = 0; h <= holes.length; h++) {
        const stop = h < holes.length ? holes[h]! * PAGE : end;
        if (stop > a) {
          if (r.mmio) {
            // a run of host-accessible MMIO, as blocks
            this.pgtable.mapRange(a, a, stop - a, MMIO_PROT);
            this.mappedPages += (stop - a) / PAGE;
          } else {
            // memory, page by page (at most 512 pages per call)
            while (a < stop) {
              const run = Math.min(512, Math.ceil((stop - a) / PAGE));
              this.granule.map(this.pgtable, a, run * PAGE, RAM_PROT);
              this.mappedPages += run;
              a += run * PAGE;
            }
          }
        }
        a = Math.max(a, stop + PAGE);
      }
    }
  }

  /**
   * Follow an ownership change. A page leaving the host is unmapped and the TLBs invalidated
   * through `flush` before this returns; if `flush` throws, the change is refused (the caller
   * undoes it). `skipTlbi` is the `donate-tlbi` weakening: the unmap without invalidation.
   */
  update(c: OwnershipChange, flush: IdmapFlush, skipTlbi: boolean): void {
    if (!c.hostAccessChanged) return;
    const size = c.pages * PAGE;
    if (c.hostCanAccess) {
      if (c.mmio) this.pgtable.mapRange(c.base, c.base, size, MMIO_PROT);
      else {
        // memory stays at the granule, so any page of it can be donated again
        const done = this.granule.map(this.pgtable, c.base, size, RAM_PROT);
        if (done < size) throw new Error(`idmap: cannot map 0x${(c.base + done).toString(16)}`);
      }
      this.mappedPages += c.pages;
      return; // a new mapping needs no invalidation (nothing was cached for it: it was unmapped)
    }
    const g = newGather();
    const done = this.granule.unmap(this.pgtable, c.base, size, g);
    if (done < size)
      throw new Error(`idmap: 0x${(c.base + done).toString(16)} is not mapped at page granularity`);
    this.mappedPages -= c.pages;
    this.unmaps++;
    if (skipTlbi) return;
    const [s2, nh] = this.invalidation(c.base, size);
    flush(s2);
    flush(nh);
  }

  /** TLBI_S2_IPA over the range (range-encoded with RIL), and TLBI_NH_ALL for VMID 0: each batch is followed by a CMD_SYNC. */
  invalidation(base: number, size: number): [Uint32Array[], Uint32Array[]] {
    const cmds: Uint32Array[] = [];
    if (this.ril) {
      for (const r of rangeInvCommands(base, size, PAGE, true, PAGE)) {
        cmds.push(
          encodeCommand('TLBI_S2_IPA', {
            VMID: 0,
            NUM: r.num,
            SCALE: r.scale,
            TG: r.tg,
            TTL: r.ttl,
            Leaf: 1,
            Address: r.addr / PAGE,
          }),
        );
      }
    } else {
      for (let a = base; a < base + size; a += PAGE)
        cmds.push(encodeCommand('TLBI_S2_IPA', { VMID: 0, Leaf: 1, Address: a / PAGE }));
    }
    this.tlbiCommands += cmds.length + 1;
    return [cmds, [encodeCommand('TLBI_NH_ALL', { VMID: 0 })]];
  }
}
