/**
 * Page ownership (hyp/mem/ownership.ts), as designs.md §1.8 describes pKVM's page states: every
 * transition checks every page first and then applies to all of them, or refuses and changes
 * nothing; a listener that vetoes undoes the transition.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  PageOwnership,
  OwnershipError,
  hostAccess,
  PAGE,
  type OwnershipChange,
  type PageState,
  type Owner,
} from '../../../hyp/mem/ownership.ts';

const A = 0x4100_0000;
const p = (i: number): number => A + i * PAGE;

/** a snapshot of the whole table, to prove a refusal changed nothing */
const snap = (o: PageOwnership) => JSON.stringify({ r: o.ranges(), s: o.summary() });

function refusedWith(fn: () => void, transition: string, pa: number): OwnershipError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(OwnershipError);
  const oe = err as OwnershipError;
  expect(oe.transition).toBe(transition);
  expect(oe.pa).toBe(pa);
  return oe;
}

describe('page ownership: defaults and reports', () => {
  it('every page starts host-owned, unshared, unpinned; ranges() and summary() are empty', () => {
    const o = new PageOwnership();
    expect(o.state(p(0))).toEqual({ owner: 'host', sharedWith: null, pins: 0, mmio: false });
    expect(o.hostMay(p(0))).toBe(true);
    expect(o.ranges()).toEqual([]);
    expect(o.summary()).toEqual({});
  });

  it('hostAccess: only host-owned pages are accessible to the host (shared ones stay accessible)', () => {
    expect(hostAccess({ owner: 'host', sharedWith: null, pins: 0, mmio: false })).toEqual({
      read: true,
      write: true,
    });
    expect(hostAccess({ owner: 'host', sharedWith: 'hyp', pins: 2, mmio: false })).toEqual({
      read: true,
      write: true,
    });
    expect(hostAccess({ owner: 'hyp', sharedWith: null, pins: 0, mmio: false })).toEqual({
      read: false,
      write: false,
    });
    expect(hostAccess({ owner: 'guest:vm1', sharedWith: null, pins: 0, mmio: false })).toEqual({
      read: false,
      write: false,
    });
  });

  it('ranges() merges runs of equal state in address order and splits where the state differs', () => {
    const o = new PageOwnership();
    o.donate(p(4), 2 * PAGE, 'guest:vm1');
    o.donate(p(0), 3 * PAGE, 'hyp');
    o.share(p(3), PAGE, 'hyp');
    o.share(p(6), 2 * PAGE, 'hyp');
    o.pin(p(7), PAGE);
    expect(o.ranges()).toEqual([
      {
        base: p(0),
        size: 3 * PAGE,
        state: { owner: 'hyp', sharedWith: null, pins: 0, mmio: false },
      },
      { base: p(3), size: PAGE, state: { owner: 'host', sharedWith: 'hyp', pins: 0, mmio: false } },
      {
        base: p(4),
        size: 2 * PAGE,
        state: { owner: 'guest:vm1', sharedWith: null, pins: 0, mmio: false },
      },
      { base: p(6), size: PAGE, state: { owner: 'host', sharedWith: 'hyp', pins: 0, mmio: false } },
      { base: p(7), size: PAGE, state: { owner: 'host', sharedWith: 'hyp', pins: 1, mmio: false } },
    ]);
    expect(o.summary()).toEqual({
      'hyp-owned': 3,
      'shared-hyp': 2,
      'guest:vm1-owned': 2,
      pinned: 1,
    });
  });

  it('summary() counts pages shared with a guest under their own key, and forgets pages back in the default state', () => {
    const o = new PageOwnership();
    o.share(p(0), 2 * PAGE, 'guest:vm2');
    o.donate(p(2), PAGE, 'hyp');
    expect(o.summary()).toEqual({ 'shared-guest:vm2': 2, 'hyp-owned': 1 });
    o.unshare(p(0), 2 * PAGE, 'guest:vm2');
    o.reclaim(p(2), PAGE, 'hyp');
    expect(o.summary()).toEqual({});
    expect(o.ranges()).toEqual([]);
  });

  it('an MMIO donation keeps the mmio flag, and counts transitions by kind', () => {
    const o = new PageOwnership();
    o.donate(0x0905_0000, 0x2_0000, 'hyp', { mmio: true });
    expect(o.state(0x0905_0000 + 0x1_f000)).toEqual({
      owner: 'hyp',
      sharedWith: null,
      pins: 0,
      mmio: true,
    });
    expect(o.state(0x0907_0000).owner).toBe('host');
    expect(o.ranges()).toEqual([
      {
        base: 0x0905_0000,
        size: 0x2_0000,
        state: { owner: 'hyp', sharedWith: null, pins: 0, mmio: true },
      },
    ]);
    expect(o.counts).toEqual({ donate: 1, reclaim: 0, share: 0, unshare: 0, pin: 0, unpin: 0 });
  });
});

