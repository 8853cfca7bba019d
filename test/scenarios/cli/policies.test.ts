import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { smmulab } from './in-process.ts';
import { evalRunner, type EvalRunner } from '../../../scenarios/cli/policies.ts';
import { PV_ATTACKS } from '../../../host/malicious/pv-attacks.ts';
import { POLICY_NAMES, PRESETS, makePolicy, type PolicyName } from '../../../hyp/policy/policy.ts';
import { METRIC_NAMES, zeroMetrics, type Metrics } from '../../../scenarios/eval/metrics.ts';
import { loadProfile } from '../../../scenarios/eval/profile.ts';
import { modeledTime } from '../../../scenarios/eval/cost.ts';
import type { CellResult, Design } from '../../../scenarios/eval/types.ts';
import { attackCatalog, type SecurityRow } from '../../../scenarios/eval/security.ts';
import type { Overhead } from '../../../scenarios/eval/cost.ts';

/** one object of the --json array */
interface CellJson {
  design: string;
  workload: string;
  metrics: Metrics;
  modeled: { totalNs: number; byGroup: Record<string, number>; overhead: Overhead | null };
  security: SecurityRow | null;
  profile: {
    name: string;
    overrides: Record<string, number>;
    units: Record<string, { ns: number }>;
  };
}

/*
 * These tests drive the command with a stand-in runner whose cells carry constructed counts, so
 * that what they check is the command's own work (input checking, pricing, the table, the JSON,
 * the security rows and the exit status) on counts chosen to exercise it, breaches included.
 * The command on the real runner is tested at the end of the file.
 */
const DESIGNS: Design[] = [
  { name: 'none', description: 'no hypervisor', policy: null },
  ...POLICY_NAMES.map((n) => ({ name: n, description: n, policy: PRESETS[n] })),
];
let calls: Array<{ designs: string[]; workloads: string[] }> = [];
let breachOn: string | null = null;

/** constructed counts: a trap-and-emulate design traps, a pv one makes hypercalls */
function fakeMetrics(d: Design, w: string): Metrics {
  const m = zeroMetrics();
  m.ops = w === 'boot' ? 1 : 8;
  m.maps = m.unmaps = w === 'boot' ? 0 : 4;
  m.hwCommands = 2 * m.unmaps + 3;
  m.cmdSyncs = m.unmaps + 1;
  if (d.policy?.cmdq === 'trap') m.traps = m.mmioTraps = 5 * m.ops + 40;
  if (d.policy && d.policy.cmdq !== 'trap') m.hypercalls = m.maps + m.unmaps + 2;
  return m;
}
const fake: EvalRunner = {
  designs: DESIGNS,
  designByName: (n) => DESIGNS.find((d) => d.name === n),
  loadDesignFile: (file) => {
    const raw = JSON.parse(readFileSync(file, 'utf8')) as {
      name: string;
      base: PolicyName;
      weaken?: string[];
    };
    if (!POLICY_NAMES.includes(raw.base)) throw new Error(`base: unknown preset "${raw.base}"`);
    return [
      {
        name: raw.name,
        description: 'user',
        policy: makePolicy(raw.base, { weaken: (raw.weaken ?? []) as never }),
      },
    ];
  },
  workloads: ['boot', 'storage'],
  runMatrix: (designs, workloads, _params, onProgress) => {
    calls.push({ designs: designs.map((d) => d.name), workloads: [...workloads] });
    const out: CellResult[] = [];
    for (const d of designs)
      for (const w of workloads) {
        const c: CellResult = {
          design: d.name,
          workload: w,
          params: {},
          metrics: fakeMetrics(d, w),
          isolation: d.name === breachOn ? { ok: false, breaches: 1 } : { ok: true, breaches: 0 },
        };
        out.push(c);
        onProgress?.(c, out.length, designs.length * workloads.length);
      }
    return out;
  },
};

const original = evalRunner.load;
beforeEach(() => {
  evalRunner.load = async () => fake;
  calls = [];
  breachOn = null;
});
afterEach(() => {
  evalRunner.load = original;
});

