/**
 * The bus's hypercall seam (hw/bus.ts): an HVC reaches the handler the hypervisor installed with
 * the caller's arguments, returns its x0, is counted and seen by the `bus.hvc` probe; with no
 * handler it returns SMCCC_RET_NOT_SUPPORTED (-1).
 */
import { describe, expect, it } from 'vitest';
import { MmioBus, HVC_NOT_SUPPORTED } from '../../hw/bus.ts';
import { PhysicalMemory } from '../../hw/memory.ts';

describe('bus: hypercalls', () => {
  it('no handler: NOT_SUPPORTED (-1), still counted; a handler gets the actor, function and arguments', () => {
    const bus = new MmioBus(new PhysicalMemory());
    expect(HVC_NOT_SUPPORTED).toBe(-1);
    expect(bus.hvc('host', 0xc600_0020, [1, 2])).toBe(-1);
    const seen: Array<[string, number, number[]]> = [];
    bus.installHypercalls((actor, fn, args) => {
      seen.push([actor, fn, Array.from(args)]);
      return args[0]! + args[1]!;
    });
    const probed: number[] = [];
    const off = bus.probes.hvc.subscribe((c) => probed.push(c.fn));
    const args = [40, 2, 0, 0, 0, 0];
    expect(bus.hvc('host', 0xc600_0021, args)).toBe(42);
    args[0] = 1;
    expect(bus.hvc('guest:vm1', 0xc600_0022, args)).toBe(3);
    off();
    expect(seen).toEqual([
      ['host', 0xc600_0021, [40, 2, 0, 0, 0, 0]],
      ['guest:vm1', 0xc600_0022, [1, 2, 0, 0, 0, 0]],
    ]);
    expect(probed).toEqual([0xc600_0021, 0xc600_0022]);
    expect(bus.hypercalls).toBe(3);
    bus.installHypercalls(null);
    expect(bus.hvc('host', 0xc600_0021, args)).toBe(-1);
  });

  it('the hypervisor makes no hypercall to itself, and at most six arguments are passed', () => {
    const bus = new MmioBus(new PhysicalMemory());
    expect(() => bus.hvc('hyp', 0xc600_0020, [])).toThrow(/hypervisor/);
    expect(() => bus.hvc('host', 0xc600_0020, [1, 2, 3, 4, 5, 6, 7])).toThrow(/at most 6/);
  });
});
