/**
 * The walk explainer: replay a scenario to a step, then present one DMA to the SMMU with the
 * translator's explanation sink on, and show how it was decided — the STE (and where it came
 * from), the CD, every stage-1 and stage-2 descriptor read with its level, address and the bits
 * that decided it, and the final PA or the fault with the event record it produced.
 *
 * The DMA is a translation only: the SMMU translates it (which may fill the IOTLB and the
 * configuration caches, set an Access flag with HTTU, and write an event record, as any DMA
 * would), but no data moves. With `cold`, the SMMU's caches are emptied first by direct calls on
 * the model (the effect of CFGI_ALL + TLBI_NSNH_ALL + TLBI_EL2_ALL + CMD_SYNC, without going
 * through a command queue that the host may not own, or that may be stopped).
 *
 * Under a hypervisor the hardware walks the hypervisor's shadow stream table: the explanation
 * is of what the hardware does.
 */
import { get, type Field } from '../../hw/bits.ts';
import type { Machine } from '../../hw/machine.ts';
import { STE, CONFIG_MEANING, STE_WORDS } from '../../hw/smmu/ste.ts';
import { CD } from '../../hw/smmu/cd.ts';
import {
  decodeEvent,
  eventFields,
  eventName,
  CLASS,
  EVT,
  type DecodedEvent,
} from '../../hw/smmu/events.ts';
import {
  newTxn,
  newTxnResult,
  faultName,
  type Explain,
  type ExplainMark,
} from '../../hw/smmu/translate.ts';
import type { WalkTraceStep } from '../../hw/smmu/walk.ts';
import { runScenario, type RunResult } from '../engine/runner.ts';
import type { HypMode, Scenario } from '../engine/loader.ts';

/** Bad input to the explainer (the CLI exits 2). `arg` names the option at fault. */
export class ExplainInputError extends Error {
  constructor(
    readonly arg: string,
    message: string,
  ) {
    super(`${arg}: ${message}`);
    this.name = 'ExplainInputError';
  }
}

export interface ExplainOptions {
  sid: number;
  /** SubstreamID; undefined: the device's default SubstreamID if the machine declares one, else none (SSV=0) */
  ssid?: number;
  /** input address (up to 64 bits) */
  iova: number | bigint;
  access?: 'read' | 'write';
  priv?: boolean;
  instr?: boolean;
  /** replay steps 0..atStep-1 first (default: every step) */
  atStep?: number;
  /** the hypervisor to run under (default: the scenario's first variant) */
  hyp?: HypMode;
  /** empty the SMMU's configuration caches and IOTLB before the DMA */
  cold?: boolean;
}

/** One node of the explanation tree. Addresses and descriptors in `data` are hex strings. */
export interface ExplainNode {
  kind:
    | 'dma'
    | 'smmu'
    | 'ste'
    | 'cd'
    | 's1'
    | 'desc'
    | 's2'
    | 'tlb'
    | 'note'
    | 'warning'
    | 'result'
    | 'fault'
    | 'event'
    | 'field';
  text: string;
  data?: Record<string, string | number | boolean | null>;
  children?: ExplainNode[];
}

/** One descriptor read (or attempted read), flat, in the order the SMMU made them. */
export interface DescRead {
  stage: 1 | 2;
  level: number;
  /** the address the walk computed (an IPA for a nested stage-1 table) */
  addr: string;
  /** the PA read (null when nothing was read: an input-range fault) */
  pa: string | null;
  desc: string;
  kind: WalkTraceStep['kind'];
  note: string;
  /** for stage-2 reads: what that stage-2 translation was for */
  for?: 'cd' | 'tt' | 'in';
  /** for stage-2 reads done for a stage-1 table: the stage-1 level */
  s1Level?: number;
}

