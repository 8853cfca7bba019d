/**
 * Shrinking (scenarios/fuzz/shrink.ts): the generic minimizer against synthetic predicates (it finds
 * exactly the needed items of a monotone failure, is 1-minimal for any failure, keeps to its
 * budget, and is deterministic), the simplification of values, and the fuzzers' shrinks of real
 * failures: from several seeds and weakened rules, host and guest, each reproducer still fails
 * and fails no more with any one of its operations left out (replayed as the shrinker replays).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  Budget,
  minimize,
  simplifyValues,
  shrinkFailure,
  SHRINK_OBSERVER,
  type ShrinkSubject,
  type ShrunkFailure,
  type ShrinkTest,
} from '../../../scenarios/fuzz/shrink.ts';
import { fuzz } from '../../../scenarios/fuzz/engine.ts';
import type { FuzzOptions } from '../../../scenarios/fuzz/options.ts';
import type { FuzzFinding } from '../../../scenarios/fuzz/result.ts';
import type { RuleName } from '../../../hyp/policy/policy.ts';

/** A random list of distinct items, and a random subset of it: the items a failure needs. */
const listAndNeeded = fc
  .uniqueArray(fc.integer({ min: 0, max: 10_000 }), { maxLength: 60 })
  .chain((items) => fc.tuple(fc.constant(items), fc.subarray(items)));

/** A test that counts its calls. */
function counted<T>(test: ShrinkTest<T>): { test: ShrinkTest<T>; calls: () => number } {
  let n = 0;
  return { test: (c) => (n++, test(c)), calls: () => n };
}

/** Whether every item of `needed` is in `cand`. */
const hasAll = (cand: readonly number[], needed: readonly number[]): boolean =>
  needed.every((x) => cand.includes(x));

/** A deterministic hash of a list (for failures that are not monotone). */
function hash(xs: readonly number[]): number {
  let h = 2166136261;
  for (const x of xs) h = Math.imul(h ^ x, 16777619) >>> 0;
  return h;
}

