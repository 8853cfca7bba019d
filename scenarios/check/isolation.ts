/**
 * The isolation oracle as scenarios see it. With a hypervisor, the protected pages are what
 * its page ownership says the host may not touch (the oracle itself looks only at hardware
 * state); without one, they are the range a hypervisor would own (machine.hypMemory or the
 * default 0x7C00_0000 + 64 MiB), so the same scenario shows what a bare machine lets through.
 */
import { IsolationOracle, type Breach, type IsolationPolicy } from './oracle.ts';
import type { RunContext } from '../engine/context.ts';

export interface IsolationSummary {
  ok: boolean;
  breaches: Array<Omit<Breach, 'pa' | 'bytes'> & { pa: string; bytes: number }>;
}

export function isolationPolicy(ctx: RunContext): IsolationPolicy {
  return {
    protectedRanges: () =>
      ctx.hyp
        ? ctx.hyp.protectedRanges()
        : [
            {
              base: ctx.hypMemory.base,
              size: ctx.hypMemory.size,
              owner: 'hyp',
              read: false,
              write: false,
            },
          ],
    // a device assigned to a guest may reach only that guest's memory
    rangesFor: (name) => {
      const dev = ctx.machine.devices.get(name);
      return dev && ctx.hyp ? ctx.hyp.rangesForSid(dev.sid) : undefined;
    },
  };
}

/** The run's oracle, created (and watching SMMU writes) on first use; the runner creates it before the first step. */
export function oracleFor(ctx: RunContext): IsolationOracle {
  if (!ctx.oracle) {
    ctx.oracle = new IsolationOracle(ctx.machine, isolationPolicy(ctx));
    ctx.oracle.attach();
  }
  return ctx.oracle;
}

export function isolationReport(ctx: RunContext): IsolationSummary {
  const r = oracleFor(ctx).check();
  return { ok: r.ok, breaches: r.breaches.map((b) => ({ ...b, pa: '0x' + b.pa.toString(16) })) };
}
