/**
 * Command queue consumption (IHI 0070 4.1–4.7, reference §4).
 *
 * The SMMU considers the queue on a CMDQ_PROD write (and when CMDQEN is set), provided
 * CMDQEN=1 and GERROR.CMDQ_ERR is not active. Commands are executed synchronously, in order,
 * and CONS advances past each one after it has executed (as QEMU does); this satisfies every
 * CMD_SYNC completion guarantee. An illegal command stops consumption with CONS pointing at
 * it, CONS.ERR=CERROR_ILL and GERROR.CMDQ_ERR toggled; a fetch abort does the same with
 * CERROR_ABT. Consumption resumes once software acknowledges through GERRORN.
 *
 * Hot path: one preallocated 4-word buffer, a dense opcode table, no allocation per command.
 */
import { qIndex, qInc, ptrMask } from './queue.ts';
import { CMD_BYTES, OP, OPCODE_TABLE } from './commands.ts';
import type { SmmuFeatures } from './features.ts';
import { Probe, ProbeSlot, type StatRecord } from '../probe.ts';
import { HW_PROBES, HW_STATS } from '../probes.ts';

export const CERROR = { NONE: 0, ILL: 1, ABT: 2, ATC_INV_SYNC: 3 } as const;

/**
 * Thrown by a target that cannot complete a command yet (an emulated SMMU whose CMD_SYNC must
 * wait for a physical one): consumption stops with CONS pointing at the command, with no error,
 * and the next kick retries it. The hardware model never throws it.
 */
export class CmdqWait extends Error {
  constructor(why: string) {
    super(why);
    this.name = 'CmdqWait';
  }
}

// Module-local aliases of imported bindings: under the TypeScript loader every access to an
// imported binding is a getter call, which dominates a loop this tight.
const TABLE = OPCODE_TABLE;
const O = { ...OP };
const BYTES = CMD_BYTES;
const incPtr = qInc;
const indexOf = qIndex;
const maskOf = ptrMask;

/** What command execution needs from the rest of the SMMU. */
export interface CmdqTarget {
  readonly features: SmmuFeatures;
  smmuEnabled(): boolean;
  cfgiSte(sid: number, leaf: boolean): void;
  cfgiSteRange(sid: number, range: number): void;
  cfgiCd(sid: number, ssid: number, leaf: boolean): void;
  cfgiCdAll(sid: number): void;
  prefetchConfig(sid: number): void;
  /** TLB invalidation; `w` is the raw command (4 words) */
  tlbi(op: number, w: Uint32Array): void;
  atcInv(w: Uint32Array): void;
  priResp(w: Uint32Array): void;
  resume(w: Uint32Array): void;
  stallTerm(sid: number): void;
  /** CMD_SYNC signalling after completion: cs = 0 none, 1 IRQ, 2 SEV */
  sync(cs: number, msiAddr: number, msiData: number): void;
  /** read one command (4 words) from PA; false on external abort */
  fetch(pa: number, out: Uint32Array): boolean;
  /** report a command error: sets CONS.ERR and toggles GERROR.CMDQ_ERR */
  error(code: number): void;
}

/** The queue's counters (declared in HW_STATS.cmdq) and its per-opcode counts. */
export type CmdqStats = StatRecord<typeof HW_STATS.cmdq> & { readonly perOpcode: Uint32Array };

/** What the `onCommand` slot receives: the command's words and its CONS. */
export type CommandSlot = (w: Uint32Array, cons: number) => void;

export class CommandQueue {
  base = 0;
  /** effective log2 size (min(LOG2SIZE, IDR1.CMDQS)) */
  log2size = 0;
  prod = 0;
  cons = 0;
  /** CONS.ERR (valid while GERROR.CMDQ_ERR is active) */
  err = 0;
  readonly stats: CmdqStats = { ...HW_STATS.cmdq.create(), perOpcode: new Uint32Array(256) };
  /** probe points: each command read, before it is executed (traces, coverage) */
  readonly probes = { command: new Probe(HW_PROBES.command) } as const;
  private readonly slot = new ProbeSlot(
    this.probes.command,
    (fn: CommandSlot) => (c) => fn(c.words, c.cons),
  );
  private readonly w = new Uint32Array(4);

  constructor(private readonly t: CmdqTarget) {}

