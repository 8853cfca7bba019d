/**
 * The timeline trace (scenarios/inspect/trace.ts): the file is valid Chrome Trace Event Format (the
 * gate, since no trace processor package is available), it has the tracks the issue names, its
 * slices carry what the issue asks for, and it is deterministic.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { smmulab } from '../cli/in-process.ts';
import { loadScenarios } from '../../../scenarios/engine/loader.ts';
import { runScenario } from '../../../scenarios/engine/runner.ts';
import {
  occupancy,
  traceFile,
  type TraceEvent,
  type TraceRecorder,
} from '../../../scenarios/inspect/trace.ts';

function traced(name: string, hyp?: 'none' | 'pkvm'): { events: TraceEvent[]; ok: boolean } {
  const sc = loadScenarios(name)[0]!;
  let rec: TraceRecorder | undefined;
  const r = runScenario(sc, { ...(hyp ? { hyp } : {}), trace: (x) => (rec = x) });
  // through JSON, as the file is written
  return { events: JSON.parse(JSON.stringify(traceFile([rec!]))).traceEvents, ok: r.ok };
}

/**
 * The Trace Event Format rules this recorder relies on (Chrome "Trace Event Format" document):
 * every event has name, ph, ts, pid, tid; X has dur >= 0; B/E balance per thread; M names a
 * process or thread with args.name; C has numeric args; every flow id has one "s" and one "f"
 * (any "t" between, none before "s" or after "f"), and each flow point lies inside an X slice
 * of its thread (the slice it binds to). Returns the list of problems.
 */
function formatProblems(evs: TraceEvent[]): string[] {
  const bad: string[] = [];
  const depth = new Map<string, number>();
  const flows = new Map<number, TraceEvent[]>();
  const xs = evs.filter((e) => e.ph === 'X');
  evs.forEach((e, i) => {
    const where = `event ${i} (${e.ph} ${e.name})`;
    if (
      typeof e.name !== 'string' ||
      typeof e.ph !== 'string' ||
      !Number.isFinite(e.ts) ||
      !Number.isInteger(e.pid) ||
      !Number.isInteger(e.tid)
    )
      bad.push(`${where}: a required field is missing`);
    switch (e.ph as string) {
      case 'X':
        if (!(typeof e.dur === 'number' && e.dur >= 0)) bad.push(`${where}: X without dur >= 0`);
        break;
      case 'B':
      case 'E': {
        const k = `${e.pid}/${e.tid}`;
        const d = (depth.get(k) ?? 0) + (e.ph === ('B' as string) ? 1 : -1);
        if (d < 0) bad.push(`${where}: E without B`);
        depth.set(k, d);
        break;
      }
      case 'M':
        if (
          !['process_name', 'thread_name', 'thread_sort_index', 'process_sort_index'].includes(
            e.name,
          )
        )
          bad.push(`${where}: unknown metadata`);
        if (e.name.endsWith('_name') && typeof e.args?.name !== 'string')
          bad.push(`${where}: no args.name`);
        break;
      case 'C':
        if (!e.args || !Object.values(e.args).every((v) => typeof v === 'number'))
          bad.push(`${where}: counter args must be numbers`);
        break;
      case 's':
      case 't':
      case 'f':
        if (typeof e.id !== 'number') bad.push(`${where}: flow without id`);
        else flows.set(e.id, [...(flows.get(e.id) ?? []), e]);
        if (
          !xs.some(
            (x) => x.pid === e.pid && x.tid === e.tid && x.ts <= e.ts && e.ts <= x.ts + x.dur!,
          )
        )
          bad.push(`${where}: flow point outside any slice of its thread`);
        break;
      default:
        bad.push(`${where}: unexpected phase`);
    }
  });
  for (const [k, d] of depth) if (d !== 0) bad.push(`thread ${k}: ${d} B without E`);
  for (const [id, f] of flows) {
    const phs = f.map((e) => e.ph).join('');
    if (!/^st*f$/.test(phs)) bad.push(`flow ${id}: phases ${phs}, want s t* f`);
  }
  // slices on one thread nest (Perfetto rejects partial overlaps)
  const byTid = new Map<string, TraceEvent[]>();
  for (const x of xs)
    byTid.set(`${x.pid}/${x.tid}`, [...(byTid.get(`${x.pid}/${x.tid}`) ?? []), x]);
  for (const [k, list] of byTid) {
    const sorted = [...list].sort((a, b) => a.ts - b.ts || b.dur! - a.dur!);
    const stack: TraceEvent[] = [];
    for (const x of sorted) {
      while (stack.length && stack.at(-1)!.ts + stack.at(-1)!.dur! <= x.ts) stack.pop();
      const top = stack.at(-1);
      if (top && x.ts + x.dur! > top.ts + top.dur!)
        bad.push(
          `thread ${k}: ${x.name} at ${x.ts} overlaps ${top.name} at ${top.ts} without nesting`,
        );
      stack.push(x);
    }
  }
  return bad;
}

