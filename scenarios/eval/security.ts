/**
 * The security row of each design: the host attack catalog (scenarios/builtin/pkvm-attacks)
 * run under the design, each attack judged by the isolation oracle alone. An attack is
 * *blocked* when the run ends with no breach (the run's `isolation`), whatever the catalog's
 * pkvm-specific expectations say; a hypervisor panic is an availability outcome, reported beside
 * the verdict, never as a breach or a block by itself.
 *
 * Which catalog steps run: a scenario's `when` steps name the hypervisor they belong to. A design
 * that has every V6_GAPS rule off runs the `pkvm-v6` steps, every other hypervisor design the
 * `pkvm` steps (scenarios/engine/runner.ts RunOptions.policy boots the design itself); `none`
 * runs the `none` steps of the attacks that have a bare form (a `none` variant) and marks the
 * rest n/a. A paravirtual design (policy.cmdq 'pv' or 'pv-idmap') gives the host no access to the
 * SMMU, so the MMIO catalog is n/a there; the paravirtual attacks run in their own place below.
 *
 * Also here, as data: what each design gives up (per design-axis choice and per rule switched
 * off), and which catalog attacks exploit the gap a rule closes (the attacks whose description
 * cites the rule's gap tag, G1…G6, from RULES).
 */
import { loadScenarios, type HypMode, type Scenario } from '../engine/loader.ts';
import { runScenario } from '../engine/runner.ts';
import {
  RULES,
  RULE_NAMES,
  V6_GAPS,
  type HypPolicy,
  type RuleName,
} from '../../hyp/policy/policy.ts';
import type { Design } from './types.ts';
import { Bed, HYP_MEMORY } from './bed.ts';
import { PV_ATTACKS, PvAttackAccepted } from '../../host/malicious/pv-attacks.ts';
import { HypPanic } from '../../hyp/policy/failure.ts';

const HYP_RANGE = { hypBase: HYP_MEMORY.base, hypSize: HYP_MEMORY.size } as const;

/** The catalog the security row runs. */
export const ATTACK_CATALOG = 'pkvm-attacks';

export type AttackVerdict = 'blocked' | 'breached' | 'n/a' | 'error';

export interface AttackOutcome {
  readonly attack: string;
  readonly verdict: AttackVerdict;
  /** why n/a, or the error that stopped the run */
  readonly why?: string;
  /** the hypervisor panicked (availability: the machine stopped), with the rule */
  readonly panic?: { readonly rule: string; readonly reason: string };
  /** the breach paths the oracle reported (dma, msi, ats-translated, …) */
  readonly paths?: readonly string[];
  /** the design is not expected to block it (no hypervisor, or a rule it exploits is off) */
  readonly expected?: boolean;
}

export interface SecurityRow {
  readonly design: string;
  /** which attacks apply: the MMIO catalog, the paravirtual attacks, or the catalog's bare forms */
  readonly surface: 'mmio' | 'pv' | 'bare';
  /** the `when` steps the catalog ran with */
  readonly steps: HypMode;
  readonly blocked: number;
  readonly breached: number;
  /** breaches the design should have blocked (it has a hypervisor and no rule off) */
  readonly unexpected: number;
  readonly panics: number;
  readonly notApplicable: number;
  readonly errors: number;
  /** what the design gives up, one line each */
  readonly givesUp: readonly string[];
  /** the catalog attacks that exploit a gap the design leaves open (a rule it has off) */
  readonly gapAttacks: readonly string[];
  readonly attacks: readonly AttackOutcome[];
}

/** What a choice on a design axis gives up against pkvm (the hardened trap-and-emulate). */
export const AXIS_TRADE_OFFS: {
  readonly [K in 'cmdq' | 'steShadowing' | 'smmuStage2' | 'idmapGranule']: Partial<
    Record<HypPolicy[K], string>
  >;
} = {
  cmdq: {
    pv: 'a separate paravirtual SMMU driver and a hypercall ABI (pKVM keeps none stable: why v4 moved to trap-and-emulate); the host gets only the IOMMU features the hypercalls offer, and every map and unmap is a hypercall into hypervisor-owned page tables',
    'pv-idmap':
      "devices reach all host memory: identity domains only, so the host's devices are isolated from hypervisor and guest memory but not from the host kernel or from each other",
  },
  steShadowing: {
    'trap-writes':
      'every host store to its stream table traps (the table is write-protected), so each STE update costs data aborts',
  },
  smmuStage2: {
    'cpu-shared':
      "DMA to memory the CPU has not touched faults: the SMMU shares the CPU's stage-2, which is filled lazily by CPU faults, and the CPU's break-before-make is seen by DMA",
  },
  idmapGranule: {
    block:
      "a donation splits a block: during its break-before-make, DMA to the block's other pages faults",
  },
};

