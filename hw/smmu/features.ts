/**
 * The SMMU's implemented feature set, and the ID registers derived from it.
 *
 * The default is a capable SMMUv3.2: stage 1 + stage 2, AArch64 tables, 16-bit StreamIDs,
 * 2-level stream and CD tables, 16-bit ASIDs and VMIDs, MSIs, SEV, HYP, ATS, range
 * invalidation, all three granules and a 48-bit OAS. PRI and stalling are off by default
 * (STALL_MODEL=0b01 terminate-only, like QEMU). Everything can be overridden per scenario.
 */
import { set } from '../bits.ts';
import { PS_BITS } from '../vmsa/tcr.ts';
import { IDR0, IDR1, IDR3, IDR5, AIDR } from './regs.ts';

export interface SmmuFeatures {
  s1p: boolean;
  s2p: boolean;
  /** IDR0.TTF: 1 AArch32 only, 2 AArch64 only, 3 both */
  ttf: 1 | 2 | 3;
  cohacc: boolean;
  btm: boolean;
  /** IDR0.HTTU: 0 none, 1 AF, 2 AF+dirty */
  httu: 0 | 1 | 2 | 3;
  dormhint: boolean;
  hyp: boolean;
  ats: boolean;
  /** IDR0.NS1ATS: split-stage ATS *not* supported when true */
  ns1ats: boolean;
  asid16: boolean;
  msi: boolean;
  sev: boolean;
  atos: boolean;
  pri: boolean;
  vmw: boolean;
  vmid16: boolean;
  cd2l: boolean;
  /** IDR0.TTENDIAN: 0 mixed, 2 LE only, 3 BE only */
  ttendian: 0 | 2 | 3;
  /** IDR0.STALL_MODEL: 0 stall+terminate, 1 terminate only, 2 stall forced */
  stallModel: 0 | 1 | 2;
  termModel: boolean;
  /** IDR0.ST_LEVEL: 2-level stream tables supported */
  twoLevelStrtab: boolean;
  sidSize: number;
  ssidSize: number;
  cmdqs: number;
  eventqs: number;
  priqs: number;
  attrTypesOvr: boolean;
  attrPermsOvr: boolean;
  // IDR3
  had: boolean;
  xnx: boolean;
  stt: boolean;
  ril: boolean;
  bbml: 0 | 1 | 2;
  mpam: boolean;
  // IDR5
  /** output address size in bits: 32, 36, 40, 42, 44, 48 or 52 */
  oas: 32 | 36 | 40 | 42 | 44 | 48 | 52;
  gran4k: boolean;
  gran16k: boolean;
  gran64k: boolean;
  vax: 0 | 1;
  stallMax: number;
  iidr: number;
  /** AIDR.ArchMinorRev: 0 = v3.0, 1 = v3.1, 2 = v3.2 ... */
  archMinor: number;
  /**
   * Model option (not architectural): check RES0 fields of commands and raise CERROR_ILL
   * when they are non-zero. The architecture permits either; QEMU does not check.
   */
  checkRes0: boolean;
  /**
   * Model option (SMMUv3.0/v3.1 only): a write to a guarded register (a queue base while the
   * queue is enabled, STRTAB_BASE while SMMUEN=1, an IRQ_CFG while its interrupt is enabled)
   * is CONSTRAINED UNPREDICTABLE before v3.2: ignored, or the register takes the value and it
   * may affect the SMMU. false (the default) ignores it, as v3.2 requires; true takes it, and
   * the SMMU then uses the new value (queue and stream table bases are read at each use).
   */
  guardedWritesTakeEffect: boolean;
}

export const DEFAULT_FEATURES: Readonly<SmmuFeatures> = Object.freeze({
  s1p: true,
  s2p: true,
  ttf: 2,
  cohacc: true,
  btm: false,
  httu: 0,
  dormhint: false,
  hyp: true,
  ats: true,
  ns1ats: false,
  asid16: true,
  msi: true,
  sev: true,
  atos: false,
  pri: false,
  vmw: false,
  vmid16: true,
  cd2l: true,
  ttendian: 2,
  stallModel: 1,
  termModel: true,
  twoLevelStrtab: true,
  sidSize: 16,
  ssidSize: 16,
  cmdqs: 19,
  eventqs: 19,
  priqs: 19,
  attrTypesOvr: false,
  attrPermsOvr: false,
  had: true,
  xnx: true,
  stt: false,
  ril: true,
  bbml: 2,
  mpam: false,
  oas: 48,
  gran4k: true,
  gran16k: true,
  gran64k: true,
  vax: 0,
  stallMax: 0,
  iidr: 0,
  archMinor: 2,
  checkRes0: false,
  guardedWritesTakeEffect: false,
});

export const OAS_ENCODING: Readonly<Record<number, number>> = {
  32: 0,
  36: 1,
  40: 2,
  42: 3,
  44: 4,
  48: 5,
  52: 6,
  56: 7,
};
export const OAS_BITS = PS_BITS;

/** Raw IDR values; a scenario may override any of these directly. */
export interface IdRegisters {
  IDR0: number;
  IDR1: number;
  IDR2: number;
  IDR3: number;
  IDR4: number;
  IDR5: number;
  IIDR: number;
  AIDR: number;
}