export type ExplainOutcome =
  | { ok: true; pa: string; ipa: string | null; tlbHit: boolean; razwi: false }
  | {
      ok: false;
      /** the fault's event type (null for a silent abort: STE.Config=abort, GBPA.ABORT) */
      event: string | null;
      reason: string;
      /** S2, CLASS, IPA / FetchAddr as reported (present for translation-class faults) */
      S2?: number;
      CLASS?: string;
      IPA?: string;
      FetchAddr?: string;
      /** whether the SMMU was told to record it (STE.S2R / CD.R; configuration errors always) */
      recorded: boolean;
      /** terminated with RAZ/WI (CD.A=0 and STALL_MODEL/TERM_MODEL allow it) */
      razwi: boolean;
    };

export interface ExplainResult {
  scenario: string;
  hypMode: HypMode;
  /** steps 0..atStep-1 were replayed */
  atStep: number;
  totalSteps: number;
  /** what the replay reported (steps run, expectations that failed on the way) */
  replay: { stepsRun: number; failed: number; skipped: number };
  cold: boolean;
  dma: {
    sid: number;
    ssid: number | null;
    iova: string;
    access: 'read' | 'write';
    priv: boolean;
    instr: boolean;
  };
  outcome: ExplainOutcome;
  /** the event record the DMA produced: written to the event queue or not (queue disabled, full) */
  event: { written: boolean; raw: string[]; decoded: DecodedEvent } | null;
  /** every descriptor read, flat */
  reads: DescRead[];
  /** the translator's own notes, verbatim */
  notes: string[];
  tree: ExplainNode;
}

const hex = (v: number | bigint): string => '0x' + v.toString(16);
const TWO53 = 2 ** 53;
const TWO64 = 1n << 64n;

/** Parse a number given as decimal or 0x-hex (up to 64 bits); throws ExplainInputError naming `arg`. */
export function parseNumberArg(arg: string, v: unknown, maxBits = 64): bigint {
  const s =
    typeof v === 'number' ? String(v) : typeof v === 'string' ? v.trim().replace(/_/g, '') : '';
  if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(s))
    throw new ExplainInputError(
      arg,
      `"${String(v)}" is not a number (give decimal or 0x-prefixed hex)`,
    );
  const n = BigInt(s);
  if (n >= 1n << BigInt(maxBits))
    throw new ExplainInputError(arg, `${s} does not fit in ${maxBits} bits`);
  return n;
}

function fieldText(w: ArrayLike<number>, f: Field): string {
  const v = get(w, f);
  const m = f.values?.[v];
  return m !== undefined ? `${f.name}=${v} (${m})` : `${f.name}=${v}`;
}