describe('page ownership: transitions and their preconditions', () => {
  it('donate takes a host page away from the host; reclaim gives it back', () => {
    const o = new PageOwnership();
    o.donate(p(0), 2 * PAGE, 'hyp');
    expect(o.state(p(1)).owner).toBe('hyp');
    expect(o.hostMay(p(1) + 0x123)).toBe(false);
    expect(o.hostMay(p(2))).toBe(true);
    o.reclaim(p(0), 2 * PAGE, 'hyp');
    expect(o.hostMay(p(1))).toBe(true);
    expect(o.counts.donate).toBe(1);
    expect(o.counts.reclaim).toBe(1);
  });

  it('donate of a page that is shared is refused', () => {
    const o = new PageOwnership();
    o.share(p(0), PAGE, 'hyp');
    const before = snap(o);
    refusedWith(() => o.donate(p(0), PAGE, 'guest:vm1'), 'donate', p(0));
    expect(snap(o)).toBe(before);
  });

  it('donate of a page shared with a guest is refused too', () => {
    const o = new PageOwnership();
    o.share(p(0), PAGE, 'guest:vm1');
    refusedWith(() => o.donate(p(0), PAGE, 'guest:vm1'), 'donate', p(0));
    expect(o.state(p(0))).toEqual({ owner: 'host', sharedWith: 'guest:vm1', pins: 0, mmio: false });
  });

  it('donate of a pinned page is refused (designs.md §7.1 attack 18)', () => {
    const o = new PageOwnership();
    o.shareAndPin(p(0), PAGE);
    const e = refusedWith(() => o.donate(p(0), PAGE, 'hyp'), 'donate', p(0));
    expect(e.why).toMatch(/pinned/);
    expect(o.state(p(0)).pins).toBe(1);
  });

  it('donate of a page the host does not own (hyp or guest) is refused', () => {
    const o = new PageOwnership();
    o.donate(p(0), PAGE, 'hyp');
    o.donate(p(1), PAGE, 'guest:vm1');
    refusedWith(() => o.donate(p(0), PAGE, 'guest:vm1'), 'donate', p(0));
    refusedWith(() => o.donate(p(1), PAGE, 'hyp'), 'donate', p(1));
    expect(o.state(p(0)).owner).toBe('hyp');
    expect(o.state(p(1)).owner).toBe('guest:vm1');
  });

  it('reclaim from the wrong owner is refused; so is reclaiming a host page', () => {
    const o = new PageOwnership();
    o.donate(p(0), PAGE, 'guest:vm1');
    refusedWith(() => o.reclaim(p(0), PAGE, 'hyp'), 'reclaim', p(0));
    refusedWith(() => o.reclaim(p(0), PAGE, 'guest:vm2'), 'reclaim', p(0));
    refusedWith(() => o.reclaim(p(1), PAGE, 'hyp'), 'reclaim', p(1));
    expect(o.state(p(0)).owner).toBe('guest:vm1');
    o.reclaim(p(0), PAGE, 'guest:vm1');
    expect(o.state(p(0)).owner).toBe('host');
  });

  it('share needs a host-owned page that is not shared yet', () => {
    const o = new PageOwnership();
    o.donate(p(0), PAGE, 'hyp');
    refusedWith(() => o.share(p(0), PAGE, 'hyp'), 'share', p(0));
    o.share(p(1), PAGE, 'hyp');
    refusedWith(() => o.share(p(1), PAGE, 'hyp'), 'share', p(1));
    refusedWith(() => o.share(p(1), PAGE, 'guest:vm1'), 'share', p(1));
    expect(o.state(p(1)).sharedWith).toBe('hyp');
    expect(o.hostMay(p(1))).toBe(true);
  });

  it('unshare while pinned is refused; it works once every pin is dropped', () => {
    const o = new PageOwnership();
    o.share(p(0), PAGE, 'hyp');
    o.pin(p(0), PAGE);
    o.pin(p(0), PAGE);
    expect(o.state(p(0)).pins).toBe(2);
    refusedWith(() => o.unshare(p(0), PAGE, 'hyp'), 'unshare', p(0));
    o.unpin(p(0), PAGE);
    refusedWith(() => o.unshare(p(0), PAGE, 'hyp'), 'unshare', p(0));
    o.unpin(p(0), PAGE);
    o.unshare(p(0), PAGE, 'hyp');
    expect(o.state(p(0))).toEqual({ owner: 'host', sharedWith: null, pins: 0, mmio: false });
  });

  it('unshare from someone the page is not shared with is refused', () => {
    const o = new PageOwnership();
    o.share(p(0), PAGE, 'guest:vm1');
    refusedWith(() => o.unshare(p(0), PAGE, 'hyp'), 'unshare', p(0));
    refusedWith(() => o.unshare(p(1), PAGE, 'hyp'), 'unshare', p(1));
    expect(o.state(p(0)).sharedWith).toBe('guest:vm1');
  });

  it('pin of a page not shared with the hyp is refused (host-owned, shared with a guest, or hyp-owned)', () => {
    const o = new PageOwnership();
    o.share(p(1), PAGE, 'guest:vm1');
    o.donate(p(2), PAGE, 'hyp');
    refusedWith(() => o.pin(p(0), PAGE), 'pin', p(0));
    refusedWith(() => o.pin(p(1), PAGE), 'pin', p(1));
    refusedWith(() => o.pin(p(2), PAGE), 'pin', p(2));
    expect(o.state(p(1)).pins).toBe(0);
  });

  it('unpin of an unpinned page is refused: pins never go negative', () => {
    const o = new PageOwnership();
    o.share(p(0), PAGE, 'hyp');
    refusedWith(() => o.unpin(p(0), PAGE), 'unpin', p(0));
    expect(o.state(p(0)).pins).toBe(0);
  });

  it('shareAndPin / unpinAndUnshare are one step each', () => {
    const o = new PageOwnership();
    o.shareAndPin(p(0), 2 * PAGE);
    expect(o.state(p(1))).toEqual({ owner: 'host', sharedWith: 'hyp', pins: 1, mmio: false });
    o.unpinAndUnshare(p(0), 2 * PAGE);
    expect(o.ranges()).toEqual([]);
    // shareAndPin of a page already shared refuses and leaves the existing share alone
    o.share(p(1), PAGE, 'guest:vm1');
    refusedWith(() => o.shareAndPin(p(0), 2 * PAGE), 'share', p(1));
    expect(o.state(p(0)).sharedWith).toBe(null);
    expect(o.state(p(1))).toEqual({ owner: 'host', sharedWith: 'guest:vm1', pins: 0, mmio: false });
  });

  it('unaligned or empty ranges are refused', () => {
    const o = new PageOwnership();
    expect(() => o.donate(p(0) + 8, PAGE, 'hyp')).toThrow(OwnershipError);
    expect(() => o.donate(p(0), PAGE + 1, 'hyp')).toThrow(OwnershipError);
    expect(() => o.donate(p(0), 0, 'hyp')).toThrow(OwnershipError);
    expect(() => o.share(p(0), -PAGE, 'hyp')).toThrow(OwnershipError);
    expect(() => o.donate(2 ** 60, PAGE, 'hyp')).toThrow(OwnershipError);
    expect(o.ranges()).toEqual([]);
    expect(o.refused).toBe(5);
  });
});

