import { PV_ATTACKS } from '../../../host/malicious/pv-attacks.ts';
import { describe, expect, it } from 'vitest';
import { PRESETS, RULES, V6_GAPS, makePolicy } from '../../../hyp/policy/policy.ts';
import {
  attackCatalog,
  gapAttacksOf,
  gapTagOf,
  givesUp,
  securityRow,
  stepsFor,
} from '../../../scenarios/eval/security.ts';
import type { Design } from '../../../scenarios/eval/types.ts';

const design = (name: keyof typeof PRESETS): Design => ({
  name,
  description: name,
  policy: PRESETS[name],
});
const NONE: Design = { name: 'none', description: 'no hypervisor', policy: null };

describe('the gap attacks', () => {
  const catalog = attackCatalog();
  it('are the catalog attacks citing the gap tag of each V6_GAPS rule that has one', () => {
    expect(V6_GAPS.map((r) => [r, gapTagOf(r)])).toEqual([
      ['sync-msi', 'G1'],
      ['irq-cfg-msi', 'G2'],
      ['ste-eats', 'G3'],
      ['ste-strw', 'G4'],
      ['ats-check', null],
      ['queue-pin', 'G6'],
    ]);
    expect(gapAttacksOf('sync-msi', catalog)).toEqual(['a29-sync-msi-hyp']);
    expect(gapAttacksOf('irq-cfg-msi', catalog)).toEqual([
      'a30-evtq-irq-msi-hyp',
      'a31-gerror-irq-msi-hyp',
    ]);
    expect(gapAttacksOf('ste-eats', catalog)).toEqual([
      'a08-ste-eats-full-ats',
      'a09-ste-eats-split-stage',
    ]);
    expect(gapAttacksOf('queue-pin', catalog)).toEqual(['a41-evtq-unshare-donate']);
    expect(gapAttacksOf('cfgi-leaf', catalog)).toEqual([]);
  });
});

describe('the security row', () => {
  it('pkvm blocks every catalog attack (panics reported apart, not as breaches)', () => {
    const row = securityRow(design('pkvm'));
    expect(row.surface).toBe('mmio');
    expect(row.steps).toBe('pkvm');
    expect(row.attacks).toHaveLength(attackCatalog().length);
    const notBlocked = row.attacks.filter((a) => a.verdict !== 'blocked');
    expect(notBlocked, JSON.stringify(notBlocked)).toEqual([]);
    expect(row.blocked).toBe(attackCatalog().length);
    expect([row.breached, row.unexpected, row.errors, row.notApplicable]).toEqual([0, 0, 0, 0]);
    // the attacks whose scenario expects a panic are the ones that panicked
    const expectsPanic = attackCatalog()
      .filter((sc) =>
        sc.steps.some((s) => s.op === 'expectPanic' && (!s.when || s.when.includes('pkvm'))),
      )
      .map((sc) => sc.name);
    expect(row.attacks.filter((a) => a.panic).map((a) => a.attack)).toEqual(expectsPanic);
    expect(row.panics).toBe(expectsPanic.length);
    expect(row.givesUp).toEqual([]);
  });

  it('pkvm-v6 does not block the gap attacks; they are expected breaches, and it says what it gives up', () => {
    const v6 = design('pkvm-v6');
    const gaps = [...new Set(V6_GAPS.flatMap((r) => gapAttacksOf(r, attackCatalog())))];
    expect(gaps.length).toBeGreaterThanOrEqual(6);
    const row = securityRow(v6, { only: gaps });
    expect(row.steps).toBe('pkvm-v6');
    expect([...row.gapAttacks].sort()).toEqual([...gaps].sort());
    for (const a of row.attacks) {
      expect(a.verdict, a.attack).toBe('breached');
      expect(a.expected, a.attack).toBe(true);
      expect(a.paths!.length, a.attack).toBeGreaterThan(0);
    }
    expect(row.unexpected).toBe(0);
    expect(row.givesUp[0]).toMatch(/^the v6-era gaps \(sync-msi, /);
    expect(row.givesUp).toContain(`rule queue-pin off: ${RULES['queue-pin']}`);
  });

  it("each gap attack breaches with the gap's own rule off alone, where the gap does not need another", () => {
    // G1 and G6 need nothing else: the single rule off is the whole gap
    for (const [rule, attack] of [
      ['sync-msi', 'a29-sync-msi-hyp'],
      ['queue-pin', 'a41-evtq-unshare-donate'],
    ] as const) {
      const d: Design = {
        name: `weak-${rule}`,
        description: '',
        policy: makePolicy('pkvm', { weaken: [rule] }),
      };
      expect(stepsFor(d)).toBe('pkvm');
      const row = securityRow(d, { only: [attack] });
      expect(row.attacks[0]!.verdict, attack).toBe('breached');
    }
  });

  it('paravirtual designs: the MMIO catalog is n/a; every hypercall attack is blocked', () => {
    for (const n of ['pkvm-pv', 'pkvm-pv-idmap'] as const) {
      const row = securityRow(design(n), { only: ['a01-s1-maps-hyp', 'a29-sync-msi-hyp'] });
      expect(row.surface).toBe('pv');
      const pvNames = new Set(PV_ATTACKS.map((a) => a.name));
      const mmio = row.attacks.filter((a) => !pvNames.has(a.attack));
      expect(mmio.map((a) => a.verdict)).toEqual(['n/a', 'n/a']);
      // the hypercall attacks (host/malicious/pv-attacks.ts) that apply to the design run on
      // its machine, with a guest: each is refused and the oracle finds no breach
      const kind = design(n).policy!.cmdq as 'pv' | 'pv-idmap';
      const pv = row.attacks.filter((a) => !mmio.includes(a));
      expect(pv.map((a) => a.attack)).toEqual(PV_ATTACKS.map((a) => a.name));
      for (const a of pv)
        expect(a.verdict, a.attack).toBe(
          PV_ATTACKS.find((x) => x.name === a.attack)!.kinds.includes(kind) ? 'blocked' : 'n/a',
        );
      expect(row.breached).toBe(0);
      expect(row.blocked).toBe(PV_ATTACKS.filter((a) => a.kinds.includes(kind)).length);
    }
    expect(givesUp(design('pkvm-pv-idmap'))[0]).toMatch(
      /^cmdq pv-idmap: devices reach all host memory/,
    );
  });

  it('none: the attacks with a bare form breach (expected), the others are n/a', () => {
    const row = securityRow(NONE, { only: ['a01-s1-maps-hyp', 'a41-evtq-unshare-donate'] });
    expect(row.surface).toBe('bare');
    expect(row.attacks.map((a) => [a.attack, a.verdict, a.expected])).toEqual([
      ['a01-s1-maps-hyp', 'breached', true],
      ['a41-evtq-unshare-donate', 'n/a', undefined],
    ]);
    expect(row.unexpected).toBe(0);
  });

  it('what each design gives up is data per design axis', () => {
    expect(givesUp(design('pkvm-shared-s2'))).toEqual([
      expect.stringMatching(/^smmuStage2 cpu-shared: DMA to memory the CPU has not touched faults/),
    ]);
    expect(givesUp(design('pkvm-block'))[0]).toMatch(/^idmapGranule block: /);
    expect(givesUp(design('pkvm-wp'))[0]).toMatch(/^steShadowing trap-writes: /);
    expect(givesUp(NONE)[0]).toMatch(/^no isolation/);
  });
});