  /**
   * One listener slot on `probes.command` (assigning replaces the previous one; null clears
   * it), for callers that want the command words alone. Other listeners subscribe to the probe.
   */
  get onCommand(): CommandSlot | null {
    return this.slot.get();
  }

  set onCommand(fn: CommandSlot | null) {
    this.slot.set(fn);
  }

  /**
   * Consume commands from CONS up to PROD, at most `limit` of them (an emulated SMMU bounds its
   * work per trap this way; the hardware has no limit). The caller checks CMDQEN=1 and that
   * CMDQ_ERR is inactive. Returns the number of commands consumed.
   */
  consume(limit = Infinity): number {
    const qs = this.log2size;
    const m = maskOf(qs);
    const prod = this.prod & m;
    let cons = this.cons & m;
    const w = this.w;
    const t = this.t;
    const perOp = this.stats.perOpcode;
    const cmdProbe = this.probes.command;
    let n = 0;
    try {
      while (cons !== prod && n < limit) {
        const pa = this.base + indexOf(cons, qs) * BYTES;
        if (!t.fetch(pa, w)) {
          this.cons = cons;
          this.stats.consumed += n;
          this.fail(CERROR.ABT);
          return n;
        }
        if (cmdProbe.active) cmdProbe.fire({ queue: this, words: w, cons });
        const code = this.execute(w);
        if (code !== CERROR.NONE) {
          this.cons = cons;
          this.stats.consumed += n;
          this.fail(code);
          return n;
        }
        perOp[w[0]! & 0xff]!++;
        cons = incPtr(cons, qs);
        n++;
      }
    } catch (e) {
      if (!(e instanceof CmdqWait)) throw e;
      this.stats.waits++;
    }
    this.cons = cons;
    this.stats.consumed += n;
    return n;
  }

  private fail(code: number): void {
    this.err = code;
    this.stats.errors++;
    this.t.error(code);
  }

  /** Execute one command; returns a CERROR code (0 = success). */
  execute(w: Uint32Array): number {
    const t = this.t;
    const ft = t.features;
    const w0 = w[0]!;
    const op = w0 & 0xff;
    const def = TABLE[op];
    if (def === undefined) return CERROR.ILL;
    if (ft.checkRes0) {
      const r = def.res0;
      if ((w0 & r[0]!) | (w[1]! & r[1]!) | (w[2]! & r[2]!) | (w[3]! & r[3]!)) return CERROR.ILL;
      if (res0ByFeature(op, w, ft)) return CERROR.ILL;
    }
    const ssec = (w0 >>> 10) & 1;
    switch (op) {
      case O.CMD_SYNC: {
        const cs = (w0 >>> 12) & 3;
        if (cs === 3) return CERROR.ILL;
        this.stats.syncs++;
        // MSIAddress[55:2] in DW1
        const msiAddr = (w[3]! & 0x00ffffff) * 0x1_0000_0000 + ((w[2]! & ~3) >>> 0);
        t.sync(cs, msiAddr, w[1]!);
        return CERROR.NONE;
      }
      case O.CFGI_STE:
        if (ssec) return CERROR.ILL;
        t.cfgiSte(w[1]!, (w[2]! & 1) === 1);
        return CERROR.NONE;
      case O.CFGI_STE_RANGE:
        if (ssec) return CERROR.ILL;
        t.cfgiSteRange(w[1]!, w[2]! & 0x1f);
        return CERROR.NONE;
      case O.CFGI_CD:
        if (ssec || !ft.s1p) return CERROR.ILL;
        t.cfgiCd(w[1]!, (w0 >>> 12) & 0xfffff, (w[2]! & 1) === 1);
        return CERROR.NONE;
      case O.CFGI_CD_ALL:
        if (ssec || !ft.s1p) return CERROR.ILL;
        t.cfgiCdAll(w[1]!);
        return CERROR.NONE;
      case O.CFGI_VMS_PIDM:
        if (ssec || !ft.mpam) return CERROR.ILL;
        return CERROR.NONE;
      case O.PREFETCH_CONFIG:
      case O.PREFETCH_ADDR:
        if (ssec) return CERROR.ILL;
        if (op === O.PREFETCH_ADDR && ft.archMinor === 0 && ((w[2]! >>> 5) & 0x1f) !== 0)
          return CERROR.ILL;
        // a prefetch is IGNORED while SMMUEN=0 and fails silently on bad configuration
        if (t.smmuEnabled()) t.prefetchConfig(w[1]!);
        return CERROR.NONE;
      case O.TLBI_NH_ALL:
      case O.TLBI_NH_ASID:
      case O.TLBI_NH_VA:
      case O.TLBI_NH_VAA:
        if (!ft.s1p) return CERROR.ILL;
        if (op >= O.TLBI_NH_VA && rangeIllegal(w, ft)) return CERROR.ILL;
        t.tlbi(op, w);
        return CERROR.NONE;
      case O.TLBI_EL2_ALL:
      case O.TLBI_EL2_ASID:
      case O.TLBI_EL2_VA:
      case O.TLBI_EL2_VAA:
        if (!ft.hyp) return CERROR.ILL;
        if (op >= O.TLBI_EL2_VA && rangeIllegal(w, ft)) return CERROR.ILL;
        t.tlbi(op, w);
        return CERROR.NONE;
      case O.TLBI_S12_VMALL:
        if (!ft.s2p) return CERROR.ILL;
        t.tlbi(op, w);
        return CERROR.NONE;
      case O.TLBI_S2_IPA:
        if (!ft.s2p || rangeIllegal(w, ft)) return CERROR.ILL;
        t.tlbi(op, w);
        return CERROR.NONE;
      case O.TLBI_NSNH_ALL:
        t.tlbi(op, w);
        return CERROR.NONE;
      case O.ATC_INV:
        if (!ft.ats) return CERROR.ILL;
        if ((w[2]! & 0x3f) > 52) return CERROR.ILL;
        if (t.smmuEnabled()) t.atcInv(w);
        return CERROR.NONE;
      case O.PRI_RESP:
        if (!ft.pri || ((w[2]! >>> 12) & 3) === 3) return CERROR.ILL;
        if (t.smmuEnabled()) t.priResp(w);
        return CERROR.NONE;
      case O.RESUME:
        if (ssec || ft.stallModel === 1) return CERROR.ILL;
        t.resume(w);
        return CERROR.NONE;
      case O.STALL_TERM:
        if (ssec || ft.stallModel === 1) return CERROR.ILL;
        t.stallTerm(w[1]!);
        return CERROR.NONE;
      default:
        // EL3 and Secure-only TLBIs on the Non-secure queue, DPTI without DPT
        return CERROR.ILL;
    }
  }
}

