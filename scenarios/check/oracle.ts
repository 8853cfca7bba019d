/**
 * The isolation oracle: for the current *hardware* state, which physical pages can each DMA
 * device reach (read or write, untranslated or through ATS), and which of those may the
 * device's owner not access; plus every SMMU-originated write (MSI, event record, PRI record)
 * that landed where its owner may not write.
 *
 * It looks only at hardware: the SMMU registers, the STEs, CDs and translation tables in
 * physical memory, and the SMMU's caches (STE and L1STD configuration cache, CD and L1CD cache,
 * IOTLB) and each device's ATC. It never asks a hypervisor what it believes. It is an observer:
 * it reads memory directly and never fills, evicts or counts anything in the model.
 *
 * The answer is an over-approximation of what an attacker controlling the host (its CPU, its
 * devices, the memory it may write) can reach, never an under-approximation:
 *
 * - SMMUEN=0: GBPA.ABORT=0 reaches everything ('gbpa-bypass'); ATS Translated traffic is
 *   forbidden.
 * - Every STE the SMMU could use counts: the cached copy and the one in memory (through the
 *   cached L1STD and through the one in memory), since a cache may be refilled at any time.
 * - Structures the host may write are the host's to choose: an STE, L1STD, CD, L1CD or a
 *   translation table in host-writable memory (not inside a protected range with write=false)
 *   reaches everything, unless the walk is bounded by a stage 2 the host cannot write
 *   ('ste-writable', 'cd-writable', 's1-table-writable', 's2-table-writable'). Turn this off
 *   with `trustTableMemory` to see only what the tables map now.
 * - Bypass STE: everything ('ste-bypass'). S2-only: the stage-2 leaves ('s2'). Nested: the
 *   stage-2 leaves bound everything ('nested'; the host controls stage 1 and its tables are
 *   read through stage 2). S1-only: the leaves of the TTB0/TTB1 tables of every CD a
 *   transaction can select ('s1'); S1DSS=bypass reaches everything ('s1dss-bypass').
 * - IOTLB: every cached entry whose context the device's STE can look up ('iotlb').
 * - ATS: with CR0.ATSCHK=0 a Translated transaction is not checked at all, and with full ATS
 *   (EATS=0b01) its address is a PA: everything ('ats-translated'). Split-stage ATS is bounded
 *   by stage 2. The device's ATC entries are listed as 'atc' when Translated traffic passes.
 * - HTTU (IDR0.HTTU != 0) with nesting: the SMMU's Access-flag updates of stage-1 descriptors
 *   write wherever the host puts its stage-1 tables, i.e. any page stage 2 maps readable ('httu').
 *
 * Tables are enumerated with the hardware's own walker (`walk()` in hw/smmu/walk.ts), driven
 * over the whole input range, so descriptor formats, granules, concatenated stage-2 start
 * tables, blocks, the contiguous hint, AF/HA/AFFD and output-size checks are those the SMMU
 * applies. A table that has been enumerated once is skipped when it is reached again (the
 * output set of a subtree does not depend on where it is mounted), so loops and shared tables
 * cost nothing extra; a walk budget turns pathological garbage into "everything".
 */
import type { Machine } from '../../hw/machine.ts';
import type { DmaEndpoint } from '../../hw/dma.ts';
import { get, wordMask } from '../../hw/bits.ts';
import { PA_LIMIT, PAGE_SIZE, type PhysicalMemory } from '../../hw/memory.ts';
import { CR0, IRQ_CTRL, IRQ_CFG0 } from '../../hw/smmu/regs.ts';
import type { Smmu } from '../../hw/smmu/smmu.ts';
import { queueBase, queueLog2 } from '../../hw/smmu/queue.ts';
import { STE, STE_WORDS, STE_BYTES, L1STD, CFG, EATS, steIllegal } from '../../hw/smmu/ste.ts';
import { CD, CD_WORDS, CD_BYTES, L1CD, cdIllegal, type CdCheckEnv } from '../../hw/smmu/cd.ts';
import { decodeCd, type CdEntry } from '../../hw/smmu/cdtab.ts';
import {
  walk,
  walkFrom,
  newWalkOut,
  levelShift,
  PERM,
  POW2,
  type StageCfg,
  type DescReader,
} from '../../hw/smmu/walk.ts';
import { STAGE, WORLD, ASID_GLOBAL, type TlbEntry } from '../../hw/smmu/tlb.ts';
import { EVT, EVT_BYTES } from '../../hw/smmu/events.ts';
import type { StreamDec } from '../../hw/smmu/translate.ts';
import { inspectCaches, type CachedSte, type SmmuCacheView } from '../../hw/smmu/inspect.ts';
import type { SmmuWrite } from '../../hw/smmu/msi.ts';

// ---- public interface ----------------------------------------------------------------------------

export interface ProtectedRange {
  base: number;
  size: number;
  owner: string;
  /** may host devices read it / write it */
  read: boolean;
  write: boolean;
}

export interface IsolationPolicy {
  /** page-aligned ranges host-owned devices may not fully access (current state), sorted by base, non-overlapping */
  protectedRanges(): readonly ProtectedRange[];
  /**
   * Optional: the ranges one device may not fully access, when it differs from
   * protectedRanges() (e.g. a device assigned to a guest). Same contract.
   */
  rangesFor?(deviceName: string): readonly ProtectedRange[] | undefined;
}

export interface Breach {
  kind: 'dma' | 'smmu-write';
  device?: string;
  sid?: number;
  /** first byte of the offending page run */
  pa: number;
  /** length of the run (page multiple) */
  bytes: number;
  access: 'read' | 'write';
  /** owner of the protected page */
  owner: string;
  /** how: 'gbpa-bypass' | 'ste-bypass' | 's1' | 's2' | 'nested' | 'iotlb' | 'atc' | 'ats-translated' | 'msi' | 'event' | 'priq' ... */
  path: string;
  /** human readable */
  detail: string;
}

export interface IsolationReport {
  ok: boolean;
  /** at most `maxBreaches` of them: DMA breaches by device then address, then SMMU writes in order */
  breaches: Breach[];
  /** number of breaches found */
  total: number;
  /** total - breaches.length */
  omitted: number;
}

export interface ReachRun {
  base: number;
  size: number;
  read: boolean;
  write: boolean;
  path: string;
}

/**
 * [fuzzer hook, scenarios/fuzz/host.ts] A cache of stage enumerations kept across checks. `get` may
 * return the enumeration an earlier check made for the same stage configuration; `set` offers
 * a new one. The caller decides which stages may be reused, and must drop an entry as soon as
 * a table it walked, or the host's write access to one, may have changed.
 */
export interface StageMemo {
  get(key: string, cfg: StageCfg): unknown;
  set(key: string, cfg: StageCfg, reach: unknown): void;
}

export interface OracleOptions {
  /** breaches listed in a report (default 64; the rest are counted) */
  maxBreaches?: number;
  /** [fuzzer hook] reuse stage enumerations across checks (default: every check enumerates afresh) */
  stageMemo?: StageMemo;
  /**
   * Take structures in host-writable memory as they are now, instead of as the host could
   * rewrite them (default false: a host-writable STE/CD/table that is not bounded by a stage 2
   * reaches everything).
   */
  trustTableMemory?: boolean;
  /** descriptor walks allowed per table enumeration before it gives up and assumes everything (default 8M) */
  walkBudget?: number;
  /**
   * Also report where the SMMU *would* write (enabled event/PRI queues, enabled MSI addresses)
   * as smmu-write breaches with "latent" in the detail, before any write happens (default false).
   */
  latentSmmuWrites?: boolean;
}

