/**
 * The cost profile: one unit cost, in ns, per kind of event the evaluation counts, each with
 * where the figure comes from (`source`) and how (`kind`: quoted from it, derived by arithmetic
 * on quoted figures, or estimated with no source). A unit prices one metric (METRICS,
 * scenarios/eval/metrics.ts): modeled time = Σ count × ns (scenarios/eval/cost.ts).
 *
 * The units the model knows are declared once below (UNITS: the metric each prices by default
 * and the breakdown group it adds to); a profile file must give every one of them, may point a
 * unit at another metric (`metric:`), and may add units of its own as long as they name the
 * metric they price and their group. The default profile is profiles/default.yaml.
 *
 * A profile is a YAML or JSON file (by extension, else by its first character):
 *
 *   name: my-board
 *   description: one line
 *   units:
 *     trap: { ns: 419, kind: quoted, source: "kvm-unit-tests mmio_read_vgic, Neoverse N1" }
 *     …
 *
 * Everything is checked before anything is used, and every problem is reported at once:
 * a ProfileError names the file, the key and the reason (the CLI exits 2 on it).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { METRICS, type MetricName } from './metrics.ts';

/** How a unit cost was obtained (costs.md: V, D, E). */
export const COST_KINDS = ['quoted', 'derived', 'estimated'] as const;
export type CostKind = (typeof COST_KINDS)[number];

/** The breakdown groups, in the order a report shows them. */
export const COST_GROUPS = [
  'trap',
  'hypercall',
  'command',
  'sync',
  'walk',
  'ownership',
  'reshadow',
  'kernel',
] as const;
export type CostGroup = (typeof COST_GROUPS)[number];

/**
 * The units the model prices: each one the metric it prices by default, its breakdown group,
 * and what one of it is. The metrics priced are disjoint counts (traps = mmioTraps + memory
 * traps, memoryTraps = steStoreTraps + s2Faults, and cmdSyncs ⊂ hwCommands are priced through
 * their parts or as an extra, so nothing is charged twice).
 */
export const UNITS = {
  trap: {
    metric: 'mmioTraps',
    group: 'trap',
    what: "a host access to the SMMU's registers trapped to the hypervisor and emulated there",
  },
  wpTrap: {
    metric: 'steStoreTraps',
    group: 'trap',
    what: 'a host store to its write-protected stream table, taken and emulated into the shadow',
  },
  s2Fault: {
    metric: 's2Faults',
    group: 'trap',
    what: "a host CPU stage-2 fault that maps a page lazily (the SMMU shares the CPU's stage 2)",
  },
  hypercall: {
    metric: 'hypercalls',
    group: 'hypercall',
    what: 'one host hypercall into the hypervisor and back (HVC)',
  },
  hostCommand: {
    metric: 'hostCommands',
    group: 'command',
    what: "the hypervisor's read, copy and check of one host command from the host queue",
  },
  command: {
    metric: 'hwCommands',
    group: 'command',
    what: 'one command written to the hardware queue and consumed by the SMMU (any opcode)',
  },
  sync: {
    metric: 'cmdSyncs',
    group: 'sync',
    what: 'the wait for one CMD_SYNC to complete, beyond its command slot',
  },
  iotlbHit: {
    metric: 'iotlbHits',
    group: 'walk',
    what: 'a DMA translated from the IOTLB',
  },
  walkRead: {
    metric: 'descReads',
    group: 'walk',
    what: 'one descriptor read from memory by a table walk (stage 1 or stage 2)',
  },
  ownership: {
    metric: 'ownershipChanges',
    group: 'ownership',
    what: 'one page changing owner or sharing state (both sides checked, both stage-2s updated)',
  },
  dmaRefcount: {
    metric: 'dmaRefcounts',
    group: 'ownership',
    what: "one page's ownership check and DMA refcount change in a paravirtual map_pages / unmap_pages",
  },
  blockSplit: {
    metric: 'blockSplits',
    group: 'ownership',
    what: 'one stage-2 block split into a table of pages (break-before-make) on a donation',
  },
  reshadow: {
    metric: 'reshadows',
    group: 'reshadow',
    what: 'one stream table entry copied, sanitized and installed in the shadow table',
  },
  kernelMap: {
    metric: 'maps',
    group: 'kernel',
    what: "the host kernel's own work in one dma_map (IOVA allocation, page-table update)",
  },
  kernelUnmap: {
    metric: 'unmaps',
    group: 'kernel',
    what: "the host kernel's own work in one dma_unmap (page-table update, IOVA free, gather)",
  },
} as const satisfies Record<string, { metric: MetricName; group: CostGroup; what: string }>;
export type BuiltinUnit = keyof typeof UNITS;
export const UNIT_NAMES = Object.keys(UNITS) as BuiltinUnit[];

