/**
 * Running a scenario: build the machine it describes, execute its steps in order, record
 * every failed expectation (the run goes on), and report the result with the events the SMMU
 * wrote and its counters.
 */
import { produce } from 'immer';
import { Machine } from '../../hw/machine.ts';
import { layerLogger } from '../../hw/log.ts';
import type { DecodedEvent } from '../../hw/smmu/events.ts';
import { opcodeName } from '../../hw/smmu/commands.ts';
import { RunContext, type Failure } from './context.ts';
import { STEPS } from '../steps/index.ts';
import { ScenarioError, type Scenario } from './loader.ts';
import type { MachineConfig } from './schema.ts';
import type { SmmuFeatures } from '../../hw/smmu/features.ts';
import type { SmmuOptions } from '../../hw/smmu/smmu.ts';
import { PkvmHyp, HYP_MEMORY_DEFAULT, type HypStats } from '../../hyp/pkvm.ts';
import { HypPanic } from '../../hyp/policy/failure.ts';
import { makePolicy, type HypPolicy, type RuleName } from '../../hyp/policy/policy.ts';
import { isolationReport, oracleFor, type IsolationSummary } from '../check/isolation.ts';
import type { HypMode } from './loader.ts';
import type { Guest } from '../../hyp/vm/guest.ts';
import { attachTrace, type TraceRecorder } from '../inspect/trace.ts';

const log = layerLogger('scenarios');

export interface RunResult {
  scenario: string;
  ok: boolean;
  steps: number;
  failed: Failure[];
  events: DecodedEvent[];
  stats: Record<string, unknown>;
  /** steps not run because the hypervisor had panicked (the machine was stopped); only when > 0 */
  skipped?: number;
  /** the hypervisor it ran under (shown when not "none", or when the scenario has several variants) */
  hypMode?: HypMode;
  /** the hypervisor's counters (hyp "pkvm" only) */
  hyp?: HypStats;
  /** the isolation oracle at the end of the run (hyp "pkvm", or any run with an isolation step) */
  isolation?: IsolationSummary;
  /** guests built during the run (hyp "pkvm" with guest steps) */
  guests?: GuestSummary[];
  /** DMA translation chains of driver dma steps: IOVA → IPA → PA (only when there were some) */
  translations?: RunContext['translations'];
  /** guest teardowns, phase by phase (only when there were some) */
  teardowns?: RunContext['teardowns'];
}

export interface GuestSummary {
  name: string;
  vmid: number;
  /** vSMMU register accesses trapped */
  traps: number;
  /** guest commands consumed */
  commands: number;
  /** event records written to the guest's event queue */
  eventsInjected: number;
  /** whether the guest still exists at the end of the run */
  alive: boolean;
  stats: Record<string, unknown>;
}

export interface RunOptions {
  /** run under this hypervisor instead of the machine's own */
  hyp?: HypMode;
  /**
   * boot this policy (a design under evaluation, scenarios/eval) instead of the one the machine
   * names; the machine's `failure`, `weaken` and `allowAts` (the attack's conditions) still apply
   * on top. `hyp` still chooses which `when` steps run, and may not be 'none' with a policy.
   */
  policy?: HypPolicy;
  /** called with the machine before the first step (observers, logs) */
  onMachine?: (m: Machine) => void;
  /** stop after this many steps (for explainers) */
  stopAfter?: number;
  /**
   * record a timeline (scenarios/inspect/trace.ts): a recorder is attached once the machine and its
   * hypervisor are up, sees every step's boundaries, and is passed here before the first step
   */
  trace?: (rec: TraceRecorder) => void;
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
  return {
    features,
    idr,
    ...(gbpaReset !== undefined ? { gbpaReset } : {}),
    ...(caching !== undefined ? { caching } : {}),
  };
}

export function buildMachine(cfg: MachineConfig): Machine {
  return new Machine({
    ...(cfg.ramBase !== undefined ? { ramBase: cfg.ramBase } : {}),
    ...(cfg.ramSize !== undefined ? { ramSize: cfg.ramSize } : {}),
    smmu: smmuOptions(cfg),
    devices: cfg.devices.map((d) => ({
      name: d.name,
      sid: d.sid,
      ...(d.ssid !== undefined ? { ssid: d.ssid } : {}),
    })),
  });
}

