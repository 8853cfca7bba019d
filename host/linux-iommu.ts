/**
 * The host's IOMMU support as Linux provides it: the unchanged arm-smmu-v3 driver on MMIO
 * (driver/driver.ts), its domains (driver/domain.ts) and the strict-mode DMA API (dma-api.ts),
 * behind HostIommu. The same object runs on bare hardware and under a trap-and-emulate
 * hypervisor; it cannot tell them apart.
 */
import type { MmioBus } from '../hw/bus.ts';
import { ArmSmmuV3, DriverError } from './driver/driver.ts';
import { DomainManager, type Domain } from './driver/domain.ts';
import { DmaApi, type DmaDirection } from './dma-api.ts';
import type { HostDomainKind, HostIommu } from './iommu.ts';

export interface LinuxIommuOptions {
  /** the bus actor the kernel runs as (default 'host') */
  actor?: string;
  /** base of the SMMU's registers */
  smmu: number;
  /** RAM the driver may allocate its queues, tables and page tables from */
  pages: { base: number; limit: number };
}

export class LinuxIommu implements HostIommu {
  readonly kind = 'linux' as const;
  readonly drv: ArmSmmuV3;
  private dmVal: DomainManager | null = null;
  private dmaVal: DmaApi | null = null;
  /** the shared identity and blocked domains (Linux has one of each per SMMU) */
  private identity: Domain | null = null;
  private blocked: Domain | null = null;

  constructor(bus: MmioBus, o: LinuxIommuOptions) {
    this.drv = new ArmSmmuV3(bus, { base: o.smmu, pages: o.pages }, o.actor ?? 'host');
  }

  /** the domain manager (after probe) */
  get dm(): DomainManager {
    if (!this.dmVal) throw new DriverError('the IOMMU has not probed yet');
    return this.dmVal;
  }

  /** the DMA API (after probe) */
  get dma(): DmaApi {
    if (!this.dmaVal) throw new DriverError('the IOMMU has not probed yet');
    return this.dmaVal;
  }

  probe(): void {
    this.drv.probe();
    this.dmVal = new DomainManager(this.drv);
    this.dmaVal = new DmaApi(this.drv, this.dmVal);
  }

  attach(sid: number, kind: HostDomainKind): void {
    const dm = this.dm;
    switch (kind) {
      case 'dma':
        this.dma.attachDefault(sid);
        return;
      case 'identity':
        dm.attach(sid, (this.identity ??= dm.alloc('identity')));
        return;
      case 'blocked':
        dm.attach(sid, (this.blocked ??= dm.alloc('blocked')));
        return;
    }
  }

  detach(sid: number): void {
    this.attach(sid, 'blocked');
  }

  map(sid: number, pa: number, size: number, dir: DmaDirection = 'bidirectional'): number {
    return this.dma.map(sid, pa, size, dir);
  }

  unmap(sid: number, iova: number, size: number): void {
    this.dma.unmap(sid, iova, size);
  }

  suspend(): void {
    this.drv.suspend();
  }

  resume(): void {
    this.drv.resume();
  }
}