describe('minimize', () => {
  it('a monotone failure (it fails while the needed items are all there): exactly the needed items, in order, 1-minimal', () => {
    fc.assert(
      fc.property(listAndNeeded, ([items, needed]) => {
        const c = counted<number>((cand) => (hasAll(cand, needed) ? cand : null));
        const budget = new Budget(10 * items.length + 10);
        const m = minimize(items, c.test, budget);
        expect(m.items).toEqual(needed);
        expect(m.oneMinimal).toBe(true);
        // charged once per call, and within the budget (about 4 calls per item at worst)
        expect(budget.used).toBe(c.calls());
        expect(c.calls()).toBeLessThanOrEqual(4 * items.length + 2);
      }),
      { numRuns: 300 },
    );
  });

  it('a test that answers with a prefix (a replay stops at its failure): the needed items', () => {
    fc.assert(
      fc.property(listAndNeeded, ([items, needed]) => {
        // it fails once every needed item has been seen, and runs nothing after that
        const test = (cand: readonly number[]): number[] | null => {
          const seen = new Set<number>();
          for (let i = 0; i < cand.length; i++) {
            if (needed.includes(cand[i]!)) seen.add(cand[i]!);
            if (seen.size === needed.length) return cand.slice(0, i + 1);
          }
          return needed.length ? null : [];
        };
        const m = minimize(items, test, new Budget(10 * items.length + 10));
        expect(m.items).toEqual(needed);
        expect(m.oneMinimal).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('any failure: what is left still fails and is 1-minimal, or the budget said so; never more calls than the budget', () => {
    fc.assert(
      fc.property(
        listAndNeeded,
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 1, max: 400 }),
        fc.boolean(),
        fc.boolean(),
        ([items, needed], salt, limit, suffixes, byKind) => {
          const o = { suffixes, ...(byKind ? { kindOf: (x: number) => String(x % 3) } : {}) };
          // not monotone: some supersets of the needed items pass, some subsets of a failing list fail
          const fails = (cand: readonly number[]): boolean =>
            hasAll(cand, needed) && (cand.length === items.length || (hash(cand) + salt) % 3 !== 0);
          const c = counted<number>((cand) => (fails(cand) ? cand : null));
          const budget = new Budget(limit);
          const m = minimize(items, c.test, budget, o);
          expect(c.calls()).toBeLessThanOrEqual(limit);
          expect(budget.used).toBe(c.calls());
          expect(fails(m.items)).toBe(true);
          expect(hasAll(m.items, needed)).toBe(true);
          if (m.oneMinimal)
            for (let i = 0; i < m.items.length; i++)
              expect(fails(m.items.filter((_, k) => k !== i))).toBe(false);
          // with budget enough it always proves it
          const big = minimize(
            items,
            (cand) => (fails(cand) ? cand : null),
            new Budget(100_000),
            o,
          );
          expect(big.oneMinimal).toBe(true);
          // deterministic
          expect(
            minimize(items, (cand) => (fails(cand) ? cand : null), new Budget(limit), o),
          ).toEqual(m);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('items that can go only in pairs (a register toggled back and forth) go, with their kind', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), (n) => {
        // needed items (even) and, between them, writes that flip one bit (odd): the failure needs
        // every even item and the bit as the whole list leaves it
        const items = Array.from({ length: 2 * n }, (_, i) => i);
        const bit = (xs: readonly number[]): number => xs.filter((x) => x % 2 === 1).length % 2;
        const fails = (cand: readonly number[]): boolean =>
          cand.filter((x) => x % 2 === 0).length === n && bit(cand) === bit(items);
        const test = (cand: readonly number[]): readonly number[] | null =>
          fails(cand) ? cand : null;
        const kindOf = (x: number): string => (x % 2 === 1 ? 'toggle' : 'other');
        // without the kinds: each toggle alone flips the bit, and no chunk holds two toggles and no
        // needed item, so every toggle stays (1-minimal all the same)
        const plain = minimize(items, test, new Budget(100_000));
        expect(plain).toEqual({ items, oneMinimal: true });
        // with them, the toggles go two by two: the one the parity needs is left, if any
        const m = minimize(items, test, new Budget(100_000), { kindOf });
        expect(m.oneMinimal).toBe(true);
        expect(fails(m.items)).toBe(true);
        expect(m.items.filter((x) => x % 2 === 1).length).toBe(n % 2);
      }),
      { numRuns: 40 },
    );
  });

  it('a test that costs two (and charges the second itself) never takes the budget past its limit', () => {
    fc.assert(
      fc.property(listAndNeeded, fc.integer({ min: 1, max: 200 }), ([items, needed], limit) => {
        const budget = new Budget(limit);
        const m = minimize(
          items,
          (cand) => {
            if (!hasAll(cand, needed)) return null;
            budget.used++;
            return cand;
          },
          budget,
          { cost: 2 },
        );
        expect(budget.used).toBeLessThanOrEqual(limit);
        expect(hasAll(m.items, needed)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('the chunks cut a long list with few needed items in few calls; the empty list is tried', () => {
    const items = Array.from({ length: 2000 }, (_, i) => i);
    const c = counted<number>((cand) => (cand.includes(1234) && cand.includes(77) ? cand : null));
    const m = minimize(items, c.test, new Budget(400));
    expect(m).toEqual({ items: [77, 1234], oneMinimal: true });
    expect(c.calls()).toBeLessThan(60);
    expect(minimize([5], () => [], new Budget(5))).toEqual({ items: [], oneMinimal: true });
    // no budget: nothing tried, nothing proven
    expect(minimize([1, 2], (cand) => cand, new Budget(0))).toEqual({
      items: [1, 2],
      oneMinimal: false,
    });
  });
});

describe('simplifyValues', () => {
  it('leaves out the commands and zeroes the words a failure does not need', () => {
    type Op = { op: string; commands?: string[]; hex?: string };
    const ops: Op[] = [
      { op: 'memwrite', hex: '11111111222222223333333344444444' },
      { op: 'cmd', commands: ['A', 'B', 'C'] },
      { op: 'dma' },
    ];
    // the failure needs command B and the second word of the write
    const test = (cand: readonly Op[]): Op[] | null =>
      cand[1]!.commands!.includes('B') && cand[0]!.hex!.slice(8, 16) === '22222222'
        ? cand.slice()
        : null;
    const budget = new Budget(100);
    const s = simplifyValues(ops, test, budget);
    expect(s.changed).toBe(true);
    expect(s.items).toEqual([
      { op: 'memwrite', hex: '00000000222222220000000000000000' },
      { op: 'cmd', commands: ['B'] },
      { op: 'dma' },
    ]);
    // each of the 3 commands tried out, each of the 4 words tried zeroed
    expect(budget.used).toBe(7);
    // a write longer than maxHex keeps its value
    expect(simplifyValues(ops, test, new Budget(100), { maxHex: 16 }).items[0]).toEqual(ops[0]);
  });
});

describe('shrinkFailure', () => {
  // a synthetic fuzzer: a plan is whether the rule is weakened, with a prologue; an operation
  // is a number. With the rule weakened, operations 1 and 3 together fail; a hypervisor bug
  // fails the same way with the rule on too: 2 without 4
  type Plan = { weak: boolean; prologue: number[] };
  const subject = (
    log: string[] = [],
  ): ShrinkSubject<
    Plan,
    { op: string; id: number },
    { sig?: string; ran: Array<{ op: string; id: number }> }
  > => ({
    replay: (p, ops) => {
      log.push(
        `${p.weak ? 'weak' : 'fixed'} ${p.prologue.join('')}|${ops.map((o) => o.id).join('')}`,
      );
      const ids = ops.map((o) => o.id);
      const bug =
        (p.weak && ids.includes(1) && ids.includes(3)) || (ids.includes(2) && !ids.includes(4));
      return { sig: bug && p.prologue.includes(0) ? 'breach:x' : undefined, ran: ops.slice() };
    },
    signature: (r) => r.sig,
    failed: (r) => r.ran,
    restored: (p) => (p.weak ? { ...p, weak: false } : null),
    dropStep: (p, i) => (i >= 1 ? { ...p, prologue: p.prologue.filter((_, k) => k !== i) } : null),
    prologueLength: (p) => p.prologue.length,
  });
  const ops = [1, 2, 3, 4].map((id) => ({ op: 'x', id }));

  it('a failure that needs the weakened rule: the shortcut through the hypervisor bug is refused, the prologue shrunk', () => {
    // checked only at the end, the shrink first finds [2] (a failure with the rule on too),
    // then shrinks again checking every candidate
    const log: string[] = [];
    const r = shrinkFailure(
      subject(log),
      { weak: true, prologue: [0, 1, 2] },
      ops,
      'breach:x',
      1000,
    );
    expect(r.ops.map((o) => o.id)).toEqual([1, 3]);
    expect(r.plan).toEqual({ weak: true, prologue: [0] });
    expect(r.oneMinimal).toBe(true);
    expect(r.runs).toBe(log.length);
    expect(log).toContain('fixed 0|2');
    // the same again
    expect(
      shrinkFailure(subject(), { weak: true, prologue: [0, 1, 2] }, ops, 'breach:x', 1000),
    ).toEqual(r);
  });

  it('a budget too small to prove it: not 1-minimal, and never more replays than the budget', () => {
    for (let budget = 0; budget < 40; budget++) {
      const log: string[] = [];
      const r = shrinkFailure(
        subject(log),
        { weak: true, prologue: [0, 1, 2] },
        ops,
        'breach:x',
        budget,
      );
      expect(log.length).toBe(r.runs);
      expect(r.runs).toBeLessThanOrEqual(Math.max(budget, 1));
      if (r.exec) expect(subject().signature(subject().replay(r.plan, r.ops))).toBe('breach:x');
    }
  });

  it('a failure that does not reproduce from its operations: not shrunk', () => {
    const r = shrinkFailure(subject(), { weak: true, prologue: [1] }, ops, 'breach:x', 100);
    expect(r).toMatchObject({ exec: null, oneMinimal: false, ops });
  });
});

// ---- the fuzzers' shrinks of real failures ---------------------------------------------------

interface Seen {
  subject: ShrinkSubject<unknown, unknown, unknown>;
  signature: string;
  result: ShrunkFailure<unknown, unknown, unknown>;
}

/** A campaign's findings, with the shrinks it made (their subjects: the replay the shrinker used). */
function campaign(o: FuzzOptions): { findings: FuzzFinding[]; seen: Seen[] } {
  const seen: Seen[] = [];
  SHRINK_OBSERVER.fn = (subject, signature, result) => {
    seen.push({
      subject: subject as ShrinkSubject<unknown, unknown, unknown>,
      signature,
      result: result as ShrunkFailure<unknown, unknown, unknown>,
    });
  };
  try {
    return { findings: fuzz(o).findings, seen };
  } finally {
    SHRINK_OBSERVER.fn = null;
  }
}

/** Whether `ops` on `plan` fail as the shrinker wants: the signature, and not with the needed rules restored. */
function failsAsWanted(s: Seen, plan: unknown, ops: readonly unknown[]): boolean {
  const { subject } = s;
  if (subject.signature(subject.replay(plan, ops)) !== s.signature) return false;
  const fixed = subject.restored(plan);
  return !fixed || subject.signature(subject.replay(fixed, ops)) !== s.signature;
}

/** Seeds and weakened rules whose first findings come within a few hundred iterations. */
const CASES: ReadonlyArray<[string, FuzzOptions]> = [
  ['host queue-pin, seed 7', { seed: 7, weaken: ['queue-pin'] as RuleName[], iterations: 3000 }],
  [
    'host donate-tlbi, seed 1',
    { seed: 1, weaken: ['donate-tlbi'] as RuleName[], iterations: 3000 },
  ],
  ['host ste-config, seed 3', { seed: 3, weaken: ['ste-config'] as RuleName[], iterations: 3000 }],
  [
    'host ats-check, seed 1',
    { seed: 1, weaken: ['ats-check'] as RuleName[], allowAts: true, iterations: 3000 },
  ],
  [
    'guest vsid-owner, seed 2',
    { seed: 2, target: 'guest', weaken: ['vsid-owner'] as RuleName[], iterations: 3000 },
  ],
  [
    'guest vevt-vsid, seed 1',
    { seed: 1, target: 'guest', weaken: ['vevt-vsid'] as RuleName[], iterations: 3000 },
  ],
];

describe('the fuzzers shrink to 1-minimal reproducers', () => {
  for (const [name, o] of CASES) {
    it(`${name}: the shrunk operations fail, and fail no more without any one of them`, () => {
      const { findings, seen } = campaign({
        ...o,
        maxReproducers: 2,
        stopAfterFindings: 2,
        shrinkBudget: 1000,
      });
      expect(findings.length).toBeGreaterThan(0);
      expect(seen.length).toBe(findings.length);
      for (const [k, s] of seen.entries()) {
        const f = findings[k]!;
        const { plan, ops, runs, oneMinimal } = s.result;
        expect(runs).toBeLessThanOrEqual(1000);
        expect(f.signature).toBe(s.signature);
        expect({
          signature: f.signature,
          oneMinimal,
          minimal: f.minimalOperations,
          from: f.operations,
        }).toMatchObject({ oneMinimal: true, minimal: ops.length });
        expect(f.oneMinimal).toBe(true);
        expect(failsAsWanted(s, plan, ops)).toBe(true);
        for (let i = 0; i < ops.length; i++)
          expect(
            failsAsWanted(
              s,
              plan,
              ops.filter((_, j) => j !== i),
            ),
            `${f.signature}: without operation ${i} of ${ops.length}`,
          ).toBe(false);
        // and `smmulab run` replays the reproducer to the same failure
        expect(f.replay?.reproduces, JSON.stringify(f.replay)).toBe(true);
      }
    }, 60_000);
  }

  it('the same seed, the same shrink', () => {
    const o: FuzzOptions = {
      seed: 1,
      weaken: ['donate-tlbi'],
      iterations: 3000,
      maxReproducers: 1,
      stopAfterFindings: 1,
    };
    const strip = (f: FuzzFinding) => ({ ...f, replay: undefined });
    expect(fuzz(o).findings.map(strip)).toEqual(fuzz(o).findings.map(strip));
  }, 60_000);
});
