/**
 * What a fuzzing campaign is asked to do (`smmulab fuzz`), for either target: the options, and
 * their validation. The campaign itself is scenarios/fuzz/engine.ts.
 */
import {
  RULE_NAMES,
  isRule,
  type FailurePolicy,
  type RuleName,
  type PolicyName,
} from '../../hyp/policy/policy.ts';
import type { FuzzFinding, FuzzProgress } from './result.ts';

export type FailureChoice = FailurePolicy | 'mixed';

export interface FuzzOptions {
  seed: number;
  /** iterations (attacks) to run (default 2000); ignored when `timeSec` is given */
  iterations?: number;
  /** run for this many seconds instead of a fixed number of iterations */
  timeSec?: number;
  target?: 'host' | 'guest';
  policy?: PolicyName;
  weaken?: readonly RuleName[];
  /** the hypervisor's failure policy; 'mixed' draws one per machine (panic 5%, reject 50%, log 45%) */
  failure?: FailureChoice;
  allowAts?: boolean;
  /** iterations per machine, and per episode (default 1000) */
  resetEvery?: number;
  /** full oracle check every N operations when the state changed (default 16; always at the end) */
  checkEvery?: number;
  /** shrink failures (default true) */
  shrink?: boolean;
  /**
   * replays one shrink may spend (default SHRINK_BUDGET); a shrink that ends within it has a
   * 1-minimal reproducer (FuzzFinding.oneMinimal)
   */
  shrinkBudget?: number;
  /** distinct failures shrunk and kept (default 8) */
  maxReproducers?: number;
  /** stop after this many failures (single shard only; default: never) */
  stopAfterFindings?: number;
  /** stop once a kept finding satisfies this (single shard only) */
  stopWhen?: (f: FuzzFinding) => boolean;
  /** run only episodes index, index+count, ... */
  shard?: { index: number; count: number };
  /**
   * A stop flag: once element 0 is non-zero, the campaign stops before its next episode and
   * its result is marked `interrupted` (on a SharedArrayBuffer, worker threads see it too)
   */
  stop?: Int32Array;
  onProgress?: (p: FuzzProgress) => void;
}

export class FuzzInputError extends Error {}

export function validateOptions(o: FuzzOptions): void {
  if (!Number.isSafeInteger(o.seed) || o.seed < 0)
    throw new FuzzInputError(`--seed must be a non-negative integer, got ${o.seed}`);
  if (o.iterations !== undefined && (!Number.isSafeInteger(o.iterations) || o.iterations < 1))
    throw new FuzzInputError(`--iterations must be a positive integer, got ${o.iterations}`);
  if (o.timeSec !== undefined && !(o.timeSec > 0))
    throw new FuzzInputError(`--time must be a positive number of seconds, got ${o.timeSec}`);
  if (o.resetEvery !== undefined && (!Number.isSafeInteger(o.resetEvery) || o.resetEvery < 1))
    throw new FuzzInputError(`--reset-every must be a positive integer, got ${o.resetEvery}`);
  for (const w of o.weaken ?? [])
    if (!isRule(w))
      throw new FuzzInputError(`--weaken ${w}: no such rule (rules: ${RULE_NAMES.join(', ')})`);
  if (
    o.shard &&
    !(
      Number.isSafeInteger(o.shard.count) &&
      o.shard.count >= 1 &&
      Number.isSafeInteger(o.shard.index) &&
      o.shard.index >= 0 &&
      o.shard.index < o.shard.count
    )
  )
    throw new FuzzInputError(
      `shard: index ${o.shard.index} of ${o.shard.count} (0-based) is not a shard`,
    );
}

/** Whether a campaign's stop flag is up. */
export function stopRequested(o: FuzzOptions): boolean {
  return o.stop !== undefined && Atomics.load(o.stop, 0) !== 0;
}
