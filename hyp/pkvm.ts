/**
 * A pKVM-style deprivileged hypervisor for the SMMUv3 (designs.md §1): it owns memory and the
 * SMMU, traps every host access to the SMMU MMIO, shadows the command queue and the stream
 * table, sanitizes every command and STE, and keeps the IOMMU stage-2 (the idmap) a shadow of
 * the host CPU stage-2. The unchanged host driver runs on top and sees an SMMU with stage 1
 * only.
 *
 * Boot (designs.md §1.2), in order: take the hyp memory and the SMMU MMIO (donations); a
 * mini-probe of the ID registers; the shadow command queue (hardware CMDQ_BASE, PROD=CONS=0);
 * the shadow stream table at its maximum size (hardware STRTAB_BASE/CFG); GBPA.ABORT; the
 * idmap from a snapshot of the host stage-2, then ownership updates; the stage-2 check and
 * trap handler on the bus. The hypervisor does not enable the SMMU: the host's CR0 writes do.
 */
import type { Machine } from '../hw/machine.ts';
import { CpuAbortError, TRAP, isGuestActor, type AccessSize, type DataAbort } from '../hw/bus.ts';
import { get, set, wordMask } from '../hw/bits.ts';
import {
  OFF,
  IDR0,
  IDR1,
  IDR3,
  IDR5,
  CR0_BITS,
  CR1_WB_ISH,
  GBPA,
  Q_BASE,
  STRTAB_BASE_CFG,
  SMMU_MMIO_SIZE,
  regNameAt,
} from '../hw/smmu/regs.ts';
import { L1STD, STE_WORDS } from '../hw/smmu/ste.ts';
import { GERR } from '../hw/smmu/gerror.ts';
import { encodeCommand, OP } from '../hw/smmu/commands.ts';
import { layerLogger } from '../hw/log.ts';
import { PageOwnership, OwnershipError, PAGE, type Owner } from './mem/ownership.ts';
import { HypPool, PoolExhausted } from './mem/pool.ts';
import { HostMemory } from './mem/hostmem.ts';
import { ShadowQueue, ShadowQueueError } from './smmuv3/shadowq.ts';
import { ShadowStreamTable, LINUX_SPLIT } from './smmuv3/strtab.ts';
import { Idmap } from './iommu/idmap.ts';
import { HostCmdq } from './smmuv3/cmdq.ts';
import { sanitizeSte, abortSte, type SteSanitizeEnv } from './smmuv3/ste-sanitize.ts';
import { emulatedAt } from './smmuv3/emul.ts';
import { FailureLog, HypPanic } from './policy/failure.ts';
import { Guest, VSMMU_IPA, VSID_BITS, type GuestSpec } from './vm/guest.ts';
import { VSmmu } from './vm/vsmmu.ts';
import { queueBase } from '../hw/smmu/smmu.ts';
import { E_S2, EVT } from '../hw/smmu/events.ts';
import { makePolicy, RULE_NAMES, type HypPolicy, type RuleName } from './policy/policy.ts';
import { Probe } from '../hw/probe.ts';
import { HYP_PROBES, HYP_STATS } from './probes.ts';

const log = layerLogger('hyp');

/** The hypervisor's memory by default: the top 64 MiB of the default 1 GiB of RAM. */
export const HYP_MEMORY_DEFAULT = { base: 0x7c00_0000, size: 0x0400_0000 } as const;

const OP_SYNC = OP.CMD_SYNC;
const { SMMUEN, PRIQEN, CMDQEN, ATSCHK } = CR0_BITS;
const EVTQEN = CR0_BITS.EVENTQEN;
const GERR_CMDQ = GERR.CMDQ_ERR;
/** shadow command queue: 2^12 commands (64 KiB), as pKVM's 2^4 pages of 4 KiB */
const SHADOW_CMDQ_SHIFT = 12;
/** what the host must not see in IDR0 */
const IDR0_HIDDEN =
  wordMask(IDR0.S2P) | wordMask(IDR0.VMID16) | wordMask(IDR0.MSI) | wordMask(IDR0.HYP);
const IDR0_ATS = wordMask(IDR0.ATS);
const GBPA_ABORT = wordMask(GBPA.ABORT);
const GBPA_UPDATE = wordMask(GBPA.Update);
/** Linux's CR1: queues and tables Inner Shareable, Write-Back (the template pKVM enforces) */
export const CR1_TEMPLATE = CR1_WB_ISH;

/** A guest could not be created or destroyed; nothing was changed (creation) or its memory was kept (teardown). */
export class GuestError extends Error {
  constructor(why: string) {
    super(why);
    this.name = 'GuestError';
  }
}

/** The teardown phases, in order; a `between` hook runs after each (to show a DMA mid-teardown). */
export const TEARDOWN_PHASES = ['stopped', 'ste-abort', 'tlbi', 'memory-returned'] as const;
export type TeardownPhase = (typeof TEARDOWN_PHASES)[number];

export class HypBootError extends Error {
  constructor(why: string) {
    super(`pkvm: SMMU setup failed: ${why}`);
    this.name = 'HypBootError';
  }
}

/** thrown inside a register write to unwind after a refusal (reject/log); never escapes (a sentinel, not an Error: refusals are frequent and need no stack trace) */
const REFUSED: unique symbol = Symbol('refused');

export interface PkvmOptions {
  policy?: HypPolicy;
  hypMemory?: { base: number; size: number };
}

export interface HypStats {
  policy: string;
  failure: string;
  traps: number;
  mmioTraps: number;
  memoryTraps: number;
  commandsForwarded: number;
  commandsRejected: number;
  commandsDropped: number;
  hypCommands: number;
  syncRewrites: number;
  reshadows: number;
  violations: Record<string, number>;
  panics: Array<{ rule: string; reason: string }>;
  shadowPages: number;
  poolPages: number;
  /** guest events the hypervisor kept (stage-2 faults and other non-forwarded records of guest devices) */
  guestFaultsKept: number;
  idmapPages: number;
  ownership: Record<string, number>;
  transitions: Record<string, number>;
}

interface Span {
  base: number;
  size: number;
}

/** the host ranges the hypervisor shares while they are live */
type SharedKey = 'cmdq' | 'table' | 'evtq' | 'priq';

export class PkvmHyp {
  readonly own = new PageOwnership();
  readonly policy: HypPolicy;
  readonly failures: FailureLog;
  readonly hypMemory: { base: number; size: number };
  readonly mmio: number;
  readonly hostMem: HostMemory;
  pool!: HypPool;
  shadowQ!: ShadowQueue;
  strtab!: ShadowStreamTable;
  idmap!: Idmap;
  cmdq!: HostCmdq;
  booted = false;

