/**
 * Shared set-up for the hypervisor tests: a machine with the pKVM-style hypervisor booted, and
 * optionally the unchanged host driver probed on top of it. Register offsets and field
 * positions come from the reference (smmuv3.md, designs.md Appendix A), written once as plain
 * numbers in test/reference.ts, so a wrong declaration in hw/ would show up as a failing test.
 */
import { Machine, type DeviceSpec } from '../../hw/machine.ts';
import { PkvmHyp } from '../../hyp/pkvm.ts';
import {
  makePolicy,
  type FailurePolicy,
  type PolicyName,
  type RuleName,
} from '../../hyp/policy/policy.ts';
import { ArmSmmuV3 } from '../../host/driver/driver.ts';
import { DomainManager } from '../../host/driver/domain.ts';
import { DmaApi } from '../../host/dma-api.ts';
import {
  BASE_RA,
  CERROR_ILL,
  CONS_ERR_SHIFT,
  CR0,
  CR1_LINUX,
  GBPA_ABORT,
  GBPA_UPDATE,
  HYP_BASE,
  HYP_END,
  IDR0,
  PAGE,
  REG,
  SMMU_BASE,
  SMMU_MMIO_SIZE,
} from '../reference.ts';

/** designs.md §1.2 / pkvm.ts: the hypervisor's memory, the top 64 MiB of the 1 GiB of RAM */
export { HYP_BASE, HYP_END };
/** where the host driver allocates its tables and queues */
export const HOST_PAGES = { base: 0x4400_0000, limit: 0x7800_0000 } as const;
export { PAGE, SMMU_MMIO_SIZE };

/** designs.md Appendix A register offsets */
export const R = REG;
/** CR0 bits */
export const { SMMUEN, PRIQEN, ATSCHK } = CR0;
export const EVTQEN = CR0.EVENTQEN;
export const CMDQEN = CR0.CMDQEN;
/** GBPA: ABORT b20, Update b31 */
export { GBPA_ABORT, GBPA_UPDATE };
/** IDR0 bits the host must not see: S2P b0, HYP b9, ATS b10, MSI b13, VMID16 b18 */
export const {
  S2P: IDR0_S2P,
  S1P: IDR0_S1P,
  HYP: IDR0_HYP,
  ATS: IDR0_ATS,
  MSI: IDR0_MSI,
  VMID16: IDR0_VMID16,
} = IDR0;
/** CMDQ_CONS.ERR[30:24]; CERROR_ILL = 1 */
export { CONS_ERR_SHIFT, CERROR_ILL };
/** Queue base RA/WA bit 62 */
export const Q_RA = BASE_RA;
/** Linux's CR1 template (designs.md §1.3): queues and tables ISH, WB/WB */
export { CR1_LINUX };

export interface HypOpts {
  failure?: FailurePolicy;
  weaken?: RuleName[];
  allowAts?: boolean;
  policy?: PolicyName;
  devices?: DeviceSpec[];
}

export interface Booted {
  m: Machine;
  hyp: PkvmHyp;
}

export interface WithDriver extends Booted {
  drv: ArmSmmuV3;
  dm: DomainManager;
  dma: DmaApi;
}

export function bootHyp(o: HypOpts = {}): Booted {
  const m = new Machine({
    devices: o.devices ?? [
      { name: 'nic', sid: 8 },
      { name: 'gpu', sid: 9 },
    ],
  });
  const hyp = new PkvmHyp(m, {
    policy: makePolicy(o.policy ?? 'pkvm', {
      failure: o.failure ?? 'reject',
      weaken: o.weaken ?? [],
      allowAts: o.allowAts ?? false,
    }),
  }).boot();
  return { m, hyp };
}

/** Boot the hypervisor and probe the unchanged host driver on top of it. */
export function bootWithDriver(o: HypOpts = {}): WithDriver {
  const b = bootHyp(o);
  const drv = new ArmSmmuV3(b.m.bus, { base: SMMU_BASE, pages: { ...HOST_PAGES } });
  drv.probe();
  const dm = new DomainManager(drv);
  const dma = new DmaApi(drv, dm);
  return { ...b, drv, dm, dma };
}

// ---- MMIO as the host (trapped) and as the hypervisor (the hardware itself) -------------------

export const hostR32 = (m: Machine, off: number): number =>
  m.bus.read32('host', SMMU_BASE + off) >>> 0;
export const hostW32 = (m: Machine, off: number, v: number): void =>
  m.bus.write32('host', SMMU_BASE + off, v);
export const hostR64 = (m: Machine, off: number): bigint => m.bus.read64('host', SMMU_BASE + off);
export const hostW64 = (m: Machine, off: number, v: bigint): void =>
  m.bus.write64('host', SMMU_BASE + off, v);
export const hwR32 = (m: Machine, off: number): number =>
  m.bus.read32('hyp', SMMU_BASE + off) >>> 0;
export const hwR64 = (m: Machine, off: number): bigint => m.bus.read64('hyp', SMMU_BASE + off);

/** How many violations of `rule` the hypervisor has recorded. */
export const violations = (hyp: PkvmHyp, rule: RuleName): number => hyp.failures.byRule[rule] ?? 0;

/** Queue base value: RA | ADDR | LOG2SIZE */
export const qBase = (addr: number, log2: number): bigint => Q_RA | BigInt(addr) | BigInt(log2);
