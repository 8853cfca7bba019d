/**
 * Trap dispatch: every CPU access the stage-2 check refused lands here. A host access to the
 * SMMU registers is emulated (host-regs.ts), a guest vCPU access goes to its vSMMU or aborts
 * (hyp/vm/guests.ts), a host store to a write-protected table goes to the STE shadowing design
 * that protects it ('trap-writes'), a host stage-2 fault that a lazily mapped stage-2 handles
 * is retried, anything else is a data abort (thrown: architecturally synchronous).
 * Under the paravirtual designs there is no register emulation (`regs` is null): a host access
 * to the SMMU registers is refused with a data abort, counted.
 */
import { CpuAbortError, isGuestActor, type DataAbort } from '../../hw/bus.ts';
import { SMMU_MMIO_SIZE } from '../../hw/smmu/regs.ts';
import type { PageOwnership } from '../mem/ownership.ts';
import type { HostRegs } from './host-regs.ts';
import type { Probe } from '../../hw/probe.ts';

export interface TrapStats {
  traps: number;
  mmioTraps: number;
  memoryTraps: number;
  refusedAccesses: number;
}

export interface TrapEnv {
  readonly mmio: number;
  readonly own: PageOwnership;
  /** the register emulation, or null when the host may not access the registers at all (pv) */
  readonly regs: HostRegs | null;
  readonly stats: TrapStats;
  /** fired with each data abort taken, before it is handled (hyp/probes.ts `hyp.trap`) */
  readonly trapProbe: Probe<DataAbort>;
  /** a guest vCPU's trap */
  guestTrap(a: DataAbort): bigint;
  readonly failures: { readonly panic: unknown };
  /** throws HypPanic (called once the hypervisor has panicked) */
  panicked(): never;
  /**
   * A host CPU stage-2 that is mapped lazily (the shared stage-2): `map` handles the fault at
   * an address (true: mapped), `retry` makes the access again, now that it is mapped.
   */
  readonly lazyS2?: { map(addr: number): boolean; retry(a: DataAbort): bigint };
  /** a memory trap the STE shadowing design handles (a store to a write-protected table): true when handled */
  memoryTrap?(a: DataAbort): boolean;
}

export class TrapDispatch {
  constructor(private readonly env: TrapEnv) {}

  trap(a: DataAbort): bigint {
    const env = this.env;
    env.stats.traps++;
    if (env.trapProbe.active) env.trapProbe.fire(a);
    if (env.failures.panic !== null) env.panicked();
    if (isGuestActor(a.actor)) return env.guestTrap(a);
    const off = a.addr - env.mmio;
    if (a.actor === 'host' && off >= 0 && off < SMMU_MMIO_SIZE) {
      env.stats.mmioTraps++;
      if (env.regs === null) {
        env.stats.refusedAccesses++;
        throw new CpuAbortError(
          a.actor,
          a.addr,
          a.dir,
          "the SMMU is the hypervisor's (paravirtual IOMMU): the host has no access to its registers",
        );
      }
      return a.dir === 'r'
        ? env.regs.read(off, a.size)
        : (env.regs.write(off, a.size, a.value), 0n);
    }
    env.stats.memoryTraps++;
    if (env.memoryTrap !== undefined && env.memoryTrap(a)) return 0n;
    const lazy = env.lazyS2;
    if (lazy !== undefined && a.actor === 'host' && lazy.map(a.addr)) return lazy.retry(a);
    const s = env.own.state(a.addr);
    throw new CpuAbortError(
      a.actor,
      a.addr,
      a.dir,
      `stage-2 fault: the page is ${s.owner === 'host' ? 'not mapped' : `owned by ${s.owner}`}`,
    );
  }
}
