/**
 * Shrinking (scenarios/shrink.ts): the generic minimizer against synthetic predicates (it finds
 * exactly the needed items of a monotone failure, is 1-minimal for any failure, keeps to its
 * budget, and is deterministic), and the simplification of values.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Budget, minimize, simplifyValues, type ShrinkTest } from '../../scenarios/shrink.ts';

/** A random list of distinct items, and a random subset of it: the items a failure needs. */
const listAndNeeded = fc.uniqueArray(fc.integer({ min: 0, max: 10_000 }), { maxLength: 60 }).chain((items) =>
  fc.tuple(fc.constant(items), fc.subarray(items)));

/** A test that counts its calls. */
function counted<T>(test: ShrinkTest<T>): { test: ShrinkTest<T>; calls: () => number } {
  let n = 0;
  return { test: (c) => (n++, test(c)), calls: () => n };
}

/** Whether every item of `needed` is in `cand`. */
const hasAll = (cand: readonly number[], needed: readonly number[]): boolean => needed.every((x) => cand.includes(x));

/** A deterministic hash of a list (for failures that are not monotone). */
function hash(xs: readonly number[]): number {
  let h = 2166136261;
  for (const x of xs) h = Math.imul(h ^ x, 16777619) >>> 0;
  return h;
}

describe('minimize', () => {
  it('a monotone failure (it fails while the needed items are all there): exactly the needed items, in order, 1-minimal', () => {
    fc.assert(fc.property(listAndNeeded, ([items, needed]) => {
      const c = counted<number>((cand) => (hasAll(cand, needed) ? cand : null));
      const budget = new Budget(10 * items.length + 10);
      const m = minimize(items, c.test, budget);
      expect(m.items).toEqual(needed);
      expect(m.oneMinimal).toBe(true);
      // charged once per call, and within the budget (about 4 calls per item at worst)
      expect(budget.used).toBe(c.calls());
      expect(c.calls()).toBeLessThanOrEqual(4 * items.length + 2);
    }), { numRuns: 300 });
  });

  it('a test that answers with a prefix (a replay stops at its failure): the needed items', () => {
    fc.assert(fc.property(listAndNeeded, ([items, needed]) => {
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
    }), { numRuns: 200 });
  });

  it('any failure: what is left still fails and is 1-minimal, or the budget said so; never more calls than the budget', () => {
    fc.assert(fc.property(listAndNeeded, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 400 }), fc.boolean(), ([items, needed], salt, limit, suffixes) => {
      const o = { suffixes };
      // not monotone: some supersets of the needed items pass, some subsets of a failing list fail
      const fails = (cand: readonly number[]): boolean => hasAll(cand, needed) && (cand.length === items.length || (hash(cand) + salt) % 3 !== 0);
      const c = counted<number>((cand) => (fails(cand) ? cand : null));
      const budget = new Budget(limit);
      const m = minimize(items, c.test, budget, o);
      expect(c.calls()).toBeLessThanOrEqual(limit);
      expect(budget.used).toBe(c.calls());
      expect(fails(m.items)).toBe(true);
      expect(hasAll(m.items, needed)).toBe(true);
      if (m.oneMinimal) for (let i = 0; i < m.items.length; i++) expect(fails(m.items.filter((_, k) => k !== i))).toBe(false);
      // with budget enough it always proves it
      const big = minimize(items, (cand) => (fails(cand) ? cand : null), new Budget(100_000), o);
      expect(big.oneMinimal).toBe(true);
      // deterministic
      expect(minimize(items, (cand) => (fails(cand) ? cand : null), new Budget(limit), o)).toEqual(m);
    }), { numRuns: 300 });
  });

  it('a test that costs two (and charges the second itself) never takes the budget past its limit', () => {
    fc.assert(fc.property(listAndNeeded, fc.integer({ min: 1, max: 200 }), ([items, needed], limit) => {
      const budget = new Budget(limit);
      const m = minimize(items, (cand) => {
        if (!hasAll(cand, needed)) return null;
        budget.used++;
        return cand;
      }, budget, { cost: 2 });
      expect(budget.used).toBeLessThanOrEqual(limit);
      expect(hasAll(m.items, needed)).toBe(true);
    }), { numRuns: 200 });
  });

  it('the chunks cut a long list with few needed items in few calls; the empty list is tried', () => {
    const items = Array.from({ length: 2000 }, (_, i) => i);
    const c = counted<number>((cand) => (cand.includes(1234) && cand.includes(77) ? cand : null));
    const m = minimize(items, c.test, new Budget(400));
    expect(m).toEqual({ items: [77, 1234], oneMinimal: true });
    expect(c.calls()).toBeLessThan(60);
    expect(minimize([5], () => [], new Budget(5))).toEqual({ items: [], oneMinimal: true });
    // no budget: nothing tried, nothing proven
    expect(minimize([1, 2], (cand) => cand, new Budget(0))).toEqual({ items: [1, 2], oneMinimal: false });
  });
});

describe('simplifyValues', () => {
  it('leaves out the commands and zeroes the words a failure does not need', () => {
    type Op = { op: string; commands?: string[]; hex?: string };
    const ops: Op[] = [{ op: 'memwrite', hex: '11111111222222223333333344444444' }, { op: 'cmd', commands: ['A', 'B', 'C'] }, { op: 'dma' }];
    // the failure needs command B and the second word of the write
    const test = (cand: readonly Op[]): Op[] | null => (cand[1]!.commands!.includes('B') && cand[0]!.hex!.slice(8, 16) === '22222222' ? cand.slice() : null);
    const budget = new Budget(100);
    const s = simplifyValues(ops, test, budget);
    expect(s.changed).toBe(true);
    expect(s.items).toEqual([{ op: 'memwrite', hex: '00000000222222220000000000000000' }, { op: 'cmd', commands: ['B'] }, { op: 'dma' }]);
    // each of the 3 commands tried out, each of the 4 words tried zeroed
    expect(budget.used).toBe(7);
    // a write longer than maxHex keeps its value
    expect(simplifyValues(ops, test, new Budget(100), { maxHex: 16 }).items[0]).toEqual(ops[0]);
  });
});
