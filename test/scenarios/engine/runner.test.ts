import { describe, expect, it } from 'vitest';
import { loadScenarios, ScenarioError } from '../../../scenarios/engine/loader.ts';
import { runScenario } from '../../../scenarios/engine/runner.ts';
import { makePolicy, PRESETS } from '../../../hyp/policy/policy.ts';

const catalog = loadScenarios('pkvm-attacks');
const byName = (n: string) => catalog.find((sc) => sc.name === n)!;

describe('RunOptions.policy: a scenario under any hypervisor policy', () => {
  it('boots the given policy, with the scenario’s own failure policy on top', () => {
    // a12 runs under the reject policy: the host sees CERROR_ILL instead of a panic
    const sc = byName('a12-cfgi-sid-beyond');
    expect(sc.machine.failure).toBe('reject');
    const design = makePolicy('pkvm', { weaken: ['sync-msi'] });
    const r = runScenario(sc, { hyp: 'pkvm', policy: design });
    expect(r.hyp!.policy).toBe(design.name);
    expect(r.hyp!.failure).toBe('reject');
    expect(r.hyp!.panics).toEqual([]);
    expect(r.ok).toBe(true);
  });
  it('runs the `when` steps of the mode it is given, not of the policy', () => {
    // a41: the unshare and donate steps differ between pkvm (refused) and pkvm-v6 (done)
    const sc = byName('a41-evtq-unshare-donate');
    const asPkvm = runScenario(sc, { hyp: 'pkvm', policy: PRESETS['pkvm-v6'] });
    const asV6 = runScenario(sc, { hyp: 'pkvm-v6', policy: PRESETS['pkvm-v6'] });
    // under the v6 policy the pkvm steps (expecting refusals) fail, the pkvm-v6 steps hold
    expect(asPkvm.ok).toBe(false);
    expect(asV6.ok).toBe(true);
    expect(asV6.isolation!.ok).toBe(false);
  });
  it('without a policy, runs are as before (the scenario’s named policy)', () => {
    const sc = byName('a41-evtq-unshare-donate');
    const r = runScenario(sc, { hyp: 'pkvm-v6' });
    expect(r.hyp!.policy).toBe('pkvm-v6');
    expect(r.ok).toBe(true);
  });
  it("a policy with hyp 'none' is refused, naming the scenario", () => {
    const sc = byName('a01-s1-maps-hyp');
    expect(() => runScenario(sc, { hyp: 'none', policy: PRESETS.pkvm })).toThrow(ScenarioError);
    expect(() => runScenario(sc, { hyp: 'none', policy: PRESETS.pkvm })).toThrow(
      /a01-s1-maps-hyp\.json: invalid scenario\n {2}policy pkvm: a hypervisor policy needs a hypervisor run/,
    );
  });
});
