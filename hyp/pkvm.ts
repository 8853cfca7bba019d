/**
 * A pKVM-style deprivileged hypervisor for the SMMUv3 (designs.md §1): it owns memory and the
 * SMMU, traps every host access to the SMMU MMIO, shadows the command queue and the stream
 * table, sanitizes every command and STE, and keeps the IOMMU stage-2 (the idmap) a shadow of
 * the host CPU stage-2. The unchanged host driver runs on top and sees an SMMU with stage 1
 * only.
 *
 * This file is the composition root: it selects one implementation per design axis from the
 * policy when the hypervisor is constructed, and at boot builds the parts and wires them:
 *  - the generic layer: ownership (mem/ownership.ts), the pool (mem/pool.ts), host memory
 *    access (mem/hostmem.ts), the SMMU's stage-2 (iommu/stage2.ts, at iommu/granule.ts);
 *  - the SMMUv3 emulation: trap dispatch (smmuv3/trap.ts), the registers and CR0 edges
 *    (smmuv3/host-regs.ts), how host commands reach the hardware (smmuv3/cmd-path.ts), how
 *    host STEs reach it (smmuv3/ste-shadowing.ts), the shadow queue and stream table;
 *  - guests and event routing (vm/guests.ts).
 *
 * Boot (designs.md §1.2), in order: take the hyp memory and the SMMU MMIO (donations); a
 * mini-probe of the ID registers; the shadow command queue (hardware CMDQ_BASE, PROD=CONS=0);
 * the shadow stream table at its maximum size (hardware STRTAB_BASE/CFG); GBPA.ABORT; the
 * idmap from a snapshot of the host stage-2, then ownership updates; the stage-2 check and
 * trap handler on the bus. The hypervisor does not enable the SMMU: the host's CR0 writes do.
 *
 * Under the paravirtual designs (policy cmdq 'pv', 'pv-idmap'; designs.md §2.1–2.2) the host has
 * no access to the registers at all (no register emulation: the trap refuses it), the
 * hypervisor enables the SMMU itself at boot, and the host asks by hypercall (hyp/pv/).
 */
import type { Machine } from '../hw/machine.ts';
import { TRAP, isGuestActor, type DataAbort } from '../hw/bus.ts';
import { get, set, wordMask } from '../hw/bits.ts';
import { OFF, IDR0, IDR1, IDR3, IDR5, GBPA, Q_BASE, SMMU_MMIO_SIZE } from '../hw/smmu/regs.ts';
import { STE_WORDS } from '../hw/smmu/ste.ts';
import { PS_BITS } from '../hw/vmsa/tcr.ts';
import { layerLogger } from '../hw/log.ts';
import { PageOwnership, OwnershipError, PAGE, type Owner } from './mem/ownership.ts';
import { HypPool } from './mem/pool.ts';
import { HostMemory } from './mem/hostmem.ts';
import { ShadowQueue, ShadowQueueError, SYNC_OK } from './smmuv3/shadowq.ts';
import { ShadowStreamTable } from './smmuv3/strtab.ts';
import type { SmmuStage2 } from './iommu/stage2.ts';
import { selectSmmuStage2, type Stage2Env } from './iommu/stage2.ts';
import { selectIdmapGranule } from './iommu/granule.ts';
import type { CmdqEmuEnv } from './smmuv3/cmdq.ts';
import { selectCommandPath, type HostCommandPath } from './smmuv3/cmd-path.ts';
import {
  selectSteShadowing,
  type SteShadowing,
  type SteShadowEnv,
  type SteStoreStats,
} from './smmuv3/ste-shadowing.ts';
import { HostRegs, CR1_TEMPLATE } from './smmuv3/host-regs.ts';
import { HostView } from './smmuv3/host-view.ts';
import { TrapDispatch } from './smmuv3/trap.ts';
import { SMMUEN, CMDQEN } from './smmuv3/cr0.ts';
import { FailureLog, HypPanic } from './policy/failure.ts';
import { makePolicy, type HypPolicy, type RuleName } from './policy/policy.ts';
import { Probe } from '../hw/probe.ts';
import { HYP_PROBES, HYP_STATS } from './probes.ts';
import type { Guest, GuestSpec } from './vm/guest.ts';
import type { VSmmu } from './vm/vsmmu.ts';
import { Guests, type GuestsEnv, type ProtectedRange, type TeardownPhase } from './vm/guests.ts';
import { HypBootError } from './boot-error.ts';
import { PvHypercalls } from './pv/hypercalls.ts';

