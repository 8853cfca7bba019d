/**
 * The designs the evaluation compares: `none` (no hypervisor), one per policy preset
 * (hyp/policy/policy.ts PRESETS), and user designs read from a YAML or JSON file. A design is
 * plain data: a name, a one-line description and a HypPolicy built with makePolicy.
 *
 * A design file is one design or a list of them (or `{designs: [...]}`):
 *   name: my-design
 *   description: one line
 *   base: pkvm            # a preset name
 *   cmdq: trap            # optional: any axis of HypPolicy, validated against its choices
 *   steShadowing: cfgi
 *   smmuStage2: shadow-idmap
 *   idmapGranule: page
 *   weaken: [sync-msi]    # optional: sanitizer rules switched off (hyp/policy/policy.ts RULES)
 *   failure: panic        # optional: panic | reject | log
 *   allowAts: false       # optional
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import {
  POLICY_NAMES,
  PRESETS,
  RULE_NAMES,
  isRule,
  makePolicy,
  type PolicyName,
} from '../../hyp/policy/policy.ts';
import type { Design } from './types.ts';

/** Where each preset comes from (designs.md §1–2), one line each. */
const PRESET_DESCRIPTIONS: Readonly<Record<PolicyName, string>> = {
  pkvm: 'trap-and-emulate of the unchanged driver, shadow STEs on CFGI_STE, page idmap (pKVM v4–v6, gaps G1–G4/G6 closed)',
  'pkvm-v6':
    'pkvm with the v6-era gaps open (designs.md §1.13: G1 sync-msi, G2, G3, G4, ATSCHK, G6)',
  'pkvm-pv':
    'paravirtual IOMMU: map/unmap hypercalls, page tables owned by the hypervisor (pKVM v1/v2)',
  'pkvm-pv-idmap':
    'paravirtual identity-only: enable/disable-device hypercalls onto the idmap (pKVM v3)',
  'pkvm-wp':
    'trap-and-emulate with the host stream table write-protected, stores emulated (future work)',
  'pkvm-block':
    'trap-and-emulate with block mappings in the idmap, split on donation (future work)',
  'pkvm-shared-s2': "trap-and-emulate with the CPU's stage-2 shared with the SMMU (future work)",
};

export const NONE_DESIGN: Design = Object.freeze({
  name: 'none',
  description: 'no hypervisor: the bare machine and the unchanged Linux driver (the baseline)',
  policy: null,
});

/** The built-in designs, in the order reports list them: `none`, then the presets. */
export const BUILTIN_DESIGNS: readonly Design[] = Object.freeze([
  NONE_DESIGN,
  ...POLICY_NAMES.map((n): Design =>
    Object.freeze({ name: n, description: PRESET_DESCRIPTIONS[n], policy: PRESETS[n] }),
  ),
]);

/** The built-in names. */
export const DESIGN_NAMES: readonly string[] = BUILTIN_DESIGNS.map((d) => d.name);

/** A built-in design (or one of `extra`) by name; the error lists the known names. */
export function designByName(name: string, extra: readonly Design[] = []): Design {
  const all = [...BUILTIN_DESIGNS, ...extra];
  const d = all.find((x) => x.name === name);
  if (!d) throw new Error(`unknown design "${name}" (known: ${all.map((x) => x.name).join(', ')})`);
  return d;
}

const zUserDesign = z
  .object({
    name: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/, { message: 'a design name is letters, digits, _, . or -' }),
    description: z
      .string()
      .min(1)
      .regex(/^[^\n]*$/, { message: 'a description is one line' }),
    base: z.enum(POLICY_NAMES, {
      error: (iss) => `unknown base "${String(iss.input)}" (a preset: ${POLICY_NAMES.join(', ')})`,
    }),
    cmdq: z.enum(['trap', 'pv', 'pv-idmap']).optional(),
    steShadowing: z.enum(['cfgi', 'trap-writes']).optional(),
    smmuStage2: z.enum(['shadow-idmap', 'cpu-shared']).optional(),
    idmapGranule: z.enum(['page', 'block']).optional(),
    weaken: z
      .array(
        z.string().refine(isRule, {
          error: (iss) => `unknown rule "${String(iss.input)}" (rules: ${RULE_NAMES.join(', ')})`,
        }),
      )
      .optional(),
    failure: z.enum(['panic', 'reject', 'log']).optional(),
    allowAts: z.boolean().optional(),
  })
  .strict();

type UserDesign = z.infer<typeof zUserDesign>;

/** An error in a design file: the file, and each problem with its key. */
export class DesignFileError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: ${problems.join('; ')}`);
    this.name = 'DesignFileError';
  }
}

function toDesign(u: UserDesign): Design {
  const policy = makePolicy(u.base, {
    ...(u.cmdq !== undefined ? { cmdq: u.cmdq } : {}),
    ...(u.steShadowing !== undefined ? { steShadowing: u.steShadowing } : {}),
    ...(u.smmuStage2 !== undefined ? { smmuStage2: u.smmuStage2 } : {}),
    ...(u.idmapGranule !== undefined ? { idmapGranule: u.idmapGranule } : {}),
    ...(u.weaken !== undefined ? { weaken: u.weaken.filter(isRule) } : {}),
    ...(u.failure !== undefined ? { failure: u.failure } : {}),
    ...(u.allowAts !== undefined ? { allowAts: u.allowAts } : {}),
  });
  // the policy is reported under the design's own name
  return Object.freeze({
    name: u.name,
    description: u.description,
    policy: Object.freeze({ ...policy, name: u.name }),
  });
}

/**
 * Parse design text (YAML, or JSON, which YAML reads too) named `file` in errors. Names must
 * be new: neither a built-in's nor another's in the file.
 */
export function parseDesigns(text: string, file: string): Design[] {
  let raw: unknown;
  try {
    raw = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new DesignFileError(file, [
      `not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${(e as Error).message}`,
    ]);
  }
  const list: unknown[] = Array.isArray(raw)
    ? raw
    : raw !== null && typeof raw === 'object' && 'designs' in raw
      ? ((raw as { designs: unknown }).designs as unknown[])
      : [raw];
  if (!Array.isArray(list) || list.length === 0)
    throw new DesignFileError(file, ['expected a design, a list of designs or {designs: [...]}']);
  const problems: string[] = [];
  const out: Design[] = [];
  const seen = new Set<string>(DESIGN_NAMES);
  list.forEach((item, i) => {
    const where = list.length > 1 || Array.isArray(raw) ? `design ${i}` : 'design';
    const r = zUserDesign.safeParse(item);
    if (!r.success) {
      for (const iss of r.error.issues) {
        const key = iss.path.length ? iss.path.join('.') : '(top level)';
        const msg =
          iss.code === 'unrecognized_keys' ? `unknown key(s) ${iss.keys.join(', ')}` : iss.message;
        problems.push(`${where}, key "${key}": ${msg}`);
      }
      return;
    }
    if (seen.has(r.data.name)) {
      problems.push(
        `${where}, key "name": duplicate design name "${r.data.name}"${DESIGN_NAMES.includes(r.data.name) ? ' (a built-in design)' : ''}`,
      );
      return;
    }
    seen.add(r.data.name);
    out.push(toDesign(r.data));
  });
  if (problems.length) throw new DesignFileError(file, problems);
  return out;
}

/** Read a design file (.yaml, .yml or .json). */
export function loadDesigns(file: string): Design[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new DesignFileError(file, [`cannot be read: ${(e as Error).message}`]);
  }
  return parseDesigns(text, file);
}
