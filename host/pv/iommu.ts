/**
 * The host's paravirtual IOMMU driver (pKVM v1/v2 and v3, designs.md §2.1–2.2): it never touches
 * the SMMU (its registers are the hypervisor's; an access would be a data abort) and asks the
 * hypervisor by hypercall instead, through the ABI both sides share (hyp/pv/abi.ts).
 *
 *  - 'pv': each device gets a default DMA domain of its own (alloc_domain with the next free ID
 *    of the host's lower half, then attach_dev); dma_map allocates an IOVA as iommu-dma does
 *    (host/dma-api.ts IovaAllocator) and makes one map_pages; dma_unmap makes one unmap_pages,
 *    which returns only once the hypervisor has invalidated the TLBs (strict mode). Identity
 *    attaches to the reserved IDMAP domain; blocked is detach (the STE becomes invalid).
 *  - 'pv-idmap': the driver exposes identity domains only (a DMA default domain becomes
 *    identity, as Linux does when the IOMMU offers nothing else): attach is enable_dev, detach and
 *    blocked are disable_dev, and dma_map returns iova = pa with no hypercall.
 *
 * Pages are always mapped 4 KiB at a time (pgsize 4096, pgcount pages): no block mappings.
 * suspend/resume are the power-domain hypercall (off, on). A refused hypercall throws
 * PvIommuError with the call, the errno and what was asked.
 */
import type { MmioBus } from '../../hw/bus.ts';
import { HVC_ARGS } from '../../hw/bus.ts';
import type { HostIommu, HostDomainKind, DmaDirection } from '../iommu.ts';
import { IovaAllocator } from '../dma-api.ts';
import {
  DOMAIN_TYPE,
  HOST_DOMAIN_LIMIT,
  IDMAP_DOMAIN,
  IOMMU_ID,
  PROT,
  PV_CALLS,
  errnoName,
  type PvCallName,
  type PvKind,
} from '../../hyp/pv/abi.ts';

const PAGE = 4096;
/** iommu-dma's 32-bit DMA limit, as the DMA API's allocator */
const IOVA_LIMIT = 2 ** 32;
const PROT_TO_DEVICE = PROT.READ | PROT.CACHE;
const PROT_FROM_DEVICE = PROT.WRITE | PROT.CACHE;
const PROT_BIDIRECTIONAL = PROT.READ | PROT.WRITE | PROT.CACHE;

export class PvIommuError extends Error {
  /** the arguments of the refused call, by name */
  readonly args: Readonly<Record<string, number>>;
  constructor(
    readonly call: PvCallName,
    readonly ret: number,
    args: ArrayLike<number>,
  ) {
    const named: Record<string, number> = {};
    PV_CALLS[call].args.forEach((n, i) => (named[n] = args[i] ?? 0));
    const list = Object.entries(named)
      .map(([k, v]) => `${k}=0x${v.toString(16)}`)
      .join(', ');
    const e = errnoName(ret);
    super(`pv-iommu: ${call}(${list}) refused: ${ret} (${e ? `-${e}` : 'not supported'})`);
    this.name = 'PvIommuError';
    this.args = named;
  }
}

interface PvDevDomain {
  readonly id: number;
  readonly iovas: IovaAllocator;
}

export class PvIommu implements HostIommu {
  readonly actor: string;
  /** where the driver could take memory from (the hypervisor's pool refills are not modeled: unused) */
  readonly pages: { base: number; limit: number };
  /** the hypercalls this driver made, and its maps and unmaps */
  hypercalls = 0;
  maps = 0;
  unmaps = 0;
  /** each device's default DMA domain (kept across detach, as Linux keeps the default domain) */
  private readonly dmaDomains = new Map<number, PvDevDomain>();
  /** what each device is attached to now (pv: a domain ID; pv-idmap: IDMAP_DOMAIN when enabled) */
  private readonly attached = new Map<number, number>();
  private nextDomain = 1;
  /** the arguments of a call (x1..x6), reused */
  private readonly args: number[] = new Array<number>(HVC_ARGS).fill(0);

  constructor(
    private readonly bus: MmioBus,
    opts: { actor?: string; pages: { base: number; limit: number } },
    readonly kind: PvKind,
  ) {
    this.actor = opts.actor ?? 'host';
    this.pages = opts.pages;
  }

