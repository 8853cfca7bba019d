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
    if (this.hook) this.hook(pa, n * 4);
    this.reads++;
    this.bytes += n * 4;
    if ((pa & 0xfff) + n * 4 <= 4096) {
      this.bus.readWords('hyp', pa, out, n);
    } else {
      const first = (4096 - (pa & 0xfff)) / 4;
      const tmp = new Uint32Array(n);
      this.bus.readWords('hyp', pa, tmp, first);
      const rest = tmp.subarray(first);
      this.bus.readWords('hyp', pa + first * 4, rest, n - first);
      out.set(tmp.subarray(0, n));
    }
  }

  /** A single 64-bit load (an L1 descriptor), as two words. */
  load64(pa: number, out: Uint32Array): void {
    this.copy(pa, out, 2);
  }
}
