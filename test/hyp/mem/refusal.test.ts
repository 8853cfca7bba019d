/**
 * Refused ownership transitions are values (hyp/mem/ownership.ts try*): the refusal names the
 * transition, the first refused page and why, nothing changes, and the throwing forms carry
 * the same message.
 */
import { describe, expect, it } from 'vitest';
import { PageOwnership, OwnershipError, PAGE, refusalMessage } from '../../../hyp/mem/ownership.ts';

const A = 0x4100_0000;

describe('ownership refusals as values', () => {
  it('tryDonate of a page already given away: the second page is named, nothing changes', () => {
    const o = new PageOwnership();
    expect(o.tryDonate(A + PAGE, PAGE, 'hyp')).toBeNull();
    const before = JSON.stringify(o.ranges());
    const refused = o.refused;
    const r = o.tryDonate(A, 2 * PAGE, 'guest:g');
    expect(r).toEqual({ transition: 'donate', pa: A + PAGE, why: 'owned by hyp' });
    expect(JSON.stringify(o.ranges())).toBe(before);
    expect(o.refused).toBe(refused + 1);
    expect(o.counts.donate).toBe(1);
  });

  it('tryShareAndPin of a shared page: refused by the share, no pin left behind', () => {
    const o = new PageOwnership();
    o.share(A, PAGE, 'hyp');
    const r = o.tryShareAndPin(A, PAGE);
    expect(r).toEqual({ transition: 'share', pa: A, why: 'already shared with hyp' });
    expect(o.state(A).pins).toBe(0);
  });

  it('the throwing form carries the refusal message', () => {
    const o = new PageOwnership();
    const r = o.tryUnpin(A, PAGE)!;
    expect(refusalMessage(r.transition, r.pa, r.why)).toBe(
      `unpin refused at page 0x${A.toString(16)}: not pinned`,
    );
    expect(() => o.unpin(A, PAGE)).toThrow(OwnershipError);
    expect(() => o.unpin(A, PAGE)).toThrow(`unpin refused at page 0x${A.toString(16)}: not pinned`);
  });

  it('an unaligned range is refused at its base', () => {
    const o = new PageOwnership();
    expect(o.tryShare(A + 8, PAGE, 'hyp')).toEqual({
      transition: 'share',
      pa: A + 8,
      why: `range 0x${(A + 8).toString(16)}+0x1000 is not page aligned`,
    });
  });
});
