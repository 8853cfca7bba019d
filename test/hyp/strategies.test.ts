import { describe, expect, it } from 'vitest';
import { Machine } from '../../hw/machine.ts';
import { PkvmHyp, HypBootError } from '../../hyp/pkvm.ts';
import { makePolicy } from '../../hyp/policy/policy.ts';
import { NotBuiltError } from '../../hyp/policy/not-built.ts';
import { HostCmdq } from '../../hyp/smmuv3/cmdq.ts';
import { Idmap } from '../../hyp/iommu/idmap.ts';
import { NoHostQueue } from '../../hyp/pv/no-host-queue.ts';

describe('hyp: one strategy per design axis, unbuilt ones refused by their selector', () => {
  for (const [field, o] of [
    ['steShadowing', { steShadowing: 'trap-writes' }],
    ['smmuStage2', { smmuStage2: 'cpu-shared' }],
    ['idmapGranule', { idmapGranule: 'block' }],
  ] as const) {
    it(`policy ${field}: '${Object.values(o)[0]}' is not built yet: refused when the hypervisor is made`, () => {
      const m = new Machine();
      let caught: unknown;
      try {
        new PkvmHyp(m, { policy: makePolicy('pkvm', o) });
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(NotBuiltError);
      expect(caught).toBeInstanceOf(HypBootError);
      const e = caught as NotBuiltError;
      expect(e.field).toBe(field);
      expect(e.value).toBe(Object.values(o)[0]);
      expect(e.message).toContain(`policy ${field}: '${e.value}' is not built yet`);
    });
  }

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
