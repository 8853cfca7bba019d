/**
 * The hyp-owned shadow command queue: the only queue the hardware ever reads. Sanitized host
 * commands and the hypervisor's own commands (CFGI_STE while reshadowing, the idmap's TLBIs,
 * CMD_SYNC) are appended here under one lock, published with one CMDQ_PROD write, and the
 * hypervisor waits synchronously until the hardware has consumed them ("eagerly consume").
 *
 * Each slot remembers which host command (host queue pointer) it came from, so that a command
 * error the hardware reports on a shadow slot can be shown to the host at the right host slot.
 */
import type { MmioBus } from '../hw/bus.ts';
import { OFF, CMDQ_CONS } from '../hw/smmu/regs.ts';
import { encodeCommand } from '../hw/smmu/commands.ts';

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

/** the slot was written by the hypervisor itself */
export const HYP_SLOT = -1;

export class ShadowQueueError extends Error {
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
  stats = { host: 0, hyp: 0, published: 0, syncs: 0 };
  private pendingHost = 0;
  private pendingHyp = 0;

  constructor(private readonly bus: MmioBus, private readonly mmio: number, readonly base: number, readonly log2size: number) {
    this.size = 2 ** log2size;
    this.mask = 2 * this.size - 1;
    this.slotHost = new Int32Array(this.size);
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
    const used = ((this.prod - c) & this.mask);
    return this.size - used;
  }

  /** Append one command (4 words) from host slot `hostPtr` (or HYP_SLOT). The caller has checked space. */
  append(w: Uint32Array, hostPtr: number): void {
    const idx = this.prod & (this.size - 1);
    this.bus.writeWords('hyp', this.base + idx * 16, w, 4);
    this.slotHost[idx] = hostPtr;
    this.prod = (this.prod + 1) & this.mask;
    if (hostPtr === HYP_SLOT) this.pendingHyp++;
    else this.pendingHost++;
  }

  /**
   * Publish with one HW PROD write; the hardware consumes synchronously. Returns the HW CONS
   * afterwards (with ERR). The caller checks for an error.
   */
  publish(): number {
    this.bus.write32('hyp', this.mmio + R_PROD, this.prod);
    this.stats.published++;
    const cons = this.hwCons();
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
   * The hypervisor's own commands, followed by a CMD_SYNC, published and waited for. Throws
   * ShadowQueueError when the hardware cannot complete them (queue disabled or in error):
   * the caller must then not complete whatever needed them.
   */
  issueAndSync(cmds: readonly Uint32Array[]): void {
    if (this.space() < cmds.length + 1) throw new ShadowQueueError('no space for the hypervisor\'s commands');
    for (const c of cmds) this.append(c, HYP_SLOT);
    this.append(SYNC, HYP_SLOT);
    this.stats.syncs++;
    const cons = this.publish();
    if (!this.drained(cons)) {
      const err = this.hwErr(cons);
      throw new ShadowQueueError(err ? `the hardware stopped with CONS.ERR=${err}` : 'the hardware did not consume the queue (CMDQEN=0?)');
    }
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
    this.pendingHost = 0;
    this.pendingHyp = 0;
  }
}
