import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { importsOf, layeringViolations, readTree } from './layering.ts';

const ROOT = join(import.meta.dirname, '..');

describe('layering: the import rules hold over the tree', () => {
  it('no module of hw, hyp, host, guest or scenarios breaks a rule', () => {
    const tree = readTree(ROOT);
    expect(tree.size).toBeGreaterThan(100);
    expect(layeringViolations(tree)).toEqual([]);
  });
});

describe('layering: each rule, broken once, is reported', () => {
  const ok = new Map([
    ['hw/bus.ts', "import { PhysicalMemory } from './memory.ts';"],
    ['hyp/pkvm.ts', "import type { MmioBus } from '../hw/bus.ts';"],
  ]);

  it('a well-layered tree has no violation', () => {
    expect(layeringViolations(ok)).toEqual([]);
  });

  it('rule 1: hw importing the hypervisor (a layer above it)', () => {
    const tree = new Map([...ok, ['hw/smmu/smmu.ts', "import { Pkvm } from '../../hyp/pkvm.ts';"]]);
    expect(layeringViolations(tree)).toEqual([
      { file: 'hw/smmu/smmu.ts', imports: 'hyp/pkvm.ts', rule: 1, why: 'hw/ may not import hyp/' },
    ]);
  });

  it('rule 1: the hypervisor importing the host, and the host importing scenarios', () => {
    const tree = new Map([
      ['hyp/x.ts', "import type { ArmSmmuV3 } from '../host/driver/driver.ts';"],
      ['host/y.ts', "const m = await import('../scenarios/engine/runner.ts');"],
    ]);
    expect(layeringViolations(tree).map((v) => [v.file, v.rule, v.why])).toEqual([
      ['hyp/x.ts', 1, 'hyp/ may not import host/'],
      ['host/y.ts', 1, 'host/ may not import scenarios/'],
    ]);
  });

  it('rule 1a: the host may import the hypercall ABI and no other hyp module; the ABI imports nothing', () => {
    const tree = new Map([
      ['host/pv/iommu.ts', "import { PV_CALLS } from '../../hyp/pv/abi.ts';"],
      ['host/pv/bad.ts', "import { PvDomains } from '../../hyp/pv/domains.ts';"],
      ['hyp/pv/abi.ts', "import { PAGE } from '../mem/ownership.ts';"],
    ]);
    expect(layeringViolations(tree).map((v) => [v.file, v.imports, v.rule])).toEqual([
      ['host/pv/bad.ts', 'hyp/pv/domains.ts', 1],
      ['hyp/pv/abi.ts', 'hyp/mem/ownership.ts', 1],
    ]);
  });

  it('rule 2: the host driver reaching into the walker or memory instead of the bus', () => {
    const tree = new Map([
      [
        'host/driver/z.ts',
        "import { walk } from '../../hw/smmu/walk.ts';\nimport { PhysicalMemory } from '../../hw/memory.ts';",
      ],
      ['host/driver/ok.ts', "import { STE } from '../../hw/smmu/ste.ts';"],
    ]);
    expect(layeringViolations(tree).map((v) => [v.imports, v.rule])).toEqual([
      ['hw/smmu/walk.ts', 2],
      ['hw/memory.ts', 2],
    ]);
  });

  it('rule 2: the vSMMU may build on the command queue part, the host may not', () => {
    const src = "import { CommandQueue } from '../../hw/smmu/cmdq.ts';";
    const tree = new Map([
      ['hyp/vm/vsmmu.ts', src],
      ['host/driver/q.ts', src],
    ]);
    expect(layeringViolations(tree).map((v) => v.file)).toEqual(['host/driver/q.ts']);
  });

  it('rule 3: the oracle importing the hypervisor, or casting into hardware caches', () => {
    const tree = new Map([
      [
        'scenarios/check/oracle.ts',
        "import { Ownership } from '../../hyp/mem/ownership.ts';\nconst c = smmu.tlb as unknown as Cache;",
      ],
    ]);
    expect(layeringViolations(tree).map((v) => [v.imports, v.rule])).toEqual([
      ['hyp/mem/ownership.ts', 3],
      ['(cast)', 3],
    ]);
  });

  it('import specifiers: from, dynamic import(), re-exports and side-effect imports', () => {
    const src = [
      "import { a } from './a.ts';",
      "export { b } from '../b.ts';",
      "import './c.ts';",
      "const d = await import('./d/d.ts');",
      "import pino from 'pino';",
    ].join('\n');
    expect(importsOf('hw/smmu/x.ts', src)).toEqual([
      'hw/smmu/a.ts',
      'hw/b.ts',
      'hw/smmu/c.ts',
      'hw/smmu/d/d.ts',
    ]);
  });
});
