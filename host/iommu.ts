/**
 * What the host kernel's IOMMU support offers the rest of the kernel (and the evaluation's
 * workloads), whichever driver provides it: the unchanged Linux-like arm-smmu-v3 driver with
 * its DMA API (trap-and-emulate designs, and no hypervisor at all), or a paravirtual driver
 * that asks the hypervisor by hypercall (pKVM v1/v2, v3). One interface, so a workload runs
 * unchanged on every design and the counts differ only by what the design does.
 */
import type { DmaDirection } from './dma-api.ts';

export type { DmaDirection } from './dma-api.ts';

/** the domain a device is put in: translated DMA, identity (bypass the host's own tables), or blocked */
export type HostDomainKind = 'dma' | 'identity' | 'blocked';

export interface HostIommu {
  /** 'linux': the arm-smmu-v3 driver on MMIO; 'pv': hypercalls (v1/v2); 'pv-idmap': enable/disable-device hypercalls (v3) */
  readonly kind: 'linux' | 'pv' | 'pv-idmap';
  /** bring the IOMMU up (the driver's probe and reset, or the paravirtual driver's init) */
  probe(): void;
  /** put StreamID `sid` in a domain of `kind` (a new default domain per device for 'dma') */
  attach(sid: number, kind: HostDomainKind): void;
  /** take `sid` out of its domain (Linux: the blocked domain; pv: detach) */
  detach(sid: number): void;
  /** dma_map_single: map [pa, pa+size) for `sid`'s device; returns the IOVA the device uses */
  map(sid: number, pa: number, size: number, dir?: DmaDirection): number;
  /** dma_unmap_single: the mapping is gone (and invalidated) when this returns */
  unmap(sid: number, iova: number, size: number): void;
  /** runtime PM: the SMMU is powered down (disabled) and brought back (re-reset) */
  suspend(): void;
  resume(): void;
}
