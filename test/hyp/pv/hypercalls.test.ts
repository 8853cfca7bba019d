/**
 * The paravirtual IOMMU of pkvm-pv (designs.md §2.1): DMA through hypercalls on real counts,
 * every argument check of the hypercall table refusing with its errno and changing nothing, the
 * DMA refcount that keeps a mapped page from being donated, and the STEs and CDs the hypervisor
 * writes. Expected values come from the design's own rules: one map_pages per dma_map, one
 * unmap_pages per dma_unmap, and per unmap one TLBI_NH_VA (a 4 KiB page: one page, range or not)
 * and one CMD_SYNC; the host never reaches the SMMU's registers.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CpuAbortError } from '../../../hw/bus.ts';
import { OwnershipError } from '../../../hyp/mem/ownership.ts';
import {
  DOMAIN_TYPE,
  ERRNO,
  HOST_DOMAIN_LIMIT,
  IDMAP_DOMAIN,
  IOMMU_ID,
  PROT,
  type PvCallName,
} from '../../../hyp/pv/abi.ts';
import { HYP_BASE, HYP_END, OPCODE, SMMU_BASE } from '../../reference.ts';
import { steF, bitsOf } from '../../guest/rig.ts';
import { bootPv, opsSince, type PvRig } from './rig.ts';
import { HYP_EVTQ_ENABLED } from '../../../hyp/pv/power.ts';

const PAGE = 4096;
const RW = PROT.READ | PROT.WRITE;
const BUF = 0x5000_0000;

describe('pkvm-pv: DMA through hypercalls', () => {
  it('a DMA-domain attach, then N dma_map and N dma_unmap of 4 KiB: N map_pages, N unmap_pages, no host MMIO trap or command; each unmap a TLBI_NH_VA + CMD_SYNC', () => {
    const r = bootPv('pv');
    const dev = r.m.devices.get('nic')!;
    r.io.attach(8, 'dma');
    const N = 8;
    const calls0 = { ...r.hyp.pv!.calls };
    const busCalls0 = r.m.bus.hypercalls;
    const iovas: number[] = [];
    for (let i = 0; i < N; i++) {
      r.m.bus.write32('host', BUF + i * PAGE, 0x1000 + i);
      iovas.push(r.io.map(8, BUF + i * PAGE, PAGE));
    }
    for (let i = 0; i < N; i++) {
      const o = dev.read(iovas[i]!, 4);
      expect(o.ok && o.pa).toBe(BUF + i * PAGE);
      expect(o.ok && new DataView(o.data!.buffer).getUint32(0, true)).toBe(0x1000 + i);
    }
    const from = r.phys.length;
    for (let i = 0; i < N; i++) {
      const before = r.phys.length;
      r.io.unmap(8, iovas[i]!, PAGE);
      expect(opsSince(r, before)).toEqual([OPCODE.TLBI_NH_VA, OPCODE.CMD_SYNC]);
      expect(dev.read(iovas[i]!, 4).ok).toBe(false);
    }
    const pv = r.hyp.pv!;
    expect(pv.calls.map_pages - calls0.map_pages).toBe(N);
    expect(pv.calls.unmap_pages - calls0.unmap_pages).toBe(N);
    expect(r.m.bus.hypercalls - busCalls0).toBe(2 * N);
    expect(opsSince(r, from).filter((o) => o === OPCODE.TLBI_NH_VA)).toHaveLength(N);
    expect(opsSince(r, from).filter((o) => o === OPCODE.CMD_SYNC)).toHaveLength(N);
    // the TLBIs name the domain's ASID, VMID 0 and each page (leaf)
    const tlbis = r.phys.slice(from).filter((w) => (w[0]! & 0xff) === OPCODE.TLBI_NH_VA);
    const asid = pv.domains.domain(r.io.domainOf(8)!)!.asid;
    expect(tlbis.map((w) => [bitsOf(w, 63, 48), bitsOf(w, 47, 32), w[2]! & 1])).toEqual(
      Array.from({ length: N }, () => [asid, 0, 1]),
    );
    expect(tlbis.map((w) => bitsOf(w, 127, 76) * PAGE)).toEqual(iovas);
    // the host never touched the SMMU: no trap, no host command
    expect(r.hyp.stats.traps).toBe(0);
    expect(r.hyp.stats.mmioTraps).toBe(0);
    expect(r.hyp.cmdq.stats.forwarded + r.hyp.shadowQ.stats.host).toBe(0);
    expect(pv.stats.pagesMapped).toBe(N);
    expect(pv.stats.pagesUnmapped).toBe(N);
    expect(r.oracle().check().ok).toBe(true);
  });

  it("the device's STE is stage 1 only (S2 bypass, VMID 0) with the hypervisor's CD table; its CD the domain's table and ASID", () => {
    const r = bootPv('pv');
    r.io.attach(8, 'dma');
    const ste = r.hyp.shadowSte(8);
    expect([steF.v(ste), steF.config(ste), steF.vmid(ste)]).toEqual([1, 0b101, 0]);
    const cdAddr = steF.s1ctx(ste);
    expect(cdAddr).toBeGreaterThanOrEqual(HYP_BASE);
    expect(cdAddr).toBeLessThan(HYP_END);
    const cd = new Uint32Array(16);
    r.m.bus.readWords('hyp', cdAddr, cd, 16);
    const d = r.hyp.pv!.domains.domain(r.io.domainOf(8)!)!;
    // CD (reference §3): V [31], ASID [63:48], TTB0 [115:68]
    expect([bitsOf(cd, 31, 31), bitsOf(cd, 63, 48), bitsOf(cd, 115, 68) * 16]).toEqual([
      1,
      d.asid,
      d.pgtable.root,
    ]);
    expect(d.pgtable.root).toBeGreaterThanOrEqual(HYP_BASE);
    // identity: stage 2 only with the idmap, VMID 0
    r.io.attach(9, 'identity');
    const s9 = r.hyp.shadowSte(9);
    expect([steF.config(s9), steF.vmid(s9), steF.s2ttb(s9)]).toEqual([
      0b110,
      0,
      r.hyp.idmap.s2.vttbr,
    ]);
    // blocked: the STE becomes invalid, and the device's DMA fails
    r.io.attach(8, 'blocked');
    expect(steF.v(r.hyp.shadowSte(8))).toBe(0);
    expect(r.m.devices.get('nic')!.read(0x1000, 4).ok).toBe(false);
  });

  it('every host access to the SMMU registers is a data abort, counted; the hypervisor enabled the SMMU itself', () => {
    const r = bootPv('pv');
    for (const off of [0x0, 0x20, 0x44, 0x98, 0x100a8]) {
      expect(() => r.m.bus.read32('host', SMMU_BASE + off)).toThrow(CpuAbortError);
      expect(() => r.m.bus.write32('host', SMMU_BASE + off, 0)).toThrow(CpuAbortError);
    }
    expect(r.hyp.stats.mmioTraps).toBe(10);
    expect(r.hyp.stats.refusedAccesses).toBe(10);
    // CR0: SMMUEN | CMDQEN, plus ATSCHK as the SMMU implements ATS (EVENTQEN: power.ts); GBPA.ABORT kept
    const cr0 = r.m.bus.read32('hyp', SMMU_BASE + 0x20);
    expect(cr0 & 0b11101).toBe(0b11001 | (HYP_EVTQ_ENABLED ? 0b100 : 0));
    // the event queue is the hypervisor's, in its pool
    const eq = Number(r.m.bus.read64('hyp', SMMU_BASE + 0xa0) & 0xffff_ffff_ffe0n);
    expect(eq).toBeGreaterThanOrEqual(HYP_BASE);
    expect(eq).toBeLessThan(HYP_END);
    expect((r.m.bus.read32('hyp', SMMU_BASE + 0x44) >>> 20) & 1).toBe(1);
  });

  it('suspend and resume: DMA aborts while the SMMU is off, and the mapping works again after power-on (everything invalidated first)', () => {
    const r = bootPv('pv');
    const dev = r.m.devices.get('nic')!;
    r.io.attach(8, 'dma');
    const iova = r.io.map(8, BUF, PAGE);
    expect(dev.read(iova, 4).ok).toBe(true);
    r.io.suspend();
    expect(r.m.bus.read32('hyp', SMMU_BASE + 0x20) & 1).toBe(0);
    expect(dev.read(iova, 4).ok).toBe(false);
    const from = r.phys.length;
    r.io.resume();
    expect(opsSince(r, from)).toEqual([
      OPCODE.CFGI_STE_RANGE,
      OPCODE.TLBI_NSNH_ALL,
      OPCODE.CMD_SYNC,
    ]);
    const o = dev.read(iova, 4);
    expect(o.ok && o.pa).toBe(BUF);
    expect(r.hyp.pv!.calls.power).toBe(3); // probe, suspend, resume
  });
});

// ---- the argument checks of designs.md §2.1 ---------------------------------------------------

/** What a refused hypercall must leave as it was. */
function state(r: PvRig): unknown {
  const pv = r.hyp.pv!;
  return {
    domains: [...pv.domains.domains.values()].map((d) => [d.id, d.asid, d.refs, d.mappedPages]),
    pool: r.hyp.pool.pagesInUse,
    stes: [8, 9, 16].map((s) => Array.from(r.hyp.shadowSte(s))),
    hwCommands: r.phys.length,
    ownership: r.hyp.own.summary(),
    refcounts: [BUF, BUF + PAGE, HYP_BASE].map((p) => pv.refcount.count(p)),
    mapped: pv.domains.domain(1) ? pv.domains.domain(1)!.pgtable.iovaToPhys(0x2000) : null,
  };
}

