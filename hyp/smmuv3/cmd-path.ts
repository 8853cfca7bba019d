/**
 * Strategy (a): how host commands reach the hardware (policy `cmdq`).
 *  - 'trap': trap-and-emulate (pKVM v4+): the host writes its own queue and CMDQ_PROD; the
 *    hypervisor copies, checks and forwards each command into the shadow queue (cmdq.ts).
 *  - 'pv', 'pv-idmap': paravirtual hypercalls (pKVM v1/v2, v3): the host has no queue and no
 *    access to the registers at all (hyp/pv/no-host-queue.ts); its requests are hypercalls
 *    (hyp/pv/hypercalls.ts), and the hypervisor's own commands are all the hardware gets.
 * The register emulation calls the path through this interface only (one call per register
 * access; the per-command loop is inside the implementation).
 */
import type { Probe } from '../../hw/probe.ts';
import type { CommandVerdict } from '../probes.ts';
import { HostCmdq, type CmdqEmuEnv, type CmdqEmuStats } from './cmdq.ts';
import { NoHostQueue } from '../pv/no-host-queue.ts';
import type { HypPolicy } from '../policy/policy.ts';

export interface HostCommandPath {
  readonly stats: CmdqEmuStats;
  /** the host's CMDQ_BASE as written */
  baseLo: number;
  baseHi: number;
  /** the host's PROD as written, and the emulated CONS */
  readonly prod: number;
  cons: number;
  readonly enabled: boolean;
  /** where the host queue is and how large (CMDQ_BASE as the SMMU would use it) */
  geometry(): { addr: number; log2: number; bytes: number };
  /** CMDQEN 0→1 (or a new base taking effect at once) */
  enable(): void;
  /** CMDQEN 1→0 */
  disable(): void;
  /** the host's CMDQ_CONS read */
  readCons(): number;
  /** the host's CMDQ_PROD write: the commands up to it reach the hardware before it returns */
  writeProd(v: number): void;
  /** GERRORN acknowledging CMDQ_ERR: before and after it reaches the hardware */
  beforeErrorAck(): void;
  afterErrorAck(): void;
  /** probe points: each host command's verdict before it is acted on (hyp/probes.ts) */
  readonly probes: { readonly verdict: Probe<CommandVerdict> };
}

/** The implementation the policy names. */
export function selectCommandPath(policy: HypPolicy): (env: CmdqEmuEnv) => HostCommandPath {
  switch (policy.cmdq) {
    case 'trap':
      return (env) => new HostCmdq(env);
    case 'pv':
    case 'pv-idmap':
      return () => new NoHostQueue();
  }
}
