/**
 * The fuzz engine (`smmulab fuzz`): seeded campaigns of hostile operations against the
 * hypervisor, from the malicious host (target-host.ts) or the malicious guests
 * (target-guest.ts, `--target guest`), checked by the isolation oracle and the hypervisor's
 * own invariants, with every failure shrunk to a minimal ordinary scenario file that
 * `smmulab run` replays. What a target provides is scenarios/fuzz/target.ts; the rest is here
 * and in the files beside it: one trial (execute.ts), blame (blame.ts), shrinking (shrink.ts),
 * reproducers (reproducer.ts), workers (parallel.ts).
 *
 * Terms:
 *  - an *operation* is one hostile step: one MMIO access, one `cmd` step (commands written at
 *    CMDQ_PROD and one PROD write), one memory write, one ownership call, one DMA, or arming
 *    one race (a second CPU's write between two hypervisor reads);
 *  - an *iteration* is one attack: a single operation, or a short sequence of them (a
 *    template from the attack catalog, designs.md §7.1 and §7.2, with every value from the
 *    grammar, host/malicious/grammar.ts);
 *  - a *machine* is a fresh one, as the target's planner draws it; iterations run on it until
 *    `resetEvery` of them have run, or the hypervisor panicked, or a failure was found; then a
 *    fresh machine takes over;
 *  - an *episode* is `resetEvery` consecutive iterations, drawn from (seed, episode) alone, so
 *    campaigns shard over workers by episode and merge exactly.
 *
 * A failure is blamed on the weakened rules it needs, shrunk by delta debugging over its
 * machine's operations (chunks, then single operations, then simpler values), each candidate
 * replayed on a fresh machine, and written as a scenario that fails where the failure shows:
 * replaying the file fails that step, and passes once the hypervisor is fixed.
 */
import { Rng } from '../../host/malicious/grammar.ts';
import type { RuleName } from '../../hyp/policy/policy.ts';
import { HOST_TARGET } from './target-host.ts';
import { GUEST_TARGET } from './target-guest.ts';
import { execute } from './execute.ts';
import { blame, replayOps, type AnyTarget } from './blame.ts';
import { opKind, SHRINK_BUDGET, shrinkFailure, type ShrunkFailure } from './shrink.ts';
import { validateOptions, stopRequested, type FuzzOptions } from './options.ts';
import {
  emptyResult,
  findingKey,
  mergeCoverage,
  type FuzzFinding,
  type FuzzResult,
} from './result.ts';
import { normalize } from './origin.ts';
import { replayScenario } from './reproducer.ts';
import type { Detected, Execution, Operation, Plan } from './target.ts';
import type { HostileOp } from '../../host/malicious/attacker.ts';
import type { GuestOp } from '../../guest/malicious/attacker.ts';

/** The target a campaign's options name. */
export function targetOf(o: FuzzOptions): AnyTarget {
  return (o.target === 'guest' ? GUEST_TARGET : HOST_TARGET) as unknown as AnyTarget;
}

// ---- one episode -----------------------------------------------------------------------------

interface MachineRun {
  plan: Plan;
  exec: Execution<Operation, Detected>;
  /** iterations run on this machine, and the last one */
  iterations: number;
  lastIteration: number;
}

/**
 * Episode `e`: iterations [eK, (e+1)K) (bounded by `limit`) on fresh machines, one random
 * stream drawn from (seed, e). Each machine's run is handed to `onRun`; returning true stops.
 */
function runEpisode(
  t: AnyTarget,
  o: FuzzOptions,
  e: number,
  limit: number,
  onRun: (r: MachineRun) => boolean,
): boolean {
  const K = o.resetEvery ?? 1000;
  const rng = new Rng(o.seed, e);
  const last = Math.min((e + 1) * K, limit);
  let next = e * K;
  while (next < last) {
    const start = next;
    const plan = t.plan(o, e, start, rng);
    let attacker: { next(): Operation[] } | null = null;
    const exec = execute(
      t,
      plan,
      () => {
        if (next >= last || !attacker) return null;
        next++;
        return attacker.next();
      },
      { checkEvery: o.checkEvery ?? 16, coverage: true },
      (view) => {
        attacker = t.attacker(rng, plan, view);
      },
    );
    if (next === start) next++; // the machine stopped before its first iteration: do not loop
    if (onRun({ plan, exec, iterations: next - start, lastIteration: next - 1 })) return true;
    if (!exec.found && !exec.panic) break;
  }
  return false;
}

