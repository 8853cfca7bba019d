/**
 * The IOTLB (reference §7). Entries are tagged the way the architecture tags them:
 * security state, StreamWorld (translation regime), VMID, ASID or global, stage (stage 1 only,
 * stage 2 only, or combined stage 1+2), and the input page with its granule and level.
 *
 * Invalidation is exact-minimal: a command removes what §4.4 says it must, and nothing else
 * (the architecture permits over-invalidation, but a model that over-invalidates would hide the
 * software bugs users come here to find). In particular TLBI_S2_IPA does not remove combined
 * stage 1+2 entries, and Leaf/TTL/TG narrow what goes.
 */

export const STAGE = { S1: 1, S2: 2, S12: 3 } as const;
export const WORLD = { NS_EL1: 0, NS_EL2: 1, NS_EL2_E2H: 2 } as const;
export const SEC = { NS: 0 } as const;
/** ASID tag of global (nG=0) entries */
export const ASID_GLOBAL = 0x1_0000;

export interface TlbEntry {
  /** input page address (aligned to 2^shift) */
  readonly ia: number;
  readonly shift: number;
  /** output address of the page */
  readonly oa: number;
  /** stage-1 permissions (PERM bits; all for stage-2-only entries) */
  readonly s1perm: number;
  /** stage-2 permissions (all for stage-1-only entries) */
  readonly s2perm: number;
  /** stage-2 input of the page for combined entries (the IPA), for fault reports */
  readonly ipa: number;
  /** walk level of the leaf, and granule (log2), for TTL/TG-scoped invalidation */
  readonly level: number;
  readonly g: number;
  /** the stream that inserted it (for per-stream statistics) */
  readonly sid: number;
  readonly attr: number;
}

class Context {
  /** distinct page shifts present, so a lookup probes only sizes that exist */
  shifts: number[] = [];
  /** 2^shift for each entry of `shifts`, and the matching maps, for the lookup loop */
  sizes: number[] = [];
  mapList: Array<Map<number, TlbEntry>> = [];
  readonly maps = new Map<number, Map<number, TlbEntry>>();
  constructor(
    readonly key: number,
    readonly sec: number,
    readonly world: number,
    readonly stage: number,
    readonly vmid: number,
    readonly asid: number,
  ) {}
  get size(): number {
    let n = 0;
    for (const m of this.maps.values()) n += m.size;
    return n;
  }
}

/** Build a context key: sec[38] world[37:36] stage[35:34] vmid[33:18] asid[16:0]. */
export function ctxKey(
  sec: number,
  world: number,
  stage: number,
  vmid: number,
  asid: number,
): number {
  return ((sec * 4 + world) * 4 + stage) * 2 ** 34 + vmid * 2 ** 18 + asid;
}

export interface TlbInvStats {
  invalidated: number;
  commands: number;
}

/**
 * What a TLBI removes. One mutable object is reused for every command (no allocation on the
 * command path). `worlds` and `stages` are bitmasks (1 << WORLD.x, 1 << STAGE.x); numeric
 * filters use -1 for "any".
 */
export interface TlbiScope {
  worlds: number;
  stages: number;
  vmid: number;
  /** match this ASID for non-global entries (-1: any ASID) */
  asid: number;
  /** include global (nG=0) entries */
  global: boolean;
  /** exclude global entries (NH_ASID, EL2_ASID) */
  nonGlobalOnly: boolean;
  /** input address range [lo, hi); lo = -1 for all */
  lo: number;
  hi: number;
  /** TG granule (log2) an entry must have been inserted with; -1 = any */
  g: number;
  /** TTL: leaf level an entry must have; -1 = any */
  level: number;
}

export function newScope(): TlbiScope {
  return {
    worlds: 0,
    stages: 0,
    vmid: -1,
    asid: -1,
    global: true,
    nonGlobalOnly: false,
    lo: -1,
    hi: 0,
    g: -1,
    level: -1,
  };
}

export class Iotlb {
  private readonly contexts = new Map<number, Context>();
  hits = 0;
  misses = 0;
  inserts = 0;
  readonly inv: TlbInvStats = { invalidated: 0, commands: 0 };
  /** per-stream entries invalidated */
  readonly invalidatedBySid = new Map<number, number>();

  get size(): number {
    let n = 0;
    for (const c of this.contexts.values()) n += c.size;
    return n;
  }

  entries(): Array<
    TlbEntry & { ctx: { world: number; stage: number; vmid: number; asid: number } }
  > {
    const out: Array<
      TlbEntry & { ctx: { world: number; stage: number; vmid: number; asid: number } }
    > = [];
    for (const c of this.contexts.values())
      for (const m of c.maps.values())
        for (const e of m.values())
          out.push({ ...e, ctx: { world: c.world, stage: c.stage, vmid: c.vmid, asid: c.asid } });
    return out;
  }

  lookup(key: number, ia: number): TlbEntry | undefined {
    const c = this.contexts.get(key);
    if (c === undefined) return undefined;
    const sizes = c.sizes;
    const maps = c.mapList;
    for (let i = 0; i < sizes.length; i++) {
      const e = maps[i]!.get(Math.floor(ia / sizes[i]!));
      if (e !== undefined) return e;
    }
    return undefined;
  }

  insert(sec: number, world: number, stage: number, vmid: number, asid: number, e: TlbEntry): void {
    const key = ctxKey(sec, world, stage, vmid, asid);
    let c = this.contexts.get(key);
    if (!c) {
      c = new Context(key, sec, world, stage, vmid, asid);
      this.contexts.set(key, c);
    }
    let m = c.maps.get(e.shift);
    if (!m) {
      m = new Map();
      c.maps.set(e.shift, m);
      c.shifts.push(e.shift);
      c.shifts.sort((a, b) => a - b);
      c.sizes = c.shifts.map((x) => 2 ** x);
      c.mapList = c.shifts.map((x) => c!.maps.get(x)!);
    }
    m.set(Math.floor(e.ia / 2 ** e.shift), e);
    this.inserts++;
  }

  invalidate(s: TlbiScope): number {
    this.inv.commands++;
    if (this.contexts.size === 0) return 0;
    let n = 0;
    for (const c of this.contexts.values()) {
      if (((s.stages >>> c.stage) & 1) === 0 || ((s.worlds >>> c.world) & 1) === 0) continue;
      if (s.vmid >= 0 && c.vmid !== s.vmid) continue;
      const isGlobal = c.asid === ASID_GLOBAL;
      if (isGlobal) {
        if (s.nonGlobalOnly || !s.global) continue;
      } else if (s.asid >= 0 && c.asid !== s.asid) continue;
      for (const m of c.maps.values()) {
        for (const [k, e] of m) {
          if (s.lo >= 0 && (e.ia + 2 ** e.shift <= s.lo || e.ia >= s.hi)) continue;
          if (s.g >= 0 && e.g !== s.g) continue;
          if (s.level >= 0 && e.level !== s.level) continue;
          m.delete(k);
          n++;
          this.invalidatedBySid.set(e.sid, (this.invalidatedBySid.get(e.sid) ?? 0) + 1);
        }
      }
    }
    this.inv.invalidated += n;
    return n;
  }

  /** Drop every entry (contexts are kept, empty, for reuse). Not a TLBI: per-stream counters are untouched. */
  clear(): void {
    for (const c of this.contexts.values()) {
      for (const m of c.mapList) {
        if (m.size === 0) continue;
        this.inv.invalidated += m.size;
        m.clear();
      }
    }
  }
}
