/**
 * The translation pipeline for one transaction (reference §2.3, §3.2, §5.3–5.4, §6.4):
 * GBPA (SMMUEN=0) → STE → substream selection → CD (through stage 2 when nested) →
 * stage-1 walk (each table address through stage 2 when nested) → final stage 2 → permission
 * check, with the IOTLB and the configuration caches in front of the walks.
 *
 * Faults become event records in the reference layout with S2, CLASS, IPA and FetchAddr.
 * Stage-1 faults are recorded when CD.R=1, stage-2 faults when STE.S2R=1; configuration errors
 * always. Stalling (CD.S / STE.S2S with a stall-capable STALL_MODEL) is not built yet and
 * raises NotImplementedError rather than passing silently.
 */
import { get, place, inWord, wholeWord, addressMasks, type Field } from '../bits.ts';
import { ExternalAbort, type PhysicalMemory } from '../memory.ts';
import { STE, CFG, EATS, PRIVCFG, INSTCFG, effectivePs } from './ste.ts';
import { s2StartLevel, tg0Shift as s2GranuleShift } from '../vmsa/geometry.ts';
import {
  EVT,
  CLASS,
  EVT_WORDS,
  EventNum,
  E_SSV,
  E_SubstreamID,
  E_StreamID,
  E_PnU,
  E_InD,
  E_RnW,
  E_S2,
  E_CLASS,
  E_InputAddr,
  E_IPA,
  E_FetchAddr,
} from './events.ts';
import { CdCache, fetchCd, type CdEntry, type CdLookup } from './cdtab.ts';
import { Iotlb, ASID_GLOBAL, STAGE, WORLD, SEC, ctxKey, type TlbEntry } from './tlb.ts';
import {
  walk,
  newStageCfg,
  newWalkOut,
  neededPerm,
  PERM,
  POW2,
  type StageCfg,
  type WalkOut,
  type DescReader,
  type WalkTraceStep,
} from './walk.ts';
import type { SmmuFeatures } from './features.ts';
import type { StreamTable, SteEntry, SteLookup } from './strtab.ts';
import type { Gbpa } from './gbpa.ts';
import { Probe, type StatRecord } from '../probe.ts';
import { HW_PROBES, HW_STATS, type TranslationKind } from '../probes.ts';

export class NotImplementedError extends Error {
  constructor(what: string) {
    super(`not yet implemented: ${what}`);
    this.name = 'NotImplementedError';
  }
}

/** A DMA transaction presented to the SMMU. */
export interface Txn {
  sid: number;
  ssid: number;
  ssv: boolean;
  /** input address bits [52:0] */
  addr: number;
  /** input address bits [63:53] (0 for ordinary IOVAs) */
  addrHi: number;
  write: boolean;
  priv: boolean;
  instr: boolean;
}

export function newTxn(): Txn {
  return {
    sid: 0,
    ssid: 0,
    ssv: false,
    addr: 0,
    addrHi: 0,
    write: false,
    priv: false,
    instr: false,
  };
}

/** Outcome of a transaction. `event` is the event type recorded (0 when none). */
export interface TxnResult {
  ok: boolean;
  pa: number;
  event: number;
  /** the fault's event type even when it was not recorded (0 on success) */
  faultType: number;
  /** terminated with RAZ/WI (CD.A=0 with TERM_MODEL=0): reads return 0, writes are ignored */
  razwi: boolean;
  /** short human reason for an abort ('' on success) */
  reason: string;
  /** the intermediate physical address, when stage 2 translated the final access */
  ipa: number;
  /** whether the IOTLB supplied the translation */
  tlbHit: boolean;
}

export function newTxnResult(): TxnResult {
  return {
    ok: false,
    pa: 0,
    event: 0,
    faultType: 0,
    razwi: false,
    reason: '',
    ipa: -1,
    tlbHit: false,
  };
}

/** Decoded, cached view of a legal STE (attached to the SteEntry on first use). */
export interface StreamDec {
  cfg: number;
  s1: boolean;
  s2: boolean;
  s1fmt: number;
  cdmax: number;
  s1dss: number;
  ctxPtr: number;
  eats: number;
  world: number;
  /** VMID used to tag TLB entries (0 where VMIDs do not apply) */
  vmid: number;
  el2: boolean;
  s1stalld: boolean;
  s2cfg: StageCfg | null;
  s2r: boolean;
  s2ptw: boolean;
  s2s: boolean;
  privcfg: number;
  instcfg: number;
}

type SteWithDec = SteEntry & { dec?: StreamDec };

export interface TranslateEnv {
  readonly features: SmmuFeatures;
  readonly mem: PhysicalMemory;
  readonly strtab: StreamTable;
  readonly gbpa: Gbpa;
  readonly tlb: Iotlb;
  readonly cds: CdCache;
  smmuEnabled(): boolean;
  cachingOn(): boolean;
  e2h(): boolean;
  recinvsid(): boolean;
  atschk(): boolean;
  recordEventWords(words: Uint32Array): boolean;
  /** an SMMU-originated write of a descriptor's Access flag (HTTU) */
  setAccessFlag(pa: number): void;
}

/** Per-stream counters (declared in HW_STATS.stream). */
export type StreamStats = StatRecord<typeof HW_STATS.stream>;

const TWO32 = 0x1_0000_0000;
// module-local copies of the tags used on the hot path
const NS = SEC.NS;
const NS_EL1 = WORLD.NS_EL1;
const NS_EL2 = WORLD.NS_EL2;
const ST_S1 = STAGE.S1;
const ST_S2 = STAGE.S2;
const ST_S12 = STAGE.S12;
const GLOBAL = ASID_GLOBAL;
// imported bindings are getter calls under the TypeScript loader: alias the hot ones
const E = { ...EVT };
const P2 = POW2;
const ctxKeyOf = ctxKey;
const walkStage = walk;
const need_ = neededPerm;
const PM = { ...PERM };
const C = { ...CFG };

