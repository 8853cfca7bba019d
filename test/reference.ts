/**
 * The reference values the tests check the model against, written once for every test.
 *
 * Each value is taken from the architecture or from the captured Linux boot, never from the
 * code under test (hw/, hyp/), so that a wrong declaration there shows up as a failing test
 * instead of being repeated into the expectation. Sources (/work/shared/reference/):
 * - smmuv3.md: IHI 0070 (SMMUv3) condensed; § numbers below are its sections;
 * - designs.md: the pKVM design (§1) and its register appendix (Appendix A);
 * - linux-sequence.md: the Linux 6.12 boot on QEMU 10.0.2 `virt` (linux-6.12-capture/).
 * The rigs (test/hw/helpers.ts, test/hyp/pkvm-rig.ts, test/guest/rig.ts,
 * test/hw/smmu/translate/rig.ts) export these under the names their tests use.
 */

// ---- the machine (QEMU `virt`, as captured: linux-sequence.md §2) -----------------------------

/** the SMMU's MMIO base (QEMU virt VIRT_SMMU); a guest finds its vSMMU at the same IPA */
export const SMMU_BASE = 0x0905_0000;
/** two 64 KiB pages: Page 0 and Page 1 (smmuv3.md §1, §1.2) */
export const SMMU_MMIO_SIZE = 0x2_0000;
/** RAM: 1 GiB from 0x4000_0000 (QEMU virt VIRT_MEM, the default size); a guest's RAM IPA too */
export const RAM_BASE = 0x4000_0000;
export const RAM_END = 0x8000_0000;
/** the hypervisor's memory: the top 64 MiB of that RAM (designs.md §1.2, §1.8) */
export const HYP_BASE = 0x7c00_0000;
export const HYP_END = 0x8000_0000;
/** the 4 KB granule */
export const PAGE = 4096;

/**
 * QEMU virt's SMMUv3, as Linux 6.12 read it: IDR0 0x0d44101b, IDR1 0x02730010, IDR3 0x1414,
 * IDR5 0x74, IIDR 0 (linux-sequence.md §1), given as smmulab feature settings.
 */
export const QEMU_VIRT_SMMU = {
  s1p: true,
  s2p: true,
  ttf: 2,
  cohacc: true,
  hyp: false,
  ats: false,
  asid16: true,
  msi: false,
  sev: false,
  pri: false,
  vmid16: true,
  cd2l: false,
  ttendian: 2,
  stallModel: 1,
  termModel: true,
  twoLevelStrtab: true,
  sidSize: 16,
  ssidSize: 0,
  cmdqs: 19,
  eventqs: 19,
  had: true,
  xnx: true,
  ril: true,
  bbml: 2,
  oas: 44,
  archMinor: 1,
} as const;

// ---- register offsets (smmuv3.md §1.1 Page 0, §1.2 Page 1 at +0x10000; designs.md App. A) ----

export const REG = {
  IDR0: 0x000,
  IDR1: 0x004,
  IDR2: 0x008,
  IDR3: 0x00c,
  IDR4: 0x010,
  IDR5: 0x014,
  IIDR: 0x018,
  AIDR: 0x01c,
  CR0: 0x020,
  CR0ACK: 0x024,
  CR1: 0x028,
  CR2: 0x02c,
  STATUSR: 0x040,
  GBPA: 0x044,
  AGBPA: 0x048,
  IRQ_CTRL: 0x050,
  IRQ_CTRLACK: 0x054,
  GERROR: 0x060,
  GERRORN: 0x064,
  GERROR_IRQ_CFG0: 0x068,
  GERROR_IRQ_CFG1: 0x070,
  GERROR_IRQ_CFG2: 0x074,
  STRTAB_BASE: 0x080,
  STRTAB_BASE_CFG: 0x088,
  CMDQ_BASE: 0x090,
  CMDQ_PROD: 0x098,
  CMDQ_CONS: 0x09c,
  EVENTQ_BASE: 0x0a0,
  /** optional Page 0 aliases of the event and PRI queue pointers, otherwise RAZ/WI (§1.1) */
  EVENTQ_PROD_ALIAS: 0x0a8,
  EVENTQ_CONS_ALIAS: 0x0ac,
  EVENTQ_IRQ_CFG0: 0x0b0,
  EVENTQ_IRQ_CFG1: 0x0b8,
  EVENTQ_IRQ_CFG2: 0x0bc,
  PRIQ_BASE: 0x0c0,
  PRIQ_PROD_ALIAS: 0x0c8,
  PRIQ_CONS_ALIAS: 0x0cc,
  PRIQ_IRQ_CFG0: 0x0d0,
  PRIQ_IRQ_CFG1: 0x0d8,
  PRIQ_IRQ_CFG2: 0x0dc,
  /** Page 1 (§1.2) */
  EVENTQ_PROD: 0x100a8,
  EVENTQ_CONS: 0x100ac,
  PRIQ_PROD: 0x100c8,
  PRIQ_CONS: 0x100cc,
} as const;

// ---- register fields (smmuv3.md §1.4 ID registers, §1.5 control, §1.7 queues) ----------------

/** IDR0 bits: S2P b0, S1P b1, HYP b9, ATS b10, MSI b13, VMID16 b18 (§1.4) */
export const IDR0 = {
  S2P: 1 << 0,
  S1P: 1 << 1,
  HYP: 1 << 9,
  ATS: 1 << 10,
  MSI: 1 << 13,
  VMID16: 1 << 18,
} as const;

/** CR0 / CR0ACK enables (§1.5) */
export const CR0 = {
  SMMUEN: 1 << 0,
  PRIQEN: 1 << 1,
  EVENTQEN: 1 << 2,
  CMDQEN: 1 << 3,
  ATSCHK: 1 << 4,
} as const;

