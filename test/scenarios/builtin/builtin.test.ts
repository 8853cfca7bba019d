import { describe, expect, it } from 'vitest';
import { builtinNames, loadScenario, loadScenarios } from '../../../scenarios/engine/loader.ts';
import { runScenario, runVariants } from '../../../scenarios/engine/runner.ts';

describe('built-in scenarios', () => {
  const names = builtinNames();

  it('include the foundation scenarios', () => {
    for (const n of ['bare-gbpa', 'bare-bypass-ste', 'bare-bad-ste', 'bare-cmdq-error'])
      expect(names).toContain(n);
  });

  for (const n of names) {
    for (const sc of loadScenarios(n)) {
      for (const mode of sc.variants) {
        it(`${n === sc.name ? n : `${n}/${sc.name}`} passes${sc.variants.length > 1 || mode !== 'none' ? ` [hyp ${mode}]` : ''}`, () => {
          const [r] = runVariants(sc, { hyp: mode });
          expect(r!.failed).toEqual([]);
          expect(r!.ok).toBe(true);
        });
      }
    }
  }

  it('bare-bad-ste leaves C_BAD_STE records for SIDs 8, 9, 10 and C_BAD_STREAMID for 40', () => {
    const r = runScenario(loadScenario('bare-bad-ste'));
    expect(r.events.map((e) => [e.type, e.sid])).toEqual([
      ['C_BAD_STE', 8],
      ['C_BAD_STE', 9],
      ['C_BAD_STE', 10],
      ['C_BAD_STREAMID', 40],
    ]);
    // DW0 of the first record: event number 0x04, StreamID 8 in bits [63:32]
    expect(r.events[0]!.raw[0]).toBe('0x0000000800000004');
  });

  it('bare-s1 reports per-stream translation counters: the TLBI removed the one cached page', () => {
    const r = runScenario(loadScenario('bare-s1'));
    const st = (r.stats.streams as Record<string, Record<string, number>>)['8']!;
    expect(st.txns).toBe(7); // seven DMAs from SID 8
    expect(st.faults).toBe(3); // permission, translation, translation after the TLBI
    expect(st.invalidated).toBe(1); // TLBI_NH_VA removed the 4 KB entry for 0x10000000
    expect(st.hits).toBeGreaterThanOrEqual(1); // the stale read after pt.unmap hit the IOTLB
    expect(st.walks + st.hits).toBe(st.txns);
  });

  it('detects a wrong expectation in every built-in (each step really checks)', () => {
    for (const n of names) {
      const scs = loadScenarios(n);
      for (const sc of scs) {
        const mode = sc.variants[0]!;
        // flip the first read (or memread) expectation that runs under the first variant, and the run must fail
        const i = sc.steps.findIndex(
          (s) =>
            (s.op === 'read' || s.op === 'memread') &&
            s.expect !== undefined &&
            s.expect !== 'abort' &&
            (!s.when || s.when.includes(mode)),
        );
        if (scs.length > 1 && i < 0) continue; // catalog members need not read anything
        expect(i, `${n} has a read or memread with an expectation`).toBeGreaterThanOrEqual(0);
        const flip = (s: (typeof sc.steps)[number]) =>
          s.op === 'read'
            ? { ...s, expect: (s.expect as bigint) ^ 1n, mask: undefined }
            : {
                ...s,
                expect:
                  (parseInt((s.expect as string).slice(0, 2), 16) ^ 1)
                    .toString(16)
                    .padStart(2, '0') + (s.expect as string).slice(2),
              };
        const bad = { ...sc, steps: sc.steps.map((s, j) => (j === i ? flip(s) : s)) };
        const r = runScenario(bad, { hyp: mode });
        expect(r.ok).toBe(false);
        expect(r.failed[0]!.step).toBe(i);
      }
    }
  });

  it('a failing step does not stop the run: later failures are reported too', () => {
    const sc = loadScenario('bare-cmdq-error');
    const reads = sc.steps
      .map((s, j) => [s, j] as const)
      .filter(([s]) => s.op === 'read')
      .map(([, j]) => j);
    const bad = {
      ...sc,
      steps: sc.steps.map((s, j) => (reads.includes(j) ? { ...s, expect: 0xdeadn } : s)),
    };
    const r = runScenario(bad);
    expect(r.failed.map((f) => f.step)).toEqual(reads);
  });
});
