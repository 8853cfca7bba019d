/**
 * Probe points and stat groups: the one instrumentation seam of the simulator, in the spirit of
 * QEMU's trace-events (each point declared once, as data) and gem5's registered statistics.
 *
 * A probe point is declared once, with its name, its layer and its payload type
 * (`probePoint<P>(name, layer, doc)`); the declarations of a layer sit together in that layer's
 * catalog (hw/probes.ts, hyp/probes.ts). Each component that reaches a point owns a `Probe<P>`
 * for it (a machine's bus, one command queue, one endpoint), so two machines in one process
 * never see each other's events. Traces, the explainer, the CLI logs, the fuzzers' oracles and
 * the cost model subscribe to those probes; nothing in the simulator reads them back.
 *
 * Cost when nothing listens: one boolean load. Call sites test `probe.active` before they build
 * a payload (`if (p.active) p.fire({ ... })`), or hand a factory to `fireLazy`, which is called
 * only when someone listens. The listener list is copied on subscribe and unsubscribe, never
 * while firing, so a listener may unsubscribe itself (or another) from inside a fire.
 *
 * A stat group is a set of named counters declared once with what each one counts
 * (`statGroup(name, layer, doc, counters)`); `create()` gives the plain record of numbers the
 * component increments on its hot path (`stats.consumed++`), in declaration order.
 */

/** Where a probe point or stat group lives. */
export type ProbeLayer = 'hw' | 'hyp' | 'host' | 'guest';

export type ProbeListener<P> = (payload: P) => void;

/** One declared probe point. `P` is the payload type its listeners receive. */
export interface ProbePoint<P> {
  /** dotted, unique: `<component>.<event>` */
  readonly name: string;
  readonly layer: ProbeLayer;
  /** what one firing means */
  readonly doc: string;
  /** (type only: ties the declaration to its payload type; never set) */
  readonly payload?: ProbeListener<P>;
}

const POINTS = new Map<string, ProbePoint<unknown>>();

/** Declare a probe point (once: a second declaration of the same name throws). */
export function probePoint<P>(name: string, layer: ProbeLayer, doc: string): ProbePoint<P> {
  if (POINTS.has(name)) throw new Error(`probe point ${name} is declared twice`);
  const p: ProbePoint<P> = Object.freeze({ name, layer, doc });
  POINTS.set(name, p as ProbePoint<unknown>);
  return p;
}

/** Every declared probe point (of the modules loaded so far), in declaration order. */
export function probePoints(): readonly ProbePoint<unknown>[] {
  return [...POINTS.values()];
}

const NONE: readonly never[] = [];

/** A component's firing site for one probe point. */
export class Probe<P> {
  /** true while at least one listener is subscribed: the one check a hot path makes */
  active = false;
  private listeners: readonly ProbeListener<P>[] = NONE;

  constructor(readonly point: ProbePoint<P>) {}

  get listenerCount(): number {
    return this.listeners.length;
  }

  /** Add a listener; returns the function that removes it (idempotent). */
  subscribe(fn: ProbeListener<P>): () => void {
    this.listeners = [...this.listeners, fn];
    this.active = true;
    let live = true;
    return () => {
      if (!live) return;
      live = false;
      const i = this.listeners.indexOf(fn);
      if (i < 0) return;
      this.listeners = this.listeners.filter((_, j) => j !== i);
      this.active = this.listeners.length !== 0;
    };
  }

  /** Deliver `payload` to every listener, in subscription order. Callers check `active` first. */
  fire(payload: P): void {
    const ls = this.listeners;
    for (let i = 0; i < ls.length; i++) ls[i]!(payload);
  }

  /** Build the payload only if someone listens, then deliver it (one payload for all). */
  fireLazy(make: () => P): void {
    if (this.active) this.fire(make());
  }
}

/**
 * One replaceable listener on a probe, for a component's single-slot property (`onCommand`,
 * `onIrq`): setting a function replaces the previous one, null removes it. `adapt` turns the
 * slot's function type into a listener of the payload.
 */
export class ProbeSlot<P, F> {
  private fn: F | null = null;
  private off: (() => void) | null = null;

  constructor(
    private readonly probe: Probe<P>,
    private readonly adapt: (fn: F) => ProbeListener<P>,
  ) {}

  get(): F | null {
    return this.fn;
  }

  set(fn: F | null): void {
    if (this.off !== null) this.off();
    this.off = null;
    this.fn = fn;
    if (fn !== null) this.off = this.probe.subscribe(this.adapt(fn));
  }
}

/** `probe.subscribe(fn)`, spelled as the point-first call the catalogs document. */
export function subscribe<P>(probe: Probe<P>, fn: ProbeListener<P>): () => void {
  return probe.subscribe(fn);
}

// ---- stat groups ---------------------------------------------------------------------------

/** A declared group of counters: each key with what it counts. */
export interface StatGroup<K extends string> {
  readonly name: string;
  readonly layer: ProbeLayer;
  readonly doc: string;
  /** counter name → what it counts, in the order records list them */
  readonly counters: Readonly<Record<K, string>>;
  /** A fresh record of the counters, all zero, in declaration order. */
  create(): Record<K, number>;
}

/** The record type a stat group's `create()` makes. */
export type StatRecord<G> = G extends StatGroup<infer K> ? Record<K, number> : never;

const GROUPS = new Map<string, StatGroup<string>>();

/** Declare a stat group (once: a second declaration of the same name throws). */
export function statGroup<K extends string>(
  name: string,
  layer: ProbeLayer,
  doc: string,
  counters: Record<K, string>,
): StatGroup<K> {
  if (GROUPS.has(name)) throw new Error(`stat group ${name} is declared twice`);
  const keys = Object.keys(counters) as K[];
  // a class, not a loop over `{}`: V8 sizes a constructor's instances to the properties it adds
  // (in-object, as an object literal's), where an empty literal keeps only four in the object
  // and the rest behind a pointer, and the counters are incremented on hot paths
  class Counters {
    constructor() {
      const self = this as unknown as Record<K, number>;
      for (let i = 0; i < keys.length; i++) self[keys[i]!] = 0;
    }
  }
  const g: StatGroup<K> = Object.freeze({
    name,
    layer,
    doc,
    counters: Object.freeze({ ...counters }),
    create: (): Record<K, number> => new Counters() as unknown as Record<K, number>,
  });
  GROUPS.set(name, g as unknown as StatGroup<string>);
  return g;
}

/** Every declared stat group (of the modules loaded so far), in declaration order. */
export function statGroups(): readonly StatGroup<string>[] {
  return [...GROUPS.values()];
}

/** The counters of a record made by `group.create()`, as a plain copy in declaration order. */
export function snapshot<K extends string>(
  group: StatGroup<K>,
  rec: Readonly<Record<K, number>>,
): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const k of Object.keys(group.counters) as K[]) out[k] = rec[k];
  return out;
}
