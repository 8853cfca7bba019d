/**
 * The host-visible SMMU state the hypervisor keeps (its view of what the host programmed),
 * shared by the register emulation that writes it and the STE shadowing that reads it.
 */
export interface HostTable {
  base: number;
  twoLevel: boolean;
  split: number;
  log2size: number;
}

export class HostView {
  /** CR0 as the host wrote it (the hardware may differ: ATSCHK forced) */
  cr0 = 0;
  strtabBaseLo = 0;
  strtabBaseHi = 0;
  strtabCfg = 0;
  /** the host table geometry captured at SMMUEN 0→1 */
  table: HostTable = { base: 0, twoLevel: false, split: 0, log2size: 0 };
  /** an idmap change happened while the command queue was off: invalidate everything before SMMUEN goes on */
  needFlush = false;
}
