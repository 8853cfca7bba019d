/**
 * DMA endpoints: devices with a StreamID (and optionally a SubstreamID) whose reads and writes
 * go through the SMMU. A DMA's outcome is data (or a completed write) at a physical address,
 * or a fault with the event the SMMU recorded. A DMA that crosses a 4 KiB page is split into
 * one transaction per page, as a PCIe endpoint's requests would be, and every page is
 * translated before any byte moves.
 *
 * An ATS-capable endpoint has an ATC: it can send Translation Requests, cache the results and
 * then issue Translated transactions (or Translated transactions to any address it likes, which
 * is what a malicious device does). CMD_ATC_INV reaches its ATC.
 */
import { ExternalAbort, type PhysicalMemory } from './memory.ts';
import { newTxn, newTxnResult, type Smmu, type Txn, type TxnResult } from './smmu/smmu.ts';
import { eventName } from './smmu/events.ts';
import { Probe } from './probe.ts';
import { HW_PROBES } from './probes.ts';

export interface DmaOptions {
  /** SubstreamID (PASID); undefined means no SubstreamID (SSV=0) */
  ssid?: number;
  priv?: boolean;
  instr?: boolean;
  /** use ATS: translate through the ATC (a Translation Request on a miss), then a Translated transaction */
  ats?: boolean;
}

export type DmaOutcome =
  | { ok: true; pa: number; ipa?: number; data?: Uint8Array; razwi?: boolean; tlbHit?: boolean }
  | { ok: false; fault: string; event?: string; iova: number };

interface AtcEntry {
  /** translated page address (PA, or IPA for split-stage) */
  out: number;
  read: boolean;
  write: boolean;
}

const TWO53 = 2 ** 53;

export class DmaEndpoint {
  dmas = 0;
  faults = 0;
  atsRequests = 0;
  /** ATC: key `${ssid}:${page}` → entry (4 KiB pages) */
  readonly atc = new Map<string, AtcEntry>();
  private readonly txn: Txn = newTxn();
  private readonly res: TxnResult = newTxnResult();
  /** probe points: each DMA's start and its outcome (traces) */
  readonly probes = {
    dmaStart: new Probe(HW_PROBES.dmaStart),
    dmaEnd: new Probe(HW_PROBES.dmaEnd),
  } as const;

  constructor(
    readonly name: string,
    readonly sid: number,
    private readonly smmu: Smmu,
    private readonly mem: PhysicalMemory,
    readonly defaultSsid?: number,
  ) {
    smmu.registerAtc(sid, (ssid, addr, bytes) => this.invalidateAtc(ssid, addr, bytes));
  }

  private setTxn(addr: number | bigint, write: boolean, o: DmaOptions): Txn {
    const t = this.txn;
    const ssid = o.ssid ?? this.defaultSsid;
    t.sid = this.sid;
    t.ssv = ssid !== undefined;
    t.ssid = ssid ?? 0;
    if (typeof addr === 'bigint') {
      t.addr = Number(addr % BigInt(TWO53));
      t.addrHi = Number((addr >> 53n) & 0x7ffn);
    } else {
      t.addr = addr;
      t.addrHi = 0;
    }
    t.write = write;
    t.priv = o.priv ?? false;
    t.instr = o.instr ?? false;
    return t;
  }

  private fail(r: TxnResult, iova: number): DmaOutcome {
    this.faults++;
    return { ok: false, fault: r.reason, ...(r.event ? { event: eventName(r.event) } : {}), iova };
  }

  /** Run a DMA of `len` bytes; `data` for writes. */
  private run(
    iova: number | bigint,
    len: number,
    write: boolean,
    data: Uint8Array | undefined,
    o: DmaOptions,
    translated: boolean,
  ): DmaOutcome {
    const pr = this.probes;
    if (!pr.dmaStart.active && !pr.dmaEnd.active)
      return this.runDma(iova, len, write, data, o, translated);
    if (pr.dmaStart.active) pr.dmaStart.fire({ ep: this, iova, len, write, translated });
    const outcome = this.runDma(iova, len, write, data, o, translated);
    if (pr.dmaEnd.active) pr.dmaEnd.fire({ ep: this, outcome });
    return outcome;
  }

