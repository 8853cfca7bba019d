/**
 * The evaluation's test bed: one machine built for one design, with the host IOMMU driver the
 * design gives the host, N DMA endpoints with distinct StreamIDs, and the helpers a workload
 * needs (buffers, the host CPU touching them, device DMA, donations, guests, the isolation
 * oracle after each phase).
 *
 *  - `none`: the bare machine (hw/machine.ts) and the Linux driver (host/linux-iommu.ts);
 *  - a trap-and-emulate policy (cmdq 'trap'): the machine, PkvmHyp(policy).boot() and the
 *    same, unchanged Linux driver on top;
 *  - a paravirtual policy (cmdq 'pv' | 'pv-idmap'): PkvmHyp and the paravirtual host driver
 *    (host/pv/iommu.ts), constructed in `hostIommuFor` below.
 *
 * The bed does not probe: a workload does (so `boot` can count its probe), or calls `up()`.
 */
import { Machine, RAM_BASE, SMMU_BASE } from '../../hw/machine.ts';
import type { SmmuOptions } from '../../hw/smmu/smmu.ts';
import type { DmaEndpoint, DmaOutcome } from '../../hw/dma.ts';
import { PkvmHyp, type TeardownPhase } from '../../hyp/pkvm.ts';
import type { HypPolicy } from '../../hyp/policy/policy.ts';
import type { Guest, GuestDevice } from '../../hyp/vm/guest.ts';
import { GUEST_RAM_IPA, VSMMU_IPA } from '../../hyp/vm/guest.ts';
import type { HostIommu } from '../../host/iommu.ts';
import { LinuxIommu } from '../../host/linux-iommu.ts';
import { PvIommu } from '../../host/pv/iommu.ts';
import { GuestKernel } from '../../guest/vm.ts';
import { IsolationOracle, type IsolationPolicy } from '../check/oracle.ts';
import { HOST_PAGES } from '../steps/driver.ts';
import type { Design } from './types.ts';
import { statGroup } from '../../hw/probe.ts';

/** The workload's own counts (the collector reads them as the ops/maps/unmaps metrics). */
export const WORKLOAD_STATS = statGroup(
  'eval.workload',
  'host',
  "an evaluation workload's own operations, counted by the bed's helpers",
  {
    ops: 'operations: probes, attaches, maps, unmaps, suspends, resumes, donations, guests',
    maps: 'DMA maps (host and guest kernels)',
    unmaps: 'DMA unmaps (host and guest kernels)',
    dmas: 'device DMAs the workload issued through the bed',
    dmaFaults: 'of those, the ones that faulted',
  },
);

/** The hypervisor memory a bare machine leaves alone, so the oracle judges `none` on the same pages. */
export const HYP_MEMORY = { base: 0x7c00_0000, size: 0x0400_0000 } as const;
/** Host memory the workloads' buffers and guests come from: below the driver's HOST_PAGES. */
export const BUFFERS = { base: RAM_BASE, limit: HOST_PAGES.base } as const;
/** the first endpoint's StreamID; endpoint i has FIRST_SID + i */
export const FIRST_SID = 8;
const PAGE = 4096;

export interface BedOptions {
  /** DMA endpoints (default 4), StreamIDs FIRST_SID, FIRST_SID+1, … */
  devices?: number;
  /** SMMU feature overrides (hw/smmu/features.ts) */
  smmu?: SmmuOptions;
}

/** One isolation check: after which phase, and what the oracle found. */
export interface PhaseCheck {
  readonly phase: string;
  readonly ok: boolean;
  readonly breaches: number;
}

/** A guest the bed built: the hypervisor's record and the guest's kernel. */
export interface BedGuest {
  readonly guest: Guest;
  readonly kernel: GuestKernel;
  /** the guest's RAM (IPA) */
  readonly ram: { base: number; size: number };
}

