/**
 * The built-in guest-attacks catalog (scenarios/builtin/guest-attacks/): malicious-guest
 * attacks on the vSMMU, one file each, named after their row of designs.md §7.2 (X1–X10).
 * Every run must pass its own expectations with isolation intact and no hypervisor panic;
 * the per-guest counters of the JSON result then show what each expectation in the steps
 * cannot: the work the hypervisor did (or did not do) for the attack.
 */
import { describe, expect, it } from 'vitest';
import { loadScenarios, type Scenario } from '../../../scenarios/engine/loader.ts';
import { runScenario, type RunResult } from '../../../scenarios/engine/runner.ts';

const attacks = loadScenarios('guest-attacks');
const byName = (n: string): Scenario => {
  const s = attacks.find((a) => a.name === n);
  if (!s) throw new Error(`no attack ${n} in the catalog`);
  return s;
};

type Stats = { [k: string]: number | Record<string, number> } & {
  physicalByOpcode: Record<string, number>;
  commandsByOpcode: Record<string, number>;
};
const stats = (r: RunResult, guest = 'vm1'): Stats =>
  r.guests!.find((g) => g.name === guest)!.stats as Stats;
/** the guest's counters after the first `n` steps */
const statsAfter = (sc: Scenario, n: number, guest = 'vm1'): Stats =>
  stats(runScenario(sc, { stopAfter: n }), guest);
/** what changed in a per-opcode count between two points */
function diff(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)]))
    if ((b[k] ?? 0) !== (a[k] ?? 0)) out[k] = (b[k] ?? 0) - (a[k] ?? 0);
  return out;
}
const stepIndex = (
  sc: Scenario,
  pred: (s: Scenario['steps'][number]) => boolean,
  from = 0,
): number => {
  const i = sc.steps.findIndex((s, k) => k >= from && pred(s));
  if (i < 0) throw new Error(`${sc.name}: no such step`);
  return i;
};
const isIssue = (s: Scenario['steps'][number]): boolean => s.op === 'driver' && s.call === 'issue';

