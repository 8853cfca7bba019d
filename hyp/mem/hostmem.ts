/**
 * The one accessor through which the hypervisor reads host memory (the host's command queue,
 * stream table and L1 descriptors). Every read goes through the bus as the hyp, and a hook
 * may run before each read: the fuzzer uses it as a second host CPU that writes shared memory
 * between any two hypervisor reads, to catch double-fetch and TOCTOU bugs.
 *
 * As in pKVM, the hypervisor's own stage-1 maps a host page only while the host has shared it
 * with the hypervisor (pkvm_host_share_hyp): a read of any other page is a data abort at EL2,
 * a hypervisor crash. The accessor checks every page a read touches and throws
 * `HypAccessFault`, which no hypervisor code catches: a path that reads host memory it has not
 * shared first is a hypervisor bug, and the fuzzer reports it as one.
 */
import type { MmioBus } from '../../hw/bus.ts';
import { PAGE, type PageOwnership } from './ownership.ts';

export type HostReadHook = (pa: number, bytes: number) => void;

/** The hypervisor read a host page that is not shared with it (a data abort at EL2 in pKVM). */
export class HypAccessFault extends Error {
  constructor(
    readonly pa: number,
    readonly why: string,
  ) {
    super(`hypervisor data abort reading host memory at 0x${pa.toString(16)}: ${why}`);
    this.name = 'HypAccessFault';
  }
}

export class HostMemory {
  /** reads made, and bytes read */
  reads = 0;
  bytes = 0;
  hook: HostReadHook | null = null;

  constructor(
    private readonly bus: MmioBus,
    private readonly own: PageOwnership,
  ) {}

  /** Copy `n` words from host memory at `pa` into `out` (the copy is what gets checked). */
  copy(pa: number, out: Uint32Array, n = out.length): void {
    const hook = this.hook;
    if (hook !== null) hook(pa, n * 4);
    this.reads++;
    this.bytes += n * 4;
    const inPage = (PAGE - (pa & 0xfff)) / 4;
    this.mapped(pa);
    if (n <= inPage) {
      this.bus.readWords('hyp', pa, out, n);
    } else {
      // a copy that straddles a page boundary: each page is checked separately
      this.mapped(pa + inPage * 4);
      this.bus.readWords('hyp', pa, out, inPage);
      this.bus.readWords('hyp', pa + inPage * 4, out.subarray(inPage), n - inPage);
    }
  }

  /** A single 64-bit load (an L1 descriptor), as two words. */
  load64(pa: number, out: Uint32Array): void {
    this.copy(pa, out, 2);
  }

  /** Whether the hypervisor's stage-1 maps the host page holding `pa`: host-owned and shared with the hyp. */
  private mapped(pa: number): void {
    const s = this.own.state(pa);
    if (s.owner === 'host' && s.sharedWith === 'hyp') return;
    throw new HypAccessFault(
      pa,
      s.owner !== 'host'
        ? `the page is owned by ${s.owner}, not host memory`
        : s.sharedWith
          ? `the page is shared with ${s.sharedWith}, not with the hypervisor`
          : 'the page is not shared with the hypervisor',
    );
  }
}
