import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Bed } from '../../../scenarios/eval/bed.ts';
import { designByName } from '../../../scenarios/eval/designs.ts';
import { startCollect } from '../../../scenarios/eval/collect.ts';
import { applyOverrides, loadProfile, parseProfile } from '../../../scenarios/eval/profile.ts';
import { costCells, modeledTime } from '../../../scenarios/eval/cost.ts';
import { METRIC_NAMES, zeroMetrics, type Metrics } from '../../../scenarios/eval/metrics.ts';
import type { CellResult } from '../../../scenarios/eval/types.ts';

const metrics = (m: Partial<Metrics>): Metrics => ({ ...zeroMetrics(), ...m });
const cell = (design: string, workload: string, m: Partial<Metrics>): CellResult => ({
  design,
  workload,
  params: {},
  metrics: metrics(m),
  isolation: { ok: true, breaches: 0 },
});

/** a small profile with round numbers: the arithmetic is checked by hand against it */
const SMALL = parseProfile(
  JSON.stringify({
    units: Object.fromEntries(
      [
        ['trap', 400],
        ['wpTrap', 400],
        ['s2Fault', 500],
        ['hypercall', 300],
        ['hostCommand', 20],
        ['command', 40],
        ['sync', 150],
        ['iotlbHit', 5],
        ['walkRead', 80],
        ['ownership', 50],
        ['dmaRefcount', 50],
        ['blockSplit', 1500],
        ['reshadow', 200],
        ['kernelMap', 100],
        ['kernelUnmap', 470],
      ].map(([n, ns]) => [n, { ns, kind: 'estimated', source: 'test' }]),
    ),
  }),
  'small.json',
);

describe('modeled time', () => {
  it('is Σ count × ns, per unit and per group, divided by ops', () => {
    const t = modeledTime(
      metrics({ ops: 4, mmioTraps: 3, hwCommands: 10, cmdSyncs: 2, descReads: 7, unmaps: 4 }),
      SMALL,
    );
    // 3×400 + 10×40 + 2×150 + 7×80 + 4×470
    expect(t.totalNs).toBe(1200 + 400 + 300 + 560 + 1880);
    expect(t.perOpNs).toBe(4340 / 4);
    expect(t.byUnit).toMatchObject({
      trap: 1200,
      command: 400,
      sync: 300,
      walkRead: 560,
      kernelUnmap: 1880,
      hypercall: 0,
    });
    expect(t.byGroup).toEqual({
      trap: 1200,
      hypercall: 0,
      command: 400,
      sync: 300,
      walk: 560,
      ownership: 0,
      reshadow: 0,
      kernel: 1880,
    });
  });
  it('counts that no unit prices cost nothing (memory, the sums of priced parts)', () => {
    const t = modeledTime(metrics({ shadowPages: 21, traps: 9, memoryTraps: 5, dmas: 100 }), SMALL);
    expect(t.totalNs).toBe(0);
  });
  it('its breakdowns sum to the total, for any counts (property)', () => {
    const p = loadProfile();
    fc.assert(
      fc.property(
        fc.array(fc.nat(100_000), {
          minLength: METRIC_NAMES.length,
          maxLength: METRIC_NAMES.length,
        }),
        (xs) => {
          const m = zeroMetrics();
          METRIC_NAMES.forEach((k, i) => (m[k] = xs[i]!));
          const t = modeledTime(m, p);
          const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
          expect(sum(t.byUnit)).toBeCloseTo(t.totalNs, 6);
          expect(sum(t.byGroup)).toBeCloseTo(t.totalNs, 6);
          // and each unit's share is its own count × ns
          for (const u of p.units) expect(t.byUnit[u.name]).toBe(m[u.metric] * u.ns);
        },
      ),
    );
  });
  it('--set trap=… changes the total by exactly traps × Δ', () => {
    const p = loadProfile();
    const m = metrics({ ops: 10, mmioTraps: 37, hwCommands: 20, cmdSyncs: 10, maps: 5, unmaps: 5 });
    const trapNs = p.units.find((u) => u.name === 'trap')!.ns;
    const doubled = applyOverrides(p, [`trap=${2 * trapNs}`]);
    const a = modeledTime(m, p);
    const b = modeledTime(m, doubled);
    expect(b.totalNs - a.totalNs).toBe(37 * trapNs);
    expect(b.byGroup.trap).toBe(2 * a.byGroup.trap);
    expect(b.byGroup.command).toBe(a.byGroup.command);
  });
});

