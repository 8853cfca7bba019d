/**
 * The import rules of the architecture, as data, and the checker that applies them to a tree of
 * sources. test/layering.test.ts runs it over the real tree (no violation) and over small
 * invented trees (each rule, broken once, is reported).
 *
 * Rules:
 *  1. A layer imports only the layers it stands on (`LAYERS`): hw imports only hw; hyp and host
 *     stand on hw; guest on hw and host (a guest kernel runs the host's driver, unchanged);
 *     scenarios on all four. Nothing imports scenarios/ or test/ from below.
 *  2. Above hw, the machine is reached only through its public seams (`HW_SEAMS`): the bus, the
 *     declarations of the architecture (fields, structures, commands, events, the VMSAv8-64
 *     format and io-pgtable), and the read-only inspection API. Device internals (the walker,
 *     caches, the device class, memory itself) are for hw/ alone: CPU actors reach MMIO and memory
 *     only through the bus. hyp/vm/ (the vSMMU) may also build on the programming-interface parts
 *     a virtual SMMU shares with the real one (`HW_VSMMU_PARTS`).
 *  1a. The hypercall ABI (`HYP_ABI`, hyp/pv/abi.ts) is the one hyp module host/ and guest/ may
 *     import, as Linux's asm/kvm_asm.h is shared by the kernel and the hypervisor; it imports
 *     nothing.
 *  3. The isolation oracle (`ORACLE`) never depends on the hypervisor and never reaches into
 *     hardware internals with a cast (`as unknown as`).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

export type Layer = 'hw' | 'hyp' | 'host' | 'guest' | 'scenarios' | 'test';

/** Which layers each layer may import (itself included). */
export const LAYERS: Readonly<Record<Layer, readonly Layer[]>> = {
  hw: ['hw'],
  hyp: ['hw', 'hyp'],
  host: ['hw', 'host'],
  guest: ['hw', 'host', 'guest'],
  scenarios: ['hw', 'hyp', 'host', 'guest', 'scenarios'],
  test: ['hw', 'hyp', 'host', 'guest', 'scenarios', 'test'],
};

/** The layers rule 2 applies to (scenarios/ and test/ build machines and may see inside them). */
export const SEAM_BOUND: readonly Layer[] = ['hyp', 'host', 'guest'];

/** hw modules every layer above may import: a path, or a folder ending in '/'. */
export const HW_SEAMS: readonly string[] = [
  'hw/bus.ts', // the MMIO trap bus: the only way a CPU actor touches MMIO and memory
  'hw/machine.ts', // the board (its layout and its parts, as types)
  'hw/log.ts', // a child logger per layer
  'hw/bits.ts', // field declarations
  'hw/probe.ts', // probe points and stats
  'hw/probes.ts', // the machine's probe points
  'hw/expected-error.ts', // the base of the expected outcomes thrown (a data abort)
  'hw/vmsa/', // the VMSAv8-64 translation table format and io-pgtable
  'hw/smmu/regs.ts', // the register map
  'hw/smmu/ste.ts', // STE and L1STD layouts
  'hw/smmu/cd.ts', // CD and L1CD layouts
  'hw/smmu/commands.ts', // command layouts and encoder
  'hw/smmu/events.ts', // event record layouts
  'hw/smmu/features.ts', // the ID registers as features
  'hw/smmu/queue.ts', // queue pointer arithmetic
  'hw/smmu/inspect.ts', // the read-only inspection API
];

/** Programming-interface parts a virtual SMMU (hyp/vm/) builds on, as the real one does. */
export const HW_VSMMU_PARTS: readonly string[] = [
  'hw/smmu/cmdq.ts',
  'hw/smmu/evtq.ts',
  'hw/smmu/gerror.ts',
  'hw/smmu/gbpa.ts',
  'hw/smmu/strtab.ts',
  'hw/smmu/regfile.ts',
];

/**
 * hyp modules the host may import: the hypercall ABI both sides share (as Linux's asm/kvm_asm.h
 * is included by the host kernel and the hypervisor). They import nothing themselves.
 */
export const HYP_ABI: readonly string[] = ['hyp/pv/abi.ts'];
const ABI_USERS: readonly Layer[] = ['host', 'guest'];

/** The isolation oracle: it judges the hypervisor, so it must not depend on it. */
export const ORACLE = ['scenarios/check/oracle.ts'];

export interface Violation {
  readonly file: string;
  readonly imports: string;
  readonly rule: 1 | 2 | 3;
  readonly why: string;
}

const SPEC = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)(['"])([^'"]+)\1/gm;

/** The relative import specifiers of a module's source, resolved to tree paths. */
export function importsOf(file: string, source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(SPEC)) {
    const spec = m[2]!;
    if (!spec.startsWith('.')) continue;
    out.push(
      normalize(join(dirname(file), spec))
        .split('\\')
        .join('/'),
    );
  }
  return out;
}

function layerOf(path: string): Layer | null {
  const top = path.split('/')[0] as Layer;
  return top in LAYERS ? top : null;
}

function inList(path: string, list: readonly string[]): boolean {
  return list.some((p) => (p.endsWith('/') ? path.startsWith(p) : path === p));
}

/** Every violation of the rules in a tree given as path → source. */
export function layeringViolations(tree: ReadonlyMap<string, string>): Violation[] {
  const out: Violation[] = [];
  for (const [file, source] of tree) {
    const from = layerOf(file);
    if (from === null) continue;
    for (const target of importsOf(file, source)) {
      const to = layerOf(target);
      if (to === null) continue;
      if (ABI_USERS.includes(from) && inList(target, HYP_ABI)) continue;
      if (inList(file, HYP_ABI)) {
        out.push({ file, imports: target, rule: 1, why: 'the shared ABI imports nothing' });
        continue;
      }
      if (!LAYERS[from].includes(to)) {
        out.push({ file, imports: target, rule: 1, why: `${from}/ may not import ${to}/` });
        continue;
      }
      if (SEAM_BOUND.includes(from) && to === 'hw') {
        const ok =
          inList(target, HW_SEAMS) ||
          (file.startsWith('hyp/vm/') && inList(target, HW_VSMMU_PARTS));
        if (!ok) {
          out.push({
            file,
            imports: target,
            rule: 2,
            why: `${target} is inside the machine: ${from}/ reaches it only through its seams`,
          });
        }
      }
      if (ORACLE.includes(file) && to === 'hyp') {
        out.push({ file, imports: target, rule: 3, why: 'the oracle must not depend on hyp/' });
      }
    }
    if (ORACLE.includes(file) && /\bas unknown as\b/.test(source)) {
      out.push({
        file,
        imports: '(cast)',
        rule: 3,
        why: 'the oracle reads hardware state only through hw/smmu/inspect.ts, never a cast',
      });
    }
  }
  return out;
}

/** The project's TypeScript sources (every layer), as path → source. */
export function readTree(root: string): Map<string, string> {
  const tree = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      if (name === 'node_modules' || name.startsWith('.')) continue;
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(ts|mjs)$/.test(name))
        tree.set(relative(root, p).split('\\').join('/'), readFileSync(p, 'utf8'));
    }
  };
  for (const layer of Object.keys(LAYERS)) walk(join(root, layer));
  return tree;
}