describe('page ownership: all or nothing', () => {
  it('a donation over a range with one shared page changes nothing, and names that page', () => {
    const o = new PageOwnership();
    o.share(p(5), PAGE, 'hyp');
    const calls: OwnershipChange[] = [];
    o.onChange((c) => calls.push(c));
    const before = snap(o);
    refusedWith(() => o.donate(p(0), 8 * PAGE, 'hyp'), 'donate', p(5));
    expect(snap(o)).toBe(before);
    for (let i = 0; i < 8; i++) expect(o.hostMay(p(i))).toBe(true);
    expect(calls).toEqual([]);
    expect(o.counts.donate).toBe(0);
    expect(o.refused).toBe(1);
  });

  it('a pin over a range with one unshared page pins none of them', () => {
    const o = new PageOwnership();
    o.share(p(0), 3 * PAGE, 'hyp');
    refusedWith(() => o.pin(p(0), 4 * PAGE), 'pin', p(3));
    for (let i = 0; i < 3; i++) expect(o.state(p(i)).pins).toBe(0);
  });

  it('a reclaim over a range with one page of another owner reclaims none of them', () => {
    const o = new PageOwnership();
    o.donate(p(0), 2 * PAGE, 'hyp');
    o.donate(p(2), PAGE, 'guest:vm1');
    refusedWith(() => o.reclaim(p(0), 3 * PAGE, 'hyp'), 'reclaim', p(2));
    expect(o.state(p(0)).owner).toBe('hyp');
    expect(o.state(p(1)).owner).toBe('hyp');
  });
});