export { CR1_TEMPLATE } from './smmuv3/host-regs.ts';
export { GuestError, TEARDOWN_PHASES, type TeardownPhase } from './vm/guests.ts';
export { HypBootError } from './boot-error.ts';

const log = layerLogger('hyp');

/** The hypervisor's memory by default: the top 64 MiB of the default 1 GiB of RAM. */
export const HYP_MEMORY_DEFAULT = { base: 0x7c00_0000, size: 0x0400_0000 } as const;

/** shadow command queue: 2^12 commands (64 KiB), as pKVM's 2^4 pages of 4 KiB */
const SHADOW_CMDQ_SHIFT = 12;
const GBPA_ABORT = wordMask(GBPA.ABORT);
const GBPA_UPDATE = wordMask(GBPA.Update);

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
  /** the SMMU stage-2 design's own counters, when it has any (the shared stage-2's) */
  smmuStage2?: Record<string, number>;
  ownership: Record<string, number>;
  transitions: Record<string, number>;
}

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
  idmap!: SmmuStage2;
  cmdq!: HostCommandPath;
  /** the paravirtual IOMMU (policy cmdq 'pv' or 'pv-idmap'; built at boot), else null */
  pv: PvHypercalls | null = null;
  booted = false;
  /** guests, their vSMMUs and the routing of their events */
  readonly vms: Guests;

  // the parts the policy selects (built at boot)
  private readonly buildCmdPath: (env: CmdqEmuEnv) => HostCommandPath;
  private readonly buildSteShadowing: (env: SteShadowEnv) => SteShadowing;
  private readonly buildStage2: (env: Stage2Env) => SmmuStage2;
  private steShadow!: SteShadowing;
  private regs: HostRegs | null = null;
  private dispatch!: TrapDispatch;
  private readonly view = new HostView();

  // the hardware's features, from the mini-probe
  private hwIdr = { idr0: 0, idr1: 0, idr3: 0, idr5: 0, aidr: 0, iidr: 0 };
  private sidBits = 0;
  private weakSet: ReadonlySet<RuleName>;

  stats = HYP_STATS.traps.create();
  /** probe points (hyp/probes.ts) */
  readonly probes = {
    trap: new Probe(HYP_PROBES.trap),
    /** each StreamID about to be reshadowed (on CFGI_STE and the other reshadowing paths) */
    reshadow: new Probe(HYP_PROBES.reshadow),
  } as const;

  constructor(
    readonly machine: Machine,
    opts: PkvmOptions = {},
  ) {
    this.policy = opts.policy ?? makePolicy('pkvm');
    // one implementation per design axis
    this.buildSteShadowing = selectSteShadowing(this.policy);
    this.buildCmdPath = selectCommandPath(this.policy);
    this.buildStage2 = selectSmmuStage2(this.policy, selectIdmapGranule(this.policy));
    this.weakSet = this.policy.weaken;
    this.hypMemory = opts.hypMemory ?? { ...HYP_MEMORY_DEFAULT };
    this.mmio = machine.smmu.base;
    this.failures = new FailureLog(this.policy.failure, () => this.stats.traps);
    this.hostMem = new HostMemory(machine.bus, this.own);
    // one environment object for the guests' part, read through getters (some parts are only
    // built at boot): nothing is allocated per guest command
    const self = this;
    const env: GuestsEnv = {
      machine: this.machine,
      mmio: this.mmio,
      own: this.own,
      policy: this.policy,
      get pool() {
        return self.pool;
      },
      get shadowQ() {
        return self.shadowQ;
      },
      get strtab() {
        return self.strtab;
      },
      get hwIdr() {
        return self.hwIdr;
      },
      get sidBits() {
        return self.sidBits;
      },
      weak: (r) => this.weak(r),
    };
    this.vms = new Guests(() => env);
  }

  weak(r: RuleName): boolean {
    return this.weakSet.has(r);
  }

  get panicked(): { rule: string; reason: string } | null {
    return this.failures.panic;
  }

  get guests(): Map<string, Guest> {
    return this.vms.guests;
  }
  get vsmmus(): Map<string, VSmmu> {
    return this.vms.vsmmus;
  }
  get sidOwner(): Map<number, Guest> {
    return this.vms.sidOwner;
  }
  get guestHistory(): Guest[] {
    return this.vms.guestHistory;
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
    this.hwIdr = {
      idr0: idr0[0]!,
      idr1: idr1[0]!,
      idr3: idr3[0]!,
      idr5: idr5[0]!,
      aidr: r(OFF.AIDR),
      iidr: r(OFF.IIDR),
    };
    const hwAts = get(idr0, IDR0.ATS) === 1;
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
    // 6. the SMMU's stage-2: snapshot the host stage-2, then follow ownership changes
    const s2 = (this.idmap = this.buildStage2({ bus, pool: this.pool, ril }));
    const regions = mem.ramRegions.map((g) => ({ base: g.base, size: g.size, mmio: false }));
    const lowRam = Math.min(...mem.ramRegions.map((g) => g.base));
    regions.push({ base: 0, size: lowRam, mmio: true });
    this.idmap.snapshot(regions, this.own);
    this.own.onChange((c) =>
      this.idmap.update(c, (cmds) => this.idmapFlush(cmds), this.weak('donate-tlbi')),
    );
    const weak = (x: RuleName): boolean => this.weak(x);
    const reshadowProbe = this.probes.reshadow;
    const ramHi = Math.max(...mem.ramRegions.map((g) => g.base + g.size));
    // 7. the host's STEs, commands and registers, and the traps
    this.steShadow = this.buildSteShadowing({
      view: this.view,
      sidBits: this.sidBits,
      own: this.own,
      hostMem: this.hostMem,
      shadowQ: this.shadowQ,
      strtab: this.strtab,
      failures: this.failures,
      steEnv: { weak, allowAts: this.policy.allowAts, s2: this.idmap.s2 },
      isRam: (b, s) => mem.isRam(b, s),
      weak,
      sidGuest: (sid) => this.vms.sidOwner.get(sid)?.name,
      noteReshadow: (sid) => {
        this.stats.reshadows++;
        if (reshadowProbe.active) reshadowProbe.fire(sid);
      },
      bus,
      ram: {
        lo: Math.floor(lowRam / PAGE) * PAGE,
        hi: Math.ceil(ramHi / PAGE) * PAGE,
      },
    });
    const steShadow = this.steShadow;
    this.cmdq = this.buildCmdPath({
      hostMem: this.hostMem,
      shadow: this.shadowQ,
      failures: this.failures,
      weak,
      // straight to the strategy: one call per CFGI_STE on the trap path (it counts what it
      // rebuilds through noteReshadow)
      reshadow: (sid) => steShadow.reshadow(sid),
    });
    const pvKind = this.policy.cmdq === 'trap' ? null : this.policy.cmdq;
    if (pvKind !== null) this.bootPv(pvKind, idr0, idr1, idr3, idr5);
    else
      this.regs = new HostRegs({
        bus,
        mmio: this.mmio,
        own: this.own,
        failures: this.failures,
        view: this.view,
        cmdq: this.cmdq,
        shadowQ: this.shadowQ,
        strtab: this.strtab,
        allowAts: this.policy.allowAts,
        hwIdr0: this.hwIdr.idr0,
        hwAts,
        sidBits: this.sidBits,
        evtqMax: get(idr1, IDR1.EVENTQS),
        priqMax: get(idr1, IDR1.PRIQS),
        stats: this.stats,
        isRam: (b, s) => mem.isRam(b, s),
        weak,
        table: steShadow,
      });
    this.dispatch = new TrapDispatch({
      mmio: this.mmio,
      own: this.own,
      regs: this.regs,
      stats: this.stats,
      trapProbe: this.probes.trap,
      failures: this.failures,
      guestTrap: (a) => this.vms.trap(a),
      panicked: () => {
        this.alive();
        throw new Error('unreachable: the hypervisor has not panicked');
      },
      // a host stage-2 mapped lazily (the shared stage-2): map on the fault, then retry
      lazyS2: s2.hostFault
        ? {
            map: (addr) => s2.hostFault!(addr),
            retry: (a) =>
              a.dir === 'r'
                ? bus.read('host', a.addr, a.size)
                : (bus.write('host', a.addr, a.size, a.value), 0n),
          }
        : undefined,
      ...(steShadow.memoryTrap !== undefined
        ? { memoryTrap: (a: DataAbort) => steShadow.memoryTrap!(a) }
        : {}),
    });
    const dispatch = this.dispatch;
    // the host CPU's stage-2: the ownership check (pKVM's idmap design), or the shared
    // stage-2's page map, faulted in lazily
    const hostMapped = s2.hostMapped;
    const guestPa = (actor: string, addr: number): number => {
      if (isGuestActor(actor)) {
        const g = this.vms.guests.get(actor.slice(6));
        if (!g || g.dying) return TRAP;
        return g.ipaToPa(addr);
      }
      return TRAP;
    };
    const translate =
      hostMapped === undefined
        ? (actor: string, addr: number): number => {
            if (actor === 'host') return this.own.hostMay(addr) ? addr : TRAP;
            return guestPa(actor, addr);
          }
        : (actor: string, addr: number): number => {
            if (actor === 'host') return hostMapped[Math.floor(addr / PAGE)] === 1 ? addr : TRAP;
            return guestPa(actor, addr);
          };
    // a design that write-protects host pages ('trap-writes') makes host stores to them trap;
    // the others install the plain check, which never looks at a write-protect set
    const wp = steShadow.writeProtect;
    bus.installStage2(
      {
        translate:
          wp === undefined
            ? translate
            : (actor, addr, dir, size) =>
                dir === 'w' && actor === 'host' && wp.covers(addr, size)
                  ? TRAP
                  : translate(actor, addr),
      },
      (a) => dispatch.trap(a),
    );
    // 8. the event records of guests' devices go to their guests (and, with a shared stage-2,
    // the host devices' ones to it first: its own faults are counted there)
    const hostEvent = s2.hostEvent?.bind(s2);
    this.machine.smmu.evtq.router =
      hostEvent === undefined
        ? (w) => this.vms.routeEvent(w)
        : (w) => {
            if (!this.vms.sidOwner.has(w[1]!)) hostEvent(w);
            this.vms.routeEvent(w);
          };
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

  /** The paravirtual IOMMU: DMA refcounts, domains, the SMMU enabled by the hypervisor, the hypercalls on the bus. */
  private bootPv(
    kind: 'pv' | 'pv-idmap',
    idr0: number[],
    idr1: number[],
    idr3: number[],
    idr5: number[],
  ): void {
    const bus = this.machine.bus;
    const pv = new PvHypercalls(kind, {
      bus,
      mmio: this.mmio,
      own: this.own,
      ram: { base: this.machine.ramBase, size: this.machine.ramSize },
      pool: this.pool,
      shadowQ: this.shadowQ,
      strtab: this.strtab,
      idmapS2: this.idmap.s2,
      sidBits: this.sidBits,
      ssidBits: get(idr1, IDR1.SSIDSIZE),
      evtqMax: get(idr1, IDR1.EVENTQS),
      asid16: get(idr0, IDR0.ASID16) === 1,
      hwAts: get(idr0, IDR0.ATS) === 1,
      ril: get(idr3, IDR3.RIL) === 1,
      oas: Math.min(48, PS_BITS[get(idr5, IDR5.OAS)] ?? 48),
      isRam: (b, s) => this.machine.mem.isRam(b, s),
      sidGuest: (sid) => this.vms.sidOwner.get(sid)?.name,
      alive: () => this.alive(),
    });
    pv.power.powerOn();
    bus.installHypercalls((actor, fn, args) => pv.call(actor, fn, args));
    this.pv = pv;
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
    this.vms.refuseGuestMemory('reclaim', base, from);
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
    this.vms.refuseGuestMemory('unshare', base, from);
    this.own.unshare(base, size, from);
  }

  /** HypPanic once the hypervisor has panicked (a modeled panic: the machine is stopped). */
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
        this.view.needFlush = true;
        return;
      }
      this.failures.violate(
        'donate-tlbi',
        'stage-2 invalidation impossible: CMDQEN=0 while SMMUEN=1',
      );
      throw new ShadowQueueError('the command queue is disabled');
    }
    const r = this.shadowQ.sync(cmds);
    if (r !== SYNC_OK) {
      const e = this.shadowQ.error(r);
      this.failures.violate('donate-tlbi', `stage-2 invalidation did not complete: ${e.message}`);
      throw e; // the ownership change's veto (mem/ownership.ts undoes it)
    }
  }

  // ---- traps and STEs ------------------------------------------------------------------------

  trap(a: DataAbort): bigint {
    return this.dispatch.trap(a);
  }

  /** The host asked for StreamID `sid`'s STE to take effect (CFGI_STE). */
  reshadow(sid: number): 'ok' | 'reject' | 'log' {
    return this.steShadow.reshadow(sid);
  }

  /** The write-protecting design's counters (HYP_STATS.steStores), or undefined under the others. */
  get steStoreStats(): SteStoreStats | undefined {
    return this.steShadow?.storeStats;
  }

  /** The shadow (hardware) STE of `sid`, for tests and invariants. */
  shadowSte(sid: number): Uint32Array {
    const out = new Uint32Array(STE_WORDS);
    this.strtab.read(sid, out);
    return out;
  }

  // ---- guests (designs.md §3) ----------------------------------------------------------------

  /** Build a guest (vm/guests.ts); GuestError when refused, nothing changed. */
  createGuest(spec: GuestSpec): Guest {
    this.alive();
    return this.vms.create(spec);
  }

  /** Tear a guest down (vm/guests.ts); `between` runs after each phase. */
  destroyGuest(name: string, between?: (phase: TeardownPhase) => void): void {
    this.alive();
    const returned = this.steShadow?.sidReturned;
    const psids =
      returned !== undefined ? [...(this.vms.guests.get(name)?.psidToVsid.keys() ?? [])] : [];
    this.vms.destroy(name, between);
    // a design that follows host stores catches the StreamIDs up with the host's table
    for (const sid of psids) this.steShadow.sidReturned!(sid);
  }

  /** The ranges a device may not access when it differs from the host's: a guest's device may reach only its guest's memory. */
  rangesForSid(sid: number): ProtectedRange[] | undefined {
    return this.vms.rangesForSid(sid);
  }

  // ---- reports -------------------------------------------------------------------------------

  /** Ranges the host (and its devices) may not access, for the isolation oracle. */
  protectedRanges(): ProtectedRange[] {
    const out: ProtectedRange[] = [];
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
      guestFaultsKept: this.vms.faultsKept,
      idmapPages: this.idmap?.mappedPages ?? 0,
      ...(this.idmap?.stats ? { smmuStage2: { ...this.idmap.stats } } : {}),
      ownership: this.own.summary(),
      transitions: { ...this.own.counts },
    };
  }
}
