/**
 * The evaluation's metrics, declared once: every count a (design, workload) run reports, with
 * what it counts. Each is counted from what the simulation actually did, through the probes and
 * stat groups (hw/probes.ts, hyp/probes.ts) or the components' own counters, never estimated.
 * The cost model (scenarios/eval/profile.ts) prices some of them; the report shows them all.
 */
export const METRICS = {
  // the workload
  ops: 'workload operations (maps, unmaps, attaches, donations, enables…: the per-operation divisor)',
  maps: 'DMA maps the workload made',
  unmaps: 'DMA unmaps the workload made',
  dmas: 'device DMA transactions issued',
  dmaFaults: 'device DMA transactions that faulted (an event record or an abort)',
  // host → hypervisor
  traps: 'data aborts the hypervisor took from the host (MMIO and memory)',
  mmioTraps: "host accesses to the SMMU's registers trapped",
  memoryTraps: 'host accesses to memory trapped (write-protected tables, lazy stage-2 faults)',
  steStoreTraps: 'host stores to its write-protected stream table, emulated into the shadow',
  s2Faults: 'host CPU stage-2 faults taken to map memory lazily (shared stage-2)',
  hypercalls: 'hypercalls the host made',
  // commands
  hostCommands: 'commands the host wrote to its own queue and the hypervisor read',
  forwarded: 'host commands copied to the hardware queue',
  rejected: 'host commands refused',
  hypCommands: "the hypervisor's own commands (invalidations for its tables, reshadows, pv)",
  hwCommands: 'commands the SMMU consumed',
  cmdSyncs: 'CMD_SYNCs the SMMU consumed',
  cfgis: 'CFGI_* commands the SMMU consumed',
  tlbis: 'TLBI_* commands the SMMU consumed',
  atcInvs: 'ATC_INV commands the SMMU consumed',
  // the hypervisor's work
  reshadows: 'stream table entries reshadowed',
  ownershipChanges: 'page ownership transitions (pages × transitions)',
  dmaRefcounts:
    "pages the hypervisor mapped or unmapped for the host's DMA (paravirtual: each ownership-checked and its DMA refcount changed)",
  blockSplits: 'idmap or shared stage-2 blocks split (break-before-make) on a donation',
  bbmWindows: 'break-before-make windows in a stage-2 the SMMU walks (DMA there faults)',
  // memory
  shadowPages: "pages of the hypervisor's shadow structures (queue, stream table)",
  poolPages: 'hypervisor pool pages in use at the end',
  idmapPages: "page-table pages of the SMMU's own stage-2 for the host (0 when shared)",
  // translation
  iotlbHits: 'IOTLB hits',
  iotlbMisses: 'IOTLB misses',
  walks: 'table walks started',
  descReads: 'descriptors read by walks (stage 1 and stage 2)',
} as const;

export type MetricName = keyof typeof METRICS;
export const METRIC_NAMES = Object.keys(METRICS) as MetricName[];

/** One (design, workload) run's counts. */
export type Metrics = Record<MetricName, number>;

export function zeroMetrics(): Metrics {
  const m = {} as Metrics;
  for (const k of METRIC_NAMES) m[k] = 0;
  return m;
}
