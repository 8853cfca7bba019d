/**
 * Reproducers, for either target: a hostile operation as a scenario file step, the parts of a
 * reproducer scenario every target writes alike (its machine, its name), its replay the way
 * `smmulab run` does it, and the files `--out` writes.
 */
import { SMMU_BASE } from '../../hw/machine.ts';
import { SMMU_MMIO_SIZE, regNameAt, regByName } from '../../hw/smmu/regs.ts';
import { runScenario, type RunResult } from '../engine/runner.ts';
import { parseScenarioText } from '../engine/loader.ts';
import type { MachineConfig } from '../engine/schema.ts';
import type { FuzzResult } from './result.ts';
import type { Operation } from './target.ts';

export function hexs(v: number | bigint): string {
  return '0x' + v.toString(16);
}

/** A hostile operation as a scenario file step (64-bit values and addresses as "0x…" strings). */
export function stepJson(op: Operation): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const o = op as Operation & { addr?: number; size?: number; value?: bigint; comment?: string };
  for (const [k, v] of Object.entries(op)) {
    if (v === undefined) continue;
    if (typeof v === 'bigint') out[k] = hexs(v);
    else if ((k === 'addr' || (k === 'size' && op.op === 'hyp')) && typeof v === 'number')
      out[k] = hexs(v);
    else out[k] = v;
  }
  if ((op.op === 'write' || op.op === 'read') && !o.comment) {
    const off = o.addr! - SMMU_BASE;
    if (off >= 0 && off < SMMU_MMIO_SIZE)
      out.comment = `${regNameAt(off)}${op.op === 'write' ? ` = 0x${o.value!.toString(16)}` : ''}${o.size !== (regByName(regNameAt(off))?.width ?? o.size) ? ` (${o.size}-byte access)` : ''}`;
  }
  return out;
}

/** A reproducer's machine, as its scenario file holds it. */
export function machineJson(m: MachineConfig): Record<string, unknown> {
  return {
    hyp: 'pkvm',
    ramBase: hexs(m.ramBase!),
    ramSize: hexs(m.ramSize!),
    hypMemory: { base: hexs(m.hypMemory!.base), size: hexs(m.hypMemory!.size) },
    devices: m.devices,
    policy: m.policy,
    failure: m.failure,
    ...(m.weaken ? { weaken: m.weaken } : {}),
    ...(m.allowAts ? { allowAts: true } : {}),
    ...(m.smmu ? { smmu: m.smmu } : {}),
  };
}

/** A reproducer's name: its campaign, iteration and signature. */
export function scenarioName(
  prefix: string,
  seed: number,
  iteration: number,
  signature: string,
): string {
  return `${prefix}-s${seed}-i${iteration}-${signature
    .replace(/[^a-z0-9]+/gi, '-')
    .replace(/-+$/, '')
    .slice(0, 60)}`;
}

/** Replay a reproducer the way `smmulab run` does (JSON text → loader → runner). */
export function replayScenario(sc: Record<string, unknown>): { r: RunResult; failures: string[] } {
  const parsed = parseScenarioText(JSON.stringify(sc), `${String(sc.name)}.json`);
  const r = runScenario(parsed);
  const failures = r.failed.map(
    (f) =>
      `step ${f.step} ${f.op}: expected ${JSON.stringify(f.expected)}, got ${JSON.stringify(f.actual)}${f.message ? ` (${f.message})` : ''}`,
  );
  return { r, failures };
}

/** An oracle breach reproduces when the isolation step fails with a breach of the same path. */
export function oracleBreachReplays(r: RunResult, path: string): boolean {
  return (
    r.failed.some((f) => f.op === 'isolation') &&
    (r.isolation?.breaches.some((b) => b.path === path) ?? false)
  );
}

/**
 * An exception reproduces when a step fails with the same exception, or (a hypervisor data
 * abort, CpuAbortError) with an abort `hypAbort` says is not the acting side's own.
 */
export function exceptionReplays(
  r: RunResult,
  signature: string,
  hypAbort: (message: string) => boolean,
): boolean {
  const name = signature.split(':')[1]!;
  return r.failed.some(
    (f) =>
      (f.expected === 'step completes' && String(f.actual).startsWith(name)) ||
      (name === 'CpuAbortError' && f.actual === 'abort' && hypAbort(f.message ?? '')),
  );
}

/**
 * Write each finding's reproducer into `dir` (created if needed, one level at a time); returns
 * the paths. Each file is written whole or not at all (a temporary file renamed into place).
 * A file that cannot be written (a full disk…) does not stop the others: `r.reproducers` lists
 * those written, and then the error names every file that failed.
 */
export async function writeReproducers(r: FuzzResult, dir: string): Promise<string[]> {
  const { renameSync, rmSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { makeDirs } = await import('../cli/out-path.ts');
  const out: string[] = [];
  r.reproducers = out;
  if (!r.findings.some((f) => f.scenario)) return out;
  try {
    makeDirs(dir);
  } catch (e) {
    throw new Error(`cannot create the folder ${dir}: ${(e as Error).message}`, { cause: e });
  }
  const failed: string[] = [];
  for (const f of r.findings) {
    if (!f.scenario) continue;
    const file = join(dir, `${String(f.scenario.name)}.json`);
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, JSON.stringify(f.scenario, null, 1) + '\n');
      renameSync(tmp, file);
    } catch (e) {
      rmSync(tmp, { force: true });
      failed.push(`cannot write ${file}: ${(e as Error).message}`);
      continue;
    }
    f.reproducer = file;
    out.push(file);
  }
  if (failed.length) throw new Error(failed.join('; '));
  return out;
}
