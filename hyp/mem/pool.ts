/**
 * The hypervisor's memory: a carve-out of RAM it owns from boot (default 0x7C00_0000,
 * 64 MiB), handed out as zeroed, naturally aligned blocks for its shadow queue, shadow stream
 * table, L2 STE tables and idmap page tables. Memory is written through the bus as the hyp.
 * Running out is an ordinary failure (ENOMEM), never a crash: callers fail closed.
 */
import type { MmioBus } from '../../hw/bus.ts';

export class PoolExhausted extends Error {
  constructor(what: string, bytes: number) {
    super(`hyp pool exhausted: ${what} needs ${bytes} bytes`);
    this.name = 'PoolExhausted';
  }
}

export class HypPool {
  private next: number;
  private readonly freeList = new Map<number, number[]>();
  /** pages currently handed out */
  pagesInUse = 0;
  /** high-water mark */
  peakPages = 0;

  constructor(
    private readonly bus: MmioBus,
    readonly base: number,
    readonly limit: number,
  ) {
    this.next = base;
  }

  get totalPages(): number {
    return (this.limit - this.base) / 4096;
  }

  /** `bytes` of zeroed memory aligned to its size (at least 4 KiB). */
  alloc(bytes: number, what = 'allocation', align?: number): number {
    const size = Math.max(4096, 2 ** Math.ceil(Math.log2(bytes)));
    const a = Math.max(align ?? size, size);
    const reuse = this.freeList.get(size);
    let addr: number;
    if (reuse?.length && reuse[reuse.length - 1]! % a === 0) {
      addr = reuse.pop()!;
    } else {
      addr = this.next + ((a - (this.next % a)) % a);
      if (addr + size > this.limit) throw new PoolExhausted(what, size);
      this.next = addr + size;
    }
    this.bus.writeBytes('hyp', addr, new Uint8Array(size));
    this.pagesInUse += size / 4096;
    if (this.pagesInUse > this.peakPages) this.peakPages = this.pagesInUse;
    return addr;
  }

  free(addr: number, bytes: number): void {
    const size = Math.max(4096, 2 ** Math.ceil(Math.log2(bytes)));
    let l = this.freeList.get(size);
    if (!l) this.freeList.set(size, (l = []));
    l.push(addr);
    this.pagesInUse -= size / 4096;
  }
}