describe('the guest-attacks catalog', () => {
  const results = new Map(attacks.map((sc) => [sc.name, runScenario(sc)]));

  it('holds at least 12 named attacks, each citing its row of designs.md §7.2, together covering X1–X10', () => {
    expect(attacks.length).toBeGreaterThanOrEqual(12);
    const rows = new Set<number>();
    for (const a of attacks) {
      const m = /^\[7\.2 X(\d+)\] /.exec(a.description);
      expect(m, a.name).not.toBeNull();
      expect(a.name.startsWith(`x${m![1]!.padStart(2, '0')}-`), a.name).toBe(true);
      expect(a.machine.hyp, a.name).toBe('pkvm');
      expect(a.steps.at(-1), a.name).toMatchObject({ op: 'isolation', expect: 'ok' });
      rows.add(Number(m![1]));
    }
    expect([...rows].sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('every attack is contained: each run passes its expectations, the hypervisor never panics, isolation holds', () => {
    for (const [name, r] of results) {
      expect(r.ok, `${name}: ${JSON.stringify(r.failed)}`).toBe(true);
      expect(r.hyp!.panics, name).toEqual([]);
      expect(r.isolation, name).toEqual({ ok: true, breaches: [] });
      expect(r.guests!.length, name).toBeGreaterThan(0);
    }
  });

  it('X1: an ILLEGAL guest STE is counted as refused (badSte) and reported; a reserved Config is not', () => {
    expect(stats(results.get('x01-config-nested')!).badSte).toBe(1);
    expect(stats(results.get('x01-config-s2')!).badSte).toBe(1);
    // the stray EL2/ATS/attribute/stage-2 fields are dropped (not ILLEGAL on this vSMMU); S1STALLD=1 is
    expect(stats(results.get('x01-ste-fields')!).badSte).toBe(1);
    expect(stats(results.get('x01-config-reserved')!).badSte).toBe(0);
    expect(stats(results.get('x01-config-reserved')!).eventsInjected).toBe(0);
  });

  it('X3: a CFGI_STE for a stream the guest does not own costs one injected event and no physical command', () => {
    for (const [name, guests] of [
      ['x03-unassigned-vsid', ['vm1']],
      ['x03-other-guest-vsid', ['vm1', 'vm2']],
    ] as const) {
      const sc = byName(name);
      const i = stepIndex(
        sc,
        (s) =>
          isIssue(s) &&
          JSON.stringify(s.commands).includes('"CFGI_STE"') &&
          (s.actor ?? 'host') === 'guest:vm1' &&
          !JSON.stringify(s.commands).includes('"StreamID":0'),
      );
      for (const g of guests) {
        const [before, after] = [statsAfter(sc, i, g), statsAfter(sc, i + 1, g)];
        expect(diff(before.physicalByOpcode, after.physicalByOpcode), `${name} ${g}`).toEqual({});
        expect(after.physCommands, `${name} ${g}`).toBe(before.physCommands);
      }
      const [b1, a1] = [statsAfter(sc, i), statsAfter(sc, i + 1)];
      expect((a1.eventsInjected as number) - (b1.eventsInjected as number), name).toBe(
        name === 'x03-other-guest-vsid' ? 2 : 1,
      );
    }
  });

  it("X4: walks outside the guest's RAM fault at stage 2 and stay with the hypervisor; failed table reads go to the guest", () => {
    expect(stats(results.get('x04-s1ctxptr-outside')!)).toMatchObject({
      s2Faults: 1,
      eventsInjected: 0,
    });
    expect(stats(results.get('x04-ttb0-outside')!)).toMatchObject({
      s2Faults: 1,
      eventsInjected: 0,
    });
    expect(stats(results.get('x04-s1-maps-outside')!)).toMatchObject({
      s2Faults: 3,
      eventsInjected: 0,
    });
    expect(results.get('x04-s1-maps-outside')!.hyp!.guestFaultsKept).toBe(3);
    // F_STE_FETCH when the vSMMU's read of the L2 table failed, then C_BAD_STE of the DMA
    expect(stats(results.get('x04-l1std-outside')!)).toMatchObject({
      s2Faults: 0,
      eventsInjected: 2,
    });
    // CERROR_ABT on the first fetch, and again after the guest's acknowledgement
    expect(stats(results.get('x04-cmdq-outside')!)).toMatchObject({ cmdErrors: 2 });
    expect(stats(results.get('x04-cpu-outside')!)).toMatchObject({ dataAborts: 6 });
  });

  it('X5: the flood is consumed in budget-sized pieces: two budget stops for 520 commands, then the illegal entry', () => {
    const s = stats(results.get('x05-cmdq-flood')!);
    // 256 on the CMDQEN write, 256 on the first CONS read (each stopped with more pending), 8 on the second
    expect(s.budgetStops).toBe(2);
    expect(s.commandsByOpcode.PREFETCH_CONFIG).toBe(520);
    expect(s.cmdErrors).toBe(1);
    // PREFETCH_CONFIG is a hint: none of the 520 cost a physical command
    expect(s.physicalByOpcode.PREFETCH_CONFIG ?? 0).toBe(0);
  });

  it("X6: a TLBI flood costs one physical TLBI per guest TLBI (with the guest's VMID) and one physical CMD_SYNC per batch", () => {
    const sc = byName('x06-tlbi-flood');
    const i = stepIndex(sc, (s) => isIssue(s) && (s.commands as unknown[]).length === 80);
    const [before, after] = [statsAfter(sc, i), statsAfter(sc, i + 1)];
    expect(diff(before.commandsByOpcode, after.commandsByOpcode)).toEqual({
      TLBI_NH_VA: 64,
      TLBI_NSNH_ALL: 16,
      CMD_SYNC: 1,
    });
    expect(diff(before.physicalByOpcode, after.physicalByOpcode)).toEqual({
      TLBI_NH_VA: 64,
      TLBI_S12_VMALL: 16,
      CMD_SYNC: 1,
    });
    expect(after.budgetStops).toBe(0);
  });

  it('X6: commands of a stage-2/hypervisor SMMU are five guest command errors and no physical command', () => {
    const sc = byName('x06-s2-commands');
    const i = stepIndex(sc, (s) => s.op === 'memwrite');
    const [before, after] = [statsAfter(sc, i), stats(results.get('x06-s2-commands')!)];
    expect(diff(before.physicalByOpcode, after.physicalByOpcode)).toEqual({});
    expect((after.cmdErrors as number) - (before.cmdErrors as number)).toBe(5);
  });

  it('X7: events the guest cannot take are counted as lost, never queued elsewhere', () => {
    expect(stats(results.get('x07-evtq-disabled')!)).toMatchObject({
      eventsLost: 3,
      eventsInjected: 1,
    });
    expect(stats(results.get('x07-evtq-full')!)).toMatchObject({
      eventsLost: 2,
      eventsInjected: 3,
    });
    expect(stats(results.get('x07-evtq-abort')!)).toMatchObject({
      eventsLost: 2,
      eventsInjected: 0,
    });
  });

  it("every attack's expectations can fail: changing one expected value of each attack fails its run", () => {
    // a sample of the assertions the catalog relies on, each made wrong on purpose
    const wrong: Array<
      [string, (s: Record<string, unknown>) => boolean, (s: Record<string, unknown>) => void]
    > = [
      ['x05-cmdq-flood', (s) => s.op === 'read' && s.expect === 0x200n, (s) => (s.expect = 0x208n)],
      ['x08-evtq-huge', (s) => s.op === 'read' && s.expect === 0x8_0000n, (s) => (s.expect = 0n)],
      [
        'x07-evtq-full',
        (s) => s.op === 'read' && s.expect === 0x8000_0002n,
        (s) => (s.expect = 0x8000_0003n),
      ],
      [
        'x01-config-nested',
        (s) => s.op === 'expectSte' && (s.fields as Record<string, unknown>).V === 0 && s.sid === 9,
        (s) => (s.fields = { V: 1 }),
      ],
      [
        'x03-other-guest-vsid',
        (s) =>
          s.op === 'driver' &&
          s.call === 'drainEvents' &&
          JSON.stringify(s.expectSids) === '[1,16]',
        (s) => (s.expectSids = [1, 1]),
      ],
    ];
    for (const [name, pick, change] of wrong) {
      const sc = structuredClone(byName(name));
      const st = sc.steps.find((s) => pick(s));
      expect(st, name).toBeDefined();
      change(st!);
      expect(runScenario(sc).ok, name).toBe(false);
    }
  });
});