describe('smmulab policies (a stand-in runner with constructed counts)', () => {
  it('runs every design × workload, none first, a table within 100 columns, progress on stderr', async () => {
    const r = await smmulab('policies');
    expect(r.status, r.stderr).toBe(0);
    expect(calls).toEqual([
      { designs: DESIGNS.map((d) => d.name), workloads: ['boot', 'storage'] },
    ]);
    const lines = r.stdout.split('\n');
    for (const l of lines) expect(l.length, l).toBeLessThanOrEqual(100);
    for (const d of DESIGNS) expect(r.stdout).toContain(`│ ${d.name.padEnd(14)} │`);
    // none is the baseline, and with no hypervisor its isolation is no verdict
    expect(r.stdout).toMatch(/│ none +│ storage +│ .*│ baseline +│ - +│/);
    expect(r.stderr.match(/^policies: \[\d+\/16\] /gm)).toHaveLength(16);
  });

  it('prices each cell by the profile and shows the overhead per op against none', async () => {
    const r = await smmulab('policies', '--policies', 'pkvm', '--workloads', 'storage');
    expect(r.status, r.stderr).toBe(0);
    // none is added as the baseline
    expect(calls[0]!.designs).toEqual(['none', 'pkvm']);
    const p = loadProfile();
    const none = modeledTime(fakeMetrics(DESIGNS[0]!, 'storage'), p).perOpNs;
    const pkvm = modeledTime(fakeMetrics(DESIGNS[1]!, 'storage'), p).perOpNs;
    const row = r.stdout.split('\n').find((l) => l.startsWith('│ pkvm '))!;
    expect(row).toContain(`│ ${(pkvm / 1000).toFixed(2)} `);
    // the ratio to three significant figures (10.66 shows as 10.7)
    const ratio = pkvm / none;
    expect(row).toContain(
      `+${((pkvm - none) / 1000).toFixed(2)} ×${ratio.toFixed(ratio < 10 ? 2 : ratio < 100 ? 1 : 0)}`,
    );
  });

  it('--json: one object per (design, workload) with every metric, the modeled time, its breakdown and the profile', async () => {
    const r = await smmulab(
      'policies',
      '--policies',
      'pkvm,pkvm-pv',
      '--json',
      '--set',
      'trap=838',
    );
    expect(r.status, r.stderr).toBe(0);
    const cells = JSON.parse(r.stdout) as CellJson[];
    expect(cells.map((c) => `${c.design}/${c.workload}`)).toEqual([
      'none/boot',
      'none/storage',
      'pkvm/boot',
      'pkvm/storage',
      'pkvm-pv/boot',
      'pkvm-pv/storage',
    ]);
    const p = loadProfile();
    for (const c of cells) {
      expect(Object.keys(c.metrics).sort()).toEqual([...METRIC_NAMES].sort());
      const base = modeledTime(c.metrics, p).totalNs;
      // trap doubled from 419 to 838: the total rises by exactly mmioTraps × 419
      expect(c.modeled.totalNs).toBe(base + c.metrics.mmioTraps * 419);
      const sum = Object.values(c.modeled.byGroup).reduce((a, b) => a + b);
      expect(sum).toBeCloseTo(c.modeled.totalNs, 6);
      expect(c.profile.name).toBe('default');
      expect(c.profile.overrides).toEqual({ trap: 838 });
      expect(c.profile.units.trap.ns).toBe(838);
      expect(c.security).toBeNull();
    }
    expect(cells[0]!.modeled.overhead).toBeNull();
    expect(cells[3]!.modeled.overhead!.against).toBe('none');
  });

  it('--security --json: a security row per design (pv: the MMIO catalog n/a; none: the bare forms)', async () => {
    const r = await smmulab(
      'policies',
      '--policies',
      'pkvm-pv',
      '--workloads',
      'boot',
      '--security',
      '--json',
    );
    expect(r.status, r.stderr).toBe(0);
    const cells = JSON.parse(r.stdout) as CellJson[];
    expect(cells.map((c) => [c.design, c.security!.design, c.security!.surface])).toEqual([
      ['none', 'none', 'bare'],
      ['pkvm-pv', 'pkvm-pv', 'pv'],
    ]);
    // the MMIO catalog is n/a; the hypercall attacks for pv run, and each is blocked
    const pv = cells[1]!.security!;
    const pvOwn = PV_ATTACKS.filter((a) => a.kinds.includes('pv')).length;
    expect(pv.attacks.length).toBe(attackCatalog().length + PV_ATTACKS.length);
    expect(pv.notApplicable).toBe(pv.attacks.length - pvOwn);
    expect([pv.blocked, pv.breached]).toEqual([pvOwn, 0]);
    expect(pv.givesUp[0]).toMatch(/^cmdq pv: /);
    // none: every attack with a bare form breaches, and that is expected (exit 0)
    const none = cells[0]!.security!;
    expect(none.breached).toBeGreaterThanOrEqual(12);
    expect(none.unexpected).toBe(0);
    expect(r.stderr).toMatch(/^policies: security \[2\/2\] pkvm-pv$/m);
  });

  it('--security: the table shows the security rows within 100 columns', async () => {
    const r = await smmulab(
      'policies',
      '--policies',
      'pkvm-pv-idmap',
      '--workloads',
      'boot',
      '--security',
    );
    expect(r.status, r.stderr).toBe(0);
    for (const l of r.stdout.split('\n')) expect(l.length, l).toBeLessThanOrEqual(100);
    const own = PV_ATTACKS.filter((a) => a.kinds.includes('pv-idmap')).length;
    const na = attackCatalog().length + PV_ATTACKS.length - own;
    expect(r.stdout).toMatch(
      new RegExp(`│ pkvm-pv-idmap +│ ${own} +│ 0 +│ 0 +│ 0 +│ ${na} +│ 0 +│ cmdq pv-idmap`),
    );
  });

  it('exit 1 on a breach where the design should block it; a design with rules off may breach', async () => {
    breachOn = 'pkvm';
    expect((await smmulab('policies', '--policies', 'pkvm')).status).toBe(1);
    breachOn = 'pkvm-v6';
    const r = await smmulab('policies', '--policies', 'pkvm-v6');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/│ pkvm-v6 +│ boot .*│ BREACH │/);
  });

  it('user design files join the designs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pol-'));
    const f = join(dir, 'mine.json');
    writeFileSync(f, JSON.stringify({ name: 'mine', base: 'pkvm', weaken: ['sync-msi'] }));
    const r = await smmulab('policies', '--policies', 'pkvm', '--design', f, '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(calls[0]!.designs).toEqual(['none', 'pkvm', 'mine']);
  });

  it('bad input: every problem named (option, file, key, why), exit 2, nothing run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pol-'));
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ name: 'x', base: 'pkvm-xx' }));
    const prof = join(dir, 'p.yaml');
    writeFileSync(prof, 'units:\n  trap: { ns: -3, kind: quoted, source: me }\n');
    const r = await smmulab(
      'policies',
      '--policies',
      'pkvm,pkvm-v7',
      '--workloads',
      'boot,netrx',
      '--design',
      bad,
      '--profile',
      prof,
    );
    expect(r.status).toBe(2);
    expect(calls).toEqual([]);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(
      'smmulab policies: --policies pkvm-v7: no such design (designs: none, pkvm, ',
    );
    expect(r.stderr).toContain(
      'smmulab policies: --workloads netrx: no such workload (workloads: boot, storage)',
    );
    expect(r.stderr).toContain(`smmulab policies: --design ${bad}: base: unknown preset "pkvm-xx"`);
    expect(r.stderr).toContain(
      `smmulab policies: --profile ${prof}: units.trap.ns: must not be negative, got -3`,
    );
    expect(r.stderr).toContain(`--profile ${prof}: units.sync: is missing`);
    const s = await smmulab('policies', '--set', 'trapp=3', '--set', 'sync=x');
    expect(s.status).toBe(2);
    expect(s.stderr).toMatch(
      /^smmulab policies: --set trapp=3: unknown unit "trapp" \(units: trap, /m,
    );
    expect(s.stderr).toContain(
      'smmulab policies: --set sync=x: sync must be a number of ns, got "x"',
    );
    const u = await smmulab('policies', '--profile', join(dir, 'missing.yaml'));
    expect(u.status).toBe(2);
    expect(u.stderr).toContain(`--profile ${join(dir, 'missing.yaml')}: cannot read: ENOENT`);
    expect(calls).toEqual([]);
  });
});

