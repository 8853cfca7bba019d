/**
 * Timeline traces: a run recorded as Chrome Trace Event Format JSON (opens in ui.perfetto.dev
 * and chrome://tracing).
 *
 * One process (pid) per run; one thread (tid) per actor track: "scenario" (one slice per step),
 * "host CPU", "guest <name> vCPU", "hyp", "SMMU command queue", "SMMU translation" and
 * "device <name>". Slices are "X" (complete) events; "M" events name the tracks; "s"/"t"/"f"
 * flow events chain a CMDQ_PROD write to the hypervisor's handling of each command, the
 * hardware's consumption of it and the CMD_SYNC that completes it; "C" events are counters.
 *
 * There is no cost model: timestamps come from a step counter. Every recorded slice takes one
 * microsecond and a scenario step boundary ten, so the same run always gives the same file. A
 * trapped (or direct) register write stays open on its CPU track until that CPU's next access
 * or the end of the step, so it spans what the hypervisor and the SMMU did for it.
 *
 * Probes subscribed (hw/probes.ts, hyp/probes.ts; all inactive when no recorder is attached):
 * bus.access, smmu.cmdq.command (the SMMU's queue and each vSMMU's), smmu.evtq.event, each
 * endpoint's dma.start and dma.end with smmu.translation (for the descriptor reads of walks),
 * hyp.cmdq.verdict and hyp.ownership.change.
 */
import { writeFileSync } from 'node:fs';
import type { Machine } from '../../hw/machine.ts';
import type { BusAccessEvent } from '../../hw/bus.ts';
import type { DmaEndpoint, DmaOutcome } from '../../hw/dma.ts';
import type { WalkTraceStep } from '../../hw/smmu/walk.ts';
import type { CommandQueue } from '../../hw/smmu/cmdq.ts';
import { regNameAt } from '../../hw/smmu/regs.ts';
import {
  describeCommand,
  describeEvent,
  type Description,
  type FieldDescription,
} from '../../hw/smmu/describe.ts';
import { OP } from '../../hw/smmu/commands.ts';
import { FORWARD, RESHADOW, type CmdCheck } from '../../hyp/smmuv3/cmd-policy.ts';
import type { PkvmHyp } from '../../hyp/pkvm.ts';

export type TraceArgs = Record<string, unknown>;

/** One Trace Event Format event (the fields this recorder writes). */
export interface TraceEvent {
  name: string;
  ph: 'X' | 'M' | 's' | 't' | 'f' | 'C';
  ts: number;
  pid: number;
  tid: number;
  dur?: number;
  cat?: string;
  id?: number;
  bp?: 'e';
  args?: TraceArgs;
}

export const TRACK = {
  scenario: 'scenario',
  host: 'host CPU',
  hyp: 'hyp',
  cmdq: 'SMMU command queue',
  translation: 'SMMU translation',
  guest: (name: string) => `guest ${name} vCPU`,
  device: (name: string) => `device ${name}`,
} as const;

/** microseconds per recorded slice, and per step boundary */
const TICK = 1;
const STEP_GAP = 10;
const SYNC = OP.CMD_SYNC;

const hex = (v: number | bigint) => '0x' + v.toString(16);
const fieldText = (f: FieldDescription) => (f.meaning ? `${f.display} (${f.meaning})` : f.display);

interface Point {
  tid: number;
  ts: number;
}

interface Flow {
  points: Point[];
  /** the PROD write slice, where a follow-on flow starts after a CMD_SYNC */
  origin: Point;
}

/** A DMA in progress: what it asked for, and its translations' notes and descriptor reads. */
interface DmaSlice {
  ts: number;
  iova: number | bigint;
  len: number;
  write: boolean;
  translated: boolean;
  steps: string[];
  walk: WalkTraceStep[];
  /** the DMA that was current when this one started */
  saved: DmaSlice | null;
}

interface OpenSlice {
  ev: TraceEvent;
  flow: Flow | null;
}

export interface TraceOptions {
  /** process id of this run (several runs can share one file) */
  pid?: number;
  /** process name shown for the run */
  name?: string;
}

