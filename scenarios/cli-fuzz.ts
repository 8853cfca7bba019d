/**
 * `smmulab fuzz`: the malicious-host fuzzer (scenarios/fuzz.ts), or with `--target guest` the
 * malicious-guest one (scenarios/fuzz-guest.ts), from the command line.
 * Progress goes to stderr (one throttled line; no progress-bar library), the result to stdout:
 * a summary, or with --json one object. Exit 0: nothing found; 1: a breach, an unexpected
 * exception or a broken invariant (reproducers written to --out); 2: bad input.
 */
import type { CommandModule } from 'yargs';
import { resolve } from 'node:path';
import { layerLogger, setLogLevel, type LogLevel } from '../hw/log.ts';
import { RULE_NAMES, POLICY_NAMES, isRule, type RuleName, type PolicyName } from '../hyp/policy.ts';
import { fuzzParallel, writeReproducers, coverageGaps, validateOptions, FuzzInputError, findingKey, type FuzzOptions, type FuzzResult, type FailureChoice } from './fuzz.ts';
import { guestCoverageGaps, GUEST_RULES } from './fuzz-guest.ts';
import { exitWith } from './cli-status.ts';

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
  'check-every': number;
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
reproducers, findings, ...}.`;

export const fuzzCommand: CommandModule<object, FuzzArgs> = {
  command: 'fuzz',
  describe: 'fuzz the hypervisor with a malicious host (or --target guest, a malicious guest): seeded hostile operations, the isolation oracle after each, minimal reproducers for failures',
  builder: (y) =>
    y
      .option('seed', { type: 'number', default: 1, describe: 'campaign seed (a non-negative integer): the run is fully determined by it' })
      .option('iterations', { type: 'number', describe: 'iterations (attacks) to run (default 2000)' })
      .option('time', { type: 'number', describe: 'run for this many seconds instead of a number of iterations' })
      .conflicts('iterations', 'time')
      .option('reset-every', { type: 'number', default: 1000, describe: 'iterations per fresh machine (a machine also ends at a panic or a failure)' })
      .option('target', { choices: ['host', 'guest'] as const, default: 'host' as const, describe: 'the attacker: the host, or a guest driving its vSMMU' })
      .option('policy', { choices: POLICY_NAMES, default: 'pkvm' as PolicyName, describe: 'hypervisor policy (pkvm-v6: the v6-era gaps; each machine weakens a random non-empty subset of them, so one gap does not hide another)' })
      .option('weaken', { type: 'string', array: true, default: [] as string[], describe: `switch off a sanitizer rule (repeatable or comma-separated): ${RULE_NAMES.join(', ')}` })
      .option('failure', { choices: ['mixed', 'panic', 'reject', 'log'] as const, default: 'mixed' as FailureChoice, describe: 'the hypervisor\'s failure policy; mixed draws one per machine (panic 5%, reject 50%, log 45%)' })
      .option('allow-ats', { type: 'boolean', default: false, describe: 'show ATS to the host (split-stage ATS allowed)' })
      .option('workers', { type: 'number', default: 1, describe: 'worker threads sharing the episodes (results merged: the same as one worker)' })
      .option('out', { type: 'string', default: 'fuzz-reproducers', describe: 'folder for reproducer scenario files' })
      .option('json', { type: 'boolean', default: false, describe: 'print the result as one JSON object' })
      .option('shrink', { type: 'boolean', default: true, describe: 'shrink failures to minimal reproducers (--no-shrink keeps them whole)' })
      .option('max-reproducers', { type: 'number', default: 8, describe: 'distinct failures shrunk and written' })
      .option('check-every', { type: 'number', default: 16, describe: 'full isolation oracle every N operations when the state changed (always at the end of an iteration)' })
      .epilog(EPILOG),
  handler: async (a) => {
    const weaken: RuleName[] = [];
    for (const w of a.weaken.flatMap((x) => String(x).split(',')).map((x) => x.trim()).filter(Boolean)) {
      if (!isRule(w)) return bad(`--weaken ${w}: no such rule (rules: ${RULE_NAMES.join(', ')})`);
      weaken.push(w);
    }
    for (const [k, v, min] of [['workers', a.workers, 1], ['max-reproducers', a['max-reproducers'], 0], ['check-every', a['check-every'], 1]] as const) {
      if (!Number.isSafeInteger(v) || v < min) return bad(`--${k} must be an integer of at least ${min}, got ${v}`);
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
      checkEvery: a['check-every'],
    };
    try {
      validateOptions(o);
    } catch (e) {
      if (e instanceof FuzzInputError) return bad(e.message);
      throw e;
    }
    const tty = process.stderr.isTTY === true;
    let last = 0;
    o.onProgress = (p) => {
      const now = Date.now();
      if (now - last < 1000) return;
      last = now;
      const line = `fuzz: ${p.iterations} iterations, ${p.operations} operations (${Math.round(p.operations / Math.max(p.seconds, 1e-3))}/s), ${p.findings} failing, ${p.panics} panics, ${p.seconds.toFixed(0)} s`;
      process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    };
    // hostile runs make the driver and the runner warn all the time: keep warnings out unless asked for more
    const level = layerLogger('scenarios').level as LogLevel;
    const quiet: LogLevel = level === 'warn' ? 'error' : level;
    setLogLevel(quiet);
    const r = await fuzzParallel(o, a.workers, quiet);
    if (tty) process.stderr.write('\r\x1b[K');
    await writeReproducers(r, resolve(a.out));
    if (a.json) process.stdout.write(JSON.stringify(jsonResult(r), null, 2) + '\n');
    else process.stdout.write(summary(r, o) + '\n');
    exitWith(r.breaches + r.unexpectedExceptions + r.invariantViolations > 0 ? 1 : 0);
  },
};

function bad(msg: string): void {
  process.stderr.write(`smmulab fuzz: ${msg}\n`);
  exitWith(2);
}

/** The --json object: the counts first, then coverage, reproducers and the findings without their scenarios. */
function jsonResult(r: FuzzResult): Record<string, unknown> {
  return {
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
    findings: r.findings.map(({ scenario: _s, ...f }) => f),
  };
}

function summary(r: FuzzResult, o: FuzzOptions): string {
  const lines: string[] = [];
  const w = o.weaken?.length ? `, weakened: ${o.weaken.join(', ')}` : '';
  const guest = r.target === 'guest';
  lines.push(`smmulab fuzz --seed ${r.seed}${guest ? ' --target guest' : ''}: policy ${r.policy}${w}, failure policy ${r.failure}, ${r.workers} worker(s)`);
  lines.push(`  ${r.iterations} iterations, ${r.operations} operations (${r.commands} ${guest ? 'guest' : 'host'} commands) in ${r.seconds.toFixed(1)} s: ${r.operationsPerSecond} operations/s with the oracle on`);
  lines.push(`  breaches: ${r.breaches}   unexpected exceptions: ${r.unexpectedExceptions}   broken invariants: ${r.invariantViolations}   modeled panics: ${r.panics}${r.panics ? ` (${Object.entries(r.panicsByRule).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}`);
  const gaps = guest ? guestCoverageGaps(r.coverage) : coverageGaps(r.coverage);
  lines.push(`  coverage: ${Object.keys(r.coverage.opcodes).length} opcodes, ${Object.keys(r.coverage.registers).filter((k) => k !== 'other').length} ${guest ? 'vSMMU' : 'trapped'} registers${gaps.registers.length ? `; registers never touched: ${gaps.registers.join(', ')}` : ''}${gaps.opcodes.length ? `; opcodes never used: ${gaps.opcodes.join(', ')}` : ''}`);
  if (Object.keys(r.failuresBySignature).length) {
    lines.push('  failing iterations:');
    for (const [k, v] of Object.entries(r.failuresBySignature)) lines.push(`    ${String(v).padStart(6)}  ${k}`);
  }
  for (const f of r.findings) {
    lines.push(`  ${f.kind.toUpperCase()} ${findingKey(f.signature, f.needs)}`);
    lines.push(`    iteration ${f.iteration} (failure policy ${f.failure}${f.weaken.length ? `, weakened ${f.weaken.join(', ')}` : ''}), after ${f.operations} operations; minimal: ${f.minimalOperations}${f.oneMinimal === undefined ? '' : f.oneMinimal ? ' (1-minimal)' : ' (budget spent, not proven 1-minimal)'}`);
    lines.push(`    ${f.detail}`);
    if (f.reproducer) lines.push(`    reproducer: ${f.reproducer} (smmulab run ${f.replay?.reproduces ? 'reproduces it' : 'DOES NOT reproduce it'})`);
  }
  if (!r.findings.length) lines.push('  no breach, no unexpected exception, no broken invariant');
  return lines.join('\n');
}
