/**
 * Guest lifecycle and event routing (designs.md §3): the guests the hypervisor runs, their
 * StreamIDs and VMIDs, their vSMMUs, the traps of their vCPUs, and which event records are
 * theirs.
 */
import type { Machine } from '../../hw/machine.ts';
import { CpuAbortError, type DataAbort } from '../../hw/bus.ts';
import { get } from '../../hw/bits.ts';
import { OFF, IDR0, SMMU_MMIO_SIZE } from '../../hw/smmu/regs.ts';
import { STE_WORDS } from '../../hw/smmu/ste.ts';
import { encodeCommand, OP } from '../../hw/smmu/commands.ts';
import { E_S2, EVT } from '../../hw/smmu/events.ts';
import { layerLogger } from '../../hw/log.ts';
import { OwnershipError, PAGE, type PageOwnership } from '../mem/ownership.ts';
import type { HypPool } from '../mem/pool.ts';
import type { HypPolicy, RuleName } from '../policy/policy.ts';
import { ShadowQueueError, type ShadowQueue } from '../smmuv3/shadowq.ts';
import type { ShadowStreamTable } from '../smmuv3/strtab.ts';
import { abortSte } from '../smmuv3/ste-sanitize.ts';
import { CMDQEN } from '../smmuv3/cr0.ts';
import { Guest, VSMMU_IPA, VSID_BITS, type GuestSpec } from './guest.ts';
import { VSmmu } from './vsmmu.ts';

const log = layerLogger('hyp');
const OP_SYNC = OP.CMD_SYNC;

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

export interface ProtectedRange {
  base: number;
  size: number;
  owner: string;
  read: boolean;
  write: boolean;
}

/** What the guests need from the rest of the hypervisor (its parts exist once it has booted). */
export interface GuestsEnv {
  readonly machine: Machine;
  readonly mmio: number;
  readonly own: PageOwnership;
  readonly policy: HypPolicy;
  readonly pool: HypPool;
  readonly shadowQ: ShadowQueue;
  readonly strtab: ShadowStreamTable;
  readonly hwIdr: {
    idr0: number;
    idr1: number;
    idr3: number;
    idr5: number;
    aidr: number;
    iidr: number;
  };
  readonly sidBits: number;
  weak(r: RuleName): boolean;
}

export class Guests {
  /** guests by name, and which guest each assigned pSID belongs to */
  readonly guests = new Map<string, Guest>();
  readonly vsmmus = new Map<string, VSmmu>();
  readonly sidOwner = new Map<number, Guest>();
  /** every guest created, in order (destroyed ones too), for reports */
  readonly guestHistory: Guest[] = [];
  /** guest events the hypervisor kept (stage-2 faults and other non-forwarded records of guest devices) */
  faultsKept = 0;
  private nextVmid = 1;
  private freeVmids: number[] = [];
  /** guests whose memory is back with the host (early only when guest-teardown is weakened) */
  private readonly memoryReturned = new WeakSet<Guest>();

  constructor(private readonly env: () => GuestsEnv) {}

  /** A running guest's memory returns to the host only through destroy (its stage-2 and devices still use it). */
  refuseGuestMemory(op: 'reclaim' | 'unshare', base: number, from: string): void {
    if (from.startsWith('guest:') && this.guests.has(from.slice(6)))
      throw new OwnershipError(
        op,
        base,
        `${from} is running: its memory returns to the host only when the guest is destroyed`,
      );
  }

