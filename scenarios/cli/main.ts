/**
 * The smmulab CLI (yargs). Commands: run, list, demo. Every command has --help.
 * Exit codes: 0 success, 1 a scenario expectation failed, 2 bad input (arguments or files).
 */
import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import { resolve } from 'node:path';
import yargs from 'yargs';
import { setLogLevel, type LogLevel } from '../../hw/log.ts';
import { regNameAt } from '../../hw/smmu/regs.ts';
import { SMMU_BASE } from '../../hw/machine.ts';
import { SMMU_MMIO_SIZE } from '../../hw/smmu/regs.ts';
import type { Machine } from '../../hw/machine.ts';
import { builtinNames, loadScenarios, ScenarioError } from '../engine/loader.ts';
import { runVariants, type RunResult } from '../engine/runner.ts';
import { formatResult, formatSummary, table } from '../report/report.ts';
import { cliStatus } from './status.ts';
import { cliIo, processIo, type CliIo } from './io.ts';
import { decodeCommand, encodeCommand } from './decode.ts';
import { explainCommand } from './explain.ts';
import { fuzzCommand } from './fuzz.ts';
import { policiesCommand } from './policies.ts';
import { writeTrace, type TraceRecorder } from '../inspect/trace.ts';
import { canonicalPath, unwritableFile } from './out-path.ts';

const LOG_LEVELS = ['silent', 'fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

/** Attach a JSON-lines log of every CPU access that reaches the SMMU (or traps). */
export function attachMmioLog(m: Machine, out: { write(s: string): unknown }): void {
  m.bus.probes.access.subscribe((e) => {
    const inSmmu = e.addr >= SMMU_BASE && e.addr < SMMU_BASE + SMMU_MMIO_SIZE;
    if (e.device ? e.device !== m.smmu : !inSmmu) {
      if (!e.trapped) return;
    }
    const offset = e.device === m.smmu ? e.offset! : e.addr - SMMU_BASE;
    const reg = e.device === m.smmu || inSmmu ? regNameAt(offset) : null;
    out.write(
      JSON.stringify({
        actor: e.actor,
        dir: e.dir,
        addr: '0x' + e.addr.toString(16),
        offset: reg !== null ? '0x' + offset.toString(16) : null,
        reg,
        size: e.size,
        value: '0x' + e.value.toString(16),
        ...(e.trapped ? { trapped: true } : {}),
      }) + '\n',
    );
  });
}

function printResults(rs: RunResult[], json: boolean): void {
  if (json) cliIo.out.write(JSON.stringify(rs.length === 1 ? rs[0] : rs, null, 2) + '\n');
  else if (rs.length === 1) cliIo.out.write(formatResult(rs[0]!) + '\n');
  else {
    cliIo.out.write(formatSummary(rs) + '\n');
    for (const r of rs.filter((x) => !x.ok)) cliIo.out.write(formatResult(r) + '\n');
  }
}

/** A command line yargs refused (already reported on stderr). */
class UsageError extends Error {}

/**
 * Run one command line; returns the exit code. `io` is where results and messages go (the
 * process's streams unless given: a test passes buffers).
 */
export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  const outer = { ...cliIo };
  Object.assign(cliIo, io);
  try {
    return await invoke(argv);
  } finally {
    Object.assign(cliIo, outer);
  }
}