/** One unit of a validated profile. */
export interface CostUnit {
  readonly name: string;
  readonly ns: number;
  readonly kind: CostKind;
  readonly source: string;
  readonly metric: MetricName;
  readonly group: CostGroup;
  /** what one of it is (the file's `note`, else the built-in description) */
  readonly what: string;
}

/** A validated profile: every metric priced by exactly one unit. */
export interface Profile {
  readonly name: string;
  readonly description: string;
  /** where it was read from */
  readonly file: string;
  readonly units: readonly CostUnit[];
  /** the `--set` overrides applied, unit → ns */
  readonly overrides: Readonly<Record<string, number>>;
}

/** A profile (or a --set override) that cannot be used: the CLI exits 2 on it. */
export class ProfileError extends Error {
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super(`${file}: invalid cost profile\n  ${problems.join('\n  ')}`);
    this.name = 'ProfileError';
  }
}

export const DEFAULT_PROFILE = join(
  dirname(fileURLToPath(import.meta.url)),
  'profiles/default.yaml',
);

const METRIC_NAMES = Object.keys(METRICS) as MetricName[];
const isMetric = (s: string): s is MetricName => Object.prototype.hasOwnProperty.call(METRICS, s);
const isBuiltinUnit = (s: string): s is BuiltinUnit =>
  Object.prototype.hasOwnProperty.call(UNITS, s);

const zUnit = z.strictObject({
  ns: z.unknown().optional(),
  kind: z.unknown().optional(),
  source: z.unknown().optional(),
  metric: z.unknown().optional(),
  group: z.unknown().optional(),
  note: z.unknown().optional(),
});
const zFile = z.strictObject({
  name: z.string().optional(),
  description: z.string().optional(),
  units: z.record(z.string(), z.unknown()),
});

/** A non-negative, finite number of ns (a number, or a string holding one), or the reason it is not. */
export function parseNs(v: unknown): number | string {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  if (typeof v !== 'number' && typeof v !== 'string')
    return `must be a number of ns, got ${v === null ? 'null' : typeof v}`;
  if (!Number.isFinite(n)) return `must be a number of ns, got ${JSON.stringify(v)}`;
  if (n < 0) return `must not be negative, got ${n}`;
  return n;
}

