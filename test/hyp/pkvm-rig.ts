/**
 * Shared set-up for the hypervisor tests: a machine with the pKVM-style hypervisor booted, and
 * optionally the unchanged host driver probed on top of it. Register offsets and field
 * positions come from the reference (smmuv3.md, designs.md Appendix A) and are restated here
 * as plain numbers, so a wrong declaration in hw/ would show up as a failing test.
 */
import { Machine, SMMU_BASE, type DeviceSpec } from '../../hw/machine.ts';
import { PkvmHyp } from '../../hyp/pkvm.ts';
import { makePolicy, type FailurePolicy, type RuleName } from '../../hyp/policy/policy.ts';
import { ArmSmmuV3 } from '../../host/driver/driver.ts';
import { DomainManager } from '../../host/driver/domain.ts';
import { DmaApi } from '../../host/dma-api.ts';

/** designs.md §1.2 / pkvm.ts: the hypervisor's memory, the top 64 MiB of the 1 GiB of RAM */
export const HYP_BASE = 0x7c00_0000;
export const HYP_END = 0x8000_0000;
/** where the host driver allocates its tables and queues */
export const HOST_PAGES = { base: 0x4400_0000, limit: 0x7800_0000 } as const;
export const PAGE = 4096;
export const SMMU_MMIO_SIZE = 0x2_0000;

/** designs.md Appendix A register offsets */
export const R = {
  IDR0: 0x00,
  IDR1: 0x04,
  IDR2: 0x08,
  IDR3: 0x0c,
  IDR4: 0x10,
  IDR5: 0x14,
  IIDR: 0x18,
  AIDR: 0x1c,
  CR0: 0x20,
  CR0ACK: 0x24,
  CR1: 0x28,
  CR2: 0x2c,
  STATUSR: 0x40,
  GBPA: 0x44,
  AGBPA: 0x48,
  IRQ_CTRL: 0x50,
  GERROR: 0x60,
  GERRORN: 0x64,
  GERROR_IRQ_CFG0: 0x68,
  STRTAB_BASE: 0x80,
  STRTAB_BASE_CFG: 0x88,
  CMDQ_BASE: 0x90,
  CMDQ_PROD: 0x98,
  CMDQ_CONS: 0x9c,
  EVENTQ_BASE: 0xa0,
  EVENTQ_IRQ_CFG0: 0xb0,
  PRIQ_BASE: 0xc0,
} as const;
/** CR0 bits */
export const SMMUEN = 1,
  PRIQEN = 2,
  EVTQEN = 4,
  CMDQEN = 8,
  ATSCHK = 16;
/** GBPA: ABORT b20, Update b31 */
export const GBPA_ABORT = 1 << 20;
export const GBPA_UPDATE = 0x8000_0000;
/** IDR0 bits the host must not see: S2P b0, HYP b9, ATS b10, MSI b13, VMID16 b18 */
export const IDR0_S2P = 1 << 0,
  IDR0_S1P = 1 << 1,
  IDR0_HYP = 1 << 9,
  IDR0_ATS = 1 << 10,
  IDR0_MSI = 1 << 13,
  IDR0_VMID16 = 1 << 18;
/** CMDQ_CONS.ERR[30:24]; CERROR_ILL = 1 */
export const CONS_ERR_SHIFT = 24;
export const CERROR_ILL = 1;
/** Queue base RA/WA bit 62 */
export const Q_RA = 1n << 62n;
/** Linux's CR1 template (designs.md §1.3): queues and tables ISH, WB/WB */
export const CR1_LINUX = 0xd75;

export interface HypOpts {
  failure?: FailurePolicy;
  weaken?: RuleName[];
  allowAts?: boolean;
  policy?: 'pkvm' | 'pkvm-v6';
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
