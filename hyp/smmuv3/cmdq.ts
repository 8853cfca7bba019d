/**
 * Command-queue emulation (designs.md §1.5): the host's queue is host memory the hypervisor
 * only reads. On a host CMDQ_PROD write each pending host command is copied once into
 * hypervisor memory, checked on the copy (cmd-policy.ts), and appended to the shadow queue;
 * the hardware drains the shadow queue before the PROD write returns.
 *
 * Errors reach the host the way the hardware reports them. A command the hardware refuses
 * (or one the hypervisor rejects, which it replaces with an illegal command) stops the
 * hardware; the host then reads CMDQ_CONS pointing at *its* slot, with the hardware's ERR,
 * and GERROR.CMDQ_ERR. When the host acknowledges through GERRORN, the hypervisor replaces the
 * shadow slot with a CMD_SYNC (the recovery Linux does on its own queue) and lets the
 * hardware go on; host commands after the failed one are then processed. So the unchanged
 * Linux recovery works under the hypervisor.
 */
import { ptrMask } from '../../hw/smmu/queue.ts';
import { get } from '../../hw/bits.ts';
import { Q_BASE } from '../../hw/smmu/regs.ts';
import { queueBase } from '../../hw/smmu/queue.ts';
import { checkCommand, FORWARD, RESHADOW, type CmdCheck } from './cmd-policy.ts';
import { POISON, HYP_SLOT, type ShadowQueue } from './shadowq.ts';
import type { HostMemory } from '../mem/hostmem.ts';
import type { FailureLog } from '../policy/failure.ts';
import type { RuleName } from '../policy/policy.ts';
import { Probe, type StatRecord } from '../../hw/probe.ts';
import { HYP_PROBES, HYP_STATS } from '../probes.ts';
import type { HostCommandPath } from './cmd-path.ts';

// Module-local aliases of imported bindings for the per-command loop (under the TypeScript
// loader an imported binding is read through a getter on every access).
const checkCmd = checkCommand;
const V_FORWARD = FORWARD;
const V_RESHADOW = RESHADOW;
const maskOf = ptrMask;

/** pKVM caps the host queue at 2^19 entries */
export const HOST_CMDQ_MAX_SHIFT = 19;

export interface CmdqEmuEnv {
  readonly hostMem: HostMemory;
  readonly shadow: ShadowQueue;
  readonly failures: FailureLog;
  weak(r: RuleName): boolean;
  /**
   * Reshadow the STE for `sid`. 'ok', or the failure outcome when the host STE or the CFGI
   * was refused (already recorded; the shadow STE is then an abort STE): 'reject' tells the
   * host, 'log' carries on.
   */
  reshadow(sid: number): 'ok' | 'reject' | 'log';
}

/** The emulation's counters (declared in HYP_STATS.hostCmdq). */
export type CmdqEmuStats = StatRecord<typeof HYP_STATS.hostCmdq>;

export class HostCmdq implements HostCommandPath {
  /** the host's CMDQ_BASE as written (cached; the hardware has the shadow queue) */
  baseLo = 0;
  baseHi = 0;
  /** queue geometry captured at CMDQEN 0→1 */
  addr = 0;
  log2 = 0;
  enabled = false;
  /** cached host PROD, and the emulated CONS (how far the hypervisor has copied) */
  prod = 0;
  cons = 0;
  /** while a command error is pending: the host slot it belongs to, else -1 */
  errHostPtr = -1;
  readonly stats: CmdqEmuStats = HYP_STATS.hostCmdq.create();
  private readonly cmd = new Uint32Array(4);
  private readonly check: CmdCheck;
  /** probe points: each host command's verdict, before it is acted on (traces) */
  readonly probes = { verdict: new Probe(HYP_PROBES.verdict) } as const;

  constructor(private readonly env: CmdqEmuEnv) {
    this.check = {
      weak: (r) => env.weak(r),
      sid: 0,
      rule: 'cfgi-leaf',
      reason: '',
      syncRewrites: 0,
    };
  }

  /** CMDQ_BASE.ADDR and the size pKVM uses: 2^min(LOG2SIZE, 19) entries. */
  geometry(): { addr: number; log2: number; bytes: number } {
    const log2 = Math.min(get([this.baseLo], Q_BASE.LOG2SIZE), HOST_CMDQ_MAX_SHIFT);
    // the base aligned down to the queue size, where the SMMU itself would read the queue
    const addr = queueBase({ lo: this.baseLo, hi: this.baseHi }, log2, 16);
    return { addr, log2, bytes: 2 ** log2 * 16 };
  }