/** The gap tag (G1…G6) a rule closes, from its description in RULES, or null. */
export function gapTagOf(rule: RuleName): string | null {
  return /\bgap (G\d+)\b/.exec(RULES[rule])?.[1] ?? null;
}

/** The catalog attacks that exploit the gap `rule` closes: their description cites its tag. */
export function gapAttacksOf(rule: RuleName, catalog: readonly Scenario[]): string[] {
  const tag = gapTagOf(rule);
  if (!tag) return [];
  const cites = new RegExp(`\\b${tag}\\b`);
  return catalog
    .filter((sc) => cites.test(sc.description.split(']')[0] ?? ''))
    .map((sc) => sc.name);
}

/** What `design` gives up, one line each (empty for pkvm itself). */
export function givesUp(design: Design): string[] {
  const p = design.policy;
  if (!p)
    return ["no isolation: the host and every device reach all memory, the hypervisor's included"];
  const out: string[] = [];
  for (const axis of ['cmdq', 'steShadowing', 'smmuStage2', 'idmapGranule'] as const) {
    const t = (AXIS_TRADE_OFFS[axis] as Record<string, string | undefined>)[p[axis]];
    if (t) out.push(`${axis} ${p[axis]}: ${t}`);
  }
  const off = RULE_NAMES.filter((r) => p.weaken.has(r));
  if (off.length && V6_GAPS.every((r) => p.weaken.has(r)))
    out.push(`the v6-era gaps (${V6_GAPS.join(', ')}): the gap attacks are not blocked`);
  for (const r of off) out.push(`rule ${r} off: ${RULES[r]}`);
  return out;
}

/** The `when` steps a design's catalog runs take: none, pkvm-v6 (every V6 gap open) or pkvm. */
export function stepsFor(design: Design): HypMode {
  const p = design.policy;
  if (!p) return 'none';
  return V6_GAPS.every((r) => p.weaken.has(r)) ? 'pkvm-v6' : 'pkvm';
}

/** Whether a design's hypervisor leaves the host no SMMU registers to attack. */
export function isParavirtual(design: Design): boolean {
  return design.policy !== null && design.policy.cmdq !== 'trap';
}

export interface SecurityOptions {
  /** run only these attacks (by name) */
  only?: readonly string[];
  /** called after each attack */
  onAttack?: (design: string, outcome: AttackOutcome) => void;
}

let catalogCache: Scenario[] | null = null;
/** The attack catalog, loaded once. */
export function attackCatalog(): Scenario[] {
  return (catalogCache ??= loadScenarios(ATTACK_CATALOG));
}

/** Run the catalog under `design` and judge each attack by the isolation oracle. */
export function securityRow(design: Design, o: SecurityOptions = {}): SecurityRow {
  const catalog = attackCatalog();
  const scs = o.only ? catalog.filter((sc) => o.only!.includes(sc.name)) : catalog;
  const steps = stepsFor(design);
  const p = design.policy;
  const gapAttacks = p
    ? [
        ...new Set(
          RULE_NAMES.filter((r) => p.weaken.has(r)).flatMap((r) => gapAttacksOf(r, catalog)),
        ),
      ]
    : [];
  // a breach is expected without a hypervisor, or when the design has a rule off (its gaps, and
  // what they open to the other attacks); otherwise the design should have blocked it
  const shouldBlock = p !== null && p.weaken.size === 0;
  const surface = !p ? 'bare' : isParavirtual(design) ? 'pv' : 'mmio';
  const attacks: AttackOutcome[] = [];
  for (const sc of scs) {
    const a = judge(sc, design, surface, steps, shouldBlock);
    attacks.push(a);
    o.onAttack?.(design.name, a);
  }
  if (surface === 'pv') attacks.push(...pvAttackOutcomes(design));
  const count = (v: AttackVerdict) => attacks.filter((a) => a.verdict === v).length;
  return {
    design: design.name,
    surface,
    steps,
    blocked: count('blocked'),
    breached: count('breached'),
    unexpected: attacks.filter((a) => a.verdict === 'breached' && a.expected === false).length,
    panics: attacks.filter((a) => a.panic).length,
    notApplicable: count('n/a'),
    errors: count('error'),
    givesUp: givesUp(design),
    gapAttacks,
    attacks,
  };
}

