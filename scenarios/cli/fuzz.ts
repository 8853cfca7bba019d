/**
 * `smmulab fuzz`: the fuzz engine (scenarios/fuzz/engine.ts) from the command line, with
 * the malicious host (scenarios/fuzz/target-host.ts) or with `--target guest` the malicious
 * guests (scenarios/fuzz/target-guest.ts).
 * Progress goes to stderr (one throttled line; no progress-bar library), the result to stdout:
 * a summary, or with --json one object. Exit 0: nothing found; 1: a breach, an unexpected
 * exception or a broken invariant (reproducers written to --out); 2: bad input, or the
 * reproducers could not be written; 130: interrupted (SIGINT or SIGTERM), with the results of
 * what ran printed and its reproducers written.
 * `--shard K/N` runs one shard of a campaign; `smmulab fuzz merge` (cli-fuzz-merge.ts) merges
 * the shards' --json results into what one unsharded run prints.
 */
import type { Argv, CommandModule } from 'yargs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { layerLogger, setLogLevel, type LogLevel } from '../../hw/log.ts';
import {
  RULE_NAMES,
  POLICY_NAMES,
  PRESETS,
  isRule,
  type RuleName,
  type PolicyName,
} from '../../hyp/policy/policy.ts';
import { fuzzParallel } from '../fuzz/parallel.ts';
import { writeReproducers } from '../fuzz/reproducer.ts';
import {
  validateOptions,
  FuzzInputError,
  type FuzzOptions,
  type FailureChoice,
} from '../fuzz/options.ts';
import { findingKey, type FuzzResult } from '../fuzz/result.ts';
import { coverageGaps } from '../fuzz/target-host.ts';
import { guestCoverageGaps, GUEST_RULES } from '../fuzz/target-guest.ts';
import { exitWith } from './status.ts';
import { cliIo } from './io.ts';
import {
  fuzzMergeCommand,
  parseShard,
  campaignOf,
  shardOf,
  shardIterations,
  RESULT_FORMAT,
} from './fuzz-merge.ts';
import { unwritableDir } from './out-path.ts';
import { SHRINK_BUDGET } from '../fuzz/shrink.ts';

/** More worker threads than this is refused: each takes about 50 MB and half a second to start. */
export const MAX_WORKERS = 256;

/** The signals that stop a campaign cleanly (exit status 130, the results so far printed). */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

interface FuzzArgs {
  seed: number;
  iterations?: number;
  time?: number;
  'reset-every': number;
  target: 'host' | 'guest';
  policy: PolicyName;
  weaken: string[];
  failure: FailureChoice;
  'allow-ats': boolean;
  workers: number;
  out: string;
  json: boolean;
  shrink: boolean;
  'max-reproducers': number;
  'shrink-budget'?: number;
  'check-every': number;
  shard?: string;
}

