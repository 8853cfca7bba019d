/**
 * Running a scenario: build the machine it describes, execute its steps in order, record
 * every failed expectation (the run goes on), and report the result with the events the SMMU
 * wrote and its counters.
 */
import { Machine } from '../hw/machine.ts';
import { layerLogger } from '../hw/log.ts';
import type { DecodedEvent } from '../hw/smmu/events.ts';
import { opcodeName } from '../hw/smmu/commands.ts';
import { RunContext, type Failure } from './context.ts';
import { STEPS } from './steps/index.ts';
import { ScenarioError, type Scenario } from './loader.ts';
import type { MachineConfig } from './schema.ts';
import type { SmmuFeatures } from '../hw/smmu/features.ts';
import type { SmmuOptions } from '../hw/smmu/smmu.ts';

const log = layerLogger('scenarios');

export interface RunResult {
  scenario: string;
  ok: boolean;
  steps: number;
  failed: Failure[];
  events: DecodedEvent[];
  stats: Record<string, unknown>;
}

export interface RunOptions {
  /** called with the machine before the first step (observers, logs) */
  onMachine?: (m: Machine) => void;
  /** stop after this many steps (for explainers) */
  stopAfter?: number;
}

export function smmuOptions(cfg: MachineConfig): SmmuOptions {
  const features: Partial<SmmuFeatures> = {};
  const idr: Record<string, number> = {};
  let gbpaReset: number | undefined;
  let caching: boolean | undefined;
  for (const [k, v] of Object.entries(cfg.smmu ?? {})) {
    if (v === undefined) continue;
    if (/^(IDR[0-5]|IIDR|AIDR)$/.test(k)) idr[k] = v as number;
    else if (k === 'gbpaReset') gbpaReset = v as number;
    else if (k === 'caching') caching = v as boolean;
    else (features as Record<string, unknown>)[k] = v;
  }
  return { features, idr, ...(gbpaReset !== undefined ? { gbpaReset } : {}), ...(caching !== undefined ? { caching } : {}) };
}

export function buildMachine(cfg: MachineConfig): Machine {
  if (cfg.hyp !== 'none') throw new Error(`machine.hyp "${cfg.hyp}" is not available yet: only "none" (bare hardware) is implemented`);
  return new Machine({
    ...(cfg.ramBase !== undefined ? { ramBase: cfg.ramBase } : {}),
    ...(cfg.ramSize !== undefined ? { ramSize: cfg.ramSize } : {}),
    smmu: smmuOptions(cfg),
    devices: cfg.devices.map((d) => ({ name: d.name, sid: d.sid, ...(d.ssid !== undefined ? { ssid: d.ssid } : {}) })),
  });
}

export function machineStats(m: Machine): Record<string, unknown> {
  const s = m.smmu;
  const perOpcode: Record<string, number> = {};
  s.cmdq.stats.perOpcode.forEach((n, op) => {
    if (n) perOpcode[opcodeName(op)] = n;
  });
  let dmas = 0;
  let dmaFaults = 0;
  for (const d of m.devices.values()) {
    dmas += d.dmas;
    dmaFaults += d.faults;
  }
  return {
    commands: s.cmdq.stats.consumed,
    commandsByOpcode: perOpcode,
    syncs: s.cmdq.stats.syncs,
    commandErrors: s.cmdq.stats.errors,
    eventsWritten: s.evtq.written,
    eventsDropped: s.evtq.dropped,
    eventqOverflows: s.evtq.overflows,
    msis: s.msis,
    sevs: s.sevs,
    wiredIrqs: { ...s.irqs },
    configCache: { steHits: s.strtab.hits, steMisses: s.strtab.misses, fetches: s.strtab.fetches, cdHits: s.cds.hits, cdMisses: s.cds.misses },
    iotlb: { entries: s.tlb.size, inserts: s.tlb.inserts, invalidateCommands: s.tlb.inv.commands, entriesInvalidated: s.tlb.inv.invalidated },
    streams: Object.fromEntries(
      [...s.translator.perStream].sort(([a], [b]) => a - b).map(([sid, st]) => [sid, { ...st, invalidated: s.tlb.invalidatedBySid.get(sid) ?? 0 }]),
    ),
    atcInvalidations: s.atcInvs,
    httuWrites: s.httuWrites,
    dmas,
    dmaFaults,
    mmioAccesses: m.bus.deviceAccesses,
    traps: m.bus.traps,
    ignoredAccesses: { ...s.ignored },
  };
}

export function runScenario(sc: Scenario, opts: RunOptions = {}): RunResult {
  let m: Machine;
  try {
    m = buildMachine(sc.machine);
  } catch (e) {
    throw new ScenarioError(sc.file, [`machine: ${(e as Error).message}`]);
  }
  opts.onMachine?.(m);
  const ctx = new RunContext(m);
  ctx.ptPool = sc.machine.ptPool;
  const n = Math.min(sc.steps.length, opts.stopAfter ?? Infinity);
  for (let i = 0; i < n; i++) {
    const st = sc.steps[i]!;
    ctx.stepIndex = i;
    ctx.op = st.op;
    const def = STEPS.get(st.op)!;
    try {
      def.run(ctx, st);
    } catch (e) {
      // an exception inside a step is a failure of that step; the run goes on
      ctx.fail('step completes', `${(e as Error).name}: ${(e as Error).message}`);
      log.warn({ step: i, op: st.op, err: (e as Error).message }, 'step raised an exception');
    }
  }
  return {
    scenario: sc.name,
    ok: ctx.failures.length === 0,
    steps: n,
    failed: ctx.failures,
    events: [...m.smmu.evtq.log],
    stats: machineStats(m),
  };
}
