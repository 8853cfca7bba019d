/**
 * The host's view of the SMMU registers (designs.md §1.3, §1.4): each trapped host access is
 * looked up in the emulation table (emul.ts) and read from the hardware, from the hypervisor's
 * cache, or emulated; writes are checked, and CR0 edges share and pin the host structures the
 * hypervisor reads or the SMMU writes.
 *
 * A refused access is a value here, not an exception: a check that fails records the violation
 * (FailureLog.violate, which throws HypPanic under the `panic` failure policy: a modeled hyp
 * panic) and the write returns without its effect; a CR0 write first undoes what its earlier
 * edges did.
 */
import type { MmioBus, AccessSize } from '../../hw/bus.ts';
import { get, wordMask } from '../../hw/bits.ts';
import {
  OFF,
  IDR0,
  CR1_WB_ISH,
  GBPA,
  Q_BASE,
  STRTAB_BASE_CFG,
  regNameAt,
} from '../../hw/smmu/regs.ts';
import { encodeCommand } from '../../hw/smmu/commands.ts';
import { queueBase } from '../../hw/smmu/queue.ts';
import { refusalMessage, type PageOwnership } from '../mem/ownership.ts';
import { pageSpan, type Span } from '../mem/span.ts';
import type { FailureLog } from '../policy/failure.ts';
import type { RuleName } from '../policy/policy.ts';
import { SYNC_OK, type ShadowQueue } from './shadowq.ts';
import type { SteShadowing } from './ste-shadowing.ts';
import { LINUX_SPLIT, type ShadowStreamTable } from './strtab.ts';
import { emulatedAt } from './emul.ts';
import type { HostCommandPath } from './cmd-path.ts';
import type { HostView } from './host-view.ts';
import { SMMUEN, PRIQEN, EVTQEN, CMDQEN, ATSCHK, GERR_CMDQ } from './cr0.ts';

/** what the host must not see in IDR0 */
const IDR0_HIDDEN =
  wordMask(IDR0.S2P) | wordMask(IDR0.VMID16) | wordMask(IDR0.MSI) | wordMask(IDR0.HYP);
const IDR0_ATS = wordMask(IDR0.ATS);
const GBPA_ABORT = wordMask(GBPA.ABORT);
/** Linux's CR1: queues and tables Inner Shareable, Write-Back (the template pKVM enforces) */
export const CR1_TEMPLATE = CR1_WB_ISH;

/** sharePin: shared (and pinned), skipped (the rule is weakened), or refused (recorded) */
const SHARED = 1,
  SKIPPED = 0,
  REFUSED = -1;

/** the host ranges the hypervisor shares while they are live */
type SharedKey = 'cmdq' | 'table' | 'evtq' | 'priq';

export interface HostRegsEnv {
  readonly bus: MmioBus;
  readonly mmio: number;
  readonly own: PageOwnership;
  readonly failures: FailureLog;
  readonly view: HostView;
  readonly cmdq: HostCommandPath;
  readonly shadowQ: ShadowQueue;
  readonly strtab: ShadowStreamTable;
  readonly allowAts: boolean;
  /** from the mini-probe */
  readonly hwIdr0: number;
  readonly hwAts: boolean;
  readonly sidBits: number;
  readonly evtqMax: number;
  readonly priqMax: number;
  /** counted refusals */
  readonly stats: { refusedAccesses: number };
  isRam(base: number, size: number): boolean;
  weak(r: RuleName): boolean;
  /**
   * The STE shadowing design's hooks on the host table's life cycle (ste-shadowing.ts):
   * tableLive/tableGone at each SMMUEN edge ('trap-writes'), tableBack at a re-enable ('cfgi')
   */
  readonly table: Pick<SteShadowing, 'tableLive' | 'tableGone' | 'tableBack'>;
}

export class HostRegs {
  /** the host table has been live (SMMUEN=1) before: a later SMMUEN 0→1 is a re-enable */
  private tableWasLive = false;
  /** host ranges shared with the hypervisor while the queue or table is live (pinned unless a weakened rule says not) */
  private shared: Record<SharedKey, (Span & { pinned: boolean }) | null> = {
    cmdq: null,
    table: null,
    evtq: null,
    priq: null,
  };

  constructor(private readonly env: HostRegsEnv) {}