const EPILOG = `An operation is one hostile step of the host: one MMIO access (any register, size or offset,
in the SMMU or elsewhere), one cmd step (commands of any opcode written at CMDQ_PROD and one
PROD write), one memory write (queue entries, STEs, L1 descriptors, CDs, page tables), one
ownership call (donate, reclaim, share, unshare to the hypervisor or a guest), one DMA (plain,
through the ATC, or an ATS Translated request), or arming one race (a second host CPU that
rewrites memory between two hypervisor reads of it).

An iteration is one attack: a single operation, or a short sequence of them taken from the
attack catalog (an STE then CFGI_STE then a DMA; an MSI doorbell then a fault; a DMA, a
donation, a DMA; a bring-up from scratch; ...), every value drawn from the grammar.

Iterations run on a fresh machine (the hypervisor booted, the Linux-like driver probed with
three devices attached and two buffers mapped; one machine in seven without the driver) until
--reset-every of them have run, the hypervisor panicked, or a failure was found. Each block
of --reset-every iterations (an episode) depends on (--seed, its index) only, so --workers N
gives the same result as one worker.

After every operation: no JavaScript exception from hypervisor or model code (a modeled
hypervisor panic is allowed and counted), no SMMU write or DMA landing on memory the host may
not access, every reshadowed STE a sanitized one, every forwarded host command one the policy
allows; every --check-every operations (when the state changed) and at the end of the
iteration, the full isolation oracle. A failure is shrunk to a minimal scenario in --out that
\`smmulab run\` replays (it fails the last check until the hypervisor is fixed).

With --target guest the attacker is a guest instead (two guests, g1 with two devices and g2
with one, each driving the vSMMU the hypervisor gives it, their kernels probed and attached):
MMIO of any size and offset to its vSMMU and elsewhere in its IPA space, writes to its own RAM
(queue slots, STEs, L1 descriptors, CDs, stage-1 tables), commands of every opcode with vSIDs
it owns and does not, floods and PROD jumps, DMA from its devices. Checked after every
operation besides the above: a guest device's DMA only in its guest's memory, no hypervisor
access outside a guest's RAM on its behalf, the physical STE of a guest's pSID always the
guest's stage 1 nested under its stage-2 (its VMID and stage-2 fields), only that guest's
pSIDs and VMID in the physical commands issued for it, the command budget per trap, vSIDs in
its event records. The vSMMU's own rules (${GUEST_RULES.join(', ')}) are the ones
--weaken matters for here.

--json prints {seed, iterations, operations, commands, breaches, unexpectedExceptions,
invariantViolations, panics, operationsPerSecond, coverage:{opcodes, registers, operations},
reproducers, findings (each with its reproducer scenario), format, campaign (the options that
make the campaign: seed, iterations, target, policy, weaken, ...), shard:{k, n}, ...}.

Across machines: --shard K/N runs shard K of N of the campaign (1-based: K
from 1 to N), the episodes whose index is K-1 modulo N. The N shards of one
--seed and options, run anywhere (GNU parallel, a Kubernetes Indexed Job, a
Slurm job array) with --json, are together exactly the unsharded campaign:
\`smmulab fuzz merge shard-*.json\` prints what one unsharded run prints and
writes its reproducers (smmulab fuzz merge --help). --workers W splits a shard
further among threads. --time cannot be sharded (each machine would run what
it manages in the time).

--out is checked before the campaign starts (the nearest existing folder on its path must
take a new file or folder): a path that cannot be written exits 2 at once, naming it and why.
--workers is at most ${MAX_WORKERS}, and more workers than episodes (iterations / --reset-every,
rounded up) are cut down to one per episode, said on stderr.

Ctrl-C (SIGINT) or SIGTERM stops the campaign at the end of the episode each thread is in (a
failure being shrunk then is shrunk to the end and kept): the summary, or the JSON with
"interrupted": true and "signal", covers the iterations that ran, their reproducers are
written, and the exit status is 130. A second Ctrl-C quits at once, without results.

Exit status: 0 nothing found; 1 a breach, an unexpected exception or a broken invariant;
2 bad input, or the reproducers could not be written (the results are printed all the same,
and the error names the file); 130 interrupted (this wins over 1 and 2).`;

/** The options of `smmulab fuzz`: none is an option of `smmulab fuzz merge`. */
const FUZZ_OPTIONS = [
  'seed',
  'iterations',
  'time',
  'reset-every',
  'target',
  'policy',
  'weaken',
  'failure',
  'allow-ats',
  'workers',
  'out',
  'json',
  'shrink',
  'shrink-budget',
  'max-reproducers',
  'check-every',
  'shard',
] as const;

/** yargs's `global(keys, false)` (missing from its types): a subcommand does not inherit these options. */
function notInSubcommands<T>(y: Argv<T>, keys: readonly string[]): Argv<T> {
  return (y as unknown as { global(keys: readonly string[], global: boolean): Argv<T> }).global(
    keys,
    false,
  );
}