  /** One hypercall with up to six arguments; throws PvIommuError on a negative return. */
  private hvc(call: PvCallName, a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0): number {
    const a = this.args;
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
    a[4] = a4;
    a[5] = a5;
    this.hypercalls++;
    const r = this.bus.hvc(this.actor, PV_CALLS[call].id, a);
    if (r < 0) throw new PvIommuError(call, r, a);
    return r;
  }

  /** Power the SMMU on: also checks that the hypervisor offers the paravirtual IOMMU. */
  probe(): void {
    this.hvc('power', IOMMU_ID, 1);
  }

  attach(sid: number, kind: HostDomainKind): void {
    if (this.kind === 'pv-idmap') {
      if (kind === 'blocked') return this.detach(sid);
      if (this.attached.has(sid)) return;
      this.hvc('enable_dev', sid);
      this.attached.set(sid, IDMAP_DOMAIN);
      return;
    }
    if (this.attached.has(sid)) this.detach(sid);
    if (kind === 'blocked') return;
    let id = IDMAP_DOMAIN;
    if (kind === 'dma') {
      let d = this.dmaDomains.get(sid);
      if (!d) {
        const next = this.nextDomain;
        if (next >= HOST_DOMAIN_LIMIT)
          throw new Error('pv-iommu: no domain ID left in the lower half');
        this.hvc('alloc_domain', next, DOMAIN_TYPE.DMA);
        this.nextDomain++;
        d = { id: next, iovas: new IovaAllocator(PAGE, IOVA_LIMIT, PAGE) };
        this.dmaDomains.set(sid, d);
      }
      id = d.id;
    }
    this.hvc('attach_dev', IOMMU_ID, id, sid, 0, 0);
    this.attached.set(sid, id);
  }

  detach(sid: number): void {
    const id = this.attached.get(sid);
    if (id === undefined) return;
    if (this.kind === 'pv-idmap') this.hvc('disable_dev', sid);
    else this.hvc('detach_dev', IOMMU_ID, id, sid, 0);
    this.attached.delete(sid);
  }

  private dmaDomainOf(sid: number): PvDevDomain {
    const d = this.dmaDomains.get(sid);
    if (!d || this.attached.get(sid) !== d.id)
      throw new Error(`pv-iommu: StreamID ${sid} is not attached to a DMA domain`);
    return d;
  }

  map(sid: number, pa: number, size: number, dir: DmaDirection = 'bidirectional'): number {
    this.maps++;
    if (this.kind === 'pv-idmap') return pa;
    const d = this.dmaDomainOf(sid);
    const off = pa % PAGE;
    const pages = Math.ceil((size + off) / PAGE);
    const iova = d.iovas.alloc(pages * PAGE);
    const prot =
      dir === 'to-device'
        ? PROT_TO_DEVICE
        : dir === 'from-device'
          ? PROT_FROM_DEVICE
          : PROT_BIDIRECTIONAL;
    let done = 0;
    try {
      // map_pages maps up to the end of a page-table page: a large buffer takes more than one call
      while (done < pages * PAGE) {
        const n = this.hvc(
          'map_pages',
          d.id,
          iova + done,
          pa - off + done,
          PAGE,
          pages - done / PAGE,
          prot,
        );
        if (n === 0)
          throw new Error(`pv-iommu: map_pages mapped nothing at 0x${(iova + done).toString(16)}`);
        done += n;
      }
    } catch (e) {
      if (done > 0) this.unmapPages(d, iova, done);
      d.iovas.free(iova);
      throw e;
    }
    return iova + off;
  }

  unmap(sid: number, iova: number, size: number): void {
    this.unmaps++;
    if (this.kind === 'pv-idmap') return;
    const d = this.dmaDomainOf(sid);
    const base = iova - (iova % PAGE);
    const len = Math.ceil((size + (iova % PAGE)) / PAGE) * PAGE;
    this.unmapPages(d, base, len);
    d.iovas.free(base);
  }

  private unmapPages(d: PvDevDomain, iova: number, len: number): void {
    let done = 0;
    while (done < len) {
      const n = this.hvc('unmap_pages', d.id, iova + done, PAGE, (len - done) / PAGE);
      if (n === 0) throw new Error(`pv-iommu: nothing mapped at 0x${(iova + done).toString(16)}`);
      done += n;
    }
  }

  suspend(): void {
    this.hvc('power', IOMMU_ID, 0);
  }

  resume(): void {
    this.hvc('power', IOMMU_ID, 1);
  }

  /** The domain `sid`'s DMA goes through (a domain ID, IDMAP_DOMAIN for identity), or undefined. */
  domainOf(sid: number): number | undefined {
    return this.attached.get(sid);
  }
}
