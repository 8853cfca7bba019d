/**
 * DMA refcounts (pKVM's `__pkvm_use_dma` / `__pkvm_unuse_dma`, designs.md §2.1): every page of
 * memory a paravirtual domain maps holds a count of the mappings that reach it. map_pages takes
 * one per page after checking the page is the host's to give a device (host-owned: not the
 * hypervisor's, not a guest's, not the SMMU's registers); unmap_pages drops them once the
 * invalidation has completed. A page whose count is not zero cannot be donated to the hypervisor
 * or a guest: the refcount is a donation guard on page ownership (mem/ownership.ts), so the
 * refusal is an ordinary OwnershipRefusal and nothing changes.
 *
 * Memory only: MMIO pages the host owns may be mapped (IOMMU_MMIO) without a count, because MMIO
 * is never donated at runtime. The counts are one typed array over RAM, no allocation per page.
 */
import { PAGE, type PageOwnership } from '../mem/ownership.ts';

/** use(): every page was the host's and now counts one more mapping */
export const USE_OK = 0;
/** use(): a page is not the host's to map (nothing changed) */
export const USE_NOT_HOST = 1;
/** use(): a page's count would overflow (nothing changed) */
export const USE_OVERFLOW = 2;

const MAX_COUNT = 0xffff_ffff;
/** ranges longer than this are checked against the pages owned away from the host, not page by page */
const LONG_RANGE = 4096;

export interface DmaRefcountStats {
  refcountVetoes: number;
}

export class DmaRefcount {
  private readonly counts: Uint32Array;
  private readonly firstPfn: number;
  /** the first page use() refused, and why, for the caller's report */
  refusedPa = 0;
  refusedWhy = '';

  constructor(
    private readonly own: PageOwnership,
    ram: { base: number; size: number },
    private readonly stats: DmaRefcountStats,
  ) {
    this.firstPfn = ram.base / PAGE;
    this.counts = new Uint32Array(ram.size / PAGE);
    own.addDonationGuard((base, pages) => this.guard(base, pages));
  }

  /** the count of the page holding `pa` (0 outside RAM) */
  count(pa: number): number {
    const i = Math.floor(pa / PAGE) - this.firstPfn;
    return i >= 0 && i < this.counts.length ? this.counts[i]! : 0;
  }

  /** whether [pa, pa+bytes) lies in RAM (counted pages) */
  private inRam(pfn: number, pages: number): boolean {
    const i = pfn - this.firstPfn;
    return i >= 0 && i + pages <= this.counts.length;
  }

  /**
   * `__pkvm_use_dma(pa, bytes)`: check every page, then count it (all or nothing). `pa` and
   * `bytes` are page aligned. USE_OK, or why not (refusedPa / refusedWhy say where).
   */
  use(pa: number, bytes: number): number {
    const own = this.own;
    const first = pa / PAGE;
    const n = bytes / PAGE;
    // the ownership check: page by page for a short range, else over the pages owned away from
    // the host (a range of blocks can span GiBs of MMIO space, which is the host's by default)
    if (n <= LONG_RANGE) {
      for (let i = 0; i < n; i++) {
        const s = own.state((first + i) * PAGE);
        if (s.owner !== 'host')
          return this.refuse((first + i) * PAGE, `the page is owned by ${s.owner}, not the host`);
      }
    } else {
      const away = own.nonHostPfns(first, first + n);
      if (away.length)
        return this.refuse(
          away[0]! * PAGE,
          `the page is owned by ${own.state(away[0]! * PAGE).owner}, not the host`,
        );
    }
    const ramFirst = this.firstPfn;
    const ramEnd = ramFirst + this.counts.length;
    if (first + n <= ramFirst || first >= ramEnd) return USE_OK; // host-owned MMIO: nothing to count
    if (first < ramFirst || first + n > ramEnd)
      return this.refuse(Math.max(first, ramFirst) * PAGE, 'the range mixes memory and MMIO');
    const c = this.counts;
    const o = first - ramFirst;
    for (let i = 0; i < n; i++)
      if (c[o + i] === MAX_COUNT)
        return this.refuse((first + i) * PAGE, 'its DMA refcount would overflow', USE_OVERFLOW);
    for (let i = 0; i < n; i++) c[o + i]!++;
    return USE_OK;
  }

  private refuse(pa: number, why: string, code = USE_NOT_HOST): number {
    this.refusedPa = pa;
    this.refusedWhy = why;
    return code;
  }

  /** `__pkvm_unuse_dma(pa, bytes)`: drop one count per page (pages outside RAM have none). */
  unuse(pa: number, bytes: number): void {
    const first = pa / PAGE;
    const n = bytes / PAGE;
    if (!this.inRam(first, n)) return;
    const c = this.counts;
    const o = first - this.firstPfn;
    for (let i = 0; i < n; i++) {
      if (c[o + i] === 0)
        throw new Error(`dma refcount: page 0x${((first + i) * PAGE).toString(16)} was not in use`);
      c[o + i]!--;
    }
  }

  /** The donation guard: a page mapped for DMA stays the host's. */
  private guard(base: number, pages: number): { pa: number; why: string } | null {
    const first = base / PAGE;
    for (let i = 0; i < pages; i++) {
      const k = this.count((first + i) * PAGE);
      if (k !== 0) {
        this.stats.refcountVetoes++;
        return {
          pa: (first + i) * PAGE,
          why: `mapped for DMA by ${k} paravirtual IOMMU mapping${k === 1 ? '' : 's'} (DMA refcount ${k})`,
        };
      }
    }
    return null;
  }
}