  /** A refused register access: under reject/log the write is ignored and the read returns 0. */
  private refuseAccess(off: number, size: number, dir: 'r' | 'w', why: string): void {
    this.env.stats.refusedAccesses++;
    this.env.failures.violate(
      'reg-access',
      `host ${dir === 'r' ? 'read of' : 'write to'} ${regNameAt(off)} (offset 0x${off.toString(16)}, ${size} bytes): ${why}`,
    );
  }

  read(off: number, size: number): bigint {
    const env = this.env;
    const e = emulatedAt(off);
    if (!e || e.read === 'refuse' || e.width !== size) {
      // the reg-access weakening: what the table does not allow is passed to the hardware as it is
      if (env.weak('reg-access')) return env.bus.read('hyp', env.mmio + off, size as AccessSize);
      this.refuseAccess(
        off,
        size,
        'r',
        !e
          ? 'not in the emulation table'
          : e.width !== size
            ? `the register is ${e.width * 8}-bit`
            : 'not readable by the host',
      );
      return 0n;
    }
    const bus = env.bus;
    const view = env.view;
    switch (e.read) {
      case 'hw':
        return bus.read('hyp', env.mmio + off, e.width);
      case 'idr0': {
        let hide = IDR0_HIDDEN;
        if (!env.allowAts) hide |= IDR0_ATS;
        return BigInt((env.hwIdr0 & ~hide) >>> 0);
      }
      case 'gbpa':
        return BigInt(GBPA_ABORT);
      case 'cr0': {
        const hw = bus.read32('hyp', env.mmio + off);
        return BigInt(((hw & ~ATSCHK) | (view.cr0 & ATSCHK)) >>> 0);
      }
      case 'cmdq-cons':
        return BigInt(env.cmdq.readCons());
      case 'cached':
        switch (e.name) {
          case 'STRTAB_BASE':
            return (BigInt(view.strtabBaseHi) << 32n) | BigInt(view.strtabBaseLo);
          case 'STRTAB_BASE_CFG':
            return BigInt(view.strtabCfg);
          case 'CMDQ_BASE':
            return (BigInt(env.cmdq.baseHi) << 32n) | BigInt(env.cmdq.baseLo);
          case 'CMDQ_PROD':
            return BigInt(env.cmdq.prod);
        }
    }
    return 0n;
  }

  write(off: number, size: number, value: bigint): void {
    const env = this.env;
    const e = emulatedAt(off);
    if (!e || e.write === 'refuse' || e.width !== size) {
      if (env.weak('reg-access')) {
        env.bus.write('hyp', env.mmio + off, size as AccessSize, value);
        return;
      }
      this.refuseAccess(
        off,
        size,
        'w',
        !e
          ? 'not in the emulation table'
          : e.width !== size
            ? `the register is ${e.width * 8}-bit`
            : 'read-only to the host',
      );
      return;
    }
    const bus = env.bus;
    const view = env.view;
    const cmdq = env.cmdq;
    const fail = env.failures;
    const v32 = Number(value & 0xffffffffn) >>> 0;
    const hi32 = Number((value >> 32n) & 0xffffffffn) >>> 0;
    switch (e.write) {
      case 'forward':
        bus.write('hyp', env.mmio + off, e.width, value);
        return;
      case 'ignore':
        return;
      case 'cr0':
        this.writeCr0(v32);
        return;
      case 'cr1':
        if (env.weak('cr1-template')) {
          bus.write32('hyp', env.mmio + OFF.CR1, v32);
          return;
        }
        // recorded, and the template is written all the same
        if (v32 !== CR1_TEMPLATE)
          fail.violate(
            'cr1-template',
            `CR1=0x${v32.toString(16)} is not the template 0x${CR1_TEMPLATE.toString(16)}; the template is written`,
          );
        bus.write32('hyp', env.mmio + OFF.CR1, CR1_TEMPLATE);
        return;
      case 'gerrorn':
        this.writeGerrorn(v32);
        return;
      case 'irq-cfg0': {
        const addr = value & 0x00ff_ffff_ffff_fffcn;
        if (addr !== 0n && !env.weak('irq-cfg-msi')) {
          fail.violate(
            'irq-cfg-msi',
            `${e.name} = 0x${value.toString(16)}: MSI targets are not allowed (the host sees IDR0.MSI=0)`,
          );
          return;
        }
        bus.write64('hyp', env.mmio + off, value);
        return;
      }
      case 'strtab': {
        const live = (view.cr0 & SMMUEN) !== 0;
        if (live && !env.weak('strtab-guard')) {
          fail.violate('strtab-guard', `${e.name} written while SMMUEN=1`);
          return;
        }
        if (e.name === 'STRTAB_BASE') {
          view.strtabBaseLo = v32;
          view.strtabBaseHi = hi32;
        } else view.strtabCfg = v32;
        // the strtab-guard weakening: the new table is used at once, as a guarded write that
        // takes effect would be (the table shared at SMMUEN 0→1 stays the old one)
        if (live && this.captureHostTable()) env.table.tableLive?.();
        return;
      }
      case 'cmdq-base':
        if (cmdq.enabled && !env.weak('cmdq-guard')) {
          fail.violate('cmdq-guard', 'CMDQ_BASE written while CMDQEN=1');
          return;
        }
        cmdq.baseLo = v32;
        cmdq.baseHi = hi32;
        // the cmdq-guard weakening: the new queue is used at once, as a guarded write that takes
        // effect would be (the queue shared at CMDQEN 0→1 stays the old one)
        if (cmdq.enabled) cmdq.enable();
        return;
      case 'cmdq-prod':
        cmdq.writeProd(v32);
        return;
      case 'cmdq-cons':
        if (cmdq.enabled && !env.weak('cmdq-guard')) {
          fail.violate('cmdq-guard', 'CMDQ_CONS written while CMDQEN=1');
          return;
        }
        cmdq.cons = v32 & 0xfffff;
        return;
      case 'evtq-base':
      case 'priq-base': {
        const en = e.write === 'evtq-base' ? EVTQEN : PRIQEN;
        if (view.cr0 & en && !env.weak('queue-guard')) {
          fail.violate('queue-guard', `${e.name} written while the queue is enabled`);
          return;
        }
        bus.write64('hyp', env.mmio + off, value);
        return;
      }
    }
  }

