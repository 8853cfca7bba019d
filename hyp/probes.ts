/**
 * The hypervisor's probe points (hyp layer), declared once: name, payload type and what a
 * firing means. Components own a `Probe` per point (hw/probe.ts): `hyp.cmdq.probes.verdict`,
 * `hyp.own.probes.change`, `hyp.probes.trap`.
 */
import { probePoint } from '../hw/probe.ts';
import type { DataAbort } from '../hw/bus.ts';
import type { CmdCheck } from './smmuv3/cmd-policy.ts';
import type { OwnershipChange } from './mem/ownership.ts';

/** The hypervisor's verdict on one host command, before it is acted on. */
export interface CommandVerdict {
  /** the command as copied from the host queue (the emulator's buffer: copy it to keep it) */
  readonly words: Uint32Array;
  /** FORWARD, RESHADOW or a refusal (hyp/smmuv3/cmd-policy.ts) */
  readonly verdict: number;
  /** the check's rule, reason and StreamID to reshadow */
  readonly check: Readonly<CmdCheck>;
  /** the host queue pointer (index and wrap) of the command */
  readonly hostPtr: number;
}

export const HYP_PROBES = {
  verdict: probePoint<CommandVerdict>(
    'hyp.cmdq.verdict',
    'hyp',
    "the hypervisor's verdict on one host command (FORWARD, RESHADOW or REFUSE)",
  ),
  ownershipChange: probePoint<OwnershipChange>(
    'hyp.ownership.change',
    'hyp',
    'a page ownership transition, once its listeners accepted it (or its undo, after a veto)',
  ),
  trap: probePoint<DataAbort>(
    'hyp.trap',
    'hyp',
    'a data abort taken to the hypervisor (host or guest), before it is handled',
  ),
} as const;
