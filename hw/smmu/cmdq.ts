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
import { CERROR as CMDQ_CONS_ERR } from './regs.ts';
import { qIndex, qInc, ptrMask } from './queue.ts';
import {
  CMD_BYTES,
  OP,
  OPCODE_TABLE,
  Opcode,
  SSec,
  SubstreamID,
  StreamID,
  Leaf,
  Range,
  PfStride,
  AtcSize,
  ATC_SIZE_ALL,
  Resp,
  RESP,
  CS,
  CS_SIG,
  MSIData,
  MSIAddress,
  VMID,
  NUM,
  SCALE,
  TTL,
  TG,
  TLBI_TG,
} from './commands.ts';
import { inWord as at, wholeWord as whole, addressMasks } from '../bits.ts';
import type { SmmuFeatures } from './features.ts';
import { Probe, ProbeSlot, type StatRecord } from '../probe.ts';
import { HW_PROBES, HW_STATS } from '../probes.ts';

/** CMDQ_CONS.ERR values (declared in regs.ts), as a module-local binding for the hot path */
export const CERROR = CMDQ_CONS_ERR;

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

// Command fields as word / shift / mask, from their declarations in commands.ts: a field `F`
// reads as (w[F_W] >>> F_SH) & F_M; a field filling a whole word reads as w[F_W].
const OPC_M = at(Opcode, 0).mask;
const SSEC_SH = at(SSec, 0).shift;
const SSEC_M = SSec.mask;
const SSID_SH = at(SubstreamID, 0).shift;
const SSID_M = SubstreamID.mask;
const SID_W = whole(StreamID);
const VMID_SH = at(VMID, 1).shift;
const VMID_M = VMID.mask;
const NUM_SH = at(NUM, 0).shift;
const NUM_M = NUM.mask;
const SCALE_SH = at(SCALE, 0).shift;
const SCALE_M = SCALE.mask;
const LEAF_SH = at(Leaf, 2).shift;
const LEAF_M = Leaf.mask;
const TTL_SH = at(TTL, 2).shift;
const TTL_M = TTL.mask;
const TG_SH = at(TG, 2).shift;
const TG_M = TG.mask;
const RANGE_SH = at(Range, 2).shift;
const RANGE_M = Range.mask;
const PFSTRIDE_SH = at(PfStride, 2).shift;
const PFSTRIDE_M = PfStride.mask;
const ATCSIZE_SH = at(AtcSize, 2).shift;
const ATCSIZE_M = AtcSize.mask;
const RESP_SH = at(Resp, 2).shift;
const RESP_M = Resp.mask;
const CS_SH = at(CS, 0).shift;
const CS_M = CS.mask;
const MSIDATA_W = whole(MSIData);
// MSIAddress[55:2] is an address in place over words 2 and 3
const MSIADDR = addressMasks(at(MSIAddress, 2));
const MSIADDR_LO_M = MSIADDR.lo;
const MSIADDR_HI_M = MSIADDR.hi;
const TWO32 = 0x1_0000_0000;

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
        perOp[w[0]! & OPC_M]!++;
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
    const op = w0 & OPC_M;
    const def = TABLE[op];
    if (def === undefined) return CERROR.ILL;
    if (ft.checkRes0) {
      const r = def.res0;
      if ((w0 & r[0]!) | (w[1]! & r[1]!) | (w[2]! & r[2]!) | (w[3]! & r[3]!)) return CERROR.ILL;
      if (res0ByFeature(op, w, ft)) return CERROR.ILL;
    }
    const ssec = (w0 >>> SSEC_SH) & SSEC_M;
    switch (op) {
      case O.CMD_SYNC: {
        const cs = (w0 >>> CS_SH) & CS_M;
        if (cs === CS_SIG.ILLEGAL) return CERROR.ILL;
        this.stats.syncs++;
        const msiAddr = (w[3]! & MSIADDR_HI_M) * TWO32 + ((w[2]! & MSIADDR_LO_M) >>> 0);
        t.sync(cs, msiAddr, w[MSIDATA_W]!);
        return CERROR.NONE;
      }
      case O.CFGI_STE:
        if (ssec) return CERROR.ILL;
        t.cfgiSte(w[SID_W]!, ((w[2]! >>> LEAF_SH) & LEAF_M) === 1);
        return CERROR.NONE;
      case O.CFGI_STE_RANGE:
        if (ssec) return CERROR.ILL;
        t.cfgiSteRange(w[SID_W]!, (w[2]! >>> RANGE_SH) & RANGE_M);
        return CERROR.NONE;
      case O.CFGI_CD:
        if (ssec || !ft.s1p) return CERROR.ILL;
        t.cfgiCd(w[SID_W]!, (w0 >>> SSID_SH) & SSID_M, ((w[2]! >>> LEAF_SH) & LEAF_M) === 1);
        return CERROR.NONE;
      case O.CFGI_CD_ALL:
        if (ssec || !ft.s1p) return CERROR.ILL;
        t.cfgiCdAll(w[SID_W]!);
        return CERROR.NONE;
      case O.CFGI_VMS_PIDM:
        if (ssec || !ft.mpam) return CERROR.ILL;
        return CERROR.NONE;
      case O.PREFETCH_CONFIG:
      case O.PREFETCH_ADDR:
        if (ssec) return CERROR.ILL;
        if (
          op === O.PREFETCH_ADDR &&
          ft.archMinor === 0 &&
          ((w[2]! >>> PFSTRIDE_SH) & PFSTRIDE_M) !== 0
        )
          return CERROR.ILL;
        // a prefetch is IGNORED while SMMUEN=0 and fails silently on bad configuration
        if (t.smmuEnabled()) t.prefetchConfig(w[SID_W]!);
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
        if (((w[2]! >>> ATCSIZE_SH) & ATCSIZE_M) > ATC_SIZE_ALL) return CERROR.ILL;
        if (t.smmuEnabled()) t.atcInv(w);
        return CERROR.NONE;
      case O.PRI_RESP:
        if (!ft.pri || ((w[2]! >>> RESP_SH) & RESP_M) === RESP.ILLEGAL) return CERROR.ILL;
        if (t.smmuEnabled()) t.priResp(w);
        return CERROR.NONE;
      case O.RESUME:
        if (ssec || ft.stallModel === 1) return CERROR.ILL;
        t.resume(w);
        return CERROR.NONE;
      case O.STALL_TERM:
        if (ssec || ft.stallModel === 1) return CERROR.ILL;
        t.stallTerm(w[SID_W]!);
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
  const tg = (w[2]! >>> TG_SH) & TG_M;
  if (tg === TLBI_TG.NONE) return false;
  const num = (w[0]! >>> NUM_SH) & NUM_M;
  const scale = (w[0]! >>> SCALE_SH) & SCALE_M;
  const ttl = (w[2]! >>> TTL_SH) & TTL_M;
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
    const tg = (w[2]! >>> TG_SH) & TG_M;
    const num = (w[0]! >>> NUM_SH) & NUM_M;
    const scale = (w[0]! >>> SCALE_SH) & SCALE_M;
    const ttl = (w[2]! >>> TTL_SH) & TTL_M;
    if (!ft.ril && (tg | num | scale | ttl) !== 0) return true;
    if (tg === TLBI_TG.NONE && (num | scale | ttl) !== 0) return true;
  }
  const nh = op >= O.TLBI_NH_ALL && op <= O.TLBI_NH_VAA;
  if (nh && !ft.s2p && ((w[1]! >>> VMID_SH) & VMID_M) !== 0) return true;
  return false;
}