export const fuzzCommand: CommandModule<object, FuzzArgs> = {
  command: 'fuzz',
  describe:
    'fuzz the hypervisor with a malicious host (or --target guest, a malicious guest): seeded hostile operations, the isolation oracle after each, minimal reproducers for failures',
  builder: (y) =>
    notInSubcommands(y, FUZZ_OPTIONS)
      .option('seed', {
        type: 'number',
        default: 1,
        describe: 'campaign seed (a non-negative integer): the run is fully determined by it',
      })
      .option('iterations', {
        type: 'number',
        describe: 'iterations (attacks) to run (default 2000)',
      })
      .option('time', {
        type: 'number',
        describe: 'run for this many seconds instead of a number of iterations',
      })
      .conflicts('iterations', 'time')
      .option('reset-every', {
        type: 'number',
        default: 1000,
        describe: 'iterations per fresh machine (a machine also ends at a panic or a failure)',
      })
      .option('target', {
        choices: ['host', 'guest'] as const,
        default: 'host' as const,
        describe: 'the attacker: the host, or a guest driving its vSMMU',
      })
      .option('policy', {
        choices: POLICY_NAMES,
        default: 'pkvm' as PolicyName,
        describe:
          'hypervisor policy (pkvm-v6: the v6-era gaps; each machine weakens a random non-empty subset of them, so one gap does not hide another)',
      })
      .option('weaken', {
        type: 'string',
        array: true,
        default: [] as string[],
        describe: `switch off a sanitizer rule (repeatable or comma-separated): ${RULE_NAMES.join(', ')}`,
      })
      .option('failure', {
        choices: ['mixed', 'panic', 'reject', 'log'] as const,
        default: 'mixed' as FailureChoice,
        describe:
          "the hypervisor's failure policy; mixed draws one per machine (panic 5%, reject 50%, log 45%)",
      })
      .option('allow-ats', {
        type: 'boolean',
        default: false,
        describe: 'show ATS to the host (split-stage ATS allowed)',
      })
      .option('workers', {
        type: 'number',
        default: 1,
        describe: `worker threads sharing the episodes (results merged: the same as one worker); at most ${MAX_WORKERS}, and cut down to the number of episodes (a thread takes about 50 MB; more than the CPUs only share them)`,
      })
      .option('out', {
        type: 'string',
        default: 'fuzz-reproducers',
        describe:
          'folder for reproducer scenario files (created if needed; checked before the campaign starts)',
      })
      .option('json', {
        type: 'boolean',
        default: false,
        describe: 'print the result as one JSON object',
      })
      .option('shrink', {
        type: 'boolean',
        default: true,
        describe: 'shrink failures to minimal reproducers (--no-shrink keeps them whole)',
      })
      .option('shrink-budget', {
        type: 'number',
        describe: `replays one failure's shrink may spend (default ${SHRINK_BUDGET}); a shrink that ends within it is 1-minimal: removing any one operation of the reproducer makes it pass`,
      })
      .option('max-reproducers', {
        type: 'number',
        default: 8,
        describe: 'distinct failures shrunk and written',
      })
      .option('check-every', {
        type: 'number',
        default: 16,
        describe:
          'full isolation oracle every N operations when the state changed (always at the end of an iteration)',
      })
      .option('shard', {
        type: 'string',
        describe:
          "run only shard K of N of the campaign (K from 1 to N: the episodes whose index is K-1 mod N), e.g. 2/8; merge the shards' --json results with `smmulab fuzz merge`",
      })
      .command(fuzzMergeCommand({ summary, json: jsonResult }))
      .epilog(EPILOG),
  handler: async (a) => {
    const weaken: RuleName[] = [];
    for (const w of a.weaken
      .flatMap((x) => String(x).split(','))
      .map((x) => x.trim())
      .filter(Boolean)) {
      if (!isRule(w)) return bad(`--weaken ${w}: no such rule (rules: ${RULE_NAMES.join(', ')})`);
      weaken.push(w);
    }
    for (const [k, v, min] of [
      ['workers', a.workers, 1],
      ['max-reproducers', a['max-reproducers'], 0],
      ['check-every', a['check-every'], 1],
      ['shrink-budget', a['shrink-budget'] ?? 1, 1],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < min)
        return bad(`--${k} must be an integer of at least ${min}, got ${v}`);
    }
    // the attackers drive the SMMU through its MMIO (the host) or a vSMMU the host's own
    // driver must first bring up: a paravirtual design gives the host no SMMU at all
    if (PRESETS[a.policy].cmdq !== 'trap')
      return bad(
        `--policy ${a.policy}: the host has no access to the SMMU under a paravirtual design, so the MMIO fuzzer does not apply (its hypercall attacks run under \`smmulab policies --security\`)`,
      );
    let shard: FuzzOptions['shard'];
    try {
      if (a.shard !== undefined) shard = parseShard(a.shard, a.time !== undefined);
    } catch (e) {
      if (e instanceof FuzzInputError) return bad(e.message);
      throw e;
    }
    const o: FuzzOptions = {
      seed: a.seed,
      ...(a.time !== undefined ? { timeSec: a.time } : { iterations: a.iterations ?? 2000 }),
      resetEvery: a['reset-every'],
      target: a.target,
      policy: a.policy,
      weaken,
      failure: a.failure,
      allowAts: a['allow-ats'],
      shrink: a.shrink,
      maxReproducers: a['max-reproducers'],
      ...(a['shrink-budget'] !== undefined ? { shrinkBudget: a['shrink-budget'] } : {}),
      checkEvery: a['check-every'],
      ...(shard ? { shard } : {}),
    };
    try {
      validateOptions(o);
    } catch (e) {
      if (e instanceof FuzzInputError) return bad(e.message);
      throw e;
    }
    if (
      shard &&
      o.iterations !== undefined &&
      shardIterations(o.iterations, o.resetEvery ?? 1000, shard) === 0
    ) {
      layerLogger('scenarios').warn(
        `--shard ${a.shard}: this shard has no episodes (the campaign has ${Math.ceil(o.iterations / (o.resetEvery ?? 1000))}: --iterations / --reset-every); it runs nothing`,
      );
    }
    if (a.workers > MAX_WORKERS)
      return bad(
        `--workers ${a.workers}: at most ${MAX_WORKERS} (each worker thread takes about 50 MB and half a second to start; this machine has ${availableParallelism()} CPUs)`,
      );
    const out = resolve(a.out);
    if (o.maxReproducers! > 0) {
      const why = unwritableDir(out);
      if (why)
        return bad(
          `--out ${a.out}${a.out === out ? '' : ` (${out})`}: cannot write reproducers there: ${why}`,
        );
    }
    let workers = a.workers;
    if (o.iterations !== undefined) {
      // the episodes this run has: the campaign's, or its shard's
      const episodes = Math.ceil(
        (shard ? shardIterations(o.iterations, a['reset-every'], shard) : o.iterations) /
          a['reset-every'],
      );
      if (workers > episodes) {
        cliIo.err.write(
          `smmulab fuzz: --workers ${workers} cut down to ${Math.max(episodes, 1)}: the ${shard ? 'shard' : 'campaign'} has ${episodes} episode${episodes === 1 ? '' : 's'} (${o.iterations} iterations${shard ? ` in all, --shard ${a.shard}` : ''}, --reset-every ${a['reset-every']}) and a worker runs whole episodes\n`,
        );
        workers = Math.max(episodes, 1);
      }
    }
    const tty = cliIo.err.isTTY === true;
    let last = 0;
    o.onProgress = (p) => {
      const now = Date.now();
      if (now - last < 1000) return;
      last = now;
      const line = `fuzz: ${p.iterations} iterations, ${p.operations} operations (${Math.round(p.operations / Math.max(p.seconds, 1e-3))}/s), ${p.findings} failing, ${p.panics} panics, ${p.seconds.toFixed(0)} s`;
      cliIo.err.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    };
    // hostile runs make the driver and the runner warn all the time: keep warnings out unless asked for more
    const level = layerLogger('scenarios').level as LogLevel;
    const quiet: LogLevel = level === 'warn' ? 'error' : level;
    setLogLevel(quiet);
    // a signal only raises the stop flag, which every thread reads between episodes (the
    // campaign runs in slices that let the event loop deliver it); the first one also puts the
    // default action back, so that a second one quits at once
    o.stop = new Int32Array(new SharedArrayBuffer(4));
    let signal: string | null = null;
    const onSignal = (sig: NodeJS.Signals): void => {
      signal = sig;
      Atomics.store(o.stop!, 0, 1);
      removeHandlers();
      cliIo.err.write(
        `${tty ? '\n' : ''}smmulab fuzz: ${sig}: stopping at the end of the current episode, then printing and writing what was found (${sig === 'SIGINT' ? 'Ctrl-C' : sig} again quits at once, without results)\n`,
      );
    };
    const removeHandlers = (): void => {
      for (const s of STOP_SIGNALS) process.removeListener(s, onSignal);
    };
    for (const s of STOP_SIGNALS) process.on(s, onSignal);
    let r: FuzzResult;
    let writeError: string | null = null;
    try {
      r = await fuzzParallel(o, workers, quiet);
      if (tty) cliIo.err.write('\r\x1b[K');
      try {
        await writeReproducers(r, out);
      } catch (e) {
        writeError = (e as Error).message;
      }
    } finally {
      removeHandlers();
    }
    if (a.json) cliIo.out.write(JSON.stringify(jsonResult(r, o, signal), null, 2) + '\n');
    else cliIo.out.write(summary(r, o, signal) + '\n');
    if (writeError) {
      const all = r.findings.filter((f) => f.scenario).length;
      cliIo.err.write(
        `smmulab fuzz: --out ${a.out}: ${all - r.reproducers.length} of the ${all} reproducers could not be written (the results above list the ones that were): ${writeError}\n`,
      );
      exitWith(2);
    }
    if (r.interrupted) exitWith(130);
    exitWith(r.breaches + r.unexpectedExceptions + r.invariantViolations > 0 ? 1 : 0);
  },
};

