/**
 * What a fuzzing campaign finds and counts, for either target: a finding, the coverage, the
 * result of a campaign (or of one shard of it), and the merge of shard results.
 */
import type { FailurePolicy, RuleName, PolicyName } from '../../hyp/policy/policy.ts';
import { OPCODES } from '../../hw/smmu/commands.ts';
import type { FailureChoice, FuzzOptions } from './options.ts';

export interface FuzzProgress {
  iterations: number;
  operations: number;
  findings: number;
  panics: number;
  seconds: number;
}

export type FindingKind = 'breach' | 'exception' | 'invariant';

export interface FuzzFinding {
  kind: FindingKind;
  /** what identifies the failure across runs: kind and path / exception / invariant */
  signature: string;
  detail: string;
  /** the iteration during which it was detected */
  iteration: number;
  /** hostile operations the machine had run when it was detected (including the one that triggered it) */
  operations: number;
  /** the machine's hypervisor set-up */
  policy: string;
  failure: FailurePolicy;
  weaken: RuleName[];
  raw: boolean;
  /**
   * The weakened rules this failure needs (restoring any one of them makes the reproducer
   * pass); empty for a failure of the hypervisor as it is (with every rule on)
   */
  needs: RuleName[];
  /**
   * What tells this failure apart from the others, in a run and across its shards: its
   * signature and the rules it was blamed on when found (findingKey), which is also its key in
   * failuresBySignature. `needs` may narrow after shrinking; the key does not, so a later
   * failure of the same key is never kept as a second finding.
   */
  key: string;
  /** after shrinking */
  minimalOperations?: number;
  /** replays the shrink spent (at most the budget) */
  shrinkRuns?: number;
  /** the shrink ended at a 1-minimal reproducer (removing any one of its operations makes it pass); false: its budget ran out first */
  oneMinimal?: boolean;
  /** the reproducer scenario (JSON) */
  scenario?: Record<string, unknown>;
  /** its file, once written */
  reproducer?: string;
  /** `smmulab run` of the reproducer: whether it fails with this finding */
  replay?: { reproduces: boolean; failures: string[] };
}

export interface FuzzCoverage {
  /** host commands submitted, by opcode (RESERVED for raw reserved opcodes) */
  opcodes: Record<string, number>;
  /** host accesses to each trapped register (the hypervisor's emulation table); "other" for any other SMMU offset */
  registers: Record<string, { read: number; write: number }>;
  /** operations by kind */
  operations: Record<string, number>;
}

export interface FuzzResult {
  seed: number;
  iterations: number;
  operations: number;
  commands: number;
  /** fresh machines built */
  machines: number;
  /** failures that are isolation breaches (each failure ends its machine) */
  breaches: number;
  /** failures that are JavaScript exceptions from hypervisor or model code */
  unexpectedExceptions: number;
  /** failures that are broken hypervisor invariants (with no breach) */
  invariantViolations: number;
  /** machines stopped by a modeled hypervisor panic (an allowed outcome) */
  panics: number;
  operationsPerSecond: number;
  seconds: number;
  target: 'host' | 'guest';
  policy: PolicyName;
  weaken: RuleName[];
  failure: FailureChoice;
  resetEvery: number;
  workers: number;
  panicsByRule: Record<string, number>;
  /** failures by signature (and the weakened rules they need) */
  failuresBySignature: Record<string, number>;
  coverage: FuzzCoverage;
  /** one per distinct signature (the first iteration that showed it), shrunk */
  findings: FuzzFinding[];
  reproducers: string[];
  /** set when the stop flag (FuzzOptions.stop) ended the campaign before all its episodes ran */
  interrupted?: true;
}

/** Failures are told apart by their signature and by the weakened rules they need. */
export function findingKey(signature: string, needs: readonly string[]): string {
  return needs.length ? `${signature} [needs ${needs.join('+')}]` : signature;
}

export function emptyCoverage(): FuzzCoverage {
  return { opcodes: {}, registers: {}, operations: {} };
}

