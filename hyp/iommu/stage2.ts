/**
 * Strategy (c): what the SMMU's stage-2 for the host (VMID 0) is (policy `smmuStage2`).
 *  - 'shadow-idmap': the hypervisor's own identity table, kept a shadow of the host CPU
 *                    stage-2 through ownership changes (pKVM): idmap.ts.
 *  - 'cpu-shared':   the host CPU's own stage-2, mapped lazily on CPU faults and shared with
 *                    the SMMU (designs.md §1.9 future work): stage2-cpu-shared.ts.
 */
import type { MmioBus } from '../../hw/bus.ts';
import type { S2PgtableCfg } from '../../hw/vmsa/io-pgtable.ts';
import type { HypPool } from '../mem/pool.ts';
import type { OwnershipChange, PageOwnership } from '../mem/ownership.ts';
import type { HypPolicy } from '../policy/policy.ts';
import type { IdmapGranule, Stage2BlockStats } from './granule.ts';
import { Idmap } from './idmap.ts';
import { CpuSharedStage2 } from './stage2-cpu-shared.ts';

export interface IdmapRegion {
  base: number;
  size: number;
  mmio: boolean;
}

export interface IdmapFlush {
  /** issue the TLBIs and wait for their CMD_SYNC; throw if that cannot be done */
  (cmds: Uint32Array[]): void;
}

export interface SmmuStage2 {
  /** the stage-2 configuration every host STE gets (VTTBR, VTCR fields) */
  readonly s2: S2PgtableCfg;
  /** pages (RAM) and blocks (MMIO) mapped, in pages */
  readonly mappedPages: number;
  /** page-table pages the SMMU's stage-2 holds of its own (0 when it is the CPU's stage-2) */
  readonly tablePages: number;
  /** its blocks split on ownership changes, and their break-before-make windows */
  readonly blocks: Readonly<Stage2BlockStats>;
  /** the initial state: everything of `regions` the host may access */
  snapshot(regions: readonly IdmapRegion[], own: PageOwnership): void;
  /** follow an ownership change before it completes (`flush` throwing refuses it) */
  update(c: OwnershipChange, flush: IdmapFlush, skipTlbi: boolean): void;
  /**
   * When the stage-2 is the host CPU's (cpu-shared): what the CPU may access without a fault,
   * one byte per page from PA 0 (1 = mapped); the bus check reads it, a page beyond it is
   * unmapped. Absent otherwise, and then the bus check is the ownership check alone.
   */
  readonly hostMapped?: Uint8Array;
  /** With `hostMapped`: a host CPU stage-2 fault at `addr`; true when it mapped the page (retry the access). */
  hostFault?(addr: number): boolean;
  /** With `hostMapped`: an event record of a host (not a guest) device, before it is written. */
  hostEvent?(w: Uint32Array): void;
  /** the design's own counters (a stat group record), when it has any */
  readonly stats?: Readonly<Record<string, number>>;
}

export interface Stage2Env {
  readonly bus: MmioBus;
  readonly pool: HypPool;
  /** IDR3.RIL: range invalidation */
  readonly ril: boolean;
}

/** The implementation the policy names. */
export function selectSmmuStage2(
  policy: HypPolicy,
  granule: () => IdmapGranule,
): (env: Stage2Env) => SmmuStage2 {
  switch (policy.smmuStage2) {
    case 'shadow-idmap':
      return (env) => new Idmap(env.bus, env.pool, env.ril, granule());
    case 'cpu-shared':
      // the CPU's stage-2 maps memory with the largest blocks it can: the idmap granule does not apply
      return (env) => new CpuSharedStage2(env.bus, env.pool);
  }
}
