import { describe, expect, it } from 'vitest';
import { Machine } from '../../hw/machine.ts';
import { PkvmHyp } from '../../hyp/pkvm.ts';
import { makePolicy } from '../../hyp/policy/policy.ts';
import { HostCmdq } from '../../hyp/smmuv3/cmdq.ts';
import { Idmap } from '../../hyp/iommu/idmap.ts';
import { WpSteShadowing } from '../../hyp/smmuv3/ste-shadow-wp.ts';
import { NoHostQueue } from '../../hyp/pv/no-host-queue.ts';

describe('hyp: one strategy per design axis', () => {
  it("the defaults are pKVM's: trap-and-emulate, CFGI shadowing, a page-granular shadow idmap", () => {
    const p = makePolicy('pkvm');
    expect([p.cmdq, p.steShadowing, p.smmuStage2, p.idmapGranule]).toEqual([
      'trap',
      'cfgi',
      'shadow-idmap',
      'page',
    ]);
    const hyp = new PkvmHyp(new Machine(), { policy: p }).boot();
    expect(hyp.cmdq).toBeInstanceOf(HostCmdq);
    expect(hyp.idmap).toBeInstanceOf(Idmap);
    // the STE shadowing on CFGI has none of the write-protecting design's counters
    expect(hyp.steStoreStats).toBeUndefined();
  });

  it("pkvm-wp: steShadowing 'trap-writes' is built (the host stream table write-protected)", () => {
    const p = makePolicy('pkvm-wp');
    expect(p.steShadowing).toBe('trap-writes');
    const hyp = new PkvmHyp(new Machine(), { policy: p }).boot();
    expect(hyp.steStoreStats).toEqual({
      steStoreTraps: 0,
      storeReshadows: 0,
      l1Stores: 0,
      spanReshadows: 0,
      cfgisForwarded: 0,
    });
    expect((hyp as unknown as { steShadow: unknown }).steShadow).toBeInstanceOf(WpSteShadowing);
  });

  for (const cmdq of ['pv', 'pv-idmap'] as const) {
    it(`policy cmdq: '${cmdq}' builds the paravirtual IOMMU: no host queue, hypercalls on the bus`, () => {
      const m = new Machine();
      const hyp = new PkvmHyp(m, { policy: makePolicy('pkvm', { cmdq }) }).boot();
      expect(hyp.cmdq).toBeInstanceOf(NoHostQueue);
      expect(hyp.pv?.kind).toBe(cmdq);
    });
  }
});
