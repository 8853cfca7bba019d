/**
 * What a workload is: a name, one line, a zod schema of its numeric parameters (with their
 * defaults), how many endpoints its bed needs, and the two parts of a run. `setup` brings the
 * bed to where the workload starts (the driver's probe, the attaches) and is not counted;
 * `run` is what the metrics count. Workloads are deterministic: any randomness comes from a
 * seeded PRNG (prng.ts).
 */
import type { z } from 'zod';
import type { Bed } from '../bed.ts';

export type WorkloadParams = Readonly<Record<string, number>>;

export interface Workload<P extends WorkloadParams = WorkloadParams, S = unknown> {
  readonly name: string;
  readonly description: string;
  /** every parameter a number with a default: `schema.parse({})` gives the defaults */
  readonly schema: z.ZodType<P>;
  /** endpoints the bed needs */
  devices(p: P): number;
  /** why the workload cannot run on a design with no hypervisor, or undefined when it can */
  readonly needsHypervisor?: string;
  /** uncounted: bring the bed to the workload's start; returns what `run` starts from */
  setup(bed: Bed, p: P): S;
  /** counted; calls bed.check(phase) at the end of each phase */
  run(bed: Bed, p: P, state: S): void;
}

/** define a workload with its parameter and state types inferred */
export function defineWorkload<P extends WorkloadParams, S>(w: Workload<P, S>): Workload<P, S> {
  return w;
}
