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
import type { MmioBus } from '../../hw/bus.ts';
import { set as setField } from '../../hw/bits.ts';
import { OFF } from '../../hw/smmu/regs.ts';
import * as commands from '../../hw/smmu/commands.ts';
import { qIndex, qEmpty, ptrMask } from '../../hw/smmu/queue.ts';
import { CERROR } from '../../hw/smmu/regs.ts';
import { layerLogger } from '../../hw/log.ts';
import type { StatRecord } from '../../hw/probe.ts';
import { HOST_STATS } from '../stats.ts';
import { SH, S2_MEMATTR } from '../../hw/vmsa/descriptor.ts';

const log = layerLogger('host');
// register offsets used on every batch (module-local: imported bindings are getters under the loader)
const R_PROD = OFF.CMDQ_PROD;
const R_CONS = OFF.CMDQ_CONS;
const R_GERROR = OFF.GERROR;
const R_GERRORN = OFF.GERRORN;
const encodeCommand = commands.encodeCommand;
const CMD_WORDS = commands.CMD_WORDS;
/** the fields the hot paths encode directly (the shared command table's declarations, copied once) */
const F = {
  Opcode: commands.Opcode,
  ASID: commands.ASID,
  VMID: commands.VMID,
  NUM: commands.NUM,
  SCALE: commands.SCALE,
  Leaf: commands.Leaf,
  TTL: commands.TTL,
  TG: commands.TG,
  Address: commands.VA,
  MSIAddress: commands.MSIAddress,
} as const;
const OP_TLBI_NH_VA = commands.OP.TLBI_NH_VA;
/** Linux's CMD_SYNC without MSIs: CS=SEV, MSH=ISH, MSIAttr=0xF (0x0fc02046) — constant, encoded once */
const SYNC_SEV = encodeCommand('CMD_SYNC', {
  CS: commands.CS_SIG.SEV,
  MSH: SH.ISH,
  MSIAttr: S2_MEMATTR.NORMAL_WB,
});
/** Linux's MSIPOLL CMD_SYNC with MSIAddress 0; the entry's own address is filled in per command */
const SYNC_MSI = encodeCommand('CMD_SYNC', {
  CS: commands.CS_SIG.IRQ,
  MSH: SH.ISH,
  MSIAttr: S2_MEMATTR.NORMAL_WB,
  MSIData: 0,
  MSIAddress: 0,
});

/** bits.ts `set` (field writer, with a word offset), module-local for the hot path */
const putField = setField;

/**
 * Encode TLBI_NH_VA at word `off` of `out` (four words, overwritten): the same words as
 * encodeCommand('TLBI_NH_VA', { ASID, VMID, NUM, SCALE, TG, TTL, Leaf, Address }), where the
 * non-range form is NUM = SCALE = TG = TTL = 0.
 */
export function encodeTlbiNhVa(
  out: Uint32Array,
  off: number,
  asid: number,
  vmid: number,
  num: number,
  scale: number,
  tg: number,
  ttl: number,
  leaf: number,
  address: number,
): void {
  out[off] = 0;
  out[off + 1] = 0;
  out[off + 2] = 0;
  out[off + 3] = 0;
  putField(out, F.Opcode, OP_TLBI_NH_VA, off);
  putField(out, F.ASID, asid, off);
  putField(out, F.VMID, vmid, off);
  putField(out, F.NUM, num, off);
  putField(out, F.SCALE, scale, off);
  putField(out, F.TG, tg, off);
  putField(out, F.TTL, ttl, off);
  putField(out, F.Leaf, leaf, off);
  putField(out, F.Address, address, off);
}

const NO_FIELDS: Readonly<Record<string, number>> = Object.freeze({});

export type Command = readonly [name: string, fields?: Readonly<Record<string, number | bigint>>];

export class CmdqTimeout extends Error {
  constructor(what: string) {
    super(`arm-smmu-v3: CMD_SYNC timeout: ${what}`);
    this.name = 'CmdqTimeout';
  }
}

/** The driver queue's counters (declared in HOST_STATS.cmdq). */
export type CmdqStats = StatRecord<typeof HOST_STATS.cmdq>;

export class DriverCmdq {
  prod = 0;
  readonly stats: CmdqStats = HOST_STATS.cmdq.create();
  /** how many CONS reads before giving up on a CMD_SYNC */
  pollLimit = 10_000;
  private readonly mask: number;
  /** index bits of a PROD/CONS value */
  private readonly idxMask: number;
  /** one command's bytes on their way to the queue, and its words (the same buffer) */
  private readonly ent8 = new Uint8Array(CMD_WORDS * 4);
  private readonly ent32 = new Uint32Array(this.ent8.buffer);

  constructor(
    private readonly bus: MmioBus,
    private readonly mmio: number,
    readonly base: number,
    readonly log2size: number,
    private readonly msiPoll: boolean,
    private readonly actor = 'host',
  ) {
    this.mask = ptrMask(log2size);
    this.idxMask = ((1 << log2size) >>> 0) - 1;
  }

