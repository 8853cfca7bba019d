/**
 * The hypervisor's policy switches: what it does when the host breaks a rule (the failure
 * policy), which sanitizer rules are on, and the alternative designs the policy-evaluation
 * work compares. Policies are plain data, chosen per machine. Each design axis (`cmdq`,
 * `steShadowing`, `smmuStage2`, `idmapGranule`) is one strategy interface in hyp/ whose
 * selector builds the named implementation.
 *
 * Failure policy (pKVM treats a WARN as a fatal hyp panic):
 *  - `panic`:  faithful to pKVM. The hypervisor records the reason and stops the machine.
 *  - `reject`: the offending access or command is dropped and the host is told: a command
 *              fails with CONS.ERR=CERROR_ILL and GERROR.CMDQ_ERR, a register access is
 *              refused (writes ignored, reads as zero).
 *  - `log`:    recorded only; the hypervisor carries on with the safe outcome (the command is
 *              dropped or rewritten, the access ignored) and tells the host nothing.
 * Isolation holds under all three: the failure policy decides availability, never what
 * reaches memory. Only `weaken` (named rules switched off) can break isolation, and the
 * `pkvm-v6` policy does exactly that to reproduce the v6-era gaps (designs.md §1.13).
 */
import { enableMapSet, freeze, produce } from 'immer';

export type FailurePolicy = 'panic' | 'reject' | 'log';

/**
 * Named sanitizer rules. Each can be switched off with `weaken` to show (and let the fuzzer
 * prove) what it protects.
 */
export const RULES = {
  'cfgi-leaf': 'CFGI_STE must have Leaf=1 (designs.md §1.6)',
  'cfgi-all-range': 'CFGI_STE_RANGE is allowed only with Range=31 (CFGI_ALL)',
  'cfgi-sid': 'CFGI_STE needs SMMUEN=1 and a StreamID inside the host and shadow tables',
  'tlbi-vmid': 'TLBI_NH_ASID/VA/VAA only with VMID 0 (the host VMID)',
  's2-tlbi':
    "TLBI_NH_ALL, TLBI_EL2_*, TLBI_S12_VMALL and TLBI_S2_IPA are the hypervisor's, not the host's",
  'ste-config':
    'host STE Config: abort stays abort, bypass becomes stage-2, S1 becomes nested; nested and reserved refused',
  'ste-s2-fields': "STE stage-2 fields and VMID are the idmap's (S2PTW, S2R forced)",
  'ste-eats': 'STE.EATS forced to no-ATS (or split-stage ATS when the policy allows ATS) (gap G3)',
  'ste-strw': 'STE.STRW must be NS-EL1 (EL2 regimes would escape stage 2) (gap G4)',
  'ats-check':
    'CR0.ATSCHK is forced to 1 in hardware when the SMMU implements ATS: with 0, ATS Translated transactions from any StreamID pass unchecked',
  'sync-msi':
    'CMD_SYNC CS=IRQ is rewritten to SEV with no MSI before it reaches the hardware (gap G1)',
  'irq-cfg-msi': '*_IRQ_CFG0 MSI targets are refused unless 0 (gap G2)',
  'strtab-guard': 'STRTAB_BASE/CFG writes only while SMMUEN=0; geometry checked at enable',
  'cmdq-guard': 'CMDQ_BASE/CONS writes only while CMDQEN=0',
  'queue-guard': 'EVENTQ/PRIQ_BASE writes only while disabled; disabling them is refused',
  'queue-share': 'host queues and tables must be host memory that the hypervisor can share and pin',
  'queue-pin':
    'the host event and PRI queues are pinned while enabled, like the command queue and stream table, so the host can neither unshare nor then donate a page the SMMU writes (weakened: only shared, as pKVM v6; gap G6)',
  'donate-tlbi':
    'an idmap unmap is followed by TLBI_S2_IPA + TLBI_NH_ALL(VMID 0) + CMD_SYNC before the change completes',
  'double-fetch':
    'each host command or STE is copied once into hypervisor memory and checked on the copy',
  'reg-access':
    'MMIO accesses must be to a register in the emulation table, with its size and direction',
  'cr1-template': 'CR1 is forced to the Linux template',
  'rpm-reshadow':
    "SMMUEN 0→1 after the host table was released (runtime PM's resume) reshadows every host STE first, and is refused when that cannot complete (weakened: the shadow STEs stay as they were)",
  'sid-owner':
    "a StreamID assigned to a guest is configured only through the guest's vSMMU: host CFGI_STEs for it are refused",
  'guest-teardown':
    "a guest's memory returns to the host only after its devices' STEs are abort and TLBI_S12_VMALL + CMD_SYNC have completed",
  'vsid-owner':
    "vSMMU: a vSID the guest does not own never reaches a physical STE or command; the guest gets C_BAD_STREAMID (weakened: vSID = pSID, as Xen's RFC)",
  'vste-s1-only':
    "vSMMU: only a guest STE's stage-1 fields are taken; Config nesting, stage-2 fields, VMID, STRW, EATS and overrides are the hypervisor's (weakened: the guest's non-zero ones are kept)",
  'vste-legal':
    "vSMMU: a guest STE ILLEGAL for the vSMMU's features (SteIllegal) gets V=0 and C_BAD_STE, never a physical STE",
  'vtlbi-vmid':
    "vSMMU: guest TLBI_NH_* carry the guest's VMID and TLBI_NSNH_ALL becomes TLBI_S12_VMALL(VMID) (weakened: forwarded as written)",
  'vsmmu-p2m':
    "vSMMU: its reads and writes of guest memory (queues, stream table, event records) go through the guest's stage-2 (weakened: IPA→PA by the linear offset, unchecked)",
  'vcmd-budget':
    'vSMMU: at most guestCmdBudget guest commands are consumed per trap, the rest on the next one (weakened: all of them, as Xen, X5)',
  'vevt-vsid': 'vSMMU: event records forwarded to a guest carry the vSID, never the pSID',
} as const;
export type RuleName = keyof typeof RULES;
export const RULE_NAMES = Object.keys(RULES) as RuleName[];

