/**
 * `smmulab policies [--policies a,b,…] [--workloads x,y,…] [--design FILE…] [--profile FILE]
 * [--set unit=ns…] [--security] [--json]`: the policy evaluation. Every design runs every
 * workload (the matrix runner, scenarios/eval/matrix.ts); each cell's counts are priced by the
 * cost profile (scenarios/eval/profile.ts, cost.ts) and compared with `none`; with --security
 * every design also runs the host attack catalog (scenarios/eval/security.ts).
 *
 * Everything the command line names is checked before anything runs: an unknown design or
 * workload, a design file or profile that cannot be read or is invalid, a bad --set; all of the
 * problems are printed and the exit status is 2. Progress goes to stderr, one line per cell; the
 * result to stdout: a table that fits 100 columns, or with --json an array of one object per
 * (design, workload). Exit 1 when an isolation breach was found on a design that should block it
 * (a hypervisor design with no rule switched off), else 0.
 */
import type { CommandModule } from 'yargs';
import { resolve } from 'node:path';
import { table } from '../report/report.ts';
import { exitWith } from './status.ts';
import { cliIo } from './io.ts';
import {
  applyOverrides,
  DEFAULT_PROFILE,
  loadProfile,
  ProfileError,
  UNIT_NAMES,
  type Profile,
} from '../eval/profile.ts';
import { BASELINE_DESIGN, costCells, type CellCost } from '../eval/cost.ts';
import { securityRow, type SecurityRow } from '../eval/security.ts';
import type { CellResult, Design } from '../eval/types.ts';
import { runMatrix, WORKLOAD_NAMES, type MatrixParams } from '../eval/matrix.ts';
import { BUILTIN_DESIGNS, loadDesigns } from '../eval/designs.ts';

/**
 * What the command needs from the matrix runner and the designs (scenarios/eval/matrix.ts and
 * designs.ts, built on another branch): the one place this command reaches them.
 */
export interface EvalRunner {
  /** the built-in designs, `none` first, then the presets */
  readonly designs: readonly Design[];
  /** a built-in design by name */
  designByName(name: string): Design | undefined;
  /** a user design file (YAML/JSON: one design or several); throws an error naming the file, the key and the reason */
  loadDesignFile(file: string): readonly Design[];
  /** the workloads, in the order the table shows them */
  readonly workloads: readonly string[];
  runMatrix(
    designs: readonly Design[],
    workloads: readonly string[],
    params: MatrixParams,
    onProgress?: (cell: CellResult, done: number, total: number) => void,
  ): CellResult[] | Promise<CellResult[]>;
}

/** The real runner: the matrix (scenarios/eval/matrix.ts) and the designs (designs.ts). */
async function loadEvalRunner(): Promise<EvalRunner> {
  return {
    designs: BUILTIN_DESIGNS,
    designByName: (n) => BUILTIN_DESIGNS.find((d) => d.name === n),
    loadDesignFile: (f) => loadDesigns(f),
    workloads: WORKLOAD_NAMES,
    runMatrix,
  };
}

/** Where the command gets its runner (a test points `load` at its own). */
export const evalRunner: { load: () => Promise<EvalRunner> } = { load: loadEvalRunner };

interface PoliciesArgs {
  policies?: string[];
  workloads?: string[];
  design: string[];
  profile?: string;
  set: string[];
  security: boolean;
  json: boolean;
}

const list = (xs: readonly string[] | undefined): string[] =>
  (xs ?? [])
    .flatMap((x) => String(x).split(','))
    .map((x) => x.trim())
    .filter(Boolean);