export class TraceRecorder {
  readonly events: TraceEvent[] = [];
  pid: number;
  private now = 0;
  private readonly tids = new Map<string, number>();
  /** per CPU track: the register write still in progress */
  private readonly open = new Map<number, OpenSlice>();
  /** the flow of the PROD write being handled (innermost CPU actor) */
  private flow: Flow | null = null;
  private nextFlowId = 1;
  private step: TraceEvent | null = null;
  private readonly hookedVsmmus = new Set<unknown>();
  private readonly dma = new Map<DmaEndpoint, DmaSlice>();
  /** the DMA the translations being explained belong to (the innermost one started) */
  private dmaNow: DmaSlice | null = null;
  private readonly undo: Array<() => void> = [];

  constructor(
    readonly machine: Machine,
    readonly hyp: PkvmHyp | null,
    opts: TraceOptions = {},
  ) {
    this.pid = opts.pid ?? 1;
    this.events.push({
      name: 'process_name',
      ph: 'M',
      ts: 0,
      pid: this.pid,
      tid: 0,
      args: { name: opts.name ?? 'smmulab' },
    });
    // fixed tracks first, in a stable order
    for (const t of [
      TRACK.scenario,
      TRACK.host,
      ...(hyp ? [TRACK.hyp] : []),
      TRACK.cmdq,
      TRACK.translation,
    ])
      this.tid(t);
    for (const d of machine.devices.values()) this.tid(TRACK.device(d.name));
  }

  /** The thread id of a track, naming it on first use. */
  tid(track: string): number {
    let t = this.tids.get(track);
    if (t === undefined) {
      t = this.tids.size + 1;
      this.tids.set(track, t);
      this.events.push({
        name: 'thread_name',
        ph: 'M',
        ts: 0,
        pid: this.pid,
        tid: t,
        args: { name: track },
      });
      this.events.push({
        name: 'thread_sort_index',
        ph: 'M',
        ts: 0,
        pid: this.pid,
        tid: t,
        args: { sort_index: t },
      });
    }
    return t;
  }

  private tick(): number {
    const t = this.now;
    this.now += TICK;
    return t;
  }

  private slice(tid: number, name: string, cat: string, args: TraceArgs, dur = TICK): TraceEvent {
    const ev: TraceEvent = { name, cat, ph: 'X', ts: this.tick(), dur, pid: this.pid, tid, args };
    this.events.push(ev);
    return ev;
  }

  private counter(name: string, args: Record<string, number>): void {
    this.events.push({ name, ph: 'C', ts: this.now, pid: this.pid, tid: 0, args });
  }

  // ---- flows -------------------------------------------------------------------------------

  private flowPoint(ev: TraceEvent): void {
    if (this.flow) this.flow.points.push({ tid: ev.tid, ts: ev.ts });
  }

  private endFlow(f: Flow | null): void {
    if (!f || f.points.length < 2) return;
    const id = this.nextFlowId++;
    const last = f.points.length - 1;
    f.points.forEach((p, i) => {
      const ph = i === 0 ? 's' : i === last ? 'f' : 't';
      this.events.push({
        name: 'CMDQ_PROD → CMD_SYNC',
        cat: 'cmdq',
        ph,
        id,
        ts: p.ts,
        pid: this.pid,
        tid: p.tid,
        ...(ph !== 's' ? { bp: 'e' as const } : {}),
      });
    });
  }

  // ---- CPU tracks --------------------------------------------------------------------------

  private cpuTrack(actor: string): number {
    if (actor === 'host') return this.tid(TRACK.host);
    if (actor === 'hyp') return this.tid(TRACK.hyp);
    if (actor.startsWith('guest:')) return this.tid(TRACK.guest(actor.slice(6)));
    return this.tid(actor);
  }

  private closeTrack(tid: number): void {
    const o = this.open.get(tid);
    if (!o) return;
    this.open.delete(tid);
    o.ev.dur = Math.max(TICK, this.now - o.ev.ts);
    if (o.flow) {
      this.endFlow(o.flow);
      if (this.flow === o.flow) this.flow = null;
    }
  }

