/**
 * Guest STE → physical STE (designs.md §3.4, made stronger than Xen's): the vSMMU advertises
 * stage 1 only, so a guest STE is judged by SteIllegal() against the vSMMU's own features, and
 * only its stage-1 fields are taken. The physical STE is the guest's stage 1 nested under the
 * guest's stage-2 with the guest's VMID:
 *
 * | guest STE                       | physical STE                                      |
 * |---------------------------------|---------------------------------------------------|
 * | V=0                             | V=0 (transactions give C_BAD_STE, as on the vSMMU)|
 * | ILLEGAL (Config 0b11x, bad S1…) | V=0, and C_BAD_STE to the guest (never a crash)   |
 * | Config 0b000–0b011 (abort)      | abort                                             |
 * | Config 0b100 (bypass)           | 0b110 stage 2 only, the guest's stage-2           |
 * | Config 0b101 (stage 1)          | 0b111 nested: guest S1 + the guest's stage-2      |
 *
 * Taken from the guest: S1ContextPtr (an IPA), S1Fmt, S1CDMax, S1DSS, S1CIR/S1COR/S1CSH and
 * MEV. Forced: STRW=NS-EL1, EATS=0, SHCFG "use incoming". The hypervisor's: S2VMID, the VTCR
 * fields, S2TTB, S2AA64=1, S2PTW=1 (stage-1 walks must not reach Device memory) and S2R=1 (the
 * hypervisor records the guest's stage-2 faults). Nothing else of the guest STE reaches the
 * hardware.
 *
 * Two named rules (hyp/policy/policy.ts) can be weakened to show what they protect: `vste-legal`
 * (weakened: the SteIllegal verdict is skipped) and `vste-s1-only` (weakened: every field of
 * the guest STE other than V and Config that the guest set non-zero is kept over the
 * hypervisor's value: its stage-2 fields, VMID, STRW, EATS and overrides).
 */
import { get, set } from '../../hw/bits.ts';
import { STE, STE_FIELDS, CFG, SHCFG, steIllegal } from '../../hw/smmu/ste.ts';
import type { SmmuFeatures } from '../../hw/smmu/features.ts';
import type { S2PgtableCfg } from '../../hw/vmsa/io-pgtable.ts';
import { setStage2 } from '../smmuv3/ste-sanitize.ts';

export interface NestEnv {
  /** the vSMMU's features (what the guest was shown) */
  features: SmmuFeatures;
  s2: S2PgtableCfg;
  vmid: number;
  /** weakened rules (absent: none) */
  weak?: { legal: boolean; s1Only: boolean };
}

/** What became of a guest STE. */
export type NestOutcome = 'invalid' | 'illegal' | 'abort' | 's2-only' | 'nested';

/** the guest STE's fields the physical STE takes (its stage 1) */
export const S1_FIELDS = [
  STE.S1ContextPtr,
  STE.S1Fmt,
  STE.S1CDMax,
  STE.S1DSS,
  STE.S1CIR,
  STE.S1COR,
  STE.S1CSH,
  STE.MEV,
];
/** the fields the weakened `vste-s1-only` lets through: all but V, Config and the stage-1 ones */
const OTHER_FIELDS = STE_FIELDS.filter(
  (f) => f !== STE.V && f !== STE.Config && !S1_FIELDS.includes(f),
);
const SHCFG_INCOMING = SHCFG.INCOMING;

/**
 * Build the physical STE for guest STE `g` into `out` (16 words). Returns the outcome and, when
 * ILLEGAL, the reason in `why[0]`.
 */
export function nestSte(
  g: Uint32Array,
  out: Uint32Array,
  env: NestEnv,
  why: string[],
): NestOutcome {
  out.fill(0);
  if (get(g, STE.V) === 0) return 'invalid';
  const illegal = env.weak?.legal ? null : steIllegal(g, { features: env.features });
  if (illegal !== null) {
    why[0] = illegal;
    return 'illegal';
  }
  set(out, STE.V, 1);
  const config = get(g, STE.Config);
  if ((config & 0b100) === 0) {
    set(out, STE.Config, CFG.ABORT);
    return 'abort';
  }
  const nested = config === CFG.S1_TRANS;
  set(out, STE.Config, nested ? CFG.NESTED : CFG.S2_TRANS);
  if (nested) for (const f of S1_FIELDS) set(out, f, get(g, f));
  set(out, STE.SHCFG, SHCFG_INCOMING);
  setStage2(out, env.s2, env.vmid);
  if (env.weak?.s1Only) {
    // the weakened merge: what the guest wrote over the hypervisor's template
    for (const f of OTHER_FIELDS) {
      const v = get(g, f);
      if (v !== 0) set(out, f, v);
    }
  }
  return nested ? 'nested' : 's2-only';
}

/** The physical STE for a guest device while its vSMMU is disabled: GBPA.ABORT → abort, else stage 2 only (bypass of the guest's stage 1). */
export function disabledSte(abort: boolean, out: Uint32Array, env: NestEnv): NestOutcome {
  const g = new Uint32Array(16);
  set(g, STE.V, 1);
  set(g, STE.Config, abort ? CFG.ABORT : CFG.BYPASS);
  return nestSte(g, out, env, []);
}
