/**
 * STE sanitization (designs.md §1.7): the hypervisor turns its private copy of a host STE into
 * the STE the hardware gets. The host sees a stage-1-only SMMU, so every valid host STE
 * becomes stage-2 translated by the idmap:
 *
 * | host Config        | hardware Config                  |
 * |--------------------|----------------------------------|
 * | V=0                | V=0                              |
 * | 0b000 abort        | abort                            |
 * | 0b100 bypass       | 0b110 stage 2 only (idmap)       |
 * | 0b101 stage 1      | 0b111 nested (host S1 + idmap)   |
 * | 0b110 stage 2      | stage 2 with the idmap           |
 * | 0b111, 0b001–0b011 | refused (abort)                  |
 *
 * Fields: DW2/DW3 (S2VMID, VTCR, S2AA64, S2ENDI, S2PTW, S2R, S2TTB…) are the idmap's, VMID 0,
 * S2PTW=1 and S2R=1 forced; SHCFG forced to "use incoming"; EATS forced to 0 (or split-stage
 * when the policy allows ATS), STRW must be NS-EL1 (closing gaps G3 and G4); DW4–DW7, which
 * hold nothing this SMMU implements, are cleared. Everything else (S1 context pointer, S1Fmt,
 * S1CDMax, S1DSS, S1 attributes, …) is the host's: in nested mode those addresses are IPAs
 * that the idmap translates, so they cannot reach memory the host may not.
 */
import { get, set } from '../../hw/bits.ts';
import { STE, CFG, EATS, SHCFG } from '../../hw/smmu/ste.ts';
import type { RuleName } from '../policy/policy.ts';
import type { S2PgtableCfg } from '../../hw/vmsa/io-pgtable.ts';

/** The idmap's stage-2 configuration as the STE holds it: io-pgtable's ARM_64_LPAE_S2 configuration. */
export type IdmapS2 = S2PgtableCfg;

export interface SteSanitizeEnv {
  weak: (r: RuleName) => boolean;
  allowAts: boolean;
  s2: IdmapS2;
}

export interface SteRefusal {
  rule: RuleName;
  reason: string;
}

const EATS_SPLIT = EATS.S1CHK;

/**
 * Sanitize `w` (16 words) in place. On a refusal the STE is turned into an abort STE (the safe
 * outcome) and the refusal is returned; the caller applies the failure policy.
 */
export function sanitizeSte(w: Uint32Array, env: SteSanitizeEnv): SteRefusal | null {
  let refusal: SteRefusal | null = null;
  const refuse = (rule: RuleName, reason: string): boolean => {
    if (env.weak(rule)) return false;
    refusal ??= { rule, reason };
    return true;
  };
  const v = get(w, STE.V);
  const config = get(w, STE.Config);
  // DW4..DW7 hold nothing this SMMU implements
  for (let i = 8; i < 16; i++) w[i] = 0;

  if (!v || config === CFG.ABORT) {
    if (!env.weak('ste-s2-fields')) for (let i = 4; i < 8; i++) w[i] = 0;
    return null;
  }
  let hwConfig = config;
  if (!env.weak('ste-config')) {
    switch (config) {
      case CFG.BYPASS:
        hwConfig = CFG.S2_TRANS;
        break;
      case CFG.S1_TRANS:
        hwConfig = CFG.NESTED;
        break;
      case CFG.S2_TRANS:
        hwConfig = CFG.S2_TRANS;
        break;
      case CFG.NESTED:
        refuse('ste-config', 'STE Config=0b111 (nested): stage 2 is not advertised to the host');
        break;
      default:
        refuse('ste-config', `STE Config=0b${config.toString(2).padStart(3, '0')} is reserved`);
    }
  }
  const strw = get(w, STE.STRW);
  if (strw !== 0)
    refuse('ste-strw', `STE STRW=${strw}: only NS-EL1 (0) keeps the stream under stage 2`);
  if (refusal) {
    abortSte(w);
    return refusal;
  }
  set(w, STE.Config, hwConfig);
  set(w, STE.SHCFG, SHCFG.INCOMING);
  if (!env.weak('ste-eats'))
    set(w, STE.EATS, env.allowAts && get(w, STE.EATS) !== 0 ? EATS_SPLIT : 0);
  if (!env.weak('ste-s2-fields')) {
    for (let i = 4; i < 8; i++) w[i] = 0;
    setStage2(w, env.s2, 0);
  }
  return null;
}

/**
 * The hypervisor's stage 2 in an STE: `vmid`, the VTCR fields and S2TTB of `s2`, AArch64 tables,
 * S2PTW=1 (stage-1 walks must not reach Device memory) and S2R=1 (stage-2 faults are recorded).
 */
export function setStage2(w: Uint32Array, s2: S2PgtableCfg, vmid: number): void {
  set(w, STE.S2VMID, vmid);
  set(w, STE.S2T0SZ, s2.tsz);
  set(w, STE.S2SL0, s2.sl);
  set(w, STE.S2IR0, s2.irgn);
  set(w, STE.S2OR0, s2.orgn);
  set(w, STE.S2SH0, s2.sh);
  set(w, STE.S2TG, s2.tg);
  set(w, STE.S2PS, s2.ps);
  set(w, STE.S2AA64, 1);
  set(w, STE.S2PTW, 1);
  set(w, STE.S2R, 1);
  set(w, STE.S2TTB, s2.vttbr / 16);
}

/** A valid abort STE (Config 0b000), nothing else. */
export function abortSte(w: Uint32Array): void {
  w.fill(0);
  set(w, STE.V, 1);
  set(w, STE.Config, CFG.ABORT);
}
