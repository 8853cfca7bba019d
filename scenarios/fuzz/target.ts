/**
 * What the fuzz engine (scenarios/fuzz/engine.ts) asks of a target, the side of the machine
 * whose hostile operations a campaign runs: the malicious host (target-host.ts) or the
 * malicious guests (target-guest.ts). A target is
 *  - a planner: what a machine is (its configuration and prologue, drawn from the episode's
 *    random stream), how it is rebuilt with other weakened rules and cut down by a shrink;
 *  - an executor: a trial on one fresh machine, which runs one hostile operation at a time
 *    and checks the invariants after it (cheap checks after every operation, the full
 *    isolation oracle every `checkEvery` operations when the state changed, and at the end);
 *  - an attacker: the operation generator, built once the machine's prologue has run, from
 *    what the acting side can see;
 *  - reproducer probes: how a finding becomes a scenario file, and how a replay of that file
 *    shows it reproduces.
 * The engine does everything else once for both: the episodes and the campaign loop, the
 * prologue, the source of operations, exceptions and panics, blame, shrinking, the reproducer
 * replay, workers, shards and the merge.
 */
import type { RunContext } from '../engine/context.ts';
import type { RunResult } from '../engine/runner.ts';
import type { MachineConfig } from '../engine/schema.ts';
import type { PkvmHyp } from '../../hyp/pkvm.ts';
import type { FailurePolicy, RuleName } from '../../hyp/policy/policy.ts';
import type { Rng } from '../../host/malicious/grammar.ts';
import type { FuzzOptions } from './options.ts';
import type { FindingKind } from './result.ts';
import type { Simplifiable } from './shrink.ts';

/** A scenario step in its validated form. */
export type Step = { op: string; [k: string]: unknown };

/** A hostile operation: a scenario step the attacker made. */
export type Operation = Simplifiable & { op: string };

/** One machine's set-up. */
export interface Plan {
  episode: number;
  /** the first iteration run on this machine */
  firstIteration: number;
  machine: MachineConfig;
  failure: FailurePolicy;
  weaken: RuleName[];
  raw: boolean;
  /** the steps run before the hostile operations */
  prologue: readonly Step[];
}

/** A failure a trial detected. */
export interface Detected {
  kind: FindingKind;
  signature: string;
  detail: string;
}

export type Panic = { rule: string; reason: string };

/** One machine's run. */
export interface Execution<Op, D extends Detected> {
  /** set when the prologue itself failed (a shrink candidate that cut it too far) */
  invalid?: string;
  executed: Op[];
  found: D | null;
  /** index of the operation after which it was found (executed.length - 1 at the end) */
  foundAt: number;
  panic: Panic | null;
  commands: number;
  opcodes: Record<string, number>;
  registers: Record<string, { read: number; write: number }>;
  kinds: Record<string, number>;
}

export interface ExecOptions {
  /** full oracle check cadence (operations) */
  checkEvery: number;
  /** collect coverage */
  coverage: boolean;
  /** keep the machine in the result (for the target's reproducer probes) */
  keep?: boolean;
}

/** One fresh machine, as the target runs and checks it. */
export interface Trial<Op, D extends Detected, V> {
  ctx: RunContext;
  hyp: PkvmHyp;
  /** after each prologue step */
  afterPrologueStep(): void;
  /** after the prologue: the state the checks start from */
  ready(): void;
  /** what the attacker aims with */
  view(): V;
  /**
   * Run operation `idx` (recorded in the execution already) and check what it did: null when
   * the machine's run goes on; else it ends there, with this finding, or (ENDED, execute.ts)
   * with what the execution holds already (a panic, an exception).
   */
  run(op: Op, idx: number): D | { readonly ended: true } | null;
  /** every check, the full oracle forced (the end of the machine's run) */
  finish(opNo: number): D | null;
}

/** A (shrunk) failure, as its reproducer is written. */
export interface Reproducible<P, Op, D> {
  o: FuzzOptions;
  plan: P;
  /** the operations, shrunk */
  ops: readonly Op[];
  found: D;
  panic: Panic | null;
  /** the weakened rules it needs */
  needs: readonly RuleName[];
  /** the operations before shrinking */
  original: number;
  /** the iteration it was found in */
  iteration: number;
}

export interface FuzzTarget<
  P extends Plan,
  Op extends Operation,
  D extends Detected,
  V,
  R extends Execution<Op, D> = Execution<Op, D>,
> {
  name: 'host' | 'guest';
  /** what an exception out of the attacker's own reads interrupted (for its detail) */
  aiming: string;
  /**
   * A prologue that fails on a fresh machine is counted as a failure (an unexpected exception,
   * `exception:prologue:…`); otherwise the machine ends its episode with nothing counted.
   */
  prologueFailures: boolean;

  // ---- planner
  plan(o: FuzzOptions, episode: number, firstIteration: number, rng: Rng): P;
  /** the same machine under another set of weakened rules */
  withWeaken(p: P, weaken: RuleName[]): P;
  /** the machine without prologue step `i`, or null when a shrink may not drop it */
  dropStep(p: P, i: number): P | null;
  /** shrinkFailure's options: start with the last operations alone; leave long memory writes' values */
  shrink: { suffixes?: boolean; maxHex?: number };

  // ---- executor and invariants
  trial(plan: P, eo: ExecOptions, res: R): Trial<Op, D, V>;

  // ---- attacker
  attacker(rng: Rng, plan: P, view: V): { next(): Op[] };

  // ---- reproducer probes
  /** the reproducer scenario of a (shrunk) failure */
  scenario(f: Reproducible<P, Op, D>): Record<string, unknown>;
  /** whether the replay `r` of the reproducer (its last operation is step `lastOp`) fails with the finding */
  reproduces(r: RunResult, signature: string, found: D, lastOp: number): boolean;
}
