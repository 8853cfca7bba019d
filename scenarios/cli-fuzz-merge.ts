/**
 * Fuzzing campaigns across machines, with whatever scheduler runs them (GNU parallel, a
 * Kubernetes Indexed Job, a Slurm job array): `smmulab fuzz --shard K/N --json` runs shard K
 * of N of a campaign and prints a mergeable result; `smmulab fuzz merge a.json b.json …`
 * checks that the files are the shards 1/N … N/N of one campaign and prints what one unsharded
 * run of it prints, and writes its reproducers.
 *
 * A campaign is its episodes (scenarios/fuzz.ts): episode e is drawn from (seed, e) alone, so
 * shard K of N (1-based, as vitest's and Playwright's --shard) is the episodes whose index is
 * K−1 mod N, wherever it runs, and the shards merge (mergeResults, the merge --workers uses)
 * into the unsharded result. A mergeable result is the --json object of `smmulab fuzz`
 * (cli-fuzz.ts jsonResult) with `format`, `campaign` (the options that make the campaign what
 * it is), `shard` {k, n} and the findings' reproducer scenarios.
 */
import type { PolicyName, RuleName } from '../hyp/policy.ts';
import { FuzzInputError, type FailureChoice, type FuzzOptions } from './fuzz.ts';

/** The `format` of a mergeable `smmulab fuzz --json` result. */
export const RESULT_FORMAT = 'smmulab-fuzz-result/1';

/** What makes two runs parts of one campaign: every option that changes what a run finds or prints. */
export interface Campaign {
  seed: number;
  /** iterations of the whole campaign (null for a --time campaign) */
  iterations: number | null;
  /** --time in seconds (null for an --iterations campaign) */
  time: number | null;
  target: 'host' | 'guest';
  policy: PolicyName;
  weaken: RuleName[];
  failure: FailureChoice;
  allowAts: boolean;
  resetEvery: number;
  checkEvery: number;
  shrink: boolean;
  /** null: the fuzzer's default (the CLI has no option for it) */
  shrinkBudget: number | null;
  maxReproducers: number;
}

/** The campaign a run of these options belongs to (the fuzzer's defaults filled in). */
export function campaignOf(o: FuzzOptions): Campaign {
  return {
    seed: o.seed,
    iterations: o.timeSec !== undefined ? null : o.iterations ?? 2000,
    time: o.timeSec ?? null,
    target: o.target ?? 'host',
    policy: o.policy ?? 'pkvm',
    weaken: [...(o.weaken ?? [])],
    failure: o.failure ?? 'mixed',
    allowAts: o.allowAts ?? false,
    resetEvery: o.resetEvery ?? 1000,
    checkEvery: o.checkEvery ?? 16,
    shrink: o.shrink ?? true,
    shrinkBudget: o.shrinkBudget ?? null,
    maxReproducers: o.maxReproducers ?? 8,
  };
}

/** The options of an unsharded run of the campaign. */
export function campaignOptions(c: Campaign): FuzzOptions {
  return {
    seed: c.seed,
    ...(c.time !== null ? { timeSec: c.time } : { iterations: c.iterations ?? 2000 }),
    target: c.target,
    policy: c.policy,
    weaken: c.weaken,
    failure: c.failure,
    allowAts: c.allowAts,
    resetEvery: c.resetEvery,
    checkEvery: c.checkEvery,
    shrink: c.shrink,
    ...(c.shrinkBudget !== null ? { shrinkBudget: c.shrinkBudget } : {}),
    maxReproducers: c.maxReproducers,
  };
}

/** The `shard` of a result: shard k of n, 1-based (FuzzOptions.shard is 0-based). */
export function shardOf(o: FuzzOptions): { k: number; n: number } {
  return { k: (o.shard?.index ?? 0) + 1, n: o.shard?.count ?? 1 };
}

/**
 * `--shard K/N` (1-based: 1 ≤ K ≤ N) as FuzzOptions.shard (0-based: {index: K−1, count: N});
 * `timeBounded`: the campaign is a --time one, which has no shards.
 */
export function parseShard(v: unknown, timeBounded: boolean): { index: number; count: number } {
  if (Array.isArray(v)) throw new FuzzInputError(`--shard given ${v.length} times (${v.join(', ')}): give it once`);
  const s = String(v).trim();
  const m = /^(\d+)\/(\d+)$/.exec(s);
  if (!m) throw new FuzzInputError(`--shard ${s}: expected K/N, two integers (shard K of N, 1 ≤ K ≤ N), e.g. --shard 2/8`);
  const k = Number(m[1]);
  const n = Number(m[2]);
  if (!Number.isSafeInteger(n) || n < 1) throw new FuzzInputError(`--shard ${s}: N (the number of shards) must be at least 1`);
  if (!Number.isSafeInteger(k) || k < 1 || k > n) throw new FuzzInputError(`--shard ${s}: K must be from 1 to ${n} (shards are numbered from 1)`);
  if (timeBounded) throw new FuzzInputError(`--shard ${s} with --time: a time-bounded campaign runs as many iterations as each machine manages, so its shards do not make up one campaign; give --iterations instead`);
  return { index: k - 1, count: n };
}

/** Iterations shard `shard` (0-based) of an --iterations campaign runs: its episodes, the last one possibly short. */
export function shardIterations(iterations: number, resetEvery: number, shard: { index: number; count: number }): number {
  const episodes = Math.ceil(iterations / resetEvery);
  if (shard.index >= episodes) return 0;
  const mine = Math.floor((episodes - 1 - shard.index) / shard.count) + 1;
  const lastIsMine = (episodes - 1 - shard.index) % shard.count === 0;
  return mine * resetEvery - (lastIsMine ? episodes * resetEvery - iterations : 0);
}