  enable(): void {
    const g = this.geometry();
    this.addr = g.addr;
    this.log2 = g.log2;
    this.enabled = true;
    const m = ptrMask(this.log2);
    this.prod &= m;
    this.cons &= m;
  }

  disable(): void {
    this.enabled = false;
  }

  /** host CMDQ_CONS read: the emulated CONS (or the failed slot) with the hardware's ERR */
  readCons(): number {
    const hw = this.env.shadow.hwCons();
    const err = hw & 0x7f000000;
    return ((this.errHostPtr >= 0 && err ? this.errHostPtr : this.cons) | err) >>> 0;
  }

  /** host CMDQ_PROD write */
  writeProd(v: number): void {
    this.stats.prodWrites++;
    if (!this.enabled) {
      this.prod = v & 0xfffff;
      return;
    }
    this.prod = v & ptrMask(this.log2);
    if (this.errHostPtr < 0) this.process();
  }

  /**
   * The host acknowledged GERROR.CMDQ_ERR (before the ack is forwarded): replace the failed
   * shadow slot with a CMD_SYNC so the hardware can go on.
   */
  beforeErrorAck(): void {
    const sq = this.env.shadow;
    const hw = sq.hwCons();
    if (sq.hwErr(hw) === 0) return;
    sq.patchErrorSlot(hw);
  }

  /** After the ack reached the hardware: note a further error, else continue with what the host has queued. */
  afterErrorAck(): void {
    const sq = this.env.shadow;
    const hw = sq.hwCons();
    if (sq.hwErr(hw) !== 0) {
      this.noteHwError(hw);
      return;
    }
    this.errHostPtr = -1;
    if (this.enabled) this.process();
  }

  private noteHwError(hw: number): void {
    const p = this.env.shadow.errorHostPtr(hw);
    this.stats.hwErrors++;
    if (p === HYP_SLOT)
      this.env.failures.internal("the hardware refused one of the hypervisor's own commands");
    this.errHostPtr = p;
  }

  /** Copy, check and forward host commands from CONS to PROD. */
  private process(): void {
    const env = this.env;
    const sq = env.shadow;
    const hostMem = env.hostMem;
    const stats = this.stats;
    const qs = this.log2;
    const m = maskOf(qs);
    const idxMask = 2 ** qs - 1;
    const base = this.addr;
    const w = this.cmd;
    const c = this.check;
    const prod = this.prod;
    let cons = this.cons;
    const doubleFetch = env.weak('double-fetch');
    const verdictProbe = this.probes.verdict;
    while (cons !== prod) {
      if (!sq.hasRoom(8) && !this.flush()) break;
      const addr = base + (cons & idxMask) * 16;
      hostMem.copy(addr, w, 4);
      const v = checkCmd(w, c);
      if (verdictProbe.active) verdictProbe.fire({ words: w, verdict: v, check: c, hostPtr: cons });
      if (v === V_RESHADOW) {
        // the commands before it go first; a hardware error stops here, before the reshadow
        if (!this.flush()) break;
        if (env.reshadow(c.sid) === 'reject') {
          cons = (cons + 1) & m;
          this.cons = cons;
          if (this.reject((cons - 1) & m)) break;
          continue;
        }
      } else if (v !== V_FORWARD) {
        const outcome = env.failures.violate(c.rule, c.reason);
        cons = (cons + 1) & m;
        this.cons = cons;
        if (outcome === 'reject') {
          if (this.reject((cons - 1) & m)) break;
        } else {
          stats.dropped++;
        }
        continue;
      }
      if (doubleFetch) hostMem.copy(addr, w, 4); // the double-fetch weakening: forward a second read, unchecked
      sq.append(w, cons);
      stats.forwarded++;
      cons = (cons + 1) & m;
    }
    this.cons = cons;
    stats.syncRewrites = c.syncRewrites;
    if (this.errHostPtr < 0) this.flush();
  }

  /**
   * A rejected command: put an illegal command in its shadow slot, so the hardware reports
   * CERROR_ILL for it. Returns true (processing stops at the error).
   */
  private reject(hostPtr: number): boolean {
    this.stats.rejected++;
    this.env.shadow.append(POISON, hostPtr);
    this.flush();
    return true;
  }

  /** Publish the shadow queue; false when the hardware stopped on an error (recorded). */
  private flush(): boolean {
    const sq = this.env.shadow;
    const hw = sq.publish();
    if (sq.hwErr(hw) !== 0) {
      this.noteHwError(hw);
      return false;
    }
    return true;
  }
}