function bad(msg: string): void {
  cliIo.err.write(`smmulab fuzz: ${msg}\n`);
  exitWith(2);
}

/**
 * The --json object: the counts first, then coverage, reproducers and the findings with their
 * scenarios; then what `smmulab fuzz merge` needs besides (cli-fuzz-merge.ts): the format, the
 * campaign's identity and the shard (and, when a signal stopped the run, `interrupted` first).
 */
function jsonResult(
  r: FuzzResult,
  o: FuzzOptions,
  signal: string | null = null,
): Record<string, unknown> {
  return {
    ...(r.interrupted ? { interrupted: true, signal } : {}),
    seed: r.seed,
    iterations: r.iterations,
    operations: r.operations,
    commands: r.commands,
    breaches: r.breaches,
    unexpectedExceptions: r.unexpectedExceptions,
    invariantViolations: r.invariantViolations,
    panics: r.panics,
    operationsPerSecond: r.operationsPerSecond,
    seconds: +r.seconds.toFixed(3),
    target: r.target,
    policy: r.policy,
    weaken: r.weaken,
    failure: r.failure,
    resetEvery: r.resetEvery,
    machines: r.machines,
    workers: r.workers,
    panicsByRule: r.panicsByRule,
    failuresBySignature: r.failuresBySignature,
    coverage: r.coverage,
    reproducers: r.reproducers,
    findings: r.findings,
    format: RESULT_FORMAT,
    campaign: campaignOf(o),
    shard: shardOf(o),
  };
}

