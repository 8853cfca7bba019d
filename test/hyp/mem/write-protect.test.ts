import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { WriteProtect } from '../../../hyp/mem/write-protect.ts';

const PAGE = 4096;
const LO = 0x4000_0000;
const HI = LO + 64 * PAGE;

describe('WriteProtect: the host pages whose stores trap', () => {
  it('covers a store that touches a protected page, at either end of the store', () => {
    const w = new WriteProtect(LO, HI);
    w.protect(LO + 2 * PAGE, PAGE);
    expect(w.covers(LO + 2 * PAGE, 8)).toBe(true);
    expect(w.covers(LO + 3 * PAGE - 8, 8)).toBe(true);
    expect(w.covers(LO + 3 * PAGE, 8)).toBe(false);
    expect(w.covers(LO + 2 * PAGE - 8, 8)).toBe(false);
    // a store straddling into the protected page, and out of it
    expect(w.covers(LO + 2 * PAGE - 4, 8)).toBe(true);
    expect(w.covers(LO + 3 * PAGE - 4, 8)).toBe(true);
    // outside the covered RAM: never protected
    expect(w.covers(LO - PAGE, 8)).toBe(false);
    expect(w.covers(HI, 8)).toBe(false);
    expect(w.pages).toBe(1);
  });

  it('counts protections: a page is writable again only when every protect is undone', () => {
    const w = new WriteProtect(LO, HI);
    w.protect(LO, 4 * PAGE);
    w.protect(LO + 3 * PAGE, 2 * PAGE);
    expect(w.pages).toBe(5);
    w.unprotect(LO, 4 * PAGE);
    expect(w.covers(LO, 1)).toBe(false);
    expect(w.covers(LO + 3 * PAGE, 1)).toBe(true);
    w.unprotect(LO + 3 * PAGE, 2 * PAGE);
    expect(w.pages).toBe(0);
    expect(() => w.unprotect(LO, PAGE)).toThrow(/page 0x40000000 is not protected/);
  });

  it('refuses a range that is empty or not page aligned, naming it', () => {
    expect(() => new WriteProtect(LO, LO)).toThrow(/0x40000000–0x40000000/);
    expect(() => new WriteProtect(LO + 1, HI)).toThrow(/page-aligned/);
  });

  it('agrees with a set of protected pages for any protect/unprotect sequence', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 63 }), fc.integer({ min: 1, max: 4 })),
        ),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 64 * PAGE - 1 }), fc.constantFrom(1, 2, 4, 8))),
        (ops, probes) => {
          const w = new WriteProtect(LO, HI);
          const n = new Array<number>(64).fill(0);
          for (const [on, p, len] of ops) {
            const pages = Math.min(len, 64 - p);
            if (on) {
              w.protect(LO + p * PAGE, pages * PAGE);
              for (let i = p; i < p + pages; i++) n[i]!++;
            } else if (n.slice(p, p + pages).every((c) => c > 0)) {
              w.unprotect(LO + p * PAGE, pages * PAGE);
              for (let i = p; i < p + pages; i++) n[i]!--;
            }
          }
          for (const [off, size] of probes) {
            const a = Math.floor(off / PAGE);
            const b = Math.min(63, Math.floor((off + size - 1) / PAGE));
            expect(w.covers(LO + off, size)).toBe(n[a]! > 0 || n[b]! > 0);
          }
          expect(w.pages).toBe(n.filter((c) => c > 0).length);
        },
      ),
      { numRuns: 200 },
    );
  });
});