/** What a translation is for, as the explainer reports it. */
export interface Explain {
  steps: string[];
  walk: WalkTraceStep[];
  /**
   * Optional (filled only when present): the notes and the stage-2 translations in the order
   * they happened, each placed by the length of `walk` at that moment, so that an explainer
   * can tell which stage-2 descriptor reads were done for which CD fetch or stage-1 table.
   */
  marks?: ExplainMark[];
  /** the STE used, its decoded view, the CD used (and whether it came from the config cache) */
  ste?: SteEntry;
  dec?: StreamDec;
  cd?: CdEntry;
  cdCached?: boolean;
  /** the stage-1 walk configuration chosen (TTB0 or TTB1) and the input address it walks */
  s1?: StageCfg;
  s1Input?: number;
  /** the fault as record() was asked to report it (also when it is not recorded) */
  fault?: {
    num: number;
    s2: number;
    cls: number;
    ipa: number;
    fetchAddr: number;
    recorded: boolean;
  };
  /** the event record built for the fault (8 words) and whether the event queue took it */
  record?: Uint32Array;
  recordWritten?: boolean;
}

/** One entry of Explain.marks. */
export type ExplainMark =
  | { kind: 'note'; at: number; text: string }
  | {
      kind: 's2';
      /** walk[from..to) are this stage-2 translation's descriptor reads (none on an IOTLB hit) */
      from: number;
      to: number;
      ipa: number;
      /** what it translated: a CD/L1CD fetch, a stage-1 table (at stage-1 level `level`), or the final IPA */
      purpose: 'cd' | 'tt' | 'in';
      level: number;
      tlbHit: boolean;
      /** EVT number of its fault, 0 when it translated */
      fault: number;
      /** output PA (-1 on a fault) */
      pa: number;
    };

export class Translator {
  readonly perStream = new Map<number, StreamStats>();
  private readonly lookup: SteLookup;
  private readonly ev = new Uint32Array(EVT_WORDS);
  private readonly s1out: WalkOut = newWalkOut();
  private readonly s2out: WalkOut = newWalkOut();
  private readonly s2sub: WalkOut = newWalkOut();
  private readonly cdLookup: CdLookup = { cd: null, event: 0, fetchAddr: 0 };
  /** probe points: each translation with its explanation (explainers, traces) */
  readonly probes = { translation: new Probe(HW_PROBES.translation) } as const;
  /** the explanation being built (only while someone listens to probes.translation) */
  private explain: Explain | null = null;
  /** current transaction context for readers */
  private cur!: Txn;
  private curDec!: StreamDec;
  private curStats!: StreamStats;
  private lastFetchPa = 0;
  private lastS2Hit = false;
  /** while set, faults are not written to the event queue (ATS Translation Requests report in the response) */
  private suppressEvents = false;

  constructor(
    private readonly env: TranslateEnv,
    lookup: SteLookup,
  ) {
    this.lookup = lookup;
  }

  private lastSid = -1;
  private lastStats: StreamStats | null = null;

  stats(sid: number): StreamStats {
    if (sid === this.lastSid) return this.lastStats!;
    let s = this.perStream.get(sid);
    if (!s) this.perStream.set(sid, (s = HW_STATS.stream.create()));
    this.lastSid = sid;
    this.lastStats = s;
    return s;
  }

  private note(s: string): void {
    const x = this.explain;
    if (!x) return;
    x.steps.push(s);
    x.marks?.push({ kind: 'note', at: x.walk.length, text: s });
  }

  /** Explain only: a stage-2 translation that started at walk index `from` has finished. */
  private markS2(
    from: number,
    ipa: number,
    purpose: 'cd' | 'tt' | 'in',
    level: number,
    f: number,
    o: WalkOut,
  ): void {
    const x = this.explain!;
    x.marks?.push({
      kind: 's2',
      from,
      to: x.walk.length,
      ipa,
      purpose,
      level,
      tlbHit: this.lastS2Hit,
      fault: f,
      pa: f ? -1 : o.oa + (ipa % P2[o.pageShift]!),
    });
  }

  // ---- decoding ------------------------------------------------------------------------------

  decode(ste: SteEntry): StreamDec {
    const w = ste.words;
    const ft = this.env.features;
    const cfg = ste.config;
    const s1 = (cfg & 5) === 5;
    const s2 = (cfg & 6) === 6;
    const strw = get(w, STE.STRW);
    let world: number = WORLD.NS_EL1;
    if (cfg === C.S1_TRANS && strw === 2 && ft.hyp)
      world = this.env.e2h() ? WORLD.NS_EL2_E2H : WORLD.NS_EL2;
    const vmidUsed = s2 || (cfg === C.S1_TRANS && ft.s2p && world === WORLD.NS_EL1);
    let vmid = vmidUsed ? get(w, STE.S2VMID) : 0;
    if (!ft.vmid16) vmid &= 0xff;
    let s2cfg: StageCfg | null = null;
    if (s2) {
      const c = newStageCfg();
      c.stage = 2;
      const tg = get(w, STE.S2TG);
      c.g = s2GranuleShift(tg);
      c.ias = 64 - get(w, STE.S2T0SZ);
      c.start = s2StartLevel(get(w, STE.S2SL0), tg);
      c.ttb = get(w, STE.S2TTB) * 16;
      c.oas = effectivePs(get(w, STE.S2PS), ft.oas);
      c.affd = get(w, STE.S2AFFD) === 1;
      c.ha = get(w, STE.S2HA) === 1;
      c.be = get(w, STE.S2ENDI) === 1;
      c.xnx = ft.xnx;
      s2cfg = c;
    }
    return {
      cfg,
      s1,
      s2,
      s1fmt: get(w, STE.S1Fmt),
      cdmax: get(w, STE.S1CDMax),
      s1dss: get(w, STE.S1DSS),
      ctxPtr: get(w, STE.S1ContextPtr) * 64,
      eats: ft.ats ? get(w, STE.EATS) : 0,
      world,
      vmid,
      el2: world !== WORLD.NS_EL1,
      s1stalld: get(w, STE.S1STALLD) === 1,
      s2cfg,
      s2r: get(w, STE.S2R) === 1,
      s2ptw: get(w, STE.S2PTW) === 1,
      s2s: get(w, STE.S2S) === 1,
      privcfg: ft.attrPermsOvr ? get(w, STE.PRIVCFG) : 0,
      instcfg: ft.attrPermsOvr ? get(w, STE.INSTCFG) : 0,
    };
  }