/** The operations a campaign's first `iterations` iterations execute (for tests of the grammar). */
export function sampleOperations(
  o: FuzzOptions & { target: 'guest' },
  iterations: number,
): GuestOp[];
export function sampleOperations(o: FuzzOptions, iterations: number): HostileOp[];
export function sampleOperations(o: FuzzOptions, iterations: number): Operation[] {
  const t = targetOf(o);
  const out: Operation[] = [];
  const K = o.resetEvery ?? 1000;
  for (let e = 0; e * K < iterations; e++) {
    runEpisode(t, { ...o, resetEvery: K }, e, iterations, (run) => {
      out.push(...run.exec.executed);
      return false;
    });
  }
  return out;
}

// ---- shrinking -------------------------------------------------------------------------------

export type Shrunk = ShrunkFailure<Plan, Operation, Execution<Operation, Detected>>;

/**
 * Shrink a failure (scenarios/fuzz/shrink.ts `shrinkFailure`): chunks of operations then single
 * ones, to a 1-minimal list; simpler values (fewer commands in a cmd step, zeroed words in a
 * memory write) and the prologue (the steps the target lets go), and single operations again
 * when either changed anything. A candidate is kept when a fresh replay of it fails with the
 * same signature; the result must pass with the rules in `needs` restored. At most `budget`
 * replays in all.
 */
export function shrink(
  t: AnyTarget,
  plan0: Plan,
  ops0: readonly Operation[],
  signature: string,
  budget: number,
  needs: readonly RuleName[] = [],
): Shrunk {
  return shrinkFailure<Plan, Operation, Execution<Operation, Detected>>(
    {
      replay: (p, ops) => replayOps(t, p, ops),
      signature: (r) => r.found?.signature,
      failed: (r) => r.executed.slice(0, r.foundAt + 1),
      restored: (p) =>
        needs.length
          ? t.withWeaken(
              p,
              p.weaken.filter((w) => !needs.includes(w)),
            )
          : null,
      dropStep: (p, i) => t.dropStep(p, i),
      kindOf: opKind,
      prologueLength: (p) => p.prologue.length,
      ...t.shrink,
    },
    plan0,
    ops0,
    signature,
    budget,
  );
}

// ---- a finding -------------------------------------------------------------------------------

function makeFinding(
  t: AnyTarget,
  o: FuzzOptions,
  plan: Plan,
  exec: Execution<Operation, Detected>,
  f: Detected,
  needs: RuleName[],
  iteration: number,
): FuzzFinding {
  const finding: FuzzFinding = {
    kind: f.kind,
    signature: f.signature,
    detail: f.detail,
    iteration,
    operations: exec.foundAt + 1,
    policy: plan.machine.policy ?? 'pkvm',
    failure: plan.failure,
    weaken: plan.weaken,
    raw: plan.raw,
    needs,
    key: findingKey(f.signature, needs),
  };
  const original = exec.foundAt + 1;
  let sPlan = plan;
  let ops = exec.executed.slice(0, exec.foundAt + 1);
  let found = f;
  let panic = exec.panic;
  if (o.shrink ?? true) {
    const s = shrink(t, plan, ops, f.signature, o.shrinkBudget ?? SHRINK_BUDGET, needs);
    sPlan = s.plan;
    ops = s.ops;
    if (s.exec) {
      found = s.exec.found ?? f;
      panic = s.exec.panic;
    } else finding.detail += ' (did not reproduce from its operations alone: not shrunk)';
    finding.shrinkRuns = s.runs;
    finding.oneMinimal = s.oneMinimal;
    if (needs.length) finding.needs = blame(t, sPlan, ops, f.signature);
  }
  finding.minimalOperations = ops.length;
  finding.scenario = t.scenario({
    o,
    plan: sPlan,
    ops,
    found,
    panic,
    needs: finding.needs,
    original,
    iteration,
  });
  try {
    const { r, failures } = replayScenario(finding.scenario);
    const lastOp = sPlan.prologue.length + ops.length - 1;
    finding.replay = { reproduces: t.reproduces(r, f.signature, found, lastOp), failures };
  } catch (e) {
    finding.replay = {
      reproduces: false,
      failures: [`the reproducer does not load or run: ${(e as Error).message}`],
    };
  }
  return finding;
}

