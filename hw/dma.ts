/**
 * DMA endpoints: devices with a StreamID (and optionally a SubstreamID) whose reads and writes
 * go through the SMMU. A DMA's outcome is data (or a completed write) at a physical address,
 * or a fault with the event the SMMU recorded. A DMA that crosses a 4 KiB page is split into
 * one transaction per page, as a PCIe endpoint's requests would be.
 */
import { ExternalAbort, type PhysicalMemory } from './memory.ts';
import { newTxnResult, type Smmu, type Txn } from './smmu/smmu.ts';
import { eventName } from './smmu/events.ts';

export interface DmaOptions {
  /** SubstreamID (PASID); undefined means no SubstreamID (SSV=0) */
  ssid?: number;
  priv?: boolean;
  instr?: boolean;
}

export type DmaOutcome =
  | { ok: true; pa: number; data?: Uint8Array }
  | { ok: false; fault: string; event?: string; iova: number };

export class DmaEndpoint {
  dmas = 0;
  faults = 0;
  private readonly txn: Txn = { sid: 0, ssid: 0, ssv: false, addr: 0, write: false, priv: false, instr: false };
  private readonly res = newTxnResult();

  constructor(readonly name: string, readonly sid: number, private readonly smmu: Smmu, private readonly mem: PhysicalMemory, readonly defaultSsid?: number) {}

  private translate(iova: number, write: boolean, o: DmaOptions): DmaOutcome & { pa?: number } {
    const t = this.txn;
    const ssid = o.ssid ?? this.defaultSsid;
    t.sid = this.sid;
    t.ssv = ssid !== undefined;
    t.ssid = ssid ?? 0;
    t.addr = iova;
    t.write = write;
    t.priv = o.priv ?? false;
    t.instr = o.instr ?? false;
    const r = this.smmu.translate(t, this.res);
    if (!r.ok) return { ok: false, fault: r.reason, ...(r.event ? { event: eventName(r.event) } : {}), iova };
    return { ok: true, pa: r.pa };
  }

  /** Run a DMA of `len` bytes; `data` for writes. Every page is translated before any byte moves. */
  private run(iova: number, len: number, write: boolean, data: Uint8Array | undefined, o: DmaOptions): DmaOutcome {
    this.dmas++;
    const pas: number[] = [];
    for (let off = 0; off < len; ) {
      const a = iova + off;
      const n = Math.min(4096 - (a % 4096), len - off);
      const tr = this.translate(a, write, o);
      if (!tr.ok) {
        this.faults++;
        return tr;
      }
      pas.push(tr.pa);
      off += n;
    }
    try {
      const out = write ? undefined : new Uint8Array(len);
      let off = 0;
      for (const pa of pas) {
        const n = Math.min(4096 - ((iova + off) % 4096), len - off);
        if (write) this.mem.writeBytes(pa, data!.subarray(off, off + n));
        else out!.set(this.mem.readBytes(pa, n), off);
        off += n;
      }
      return { ok: true, pa: pas[0]!, ...(out ? { data: out } : {}) };
    } catch (e) {
      if (!(e instanceof ExternalAbort)) throw e;
      this.faults++;
      return { ok: false, fault: `completer abort: no memory at PA 0x${e.addr.toString(16)}`, iova };
    }
  }

  read(iova: number, len: number, o: DmaOptions = {}): DmaOutcome {
    return this.run(iova, len, false, undefined, o);
  }

  write(iova: number, data: Uint8Array, o: DmaOptions = {}): DmaOutcome {
    return this.run(iova, data.length, true, data, o);
  }
}
