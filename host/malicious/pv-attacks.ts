/**
 * The malicious host against the paravirtual IOMMU ABI (hyp/pv/abi.ts, designs.md §2.1–2.2), as
 * data: each attack names the designs it applies to and runs its hypercalls through the bus as
 * the host. Each makes at least one call the hypervisor must refuse whatever the set-up (a
 * non-negative return there throws PvAttackAccepted); what the accepted calls leave behind is
 * for the isolation oracle to judge (scenarios/check/oracle.ts), e.g. an attach of every
 * StreamID, where only a guest's must fail.
 *
 * `sids` are the StreamIDs to try (the host's devices and, to attack them, the guests'); the
 * hypervisor's memory is [hypBase, hypBase + hypSize). Domain IDs from 0x7000 up are the
 * attacks' own (inside the host's lower half), so they do not collide with a driver's.
 */
import type { MmioBus } from '../../hw/bus.ts';
import { CpuAbortError, HVC_ARGS } from '../../hw/bus.ts';
import { SMMU_BASE } from '../../hw/machine.ts';
import {
  DOMAIN_TYPE,
  HOST_DOMAIN_LIMIT,
  IDMAP_DOMAIN,
  IOMMU_ID,
  PROT,
  PROT_ALLOWED,
  PV_CALLS,
  type PvCallName,
  type PvKind,
} from '../../hyp/pv/abi.ts';

export interface PvAttackEnv {
  readonly bus: MmioBus;
  readonly actor: 'host';
  readonly sids: readonly number[];
  readonly hypBase: number;
  readonly hypSize: number;
}

export interface PvAttack {
  readonly name: string;
  readonly description: string;
  readonly kinds: readonly PvKind[];
  run(env: PvAttackEnv): void;
}

/** A call the hypervisor must refuse returned a result. */
export class PvAttackAccepted extends Error {
  constructor(
    readonly attack: string,
    readonly call: PvCallName,
    readonly ret: number,
  ) {
    super(`pv attack ${attack}: ${call} was accepted (returned ${ret}), it must be refused`);
    this.name = 'PvAttackAccepted';
  }
}

const PAGE = 4096;
const RW = PROT.READ | PROT.WRITE;
/** the attacks' own domain IDs */
const D1 = 0x7001;
const D2 = 0x7002;
/** a host page the attacks use as their DMA buffer (low in RAM, below any driver's tables) */
const HOST_BUF = 0x4010_0000;

/** One attack's hypercalls: `call` returns x0, `refused` requires a negative one. */
class Caller {
  private readonly args: number[] = new Array<number>(HVC_ARGS).fill(0);
  constructor(
    private readonly env: PvAttackEnv,
    private readonly attack: string,
  ) {}

  call(name: PvCallName, ...a: number[]): number {
    const args = this.args;
    for (let i = 0; i < HVC_ARGS; i++) args[i] = a[i] ?? 0;
    return this.env.bus.hvc(this.env.actor, PV_CALLS[name].id, args);
  }

  refused(name: PvCallName, ...a: number[]): void {
    const r = this.call(name, ...a);
    if (r >= 0) throw new PvAttackAccepted(this.attack, name, r);
  }

  /** A domain of the attack's own with one StreamID attached (when one can be), and a call to tidy it up. */
  domain(id: number, sid?: number): () => void {
    this.call('alloc_domain', id, DOMAIN_TYPE.DMA);
    const attached = sid !== undefined && this.call('attach_dev', IOMMU_ID, id, sid, 0, 0) === 0;
    return () => {
      if (attached) this.call('detach_dev', IOMMU_ID, id, sid, 0);
      this.call('free_domain', id);
    };
  }
}

/** The first page of RAM outside the hypervisor's memory the host's CPU may not read (a guest's), or -1. */
function guestPage(env: PvAttackEnv): number {
  // one probe per MiB (guests get whole MiBs) over the default 1 GiB of RAM
  for (let pa = 0x4000_0000; pa < 0x8000_0000; pa += 0x10_0000) {
    if (pa >= env.hypBase && pa < env.hypBase + env.hypSize) continue;
    try {
      env.bus.read32(env.actor, pa);
    } catch (e) {
      if (e instanceof CpuAbortError) return pa;
      throw e;
    }
  }
  return -1;
}