  // ---- events --------------------------------------------------------------------------------

  private record(
    r: TxnResult,
    t: Txn,
    num: number,
    s2: number,
    cls: number,
    ipa: number,
    fetchAddr: number,
    doRecord: boolean,
    reason: string,
  ): void {
    r.faultType = num;
    r.reason = reason;
    this.curStats.faults++;
    if (this.explain) this.note(`fault: ${reason}${doRecord ? '' : ' (not recorded)'}`);
    if (this.explain)
      this.explain.fault = {
        num,
        s2,
        cls,
        ipa,
        fetchAddr,
        recorded: doRecord && !this.suppressEvents,
      };
    if (!doRecord || this.suppressEvents) return;
    r.event = num;
    const e = this.ev;
    e.fill(0);
    e[EV_W0] = place(EventNum, num) | (t.ssv ? place(E_SSV, 1) | place(E_SubstreamID, t.ssid) : 0);
    e[EV_SID_W] = t.sid >>> 0;
    if ((num >= E.F_TRANSLATION && num <= E.F_PERMISSION) || num === E.F_WALK_EABT) {
      const priv = this.effPriv(t);
      const instr = this.effInstr(t);
      // InD is 0 for writes
      e[EV_DW1_HI] =
        place(E_PnU, priv ? 1 : 0) |
        place(E_InD, instr && !t.write ? 1 : 0) |
        place(E_RnW, t.write ? 0 : 1) |
        place(E_S2, s2) |
        place(E_CLASS, cls);
      putInputAddr(e, t);
      if (num === E.F_WALK_EABT) putDw3(e, fetchAddr, FETCH_LO_M, FETCH_HI_M);
      else if (s2) putDw3(e, ipa, IPA_LO_M, IPA_HI_M);
    } else if (num === E.F_STE_FETCH || num === E.F_CD_FETCH) {
      putInputAddr(e, t);
      putDw3(e, fetchAddr, FETCH_LO_M, FETCH_HI_M);
    } else if (num === E.F_TRANSL_FORBIDDEN) {
      e[EV_DW1_HI] = place(E_RnW, t.write ? 0 : 1);
      putInputAddr(e, t);
    } else if (num === E.F_BAD_ATS_TREQ) {
      putInputAddr(e, t);
    }
    const written = this.env.recordEventWords(e);
    if (this.explain) {
      this.explain.record = e.slice();
      this.explain.recordWritten = written;
    }
  }

  private effPriv(t: Txn): boolean {
    const p = this.curDec?.privcfg ?? PRIVCFG.INCOMING;
    return p === PRIVCFG.UNPRIV ? false : p === PRIVCFG.PRIV ? true : t.priv;
  }
  private effInstr(t: Txn): boolean {
    const p = this.curDec?.instcfg ?? INSTCFG.INCOMING;
    return p === INSTCFG.DATA ? false : p === INSTCFG.INSTR ? true : t.instr;
  }

  // ---- stage 2 ---------------------------------------------------------------------------------

  /** Read the descriptor at PA `pa`: returns `pa`, or -1 (with out.fetchAddr) on an external abort. */
  private readDesc(pa: number, out: WalkOut, desc: Uint32Array): number {
    try {
      this.env.mem.readPair(pa, desc);
      return pa;
    } catch (e) {
      if (!(e instanceof ExternalAbort)) throw e;
      out.fetchAddr = pa;
      return -1;
    }
  }

  private readonly plainReader: DescReader = {
    read: (addr, _level, out, desc) => this.readDesc(addr, out, desc),
  };

  /**
   * Translate an IPA through the stream's stage 2 (TLB first). On success fills s2sub-like
   * output in `o` (oa/pageShift/perm/attr) and returns 0; on a fault returns the EVT number with
   * o.fetchAddr for F_WALK_EABT. `perm` is the permission needed (PERM bit).
   */
  private s2(dec: StreamDec, ipa: number, need: number, tableWalk: boolean, o: WalkOut): number {
    const cfg = dec.s2cfg!;
    const caching = this.env.cachingOn();
    const key = ctxKeyOf(NS, NS_EL1, ST_S2, dec.vmid, 0);
    let e = caching ? this.env.tlb.lookup(key, ipa) : undefined;
    this.lastS2Hit = e !== undefined;
    if (e !== undefined) {
      this.curStats.hits++;
      o.oa = e.oa;
      o.pageShift = e.shift;
      o.perm = e.s2perm;
      o.attr = e.attr;
      o.level = e.level;
      o.fault = 0;
      o.afUpdate = -1;
    } else {
      this.curStats.walks++;
      const tr = this.explain ? this.explain.walk : undefined;
      const f = walkStage(cfg, ipa, this.plainReader, o, tr);
      this.curStats.descReads += o.descReads;
      if (f) return f;
      if (caching) {
        const ia = ipa - (ipa % P2[o.pageShift]!);
        e = {
          ia,
          shift: o.pageShift,
          oa: o.oa,
          s1perm: PM.ALL,
          s2perm: o.perm,
          ipa: ia,
          level: o.level,
          g: cfg.g,
          sid: this.cur.sid,
          attr: o.attr,
        };
        this.env.tlb.insert(NS, NS_EL1, ST_S2, dec.vmid, 0, e);
      }
    }
    if (tableWalk && dec.s2ptw && (o.attr & 0xc) === 0) return E.F_PERMISSION; // S2PTW: a walk to Device memory
    if (need !== 0 && (o.perm & need) === 0) return E.F_PERMISSION;
    // HTTU sets AF only for a translation that completes without a fault
    if (e === undefined && o.afUpdate >= 0) this.env.setAccessFlag(o.afUpdate);
    return 0;
  }