describe('pkvm-pv: every argument check refuses with its errno and changes nothing', () => {
  /** domain 1 exists, maps iova 0x1000 → BUF, and StreamID 8 is attached to it; guest vm1 owns StreamID 16 */
  function setUp(): PvRig {
    const r = bootPv('pv');
    expect(r.hvc('alloc_domain', 1, DOMAIN_TYPE.DMA)).toBe(0);
    expect(r.hvc('attach_dev', IOMMU_ID, 1, 8, 0, 0)).toBe(0);
    expect(r.hvc('map_pages', 1, 0x1000, BUF, PAGE, 1, RW)).toBe(PAGE);
    r.hyp.createGuest({
      name: 'vm1',
      memory: { base: 0x6000_0000, size: 0x100_0000 },
      devices: [{ vsid: 0, psid: 16 }],
    });
    return r;
  }
  const { EPERM, ENOENT, EBUSY, EEXIST, EINVAL, EOVERFLOW } = ERRNO;
  const cases: Array<[string, PvCallName, number[], number]> = [
    ['alloc: ID beyond 16 bits', 'alloc_domain', [0x1_0000, DOMAIN_TYPE.DMA], EINVAL],
    ['alloc: upper half', 'alloc_domain', [HOST_DOMAIN_LIMIT, DOMAIN_TYPE.DMA], EPERM],
    ['alloc: the IDMAP domain', 'alloc_domain', [IDMAP_DOMAIN, DOMAIN_TYPE.DMA], EPERM],
    ['alloc: not a DMA type', 'alloc_domain', [2, 7], EINVAL],
    ['alloc: in use', 'alloc_domain', [1, DOMAIN_TYPE.DMA], EEXIST],
    ['alloc: negative ID', 'alloc_domain', [-2, DOMAIN_TYPE.DMA], EINVAL],
    ['alloc: fractional ID', 'alloc_domain', [2.5, DOMAIN_TYPE.DMA], EINVAL],
    ['free: with a device attached', 'free_domain', [1], EBUSY],
    ['free: unknown', 'free_domain', [5], ENOENT],
    ['free: the IDMAP domain', 'free_domain', [IDMAP_DOMAIN], EPERM],
    ['attach: a guest StreamID', 'attach_dev', [IOMMU_ID, 1, 16, 0, 0], EPERM],
    ['attach: beyond SIDSIZE', 'attach_dev', [IOMMU_ID, 1, 2 ** 16, 0, 0], EINVAL],
    ['attach: another IOMMU', 'attach_dev', [1, 1, 9, 0, 0], EINVAL],
    ['attach: unknown domain', 'attach_dev', [IOMMU_ID, 5, 9, 0, 0], ENOENT],
    ['attach: upper-half domain', 'attach_dev', [IOMMU_ID, 0x9000, 9, 0, 0], EPERM],
    ['attach: already attached', 'attach_dev', [IOMMU_ID, 1, 8, 0, 0], EBUSY],
    ['attach: PASID outside its bits', 'attach_dev', [IOMMU_ID, 1, 9, 4, 2], EINVAL],
    ['attach: too many PASID bits', 'attach_dev', [IOMMU_ID, 1, 9, 0, 20], EINVAL],
    ['attach: identity with PASIDs', 'attach_dev', [IOMMU_ID, IDMAP_DOMAIN, 9, 0, 1], EINVAL],
    ['detach: not attached', 'detach_dev', [IOMMU_ID, 1, 9, 0], ENOENT],
    ['detach: the wrong domain', 'detach_dev', [IOMMU_ID, IDMAP_DOMAIN, 8, 0], ENOENT],
    ['detach: a guest StreamID', 'detach_dev', [IOMMU_ID, 1, 16, 0], EPERM],
    ['map: hyp memory', 'map_pages', [1, 0x2000, HYP_BASE, PAGE, 1, RW], EPERM],
    [
      'map: straddling into hyp memory',
      'map_pages',
      [1, 0x2000, HYP_BASE - PAGE, PAGE, 2, RW],
      EPERM,
    ],
    [
      'map: the SMMU registers',
      'map_pages',
      [1, 0x2000, SMMU_BASE, PAGE, 1, RW | PROT.MMIO],
      EPERM,
    ],
    ["map: a guest's page", 'map_pages', [1, 0x2000, 0x6000_0000, PAGE, 1, RW], EPERM],
    ['map: prot bit 6', 'map_pages', [1, 0x2000, BUF, PAGE, 1, 1 << 6], EINVAL],
    ['map: IDMAP domain', 'map_pages', [IDMAP_DOMAIN, 0x2000, BUF, PAGE, 1, RW], EPERM],
    ['map: unknown domain', 'map_pages', [5, 0x2000, BUF, PAGE, 1, RW], ENOENT],
    ['map: upper-half domain', 'map_pages', [0x8001, 0x2000, BUF, PAGE, 1, RW], EPERM],
    ['map: size overflows', 'map_pages', [1, 0x2000, BUF, PAGE, 2 ** 41, RW], EOVERFLOW],
    ['map: iova + size overflows', 'map_pages', [1, 2 ** 53 - PAGE, BUF, PAGE, 2, RW], EOVERFLOW],
    [
      'map: paddr + size overflows',
      'map_pages',
      [1, 0x2000, 2 ** 53 - PAGE, PAGE, 2, RW],
      EOVERFLOW,
    ],
    ['map: beyond the 48-bit IAS', 'map_pages', [1, 2 ** 48 - PAGE, BUF, PAGE, 2, RW], EINVAL],
    ['map: not a page size', 'map_pages', [1, 0x2000, BUF, 0x3000, 1, RW], EINVAL],
    ['map: misaligned iova', 'map_pages', [1, 0x2800, BUF, PAGE, 1, RW], EINVAL],
    ['map: already mapped', 'map_pages', [1, 0x1000, BUF + PAGE, PAGE, 1, RW], EEXIST],
    ['unmap: IDMAP domain', 'unmap_pages', [IDMAP_DOMAIN, 0x1000, PAGE, 1], EPERM],
    ['unmap: unknown domain', 'unmap_pages', [5, 0x1000, PAGE, 1], ENOENT],
    ['unmap: size overflows', 'unmap_pages', [1, 0x1000, PAGE, 2 ** 41], EOVERFLOW],
    ['iova_to_phys: IDMAP domain', 'iova_to_phys', [IDMAP_DOMAIN, 0x1000], EPERM],
    ['iova_to_phys: unknown domain', 'iova_to_phys', [5, 0x1000], ENOENT],
    ['donate_hyp: a page mapped for DMA', 'donate_hyp', [BUF, 1], EPERM],
    ['donate_hyp: hyp memory', 'donate_hyp', [HYP_BASE, 1], EPERM],
    ['donate_hyp: not memory', 'donate_hyp', [SMMU_BASE, 1], EINVAL],
    ['power: another IOMMU', 'power', [1, 1], EINVAL],
    ['power: neither on nor off', 'power', [IOMMU_ID, 2], EINVAL],
  ];
  for (const [what, call, args, errno] of cases) {
    it(`${what}: ${call} → -${Object.entries(ERRNO).find(([, v]) => v === errno)![0]}`, () => {
      const r = setUp();
      const before = state(r);
      const refused = r.hyp.pv!.stats.refused;
      expect(r.hvc(call, ...args)).toBe(-errno);
      expect(state(r)).toEqual(before);
      expect(r.hyp.pv!.stats.refused).toBe(refused + 1);
      expect(r.oracle().check().ok).toBe(true);
    });
  }

  it('the calls of pv-idmap, a guest caller and an unknown function are not supported (-1), counted apart', () => {
    const r = setUp();
    const before = state(r);
    expect(r.hvc('enable_dev', 9)).toBe(-1);
    expect(r.m.bus.hvc('guest:vm1', 0xc600_0024, [1, 0x2000, BUF, PAGE, 1, RW])).toBe(-1);
    expect(r.m.bus.hvc('host', 0xc600_0fff, [])).toBe(-1);
    expect(r.hyp.pv!.refusedBy.NOT_SUPPORTED).toBe(3);
    expect(state(r)).toEqual(before);
  });

  it('unmap_pages with a 2 MiB pgsize over 4 KiB pages is -EINVAL (the table under it would go with its pages still counted)', () => {
    const r = setUp();
    expect(r.hvc('map_pages', 1, 2 ** 21, BUF + PAGE, PAGE, 1, RW)).toBe(PAGE);
    const before = state(r);
    expect(r.hvc('unmap_pages', 1, 2 ** 21, 2 ** 21, 1)).toBe(-ERRNO.EINVAL);
    expect(state(r)).toEqual(before);
    expect(r.hyp.pv!.domains.domain(1)!.pgtable.iovaToPhys(2 ** 21)).toBe(BUF + PAGE);
  });

  it('the refusals are counted by errno', () => {
    const r = setUp();
    r.hvc('alloc_domain', 1, DOMAIN_TYPE.DMA);
    r.hvc('alloc_domain', 1, DOMAIN_TYPE.DMA);
    r.hvc('free_domain', 1);
    expect([r.hyp.pv!.refusedBy.EEXIST, r.hyp.pv!.refusedBy.EBUSY]).toEqual([2, 1]);
  });

  it('property: random map_pages arguments never map a page the host does not own, and isolation holds', () => {
    const r = setUp();
    const own = r.hyp.own;
    const interesting = [
      BUF,
      HYP_BASE - PAGE,
      HYP_BASE,
      HYP_END - PAGE,
      0x6000_0000,
      SMMU_BASE,
      0,
      2 ** 40,
    ];
    const addr = fc.oneof(
      fc.constantFrom(...interesting),
      fc.integer({ min: 0, max: 2 ** 33 }).map((n) => n * PAGE),
      fc.integer({ min: -PAGE, max: 2 ** 53 }),
    );
    fc.assert(
      fc.property(
        addr,
        addr,
        fc.constantFrom(PAGE, 2 ** 21, 2 ** 30, 0, 0x3000),
        fc.oneof(fc.integer({ min: 0, max: 600 }), fc.constantFrom(2 ** 40, -1)),
        fc.integer({ min: -1, max: 127 }),
        (iova, paddr, pgsize, pgcount, prot) => {
          const ret = r.hvc('map_pages', 1, iova, paddr, pgsize, pgcount, prot);
          if (ret > 0) {
            const d = r.hyp.pv!.domains.domain(1)!;
            // every leaf: its first and last page (a leaf of 1 GiB is 2^18 pages)
            for (let leaf = 0; leaf < ret; leaf += pgsize) {
              for (const off of [leaf, leaf + pgsize - PAGE]) {
                const pa = d.pgtable.iovaToPhys(iova + off);
                expect(pa).toBe(paddr + off);
                expect(own.state(pa!).owner).toBe('host');
                // memory holds a DMA refcount; host MMIO (never donated) has none
                if (r.m.mem.isRam(pa!, PAGE))
                  expect(r.hyp.pv!.refcount.count(pa!)).toBeGreaterThan(0);
              }
            }
            // and nothing it mapped is owned away from the host
            expect(own.nonHostPfns(paddr / PAGE, (paddr + ret) / PAGE)).toEqual([]);
            expect(r.hvc('unmap_pages', 1, iova, pgsize, ret / pgsize)).toBe(ret);
          }
        },
      ),
      { numRuns: 300, seed: 17 },
    );
    expect(r.oracle().check().ok).toBe(true);
    // every count taken was dropped again: only the set-up's page stays in use
    expect(r.hyp.pv!.refcount.count(BUF)).toBe(1);
  });
});

