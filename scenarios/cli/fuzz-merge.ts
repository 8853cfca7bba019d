/**
 * Fuzzing campaigns across machines, with whatever scheduler runs them (GNU parallel, a
 * Kubernetes Indexed Job, a Slurm job array): `smmulab fuzz --shard K/N --json` runs shard K
 * of N of a campaign and prints a mergeable result; `smmulab fuzz merge a.json b.json …`
 * checks that the files are the shards 1/N … N/N of one campaign and prints what one unsharded
 * run of it prints, and writes its reproducers.
 *
 * A campaign is its episodes (scenarios/fuzz/engine.ts): episode e is drawn from (seed, e) alone, so
 * shard K of N (1-based, as vitest's and Playwright's --shard) is the episodes whose index is
 * K−1 mod N, wherever it runs, and the shards merge (mergeResults, the merge --workers uses)
 * into the unsharded result. A mergeable result is the --json object of `smmulab fuzz`
 * (cli-fuzz.ts jsonResult) with `format`, `campaign` (the options that make the campaign what
 * it is), `shard` {k, n} and the findings' reproducer scenarios.
 */
import type { CommandModule } from 'yargs';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { POLICY_NAMES, isRule, type PolicyName, type RuleName } from '../../hyp/policy/policy.ts';
import { writeReproducers } from '../fuzz/reproducer.ts';
import { FuzzInputError, type FailureChoice, type FuzzOptions } from '../fuzz/options.ts';
import { mergeResults, type FuzzFinding, type FuzzResult } from '../fuzz/result.ts';
import { exitWith } from './status.ts';
import { cliIo } from './io.ts';
import { unwritableDir } from './out-path.ts';

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
    iterations: o.timeSec !== undefined ? null : (o.iterations ?? 2000),
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
  if (Array.isArray(v))
    throw new FuzzInputError(`--shard given ${v.length} times (${v.join(', ')}): give it once`);
  const s = String(v).trim();
  const m = /^(\d+)\/(\d+)$/.exec(s);
  if (!m)
    throw new FuzzInputError(
      `--shard ${s}: expected K/N, two integers (shard K of N, 1 ≤ K ≤ N), e.g. --shard 2/8`,
    );
  const k = Number(m[1]);
  const n = Number(m[2]);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new FuzzInputError(`--shard ${s}: N (the number of shards) must be at least 1`);
  if (!Number.isSafeInteger(k) || k < 1 || k > n)
    throw new FuzzInputError(`--shard ${s}: K must be from 1 to ${n} (shards are numbered from 1)`);
  if (timeBounded)
    throw new FuzzInputError(
      `--shard ${s} with --time: a time-bounded campaign runs as many iterations as each machine manages, so its shards do not make up one campaign; give --iterations instead`,
    );
  return { index: k - 1, count: n };
}

/** Iterations shard `shard` (0-based) of an --iterations campaign runs: its episodes, the last one possibly short. */
export function shardIterations(
  iterations: number,
  resetEvery: number,
  shard: { index: number; count: number },
): number {
  const episodes = Math.ceil(iterations / resetEvery);
  if (shard.index >= episodes) return 0;
  const mine = Math.floor((episodes - 1 - shard.index) / shard.count) + 1;
  const lastIsMine = (episodes - 1 - shard.index) % shard.count === 0;
  return mine * resetEvery - (lastIsMine ? episodes * resetEvery - iterations : 0);
}

// ---- reading a result ------------------------------------------------------------------------

const count = z.number().int().nonnegative();
const counts = z.record(z.string(), count);
const rules = z.array(z.string().refine(isRule, { message: 'not a rule' }));

const CampaignSchema = z.strictObject({
  seed: count,
  iterations: z.number().int().positive().nullable(),
  time: z.number().positive().nullable(),
  target: z.enum(['host', 'guest']),
  policy: z.enum(POLICY_NAMES),
  weaken: rules,
  failure: z.enum(['mixed', 'panic', 'reject', 'log']),
  allowAts: z.boolean(),
  resetEvery: z.number().int().positive(),
  checkEvery: z.number().int().positive(),
  shrink: z.boolean(),
  shrinkBudget: count.nullable(),
  maxReproducers: count,
});