/** Every path name the oracle uses. */
export const PATHS = [
  'gbpa-bypass',
  'ste-bypass',
  'ste-writable',
  's1dss-bypass',
  's1',
  's1-table-writable',
  'cd-writable',
  's2',
  'nested',
  's2-table-writable',
  'httu',
  'iotlb',
  'atc',
  'ats-translated',
  'msi',
  'event',
  'priq',
] as const;

// ---- constants --------------------------------------------------------------------------------------

const PG = PAGE_SIZE;
/** permission bits that let a transaction read memory: data reads and instruction fetches */
const READ_PERMS = PERM.R_P | PERM.R_U | PERM.X_P | PERM.X_U;
const WRITE_PERMS = PERM.W_P | PERM.W_U;
const SMMU_EVENTQEN = wordMask(CR0.EVENTQEN);
const SMMU_PRIQEN = wordMask(CR0.PRIQEN);
const PRI_BYTES = 16;
const DEFAULT_BUDGET = 8_000_000;
/** per-device cap on IOTLB entries described one by one */
const TLB_DETAILS = 1024;

const hex = (v: number): string => '0x' + v.toString(16);
const floorPg = (a: number): number => a - (a % PG);
const ceilPg = (a: number): number => (a % PG === 0 ? a : a - (a % PG) + PG);
const bin3 = (v: number): string => '0b' + v.toString(2).padStart(3, '0');

