/**
 * The Event queue (IHI 0070 7.2, 7.4): the SMMU is its producer. Records are 32 bytes,
 * written at EVENTQ_PROD. When the queue is full a record is discarded and, if no overflow is
 * already present (PROD.OVFLG == CONS.OVACKFLG), OVFLG is toggled. When EVENTQEN=0 events are
 * dropped with no overflow. A record write that aborts activates GERROR.EVENTQ_ABT_ERR.
 */
import { EVT_BYTES, EVT_WORDS, decodeEvent, type DecodedEvent } from './events.ts';
import { qFull, qIndex, qInc, ptrMask } from './queue.ts';
import type { SmmuWriter } from './msi.ts';
import { Probe } from '../probe.ts';
import { HW_PROBES } from '../probes.ts';

export const OVFLG = 0x8000_0000;

export interface EvtqEnv {
  enabled(): boolean;
  /** queue base PA (aligned) and log2 size (capped at IDR1.EVENTQS) */
  base(): number;
  log2size(): number;
  /** where records are written (the SMMU's writer; an emulated SMMU passes its own) */
  writer: Pick<SmmuWriter, 'record'>;
  abort(): void;
  irq(): void;
}

export class EventQueue {
  /** PROD (WR | wrap) and OVFLG (bit 31) */
  prod = 0;
  /** CONS (RD | wrap) and OVACKFLG (bit 31) */
  cons = 0;
  written = 0;
  dropped = 0;
  overflows = 0;
  aborts = 0;
  /** every record written, decoded (for scenarios, tests and the JSON output) */
  readonly log: DecodedEvent[] = [];
  keepLog = true;

  /**
   * The hypervisor's interposition on event records (where pKVM handles the event-queue
   * interrupt and routes its guests' faults): called with every record before it is written,
   * ahead of the probes. A part of the machine's configuration, not an observer: one slot, null
   * without a hypervisor.
   */
  router: ((words: Uint32Array) => void) | null = null;
  /** probe points: every record offered, after the hypervisor has routed it (traces) */
  readonly probes = { event: new Probe(HW_PROBES.event) } as const;

  constructor(private readonly env: EvtqEnv) {}

  get overflowPresent(): boolean {
    return ((this.prod ^ this.cons) & OVFLG) !== 0;
  }

  /** Record an event. Returns true when it was written to memory. */
  record(words: Uint32Array): boolean {
    if (words.length !== EVT_WORDS) throw new Error('an event record is 8 words');
    if (this.router !== null) this.router(words);
    if (this.probes.event.active) this.probes.event.fire({ queue: this, words });
    if (!this.env.enabled()) {
      this.dropped++;
      return false;
    }
    const qs = this.env.log2size();
    const prod = this.prod & ptrMask(qs);
    if (qFull(prod, this.cons & ptrMask(qs), qs)) {
      this.dropped++;
      if (!this.overflowPresent) {
        this.prod = (this.prod ^ OVFLG) >>> 0;
        this.overflows++;
      }
      return false;
    }
    const pa = this.env.base() + qIndex(prod, qs) * EVT_BYTES;
    if (!this.env.writer.record('event', pa, words)) {
      this.aborts++;
      this.env.abort();
      return false;
    }
    this.prod = ((this.prod & OVFLG) | qInc(prod, qs)) >>> 0;
    this.written++;
    if (this.keepLog) this.log.push(decodeEvent(words));
    this.env.irq();
    return true;
  }
}
