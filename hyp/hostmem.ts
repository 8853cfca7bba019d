/**
 * The one accessor through which the hypervisor reads host memory (the host's command queue,
 * stream table and L1 descriptors). Every read goes through the bus as the hyp, and a hook
 * may run before each read: the fuzzer uses it as a second host CPU that writes shared memory
 * between any two hypervisor reads, to catch double-fetch and TOCTOU bugs.
 */
import type { MmioBus } from '../hw/bus.ts';

export type HostReadHook = (pa: number, bytes: number) => void;

export class HostMemory {
  /** reads made, and bytes read */
  reads = 0;
  bytes = 0;
  hook: HostReadHook | null = null;

  constructor(private readonly bus: MmioBus) {}

  /** Copy `n` words from host memory at `pa` into `out` (the copy is what gets checked). */
  copy(pa: number, out: Uint32Array, n = out.length): void {
    const hook = this.hook;
    if (hook !== null) hook(pa, n * 4);
    this.reads++;
    this.bytes += n * 4;
    const inPage = (4096 - (pa & 0xfff)) / 4;
    if (n <= inPage) {
      this.bus.readWords('hyp', pa, out, n);
    } else {
      // a copy that straddles a page boundary: each page is checked separately
      this.bus.readWords('hyp', pa, out, inPage);
      this.bus.readWords('hyp', pa + inPage * 4, out.subarray(inPage), n - inPage);
    }
  }

  /** A single 64-bit load (an L1 descriptor), as two words. */
  load64(pa: number, out: Uint32Array): void {
    this.copy(pa, out, 2);
  }
}
