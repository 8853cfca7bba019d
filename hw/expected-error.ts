/**
 * Expected outcomes that travel as exceptions because the architecture makes them synchronous:
 * a CPU data abort (CpuAbortError), an external abort on a memory access (ExternalAbort). The
 * hypervisor's own expected outcomes are values instead (a refused ownership transition, a
 * shadow queue that cannot drain), and only bugs and modeled panics are thrown there.
 *
 * An ExpectedError never captures a stack: it is thrown and caught thousands of times a second
 * by the fuzzer, and capturing the stack is most of what building one costs. Its name and
 * message say what happened and where (actor, address, direction); `stack` is just that line.
 * There is no switch to turn stacks back on: a caller that lets one escape is the bug, and its
 * own frames are the ones to look at.
 */
export class ExpectedError extends Error {
  constructor(message: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
  }
}
