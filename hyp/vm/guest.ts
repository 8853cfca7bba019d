/**
 * A guest VM as the hypervisor keeps it: memory donated by the host and mapped at an IPA,
 * the guest's stage-2 (one table, used both for the guest's CPU accesses on the bus and by
 * the SMMU for its assigned devices, under the guest's VMID), and the StreamIDs assigned to it
 * with their fixed vSID → pSID table (designs.md §3.5: fixed when the guest is built).
 *
 * Every hypervisor access to guest memory (the guest's command and event queues, its stream
 * table) goes through `read`/`write`, which translate through the guest's stage-2: an IPA the
 * guest does not own cannot be reached (designs.md §3.2, Xen's P2M-checked reads).
 *
 * Those two accessors are also the hook point the guest fuzzer uses (`watch`, like
 * hyp/mem/hostmem.ts's hook for host memory): it runs before every access with the PA it is about
 * to touch, so a second vCPU can rewrite guest memory between two hypervisor reads of it (a
 * race), and so a hypervisor access that would leave the guest's memory is seen before it
 * happens.
 */
import type { MmioBus } from '../../hw/bus.ts';
import { IoPgtable, newGather, type S2PgtableCfg } from '../../hw/vmsa/io-pgtable.ts';
import type { HypPool } from '../mem/pool.ts';
import { hypStage2Pgtable } from '../iommu/hyp-pgtable.ts';

/** Where a guest sees its RAM and its vSMMU: the `virt` layout, as the host sees the machine. */
export const GUEST_RAM_IPA = 0x4000_0000;
export const VSMMU_IPA = 0x0905_0000;
/** vSIDs are 16 bits (IDR1.SIDSIZE=16 on the vSMMU) */
export const VSID_BITS = 16;

export interface GuestDevice {
  /** the StreamID the guest uses (its DT/IORT names this) */
  vsid: number;
  /** the physical StreamID */
  psid: number;
}

export interface GuestSpec {
  name: string;
  /** host memory donated to the guest (PA, page aligned) */
  memory: { base: number; size: number };
  /** IPA of the guest's RAM (default 0x4000_0000) */
  ipaBase?: number;
  devices: GuestDevice[];
}

export interface GuestStats {
  /** vSMMU register accesses trapped */
  traps: number;
  /** guest commands consumed by the hypervisor */
  commands: number;
  /** physical commands the hypervisor issued for the guest */
  physCommands: number;
  /** guest PROD writes and continuations that hit the per-trap budget */
  budgetStops: number;
  /** event records written to the guest's event queue */
  eventsInjected: number;
  /** event records for the guest lost: queue disabled, full (overflow) or unwritable */
  eventsLost: number;
  /** stage-2 faults of the guest's devices, kept by the hypervisor */
  s2Faults: number;
  /** virtual interrupts raised: event queue, global error */
  virqs: { eventq: number; gerror: number };
  /** guest command errors (CONS.ERR with GERROR.CMDQ_ERR) */
  cmdErrors: number;
  /** guest STEs refused (C_BAD_STE) */
  badSte: number;
  /** CPU data aborts on guest accesses outside its RAM and vSMMU */
  dataAborts: number;
}

const RAM_PROT = { read: true, write: true, cache: true } as const;

/**
 * Called before each hypervisor access to guest memory on the guest's behalf: the direction,
 * the IPA, the PA it reaches (-1 when the stage-2 refuses it, and then nothing is accessed) and
 * its length in bytes.
 */
export type GuestMemWatch = (dir: 'r' | 'w', ipa: number, pa: number, bytes: number) => void;

export class Guest {
  readonly actor: string;
  readonly s2: IoPgtable;
  readonly ipaBase: number;
  readonly paBase: number;
  readonly size: number;
  readonly vsidToPsid = new Map<number, number>();
  readonly psidToVsid = new Map<number, number>();
  readonly stats: GuestStats = {
    traps: 0,
    commands: 0,
    physCommands: 0,
    budgetStops: 0,
    eventsInjected: 0,
    eventsLost: 0,
    s2Faults: 0,
    virqs: { eventq: 0, gerror: 0 },
    cmdErrors: 0,
    badSte: 0,
    dataAborts: 0,
  };
  /** set once teardown has begun: the guest's vCPUs and devices are stopped */
  dying = false;
  /** see GuestMemWatch (null: no watcher, the hot path) */
  watch: GuestMemWatch | null = null;

  constructor(
    readonly name: string,
    readonly vmid: number,
    spec: GuestSpec,
    private readonly bus: MmioBus,
    pool: HypPool,
  ) {
    this.actor = `guest:${name}`;
    this.ipaBase = spec.ipaBase ?? GUEST_RAM_IPA;
    this.paBase = spec.memory.base;
    this.size = spec.memory.size;
    for (const d of spec.devices) {
      this.vsidToPsid.set(d.vsid, d.psid);
      this.psidToVsid.set(d.psid, d.vsid);
    }
    this.s2 = hypStage2Pgtable(bus, pool, `guest ${name} stage-2 table`);
    this.s2.mapRange(this.ipaBase, this.paBase, this.size, RAM_PROT);
  }

  get s2cfg(): S2PgtableCfg {
    return this.s2.s2!;
  }

  /** The PA behind a guest IPA, or -1 when the guest's stage-2 does not map it. */
  ipaToPa(ipa: number): number {
    const off = ipa - this.ipaBase;
    if (off < 0 || off >= this.size) return -1;
    return this.paBase + off;
  }

  /** Does [pa, pa+len) lie in this guest's memory? */
  ownsPa(pa: number, len = 1): boolean {
    return pa >= this.paBase && pa + len <= this.paBase + this.size;
  }

  /**
   * Where an access of `bytes` at `ipa` lands: through the stage-2 (-1 unless all of it is the
   * guest's RAM), or with `unchecked` (the weakened `vsmmu-p2m` rule) by the linear offset
   * alone, wherever that is (-1 only when it is not RAM at all).
   */
  private place(ipa: number, bytes: number, unchecked: boolean): number {
    if (!unchecked) {
      const pa = this.ipaToPa(ipa);
      return pa < 0 || this.ipaToPa(ipa + bytes - 1) < 0 ? -1 : pa;
    }
    const pa = this.paBase + (ipa - this.ipaBase);
    return pa >= 0 && this.bus.mem.isRam(pa, bytes) ? pa : -1;
  }

  /** Read `n` words at an IPA through the guest's stage-2 (one page at most). False when not mapped. */
  read(ipa: number, out: Uint32Array, n = out.length, unchecked = false): boolean {
    const pa = this.place(ipa, n * 4, unchecked);
    if (this.watch !== null) this.watch('r', ipa, pa, n * 4);
    if (pa < 0) return false;
    this.bus.readWords('hyp', pa, out, n);
    return true;
  }

  /** Write words at an IPA through the guest's stage-2. False when not mapped. */
  write(ipa: number, words: Uint32Array, n = words.length, unchecked = false): boolean {
    const pa = this.place(ipa, n * 4, unchecked);
    if (this.watch !== null) this.watch('w', ipa, pa, n * 4);
    if (pa < 0) return false;
    this.bus.writeWords('hyp', pa, words, n);
    return true;
  }

  /** Unmap the whole stage-2 and free its tables (teardown, after the devices are quiesced). */
  destroyS2(): void {
    this.s2.unmapRange(this.ipaBase, this.size, newGather());
    this.s2.free();
  }
}
