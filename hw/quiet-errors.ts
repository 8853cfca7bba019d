/**
 * Expected control-flow errors without stack traces, for the fuzzer's hot loop.
 *
 * A host data abort (CpuAbortError for the host), an external abort, a refused ownership
 * transition (OwnershipError) and a shadow command queue the hardware cannot drain
 * (ShadowQueueError) are thrown and caught thousands of times a second during a fuzzing
 * campaign, and capturing a stack trace is most of what building one costs. While
 * `QUIET_ERRORS.on` is set, these classes are built without a stack (their name and message
 * are unchanged). It is off by default, so everywhere else they keep their stacks; the fuzzer
 * turns it on for a campaign and, when one of them escapes as an unexpected exception,
 * replays the operations with it off to attribute it (scenarios/fuzz/host.ts).
 */
export const QUIET_ERRORS = { on: false };

/**
 * Call before `super(...)` in an expected error's constructor: returns the stack trace limit
 * to restore after it (and sets it to 0 while quiet).
 */
export function quietLimit(): number {
  const limit = Error.stackTraceLimit;
  if (QUIET_ERRORS.on) Error.stackTraceLimit = 0;
  return limit;
}
