/**
 * Strategy (c): what the SMMU's stage-2 for the host (VMID 0) is (policy `smmuStage2`).
 *  - 'shadow-idmap': the hypervisor's own identity table, kept a shadow of the host CPU
 *                    stage-2 through ownership changes (pKVM): idmap.ts.
 *  - 'cpu-shared':   the CPU's stage-2 tables shared with the SMMU: not built yet, refused here.
 */
import type { MmioBus } from '../../hw/bus.ts';
import type { S2PgtableCfg } from '../../hw/vmsa/io-pgtable.ts';
import type { HypPool } from '../mem/pool.ts';
import type { OwnershipChange, PageOwnership } from '../mem/ownership.ts';
import { NotBuiltError } from '../policy/not-built.ts';
import type { HypPolicy } from '../policy/policy.ts';
import type { IdmapGranule, Stage2BlockStats } from './granule.ts';
import { Idmap } from './idmap.ts';

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
  /** page-table pages the SMMU's own stage-2 holds (0 when it shares the CPU's) */
  readonly tablePages: number;
  /** its blocks split on ownership changes, and their break-before-make windows */
  readonly blocks: Readonly<Stage2BlockStats>;
  /** the initial state: everything of `regions` the host may access */
  snapshot(regions: readonly IdmapRegion[], own: PageOwnership): void;
  /** follow an ownership change before it completes (`flush` throwing refuses it) */
  update(c: OwnershipChange, flush: IdmapFlush, skipTlbi: boolean): void;
}

export interface Stage2Env {
  readonly bus: MmioBus;
  readonly pool: HypPool;
  /** IDR3.RIL: range invalidation */
  readonly ril: boolean;
}

/** The implementation the policy names, or NotBuiltError. */
export function selectSmmuStage2(
  policy: HypPolicy,
  granule: () => IdmapGranule,
): (env: Stage2Env) => SmmuStage2 {
  switch (policy.smmuStage2) {
    case 'shadow-idmap':
      return (env) => new Idmap(env.bus, env.pool, env.ril, granule());
    case 'cpu-shared':
      throw new NotBuiltError('smmuStage2', 'cpu-shared', "'shadow-idmap', pKVM's");
  }
}