describe('page ownership: listeners', () => {
  it('listeners see each applied change, with whether the host lost or regained access', () => {
    const o = new PageOwnership();
    const calls: OwnershipChange[] = [];
    o.onChange((c) => calls.push(c));
    o.donate(p(0), 2 * PAGE, 'hyp');
    o.share(p(4), PAGE, 'hyp');
    o.reclaim(p(0), 2 * PAGE, 'hyp');
    expect(calls).toEqual([
      {
        transition: 'donate',
        base: p(0),
        pages: 2,
        hostAccessChanged: true,
        hostCanAccess: false,
        mmio: false,
      },
      {
        transition: 'share',
        base: p(4),
        pages: 1,
        hostAccessChanged: false,
        hostCanAccess: true,
        mmio: false,
      },
      {
        transition: 'reclaim',
        base: p(0),
        pages: 2,
        hostAccessChanged: true,
        hostCanAccess: true,
        mmio: false,
      },
    ]);
  });

  it('a listener veto undoes a donation: the error propagates, state and counts are unchanged, the undo is announced', () => {
    const o = new PageOwnership();
    const calls: OwnershipChange[] = [];
    const veto = new Error('cannot invalidate');
    let vetoing = true;
    o.onChange((c) => {
      calls.push(c);
      if (vetoing && c.transition === 'donate') {
        // the change is visible to the listener while it runs
        expect(o.state(p(0)).owner).toBe('hyp');
        throw veto;
      }
    });
    const before = snap(o);
    expect(() => o.donate(p(0), 3 * PAGE, 'hyp')).toThrow(veto);
    expect(snap(o)).toBe(before);
    for (let i = 0; i < 3; i++) expect(o.hostMay(p(i))).toBe(true);
    expect(o.counts.donate).toBe(0);
    expect(o.refused).toBe(1);
    // the listener was told to undo: the host regains access to the same range
    expect(calls).toEqual([
      {
        transition: 'donate',
        base: p(0),
        pages: 3,
        hostAccessChanged: true,
        hostCanAccess: false,
        mmio: false,
      },
      {
        transition: 'reclaim',
        base: p(0),
        pages: 3,
        hostAccessChanged: true,
        hostCanAccess: true,
        mmio: false,
      },
    ]);
    vetoing = false;
    o.donate(p(0), 3 * PAGE, 'hyp');
    expect(o.state(p(2)).owner).toBe('hyp');
  });

  it('a listener veto undoes a pin (no access change, so no undo call)', () => {
    const o = new PageOwnership();
    o.share(p(0), PAGE, 'hyp');
    const calls: string[] = [];
    o.onChange((c) => {
      calls.push(c.transition);
      if (c.transition === 'pin') throw new Error('no');
    });
    expect(() => o.pin(p(0), PAGE)).toThrow('no');
    expect(o.state(p(0))).toEqual({ owner: 'host', sharedWith: 'hyp', pins: 0, mmio: false });
    expect(calls).toEqual(['pin']);
  });

  it('a veto of the second listener also undoes what the first listener was told', () => {
    const o = new PageOwnership();
    const seen: Array<[string, boolean]> = [];
    o.onChange((c) => seen.push([c.transition, c.hostCanAccess]));
    o.onChange((c) => {
      if (c.transition === 'reclaim') throw new Error('veto reclaim');
    });
    o.donate(p(0), PAGE, 'guest:vm1');
    expect(() => o.reclaim(p(0), PAGE, 'guest:vm1')).toThrow('veto reclaim');
    expect(o.state(p(0)).owner).toBe('guest:vm1');
    expect(seen).toEqual([
      ['donate', false],
      ['reclaim', true],
      ['donate', false],
    ]);
  });
});