// ---- a campaign (one shard) ------------------------------------------------------------------

/**
 * Run a campaign (or one shard of it) in this thread. Iterations run in index order; every
 * distinct failure (findingKey) is shrunk once (its first iteration), up to `maxReproducers`.
 */
export function fuzz(o: FuzzOptions): FuzzResult {
  const g = campaign(o);
  for (;;) {
    const s = g.next();
    if (s.done) return s.value;
  }
}

/**
 * Run a campaign in this thread in slices of about `sliceMs` (whole episodes), awaiting
 * `setImmediate` between them: signal handlers, timers and worker messages run meanwhile, and
 * a stop flag raised by them ends the campaign at the next episode.
 */
export async function fuzzSliced(o: FuzzOptions, sliceMs = 50): Promise<FuzzResult> {
  const g = campaign(o);
  let t = performance.now();
  for (;;) {
    const s = g.next();
    if (s.done) return s.value;
    if (performance.now() - t >= sliceMs) {
      await new Promise<void>((r) => setImmediate(r));
      t = performance.now();
    }
  }
}

/**
 * A campaign (or one shard of it) that yields after each episode: `fuzz()` runs it to the end
 * at once, `fuzzSliced()` lets the event loop run between slices of it.
 */
export function* campaign(o: FuzzOptions): Generator<void, FuzzResult, void> {
  validateOptions(o);
  const t = targetOf(o);
  const t0 = performance.now();
  const shard = o.shard ?? { index: 0, count: 1 };
  const K = o.resetEvery ?? 1000;
  const limit = o.timeSec !== undefined ? Infinity : (o.iterations ?? 2000);
  const deadline = o.timeSec !== undefined ? t0 + o.timeSec * 1000 : Infinity;
  const res = emptyResult(o, t.name);
  let lastProgress = t0;
  let failing = 0;
  const onRun = (run: MachineRun): boolean => {
    const { plan, exec } = run;
    res.machines++;
    res.iterations += run.iterations;
    res.operations += exec.executed.length;
    res.commands += exec.commands;
    mergeCoverage(res.coverage, {
      opcodes: exec.opcodes,
      registers: exec.registers,
      operations: exec.kinds,
    });
    const f = exec.found;
    let stop = false;
    if (exec.invalid && t.prologueFailures) {
      // a prologue that failed on a fresh machine is a bug of its own
      failing++;
      res.unexpectedExceptions++;
      const key = `exception:prologue:${normalize(exec.invalid)}`;
      res.failuresBySignature[key] = (res.failuresBySignature[key] ?? 0) + 1;
    } else if (f) {
      failing++;
      if (f.kind === 'breach') res.breaches++;
      else if (f.kind === 'exception') res.unexpectedExceptions++;
      else res.invariantViolations++;
      const needs = blame(t, plan, exec.executed.slice(0, exec.foundAt + 1), f.signature);
      const key = findingKey(f.signature, needs);
      res.failuresBySignature[key] = (res.failuresBySignature[key] ?? 0) + 1;
      if (
        !res.findings.some((x) => x.key === key) &&
        res.findings.length < (o.maxReproducers ?? 8)
      ) {
        const finding = makeFinding(t, o, plan, exec, f, needs, run.lastIteration);
        res.findings.push(finding);
        if (o.stopWhen?.(finding)) stop = true;
      }
    } else if (exec.panic) {
      res.panics++;
      res.panicsByRule[exec.panic.rule] = (res.panicsByRule[exec.panic.rule] ?? 0) + 1;
    }
    const now = performance.now();
    if (o.onProgress && now - lastProgress > 500) {
      lastProgress = now;
      o.onProgress({
        iterations: res.iterations,
        operations: res.operations,
        findings: failing,
        panics: res.panics,
        seconds: (now - t0) / 1000,
      });
    }
    return stop || (o.stopAfterFindings !== undefined && failing >= o.stopAfterFindings);
  };
  for (let e = shard.index; e * K < limit; e += shard.count) {
    if (performance.now() >= deadline) break;
    if (stopRequested(o)) {
      res.interrupted = true;
      break;
    }
    if (runEpisode(t, o, e, limit, onRun)) break;
    yield;
  }
  res.seconds = (performance.now() - t0) / 1000;
  res.operationsPerSecond = Math.round(res.operations / Math.max(res.seconds, 1e-9));
  return res;
}
