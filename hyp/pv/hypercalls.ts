/**
 * The paravirtual IOMMU's hypercall handler (designs.md §2.1, §2.2): the one entry point the
 * host's paravirtual driver has into the hypervisor under policy cmdq 'pv' (pKVM v1/v2) or
 * 'pv-idmap' (v3), installed on the bus (hw/bus.ts installHypercalls). It checks every argument
 * before anything changes, in this order, and refuses with a negative errno (abi.ts ERRNO):
 *
 *  1. the function is one the design offers and the caller is the host, else
 *     SMCCC_RET_NOT_SUPPORTED;
 *  2. every argument is a non-negative safe integer (a register value the model can hold), else
 *     -EINVAL naming it;
 *  3. iommu_id is the one SMMU; a StreamID is inside the SMMU's SIDSIZE (-EINVAL) and not
 *     assigned to a guest (hyp/vm/guests.ts sidOwner: -EPERM);
 *  4. a domain ID is inside the 16-bit space (-EINVAL) and in the host's lower half (-EPERM);
 *     the reserved IDMAP domain may only be attached to and detached from (-EPERM otherwise);
 *  5. alloc_domain: the type is DMA (-EINVAL), the ID free (-EEXIST); free_domain: no device
 *     attached and nothing mapped (-EBUSY); unknown domains are -ENOENT;
 *  6. map_pages: prot only R/W/CACHE/NOEXEC/MMIO/PRIV (-EINVAL); pgsize × pgcount, iova + size
 *     and paddr + size do not overflow (-EOVERFLOW); then the domain's checks (domains.ts):
 *     sizes and alignment (-EINVAL), every page host-owned (-EPERM), a leaf already there
 *     (-EEXIST), the pool (-ENOMEM);
 *  7. unmap_pages: as map_pages for the sizes; the invalidation completes before it returns
 *     (-EBUSY when it cannot, the pages then stay in use);
 *  8. donate_hyp: a page-aligned range of memory (-EINVAL) the ownership rules let go, which
 *     includes the DMA refcount guard (-EPERM).
 *
 * A refused call changes nothing. Every call and refusal is counted (hyp/probes.ts PV_STATS).
 * Allocation-free on the success path: arguments are read from the caller's array.
 */
import type { Actor, MmioBus } from '../../hw/bus.ts';
import { HVC_NOT_SUPPORTED } from '../../hw/bus.ts';
import { layerLogger } from '../../hw/log.ts';
import type { S2PgtableCfg } from '../../hw/vmsa/io-pgtable.ts';
import { PAGE, refusalMessage, type PageOwnership } from '../mem/ownership.ts';
import type { HypPool } from '../mem/pool.ts';
import { ShadowQueueError, type ShadowQueue } from '../smmuv3/shadowq.ts';
import type { ShadowStreamTable } from '../smmuv3/strtab.ts';
import { HypBootError } from '../boot-error.ts';
import { PV_STATS } from '../probes.ts';
import {
  DOMAIN_ID_BITS,
  DOMAIN_TYPE,
  ERRNO,
  HOST_DOMAIN_LIMIT,
  IDMAP_DOMAIN,
  IOMMU_ID,
  MAX_PASID_BITS,
  PROT_ALLOWED,
  PV_CALLS,
  PV_CALL_NAMES,
  errnoName,
  type PvCallName,
  type PvKind,
} from './abi.ts';
import { DmaRefcount } from './dma-refcount.ts';
import { PvDomains, type PvDomain } from './domains.ts';
import { SmmuPower } from './power.ts';

const log = layerLogger('hyp');
const E = ERRNO;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** argument `i` (a missing register reads as 0) */
function at(a: ArrayLike<number>, i: number): number {
  return a[i] ?? 0;
}

export interface PvHypEnv {
  readonly bus: MmioBus;
  readonly mmio: number;
  readonly own: PageOwnership;
  /** the RAM whose pages carry DMA refcounts */
  readonly ram: { base: number; size: number };
  readonly pool: HypPool;
  readonly shadowQ: ShadowQueue;
  readonly strtab: ShadowStreamTable;
  readonly idmapS2: S2PgtableCfg;
  readonly sidBits: number;
  /** IDR1.SSIDSIZE, IDR1.EVENTQS, IDR0.ASID16, IDR0.ATS, IDR3.RIL, the OAS in bits */
  readonly ssidBits: number;
  readonly evtqMax: number;
  readonly asid16: boolean;
  readonly hwAts: boolean;
  readonly ril: boolean;
  readonly oas: number;
  isRam(base: number, size: number): boolean;
  /** the guest a StreamID is assigned to, if any */
  sidGuest(sid: number): string | undefined;
  /** throws HypPanic once the hypervisor has panicked */
  alive(): void;
}

