import { describe, expect, it } from 'vitest';
import {
  Probe,
  ProbeSlot,
  probePoint,
  probePoints,
  snapshot,
  statGroup,
  statGroups,
  subscribe,
} from '../../hw/probe.ts';
import { HW_PROBES, type CommandConsumed, type TranslationExplained } from '../../hw/probes.ts';
import { Machine } from '../../hw/machine.ts';
import {
  DMA_BUF,
  E,
  OPC,
  STE_BYPASS,
  SYNC_NONE,
  cfgiSte,
  rig,
  steAddr,
  writeSte,
} from './helpers.ts';

interface Ping {
  readonly n: number;
  readonly tag: string;
}
const PING = probePoint<Ping>('test.ping', 'hw', 'a test probe point');

describe('Probe', () => {
  it('is inactive with no listener, active while one is subscribed, and delivers in order', () => {
    const p = new Probe(PING);
    expect(p.active).toBe(false);
    const seen: string[] = [];
    const offA = p.subscribe((e) => seen.push(`a${e.n}${e.tag}`));
    const offB = subscribe(p, (e) => seen.push(`b${e.n}${e.tag}`));
    expect([p.active, p.listenerCount]).toEqual([true, 2]);
    p.fire({ n: 1, tag: 'x' });
    offA();
    offA(); // a second call removes nothing more
    expect([p.active, p.listenerCount]).toEqual([true, 1]);
    p.fire({ n: 2, tag: 'y' });
    offB();
    expect([p.active, p.listenerCount]).toEqual([false, 0]);
    p.fire({ n: 3, tag: 'z' });
    expect(seen).toEqual(['a1x', 'b1x', 'b2y']);
  });

  it('the same function subscribed twice is called twice and removed one subscription at a time', () => {
    const p = new Probe(PING);
    let calls = 0;
    const fn = (): void => void calls++;
    const off1 = p.subscribe(fn);
    p.subscribe(fn);
    p.fire({ n: 0, tag: '' });
    off1();
    p.fire({ n: 0, tag: '' });
    expect(calls).toBe(3);
  });

  it('a listener that unsubscribes during a fire does not make the next listener miss it', () => {
    const p = new Probe(PING);
    const seen: number[] = [];
    const off = p.subscribe((e) => {
      seen.push(e.n);
      off();
    });
    p.subscribe((e) => seen.push(10 + e.n));
    p.fire({ n: 1, tag: '' });
    p.fire({ n: 2, tag: '' });
    expect(seen).toEqual([1, 11, 12]);
  });

  it('fireLazy never calls the payload factory with no listener, and once for several', () => {
    const p = new Probe(PING);
    let built = 0;
    const make = (): Ping => ({ n: ++built, tag: 'lazy' });
    p.fireLazy(make);
    p.fireLazy(make);
    expect(built).toBe(0);
    const got: Ping[] = [];
    p.subscribe((e) => got.push(e));
    p.subscribe((e) => got.push(e));
    p.fireLazy(make);
    expect(built).toBe(1);
    expect(got).toHaveLength(2);
    expect(got[0]).toBe(got[1]);
    expect(got[0]).toEqual({ n: 1, tag: 'lazy' });
  });

  it('a point is declared once: a second declaration of the name throws; the registry lists it', () => {
    expect(() => probePoint<Ping>('test.ping', 'hw', 'again')).toThrow(/declared twice/);
    const names = probePoints().map((p) => p.name);
    expect(names).toContain('test.ping');
    expect(names).toContain('bus.access');
    expect(names).toContain('smmu.cmdq.command');
    expect(probePoints().find((p) => p.name === 'smmu.translation')?.layer).toBe('hw');
  });

  it('ProbeSlot holds one replaceable listener over the probe', () => {
    const p = new Probe(PING);
    const seen: string[] = [];
    const slot = new ProbeSlot(p, (fn: (n: number) => void) => (e: Ping) => fn(e.n));
    const other = p.subscribe((e) => seen.push(`other${e.n}`));
    const first = (n: number): void => void seen.push(`first${n}`);
    slot.set(first);
    expect(slot.get()).toBe(first);
    slot.set((n) => seen.push(`second${n}`));
    p.fire({ n: 1, tag: '' });
    slot.set(null);
    expect([slot.get(), p.listenerCount]).toEqual([null, 1]);
    p.fire({ n: 2, tag: '' });
    other();
    expect(p.active).toBe(false);
    expect(seen).toEqual(['other1', 'second1', 'other2']);
  });
});

