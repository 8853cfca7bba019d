/**
 * The one accessor through which the hypervisor reads host memory (the host's command queue,
 * stream table and L1 descriptors). Every read is a hyp CPU read as the bus makes it, and a hook
 * may run before each read: the fuzzer uses it as a second host CPU that writes shared memory
 * between any two hypervisor reads, to catch double-fetch and TOCTOU bugs.
 *
 * Hot path (one copy per host command): a read of whole double-words inside one RAM page is
 * made straight from RAM, a double-word at a time, with the bus's own rules for a hyp read
 * (no stage 2; a device page goes through the bus; no RAM is the same CpuAbortError).
 */
import { CpuAbortError, type MmioBus } from '../hw/bus.ts';
import { ExternalAbort, type PhysicalMemory } from '../hw/memory.ts';

export type HostReadHook = (pa: number, bytes: number) => void;

export class HostMemory {
  /** reads made, and bytes read */
  reads = 0;
  bytes = 0;
  hook: HostReadHook | null = null;
  private readonly mem: PhysicalMemory;
  private readonly pair = new Uint32Array(2);

  constructor(private readonly bus: MmioBus) {
    this.mem = bus.mem;
  }

  /** Copy `n` words from host memory at `pa` into `out` (the copy is what gets checked). */
  copy(pa: number, out: Uint32Array, n = out.length): void {
    const hook = this.hook;
    if (hook !== null) hook(pa, n * 4);
    this.reads++;
    this.bytes += n * 4;
    if ((pa & 0xfff) + n * 4 <= 4096) {
      if ((n & 1) === 0 && this.bus.deviceAt(pa) === undefined) this.ramPairs(pa, out, n);
      else this.bus.readWords('hyp', pa, out, n);
    } else {
      const first = (4096 - (pa & 0xfff)) / 4;
      const tmp = new Uint32Array(n);
      this.bus.readWords('hyp', pa, tmp, first);
      const rest = tmp.subarray(first);
      this.bus.readWords('hyp', pa + first * 4, rest, n - first);
      out.set(tmp.subarray(0, n));
    }
  }

  /** `n` (even) words inside one RAM page, as bus.readWords reads them for the hyp. */
  private ramPairs(pa: number, out: Uint32Array, n: number): void {
    const mem = this.mem;
    const p = this.pair;
    try {
      for (let i = 0; i < n; i += 2) {
        mem.readPair(pa + 4 * i, p);
        out[i] = p[0]!;
        out[i + 1] = p[1]!;
      }
    } catch (e) {
      if (e instanceof ExternalAbort) throw new CpuAbortError('hyp', pa, 'r', 'external abort (no RAM or device)');
      throw e;
    }
  }

  /** A single 64-bit load (an L1 descriptor), as two words. */
  load64(pa: number, out: Uint32Array): void {
    this.copy(pa, out, 2);
  }
}
