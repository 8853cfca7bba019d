/**
 * The shrinking of the fuzz engine (scenarios/fuzz/engine.ts `shrink`, for either
 * target): a bounded minimizer of a failing list of operations
 * that ends, when its budget allows, at a 1-minimal list (removing any one remaining item makes
 * the test pass), the simplification of operations' values, and the shrink of one failure
 * built from them.
 *
 * The test of a candidate list replays it on a fresh machine. Its cost grows with the list's
 * length, so the long runs are cut first, cheaply, by removing chunks (ddmin's complements,
 * from half the list down to two items, one pass per size, going on after each removal rather
 * than starting over), and only then are single items removed, pass after pass, until a whole
 * pass removes nothing: that last pass is the proof of 1-minimality. Items of one kind (writes
 * to one register) are also left out two, four, ... at a time: writes that toggle a register
 * back and forth can go only so.
 *
 * A test may answer with fewer items than it was given: a replay stops at the first failure,
 * so what failed is the candidate's prefix up to it (the rest was never run). That prefix is
 * what is kept.
 */

/**
 * The replays one failure's shrink may spend by default. Most failures are 1-minimal within a
 * few hundred; a long run of a failure that rests on much state (a stream table and its caches,
 * a command queue walked through errors) takes one to three thousand replays of hundreds of
 * operations each: about a minute. 400, the budget before, left those at about 1,000 operations.
 */
export const SHRINK_BUDGET = 2000;

/** A shrink's budget of replays, shared by its phases. */
export class Budget {
  used = 0;
  constructor(public limit: number) {}
  get left(): number {
    return this.limit - this.used;
  }
}

/**
 * A candidate's test: null when it does not fail as wanted, else what failed: the candidate
 * itself or a prefix of it. The minimizer charges each call one unit of the budget; a test that
 * replays more than once charges the others itself (`budget.used++`).
 */
export type ShrinkTest<T> = (candidate: readonly T[]) => readonly T[] | null;

export interface MinimizeOptions<T> {
  /** the most budget one test may spend (default 1): no test starts with less left */
  cost?: number;
  /** before the chunks, the last item alone, the last two, four, ... (short, cheap replays; default false) */
  suffixes?: boolean;
  /** the chunk passes (default true); false: single removals only (a list already cut down) */
  chunks?: boolean;
  /**
   * The kind of an item: items of one kind are also left out together, in chunks of 2, 4, ...
   * consecutive ones of that kind (after the chunks, and after the single removals, which then
   * run again): what can go only in pairs, as writes that toggle a register, does.
   */
  kindOf?: (item: T) => string;
}

export interface Minimized<T> {
  items: T[];
  /** every remaining item was tried alone, on this very list, and none could go */
  oneMinimal: boolean;
}

/**
 * Shrink `items` (which fail `test`) to a list that still fails and, unless the budget ran out
 * first, is 1-minimal. Deterministic: the same test answers give the same calls and result.
 */
export function minimize<T>(
  items: readonly T[],
  test: ShrinkTest<T>,
  budget: Budget,
  o: MinimizeOptions<T> = {},
): Minimized<T> {
  const cost = Math.max(1, o.cost ?? 1);
  let cur = items.slice();
  const spent = (): Minimized<T> => ({ items: cur, oneMinimal: false });
  /** the test's answer, or undefined when the budget does not allow one more */
  const attempt = (cand: T[]): readonly T[] | null | undefined => {
    if (budget.left < cost) return undefined;
    budget.used++;
    return test(cand);
  };
  const all = (): boolean => true;
  /**
   * One pass from the end over the items `among` picks out, leaving out `size` consecutive ones
   * of them at a time (going on before each chunk left out): whether any was, undefined when
   * the budget ran out.
   */
  const pass = (size: number, among: (item: T) => boolean): boolean | undefined => {
    let removed = false;
    for (let hi = Infinity; hi > 0;) {
      const at: number[] = [];
      cur.forEach((it, i) => among(it) && at.push(i));
      hi = Math.min(hi, at.length);
      const lo = Math.max(0, hi - size);
      if (hi === 0 || (size > 1 && lo === 0 && hi === cur.length)) break; // (the whole list only one by one: the empty list)
      const out = new Set(at.slice(lo, hi));
      const r = attempt(cur.filter((_, i) => !out.has(i)));
      if (r === undefined) return undefined;
      if (r) {
        cur = r.slice();
        removed = true;
      }
      hi = lo;
    }
    return removed;
  };
  /** chunks of each kind's items, largest kind first: whether any was left out, undefined when the budget ran out */
  const kinds = (kindOf: (item: T) => string): boolean | undefined => {
    const count = new Map<string, number>();
    for (const it of cur) count.set(kindOf(it), (count.get(kindOf(it)) ?? 0) + 1);
    let removed = false;
    // (a stable sort: kinds of one count in order of first appearance)
    for (const k of [...count.keys()].sort((a, b) => count.get(b)! - count.get(a)!)) {
      const n = cur.filter((it) => kindOf(it) === k).length;
      for (let size = 2 ** Math.floor(Math.log2(Math.max(n, 1))); size >= 2; size /= 2) {
        const r = pass(size, (it) => kindOf(it) === k);
        if (r === undefined) return undefined;
        removed ||= r;
      }
    }
    return removed;
  };
  if (o.suffixes) {
    for (let keep = 1; keep < cur.length; keep *= 2) {
      const r = attempt(cur.slice(cur.length - keep));
      if (r === undefined) return spent();
      if (r) {
        cur = r.slice();
        break;
      }
    }
  }
  if (o.chunks ?? true) {
    // chunks of half the list, a quarter, ... down to two items
    for (
      let size = Math.ceil(cur.length / 2);
      size >= 2;
      size = Math.min(Math.ceil(size / 2), Math.ceil(cur.length / 2))
    ) {
      if (pass(size, all) === undefined) return spent();
    }
    if (o.kindOf && kinds(o.kindOf) === undefined) return spent();
  }
  for (;;) {
    // single items, to a fixpoint: a pass that removes nothing has tried each on the final list
    for (let removed = true; removed;) {
      const r = pass(1, all);
      if (r === undefined) return spent();
      removed = r;
    }
    if (!o.kindOf) return { items: cur, oneMinimal: true };
    // items that can go only together with others of their kind (a register toggled back and
    // forth); then the single removals again, to prove the shorter list 1-minimal
    const r = kinds(o.kindOf);
    if (r === undefined) return spent();
    if (!r) return { items: cur, oneMinimal: true };
  }
}

