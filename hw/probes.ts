/**
 * The machine's probe points and stat groups (hw layer), declared once: name, payload type and
 * what a firing means; each counter with what it counts. Components own a `Probe` per point
 * (hw/probe.ts); subscribers find it on the component (`machine.bus.probes.access`,
 * `smmu.cmdq.probes.command`, `endpoint.probes.dmaStart`, ...), and counters in the record the
 * component made from its group (`smmu.cmdq.stats`, `translator.stats(sid)`).
 */
import { probePoint, statGroup } from './probe.ts';
import type { BusAccessEvent, HvcCall } from './bus.ts';
import type { SmmuWrite } from './smmu/msi.ts';
import type { CommandQueue } from './smmu/cmdq.ts';
import type { EventQueue } from './smmu/evtq.ts';
import type { Explain, Txn, TxnResult } from './smmu/translate.ts';
import type { DmaEndpoint, DmaOutcome } from './dma.ts';
import type { IrqCounts } from './smmu/smmu.ts';

/** One command consumed from a command queue (the SMMU's, or an emulated one's). */
export interface CommandConsumed {
  readonly queue: CommandQueue;
  /** the command's four words (the queue's scratch buffer: copy it to keep it) */
  readonly words: Uint32Array;
  /** CONS (index and wrap) of the command */
  readonly cons: number;
}

/** One event record offered to an event queue (before its enable and space are checked). */
export interface EventOffered {
  readonly queue: EventQueue;
  /** the record's eight words (the producer's buffer: copy it to keep it) */
  readonly words: Uint32Array;
}

/** Which translator entry point a translation came through. */
export type TranslationKind = 'translate' | 'translated' | 'ats';

/**
 * One translation, with the explanation the translator built for it. `txn` and `result` are
 * the caller's buffers (an endpoint reuses its own): read them in the listener.
 */
export interface TranslationExplained {
  readonly kind: TranslationKind;
  readonly txn: Readonly<Txn>;
  /** the result (absent for an ATS Translation Request, which answers with a response) */
  readonly result?: Readonly<TxnResult>;
  readonly explain: Explain;
}

export interface DmaStart {
  readonly ep: DmaEndpoint;
  readonly iova: number | bigint;
  readonly len: number;
  readonly write: boolean;
  /** an ATS Translated transaction (the device claims the address is translated) */
  readonly translated: boolean;
}

export interface DmaEnd {
  readonly ep: DmaEndpoint;
  readonly outcome: DmaOutcome;
}

export const HW_PROBES = {
  busAccess: probePoint<BusAccessEvent>(
    'bus.access',
    'hw',
    'a CPU access that reached a device (not RAM), or trapped to the hypervisor',
  ),
  hvc: probePoint<HvcCall>(
    'bus.hvc',
    'hw',
    'a hypercall (HVC) by a CPU actor, before the hypervisor handles it',
  ),
  smmuWrite: probePoint<SmmuWrite>(
    'smmu.write',
    'hw',
    'an SMMU-originated write to memory (MSI, event record, PRI record), after it landed',
  ),
  command: probePoint<CommandConsumed>(
    'smmu.cmdq.command',
    'hw',
    'a command read from a command queue, before it is executed',
  ),
  event: probePoint<EventOffered>(
    'smmu.evtq.event',
    'hw',
    'an event record produced for an event queue, before its enable and space are checked',
  ),
  translation: probePoint<TranslationExplained>(
    'smmu.translation',
    'hw',
    'a translation finished; while anyone listens the translator explains every translation',
  ),
  irq: probePoint<keyof IrqCounts>('smmu.irq', 'hw', 'a wired SMMU interrupt was raised'),
  sev: probePoint<null>('smmu.sev', 'hw', 'CMD_SYNC with CS=SEV sent an SEV event'),
  dmaStart: probePoint<DmaStart>('dma.start', 'hw', 'an endpoint starts a DMA'),
  dmaEnd: probePoint<DmaEnd>('dma.end', 'hw', "an endpoint's DMA finished (with its outcome)"),
} as const;

export const HW_STATS = {
  cmdq: statGroup('smmu.cmdq', 'hw', 'a command queue consumer (the SMMU, or an emulated one)', {
    consumed: 'commands executed without error',
    syncs: 'CMD_SYNCs executed',
    errors: 'consumption stopped at a command error (CMDQ_ERR raised)',
    waits: 'consumption stopped at a command the target could not complete yet (CmdqWait)',
  }),
  stream: statGroup('smmu.stream', 'hw', "one StreamID's transactions in the translator", {
    txns: 'transactions presented',
    hits: 'IOTLB hits',
    misses: 'IOTLB misses',
    walks: 'table walks started',
    descReads: 'descriptors read by walks',
    faults: 'faults (recorded or not)',
  }),
} as const;