function bswap(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

function sizeText(n: number): string {
  if (n >= 2 ** 30 && n % 2 ** 30 === 0) return `${n / 2 ** 30} GiB`;
  if (n >= 2 ** 20 && n % 2 ** 20 === 0) return `${n / 2 ** 20} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

// ---- interval lists ------------------------------------------------------------------------------------

/** Address runs [b, e) with a detail index each; normalize() sorts and merges them. */
class Runs {
  b: number[] = [];
  e: number[] = [];
  d: number[] = [];
  private sorted = true;
  private merged = true;

  get length(): number {
    return this.b.length;
  }

  add(base: number, end: number, det: number): void {
    const n = this.b.length;
    if (n > 0) {
      const lb = this.b[n - 1]!;
      const le = this.e[n - 1]!;
      if (base >= lb && base <= le) {
        // extends (or lies inside) the last run: coalesce at once
        if (end > le) this.e[n - 1] = end;
        return;
      }
      if (base < lb) {
        // out of order: sort and merge later (appending past the last run keeps the list disjoint)
        this.sorted = false;
        this.merged = false;
      }
    }
    this.b.push(base);
    this.e.push(end);
    this.d.push(det);
  }

  /** Sort by base and merge overlapping or adjacent runs (a merged run keeps the first run's detail). */
  normalize(): this {
    const n = this.b.length;
    if (n < 2 || (this.sorted && this.merged)) return this;
    let order: number[] | null = null;
    if (!this.sorted) {
      order = Array.from({ length: n }, (_, i) => i);
      const b = this.b;
      order.sort((x, y) => b[x]! - b[y]!);
    }
    const nb: number[] = [];
    const ne: number[] = [];
    const nd: number[] = [];
    for (let k = 0; k < n; k++) {
      const i = order ? order[k]! : k;
      const b = this.b[i]!;
      const e = this.e[i]!;
      const m = nb.length;
      if (m > 0 && b <= ne[m - 1]!) {
        if (e > ne[m - 1]!) ne[m - 1] = e;
        continue;
      }
      nb.push(b);
      ne.push(e);
      nd.push(this.d[i]!);
    }
    this.b = nb;
    this.e = ne;
    this.d = nd;
    this.sorted = true;
    this.merged = true;
    return this;
  }
}

interface PathReach {
  read: Runs;
  write: Runs;
  /** detail texts, or functions making them (only a breach reports its run's detail) */
  details: Array<string | (() => string)>;
  detailIdx: Map<string, number>;
}

/** What one device can reach, by path. */
class Reach {
  readonly paths = new Map<string, PathReach>();

  private path(p: string): PathReach {
    let r = this.paths.get(p);
    if (!r)
      this.paths.set(
        p,
        (r = { read: new Runs(), write: new Runs(), details: [], detailIdx: new Map() }),
      );
    return r;
  }

  /** Register a detail text for runs of `path`; returns its index. */
  detail(path: string, text: string): number {
    const r = this.path(path);
    let i = r.detailIdx.get(text);
    if (i === undefined) {
      i = r.details.length;
      r.details.push(text);
      r.detailIdx.set(text, i);
    }
    return i;
  }

  /** Register a detail text made only if a breach reports it; returns its index. */
  lazyDetail(path: string, text: () => string): number {
    const r = this.path(path);
    r.details.push(text);
    return r.details.length - 1;
  }

  add(path: string, base: number, end: number, read: boolean, write: boolean, det: number): void {
    if (!read && !write) return;
    const r = this.path(path);
    if (read) r.read.add(base, end, det);
    if (write) r.write.add(base, end, det);
  }

  everything(path: string, why: string): void {
    const det = this.detail(path, why);
    this.add(path, 0, PA_LIMIT, true, true, det);
  }

  addStage(path: string, s: StageReach, det: number): void {
    const r = this.path(path);
    for (let i = 0; i < s.read.b.length; i++) r.read.add(s.read.b[i]!, s.read.e[i]!, det);
    for (let i = 0; i < s.write.b.length; i++) r.write.add(s.write.b[i]!, s.write.e[i]!, det);
  }
}

// ---- policy helpers ---------------------------------------------------------------------------------

interface NormRange {
  base: number;
  end: number;
  owner: string;
  read: boolean;
  write: boolean;
}

function normalizeRanges(rs: readonly ProtectedRange[], who: string): NormRange[] {
  const out: NormRange[] = rs.map((r) => ({
    base: r.base,
    end: r.base + r.size,
    owner: r.owner,
    read: r.read,
    write: r.write,
  }));
  for (const r of out) {
    if (r.base % PG !== 0 || r.end % PG !== 0 || r.end <= r.base) {
      throw new Error(
        `isolation policy (${who}): range ${hex(r.base)}+${hex(r.end - r.base)} owned by ${r.owner} is not a non-empty page-aligned range`,
      );
    }
  }
  out.sort((a, b) => a.base - b.base);
  for (let i = 1; i < out.length; i++) {
    if (out[i]!.base < out[i - 1]!.end)
      throw new Error(
        `isolation policy (${who}): ranges at ${hex(out[i - 1]!.base)} and ${hex(out[i]!.base)} overlap`,
      );
  }
  return out;
}

/** Memory the host may not write, as merged [b, e) intervals, for "could the host rewrite this structure". */
class WriteProtected {
  private readonly b: number[] = [];
  private readonly e: number[] = [];

  constructor(ranges: readonly NormRange[]) {
    for (const r of ranges) {
      if (r.write) continue;
      const n = this.b.length;
      if (n > 0 && r.base <= this.e[n - 1]!) this.e[n - 1] = Math.max(this.e[n - 1]!, r.end);
      else {
        this.b.push(r.base);
        this.e.push(r.end);
      }
    }
  }

  /** Whether all of [a, a+len) lies in memory the host may not write. */
  covers(a: number, len: number): boolean {
    let lo = 0;
    let hi = this.b.length - 1;
    let idx = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.b[mid]! <= a) {
        idx = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return idx >= 0 && a + len <= this.e[idx]!;
  }
}

// ---- table enumeration -------------------------------------------------------------------------------

/** The output of one stage's tables, memoized per check. */
interface StageReach {
  read: Runs;
  write: Runs;
  /** null when complete, else why the enumeration gave up */
  gaveUp: string | null;
  /** the first table (PA) found in host-writable memory, or -1 */
  writableTable: number;
  leaves: number;
  tables: number;
}

// module-local aliases of the walker's exports (under the TypeScript loader an imported binding is a getter call)
const walkFn = walk;
const walkFromFn = walkFrom;
const newWalkOutFn = newWalkOut;
const F_WALK_EABT = EVT.F_WALK_EABT;
const levelShiftOf = levelShift;
const P2 = POW2;

function stageKey(c: StageCfg): string {
  return `${c.stage}:${c.g}:${c.ias}:${c.start}:${c.ttb}:${c.oas}:${leafSig(c)}`;
}

/** What a last-level table's leaves depend on besides its descriptors (not where it sits). */
function leafSig(c: StageCfg): string {
  return `${c.affd ? 1 : 0}:${c.ha ? 1 : 0}:${c.be ? 1 : 0}:${c.el2 ? 1 : 0}:${c.had ? 1 : 0}:${c.wxn ? 1 : 0}:${c.pan ? 1 : 0}:${c.xnx ? 1 : 0}`;
}

/**
 * What walking entries 1..N-1 of a last-level table produced: its leaves' output runs (as the
 * enumeration coalesces them), its leaf count, for the table's exact contents, the stage's
 * leafSig and granule/output size, and the hierarchical attributes the walk brought down.
 */
interface LeafTableEntry {
  sig: string;
  hattr: number;
  words: Uint32Array;
  /** [base, end, read | write << 1] per run */
  runs: number[];
  leaves: number;
}

/**
 * Last-level tables already enumerated, by content: a table's leaves do not depend on where it
 * is mounted, so an enumeration that meets the same table again (another check after a page
 * changed owner, with all but one of the idmap's tables unchanged) replays them instead of
 * walking its entries. Exact: a hit compares the whole table.
 */
export class LeafTableCache {
  private readonly byHash = new Map<number, LeafTableEntry[]>();
  private words = 0;

  get(
    hash: number,
    sig: string,
    hattr: number,
    words: Uint32Array,
    n: number,
  ): LeafTableEntry | undefined {
    const l = this.byHash.get(hash);
    if (!l) return undefined;
    for (const e of l) {
      if (e.sig !== sig || e.hattr !== hattr || e.words.length !== n) continue;
      let same = true;
      for (let i = 0; i < n && same; i++) same = e.words[i] === words[i];
      if (same) return e;
    }
    return undefined;
  }

  add(hash: number, e: LeafTableEntry): void {
    if (this.words + e.words.length > LEAF_CACHE_WORDS) {
      this.byHash.clear();
      this.words = 0;
    }
    let l = this.byHash.get(hash);
    if (!l) this.byHash.set(hash, (l = []));
    l.push(e);
    this.words += e.words.length;
  }
}

/** table words kept (4 MiB) before the cache starts over */
const LEAF_CACHE_WORDS = 1 << 20;

/** FNV-1a over the first n words (as an int32). */
function hashWords(w: Uint32Array, n: number): number {
  let h = 0x811c9dc5 | 0;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ w[i]!, 0x01000193);
  return h;
}

/**
 * Enumerate every leaf one stage's tables can produce, by running the hardware walker over the
 * whole input range and skipping each region whose outcome is known: past a leaf or a fault at
 * level L, to the next entry at L; past a table already enumerated from another region, to the
 * end of the region it covers here.
 */
function enumerateStage(
  mem: PhysicalMemory,
  cfg: StageCfg,
  budget: number,
  isTableWritable: (pa: number, bytes: number) => boolean,
  leafCache: LeafTableCache | null = null,
): StageReach {
  const res: StageReach = {
    read: new Runs(),
    write: new Runs(),
    gaveUp: null,
    writableTable: -1,
    leaves: 0,
    tables: 0,
  };
  const g = cfg.g;
  const start = cfg.start;
  if ((g !== 12 && g !== 14 && g !== 16) || start < 0 || start > 3 || cfg.ias > 52 || cfg.ias < 1) {
    res.gaveUp = `unsupported walk configuration (granule 2^${g}, start level ${start}, ${cfg.ias}-bit input)`;
    return res;
  }
  const startIdxBits = cfg.ias - levelShiftOf(g, start);
  if (startIdxBits < 0 || startIdxBits > 20) {
    res.gaveUp = `unsupported start table (${startIdxBits} index bits)`;
    return res;
  }
  const limit = 2 ** cfg.ias;
  const startBytes = 2 ** Math.max(startIdxBits + 3, 6);
  const granBytes = 2 ** g;
  /** input bytes one entry covers, and one table covers, at each level */
  const entrySize = [0, 1, 2, 3].map((l) => 2 ** levelShiftOf(g, l));
  const regionSize = [0, 1, 2, 3].map((l) => (l === start ? limit : 2 ** levelShiftOf(g, l - 1)));
  const noteTable = (pa: number, bytes: number): void => {
    res.tables++;
    if (res.writableTable < 0 && isTableWritable(pa, bytes)) res.writableTable = pa;
  };
  const startTable = cfg.ttb - (cfg.ttb % startBytes);
  noteTable(startTable, startBytes);
  const startInRam = mem.isRam(startTable, startBytes);

  const stage1 = cfg.stage === 1;
  const be = cfg.be;
  /** table (at level > start) → the region base it was first enumerated from; key = page × 256 + level × 16 + hier */
  const visited = new Map<number, number>();
  // the last table accepted at each level (most walks repeat the previous walk's tables)
  const lastKey = [-1, -1, -1, -1];
  const lastRegion = [-1, -1, -1, -1];
  const lastInRam = [false, false, false, false];
  let curIa = 0;
  let skipLevel: number;
  let hier = 0;
  /** `hier` as it was when each level's descriptor was read (what a walk resumed at that level starts from) */
  const hierAt = [0, 0, 0, 0];
  const reader: DescReader = {
    read(addr, level, out, desc) {
      hierAt[level] = hier;
      let inRam = startInRam;
      if (level > start) {
        const table = addr - (addr % granBytes);
        const key = (table / PG) * 256 + level * 16 + hier;
        const rs = regionSize[level]!;
        const rb = curIa - (curIa % rs);
        if (key === lastKey[level] && rb === lastRegion[level]) {
          inRam = lastInRam[level]!;
        } else {
          const prev = visited.get(key);
          if (prev === undefined) {
            visited.set(key, rb);
            noteTable(table, granBytes);
          } else if (prev !== rb) {
            skipLevel = level;
            out.fetchAddr = addr;
            return -1;
          }
          inRam = mem.isRam(table, granBytes);
          lastKey[level] = key;
          lastRegion[level] = rb;
          lastInRam[level] = inRam;
        }
      }
      if (!inRam && !mem.isRam(addr, 8)) {
        out.fetchAddr = addr;
        return -1;
      }
      mem.readPair(addr, desc);
      if (stage1 && level < 3) {
        // the hierarchical attribute bits [62:59] a table descriptor passes down: part of the subtree's identity
        const lo = be ? bswap(desc[1]!) : desc[0]!;
        const hi = be ? bswap(desc[0]!) : desc[1]!;
        if ((lo & 3) === 3) hier |= (hi >>> 27) & 15;
      }
      return addr;
    },
  };

  const out = newWalkOutFn();
  const walkStage = walkFn;
  const walkStageFrom = walkFromFn;
  let ia = 0;
  let walks = 0;
  // where the previous walk read its last descriptor: a walk of an input the same table
  // translates reads the same descriptors down to it (memory does not change during an
  // enumeration), so it starts there (most walks differ only in their last-level entry)
  let resLevel = -1;
  let resTable = 0;
  let resHattr = 0;
  let resHier = 0;
  // coalesce consecutive leaves with contiguous outputs and equal permissions before storing
  let runB = -1;
  let runE = -1;
  let runR = false;
  let runW = false;
  const flush = (): void => {
    if (runB < 0) return;
    if (runR) res.read.add(runB, runE, 0);
    if (runW) res.write.add(runB, runE, 0);
    runB = -1;
  };
  /** one leaf (or a cached run of leaves) with output [oa, end), in input order */
  const leaf = (oa: number, end: number, r: boolean, w: boolean): void => {
    if (oa === runE && r === runR && w === runW && runB >= 0) runE = end;
    else {
      flush();
      runB = oa;
      runE = end;
      runR = r;
      runW = w;
    }
  };
  // the last-level table cache: entries 1..N-1 of a last-level table (entry 0's walk found it)
  // are replayed from the cache, or walked and recorded into it
  const sig = leafCache !== null && start < 3 ? leafSig(cfg) : null;
  const l3Entries = granBytes / 8;
  const l3Region = regionSize[3]!;
  const tableWords = sig !== null ? new Uint32Array(granBytes / 4) : null;
  let recEnd = -1;
  let recHash = 0;
  let recHattr = 0;
  let recRuns: number[] = [];
  let recLeaves = 0;
  while (ia < limit) {
    if (recEnd >= 0 && ia >= recEnd) {
      // the recorded table's last entry is done
      leafCache!.add(recHash, {
        sig: sig!,
        hattr: recHattr,
        words: tableWords!.slice(),
        runs: recRuns,
        leaves: recLeaves,
      });
      recEnd = -1;
    }
    if (++walks > budget) {
      flush();
      res.gaveUp = `more than ${budget} descriptor walks`;
      return res;
    }
    const resume =
      resLevel > start &&
      Math.floor(ia / regionSize[resLevel]!) === Math.floor(curIa / regionSize[resLevel]!);
    curIa = ia;
    skipLevel = -1;
    hier = resume ? resHier : 0;
    const f = resume
      ? walkStageFrom(cfg, ia, resLevel, resTable, resHattr, reader, out)
      : walkStage(cfg, ia, reader, out);
    if (f === F_WALK_EABT)
      resLevel = -1; // the last read aborted (or was a table enumerated elsewhere)
    else {
      resLevel = out.level;
      resTable = out.table;
      resHattr = out.hattr;
      resHier = hierAt[resLevel]!;
    }
    let step: number;
    if (f === 0) {
      res.leaves++;
      // the whole output block (with the contiguous hint, the whole aligned range: a TLB entry
      // filled through this leaf covers it) is reachable
      const oa = out.oa;
      const end = oa + P2[out.pageShift]!;
      const r = (out.perm & READ_PERMS) !== 0;
      const w = (out.perm & WRITE_PERMS) !== 0;
      if (r || w) {
        leaf(oa, end, r, w);
        if (recEnd >= 0) {
          const k = recRuns.length;
          if (k > 0 && recRuns[k - 2] === oa && recRuns[k - 1] === (r ? 1 : 0) + (w ? 2 : 0))
            recRuns[k - 2] = end;
          else recRuns.push(oa, end, (r ? 1 : 0) + (w ? 2 : 0));
        }
      }
      if (recEnd >= 0) recLeaves++;
      step = entrySize[out.level]!;
    } else if (skipLevel >= 0) {
      step = regionSize[skipLevel]!;
    } else {
      step = entrySize[out.level]!;
    }
    if (
      sig !== null &&
      recEnd < 0 &&
      f !== F_WALK_EABT &&
      out.level === 3 &&
      ia % l3Region === 0 &&
      walks + l3Entries - 1 <= budget &&
      mem.isRam(out.table, granBytes)
    ) {
      // entry 0 of a last-level table: the rest of it from the cache, or walked and recorded
      mem.readWords(out.table, tableWords!);
      const hash = hashWords(tableWords!, tableWords!.length);
      const hit = leafCache!.get(hash, sig, out.hattr, tableWords!, tableWords!.length);
      if (hit) {
        const runs = hit.runs;
        for (let i = 0; i < runs.length; i += 3)
          leaf(runs[i]!, runs[i + 1]!, (runs[i + 2]! & 1) !== 0, (runs[i + 2]! & 2) !== 0);
        res.leaves += hit.leaves;
        walks += l3Entries - 1;
        // (as after walking its last entry: the next walk starts from the root)
        ia += l3Region;
        continue;
      }
      recEnd = ia + l3Region;
      recHash = hash;
      recHattr = out.hattr;
      recRuns = [];
      recLeaves = 0;
    }
    ia = ia - (ia % step) + step;
  }
  flush();
  res.read.normalize();
  res.write.normalize();
  return res;
}

type CtxTlbEntry = TlbEntry & { ctx: { world: number; stage: number; vmid: number; asid: number } };

/** Per-check state: the policy snapshot and memoized enumerations. */
class CheckCtx {
  readonly stages = new Map<string, StageReach>();
  private tlbIdx: Map<string, CtxTlbEntry[]> | null = null;
  readonly wp: WriteProtected;
  /** the SMMU's configuration caches, read without filling or counting */
  readonly caches: SmmuCacheView;

  constructor(
    readonly smmu: Smmu,
    readonly ranges: NormRange[],
    readonly trustTables: boolean,
  ) {
    this.wp = new WriteProtected(ranges);
    this.caches = inspectCaches(smmu);
  }

  /** Whether the host could write [a, a+len) (always false with trustTableMemory). */
  hostWritable(a: number, len: number): boolean {
    return !this.trustTables && !this.wp.covers(a, len);
  }

  tlb(stage: number, world: number, vmid: number): readonly CtxTlbEntry[] {
    if (this.tlbIdx === null) {
      this.tlbIdx = new Map();
      for (const e of this.smmu.tlb.entries()) {
        const k = `${e.ctx.stage}:${e.ctx.world}:${e.ctx.vmid}`;
        let l = this.tlbIdx.get(k);
        if (!l) this.tlbIdx.set(k, (l = []));
        l.push(e);
      }
    }
    return this.tlbIdx.get(`${stage}:${world}:${vmid}`) ?? [];
  }
}

/** An STE the SMMU could use for a StreamID. */
interface SteCand {
  entry: CachedSte;
  where: string;
}

const STAGE_NAME: Record<number, string> = {
  [STAGE.S1]: 'stage-1',
  [STAGE.S2]: 'stage-2',
  [STAGE.S12]: 'combined stage-1+2',
};

// ---- the oracle ------------------------------------------------------------------------------------------

interface SmmuBreach {
  path: string;
  owner: string;
  pa: number;
  end: number;
  detail: string;
  writes: number;
}

export class IsolationOracle {
  private readonly smmuBreaches: SmmuBreach[] = [];
  /** SMMU-write breaches not kept because too many distinct runs were already stored */
  private smmuDropped = 0;
  private readonly maxBreaches: number;
  private readonly trustTables: boolean;
  private readonly budget: number;
  private readonly latent: boolean;
  private readonly cdScratch = new Uint32Array(CD_WORDS);
  private readonly memo: StageMemo | null;
  private readonly leafTables = new LeafTableCache();

  constructor(
    readonly machine: Machine,
    readonly policy: IsolationPolicy,
    opts: OracleOptions = {},
  ) {
    this.maxBreaches = opts.maxBreaches ?? 64;
    this.trustTables = opts.trustTableMemory ?? false;
    this.budget = opts.walkBudget ?? DEFAULT_BUDGET;
    this.latent = opts.latentSmmuWrites ?? false;
    this.memo = opts.stageMemo ?? null;
  }

  /** Subscribe to SMMU-originated writes; a write landing on a range with write=false at that moment is a breach, kept until reset(). */
  attach(): () => void {
    return this.machine.smmu.writer.probes.write.subscribe((w) => this.onSmmuWrite(w));
  }

  /** Forget the SMMU-write breaches recorded so far. */
  reset(): void {
    this.smmuBreaches.length = 0;
    this.smmuDropped = 0;
  }

  /** Compute DMA reachability now for every device, intersect it with the policy, and add the recorded SMMU-write breaches. */
  check(): IsolationReport {
    const ctx = this.context();
    const all: Breach[] = [];
    const perDevice = new Map<string, NormRange[]>();
    for (const dev of this.machine.devices.values()) {
      const own = this.policy.rangesFor?.(dev.name);
      let ranges = ctx.ranges;
      if (own !== undefined) {
        let n = perDevice.get(dev.name);
        if (!n) perDevice.set(dev.name, (n = normalizeRanges(own, `device ${dev.name}`)));
        ranges = n;
      }
      if (ranges.length === 0) continue;
      const reach = this.analyse(ctx, dev);
      this.dmaBreaches(dev, reach, ranges, all);
    }
    if (this.latent) this.latentBreaches(ctx.ranges, all);
    for (const b of this.smmuBreaches) {
      all.push({
        kind: 'smmu-write',
        pa: b.pa,
        bytes: b.end - b.pa,
        access: 'write',
        owner: b.owner,
        path: b.path,
        detail: b.writes > 1 ? `${b.detail} (${b.writes} writes to this run)` : b.detail,
      });
    }
    const total = all.length + this.smmuDropped;
    const breaches = all.slice(0, this.maxBreaches);
    return { ok: total === 0, breaches, total, omitted: total - breaches.length };
  }

  /** The PA ranges one device can reach now: per path, sorted merged runs (runs of different paths may overlap). */
  reach(deviceName: string): ReachRun[] {
    const dev = this.machine.devices.get(deviceName);
    if (!dev) throw new Error(`isolation oracle: no device named ${deviceName}`);
    const r = this.analyse(this.context(), dev);
    const out: ReachRun[] = [];
    for (const [path, pr] of r.paths) {
      const rd = pr.read.normalize();
      const wr = pr.write.normalize();
      // overlay the read and write runs into segments with both flags, merging equal neighbours
      const pts = [...new Set([...rd.b, ...rd.e, ...wr.b, ...wr.e])].sort((a, b) => a - b);
      let i = 0;
      let j = 0;
      let last: ReachRun | null = null;
      for (let k = 0; k + 1 < pts.length; k++) {
        const a = pts[k]!;
        const z = pts[k + 1]!;
        while (i < rd.length && rd.e[i]! <= a) i++;
        while (j < wr.length && wr.e[j]! <= a) j++;
        const inR = i < rd.length && rd.b[i]! <= a;
        const inW = j < wr.length && wr.b[j]! <= a;
        if (!inR && !inW) {
          last = null;
          continue;
        }
        if (last && last.base + last.size === a && last.read === inR && last.write === inW)
          last.size = z - last.base;
        else out.push((last = { base: a, size: z - a, read: inR, write: inW, path }));
      }
    }
    out.sort((x, y) => x.base - y.base || (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
    return out;
  }

  /** Where the SMMU would write now if it had something to say: enabled queues and MSI addresses. */
  smmuWriteTargets(): Array<{
    path: 'event' | 'priq' | 'msi';
    base: number;
    size: number;
    what: string;
  }> {
    const s = this.machine.smmu;
    const out: Array<{ path: 'event' | 'priq' | 'msi'; base: number; size: number; what: string }> =
      [];
    if (s.cr0 & SMMU_EVENTQEN) {
      const qs = queueLog2(s.eventqBase, s.features.eventqs);
      out.push({
        path: 'event',
        base: queueBase(s.eventqBase, qs, EVT_BYTES),
        size: 2 ** qs * EVT_BYTES,
        what: 'event queue',
      });
    }
    if (s.features.pri && s.cr0 & SMMU_PRIQEN) {
      const qs = queueLog2(s.priqBase, s.features.priqs);
      out.push({
        path: 'priq',
        base: queueBase(s.priqBase, qs, PRI_BYTES),
        size: 2 ** qs * PRI_BYTES,
        what: 'PRI queue',
      });
    }
    if (s.features.msi) {
      const msi = (en: number, cfg0: { lo: number; hi: number }, what: string): void => {
        if ((s.irqCtrl & en) === 0) return;
        const addr = get([cfg0.lo, cfg0.hi], IRQ_CFG0.ADDR) * 4;
        if (addr !== 0) out.push({ path: 'msi', base: addr, size: 4, what });
      };
      msi(wordMask(IRQ_CTRL.GERROR_IRQEN), s.gerrorIrqCfg0, 'GERROR MSI');
      msi(wordMask(IRQ_CTRL.EVENTQ_IRQEN), s.eventqIrqCfg0, 'EVENTQ MSI');
      if (s.features.pri) msi(wordMask(IRQ_CTRL.PRIQ_IRQEN), s.priqIrqCfg0, 'PRIQ MSI');
    }
    return out;
  }

  // ---- SMMU-originated writes ------------------------------------------------------------------------

  private onSmmuWrite(w: SmmuWrite): void {
    const path = w.kind === 'event' ? 'event' : w.kind === 'priq' ? 'priq' : 'msi';
    const end = w.pa + w.len;
    for (const r of this.policy.protectedRanges()) {
      if (r.write) continue;
      const a = Math.max(w.pa, r.base);
      const z = Math.min(end, r.base + r.size);
      if (a >= z) continue;
      const what =
        w.kind === 'event'
          ? 'event record'
          : w.kind === 'priq'
            ? 'PRI queue record'
            : `${w.source ?? 'an'} MSI`;
      this.recordSmmuBreach(
        path,
        r.owner,
        floorPg(a),
        ceilPg(z),
        `SMMU ${what} write of ${w.len} bytes at ${hex(w.pa)} lands on ${r.owner} memory`,
      );
    }
  }

  private recordSmmuBreach(
    path: string,
    owner: string,
    pa: number,
    end: number,
    detail: string,
  ): void {
    for (const b of this.smmuBreaches) {
      if (b.path === path && b.owner === owner && pa <= b.end && end >= b.pa) {
        b.pa = Math.min(b.pa, pa);
        b.end = Math.max(b.end, end);
        b.writes++;
        return;
      }
    }
    if (this.smmuBreaches.length >= 4096) {
      this.smmuDropped++;
      return;
    }
    this.smmuBreaches.push({ path, owner, pa, end, detail, writes: 1 });
  }

  private latentBreaches(ranges: readonly NormRange[], out: Breach[]): void {
    for (const t of this.smmuWriteTargets()) {
      for (const r of ranges) {
        if (r.write) continue;
        const a = Math.max(t.base, r.base);
        const z = Math.min(t.base + t.size, r.end);
        if (a >= z) continue;
        out.push({
          kind: 'smmu-write',
          pa: floorPg(a),
          bytes: ceilPg(z) - floorPg(a),
          access: 'write',
          owner: r.owner,
          path: t.path,
          detail: `latent: the ${t.what} at ${hex(t.base)} (${sizeText(t.size)}) overlaps ${r.owner} memory`,
        });
      }
    }
  }

  // ---- DMA reach ------------------------------------------------------------------------------------------

  private context(): CheckCtx {
    return new CheckCtx(
      this.machine.smmu,
      normalizeRanges(this.policy.protectedRanges(), 'protectedRanges'),
      this.trustTables,
    );
  }

  private analyse(ctx: CheckCtx, dev: DmaEndpoint): Reach {
    const r = new Reach();
    const smmu = this.machine.smmu;
    const tag = `SID ${dev.sid} (${dev.name})`;
    if (!smmu.smmuEnabled()) {
      // GBPA decides untranslated traffic; Translated traffic is forbidden (F_TRANSL_FORBIDDEN)
      if (!smmu.gbpa.abort)
        r.everything(
          'gbpa-bypass',
          `${tag}: SMMUEN=0 and GBPA.ABORT=0: every transaction bypasses`,
        );
      return r;
    }
    let atsPass: string | null = null;
    if (!smmu.atschk()) {
      atsPass = `${tag}: SMMUEN=1 and CR0.ATSCHK=0: ATS Translated transactions pass unchecked, whatever the STE says`;
      r.everything('ats-translated', atsPass);
    }
    for (const c of this.steCandidates(ctx, dev.sid, r, tag)) {
      const why = this.evalSte(ctx, dev, c, r, tag);
      if (why !== null && atsPass === null) atsPass = why;
    }
    if (atsPass !== null) {
      // the ATC's translations are used as they are: they are PAs when Translated traffic passes unchecked
      for (const [key, e] of dev.atc) {
        const det = r.detail(
          'atc',
          `${tag}: ATC entry ${key} → ${hex(e.out)} (${e.read ? 'R' : ''}${e.write ? 'W' : ''}) is used as a PA`,
        );
        r.add('atc', e.out, e.out + PG, e.read, e.write, det);
      }
    }
    return r;
  }

  /**
   * Every STE the SMMU could use for `sid`: the cached one, and the one in memory reached through
   * the cached L1STD and through the L1STD in memory. A structure on that path that the host could
   * write makes everything reachable ('ste-writable').
   */
  private steCandidates(ctx: CheckCtx, sid: number, r: Reach, tag: string): SteCand[] {
    const smmu = this.machine.smmu;
    const mem = this.machine.mem;
    const out: SteCand[] = [];
    const caches = ctx.caches.caching ? ctx.caches : null;
    const cached = caches?.ste(sid);
    if (cached) out.push({ entry: cached, where: `cached STE (fetched from ${hex(cached.addr)})` });

    const geo = smmu.strtab.geometry();
    if (sid >= 2 ** geo.log2size) return out; // C_BAD_STREAMID
    const steAddrs: Array<{ addr: number; via: string }> = [];
    if (geo.fmt === 0) {
      steAddrs.push({ addr: geo.base + sid * STE_BYTES, via: '' });
    } else {
      const l1idx = Math.floor(sid / 2 ** geo.split);
      const l1Addr = geo.base + l1idx * 8;
      const descs: Array<{ desc: number; via: string }> = [];
      const c = caches?.l1std(l1idx);
      if (c !== undefined) descs.push({ desc: c, via: ` via the cached L1STD ${l1idx}` });
      if (mem.isRam(l1Addr, 8)) {
        if (ctx.hostWritable(l1Addr, 8))
          r.everything(
            'ste-writable',
            `${tag}: the L1STD at ${hex(l1Addr)} is in host-writable memory`,
          );
        const w = new Uint32Array(2);
        mem.readWords(l1Addr, w);
        const desc = get(w, L1STD.L2Ptr) * 64 + get(w, L1STD.Span);
        if (c === undefined || c !== desc)
          descs.push({ desc, via: ` via the L1STD at ${hex(l1Addr)}` });
      }
      const l2idx = sid % 2 ** geo.split;
      for (const { desc, via } of descs) {
        const span = desc % 32;
        if (span === 0 || span > 11 || span > geo.split + 1 || l2idx >= 2 ** (span - 1)) continue;
        const l2ptr = desc - (desc % 64);
        const l2base = l2ptr - (l2ptr % 2 ** (6 + span - 1));
        steAddrs.push({ addr: l2base + l2idx * STE_BYTES, via });
      }
    }
    for (const { addr, via } of steAddrs) {
      if (!mem.isRam(addr, STE_BYTES)) continue; // F_STE_FETCH
      if (ctx.hostWritable(addr, STE_BYTES))
        r.everything(
          'ste-writable',
          `${tag}: the STE at ${hex(addr)}${via} is in host-writable memory`,
        );
      const words = new Uint32Array(STE_WORDS);
      mem.readWords(addr, words);
      if (cached && cached.addr === addr && cached.words.every((v, i) => v === words[i])) continue; // the same STE
      out.push({
        entry: {
          addr,
          words,
          valid: get(words, STE.V) === 1,
          config: get(words, STE.Config),
          illegal: steIllegal(words, smmu),
        },
        where: `STE at ${hex(addr)}${via}`,
      });
    }
    return out;
  }

  /** Reach through one STE; returns why ATS Translated traffic passes as PAs, or null. */
  private evalSte(
    ctx: CheckCtx,
    dev: DmaEndpoint,
    c: SteCand,
    r: Reach,
    devTag: string,
  ): string | null {
    const smmu = this.machine.smmu;
    const e = c.entry;
    if (e.illegal !== null) return null; // V=0 or ILLEGAL: C_BAD_STE for every kind of transaction
    const cfg = e.config;
    if ((cfg & 4) === 0) return null; // abort
    const tag = `${devTag}: ${c.where}, Config=${bin3(cfg)}`;
    if (cfg === CFG.BYPASS) {
      r.everything('ste-bypass', `${tag} (bypass)`);
      return null; // Translated traffic: F_TRANSL_FORBIDDEN with ATSCHK=1
    }
    const dec = e.dec ?? smmu.translator.decode(e);
    let asids: Set<number> | null = null;
    if (dec.s2) {
      const s2 = dec.s2cfg!;
      const sr = this.addStage(
        ctx,
        r,
        dec.s1 ? 'nested' : 's2',
        s2,
        `${tag}, stage-2 tables at ${hex(s2.ttb)} (VMID ${dec.vmid})`,
        's2-table-writable',
      );
      if (dec.s1 && smmu.features.httu >= 1) {
        // HTTU: the SMMU sets AF in the stage-1 descriptors it walks; the host chooses CD.HA and
        // where its stage-1 tables are, and the model needs only stage-2 read permission on them
        const det = r.detail(
          'httu',
          `${tag}: IDR0.HTTU=${smmu.features.httu}: the SMMU sets the Access flag in stage-1 descriptors the host may place in any page stage 2 maps readable`,
        );
        for (let i = 0; i < sr.read.length; i++)
          r.add('httu', sr.read.b[i]!, sr.read.e[i]!, false, true, det);
      }
    } else {
      asids = this.evalS1Only(ctx, dev, dec, r, tag);
    }
    this.addIotlb(ctx, r, tag, dec, asids);
    if (!smmu.atschk()) return null; // handled by the caller
    if (dec.eats === EATS.ABT) return null; // F_TRANSL_FORBIDDEN
    if (dec.eats === EATS.S1CHK && dec.s2) return null; // split-stage: an IPA, through stage 2 (counted above)
    const why = `${tag}, EATS=0b${dec.eats.toString(2).padStart(2, '0')}: ATS Translated transactions carry PAs that the SMMU does not translate`;
    r.everything('ats-translated', why);
    return why;
  }

  private addStage(
    ctx: CheckCtx,
    r: Reach,
    path: string,
    cfg: StageCfg,
    detail: string,
    writablePath: string,
  ): StageReach {
    const key = stageKey(cfg);
    let s = ctx.stages.get(key);
    if (!s) {
      s = this.memo?.get(key, cfg) as StageReach | undefined;
      if (!s) {
        s = enumerateStage(
          this.machine.mem,
          cfg,
          this.budget,
          (pa, bytes) => ctx.hostWritable(pa, bytes),
          this.leafTables,
        );
        this.memo?.set(key, cfg, s);
      }
      ctx.stages.set(key, s);
    }
    if (s.gaveUp !== null)
      r.everything(path, `${detail}: enumeration gave up (${s.gaveUp}); assuming everything`);
    if (s.writableTable >= 0)
      r.everything(
        writablePath,
        `${detail}: the table at ${hex(s.writableTable)} is in host-writable memory`,
      );
    r.addStage(path, s, r.detail(path, detail));
    return s;
  }

  /** Stage 1 only (Config=0b101): the tables of every CD a transaction can select. Returns the ASIDs those CDs use. */
  private evalS1Only(
    ctx: CheckCtx,
    dev: DmaEndpoint,
    dec: StreamDec,
    r: Reach,
    tag: string,
  ): Set<number> {
    const smmu = this.machine.smmu;
    const ft = smmu.features;
    const sid = dev.sid;
    const cdmax = dec.cdmax;
    const s1dss = dec.s1dss;
    // without a SubstreamID
    let cd0 = false;
    if (cdmax === 0 || s1dss === 2) cd0 = true;
    else if (s1dss === 1)
      r.everything(
        's1dss-bypass',
        `${tag}, S1CDMax=${cdmax}, S1DSS=0b01: transactions without a SubstreamID bypass stage 1`,
      );
    // with a SubstreamID
    let ssLo = 0;
    let ssHi = 0;
    if (ft.ssidSize !== 0 && cdmax !== 0) {
      ssHi = 2 ** cdmax;
      ssLo = s1dss === 2 ? 1 : 0;
    }
    const first = cd0 ? 0 : ssLo;
    const end = Math.max(ssHi, cd0 ? 1 : 0);
    const asids = new Set<number>();
    if (first >= end) return asids;

    const el2 = dec.world === WORLD.NS_EL2;
    const env: CdCheckEnv = {
      features: ft,
      s1stalld: dec.s1stalld,
      singleRange: dec.el2 && dec.world !== WORLD.NS_EL2_E2H,
      s2aa32: false,
    };
    const cds: Array<{ cd: CdEntry; where: string }> = [];
    this.cdsInMemory(ctx, sid, dec, first, end, env, el2, cds, r, tag);
    if (ctx.caches.caching) {
      const m = ctx.caches.cds(sid);
      if (m)
        for (const [ssid, cd] of m)
          if (ssid >= first && ssid < end)
            cds.push({ cd, where: `cached CD ${ssid} (fetched from ${hex(cd.addr)})` });
    }
    for (const { cd, where } of cds) {
      if (cd.illegal !== null) continue; // C_BAD_CD
      asids.add(el2 ? ASID_GLOBAL : ft.asid16 ? cd.asid : cd.asid & 0xff);
      if (!cd.epd0)
        this.addStage(
          ctx,
          r,
          's1',
          cd.tt0,
          `${tag}, ${where} TTB0 ${hex(cd.tt0.ttb)} (ASID ${cd.asid})`,
          's1-table-writable',
        );
      if (!cd.epd1)
        this.addStage(
          ctx,
          r,
          's1',
          cd.tt1,
          `${tag}, ${where} TTB1 ${hex(cd.tt1.ttb)} (ASID ${cd.asid})`,
          's1-table-writable',
        );
    }
    return asids;
  }

  /** The CDs in memory for SubstreamIDs [first, end), located as the SMMU locates them (linear or 2-level, cached L1CDs included). */
  private cdsInMemory(
    ctx: CheckCtx,
    sid: number,
    dec: StreamDec,
    first: number,
    end: number,
    env: CdCheckEnv,
    el2: boolean,
    out: Array<{ cd: CdEntry; where: string }>,
    r: Reach,
    tag: string,
  ): void {
    const smmu = this.machine.smmu;
    const mem = this.machine.mem;
    const ft = smmu.features;
    const ptr = dec.ctxPtr;
    const cdmax = dec.cdmax;
    const single = cdmax === 0 || ft.ssidSize === 0;
    const fmt = single ? 0 : dec.s1fmt === 3 ? 0 : dec.s1fmt;
    if (single) {
      this.cdSlots(ctx, ptr, 0, 1, env, el2, out, r, tag);
      return;
    }
    if (fmt === 0) {
      const base = ptr - (ptr % 2 ** (cdmax + 6));
      this.cdSlots(ctx, base, first, end, env, el2, out, r, tag);
      return;
    }
    const leafBits = fmt === 1 ? 6 : 10;
    const leafN = 2 ** leafBits;
    const l1entries = cdmax <= leafBits ? 1 : 2 ** (cdmax - leafBits);
    const l1base = ptr - (ptr % Math.max(64, l1entries * 8));
    const cachedL1 = ctx.caches.caching ? ctx.caches.l1cds(sid) : undefined;
    const w = new Uint32Array(2);
    const l1First = cdmax <= leafBits ? 0 : Math.floor(first / leafN);
    const l1Last = cdmax <= leafBits ? 0 : Math.floor((end - 1) / leafN);
    for (let l1idx = l1First; l1idx <= l1Last; l1idx++) {
      const descs: number[] = [];
      const c = cachedL1?.get(l1idx);
      if (c !== undefined) descs.push(c);
      const l1addr = l1base + l1idx * 8;
      if (mem.isRam(l1addr, 8)) {
        if (ctx.hostWritable(l1addr, 8)) {
          r.everything(
            'cd-writable',
            `${tag}: the L1CD at ${hex(l1addr)} is in host-writable memory`,
          );
          continue;
        }
        mem.readWords(l1addr, w);
        const d = get(w, L1CD.L2Ptr) * 4096 + get(w, L1CD.V);
        if (c !== d) descs.push(d);
      }
      const lo = Math.max(first, cdmax <= leafBits ? 0 : l1idx * leafN);
      const hi = Math.min(end, cdmax <= leafBits ? end : (l1idx + 1) * leafN);
      for (const desc of descs) {
        if (desc % 2 === 0) continue; // C_BAD_SUBSTREAMID
        const l2ptr = desc - (desc % 4096);
        const l2base = fmt === 2 ? l2ptr - (l2ptr % 65536) : l2ptr;
        if (l2base >= 2 ** ft.oas) continue;
        // slot of ssid = l2base + (ssid % leafN) * 64
        this.cdSlots(ctx, l2base - (lo - (lo % leafN)) * CD_BYTES, lo, hi, env, el2, out, r, tag);
      }
    }
  }

  /** CDs at `base + ssid * 64` for ssid in [lo, hi). */
  private cdSlots(
    ctx: CheckCtx,
    base: number,
    lo: number,
    hi: number,
    env: CdCheckEnv,
    el2: boolean,
    out: Array<{ cd: CdEntry; where: string }>,
    r: Reach,
    tag: string,
  ): void {
    const mem = this.machine.mem;
    const ft = this.machine.smmu.features;
    const a0 = base + lo * CD_BYTES;
    const bytes = (hi - lo) * CD_BYTES;
    if (ctx.hostWritable(a0, bytes)) {
      // partly outside RAM is fine: only slots in RAM can be written
      let inRam = false;
      for (let a = floorPg(a0); a < a0 + bytes && !inRam; a += PG)
        inRam = mem.isRam(Math.max(a, a0), 1);
      if (inRam) {
        r.everything(
          'cd-writable',
          `${tag}: CDs at ${hex(a0)}..${hex(a0 + bytes)} are in host-writable memory`,
        );
        return;
      }
    }
    const s = this.cdScratch;
    for (let ssid = lo; ssid < hi; ssid++) {
      const addr = base + ssid * CD_BYTES;
      if (!mem.isRam(addr, CD_BYTES)) continue; // F_CD_FETCH
      s[0] = mem.read32(addr);
      if (get(s, CD.V) === 0) continue;
      const w = new Uint32Array(CD_WORDS);
      mem.readWords(addr, w);
      const illegal = cdIllegal(w, env);
      if (illegal !== null) continue;
      out.push({ cd: decodeCd(w, addr, null, ft, el2), where: `CD ${ssid} at ${hex(addr)}` });
    }
  }

  /** IOTLB entries the device's STE can hit: its VMID's stage-2 entries, and its stage-1 or combined entries. */
  private addIotlb(
    ctx: CheckCtx,
    r: Reach,
    tag: string,
    dec: StreamDec,
    asids: Set<number> | null,
  ): void {
    const smmu = this.machine.smmu;
    if (!smmu.caching) return;
    let described = 0;
    const take = (stage: number, world: number): void => {
      for (const e of ctx.tlb(stage, world, dec.vmid)) {
        if (
          stage === STAGE.S1 &&
          asids !== null &&
          e.ctx.asid !== ASID_GLOBAL &&
          !asids.has(e.ctx.asid)
        )
          continue;
        const perm = e.s1perm & e.s2perm;
        const size = 2 ** e.shift;
        const read = (perm & READ_PERMS) !== 0;
        const write = (perm & WRITE_PERMS) !== 0;
        const nth = described++;
        if (!read && !write) continue;
        const det =
          nth < TLB_DETAILS
            ? r.lazyDetail(
                'iotlb',
                () =>
                  `${tag}: IOTLB ${STAGE_NAME[stage]} entry (VMID ${e.ctx.vmid}${stage !== STAGE.S2 ? `, ASID ${e.ctx.asid === ASID_GLOBAL ? 'global' : e.ctx.asid}` : ''}) ${hex(e.ia)} → ${hex(e.oa)} (${sizeText(size)})`,
              )
            : r.detail('iotlb', `${tag}: IOTLB entries of VMID ${dec.vmid}`);
        r.add('iotlb', floorPg(e.oa), ceilPg(e.oa + size), read, write, det);
      }
    };
    if (dec.s2) {
      take(STAGE.S2, WORLD.NS_EL1);
      if (dec.s1) take(STAGE.S12, dec.world);
    } else if (dec.s1) {
      take(STAGE.S1, dec.world);
    }
  }

  /** Intersect one device's reach with its protected ranges, one breach per contiguous run per access/path/owner. */
  private dmaBreaches(
    dev: DmaEndpoint,
    reach: Reach,
    ranges: readonly NormRange[],
    out: Breach[],
  ): void {
    const found: Array<Breach & { base: string }> = [];
    for (const [path, pr] of reach.paths) {
      for (const access of ['read', 'write'] as const) {
        const runs = pr[access].normalize();
        let j = 0;
        let last: (Breach & { base: string }) | null = null;
        for (let i = 0; i < runs.length; i++) {
          const b = runs.b[i]!;
          const e = runs.e[i]!;
          while (j < ranges.length && ranges[j]!.end <= b) j++;
          for (let k = j; k < ranges.length && ranges[k]!.base < e; k++) {
            const pg = ranges[k]!;
            if (pg[access]) continue;
            const a = floorPg(Math.max(b, pg.base));
            const z = ceilPg(Math.min(e, pg.end));
            if (last && last.owner === pg.owner && a <= last.pa + last.bytes) {
              last.bytes = Math.max(last.pa + last.bytes, z) - last.pa;
              continue;
            }
            const d = pr.details[runs.d[i]!]!;
            last = {
              kind: 'dma',
              device: dev.name,
              sid: dev.sid,
              pa: a,
              bytes: z - a,
              access,
              owner: pg.owner,
              path,
              detail: '',
              base: typeof d === 'string' ? d : d(),
            };
            found.push(last);
          }
        }
      }
    }
    found.sort(
      (x, y) =>
        x.pa - y.pa ||
        (x.access < y.access ? -1 : x.access > y.access ? 1 : 0) ||
        (x.path < y.path ? -1 : x.path > y.path ? 1 : 0),
    );
    for (const f of found) {
      const { base, ...b } = f;
      const pages =
        b.bytes === PG
          ? `page ${hex(b.pa)}`
          : `pages ${hex(b.pa)}..${hex(b.pa + b.bytes)} (${sizeText(b.bytes)})`;
      b.detail = `${base} ${b.access === 'read' ? 'reads' : 'writes'} ${b.owner} ${pages}`;
      out.push(b);
    }
  }
}