async function invoke(argv: string[]): Promise<number> {
  let code = 0;
  cliStatus.code = 0;
  const parser = yargs(argv)
    .scriptName('smmulab')
    .usage('$0 <command> [options]\n\nAn Arm SMMUv3 simulator with a deprivileged hypervisor.')
    .option('log-level', {
      choices: LOG_LEVELS,
      default: 'warn' as LogLevel,
      describe: 'pino log level (logs go to stderr)',
    })
    .middleware((a) => setLogLevel(a['log-level'] as LogLevel))
    .command(
      'run <scenario>',
      'run a built-in scenario (by name) or a scenario file (JSON or YAML); exits 0 only if every expectation holds',
      (y) =>
        y
          .positional('scenario', {
            type: 'string',
            demandOption: true,
            describe:
              'built-in name (see `smmulab list`), a .json/.yaml file, or a folder of them (a catalog)',
          })
          .option('json', {
            type: 'boolean',
            default: false,
            describe:
              'print one JSON object per run: {scenario, hypMode, ok, steps, skipped, failed, events, stats, hyp?, isolation?} (an array when there are several)',
          })
          .option('hyp', {
            choices: ['none', 'pkvm', 'pkvm-v6'] as const,
            describe:
              "run under this hypervisor only (pkvm-v6: pKVM with the v6-era policy), instead of the scenario's variants",
          })
          .option('mmio-log', {
            type: 'string',
            describe:
              'write every CPU access that reaches the SMMU (or traps) to FILE as JSON lines (checked before the run: a FILE that cannot be written, or the --trace file, exits 2)',
          })
          .option('trace', {
            type: 'string',
            describe:
              'write a timeline to FILE in Chrome Trace Event Format (open it in ui.perfetto.dev or chrome://tracing); one process per run (checked before the run: a FILE that cannot be written exits 2)',
          }),
      async (a) => {
        const scs = loadScenarios(a.scenario);
        // the output files are checked before anything runs: a path that cannot be written
        // fails here, not after the run (or, for --mmio-log, as an unhandled stream error)
        for (const k of ['trace', 'mmio-log'] as const) {
          const f = a[k];
          if (f === undefined) continue;
          const why = f === '' ? null : unwritableFile(f);
          if (f === '' || why) {
            cliIo.err.write(
              f === ''
                ? `smmulab run: --${k} needs a file name\n`
                : `smmulab run: --${k} ${f}${f === resolve(f) ? '' : ` (${resolve(f)})`}: ${why}\n`,
            );
            code = 2;
            return;
          }
        }
        if (a.trace && a['mmio-log'] && canonicalPath(a.trace) === canonicalPath(a['mmio-log'])) {
          cliIo.err.write(
            `smmulab run: --trace and --mmio-log name the same file (${canonicalPath(a.trace)}): give each its own\n`,
          );
          code = 2;
          return;
        }
        let mmio: WriteStream | undefined;
        let mmioError: Error | null = null;
        if (a['mmio-log']) {
          const path = resolve(a['mmio-log']);
          let fd: number;
          try {
            fd = openSync(path, 'w');
          } catch (e) {
            cliIo.err.write(`smmulab run: --mmio-log ${a['mmio-log']}: ${(e as Error).message}\n`);
            code = 2;
            return;
          }
          mmio = createWriteStream(path, { fd });
          mmio.on('error', (e) => {
            mmioError ??= e;
          });
        }
        const rs: RunResult[] = [];
        const recs: TraceRecorder[] = [];
        for (const sc of scs) {
          if (scs.length > 1) cliIo.err.write(`run ${sc.name}...\n`);
          rs.push(
            ...runVariants(sc, {
              ...(a.hyp ? { hyp: a.hyp } : {}),
              onMachine: (m) => {
                if (mmio) attachMmioLog(m, mmio);
              },
              ...(a.trace ? { trace: (r: TraceRecorder) => recs.push(r) } : {}),
            }),
          );
        }
        if (mmio) {
          const m = mmio;
          await new Promise<void>((done) => {
            if (m.destroyed) return done();
            m.once('close', done);
            m.end();
          });
          if (mmioError) {
            cliIo.err.write(
              `smmulab run: --mmio-log ${a['mmio-log']}: ${(mmioError as Error).message}\n`,
            );
            code = 2;
          }
        }
        if (a.trace) {
          recs.forEach((r, i) => r.renumber(i + 1));
          try {
            writeTrace(a.trace, recs);
          } catch (e) {
            cliIo.err.write(`--trace ${a.trace}: ${(e as Error).message}\n`);
            code = 2;
            return;
          }
        }
        printResults(rs, a.json);
        code = Math.max(code, rs.every((r) => r.ok) ? 0 : 1);
      },
    )
    .command(
      'list',
      'name the built-in scenarios, each with a one-line description',
      (y) => y.option('json', { type: 'boolean', default: false }),
      (a) => {
        const rows = builtinNames().map((n) => {
          const scs = loadScenarios(n);
          return {
            name: n,
            description:
              scs.length > 1
                ? `catalog of ${scs.length} scenarios: ${scs.map((x) => x.name).join(', ')}`
                : scs[0]!.description,
          };
        });
        if (a.json) cliIo.out.write(JSON.stringify(rows, null, 2) + '\n');
        else
          cliIo.out.write(
            table(
              ['scenario', 'description'],
              rows.map((r) => [r.name, r.description]),
              [null, 90],
            ) + '\n',
          );
      },
    )
    .command(
      'demo',
      'the default demonstration (npm start): run every built-in scenario and summarise',
      (y) => y.option('json', { type: 'boolean', default: false }),
      (a) => {
        const results: RunResult[] = [];
        const catalogs: Array<{ name: string; rs: RunResult[] }> = [];
        for (const n of builtinNames()) {
          cliIo.err.write(`demo: ${n}\n`);
          const scs = loadScenarios(n);
          const rs = scs.flatMap((sc) => runVariants(sc));
          if (scs.length > 1) catalogs.push({ name: n, rs });
          else results.push(...rs);
        }
        const all = [...results, ...catalogs.flatMap((c) => c.rs)];
        if (a.json) {
          cliIo.out.write(JSON.stringify(all, null, 2) + '\n');
        } else {
          cliIo.out.write(
            'smmulab demonstration: every built-in scenario on the simulated machine\n',
          );
          cliIo.out.write(formatSummary(results) + '\n');
          for (const c of catalogs) {
            cliIo.out.write(
              `\ncatalog ${c.name}: ${c.rs.filter((r) => r.ok).length}/${c.rs.length} runs as expected\n`,
            );
            cliIo.out.write(formatSummary(c.rs) + '\n');
          }
          for (const r of all.filter((x) => !x.ok)) cliIo.out.write(formatResult(r) + '\n');
          cliIo.out.write(
            'Run one with `npx smmulab run <scenario>` (add --json for the full result), list them with `npx smmulab list`.\n',
          );
        }
        code = all.every((r) => r.ok) ? 0 : 1;
      },
    )
    .command(decodeCommand)
    .command(encodeCommand)
    .command(explainCommand)
    .command(fuzzCommand)
    .command(policiesCommand)
    .demandCommand(
      1,
      'name a command: run, list, demo, decode, encode, explain, fuzz or policies (see --help)',
    )
    .strict()
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version(false)
    .fail((msg, err) => {
      if (err) throw err;
      cliIo.err.write(`smmulab: ${msg}\n(see smmulab --help)\n`);
      code = 2;
      cliStatus.code = 2;
      // stop here: with exitProcess(false) yargs would otherwise still run the command's handler
      throw new UsageError(msg);
    })
    .exitProcess(false);
  try {
    // yargs' own output (--help) is handed to the callback instead of console.log
    await parser.parseAsync(argv, (_e: unknown, _a: unknown, output: string) => {
      if (output) cliIo.out.write(output + '\n');
    });
  } catch (e) {
    if (e instanceof UsageError) return 2;
    if (e instanceof ScenarioError) {
      cliIo.err.write(`smmulab: ${e.message}\n`);
      return 2;
    }
    cliIo.err.write(`smmulab: ${(e as Error).stack ?? e}\n`);
    return 2;
  }
  return Math.max(code, cliStatus.code);
}
