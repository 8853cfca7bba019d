/**
 * smmu-rpm: runtime suspend/resume of the SMMU under each design.
 *
 * With no hypervisor each resume is the driver's device reset: CFGI_ALL, TLBI_EL2_ALL (the
 * SMMU has IDR0.HYP), TLBI_NSNH_ALL, each with a CMD_SYNC, and nothing else.
 *
 * Under pkvm the suspend (CR0 to 0) clears EVENTQEN, which pKVM does not support (designs.md
 * §1.12 assumption 9; rule queue-guard): the hypervisor panics at the first suspend, and the
 * cell records it. With queue-guard weakened the cycles run; the reshadows they cost are the
 * STEs the hypervisor rebuilds on each resume's CFGI_ALL, which its command policy forwards
 * without a reshadow (cmd-policy.ts): so the shadow STEs survive unchanged and the count is
 * computed from that verdict.
 */
import { describe, expect, it } from 'vitest';
import { runCell } from '../../../scenarios/eval/matrix.ts';
import { designByName, parseDesigns } from '../../../scenarios/eval/designs.ts';
import { Bed } from '../../../scenarios/eval/bed.ts';
import { startCollect } from '../../../scenarios/eval/collect.ts';
import { smmuRpmWorkload } from '../../../scenarios/eval/workloads/smmu-rpm.ts';
import { checkCommand, RESHADOW, type CmdCheck } from '../../../hyp/smmuv3/cmd-policy.ts';
import { encodeCommand } from '../../../hw/smmu/commands.ts';
import { RULES } from '../../../hyp/policy/policy.ts';

const [rpmDesign] = parseDesigns(
  'name: pkvm-rpm\ndescription: pkvm that lets the host disable its event queue\nbase: pkvm\nweaken: [queue-guard]\n',
  'rpm.yaml',
);

/** STEs the hypervisor rebuilds for one CFGI_ALL: all the host's, if its policy reshadows it */
function reshadowsPerCfgiAll(hostStes: number): number {
  const c: CmdCheck = { weak: () => false, sid: 0, rule: 'cfgi-leaf', reason: '', syncRewrites: 0 };
  return checkCommand(encodeCommand('CFGI_ALL', {}), c) === RESHADOW ? hostStes : 0;
}

describe('smmu-rpm', () => {
  it('none: each resume is the reset sequence and nothing of a hypervisor', () => {
    const c = runCell(designByName('none'), 'smmu-rpm', { devices: 3, cycles: 5 });
    expect(c.error).toBeUndefined();
    const m = c.metrics;
    expect(m.ops).toBe(10); // a suspend and a resume per cycle
    expect([m.cfgis, m.tlbis, m.cmdSyncs, m.hwCommands]).toEqual([5, 10, 15, 30]);
    expect([m.traps, m.reshadows, m.hypCommands]).toEqual([0, 0, 0]);
    expect([m.dmas, m.dmaFaults]).toEqual([15, 0]);
  });

  it('pkvm: the first suspend clears EVENTQEN and the hypervisor panics (queue-guard)', () => {
    expect(RULES['queue-guard']).toMatch(/disabling them is refused/);
    const c = runCell(designByName('pkvm'), 'smmu-rpm');
    expect(c.error).toMatch(/HypPanic: hyp panic \[queue-guard\]: EVENTQEN 1→0 is not supported/);
    // one trap (the CR0 write) got that far; isolation held
    expect(c.metrics.traps).toBe(1);
    expect(c.metrics.dmas).toBe(0);
    expect(c.isolation).toEqual({ ok: true, breaches: 0 });
  });

  it('pkvm with queue-guard weakened: reshadows per cycle are the STEs rebuilt on CFGI_ALL', () => {
    const p = { devices: 4, cycles: 3 };
    const bed = new Bed(rpmDesign!, { devices: p.devices });
    const iovas = smmuRpmWorkload.setup(bed, p);
    const before = bed.sids.map((s) => [...bed.hyp!.shadowSte(s)]);
    const col = startCollect(bed);
    smmuRpmWorkload.run(bed, p, iovas);
    const m = col.finish();
    expect(m.cfgis).toBe(p.cycles); // the reset's CFGI_ALL, forwarded
    expect(m.reshadows).toBe(p.cycles * reshadowsPerCfgiAll(p.devices));
    expect(m.reshadows).toBe(0);
    // nothing was rebuilt, and nothing needed to be: the shadow STEs are as before
    expect(bed.sids.map((s) => [...bed.hyp!.shadowSte(s)])).toEqual(before);
    expect([m.dmas, m.dmaFaults]).toEqual([p.devices * p.cycles, 0]);
    // every host register access of the suspend and the reset traps
    expect(m.traps).toBe(m.mmioTraps);
    expect(m.traps % p.cycles).toBe(0);
    expect(bed.checks.every((c) => c.ok)).toBe(true);
  });
});