/**
 * Reserved range-invalidation encodings (reference §4.4): with IDR3.RIL=1, TG != 0 with
 * NUM = SCALE = TTL = 0 is reserved and gives CERROR_ILL. With RIL=0 the range fields are RES0.
 */
function rangeIllegal(w: Uint32Array, ft: SmmuFeatures): boolean {
  if (!ft.ril) return false;
  const tg = (w[2]! >>> 10) & 3;
  if (tg === 0) return false;
  const num = (w[0]! >>> 12) & 0x1f;
  const scale = (w[0]! >>> 20) & 0x3f;
  const ttl = (w[2]! >>> 8) & 3;
  return num === 0 && scale === 0 && ttl === 0;
}

/**
 * RES0 fields that depend on the implemented features or on other fields (checked only with
 * checkRes0): the range fields without IDR3.RIL, NUM/SCALE/TTL of a non-range (TG=0) TLBI,
 * and the VMID of TLBI commands on an SMMU without stage 2.
 */
function res0ByFeature(op: number, w: Uint32Array, ft: SmmuFeatures): boolean {
  const ranged =
    op === O.TLBI_NH_VA ||
    op === O.TLBI_NH_VAA ||
    op === O.TLBI_EL2_VA ||
    op === O.TLBI_EL2_VAA ||
    op === O.TLBI_S2_IPA;
  if (ranged) {
    const tg = (w[2]! >>> 10) & 3;
    const num = (w[0]! >>> 12) & 0x1f;
    const scale = (w[0]! >>> 20) & 0x3f;
    const ttl = (w[2]! >>> 8) & 3;
    if (!ft.ril && (tg | num | scale | ttl) !== 0) return true;
    if (tg === 0 && (num | scale | ttl) !== 0) return true;
  }
  const nh = op >= O.TLBI_NH_ALL && op <= O.TLBI_NH_VAA;
  if (nh && !ft.s2p && (w[1]! & 0xffff) !== 0) return true;
  return false;
}
