/**
 * Strategy (b): how host STEs reach the hardware (policy `steShadowing`).
 *  - 'cfgi':        shadowed when the host issues CFGI_STE (pKVM): ste-shadow-cfgi.ts.
 *  - 'trap-writes': the host table is mapped read-only and each write to it trapped: not built
 *                   yet, refused here.
 */
import type { RuleName, HypPolicy } from '../policy/policy.ts';
import { NotBuiltError } from '../policy/not-built.ts';
import type { FailureLog } from '../policy/failure.ts';
import type { PageOwnership } from '../mem/ownership.ts';
import type { HostMemory } from '../mem/hostmem.ts';
import type { ShadowQueue } from './shadowq.ts';
import type { ShadowStreamTable } from './strtab.ts';
import type { SteSanitizeEnv } from './ste-sanitize.ts';
import type { HostView } from './host-view.ts';
import { CfgiSteShadowing } from './ste-shadow-cfgi.ts';

/** 'ok', or the failure outcome of a refused STE (recorded; the shadow STE is then abort). */
export type ShadowOutcome = 'ok' | 'reject' | 'log';

export interface SteShadowing {
  /** STEs reshadowed */
  readonly reshadows: number;
  /** The host asked for StreamID `sid`'s STE to take effect: bring the shadow STE up to date. */
  reshadow(sid: number): ShadowOutcome;
}

export interface SteShadowEnv {
  readonly view: HostView;
  readonly sidBits: number;
  readonly own: PageOwnership;
  readonly hostMem: HostMemory;
  readonly shadowQ: ShadowQueue;
  readonly strtab: ShadowStreamTable;
  readonly failures: FailureLog;
  readonly steEnv: SteSanitizeEnv;
  isRam(base: number, size: number): boolean;
  weak(r: RuleName): boolean;
  /** the guest a StreamID is assigned to, if any */
  sidGuest(sid: number): string | undefined;
}

/** The implementation the policy names, or NotBuiltError. */
export function selectSteShadowing(policy: HypPolicy): (env: SteShadowEnv) => SteShadowing {
  switch (policy.steShadowing) {
    case 'cfgi':
      return (env) => new CfgiSteShadowing(env);
    case 'trap-writes':
      throw new NotBuiltError('steShadowing', 'trap-writes', "'cfgi', pKVM's");
  }
}
