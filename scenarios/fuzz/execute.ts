/**
 * One trial, the same for every target: build the machine from the plan (the target's trial),
 * run the prologue, hand the attacker its view, then the operations from `source` until it runs
 * dry, a failure is found or the hypervisor panics. Operations run as the scenario steps
 * themselves (so a reproducer replays exactly), and their `expect` is set to what happened, so
 * that a reproducer's only failing step is the one that shows the bug.
 */
import { CpuAbortError } from '../../hw/bus.ts';
import { HypPanic } from '../../hyp/policy/failure.ts';
import type { PkvmHyp } from '../../hyp/pkvm.ts';
import type { RunContext } from '../engine/context.ts';
import { STEPS } from '../steps/index.ts';
import { exceptionFound, isHypFrame, origin, normalize } from './origin.ts';
import type {
  Detected,
  ExecOptions,
  Execution,
  FuzzTarget,
  Operation,
  Plan,
  Step,
} from './target.ts';

/** What a trial's run() returns when the machine's run ended without a finding of its own (a panic with nothing found, an exception already recorded). */
export const ENDED = { ended: true } as const;
export type Ended = typeof ENDED;

/** What an operation whose step reported nothing reported (never written to). */
export const NO_REPORTS: RunContext['failures'] = [];

export function emptyExecution<Op, D extends Detected>(): Execution<Op, D> {
  return {
    executed: [],
    found: null,
    foundAt: -1,
    panic: null,
    commands: 0,
    opcodes: {},
    registers: {},
    kinds: {},
  };
}

/** A source that gives `ops` once. */
export function once<Op>(ops: readonly Op[]): () => Op[] | null {
  let given = false;
  return () => {
    if (given) return null;
    given = true;
    return ops as Op[];
  };
}

/**
 * Run a trial. The expected outcomes thrown while the machine runs (a host data abort, ...)
 * never carry a stack (hw/expected-error.ts), so they cost little; one that escapes as an
 * unexpected exception is told by its name and message.
 */
export function execute<
  P extends Plan,
  Op extends Operation,
  D extends Detected,
  V,
  R extends Execution<Op, D>,
>(
  t: FuzzTarget<P, Op, D, V, R>,
  plan: P,
  source: () => Op[] | null,
  eo: ExecOptions,
  onReady?: (view: V) => void,
): R {
  const res = emptyExecution<Op, D>() as R;
  const trial = t.trial(plan, eo, res);
  const { ctx, hyp } = trial;

  // ---- the prologue ------------------------------------------------------------------------
  for (let i = 0; i < plan.prologue.length; i++) {
    const st = plan.prologue[i]!;
    ctx.stepIndex = i;
    ctx.op = st.op;
    try {
      STEPS.get(st.op)!.run(ctx, st);
    } catch (e) {
      if (e instanceof HypPanic || hyp.panicked) {
        res.panic = hyp.panicked ?? { rule: (e as HypPanic).rule, reason: (e as HypPanic).reason };
        return res;
      }
      // a prologue the shrinker cut down too far (a map without its attach): not a candidate
      res.invalid = `prologue step ${i} (${st.op}): ${(e as Error).message}`;
      return res;
    }
    trial.afterPrologueStep();
  }
  if (ctx.failures.length) {
    res.invalid = `the prologue failed: ${JSON.stringify(ctx.failures)}`;
    return res;
  }
  trial.ready();
  if (onReady) onReady(trial.view());

  // ---- the hostile operations --------------------------------------------------------------
  for (;;) {
    let batch: Op[] | null;
    try {
      batch = source();
    } catch (e) {
      if (e instanceof HypPanic) break;
      // (the attacker's reads build their errors with stacks)
      const x = e as Error;
      res.found = {
        kind: 'exception',
        signature: `exception:${x.name}:${normalize(x.message)}`,
        detail: `${x.name}: ${x.message} (at ${origin(x)}, ${t.aiming})`,
      } as D;
      res.foundAt = res.executed.length - 1;
      return res;
    }
    if (batch === null) break;
    for (const op0 of batch) {
      const op = { ...op0 };
      const idx = res.executed.length;
      res.executed.push(op);
      ctx.stepIndex = plan.prologue.length + idx;
      ctx.op = op.op;
      const f = trial.run(op, idx);
      if (f === null) continue;
      if (f !== ENDED) res.found = f as D;
      res.foundAt = idx;
      return res;
    }
  }
  res.found = trial.finish(res.executed.length - 1);
  res.foundAt = res.executed.length - 1;
  return res;
}

/** Run one operation's step: what it threw, or null. */
export function runStep(ctx: RunContext, op: Operation): unknown {
  try {
    STEPS.get(op.op)!.run(ctx, op as unknown as Step);
  } catch (e) {
    return e;
  }
  return null;
}

/**
 * After a step that threw, or with the hypervisor panicked: 'panic' when it is a modeled
 * panic (res.panic set), 'own' when it is a data abort the acting side took (its own
 * business: the run goes on), else the unexpected exception found (res.found set).
 */
export function stepThrew<Op, D extends Detected>(
  res: Execution<Op, D>,
  hyp: PkvmHyp,
  thrown: unknown,
  ownAbort: (actor: string) => boolean,
  where: (e: Error) => string = () => '',
): 'panic' | 'own' | 'exception' {
  if (thrown instanceof HypPanic || hyp.panicked) {
    res.panic = hyp.panicked ?? {
      rule: (thrown as HypPanic).rule,
      reason: (thrown as HypPanic).reason,
    };
    return 'panic';
  }
  const e = thrown as Error;
  if (e instanceof CpuAbortError && ownAbort(e.actor)) return 'own';
  res.found = exceptionFound(e, where(e)) as D;
  return 'exception';
}

/** ", through hypervisor code" when a hypervisor frame is on the stack. */
export const throughHyp = (e: Error): string => (isHypFrame(e) ? ', through hypervisor code' : '');
