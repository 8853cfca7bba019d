/**
 * The host kernel's page allocator for the driver's tables and queues (dma_alloc_coherent):
 * a bump allocator over a region of host RAM. Memory is zeroed through the bus as the host.
 */
import type { MmioBus } from '../../hw/bus.ts';

export class HostPages {
  private next: number;

  constructor(
    private readonly bus: MmioBus,
    readonly base: number,
    readonly limit: number,
    private readonly actor = 'host',
  ) {
    this.next = base;
  }

  /** Allocate `bytes` aligned to `align` (default: the size rounded up to a power of two, at least 4 KiB), zeroed. */
  alloc(bytes: number, align?: number): number {
    const a = align ?? Math.max(4096, 2 ** Math.ceil(Math.log2(bytes)));
    const addr = this.next + ((a - (this.next % a)) % a);
    if (addr + bytes > this.limit)
      throw new Error(
        `host pages exhausted: ${bytes} bytes at 0x${addr.toString(16)} (limit 0x${this.limit.toString(16)})`,
      );
    this.next = addr + bytes;
    this.bus.writeBytes(this.actor, addr, new Uint8Array(bytes));
    return addr;
  }

  get used(): number {
    return this.next - this.base;
  }
}
