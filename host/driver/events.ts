/**
 * The driver's event queue consumer (Linux's arm_smmu_evtq_thread): read every record between
 * CONS and PROD, decode it with the shared decoder, log it, advance CONS; on overflow
 * (PROD.OVFLG != CONS.OVACKFLG) log it and acknowledge by copying OVFLG into CONS.OVACKFLG.
 */
import type { MmioBus } from '../../hw/bus.ts';
import { OFF } from '../../hw/smmu/regs.ts';
import { decodeEvent, EVT_BYTES, EVT_WORDS, type DecodedEvent } from '../../hw/smmu/events.ts';
import { qIndex, qInc, ptrMask } from '../../hw/smmu/queue.ts';
import { layerLogger } from '../../hw/log.ts';

const log = layerLogger('host');
const OVF = 0x8000_0000;

export class EventDrain {
  /** every record drained, in order */
  readonly events: DecodedEvent[] = [];
  overflows = 0;

  constructor(
    private readonly bus: MmioBus,
    private readonly mmio: number,
    readonly base: number,
    readonly log2size: number,
    private readonly actor = 'host',
  ) {}

  /** Drain the queue; returns the records read this time. */
  drain(): DecodedEvent[] {
    const got: DecodedEvent[] = [];
    const prodReg = this.bus.read32(this.actor, this.mmio + OFF.EVENTQ_PROD);
    const consReg = this.bus.read32(this.actor, this.mmio + OFF.EVENTQ_CONS);
    const m = ptrMask(this.log2size);
    const prod = prodReg & m;
    let cons = consReg & m;
    const w = new Uint32Array(EVT_WORDS);
    while (cons !== prod) {
      const bytes = this.bus.readBytes(
        this.actor,
        this.base + qIndex(cons, this.log2size) * EVT_BYTES,
        EVT_BYTES,
      );
      new Uint8Array(w.buffer).set(bytes);
      const e = decodeEvent(w);
      got.push(e);
      log.info({ event: e.type, sid: e.sid, fields: e.fields }, 'event');
      cons = qInc(cons, this.log2size);
    }
    let ack = consReg & OVF;
    if (((prodReg ^ consReg) & OVF) !== 0) {
      this.overflows++;
      log.warn('EVTQ overflow detected -- events lost');
      ack = prodReg & OVF;
    }
    if (got.length || ack !== (consReg & OVF))
      this.bus.write32(this.actor, this.mmio + OFF.EVENTQ_CONS, (ack | cons) >>> 0);
    this.events.push(...got);
    return got;
  }
}