const ResultSchema = z.object({
  format: z.literal(RESULT_FORMAT),
  campaign: CampaignSchema,
  shard: z
    .object({ k: z.number().int().positive(), n: z.number().int().positive() })
    .refine((s) => s.k <= s.n, { message: 'k must not exceed n' }),
  seed: count,
  iterations: count,
  operations: count,
  commands: count,
  breaches: count,
  unexpectedExceptions: count,
  invariantViolations: count,
  panics: count,
  operationsPerSecond: z.number().nonnegative(),
  seconds: z.number().nonnegative(),
  target: z.enum(['host', 'guest']),
  policy: z.enum(POLICY_NAMES),
  weaken: rules,
  failure: z.enum(['mixed', 'panic', 'reject', 'log']),
  resetEvery: z.number().int().positive(),
  machines: count,
  workers: z.number().int().positive(),
  panicsByRule: counts,
  failuresBySignature: counts,
  coverage: z.object({
    opcodes: counts,
    registers: z.record(z.string(), z.object({ read: count, write: count })),
    operations: counts,
  }),
  reproducers: z.array(z.string()),
  findings: z.array(
    z.looseObject({
      kind: z.enum(['breach', 'exception', 'invariant']),
      signature: z.string(),
      needs: rules,
      key: z.string(),
      iteration: count,
      scenario: z.record(z.string(), z.unknown()),
    }),
  ),
});

type ResultJson = z.infer<typeof ResultSchema>;

/** One shard's result, read from its file. */
export interface ShardResult {
  file: string;
  campaign: Campaign;
  shard: { k: number; n: number };
  result: FuzzResult;
}

/** Read and check one `smmulab fuzz --json` result; a FuzzInputError names the file and what is wrong. */
export function readShardResult(file: string): ShardResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new FuzzInputError(`${file}: cannot read it (${(e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new FuzzInputError(`${file}: not JSON (${(e as Error).message})`);
  }
  return checkShardResult(file, raw);
}

/** Check a parsed result (`file` names it in errors). */
export function checkShardResult(file: string, raw: unknown): ShardResult {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new FuzzInputError(`${file}: not a smmulab fuzz --json result (not a JSON object)`);
  const obj = raw as Record<string, unknown>;
  if (!('format' in obj)) {
    if ('coverage' in obj && 'seed' in obj)
      throw new FuzzInputError(
        `${file}: a smmulab fuzz --json result without "format" and "campaign" (written before \`smmulab fuzz merge\` existed?): run the shard again`,
      );
    throw new FuzzInputError(
      `${file}: not a smmulab fuzz --json result (no "format": "${RESULT_FORMAT}")`,
    );
  }
  if (obj.format !== RESULT_FORMAT)
    throw new FuzzInputError(
      `${file}: "format" is ${JSON.stringify(obj.format)}; this smmulab reads "${RESULT_FORMAT}"`,
    );
  const parsed = ResultSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 3)
      .map((i) => `${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`);
    const more =
      parsed.error.issues.length > 3 ? ` (and ${parsed.error.issues.length - 3} more)` : '';
    throw new FuzzInputError(
      `${file}: not a valid smmulab fuzz result: ${issues.join('; ')}${more}`,
    );
  }
  const j: ResultJson = parsed.data;
  const c = j.campaign as Campaign;
  for (const k of ['seed', 'target', 'policy', 'weaken', 'failure', 'resetEvery'] as const) {
    if (JSON.stringify(j[k]) !== JSON.stringify(c[k]))
      throw new FuzzInputError(
        `${file}: its ${k} (${JSON.stringify(j[k])}) is not its campaign's (${JSON.stringify(c[k])})`,
      );
  }
  if (c.time !== null && j.shard.n > 1)
    throw new FuzzInputError(
      `${file}: shard ${j.shard.k}/${j.shard.n} of a --time campaign, which has no shards`,
    );
  if (c.iterations !== null) {
    const want = shardIterations(c.iterations, c.resetEvery, {
      index: j.shard.k - 1,
      count: j.shard.n,
    });
    if (j.iterations !== want)
      throw new FuzzInputError(
        `${file}: shard ${j.shard.k}/${j.shard.n} ran ${j.iterations} iterations, but that shard of a ${c.iterations}-iteration campaign has ${want} (an interrupted or edited run?)`,
      );
  }
  const result: FuzzResult = {
    seed: j.seed,
    iterations: j.iterations,
    operations: j.operations,
    commands: j.commands,
    machines: j.machines,
    breaches: j.breaches,
    unexpectedExceptions: j.unexpectedExceptions,
    invariantViolations: j.invariantViolations,
    panics: j.panics,
    operationsPerSecond: j.operationsPerSecond,
    seconds: j.seconds,
    target: j.target,
    policy: j.policy,
    weaken: j.weaken as RuleName[],
    failure: j.failure,
    resetEvery: j.resetEvery,
    workers: j.workers,
    panicsByRule: j.panicsByRule,
    failuresBySignature: j.failuresBySignature,
    coverage: j.coverage,
    // the findings as written (zod's copy may order their fields differently)
    findings: obj.findings as FuzzFinding[],
    reproducers: j.reproducers,
  };
  return { file, campaign: c, shard: j.shard, result };
}