  private writeGerrorn(v: number): void {
    const { bus, mmio, shadowQ, cmdq } = this.env;
    const hwErr = shadowQ.hwErr();
    const acking = hwErr !== 0 && ((v ^ bus.read32('hyp', mmio + OFF.GERROR)) & GERR_CMDQ) === 0;
    if (acking) cmdq.beforeErrorAck();
    bus.write32('hyp', mmio + OFF.GERRORN, v);
    if (acking) cmdq.afterErrorAck();
  }

  // ---- CR0 edges (designs.md §1.4) -----------------------------------------------------------

  /** A CR0 write: each edge's action in order; a refused edge undoes the earlier ones and the write has no effect. */
  private writeCr0(v: number): void {
    const env = this.env;
    const view = env.view;
    const old = view.cr0;
    const rise = (b: number) => (old & b) === 0 && (v & b) !== 0;
    const fall = (b: number) => (old & b) !== 0 && (v & b) === 0;
    const undo: Array<() => void> = [];
    const powerOff: SharedKey[] = [];
    const own = env.own;
    const cmdq = env.cmdq;
    const refused = (rule?: RuleName, reason?: string): void => {
      if (rule !== undefined) env.failures.violate(rule, reason!);
      for (const u of undo.reverse()) u();
    };
    // the command queue
    if (rise(CMDQEN)) {
      const g = cmdq.geometry();
      const span = pageSpan(g.addr, g.bytes);
      const s = this.sharePin(
        span,
        'queue-share',
        `host command queue 0x${g.addr.toString(16)} (${g.bytes} bytes)`,
      );
      if (s === REFUSED) return refused();
      if (s === SHARED) {
        undo.push(() => own.unpinAndUnshare(span.base, span.size));
        this.shared.cmdq = { ...span, pinned: true };
      }
      cmdq.enable();
      undo.push(() => cmdq.disable());
    }
    if (fall(CMDQEN)) {
      if (v & SMMUEN && !env.weak('cmdq-guard'))
        return refused(
          'cmdq-guard',
          'CMDQEN cleared while SMMUEN=1: the hypervisor could no longer invalidate',
        );
      this.unsharePin('cmdq');
      cmdq.disable();
    }
    // the event and PRI queues: shared and pinned while enabled (the SMMU writes them), never disabled
    for (const [bit, key, reg, entry, max] of [
      [EVTQEN, 'evtq', OFF.EVENTQ_BASE, 32, env.evtqMax],
      [PRIQEN, 'priq', OFF.PRIQ_BASE, 16, env.priqMax],
    ] as const) {
      const what = `host ${key === 'evtq' ? 'event' : 'PRI'} queue`;
      if (rise(bit)) {
        const b = env.bus.read64('hyp', env.mmio + reg);
        const w = [Number(b & 0xffffffffn) >>> 0, Number(b >> 32n) >>> 0];
        const log2 = Math.min(get(w, Q_BASE.LOG2SIZE), max);
        const bytes = 2 ** log2 * entry;
        // the base aligned down to the queue size, as the hardware uses it: share what it will write
        const addr = queueBase({ lo: w[0]!, hi: w[1]! }, log2, entry);
        const span = pageSpan(addr, bytes);
        // pinned, so the host can neither unshare the pages nor then donate them while the SMMU
        // writes records there; weakened queue-pin only shares them, as pKVM v6 does (gap G6)
        const pin = !env.weak('queue-pin');
        const s = this.sharePin(
          span,
          'queue-share',
          `${what} 0x${addr.toString(16)} (${bytes} bytes)`,
          pin,
        );
        if (s === REFUSED) return refused();
        if (s === SHARED) {
          undo.push(() => this.release(span, pin));
          this.shared[key] = { ...span, pinned: pin };
        }
      }
      if (fall(bit)) {
        // the whole SMMU off in this write (runtime PM, arm_smmu_device_disable): once the
        // hardware has it the SMMU writes no more records, so the pages are released after it
        if ((v & SMMUEN) === 0) {
          powerOff.push(key);
          continue;
        }
        if (!env.weak('queue-guard'))
          return refused(
            'queue-guard',
            `${key === 'evtq' ? 'EVENTQEN' : 'PRIQEN'} 1→0 is not supported (its pages would be unshared while the SMMU may still write them)`,
          );
        // weakened: disabling is allowed, and the pages are released with it
        this.unsharePin(key);
      }
    }
    // SMMUEN
    if (rise(SMMUEN)) {
      if ((v & CMDQEN) === 0 && !env.weak('cmdq-guard'))
        return refused(
          'cmdq-guard',
          'SMMUEN set without CMDQEN: the hypervisor could not invalidate',
        );
      if (!this.captureHostTable()) return refused();
      const t = view.table;
      const bytes = t.twoLevel ? 2 ** (t.log2size - t.split) * 8 : 2 ** t.log2size * 64;
      const span = pageSpan(t.base, bytes);
      const s = this.sharePin(
        span,
        'queue-share',
        `host stream table 0x${t.base.toString(16)} (${bytes} bytes)`,
      );
      if (s === REFUSED) return refused();
      if (s === SHARED) {
        undo.push(() => own.unpinAndUnshare(span.base, span.size));
        this.shared.table = { ...span, pinned: true };
      }
    }
    if (fall(SMMUEN)) this.unsharePin('table');
    const bus = env.bus;
    if (rise(SMMUEN) && view.needFlush) {
      // an idmap change happened while the queue was off: invalidate everything first
      const hwOld = bus.read32('hyp', env.mmio + OFF.CR0);
      bus.write32('hyp', env.mmio + OFF.CR0, (v & ~SMMUEN & ~ATSCHK) >>> 0);
      const r = env.shadowQ.sync([encodeCommand('TLBI_NSNH_ALL', {})]);
      if (r !== SYNC_OK) {
        // the invalidation cannot complete (the queue is stopped): SMMUEN stays off, nothing changes
        bus.write32('hyp', env.mmio + OFF.CR0, hwOld);
        for (const u of undo.reverse()) u();
        env.failures.violate(
          'donate-tlbi',
          `SMMUEN 0→1 refused: the stage-2 invalidation it needs did not complete (${env.shadowQ.why(r)})`,
        );
        return;
      }
      view.needFlush = false;
    }
    view.cr0 = v;
    if (rise(SMMUEN) && this.tableWasLive && env.table.tableBack && !env.weak('rpm-reshadow')) {
      // a resume: every host STE is reshadowed while the hardware is still disabled
      const r = env.table.tableBack();
      if (r !== SYNC_OK) {
        view.cr0 = old;
        return refused(
          'rpm-reshadow',
          `SMMUEN 0→1 refused: the shadow stream table could not be made current (${env.shadowQ.why(r)})`,
        );
      }
    }
    // with ATS in the hardware, Translated transactions must be checked against STE.EATS
    // (stronger than pKVM, which forwards CR0 as written)
    const hwV = env.hwAts && !env.weak('ats-check') ? (v | ATSCHK) >>> 0 : v;
    bus.write32('hyp', env.mmio + OFF.CR0, hwV);
    for (const k of powerOff) this.unsharePin(k);
    // once the hardware has the new CR0 (the shadow queue takes the design's commands)
    const t = env.table;
    if (t.tableLive !== undefined) {
      if (rise(SMMUEN)) t.tableLive();
      else if (fall(SMMUEN)) t.tableGone?.();
    }
    if (rise(SMMUEN)) this.tableWasLive = true;
  }