/** Replay `sc` and explain one DMA. */
export function explainDma(sc: Scenario, o: ExplainOptions): ExplainResult {
  const total = sc.steps.length;
  const atStep = o.atStep ?? total;
  if (!Number.isInteger(atStep) || atStep < 0 || atStep > total)
    throw new ExplainInputError(
      '--at-step',
      `${o.atStep} is outside 0..${total} (${sc.name} has ${total} steps; K replays steps 0..K-1)`,
    );
  if (!Number.isInteger(o.sid) || o.sid < 0 || o.sid >= 2 ** 32)
    throw new ExplainInputError('--sid', `${o.sid} is not a 32-bit StreamID`);
  if (o.ssid !== undefined && (!Number.isInteger(o.ssid) || o.ssid < 0 || o.ssid >= 2 ** 20))
    throw new ExplainInputError('--ssid', `${o.ssid} is not a 20-bit SubstreamID`);
  const iovaBig = typeof o.iova === 'bigint' ? o.iova : BigInt(o.iova);
  if (iovaBig < 0n || iovaBig >= TWO64)
    throw new ExplainInputError('--iova', `${hex(iovaBig)} is not a 64-bit address`);
  const hyp: HypMode = o.hyp ?? sc.variants[0] ?? sc.machine.hyp;
  const access = o.access ?? 'read';

  let m: Machine | undefined;
  const run: RunResult = runScenario(sc, { hyp, stopAfter: atStep, onMachine: (x) => (m = x) });
  const machine = m!;
  const smmu = machine.smmu;

  if (o.cold) {
    // the effect of CFGI_ALL and TLBI_NSNH_ALL/TLBI_EL2_ALL (+ CMD_SYNC), called on the model directly
    smmu.strtab.invalidateAll();
    smmu.cds.invalidateAll();
    smmu.tlb.clear();
  }

  // the transaction, as a DmaEndpoint would present it
  const t = newTxn();
  const ssid = o.ssid ?? machine.deviceBySid(o.sid)?.defaultSsid;
  t.sid = o.sid;
  t.ssv = ssid !== undefined;
  t.ssid = ssid ?? 0;
  t.addr = Number(iovaBig % BigInt(TWO53));
  t.addrHi = Number((iovaBig >> 53n) & 0x7ffn);
  t.write = access === 'write';
  t.priv = o.priv ?? false;
  t.instr = o.instr ?? false;

  let explained: Explain | null = null;
  const r = newTxnResult();
  const off = smmu.translator.probes.translation.subscribe((e) => (explained ??= e.explain));
  try {
    smmu.translate(t, r);
  } finally {
    off();
  }
  const x: Explain = explained!;

  const dma = {
    sid: o.sid,
    ssid: ssid ?? null,
    iova: hex(iovaBig),
    access,
    priv: t.priv,
    instr: t.instr,
  };
  const decoded = x.record ? decodeEvent(x.record) : null;
  const event = decoded ? { written: x.recordWritten === true, raw: decoded.raw, decoded } : null;
  const outcome = makeOutcome(r, x, event?.decoded);
  const reads = flatReads(x);
  const tree = buildTree(sc, machine, hyp, atStep, total, o.cold === true, dma, x, outcome, event);
  return {
    scenario: sc.name,
    hypMode: hyp,
    atStep,
    totalSteps: total,
    replay: { stepsRun: run.steps, failed: run.failed.length, skipped: run.skipped ?? 0 },
    cold: o.cold === true,
    dma,
    outcome,
    event,
    reads,
    notes: x.steps,
    tree,
  };
}

/** CLASS by its name in the reference (CD, TT, IN), from the declaration in events.ts. */
function className(cls: number): string {
  return Object.entries(CLASS).find(([, v]) => v === cls)?.[0] ?? `reserved (${cls})`;
}

function makeOutcome(
  r: ReturnType<typeof newTxnResult>,
  x: Explain,
  ev: DecodedEvent | undefined,
): ExplainOutcome {
  if (r.ok)
    return {
      ok: true,
      pa: hex(r.pa),
      ipa: r.ipa >= 0 ? hex(r.ipa) : null,
      tlbHit: r.tlbHit,
      razwi: false,
    };
  const f = x.fault;
  if (!f) return { ok: false, event: null, reason: r.reason, recorded: false, razwi: r.razwi };
  const out: ExplainOutcome = {
    ok: false,
    event: eventName(f.num),
    reason: r.reason,
    recorded: f.recorded,
    razwi: r.razwi,
  };
  const translationClass =
    (f.num >= EVT.F_TRANSLATION && f.num <= EVT.F_PERMISSION) || f.num === EVT.F_WALK_EABT;
  if (translationClass) {
    // what the record says (or would say, when it is not recorded)
    out.S2 = f.s2;
    out.CLASS = className(f.cls);
    if (f.num === EVT.F_WALK_EABT) out.FetchAddr = hex(f.fetchAddr - (f.fetchAddr % 8));
    else if (f.s2) out.IPA = hex(f.ipa - (f.ipa % 4096));
  } else if (f.num === EVT.F_STE_FETCH || f.num === EVT.F_CD_FETCH) {
    out.FetchAddr = hex(f.fetchAddr - (f.fetchAddr % 8));
  }
  if (ev && translationClass) {
    // the written record is the authority
    out.S2 = Number(ev.fields['S2']);
    out.CLASS = className(Number(ev.fields['CLASS']));
  }
  return out;
}