function summary(r: FuzzResult, o: FuzzOptions, signal: string | null = null): string {
  const lines: string[] = [];
  const w = o.weaken?.length ? `, weakened: ${o.weaken.join(', ')}` : '';
  const guest = r.target === 'guest';
  lines.push(
    `smmulab fuzz --seed ${r.seed}${guest ? ' --target guest' : ''}${o.shard ? ` --shard ${o.shard.index + 1}/${o.shard.count}` : ''}: policy ${r.policy}${w}, failure policy ${r.failure}, ${r.workers} worker(s)`,
  );
  if (r.interrupted)
    lines.push(
      `  INTERRUPTED${signal ? ` by ${signal}` : ''} after ${r.iterations} ${o.iterations !== undefined ? `of ${o.iterations} ` : ''}iterations (whole episodes): what follows is what they found`,
    );
  lines.push(
    `  ${r.iterations} iterations, ${r.operations} operations (${r.commands} ${guest ? 'guest' : 'host'} commands) in ${r.seconds.toFixed(1)} s: ${r.operationsPerSecond} operations/s with the oracle on`,
  );
  lines.push(
    `  breaches: ${r.breaches}   unexpected exceptions: ${r.unexpectedExceptions}   broken invariants: ${r.invariantViolations}   modeled panics: ${r.panics}${
      r.panics
        ? ` (${Object.entries(r.panicsByRule)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')})`
        : ''
    }`,
  );
  const gaps = guest ? guestCoverageGaps(r.coverage) : coverageGaps(r.coverage);
  lines.push(
    `  coverage: ${Object.keys(r.coverage.opcodes).length} opcodes, ${Object.keys(r.coverage.registers).filter((k) => k !== 'other').length} ${guest ? 'vSMMU' : 'trapped'} registers${gaps.registers.length ? `; registers never touched: ${gaps.registers.join(', ')}` : ''}${gaps.opcodes.length ? `; opcodes never used: ${gaps.opcodes.join(', ')}` : ''}`,
  );
  if (Object.keys(r.failuresBySignature).length) {
    lines.push('  failing iterations:');
    for (const [k, v] of Object.entries(r.failuresBySignature))
      lines.push(`    ${String(v).padStart(6)}  ${k}`);
  }
  for (const f of r.findings) {
    lines.push(`  ${f.kind.toUpperCase()} ${findingKey(f.signature, f.needs)}`);
    lines.push(
      `    iteration ${f.iteration} (failure policy ${f.failure}${f.weaken.length ? `, weakened ${f.weaken.join(', ')}` : ''}), after ${f.operations} operations; minimal: ${f.minimalOperations}${f.oneMinimal === undefined ? '' : f.oneMinimal ? ' (1-minimal)' : ' (budget spent, not proven 1-minimal)'}`,
    );
    lines.push(`    ${f.detail}`);
    if (f.reproducer)
      lines.push(
        `    reproducer: ${f.reproducer} (smmulab run ${f.replay?.reproduces ? 'reproduces it' : 'DOES NOT reproduce it'})`,
      );
  }
  if (!r.findings.length) lines.push('  no breach, no unexpected exception, no broken invariant');
  return lines.join('\n');
}