/**
 * The kind of a fuzzer's operation (for `kindOf`): its step, and the register or address an
 * access goes to, the call a hypervisor or guest step makes, and the actor when not the host.
 */
export function opKind(op: { op: string; actor?: string; addr?: number; call?: string }): string {
  const who = op.actor && op.actor !== 'host' ? ` ${op.actor}` : '';
  return `${op.op}${who}${op.addr !== undefined && op.op !== 'race' ? ` 0x${op.addr.toString(16)}` : ''}${op.call ? ` ${op.call}` : ''}`;
}

/** The operations whose values `simplifyValues` tries to make simpler (both fuzzers' `cmd` and `memwrite`). */
export type Simplifiable = { op: string; commands?: readonly unknown[]; hex?: string };

/**
 * Simpler values, from the last operation back: fewer commands in a `cmd` step (each one left
 * out in turn), zeroed 32-bit words in a `memwrite` (of at least two words, and at most
 * `maxHex` hex digits). Each candidate that still fails is kept.
 */
export function simplifyValues<T extends Simplifiable>(
  ops: readonly T[],
  test: ShrinkTest<T>,
  budget: Budget,
  o: { cost?: number; maxHex?: number } = {},
): { items: T[]; changed: boolean } {
  const cost = Math.max(1, o.cost ?? 1);
  const maxHex = o.maxHex ?? Infinity;
  let cur = ops.slice();
  let changed = false;
  const attempt = (i: number, op: T): void => {
    budget.used++;
    const cand = cur.slice();
    cand[i] = op;
    const r = test(cand);
    if (!r) return;
    cur = r.slice();
    changed = true;
  };
  for (let i = cur.length - 1; i >= 0 && budget.left >= cost; i--) {
    const op0 = cur[i];
    if (op0?.op === 'cmd' && (op0.commands?.length ?? 0) > 1) {
      for (let j = op0.commands!.length - 1; j >= 0 && budget.left >= cost; j--) {
        const op = cur[i];
        const cmds = op?.commands;
        if (!op || op.op !== 'cmd' || !cmds || cmds.length < 2 || j >= cmds.length) continue;
        attempt(i, { ...op, commands: cmds.filter((_, k) => k !== j) });
      }
    } else if (
      op0?.op === 'memwrite' &&
      (op0.hex?.length ?? 0) >= 16 &&
      op0.hex!.length <= maxHex
    ) {
      for (let w = 0; budget.left >= cost; w++) {
        const op = cur[i];
        const hx = op?.hex;
        if (!op || op.op !== 'memwrite' || hx === undefined || w * 8 >= hx.length) break;
        const word = hx.slice(w * 8, w * 8 + 8);
        if (/^0*$/.test(word)) continue;
        attempt(i, {
          ...op,
          hex: hx.slice(0, w * 8) + '0'.repeat(word.length) + hx.slice(w * 8 + 8),
        });
      }
    }
  }
  return { items: cur, changed };
}

/** What shrinking needs to know of a fuzzer: plans `P` (a machine and its prologue), operations `T`, replays `R`. */
export interface ShrinkSubject<P, T, R> {
  /** a fresh machine from `plan`, its prologue, then `ops` until the first failure */
  replay(plan: P, ops: readonly T[]): R;
  /** the signature of the failure a replay found (undefined: none) */
  signature(r: R): string | undefined;
  /** the operations a replay ran, up to and including the one after which it failed */
  failed(r: R): T[];
  /** the plan with the weakened rules the failure needs restored; null when it needs none */
  restored(plan: P): P | null;
  /** the plan without prologue step `i`, or null when that step must stay */
  dropStep(plan: P, i: number): P | null;
  /** steps in the plan's prologue */
  prologueLength(plan: P): number;
  /** start with the suffixes (MinimizeOptions) */
  suffixes?: boolean;
  /** operations of a kind are also left out together (MinimizeOptions) */
  kindOf?: (op: T) => string;
  /** memory writes longer than this many hex digits keep their values */
  maxHex?: number;
}