  private runDma(
    iova: number | bigint,
    len: number,
    write: boolean,
    data: Uint8Array | undefined,
    o: DmaOptions,
    translated: boolean,
  ): DmaOutcome {
    this.dmas++;
    const pas: number[] = [];
    let razwi = false;
    let ipa: number | undefined;
    let tlbHit = true;
    // addresses as numbers while they fit (iova + len ≤ 2^53), else as BigInt (64-bit IOVAs)
    const num =
      typeof iova === 'number' && Number.isSafeInteger(iova) && iova >= 0 && iova + len <= TWO53
        ? iova
        : -1;
    const base = num >= 0 ? 0n : typeof iova === 'bigint' ? iova : BigInt(iova);
    for (let off = 0; off < len;) {
      let lo: number;
      let addr: number | bigint;
      /** the address modulo 2^53, for a fault report */
      let low: number;
      if (num >= 0) {
        addr = low = num + off;
        lo = low % 4096;
      } else {
        const a = base + BigInt(off);
        lo = Number(a % 4096n);
        addr = a < BigInt(TWO53) ? Number(a) : a;
        low = Number(a % BigInt(TWO53));
      }
      const n = Math.min(4096 - lo, len - off);
      let r: TxnResult;
      if (o.ats && !translated) {
        const out = this.atcTranslate(addr, write, o);
        if (typeof out === 'string') {
          this.faults++;
          return { ok: false, fault: out, iova: low };
        }
        r = this.smmu.translated(this.setTxn(out, write, o), this.res);
      } else if (translated) {
        r = this.smmu.translated(this.setTxn(addr, write, o), this.res);
      } else {
        r = this.smmu.translate(this.setTxn(addr, write, o), this.res);
      }
      if (!r.ok && !r.razwi) return this.fail(r, low);
      if (r.razwi) razwi = true;
      if (off === 0 && r.ipa >= 0) ipa = r.ipa;
      if (!r.tlbHit) tlbHit = false;
      pas.push(r.razwi ? -1 : r.pa);
      off += n;
    }
    try {
      const out = write ? undefined : new Uint8Array(len);
      let off = 0;
      for (const pa of pas) {
        const n = Math.min(
          4096 - (num >= 0 ? (num + off) % 4096 : Number((base + BigInt(off)) % 4096n)),
          len - off,
        );
        if (pa >= 0) {
          if (write) this.mem.writeBytes(pa, data!.subarray(off, off + n));
          else out!.set(this.mem.readBytes(pa, n), off);
        }
        off += n;
      }
      return {
        ok: true,
        pa: pas[0]!,
        ...(ipa !== undefined ? { ipa } : {}),
        ...(out ? { data: out } : {}),
        ...(razwi ? { razwi } : {}),
        tlbHit,
      };
    } catch (e) {
      if (!(e instanceof ExternalAbort)) throw e;
      this.faults++;
      return {
        ok: false,
        fault: `completer abort: no memory at PA 0x${e.addr.toString(16)}`,
        iova: num >= 0 ? num : Number(base % BigInt(TWO53)),
      };
    }
  }

  read(iova: number | bigint, len: number, o: DmaOptions = {}): DmaOutcome {
    return this.run(iova, len, false, undefined, o, false);
  }

  write(iova: number | bigint, data: Uint8Array, o: DmaOptions = {}): DmaOutcome {
    return this.run(iova, data.length, true, data, o, false);
  }

  /** A Translated transaction to `addr` as given (the device claims it was translated). */
  readTranslated(addr: number, len: number, o: DmaOptions = {}): DmaOutcome {
    return this.run(addr, len, false, undefined, o, true);
  }
  writeTranslated(addr: number, data: Uint8Array, o: DmaOptions = {}): DmaOutcome {
    return this.run(addr, data.length, true, data, o, true);
  }

  /** Translate through the ATC, sending a Translation Request on a miss. Returns the translated address or a reason. */
  private atcTranslate(iova: number | bigint, write: boolean, o: DmaOptions): number | string {
    const a = typeof iova === 'bigint' ? Number(iova % BigInt(TWO53)) : iova;
    const page = a - (a % 4096);
    const key = `${o.ssid ?? this.defaultSsid ?? -1}:${page}`;
    let e = this.atc.get(key);
    if (!e) {
      const resp = this.atsRequest(page, o);
      if (!resp.ok) return `ATS Translation Request denied (${resp.status}: ${resp.reason})`;
      e = { out: resp.addr - (resp.addr % 4096), read: resp.read, write: resp.write };
      this.atc.set(key, e);
    }
    if (write ? !e.write : !e.read)
      return `ATS translation grants no ${write ? 'write' : 'read'} permission`;
    return e.out + (a % 4096);
  }

  /** Send an ATS Translation Request for one page. */
  atsRequest(iova: number, o: DmaOptions = {}) {
    this.atsRequests++;
    return this.smmu.atsTranslate(this.setTxn(iova, false, o));
  }

  invalidateAtc(ssid: number | null, addr: number, bytes: number): void {
    for (const k of [...this.atc.keys()]) {
      const [s, p] = k.split(':');
      const page = Number(p);
      if (ssid !== null && Number(s) !== ssid) continue;
      if (page + 4096 > addr && page < addr + bytes) this.atc.delete(k);
    }
  }
}