// ---- the DMA refcount (__pkvm_use_dma) ------------------------------------------------------------

describe('pkvm-pv: a page mapped for DMA cannot be donated', () => {
  it('donate to the hypervisor or to a guest is refused while mapped (nothing changes, counted) and allowed after the unmap', () => {
    const r = bootPv('pv');
    r.io.attach(8, 'dma');
    const GUEST = 0x6000_0000;
    const iova = r.io.map(8, GUEST + 5 * PAGE, PAGE);
    const summary = r.hyp.own.summary();
    expect(() => r.hyp.donate(GUEST + 5 * PAGE, PAGE)).toThrow(OwnershipError);
    expect(() => r.hyp.donate(GUEST, 16 * PAGE)).toThrow(/DMA refcount 1/);
    expect(() =>
      r.hyp.createGuest({
        name: 'vm1',
        memory: { base: GUEST, size: 0x100_0000 },
        devices: [{ vsid: 0, psid: 9 }],
      }),
    ).toThrow(/mapped for DMA/);
    expect(r.hvc('donate_hyp', GUEST + 5 * PAGE, 1)).toBe(-ERRNO.EPERM);
    expect(r.hyp.own.summary()).toEqual(summary);
    expect(r.hyp.pv!.stats.refcountVetoes).toBe(4);
    // the device still reaches its buffer
    const o = r.m.devices.get('nic')!.read(iova, 4);
    expect(o.ok && o.pa).toBe(GUEST + 5 * PAGE);
    r.io.unmap(8, iova, PAGE);
    expect(r.hyp.pv!.refcount.count(GUEST + 5 * PAGE)).toBe(0);
    r.hyp.createGuest({
      name: 'vm1',
      memory: { base: GUEST, size: 0x100_0000 },
      devices: [{ vsid: 0, psid: 9 }],
    });
    expect(r.hyp.own.state(GUEST + 5 * PAGE).owner).toBe('guest:vm1');
    expect(r.hvc('donate_hyp', BUF, 1)).toBe(0);
    expect(r.hyp.own.state(BUF).owner).toBe('hyp');
    expect(r.oracle().check().ok).toBe(true);
  });

  it('two mappings of one page hold two counts: the page stays in use until both are gone', () => {
    const r = bootPv('pv');
    r.io.attach(8, 'dma');
    r.io.attach(9, 'dma');
    const a = r.io.map(8, BUF, PAGE);
    const b = r.io.map(9, BUF, PAGE);
    expect(r.hyp.pv!.refcount.count(BUF)).toBe(2);
    r.io.unmap(8, a, PAGE);
    expect(r.hvc('donate_hyp', BUF, 1)).toBe(-ERRNO.EPERM);
    r.io.unmap(9, b, PAGE);
    expect(r.hvc('donate_hyp', BUF, 1)).toBe(0);
  });

  it('free_domain with pages still mapped is refused; unmapped and detached, the domain frees and its ASID is invalidated', () => {
    const r = bootPv('pv');
    expect(r.hvc('alloc_domain', 3, DOMAIN_TYPE.DMA)).toBe(0);
    expect(r.hvc('map_pages', 3, 0, BUF, PAGE, 4, RW)).toBe(4 * PAGE);
    expect(r.hvc('free_domain', 3)).toBe(-ERRNO.EBUSY);
    const pool = r.hyp.pool.pagesInUse;
    expect(r.hvc('unmap_pages', 3, 0, PAGE, 4)).toBe(4 * PAGE);
    const from = r.phys.length;
    expect(r.hvc('free_domain', 3)).toBe(0);
    expect(opsSince(r, from)).toEqual([OPCODE.TLBI_NH_ASID, OPCODE.CMD_SYNC]);
    expect(r.hyp.pool.pagesInUse).toBeLessThan(pool);
    expect(r.hvc('map_pages', 3, 0, BUF, PAGE, 1, RW)).toBe(-ERRNO.ENOENT);
  });
});
