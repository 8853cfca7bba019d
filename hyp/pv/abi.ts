/**
 * The paravirtual IOMMU hypercall ABI (designs.md §2.1, §2.2): the contract between the host's
 * paravirtual driver and the hypervisor, declared once as data. Like Linux's asm/kvm_asm.h it is
 * shared by both sides, so it imports nothing: it is the one hyp/ module host/ may import
 * (test/layering.ts, HYP_ABI).
 *
 * Each call has an SMCCC function ID (x0: a fast HVC64 call in the vendor-specific hypervisor
 * range; the numbers are this model's, pKVM's are an enum offset from its own base), its
 * arguments in order (x1..x6) and the designs that offer it. A call returns x0: a result (bytes,
 * a PA, 0) or a negative errno; a function the running design does not offer returns
 * SMCCC_RET_NOT_SUPPORTED (-1, hw/bus.ts HVC_NOT_SUPPORTED).
 */

/** the designs that offer a call: pKVM v1/v2 (full paravirtual IOMMU) and v3 (identity only) */
export type PvKind = 'pv' | 'pv-idmap';

export interface PvCallDef {
  /** the SMCCC function ID */
  readonly id: number;
  /** the arguments, in register order (x1, x2, ...) */
  readonly args: readonly string[];
  readonly kinds: readonly PvKind[];
  /** what it does and returns */
  readonly doc: string;
}

/** SMCCC fast call, 64-bit, owner 6 (vendor-specific hypervisor service) */
const VENDOR_HYP_FAST64 = 0xc600_0000;

export const PV_CALLS = {
  alloc_domain: {
    id: VENDOR_HYP_FAST64 + 0x20,
    args: ['domain_id', 'type'],
    kinds: ['pv'],
    doc: 'allocate a domain (its page table and ASID) under an ID from the lower half; 0',
  },
  free_domain: {
    id: VENDOR_HYP_FAST64 + 0x21,
    args: ['domain_id'],
    kinds: ['pv'],
    doc: 'free a domain with no device attached and nothing mapped; 0',
  },
  attach_dev: {
    id: VENDOR_HYP_FAST64 + 0x22,
    args: ['iommu_id', 'domain_id', 'sid', 'pasid', 'pasid_bits'],
    kinds: ['pv'],
    doc: "point the caller's device (StreamID, PASID) at a domain; 0",
  },
  detach_dev: {
    id: VENDOR_HYP_FAST64 + 0x23,
    args: ['iommu_id', 'domain_id', 'sid', 'pasid'],
    kinds: ['pv'],
    doc: 'take the device (StreamID, PASID) out of the domain; 0',
  },
  map_pages: {
    id: VENDOR_HYP_FAST64 + 0x24,
    args: ['domain_id', 'iova', 'paddr', 'pgsize', 'pgcount', 'prot'],
    kinds: ['pv'],
    doc: 'map pgcount pages of pgsize of host memory at iova; the bytes mapped',
  },
  unmap_pages: {
    id: VENDOR_HYP_FAST64 + 0x25,
    args: ['domain_id', 'iova', 'pgsize', 'pgcount'],
    kinds: ['pv'],
    doc: 'unmap pgcount pages of pgsize at iova, invalidated before it returns; the bytes unmapped',
  },
  iova_to_phys: {
    id: VENDOR_HYP_FAST64 + 0x26,
    args: ['domain_id', 'iova'],
    kinds: ['pv'],
    doc: 'the PA iova translates to in the domain, or 0 when nothing is mapped there',
  },
  power: {
    id: VENDOR_HYP_FAST64 + 0x27,
    args: ['iommu_id', 'on'],
    kinds: ['pv', 'pv-idmap'],
    doc: "the SMMU's power domain (hvc_pd): 0 disables the SMMU, 1 re-enables it with its state; 0",
  },
  enable_dev: {
    id: VENDOR_HYP_FAST64 + 0x28,
    args: ['sid'],
    kinds: ['pv-idmap'],
    doc: "point the caller's device at the idmap (stage 2 only, VMID 0); 0",
  },
  disable_dev: {
    id: VENDOR_HYP_FAST64 + 0x29,
    args: ['sid'],
    kinds: ['pv-idmap'],
    doc: "invalidate the device's STE (V=0); 0",
  },
  donate_hyp: {
    id: VENDOR_HYP_FAST64 + 0x2a,
    args: ['paddr', 'nr_pages'],
    kinds: ['pv', 'pv-idmap'],
    doc: "pKVM's __pkvm_host_donate_hyp: give host memory to the hypervisor (refused while a page is mapped for DMA); 0",
  },
} as const satisfies Record<string, PvCallDef>;

export type PvCallName = keyof typeof PV_CALLS;
export const PV_CALL_NAMES = Object.keys(PV_CALLS) as PvCallName[];

/**
 * The errnos a call returns (negated), Linux's numbers. EOVERFLOW is what the GKI core's
 * check_add_overflow/check_mul_overflow paths return for an iova, paddr or size that wraps
 * [verify: not re-read in the stored copy].
 */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ENOMEM: 12,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  EOVERFLOW: 75,
} as const;
export type ErrnoName = keyof typeof ERRNO;
export const ERRNO_NAMES = Object.keys(ERRNO) as ErrnoName[];

/** The name of a negative return value's errno, or undefined for a result. */
export function errnoName(ret: number): ErrnoName | undefined {
  for (const n of ERRNO_NAMES) if (ret === -ERRNO[n]) return n;
  return undefined;
}

/** map_pages prot bits: Linux's IOMMU_READ, IOMMU_WRITE, IOMMU_CACHE, IOMMU_NOEXEC, IOMMU_MMIO, IOMMU_PRIV */
export const PROT = {
  READ: 1 << 0,
  WRITE: 1 << 1,
  CACHE: 1 << 2,
  NOEXEC: 1 << 3,
  MMIO: 1 << 4,
  PRIV: 1 << 5,
} as const;
/** every prot bit map_pages accepts; any other bit is -EINVAL */
export const PROT_ALLOWED = Object.values(PROT).reduce((a, b) => a | b, 0);

/** alloc_domain types: only DMA domains are allocated; identity is the reserved IDMAP domain */
export const DOMAIN_TYPE = { DMA: 1 } as const;

/** The domain-ID space: 16 bits; the host allocates in the lower half, the upper half is the hypervisor's and guests' */
export const DOMAIN_ID_BITS = 16;
export const HOST_DOMAIN_LIMIT = 2 ** (DOMAIN_ID_BITS - 1);
/** The reserved identity domain (the idmap): attach to it for identity DMA; never allocated, freed or mapped */
export const IDMAP_DOMAIN = 0;

/** The one SMMU this machine has (iommu_id) */
export const IOMMU_ID = 0;
/** PASIDs per device the hypervisor's CD tables hold: at most 2^MAX_PASID_BITS (one linear table) */
export const MAX_PASID_BITS = 8;