function threadNames(evs: TraceEvent[]): Map<string, number> {
  return new Map(
    evs
      .filter((e) => e.ph === 'M' && e.name === 'thread_name')
      .map((e) => [e.args!.name as string, e.tid]),
  );
}

/** flows as lists of the X slices their points bind to (the slice of the thread starting at the point's ts) */
function flowSlices(evs: TraceEvent[]): TraceEvent[][] {
  const byId = new Map<number, TraceEvent[]>();
  for (const e of evs)
    if (e.ph === 's' || e.ph === 't' || e.ph === 'f')
      byId.set(e.id!, [...(byId.get(e.id!) ?? []), e]);
  return [...byId.values()].map((pts) =>
    pts.map((p) => evs.find((x) => x.ph === 'X' && x.tid === p.tid && x.ts === p.ts)!),
  );
}

describe('trace: guest-nesting timeline', () => {
  const { events, ok } = traced('guest-nesting');
  const tids = threadNames(events);

  it('the run still passes and the file obeys the Trace Event Format', () => {
    expect(ok).toBe(true);
    expect(formatProblems(events)).toEqual([]);
    expect(events.filter((e) => e.ph === 'X').length).toBeGreaterThan(100);
  });

  it('the format check catches what it is meant to catch', () => {
    // a mutation of each kind must be reported, or the gate above proves nothing
    const xi = events.findIndex((e) => e.ph === 'X');
    const noDur = events.map((e, i) => (i === xi ? { ...e, dur: undefined } : e));
    expect(formatProblems(noDur).join()).toMatch(/X without dur/);
    const fi = events.findIndex((e) => e.ph === 'f');
    expect(formatProblems(events.filter((_, i) => i !== fi)).join()).toMatch(/want s t\* f/);
    const noTid = events.map((e, i) =>
      i === xi ? ({ ...e, tid: undefined } as unknown as TraceEvent) : e,
    );
    expect(formatProblems(noTid).join()).toMatch(/required field/);
  });

  it('has one track per actor: host CPU, guest vm1 vCPU, hyp, SMMU command queue, SMMU translation, each device', () => {
    // the scenario's machine declares nic (SID 8) and gpu (SID 9); the guest is vm1
    for (const t of [
      'scenario',
      'host CPU',
      'guest vm1 vCPU',
      'hyp',
      'SMMU command queue',
      'SMMU translation',
      'device gpu',
      'device nic',
    ])
      expect(tids.has(t), t).toBe(true);
    expect(new Set(tids.values()).size).toBe(tids.size);
    expect(events.some((e) => e.ph === 'M' && e.name === 'process_name')).toBe(true);
  });

  it('one slice per scenario step on the scenario track, in order', () => {
    const sc = loadScenarios('guest-nesting')[0]!;
    const steps = events.filter((e) => e.ph === 'X' && e.tid === tids.get('scenario'));
    expect(steps.map((s) => s.args!.step)).toEqual(sc.steps.map((_, i) => i));
    expect(steps[0]!.name).toBe('step 0 driver probe');
  });

  it('host CMDQ_PROD traps carry the register and value; the hyp checks exactly the commands between two PROD values', () => {
    const host = tids.get('host CPU')!;
    const hyp = tids.get('hyp')!;
    const prods = events.filter(
      (e) => e.ph === 'X' && e.tid === host && e.name === 'trap W CMDQ_PROD',
    );
    expect(prods.length).toBeGreaterThan(1);
    expect(
      prods.every(
        (p) =>
          p.args!.register === 'CMDQ_PROD' &&
          /^0x[0-9a-f]+$/.test(p.args!.value as string) &&
          p.args!.trapped === true,
      ),
    ).toBe(true);
    // hyp/smmuv3/cmdq.ts: on a host PROD write the hypervisor copies and checks each command from its
    // CONS up to the new PROD, once; so the verdict slices inside a PROD trap number new - old PROD
    let prev = 0;
    for (const p of prods) {
      const v = Number(p.args!.value);
      const verdicts = events.filter(
        (e) =>
          e.ph === 'X' && e.tid === hyp && e.cat === 'hyp' && e.ts > p.ts && e.ts < p.ts + p.dur!,
      );
      expect(verdicts.length, `PROD 0x${prev.toString(16)} → ${p.args!.value}`).toBe(
        (v & 0xfffff) - (prev & 0xfffff),
      );
      // the hypervisor copies host slots CONS..PROD-1 in order
      expect(verdicts.map((x) => Number(x.args!.hostPtr))).toEqual(
        Array.from({ length: verdicts.length }, (_, i) => (prev & 0xfffff) + i),
      );
      prev = v;
    }
  });

  it('hyp command slices carry the decoded opcode, fields and sanitizer verdict', () => {
    const hyp = tids.get('hyp')!;
    const cmds = events.filter(
      (e) => e.ph === 'X' && e.tid === hyp && e.cat === 'hyp' && e.args!.verdict !== 'EMULATED',
    );
    expect(cmds.length).toBeGreaterThan(0);
    for (const c of cmds) {
      expect(['FORWARD', 'RESHADOW', 'REFUSE']).toContain(c.args!.verdict);
      expect(c.name).toBe(`${c.args!.opcode} ${c.args!.verdict}`);
    }
    // the probe's CMD_SYNC is forwarded (cmd-policy: CMD_SYNC is FORWARD with its CS/MSI rewritten)
    const sync = cmds.find((c) => c.args!.opcode === 'CMD_SYNC')!;
    expect(sync.args!.verdict).toBe('FORWARD');
    expect(sync.args).toHaveProperty('CS');
    // guest commands reach the hyp track through the vSMMU (the guest's STE for vSID 0, guest-nesting.json)
    expect(
      events.some(
        (e) =>
          e.ph === 'X' &&
          e.tid === hyp &&
          e.name === 'vSMMU vm1 CFGI_STE' &&
          e.args!.StreamID === '0x0',
      ),
    ).toBe(true);
  });

  it('flows run host PROD write → hyp verdicts → hardware consumption → CMD_SYNC', () => {
    const host = tids.get('host CPU')!,
      hyp = tids.get('hyp')!,
      cmdq = tids.get('SMMU command queue')!,
      vcpu = tids.get('guest vm1 vCPU')!;
    const flows = flowSlices(events);
    expect(flows.every((f) => f.every((x) => x !== undefined))).toBe(true);
    const hostFlows = flows.filter((f) => f[0]!.tid === host);
    expect(hostFlows.length).toBeGreaterThan(0);
    const full = hostFlows.find(
      (f) =>
        f.some((x) => x.tid === hyp) && f.at(-1)!.tid === cmdq && f.at(-1)!.name === 'CMD_SYNC',
    );
    expect(full, 'a host flow ending in the hardware CMD_SYNC').toBeDefined();
    expect(full![0]!.name).toBe('trap W CMDQ_PROD');
    // every point after the first is later in time; hyp/smmuv3/cmdq.ts checks the commands up to PROD
    // (or up to a CFGI_STE, which it reshadows first) before it publishes them, so the hardware
    // consumes the forwarded commands in the order of the verdicts, after them
    for (let i = 1; i < full!.length; i++) expect(full![i]!.ts).toBeGreaterThan(full![i - 1]!.ts);
    const firstHw = full!.findIndex((x) => x.tid === cmdq);
    const verdicts = full!.filter((x) => x.tid === hyp);
    expect(full!.slice(1, firstHw).every((x) => x.tid === hyp)).toBe(true);
    expect(full!.slice(firstHw).map((x) => x.args!.opcode)).toEqual(
      verdicts.filter((v) => v.args!.verdict !== 'REFUSE').map((v) => v.args!.opcode),
    );
    // a guest PROD write flows through the vSMMU's emulation to a physical CMD_SYNC
    expect(
      flows.some(
        (f) =>
          f[0]!.tid === vcpu &&
          f.some((x) => x.name.startsWith('vSMMU vm1')) &&
          f.at(-1)!.tid === cmdq &&
          f.at(-1)!.name === 'CMD_SYNC',
      ),
    ).toBe(true);
  });

  it('walk slices list the descriptor reads: nested stage-1 reads through stage 2, landing in vm1 memory', () => {
    const walks = events.filter(
      (e) => e.ph === 'X' && e.tid === tids.get('SMMU translation') && e.cat === 'walk',
    );
    const w = walks.find(
      (x) => (x.args!.descriptorReads as unknown[]).length > 0 && x.args!.ok === true,
    )!;
    expect(w).toBeDefined();
    const reads = w.args!.descriptorReads as Array<{ stage: number; pa: string; kind: string }>;
    // nested: stage-1 tables live at IPAs, so both stages are walked (IHI 0070 3.4)
    expect(reads.some((r) => r.stage === 1)).toBe(true);
    expect(reads.some((r) => r.stage === 2)).toBe(true);
    // guest-nesting.json: vm1's memory is PA 0x6000_0000 + 16 MiB; stage-1 tables and the output are in it
    const inVm1 = (pa: number) => pa >= 0x6000_0000 && pa < 0x6100_0000;
    expect(reads.filter((r) => r.stage === 1).every((r) => inVm1(Number(r.pa)))).toBe(true);
    expect(inVm1(Number(w.args!.pa))).toBe(true);
    // the DMA slice on the device track spans the same time
    const dma = events.find(
      (e) => e.ph === 'X' && e.tid === tids.get('device gpu') && e.ts === w.ts,
    )!;
    expect(dma.dur).toBe(w.dur);
    expect(dma.args!.pa).toBe(w.args!.pa);
  });

  it('the last DMA faults after unmap + TLBI: the event slice is inside its walk slice', () => {
    const tr = tids.get('SMMU translation')!;
    const ev = events.find((e) => e.ph === 'X' && e.tid === tr && e.cat === 'event')!;
    expect(ev).toBeDefined();
    // the scenario's final expectation: a stage-1 translation fault for the gpu's pSID 9
    expect(ev.name).toBe('event F_TRANSLATION');
    const walk = events.find(
      (e) =>
        e.ph === 'X' &&
        e.tid === tr &&
        e.cat === 'walk' &&
        e.ts <= ev.ts &&
        ev.ts + ev.dur! <= e.ts + e.dur!,
    )!;
    expect(walk.args!.ok).toBe(false);
  });

  it('counters: command queue occupancy, IOTLB hit rate, pages owned per owner', () => {
    const cs = events.filter((e) => e.ph === 'C');
    const names = new Set(cs.map((c) => c.name));
    expect(names).toEqual(
      new Set(['SMMU command queue occupancy', 'IOTLB hit rate', 'pages owned']),
    );
    // guest-nesting.json donates 16 MiB = 4096 pages to vm1
    const last = cs.filter((c) => c.name === 'pages owned').at(-1)!;
    expect(last.args!['guest:vm1-owned']).toBe(0x100_0000 / 4096);
    expect(
      cs
        .filter((c) => c.name === 'IOTLB hit rate')
        .every((c) => (c.args!.percent as number) >= 0 && (c.args!.percent as number) <= 100),
    ).toBe(true);
  });

  it('is deterministic: two runs give identical JSON', () => {
    expect(JSON.stringify(traced('guest-nesting').events)).toBe(JSON.stringify(events));
  });
});