export function isRule(s: string): s is RuleName {
  return Object.prototype.hasOwnProperty.call(RULES, s);
}

export interface HypPolicy {
  /** a name for reports */
  readonly name: string;
  readonly failure: FailurePolicy;
  /** sanitizer rules switched off */
  readonly weaken: ReadonlySet<RuleName>;
  /** show ATS to the host and allow split-stage ATS in its STEs */
  readonly allowAts: boolean;
  /** how host STEs reach the hardware: shadowed on CFGI_STE (pKVM) or by trapping writes to the host table */
  readonly steShadowing: 'cfgi' | 'trap-writes';
  /**
   * how the host reaches the IOMMU: trap-and-emulate of the unchanged driver (pKVM v4+),
   * paravirtual hypercalls with hypervisor-owned page tables (pKVM v1/v2), or identity-only
   * enable/disable-device hypercalls (pKVM v3)
   */
  readonly cmdq: 'trap' | 'pv' | 'pv-idmap';
  /** what the SMMU's stage-2 for the host is: a shadow identity table (pKVM) or the CPU's stage-2 shared */
  readonly smmuStage2: 'shadow-idmap' | 'cpu-shared';
  /** the granularity of the idmap's memory mappings: pages (pKVM) or blocks split on donation */
  readonly idmapGranule: 'page' | 'block';
  /** guest commands the hypervisor consumes per vSMMU trap (the rest continue on the next trap) */
  readonly guestCmdBudget: number;
}

enableMapSet();

/**
 * The designs the evaluation compares (designs.md §1–2), each a preset below: `pkvm` and
 * `pkvm-v6` (trap-and-emulate, v4–v6), `pkvm-pv` (v1/v2), `pkvm-pv-idmap` (v3), and the
 * future-work variants of trap-and-emulate: `pkvm-wp` (host stream table write-protected),
 * `pkvm-block` (block mappings in the idmap), `pkvm-shared-s2` (the CPU stage-2 shared).
 */
export const POLICY_NAMES = [
  'pkvm',
  'pkvm-v6',
  'pkvm-pv',
  'pkvm-pv-idmap',
  'pkvm-wp',
  'pkvm-block',
  'pkvm-shared-s2',
] as const;

