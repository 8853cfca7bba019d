import { describe, expect, it } from 'vitest';
import { loadScenario, loadScenarios } from '../../../scenarios/engine/loader.ts';
import { runScenario, runVariants } from '../../../scenarios/engine/runner.ts';

describe('pkvm scenarios', () => {
  it('pkvm-boot: the JSON result gains hyp {traps, commandsForwarded, commandsRejected, panics, shadowPages, poolPages} and isolation {ok, breaches}', () => {
    const r = runScenario(loadScenario('pkvm-boot'));
    expect(r.ok).toBe(true);
    expect(r.hypMode).toBe('pkvm');
    for (const k of [
      'traps',
      'commandsForwarded',
      'commandsRejected',
      'panics',
      'shadowPages',
      'poolPages',
    ])
      expect(r.hyp).toHaveProperty(k);
    expect(r.hyp!.traps).toBeGreaterThan(40);
    expect(r.hyp!.panics).toEqual([]);
    // shadow queue (2^12 commands = 16 pages) + shadow L1 (1 page) + one L2 table per used span (4 pages)
    expect(r.hyp!.shadowPages).toBe(16 + 1 + 4);
    expect(r.isolation).toEqual({ ok: true, breaches: [] });
  });

  it('a bare run has no hyp section, and its JSON keys are unchanged', () => {
    const r = runScenario(loadScenario('bare-s1'));
    expect(Object.keys(r)).toEqual(['scenario', 'ok', 'steps', 'failed', 'events', 'stats']);
  });

  const attacks = loadScenarios('pkvm-attacks');
  it('pkvm-attacks holds at least 30 named attacks, each citing the reference item it covers', () => {
    expect(attacks.length).toBeGreaterThanOrEqual(30);
    for (const a of attacks) expect(a.description).toMatch(/^\[(7\.1 #\d+|G\d)/);
    const items = new Set(
      attacks.flatMap((a) => [...a.description.matchAll(/#(\d+)/g)].map((m) => Number(m[1]))),
    );
    // every item of reference 7.1 #1–#31 except #30 (concurrent MMIO: one trap at a time by construction)
    for (let i = 1; i <= 31; i++) if (i !== 30) expect(items, `7.1 #${i}`).toContain(i);
    for (const g of ['G1', 'G2', 'G3', 'G4', 'G6'])
      expect(
        attacks.some((a) => a.description.includes(g)),
        g,
      ).toBe(true);
  });

  it('under the hypervisor every attack fails with isolation intact; where the attack also runs bare (or under the v6 design it is a gap of), it breaches isolation there', () => {
    let bare = 0;
    let v6 = 0;
    for (const sc of attacks) {
      for (const r of runVariants(sc)) {
        expect(r.ok, `${sc.name} [${r.hypMode}]: ${JSON.stringify(r.failed)}`).toBe(true);
        if (r.hypMode === 'none') {
          bare++;
          // ste-reserved-config is the one attack the bare hardware itself stops; the bare host still controls every STE
          expect(r.isolation?.ok, sc.name).toBe(false);
        } else if (r.hypMode === 'pkvm-v6') {
          // an attack with no bare form (an ownership change needs a hypervisor) shows the v6 gap it exploits instead
          v6++;
          expect(r.isolation?.ok, sc.name).toBe(false);
        } else {
          expect(r.isolation?.ok, sc.name).toBe(true);
        }
      }
    }
    expect(bare).toBeGreaterThanOrEqual(12);
    expect(v6).toBeGreaterThanOrEqual(1);
  });

  it('pkvm-v6-gaps: the oracle catches G1/G2/G3 under pkvm-v6, the hardened policy blocks them', () => {
    const sc = loadScenario('pkvm-v6-gaps');
    const [v6, hard] = runVariants(sc);
    expect(v6!.hypMode).toBe('pkvm-v6');
    expect(v6!.ok).toBe(true);
    const paths = new Set(v6!.isolation!.breaches.map((b) => b.path));
    expect(paths).toContain('msi');
    expect(paths).toContain('ats-translated');
    expect(hard!.ok).toBe(true);
    expect(hard!.isolation).toEqual({ ok: true, breaches: [] });
    expect(hard!.hyp!.violations['irq-cfg-msi']).toBe(1);
  });

  it('a panic stops the machine: later steps are skipped, and a panic no step expects fails the run', () => {
    const sc = loadScenario(attacks.find((a) => a.name.endsWith('cfgi-leaf0'))!.file);
    const r = runScenario(sc);
    expect(r.ok).toBe(true);
    expect(r.hyp!.panics).toEqual([
      { rule: 'cfgi-leaf', reason: 'CFGI_STE StreamID 8 with Leaf=0' },
    ]);
    const noExpect = { ...sc, steps: sc.steps.filter((s) => s.op !== 'expectPanic') };
    const r2 = runScenario(noExpect);
    expect(r2.ok).toBe(false);
    expect(r2.failed.at(-1)!.actual).toMatch(/hyp panic \[cfgi-leaf\]/);
  });
});
