/**
 * The cost model: a cell's modeled time is Σ count × ns over the profile's units (each unit
 * prices one metric, scenarios/eval/profile.ts), broken down by unit and by group (trap,
 * hypercall, command, sync, walk, ownership, reshadow, kernel), per workload operation
 * (metrics.ops), and against `none` on the same workload: the overhead in ns per operation and
 * the ratio. It is arithmetic on counts the simulation made; nothing here runs the machine.
 */
import type { CellResult } from './types.ts';
import type { Metrics } from './metrics.ts';
import { COST_GROUPS, type CostGroup, type Profile } from './profile.ts';

/** The design every overhead is measured against: no hypervisor, the unchanged driver. */
export const BASELINE_DESIGN = 'none';

/** Modeled time of one set of counts. */
export interface ModeledTime {
  /** Σ count × ns */
  readonly totalNs: number;
  /** totalNs / metrics.ops (totalNs when the workload counted no operation) */
  readonly perOpNs: number;
  /** ns charged by each unit, in the profile's order (every unit, zeros included) */
  readonly byUnit: Readonly<Record<string, number>>;
  /** ns charged to each group, in COST_GROUPS order; the groups sum to totalNs */
  readonly byGroup: Readonly<Record<CostGroup, number>>;
}

/** A cell's overhead against the baseline on the same workload. */
export interface Overhead {
  readonly against: string;
  /** perOpNs − the baseline's perOpNs */
  readonly perOpNs: number;
  /** perOpNs / the baseline's perOpNs (null when the baseline costs nothing) */
  readonly ratio: number | null;
}

export interface CellCost extends ModeledTime {
  readonly design: string;
  readonly workload: string;
  /** null for the baseline itself, or when the matrix has no baseline cell for the workload */
  readonly overhead: Overhead | null;
}

/** Price one set of counts with a profile. */
export function modeledTime(metrics: Metrics, profile: Profile): ModeledTime {
  const byUnit: Record<string, number> = {};
  const byGroup = Object.fromEntries(COST_GROUPS.map((g) => [g, 0])) as Record<CostGroup, number>;
  let totalNs = 0;
  for (const u of profile.units) {
    const count = metrics[u.metric];
    if (typeof count !== 'number' || !Number.isFinite(count))
      throw new Error(
        `cost: metric ${u.metric} (priced by unit ${u.name}) is ${count}, not a count`,
      );
    const ns = count * u.ns;
    byUnit[u.name] = ns;
    byGroup[u.group] += ns;
    totalNs += ns;
  }
  const ops = metrics.ops > 0 ? metrics.ops : 1;
  return { totalNs, perOpNs: totalNs / ops, byUnit, byGroup };
}

/**
 * Price every cell, and give each non-baseline cell its overhead against the baseline cell of
 * the same workload (when the matrix has one).
 */
export function costCells(cells: readonly CellResult[], profile: Profile): CellCost[] {
  const priced = cells.map((c) => ({ c, t: modeledTime(c.metrics, profile) }));
  const base = new Map<string, ModeledTime>();
  // a baseline that did not run (a workload needing a hypervisor) gives no overhead
  for (const { c, t } of priced)
    if (c.design === BASELINE_DESIGN && !c.notApplicable) base.set(c.workload, t);
  return priced.map(({ c, t }) => {
    const b = c.design === BASELINE_DESIGN ? undefined : base.get(c.workload);
    return {
      design: c.design,
      workload: c.workload,
      ...t,
      overhead: b
        ? {
            against: BASELINE_DESIGN,
            perOpNs: t.perOpNs - b.perOpNs,
            ratio: b.perOpNs > 0 ? t.perOpNs / b.perOpNs : null,
          }
        : null,
    };
  });
}