describe('overhead against none', () => {
  it('is per op on the same workload: absolute ns and ratio; none and lone cells have none', () => {
    const cs = costCells(
      [
        cell('none', 'storage', { ops: 2, maps: 1, unmaps: 1, hwCommands: 2, cmdSyncs: 1 }),
        cell('pkvm', 'storage', {
          ops: 2,
          maps: 1,
          unmaps: 1,
          hwCommands: 2,
          cmdSyncs: 1,
          mmioTraps: 3,
          hostCommands: 2,
        }),
        cell('pkvm', 'boot', { ops: 1, mmioTraps: 1 }),
      ],
      SMALL,
    );
    // none: 100 + 470 + 2×40 + 150 = 800 ns for 2 ops; pkvm adds 3×400 + 2×20 = 1240 ns
    expect(cs[0]!.perOpNs).toBe(400);
    expect(cs[0]!.overhead).toBeNull();
    expect(cs[1]!.perOpNs).toBe(1020);
    expect(cs[1]!.overhead).toEqual({ against: 'none', perOpNs: 620, ratio: 1020 / 400 });
    expect(cs[2]!.overhead).toBeNull();
  });
  it('a baseline that did not run (n/a under none) gives no overhead at all', () => {
    const [, c] = costCells(
      [
        { ...cell('none', 'vm-lifecycle', {}), notApplicable: 'needs a hypervisor' },
        cell('pkvm', 'vm-lifecycle', { ops: 2, mmioTraps: 4 }),
      ],
      SMALL,
    );
    expect(c!.overhead).toBeNull();
    expect(c!.totalNs).toBe(4 * 400);
  });

  it('a baseline that costs nothing gives no ratio', () => {
    const cs = costCells(
      [cell('none', 'w', { ops: 1 }), cell('x', 'w', { ops: 1, hypercalls: 1 })],
      SMALL,
    );
    expect(cs[1]!.overhead).toEqual({ against: 'none', perOpNs: 300, ratio: null });
  });
});

/** one 4 KiB dma_map and one dma_unmap on a fresh bed of `design`, each counted on its own */
function mapUnmap(design: string): { map: Metrics; unmap: Metrics } {
  const bed = new Bed(designByName(design), { devices: 1 });
  bed.up();
  const sid = bed.sids[0]!;
  bed.attach(sid, 'dma');
  const pa = bed.alloc(4096);
  let c = startCollect(bed);
  const iova = bed.map(sid, pa, 4096, 'bidirectional');
  const map = c.finish();
  c = startCollect(bed);
  bed.unmap(sid, iova, 4096);
  return { map, unmap: c.finish() };
}

describe('the default profile reproduces the published 4 KiB map/unmap costs', () => {
  const p = loadProfile();
  it("none: the kernel's 0.1 / 0.7 µs (Morello, pKVM v2 cover), counted from a real map and unmap", () => {
    const { map, unmap } = mapUnmap('none');
    // a strict-mode unmap is one TLBI_NH_VA and one CMD_SYNC; the map issues nothing
    expect([map.hwCommands, unmap.hwCommands, unmap.tlbis, unmap.cmdSyncs, unmap.traps]).toEqual([
      0, 2, 1, 1, 0,
    ]);
    expect(modeledTime(map, p).totalNs).toBe(100);
    expect(modeledTime(unmap, p).totalNs).toBe(700);
  });
  it('pkvm-pv: a real 4 KiB map and unmap cost within 2× of the v2 cover’s +0.2 / +0.6 µs over none', () => {
    const none = mapUnmap('none');
    const pv = mapUnmap('pkvm-pv');
    // pKVM v1/v2: one hypercall each way; the hypervisor checks and counts the page, and on
    // unmap issues the TLBI + CMD_SYNC itself
    expect([pv.map.hypercalls, pv.map.dmaRefcounts, pv.map.hwCommands]).toEqual([1, 1, 0]);
    expect([pv.unmap.hypercalls, pv.unmap.dmaRefcounts, pv.unmap.hypCommands]).toEqual([1, 1, 2]);
    expect([pv.map.traps, pv.unmap.traps]).toEqual([0, 0]);
    const over = (d: Metrics, n: Metrics, w: string): number => {
      const [, c] = costCells(
        [
          { ...cell('none', w, {}), metrics: n },
          { ...cell('pkvm-pv', w, {}), metrics: d },
        ],
        p,
      );
      return c!.overhead!.perOpNs;
    };
    const m = over(pv.map, none.map, 'map');
    const u = over(pv.unmap, none.unmap, 'unmap');
    expect(m).toBeGreaterThanOrEqual(200 / 2);
    expect(m).toBeLessThanOrEqual(200 * 2);
    expect(u).toBeGreaterThanOrEqual(600 / 2);
    expect(u).toBeLessThanOrEqual(600 * 2);
  });
});
