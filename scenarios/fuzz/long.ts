/**
 * `npm run fuzz:long`: the long fuzzing campaigns (tens of minutes, not CI-sized).
 *  1. isolation at scale: `--seeds` seeds (default 10) of at least `--operations` hostile
 *     operations each (default 10^6) for the host target, again with `--allow-ats`, and for the
 *     guest target; the default (hardened) policy must find nothing on any of them;
 *  2. every sanitizer rule switched off in turn, 50 000 iterations each (the first seed): which
 *     are found, how (the vSMMU's rules with the guest target, the others with the host target);
 *  3. `--policy pkvm-v6`: which of the v6-era gaps are rediscovered.
 * Options: --seeds N, --first-seed S, --operations N, --only scale|rules|v6 (repeatable), --workers W.
 * Reproducers go to fuzz-reproducers/long/. Exit 1 if a campaign of part 1 fails, a seed falls
 * short of its operations, or a rule is not found.
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { setLogLevel } from '../../hw/log.ts';
import { RULE_NAMES, V6_GAPS, type RuleName } from '../../hyp/policy/policy.ts';
import { fuzz } from './engine.ts';
import { fuzzParallel } from './parallel.ts';
import { writeReproducers } from './reproducer.ts';
import type { FuzzOptions } from './options.ts';
import { mergeResults, findingKey, type FuzzFinding, type FuzzResult } from './result.ts';
import { GUEST_RULES } from './target-guest.ts';

const { values: a } = parseArgs({
  options: {
    seeds: { type: 'string', default: '10' },
    'first-seed': { type: 'string', default: '1' },
    operations: { type: 'string', default: '1000000' },
    only: { type: 'string', multiple: true },
    workers: { type: 'string', default: String(Math.max(1, availableParallelism())) },
  },
});
const int = (name: string, v: string, min: number): number => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) {
    process.stderr.write(`fuzz:long: --${name} must be an integer of at least ${min}, got ${v}\n`);
    process.exit(2);
  }
  return n;
};
const seeds = int('seeds', a.seeds, 1);
const firstSeed = int('first-seed', a['first-seed'], 0);
const operations = int('operations', a.operations, 1);
const workers = int('workers', a.workers, 1);
const parts = new Set(a.only ?? ['scale', 'rules', 'v6']);
for (const p of parts)
  if (!['scale', 'rules', 'v6'].includes(p)) {
    process.stderr.write(`fuzz:long: --only ${p}: one of scale, rules, v6\n`);
    process.exit(2);
  }

setLogLevel('silent');
const out = 'fuzz-reproducers/long';
let bad = false;
const log = (s: string): void => {
  process.stdout.write(s + '\n');
};

// Iterations are what a campaign is made of (its episodes are what makes it deterministic and
// shardable), so a budget of operations becomes iterations from the target's measured mean of
// operations per iteration, with a margin; the achieved count is checked and reported.
const OPS_PER_ITERATION = { host: 2.1, guest: 3.1 } as const;

if (parts.has('scale')) {
  log(
    `== 1. isolation at scale: ${seeds} seeds from ${firstSeed}, at least ${operations} operations each, ${workers} worker(s), default policy`,
  );
  const campaigns: Array<{ label: string; o: Omit<FuzzOptions, 'seed'> }> = [
    { label: 'host', o: { target: 'host' } },
    { label: 'host --allow-ats', o: { target: 'host', allowAts: true } },
    { label: 'guest', o: { target: 'guest' } },
  ];
  for (const c of campaigns) {
    const iterations = Math.ceil(operations / OPS_PER_ITERATION[c.o.target!]);
    const results: FuzzResult[] = [];
    for (let seed = firstSeed; seed < firstSeed + seeds; seed++) {
      const r = await fuzzParallel(
        {
          ...c.o,
          seed,
          iterations,
          onProgress: (p) =>
            process.stderr.write(
              `\r  ${c.label} seed ${seed}: ${p.iterations} iterations, ${p.operations} operations\x1b[K`,
            ),
        },
        workers,
        'silent',
      );
      process.stderr.write('\r\x1b[K');
      await writeReproducers(r, `${out}/${c.label.replace(/[^a-z]+/g, '-')}-s${seed}`);
      const short = r.operations < operations;
      log(
        `  ${c.label.padEnd(17)} seed ${String(seed).padStart(3)}: ${r.iterations} iterations, ${r.operations} operations${short ? ' (SHORT)' : ''}, ${r.operationsPerSecond}/s; breaches ${r.breaches}, exceptions ${r.unexpectedExceptions}, invariants ${r.invariantViolations}, panics ${r.panics}`,
      );
      for (const f of r.findings)
        log(
          `    ${f.kind} ${f.signature} (iteration ${f.iteration}, ${f.minimalOperations} operations): ${f.reproducer}`,
        );
      if (short || r.breaches + r.unexpectedExceptions + r.invariantViolations > 0) bad = true;
      results.push(r);
    }
    // the counts add up as a campaign's shards do (the findings are listed per seed above)
    const t = mergeResults(
      { ...c.o, seed: firstSeed },
      results,
      results.reduce((a, r) => a + r.seconds, 0),
    );
    log(
      `  ${c.label.padEnd(17)} total: ${seeds} seeds, ${t.iterations} iterations, ${t.operations} operations in ${t.seconds.toFixed(0)} s; breaches ${t.breaches}, exceptions ${t.unexpectedExceptions}, invariants ${t.invariantViolations}, panics ${t.panics}`,
    );
  }
}

if (parts.has('rules')) {
  log(`\n== 2. each rule switched off: seed ${firstSeed}, up to 50000 iterations`);
  for (const rule of RULE_NAMES) {
    const mine = (f: FuzzFinding): boolean => f.needs.includes(rule);
    const target = (GUEST_RULES as readonly RuleName[]).includes(rule) ? 'guest' : 'host';
    const r = fuzz({
      seed: firstSeed,
      target,
      weaken: [rule],
      iterations: 50_000,
      maxReproducers: 30,
      shrinkBudget: 200,
      stopWhen: mine,
    });
    const f = r.findings.find(mine);
    if (f) {
      await writeReproducers({ ...r, findings: [f] }, `${out}/weaken-${rule}`);
      log(
        `  ${rule.padEnd(15)} (${target}) found at iteration ${f.iteration}: ${findingKey(f.signature, f.needs)}, ${f.minimalOperations} operations, replays: ${f.replay?.reproduces}`,
      );
    } else {
      log(`  ${rule.padEnd(15)} (${target}) NOT found in ${r.iterations} iterations`);
      bad = true;
    }
  }
}

if (parts.has('v6')) {
  log(`\n== 3. --policy pkvm-v6: seed ${firstSeed}, 20000 iterations`);
  const v6 = fuzz({
    seed: firstSeed,
    policy: 'pkvm-v6',
    iterations: 20_000,
    maxReproducers: 40,
    shrinkBudget: 100,
  });
  await writeReproducers(v6, `${out}/pkvm-v6`);
  const gaps = new Set(v6.findings.flatMap((f) => f.needs));
  for (const g of V6_GAPS)
    log(`  ${g.padEnd(12)} ${gaps.has(g) ? 'rediscovered' : 'NOT rediscovered'}`);
  for (const [k, v] of Object.entries(v6.failuresBySignature))
    log(`    ${String(v).padStart(5)}  ${k}`);
}

process.exitCode = bad ? 1 : 0;
