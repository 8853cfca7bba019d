/**
 * The fuzz benchmark entries of `npm run bench` (scenarios/bench/main.ts): a host campaign's
 * operations per second, in this thread at steady state or through the CLI with workers.
 */
import { spawnSync } from 'node:child_process';
import { fuzz } from './engine.ts';

/** Iterations of the campaigns the `fuzz.workers*` bench entries run through the CLI. */
export const BENCH_CLI_ITERATIONS = 200_000;

/**
 * `npm run bench` entries: operations per second of a campaign with the oracle on (the
 * default checks, no shrinking).
 *  - `fuzz` (`cli` false): in this thread, at steady state: 20,000 iterations of seed 1 after
 *    two 20,000-iteration campaigns (seeds 97 and 98) have warmed the JIT up. A fresh thread
 *    runs its first 20,000 iterations at about half that speed, and the next at about three
 *    quarters: TurboFan is still compiling (on a background thread) the several hundred
 *    functions a campaign makes hot.
 *  - `fuzz.workers<N>` (`cli` true): `smmulab fuzz --workers N` in a fresh process, a campaign
 *    of BENCH_CLI_ITERATIONS, timed by the campaign itself: the workers' start-up and every
 *    thread's JIT warm-up included.
 */
export function benchFuzz(
  workers = 1,
  cli = workers > 1,
): { name: string; opsPerSec: number; ops: number; seconds: number; note: string } {
  const what =
    '(machines of 1000 iterations), default policy, full oracle every 16 operations when the state changed and at the end of each machine, invariants after every operation; failures counted, not shrunk';
  if (!cli) {
    const iterations = 20_000;
    for (const seed of [97, 98]) fuzz({ seed, iterations, shrink: false, maxReproducers: 0 }); // warm up
    const r = fuzz({ seed: 1, iterations, shrink: false, maxReproducers: 0 });
    return {
      name: 'fuzz',
      opsPerSec: r.operationsPerSecond,
      ops: r.operations,
      seconds: +r.seconds.toFixed(3),
      note: `smmulab fuzz --seed 1 --iterations ${iterations} ${what}; 1 thread, at steady state (after ${iterations}-iteration campaigns of seeds 97 and 98 have warmed the JIT up)`,
    };
  }
  const iterations = BENCH_CLI_ITERATIONS;
  const bin = new URL('../bin/smmulab.mjs', import.meta.url).pathname;
  const out = spawnSync(
    process.execPath,
    [
      bin,
      'fuzz',
      '--seed',
      '1',
      '--iterations',
      String(iterations),
      '--workers',
      String(workers),
      '--json',
      '--no-shrink',
      '--max-reproducers',
      '0',
      '--log-level',
      'silent',
    ],
    { encoding: 'utf8' },
  );
  if (out.status !== 0 && out.status !== 1)
    throw new Error(`bench fuzz --workers ${workers}: exit ${out.status}: ${out.stderr}`);
  const r = JSON.parse(out.stdout) as {
    operationsPerSecond: number;
    operations: number;
    seconds: number;
  };
  const threads =
    workers > 1
      ? `the CLI's thread runs one shard and ${workers - 1} worker thread${workers > 2 ? 's' : ''} the others (start-up included)`
      : "in the CLI's thread";
  return {
    name: `fuzz.workers${workers}`,
    opsPerSec: r.operationsPerSecond,
    ops: r.operations,
    seconds: r.seconds,
    note: `smmulab fuzz --seed 1 --iterations ${iterations} --workers ${workers} ${what}; a fresh process: ${threads}, every thread's JIT warm-up included`,
  };
}