  private closeAll(): void {
    for (const tid of [...this.open.keys()].sort((a, b) => a - b)) this.closeTrack(tid);
    this.flow = null;
  }

  /** A CPU access that reached a device or trapped. */
  onAccess(e: BusAccessEvent): void {
    if (this.hyp && e.actor.startsWith('guest:')) this.hookVsmmus();
    const tid = this.cpuTrack(e.actor);
    const smmu = this.machine.smmu;
    let off = e.offset;
    if (off === undefined && e.addr >= smmu.base && e.addr < smmu.base + smmu.size)
      off = e.addr - smmu.base;
    const isSmmu = off !== undefined && (e.device === undefined || e.device === (smmu as unknown));
    const reg = isSmmu ? regNameAt(off!) : hex(e.addr);
    const name = `${e.trapped ? 'trap ' : ''}${e.dir === 'w' ? 'W' : 'R'} ${reg}`;
    const args: TraceArgs = {
      register: reg,
      value: hex(e.value),
      addr: hex(e.addr),
      size: e.size,
      dir: e.dir,
      trapped: e.trapped,
    };
    if (e.device) args.device = e.device.name;
    if (e.actor === 'hyp') {
      this.slice(tid, name, 'mmio', args);
      return;
    }
    this.closeTrack(tid);
    if (e.dir === 'r') {
      this.slice(tid, name, 'mmio', args);
      return;
    }
    const ev = this.slice(tid, name, 'mmio', args, 0);
    let flow: Flow | null = null;
    if (isSmmu && reg === 'CMDQ_PROD') {
      const origin = { tid, ts: ev.ts };
      flow = { points: [origin], origin };
      this.flow = flow;
    }
    this.open.set(tid, { ev, flow });
  }

  // ---- command queues ----------------------------------------------------------------------

  private cmdArgs(d: Description, extra: TraceArgs): TraceArgs {
    const fields: Record<string, string> = {};
    for (const f of d.fields) if (f.key !== 'Opcode') fields[f.key] = fieldText(f);
    return { opcode: d.name, ...fields, ...extra, words: d.words };
  }

  /** Hardware consumption of one command from the (shadow) command queue. */
  onHwCommand(q: CommandQueue, w: Uint32Array, cons: number): void {
    const d = describeCommand(w);
    const ev = this.slice(
      this.tid(TRACK.cmdq),
      d.name,
      'cmdq',
      this.cmdArgs(d, { cons: hex(cons), prod: hex(q.prod) }),
    );
    this.flowPoint(ev);
    this.counter('SMMU command queue occupancy', { commands: occupancy(q.prod, cons, q.log2size) });
    if ((w[0]! & 0xff) === SYNC && this.flow) {
      // CMD_SYNC consumed: everything before it has completed; a new flow starts at the same PROD write for what follows
      const f = this.flow;
      this.endFlow(f);
      const next: Flow = { points: [f.origin], origin: f.origin };
      this.flow = next;
      for (const o of this.open.values()) if (o.flow === f) o.flow = next;
    }
  }

  /** The hypervisor's verdict on one host command (copied from the host queue). */
  onVerdict(w: Uint32Array, verdict: number, c: Readonly<CmdCheck>, hostPtr: number): void {
    const d = describeCommand(w);
    const v = verdict === FORWARD ? 'FORWARD' : verdict === RESHADOW ? 'RESHADOW' : 'REFUSE';
    const extra: TraceArgs = { verdict: v, hostPtr: hex(hostPtr) };
    if (verdict === RESHADOW) extra.reshadowSid = c.sid;
    if (verdict !== FORWARD && verdict !== RESHADOW) {
      extra.rule = c.rule;
      extra.reason = c.reason;
    }
    const ev = this.slice(this.tid(TRACK.hyp), `${d.name} ${v}`, 'hyp', this.cmdArgs(d, extra));
    this.flowPoint(ev);
  }

  /** A guest command consumed by its vSMMU (emulated by the hypervisor). */
  onGuestCommand(guest: string, w: Uint32Array, cons: number): void {
    const d = describeCommand(w);
    const ev = this.slice(
      this.tid(TRACK.hyp),
      `vSMMU ${guest} ${d.name}`,
      'hyp',
      this.cmdArgs(d, { guest, verdict: 'EMULATED', cons: hex(cons) }),
    );
    this.flowPoint(ev);
  }