  // the hardware's features, from the mini-probe
  private hwIdr0 = 0;
  private hwIdr = { idr0: 0, idr1: 0, idr3: 0, idr5: 0, aidr: 0, iidr: 0 };
  /** guests by name, and which guest each assigned pSID belongs to */
  readonly guests = new Map<string, Guest>();
  readonly vsmmus = new Map<string, VSmmu>();
  readonly sidOwner = new Map<number, Guest>();
  /** every guest created, in order (destroyed ones too), for reports */
  readonly guestHistory: Guest[] = [];
  private nextVmid = 1;
  private freeVmids: number[] = [];
  private guestFaultsKept = 0;
  /** IDR0.ATS of the hardware */
  private hwAts = false;
  private sidBits = 0;
  private evtqMax = 0;
  private priqMax = 0;

  // host-visible state the hypervisor keeps
  private hostCr0 = 0;
  private strtabBaseLo = 0;
  private strtabBaseHi = 0;
  private strtabCfg = 0;
  /** the host table geometry captured at SMMUEN 0→1 */
  private hostTable = { base: 0, twoLevel: false, split: 0, log2size: 0 };
  /** host ranges shared with the hypervisor while the queue or table is live (pinned unless a weakened rule says not) */
  private shared: Record<SharedKey, (Span & { pinned: boolean }) | null> = {
    cmdq: null,
    table: null,
    evtq: null,
    priq: null,
  };
  /** an idmap change happened while the command queue was off: invalidate everything before SMMUEN goes on */
  private needFlush = false;
  private weakSet: ReadonlySet<RuleName>;
  private steEnv!: SteSanitizeEnv;
  private readonly ste = new Uint32Array(STE_WORDS);
  private readonly l1 = new Uint32Array(2);
  /** guests whose memory is back with the host (early only when guest-teardown is weakened) */
  private readonly memoryReturned = new WeakSet<Guest>();

  stats = HYP_STATS.traps.create();
  /** probe points: each data abort taken, before it is handled (hyp/probes.ts) */
  readonly probes = { trap: new Probe(HYP_PROBES.trap) } as const;

  constructor(
    readonly machine: Machine,
    opts: PkvmOptions = {},
  ) {
    this.policy = opts.policy ?? makePolicy('pkvm');
    if (this.policy.steShadowing !== 'cfgi')
      throw new HypBootError(
        `STE shadowing by '${this.policy.steShadowing}' is not built yet (only 'cfgi', pKVM's)`,
      );
    if (this.policy.cmdq !== 'trap')
      throw new HypBootError(
        `command queue '${this.policy.cmdq}' (paravirtual hypercalls) is not built yet (only 'trap', pKVM v4+)`,
      );
    this.weakSet = this.policy.weaken;
    this.hypMemory = opts.hypMemory ?? { ...HYP_MEMORY_DEFAULT };
    this.mmio = machine.smmu.base;
    this.failures = new FailureLog(this.policy.failure, () => this.stats.traps);
    this.hostMem = new HostMemory(machine.bus, this.own);
  }

  weak(r: RuleName): boolean {
    return this.weakSet.has(r);
  }

  get panicked(): { rule: string; reason: string } | null {
    return this.failures.panic;
  }

  // ---- boot ----------------------------------------------------------------------------------

  boot(): this {
    const { bus, mem } = this.machine;
    const hm = this.hypMemory;
    if (hm.base % PAGE || hm.size % PAGE || hm.size < 64 * PAGE)
      throw new HypBootError(
        `hyp memory 0x${hm.base.toString(16)}+0x${hm.size.toString(16)} must be page aligned and at least 256 KiB`,
      );
    if (!mem.isRam(hm.base, hm.size))
      throw new HypBootError(
        `hyp memory 0x${hm.base.toString(16)}–0x${(hm.base + hm.size - 1).toString(16)} is not inside RAM`,
      );
    // 1. take the hyp memory and the SMMU MMIO
    this.own.donate(hm.base, hm.size, 'hyp');
    this.own.donate(this.mmio, SMMU_MMIO_SIZE, 'hyp', { mmio: true });
    this.pool = new HypPool(bus, hm.base, hm.base + hm.size);
    // 2. mini-probe
    const r = (off: number) => bus.read32('hyp', this.mmio + off);
    const idr0 = [r(OFF.IDR0)],
      idr1 = [r(OFF.IDR1)],
      idr3 = [r(OFF.IDR3)],
      idr5 = [r(OFF.IDR5)];
    this.hwIdr0 = idr0[0]!;
    this.hwIdr = {
      idr0: idr0[0]!,
      idr1: idr1[0]!,
      idr3: idr3[0]!,
      idr5: idr5[0]!,
      aidr: r(OFF.AIDR),
      iidr: r(OFF.IIDR),
    };
    this.hwAts = get(idr0, IDR0.ATS) === 1;
    if (!get(idr0, IDR0.S1P) || !get(idr0, IDR0.S2P))
      throw new HypBootError('the SMMU must implement stage 1 and stage 2 (nesting)');
    if (!get(idr0, IDR0.COHACC))
      throw new HypBootError('non-coherent SMMUs are not supported (IDR0.COHACC=0)');
    if (get(idr0, IDR0.TTENDIAN) === 3)
      throw new HypBootError('the SMMU supports only big-endian tables');
    if (get(idr1, IDR1.TABLES_PRESET) || get(idr1, IDR1.QUEUES_PRESET) || get(idr1, IDR1.REL))
      throw new HypBootError('IDR1 TABLES_PRESET / QUEUES_PRESET / REL are not supported');
    if (!get(idr5, IDR5.GRAN4K)) throw new HypBootError('the SMMU has no 4 KiB granule');
    this.sidBits = get(idr1, IDR1.SIDSIZE);
    this.evtqMax = get(idr1, IDR1.EVENTQS);
    this.priqMax = get(idr1, IDR1.PRIQS);
    const ril = get(idr3, IDR3.RIL) === 1;
    const cmdqShift = Math.min(SHADOW_CMDQ_SHIFT, get(idr1, IDR1.CMDQS));
    // 3. CR1: the attributes of the SMMU's own queue and table accesses (the hypervisor's
    // shadow structures are Inner Shareable write-back); the host can never change it
    bus.write32('hyp', this.mmio + OFF.CR1, CR1_TEMPLATE);
    // the shadow command queue
    const sq = this.pool.alloc(2 ** cmdqShift * 16, 'shadow command queue');
    const qb = [0, 0];
    set(qb, Q_BASE.ADDR, sq / 32);
    set(qb, Q_BASE.LOG2SIZE, cmdqShift);
    set(qb, Q_BASE.RWA, 1);
    bus.write64('hyp', this.mmio + OFF.CMDQ_BASE, (BigInt(qb[1]!) << 32n) | BigInt(qb[0]!));
    bus.write32('hyp', this.mmio + OFF.CMDQ_PROD, 0);
    bus.write32('hyp', this.mmio + OFF.CMDQ_CONS, 0);
    this.shadowQ = new ShadowQueue(bus, this.mmio, sq, cmdqShift);
    // 4. the shadow stream table, at its maximum size
    this.strtab = new ShadowStreamTable(
      bus,
      this.pool,
      this.sidBits,
      get(idr0, IDR0.ST_LEVEL) === 1,
    );
    this.strtab.programHw(this.mmio);
    // 5. GBPA.ABORT (wait Update=0, write Update|ABORT, wait Update=0)
    this.waitGbpa();
    bus.write32('hyp', this.mmio + OFF.GBPA, (r(OFF.GBPA) | GBPA_ABORT | GBPA_UPDATE) >>> 0);
    this.waitGbpa();
    // 6. the idmap: snapshot the host stage-2, then follow ownership changes
    this.idmap = new Idmap(bus, this.pool, ril);
    const regions = mem.ramRegions.map((g) => ({ base: g.base, size: g.size, mmio: false }));
    const lowRam = Math.min(...mem.ramRegions.map((g) => g.base));
    regions.push({ base: 0, size: lowRam, mmio: true });
    this.idmap.snapshot(regions, this.own);
    this.own.onChange((c) =>
      this.idmap.update(c, (cmds) => this.idmapFlush(cmds), this.weak('donate-tlbi')),
    );
    const s2 = this.idmap.s2;
    this.steEnv = { weak: (x) => this.weak(x), allowAts: this.policy.allowAts, s2 };
    // 7. the host command queue emulation, and the traps
    this.cmdq = new HostCmdq({
      hostMem: this.hostMem,
      shadow: this.shadowQ,
      failures: this.failures,
      weak: (x) => this.weak(x),
      reshadow: (sid) => this.reshadow(sid),
    });
    bus.installStage2(
      {
        translate: (actor, addr) => {
          if (actor === 'host') return this.own.hostMay(addr) ? addr : TRAP;
          if (isGuestActor(actor)) {
            const g = this.guests.get(actor.slice(6));
            if (!g || g.dying) return TRAP;
            return g.ipaToPa(addr);
          }
          return TRAP;
        },
      },
      (a) => this.trap(a),
    );
    this.machine.smmu.evtq.taps.add((w) => this.routeEvent(w));
    this.booted = true;
    log.info(
      {
        policy: this.policy.name,
        failure: this.policy.failure,
        hypMemory: `0x${hm.base.toString(16)}+0x${hm.size.toString(16)}`,
        shadowStrtab: this.strtab.twoLevel ? '2-level' : 'linear',
        idmapPages: this.idmap.mappedPages,
      },
      'pkvm: SMMU taken',
    );
    return this;
  }