function judge(
  sc: Scenario,
  design: Design,
  surface: SecurityRow['surface'],
  steps: HypMode,
  shouldBlock: boolean,
): AttackOutcome {
  if (surface === 'pv')
    return {
      attack: sc.name,
      verdict: 'n/a',
      why: `policy.cmdq ${design.policy!.cmdq}: the host has no access to the SMMU's registers or queues`,
    };
  if (surface === 'bare' && !sc.variants.includes('none'))
    return {
      attack: sc.name,
      verdict: 'n/a',
      why: 'the attack has no bare form (it needs a hypervisor interface)',
    };
  let r;
  try {
    r = design.policy
      ? runScenario(sc, { hyp: steps, policy: design.policy })
      : runScenario(sc, { hyp: 'none' });
  } catch (e) {
    return { attack: sc.name, verdict: 'error', why: (e as Error).message };
  }
  const panic = r.hyp?.panics[0];
  const ok = r.isolation?.ok ?? true;
  return {
    attack: sc.name,
    verdict: ok ? 'blocked' : 'breached',
    ...(panic ? { panic: { rule: panic.rule, reason: panic.reason } } : {}),
    ...(ok ? {} : { paths: [...new Set(r.isolation!.breaches.map((b) => b.path ?? b.kind))] }),
    ...(ok ? {} : { expected: !shouldBlock }),
  };
}

/**
 * The paravirtual attacks (host/malicious/pv-attacks.ts, PV_ATTACKS) for a design with
 * policy.cmdq 'pv' or 'pv-idmap': each on a fresh machine of the design, with the host's own
 * device in use and a guest whose StreamID and memory it goes after. Blocked when every call it
 * had to have refused was refused and the isolation oracle finds no breach; a call the
 * hypervisor accepted (PvAttackAccepted) is a breach of the ABI, with the call as its path.
 */
function pvAttackOutcomes(design: Design): AttackOutcome[] {
  const kind = design.policy?.cmdq;
  if (kind !== 'pv' && kind !== 'pv-idmap') return [];
  const shouldBlock = design.policy!.weaken.size === 0;
  const out: AttackOutcome[] = [];
  for (const a of PV_ATTACKS) {
    if (!a.kinds.includes(kind)) {
      out.push({ attack: a.name, verdict: 'n/a', why: `applies to ${a.kinds.join(', ')} only` });
      continue;
    }
    let bed: Bed;
    try {
      bed = new Bed(design, { devices: 2 });
      bed.up();
      bed.attach(bed.sids[0]!, 'dma');
      const memory = { base: bed.alloc(PV_GUEST_BYTES, PV_GUEST_BYTES), size: PV_GUEST_BYTES };
      bed.createGuest('vm1', memory, [{ vsid: 0, psid: bed.sids[1]! }]);
    } catch (e) {
      out.push({ attack: a.name, verdict: 'error', why: (e as Error).message });
      continue;
    }
    let accepted: string | undefined;
    try {
      a.run({ bus: bed.machine.bus, actor: 'host', sids: bed.sids, ...HYP_RANGE });
    } catch (e) {
      if (e instanceof PvAttackAccepted) accepted = `accepted ${e.call}`;
      else if (!(e instanceof HypPanic)) {
        out.push({ attack: a.name, verdict: 'error', why: (e as Error).message });
        continue;
      }
    }
    const r = bed.oracle.check();
    const panic = bed.hyp?.panicked ?? null;
    const paths = [...(accepted ? [accepted] : []), ...r.breaches.map((b) => b.path ?? b.kind)];
    out.push({
      attack: a.name,
      verdict: paths.length ? 'breached' : 'blocked',
      ...(panic ? { panic: { rule: panic.rule, reason: panic.reason } } : {}),
      ...(paths.length ? { paths: [...new Set(paths)], expected: !shouldBlock } : {}),
    });
  }
  return out;
}

/** a guest for the paravirtual attacks to go after: 8 MiB, as the vm-lifecycle workload's */
const PV_GUEST_BYTES = 8 << 20;

/** Every design's row. */
export function securityRows(designs: readonly Design[], o: SecurityOptions = {}): SecurityRow[] {
  return designs.map((d) => securityRow(d, o));
}