  /** The reader for nested stage-1 walks: each table address is an IPA, translated by stage 2 (CLASS=TT). */
  private readonly nestedReader: DescReader = {
    read: (addr, level, out, desc) => {
      const dec = this.curDec;
      const o = this.s2sub;
      const from = this.explain ? this.explain.walk.length : 0;
      const f = this.s2(dec, addr, PM.R_P, true, o);
      if (this.explain) this.markS2(from, addr, 'tt', level, f, o);
      if (f) {
        out.fault = f;
        out.nestedS2 = true;
        out.fetchAddr = o.fetchAddr;
        out.oa = addr; // the faulting IPA
        return -2;
      }
      return this.readDesc(o.oa + (addr % P2[o.pageShift]!), out, desc);
    },
  };

  // ---- the pipeline ------------------------------------------------------------------------------

  translate(t: Txn, r: TxnResult): TxnResult {
    if (this.probes.translation.active && this.explain === null)
      return this.explained('translate', t, r) as TxnResult;
    return this.translateTxn(t, r);
  }

  /**
   * Run one top-level translation with an explanation sink, then fire `probes.translation`
   * with it (a nested call, such as an ATS request's probes, adds to the same explanation).
   */
  private explained(kind: TranslationKind, t: Txn, r: TxnResult | null): AtsResponse | TxnResult {
    const x: Explain = { steps: [], walk: [], marks: [] };
    this.explain = x;
    let out: AtsResponse | TxnResult;
    try {
      out =
        kind === 'translate'
          ? this.translateTxn(t, r!)
          : kind === 'translated'
            ? this.translatedTxn(t, r!)
            : this.atsTranslateTxn(t);
    } finally {
      this.explain = null;
    }
    this.probes.translation.fire(
      r === null ? { kind, txn: t, explain: x } : { kind, txn: t, result: r, explain: x },
    );
    return out;
  }

  private translateTxn(t: Txn, r: TxnResult): TxnResult {
    r.ok = false;
    r.pa = 0;
    r.event = 0;
    r.faultType = 0;
    r.razwi = false;
    r.reason = '';
    r.ipa = -1;
    r.tlbHit = false;
    const env = this.env;
    this.cur = t;
    if (!env.smmuEnabled()) {
      this.curStats = this.stats(t.sid);
      this.curStats.txns++;
      if (env.gbpa.abort) {
        r.reason = 'SMMUEN=0 and GBPA.ABORT=1';
        if (this.explain) this.note('SMMUEN=0: GBPA.ABORT=1, the transaction aborts (no event)');
        return r;
      }
      if (this.explain) this.note('SMMUEN=0: GBPA.ABORT=0, the transaction bypasses');
      r.ok = true;
      r.pa = t.addr;
      return r;
    }
    const st = this.stats(t.sid);
    this.curStats = st;
    st.txns++;
    const lk = env.strtab.lookup(t.sid, this.lookup);
    if (lk.event !== 0) {
      this.curDec = undefined as unknown as StreamDec;
      if (lk.event === E.C_BAD_STREAMID)
        this.record(
          r,
          t,
          E.C_BAD_STREAMID,
          0,
          0,
          0,
          0,
          env.recinvsid(),
          'StreamID out of range or L1STD invalid (C_BAD_STREAMID)',
        );
      else
        this.record(
          r,
          t,
          E.F_STE_FETCH,
          0,
          0,
          0,
          lk.fetchAddr,
          true,
          `STE fetch aborted at 0x${lk.fetchAddr.toString(16)}`,
        );
      return r;
    }
    const ste = lk.ste! as SteWithDec;
    if (this.explain) this.explain.ste = ste;
    if (this.explain)
      this.note(
        `STE for SID ${t.sid} at 0x${ste.addr.toString(16)}${lk.l1Addr >= 0 ? ` (via L1STD at 0x${lk.l1Addr.toString(16)})` : ''}${lk.cached ? ' [config cache hit]' : ''}: V=${ste.valid ? 1 : 0} Config=0b${ste.config.toString(2).padStart(3, '0')}`,
      );
    if (ste.illegal !== null) {
      this.curDec = undefined as unknown as StreamDec;
      this.record(r, t, E.C_BAD_STE, 0, 0, 0, 0, true, `C_BAD_STE: ${ste.illegal}`);
      return r;
    }
    const cfg = ste.config;
    if ((cfg & 4) === 0) {
      r.reason = 'STE.Config=abort';
      if (this.explain) this.note('Config=abort: the transaction aborts silently');
      return r;
    }
    const dec = ste.dec ?? (ste.dec = this.decode(ste));
    this.curDec = dec;
    if (this.explain) this.explain.dec = dec;
    // substream selection
    let useS1 = dec.s1;
    let ssid = 0;
    if (t.ssv) {
      if (
        !dec.s1 ||
        this.env.features.ssidSize === 0 ||
        dec.cdmax === 0 ||
        t.ssid >= P2[dec.cdmax]!
      ) {
        this.record(
          r,
          t,
          E.C_BAD_SUBSTREAMID,
          0,
          0,
          0,
          0,
          true,
          `SubstreamID ${t.ssid} not accepted by this STE (C_BAD_SUBSTREAMID)`,
        );
        return r;
      }
      if (dec.s1dss === 2 && t.ssid === 0) {
        this.record(
          r,
          t,
          E.F_STREAM_DISABLED,
          0,
          0,
          0,
          0,
          true,
          'SubstreamID 0 with S1DSS=0b10 (F_STREAM_DISABLED)',
        );
        return r;
      }
      ssid = t.ssid;
    } else if (dec.s1 && dec.cdmax > 0) {
      if (dec.s1dss === 1) useS1 = false;
      else if (dec.s1dss !== 2) {
        this.record(
          r,
          t,
          E.F_STREAM_DISABLED,
          0,
          0,
          0,
          0,
          true,
          'no SubstreamID and S1DSS=terminate (F_STREAM_DISABLED)',
        );
        return r;
      }
    }
    const ft = env.features;
    if (!useS1) {
      // stage 1 bypassed: the input must fit the SMMU's IAS
      const iasBits = ft.ttf & 1 ? Math.max(ft.oas, 40) : ft.oas;
      if (t.addrHi !== 0 || t.addr >= P2[iasBits]!) {
        this.record(
          r,
          t,
          E.F_ADDR_SIZE,
          0,
          CLASS.IN,
          0,
          0,
          true,
          `input 0x${t.addr.toString(16)} is beyond the ${iasBits}-bit IAS with stage 1 bypassed`,
        );
        return r;
      }
      if (!dec.s2) {
        if (this.explain)
          this.note(
            dec.cfg === C.BYPASS
              ? 'Config=bypass: PA = IOVA'
              : 'S1DSS=bypass and stage 2 bypass: PA = IOVA',
          );
        r.ok = true;
        r.pa = t.addr;
        return r;
      }
      return this.finishS2Only(t, r, dec);
    }
    return this.translateS1(t, r, dec, ssid, true);
  }