/** Linux's CR1: queues and tables Inner Shareable, WB/WB (linux-sequence.md §2: W CR1 0xd75) */
export const CR1_LINUX = 0xd75;
/** CR2.RECINVSID (§1.5) */
export const CR2_RECINVSID = 1 << 1;

/** GBPA: ABORT b20, Update b31 (§1.5) */
export const GBPA_ABORT = 1 << 20;
export const GBPA_UPDATE = 0x8000_0000;

/** IRQ_CTRL / IRQ_CTRLACK enables (§1.5) */
export const IRQ_CTRL = {
  GERROR_IRQEN: 1 << 0,
  PRIQ_IRQEN: 1 << 1,
  EVENTQ_IRQEN: 1 << 2,
} as const;

/** GERROR / GERRORN bits (§1.5) */
export const GERROR = {
  CMDQ_ERR: 1 << 0,
  EVENTQ_ABT_ERR: 1 << 2,
  PRIQ_ABT_ERR: 1 << 3,
  MSI_CMDQ_ABT_ERR: 1 << 4,
  MSI_EVENTQ_ABT_ERR: 1 << 5,
  MSI_PRIQ_ABT_ERR: 1 << 6,
  MSI_GERROR_ABT_ERR: 1 << 7,
  SFM_ERR: 1 << 8,
} as const;

/** CMDQ_CONS.ERR[30:24] and its codes (§1.7, §4.6) */
export const CONS_ERR_SHIFT = 24;
export const CERROR_ILL = 1,
  CERROR_ABT = 2;
/** *_PROD.OVFLG / *_CONS.OVACKFLG, bit 31 (§1.7) */
export const OVFLG = 0x8000_0000;
/** *_BASE.RA (queues) / STRTAB_BASE.RA, bit 62 (§1.6, §1.7) */
export const BASE_RA = 1n << 62n;

// ---- commands (smmuv3.md §4.2) ------------------------------------------------------------------

/** command opcodes, CMD[7:0] */
export const OPCODE = {
  PREFETCH_CONFIG: 0x01,
  PREFETCH_ADDR: 0x02,
  CFGI_STE: 0x03,
  CFGI_STE_RANGE: 0x04,
  CFGI_CD: 0x05,
  CFGI_CD_ALL: 0x06,
  CFGI_VMS_PIDM: 0x07,
  TLBI_NH_ALL: 0x10,
  TLBI_NH_ASID: 0x11,
  TLBI_NH_VA: 0x12,
  TLBI_NH_VAA: 0x13,
  TLBI_EL3_ALL: 0x18,
  TLBI_EL3_VA: 0x1a,
  TLBI_EL2_ALL: 0x20,
  TLBI_EL2_ASID: 0x21,
  TLBI_EL2_VA: 0x22,
  TLBI_EL2_VAA: 0x23,
  TLBI_S12_VMALL: 0x28,
  TLBI_S2_IPA: 0x2a,
  TLBI_NSNH_ALL: 0x30,
  ATC_INV: 0x40,
  PRI_RESP: 0x41,
  RESUME: 0x44,
  STALL_TERM: 0x45,
  CMD_SYNC: 0x46,
  TLBI_S_EL2_ALL: 0x50,
  TLBI_S_EL2_ASID: 0x51,
  TLBI_S_EL2_VA: 0x52,
  TLBI_S_EL2_VAA: 0x53,
  TLBI_S_S12_VMALL: 0x58,
  TLBI_S_S2_IPA: 0x5a,
  TLBI_SNH_ALL: 0x60,
  DPTI_ALL: 0x70,
  DPTI_PA: 0x73,
} as const;

/** the exact CMD_SYNC Linux issues on QEMU: CS=SIG_SEV, MSH=ISH, MSIAttr=0xF (linux-sequence.md §3) */
export const LINUX_CMD_SYNC = [0x0fc02046n, 0n] as const;

// ---- the stream table (smmuv3.md §2.2) -----------------------------------------------------------

/** STE DW0 V[0], Config[3:1]: Linux's abort STE (V=1, Config=0b000) and bypass STE (Config=0b100) */
export const STE_ABORT = 0x1n;
export const STE_BYPASS = 0x9n;
export const STE_INVALID = 0x0n;

// ---- events (smmuv3.md §5.1, §5.2) ---------------------------------------------------------------

/** event numbers, EVT[7:0] (0xE0-0xEF IMPDEF, the others reserved) */
export const EVENT = {
  F_UUT: 0x01,
  C_BAD_STREAMID: 0x02,
  F_STE_FETCH: 0x03,
  C_BAD_STE: 0x04,
  F_BAD_ATS_TREQ: 0x05,
  F_STREAM_DISABLED: 0x06,
  F_TRANSL_FORBIDDEN: 0x07,
  C_BAD_SUBSTREAMID: 0x08,
  F_CD_FETCH: 0x09,
  C_BAD_CD: 0x0a,
  F_WALK_EABT: 0x0b,
  F_TRANSLATION: 0x10,
  F_ADDR_SIZE: 0x11,
  F_ACCESS: 0x12,
  F_PERMISSION: 0x13,
  F_TLB_CONFLICT: 0x20,
  F_CFG_CONFLICT: 0x21,
  E_PAGE_REQUEST: 0x24,
  F_VMS_FETCH: 0x25,
} as const;

/** an event record's CLASS (§5.2): the fault was on the CD fetch, a table walk, or the input */
export const EVENT_CLASS = { CD: 0, TT: 1, IN: 2 } as const;
