/**
 * Stream table lookup, SID → STE (IHI 0070 3.3, reference §2.1), with the configuration cache
 * for STEs and L1STDs (reference §7).
 *
 * The cache may hold invalid and ILLEGAL entries (the architecture allows it), is never filled
 * from a failed fetch, and is not filled while SMMUEN=0. A CPU write to an STE is therefore not
 * seen until CFGI_STE (+ CMD_SYNC). CFGI_STE(Leaf=1) leaves a cached L1STD in place; only the
 * non-leaf form, CFGI_STE_RANGE or CFGI_ALL drops it.
 */
import { get } from '../bits.ts';
import { ExternalAbort, type PhysicalMemory } from '../memory.ts';
import { STE, STE_WORDS, STE_BYTES, steIllegal, type SteCheckEnv } from './ste.ts';
import { EVT } from './events.ts';

export interface SteEntry {
  /** PA the STE was fetched from */
  readonly addr: number;
  readonly words: Uint32Array;
  readonly valid: boolean;
  readonly config: number;
  /** why the STE is ILLEGAL (or 'V=0'), null when usable */
  readonly illegal: string | null;
}

export interface StrtabEnv extends SteCheckEnv {
  readonly mem: PhysicalMemory;
  /** STRTAB_BASE.ADDR (unaligned, as programmed) */
  baseAddr(): number;
  /** STRTAB_BASE_CFG raw value */
  cfg(): number;
  /** whether the configuration cache may be filled now (SMMUEN=1 and caching enabled) */
  cacheable(): boolean;
}

/** Outcome of a lookup: the STE, or the event that terminates the transaction. */
export interface SteLookup {
  ste: SteEntry | null;
  /** EVT.* number (0 when an STE was found) */
  event: number;
  /** PA whose fetch aborted (F_STE_FETCH) */
  fetchAddr: number;
  /** where the STE came from, for explainers */
  l1Addr: number;
  l1Desc: number;
  cached: boolean;
}

export function newLookup(): SteLookup {
  return { ste: null, event: 0, fetchAddr: 0, l1Addr: -1, l1Desc: 0, cached: false };
}

export interface StrtabGeometry {
  fmt: 0 | 1;
  log2size: number;
  split: number;
  base: number;
}

/** Effective stream table geometry from STRTAB_BASE/_CFG and IDR1.SIDSIZE. */
export function strtabGeometry(
  baseAddr: number,
  cfg: number,
  sidSize: number,
  twoLevel: boolean,
): StrtabGeometry {
  const log2 = cfg & 0x3f;
  let split = (cfg >>> 6) & 0x1f;
  if (split !== 6 && split !== 8 && split !== 10) split = 6; // reserved values behave as 6
  const fmtRaw = (cfg >>> 16) & 3;
  const fmt: 0 | 1 = fmtRaw === 1 && twoLevel ? 1 : 0;
  // alignment uses the literal LOG2SIZE, not limited by SIDSIZE (IHI 0070 6.3.23)
  const alignBits = fmt === 0 ? log2 + 6 : Math.max(6, log2 - split - 1 + 3 + 1);
  const base = baseAddr - (baseAddr % 2 ** alignBits);
  return { fmt, log2size: Math.min(log2, sidSize), split, base };
}

export class StreamTable {
  private readonly steCache = new Map<number, SteEntry>();
  private readonly l1Cache = new Map<number, number>();
  private readonly scratch = new Uint32Array(STE_WORDS);
  hits = 0;
  misses = 0;
  fetches = 0;

  constructor(private readonly env: StrtabEnv) {}

  get cachedStes(): number {
    return this.steCache.size;
  }
  get cachedL1(): number {
    return this.l1Cache.size;
  }

  /** The cached STE of `sid`, without filling, evicting or counting (inspection: hw/smmu/inspect.ts). */
  peekSte(sid: number): SteEntry | undefined {
    return this.steCache.get(sid);
  }

  /** The cached L1STD at L1 index `l1idx`, without filling, evicting or counting. */
  peekL1(l1idx: number): number | undefined {
    return this.l1Cache.get(l1idx);
  }