export class PvHypercalls {
  readonly stats = PV_STATS.pv.create();
  /** hypercalls taken, by call */
  readonly calls = PV_STATS.calls.create();
  /** refusals, by errno */
  readonly refusedBy = PV_STATS.refused.create();
  readonly refcount: DmaRefcount;
  readonly domains: PvDomains;
  readonly power: SmmuPower;
  /** the last refusal: the call, its return value and why */
  lastRefusal: { call: string; ret: number; why: string } | null = null;
  private readonly byId = new Map<number, PvCallName>();
  /** why the current call's argument checks refused it */
  private why = '';

  constructor(
    readonly kind: PvKind,
    private readonly env: PvHypEnv,
  ) {
    for (const n of PV_CALL_NAMES)
      if ((PV_CALLS[n].kinds as readonly PvKind[]).includes(kind)) this.byId.set(PV_CALLS[n].id, n);
    this.refcount = new DmaRefcount(env.own, env.ram, this.stats);
    this.power = new SmmuPower({
      bus: env.bus,
      mmio: env.mmio,
      pool: env.pool,
      shadowQ: env.shadowQ,
      strtab: env.strtab,
      hwAts: env.hwAts,
      evtqMax: env.evtqMax,
    });
    const power = this.power;
    this.domains = new PvDomains({
      bus: env.bus,
      pool: env.pool,
      shadowQ: env.shadowQ,
      strtab: env.strtab,
      idmapS2: env.idmapS2,
      refcount: this.refcount,
      stats: this.stats,
      oas: env.oas,
      asidBits: env.asid16 ? 16 : 8,
      pasidBitsMax: Math.min(env.ssidBits, MAX_PASID_BITS),
      ril: env.ril,
      powered: () => power.on,
    });
  }

  /** The bus's hypercall handler. */
  call(actor: Actor, fn: number, args: ArrayLike<number>): number {
    const name = this.byId.get(fn);
    if (name === undefined || actor !== 'host') {
      this.refusedBy.NOT_SUPPORTED++;
      this.stats.refused++;
      this.lastRefusal = {
        call: `0x${fn.toString(16)}`,
        ret: HVC_NOT_SUPPORTED,
        why:
          actor !== 'host'
            ? `${actor} may not make the host's IOMMU hypercalls`
            : `function 0x${fn.toString(16)} is not a ${this.kind} IOMMU hypercall`,
      };
      return HVC_NOT_SUPPORTED;
    }
    this.env.alive();
    this.stats.hypercalls++;
    this.calls[name]++;
    this.why = '';
    const ret = this.dispatch(name, args);
    if (ret < 0) {
      this.stats.refused++;
      const e = errnoName(ret);
      if (e !== undefined) this.refusedBy[e]++;
      const why = this.why || this.domains.why;
      this.lastRefusal = { call: name, ret, why };
      log.debug({ call: name, ret, errno: e, why }, 'pv hypercall refused');
    }
    return ret;
  }