/**
 * The one place the host's IOMMU driver is chosen from the design: the unchanged Linux-like
 * driver (no hypervisor, or trap-and-emulate), or the paravirtual one (host/pv/iommu.ts).
 */
function hostIommuFor(machine: Machine, policy: HypPolicy | null): HostIommu {
  if (policy === null || policy.cmdq === 'trap')
    return new LinuxIommu(machine.bus, { smmu: SMMU_BASE, pages: HOST_PAGES });
  return new PvIommu(machine.bus, { actor: 'host', pages: HOST_PAGES }, policy.cmdq);
}

export class Bed {
  readonly machine: Machine;
  readonly hyp: PkvmHyp | null;
  readonly iommu: HostIommu;
  readonly endpoints: readonly DmaEndpoint[];
  readonly oracle: IsolationOracle;
  /** every isolation check, in order */
  readonly checks: PhaseCheck[] = [];
  readonly guests = new Map<string, BedGuest>();
  /** workload counts (the collector reads them) */
  readonly counts = WORKLOAD_STATS.create();
  private nextBuf: number = BUFFERS.base;
  private readonly bySid = new Map<number, DmaEndpoint>();
  private probed = false;

  constructor(
    readonly design: Design,
    opts: BedOptions = {},
  ) {
    const n = opts.devices ?? 4;
    if (!Number.isInteger(n) || n < 1 || n > 64)
      throw new Error(`bed: devices must be an integer from 1 to 64 (got ${n})`);
    this.machine = new Machine({
      ...(opts.smmu ? { smmu: opts.smmu } : {}),
      devices: Array.from({ length: n }, (_, i) => ({ name: `dev${i}`, sid: FIRST_SID + i })),
    });
    this.endpoints = [...this.machine.devices.values()];
    for (const e of this.endpoints) this.bySid.set(e.sid, e);
    this.hyp = design.policy
      ? new PkvmHyp(this.machine, { policy: design.policy, hypMemory: { ...HYP_MEMORY } }).boot()
      : null;
    this.iommu = hostIommuFor(this.machine, design.policy);
    this.oracle = new IsolationOracle(this.machine, this.isolationPolicy());
    this.oracle.attach();
  }

  /** The StreamIDs of the endpoints, in order. */
  get sids(): number[] {
    return this.endpoints.map((e) => e.sid);
  }

  /** Probe the host IOMMU (once). */
  up(): void {
    if (this.probed) return;
    this.iommu.probe();
    this.probed = true;
  }

  endpoint(sid: number): DmaEndpoint {
    const e = this.bySid.get(sid);
    if (!e) throw new Error(`bed: no endpoint with StreamID ${sid} (have ${this.sids.join(', ')})`);
    return e;
  }

  /** `bytes` of host memory (page multiples, aligned to `align`, default a page) for buffers or a guest. */
  alloc(bytes: number, align = PAGE): number {
    const size = Math.ceil(bytes / PAGE) * PAGE;
    const a = Math.ceil(this.nextBuf / align) * align;
    if (a + size > BUFFERS.limit)
      throw new Error(
        `bed: out of buffer memory (0x${BUFFERS.base.toString(16)}–0x${BUFFERS.limit.toString(16)}) for ${bytes} bytes`,
      );
    this.nextBuf = a + size;
    return a;
  }

  // ---- the workload's operations (each counted) ----------------------------------------------

  /** The host IOMMU's probe, counted as one operation. */
  probe(): void {
    this.up();
    this.counts.ops++;
  }

  attach(sid: number, kind: 'dma' | 'identity' | 'blocked' = 'dma'): void {
    this.iommu.attach(sid, kind);
    this.counts.ops++;
  }

  /** Runtime suspend and resume, one operation each. */
  suspend(): void {
    this.iommu.suspend();
    this.counts.ops++;
  }
  resume(): void {
    this.iommu.resume();
    this.counts.ops++;
  }