export const policiesCommand: CommandModule<object, PoliciesArgs> = {
  command: 'policies',
  describe:
    'compare hypervisor designs for the SMMU on the same workloads: traps, hypercalls, commands, memory, modeled time against none, and (--security) the attacks each blocks',
  builder: (y) =>
    y
      .option('policies', {
        type: 'string',
        array: true,
        describe:
          'designs to compare (comma-separated or repeated): none and the presets (pkvm, pkvm-v6, pkvm-pv, pkvm-pv-idmap, pkvm-wp, pkvm-block, pkvm-shared-s2); default: all of them. none always runs: it is the baseline',
      })
      .option('workloads', {
        type: 'string',
        array: true,
        describe: 'workloads to run (comma-separated or repeated); default: all of them',
      })
      .option('design', {
        type: 'string',
        array: true,
        default: [] as string[],
        describe: 'a design file of your own (YAML or JSON; repeatable), added to the designs',
      })
      .option('profile', {
        type: 'string',
        describe: `the cost profile (YAML or JSON; default ${DEFAULT_PROFILE.replace(/^.*\/scenarios\//, 'scenarios/')})`,
      })
      .option('set', {
        type: 'string',
        array: true,
        default: [] as string[],
        describe: 'override one unit cost for this run: --set trap=800 (ns; repeatable)',
      })
      .option('security', {
        type: 'boolean',
        default: false,
        describe:
          'also run the host attack catalog (pkvm-attacks) under every design: which attacks the isolation oracle finds blocked',
      })
      .option('json', {
        type: 'boolean',
        default: false,
        describe:
          'print an array of one object per (design, workload): every metric, the modeled time and its breakdown, the overhead against none, the security row and the profile used',
      })
      .epilog(EPILOG),
  handler: async (a) => {
    const problems: string[] = [];
    let runner: EvalRunner;
    try {
      runner = await evalRunner.load();
    } catch (e) {
      cliIo.err.write(`smmulab policies: ${(e as Error).message}\n`);
      exitWith(2);
      return;
    }
    // 1. every input, checked before anything runs
    const designs: Design[] = [];
    const seen = new Set<string>();
    const add = (d: Design, where: string): void => {
      if (seen.has(d.name)) problems.push(`${where}: design "${d.name}" is named twice`);
      else {
        seen.add(d.name);
        designs.push(d);
      }
    };
    const names = a.policies === undefined ? runner.designs.map((d) => d.name) : list(a.policies);
    if (a.policies !== undefined && !names.length)
      problems.push('--policies: names no design (give a comma-separated list)');
    for (const n of names) {
      const d = runner.designByName(n);
      if (!d)
        problems.push(
          `--policies ${n}: no such design (designs: ${runner.designs.map((x) => x.name).join(', ')}; a design of your own goes in --design FILE)`,
        );
      else if (!seen.has(n)) add(d, `--policies ${n}`);
    }
    for (const f of list(a.design)) {
      try {
        for (const d of runner.loadDesignFile(f)) add(d, `--design ${f}`);
      } catch (e) {
        problems.push(
          `--design ${f}${f === resolve(f) ? '' : ` (${resolve(f)})`}: ${(e as Error).message}`,
        );
      }
    }
    const workloads =
      a.workloads === undefined ? [...runner.workloads] : [...new Set(list(a.workloads))];
    if (a.workloads !== undefined && !workloads.length)
      problems.push('--workloads: names no workload (give a comma-separated list)');
    for (const w of workloads)
      if (!runner.workloads.includes(w))
        problems.push(
          `--workloads ${w}: no such workload (workloads: ${runner.workloads.join(', ')})`,
        );
    let profile: Profile | null = null;
    try {
      profile = applyOverrides(loadProfile(a.profile ?? DEFAULT_PROFILE), list(a.set));
    } catch (e) {
      if (!(e instanceof ProfileError)) throw e;
      problems.push(
        ...e.problems.map((p) => (p.startsWith('--set ') ? p : `--profile ${e.file}: ${p}`)),
      );
    }
    if (problems.length || !profile) {
      for (const p of problems) cliIo.err.write(`smmulab policies: ${p}\n`);
      exitWith(2);
      return;
    }
    // the baseline runs first, whatever was asked, so that every overhead has its reference
    const baseline = runner.designByName(BASELINE_DESIGN);
    if (baseline && !seen.has(BASELINE_DESIGN)) designs.unshift(baseline);

    // 2. the matrix, then the prices
    const total = designs.length * workloads.length;
    const cells = await runner.runMatrix(designs, workloads, {}, (c, done) =>
      cliIo.err.write(
        `policies: [${done}/${total}] ${c.design} × ${c.workload}${c.error ? `: ${c.error}` : ''}\n`,
      ),
    );
    const costs = costCells(cells, profile);

    // 3. the security rows
    const security = new Map<string, SecurityRow>();
    if (a.security)
      for (const [i, d] of designs.entries()) {
        cliIo.err.write(`policies: security [${i + 1}/${designs.length}] ${d.name}\n`);
        security.set(d.name, securityRow(d));
      }

    // 4. the result
    const byName = new Map(designs.map((d) => [d.name, d]));
    if (a.json)
      cliIo.out.write(
        JSON.stringify(
          cells.map((c, i) => cellJson(c, costs[i]!, security.get(c.design) ?? null, profile)),
          null,
          2,
        ) + '\n',
      );
    else cliIo.out.write(formatPolicies(cells, costs, [...security.values()], profile) + '\n');

    const shouldBlock = (name: string): boolean => {
      const p = byName.get(name)?.policy;
      return p !== null && p !== undefined && p.weaken.size === 0;
    };
    const breach =
      cells.some((c) => !c.isolation.ok && shouldBlock(c.design)) ||
      [...security.values()].some((r) => r.unexpected > 0);
    exitWith(breach ? 1 : 0);
  },
};