  private finishS2Only(t: Txn, r: TxnResult, dec: StreamDec): TxnResult {
    const need = need_(t.write, this.effPriv(t), this.effInstr(t));
    const o = this.s2out;
    if (this.explain) this.note(`stage 2 (VMID ${dec.vmid}): IPA 0x${t.addr.toString(16)}`);
    const from = this.explain ? this.explain.walk.length : 0;
    const f = this.s2(dec, t.addr, need, false, o);
    if (this.explain) this.markS2(from, t.addr, 'in', -1, f, o);
    r.tlbHit = this.lastS2Hit;
    r.ipa = t.addr;
    if (f) {
      this.record(
        r,
        t,
        f,
        1,
        CLASS.IN,
        t.addr,
        o.fetchAddr,
        dec.s2r,
        `stage-2 ${faultName(f)} on IPA 0x${t.addr.toString(16)}`,
      );
      return r;
    }
    r.ok = true;
    r.pa = o.oa + (t.addr % P2[o.pageShift]!);
    if (this.explain) this.note(`PA 0x${r.pa.toString(16)}`);
    return r;
  }

  /** Stage-1 translation; with finalS2=false (split-stage ATS) the output is the IPA and nothing is cached. */
  private translateS1(
    t: Txn,
    r: TxnResult,
    dec: StreamDec,
    ssid: number,
    finalS2: boolean,
  ): TxnResult {
    const env = this.env;
    const ft = env.features;
    const caching = env.cachingOn() && finalS2;
    // CD
    const cached = caching ? env.cds.get(t.sid, ssid) : undefined;
    const lk = this.cdLookup;
    if (cached !== undefined) {
      lk.cd = cached;
      lk.event = 0;
    } else {
      fetchCd(
        t.sid,
        ssid,
        dec.ctxPtr,
        dec.s1fmt,
        dec.cdmax,
        ft,
        caching ? env.cds : null,
        this.cdFetch,
        {
          features: ft,
          s1stalld: dec.s1stalld,
          singleRange: dec.el2 && dec.world !== WORLD.NS_EL2_E2H,
          s2aa32: false,
        },
        dec.world === WORLD.NS_EL2,
        lk,
      );
    }
    if (lk.event !== 0) {
      if (lk.event === -2) {
        const o = this.s2sub;
        this.record(
          r,
          t,
          o.fault,
          1,
          CLASS.CD,
          o.oa,
          o.fetchAddr,
          dec.s2r,
          `stage-2 ${faultName(o.fault)} on the CD fetch at IPA 0x${o.oa.toString(16)}`,
        );
      } else if (lk.event === E.F_CD_FETCH) {
        this.record(
          r,
          t,
          E.F_CD_FETCH,
          0,
          0,
          0,
          this.lastFetchPa,
          true,
          `CD fetch aborted at PA 0x${this.lastFetchPa.toString(16)}`,
        );
      } else {
        this.record(
          r,
          t,
          lk.event,
          0,
          0,
          0,
          0,
          true,
          `L1CD for SubstreamID ${ssid} is invalid (C_BAD_SUBSTREAMID)`,
        );
      }
      return r;
    }
    const cd = lk.cd!;
    if (this.explain) {
      this.explain.cd = cd;
      this.explain.cdCached = cached !== undefined;
    }
    if (this.explain)
      this.note(
        `CD ${ssid} at ${dec.s2 ? 'IPA' : 'PA'} ${cd === null ? '?' : '0x' + cd.addr.toString(16)}: ASID ${cd.asid}${cd.illegal ? ` ILLEGAL (${cd.illegal})` : ''}`,
      );
    if (cd.illegal !== null) {
      this.record(r, t, E.C_BAD_CD, 0, 0, 0, 0, true, `C_BAD_CD: ${cd.illegal}`);
      return r;
    }
    if (cd.s && ft.stallModel !== 1) throw new NotImplementedError('stalling faults (CD.S=1)');
    // TTB selection
    let tt: StageCfg;
    let va: number;
    const hi = t.addrHi;
    const top0 = cd.tbi0 ? (hi & 7) === 0 : hi === 0;
    if (top0 && t.addr < cd.tt0Limit) {
      if (cd.epd0)
        return this.s1fault(t, r, cd, E.F_TRANSLATION, 'the input is in the TTB0 range but EPD0=1');
      tt = cd.tt0;
      va = t.addr;
    } else if ((cd.tbi1 ? (hi & 7) === 7 : hi === 0x7ff) && t.addr >= 2 ** 53 - P2[cd.tt1.ias]!) {
      if (cd.epd1)
        return this.s1fault(t, r, cd, E.F_TRANSLATION, 'the input is in the TTB1 range but EPD1=1');
      tt = cd.tt1;
      va = t.addr % P2[cd.tt1.ias]!;
    } else {
      return this.s1fault(
        t,
        r,
        cd,
        E.F_TRANSLATION,
        `input 0x${t.addr.toString(16)} is outside both TTB ranges (T0SZ/T1SZ)`,
      );
    }
    const need = need_(t.write, this.effPriv(t), this.effInstr(t));
    const stage = dec.s2 ? ST_S12 : ST_S1;
    const asid = dec.world === NS_EL2 ? GLOBAL : ft.asid16 ? cd.asid : cd.asid & 0xff;
    const st = this.curStats;
    // TLB
    if (caching && tt === cd.tt0) {
      let e = env.tlb.lookup(ctxKeyOf(NS, dec.world, stage, dec.vmid, asid), va);
      if (e === undefined && asid !== GLOBAL)
        e = env.tlb.lookup(ctxKeyOf(NS, dec.world, stage, dec.vmid, GLOBAL), va);
      if (e !== undefined) {
        st.hits++;
        r.tlbHit = true;
        if (this.explain)
          this.note(
            `IOTLB hit: ${stage === ST_S12 ? 'combined S1+S2' : 'stage-1'} entry for 0x${e.ia.toString(16)} (2^${e.shift} bytes)`,
          );
        return this.finishEntry(t, r, dec, cd, e, va, need);
      }
    }
    st.misses++;
    st.walks++;
    // stage-1 walk
    const o = this.s1out;
    const trace = this.explain ? this.explain.walk : undefined;
    if (this.explain) {
      this.explain.s1 = tt;
      this.explain.s1Input = va;
    }
    const f = walkStage(tt, va, dec.s2 ? this.nestedReader : this.plainReader, o, trace);
    st.descReads += o.descReads;
    if (f) {
      if (o.nestedS2) {
        const sub = this.s2sub;
        this.record(
          r,
          t,
          f,
          1,
          CLASS.TT,
          o.oa,
          sub.fetchAddr,
          dec.s2r,
          `stage-2 ${faultName(f)} translating the stage-1 table at IPA 0x${o.oa.toString(16)} (level ${o.level})`,
        );
        return r;
      }
      if (f === E.F_WALK_EABT) {
        this.record(
          r,
          t,
          f,
          0,
          CLASS.TT,
          0,
          o.fetchAddr,
          cd.r,
          `external abort reading a stage-1 descriptor at 0x${o.fetchAddr.toString(16)}`,
        );
        if (!cd.a && !ft.termModel) r.razwi = true;
        return r;
      }
      return this.s1fault(t, r, cd, f, `stage-1 ${faultName(f)} at level ${o.level}`);
    }
    const s1perm = o.perm;
    // stage-1 faults come before the final stage-2 translation (§5.4, §6.4): check the
    // stage-1 permission now
    if ((s1perm & need) === 0)
      return this.s1fault(
        t,
        r,
        cd,
        E.F_PERMISSION,
        `stage-1 permission fault (${permName(need)} not allowed)`,
      );
    if (o.afUpdate >= 0) env.setAccessFlag(o.afUpdate);
    const s1shift = o.pageShift;
    const s1oa = o.oa;
    const s1level = o.level;
    const global = o.global || dec.world === NS_EL2;
    const ipa = s1oa + (va % P2[s1shift]!);
    let oa = s1oa;
    let shift = s1shift;
    let s2perm: number = PM.ALL;
    if (!finalS2) {
      r.ok = (s1perm & need) !== 0;
      r.pa = ipa;
      r.ipa = ipa;
      if (!r.ok) r.reason = 'stage-1 permission';
      return r;
    }
    if (dec.s2) {
      const so = this.s2out;
      if (this.explain) this.note(`stage 2 (VMID ${dec.vmid}): IPA 0x${ipa.toString(16)}`);
      const from = this.explain ? this.explain.walk.length : 0;
      const f2 = this.s2(dec, ipa, need, false, so);
      if (this.explain) this.markS2(from, ipa, 'in', -1, f2, so);
      if (f2) {
        r.ipa = ipa;
        this.record(
          r,
          t,
          f2,
          1,
          CLASS.IN,
          ipa,
          so.fetchAddr,
          dec.s2r,
          `stage-2 ${faultName(f2)} on the output IPA 0x${ipa.toString(16)}`,
        );
        return r;
      }
      s2perm = so.perm;
      shift = Math.min(s1shift, so.pageShift);
      const pa = so.oa + (ipa % P2[so.pageShift]!);
      oa = pa - (va % P2[shift]!);
    }
    const ia = va - (va % P2[shift]!);
    const entry: TlbEntry = {
      ia,
      shift,
      oa,
      s1perm,
      s2perm,
      ipa: ipa - (va % P2[shift]!),
      level: s1level,
      g: tt.g,
      sid: t.sid,
      attr: o.attr,
    };
    if (caching && tt === cd.tt0)
      env.tlb.insert(NS, dec.world, stage, dec.vmid, global ? GLOBAL : asid, entry);
    return this.finishEntry(t, r, dec, cd, entry, va, need);
  }