// ---- property -------------------------------------------------------------------------------

const OWNERS: Array<Exclude<Owner, 'host'>> = ['hyp', 'guest:a', 'guest:b'];
type Op =
  | {
      t: 'donate' | 'reclaim' | 'share' | 'unshare';
      first: number;
      n: number;
      who: Exclude<Owner, 'host'>;
    }
  | { t: 'pin' | 'unpin' | 'shareAndPin' | 'unpinAndUnshare'; first: number; n: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    t: fc.constantFrom('donate' as const, 'reclaim' as const, 'share' as const, 'unshare' as const),
    first: fc.nat(7),
    n: fc.integer({ min: 1, max: 3 }),
    who: fc.constantFrom(...OWNERS),
  }),
  fc.record({
    t: fc.constantFrom(
      'pin' as const,
      'unpin' as const,
      'shareAndPin' as const,
      'unpinAndUnshare' as const,
    ),
    first: fc.nat(7),
    n: fc.integer({ min: 1, max: 3 }),
  }),
);

function run(o: PageOwnership, op: Op): void {
  const base = p(op.first);
  const size = op.n * PAGE;
  switch (op.t) {
    case 'donate':
      return o.donate(base, size, op.who);
    case 'reclaim':
      return o.reclaim(base, size, op.who);
    case 'share':
      return o.share(base, size, op.who);
    case 'unshare':
      return o.unshare(base, size, op.who);
    case 'pin':
      return o.pin(base, size);
    case 'unpin':
      return o.unpin(base, size);
    case 'shareAndPin':
      return o.shareAndPin(base, size);
    case 'unpinAndUnshare':
      return o.unpinAndUnshare(base, size);
  }
}

/** The invariants of one page state, as a list of what is wrong (empty when fine). */
function broken(s: PageState): string[] {
  const bad: string[] = [];
  // never owned away from the host and shared (or pinned) at the same time
  if (s.owner !== 'host' && (s.sharedWith !== null || s.pins !== 0))
    bad.push(`owned by ${s.owner} and shared/pinned`);
  if (!Number.isInteger(s.pins) || s.pins < 0) bad.push(`pins ${s.pins}`);
  // pins only on pages shared with the hypervisor
  if (s.pins > 0 && s.sharedWith !== 'hyp') bad.push(`pinned but shared with ${s.sharedWith}`);
  return bad;
}

describe('page ownership: property', () => {
  it('random transition sequences never leave a page both away from the host and shared, pins never negative, refusals change nothing', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
        const o = new PageOwnership();
        const hostView: boolean[] = [];
        o.onChange((c) => {
          if (c.hostAccessChanged)
            for (let i = 0; i < c.pages; i++) hostView[(c.base - A) / PAGE + i] = c.hostCanAccess;
        });
        for (const op of ops) {
          const before = snap(o);
          try {
            run(o, op);
          } catch (e) {
            if (!(e instanceof OwnershipError)) throw e;
            // shareAndPin / unpinAndUnshare are two steps, but a refusal of either still leaves nothing changed
            if (op.t !== 'unpinAndUnshare' && snap(o) !== before)
              expect.fail(`refused ${JSON.stringify(op)} changed the table`);
          }
          for (let i = 0; i < 12; i++) {
            const s = o.state(p(i));
            const bad = broken(s);
            if (bad.length) expect.fail(`page ${i} after ${JSON.stringify(op)}: ${bad.join('; ')}`);
            // a listener following the changes (as the idmap does) agrees with hostMay
            if ((hostView[i] ?? true) !== o.hostMay(p(i)))
              expect.fail(`page ${i}: the listener's view disagrees with hostMay`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