/** The profile as the JSON shows it: enough to reproduce the prices. */
function profileJson(p: Profile): Record<string, unknown> {
  return {
    name: p.name,
    file: p.file,
    overrides: p.overrides,
    units: Object.fromEntries(
      p.units.map((u) => [
        u.name,
        { ns: u.ns, kind: u.kind, metric: u.metric, group: u.group, source: u.source },
      ]),
    ),
  };
}

function cellJson(
  c: CellResult,
  cost: CellCost,
  security: SecurityRow | null,
  profile: Profile,
): Record<string, unknown> {
  return {
    design: c.design,
    workload: c.workload,
    params: c.params,
    metrics: c.metrics,
    isolation: c.isolation,
    ...(c.error ? { error: c.error } : {}),
    modeled: {
      totalNs: cost.totalNs,
      perOpNs: cost.perOpNs,
      byGroup: cost.byGroup,
      byUnit: cost.byUnit,
      overhead: cost.overhead,
    },
    security,
    profile: profileJson(profile),
  };
}

const us = (ns: number): string => (ns / 1000).toFixed(ns >= 100_000 ? 0 : ns >= 10_000 ? 1 : 2);

/** The overhead column: +µs per op and the ratio to none. */
function overheadCell(c: CellCost): string {
  if (c.design === BASELINE_DESIGN) return 'baseline';
  const o = c.overhead;
  if (!o) return '-';
  const sign = o.perOpNs >= 0 ? '+' : '-';
  const r = o.ratio;
  const ratio = r === null ? '' : ` ×${r.toFixed(r < 10 ? 2 : r < 100 ? 1 : 0)}`;
  return `${sign}${us(Math.abs(o.perOpNs))}${ratio}`;
}