  private finishEntry(
    t: Txn,
    r: TxnResult,
    dec: StreamDec,
    cd: CdEntry,
    e: TlbEntry,
    va: number,
    need: number,
  ): TxnResult {
    const off = va - e.ia;
    if ((e.s1perm & need) === 0)
      return this.s1fault(
        t,
        r,
        cd,
        E.F_PERMISSION,
        `stage-1 permission fault (${permName(need)} not allowed)`,
      );
    if (dec.s2) {
      r.ipa = e.ipa + off;
      if ((e.s2perm & need) === 0) {
        this.record(
          r,
          t,
          E.F_PERMISSION,
          1,
          CLASS.IN,
          r.ipa,
          0,
          dec.s2r,
          `stage-2 permission fault (${permName(need)} not allowed) on IPA 0x${r.ipa.toString(16)}`,
        );
        return r;
      }
    }
    r.ok = true;
    r.pa = e.oa + off;
    if (this.explain)
      this.note(
        `${dec.s2 ? `IOVA 0x${va.toString(16)} → IPA 0x${r.ipa.toString(16)} → ` : `IOVA 0x${va.toString(16)} → `}PA 0x${r.pa.toString(16)}`,
      );
    return r;
  }

  private s1fault(t: Txn, r: TxnResult, cd: CdEntry, f: number, reason: string): TxnResult {
    this.record(r, t, f, 0, CLASS.IN, 0, 0, cd.r, reason);
    if (!cd.a && !this.env.features.termModel) r.razwi = true;
    return r;
  }