/**
 * Boot the hypervisor the machine config asks for on `m`: its named policy, or `design` with the
 * machine's failure policy, weakened rules and ATS setting on top.
 */
export function bootHyp(m: Machine, cfg: MachineConfig, design?: HypPolicy): PkvmHyp {
  const policy = design
    ? produce(design, (d) => {
        if (cfg.failure) d.failure = cfg.failure;
        if (cfg.weaken?.length)
          d.weaken = new Set<RuleName>([...(cfg.weaken as RuleName[]), ...design.weaken]);
        if (cfg.allowAts !== undefined) d.allowAts = cfg.allowAts;
      })
    : makePolicy(cfg.policy ?? 'pkvm', {
        ...(cfg.failure ? { failure: cfg.failure } : {}),
        ...(cfg.weaken ? { weaken: cfg.weaken as RuleName[] } : {}),
        ...(cfg.allowAts !== undefined ? { allowAts: cfg.allowAts } : {}),
      });
  return new PkvmHyp(m, { policy, ...(cfg.hypMemory ? { hypMemory: cfg.hypMemory } : {}) }).boot();
}

/** Ops that only look (they still run after a hypervisor panic stopped the machine). */
const INSPECTION_OPS = new Set([
  'expectPanic',
  'expectViolation',
  'isolation',
  'expectEvent',
  'expectNoEvent',
  'expectSte',
  'expectTrace',
]);

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
    configCache: {
      steHits: s.strtab.hits,
      steMisses: s.strtab.misses,
      fetches: s.strtab.fetches,
      cdHits: s.cds.hits,
      cdMisses: s.cds.misses,
    },
    iotlb: {
      entries: s.tlb.size,
      inserts: s.tlb.inserts,
      invalidateCommands: s.tlb.inv.commands,
      entriesInvalidated: s.tlb.inv.invalidated,
    },
    streams: Object.fromEntries(
      [...s.translator.perStream]
        .sort(([a], [b]) => a - b)
        .map(([sid, st]) => [sid, { ...st, invalidated: s.tlb.invalidatedBySid.get(sid) ?? 0 }]),
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
  const mode: HypMode = opts.hyp ?? sc.machine.hyp;
  if (opts.policy && mode === 'none')
    throw new ScenarioError(sc.file, [
      `policy ${opts.policy.name}: a hypervisor policy needs a hypervisor run (hyp "pkvm" or "pkvm-v6"), not "none"`,
    ]);
  // the machine this run builds: the scenario's own configuration (left untouched, as every
  // other run of the same scenario reads it) with the hypervisor mode applied
  const cfg: MachineConfig = produce(sc.machine, (d) => {
    d.hyp = mode === 'none' ? 'none' : 'pkvm';
    if (mode === 'pkvm-v6') d.policy = 'pkvm-v6';
    if (mode === 'none')
      for (const k of ['policy', 'failure', 'weaken', 'allowAts'] as const) delete d[k];
  });
  let m: Machine;
  let hyp: PkvmHyp | null = null;
  try {
    m = buildMachine(cfg);
    if (cfg.hyp === 'pkvm') hyp = bootHyp(m, cfg, opts.policy);
  } catch (e) {
    throw new ScenarioError(sc.file, [`machine: ${(e as Error).message}`]);
  }
  opts.onMachine?.(m);
  const ctx = new RunContext(m);
  ctx.ptPool = sc.machine.ptPool;
  ctx.hyp = hyp;
  ctx.hypMode = mode;
  ctx.hypMemory = sc.machine.hypMemory ?? { ...HYP_MEMORY_DEFAULT };
  const wantIsolation = mode !== 'none' || sc.steps.some((s) => s.op === 'isolation');
  if (wantIsolation) oracleFor(ctx);
  if (sc.steps.some((s) => s.op === 'expectTrace')) {
    const trace: string[] = (ctx.trace = []);
    m.smmu.cmdq.probes.command.subscribe((c) => trace.push(`hw ${opcodeName(c.words[0]! & 0xff)}`));
  }
  let rec: TraceRecorder | null = null;
  if (opts.trace) {
    rec = attachTrace(m, hyp, { name: `${sc.name} [${mode}]` });
    opts.trace(rec);
  }
  const n = Math.min(sc.steps.length, opts.stopAfter ?? Infinity);
  let ran = 0;
  for (let i = 0; i < n; i++) {
    const st = sc.steps[i]!;
    if (st.when !== undefined && !st.when.includes(mode)) continue;
    ctx.stepIndex = i;
    ctx.op = st.op;
    if (ctx.panic && !INSPECTION_OPS.has(st.op)) {
      ctx.skipped++;
      continue;
    }
    ran++;
    const def = STEPS.get(st.op)!;
    ctx.trace?.push(`step ${i} ${st.op}${typeof st.call === 'string' ? ' ' + st.call : ''}: start`);
    rec?.stepStart(i, `step ${i} ${st.op}${typeof st.call === 'string' ? ' ' + st.call : ''}`);
    try {
      def.run(ctx, st);
      ctx.trace?.push(
        `step ${i} ${st.op}${typeof st.call === 'string' ? ' ' + st.call : ''}: done`,
      );
      rec?.stepEnd();
    } catch (e) {
      rec?.stepEnd(`${(e as Error).name}: ${(e as Error).message}`);
      if (e instanceof HypPanic || hyp?.panicked) {
        // the hypervisor stopped the machine; whether that was expected is decided at the end
        const p = hyp?.panicked ?? { rule: (e as HypPanic).rule, reason: (e as HypPanic).reason };
        ctx.panic ??= { step: i, ...p };
        continue;
      }
      // an exception inside a step is a failure of that step; the run goes on
      ctx.fail('step completes', `${(e as Error).name}: ${(e as Error).message}`);
      log.warn({ step: i, op: st.op, err: (e as Error).message }, 'step raised an exception');
    }
  }
  rec?.detach();
  if (ctx.panic && !ctx.panicExpected) {
    ctx.stepIndex = ctx.panic.step;
    ctx.op = sc.steps[ctx.panic.step]?.op ?? '';
    ctx.fail(
      'no hypervisor panic',
      `hyp panic [${ctx.panic.rule}]: ${ctx.panic.reason}`,
      'the hypervisor panicked and no expectPanic step expects it',
    );
  }
  return {
    scenario: sc.name,
    ok: ctx.failures.length === 0,
    steps: ran,
    failed: ctx.failures,
    events: [...m.smmu.evtq.log],
    stats: machineStats(m),
    ...(ctx.skipped ? { skipped: ctx.skipped } : {}),
    ...(mode !== 'none' || sc.variants.length > 1 ? { hypMode: mode } : {}),
    ...(hyp ? { hyp: hyp.hypStats() } : {}),
    ...(wantIsolation ? { isolation: isolationReport(ctx) } : {}),
    ...(hyp?.guestHistory.length
      ? { guests: hyp.guestHistory.map((g) => guestSummary(ctx, g)) }
      : {}),
    ...(ctx.translations.length ? { translations: ctx.translations } : {}),
    ...(ctx.teardowns.length ? { teardowns: ctx.teardowns } : {}),
  };
}

function guestSummary(ctx: RunContext, g: Guest): GuestSummary {
  const v = ctx.hyp?.vsmmus.get(g.name);
  return {
    name: g.name,
    vmid: g.vmid,
    traps: g.stats.traps,
    commands: g.stats.commands,
    eventsInjected: g.stats.eventsInjected,
    alive: ctx.hyp?.guests.get(g.name) === g,
    stats: { ...g.stats, virqs: { ...g.stats.virqs }, ...(v ? v.stats() : {}) },
  };
}

/** Run a scenario under each of its variants (hypervisors). */
export function runVariants(sc: Scenario, opts: RunOptions = {}): RunResult[] {
  const modes = opts.hyp ? [opts.hyp] : sc.variants;
  return modes.map((hyp) => runScenario(sc, { ...opts, hyp }));
}
