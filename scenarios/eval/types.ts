/**
 * The evaluation's shapes, shared by the matrix runner (matrix.ts), the cost model (cost.ts),
 * the security matrix (security.ts) and the `smmulab policies` command.
 */
import type { HypPolicy } from '../../hyp/policy/policy.ts';
import type { Metrics } from './metrics.ts';

/** A design under evaluation: no hypervisor at all, or a hypervisor policy (plain data). */
export interface Design {
  /** the name a user selects it by (`none`, a preset name, or a user design's name) */
  readonly name: string;
  /** one line: what it does and where it comes from (pKVM v1/v2, v3, v4–v6, future work…) */
  readonly description: string;
  /** null for `none` (the bare machine and the unchanged driver) */
  readonly policy: HypPolicy | null;
}

/** One (design, workload) run. */
export interface CellResult {
  readonly design: string;
  readonly workload: string;
  /** the workload's parameters, defaults filled in */
  readonly params: Readonly<Record<string, number>>;
  /** every count, from what the simulation did */
  readonly metrics: Metrics;
  /** the isolation oracle after the run (and after each phase of it) */
  readonly isolation: { readonly ok: boolean; readonly breaches: number };
  /** an exception that stopped the workload (a hypervisor panic, a refused operation) */
  readonly error?: string;
  /** why the workload does not apply to the design (it was not run; every count is 0) */
  readonly notApplicable?: string;
}