export interface ShrunkFailure<P, T, R> {
  plan: P;
  ops: T[];
  /** the replay of the result; null when the failure did not reproduce from the operations alone */
  exec: R | null;
  /** replays spent (at most the budget) */
  runs: number;
  /** no single remaining operation can be removed (each was tried on the result); false: the budget ran out first */
  oneMinimal: boolean;
}

/** Tests: sees every `shrinkFailure`, its subject (the replay it used) and its result. */
export const SHRINK_OBSERVER: {
  fn:
    | (<P, T, R>(
        s: ShrinkSubject<P, T, R>,
        signature: string,
        result: ShrunkFailure<P, T, R>,
      ) => void)
    | null;
} = { fn: null };

/**
 * Shrink one failure, in at most `budget` replays: the operations to a 1-minimal list
 * (`minimize`), then simpler values and a shorter prologue, and single operations again when
 * either changed anything (either can make an operation unneeded). A candidate is kept when a
 * fresh replay of it fails with the same signature.
 *
 * A failure that needs weakened rules must still need them: with them restored its replay must
 * not fail the same way. That is checked once, on the result (a list from which no operation
 * can go without losing the failure cannot lose one under the stricter test either); only when
 * the result fails that check is the shrink done again from the start with the check on every
 * kept candidate (two replays each).
 */
export function shrinkFailure<P, T extends Simplifiable, R>(
  s: ShrinkSubject<P, T, R>,
  plan0: P,
  ops0: readonly T[],
  signature: string,
  budget: number,
): ShrunkFailure<P, T, R> {
  const result = shrinkOnce(s, plan0, ops0, signature, budget);
  SHRINK_OBSERVER.fn?.(s, signature, result);
  return result;
}

function shrinkOnce<P, T extends Simplifiable, R>(
  s: ShrinkSubject<P, T, R>,
  plan0: P,
  ops0: readonly T[],
  signature: string,
  budget: number,
): ShrunkFailure<P, T, R> {
  const spend = new Budget(budget);
  /** whether the failure is gone with the needed rules restored (charging that replay) */
  const needsHold = (p: P, ops: readonly T[]): boolean => {
    const fixed = s.restored(p);
    if (!fixed) return true;
    spend.used++;
    return s.signature(s.replay(fixed, ops)) !== signature;
  };
  spend.used++;
  const first = s.replay(plan0, ops0);
  if (s.signature(first) !== signature || (spend.left > 0 && !needsHold(plan0, ops0)))
    return { plan: plan0, ops: ops0.slice(), exec: null, runs: spend.used, oneMinimal: false };

  const run = (eager: boolean): ShrunkFailure<P, T, R> => {
    const cost = eager && s.restored(plan0) ? 2 : 1;
    let plan = plan0;
    let best = first;
    const test = (p: P, ops: readonly T[]): R | null => {
      const r = s.replay(p, ops);
      return s.signature(r) === signature && (!eager || needsHold(p, ops)) ? r : null;
    };
    const opsTest = (ops: readonly T[]): T[] | null => {
      const r = test(plan, ops);
      if (!r) return null;
      best = r;
      return s.failed(r);
    };
    const m = minimize(s.failed(first), opsTest, spend, {
      cost,
      suffixes: s.suffixes ?? false,
      kindOf: s.kindOf,
    });
    let oneMinimal = m.oneMinimal;
    const values = simplifyValues(m.items, opsTest, spend, { cost, maxHex: s.maxHex });
    let cur = values.items;
    let changed = values.changed;
    for (let i = s.prologueLength(plan) - 1; i >= 0 && spend.left >= cost; i--) {
      const p2 = s.dropStep(plan, i);
      if (!p2) continue;
      spend.used++;
      const r = test(p2, cur);
      if (r) {
        plan = p2;
        best = r;
        cur = s.failed(r);
        changed = true;
      }
    }
    if (changed) {
      const again = minimize(cur, opsTest, spend, { cost, chunks: false, kindOf: s.kindOf });
      cur = again.items;
      oneMinimal = again.oneMinimal;
    }
    return { plan, ops: cur, exec: best, runs: spend.used, oneMinimal };
  };

  if (!s.restored(plan0)) return run(true);
  // (one replay kept for the check)
  spend.limit--;
  const lazy = run(false);
  spend.limit++;
  if (spend.left > 0 && needsHold(lazy.plan, lazy.ops)) return { ...lazy, runs: spend.used };
  // the result is a failure of the hypervisor with the rules restored too (or could not be
  // checked): again, checking every candidate
  return run(true);
}