function readOf(s: WalkTraceStep): DescRead {
  return {
    stage: s.stage,
    level: s.level,
    addr: hex(s.addr),
    pa: s.pa >= 0 ? hex(s.pa) : null,
    desc: '0x' + s.desc.toString(16).padStart(16, '0'),
    kind: s.kind,
    note: s.note,
  };
}

function flatReads(x: Explain): DescRead[] {
  const reads = x.walk.map(readOf);
  for (const mk of x.marks ?? []) {
    if (mk.kind !== 's2') continue;
    for (let i = mk.from; i < mk.to; i++) {
      reads[i]!.for = mk.purpose;
      if (mk.purpose === 'tt') reads[i]!.s1Level = mk.level;
    }
  }
  return reads;
}

// ---- the tree ----------------------------------------------------------------------------------

function descNode(s: WalkTraceStep, nestedS1: boolean): ExplainNode {
  const d = '0x' + s.desc.toString(16).padStart(16, '0');
  const where =
    s.kind === 'range'
      ? ''
      : nestedS1
        ? ` @IPA ${hex(s.addr)} (PA ${hex(s.pa)})`
        : ` @PA ${hex(s.pa)}`;
  const text =
    s.kind === 'range'
      ? `L${s.level}: no descriptor read — ${s.note}`
      : s.kind === 'abort'
        ? `L${s.level} descriptor${where}: ${s.note}`
        : `L${s.level} ${s.kind} descriptor${where} = ${d}: ${s.note}`;
  return { kind: 'desc', text, data: readOf(s) as unknown as Record<string, string | number> };
}

const PURPOSE: Record<'cd' | 'tt' | 'in', string> = {
  cd: 'the CD/L1CD fetch',
  tt: 'a stage-1 descriptor',
  in: 'the output address',
};

function s2Node(mk: Extract<ExplainMark, { kind: 's2' }>, x: Explain): ExplainNode {
  const vmid = x.dec?.vmid;
  const what =
    mk.purpose === 'tt' ? `the stage-1 level-${mk.level} descriptor` : PURPOSE[mk.purpose];
  const result = mk.fault ? `${faultName(mk.fault)}` : `PA ${hex(mk.pa)}`;
  const text = `stage 2 (VMID ${vmid ?? '?'}) for ${what} at IPA ${hex(mk.ipa)}: ${mk.tlbHit ? 'IOTLB hit, no walk' : 'walk'} → ${result}`;
  const children: ExplainNode[] = [];
  for (let i = mk.from; i < mk.to; i++) children.push(descNode(x.walk[i]!, false));
  if (!mk.tlbHit && mk.fault && !children.length)
    children.push({ kind: 'note', text: 'no descriptor was read' });
  return {
    kind: 's2',
    text,
    data: {
      for: mk.purpose,
      ipa: hex(mk.ipa),
      s1Level: mk.purpose === 'tt' ? mk.level : null,
      tlbHit: mk.tlbHit,
      fault: mk.fault ? eventName(mk.fault) : null,
      pa: mk.fault ? null : hex(mk.pa),
    },
    ...(children.length ? { children } : {}),
  };
}