/** Parse and validate a profile's text (`file` names it in errors and chooses YAML or JSON). */
export function parseProfile(text: string, file: string): Profile {
  let raw: unknown;
  const yaml = /\.ya?ml$/i.test(file) || (!/\.json$/i.test(file) && !/^\s*[{[]/.test(text));
  try {
    raw = yaml ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new ProfileError(file, [`not valid ${yaml ? 'YAML' : 'JSON'}: ${(e as Error).message}`]);
  }
  const top = zFile.safeParse(raw);
  if (!top.success)
    throw new ProfileError(
      file,
      top.error.issues.map((i) =>
        i.code === 'unrecognized_keys'
          ? `unknown key ${i.keys.map((k) => `"${k}"`).join(', ')} at the top level (allowed: name, description, units)`
          : `${i.path.length ? `"${i.path.join('.')}"` : 'the file'}: ${i.message}`,
      ),
    );
  const problems: string[] = [];
  const units: CostUnit[] = [];
  for (const [name, body] of Object.entries(top.data.units)) {
    const at = `units.${name}`;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      problems.push(`${at}: must be an object {ns, kind, source}, got ${JSON.stringify(body)}`);
      continue;
    }
    const r = zUnit.safeParse(body);
    if (!r.success) {
      for (const i of r.error.issues)
        problems.push(
          i.code === 'unrecognized_keys'
            ? `${at}: unknown key ${i.keys.map((k) => `"${k}"`).join(', ')} (a unit has ns, kind, source, and optionally metric, group, note)`
            : `${at}${i.path.length ? '.' + i.path.join('.') : ''}: ${i.message}`,
        );
      continue;
    }
    const u = r.data;
    const builtin = isBuiltinUnit(name) ? UNITS[name] : null;
    const before = problems.length;
    const ns = u.ns === undefined ? 'is missing' : parseNs(u.ns);
    if (typeof ns === 'string') problems.push(`${at}.ns: ${ns}`);
    if (u.kind === undefined)
      problems.push(`${at}.kind: is missing (one of ${COST_KINDS.join(', ')})`);
    else if (!COST_KINDS.includes(u.kind as CostKind))
      problems.push(
        `${at}.kind: ${JSON.stringify(u.kind)} is not a kind (one of ${COST_KINDS.join(', ')})`,
      );
    if (typeof u.source !== 'string' || !u.source.trim())
      problems.push(
        `${at}.source: ${u.source === undefined ? 'is missing' : 'must be a non-empty string'} (where the figure comes from, or why it is an estimate)`,
      );
    let metric: MetricName | null = builtin?.metric ?? null;
    if (u.metric !== undefined) {
      if (typeof u.metric !== 'string' || !isMetric(u.metric)) {
        problems.push(
          `${at}.metric: ${JSON.stringify(u.metric)} is not a metric (metrics: ${METRIC_NAMES.join(', ')})`,
        );
        metric = null;
      } else metric = u.metric;
    } else if (!builtin)
      problems.push(
        `${at}: unknown unit "${name}" (built-in units: ${UNIT_NAMES.join(', ')}; a unit of your own must name the metric it prices and its group)`,
      );
    let group: CostGroup | null = builtin?.group ?? null;
    if (u.group !== undefined) {
      if (!COST_GROUPS.includes(u.group as CostGroup)) {
        problems.push(
          `${at}.group: ${JSON.stringify(u.group)} is not a group (one of ${COST_GROUPS.join(', ')})`,
        );
        group = null;
      } else group = u.group as CostGroup;
    } else if (!builtin && u.metric !== undefined)
      problems.push(`${at}.group: is missing (one of ${COST_GROUPS.join(', ')})`);
    if (u.note !== undefined && typeof u.note !== 'string')
      problems.push(`${at}.note: must be a string`);
    if (problems.length > before || metric === null || group === null) continue;
    units.push({
      name,
      ns: ns as number,
      kind: u.kind as CostKind,
      source: (u.source as string).trim(),
      metric,
      group,
      what: (u.note as string | undefined) ?? builtin?.what ?? name,
    });
  }
  for (const n of UNIT_NAMES)
    if (!(n in top.data.units))
      problems.push(
        `units.${n}: is missing (${UNITS[n].what}; it prices ${UNITS[n].metric}): every unit needs a cost`,
      );
  // every metric the model prices has exactly one unit
  const byMetric = new Map<MetricName, string[]>();
  for (const u of units) byMetric.set(u.metric, [...(byMetric.get(u.metric) ?? []), u.name]);
  for (const [metric, names] of byMetric)
    if (names.length > 1)
      problems.push(
        `units.${names[1]}.metric: ${metric} is already priced by units.${names[0]} (a count is charged once)`,
      );
  if (!problems.length)
    for (const n of UNIT_NAMES) {
      const m = UNITS[n].metric;
      if (!byMetric.has(m))
        problems.push(
          `units: no unit prices ${m} (${METRICS[m]}); units.${n} priced it before it was pointed elsewhere`,
        );
    }
  if (problems.length) throw new ProfileError(file, problems);
  return {
    name: top.data.name ?? file.replace(/^.*\//, '').replace(/\.(ya?ml|json)$/i, ''),
    description: top.data.description ?? '',
    file,
    units,
    overrides: {},
  };
}

/** Read and validate a profile file (the default profile without one). */
export function loadProfile(file: string = DEFAULT_PROFILE): Profile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ProfileError(file, [`cannot read: ${(e as Error).message}`]);
  }
  return parseProfile(text, file);
}

/**
 * Apply `name=value` overrides (ns) to a profile. All are checked first; an unknown unit, a
 * malformed pair or a bad value throws a ProfileError naming `--set` and the pair, and the
 * profile is left as it was.
 */
export function applyOverrides(p: Profile, sets: readonly string[]): Profile {
  if (!sets.length) return p;
  const problems: string[] = [];
  const values = new Map<string, number>();
  const names = new Set(p.units.map((u) => u.name));
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq <= 0) {
      problems.push(`--set ${s}: expected unit=ns (units: ${[...names].join(', ')})`);
      continue;
    }
    const name = s.slice(0, eq).trim();
    const v = parseNs(s.slice(eq + 1).trim());
    if (!names.has(name))
      problems.push(`--set ${s}: unknown unit "${name}" (units: ${[...names].join(', ')})`);
    else if (typeof v === 'string') problems.push(`--set ${s}: ${name} ${v}`);
    else values.set(name, v);
  }
  if (problems.length) throw new ProfileError(p.file, problems);
  return {
    ...p,
    units: p.units.map((u) =>
      values.has(u.name)
        ? {
            ...u,
            ns: values.get(u.name)!,
            kind: 'estimated',
            source: `--set ${u.name}=${values.get(u.name)} (was ${u.ns} ns: ${u.source})`,
          }
        : u,
    ),
    overrides: { ...p.overrides, ...Object.fromEntries(values) },
  };
}
