/**
 * The host's paravirtual driver (host/pv/iommu.ts) behind HostIommu: how many hypercalls each
 * operation costs, buffers larger than one page-table page, a refused map that leaves nothing
 * behind, and the default domain kept across detach.
 */
import { describe, expect, it } from 'vitest';
import { PvIommuError } from '../../../host/pv/iommu.ts';
import { ERRNO } from '../../../hyp/pv/abi.ts';
import { HYP_BASE } from '../../reference.ts';
import { bootPv } from '../../hyp/pv/rig.ts';

const PAGE = 4096;

describe('PvIommu (pv)', () => {
  it('attach costs alloc_domain + attach_dev once; a re-attach after detach reuses the domain (detach_dev + attach_dev)', () => {
    const r = bootPv('pv');
    const c = r.hyp.pv!.calls;
    r.io.attach(8, 'dma');
    expect([c.alloc_domain, c.attach_dev]).toEqual([1, 1]);
    const id = r.io.domainOf(8);
    r.io.detach(8);
    r.io.attach(8, 'dma');
    expect([c.alloc_domain, c.attach_dev, c.detach_dev]).toEqual([1, 2, 1]);
    expect(r.io.domainOf(8)).toBe(id);
    expect(r.io.hypercalls).toBe(1 + 4); // probe's power-on, then the four above
  });

  it('a 600-page buffer: the first map_pages stops at the end of a page-table page, so two calls map it; one unmap per piece', () => {
    const r = bootPv('pv');
    r.io.attach(8, 'dma');
    const c = r.hyp.pv!.calls;
    const iova = r.io.map(8, 0x5000_0000, 600 * PAGE);
    // the IOVA is size-aligned (1024 pages): 512 entries fit in its first table page
    expect(c.map_pages).toBe(2);
    expect(r.hyp.pv!.stats.pagesMapped).toBe(600);
    const dev = r.m.devices.get('nic')!;
    for (const p of [0, 511, 512, 599]) {
      const o = dev.read(iova + p * PAGE, 4);
      expect(o.ok && o.pa).toBe(0x5000_0000 + p * PAGE);
    }
    r.io.unmap(8, iova, 600 * PAGE);
    expect(c.unmap_pages).toBe(2);
    expect(dev.read(iova + 599 * PAGE, 4).ok).toBe(false);
    expect(r.hyp.pv!.refcount.count(0x5000_0000 + 599 * PAGE)).toBe(0);
  });

  it("a map of the hypervisor's memory throws PvIommuError (-EPERM) naming the call and its arguments, and leaves nothing mapped", () => {
    const r = bootPv('pv');
    r.io.attach(8, 'dma');
    let err: unknown;
    try {
      r.io.map(8, HYP_BASE - 2 * PAGE, 4 * PAGE);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PvIommuError);
    const e = err as PvIommuError;
    expect([e.call, e.ret, e.args.paddr]).toEqual(['map_pages', -ERRNO.EPERM, HYP_BASE - 2 * PAGE]);
    expect(e.message).toContain('-EPERM');
    expect(r.hyp.pv!.stats.pagesMapped).toBe(0);
    expect(r.hyp.pv!.refcount.count(HYP_BASE - PAGE)).toBe(0);
    // the IOVA went back: the next map gets the same one
    const a = r.io.map(8, 0x5000_0000, PAGE);
    expect(a).toBe(0xffff_f000);
  });
});
