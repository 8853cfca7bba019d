/**
 * The designs registry: the built-ins are `none` and one per preset, each a preset's policy
 * unchanged; user design files build their policy with makePolicy; bad files fail with the
 * file, the design, the key and the reason.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  BUILTIN_DESIGNS,
  DESIGN_NAMES,
  designByName,
  loadDesigns,
  parseDesigns,
} from '../../../scenarios/eval/designs.ts';
import { POLICY_NAMES, PRESETS, V6_GAPS } from '../../../hyp/policy/policy.ts';

describe('built-in designs', () => {
  it('are none, then every preset with its own policy and a description', () => {
    expect(DESIGN_NAMES).toEqual(['none', ...POLICY_NAMES]);
    expect(designByName('none').policy).toBeNull();
    for (const n of POLICY_NAMES) {
      const d = designByName(n);
      expect(d.policy).toBe(PRESETS[n]);
      expect(d.description.length).toBeGreaterThan(20);
    }
    // every description is one line, and the designs' descriptions differ
    const descs = BUILTIN_DESIGNS.map((d) => d.description);
    for (const s of descs) expect(s).not.toMatch(/\n/);
    expect(new Set(descs).size).toBe(descs.length);
  });

  it('an unknown name is refused with the known names listed', () => {
    expect(() => designByName('pkvm-v7')).toThrow(
      /unknown design "pkvm-v7" \(known: none, pkvm, pkvm-v6, pkvm-pv/,
    );
  });
});

describe('user design files', () => {
  it('a YAML design builds its policy from the base with the changes on top', () => {
    const [d, ...rest] = parseDesigns(
      [
        'name: v6-no-ats-gap',
        'description: pkvm-v6 with the ATSCHK gap closed and log on failure',
        'base: pkvm',
        'weaken: [sync-msi, ste-strw]',
        'failure: log',
        'allowAts: true',
      ].join('\n'),
      'mine.yaml',
    );
    expect(rest).toEqual([]);
    expect(d!.name).toBe('v6-no-ats-gap');
    const p = d!.policy!;
    expect(p.name).toBe('v6-no-ats-gap');
    expect([...p.weaken].sort()).toEqual(['ste-strw', 'sync-msi']);
    expect(p.failure).toBe('log');
    expect(p.allowAts).toBe(true);
    expect(p.cmdq).toBe('trap');
  });

  it('a JSON list; a preset base keeps its own weakenings; axes are set', () => {
    const ds = parseDesigns(
      JSON.stringify([
        { name: 'a', description: 'v6 and blocks', base: 'pkvm-v6', idmapGranule: 'block' },
        { name: 'b', description: 'pv v1', base: 'pkvm', cmdq: 'pv' },
      ]),
      'list.json',
    );
    expect(ds.map((d) => d.name)).toEqual(['a', 'b']);
    expect([...ds[0]!.policy!.weaken].sort()).toEqual([...V6_GAPS].sort());
    expect(ds[0]!.policy!.idmapGranule).toBe('block');
    expect(ds[1]!.policy!.cmdq).toBe('pv');
    // a user design is found by name next to the built-ins
    expect(designByName('b', ds)).toBe(ds[1]);
  });

  const bad: Array<[string, string, RegExp]> = [
    [
      'unknown base',
      'name: x\ndescription: d\nbase: pkvm9',
      /bad\.yaml: design, key "base": unknown base "pkvm9"/,
    ],
    [
      'unknown rule',
      'name: x\ndescription: d\nbase: pkvm\nweaken: [no-such-rule]',
      /key "weaken\.0": unknown rule "no-such-rule"/,
    ],
    [
      'bad axis value',
      'name: x\ndescription: d\nbase: pkvm\ncmdq: hypercall',
      /key "cmdq": .*"trap"/,
    ],
    ['missing description', 'name: x\nbase: pkvm', /key "description"/],
    [
      'a two-line description',
      'name: x\ndescription: "a\\nb"\nbase: pkvm',
      /key "description": a description is one line/,
    ],
    ['unknown key', 'name: x\ndescription: d\nbase: pkvm\ncolour: red', /unknown key\(s\) colour/],
    [
      'a built-in name',
      'name: pkvm\ndescription: d\nbase: pkvm',
      /key "name": duplicate design name "pkvm" \(a built-in design\)/,
    ],
    ['malformed YAML', 'name: [x\n', /bad\.yaml: not valid YAML/],
    ['not a design', '42', /bad\.yaml: design, key "\(top level\)"/],
  ];
  for (const [what, text, re] of bad)
    it(`refuses ${what}, naming the file and the key`, () => {
      expect(() => parseDesigns(text, 'bad.yaml')).toThrow(re);
    });

  it('refuses a name used twice in one file, naming the second', () => {
    const two = JSON.stringify([
      { name: 'x', description: 'd', base: 'pkvm' },
      { name: 'x', description: 'd', base: 'pkvm-v6' },
    ]);
    expect(() => parseDesigns(two, 'two.json')).toThrow(
      /two\.json: design 1, key "name": duplicate design name "x"$/,
    );
  });

  it('reads files from disk and names a file that cannot be read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'designs-'));
    const f = join(dir, 'd.yml');
    writeFileSync(f, 'name: wp\ndescription: write-protected table\nbase: pkvm-wp\n');
    expect(loadDesigns(f)[0]!.policy!.steShadowing).toBe('trap-writes');
    expect(() => loadDesigns(join(dir, 'missing.yaml'))).toThrow(/missing\.yaml: cannot be read/);
  });
});