function steNode(machine: Machine, x: Explain, text: string, sid: number): ExplainNode {
  const ste = x.ste!;
  const w = ste.words;
  const cached = /\[config cache hit\]/.test(text);
  const l1 = /via L1STD at (0x[0-9a-f]+)/.exec(text)?.[1];
  const children: ExplainNode[] = [];
  const s1 = (ste.config & 5) === 5;
  const s2 = (ste.config & 6) === 6;
  if (ste.illegal !== null)
    children.push({ kind: 'warning', text: `ILLEGAL: ${ste.illegal} → C_BAD_STE` });
  else {
    if (s1) {
      children.push({
        kind: 'field',
        text: `stage 1: S1ContextPtr ${hex(get(w, STE.S1ContextPtr) * 64)}${s2 ? ' (an IPA)' : ''}, ${fieldText(w, STE.S1Fmt)}, S1CDMax=${get(w, STE.S1CDMax)}, ${fieldText(w, STE.S1DSS)}`,
      });
    }
    if (s2) {
      const sl0 = get(w, STE.S2SL0);
      children.push({
        kind: 'field',
        text: `stage 2: S2VMID ${get(w, STE.S2VMID)}, S2TTB ${hex(get(w, STE.S2TTB) * 16)}, S2T0SZ=${get(w, STE.S2T0SZ)} (${64 - get(w, STE.S2T0SZ)}-bit IPA), S2SL0=${sl0}${x.dec?.s2cfg ? ` (start level ${x.dec.s2cfg.start})` : ''}, ${fieldText(w, STE.S2TG)}, ${fieldText(w, STE.S2PS)}, S2R=${get(w, STE.S2R)}, S2PTW=${get(w, STE.S2PTW)}, S2AFFD=${get(w, STE.S2AFFD)}, S2HA=${get(w, STE.S2HA)}`,
      });
    }
    const eats = get(w, STE.EATS);
    if (eats) children.push({ kind: 'field', text: fieldText(w, STE.EATS) });
  }
  // a cached STE the CPU has since rewritten: the CFGI_STE (+ CMD_SYNC) that would make the SMMU see it is missing
  if (cached) {
    const mem = new Uint32Array(STE_WORDS);
    try {
      machine.mem.readWords(ste.addr, mem);
      if (mem.some((v, i) => v !== w[i]))
        children.push({
          kind: 'warning',
          text: `the STE in memory at ${hex(ste.addr)} differs from this cached copy: a CFGI_STE + CMD_SYNC is missing (or still to come)`,
        });
    } catch {
      /* no RAM there any more: nothing to compare */
    }
  }
  return {
    kind: 'ste',
    text: `STE for SID ${sid} at PA ${hex(ste.addr)}${l1 ? ` (via L1STD at ${l1})` : ''}${cached ? ' [config cache hit]' : ''}: V=${ste.valid ? 1 : 0} Config=0b${ste.config.toString(2).padStart(3, '0')} (${CONFIG_MEANING[ste.config]})`,
    data: {
      addr: hex(ste.addr),
      l1std: l1 ?? null,
      cached,
      V: ste.valid ? 1 : 0,
      Config: ste.config,
      illegal: ste.illegal,
    },
    ...(children.length ? { children } : {}),
  };
}

function cdNode(x: Explain, text: string, pendingCd: ExplainNode[]): ExplainNode {
  const cd = x.cd;
  const nested = x.dec?.s2 === true;
  const children: ExplainNode[] = [...pendingCd];
  pendingCd.length = 0;
  if (cd && cd.illegal === null) {
    const w = cd.words;
    children.push({
      kind: 'field',
      text: `TTB0 ${hex(get(w, CD.TTB0) * 16)}${nested ? ' (an IPA)' : ''}, T0SZ=${get(w, CD.T0SZ)} (${cd.tt0.ias}-bit input), ${fieldText(w, CD.TG0)}, start level ${cd.tt0.start}, EPD0=${cd.epd0 ? 1 : 0}; EPD1=${cd.epd1 ? 1 : 0}; R=${cd.r ? 1 : 0} (record stage-1 faults) A=${cd.a ? 1 : 0} S=${cd.s ? 1 : 0}; ASID ${cd.asid}`,
    });
  } else if (cd?.illegal)
    children.push({ kind: 'warning', text: `ILLEGAL: ${cd.illegal} → C_BAD_CD` });
  const cached = x.cdCached === true;
  return {
    kind: 'cd',
    text: text.replace(/^CD (\d+)/, 'CD $1') + (cached ? ' [config cache hit]' : ''),
    data: {
      addr: cd ? hex(cd.addr) : null,
      addrIs: nested ? 'IPA' : 'PA',
      cached,
      asid: cd?.asid ?? null,
      illegal: cd?.illegal ?? null,
    },
    ...(children.length ? { children } : {}),
  };
}