describe('smmulab policies on the real runner', () => {
  it('net-rx under pkvm and pkvm-pv: the counts the designs imply, priced against none', async () => {
    evalRunner.load = original; // the real matrix runner and designs
    const r = await smmulab(
      'policies',
      '--policies',
      'pkvm,pkvm-pv',
      '--workloads',
      'net-rx',
      '--json',
    );
    expect(r.status, r.stderr).toBe(0);
    const cells = JSON.parse(r.stdout) as CellJson[];
    expect(cells.map((c) => c.design)).toEqual(['none', 'pkvm', 'pkvm-pv']);
    const [none, pkvm, pv] = cells as [CellJson, CellJson, CellJson];
    // 512 packets: a map and an unmap each
    for (const c of cells) expect([c.metrics.maps, c.metrics.unmaps]).toEqual([512, 512]);
    expect([none.metrics.traps, none.metrics.hypercalls]).toEqual([0, 0]);
    expect(pkvm.metrics.hypercalls).toBe(0);
    expect(pkvm.metrics.traps).toBe(2 * 512); // each unmap's PROD write and CONS poll
    expect(pv.metrics.traps).toBe(0);
    expect(pv.metrics.hypercalls).toBe(1024); // one per map and per unmap
    expect(pv.modeled.overhead!.against).toBe('none');
    expect(pv.modeled.overhead!.perOpNs).toBeGreaterThan(0);
    expect(pv.modeled.overhead!.perOpNs).toBeLessThan(pkvm.modeled.overhead!.perOpNs);
  });
});
