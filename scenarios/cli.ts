/**
 * The smmulab CLI (yargs). Commands: run, list, demo. Every command has --help.
 * Exit codes: 0 success, 1 a scenario expectation failed, 2 bad input (arguments or files).
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import yargs from 'yargs';
import { setLogLevel, type LogLevel } from '../hw/log.ts';
import { regNameAt } from '../hw/smmu/regs.ts';
import { SMMU_BASE } from '../hw/machine.ts';
import { SMMU_MMIO_SIZE } from '../hw/smmu/regs.ts';
import type { Machine } from '../hw/machine.ts';
import { builtinNames, loadScenario, ScenarioError } from './loader.ts';
import { runScenario, type RunResult } from './runner.ts';
import { formatResult, table } from './report.ts';

const LOG_LEVELS = ['silent', 'fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

/** Attach a JSON-lines log of every CPU access that reaches the SMMU (or traps). */
export function attachMmioLog(m: Machine, out: { write(s: string): unknown }): void {
  m.bus.observe((e) => {
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

function printResult(r: RunResult, json: boolean): void {
  if (json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  else process.stdout.write(formatResult(r) + '\n');
}

export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const parser = yargs(argv)
    .scriptName('smmulab')
    .usage('$0 <command> [options]\n\nAn Arm SMMUv3 simulator with a deprivileged hypervisor.')
    .option('log-level', { choices: LOG_LEVELS, default: 'warn' as LogLevel, describe: 'pino log level (logs go to stderr)' })
    .middleware((a) => setLogLevel(a['log-level'] as LogLevel))
    .command(
      'run <scenario>',
      'run a built-in scenario (by name) or a scenario file (JSON or YAML); exits 0 only if every expectation holds',
      (y) =>
        y
          .positional('scenario', { type: 'string', demandOption: true, describe: 'built-in name (see `smmulab list`) or path to a .json/.yaml file' })
          .option('json', { type: 'boolean', default: false, describe: 'print one JSON object: {scenario, ok, steps, failed, events, stats}' })
          .option('mmio-log', { type: 'string', describe: 'write every CPU access that reaches the SMMU (or traps) to FILE as JSON lines' }),
      (a) => {
        const sc = loadScenario(a.scenario);
        let mmio: WriteStream | undefined;
        const r = runScenario(sc, {
          onMachine: (m) => {
            if (a['mmio-log']) {
              mmio = createWriteStream(a['mmio-log']);
              attachMmioLog(m, mmio);
            }
          },
        });
        mmio?.end();
        printResult(r, a.json);
        code = r.ok ? 0 : 1;
      },
    )
    .command(
      'list',
      'name the built-in scenarios, each with a one-line description',
      (y) => y.option('json', { type: 'boolean', default: false }),
      (a) => {
        const rows = builtinNames().map((n) => {
          const sc = loadScenario(n);
          return { name: n, description: sc.description };
        });
        if (a.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        else process.stdout.write(table(['scenario', 'description'], rows.map((r) => [r.name, r.description]), [null, 90]) + '\n');
      },
    )
    .command(
      'demo',
      'the default demonstration (npm start): run every built-in scenario and summarise',
      (y) => y.option('json', { type: 'boolean', default: false }),
      (a) => {
        const results = builtinNames().map((n) => {
          const sc = loadScenario(n);
          return { sc, r: runScenario(sc) };
        });
        if (a.json) {
          process.stdout.write(JSON.stringify(results.map((x) => x.r), null, 2) + '\n');
        } else {
          process.stdout.write('smmulab demonstration: every built-in scenario on the simulated machine\n');
          process.stdout.write(
            table(
              ['scenario', 'result', 'steps', 'events', 'commands', 'description'],
              results.map(({ sc, r }) => [r.scenario, r.ok ? 'ok' : `FAILED (${r.failed.length})`, r.steps, r.events.map((e) => e.type).join(' ') || '-', String(r.stats.commands), sc.description]),
              [null, null, null, 30, null, 60],
            ) + '\n',
          );
          process.stdout.write('Run one with `npx smmulab run <scenario>` (add --json for the full result), list them with `npx smmulab list`.\n');
        }
        code = results.every((x) => x.r.ok) ? 0 : 1;
      },
    )
    .demandCommand(1, 'name a command: run, list or demo (see --help)')
    .strict()
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version(false)
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`smmulab: ${msg}\n(see smmulab --help)\n`);
      code = 2;
    })
    .exitProcess(false);
  try {
    await parser.parseAsync();
  } catch (e) {
    if (e instanceof ScenarioError) {
      process.stderr.write(`smmulab: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`smmulab: ${(e as Error).stack ?? e}\n`);
    return 2;
  }
  return code;
}