  private waitGbpa(): void {
    for (let i = 0; i < 1000; i++)
      if ((this.machine.bus.read32('hyp', this.mmio + OFF.GBPA) & GBPA_UPDATE) === 0) return;
    throw new HypBootError('GBPA.Update never cleared');
  }

  // ---- ownership, as the rest of the system asks for it ----------------------------------------

  /** host → hyp/guest donation (pKVM's __pkvm_host_donate_*). Refused (OwnershipError or a failed invalidation) leaves nothing changed. */
  donate(base: number, size: number, to: Exclude<Owner, 'host'> = 'hyp'): void {
    this.alive();
    if (!this.machine.mem.isRam(base, size))
      throw new OwnershipError(
        'donate',
        base,
        `0x${base.toString(16)}+0x${size.toString(16)} is not RAM: only memory can be donated`,
      );
    this.own.donate(base, size, to);
  }

  reclaim(base: number, size: number, from: Exclude<Owner, 'host'> = 'hyp'): void {
    this.alive();
    this.refuseGuestMemory('reclaim', base, from);
    const hm = this.hypMemory;
    for (const [b, n, what] of [
      [hm.base, hm.size, "the hypervisor's own memory"],
      [this.mmio, SMMU_MMIO_SIZE, 'the SMMU registers'],
    ] as const) {
      if (base < b + n && b < base + size)
        throw new OwnershipError('reclaim', Math.max(base, b), `${what} is never given back`);
    }
    this.own.reclaim(base, size, from);
  }

  share(base: number, size: number, to: Exclude<Owner, 'host'> = 'hyp'): void {
    this.alive();
    this.own.share(base, size, to);
  }

  unshare(base: number, size: number, from: Exclude<Owner, 'host'> = 'hyp'): void {
    this.alive();
    this.refuseGuestMemory('unshare', base, from);
    this.own.unshare(base, size, from);
  }

  /** A running guest's memory returns to the host only through destroyGuest (its stage-2 and devices still use it). */
  private refuseGuestMemory(op: 'reclaim' | 'unshare', base: number, from: string): void {
    if (from.startsWith('guest:') && this.guests.has(from.slice(6)))
      throw new OwnershipError(
        op,
        base,
        `${from} is running: its memory returns to the host only when the guest is destroyed`,
      );
  }

  private alive(): void {
    if (this.failures.panic)
      throw new HypPanic(
        this.failures.panic.rule as RuleName,
        `the hypervisor has panicked: ${this.failures.panic.reason}`,
      );
  }

  /** The idmap's TLB maintenance: the commands and a CMD_SYNC through the shadow queue, or a veto. */
  private idmapFlush(cmds: Uint32Array[]): void {
    const hwCr0 = this.machine.bus.read32('hyp', this.mmio + OFF.CR0);
    if ((hwCr0 & CMDQEN) === 0) {
      // the hardware cannot take commands; with SMMUEN=0 no translation uses the TLBs, so
      // invalidate everything before SMMUEN next goes on (stronger than pKVM, which skips it)
      if ((hwCr0 & SMMUEN) === 0) {
        this.needFlush = true;
        return;
      }
      this.failures.violate(
        'donate-tlbi',
        'stage-2 invalidation impossible: CMDQEN=0 while SMMUEN=1',
      );
      throw new ShadowQueueError('the command queue is disabled');
    }
    try {
      this.shadowQ.issueAndSync(cmds);
    } catch (e) {
      if (e instanceof ShadowQueueError)
        this.failures.violate('donate-tlbi', `stage-2 invalidation did not complete: ${e.message}`);
      throw e;
    }
  }

  // ---- traps ---------------------------------------------------------------------------------

