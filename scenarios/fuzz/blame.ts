/**
 * Blame, for either target: which of the weakened rules a failure needs. A replay of a
 * machine's operations is exact, so restoring a rule and replaying the same operations says
 * whether the failure rests on it.
 */
import type { RuleName } from '../../hyp/policy/policy.ts';
import { execute, once } from './execute.ts';
import type { Detected, Execution, FuzzTarget, Operation, Plan } from './target.ts';

/** A base target: the engine's view of either of them. */
export type AnyTarget = FuzzTarget<Plan, Operation, Detected, unknown>;

/** Replay a fixed list of operations on a fresh machine (a shrink candidate, a blame test). */
export function replayOps(
  t: AnyTarget,
  plan: Plan,
  ops: readonly Operation[],
  keep = false,
): Execution<Operation, Detected> {
  return execute(t, plan, once(ops), {
    checkEvery: Number.MAX_SAFE_INTEGER,
    coverage: false,
    ...(keep ? { keep } : {}),
  });
}

/**
 * Which weakened rules the failure needs: those whose restoration (one at a time) makes a
 * replay of the same operations pass. Empty when nothing is weakened, or when the failure
 * happens with every weakened rule restored too (a bug of the hypervisor itself).
 */
export function blame(
  t: AnyTarget,
  plan: Plan,
  ops: readonly Operation[],
  signature: string,
): RuleName[] {
  if (!plan.weaken.length) return [];
  if (replayOps(t, t.withWeaken(plan, []), ops).found?.signature === signature) return [];
  if (plan.weaken.length === 1) return [...plan.weaken];
  const needs = plan.weaken.filter(
    (r) =>
      replayOps(
        t,
        t.withWeaken(
          plan,
          plan.weaken.filter((w) => w !== r),
        ),
        ops,
      ).found?.signature !== signature,
  );
  return needs.length ? needs : [...plan.weaken];
}