  private dispatch(name: PvCallName, a: ArrayLike<number>): number {
    const n = PV_CALLS[name].args.length;
    for (let i = 0; i < n; i++) {
      const v = a[i] ?? 0;
      if (!Number.isSafeInteger(v) || v < 0)
        return this.refuse(
          E.EINVAL,
          `${name}: ${PV_CALLS[name].args[i]} = ${v} is not a non-negative integer`,
        );
    }
    const doms = this.domains;
    switch (name) {
      case 'alloc_domain': {
        const id = at(a, 0);
        const r = this.checkDomainId(id, false);
        if (r !== 0) return r;
        if (at(a, 1) !== DOMAIN_TYPE.DMA)
          return this.refuse(
            E.EINVAL,
            `alloc_domain: type ${at(a, 1)} is not DMA (${DOMAIN_TYPE.DMA}); identity is the IDMAP domain`,
          );
        return doms.alloc(id);
      }
      case 'free_domain': {
        const r = this.checkDomainId(at(a, 0), false);
        return r !== 0 ? r : doms.free(at(a, 0));
      }
      case 'attach_dev':
      case 'detach_dev': {
        const iommu = at(a, 0),
          id = at(a, 1),
          sid = at(a, 2),
          pasid = at(a, 3);
        if (iommu !== IOMMU_ID) return this.refuse(E.EINVAL, `${name}: no IOMMU ${iommu}`);
        let r = this.checkDomainId(id, true);
        if (r !== 0) return r;
        r = this.checkSid(name, sid);
        if (r !== 0) return r;
        return name === 'attach_dev'
          ? doms.attach(sid, id, pasid, at(a, 4))
          : doms.detach(sid, id, pasid);
      }
      case 'map_pages': {
        const d = this.hostDomain(at(a, 0));
        if (typeof d === 'number') return d;
        const iova = at(a, 1),
          paddr = at(a, 2),
          pgsize = at(a, 3),
          pgcount = at(a, 4),
          prot = at(a, 5);
        if ((prot & ~PROT_ALLOWED) !== 0 || prot > PROT_ALLOWED)
          return this.refuse(
            E.EINVAL,
            `map_pages: prot 0x${prot.toString(16)} has bits outside R/W/CACHE/NOEXEC/MMIO/PRIV`,
          );
        const size = pgsize * pgcount;
        if (size > MAX_SAFE || iova + size > MAX_SAFE || paddr + size > MAX_SAFE)
          return this.refuse(
            E.EOVERFLOW,
            `map_pages: iova 0x${iova.toString(16)}, paddr 0x${paddr.toString(16)} + ${pgcount} × 0x${pgsize.toString(16)} overflows`,
          );
        return doms.map(d, iova, paddr, pgsize, pgcount, prot);
      }
      case 'unmap_pages': {
        const d = this.hostDomain(at(a, 0));
        if (typeof d === 'number') return d;
        const iova = at(a, 1),
          pgsize = at(a, 2),
          pgcount = at(a, 3);
        const size = pgsize * pgcount;
        if (size > MAX_SAFE || iova + size > MAX_SAFE)
          return this.refuse(
            E.EOVERFLOW,
            `unmap_pages: iova 0x${iova.toString(16)} + ${pgcount} × 0x${pgsize.toString(16)} overflows`,
          );
        return doms.unmap(d, iova, pgsize, pgcount);
      }
      case 'iova_to_phys': {
        const d = this.hostDomain(at(a, 0));
        return typeof d === 'number' ? d : doms.iovaToPhys(d, at(a, 1));
      }
      case 'power': {
        if (at(a, 0) !== IOMMU_ID) return this.refuse(E.EINVAL, `power: no IOMMU ${at(a, 0)}`);
        const on = at(a, 1);
        if (on > 1) return this.refuse(E.EINVAL, `power: on = ${on} is neither 0 nor 1`);
        const p = this.power;
        if (on === 1 && !p.on) {
          try {
            p.powerOn();
          } catch (e) {
            if (e instanceof HypBootError) return this.refuse(E.EBUSY, e.message);
            throw e;
          }
        } else if (on === 0 && p.on) p.powerOff();
        return 0;
      }
      case 'donate_hyp': {
        const paddr = at(a, 0),
          pages = at(a, 1);
        if (paddr % PAGE || pages === 0 || paddr + pages * PAGE > MAX_SAFE)
          return this.refuse(
            E.EINVAL,
            `donate_hyp: 0x${paddr.toString(16)} × ${pages} pages is not a page-aligned range`,
          );
        if (!this.env.isRam(paddr, pages * PAGE))
          return this.refuse(
            E.EINVAL,
            `donate_hyp: 0x${paddr.toString(16)} × ${pages} pages is not memory`,
          );
        let r;
        try {
          r = this.env.own.tryDonate(paddr, pages * PAGE, 'hyp');
        } catch (e) {
          // a listener's veto (the idmap's invalidation could not complete): nothing changed
          if (e instanceof ShadowQueueError) return this.refuse(E.EBUSY, e.message);
          throw e;
        }
        return r === null ? 0 : this.refuse(E.EPERM, refusalMessage(r.transition, r.pa, r.why));
      }
      case 'enable_dev':
      case 'disable_dev': {
        const sid = at(a, 0);
        const r = this.checkSid(name, sid);
        if (r !== 0) return r;
        return name === 'enable_dev' ? doms.enableIdentity(sid) : doms.disableIdentity(sid);
      }
    }
  }

  private refuse(errno: number, why: string): number {
    this.why = why;
    return -errno;
  }

  /** A domain ID the host may name: inside the space, in its lower half, and (unless `idmapOk`) not the IDMAP domain. */
  private checkDomainId(id: number, idmapOk: boolean): number {
    if (id >= 2 ** DOMAIN_ID_BITS)
      return this.refuse(
        E.EINVAL,
        `domain ${id} is outside the ${DOMAIN_ID_BITS}-bit domain-ID space`,
      );
    if (id >= HOST_DOMAIN_LIMIT)
      return this.refuse(
        E.EPERM,
        `domain ${id} is in the upper half (the hypervisor's and guests')`,
      );
    if (id === IDMAP_DOMAIN && !idmapOk)
      return this.refuse(E.EPERM, `domain ${IDMAP_DOMAIN} is the reserved IDMAP domain`);
    return 0;
  }

  /** The host's DMA domain `id`, or -errno. */
  private hostDomain(id: number): PvDomain | number {
    const r = this.checkDomainId(id, false);
    if (r !== 0) return r;
    const d = this.domains.domain(id);
    return d ?? this.refuse(E.ENOENT, `no domain ${id}`);
  }

  /** A StreamID of the host's: inside SIDSIZE and not a guest's. */
  private checkSid(call: string, sid: number): number {
    if (sid >= 2 ** this.env.sidBits)
      return this.refuse(
        E.EINVAL,
        `${call}: StreamID ${sid} is beyond the SMMU's ${this.env.sidBits} bits`,
      );
    const g = this.env.sidGuest(sid);
    if (g !== undefined)
      return this.refuse(E.EPERM, `${call}: StreamID ${sid} is assigned to guest ${g}`);
    return 0;
  }
}