  /**
   * Share a host range the hypervisor reads or the SMMU uses, and pin it (unless `pin` is false)
   * so the host cannot unshare it, and so neither donate nor reclaim it, while it is live;
   * SKIPPED when the rule is weakened (nothing shared), REFUSED (recorded) when it cannot be.
   */
  private sharePin(span: Span, rule: RuleName, what: string, pin = true): number {
    const env = this.env;
    if (env.weak(rule)) return SKIPPED;
    if (!env.isRam(span.base, span.size)) {
      env.failures.violate(rule, `${what} is not memory`);
      return REFUSED;
    }
    const r = pin
      ? env.own.tryShareAndPin(span.base, span.size)
      : env.own.tryShare(span.base, span.size, 'hyp');
    if (r !== null) {
      env.failures.violate(
        rule,
        `${what} cannot be shared with the hypervisor: ${refusalMessage(r.transition, r.pa, r.why)}`,
      );
      return REFUSED;
    }
    return SHARED;
  }

  /**
   * Undo sharePin. An unpinned share (queue-pin weakened) the host may already have taken back
   * itself: then there is nothing left to release.
   */
  private release(span: Span, pinned: boolean): void {
    if (pinned) this.env.own.unpinAndUnshare(span.base, span.size);
    else this.env.own.tryUnshare(span.base, span.size, 'hyp');
  }

