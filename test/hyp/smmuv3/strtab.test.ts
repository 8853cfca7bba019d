/**
 * The shadow stream table's batched install (hyp/smmuv3/strtab.ts installMany): the ordering
 * `install` uses per STE (V 1→0: DW0 first; V 0→1: DW0 last; a CFGI_STE + CMD_SYNC between
 * and after), with the CFGI_STEs of each step batched before one CMD_SYNC.
 */
import { describe, expect, it } from 'vitest';
import { Machine } from '../../../hw/machine.ts';
import { OP } from '../../../hw/smmu/commands.ts';
import { STE_WORDS } from '../../../hw/smmu/ste.ts';
import { PkvmHyp } from '../../../hyp/pkvm.ts';
import { abortSte } from '../../../hyp/smmuv3/ste-sanitize.ts';

function rig() {
  const m = new Machine();
  const hyp = new PkvmHyp(m).boot();
  // the hardware must consume the hypervisor's commands: CMDQEN on (as the host's CR0 write does)
  m.bus.write32('hyp', m.smmu.base + 0x20, 1 << 3);
  const sync = (cmds: Uint32Array[]) => hyp.shadowQ.issueAndSync(cmds);
  const hw = () => ({
    syncs: m.smmu.cmdq.stats.syncs,
    cfgis: m.smmu.cmdq.stats.perOpcode[OP.CFGI_STE]!,
  });
  return { m, hyp, sync, hw };
}

const valid = (tag: number): Uint32Array => {
  const w = new Uint32Array(STE_WORDS);
  abortSte(w);
  w[2] = tag; // DW1: a value only this STE has
  return w;
};

describe('ShadowStreamTable.installMany', () => {
  it('installs every STE of the batch, with one CMD_SYNC per ordering step', () => {
    const r = rig();
    const st = r.hyp.strtab;
    // SIDs 16, 17 valid first (one at a time), 18, 19 invalid
    st.install(16, valid(1), r.sync);
    st.install(17, valid(2), r.sync);
    const before = r.hw();
    const installs = st.installs;
    const next = new Uint32Array(4 * STE_WORDS);
    next.set(new Uint32Array(STE_WORDS), 0); // 16: V 1→0
    next.set(valid(3), STE_WORDS); // 17: valid → valid
    next.set(valid(4), 2 * STE_WORDS); // 18: V 0→1
    next.set(valid(5), 3 * STE_WORDS); // 19: V 0→1
    st.installMany([16, 17, 18, 19], next, r.sync);
    const out = new Uint32Array(STE_WORDS);
    for (let i = 0; i < 4; i++) {
      st.read(16 + i, out);
      expect([...out], `SID ${16 + i}`).toEqual([
        ...next.subarray(i * STE_WORDS, (i + 1) * STE_WORDS),
      ]);
    }
    expect(st.installs - installs).toBe(4);
    const after = r.hw();
    // V 1→0 step, V 0→1 step, the final one
    expect(after.syncs - before.syncs).toBe(3);
    // one CFGI for the STE going invalid, two for those going valid, then one for each
    expect(after.cfgis - before.cfgis).toBe(1 + 2 + 4);
  });

  it('takes StreamIDs of one shadow span only', () => {
    const r = rig();
    expect(() =>
      r.hyp.strtab.installMany([255, 256], new Uint32Array(2 * STE_WORDS), r.sync),
    ).toThrow(/StreamIDs 255 and 256 are in different spans/);
  });
});
