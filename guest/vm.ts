/**
 * A guest kernel: the same Linux-like arm-smmu-v3 driver, io-pgtable and DMA API as the host
 * (host/), run as the guest's vCPU (bus actor `guest:<name>`) over the guest's IPA space. It
 * knows only what its device tree tells it: where its RAM is, where its SMMU is (the vSMMU)
 * and the StreamIDs of its devices (vSIDs). It cannot tell the vSMMU from hardware: every
 * register access traps to the hypervisor, and every "physical" address it uses is an IPA.
 */
import type { MmioBus } from '../hw/bus.ts';
import { ArmSmmuV3 } from '../host/driver/driver.ts';
import { DomainManager } from '../host/driver/domain.ts';
import { DmaApi } from '../host/dma-api.ts';

/** What the guest's firmware (its device tree) describes. */
export interface GuestDeviceTree {
  /** the vCPU's bus actor */
  actor: string;
  /** the guest's RAM, in IPA */
  ram: { base: number; size: number };
  /** the SMMU node's register base (IPA) */
  smmu: number;
  /** the `iommus` StreamIDs of its devices (vSIDs), by device name */
  streams: Record<string, number>;
}

export class GuestKernel {
  readonly drv: ArmSmmuV3;
  readonly dm: DomainManager;
  readonly dma: DmaApi;

  /**
   * Boot the guest's SMMU driver (probe and reset the SMMU it was given). Its tables and queues come from the upper half of its RAM
   * (the lower half is left for the buffers a workload maps), unless `pages` says otherwise.
   */
  constructor(
    bus: MmioBus,
    readonly dt: GuestDeviceTree,
    pages?: { base: number; limit: number },
  ) {
    const half = dt.ram.base + Math.floor(dt.ram.size / 2 / 4096) * 4096;
    this.drv = new ArmSmmuV3(
      bus,
      { base: dt.smmu, pages: pages ?? { base: half, limit: dt.ram.base + dt.ram.size } },
      dt.actor,
    );
    this.drv.probe();
    this.dm = new DomainManager(this.drv);
    this.dma = new DmaApi(this.drv, this.dm);
  }
}
