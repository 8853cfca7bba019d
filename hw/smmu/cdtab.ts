/**
 * Context descriptor lookup (reference §3.2, §6.4): SubstreamID → CD through a linear or
 * 2-level CD table, with the CD and L1CD configuration cache keyed by {StreamID, SubstreamID}
 * and {StreamID, L1 index}. Addresses are IPAs when stage 2 is enabled: the caller's `fetch`
 * translates them (reporting stage-2 faults with CLASS=CD) before reading.
 */
import { get } from '../bits.ts';
import { CD, CD_WORDS, cdIllegal, type CdCheckEnv } from './cd.ts';
import { tg0Shift, tg1Shift, s1StartLevel } from '../vmsa/geometry.ts';
import { EVT } from './events.ts';
import { effectivePs } from './ste.ts';
import { newStageCfg, type StageCfg } from './walk.ts';
import type { SmmuFeatures } from './features.ts';

export interface CdEntry {
  readonly addr: number;
  readonly words: Uint32Array;
  readonly illegal: string | null;
  readonly asid: number;
  /** record stage-1 faults (CD.R) */
  readonly r: boolean;
  /** terminated transactions abort (CD.A) rather than RAZ/WI */
  readonly a: boolean;
  /** stall (CD.S) */
  readonly s: boolean;
  readonly epd0: boolean;
  readonly epd1: boolean;
  readonly tbi0: boolean;
  readonly tbi1: boolean;
  /** walk configuration for TTB0 and TTB1 */
  readonly tt0: StageCfg;
  readonly tt1: StageCfg;
  /** 2^IAS of TTB0, precomputed for the range check */
  readonly tt0Limit: number;
}

/** Decode a legal CD into walk configurations. */
export function decodeCd(
  w: Uint32Array,
  addr: number,
  illegal: string | null,
  ft: SmmuFeatures,
  el2: boolean,
): CdEntry {
  const ips = effectivePs(get(w, CD.IPS), ft.oas);
  const mk = (tsz: number, g: number, ttb: number, had: number): StageCfg => {
    const c = newStageCfg();
    c.stage = 1;
    c.g = g || 12;
    c.ias = 64 - tsz;
    c.start = s1StartLevel(c.g, c.ias);
    c.ttb = ttb;
    c.oas = ips;
    c.affd = get(w, CD.AFFD) === 1;
    c.ha = get(w, CD.HA) === 1;
    c.be = get(w, CD.ENDI) === 1;
    c.el2 = el2;
    c.had = ft.had && had === 1;
    c.wxn = get(w, CD.WXN) === 1;
    c.pan = get(w, CD.PAN) === 1;
    return c;
  };
  const tbi = get(w, CD.TBI);
  const tt0 = mk(get(w, CD.T0SZ), tg0Shift(get(w, CD.TG0)), get(w, CD.TTB0) * 16, get(w, CD.HAD0));
  return {
    addr,
    words: w,
    illegal,
    asid: get(w, CD.ASID),
    r: get(w, CD.R) === 1,
    a: get(w, CD.A) === 1,
    s: get(w, CD.S) === 1,
    epd0: !el2 && get(w, CD.EPD0) === 1,
    epd1: el2 || get(w, CD.EPD1) === 1,
    tbi0: (tbi & 1) === 1,
    tbi1: (tbi & 2) === 2,
    tt0,
    tt0Limit: 2 ** tt0.ias,
    tt1: mk(get(w, CD.T1SZ), tg1Shift(get(w, CD.TG1)), get(w, CD.TTB1) * 16, get(w, CD.HAD1)),
  };
}

/** Result of a CD lookup. */
export interface CdLookup {
  cd: CdEntry | null;
  /** EVT.* (C_BAD_SUBSTREAMID, F_CD_FETCH) or -2 when the fetch callback reported a stage-2 fault */
  event: number;
  fetchAddr: number;
}

/** Reads `n` words at an address (an IPA under stage 2): the PA read, -1 on abort, -2 on a stage-2 fault. */
export type CdFetch = (addr: number, out: Uint32Array, n: number) => number;

export class CdCache {
  private readonly cds = new Map<number, Map<number, CdEntry>>();
  private readonly l1 = new Map<number, Map<number, number>>();
  hits = 0;
  misses = 0;

  get size(): number {
    let n = 0;
    for (const m of this.cds.values()) n += m.size;
    return n;
  }

  /** The CDs cached through `sid` by SubstreamID, without filling or counting (inspection: hw/smmu/inspect.ts). */
  peekCds(sid: number): ReadonlyMap<number, CdEntry> | undefined {
    return this.cds.get(sid);
  }

  /** The L1CDs cached through `sid` by L1 index, without filling or counting. */
  peekL1s(sid: number): ReadonlyMap<number, number> | undefined {
    return this.l1.get(sid);
  }

  private lastSid = -1;
  private lastMap: Map<number, CdEntry> | undefined;

  get(sid: number, ssid: number): CdEntry | undefined {
    const m = sid === this.lastSid ? this.lastMap : this.cds.get(sid);
    if (m === undefined) return undefined;
    this.lastSid = sid;
    this.lastMap = m;
    const e = m.get(ssid);
    if (e) this.hits++;
    return e;
  }

