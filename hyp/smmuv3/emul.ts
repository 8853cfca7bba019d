/**
 * The register emulation table (designs.md §1.3): every SMMU register the host may touch, with
 * what a host read and a host write do. The SMMU MMIO is donated to the hypervisor at boot, so
 * every host access traps here. An access to an offset not in the table, with the wrong size,
 * or in a direction the table refuses, breaks the `reg-access` rule.
 *
 * Widths come from the register declarations (hw/smmu/regs.ts), never restated here.
 */
import { regByName, OFF, type RegName } from '../../hw/smmu/regs.ts';

export type ReadKind =
  | 'hw' // the hardware value
  | 'idr0' // the hardware value with S2P, VMID16, MSI, HYP (and ATS unless allowed) cleared
  | 'cached' // the host's value, kept by the hypervisor (the hardware has the hypervisor's)
  | 'gbpa' // always ABORT, Update clear
  | 'cmdq-cons' // the emulated CONS with the hardware's ERR
  | 'cr0' // the hardware value, with ATSCHK as the host wrote it (the hardware's may be forced on)
  | 'refuse';

export type WriteKind =
  | 'refuse'
  | 'forward' // written to the hardware
  | 'ignore' // dropped silently (GBPA)
  | 'cr0' // edge actions, then forwarded
  | 'cr1' // must equal the Linux template; the template is written
  | 'gerrorn' // command-error recovery, then forwarded
  | 'irq-cfg0' // an MSI target: only 0 (no MSI) is forwarded (closes G2)
  | 'strtab' // cached; only while SMMUEN=0
  | 'cmdq-base' // cached; only while CMDQEN=0
  | 'cmdq-prod' // cached; runs the command emulation
  | 'cmdq-cons' // cached; only while CMDQEN=0
  | 'evtq-base' // forwarded; only while EVENTQEN=0
  | 'priq-base'; // forwarded; only while PRIQEN=0

export interface EmulatedReg {
  readonly name: RegName;
  readonly offset: number;
  readonly width: 4 | 8;
  readonly read: ReadKind;
  readonly write: WriteKind;
}

const T: Array<[RegName, ReadKind, WriteKind]> = [
  ['IDR0', 'idr0', 'refuse'],
  ['IDR1', 'hw', 'refuse'],
  ['IDR3', 'hw', 'refuse'],
  ['IDR5', 'hw', 'refuse'],
  ['IIDR', 'hw', 'refuse'],
  ['CR0', 'cr0', 'cr0'],
  ['CR0ACK', 'cr0', 'forward'],
  ['CR1', 'hw', 'cr1'],
  ['CR2', 'hw', 'forward'],
  ['GBPA', 'gbpa', 'ignore'],
  ['IRQ_CTRL', 'hw', 'forward'],
  ['IRQ_CTRLACK', 'hw', 'forward'],
  ['GERROR', 'hw', 'refuse'],
  ['GERRORN', 'hw', 'gerrorn'],
  ['GERROR_IRQ_CFG0', 'hw', 'irq-cfg0'],
  ['GERROR_IRQ_CFG1', 'hw', 'forward'],
  ['GERROR_IRQ_CFG2', 'hw', 'forward'],
  ['STRTAB_BASE', 'cached', 'strtab'],
  ['STRTAB_BASE_CFG', 'cached', 'strtab'],
  ['CMDQ_BASE', 'cached', 'cmdq-base'],
  ['CMDQ_PROD', 'cached', 'cmdq-prod'],
  ['CMDQ_CONS', 'cmdq-cons', 'cmdq-cons'],
  ['EVENTQ_BASE', 'hw', 'evtq-base'],
  ['EVENTQ_PROD', 'hw', 'forward'],
  ['EVENTQ_CONS', 'hw', 'forward'],
  ['EVENTQ_IRQ_CFG0', 'hw', 'irq-cfg0'],
  ['EVENTQ_IRQ_CFG1', 'hw', 'forward'],
  ['EVENTQ_IRQ_CFG2', 'hw', 'forward'],
  ['PRIQ_BASE', 'hw', 'priq-base'],
  ['PRIQ_PROD', 'hw', 'forward'],
  ['PRIQ_CONS', 'hw', 'forward'],
  ['PRIQ_IRQ_CFG0', 'hw', 'irq-cfg0'],
  ['PRIQ_IRQ_CFG1', 'hw', 'forward'],
  ['PRIQ_IRQ_CFG2', 'hw', 'forward'],
];

export const EMULATION: readonly EmulatedReg[] = T.map(([name, read, write]) => {
  const def = regByName(name);
  if (!def) throw new Error(`emulation table: no register ${name}`);
  return Object.freeze({ name, offset: OFF[name], width: def.width, read, write });
});

/** offset → entry (dense over the 128 KiB of the two pages would waste memory; a Map is fine) */
const byOffset = new Map<number, EmulatedReg>(EMULATION.map((e) => [e.offset, e]));

export function emulatedAt(offset: number): EmulatedReg | undefined {
  return byOffset.get(offset);
}
