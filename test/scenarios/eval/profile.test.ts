import { describe, expect, it } from 'vitest';
import { readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import {
  applyOverrides,
  COST_KINDS,
  DEFAULT_PROFILE,
  loadProfile,
  parseProfile,
  ProfileError,
  UNIT_NAMES,
  UNITS,
} from '../../../scenarios/eval/profile.ts';
import { METRICS } from '../../../scenarios/eval/metrics.ts';

type Raw = { name?: string; units: Record<string, Record<string, unknown>> };
const defaultRaw = (): Raw => parseYaml(readFileSync(DEFAULT_PROFILE, 'utf8')) as Raw;

/** the problems a profile text is refused with */
function problems(raw: unknown, file = 'bad.yaml'): string[] {
  try {
    parseProfile(toYaml(raw), file);
  } catch (e) {
    expect(e).toBeInstanceOf(ProfileError);
    expect((e as ProfileError).message.startsWith(`${file}: invalid cost profile`)).toBe(true);
    return [...(e as ProfileError).problems];
  }
  throw new Error('the profile was accepted');
}

describe('the default profile', () => {
  const p = loadProfile();
  it('validates, gives every built-in unit, each with a source and a kind', () => {
    expect(p.units.map((u) => u.name).sort()).toEqual([...UNIT_NAMES].sort());
    for (const u of p.units) {
      expect(u.source.length, u.name).toBeGreaterThan(20);
      expect(COST_KINDS).toContain(u.kind);
      expect(u.ns, u.name).toBeGreaterThanOrEqual(0);
      expect(Object.keys(METRICS)).toContain(u.metric);
    }
  });
  it('quotes the published figures (costs.md) and marks the unsourced ones as estimates', () => {
    const by = Object.fromEntries(p.units.map((u) => [u.name, u]));
    expect([by.hypercall!.ns, by.hypercall!.kind]).toEqual([292, 'quoted']);
    expect([by.trap!.ns, by.trap!.kind]).toEqual([419, 'quoted']);
    expect([by.s2Fault!.ns, by.s2Fault!.kind]).toEqual([500, 'quoted']);
    expect(by.hypercall!.source).toContain('CAOHnOryT4A2QjX9Mg57vczoakyTT+7Dq1os_DUXHAQ+McDFpSA');
    // CMD_SYNC 190 ns (SEV) with the command slot taken out
    expect(by.sync!.ns + by.command!.ns).toBe(190);
    expect(by.sync!.kind).toBe('derived');
    for (const n of ['iotlbHit', 'walkRead', 'command', 'reshadow', 'ownership'])
      expect(by[n]!.kind, n).toBe('estimated');
  });
  it('prices each metric once', () => {
    const metrics = p.units.map((u) => u.metric);
    expect(new Set(metrics).size).toBe(metrics.length);
  });
  it('reads as JSON too, by extension or by content', () => {
    const json = JSON.stringify(defaultRaw());
    expect(parseProfile(json, 'p.json').units).toHaveLength(UNIT_NAMES.length);
    expect(parseProfile(json, 'p.profile').units).toHaveLength(UNIT_NAMES.length);
    expect(parseProfile(toYaml(defaultRaw()), 'p.profile').units).toHaveLength(UNIT_NAMES.length);
  });
});

describe('bad profiles name the key and the reason', () => {
  it('an unknown top-level key', () => {
    const raw = { ...defaultRaw(), unit: {} };
    expect(problems(raw)).toEqual([
      'unknown key "unit" at the top level (allowed: name, description, units)',
    ]);
  });
  it('an unknown key inside a unit, and an unknown unit with no metric', () => {
    const raw = defaultRaw();
    raw.units.trap!.nss = 3;
    raw.units.trapp = { ns: 1, kind: 'estimated', source: 'typo' };
    const ps = problems(raw);
    expect(ps).toHaveLength(2);
    expect(ps[0]).toMatch(/^units\.trap: unknown key "nss"/);
    expect(ps[1]).toMatch(/^units\.trapp: unknown unit "trapp" \(built-in units: trap, /);
  });
  it('a missing unit', () => {
    const raw = defaultRaw();
    delete raw.units.sync;
    expect(problems(raw)).toEqual([
      `units.sync: is missing (${UNITS.sync.what}; it prices cmdSyncs): every unit needs a cost`,
    ]);
  });
  it('a negative cost, a non-numeric cost, a missing cost', () => {
    const raw = defaultRaw();
    raw.units.trap!.ns = -1;
    raw.units.hypercall!.ns = 'fast';
    delete raw.units.reshadow!.ns;
    expect(problems(raw)).toEqual([
      'units.trap.ns: must not be negative, got -1',
      'units.hypercall.ns: must be a number of ns, got "fast"',
      'units.reshadow.ns: is missing',
    ]);
  });
  it('a bad kind, a missing source', () => {
    const raw = defaultRaw();
    raw.units.walkRead!.kind = 'guessed';
    delete raw.units.iotlbHit!.source;
    const ps = problems(raw);
    expect(ps[0]).toBe(
      'units.iotlbHit.source: is missing (where the figure comes from, or why it is an estimate)',
    );
    expect(ps[1]).toBe(
      'units.walkRead.kind: "guessed" is not a kind (one of quoted, derived, estimated)',
    );
  });
  it('a metric priced twice, and a metric left unpriced', () => {
    const raw = defaultRaw();
    raw.units.wpTrap!.metric = 'mmioTraps';
    expect(problems(raw)).toEqual([
      'units.wpTrap.metric: mmioTraps is already priced by units.trap (a count is charged once)',
    ]);
    const raw2 = defaultRaw();
    raw2.units.wpTrap!.metric = 'memoryTraps';
    expect(problems(raw2)).toEqual([
      `units: no unit prices steStoreTraps (${METRICS.steStoreTraps}); units.wpTrap priced it before it was pointed elsewhere`,
    ]);
  });
  it('a unit of its own must name a real metric and a group', () => {
    const raw = defaultRaw();
    raw.units.fault = { ns: 300, kind: 'estimated', source: 'mine', metric: 'dmaFaults' };
    expect(problems(raw)).toEqual([
      'units.fault.group: is missing (one of trap, hypercall, command, sync, walk, ownership, reshadow, kernel)',
    ]);
    raw.units.fault!.group = 'trap';
    raw.units.fault!.metric = 'faults';
    expect(problems(raw)[0]).toMatch(/^units\.fault\.metric: "faults" is not a metric/);
    raw.units.fault!.metric = 'dmaFaults';
    const p = parseProfile(toYaml(raw), 'mine.yaml');
    expect(p.units.find((u) => u.name === 'fault')).toMatchObject({
      metric: 'dmaFaults',
      group: 'trap',
      ns: 300,
    });
  });
  it('not YAML, and a file that cannot be read', () => {
    expect(() => parseProfile('units: [', 'x.yaml')).toThrow(
      /^x\.yaml: invalid cost profile\n {2}not valid YAML/,
    );
    expect(() => parseProfile('{"units":', 'x.json')).toThrow(/not valid JSON/);
    const missing = join(mkdtempSync(join(tmpdir(), 'prof-')), 'nope.yaml');
    expect(() => loadProfile(missing)).toThrow(
      new RegExp(`^${missing}: invalid cost profile\\n {2}cannot read: ENOENT`),
    );
  });
  it('every problem at once', () => {
    const raw = defaultRaw();
    raw.units.trap!.ns = -5;
    raw.units.sync!.kind = 'measured';
    delete raw.units.command;
    expect(problems(raw)).toHaveLength(3);
  });
  it('a file on disk is named in its errors', () => {
    const dir = mkdtempSync(join(tmpdir(), 'prof-'));
    const f = join(dir, 'mine.yaml');
    const raw = defaultRaw();
    raw.units.trap!.kind = 'made-up';
    writeFileSync(f, toYaml(raw));
    expect(() => loadProfile(f)).toThrow(
      `${f}: invalid cost profile\n  units.trap.kind: "made-up"`,
    );
  });
});

describe('--set overrides', () => {
  const p = loadProfile();
  it('replace a unit cost and are recorded', () => {
    const q = applyOverrides(p, ['trap=838', 'sync = 0']);
    expect(q.units.find((u) => u.name === 'trap')!.ns).toBe(838);
    expect(q.units.find((u) => u.name === 'trap')!.source).toMatch(/^--set trap=838 \(was 419 ns/);
    expect(q.units.find((u) => u.name === 'sync')!.ns).toBe(0);
    expect(q.overrides).toEqual({ trap: 838, sync: 0 });
    // the profile it came from is unchanged
    expect(p.units.find((u) => u.name === 'trap')!.ns).toBe(419);
  });
  it('refuse an unknown unit, a malformed pair, a negative or non-numeric value, all at once', () => {
    let err: ProfileError | null = null;
    try {
      applyOverrides(p, ['trapp=1', 'trap', 'sync=-1', 'command=abc', 'hypercall=']);
    } catch (e) {
      err = e as ProfileError;
    }
    expect(err).toBeInstanceOf(ProfileError);
    expect(err!.problems).toHaveLength(5);
    expect(err!.problems[0]).toMatch(/^--set trapp=1: unknown unit "trapp" \(units: trap, /);
    expect(err!.problems[1]).toMatch(/^--set trap: expected unit=ns/);
    expect(err!.problems[2]).toBe('--set sync=-1: sync must not be negative, got -1');
    expect(err!.problems[3]).toBe('--set command=abc: command must be a number of ns, got "abc"');
    expect(err!.problems[4]).toBe('--set hypercall=: hypercall must be a number of ns, got ""');
  });
});