/**
 * The rules the v6-era pKVM design does not have (designs.md §1.13): the CMD_SYNC rewrite is
 * lost (G1), MSI targets are forwarded (G2), EATS is copied (G3), STRW is copied (G4), CR0.ATSCHK
 * is as the host writes it, and the event and PRI queues are shared but not pinned (G6).
 */
export const V6_GAPS: readonly RuleName[] = [
  'sync-msi',
  'irq-cfg-msi',
  'ste-eats',
  'ste-strw',
  'ats-check',
  'queue-pin',
];
export type PolicyName = (typeof POLICY_NAMES)[number];

/** What a caller may set on top of a preset. */
export interface PolicyOptions {
  failure?: FailurePolicy;
  weaken?: Iterable<RuleName>;
  allowAts?: boolean;
  steShadowing?: 'cfgi' | 'trap-writes';
  cmdq?: 'trap' | 'pv' | 'pv-idmap';
  smmuStage2?: 'shadow-idmap' | 'cpu-shared';
  idmapGranule?: 'page' | 'block';
  guestCmdBudget?: number;
}

/**
 * The named policies, each derived from `pkvm` as an immutable snapshot (immer):
 * `pkvm`: the hardened trap-and-emulate policy (pKVM's design with gaps G1–G4 and G6 closed);
 * `pkvm-v6`: pkvm with the V6_GAPS rules weakened (the v6-era behaviour); the others change
 * one design axis each.
 */
const PKVM: HypPolicy = freeze(
  {
    name: 'pkvm',
    failure: 'panic',
    weaken: new Set<RuleName>(),
    allowAts: false,
    steShadowing: 'cfgi',
    cmdq: 'trap',
    smmuStage2: 'shadow-idmap',
    idmapGranule: 'page',
    guestCmdBudget: 256,
  },
  true,
);
/** `pkvm` with one axis changed, named `name` */
function variant(
  name: PolicyName,
  change: (d: { -readonly [K in keyof HypPolicy]: HypPolicy[K] }) => void,
): HypPolicy {
  return produce(PKVM, (d) => {
    d.name = name;
    change(d);
  });
}
export const PRESETS: Readonly<Record<PolicyName, HypPolicy>> = {
  pkvm: PKVM,
  'pkvm-v6': variant('pkvm-v6', (d) => {
    for (const r of V6_GAPS) (d.weaken as Set<RuleName>).add(r);
  }),
  'pkvm-pv': variant('pkvm-pv', (d) => (d.cmdq = 'pv')),
  'pkvm-pv-idmap': variant('pkvm-pv-idmap', (d) => (d.cmdq = 'pv-idmap')),
  'pkvm-wp': variant('pkvm-wp', (d) => (d.steShadowing = 'trap-writes')),
  'pkvm-block': variant('pkvm-block', (d) => (d.idmapGranule = 'block')),
  'pkvm-shared-s2': variant('pkvm-shared-s2', (d) => (d.smmuStage2 = 'cpu-shared')),
};

/** A named policy with the caller's options on top (a weakened `pkvm` names its rules). */
export function makePolicy(name: PolicyName, o: PolicyOptions = {}): HypPolicy {
  const preset = PRESETS[name];
  const budget = o.guestCmdBudget ?? preset.guestCmdBudget;
  if (!Number.isInteger(budget) || budget < 1)
    throw new Error(`guestCmdBudget ${budget} must be a positive integer`);
  return produce(preset, (d) => {
    // the caller's rules first, then the preset's (the order a weakened policy is named in)
    const weaken = new Set<RuleName>([...(o.weaken ?? []), ...preset.weaken]);
    d.weaken = weaken;
    if (weaken.size && name === 'pkvm') d.name = `pkvm-weakened(${[...weaken].join(',')})`;
    if (o.failure !== undefined) d.failure = o.failure;
    if (o.allowAts !== undefined) d.allowAts = o.allowAts;
    if (o.steShadowing !== undefined) d.steShadowing = o.steShadowing;
    if (o.cmdq !== undefined) d.cmdq = o.cmdq;
    if (o.smmuStage2 !== undefined) d.smmuStage2 = o.smmuStage2;
    if (o.idmapGranule !== undefined) d.idmapGranule = o.idmapGranule;
    d.guestCmdBudget = budget;
  });
}