function attack(
  name: string,
  kinds: readonly PvKind[],
  description: string,
  run: (c: Caller, env: PvAttackEnv) => void,
): PvAttack {
  return { name, description, kinds, run: (env) => run(new Caller(env, name), env) };
}

export const PV_ATTACKS: readonly PvAttack[] = [
  attack(
    'map-hyp-memory',
    ['pv'],
    "map_pages of the hypervisor's memory (its first page, its last, and a range straddling into it)",
    (c, env) => {
      const done = c.domain(D1, env.sids[0]);
      c.refused('map_pages', D1, 0x1000_0000, env.hypBase, PAGE, 1, RW);
      c.refused('map_pages', D1, 0x1000_0000, env.hypBase + env.hypSize - PAGE, PAGE, 1, RW);
      c.refused('map_pages', D1, 0x1000_0000, env.hypBase - PAGE, PAGE, 2, RW);
      done();
    },
  ),
  attack(
    'map-smmu-mmio',
    ['pv'],
    "map_pages of the SMMU's registers (donated to the hypervisor), as MMIO and as memory",
    (c, env) => {
      const done = c.domain(D1, env.sids[0]);
      c.refused('map_pages', D1, 0x1000_0000, SMMU_BASE, PAGE, 1, RW | PROT.MMIO);
      c.refused('map_pages', D1, 0x1000_0000, SMMU_BASE + 0x1_0000, PAGE, 1, RW);
      done();
    },
  ),
  attack(
    'map-guest-page',
    ['pv'],
    "map_pages of a guest's page (found as a RAM page the host's CPU may not read); the hypervisor's first page without a guest",
    (c, env) => {
      const done = c.domain(D1, env.sids[0]);
      const g = guestPage(env);
      c.refused('map_pages', D1, 0x1000_0000, g >= 0 ? g : env.hypBase, PAGE, 1, RW);
      done();
    },
  ),
  attack(
    'overflow',
    ['pv'],
    'map_pages and unmap_pages whose iova, paddr or size overflow, or lie beyond the 48-bit input size',
    (c, env) => {
      const done = c.domain(D1, env.sids[0]);
      const top = Number.MAX_SAFE_INTEGER - PAGE + 1;
      c.refused('map_pages', D1, top, HOST_BUF, PAGE, 2, RW);
      c.refused('map_pages', D1, 0x1000_0000, top, PAGE, 2, RW);
      c.refused('map_pages', D1, 0x1000_0000, HOST_BUF, PAGE, 2 ** 42, RW);
      c.refused('map_pages', D1, 2 ** 48 - PAGE, HOST_BUF, PAGE, 2, RW);
      c.refused('map_pages', D1, 0x1000_0000, HOST_BUF, PAGE, -1, RW);
      c.refused('unmap_pages', D1, top, PAGE, 2);
      c.refused('unmap_pages', D1, 0, PAGE, 2 ** 42);
      done();
    },
  ),
  attack(
    'bad-prot',
    ['pv'],
    'map_pages with prot bits outside R/W/CACHE/NOEXEC/MMIO/PRIV, negative, or fractional',
    (c, env) => {
      const done = c.domain(D1, env.sids[0]);
      for (const prot of [PROT_ALLOWED + 1, 1 << 6, 2 ** 31, 2 ** 40 + RW, -1, 1.5])
        c.refused('map_pages', D1, 0x1000_0000, HOST_BUF, PAGE, 1, prot);
      done();
    },
  ),
  attack(
    'idmap-domain',
    ['pv'],
    'allocate, free, map into, unmap from and probe the reserved IDMAP domain',
    (c) => {
      c.refused('alloc_domain', IDMAP_DOMAIN, DOMAIN_TYPE.DMA);
      c.refused('map_pages', IDMAP_DOMAIN, HOST_BUF, HOST_BUF, PAGE, 1, RW);
      c.refused('unmap_pages', IDMAP_DOMAIN, HOST_BUF, PAGE, 1);
      c.refused('iova_to_phys', IDMAP_DOMAIN, HOST_BUF);
      c.refused('free_domain', IDMAP_DOMAIN);
    },
  ),
  attack(
    'upper-half-domain',
    ['pv'],
    "allocate and use domains of the upper half of the domain-ID space (the hypervisor's and guests'), and beyond it",
    (c, env) => {
      for (const id of [HOST_DOMAIN_LIMIT, HOST_DOMAIN_LIMIT + 1, 0xffff, 0x1_0000, 2 ** 40]) {
        c.refused('alloc_domain', id, DOMAIN_TYPE.DMA);
        c.refused('attach_dev', IOMMU_ID, id, env.sids[0] ?? 0, 0, 0);
        c.refused('map_pages', id, 0x1000_0000, HOST_BUF, PAGE, 1, RW);
        c.refused('free_domain', id);
      }
    },
  ),
  attack(
    'free-attached-domain',
    ['pv'],
    'free a domain while a device is attached to it, and while it still maps a page',
    (c, env) => {
      const sid = env.sids[0] ?? 0;
      c.call('alloc_domain', D1, DOMAIN_TYPE.DMA);
      const attached = c.call('attach_dev', IOMMU_ID, D1, sid, 0, 0) === 0;
      if (attached) {
        c.refused('free_domain', D1);
        c.call('detach_dev', IOMMU_ID, D1, sid, 0);
      }
      const mapped = c.call('map_pages', D1, 0x1000_0000, HOST_BUF, PAGE, 1, RW) === PAGE;
      if (mapped) {
        c.refused('free_domain', D1);
        c.call('unmap_pages', D1, 0x1000_0000, PAGE, 1);
      }
      if (!attached && !mapped) c.refused('free_domain', HOST_DOMAIN_LIMIT - 1);
      c.call('free_domain', D1);
    },
  ),
  attack(
    'attach-guest-sid',
    ['pv'],
    "attach every StreamID (a guest's must be refused) to a domain mapping host memory, and StreamIDs beyond SIDSIZE",
    (c, env) => {
      c.call('alloc_domain', D1, DOMAIN_TYPE.DMA);
      c.call('map_pages', D1, 0, HOST_BUF, PAGE, 1, RW);
      // what was accepted stays attached: the oracle judges what each device can reach
      for (const sid of env.sids) c.call('attach_dev', IOMMU_ID, D1, sid, 0, 0);
      c.refused('attach_dev', IOMMU_ID, D1, 2 ** 32, 0, 0);
      c.refused('attach_dev', IOMMU_ID + 1, D1, env.sids[0] ?? 0, 0, 0);
      c.refused('attach_dev', IOMMU_ID, D1, env.sids[0] ?? 0, 1 << 20, 20);
    },
  ),
  attack(
    'identity-guest-sid',
    ['pv'],
    "attach every StreamID to the identity (IDMAP) domain (a guest's must be refused), with PASIDs, and detach a guest's",
    (c, env) => {
      for (const sid of env.sids) c.call('attach_dev', IOMMU_ID, IDMAP_DOMAIN, sid, 0, 0);
      for (const sid of env.sids) c.call('detach_dev', IOMMU_ID, D2, sid, 0);
      c.refused('attach_dev', IOMMU_ID, IDMAP_DOMAIN, 2 ** 32, 0, 0);
      c.refused('attach_dev', IOMMU_ID, IDMAP_DOMAIN, env.sids[0] ?? 0, 1, 1);
    },
  ),
  attack(
    'donate-dma-page',
    ['pv'],
    'donate to the hypervisor a page mapped for DMA (refused while mapped), then the same page after the unmap',
    (c, env) => {
      const done = c.domain(D2, env.sids[0]);
      const buf = HOST_BUF + 16 * PAGE;
      if (c.call('map_pages', D2, 0x2000_0000, buf, PAGE, 1, RW) === PAGE) {
        c.refused('donate_hyp', buf, 1);
        c.refused('donate_hyp', buf - PAGE, 2);
        c.call('unmap_pages', D2, 0x2000_0000, PAGE, 1);
      } else c.refused('donate_hyp', env.hypBase, 1);
      done();
    },
  ),
  attack(
    'unmap-twice',
    ['pv'],
    "unmap a range twice, unmap a range never mapped, and unmap in the hypervisor's domains",
    (c, env) => {
      const done = c.domain(D1, env.sids[0]);
      c.call('map_pages', D1, 0x1000_0000, HOST_BUF, PAGE, 1, RW);
      c.call('unmap_pages', D1, 0x1000_0000, PAGE, 1);
      if (c.call('unmap_pages', D1, 0x1000_0000, PAGE, 1) > 0)
        throw new PvAttackAccepted('unmap-twice', 'unmap_pages', PAGE);
      if (c.call('unmap_pages', D1, 0x3000_0000, PAGE, 16) > 0)
        throw new PvAttackAccepted('unmap-twice', 'unmap_pages', PAGE);
      c.refused('unmap_pages', HOST_DOMAIN_LIMIT, 0x1000_0000, PAGE, 1);
      c.refused('unmap_pages', D2 + 0x100, 0x1000_0000, PAGE, 1);
      done();
    },
  ),
  attack(
    'iova-to-phys',
    ['pv'],
    "iova_to_phys over the attack's domain, domains that do not exist and the hypervisor's: never a PA of the hypervisor",
    (c, env) => {
      const done = c.domain(D1, env.sids[0]);
      for (const iova of [0, 0x1000_0000, env.hypBase, 2 ** 48 - PAGE]) {
        const pa = c.call('iova_to_phys', D1, iova);
        if (pa >= env.hypBase && pa < env.hypBase + env.hypSize)
          throw new PvAttackAccepted('iova-to-phys', 'iova_to_phys', pa);
      }
      c.refused('iova_to_phys', D2 + 0x100, 0);
      c.refused('iova_to_phys', HOST_DOMAIN_LIMIT, 0);
      c.refused('iova_to_phys', D1, 2 ** 48);
      done();
    },
  ),
  attack(
    'enable-guest-sid',
    ['pv-idmap'],
    "enable_dev on every StreamID (a guest's must be refused), beyond SIDSIZE, and disable_dev of a device not enabled",
    (c, env) => {
      for (const sid of env.sids) c.call('enable_dev', sid);
      c.refused('enable_dev', 2 ** 32);
      c.refused('enable_dev', -1);
      c.refused('disable_dev', 2 ** 32);
    },
  ),
  attack(
    'v2-calls-under-v3',
    ['pv-idmap'],
    'the full paravirtual calls (alloc_domain, map_pages of hypervisor memory) under the identity-only design',
    (c, env) => {
      c.refused('alloc_domain', D1, DOMAIN_TYPE.DMA);
      c.refused('map_pages', D1, 0, env.hypBase, PAGE, 1, RW);
      c.refused('attach_dev', IOMMU_ID, D1, env.sids[0] ?? 0, 0, 0);
    },
  ),
  attack(
    'donate-hyp-memory',
    ['pv', 'pv-idmap'],
    "donate_hyp of the hypervisor's own memory, of the SMMU's registers and of unaligned or empty ranges",
    (c, env) => {
      c.refused('donate_hyp', env.hypBase, 1);
      c.refused('donate_hyp', SMMU_BASE, 1);
      c.refused('donate_hyp', HOST_BUF + 1, 1);
      c.refused('donate_hyp', HOST_BUF, 0);
    },
  ),
  attack(
    'smmu-mmio',
    ['pv', 'pv-idmap'],
    "the host's CPU reads and writes the SMMU's registers (the hypervisor's): each is a data abort",
    (c, env) => {
      for (const off of [0x0, 0x20, 0x98, 0x10000 + 0xa8]) {
        let aborted = 0;
        try {
          env.bus.read32(env.actor, SMMU_BASE + off);
        } catch (e) {
          if (!(e instanceof CpuAbortError)) throw e;
          aborted++;
        }
        try {
          env.bus.write32(env.actor, SMMU_BASE + off, 0);
        } catch (e) {
          if (!(e instanceof CpuAbortError)) throw e;
          aborted++;
        }
        if (aborted !== 2)
          throw new Error(
            `pv attack smmu-mmio: an access at +0x${off.toString(16)} reached the SMMU`,
          );
      }
      c.refused('donate_hyp', SMMU_BASE, 1);
    },
  ),
];