  private unsharePin(key: SharedKey): void {
    const s = this.shared[key];
    if (!s) return;
    this.release(s, s.pinned);
    this.shared[key] = null;
  }

  /** Validate the host's STRTAB_BASE_CFG at SMMUEN 0→1 against the shadow table's geometry; false when refused (recorded). */
  private captureHostTable(): boolean {
    const env = this.env;
    const view = env.view;
    const cfg = [view.strtabCfg];
    const fmt = get(cfg, STRTAB_BASE_CFG.FMT);
    const log2size = get(cfg, STRTAB_BASE_CFG.LOG2SIZE);
    const split = get(cfg, STRTAB_BASE_CFG.SPLIT);
    const base =
      (view.strtabBaseHi & 0x00ffffff) * 0x1_0000_0000 + ((view.strtabBaseLo & ~0x3f) >>> 0);
    const twoLevel = fmt === 1;
    const sh = env.strtab;
    if (!env.weak('strtab-guard')) {
      const refuse = (why: string): boolean => {
        env.failures.violate('strtab-guard', why);
        return false;
      };
      if (twoLevel !== sh.twoLevel)
        return refuse(
          `host stream table format ${twoLevel ? '2-level' : 'linear'} differs from the shadow's ${sh.twoLevel ? '2-level' : 'linear'}`,
        );
      if (twoLevel && (split !== LINUX_SPLIT || split >= log2size || log2size > sh.log2size))
        return refuse(
          `host 2-level stream table SPLIT=${split} LOG2SIZE=${log2size}: needs SPLIT=${LINUX_SPLIT} < LOG2SIZE ≤ ${sh.log2size}`,
        );
      if (!twoLevel && log2size > env.sidBits)
        return refuse(
          `host linear stream table LOG2SIZE=${log2size} exceeds SIDSIZE ${env.sidBits}`,
        );
    }
    view.table = {
      base,
      twoLevel,
      split: twoLevel ? split : 0,
      log2size: Math.min(log2size, env.sidBits),
    };
    return true;
  }
}
