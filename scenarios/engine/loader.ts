/**
 * Loading scenarios: a built-in name or a JSON/YAML file. Validation errors name the file,
 * the step index and the field, and all of them are reported at once.
 */
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs';
import { dirname, join, resolve, basename, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { zScenarioFile, zMachine, formatIssues, type MachineConfig } from './schema.ts';
import { STEPS } from '../steps/index.ts';

export const BUILTIN_DIR = join(dirname(fileURLToPath(import.meta.url)), '../builtin');

export interface Scenario {
  name: string;
  description: string;
  file: string;
  machine: MachineConfig;
  /** the hypervisors it runs under (the file's "variants", else the machine's own) */
  variants: HypMode[];
  /** validated steps (each the output of its op's schema), with the step's `when` if it has one */
  steps: Array<{ op: string; when?: HypMode[]; [k: string]: unknown }>;
}

/** A run's hypervisor: none, pKVM with the hardened policy (or the machine's), or pKVM with the v6-era policy. */
export type HypMode = 'none' | 'pkvm' | 'pkvm-v6';
export const HYP_MODES: readonly HypMode[] = ['none', 'pkvm', 'pkvm-v6'];

export class ScenarioError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: invalid scenario\n  ${problems.join('\n  ')}`);
    this.name = 'ScenarioError';
  }
}

/** Built-in scenarios and catalogs (folders of scenarios, such as pkvm-attacks). */
export function builtinNames(): string[] {
  if (!existsSync(BUILTIN_DIR)) return [];
  return readdirSync(BUILTIN_DIR)
    .filter((f) => /\.(json|ya?ml)$/.test(f) || statSync(join(BUILTIN_DIR, f)).isDirectory())
    .map((f) => basename(f, extname(f)))
    .sort();
}

function scenarioFilesIn(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => /\.(json|ya?ml)$/.test(f))
    .sort()
    .map((f) => join(dir, f));
}

/**
 * Load a scenario, or every scenario of a catalog (a built-in folder, or any folder given as
 * a path), in file-name order.
 */
export function loadScenarios(nameOrPath: string): Scenario[] {
  const builtinDir = join(BUILTIN_DIR, nameOrPath);
  const dir =
    existsSync(builtinDir) && statSync(builtinDir).isDirectory()
      ? builtinDir
      : existsSync(nameOrPath) && statSync(nameOrPath).isDirectory()
        ? resolve(nameOrPath)
        : null;
  if (dir) {
    const files = scenarioFilesIn(dir);
    if (!files.length)
      throw new ScenarioError(dir, ['the folder holds no .json/.yaml scenario files']);
    return files.map((f) => parseScenarioText(readText(f), f));
  }
  return [loadScenario(nameOrPath)];
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new ScenarioError(file, [`cannot read: ${(e as Error).message}`]);
  }
}

/** Resolve a built-in scenario name or a path to a file path. */
export function resolveScenario(nameOrFile: string): string {
  for (const ext of ['.json', '.yaml', '.yml']) {
    const p = join(BUILTIN_DIR, nameOrFile + ext);
    if (existsSync(p)) return p;
  }
  const p = resolve(nameOrFile);
  if (existsSync(p)) return p;
  throw new ScenarioError(nameOrFile, [
    `no built-in scenario of that name and no such file (built-ins: ${builtinNames().join(', ')})`,
  ]);
}

export function parseScenarioText(text: string, file: string): Scenario {
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new ScenarioError(file, [
      `not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(e as Error).message}`,
    ]);
  }
  const problems: string[] = [];
  const top = zScenarioFile.safeParse(raw);
  if (!top.success) throw new ScenarioError(file, formatIssues(top.error.issues, ''));
  const machine = zMachine.safeParse(top.data.machine ?? {});
  if (!machine.success) problems.push(...formatIssues(machine.error.issues, 'machine: '));
  const steps: Scenario['steps'] = [];
  top.data.steps.forEach((st, i) => {
    const op = typeof st === 'object' && st !== null ? (st as { op?: unknown }).op : undefined;
    if (typeof op !== 'string') {
      problems.push(`step ${i}: field "op": every step needs an "op" string`);
      return;
    }
    const def = STEPS.get(op);
    if (!def) {
      problems.push(
        `step ${i}: field "op": unknown op "${op}" (known: ${[...STEPS.keys()].join(', ')})`,
      );
      return;
    }
    // `when` (any step): run the step only under that hypervisor (or any of a list)
    const { when, ...rest } = st as { when?: unknown };
    const whenList = when === undefined ? undefined : Array.isArray(when) ? when : [when];
    if (whenList && (!whenList.length || whenList.some((x) => !HYP_MODES.includes(x as HypMode))))
      problems.push(
        `step ${i} (op "${op}"): field "when": must be one of ${HYP_MODES.map((m) => `"${m}"`).join(', ')} or a list of them`,
      );
    const r = def.schema.safeParse(rest);
    if (!r.success) problems.push(...formatIssues(r.error.issues, `step ${i} (op "${op}"): `));
    else
      steps.push({
        ...(r.data as Scenario['steps'][number]),
        ...(whenList ? { when: whenList as HypMode[] } : {}),
      });
  });
  if (problems.length) throw new ScenarioError(file, problems);
  return {
    name: top.data.name ?? basename(file, extname(file)),
    description: top.data.description ?? '',
    file,
    machine: machine.data!,
    variants: top.data.variants ?? [machine.data!.hyp],
    steps,
  };
}

export function loadScenario(nameOrFile: string): Scenario {
  const file = resolveScenario(nameOrFile);
  if (statSync(file).isDirectory())
    throw new ScenarioError(file, ['is a folder (a catalog): load it with loadScenarios']);
  return parseScenarioText(readText(file), file);
}