const b = (x: boolean): number => (x ? 1 : 0);

export function idRegisters(ft: SmmuFeatures): IdRegisters {
  const r0 = [0];
  set(r0, IDR0.S2P, b(ft.s2p));
  set(r0, IDR0.S1P, b(ft.s1p));
  set(r0, IDR0.TTF, ft.ttf);
  set(r0, IDR0.COHACC, b(ft.cohacc));
  set(r0, IDR0.BTM, b(ft.btm));
  set(r0, IDR0.HTTU, ft.httu);
  set(r0, IDR0.DORMHINT, b(ft.dormhint));
  set(r0, IDR0.HYP, b(ft.hyp));
  set(r0, IDR0.ATS, b(ft.ats));
  set(r0, IDR0.NS1ATS, b(ft.ns1ats));
  set(r0, IDR0.ASID16, b(ft.asid16));
  set(r0, IDR0.MSI, b(ft.msi));
  set(r0, IDR0.SEV, b(ft.sev));
  set(r0, IDR0.ATOS, b(ft.atos));
  set(r0, IDR0.PRI, b(ft.pri));
  set(r0, IDR0.VMW, b(ft.vmw));
  set(r0, IDR0.VMID16, b(ft.vmid16));
  set(r0, IDR0.CD2L, b(ft.cd2l));
  set(r0, IDR0.TTENDIAN, ft.ttendian);
  set(r0, IDR0.STALL_MODEL, ft.stallModel);
  set(r0, IDR0.TERM_MODEL, b(ft.termModel));
  set(r0, IDR0.ST_LEVEL, b(ft.twoLevelStrtab));
  const r1 = [0];
  set(r1, IDR1.SIDSIZE, ft.sidSize);
  set(r1, IDR1.SSIDSIZE, ft.ssidSize);
  set(r1, IDR1.PRIQS, ft.pri ? ft.priqs : 0);
  set(r1, IDR1.EVENTQS, ft.eventqs);
  set(r1, IDR1.CMDQS, ft.cmdqs);
  set(r1, IDR1.ATTR_PERMS_OVR, b(ft.attrPermsOvr));
  set(r1, IDR1.ATTR_TYPES_OVR, b(ft.attrTypesOvr));
  const r3 = [0];
  set(r3, IDR3.HAD, b(ft.had));
  set(r3, IDR3.XNX, b(ft.xnx));
  set(r3, IDR3.STT, b(ft.stt));
  set(r3, IDR3.RIL, b(ft.ril));
  set(r3, IDR3.BBML, ft.bbml);
  set(r3, IDR3.MPAM, b(ft.mpam));
  const r5 = [0];
  const oas = OAS_ENCODING[ft.oas];
  if (oas === undefined) throw new Error(`unsupported OAS ${ft.oas}`);
  set(r5, IDR5.OAS, oas);
  set(r5, IDR5.GRAN4K, b(ft.gran4k));
  set(r5, IDR5.GRAN16K, b(ft.gran16k));
  set(r5, IDR5.GRAN64K, b(ft.gran64k));
  set(r5, IDR5.VAX, ft.vax);
  set(r5, IDR5.STALL_MAX, ft.stallMax);
  const aidr = [0];
  set(aidr, AIDR.ArchMajorRev, 0);
  set(aidr, AIDR.ArchMinorRev, ft.archMinor);
  return {
    IDR0: r0[0]!,
    IDR1: r1[0]!,
    IDR2: 0,
    IDR3: r3[0]!,
    IDR4: 0,
    IDR5: r5[0]!,
    IIDR: ft.iidr >>> 0,
    AIDR: aidr[0]!,
  };
}

/** Check a feature set for combinations the architecture does not allow. Returns problems found. */
export function validateFeatures(ft: SmmuFeatures): string[] {
  const errs: string[] = [];
  if (!ft.s1p && !ft.s2p) errs.push('at least one of s1p and s2p must be implemented');
  if (ft.sidSize < 0 || ft.sidSize > 32) errs.push(`sidSize ${ft.sidSize} is outside 0..32`);
  if (ft.ssidSize < 0 || ft.ssidSize > 20) errs.push(`ssidSize ${ft.ssidSize} is outside 0..20`);
  for (const [k, v] of [
    ['cmdqs', ft.cmdqs],
    ['eventqs', ft.eventqs],
    ['priqs', ft.priqs],
  ] as const) {
    if (v < 0 || v > 19) errs.push(`${k} ${v} is outside 0..19`);
  }
  if (!(ft.oas in OAS_ENCODING) || (ft.oas as number) === 56)
    errs.push(`oas ${ft.oas} must be one of 32, 36, 40, 42, 44, 48, 52`);
  if (!ft.gran4k && !ft.gran16k && !ft.gran64k) errs.push('at least one granule must be supported');
  if (ft.archMinor >= 2 && !ft.ril)
    errs.push('range invalidation (ril) is mandatory from SMMUv3.2 (archMinor >= 2)');
  if (ft.archMinor >= 2 && ft.guardedWritesTakeEffect)
    errs.push(
      'guardedWritesTakeEffect needs archMinor < 2: from SMMUv3.2 a write to a guarded register is IGNORED',
    );
  return errs;
}