  /** CD/L1CD fetch: through stage 2 when nested (faults with CLASS=CD are left in s2sub). */
  private readonly cdFetch = (addr: number, out: Uint32Array, n: number): number => {
    const dec = this.curDec;
    let pa = addr;
    if (dec.s2) {
      const o = this.s2sub;
      const from = this.explain ? this.explain.walk.length : 0;
      const f = this.s2(dec, addr, PM.R_P, true, o);
      if (this.explain) this.markS2(from, addr, 'cd', -1, f, o);
      if (f) {
        o.fault = f;
        o.oa = addr;
        return -2;
      }
      pa = o.oa + (addr % P2[o.pageShift]!);
    }
    this.lastFetchPa = pa;
    try {
      this.env.mem.readWords(pa, out, n);
    } catch (e) {
      if (!(e instanceof ExternalAbort)) throw e;
      return -1;
    }
    return pa;
  };

  // ---- ATS ---------------------------------------------------------------------------------------

  /**
   * An ATS Translation Request. Returns the translated address (a PA, or an IPA for
   * split-stage EATS=0b10) with the permissions granted, or a denial (UR/CA).
   */
  atsTranslate(t: Txn): AtsResponse {
    if (this.probes.translation.active && this.explain === null)
      return this.explained('ats', t, null) as AtsResponse;
    return this.atsTranslateTxn(t);
  }

  private atsTranslateTxn(t: Txn): AtsResponse {
    const env = this.env;
    if (!env.smmuEnabled()) return { ok: false, status: 'UR', reason: 'SMMUEN=0' };
    this.curStats = this.stats(t.sid);
    this.cur = t;
    const lk = env.strtab.lookup(t.sid, this.lookup);
    const dummy = newTxnResult();
    if (lk.event !== 0 || lk.ste!.illegal !== null)
      return { ok: false, status: 'CA', reason: 'no valid STE' };
    const ste = lk.ste! as SteWithDec;
    if ((ste.config & 4) === 0) return { ok: false, status: 'UR', reason: 'Config=abort' };
    const dec = ste.dec ?? (ste.dec = this.decode(ste));
    this.curDec = dec;
    let eats = dec.eats;
    if (eats === EATS.S1CHK && !env.atschk()) eats = EATS.ABT;
    if (dec.cfg === C.BYPASS || eats === EATS.ABT) {
      this.record(
        dummy,
        t,
        E.F_BAD_ATS_TREQ,
        0,
        0,
        0,
        0,
        true,
        'ATS Translation Request not allowed',
      );
      return { ok: false, status: 'UR', reason: dec.cfg === C.BYPASS ? 'STE bypass' : 'EATS=0b00' };
    }
    // translate for read and for write to find the granted permissions, without recording faults
    const saved = this.explain;
    const res = newTxnResult();
    const w = { ...t, write: false };
    const split = eats === EATS.S1CHK;
    const readOk = this.atsProbe(w, res, dec, split);
    const outAddr = res.ok ? (split ? (res.ipa >= 0 ? res.ipa : res.pa) : res.pa) : -1;
    const res2 = newTxnResult();
    const writeOk = this.atsProbe({ ...t, write: true }, res2, dec, split);
    this.explain = saved;
    if (!readOk && !writeOk) return { ok: false, status: 'SUCCESS_NO_ACCESS', reason: res.reason };
    return {
      ok: true,
      addr: readOk ? outAddr : split ? (res2.ipa >= 0 ? res2.ipa : res2.pa) : res2.pa,
      read: readOk,
      write: writeOk,
      split,
    };
  }

