import { describe, expect, it } from 'vitest';
import { CpuAbortError } from '../../hw/bus.ts';
import { ExternalAbort } from '../../hw/memory.ts';
import { Machine } from '../../hw/machine.ts';

describe('hw/expected-error: thrown expected outcomes carry no stack', () => {
  it('a CPU data abort: name and message, no frames; the stack limit is left as it was', () => {
    const before = Error.stackTraceLimit;
    const e = new CpuAbortError('host', 0x1000, 'w', 'stage-2 fault');
    expect(e.message).toBe('host: data abort on write at 0x1000: stage-2 fault');
    expect(e.stack ?? '').not.toContain('\n    at ');
    expect(Error.stackTraceLimit).toBe(before);
    expect(new Error('a bug').stack).toContain('\n    at ');
  });

  it('an external abort from memory with no RAM behind it', () => {
    const m = new Machine();
    let caught: unknown;
    try {
      m.mem.read32(0x1_0000_0000_0000 - 8);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ExternalAbort);
    expect((caught as Error).stack ?? '').not.toContain('\n    at ');
  });
});
