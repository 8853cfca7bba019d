/**
 * The matrix runner: one (design, workload) cell on a fresh bed, and the whole matrix.
 *
 * A cell validates its parameters (errors name the workload and the key), builds the bed for
 * the design (bed.ts), runs the workload's uncounted setup, then its counted run; the isolation
 * oracle runs after each phase the workload marks and once more at the end. Whatever stops the
 * run (a hypervisor panic, a refused operation, a design that is not built) is recorded in
 * `error` with the counts up to that point, never thrown out. Bad input (an unknown workload,
 * a bad parameter) is thrown: it is the caller's mistake, not the design's.
 */
import { layerLogger } from '../../hw/log.ts';
import { Bed } from './bed.ts';
import { startCollect, type Collection } from './collect.ts';
import { zeroMetrics } from './metrics.ts';
import type { CellResult, Design } from './types.ts';
import { workloadByName, WORKLOAD_NAMES, type WorkloadParams } from './workloads/index.ts';

export { WORKLOAD_NAMES } from './workloads/index.ts';

const log = layerLogger('scenarios');

/** Parameters per workload name, each partial (the rest are the workload's defaults). */
export type MatrixParams = Readonly<Record<string, Readonly<Record<string, number>> | undefined>>;

/** A workload's parameters with the defaults filled in; the error names the workload and the key. */
export function workloadParams(
  workload: string,
  params: Readonly<Record<string, unknown>> = {},
): WorkloadParams {
  const w = workloadByName(workload);
  const r = w.schema.safeParse(params);
  if (!r.success) {
    const problems = r.error.issues.map((iss) => {
      if (iss.code === 'unrecognized_keys')
        return `unknown parameter(s) ${iss.keys.map((k) => `"${k}"`).join(', ')}`;
      return `parameter "${iss.path.join('.') || '(all)'}": ${iss.message}`;
    });
    throw new Error(`workload ${workload}: ${problems.join('; ')}`);
  }
  return r.data;
}

/** Run one cell. */
export function runCell(
  design: Design,
  workload: string,
  params: Readonly<Record<string, number>> = {},
): CellResult {
  const w = workloadByName(workload);
  const p = workloadParams(workload, params);
  const base = { design: design.name, workload, params: p };
  if (w.needsHypervisor && design.policy === null)
    return {
      ...base,
      metrics: zeroMetrics(),
      isolation: { ok: true, breaches: 0 },
      notApplicable: w.needsHypervisor,
    };
  let bed: Bed | null = null;
  let col: Collection | null = null;
  let error: string | undefined;
  try {
    bed = new Bed(design, { devices: w.devices(p) });
    const state = w.setup(bed, p);
    bed.check('setup');
    col = startCollect(bed);
    w.run(bed, p, state);
  } catch (e) {
    error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    log.info({ design: design.name, workload, error }, 'eval cell stopped');
  }
  const metrics = col ? col.finish() : zeroMetrics();
  let isolation = { ok: true, breaches: 0 };
  if (bed) {
    try {
      bed.check('end');
    } catch (e) {
      error ??= `isolation check: ${e instanceof Error ? e.message : String(e)}`;
    }
    let breaches = 0;
    for (const c of bed.checks) breaches = Math.max(breaches, c.breaches);
    isolation = { ok: bed.checks.every((c) => c.ok), breaches };
  }
  return { ...base, metrics, isolation, ...(error !== undefined ? { error } : {}) };
}

/**
 * Run every (design, workload) cell, designs outer and workloads inner (the order of the
 * result). `params` gives per-workload parameters; every workload's are validated before any
 * cell runs.
 */
export function runMatrix(
  designs: readonly Design[],
  workloads: readonly string[] = WORKLOAD_NAMES,
  params: MatrixParams = {},
  onProgress?: (cell: CellResult, done: number, total: number) => void,
): CellResult[] {
  for (const k of Object.keys(params))
    if (!workloads.includes(k))
      throw new Error(
        `parameters for workload "${k}", which is not in the matrix (${workloads.join(', ')})`,
      );
  for (const wl of workloads) workloadParams(wl, params[wl] ?? {});
  const out: CellResult[] = [];
  const total = designs.length * workloads.length;
  for (const d of designs)
    for (const wl of workloads) {
      const cell = runCell(d, wl, params[wl] ?? {});
      out.push(cell);
      onProgress?.(cell, out.length, total);
    }
  return out;
}