/** The counts a result adds up, before anything ran. */
const COUNTS = [
  'iterations',
  'operations',
  'commands',
  'machines',
  'breaches',
  'unexpectedExceptions',
  'invariantViolations',
  'panics',
] as const;
type Counts = Record<(typeof COUNTS)[number], number>;
const zeroCounts = (): Counts => Object.fromEntries(COUNTS.map((k) => [k, 0])) as Counts;

/** A campaign's result before anything ran. */
export function emptyResult(o: FuzzOptions, target: 'host' | 'guest'): FuzzResult {
  return {
    seed: o.seed,
    ...zeroCounts(),
    operationsPerSecond: 0,
    seconds: 0,
    target,
    policy: o.policy ?? 'pkvm',
    weaken: [...(o.weaken ?? [])],
    failure: o.failure ?? 'mixed',
    resetEvery: o.resetEvery ?? 1000,
    workers: 1,
    panicsByRule: {},
    failuresBySignature: {},
    coverage: emptyCoverage(),
    findings: [],
    reproducers: [],
  };
}

export function mergeCoverage(into: FuzzCoverage, c: FuzzCoverage): void {
  for (const [k, v] of Object.entries(c.opcodes)) into.opcodes[k] = (into.opcodes[k] ?? 0) + v;
  for (const [k, v] of Object.entries(c.operations))
    into.operations[k] = (into.operations[k] ?? 0) + v;
  for (const [k, v] of Object.entries(c.registers)) {
    const e = (into.registers[k] ??= { read: 0, write: 0 });
    e.read += v.read;
    e.write += v.write;
  }
}

/** Merge shard results: counts add up, findings keep the first iteration of each signature. */
export function mergeResults(o: FuzzOptions, parts: FuzzResult[], seconds: number): FuzzResult {
  const res: FuzzResult = {
    ...parts[0]!,
    ...zeroCounts(),
    panicsByRule: {},
    failuresBySignature: {},
    coverage: emptyCoverage(),
    findings: [],
    reproducers: [],
    workers: parts.length,
  };
  for (const p of parts) {
    for (const k of COUNTS) res[k] += p[k];
    for (const [k, v] of Object.entries(p.panicsByRule))
      res.panicsByRule[k] = (res.panicsByRule[k] ?? 0) + v;
    for (const [k, v] of Object.entries(p.failuresBySignature))
      res.failuresBySignature[k] = (res.failuresBySignature[k] ?? 0) + v;
    mergeCoverage(res.coverage, p.coverage);
  }
  const all = parts.flatMap((p) => p.findings).sort((a, b) => a.iteration - b.iteration);
  for (const f of all) if (!res.findings.some((x) => x.key === f.key)) res.findings.push(f);
  res.findings = res.findings.slice(0, o.maxReproducers ?? 8);
  delete res.interrupted;
  if (parts.some((p) => p.interrupted)) res.interrupted = true;
  res.seconds = seconds;
  res.operationsPerSecond = Math.round(res.operations / Math.max(seconds, 1e-9));
  res.coverage = sortCoverage(res.coverage);
  res.panicsByRule = sortKeys(res.panicsByRule);
  res.failuresBySignature = sortKeys(res.failuresBySignature);
  return res;
}

function sortKeys<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function sortCoverage(c: FuzzCoverage): FuzzCoverage {
  return {
    opcodes: sortKeys(c.opcodes),
    registers: sortKeys(c.registers),
    operations: sortKeys(c.operations),
  };
}

/** The registers of `registers` no operation touched, and the opcodes no command used. */
export function coverageGapsOf(
  c: FuzzCoverage,
  registers: readonly string[],
): { registers: string[]; opcodes: string[] } {
  return {
    registers: registers.filter(
      (n) => !c.registers[n] || c.registers[n]!.read + c.registers[n]!.write === 0,
    ),
    opcodes: OPCODES.map((d) => d.name as string).filter((n) => !c.opcodes[n]),
  };
}