  put(sid: number, ssid: number, e: CdEntry): void {
    this.lastSid = -1;
    let m = this.cds.get(sid);
    if (!m) this.cds.set(sid, (m = new Map()));
    m.set(ssid, e);
  }

  getL1(sid: number, idx: number): number | undefined {
    return this.l1.get(sid)?.get(idx);
  }
  putL1(sid: number, idx: number, desc: number): void {
    let m = this.l1.get(sid);
    if (!m) this.l1.set(sid, (m = new Map()));
    m.set(idx, desc);
  }

  /**
   * CFGI_CD(sid, ssid, leaf): the CD; Leaf=0 also the L1CD on the path. The L1 index depends on
   * the STE's S1Fmt/S1CDMax, so Leaf=0 drops every L1CD of the StreamID (over-invalidation is allowed).
   */
  invalidateCd(sid: number, ssid: number, leaf: boolean): void {
    this.lastSid = -1;
    this.cds.get(sid)?.delete(ssid);
    if (!leaf) this.l1.delete(sid);
  }

  /** CFGI_CD_ALL / CFGI_STE*: every CD and L1CD cached through a StreamID. */
  invalidateSid(sid: number): void {
    this.lastSid = -1;
    this.cds.delete(sid);
    this.l1.delete(sid);
  }

  /** CFGI_STE_RANGE: every CD and L1CD cached through StreamIDs start..start+n-1. */
  invalidateSidRange(start: number, n: number): void {
    this.lastSid = -1;
    for (const m of [this.cds, this.l1] as Array<Map<number, unknown>>) {
      for (const sid of m.keys()) if (sid >= start && sid < start + n) m.delete(sid);
    }
  }

  invalidateAll(): void {
    this.lastSid = -1;
    this.cds.clear();
    this.l1.clear();
  }
}

const scratchL1 = new Uint32Array(2);

/**
 * Locate and fetch CD number `ssid` of the table at `ptr` (S1ContextPtr), for a stream with
 * S1Fmt and S1CDMax. `cdIndexValid` has already been checked by the caller.
 */
export function fetchCd(
  sid: number,
  ssid: number,
  ptr: number,
  s1fmt: number,
  cdmax: number,
  ft: SmmuFeatures,
  cache: CdCache | null,
  fetch: CdFetch,
  env: CdCheckEnv,
  el2: boolean,
  out: CdLookup,
): CdLookup {
  out.cd = null;
  out.event = 0;
  out.fetchAddr = 0;
  if (cache) {
    const c = cache.get(sid, ssid);
    if (c) {
      out.cd = c;
      return out;
    }
    cache.misses++;
  }
  let cdAddr: number;
  const fmt = cdmax === 0 || ft.ssidSize === 0 ? 0 : s1fmt === 3 ? 0 : s1fmt;
  if (cdmax === 0 || ft.ssidSize === 0) {
    cdAddr = ptr;
  } else if (fmt === 0) {
    const base = ptr - (ptr % 2 ** (cdmax + 6));
    cdAddr = base + ssid * 64;
  } else {
    const leafBits = fmt === 1 ? 6 : 10;
    const l1idx = cdmax <= leafBits ? 0 : Math.floor(ssid / 2 ** leafBits);
    const l1entries = cdmax <= leafBits ? 1 : 2 ** (cdmax - leafBits);
    const l1base = ptr - (ptr % Math.max(64, l1entries * 8));
    let desc = cache?.getL1(sid, l1idx);
    if (desc === undefined) {
      const l1addr = l1base + l1idx * 8;
      const pa = fetch(l1addr, scratchL1, 2);
      if (pa === -2) {
        out.event = -2;
        return out;
      }
      if (pa === -1) {
        out.event = EVT.F_CD_FETCH;
        out.fetchAddr = l1addr;
        return out;
      }
      desc = (scratchL1[1]! & 0x00ffffff) * 0x1_0000_0000 + (scratchL1[0]! >>> 0);
      if (cache) cache.putL1(sid, l1idx, desc);
    }
    if (desc % 2 === 0) {
      out.event = EVT.C_BAD_SUBSTREAMID;
      return out;
    }
    const l2ptr = desc - (desc % 4096);
    const l2base = fmt === 2 ? l2ptr - (l2ptr % 65536) : l2ptr;
    if (l2base >= 2 ** ft.oas) {
      out.event = EVT.C_BAD_SUBSTREAMID;
      return out;
    }
    cdAddr = l2base + (ssid % 2 ** leafBits) * 64;
  }
  const w = new Uint32Array(CD_WORDS);
  const pa = fetch(cdAddr, w, CD_WORDS);
  if (pa === -2) {
    out.event = -2;
    return out;
  }
  if (pa === -1) {
    out.event = EVT.F_CD_FETCH;
    out.fetchAddr = cdAddr;
    return out;
  }
  const illegal = cdIllegal(w, env);
  const e = decodeCd(w, pa, illegal, ft, el2);
  if (cache) cache.put(sid, ssid, e);
  out.cd = e;
  return out;
}
