/**
 * The command path of the paravirtual designs (policy cmdq 'pv' and 'pv-idmap'): the host has
 * no command queue. It never reaches the SMMU's registers (every host access to them is refused
 * with a data abort, smmuv3/trap.ts), so nothing here is ever called by the host; the commands
 * the hardware consumes are all the hypervisor's, issued by its hypercalls (hypercalls.ts). The
 * counters stay zero, so an evaluation reads "no host commands" from the same place it reads
 * trap-and-emulate's.
 */
import { Probe } from '../../hw/probe.ts';
import { HYP_PROBES, HYP_STATS } from '../probes.ts';
import type { HostCommandPath } from '../smmuv3/cmd-path.ts';
import type { CmdqEmuStats } from '../smmuv3/cmdq.ts';

export class NoHostQueue implements HostCommandPath {
  readonly stats: CmdqEmuStats = HYP_STATS.hostCmdq.create();
  baseLo = 0;
  baseHi = 0;
  readonly prod = 0;
  cons = 0;
  readonly enabled = false;
  readonly probes = { verdict: new Probe(HYP_PROBES.verdict) } as const;

  geometry(): { addr: number; log2: number; bytes: number } {
    return { addr: 0, log2: 0, bytes: 0 };
  }
  enable(): void {
    this.unreachable('CMDQEN');
  }
  disable(): void {
    this.unreachable('CMDQEN');
  }
  readCons(): number {
    return this.unreachable('CMDQ_CONS');
  }
  writeProd(): void {
    this.unreachable('CMDQ_PROD');
  }
  beforeErrorAck(): void {
    this.unreachable('GERRORN');
  }
  afterErrorAck(): void {
    this.unreachable('GERRORN');
  }

  private unreachable(reg: string): never {
    throw new Error(
      `${reg}: the paravirtual designs give the host no command queue (its register accesses are refused before they get here)`,
    );
  }
}