/** The terminal view: the matrix (and the security rows), each table within 100 columns. */
export function formatPolicies(
  cells: readonly CellResult[],
  costs: readonly CellCost[],
  security: readonly SecurityRow[],
  profile: Profile,
): string {
  const out: string[] = [];
  out.push(
    table(
      [
        'design',
        'workload',
        'ops',
        'traps',
        'hcalls',
        'cmds',
        'faults',
        'µs/op',
        'vs none',
        'isol.',
      ],
      cells.map((c, i) => {
        const m = c.metrics;
        if (c.notApplicable) return [c.design, c.workload, 'n/a', '', '', '', '', '', '', ''];
        return [
          c.design,
          c.workload,
          m.ops,
          m.traps,
          m.hypercalls,
          m.hwCommands,
          m.dmaFaults,
          c.error ? 'error' : us(costs[i]!.perOpNs),
          c.error ? '-' : overheadCell(costs[i]!),
          // with no hypervisor nothing is protected: the oracle's view of it is not a verdict
          c.design === BASELINE_DESIGN ? '-' : c.isolation.ok ? 'ok' : `BREACH`,
        ];
      }),
      [16, 14, 6, 7, 7, 6, 5, 7, 13, 8],
      true,
    ),
  );
  const errors = cells.filter((c) => c.error);
  for (const c of errors) out.push(fit(`error: ${c.design} × ${c.workload}: ${c.error}`));
  const sets = Object.entries(profile.overrides).map(([k, v]) => `${k}=${v}`);
  out.push(
    'traps: host data aborts into the hypervisor; hcall: hypercalls; cmds: commands the SMMU',
    'consumed; flt: device DMAs that faulted. isol.: the isolation oracle after every phase.',
    `µs/op: modeled time per operation, Σ count × unit cost, profile "${profile.name}"${sets.length ? ` (--set ${sets.join(' ')})` : ''};`,
    'vs none: the extra µs per operation and the ratio. --json has every count and the breakdown.',
  );
  if (security.length) {
    out.push('');
    out.push(
      table(
        ['design', 'blocked', 'breached', 'unexp.', 'panics', 'n/a', 'err.', 'gives up'],
        security.map((r) => [
          r.design,
          r.blocked,
          r.breached,
          r.unexpected,
          r.panics,
          r.notApplicable,
          r.errors,
          givesUpShort(r.givesUp),
        ]),
        [16, 9, 10, 8, 8, 5, 6, 29],
      ),
    );
    out.push(
      'security: the host attack catalog (pkvm-attacks) under each design, judged by the isolation',
      'oracle alone. unexp.: breaches on a design that should block them (a hypervisor with no rule',
      'off). panics: availability outcomes, counted apart. n/a: the attack does not apply (no SMMU',
      'MMIO under pv, no bare form under none). err.: the run could not start. gives up: see --json.',
    );
    for (const r of security.filter((x) => x.errors)) {
      const first = r.attacks.find((x) => x.verdict === 'error')!;
      const why = (first.why ?? '').split('\n').pop()!.trim();
      out.push(
        fit(`error: ${r.design}: ${r.errors} attacks could not run: ${first.attack}: ${why}`),
      );
    }
    for (const r of security.filter((x) => x.unexpected))
      for (const a of r.attacks.filter((x) => x.verdict === 'breached' && x.expected === false))
        out.push(`BREACH ${r.design}: ${a.attack} (${(a.paths ?? []).join(', ')})`);
  }
  return out.join('\n');
}

/** One line within 100 columns (the full text is in --json). */
const fit = (line: string): string => {
  const one = line.replace(/\s*\n\s*/g, ' ');
  return one.length <= 100 ? one : one.slice(0, 99) + '…';
};

/** The gives-up column: the axis choices and the rules off, named; the full lines are in --json. */
function givesUpShort(lines: readonly string[]): string {
  const rules = lines.filter((l) => l.startsWith('rule ')).map((l) => l.split(' ')[1]);
  const other = lines.filter((l) => !l.startsWith('rule ')).map((l) => l.replace(/: .*/, ''));
  const v6 = other.some((l) => l.startsWith('the v6-era gaps'));
  return (
    [...other, ...(rules.length && !v6 ? [`rules off: ${rules.join(', ')}`] : [])].join('; ') || '-'
  );
}

const EPILOG = [
  'Each design runs each workload on a fresh machine; every count is what the simulation did.',
  `Modeled time prices the counts: Σ count × unit cost (ns) over the profile's units (${UNIT_NAMES.join(', ')}), each with its source and whether it is quoted, derived or estimated (scenarios/eval/profiles/default.yaml). --set unit=ns changes one for a run.`,
  '--security runs the host attack catalog under every design: an attack is blocked when the isolation oracle finds no breach at the end of its run; a hypervisor panic is reported apart (availability). Paravirtual designs give the host no SMMU MMIO: the catalog is n/a there.',
  'Exit status: 0; 1 an isolation breach on a design that should block it (a hypervisor design with no sanitizer rule off); 2 bad input (named: the option, file or key, and why).',
].join('\n\n');
