/**
 * The state of one scenario run: the machine, the failures so far and the event cursor.
 * Steps record failed expectations here and the run goes on, so one run shows every failure.
 */
import type { z } from 'zod';
import type { Machine } from '../../hw/machine.ts';
import type { DmaEndpoint } from '../../hw/dma.ts';
import type { TableAllocator } from '../steps/pagetable.ts';
import type { HostKernel } from '../steps/driver.ts';
import type { PkvmHyp } from '../../hyp/pkvm.ts';
import type { IsolationOracle } from '../check/oracle.ts';
import type { HypMode } from './loader.ts';

export interface Failure {
  step: number;
  op: string;
  expected: unknown;
  actual: unknown;
  message?: string;
}

export class RunContext {
  readonly failures: Failure[] = [];
  /** index into the SMMU's event log: events before it were consumed by an earlier expectEvent */
  eventCursor = 0;
  stepIndex = -1;
  op = '';
  private readonly implicitDevices = new Map<number, DmaEndpoint>();
  /** the page-table pool of pt.map (machine.ptPool, or the top of RAM below the hyp's 64 MiB) */
  ptAlloc: TableAllocator | undefined;
  ptPool: { base: number; size: number } | undefined;
  /** the host driver instances (by actor) created by driver probe steps */
  readonly kernels = new Map<string, HostKernel>();
  /** DMA mappings that were unmapped, still nameable by later dma steps */
  readonly unmapped = new Map<string, { sid: number; iova: number; pa: number; size: number }>();

  /** the hypervisor, when the run has one */
  hyp: PkvmHyp | null = null;
  hypMode: HypMode = 'none';
  /** set when the hypervisor panicked: the machine is stopped */
  panic: { step: number; rule: string; reason: string } | null = null;
  /** expectPanic steps seen (a panic without one fails the run) */
  panicExpected = false;
  /** steps skipped (the machine was stopped by a panic) */
  skipped = 0;
  /** the hypervisor memory range (the would-be hypervisor's when there is none) */
  hypMemory = { base: 0x7c00_0000, size: 0x0400_0000 };
  /** a trace of what happened, in order (only when the scenario has an expectTrace step): "hw CMD_SYNC", "step 4 hyp donate: done" */
  trace: string[] | null = null;
  traceCursor = 0;
  /** guest DMA translation chains (IOVA → IPA → PA) recorded by driver dma steps, for the JSON output */
  readonly translations: Array<{
    actor: string;
    device: string;
    sid: number;
    psid: number;
    access: string;
    iova: string;
    ipa: string | null;
    pa: string | null;
    fault?: string;
  }> = [];
  /** guest teardowns, phase by phase */
  readonly teardowns: Array<{
    guest: string;
    phases: Array<{ phase: string; dma?: string; isolation: boolean }>;
  }> = [];
  /** the isolation oracle, watching SMMU-originated writes from the first step */
  oracle: IsolationOracle | null = null;

  constructor(readonly machine: Machine) {}

  fail(expected: unknown, actual: unknown, message?: string): void {
    this.failures.push({
      step: this.stepIndex,
      op: this.op,
      expected,
      actual,
      ...(message ? { message } : {}),
    });
  }

  /** The DMA endpoint for a StreamID: a declared device, or an implicit one named `sid<N>`. */
  endpointForSid(sid: number): DmaEndpoint {
    const d = this.machine.deviceBySid(sid);
    if (d) return d;
    let ep = this.implicitDevices.get(sid);
    if (!ep) {
      ep = this.machine.addDevice({ name: `sid${sid}`, sid });
      this.implicitDevices.set(sid, ep);
    }
    return ep;
  }
}

export interface StepDef<S = unknown> {
  readonly op: string;
  /** one line for the README and `--help` */
  readonly doc: string;
  readonly schema: z.ZodType<S>;
  run(ctx: RunContext, step: S): void;
}

export function defineStep<S>(def: StepDef<S>): StepDef<unknown> {
  return def as StepDef<unknown>;
}