  map(
    sid: number,
    pa: number,
    size: number,
    dir?: 'to-device' | 'from-device' | 'bidirectional',
  ): number {
    const iova = this.iommu.map(sid, pa, size, dir);
    this.counts.maps++;
    this.counts.ops++;
    return iova;
  }

  unmap(sid: number, iova: number, size: number): void {
    this.iommu.unmap(sid, iova, size);
    this.counts.unmaps++;
    this.counts.ops++;
  }

  /** A device DMA of `len` bytes at `iova` (writes carry a pattern). */
  dma(sid: number, iova: number, len: number, write: boolean): DmaOutcome {
    const ep = this.endpoint(sid);
    const out = write ? ep.write(iova, pattern(len, iova)) : ep.read(iova, len);
    this.counts.dmas++;
    if (!out.ok) this.counts.dmaFaults++;
    return out;
  }

  /** The host CPU reads (or writes) a buffer through the bus, as the kernel would. */
  cpuRead(pa: number, len: number): Uint8Array {
    return this.machine.bus.readBytes('host', pa, len);
  }
  cpuWrite(pa: number, data: Uint8Array): void {
    this.machine.bus.writeBytes('host', pa, data);
  }

  /** The hypervisor, or a clear error for `none`. */
  needHyp(what: string): PkvmHyp {
    if (!this.hyp)
      throw new Error(`${what} needs a hypervisor (design ${this.design.name} has none)`);
    return this.hyp;
  }

  donate(base: number, size: number): void {
    this.needHyp('donate').donate(base, size, 'hyp');
    this.counts.ops++;
  }

  reclaim(base: number, size: number): void {
    this.needHyp('reclaim').reclaim(base, size, 'hyp');
    this.counts.ops++;
  }

  /**
   * The host donates `memory` and the hypervisor builds guest `name` with `devices`
   * (vSID → pSID); its kernel boots on its vSMMU (guest/vm.ts).
   */
  createGuest(
    name: string,
    memory: { base: number; size: number },
    devices: GuestDevice[],
  ): BedGuest {
    const hyp = this.needHyp('a guest');
    const guest = hyp.createGuest({ name, memory, devices });
    const ram = { base: GUEST_RAM_IPA, size: memory.size };
    const streams: Record<string, number> = {};
    for (const d of devices) streams[`psid${d.psid}`] = d.vsid;
    const kernel = new GuestKernel(this.machine.bus, {
      actor: guest.actor,
      ram,
      smmu: VSMMU_IPA,
      streams,
    });
    const g = { guest, kernel, ram };
    this.guests.set(name, g);
    this.counts.ops++;
    return g;
  }

  /** Tear guest `name` down, checking isolation after every teardown phase. */
  destroyGuest(name: string): void {
    const hyp = this.needHyp('a guest');
    hyp.destroyGuest(name, (phase: TeardownPhase) => this.check(`destroy ${name}: ${phase}`));
    this.guests.delete(name);
    this.counts.ops++;
  }

  // ---- the isolation oracle ------------------------------------------------------------------

  /** Run the oracle now and record the result under `phase`. */
  check(phase: string): PhaseCheck {
    const r = this.oracle.check();
    const c = { phase, ok: r.ok, breaches: r.total };
    this.checks.push(c);
    return c;
  }

  private isolationPolicy(): IsolationPolicy {
    return {
      protectedRanges: () =>
        this.hyp
          ? this.hyp.protectedRanges()
          : [
              {
                base: HYP_MEMORY.base,
                size: HYP_MEMORY.size,
                owner: 'hyp',
                read: false,
                write: false,
              },
            ],
      rangesFor: (name) => {
        const dev = this.machine.devices.get(name);
        return dev && this.hyp ? this.hyp.rangesForSid(dev.sid) : undefined;
      },
    };
  }
}

/** A recognisable, deterministic payload for a DMA write. */
function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (seed + i * 131) & 0xff;
  return b;
}