function s1Header(x: Explain): ExplainNode {
  const c = x.s1;
  const nested = x.dec?.s2 === true;
  const which = c && x.cd ? (c === x.cd.tt1 ? 'TTB1' : 'TTB0') : 'TTB0';
  const text = c
    ? `stage 1 walk of ${hex(x.s1Input ?? 0)}: ${which} ${hex(c.ttb)}${nested ? ' (IPA: each table address goes through stage 2)' : ''}, ${2 ** (c.g - 10)}KB granule, ${c.ias}-bit input, start level ${c.start}`
    : 'stage 1 walk';
  return {
    kind: 's1',
    text,
    data: c ? { ttb: hex(c.ttb), table: which, granule: 2 ** c.g, ias: c.ias, start: c.start } : {},
    children: [],
  };
}

function buildTree(
  sc: Scenario,
  machine: Machine,
  hyp: HypMode,
  atStep: number,
  total: number,
  cold: boolean,
  dma: ExplainResult['dma'],
  x: Explain,
  outcome: ExplainOutcome,
  event: ExplainResult['event'],
): ExplainNode {
  const top: ExplainNode[] = [];
  const smmu = machine.smmu;
  const g = smmu.strtab.geometry();
  top.push({
    kind: 'smmu',
    text: !smmu.smmuEnabled()
      ? `SMMU: SMMUEN=0 — no stream table is used: GBPA decides${cold ? '; caches emptied first (--cold)' : ''}`
      : `SMMU: SMMUEN=1, stream table at ${hex(g.base)} (${g.fmt ? `2-level, SPLIT=${g.split}` : 'linear'}, ${2 ** g.log2size} StreamIDs)${hyp !== 'none' ? ` — the ${hyp} hypervisor's shadow stream table, which is what the hardware walks` : ''}${cold ? '; caches emptied first (--cold)' : ''}`,
    data: {
      smmuen: smmu.smmuEnabled(),
      strtab: hex(g.base),
      fmt: g.fmt ? '2-level' : 'linear',
      log2size: g.log2size,
      hyp,
      cold,
    },
  });
  const pendingCd: ExplainNode[] = [];
  let s1: ExplainNode | null = null;
  let pendingTt: ExplainNode | null = null;
  let wi = 0;
  const nestedS1 = x.dec?.s2 === true;
  const s1Node = (): ExplainNode => {
    if (!s1) {
      s1 = s1Header(x);
      top.push(s1);
    }
    return s1;
  };
  // stage-1 descriptor reads before walk index `upto` (stage-2 reads are claimed by their marks)
  const flushS1 = (upto: number): void => {
    for (; wi < upto; wi++) {
      const s = x.walk[wi]!;
      if (s.stage !== 1) continue;
      const n = descNode(s, nestedS1);
      if (pendingTt) {
        n.children = [pendingTt];
        pendingTt = null;
      }
      s1Node().children!.push(n);
    }
  };
  for (const mk of x.marks ?? []) {
    if (mk.kind === 'note') {
      flushS1(mk.at);
      const t = mk.text;
      if (t.startsWith('STE for SID') && x.ste) top.push(steNode(machine, x, t, dma.sid));
      else if (/^CD \d+ at /.test(t)) top.push(cdNode(x, t, pendingCd));
      else if (t.startsWith('IOTLB hit'))
        top.push({
          kind: 'tlb',
          text: `${t} — no walk: the cached translation decides (use --cold to see the walk)`,
          data: { tlbHit: true },
        });
      else if (
        t.startsWith('fault: ') ||
        t.startsWith('stage 2 (VMID') ||
        /(^| )PA 0x[0-9a-f]+$/.test(t)
      )
        continue; // shown by the s2 and outcome nodes
      else top.push({ kind: 'note', text: t });
      continue;
    }
    flushS1(mk.from);
    wi = Math.max(wi, mk.to);
    const n = s2Node(mk, x);
    if (mk.purpose === 'cd') pendingCd.push(n);
    else if (mk.purpose === 'in') top.push(n);
    else if (mk.fault) {
      s1Node().children!.push({
        kind: 'desc',
        text: `L${mk.level} descriptor @IPA ${hex(mk.ipa)}: not read — stage 2 could not translate its IPA`,
        data: { stage: 1, level: mk.level, addr: hex(mk.ipa), pa: null },
        children: [n],
      });
    } else pendingTt = n;
  }
  flushS1(x.walk.length);
  // a CD fetch that stage 2 could not complete (no CD was read)
  if (pendingCd.length)
    top.push({
      kind: 'cd',
      text: `CD fetch (S1ContextPtr is an IPA)`,
      children: pendingCd.splice(0),
    });
  if (outcome.ok === false && outcome.event === 'C_BAD_STREAMID')
    top.push(badSidNode(machine, dma.sid));
  top.push(outcomeNode(outcome, event));
  const ssidText = dma.ssid !== null ? ` ssid ${dma.ssid}` : '';
  return {
    kind: 'dma',
    text: `DMA sid ${dma.sid}${ssidText} iova ${dma.iova} ${dma.access}${dma.priv ? ' priv' : ''}${dma.instr ? ' instr' : ''} — ${sc.name}${hyp !== 'none' || sc.variants.length > 1 ? ` under ${hyp}` : ''}, after ${atStep === total ? `all ${total} steps` : `steps 0..${atStep - 1} of ${total}`}`,
    data: { ...dma, scenario: sc.name, hyp, atStep },
    children: top,
  };
}

