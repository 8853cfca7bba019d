/**
 * Metric collection: every METRICS count of one run, read from what the simulation counted.
 * `startCollect(bed)` takes a reading of every counter and starts the one listener the
 * collection needs (page ownership changes, for pages × transitions); `finish()` takes a
 * second reading and returns the differences, so the counts cover the workload alone.
 * Memory metrics (shadowPages, poolPages, idmapPages) are levels at the end, not differences.
 *
 * Sources, all existing counters, read off the hot paths:
 *  - commands the SMMU consumed, by opcode: the SMMU queue's perOpcode stat, classified with
 *    the opcode table (hw/smmu/commands.ts) into CMD_SYNC, CFGI_*, TLBI_*, ATC_INV;
 *  - IOTLB hits/misses, walks, descriptor reads: the translator's per-stream stat groups;
 *  - DMAs and their faults: the endpoints' counters;
 *  - traps, reshadows: hyp.stats (hyp.traps); host commands: hyp.cmdq.stats (hyp.cmdq); the
 *    hypervisor's own commands: hyp.shadowQ.stats (hyp.shadowq); memory: hypStats();
 *  - design-specific counters: `designCounters` below, the one place they are read.
 * Nothing here is on a hot path: with no evaluation running, nothing listens.
 */
import { OPCODE_TABLE } from '../../hw/smmu/commands.ts';
import type { PkvmHyp } from '../../hyp/pkvm.ts';
import type { Bed } from './bed.ts';
import { METRIC_NAMES, zeroMetrics, type MetricName, type Metrics } from './metrics.ts';

type Reading = Partial<Record<MetricName, number>>;

/** The metrics that are a level at the end of the run rather than a difference. */
const LEVELS: ReadonlySet<MetricName> = new Set(['shadowPages', 'poolPages', 'idmapPages']);

/** opcode → the metric it also counts in (CMD_SYNC, CFGI_*, TLBI_*, ATC_INV), from the opcode table */
const OPCODE_CLASS: ReadonlyArray<MetricName | null> = OPCODE_TABLE.map((d) => {
  if (!d) return null;
  if (d.name === 'CMD_SYNC') return 'cmdSyncs';
  if (d.name.startsWith('CFGI_')) return 'cfgis';
  if (d.name.startsWith('TLBI_')) return 'tlbis';
  if (d.name === 'ATC_INV') return 'atcInvs';
  return null;
});

/**
 * The design-specific counters, read in this one place, each from its design's stat group:
 * the SMMU stage-2's table pages and block splits (hyp.s2.blocks, every stage-2), the shared
 * stage-2's lazy faults (hyp.shared-s2), the write-protected stream table's stores (hyp.ste-wp),
 * the paravirtual designs' hypercalls (hyp.pv).
 */
function designCounters(hyp: PkvmHyp | null): Reading {
  if (!hyp) return {};
  const s2 = hyp.idmap;
  return {
    hypercalls: hyp.pv?.stats.hypercalls ?? 0,
    dmaRefcounts: (hyp.pv?.stats.pagesMapped ?? 0) + (hyp.pv?.stats.pagesUnmapped ?? 0),
    steStoreTraps: hyp.steStoreStats?.steStoreTraps ?? 0,
    s2Faults: s2?.stats?.s2Faults ?? 0,
    blockSplits: s2?.blocks.blockSplits ?? 0,
    bbmWindows: s2?.blocks.bbmWindows ?? 0,
    idmapPages: s2?.tablePages ?? 0,
  };
}

/** Every cumulative counter (and the levels) now. */
function read(bed: Bed): Reading {
  const r: Reading = {
    ops: bed.counts.ops,
    maps: bed.counts.maps,
    unmaps: bed.counts.unmaps,
  };
  // the endpoints
  let dmas = 0;
  let faults = 0;
  for (const e of bed.endpoints) {
    dmas += e.dmas;
    faults += e.faults;
  }
  r.dmas = dmas;
  r.dmaFaults = faults;
  // the SMMU's command queue, by opcode
  const smmu = bed.machine.smmu;
  r.hwCommands = smmu.cmdq.stats.consumed;
  const perOp = smmu.cmdq.stats.perOpcode;
  r.cmdSyncs = r.cfgis = r.tlbis = r.atcInvs = 0;
  for (let op = 0; op < perOp.length; op++) {
    const k = OPCODE_CLASS[op];
    if (k && perOp[op]) r[k] = r[k]! + perOp[op]!;
  }
  // the translator, over every stream
  let hits = 0,
    misses = 0,
    walks = 0,
    descReads = 0;
  for (const s of smmu.translator.perStream.values()) {
    hits += s.hits;
    misses += s.misses;
    walks += s.walks;
    descReads += s.descReads;
  }
  r.iotlbHits = hits;
  r.iotlbMisses = misses;
  r.walks = walks;
  r.descReads = descReads;
  // the hypervisor
  const hyp = bed.hyp;
  if (hyp) {
    const st = hyp.stats;
    r.mmioTraps = st.mmioTraps;
    r.memoryTraps = st.memoryTraps;
    r.traps = st.mmioTraps + st.memoryTraps; // the host's (a guest's vSMMU traps are not the host's)
    r.reshadows = st.reshadows;
    const c = hyp.cmdq?.stats;
    if (c) {
      r.hostCommands = c.forwarded + c.rejected + c.dropped;
      r.forwarded = c.forwarded;
      r.rejected = c.rejected + c.dropped;
    }
    r.hypCommands = hyp.shadowQ?.stats.hyp ?? 0;
    const hs = hyp.hypStats();
    r.shadowPages = hs.shadowPages;
    r.poolPages = hs.poolPages;
    Object.assign(r, designCounters(hyp));
  }
  return r;
}

export interface Collection {
  /** stop listening and return the counts since `startCollect` */
  finish(): Metrics;
}

/** Start counting a run of `bed`'s workload. */
export function startCollect(bed: Bed): Collection {
  const before = read(bed);
  let ownershipPages = 0;
  const off = bed.hyp?.own.probes.change.subscribe((c) => (ownershipPages += c.pages));
  let done = false;
  return {
    finish(): Metrics {
      if (done) throw new Error('collection already finished');
      done = true;
      off?.();
      const after = read(bed);
      const m = zeroMetrics();
      for (const k of METRIC_NAMES) {
        const a = after[k] ?? 0;
        m[k] = LEVELS.has(k) ? a : a - (before[k] ?? 0);
      }
      m.ownershipChanges = ownershipPages;
      return m;
    },
  };
}
