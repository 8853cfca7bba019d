/**
 * A small seeded PRNG (mulberry32) for the workloads: the same seed gives the same sequence,
 * on every run and machine. Never Math.random.
 */
export class Prng {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  /** the next 32-bit value */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** an integer in [0, n) */
  below(n: number): number {
    return this.next() % n;
  }
}