/** Why a StreamID has no STE: beyond LOG2SIZE, or an L1STD (as it is in memory now) without a level-2 table for it. */
function badSidNode(machine: Machine, sid: number): ExplainNode {
  const g = machine.smmu.strtab.geometry();
  if (sid >= 2 ** g.log2size)
    return {
      kind: 'note',
      text: `SID ${sid} is beyond the stream table's ${g.log2size}-bit StreamID range (STRTAB_BASE_CFG.LOG2SIZE, limited by IDR1.SIDSIZE)`,
    };
  if (!g.fmt) return { kind: 'note', text: `SID ${sid} is within the linear stream table` };
  const idx = Math.floor(sid / 2 ** g.split);
  const at = g.base + idx * 8;
  let d: bigint;
  try {
    d = machine.mem.read64(at);
  } catch {
    return { kind: 'note', text: `L1STD ${idx} at ${hex(at)} is not in RAM` };
  }
  const span = Number(d & 0x1fn);
  const l2 = sid % 2 ** g.split;
  const why =
    span === 0
      ? 'Span=0: no level-2 table'
      : span > g.split + 1 || span > 11
        ? `Span=${span} is invalid for SPLIT=${g.split}`
        : `index ${l2} is beyond Span=${span} (${2 ** (span - 1)} STEs)`;
  return {
    kind: 'note',
    text: `SID ${sid}: L1STD ${idx} at ${hex(at)} = ${'0x' + d.toString(16).padStart(16, '0')} (in memory now): ${why}`,
    data: { l1std: hex(at), desc: '0x' + d.toString(16), span },
  };
}

