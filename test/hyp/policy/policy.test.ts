import { describe, expect, it } from 'vitest';
import { makePolicy, PRESETS, V6_GAPS } from '../../../hyp/policy/policy.ts';

describe('policy presets: immutable snapshots derived from one another', () => {
  it('pkvm-v6 is pkvm with the six v6-era gaps weakened (designs.md §1.13), nothing else', () => {
    const { name: n1, weaken: w1, ...rest1 } = PRESETS.pkvm;
    const { name: n6, weaken: w6, ...rest6 } = PRESETS['pkvm-v6'];
    expect([n1, n6]).toEqual(['pkvm', 'pkvm-v6']);
    expect([...w1]).toEqual([]);
    expect([...w6]).toEqual([
      'sync-msi',
      'irq-cfg-msi',
      'ste-eats',
      'ste-strw',
      'ats-check',
      'queue-pin',
    ]);
    expect(rest6).toEqual(rest1);
    expect(rest1).toEqual({
      failure: 'panic',
      allowAts: false,
      steShadowing: 'cfgi',
      cmdq: 'trap',
      smmuStage2: 'shadow-idmap',
      idmapGranule: 'page',
      guestCmdBudget: 256,
    });
  });

  it('presets and the policies made from them are frozen; deriving leaves the preset alone', () => {
    const p = makePolicy('pkvm', { weaken: ['cfgi-leaf'], failure: 'reject' });
    expect(p.name).toBe('pkvm-weakened(cfgi-leaf)');
    expect(p.failure).toBe('reject');
    expect(Object.isFrozen(p)).toBe(true);
    expect(() => (p.weaken as Set<string>).add('sync-msi')).toThrow();
    expect([...PRESETS.pkvm.weaken]).toEqual([]);
    expect(PRESETS.pkvm.failure).toBe('panic');
  });

  it("a caller's rules come first, then the preset's; pkvm-v6 keeps its name", () => {
    const p = makePolicy('pkvm-v6', { weaken: ['cfgi-leaf'] });
    expect(p.name).toBe('pkvm-v6');
    expect([...p.weaken]).toEqual(['cfgi-leaf', ...V6_GAPS]);
  });

  it('a guest command budget that is not a positive integer is refused', () => {
    expect(() => makePolicy('pkvm', { guestCmdBudget: 0 })).toThrow(/guestCmdBudget 0/);
  });
});