describe('trace: other runs and the CLI', () => {
  it('a run without a hypervisor has no hyp track and its PROD writes flow straight to the hardware', () => {
    const { events } = traced('host-dma', 'none');
    expect(formatProblems(events)).toEqual([]);
    const tids = threadNames(events);
    expect(tids.has('hyp')).toBe(false);
    const flows = flowSlices(events);
    expect(flows.some((f) => f[0]!.name === 'W CMDQ_PROD' && f.at(-1)!.name === 'CMD_SYNC')).toBe(
      true,
    );
  });

  it('detach leaves no probe it subscribed to active (a traced run costs nothing after it)', () => {
    const sc = loadScenarios('guest-two-vms')[0]!;
    let rec: TraceRecorder | undefined;
    expect(runScenario(sc, { trace: (x) => (rec = x) }).ok).toBe(true);
    const m = rec!.machine;
    const hyp = rec!.hyp!;
    expect(hyp.vsmmus.size).toBe(2);
    const probes = [
      m.bus.probes.access,
      m.smmu.cmdq.probes.command,
      m.smmu.evtq.probes.event,
      m.smmu.translator.probes.translation,
      ...[...m.devices.values()].flatMap((d) => [d.probes.dmaStart, d.probes.dmaEnd]),
      hyp.cmdq.probes.verdict,
      hyp.own.probes.change,
      ...[...hyp.vsmmus.values()].map((v) => v.cmdq.probes.command),
    ];
    expect(probes.filter((p) => p.active).map((p) => p.point.name)).toEqual([]);
    // while attached it did listen: the file has guest command slices and walks
    const names = rec!.events.map((e) => e.name);
    expect(names.some((n) => n.startsWith('vSMMU vm1 '))).toBe(true);
    expect(names.some((n) => n.startsWith('walk ') || n.startsWith('IOTLB hit '))).toBe(true);
  });

  it('occupancy counts entries between CONS and PROD across the wrap bit', () => {
    // queue.ts: PROD/CONS are an index of log2size bits plus a wrap bit above it
    expect(occupancy(5, 2, 4)).toBe(3);
    expect(occupancy(0x10 | 1, 14, 4)).toBe(3);
    expect(occupancy(3, 3, 4)).toBe(0);
    expect(occupancy(0x10 | 3, 3, 4)).toBe(16);
  });

  it('smmulab run --trace FILE writes the trace (one process per run); a bad path exits 2 naming it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'smmulab-trace-'));
    const f = join(dir, 'out.json');
    const r = await smmulab('run', 'guest-nesting', '--trace', f);
    expect(r.status).toBe(0);
    const evs = JSON.parse(readFileSync(f, 'utf8')).traceEvents as TraceEvent[];
    expect(formatProblems(evs)).toEqual([]);
    expect(threadNames(evs).has('guest vm1 vCPU')).toBe(true);
    const bad = await smmulab('run', 'guest-nesting', '--trace', join(dir, 'no/such/dir/out.json'));
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('no/such/dir/out.json');
  });
});