function outcomeNode(o: ExplainOutcome, event: ExplainResult['event']): ExplainNode {
  if (o.ok) {
    return {
      kind: 'result',
      text: `OK → ${o.ipa !== null ? `IPA ${o.ipa} → ` : ''}PA ${o.pa}${o.tlbHit ? ' (from the IOTLB)' : ''}`,
      data: { pa: o.pa, ipa: o.ipa, tlbHit: o.tlbHit },
    };
  }
  if (o.event === null)
    return {
      kind: 'fault',
      text: `ABORT (no event): ${o.reason}`,
      data: { event: null, reason: o.reason },
    };
  const bits = [
    o.S2 !== undefined ? `S2=${o.S2}` : '',
    o.CLASS !== undefined ? `CLASS=${o.CLASS}` : '',
    o.IPA !== undefined ? `IPA=${o.IPA}` : '',
    o.FetchAddr !== undefined ? `FetchAddr=${o.FetchAddr}` : '',
  ]
    .filter(Boolean)
    .join(' ');
  const children: ExplainNode[] = [{ kind: 'note', text: o.reason }];
  if (o.razwi)
    children.push({
      kind: 'note',
      text: 'the transaction is terminated with RAZ/WI (CD.A=0): reads return zero, writes are ignored',
    });
  if (!o.recorded)
    children.push({
      kind: 'note',
      text: `not recorded: ${o.S2 === 1 ? 'STE.S2R=0' : 'CD.R=0 (or CR2.RECINVSID=0 for C_BAD_STREAMID)'}, so no event record is written`,
    });
  else if (event) {
    const ev = event.decoded;
    const fl = eventFields(ev.num);
    const shown = Object.entries(ev.fields).filter(([k, v]) => {
      // fields that mean nothing in this record: SubstreamID without SSV, IPA without S2,
      // TTRnW outside F_PERMISSION with CLASS=TT, STAG without Stall
      if (k === 'SubstreamID') return ev.fields['SSV'] === 1;
      if (k === 'IPA') return ev.fields['S2'] === 1;
      if (k === 'TTRnW') return ev.num === EVT.F_PERMISSION && ev.fields['CLASS'] === 1;
      if (k === 'STAG') return ev.fields['Stall'] === 1;
      return v !== undefined;
    });
    const fields = shown.map(([k, v]) => {
      const f = fl.find((y) => y.name === k);
      const meaning = typeof v === 'number' ? f?.values?.[v] : undefined;
      return `${k}=${v}${meaning !== undefined ? ` (${meaning})` : ''}`;
    });
    children.push({
      kind: 'event',
      text: `event record ${event.written ? 'written to the event queue' : 'NOT written (event queue disabled, full or aborted)'}: ${event.raw.join(' ')} (DW0..DW3)`,
      data: { written: event.written, raw: event.raw.join(' ') },
      children: [
        { kind: 'field', text: `${ev.type}: ${fields.join(' ')}` },
        { kind: 'note', text: `decode it again with: smmulab decode event ${event.raw.join(' ')}` },
      ],
    });
  }
  return {
    kind: 'fault',
    text: `FAULT ${o.event}${bits ? ' ' + bits : ''}`,
    data: {
      event: o.event,
      S2: o.S2 ?? null,
      CLASS: o.CLASS ?? null,
      IPA: o.IPA ?? null,
      FetchAddr: o.FetchAddr ?? null,
      recorded: o.recorded,
    },
    children,
  };
}

/** The explanation as an indented tree. */
export function formatExplain(res: ExplainResult): string {
  const lines: string[] = [res.tree.text];
  const walk = (n: ExplainNode, prefix: string): void => {
    const kids = n.children ?? [];
    kids.forEach((c, i) => {
      const last = i === kids.length - 1;
      lines.push(prefix + (last ? '└─ ' : '├─ ') + c.text);
      walk(c, prefix + (last ? '   ' : '│  '));
    });
  };
  walk(res.tree, '');
  if (res.replay.failed || res.replay.skipped)
    lines.push(
      `(the replay had ${res.replay.failed} failed expectation(s)${res.replay.skipped ? ` and skipped ${res.replay.skipped} step(s) after a hypervisor panic` : ''}: run the scenario to see them)`,
    );
  return lines.join('\n');
}
