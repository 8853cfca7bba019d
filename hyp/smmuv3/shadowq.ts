/**
 * The hyp-owned shadow command queue: the only queue the hardware ever reads. Sanitized host
 * commands and the hypervisor's own commands (CFGI_STE while reshadowing, the idmap's TLBIs,
 * CMD_SYNC) are appended here under one lock, published with one CMDQ_PROD write, and the
 * hypervisor waits synchronously until the hardware has consumed them ("eagerly consume").
 *
 * Each slot remembers which host command (host queue pointer) it came from, so that a command
 * error the hardware reports on a shadow slot can be shown to the host at the right host slot.
 *
 * Hot path: appended commands are staged in a hyp-private copy of the ring and written to the
 * queue's memory with one bulk copy per publish (the hardware reads slots only below its PROD,
 * i.e. after the publish), and the free space is tracked as a lower bound refreshed from the
 * hardware CONS at each publish, so appending a command costs no MMIO access.
 */
import type { MmioBus } from '../../hw/bus.ts';
import { OFF, CMDQ_CONS } from '../../hw/smmu/regs.ts';
import { encodeCommand } from '../../hw/smmu/commands.ts';
import { HYP_PROBES, HYP_STATS, type ShadowAppend } from '../probes.ts';
import { Probe } from '../../hw/probe.ts';
import { ExpectedError } from '../../hw/expected-error.ts';

const R_PROD = OFF.CMDQ_PROD;
const R_CONS = OFF.CMDQ_CONS;
const ERR_SHIFT = CMDQ_CONS.ERR.shift;
const ERR_MASK = CMDQ_CONS.ERR.mask;
/** the hypervisor's own CMD_SYNC: CS=SEV, MSH=ISH, MSIAttr=OIWB (no MSI) */
const SYNC = encodeCommand('CMD_SYNC', { CS: 2, MSH: 3, MSIAttr: 0xf });
/** what replaces a command the hardware refused, once the error is acknowledged: CMD_SYNC, CS=NONE */
export const SYNC_NONE = encodeCommand('CMD_SYNC', { CS: 0 });
/** a command the hardware rejects with CERROR_ILL (reserved opcode 0x00): how a rejected host command is reported */
export const POISON = new Uint32Array(4);

/** sync() outcomes */
export const SYNC_OK = 0;
export const SYNC_NO_ROOM = 1;
export const SYNC_STOPPED = 2;

/** the slot was written by the hypervisor itself */
export const HYP_SLOT = -1;

/** A sync() failure carried across a boundary that unwinds; built without a stack (hw/expected-error.ts). */
export class ShadowQueueError extends ExpectedError {
  /** the commands were appended (and will run when the hardware restarts), as opposed to refused for lack of room */
  queued = false;
  constructor(why: string) {
    super(`shadow command queue: ${why}`);
    this.name = 'ShadowQueueError';
  }
}

export class ShadowQueue {
  prod = 0;
  /** host queue pointer of the command in each slot, or HYP_SLOT */
  readonly slotHost: Int32Array;
  readonly size: number;
  private readonly mask: number;
  /** commands the hardware consumed from this queue, by who wrote them */
  stats = HYP_STATS.shadowQ.create();
  /** probe points: each command before it is written (hyp/probes.ts) */
  readonly probes = { append: new Probe(HYP_PROBES.shadowAppend) } as const;
  private readonly appended: ShadowAppend = { words: new Uint32Array(0), hostPtr: 0 };
  private pendingHost = 0;
  private pendingHyp = 0;
  /** the ring's commands as the hypervisor wrote them (4 words a slot), and its bytes */
  private readonly stage: Uint32Array;
  private readonly stage8: Uint8Array;
  /** queue pointer up to which the staged commands are in the queue's memory */
  private written = 0;
  /** free slots, a lower bound: exact after a publish, decremented by append (the hardware only frees slots) */
  private room = 0;
  /** CONS.ERR when the last sync() stopped */
  private stoppedErr = 0;

  constructor(
    private readonly bus: MmioBus,
    private readonly mmio: number,
    readonly base: number,
    readonly log2size: number,
  ) {
    this.size = 2 ** log2size;
    this.mask = 2 * this.size - 1;
    this.slotHost = new Int32Array(this.size);
    this.stage = new Uint32Array(this.size * 4);
    this.stage8 = new Uint8Array(this.stage.buffer);
  }

  /** HW CMDQ_CONS (pointer and ERR). */
  hwCons(): number {
    return this.bus.read32('hyp', this.mmio + R_CONS);
  }

  /** The hardware's CONS.ERR while an error is pending, else 0. */
  hwErr(cons = this.hwCons()): number {
    return (cons >>> ERR_SHIFT) & ERR_MASK;
  }

  space(cons = this.hwCons()): number {
    const c = cons & this.mask;
    const used = (this.prod - c) & this.mask;
    return this.size - used;
  }

  /** Whether `n` slots are free (space() >= n), reading the hardware CONS only when the tracked lower bound is short. */
  hasRoom(n: number): boolean {
    if (this.room >= n) return true;
    this.room = this.space();
    return this.room >= n;
  }