// ---- merging ---------------------------------------------------------------------------------

/**
 * Merge the results of shards 1/N … N/N of one campaign (in any order) with mergeResults, the
 * merge `--workers` uses: the counts, coverage, panics and failures add up, the findings are
 * the campaign's first `maxReproducers` distinct ones. `seconds` is the sum of the shards'
 * (each shard's wall time: the time the campaign took on one machine, whatever ran when), so
 * `operationsPerSecond` is per shard-second; `workers` is the sum of the shards' (a run of N
 * shards with --workers W each is the campaign split as one run with --workers N·W splits it).
 */
export function mergeShards(shards: readonly ShardResult[]): {
  result: FuzzResult;
  options: FuzzOptions;
} {
  if (!shards.length) throw new FuzzInputError('no results to merge');
  const first = shards[0]!;
  for (const s of shards.slice(1)) {
    const diff = (Object.keys(first.campaign) as Array<keyof Campaign>).filter(
      (k) => JSON.stringify(s.campaign[k]) !== JSON.stringify(first.campaign[k]),
    );
    if (diff.length) {
      const what = diff
        .map(
          (k) =>
            `${k} ${JSON.stringify(s.campaign[k])} there, ${JSON.stringify(first.campaign[k])} here`,
        )
        .join('; ');
      throw new FuzzInputError(`${s.file}: not the same campaign as ${first.file} (${what})`);
    }
  }
  const n = first.shard.n;
  const other = shards.find((s) => s.shard.n !== n);
  if (other)
    throw new FuzzInputError(
      `${other.file} is shard ${other.shard.k}/${other.shard.n} but ${first.file} is shard ${first.shard.k}/${n}: the shards of a campaign are 1/N to N/N of one N`,
    );
  const byK = new Map<number, ShardResult>();
  for (const s of shards) {
    const seen = byK.get(s.shard.k);
    if (seen)
      throw new FuzzInputError(
        seen.file === s.file
          ? `${s.file} is given twice`
          : `${seen.file} and ${s.file} are both shard ${s.shard.k}/${n}: give each shard once`,
      );
    byK.set(s.shard.k, s);
  }
  const missing: number[] = [];
  for (let k = 1; k <= n; k++) if (!byK.has(k)) missing.push(k);
  if (missing.length) {
    const shown =
      missing.length > 10
        ? `${missing
            .slice(0, 10)
            .map((k) => `${k}/${n}`)
            .join(', ')} and ${missing.length - 10} more`
        : missing.map((k) => `${k}/${n}`).join(', ');
    throw new FuzzInputError(
      `shard${missing.length > 1 ? 's' : ''} ${shown} of the campaign ${missing.length > 1 ? 'are' : 'is'} missing (${shards.length} of ${n} given)`,
    );
  }
  const options = campaignOptions(first.campaign);
  const parts = [...byK.entries()].sort(([a], [b]) => a - b).map(([, s]) => s.result);
  const result = mergeResults(
    options,
    parts,
    parts.reduce((t, p) => t + p.seconds, 0),
  );
  result.workers = parts.reduce((t, p) => t + p.workers, 0);
  return { result, options };
}

