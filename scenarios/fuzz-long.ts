/**
 * `npm run fuzz:long`: the long fuzzing campaign (minutes, not CI-sized).
 *  1. the default policy: `--iterations` attacks (default 200 000) over all cores; must find nothing;
 *  2. every sanitizer rule switched off in turn, 50 000 iterations each (seed 1): which are found, how
 *     (the vSMMU's rules with the guest target, the others with the host target);
 *  3. `--policy pkvm-v6`: which of the v6-era gaps are rediscovered.
 * Reproducers go to fuzz-reproducers/long/. Exit 1 if the default policy fails or a rule is not
 * found. Arguments: [iterations] [seed].
 */
import { availableParallelism } from 'node:os';
import { setLogLevel } from '../hw/log.ts';
import { RULE_NAMES, type RuleName } from '../hyp/policy.ts';
import { fuzz, fuzzParallel, writeReproducers, findingKey, V6_RULES, type FuzzFinding } from './fuzz.ts';
import { GUEST_RULES } from './fuzz-guest.ts';

setLogLevel('silent');
const iterations = Number(process.argv[2] ?? 200_000);
const seed = Number(process.argv[3] ?? 1);
const workers = Math.max(1, availableParallelism());
const out = 'fuzz-reproducers/long';
let bad = false;
const log = (s: string): void => {
  process.stdout.write(s + '\n');
};

log(`== 1. default policy: seed ${seed}, ${iterations} iterations, ${workers} worker(s)`);
const base = await fuzzParallel({ seed, iterations, onProgress: (p) => process.stderr.write(`\r  ${p.iterations} iterations, ${p.operations} operations\x1b[K`) }, workers, 'silent');
process.stderr.write('\n');
await writeReproducers(base, `${out}/default`);
log(`  ${base.iterations} iterations, ${base.operations} operations, ${base.operationsPerSecond}/s; breaches ${base.breaches}, exceptions ${base.unexpectedExceptions}, invariants ${base.invariantViolations}, panics ${base.panics}`);
for (const f of base.findings) log(`  ${f.kind} ${f.signature} (iteration ${f.iteration}, ${f.minimalOperations} operations): ${f.reproducer}`);
if (base.breaches + base.unexpectedExceptions + base.invariantViolations > 0) bad = true;

log(`\n== 2. each rule switched off: seed ${seed}, up to 50000 iterations`);
for (const rule of RULE_NAMES) {
  const mine = (f: FuzzFinding): boolean => f.needs.includes(rule);
  const target = (GUEST_RULES as readonly RuleName[]).includes(rule) ? 'guest' : 'host';
  const r = fuzz({ seed, target, weaken: [rule], iterations: 50_000, maxReproducers: 30, shrinkBudget: 200, stopWhen: mine });
  const f = r.findings.find(mine);
  if (f) {
    await writeReproducers({ ...r, findings: [f] }, `${out}/weaken-${rule}`);
    log(`  ${rule.padEnd(15)} (${target}) found at iteration ${f.iteration}: ${findingKey(f.signature, f.needs)}, ${f.minimalOperations} operations, replays: ${f.replay?.reproduces}`);
  } else {
    log(`  ${rule.padEnd(15)} (${target}) NOT found in ${r.iterations} iterations`);
    bad = true;
  }
}

log(`\n== 3. --policy pkvm-v6: seed ${seed}, 20000 iterations`);
const v6 = fuzz({ seed, policy: 'pkvm-v6', iterations: 20_000, maxReproducers: 40, shrinkBudget: 100 });
await writeReproducers(v6, `${out}/pkvm-v6`);
const gaps = new Set(v6.findings.flatMap((f) => f.needs));
for (const g of V6_RULES) log(`  ${g.padEnd(12)} ${gaps.has(g) ? 'rediscovered' : 'NOT rediscovered'}`);
for (const [k, v] of Object.entries(v6.failuresBySignature)) log(`    ${String(v).padStart(5)}  ${k}`);

process.exitCode = bad ? 1 : 0;