  /** Append one command (4 words) from host slot `hostPtr` (or HYP_SLOT). The caller has checked space. */
  append(w: Uint32Array, hostPtr: number): void {
    if (this.probes.append.active) {
      this.appended.words = w;
      this.appended.hostPtr = hostPtr;
      this.probes.append.fire(this.appended);
    }
    const idx = this.prod & (this.size - 1);
    const s = this.stage;
    const o = idx * 4;
    s[o] = w[0]!;
    s[o + 1] = w[1]!;
    s[o + 2] = w[2]!;
    s[o + 3] = w[3]!;
    this.slotHost[idx] = hostPtr;
    this.prod = (this.prod + 1) & this.mask;
    this.room--;
    if (hostPtr === HYP_SLOT) this.pendingHyp++;
    else this.pendingHost++;
  }

  /** Write the commands appended since the last publish into the queue's memory (at most two bulk copies). */
  private writeOut(): void {
    if (this.written === this.prod) return;
    const from = this.written & (this.size - 1);
    const to = this.prod & (this.size - 1);
    const s8 = this.stage8;
    if (from < to) {
      this.bus.writeBytes('hyp', this.base + from * 16, s8.subarray(from * 16, to * 16));
    } else {
      this.bus.writeBytes('hyp', this.base + from * 16, s8.subarray(from * 16));
      if (to > 0) this.bus.writeBytes('hyp', this.base, s8.subarray(0, to * 16));
    }
    this.written = this.prod;
  }

  /**
   * Publish with one HW PROD write; the hardware consumes synchronously. Returns the HW CONS
   * afterwards (with ERR). The caller checks for an error.
   */
  publish(): number {
    this.writeOut();
    this.bus.write32('hyp', this.mmio + R_PROD, this.prod);
    this.stats.published++;
    const cons = this.hwCons();
    this.room = this.size - ((this.prod - (cons & this.mask)) & this.mask);
    if ((cons & this.mask) === this.prod) {
      this.stats.host += this.pendingHost;
      this.stats.hyp += this.pendingHyp;
      this.pendingHost = 0;
      this.pendingHyp = 0;
    }
    return cons;
  }

  /** Whether the hardware has consumed everything (and has no error pending). */
  drained(cons = this.hwCons()): boolean {
    return (cons & this.mask) === this.prod && this.hwErr(cons) === 0;
  }

  /**
   * The hypervisor's own commands, followed by a CMD_SYNC, published and waited for. Returns
   * SYNC_OK, or why the hardware could not complete them (SYNC_NO_ROOM: nothing appended;
   * SYNC_STOPPED: appended, the hardware stopped or is disabled): the caller must then not
   * complete whatever needed them. A value, as pKVM returns an error code; no allocation.
   */
  sync(cmds: readonly Uint32Array[]): number {
    if (!this.hasRoom(cmds.length + 1)) return SYNC_NO_ROOM;
    for (const c of cmds) this.append(c, HYP_SLOT);
    this.append(SYNC, HYP_SLOT);
    this.stats.syncs++;
    const cons = this.publish();
    if (!this.drained(cons)) {
      this.stoppedErr = this.hwErr(cons);
      return SYNC_STOPPED;
    }
    return SYNC_OK;
  }

  /** Why the last sync() that failed with `code` failed, for a report. */
  why(code: number): string {
    if (code === SYNC_NO_ROOM)
      return "shadow command queue: no space for the hypervisor's commands";
    return this.stoppedErr
      ? `shadow command queue: the hardware stopped with CONS.ERR=${this.stoppedErr}`
      : 'shadow command queue: the hardware did not consume the queue (CMDQEN=0?)';
  }

  /** sync() for callers across a boundary that unwinds (the ownership veto, the vSMMU): throws ShadowQueueError. */
  issueAndSync(cmds: readonly Uint32Array[]): void {
    const r = this.sync(cmds);
    if (r !== SYNC_OK) throw this.error(r);
  }

  /** The ShadowQueueError for a failed sync() code. */
  error(code: number): ShadowQueueError {
    const e = new ShadowQueueError(this.why(code).slice('shadow command queue: '.length));
    e.queued = code === SYNC_STOPPED;
    return e;
  }

  /** Replace the slot the hardware stopped at (an acknowledged error) with CMD_SYNC CS=NONE. */
  patchErrorSlot(cons = this.hwCons()): number {
    const idx = cons & (this.size - 1);
    this.bus.writeWords('hyp', this.base + idx * 16, SYNC_NONE, 4);
    return this.slotHost[idx]!;
  }

  /** The host pointer of the slot the hardware stopped at. */
  errorHostPtr(cons = this.hwCons()): number {
    return this.slotHost[cons & (this.size - 1)]!;
  }

  /** Reset after the host re-enables the queue (HW PROD=CONS=0 written by the hyp while CMDQEN=0). */
  reset(): void {
    this.prod = 0;
    this.written = 0;
    this.room = 0;
    this.pendingHost = 0;
    this.pendingHyp = 0;
  }
}