  private entryAddr(ptr: number): number {
    return this.base + (ptr & this.idxMask) * 16;
  }

  /** Write the command in words [off, off+4) of `w` at queue position `ptr` (a CPU memcpy of 16 bytes). */
  private write(ptr: number, w: Uint32Array, off = 0): void {
    const e = this.ent32;
    e[0] = w[off]!;
    e[1] = w[off + 1]!;
    e[2] = w[off + 2]!;
    e[3] = w[off + 3]!;
    this.bus.writeBytes(this.actor, this.entryAddr(ptr), this.ent8);
  }

  /** The CMD_SYNC Linux builds: CS=SEV, or CS=IRQ aimed at the entry itself (MSIPOLL); MSH=ISH, MSIAttr=OIWB. */
  syncCommand(at: number): Uint32Array {
    if (this.msiPoll) {
      const w = SYNC_MSI.slice();
      putField(w, F.MSIAddress, this.entryAddr(at) / 4);
      return w;
    }
    return SYNC_SEV;
  }

  /** Write the CMD_SYNC for position `at` (syncCommand's words) without allocating. */
  private writeSync(at: number): void {
    if (!this.msiPoll) {
      this.write(at, SYNC_SEV);
      return;
    }
    const e = this.ent32;
    e[0] = SYNC_MSI[0]!;
    e[1] = SYNC_MSI[1]!;
    e[2] = SYNC_MSI[2]!;
    e[3] = SYNC_MSI[3]!;
    putField(e, F.MSIAddress, this.entryAddr(at) / 4);
    this.bus.writeBytes(this.actor, this.entryAddr(at), this.ent8);
  }

  /**
   * Issue a batch. With `sync` a CMD_SYNC is appended and waited for; without it (as Linux's
   * PREFETCH_CONFIG) the batch is published and not waited for.
   */
  issue(cmds: readonly Command[], sync = true): void {
    let p = this.prod;
    for (let i = 0; i < cmds.length; i++) {
      const c = cmds[i]!;
      this.write(p, encodeCommand(c[0], c[1] ?? NO_FIELDS));
      p = (p + 1) & this.mask;
    }
    this.publish(p, cmds.length, sync);
  }

  /**
   * Issue `n` commands already encoded in `words` (four words each, from word 0): the same
   * queue writes as `issue` with those commands, without building them from names.
   */
  issueWords(words: Uint32Array, n: number, sync = true): void {
    let p = this.prod;
    for (let i = 0; i < n; i++) {
      this.write(p, words, i * CMD_WORDS);
      p = (p + 1) & this.mask;
    }
    this.publish(p, n, sync);
  }

  /** The end of a batch whose `n` commands are written up to `p`: the CMD_SYNC, the PROD write, the wait. */
  private publish(p: number, n: number, sync: boolean): void {
    const syncAt = p;
    if (sync) {
      this.writeSync(p);
      p = (p + 1) & this.mask;
    }
    this.prod = p;
    this.stats.batches++;
    this.stats.commands += n + (sync ? 1 : 0);
    this.bus.write32(this.actor, this.mmio + R_PROD, p);
    if (sync) {
      this.stats.syncs++;
      this.waitSync(syncAt);
    }
  }

  /** Wait until CONS has passed the CMD_SYNC at `at` (or, with MSIPOLL, its first word is 0). */
  private waitSync(at: number): void {
    const target = (at + 1) & this.mask;
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
      if ((gerror ^ gerrorn) & 1)
        this.recover(this.bus.read32(this.actor, this.mmio + R_CONS), gerror);
    }
    throw new CmdqTimeout(
      `CONS did not pass the CMD_SYNC at index ${qIndex(at, this.log2size)} after ${this.pollLimit} polls`,
    );
  }

  /** True when `cons` has moved past `at` (cons is between at+1 and prod, in wrap order). */
  private passed(cons: number, at: number, target: number): boolean {
    if (cons === target) return true;
    // cons beyond target: the distance from at to cons is larger than 0 and no more than prod's
    const size = this.mask + 1;
    const d = (cons - at + size) % size;
    return d > 0 && d <= ((this.prod & this.mask) - at + size) % size;
  }

  /** Linux's arm_smmu_cmdq_skip_err: fix the offending command and acknowledge GERROR.CMDQ_ERR. */
  private recover(cons: number, gerror: number): void {
    const err = (cons >>> 24) & 0x7f;
    const idx = cons & this.mask;
    const names = ['CERROR_NONE', 'CERROR_ILL', 'CERROR_ABT', 'CERROR_ATC_INV_SYNC'];
    log.error({ cons: idx, err: names[err] ?? err }, 'CMDQ error');
    if (err === CERROR.ILL || err === CERROR.ATC_INV_SYNC) {
      // replace the command at CONS with a CMD_SYNC (an abort is retried as it stands)
      this.writeSync(idx);
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