  private hookVsmmus(): void {
    const hyp = this.hyp!;
    for (const [name, v] of hyp.vsmmus) {
      if (this.hookedVsmmus.has(v)) continue;
      this.hookedVsmmus.add(v);
      this.undo.push(
        v.cmdq.probes.command.subscribe((c) => this.onGuestCommand(name, c.words, c.cons)),
      );
    }
  }

  // ---- DMAs, walks, events -----------------------------------------------------------------

  onDmaStart(
    ep: DmaEndpoint,
    iova: number | bigint,
    len: number,
    write: boolean,
    translated: boolean,
  ): void {
    const d: DmaSlice = {
      ts: this.tick(),
      iova,
      len,
      write,
      translated,
      steps: [],
      walk: [],
      saved: this.dmaNow,
    };
    this.dma.set(ep, d);
    this.dmaNow = d;
  }

  /** A translation explained: its notes and reads belong to the current DMA, if any. */
  private onTranslation(steps: readonly string[], walk: readonly WalkTraceStep[]): void {
    const d = this.dmaNow;
    if (d === null) return;
    for (const st of steps) d.steps.push(st);
    for (const w of walk) d.walk.push(w);
  }

  onDmaEnd(ep: DmaEndpoint, out: DmaOutcome): void {
    const s = this.dma.get(ep);
    if (!s) return;
    this.dma.delete(ep);
    this.dmaNow = s.saved;
    this.tick();
    const dur = this.now - s.ts;
    const result: TraceArgs = out.ok
      ? {
          ok: true,
          pa: hex(out.pa),
          ...(out.ipa !== undefined ? { ipa: hex(out.ipa) } : {}),
          ...(out.tlbHit !== undefined ? { tlbHit: out.tlbHit } : {}),
        }
      : { ok: false, fault: out.fault, ...(out.event ? { event: out.event } : {}) };
    const dir = s.write ? 'write' : 'read';
    const common = {
      sid: ep.sid,
      iova: hex(s.iova),
      len: s.len,
      dir,
      ...(s.translated ? { translated: true } : {}),
    };
    this.events.push({
      name: `DMA ${dir} ${hex(s.iova)}`,
      cat: 'dma',
      ph: 'X',
      ts: s.ts,
      dur,
      pid: this.pid,
      tid: this.tid(TRACK.device(ep.name)),
      args: { ...common, ...result },
    });
    const reads = s.walk.map((st) => ({
      stage: st.stage,
      level: st.level,
      addr: hex(st.addr),
      pa: st.pa >= 0 ? hex(st.pa) : null,
      desc: hex(st.desc),
      kind: st.kind,
      note: st.note,
    }));
    const name = reads.length
      ? `walk ${hex(s.iova)}`
      : out.ok && out.tlbHit
        ? `IOTLB hit ${hex(s.iova)}`
        : `translate ${hex(s.iova)}`;
    this.events.push({
      name,
      cat: 'walk',
      ph: 'X',
      ts: s.ts,
      dur,
      pid: this.pid,
      tid: this.tid(TRACK.translation),
      args: { device: ep.name, ...common, descriptorReads: reads, steps: s.steps, ...result },
    });
    let hits = 0,
      misses = 0;
    for (const st of this.machine.smmu.translator.perStream.values()) {
      hits += st.hits;
      misses += st.misses;
    }
    this.counter('IOTLB hit rate', {
      percent: hits + misses ? Math.round((1000 * hits) / (hits + misses)) / 10 : 0,
    });
  }

  onEvent(w: Uint32Array): void {
    const d = describeEvent(w);
    const fields: Record<string, string> = {};
    for (const f of d.fields) if (f.key !== 'EventNum') fields[f.key] = fieldText(f);
    this.slice(this.tid(TRACK.translation), `event ${d.name}`, 'event', {
      event: d.name,
      ...fields,
      words: d.words,
    });
  }

