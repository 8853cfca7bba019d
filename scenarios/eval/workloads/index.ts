/**
 * The workloads, by name, in the order reports list them. Each file is one workload.
 *
 * Not here yet: `linux-session`, the captured Linux 6.12 session replayed as a workload; it
 * needs issue 16's replay of the capture (shared/reference/linux-6.12-capture), which is not
 * merged.
 */
import type { Workload, WorkloadParams } from './types.ts';
import { bootWorkload } from './boot.ts';
import { netRxWorkload } from './net-rx.ts';
import { storageWorkload } from './storage.ts';
import { vmLifecycleWorkload } from './vm-lifecycle.ts';
import { smmuRpmWorkload } from './smmu-rpm.ts';

export type { Workload, WorkloadParams } from './types.ts';

export const WORKLOADS: readonly Workload<WorkloadParams, unknown>[] = [
  bootWorkload,
  netRxWorkload,
  storageWorkload,
  vmLifecycleWorkload,
  smmuRpmWorkload,
];

export const WORKLOAD_NAMES: readonly string[] = WORKLOADS.map((w) => w.name);

/** A workload by name; the error lists the known names. */
export function workloadByName(name: string): Workload<WorkloadParams, unknown> {
  const w = WORKLOADS.find((x) => x.name === name);
  if (!w) throw new Error(`unknown workload "${name}" (known: ${WORKLOAD_NAMES.join(', ')})`);
  return w;
}