describe('stat groups', () => {
  it('create() gives zeroed counters in declaration order; snapshot copies them', () => {
    const g = statGroup('test.counters', 'hw', 'test counters', {
      zeta: 'first declared',
      alpha: 'second declared',
    });
    const r = g.create();
    expect(Object.keys(r)).toEqual(['zeta', 'alpha']);
    r.alpha += 3;
    const s = snapshot(g, r);
    r.alpha++;
    expect(s).toEqual({ zeta: 0, alpha: 3 });
    expect(g.counters.alpha).toBe('second declared');
    expect(statGroups().map((x) => x.name)).toContain('test.counters');
    expect(() => statGroup('test.counters', 'hw', 'again', { a: '' })).toThrow(/declared twice/);
  });
});

describe('machine probe points', () => {
  it('smmu.cmdq.command: each command with its queue and CONS, before onCommand is replaced', () => {
    const { m, q } = rig();
    const got: Array<[number, number, boolean]> = [];
    const off = m.smmu.cmdq.probes.command.subscribe((c: CommandConsumed) =>
      got.push([c.words[0]! & 0xff, c.cons, c.queue === m.smmu.cmdq]),
    );
    const slot: number[] = [];
    m.smmu.cmdq.onCommand = (w) => slot.push(w[0]! & 0xff);
    q.submit(cfgiSte(5, 1), SYNC_NONE);
    off();
    m.smmu.cmdq.onCommand = null;
    expect(m.smmu.cmdq.probes.command.active).toBe(false);
    q.submit(SYNC_NONE);
    expect(got).toEqual([
      [OPC.CFGI_STE, 0, true],
      [OPC.CMD_SYNC, 1, true],
    ]);
    expect(slot).toEqual([OPC.CFGI_STE, OPC.CMD_SYNC]);
  });

  it('smmu.translation: explains only while someone listens, one firing per translation', () => {
    const { m } = rig();
    const dev = m.devices.get('dev')!;
    const tr = m.smmu.translator;
    writeSte(m, steAddr(5), [STE_BYPASS]);
    expect(tr.probes.translation.active).toBe(false);
    expect(dev.read(DMA_BUF, 4)).toMatchObject({ ok: true, pa: DMA_BUF });
    const got: TranslationExplained[] = [];
    const at: unknown[] = [];
    const off = tr.probes.translation.subscribe((t) => {
      got.push(t);
      // txn and result are the caller's buffers: read in the listener
      at.push([t.kind, t.txn.sid, t.txn.addr, t.result?.ok, t.result?.pa]);
    });
    expect(dev.read(DMA_BUF + 0x10, 4)).toMatchObject({ ok: true, pa: DMA_BUF + 0x10 });
    off();
    expect(dev.read(DMA_BUF + 0x20, 4)).toMatchObject({ ok: true });
    expect(at).toEqual([['translate', 5, DMA_BUF + 0x10, true, DMA_BUF + 0x10]]);
    const t = got[0]!;
    expect(t.explain.walk).toEqual([]);
    expect(t.explain.ste?.config).toBe(4); // STE.Config=0b100: bypass both stages
  });

  it('smmu.evtq.event and dma.start/dma.end: a C_BAD_STE fault, seen on this machine only', () => {
    const { m } = rig();
    const other = new Machine({ devices: [{ name: 'dev', sid: 5 }] });
    const dev = m.devices.get('dev')!;
    const seen: string[] = [];
    m.smmu.evtq.probes.event.subscribe((e) => seen.push(`event 0x${e.words[0]! & 0xff}`));
    other.smmu.evtq.probes.event.subscribe(() => seen.push('other machine'));
    dev.probes.dmaStart.subscribe((e) => seen.push(`start ${e.ep.name} ${e.len} w=${e.write}`));
    dev.probes.dmaEnd.subscribe((e) => seen.push(`end ok=${e.outcome.ok}`));
    // STE 5 is all zero (V=0): the DMA faults with C_BAD_STE
    expect(dev.read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STE' });
    expect(seen).toEqual(['start dev 4 w=false', `event 0x${E.C_BAD_STE}`, 'end ok=false']);
  });

  it('bus.access is per bus: observe() subscribes to the probe and returns its unsubscribe', () => {
    const m = new Machine();
    const n = new Machine();
    const seen: string[] = [];
    const off = m.bus.observe((e) => seen.push(`${e.dir} 0x${e.offset!.toString(16)}`));
    n.bus.probes.access.subscribe(() => seen.push('other bus'));
    m.bus.read32('host', m.smmu.base); // IDR0
    expect(m.bus.probes.access.point).toBe(HW_PROBES.busAccess);
    off();
    m.bus.read32('host', m.smmu.base);
    expect(seen).toEqual(['r 0x0']);
  });
});