// ---- the command -----------------------------------------------------------------------------

interface MergeArgs {
  files: string[];
  out: string;
  json: boolean;
}

/** How `smmulab fuzz` prints a result (cli-fuzz.ts), so that a merge prints what a run prints. */
export interface ResultPrinters {
  summary(r: FuzzResult, o: FuzzOptions): string;
  json(r: FuzzResult, o: FuzzOptions): Record<string, unknown>;
}

const MERGE_EPILOG = `Each file is the --json output of one shard, smmulab fuzz --shard K/N --json,
all of one --seed and options (K from 1 to N, each once; an unsharded run's
--json is shard 1/1). The merge prints what one unsharded run of the campaign
prints (its summary, or with --json its JSON object, which is shard 1/1 again)
and writes the reproducers of the findings to --out as that run does.

Timings: seconds is the sum of the shards' seconds (so operations/s is per
shard-second), workers the sum of the shards' workers (N shards of --workers W
split the campaign as one run with --workers N*W does).

Exit 0: nothing found; 1: a breach, an unexpected exception or a broken
invariant; 2: a file that cannot be read or is not a fuzz result, results of
different campaigns, a shard missing or given twice, an --out that cannot be
written (nothing is written then; --out is checked before anything is), or
reproducers that could not be written after all (the result is printed all
the same).`;

export function fuzzMergeCommand(print: ResultPrinters): CommandModule<object, MergeArgs> {
  return {
    command: 'merge <files..>',
    describe:
      'merge the --json results of shards 1/N … N/N of one campaign (smmulab fuzz --shard K/N --json) into what one unsharded run prints; writes its reproducers',
    builder: (y) =>
      y
        .positional('files', {
          type: 'string',
          array: true,
          demandOption: true,
          describe: "the shards' --json results, in any order",
        })
        .option('out', {
          type: 'string',
          default: 'fuzz-reproducers',
          describe: "folder for the merged findings' reproducer scenario files",
        })
        .option('json', {
          type: 'boolean',
          default: false,
          describe: 'print the merged result as one JSON object (the --json of an unsharded run)',
        })
        // (yargs keeps the first key of the parent's .conflicts('iterations', 'time') known
        // here although it is not global: hidden, and refused below as strict mode would)
        .hide('iterations')
        .epilog(MERGE_EPILOG),
    handler: async (a) => {
      const bad = (msg: string): void => {
        cliIo.err.write(`smmulab fuzz merge: ${msg}\n`);
        exitWith(2);
      };
      if ((a as { iterations?: unknown }).iterations !== undefined)
        return bad(
          '--iterations is an option of smmulab fuzz, not of fuzz merge (the campaign is in the files)',
        );
      let merged: { result: FuzzResult; options: FuzzOptions };
      try {
        merged = mergeShards(a.files.map((f) => readShardResult(String(f))));
      } catch (e) {
        if (e instanceof FuzzInputError) return bad(e.message);
        throw e;
      }
      const { result: r, options: o } = merged;
      const out = resolve(a.out);
      if (r.findings.some((f) => f.scenario)) {
        const why = unwritableDir(out);
        if (why)
          return bad(
            `--out ${a.out}${a.out === out ? '' : ` (${out})`}: cannot write reproducers there: ${why}`,
          );
      }
      let writeError: string | null = null;
      try {
        await writeReproducers(r, out);
      } catch (e) {
        writeError = (e as Error).message;
      }
      if (a.json) cliIo.out.write(JSON.stringify(print.json(r, o), null, 2) + '\n');
      else cliIo.out.write(print.summary(r, o) + '\n');
      if (writeError) {
        const all = r.findings.filter((f) => f.scenario).length;
        return bad(
          `--out ${a.out}: ${all - r.reproducers.length} of the ${all} reproducers could not be written (the results above list the ones that were): ${writeError}`,
        );
      }
      exitWith(r.breaches + r.unexpectedExceptions + r.invariantViolations > 0 ? 1 : 0);
    },
  };
}
