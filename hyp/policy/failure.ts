/**
 * What the hypervisor does when the host breaks a rule. pKVM WARNs, and a WARN in the
 * hypervisor is a fatal panic; here that is the `panic` failure policy, next to `reject` and
 * `log` (see policy.ts). Every violation is recorded with its rule and reason.
 */
import type { FailurePolicy, RuleName } from './policy.ts';

/**
 * The hypervisor has panicked: the machine is stopped. This one stays an exception: it models a
 * hyp panic, which unwinds everything in progress (no caller carries on after it), while the
 * outcomes a caller does act on (a refused transition, a failed sync, a refused register
 * access) are returned values.
 */
export class HypPanic extends Error {
  constructor(
    readonly rule: RuleName | 'internal',
    readonly reason: string,
  ) {
    super(`hyp panic [${rule}]: ${reason}`);
    this.name = 'HypPanic';
  }
}

export interface Violation {
  readonly rule: RuleName;
  readonly reason: string;
  /** what the hypervisor did: panicked, rejected (host told), or logged (safe outcome, host not told) */
  readonly outcome: FailurePolicy;
  /** the trap count when it happened, to place it in a run */
  readonly trap: number;
}

export class FailureLog {
  readonly violations: Violation[] = [];
  panic: { rule: string; reason: string } | null = null;
  /** counts per rule */
  readonly byRule: Record<string, number> = {};

  constructor(
    private readonly failure: FailurePolicy,
    private readonly trapCount: () => number,
  ) {}

  /**
   * Record a violation. Under `panic` this throws HypPanic (the caller never continues);
   * otherwise it returns the outcome for the caller to carry out (reject: tell the host;
   * log: take the safe outcome silently).
   */
  violate(rule: RuleName, reason: string): 'reject' | 'log' {
    this.violations.push({ rule, reason, outcome: this.failure, trap: this.trapCount() });
    this.byRule[rule] = (this.byRule[rule] ?? 0) + 1;
    if (this.violations.length > 10_000) this.violations.splice(0, 5_000);
    if (this.failure === 'panic') {
      this.panic = { rule, reason };
      throw new HypPanic(rule, reason);
    }
    return this.failure;
  }

  /** A fault inside the hypervisor itself (not the host's doing): always a panic. */
  internal(reason: string): never {
    this.panic = { rule: 'internal', reason };
    throw new HypPanic('internal', reason);
  }
}