  private ownership(): void {
    const s = this.hyp!.own.summary();
    const args: Record<string, number> = {};
    for (const k of Object.keys(s).sort()) args[k] = s[k]!;
    this.counter('pages owned', args);
  }

  // ---- steps and output --------------------------------------------------------------------

  stepStart(index: number, label: string): void {
    this.closeAll();
    this.now += STEP_GAP;
    this.step = {
      name: label,
      cat: 'step',
      ph: 'X',
      ts: this.now,
      dur: 0,
      pid: this.pid,
      tid: this.tid(TRACK.scenario),
      args: { step: index },
    };
    this.events.push(this.step);
    this.now += TICK;
  }

  stepEnd(outcome?: string): void {
    this.closeAll();
    if (!this.step) return;
    this.now += TICK;
    this.step.dur = this.now - this.step.ts;
    if (outcome) this.step.args = { ...this.step.args, outcome };
    this.step = null;
  }

  /** Give this run another process id (several runs in one file). */
  renumber(pid: number): void {
    this.pid = pid;
    for (const e of this.events) e.pid = pid;
  }

  /** Stop recording (detach every hook). */
  detach(): void {
    this.closeAll();
    for (const u of this.undo.splice(0).reverse()) u();
  }

  attach(): this {
    const m = this.machine;
    this.undo.push(m.bus.observe((e) => this.onAccess(e)));
    const q = m.smmu.cmdq;
    this.undo.push(q.probes.command.subscribe((c) => this.onHwCommand(q, c.words, c.cons)));
    this.undo.push(m.smmu.evtq.probes.event.subscribe((e) => this.onEvent(e.words)));
    this.undo.push(
      m.smmu.translator.probes.translation.subscribe((t) =>
        this.onTranslation(t.explain.steps, t.explain.walk),
      ),
    );
    for (const d of m.devices.values()) {
      this.undo.push(
        d.probes.dmaStart.subscribe((e) =>
          this.onDmaStart(e.ep, e.iova, e.len, e.write, e.translated),
        ),
      );
      this.undo.push(d.probes.dmaEnd.subscribe((e) => this.onDmaEnd(e.ep, e.outcome)));
    }
    const hyp = this.hyp;
    if (hyp) {
      this.undo.push(
        hyp.cmdq.probes.verdict.subscribe((v) =>
          this.onVerdict(v.words, v.verdict, v.check, v.hostPtr),
        ),
      );
      this.undo.push(hyp.own.probes.change.subscribe(() => this.ownership()));
      this.ownership();
      this.hookVsmmus();
    }
    return this;
  }

  toJSON(): {
    traceEvents: TraceEvent[];
    displayTimeUnit: 'ns';
    otherData: Record<string, string>;
  } {
    return {
      traceEvents: this.events,
      displayTimeUnit: 'ns',
      otherData: {
        clock:
          'step counter: 1 us per recorded slice, 10 us per scenario step boundary (no cost model)',
      },
    };
  }

  write(path: string): void {
    writeTrace(path, [this]);
  }
}

/** Entries between CONS and PROD (both with their wrap bit at bit log2size). */
export function occupancy(prod: number, cons: number, log2size: number): number {
  const n = 2 ** log2size;
  const pi = prod % n,
    ci = cons % n;
  const pw = Math.floor(prod / n) & 1,
    cw = Math.floor(cons / n) & 1;
  return pi - ci + (pw !== cw ? n : 0);
}

/** Attach a recorder to a machine (and its hypervisor, if any). */
export function attachTrace(
  m: Machine,
  hyp: PkvmHyp | null,
  opts: TraceOptions = {},
): TraceRecorder {
  return new TraceRecorder(m, hyp, opts).attach();
}

/** One trace file for several runs (each its own pid). */
export function traceFile(recs: readonly TraceRecorder[]): {
  traceEvents: TraceEvent[];
  displayTimeUnit: 'ns';
} {
  return { traceEvents: recs.flatMap((r) => r.events), displayTimeUnit: 'ns' };
}

export function writeTrace(path: string, recs: readonly TraceRecorder[]): void {
  writeFileSync(path, JSON.stringify(traceFile(recs)) + '\n');
}
