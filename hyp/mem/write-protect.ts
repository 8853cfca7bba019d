/**
 * Host pages mapped read-only in the host CPU stage-2 (the `trap-writes` STE shadowing): the
 * host may read them, and each host store to them is a stage-2 permission fault taken to the
 * hypervisor. Pages are counted (a page may be protected for several reasons, e.g. two L1
 * descriptors pointing at one L2 table) and the host access check reads one byte per page of
 * RAM, a flat typed array indexed by page frame: no allocation, no map lookup per access.
 */
import { PAGE } from './ownership.ts';

export class WriteProtect {
  /** first page frame covered */
  private readonly firstPfn: number;
  /** 1 where a page is protected (the access check's array) */
  private readonly flags: Uint8Array;
  /** protections per page frame (only pages protected at least once) */
  private readonly counts = new Map<number, number>();

  /** Cover the page frames of [lo, hi): RAM (only RAM can hold a table the hypervisor protects). */
  constructor(lo: number, hi: number) {
    if (!(hi > lo) || lo % PAGE || hi % PAGE)
      throw new Error(
        `write-protect range 0x${lo.toString(16)}–0x${hi.toString(16)} must be a non-empty page-aligned range`,
      );
    this.firstPfn = lo / PAGE;
    this.flags = new Uint8Array((hi - lo) / PAGE);
  }

  /** Pages currently protected. */
  get pages(): number {
    let n = 0;
    this.counts.forEach((c) => {
      if (c > 0) n++;
    });
    return n;
  }

  /** Whether a host store of `size` bytes at `pa` touches a protected page. */
  covers(pa: number, size: number): boolean {
    const f = this.flags;
    const i = Math.floor(pa / PAGE) - this.firstPfn;
    if (i >= 0 && i < f.length && f[i] !== 0) return true;
    const j = Math.floor((pa + size - 1) / PAGE) - this.firstPfn;
    return j !== i && j >= 0 && j < f.length && f[j] !== 0;
  }

  /** Protect the whole pages in [base, base+size) once more (pages outside RAM are ignored). */
  protect(base: number, size: number): void {
    for (let pfn = base / PAGE; pfn < (base + size) / PAGE; pfn++) {
      const i = pfn - this.firstPfn;
      if (i < 0 || i >= this.flags.length) continue;
      this.counts.set(pfn, (this.counts.get(pfn) ?? 0) + 1);
      this.flags[i] = 1;
    }
  }

  /** Undo one `protect` of the same pages; a page is writable again when its count reaches 0. */
  unprotect(base: number, size: number): void {
    for (let pfn = base / PAGE; pfn < (base + size) / PAGE; pfn++) {
      const i = pfn - this.firstPfn;
      if (i < 0 || i >= this.flags.length) continue;
      const c = this.counts.get(pfn) ?? 0;
      if (c === 0)
        throw new Error(`write-protect: page 0x${(pfn * PAGE).toString(16)} is not protected`);
      this.counts.set(pfn, c - 1);
      if (c === 1) this.flags[i] = 0;
    }
  }
}
