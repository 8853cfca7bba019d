/**
 * SMMU-originated writes: MSIs, event records and PRI/queue writes all go to physical memory
 * without translation. Every one fires the `smmu.write` probe (hw/probes.ts), so that an isolation
 * oracle can check that none of them ever lands where its owner may not write.
 */
import { ExternalAbort, type PhysicalMemory } from '../memory.ts';
import { Probe } from '../probe.ts';
import { HW_PROBES } from '../probes.ts';

export type SmmuWriteKind = 'msi' | 'event' | 'priq' | 'cmdq-msi-sync';

export interface SmmuWrite {
  readonly kind: SmmuWriteKind;
  readonly pa: number;
  readonly len: number;
  /** which MSI source (CMD_SYNC, EVENTQ, GERROR, PRIQ), for MSIs */
  readonly source?: string;
}
export type SmmuWriteObserver = (w: SmmuWrite) => void;

export class SmmuWriter {
  /** probe points: every write that landed */
  readonly probes = { write: new Probe(HW_PROBES.smmuWrite) } as const;
  writes = 0;

  constructor(private readonly mem: PhysicalMemory) {}

  /** Subscribe to `probes.write`; returns the unsubscribe function. */
  observe(o: SmmuWriteObserver): () => void {
    return this.probes.write.subscribe(o);
  }

  private notify(w: SmmuWrite): void {
    this.probes.write.fire(w);
  }

  /** A 32-bit MSI write of `data` to `pa`. Returns false on an external abort. */
  msi(pa: number, data: number, source: string): boolean {
    try {
      this.mem.write32(pa, data);
    } catch (e) {
      if (e instanceof ExternalAbort) return false;
      throw e;
    }
    this.writes++;
    if (this.probes.write.active) this.notify({ kind: 'msi', pa, len: 4, source });
    return true;
  }

  /** Write a queue record (event or PRI entry). Returns false on an external abort. */
  record(kind: 'event' | 'priq', pa: number, words: Uint32Array): boolean {
    if (!this.mem.isRam(pa, words.length * 4)) return false;
    this.mem.writeWords(pa, words);
    this.writes++;
    if (this.probes.write.active) this.notify({ kind, pa, len: words.length * 4 });
    return true;
  }
}
