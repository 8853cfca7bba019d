/**
 * The evaluation's first principles (issue 17's acceptance), each asserted on the counts the
 * matrix runner reports for a design on a workload: what a design does shows in its counts, and
 * what another design does not do is zero there.
 */
import { describe, expect, it } from 'vitest';
import { runCell } from '../../../scenarios/eval/matrix.ts';
import { designByName } from '../../../scenarios/eval/designs.ts';
import type { Metrics } from '../../../scenarios/eval/metrics.ts';
import { Bed } from '../../../scenarios/eval/bed.ts';
import { startCollect } from '../../../scenarios/eval/collect.ts';

const PAGE = 4096;

const cell = (design: string, workload: string, params: Record<string, number> = {}): Metrics => {
  const c = runCell(designByName(design), workload, params);
  expect(c.error, `${design} × ${workload}`).toBeUndefined();
  expect(c.isolation.ok, `${design} × ${workload}`).toBe(true);
  return c.metrics;
};

describe('first principles, on the counts', () => {
  it('pkvm-wp: no CFGI-time reshadow but a trap per host STE store; pkvm: the reverse', () => {
    const wp = cell('pkvm-wp', 'boot');
    const pk = cell('pkvm', 'boot');
    // pkvm: every host CFGI_STE is a reshadow, and no store to the host table traps
    expect(pk.steStoreTraps).toBe(0);
    expect(pk.memoryTraps).toBe(0);
    expect(pk.reshadows).toBeGreaterThan(0);
    // pkvm-wp: every memory trap is a host store to its stream table, emulated
    expect(wp.steStoreTraps).toBeGreaterThan(0);
    expect(wp.memoryTraps).toBe(wp.steStoreTraps);
    // the MMIO traps (register accesses) are the same driver's: one per access under both
    expect(wp.mmioTraps).toBe(pk.mmioTraps);
  });

  it('pkvm-block: fewer idmap table pages and fewer descriptor reads per DMA; more work per donation', () => {
    const bl = cell('pkvm-block', 'storage');
    const pk = cell('pkvm', 'storage');
    expect(bl.idmapPages).toBeLessThan(pk.idmapPages);
    expect(bl.dmas).toBe(pk.dmas);
    expect(bl.descReads / bl.walks).toBeLessThan(pk.descReads / pk.walks);
    // one page donated from inside a block: a split (break-before-make) with its own TLBIs and
    // CMD_SYNCs before the page's, where pkvm's page idmap just unmaps the page
    const donation = (design: string): Metrics => {
      const bed = new Bed(designByName(design), { devices: 1 });
      bed.up();
      const page = bed.alloc(PAGE, 2 * 1024 * 1024) + 5 * PAGE;
      const col = startCollect(bed);
      bed.donate(page, PAGE);
      return col.finish();
    };
    const b = donation('pkvm-block');
    const p = donation('pkvm');
    expect([p.blockSplits, p.bbmWindows]).toEqual([0, 0]);
    expect([b.blockSplits, b.bbmWindows]).toEqual([1, 1]);
    expect(b.hypCommands).toBe(2 * p.hypCommands); // the split's own TLBI_S2_IPA + TLBI_NH_ALL, each synced
  });

  it('pkvm-shared-s2: no idmap pages at all; RX into memory the CPU never touched faults', () => {
    for (const w of ['boot', 'storage', 'vm-lifecycle'])
      expect(cell('pkvm-shared-s2', w).idmapPages, w).toBe(0);
    expect(cell('pkvm', 'boot').idmapPages).toBeGreaterThan(0);
    // net-rx's buffers are first touched by the CPU after the device wrote them: under the
    // lazily mapped shared stage-2 every such write faults, and the packet is lost
    const p = { ring: 8, packets: 16 };
    const sh = cell('pkvm-shared-s2', 'net-rx', p);
    expect(sh.dmaFaults).toBe(p.packets);
    expect(cell('pkvm', 'net-rx', p).dmaFaults).toBe(0);
  });

  it('pkvm: a trap per PROD write and none per map (net-rx: maps are free, unmaps trap)', () => {
    const one = cell('pkvm', 'net-rx', { ring: 4, packets: 4 });
    const two = cell('pkvm', 'net-rx', { ring: 4, packets: 8 });
    // per packet: no trap for the map, the unmap's PROD write and CONS poll: 2 per packet
    expect((two.traps - one.traps) / 4).toBe(2);
    expect(two.hostCommands - one.hostCommands).toBe(4 * 2); // TLBI_NH_VA + CMD_SYNC each
    expect(two.hypercalls).toBe(0);
  });

  it('pkvm-pv: no command-queue traps but a hypercall per map and per unmap; pv-idmap: neither', () => {
    const p = { ring: 8, packets: 16 };
    const pv = cell('pkvm-pv', 'net-rx', p);
    expect(pv.hypercalls).toBe(pv.maps + pv.unmaps);
    expect(pv.maps).toBe(p.packets);
    expect([pv.traps, pv.mmioTraps, pv.hostCommands]).toEqual([0, 0, 0]);
    // the hypervisor issues each unmap's TLBI + CMD_SYNC itself
    expect(pv.hypCommands).toBe(2 * pv.unmaps);
    expect(pv.dmaRefcounts).toBe(pv.maps + pv.unmaps); // one 4 KiB page each way
    // v3: identity only, so a dma_map is the PA and costs no hypercall and no invalidation
    const id = cell('pkvm-pv-idmap', 'net-rx', p);
    expect([id.hypercalls, id.traps, id.hwCommands]).toEqual([0, 0, 0]);
  });
});