  trap(a: DataAbort): bigint {
    this.stats.traps++;
    if (this.probes.trap.active) this.probes.trap.fire(a);
    this.alive();
    if (isGuestActor(a.actor)) return this.guestTrap(a);
    const off = a.addr - this.mmio;
    if (a.actor === 'host' && off >= 0 && off < SMMU_MMIO_SIZE) {
      this.stats.mmioTraps++;
      return a.dir === 'r' ? this.readReg(off, a.size) : (this.writeReg(off, a.size, a.value), 0n);
    }
    this.stats.memoryTraps++;
    const s = this.own.state(a.addr);
    throw new CpuAbortError(
      a.actor,
      a.addr,
      a.dir,
      `stage-2 fault: the page is ${s.owner === 'host' ? 'not mapped' : `owned by ${s.owner}`}`,
    );
  }

  /** A refused register access: under reject/log the write is ignored and the read returns 0. */
  private refuseAccess(off: number, size: number, dir: 'r' | 'w', why: string): void {
    this.stats.refusedAccesses++;
    this.failures.violate(
      'reg-access',
      `host ${dir === 'r' ? 'read of' : 'write to'} ${regNameAt(off)} (offset 0x${off.toString(16)}, ${size} bytes): ${why}`,
    );
  }

  private readReg(off: number, size: number): bigint {
    const e = emulatedAt(off);
    if (!e || e.read === 'refuse' || e.width !== size) {
      // the reg-access weakening: what the table does not allow is passed to the hardware as it is
      if (this.weak('reg-access'))
        return this.machine.bus.read('hyp', this.mmio + off, size as AccessSize);
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
    const bus = this.machine.bus;
    switch (e.read) {
      case 'hw':
        return bus.read('hyp', this.mmio + off, e.width);
      case 'idr0': {
        let hide = IDR0_HIDDEN;
        if (!this.policy.allowAts) hide |= IDR0_ATS;
        return BigInt((this.hwIdr0 & ~hide) >>> 0);
      }
      case 'gbpa':
        return BigInt(GBPA_ABORT);
      case 'cr0': {
        const hw = bus.read32('hyp', this.mmio + off);
        return BigInt(((hw & ~ATSCHK) | (this.hostCr0 & ATSCHK)) >>> 0);
      }
      case 'cmdq-cons':
        return BigInt(this.cmdq.readCons());
      case 'cached':
        switch (e.name) {
          case 'STRTAB_BASE':
            return (BigInt(this.strtabBaseHi) << 32n) | BigInt(this.strtabBaseLo);
          case 'STRTAB_BASE_CFG':
            return BigInt(this.strtabCfg);
          case 'CMDQ_BASE':
            return (BigInt(this.cmdq.baseHi) << 32n) | BigInt(this.cmdq.baseLo);
          case 'CMDQ_PROD':
            return BigInt(this.cmdq.prod);
        }
    }
    return 0n;
  }

  private writeReg(off: number, size: number, value: bigint): void {
    const e = emulatedAt(off);
    if (!e || e.write === 'refuse' || e.width !== size) {
      if (this.weak('reg-access')) {
        this.machine.bus.write('hyp', this.mmio + off, size as AccessSize, value);
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
    const bus = this.machine.bus;
    const v32 = Number(value & 0xffffffffn) >>> 0;
    const hi32 = Number((value >> 32n) & 0xffffffffn) >>> 0;
    try {
      switch (e.write) {
        case 'forward':
          bus.write('hyp', this.mmio + off, e.width, value);
          return;
        case 'ignore':
          return;
        case 'cr0':
          this.writeCr0(v32);
          return;
        case 'cr1':
          if (this.weak('cr1-template')) {
            bus.write32('hyp', this.mmio + OFF.CR1, v32);
            return;
          }
          if (v32 !== CR1_TEMPLATE)
            this.refuse(
              'cr1-template',
              `CR1=0x${v32.toString(16)} is not the template 0x${CR1_TEMPLATE.toString(16)}; the template is written`,
              false,
            );
          bus.write32('hyp', this.mmio + OFF.CR1, CR1_TEMPLATE);
          return;
        case 'gerrorn':
          this.writeGerrorn(v32);
          return;
        case 'irq-cfg0': {
          const addr = value & 0x00ff_ffff_ffff_fffcn;
          if (addr !== 0n && !this.weak('irq-cfg-msi'))
            this.refuse(
              'irq-cfg-msi',
              `${e.name} = 0x${value.toString(16)}: MSI targets are not allowed (the host sees IDR0.MSI=0)`,
            );
          bus.write64('hyp', this.mmio + off, value);
          return;
        }
        case 'strtab': {
          const live = (this.hostCr0 & SMMUEN) !== 0;
          if (live && !this.weak('strtab-guard'))
            this.refuse('strtab-guard', `${e.name} written while SMMUEN=1`);
          if (e.name === 'STRTAB_BASE') {
            this.strtabBaseLo = v32;
            this.strtabBaseHi = hi32;
          } else this.strtabCfg = v32;
          // the strtab-guard weakening: the new table is used at once, as a guarded write that
          // takes effect would be (the table shared at SMMUEN 0→1 stays the old one)
          if (live) this.captureHostTable();
          return;
        }
        case 'cmdq-base':
          if (this.cmdq.enabled && !this.weak('cmdq-guard'))
            this.refuse('cmdq-guard', 'CMDQ_BASE written while CMDQEN=1');
          this.cmdq.baseLo = v32;
          this.cmdq.baseHi = hi32;
          // the cmdq-guard weakening: the new queue is used at once, as a guarded write that takes
          // effect would be (the queue shared at CMDQEN 0→1 stays the old one)
          if (this.cmdq.enabled) this.cmdq.enable();
          return;
        case 'cmdq-prod':
          this.cmdq.writeProd(v32);
          return;
        case 'cmdq-cons':
          if (this.cmdq.enabled && !this.weak('cmdq-guard'))
            this.refuse('cmdq-guard', 'CMDQ_CONS written while CMDQEN=1');
          this.cmdq.cons = v32 & 0xfffff;
          return;
        case 'evtq-base':
        case 'priq-base': {
          const en = e.write === 'evtq-base' ? EVTQEN : PRIQEN;
          if (this.hostCr0 & en && !this.weak('queue-guard'))
            this.refuse('queue-guard', `${e.name} written while the queue is enabled`);
          bus.write64('hyp', this.mmio + off, value);
          return;
        }
      }
    } catch (x) {
      if (x === REFUSED) return;
      throw x;
    }
  }

  /** Record a violation; unwinds the register write (unless `unwind` is false). Under panic this throws HypPanic. */
  private refuse(rule: RuleName, reason: string, unwind = true): void {
    this.failures.violate(rule, reason);
    if (unwind) throw REFUSED;
  }

  private writeGerrorn(v: number): void {
    const bus = this.machine.bus;
    const hwErr = this.shadowQ.hwErr();
    const acking =
      hwErr !== 0 && ((v ^ bus.read32('hyp', this.mmio + OFF.GERROR)) & GERR_CMDQ) === 0;
    if (acking) this.cmdq.beforeErrorAck();
    bus.write32('hyp', this.mmio + OFF.GERRORN, v);
    if (acking) this.cmdq.afterErrorAck();
  }

  // ---- CR0 edges (designs.md §1.4) -----------------------------------------------------------

  private writeCr0(v: number): void {
    const old = this.hostCr0;
    const rise = (b: number) => (old & b) === 0 && (v & b) !== 0;
    const fall = (b: number) => (old & b) !== 0 && (v & b) === 0;
    const undo: Array<() => void> = [];
    const own = this.own;
    try {
      // the command queue
      if (rise(CMDQEN)) {
        const g = this.cmdq.geometry();
        const span = pageSpan(g.addr, g.bytes);
        if (
          this.sharePin(
            span,
            'queue-share',
            `host command queue 0x${g.addr.toString(16)} (${g.bytes} bytes)`,
          )
        ) {
          undo.push(() => own.unpinAndUnshare(span.base, span.size));
          this.shared.cmdq = { ...span, pinned: true };
        }
        this.cmdq.enable();
        undo.push(() => this.cmdq.disable());
      }
      if (fall(CMDQEN)) {
        if (v & SMMUEN && !this.weak('cmdq-guard'))
          this.refuse(
            'cmdq-guard',
            'CMDQEN cleared while SMMUEN=1: the hypervisor could no longer invalidate',
          );
        this.unsharePin('cmdq');
        this.cmdq.disable();
      }
      // the event and PRI queues: shared and pinned while enabled (the SMMU writes them), never disabled
      for (const [bit, key, reg, entry, max] of [
        [EVTQEN, 'evtq', OFF.EVENTQ_BASE, 32, this.evtqMax],
        [PRIQEN, 'priq', OFF.PRIQ_BASE, 16, this.priqMax],
      ] as const) {
        const what = `host ${key === 'evtq' ? 'event' : 'PRI'} queue`;
        if (rise(bit)) {
          const b = this.machine.bus.read64('hyp', this.mmio + reg);
          const w = [Number(b & 0xffffffffn) >>> 0, Number(b >> 32n) >>> 0];
          const log2 = Math.min(get(w, Q_BASE.LOG2SIZE), max);
          const bytes = 2 ** log2 * entry;
          // the base aligned down to the queue size, as the hardware uses it: share what it will write
          const addr = queueBase({ lo: w[0]!, hi: w[1]! }, log2, entry);
          const span = pageSpan(addr, bytes);
          // pinned, so the host can neither unshare the pages nor then donate them while the SMMU
          // writes records there; weakened queue-pin only shares them, as pKVM v6 does (gap G6)
          const pin = !this.weak('queue-pin');
          if (
            this.sharePin(
              span,
              'queue-share',
              `${what} 0x${addr.toString(16)} (${bytes} bytes)`,
              pin,
            )
          ) {
            undo.push(() => this.release(span, pin));
            this.shared[key] = { ...span, pinned: pin };
          }
        }
        if (fall(bit)) {
          if (!this.weak('queue-guard'))
            this.refuse(
              'queue-guard',
              `${key === 'evtq' ? 'EVENTQEN' : 'PRIQEN'} 1→0 is not supported (its pages would be unshared while the SMMU may still write them)`,
            );
          // weakened: disabling is allowed, and the pages are released with it
          this.unsharePin(key);
        }
      }
      // SMMUEN
      if (rise(SMMUEN)) {
        if ((v & CMDQEN) === 0 && !this.weak('cmdq-guard'))
          this.refuse(
            'cmdq-guard',
            'SMMUEN set without CMDQEN: the hypervisor could not invalidate',
          );
        this.captureHostTable();
        const t = this.hostTable;
        const bytes = t.twoLevel ? 2 ** (t.log2size - t.split) * 8 : 2 ** t.log2size * 64;
        const span = pageSpan(t.base, bytes);
        if (
          this.sharePin(
            span,
            'queue-share',
            `host stream table 0x${t.base.toString(16)} (${bytes} bytes)`,
          )
        ) {
          undo.push(() => own.unpinAndUnshare(span.base, span.size));
          this.shared.table = { ...span, pinned: true };
        }
      }
      if (fall(SMMUEN)) this.unsharePin('table');
    } catch (x) {
      if (x !== REFUSED) throw x;
      for (const u of undo.reverse()) u();
      return;
    }
    const bus = this.machine.bus;
    if (rise(SMMUEN) && this.needFlush) {
      // an idmap change happened while the queue was off: invalidate everything first
      const hwOld = bus.read32('hyp', this.mmio + OFF.CR0);
      bus.write32('hyp', this.mmio + OFF.CR0, (v & ~SMMUEN & ~ATSCHK) >>> 0);
      try {
        this.shadowQ.issueAndSync([encodeCommand('TLBI_NSNH_ALL', {})]);
      } catch (e) {
        if (!(e instanceof ShadowQueueError)) throw e;
        // the invalidation cannot complete (the queue is stopped): SMMUEN stays off, nothing changes
        bus.write32('hyp', this.mmio + OFF.CR0, hwOld);
        for (const u of undo.reverse()) u();
        this.failures.violate(
          'donate-tlbi',
          `SMMUEN 0→1 refused: the stage-2 invalidation it needs did not complete (${e.message})`,
        );
        return;
      }
      this.needFlush = false;
    }
    this.hostCr0 = v;
    // with ATS in the hardware, Translated transactions must be checked against STE.EATS
    // (stronger than pKVM, which forwards CR0 as written)
    const hwV = this.hwAts && !this.weak('ats-check') ? (v | ATSCHK) >>> 0 : v;
    bus.write32('hyp', this.mmio + OFF.CR0, hwV);
  }

  /**
   * Share a host range the hypervisor reads or the SMMU uses, and pin it (unless `pin` is false)
   * so the host cannot unshare it, and so neither donate nor reclaim it, while it is live; false
   * when the rule is weakened (nothing shared).
   */
  private sharePin(span: Span, rule: RuleName, what: string, pin = true): boolean {
    if (this.weak(rule)) return false;
    if (!this.machine.mem.isRam(span.base, span.size)) this.refuse(rule, `${what} is not memory`);
    try {
      if (pin) this.own.shareAndPin(span.base, span.size);
      else this.own.share(span.base, span.size, 'hyp');
    } catch (e) {
      if (!(e instanceof OwnershipError)) throw e;
      this.refuse(rule, `${what} cannot be shared with the hypervisor: ${e.message}`);
    }
    return true;
  }

  /** Undo sharePin. */
  private release(span: Span, pinned: boolean): void {
    if (pinned) this.own.unpinAndUnshare(span.base, span.size);
    else this.own.unshare(span.base, span.size, 'hyp');
  }

  private unsharePin(key: SharedKey): void {
    const s = this.shared[key];
    if (!s) return;
    this.release(s, s.pinned);
    this.shared[key] = null;
  }

  /** Validate the host's STRTAB_BASE_CFG at SMMUEN 0→1 against the shadow table's geometry. */
  private captureHostTable(): void {
    const cfg = [this.strtabCfg];
    const fmt = get(cfg, STRTAB_BASE_CFG.FMT);
    const log2size = get(cfg, STRTAB_BASE_CFG.LOG2SIZE);
    const split = get(cfg, STRTAB_BASE_CFG.SPLIT);
    const base =
      (this.strtabBaseHi & 0x00ffffff) * 0x1_0000_0000 + ((this.strtabBaseLo & ~0x3f) >>> 0);
    const twoLevel = fmt === 1;
    const sh = this.strtab;
    if (!this.weak('strtab-guard')) {
      if (twoLevel !== sh.twoLevel)
        this.refuse(
          'strtab-guard',
          `host stream table format ${twoLevel ? '2-level' : 'linear'} differs from the shadow's ${sh.twoLevel ? '2-level' : 'linear'}`,
        );
      if (twoLevel && (split !== LINUX_SPLIT || split >= log2size || log2size > sh.log2size))
        this.refuse(
          'strtab-guard',
          `host 2-level stream table SPLIT=${split} LOG2SIZE=${log2size}: needs SPLIT=${LINUX_SPLIT} < LOG2SIZE ≤ ${sh.log2size}`,
        );
      if (!twoLevel && log2size > this.sidBits)
        this.refuse(
          'strtab-guard',
          `host linear stream table LOG2SIZE=${log2size} exceeds SIDSIZE ${this.sidBits}`,
        );
    }
    this.hostTable = {
      base,
      twoLevel,
      split: twoLevel ? split : 0,
      log2size: Math.min(log2size, this.sidBits),
    };
  }

  // ---- STE shadowing (designs.md §1.7) -------------------------------------------------------

  /** CFGI_STE from the host: copy the host STE once, sanitize the copy, install it. */
  reshadow(sid: number): 'ok' | 'reject' | 'log' {
    this.stats.reshadows++;
    const t = this.hostTable;
    const fail = (rule: RuleName, why: string): 'reject' | 'log' =>
      this.failures.violate(rule, why);
    if (!this.weak('cfgi-sid')) {
      if (!(this.hostCr0 & SMMUEN))
        return fail('cfgi-sid', `CFGI_STE StreamID ${sid} while SMMUEN=0`);
      if (sid >= 2 ** t.log2size || sid >= 2 ** this.sidBits)
        return fail(
          'cfgi-sid',
          `CFGI_STE StreamID ${sid} beyond the stream table (2^${Math.min(t.log2size, this.sidBits)} StreamIDs)`,
        );
    } else if (sid >= 2 ** this.sidBits) {
      return 'log';
    }
    if (this.sidOwner.has(sid) && !this.weak('sid-owner')) {
      return fail(
        'sid-owner',
        `CFGI_STE StreamID ${sid}: the StreamID is assigned to guest ${this.sidOwner.get(sid)!.name}`,
      );
    }
    const w = this.ste;
    let steAddr: number;
    let l2: Span | null = null;
    if (t.twoLevel) {
      this.hostMem.load64(t.base + (sid >>> t.split) * 8, this.l1);
      const span = get(this.l1, L1STD.Span);
      const l2ptr = get(this.l1, L1STD.L2Ptr) * 64;
      if (span === 0 || span > t.split + 1 || (sid & (2 ** t.split - 1)) >= 2 ** (span - 1)) {
        return this.refuseSte(
          sid,
          'cfgi-sid',
          `CFGI_STE StreamID ${sid}: the host L1 descriptor (Span=${span}) has no STE for it`,
        );
      }
      steAddr = l2ptr + (sid & (2 ** t.split - 1)) * 64;
      l2 = pageSpan(l2ptr, 2 ** (span - 1) * 64);
      if (!this.machine.mem.isRam(l2.base, l2.size))
        return this.refuseSte(
          sid,
          'queue-share',
          `host L2 stream table 0x${l2ptr.toString(16)} for StreamID ${sid} is not memory`,
        );
      if (!this.weak('queue-share')) {
        try {
          this.own.shareAndPin(l2.base, l2.size);
        } catch (e) {
          if (!(e instanceof OwnershipError)) throw e;
          return this.refuseSte(
            sid,
            'queue-share',
            `host L2 stream table 0x${l2ptr.toString(16)} for StreamID ${sid} cannot be shared: ${e.message}`,
          );
        }
      } else l2 = null;
    } else {
      steAddr = t.base + sid * 64;
    }
    try {
      this.hostMem.copy(steAddr, w, STE_WORDS);
      if (this.weak('double-fetch')) {
        // the double-fetch weakening: check the first read, install a second one
        const verdict = sanitizeSte(w, this.steEnv);
        if (verdict) return this.refuseSte(sid, verdict.rule, verdict.reason);
        this.hostMem.copy(steAddr, w, STE_WORDS);
        const all = new Set(RULE_NAMES);
        all.delete('ste-s2-fields');
        sanitizeSte(w, { ...this.steEnv, weak: (r) => all.has(r) });
      } else {
        const verdict = sanitizeSte(w, this.steEnv);
        if (verdict) {
          const outcome = this.failures.violate(verdict.rule, `StreamID ${sid}: ${verdict.reason}`);
          this.installSte(sid, w); // the abort STE the sanitizer left
          return outcome;
        }
      }
    } finally {
      if (l2) this.own.unpinAndUnshare(l2.base, l2.size);
    }
    return this.installSte(sid, w);
  }

  private refuseSte(sid: number, rule: RuleName, why: string): 'reject' | 'log' {
    const outcome = this.failures.violate(rule, why);
    if (sid < 2 ** this.sidBits) {
      abortSte(this.ste);
      this.installSte(sid, this.ste);
    }
    return outcome;
  }

  /** Install a sanitized STE; when the pool is exhausted the STE stays invalid (fail closed) and the failure outcome is returned. */
  private installSte(sid: number, w: Uint32Array): 'ok' | 'reject' | 'log' {
    try {
      this.strtab.install(sid, w, (cmds) => this.shadowQ.issueAndSync(cmds));
      return 'ok';
    } catch (e) {
      if (e instanceof PoolExhausted) {
        return this.failures.violate(
          'queue-share',
          `StreamID ${sid}: ${e.message} (the STE stays invalid: fail closed)`,
        );
      }
      if (e instanceof ShadowQueueError)
        this.failures.internal(`installing the STE of StreamID ${sid}: ${e.message}`);
      throw e;
    }
  }

  /** The shadow (hardware) STE of `sid`, for tests and invariants. */
  shadowSte(sid: number): Uint32Array {
    const out = new Uint32Array(STE_WORDS);
    this.strtab.read(sid, out);
    return out;
  }

  // ---- guests (designs.md §3) ----------------------------------------------------------------

  /**
   * Build a guest: check everything first (nothing changes on a refusal), then quiesce its
   * devices (abort STEs), take its memory from the host (the idmap unmaps it with TLBIs before
   * the donation completes), build its stage-2 under a fresh VMID, and give it a vSMMU whose
   * physical STEs follow GBPA (abort) until the guest enables it.
   */
  createGuest(spec: GuestSpec): Guest {
    this.alive();
    const { name, memory, devices } = spec;
    if (!/^[A-Za-z0-9_-]+$/.test(name))
      throw new GuestError(`guest name "${name}" must be letters, digits, _ or -`);
    if (this.guests.has(name)) throw new GuestError(`guest ${name} already exists`);
    if (memory.base % PAGE || memory.size % PAGE || memory.size === 0)
      throw new GuestError(
        `guest ${name}: memory 0x${memory.base.toString(16)}+0x${memory.size.toString(16)} must be page aligned and not empty`,
      );
    if (!this.machine.mem.isRam(memory.base, memory.size))
      throw new GuestError(
        `guest ${name}: memory 0x${memory.base.toString(16)}+0x${memory.size.toString(16)} is not RAM`,
      );
    if (devices.length === 0) throw new GuestError(`guest ${name}: assign at least one device`);
    const vs = new Set<number>();
    for (const d of devices) {
      if (!Number.isInteger(d.vsid) || d.vsid < 0 || d.vsid >= 2 ** VSID_BITS)
        throw new GuestError(`guest ${name}: vSID ${d.vsid} is not a 16-bit StreamID`);
      if (vs.has(d.vsid)) throw new GuestError(`guest ${name}: vSID ${d.vsid} is assigned twice`);
      vs.add(d.vsid);
      if (!Number.isInteger(d.psid) || d.psid < 0 || d.psid >= 2 ** this.sidBits)
        throw new GuestError(
          `guest ${name}: pSID ${d.psid} is beyond the SMMU's ${this.sidBits}-bit StreamIDs`,
        );
      const o = this.sidOwner.get(d.psid);
      if (o)
        throw new GuestError(
          `guest ${name}: pSID ${d.psid} is already assigned to guest ${o.name}`,
        );
    }
    if (new Set(devices.map((d) => d.psid)).size !== devices.length)
      throw new GuestError(`guest ${name}: a pSID is assigned twice`);
    // its devices are quiesced through the command queue: it must be running, without an error
    const hwCr0 = this.machine.bus.read32('hyp', this.mmio + OFF.CR0);
    if ((hwCr0 & CMDQEN) === 0 || this.shadowQ.hwErr() !== 0)
      throw new GuestError(
        `guest ${name}: the command queue is ${(hwCr0 & CMDQEN) === 0 ? 'disabled (CMDQEN=0)' : 'stopped on a command error the host has not acknowledged'}, so its devices could not be quiesced`,
      );
    const vmidMax = get([this.hwIdr0], IDR0.VMID16) ? 0xffff : 0xff;
    const vmid = this.freeVmids.pop() ?? this.nextVmid;
    if (vmid > vmidMax) throw new GuestError(`guest ${name}: no VMID left`);
    // the memory leaves the host first (refused, e.g. shared or pinned pages, changes nothing)
    try {
      this.own.donate(memory.base, memory.size, `guest:${name}`);
    } catch (e) {
      if (vmid !== this.nextVmid) this.freeVmids.push(vmid);
      if (e instanceof OwnershipError || e instanceof ShadowQueueError)
        throw new GuestError(`guest ${name}: ${e.message}`);
      throw e;
    }
    if (vmid === this.nextVmid) this.nextVmid++;
    const g = new Guest(name, vmid, spec, this.machine.bus, this.pool);
    this.guests.set(name, g);
    this.guestHistory.push(g);
    for (const d of devices) this.sidOwner.set(d.psid, g);
    const v = new VSmmu(g, {
      hwIdr: this.hwIdr,
      allowAts: this.policy.allowAts,
      budget: this.policy.guestCmdBudget,
      installSte: (psid, w) => this.strtab.install(psid, w, (cmds) => this.guestIssue(g, cmds)),
      issue: (cmds) => this.guestIssue(g, cmds),
      drained: () => this.shadowQ.drained(),
      weak: (r) => this.weak(r),
    });
    this.vsmmus.set(name, v);
    v.configureAll(false); // GBPA.ABORT=1 at reset: abort STEs, so the host's configuration is gone
    log.info(
      {
        guest: name,
        vmid,
        memory: `0x${memory.base.toString(16)}+0x${memory.size.toString(16)}`,
        devices,
      },
      'guest created',
    );
    return g;
  }

  /**
   * Tear a guest down. Its vCPUs and vSMMU stop; each device gets an abort STE (CFGI_STE +
   * CMD_SYNC); TLBI_S12_VMALL for its VMID + CMD_SYNC; only then is its stage-2 freed and its
   * memory scrubbed and returned to the host. If an invalidation cannot complete, the memory is
   * kept (GuestError) and the teardown can be retried. `between` runs after each phase.
   */
  destroyGuest(name: string, between?: (phase: TeardownPhase) => void): void {
    this.alive();
    const g = this.guests.get(name);
    if (!g) throw new GuestError(`no guest named ${name}`);
    const v = this.vsmmus.get(name)!;
    g.dying = true;
    v.stop();
    const returnMemory = (): void => {
      if (this.memoryReturned.has(g)) return; // (a retried teardown under the weakened order)
      this.machine.bus.zeroBytes('hyp', g.paBase, g.size);
      this.own.reclaim(g.paBase, g.size, `guest:${name}`);
      this.memoryReturned.add(g);
    };
    const early = this.weak('guest-teardown');
    between?.('stopped');
    if (early) {
      // the weakened order: the memory goes back while the devices still translate through the guest's tables
      returnMemory();
      between?.('memory-returned');
    }
    const abort = new Uint32Array(STE_WORDS);
    abortSte(abort);
    try {
      for (const psid of g.psidToVsid.keys())
        this.strtab.install(psid, abort, (cmds) => this.shadowQ.issueAndSync(cmds));
      between?.('ste-abort');
      this.shadowQ.issueAndSync([encodeCommand('TLBI_S12_VMALL', { VMID: g.vmid })]);
      between?.('tlbi');
    } catch (e) {
      if (e instanceof ShadowQueueError)
        throw new GuestError(
          `guest ${name}: teardown stopped, the invalidation did not complete (${e.message}); its memory is kept`,
        );
      throw e;
    }
    g.destroyS2();
    if (!early) {
      returnMemory();
      between?.('memory-returned');
    }
    for (const psid of g.psidToVsid.keys()) this.sidOwner.delete(psid);
    this.guests.delete(name);
    this.vsmmus.delete(name);
    this.freeVmids.push(g.vmid);
    log.info({ guest: name, vmid: g.vmid }, 'guest destroyed');
  }

  /** Physical commands on a guest's behalf, with a CMD_SYNC, counted for it. */
  private guestIssue(g: Guest, cmds: Uint32Array[]): void {
    this.shadowQ.issueAndSync(cmds);
    g.stats.physCommands += cmds.length + 1;
    const ops = this.vsmmus.get(g.name)?.physOps;
    if (ops) {
      for (const c of cmds) ops[c[0]! & 0xff]!++;
      ops[OP_SYNC]!++;
    }
  }

  /** A guest vCPU access that trapped: its vSMMU, or a data abort. */
  private guestTrap(a: DataAbort): bigint {
    const name = a.actor.slice(6);
    const g = this.guests.get(name);
    const off = a.addr - VSMMU_IPA;
    if (g && !g.dying && off >= 0 && off < SMMU_MMIO_SIZE) {
      g.stats.traps++;
      const v = this.vsmmus.get(name)!;
      return a.dir === 'r' ? v.read(off, a.size) : (v.write(off, a.size, a.value), 0n);
    }
    if (g) g.stats.dataAborts++;
    throw new CpuAbortError(
      a.actor,
      a.addr,
      a.dir,
      g
        ? g.dying
          ? 'the guest is being destroyed'
          : 'stage-2 fault: the IPA is not mapped'
        : `no guest named ${name}`,
    );
  }

  /**
   * Every event record the SMMU generates passes here first. A record for a guest's device is
   * the guest's if it is a stage-1 fault or a configuration error of its own making: it is
   * copied into the guest's event queue with the vSID. Stage-2 faults stay here (counted).
   */
  private routeEvent(w: Uint32Array): void {
    const g = this.sidOwner.get(w[1]!);
    if (!g || g.dying) return;
    const num = w[0]! & 0xff;
    let guests = false;
    switch (num) {
      case EVT.F_TRANSLATION:
      case EVT.F_ADDR_SIZE:
      case EVT.F_ACCESS:
      case EVT.F_PERMISSION:
        guests = get(w, E_S2) === 0;
        break;
      case EVT.C_BAD_STE:
      case EVT.C_BAD_CD:
      case EVT.C_BAD_SUBSTREAMID:
      case EVT.F_CD_FETCH:
      case EVT.F_STREAM_DISABLED:
        guests = true;
        break;
    }
    if (!guests) {
      g.stats.s2Faults += num >= EVT.F_TRANSLATION && num <= EVT.F_PERMISSION ? 1 : 0;
      this.guestFaultsKept++;
      return;
    }
    this.vsmmus.get(g.name)!.forward(w, g.psidToVsid.get(w[1]!)!);
  }

  /** The ranges a device may not access when it differs from the host's: a guest's device may reach only its guest's memory. */
  rangesForSid(
    sid: number,
  ):
    | Array<{ base: number; size: number; owner: string; read: boolean; write: boolean }>
    | undefined {
    const g = this.sidOwner.get(sid);
    if (!g) return undefined;
    const top = 2 ** 48;
    const out: Array<{ base: number; size: number; owner: string; read: boolean; write: boolean }> =
      [];
    const guestMem = this.own.state(g.paBase).owner === `guest:${g.name}`;
    if (!guestMem)
      return [{ base: 0, size: top, owner: `not guest:${g.name}`, read: false, write: false }];
    if (g.paBase > 0)
      out.push({
        base: 0,
        size: g.paBase,
        owner: `not guest:${g.name}`,
        read: false,
        write: false,
      });
    out.push({
      base: g.paBase + g.size,
      size: top - g.paBase - g.size,
      owner: `not guest:${g.name}`,
      read: false,
      write: false,
    });
    return out;
  }

  // ---- reports -------------------------------------------------------------------------------

  /** Ranges the host (and its devices) may not access, for the isolation oracle. */
  protectedRanges(): Array<{
    base: number;
    size: number;
    owner: string;
    read: boolean;
    write: boolean;
  }> {
    const out: Array<{ base: number; size: number; owner: string; read: boolean; write: boolean }> =
      [];
    for (const r of this.own.ranges()) {
      if (r.state.owner === 'host') continue;
      const last = out[out.length - 1];
      if (last && last.base + last.size === r.base && last.owner === r.state.owner)
        last.size += r.size;
      else
        out.push({ base: r.base, size: r.size, owner: r.state.owner, read: false, write: false });
    }
    return out;
  }

  hypStats(): HypStats {
    const c = this.cmdq?.stats;
    return {
      policy: this.policy.name,
      failure: this.policy.failure,
      traps: this.stats.traps,
      mmioTraps: this.stats.mmioTraps,
      memoryTraps: this.stats.memoryTraps,
      commandsForwarded: c?.forwarded ?? 0,
      commandsRejected: c?.rejected ?? 0,
      commandsDropped: c?.dropped ?? 0,
      hypCommands: this.shadowQ?.stats.hyp ?? 0,
      syncRewrites: c?.syncRewrites ?? 0,
      reshadows: this.stats.reshadows,
      violations: { ...this.failures.byRule },
      panics: this.failures.panic ? [{ ...this.failures.panic }] : [],
      shadowPages: (this.shadowQ ? (this.shadowQ.size * 16) / PAGE : 0) + (this.strtab?.pages ?? 0),
      poolPages: this.pool?.pagesInUse ?? 0,
      guestFaultsKept: this.guestFaultsKept,
      idmapPages: this.idmap?.mappedPages ?? 0,
      ownership: this.own.summary(),
      transitions: { ...this.own.counts },
    };
  }
}

/** The whole pages holding [addr, addr+bytes). */
function pageSpan(addr: number, bytes: number): Span {
  const base = Math.floor(addr / PAGE) * PAGE;
  const end = Math.ceil((addr + Math.max(bytes, 1)) / PAGE) * PAGE;
  return { base, size: end - base };
}