  /**
   * Build a guest: check everything first (nothing changes on a refusal), then quiesce its
   * devices (abort STEs), take its memory from the host (the idmap unmaps it with TLBIs before
   * the donation completes), build its stage-2 under a fresh VMID, and give it a vSMMU whose
   * physical STEs follow GBPA (abort) until the guest enables it.
   */
  create(spec: GuestSpec): Guest {
    const env = this.env();
    const { name, memory, devices } = spec;
    const sidBits = env.sidBits;
    if (!/^[A-Za-z0-9_-]+$/.test(name))
      throw new GuestError(`guest name "${name}" must be letters, digits, _ or -`);
    if (this.guests.has(name)) throw new GuestError(`guest ${name} already exists`);
    if (memory.base % PAGE || memory.size % PAGE || memory.size === 0)
      throw new GuestError(
        `guest ${name}: memory 0x${memory.base.toString(16)}+0x${memory.size.toString(16)} must be page aligned and not empty`,
      );
    if (!env.machine.mem.isRam(memory.base, memory.size))
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
      if (!Number.isInteger(d.psid) || d.psid < 0 || d.psid >= 2 ** sidBits)
        throw new GuestError(
          `guest ${name}: pSID ${d.psid} is beyond the SMMU's ${sidBits}-bit StreamIDs`,
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
    const hwCr0 = env.machine.bus.read32('hyp', env.mmio + OFF.CR0);
    if ((hwCr0 & CMDQEN) === 0 || env.shadowQ.hwErr() !== 0)
      throw new GuestError(
        `guest ${name}: the command queue is ${(hwCr0 & CMDQEN) === 0 ? 'disabled (CMDQEN=0)' : 'stopped on a command error the host has not acknowledged'}, so its devices could not be quiesced`,
      );
    const vmidMax = get([env.hwIdr.idr0], IDR0.VMID16) ? 0xffff : 0xff;
    const vmid = this.freeVmids.pop() ?? this.nextVmid;
    if (vmid > vmidMax) throw new GuestError(`guest ${name}: no VMID left`);
    // the memory leaves the host first (refused, e.g. shared or pinned pages, changes nothing)
    try {
      env.own.donate(memory.base, memory.size, `guest:${name}`);
    } catch (e) {
      if (vmid !== this.nextVmid) this.freeVmids.push(vmid);
      if (e instanceof OwnershipError || e instanceof ShadowQueueError)
        throw new GuestError(`guest ${name}: ${e.message}`);
      throw e;
    }
    if (vmid === this.nextVmid) this.nextVmid++;
    const g = new Guest(name, vmid, spec, env.machine.bus, env.pool);
    this.guests.set(name, g);
    this.guestHistory.push(g);
    for (const d of devices) this.sidOwner.set(d.psid, g);
    const v = new VSmmu(g, {
      hwIdr: env.hwIdr,
      allowAts: env.policy.allowAts,
      budget: env.policy.guestCmdBudget,
      installSte: (psid, w) => env.strtab.install(psid, w, (cmds) => this.issue(g, cmds)),
      issue: (cmds) => this.issue(g, cmds),
      drained: () => env.shadowQ.drained(),
      weak: (r) => env.weak(r),
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
  destroy(name: string, between?: (phase: TeardownPhase) => void): void {
    const env = this.env();
    const g = this.guests.get(name);
    if (!g) throw new GuestError(`no guest named ${name}`);
    const v = this.vsmmus.get(name)!;
    g.dying = true;
    v.stop();
    const returnMemory = (): void => {
      if (this.memoryReturned.has(g)) return; // (a retried teardown under the weakened order)
      env.machine.bus.zeroBytes('hyp', g.paBase, g.size);
      env.own.reclaim(g.paBase, g.size, `guest:${name}`);
      this.memoryReturned.add(g);
    };
    const early = env.weak('guest-teardown');
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
        env.strtab.install(psid, abort, (cmds) => env.shadowQ.issueAndSync(cmds));
      between?.('ste-abort');
      env.shadowQ.issueAndSync([encodeCommand('TLBI_S12_VMALL', { VMID: g.vmid })]);
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
  private issue(g: Guest, cmds: Uint32Array[]): void {
    this.env().shadowQ.issueAndSync(cmds);
    g.stats.physCommands += cmds.length + 1;
    const ops = this.vsmmus.get(g.name)?.physOps;
    if (ops) {
      for (const c of cmds) ops[c[0]! & 0xff]!++;
      ops[OP_SYNC]!++;
    }
  }

  /** A guest vCPU access that trapped: its vSMMU, or a data abort. */
  trap(a: DataAbort): bigint {
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
   * Every event record the SMMU generates passes here first (the event queue's router). A
   * record for a guest's device is the guest's if it is a stage-1 fault or a configuration
   * error of its own making: it is copied into the guest's event queue with the vSID. Stage-2
   * faults stay here (counted); records of host devices go on to the host's queue.
   */
  routeEvent(w: Uint32Array): void {
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
      this.faultsKept++;
      return;
    }
    this.vsmmus.get(g.name)!.forward(w, g.psidToVsid.get(w[1]!)!);
  }

  /** The ranges a device may not access when it differs from the host's: a guest's device may reach only its guest's memory. */
  rangesForSid(sid: number): ProtectedRange[] | undefined {
    const g = this.sidOwner.get(sid);
    if (!g) return undefined;
    const own = this.env().own;
    const top = 2 ** 48;
    const out: ProtectedRange[] = [];
    const guestMem = own.state(g.paBase).owner === `guest:${g.name}`;
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
}