  private atsProbe(t: Txn, r: TxnResult, dec: StreamDec, split: boolean): boolean {
    // faults on a Translation Request are reported in the response, not as events
    this.suppressEvents = true;
    try {
      if (split) this.translateS1(t, r, dec, t.ssv ? t.ssid : 0, false);
      else this.translate(t, r);
      return r.ok;
    } finally {
      this.suppressEvents = false;
    }
  }

  /**
   * An ATS Translated transaction: the device presents an address it got from its ATC (a PA,
   * or an IPA under split-stage ATS). With CR0.ATSCHK=0 it is not checked at all.
   */
  translated(t: Txn, r: TxnResult): TxnResult {
    if (this.probes.translation.active && this.explain === null)
      return this.explained('translated', t, r) as TxnResult;
    return this.translatedTxn(t, r);
  }

  private translatedTxn(t: Txn, r: TxnResult): TxnResult {
    r.ok = false;
    r.event = 0;
    r.faultType = 0;
    r.reason = '';
    r.ipa = -1;
    r.razwi = false;
    r.tlbHit = false;
    const env = this.env;
    this.cur = t;
    this.curStats = this.stats(t.sid);
    this.curDec = undefined as unknown as StreamDec;
    if (!env.smmuEnabled()) {
      this.record(
        r,
        t,
        E.F_TRANSL_FORBIDDEN,
        0,
        0,
        0,
        0,
        true,
        'ATS Translated transaction with SMMUEN=0',
      );
      return r;
    }
    if (!env.atschk()) {
      r.ok = true;
      r.pa = t.addr;
      if (this.explain)
        this.note(
          'CR0.ATSCHK=0: the Translated transaction is not checked; PA = the address the device presented',
        );
      return r;
    }
    const lk = env.strtab.lookup(t.sid, this.lookup);
    if (lk.event !== 0 || lk.ste!.illegal !== null) {
      r.reason = 'Translated transaction on an invalid STE';
      return r;
    }
    const ste = lk.ste! as SteWithDec;
    if ((ste.config & 4) === 0) {
      r.reason = 'Config=abort';
      return r;
    }
    const dec = ste.dec ?? (ste.dec = this.decode(ste));
    this.curDec = dec;
    if (dec.cfg === C.BYPASS || dec.eats === EATS.ABT) {
      this.record(
        r,
        t,
        E.F_TRANSL_FORBIDDEN,
        0,
        0,
        0,
        0,
        true,
        'ATS Translated transaction not allowed by the STE (F_TRANSL_FORBIDDEN)',
      );
      return r;
    }
    if (dec.eats === EATS.S1CHK && dec.s2) {
      // split-stage: the address is an IPA; stage 2 still applies
      return this.finishS2Only(t, r, dec);
    }
    r.ok = true;
    r.pa = t.addr;
    return r;
  }
}

// Event record words, from the field declarations in events.ts (checked once at load)
const EV_W0 = wordOf([EventNum, E_SSV, E_SubstreamID], 0);
const EV_SID_W = wholeWord(E_StreamID);
/** PnU, InD, RnW, S2 and CLASS share DW1's upper word */
const EV_DW1_HI = wordOf([E_PnU, E_InD, E_RnW, E_S2, E_CLASS], 3);
const INADDR_W = inWord(E_InputAddr, 4).word;
/** a number holds address bits [52:32] in the upper word; Txn.addrHi holds bits [63:53] */
const NUM_HI_BITS = 53 - 32;
const NUM_HI_M = 2 ** NUM_HI_BITS - 1;
const ADDR_HI_M = 2 ** (64 - 53) - 1;
const IPA_M = addressMasks(inWord(E_IPA, 6));
const IPA_LO_M = IPA_M.lo;
const IPA_HI_M = IPA_M.hi;
const FETCH_M = addressMasks(inWord(E_FetchAddr, 6));
const FETCH_LO_M = FETCH_M.lo;
const FETCH_HI_M = FETCH_M.hi;

/** `w`, once every field is checked to lie in it. */
function wordOf(fields: readonly Field[], w: number): number {
  for (const f of fields) inWord(f, w);
  return w;
}

/** DW2 of an event record: the full 64-bit input address. */
function putInputAddr(e: Uint32Array, t: Txn): void {
  e[INADDR_W] = (t.addr % TWO32) >>> 0;
  e[INADDR_W + 1] =
    ((Math.floor(t.addr / TWO32) & NUM_HI_M) | ((t.addrHi & ADDR_HI_M) << NUM_HI_BITS)) >>> 0;
}

/** DW3 of an event record: an address field in place (IPA[55:12] or FetchAddr[55:3]). */
function putDw3(e: Uint32Array, addr: number, lo: number, hi: number): void {
  e[6] = ((addr % TWO32) & lo) >>> 0;
  e[7] = Math.floor(addr / TWO32) & hi;
}

export type AtsResponse =
  | { ok: true; addr: number; read: boolean; write: boolean; split: boolean }
  | { ok: false; status: 'UR' | 'CA' | 'SUCCESS_NO_ACCESS'; reason: string };

export function faultName(n: number): string {
  switch (n) {
    case E.F_TRANSLATION:
      return 'translation fault';
    case E.F_ADDR_SIZE:
      return 'address size fault';
    case E.F_ACCESS:
      return 'access flag fault';
    case E.F_PERMISSION:
      return 'permission fault';
    case E.F_WALK_EABT:
      return 'external abort on a walk';
  }
  return `fault 0x${n.toString(16)}`;
}

function permName(need: number): string {
  if (need & (PM.W_P | PM.W_U)) return 'write';
  if (need & (PM.X_P | PM.X_U)) return 'execute';
  return 'read';
}
