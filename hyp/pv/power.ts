/**
 * The SMMU's power under the paravirtual designs: no host driver ever programs the SMMU, so the
 * hypervisor enables it itself at boot, and the host's power-domain hypercall (hvc_pd in
 * designs.md §2.1) turns it off and back on.
 *
 * On (boot, and every power-on; a powered-off SMMU may have lost its registers): CR1 (the
 * hypervisor's structures are Inner Shareable write-back), the shadow command queue's base with
 * PROD = CONS = 0, the shadow stream table's base and configuration, the hypervisor's own event
 * queue (programmed, see HYP_EVTQ_ENABLED), GBPA.ABORT (it stays), then CMDQEN; everything the SMMU may have cached is
 * invalidated (CFGI_ALL, TLBI_NSNH_ALL, CMD_SYNC); only then SMMUEN (with ATSCHK when the SMMU
 * implements ATS, so a Translated transaction is checked against STE.EATS, which the
 * hypervisor keeps 0).
 *
 * Off: CR0 = 0 (translation, the queues and ATS checking off): with GBPA.ABORT every DMA is
 * aborted. The hypervisor issues no command while it is off; power-on invalidates everything.
 */
import type { MmioBus } from '../../hw/bus.ts';
import { set, wordMask } from '../../hw/bits.ts';
import { OFF, GBPA, Q_BASE } from '../../hw/smmu/regs.ts';
import { encodeCommand } from '../../hw/smmu/commands.ts';
import { CR1_TEMPLATE } from '../smmuv3/host-regs.ts';
import { SMMUEN, CMDQEN, EVTQEN, ATSCHK } from '../smmuv3/cr0.ts';
import { SYNC_OK, type ShadowQueue } from '../smmuv3/shadowq.ts';
import type { ShadowStreamTable } from '../smmuv3/strtab.ts';
import type { HypPool } from '../mem/pool.ts';
import { HypBootError } from '../boot-error.ts';

/** the hypervisor's event queue: 2^7 records of 32 bytes (one page) */
const EVTQ_SHIFT = 7;
const EVT_BYTES = 32;
/**
 * EVENTQEN stays 0: the records would land in hyp memory, and the isolation oracle, which judges
 * from the hardware alone, cannot tell an SMMU write the hypervisor asked for from one it must
 * not allow (every faulting DMA would read as a breach). Nothing is lost: the hypervisor sees
 * every record before the enable is checked (the event queue's router: guests' records still go
 * to their vSMMUs), and the host has no event queue under these designs. Turn it on once the
 * oracle is told which SMMU queues are the hypervisor's.
 */
export const HYP_EVTQ_ENABLED = false;
const GBPA_ABORT = wordMask(GBPA.ABORT);
const GBPA_UPDATE = wordMask(GBPA.Update);

export interface SmmuPowerEnv {
  readonly bus: MmioBus;
  readonly mmio: number;
  readonly pool: HypPool;
  readonly shadowQ: ShadowQueue;
  readonly strtab: ShadowStreamTable;
  /** IDR0.ATS */
  readonly hwAts: boolean;
  /** IDR1.EVENTQS */
  readonly evtqMax: number;
}

export class SmmuPower {
  /** whether the SMMU is on (translating) */
  on = false;
  /** the hypervisor's event queue (its records are nobody's: the host has no event queue) */
  readonly evtq: number;
  private readonly evtqShift: number;
  /** power-ons and power-offs done */
  ons = 0;
  offs = 0;

  constructor(private readonly env: SmmuPowerEnv) {
    this.evtqShift = Math.min(EVTQ_SHIFT, env.evtqMax);
    this.evtq = env.pool.alloc(2 ** this.evtqShift * EVT_BYTES, 'hyp event queue');
  }

  private r32(off: number): number {
    return this.env.bus.read32('hyp', this.env.mmio + off);
  }
  private w32(off: number, v: number): void {
    this.env.bus.write32('hyp', this.env.mmio + off, v >>> 0);
  }

  private qBase(addr: number, log2: number): bigint {
    const q = [0, 0];
    set(q, Q_BASE.ADDR, addr / 32);
    set(q, Q_BASE.LOG2SIZE, log2);
    set(q, Q_BASE.RWA, 1);
    return (BigInt(q[1]!) << 32n) | BigInt(q[0]!);
  }

  /** Program and enable the SMMU. Throws HypBootError if it does not come up. */
  powerOn(): void {
    const env = this.env;
    const bus = env.bus;
    const sq = env.shadowQ;
    this.w32(OFF.CR0, 0);
    this.w32(OFF.CR1, CR1_TEMPLATE);
    bus.write64('hyp', env.mmio + OFF.CMDQ_BASE, this.qBase(sq.base, sq.log2size));
    this.w32(OFF.CMDQ_PROD, 0);
    this.w32(OFF.CMDQ_CONS, 0);
    sq.reset();
    env.strtab.programHw(env.mmio);
    bus.write64('hyp', env.mmio + OFF.EVENTQ_BASE, this.qBase(this.evtq, this.evtqShift));
    this.w32(OFF.EVENTQ_PROD, 0);
    this.w32(OFF.EVENTQ_CONS, 0);
    this.waitGbpa();
    this.w32(OFF.GBPA, this.r32(OFF.GBPA) | GBPA_ABORT | GBPA_UPDATE);
    this.waitGbpa();
    const evtqen = HYP_EVTQ_ENABLED ? EVTQEN : 0;
    this.enable(CMDQEN | evtqen);
    const r = sq.sync([
      encodeCommand('CFGI_STE_RANGE', { Range: 31 }),
      encodeCommand('TLBI_NSNH_ALL', {}),
    ]);
    if (r !== SYNC_OK) throw new HypBootError(`SMMU power-on: ${sq.why(r)}`);
    this.enable(CMDQEN | evtqen | SMMUEN | (env.hwAts ? ATSCHK : 0));
    this.on = true;
    this.ons++;
  }

  /** Disable the SMMU (GBPA.ABORT: every DMA aborts). */
  powerOff(): void {
    this.enable(0);
    this.on = false;
    this.offs++;
  }

  private enable(cr0: number): void {
    this.w32(OFF.CR0, cr0);
    for (let i = 0; i < 1000; i++) if (this.r32(OFF.CR0ACK) === cr0 >>> 0) return;
    throw new HypBootError(`SMMU CR0ACK never followed CR0=0x${cr0.toString(16)}`);
  }

  private waitGbpa(): void {
    for (let i = 0; i < 1000; i++) if ((this.r32(OFF.GBPA) & GBPA_UPDATE) === 0) return;
    throw new HypBootError('GBPA.Update never cleared');
  }
}