  geometry(): StrtabGeometry {
    return strtabGeometry(
      this.env.baseAddr(),
      this.env.cfg(),
      this.env.features.sidSize,
      this.env.features.twoLevelStrtab,
    );
  }

  lookup(sid: number, out: SteLookup): SteLookup {
    out.ste = null;
    out.event = 0;
    out.fetchAddr = 0;
    out.l1Addr = -1;
    out.l1Desc = 0;
    out.cached = false;
    const cacheable = this.env.cacheable();
    if (cacheable) {
      const c = this.steCache.get(sid);
      if (c) {
        this.hits++;
        out.ste = c;
        out.cached = true;
        return out;
      }
    }
    this.misses++;
    const g = this.geometry();
    if (sid >= 2 ** g.log2size) {
      out.event = EVT.C_BAD_STREAMID;
      return out;
    }
    let steAddr: number;
    if (g.fmt === 0) {
      steAddr = g.base + sid * STE_BYTES;
    } else {
      const l1idx = Math.floor(sid / 2 ** g.split);
      const l1Addr = g.base + l1idx * 8;
      out.l1Addr = l1Addr;
      let desc = cacheable ? this.l1Cache.get(l1idx) : undefined;
      // an L1STD is a single 64-bit read; the model keeps Span and L2Ptr in one number (< 2^56)
      if (desc === undefined) {
        try {
          const lo = this.env.mem.read32(l1Addr);
          const hi = this.env.mem.read32(l1Addr + 4);
          this.fetches++;
          desc = (hi & 0x00ffffff) * 0x1_0000_0000 + (lo >>> 0);
        } catch (e) {
          if (!(e instanceof ExternalAbort)) throw e;
          out.event = EVT.F_STE_FETCH;
          out.fetchAddr = l1Addr;
          return out;
        }
        if (cacheable) this.l1Cache.set(l1idx, desc);
      }
      out.l1Desc = desc;
      const span = desc % 32;
      const l2idx = sid % 2 ** g.split;
      if (span === 0 || span > 11 || span > g.split + 1 || l2idx >= 2 ** (span - 1)) {
        out.event = EVT.C_BAD_STREAMID;
        return out;
      }
      const l2ptr = desc - (desc % 64);
      const l2base = l2ptr - (l2ptr % 2 ** (6 + span - 1));
      steAddr = l2base + l2idx * STE_BYTES;
    }
    const w = this.scratch;
    try {
      this.env.mem.readWords(steAddr, w);
      this.fetches++;
    } catch (e) {
      if (!(e instanceof ExternalAbort)) throw e;
      out.event = EVT.F_STE_FETCH;
      out.fetchAddr = steAddr;
      return out;
    }
    const illegal = steIllegal(w, this.env);
    const entry: SteEntry = {
      addr: steAddr,
      words: w.slice(),
      valid: get(w, STE.V) === 1,
      config: get(w, STE.Config),
      illegal,
    };
    if (cacheable) this.steCache.set(sid, entry);
    out.ste = entry;
    return out;
  }

  /** CFGI_STE(sid, leaf): the STE (and CDs cached through it); Leaf=0 also the L1STD on the path. */
  invalidateSte(sid: number, leaf: boolean): void {
    this.steCache.delete(sid);
    if (!leaf) {
      const g = this.geometry();
      if (g.fmt === 1) this.l1Cache.delete(Math.floor(sid / 2 ** g.split));
    }
  }

  /** CFGI_STE_RANGE(sid, range): SIDs Start..Start+2^(range+1)-1 and their L1STDs. */
  invalidateRange(sid: number, range: number): void {
    if (range >= 31) {
      this.invalidateAll();
      return;
    }
    const n = 2 ** (range + 1);
    const start = sid - (sid % n);
    const end = start + n;
    if (this.steCache.size < n) {
      for (const k of this.steCache.keys()) if (k >= start && k < end) this.steCache.delete(k);
    } else {
      for (let s = start; s < end; s++) this.steCache.delete(s);
    }
    const g = this.geometry();
    const span = 2 ** g.split;
    for (const k of this.l1Cache.keys()) {
      if (k * span < end && (k + 1) * span > start) this.l1Cache.delete(k);
    }
  }

  invalidateAll(): void {
    this.steCache.clear();
    this.l1Cache.clear();
  }
}
