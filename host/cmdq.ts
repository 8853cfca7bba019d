/**
 * The driver side of the command queue, as Linux's arm-smmu-v3 issues it: a batch of commands
 * is written at PROD, published with one CMDQ_PROD write, and a trailing CMD_SYNC is waited for
 * by polling CMDQ_CONS (CS=SEV), or by polling the CMD_SYNC entry itself when MSIs are used
 * (Linux's MSIPOLL: CS=IRQ with MSIAddress pointing at the entry and MSIData=0).
 *
 * Command errors are handled as Linux does: read CONS.ERR and GERROR, replace an illegal
 * command with a CMD_SYNC, and acknowledge through GERRORN. A queue that never completes gives
 * a clear timeout error, never a hang.
 */
import type { MmioBus } from '../hw/bus.ts';
import { OFF } from '../hw/smmu/regs.ts';
import { encodeCommand, CMD_WORDS } from '../hw/smmu/commands.ts';
import { qIndex, qInc, qEmpty, ptrMask } from '../hw/smmu/queue.ts';
import { CERROR } from '../hw/smmu/cmdq.ts';
import { layerLogger } from '../hw/log.ts';

const log = layerLogger('host');
// register offsets used on every batch (module-local: imported bindings are getters under the loader)
const R_PROD = OFF.CMDQ_PROD;
const R_CONS = OFF.CMDQ_CONS;
const R_GERROR = OFF.GERROR;
const R_GERRORN = OFF.GERRORN;
/** Linux's CMD_SYNC without MSIs: CS=SEV, MSH=ISH, MSIAttr=0xF (0x0fc02046) — constant, encoded once */
const SYNC_SEV = encodeCommand('CMD_SYNC', { CS: 2, MSH: 3, MSIAttr: 0xf });

export type Command = readonly [name: string, fields?: Readonly<Record<string, number | bigint>>];

export class CmdqTimeout extends Error {
  constructor(what: string) {
    super(`arm-smmu-v3: CMD_SYNC timeout: ${what}`);
    this.name = 'CmdqTimeout';
  }
}

export interface CmdqStats {
  batches: number;
  commands: number;
  syncs: number;
  errorsRecovered: number;
  consPolls: number;
}

export class DriverCmdq {
  prod = 0;
  readonly stats: CmdqStats = { batches: 0, commands: 0, syncs: 0, errorsRecovered: 0, consPolls: 0 };
  /** how many CONS reads before giving up on a CMD_SYNC */
  pollLimit = 10_000;
  private readonly mask: number;

  constructor(
    private readonly bus: MmioBus,
    private readonly mmio: number,
    readonly base: number,
    readonly log2size: number,
    private readonly msiPoll: boolean,
    private readonly actor = 'host',
  ) {
    this.mask = ptrMask(log2size);
  }

  private entryAddr(ptr: number): number {
    return this.base + qIndex(ptr, this.log2size) * 16;
  }

  private write(ptr: number, w: Uint32Array): void {
    this.bus.writeBytes(this.actor, this.entryAddr(ptr), new Uint8Array(w.buffer, w.byteOffset, CMD_WORDS * 4));
  }

  /** The CMD_SYNC Linux builds: CS=SEV, or CS=IRQ aimed at the entry itself (MSIPOLL); MSH=ISH, MSIAttr=OIWB. */
  syncCommand(at: number): Uint32Array {
    if (this.msiPoll) return encodeCommand('CMD_SYNC', { CS: 1, MSH: 3, MSIAttr: 0xf, MSIData: 0, MSIAddress: this.entryAddr(at) / 4 });
    return SYNC_SEV;
  }

  /**
   * Issue a batch. With `sync` a CMD_SYNC is appended and waited for; without it (as Linux's
   * PREFETCH_CONFIG) the batch is published and not waited for.
   */
  issue(cmds: readonly Command[], sync = true): void {
    let p = this.prod;
    for (const [name, f] of cmds) {
      this.write(p, encodeCommand(name, f ?? {}));
      p = qInc(p, this.log2size);
    }
    const syncAt = p;
    if (sync) {
      this.write(p, this.syncCommand(p));
      p = qInc(p, this.log2size);
    }
    this.prod = p;
    this.stats.batches++;
    this.stats.commands += cmds.length + (sync ? 1 : 0);
    this.bus.write32(this.actor, this.mmio + R_PROD, p);
    if (sync) {
      this.stats.syncs++;
      this.waitSync(syncAt);
    }
  }

  /** Wait until CONS has passed the CMD_SYNC at `at` (or, with MSIPOLL, its first word is 0). */
  private waitSync(at: number): void {
    const target = qInc(at, this.log2size);
    for (let i = 0; i < this.pollLimit; i++) {
      if (this.msiPoll) {
        // MSIPOLL: the SMMU's MSI writes MSIData (0) over the entry's first word
        if (this.bus.read32(this.actor, this.entryAddr(at)) === 0) return;
      } else {
        const cons = this.bus.read32(this.actor, this.mmio + R_CONS);
        this.stats.consPolls++;
        if (this.passed(cons & this.mask, at, target)) return;
      }
      // not done: what the GERROR interrupt handler does
      const gerror = this.bus.read32(this.actor, this.mmio + R_GERROR);
      const gerrorn = this.bus.read32(this.actor, this.mmio + R_GERRORN);
      if ((gerror ^ gerrorn) & 1) this.recover(this.bus.read32(this.actor, this.mmio + R_CONS), gerror);
    }
    throw new CmdqTimeout(`CONS did not pass the CMD_SYNC at index ${qIndex(at, this.log2size)} after ${this.pollLimit} polls`);
  }

  /** True when `cons` has moved past `at` (cons is between at+1 and prod, in wrap order). */
  private passed(cons: number, at: number, target: number): boolean {
    if (cons === target) return true;
    // cons beyond target: the distance from at to cons is larger than 0 and no more than prod's
    const size = this.mask + 1;
    const dist = (x: number) => (x - at + size) % size;
    return dist(cons) > 0 && dist(cons) <= dist(this.prod & this.mask);
  }

  /** Linux's arm_smmu_cmdq_skip_err: fix the offending command and acknowledge GERROR.CMDQ_ERR. */
  private recover(cons: number, gerror: number): void {
    const err = (cons >>> 24) & 0x7f;
    const idx = cons & this.mask;
    const names = ['CERROR_NONE', 'CERROR_ILL', 'CERROR_ABT', 'CERROR_ATC_INV_SYNC'];
    log.error({ cons: idx, err: names[err] ?? err }, 'CMDQ error');
    if (err === CERROR.ILL || err === CERROR.ATC_INV_SYNC) {
      // replace the command at CONS with a CMD_SYNC (an abort is retried as it stands)
      this.write(idx, this.syncCommand(idx));
    }
    this.bus.write32(this.actor, this.mmio + R_GERRORN, gerror);
    this.stats.errorsRecovered++;
  }

  /** Whether the queue is idle (CONS == PROD). */
  idle(): boolean {
    const cons = this.bus.read32(this.actor, this.mmio + R_CONS);
    return qEmpty(this.prod, cons, this.log2size);
  }
}
