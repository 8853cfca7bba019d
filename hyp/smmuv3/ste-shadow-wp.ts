/**
 * STE shadowing by write-protecting the host stream table (policy `steShadowing:
 * 'trap-writes'`, the `pkvm-wp` design). While SMMUEN=1 the host's table (the linear table, or
 * the L1 table and every L2 table an L1 descriptor points at) is mapped read-only in the host
 * CPU stage-2. Each host store to it is a permission fault: the hypervisor performs the store
 * on the host's copy, reads the STE it changed once into its own memory, sanitizes the copy
 * exactly as the 'cfgi' design does (ste-sanitize.ts) and installs it in the shadow stream
 * table (strtab.ts) when it differs from what is there. A store to an L1 descriptor changes
 * which L2 the shadow follows: the old L2 is released (unprotected, unpinned and unshared), the
 * new one shared, pinned and protected, and the whole span reshadowed.
 *
 * So the shadow always holds sanitize(host STE) for the StreamIDs the host owns, and CFGI_STE
 * needs no copy: it is checked as under 'cfgi' (SMMUEN, the StreamID inside both tables, not a
 * guest's, an L1 span that holds it) and forwarded, and the hardware drops its cached copy of
 * the shadow STE. What the sanitizer refused at a store (the shadow got an abort STE) is
 * reported when the host issues CFGI_STE for the StreamID, as 'cfgi' reports it: the same
 * rule, reason and failure outcome, at the same point of the host's sequence.
 *
 * Linux's hitless writer stores an STE qword by qword, with CFGI_STE + CMD_SYNC between steps;
 * every intermediate STE is one the hardware may legally fetch, so each is sanitized and
 * installed (the counts say what that costs). Bulk host writes reach here one trapped byte or
 * word at a time, and each is handled the same way.
 *
 * What it gives up: only CPU stores are seen. A device DMA write to the host's table is not
 * (the host's own IOMMU mapping of the page stays writable): the shadow then keeps the last
 * sanitized STE, safe but stale, where 'cfgi' would pick the new value up on the next CFGI.
 */
import type { DataAbort } from '../../hw/bus.ts';
import { get } from '../../hw/bits.ts';
import { L1STD, STE_WORDS } from '../../hw/smmu/ste.ts';
import { PAGE, refusalMessage, type OwnershipRefusal } from '../mem/ownership.ts';
import { PoolExhausted } from '../mem/pool.ts';
import { pageSpan, type Span } from '../mem/span.ts';
import { WriteProtect } from '../mem/write-protect.ts';
import { RULE_NAMES, type RuleName } from '../policy/policy.ts';
import { HYP_STATS } from '../probes.ts';
import { ShadowQueueError } from './shadowq.ts';
import { LINUX_SPLIT } from './strtab.ts';
import { sanitizeSte, abortSte, type SteRefusal, type SteSanitizeEnv } from './ste-sanitize.ts';
import { SMMUEN } from './cr0.ts';
import type { HostTable } from './host-view.ts';
import type { ShadowOutcome, SteShadowing, SteShadowEnv, SteStoreStats } from './ste-shadowing.ts';

const STE_BYTES = 64;
const L1D_BYTES = 8;

/** Why the L2 an L1 descriptor points at was refused; reported on a CFGI_STE for `sid` in it. */
interface L2Refusal {
  readonly rule: RuleName;
  why(sid: number): string;
}

/** What the shadow follows for one host L1 descriptor. */
interface Followed {
  /** the descriptor as last read: Span and the L2 table's address */
  readonly span: number;
  readonly l2: number;
  /** STEs of the L2 the shadow follows (0: none: Span invalid, or the L2 refused) */
  readonly n: number;
  /** the pages protected for it (and shared and pinned, unless `shared` is false), or null */
  readonly pages: Span | null;
  readonly shared: boolean;
  readonly refusal: L2Refusal | null;
}

export class WpSteShadowing implements SteShadowing {
  /** shadow STEs rebuilt from the host's */
  reshadows = 0;
  readonly storeStats: SteStoreStats = HYP_STATS.steStores.create();
  readonly writeProtect: WriteProtect;

  /** whether the host table is live (SMMUEN=1), and its geometry then */
  private live = false;
  private table: HostTable = { base: 0, twoLevel: false, split: 0, log2size: 0 };
  /** the L1 (or linear) table's pages, protected while live */
  private tablePages: Span | null = null;
  /** L1 index → what the shadow follows (2-level tables) */
  private readonly followed = new Map<number, Followed>();
  /** page frame → the L1 indices whose followed L2 lies on it */
  private readonly byPage = new Map<number, number[]>();
  /** page frame → the followed L2s that shared and pinned it */
  private readonly pageRefs = new Map<number, number>();
  /** StreamID → the sanitizer's refusal at its last store (the shadow STE is abort) */
  private readonly steRefusals = new Map<number, SteRefusal>();
  /** stores trapped while one is being handled (a second host CPU): [addr, size] pairs */
  private readonly pending: number[] = [];
  private busy = false;

  private readonly sidLimit: number;
  private readonly ste = new Uint32Array(STE_WORDS);
  private readonly cur = new Uint32Array(STE_WORDS);
  private readonly l1 = new Uint32Array(2);
  /** one span's sanitized STEs, installed together */
  private readonly spanBuf: Uint32Array;
  private readonly sync: (cmds: Uint32Array[]) => void;
  /** StreamIDs whose install a stopped hardware queue interrupted (finished on their CFGI_STE) */
  private readonly unsynced = new Set<number>();
  /** the double-fetch weakening's second sanitize: every rule off but the stage-2 fields */
  private readonly secondEnv: SteSanitizeEnv;

  constructor(private readonly env: SteShadowEnv) {
    this.writeProtect = new WriteProtect(env.ram.lo, env.ram.hi);
    this.sidLimit = 2 ** env.sidBits;
    this.spanBuf = new Uint32Array(2 ** LINUX_SPLIT * STE_WORDS);
    this.sync = (cmds) => env.shadowQ.issueAndSync(cmds);
    const off = new Set(RULE_NAMES);
    off.delete('ste-s2-fields');
    this.secondEnv = { ...env.steEnv, weak: (r) => off.has(r) };
  }

  // ---- CFGI_STE: checked and forwarded ---------------------------------------------------------

  reshadow(sid: number): ShadowOutcome {
    const env = this.env;
    const t = env.view.table;
    const fail = (rule: RuleName, why: string): 'reject' | 'log' => env.failures.violate(rule, why);
    if (!env.weak('cfgi-sid')) {
      if (!(env.view.cr0 & SMMUEN))
        return fail('cfgi-sid', `CFGI_STE StreamID ${sid} while SMMUEN=0`);
      if (sid >= 2 ** t.log2size || sid >= this.sidLimit)
        return fail(
          'cfgi-sid',
          `CFGI_STE StreamID ${sid} beyond the stream table (2^${Math.min(t.log2size, env.sidBits)} StreamIDs)`,
        );
    } else if (sid >= this.sidLimit) {
      return 'log';
    }
    const owner = env.sidGuest(sid);
    if (owner !== undefined && !env.weak('sid-owner'))
      return fail(
        'sid-owner',
        `CFGI_STE StreamID ${sid}: the StreamID is assigned to guest ${owner}`,
      );
    if (t.twoLevel) {
      const per = 2 ** t.split;
      const f = this.live ? this.followed.get(Math.floor(sid / per)) : undefined;
      const span = f?.span ?? 0;
      if (span === 0 || span > t.split + 1 || sid % per >= 2 ** (span - 1))
        return fail(
          'cfgi-sid',
          `CFGI_STE StreamID ${sid}: the host L1 descriptor (Span=${span}) has no STE for it`,
        );
      if (f!.refusal !== null) return fail(f!.refusal.rule, f!.refusal.why(sid));
    }
    if (this.unsynced.size !== 0 && this.unsynced.delete(sid)) {
      // an install the stopped queue interrupted: finish it now, from the host STE
      const addr = t.twoLevel
        ? this.followed.get(Math.floor(sid / 2 ** t.split))!.l2 + (sid % 2 ** t.split) * STE_BYTES
        : t.base + sid * STE_BYTES;
      this.reshadowSte(sid, addr);
    }
    if (this.steRefusals.size !== 0) {
      const r = this.steRefusals.get(sid);
      if (r !== undefined) return fail(r.rule, `StreamID ${sid}: ${r.reason}`);
    }
    this.storeStats.cfgisForwarded++;
    return 'ok';
  }

  // ---- the trapped store -----------------------------------------------------------------------

  memoryTrap(a: DataAbort): boolean {
    if (a.dir !== 'w' || a.actor !== 'host' || !this.writeProtect.covers(a.addr, a.size))
      return false;
    const env = this.env;
    // a page the host lost since (a weakened rule let it go) is not the host's to write
    if (!env.own.hostMay(a.addr) || !env.own.hostMay(a.addr + a.size - 1)) return false;
    this.storeStats.steStoreTraps++;
    env.bus.write('hyp', a.addr, a.size, a.value);
    if (this.busy) {
      // a store while another is being handled (a second host CPU): it goes in now, and its
      // STEs are reshadowed once the first is done
      this.pending.push(a.addr, a.size);
      return true;
    }
    this.busy = true;
    try {
      this.stored(a.addr, a.size);
      this.drain();
    } finally {
      this.busy = false;
      this.pending.length = 0;
    }
    return true;
  }

  private drain(): void {
    const p = this.pending;
    for (let i = 0; i < p.length; i += 2) this.stored(p[i]!, p[i + 1]!);
  }

  /** The host stored `size` bytes at `addr` (already in its memory): bring the shadow up to date. */
  private stored(addr: number, size: number): void {
    if (!this.live) return;
    const t = this.table;
    const end = addr + size;
    if (!t.twoLevel) {
      const tEnd = t.base + 2 ** t.log2size * STE_BYTES;
      const lo = Math.max(addr, t.base);
      const hi = Math.min(end, tEnd);
      for (let e = Math.floor((lo - t.base) / STE_BYTES); t.base + e * STE_BYTES < hi; e++)
        this.reshadowSte(e, t.base + e * STE_BYTES);
      return;
    }
    const l1End = t.base + 2 ** (t.log2size - t.split) * L1D_BYTES;
    if (addr < l1End && end > t.base) {
      this.storeStats.l1Stores++;
      const hi = Math.min(end, l1End);
      for (let i = Math.floor((Math.max(addr, t.base) - t.base) / L1D_BYTES); ; i++) {
        if (t.base + i * L1D_BYTES >= hi) break;
        this.l1Changed(i);
      }
    }
    const p0 = Math.floor(addr / PAGE);
    const p1 = Math.floor((end - 1) / PAGE);
    const first = this.byPage.get(p0);
    if (first !== undefined) for (const idx of first) this.l2Stored(idx, addr, end);
    if (p1 !== p0) {
      const second = this.byPage.get(p1);
      if (second !== undefined)
        for (const idx of second)
          if (first === undefined || !first.includes(idx)) this.l2Stored(idx, addr, end);
    }
  }

  /** A store to [addr, end) on a page of the L2 followed for L1 index `idx`. */
  private l2Stored(idx: number, addr: number, end: number): void {
    const f = this.followed.get(idx)!;
    const lo = Math.max(addr, f.l2);
    const hi = Math.min(end, f.l2 + f.n * STE_BYTES);
    const sid0 = idx * 2 ** this.table.split;
    for (let j = Math.floor((lo - f.l2) / STE_BYTES); f.l2 + j * STE_BYTES < hi; j++)
      this.reshadowSte(sid0 + j, f.l2 + j * STE_BYTES);
  }

  /** Rebuild the shadow STE of `sid` from the host STE at `addr`. */
  private reshadowSte(sid: number, addr: number): void {
    if (sid >= this.sidLimit || !this.hostsSid(sid)) return;
    const w = this.ste;
    this.sanitized(sid, addr, w);
    if (this.differs(sid, w)) this.install(sid, w);
  }

  /** The host STE of `sid` at `addr`, copied once into `w` and sanitized (a refusal is kept for CFGI_STE). */
  private sanitized(sid: number, addr: number, w: Uint32Array): void {
    const env = this.env;
    this.reshadows++;
    this.storeStats.storeReshadows++;
    env.noteReshadow(sid);
    env.hostMem.copy(addr, w, STE_WORDS);
    let verdict = sanitizeSte(w, env.steEnv);
    if (verdict === null && env.weak('double-fetch')) {
      // the double-fetch weakening: check the first read, install a second one
      env.hostMem.copy(addr, w, STE_WORDS);
      sanitizeSte(w, this.secondEnv);
      verdict = null;
    }
    // on a refusal the sanitizer left an abort STE in `w`
    if (verdict !== null) this.steRefusals.set(sid, verdict);
    else if (this.steRefusals.size !== 0) this.steRefusals.delete(sid);
  }

  /** Whether `sid` is the host's to configure (not a guest's, unless sid-owner is weakened). */
  private hostsSid(sid: number): boolean {
    return this.env.sidGuest(sid) === undefined || this.env.weak('sid-owner');
  }

  /** Whether the shadow STE of `sid` differs from `w`. */
  private differs(sid: number, w: Uint32Array): boolean {
    const cur = this.cur;
    this.env.strtab.read(sid, cur);
    for (let i = 0; i < STE_WORDS; i++) if (cur[i] !== w[i]) return true;
    return false;
  }

  /** Install a sanitized STE; when the pool is exhausted it stays invalid (fail closed), and CFGI_STE reports it. */
  private install(sid: number, w: Uint32Array): void {
    try {
      this.env.strtab.install(sid, w, this.sync);
    } catch (e) {
      this.installFailed([sid], e);
    }
  }

  /** Install the STEs of one span together (strtab.installMany), with `install`'s failure handling. */
  private installSpan(sids: number[], stes: Uint32Array): void {
    try {
      this.env.strtab.installMany(sids, stes, this.sync);
    } catch (e) {
      this.installFailed(sids, e);
    }
  }

  private installFailed(sids: readonly number[], e: unknown): void {
    if (e instanceof PoolExhausted) {
      const reason = `${e.message} (the STE stays invalid: fail closed)`;
      for (const sid of sids) this.steRefusals.set(sid, { rule: 'queue-share', reason });
      return;
    }
    if (e instanceof ShadowQueueError) {
      // the hardware queue is stopped at an error the host caused (a refused host command not
      // yet acknowledged): the install stopped at a step that is safe to be seen (the STE
      // invalid, or whole and not yet invalidated), and is finished on the host's CFGI_STE
      for (const sid of sids) this.unsynced.add(sid);
      return;
    }
    throw e;
  }

  // ---- L1 descriptors --------------------------------------------------------------------------

  /** L1 descriptor `idx` may have changed: follow the L2 it points at now, and reshadow its span. */
  private l1Changed(idx: number): void {
    const env = this.env;
    const t = this.table;
    const d = this.l1;
    env.hostMem.load64(t.base + idx * L1D_BYTES, d);
    const span = get(d, L1STD.Span);
    const l2 = get(d, L1STD.L2Ptr) * STE_BYTES;
    const old = this.followed.get(idx);
    // the same L2 as before: nothing the shadow follows changed (a refused one is tried again)
    if (old !== undefined && old.span === span && old.l2 === l2 && old.refusal === null) return;
    let f: Followed = { span, l2, n: 0, pages: null, shared: false, refusal: null };
    if (span !== 0 && span <= t.split + 1) {
      const n = 2 ** (span - 1);
      const pages = pageSpan(l2, n * STE_BYTES);
      const hex = l2.toString(16);
      if (!env.isRam(pages.base, pages.size)) {
        f = {
          ...f,
          refusal: {
            rule: 'queue-share',
            why: (sid) => `host L2 stream table 0x${hex} for StreamID ${sid} is not memory`,
          },
        };
      } else {
        const share = !env.weak('queue-share');
        const r = share ? this.sharePages(pages) : null;
        if (r !== null) {
          const msg = refusalMessage(r.transition, r.pa, r.why);
          f = {
            ...f,
            refusal: {
              rule: 'queue-share',
              why: (sid) =>
                `host L2 stream table 0x${hex} for StreamID ${sid} cannot be shared: ${msg}`,
            },
          };
        } else {
          f = { ...f, n, pages, shared: share };
          this.writeProtect.protect(pages.base, pages.size);
          for (let pfn = pages.base / PAGE; pfn < (pages.base + pages.size) / PAGE; pfn++) {
            const l = this.byPage.get(pfn);
            if (l === undefined) this.byPage.set(pfn, [idx]);
            else l.push(idx);
          }
        }
      }
    }
    this.followed.set(idx, f);
    // released after the new one is taken, so pages both use stay shared
    if (old !== undefined) this.release(idx, old);
    this.reshadowSpan(idx, f);
  }

  /** Every StreamID of L1 index `idx` from the L2 followed (or none). */
  private reshadowSpan(idx: number, f: Followed): void {
    const env = this.env;
    const per = 2 ** this.table.split;
    const sid0 = idx * per;
    if (sid0 >= this.sidLimit) return;
    // a span that never had a shadow L2 and still has nothing to show: nothing to write
    if (f.n === 0 && f.refusal === null && !env.strtab.hasSpan(sid0)) return;
    this.storeStats.spanReshadows++;
    this.reshadowRun(sid0, per, f.l2, f.n, f.refusal !== null);
  }

  /**
   * StreamIDs sid0 … sid0+count-1: the first `n` from the host STEs at `base` on, the rest with
   * no STE (invalid, or abort when `refused`). What changed is installed a shadow span at a time.
   */
  private reshadowRun(
    sid0: number,
    count: number,
    base: number,
    n: number,
    refused: boolean,
  ): void {
    const env = this.env;
    const buf = this.spanBuf;
    const sids: number[] = [];
    const room = buf.length / STE_WORDS;
    for (let j = 0; j < count && sid0 + j < this.sidLimit; j++) {
      const sid = sid0 + j;
      if (!this.hostsSid(sid)) continue;
      // one batch per shadow span (a host SPLIT other than Linux's, under a weakened
      // strtab-guard, may cover several)
      if (
        sids.length === room ||
        (sids.length !== 0 && sid >>> LINUX_SPLIT !== sids[0]! >>> LINUX_SPLIT)
      )
        this.installSpan(sids.splice(0), buf);
      const w = buf.subarray(sids.length * STE_WORDS, (sids.length + 1) * STE_WORDS);
      if (j < n) this.sanitized(sid, base + j * STE_BYTES, w);
      else {
        if (this.steRefusals.size !== 0) this.steRefusals.delete(sid);
        // no STE for it: invalid, or abort when the L2 was refused (as 'cfgi' installs then)
        if (refused) abortSte(w);
        else w.fill(0);
      }
      if (!this.differs(sid, w)) continue;
      if (j >= n) {
        this.reshadows++;
        env.noteReshadow(sid);
      }
      sids.push(sid);
    }
    // the span changed as a whole (a new L2, or a table going live): its STEs go in together
    this.installSpan(sids, buf);
  }

  /** Stop following the L2 of `old` (L1 index `idx`). */
  private release(idx: number, old: Followed): void {
    const p = old.pages;
    if (p === null) return;
    this.writeProtect.unprotect(p.base, p.size);
    for (let pfn = p.base / PAGE; pfn < (p.base + p.size) / PAGE; pfn++) {
      const l = this.byPage.get(pfn);
      if (l === undefined) continue;
      const k = l.indexOf(idx);
      if (k >= 0) l.splice(k, 1);
      if (l.length === 0) this.byPage.delete(pfn);
    }
    if (old.shared) this.unsharePages(p);
  }

  /** Share and pin each page of `s` not yet shared for another followed L2; nothing changed on a refusal. */
  private sharePages(s: Span): OwnershipRefusal | null {
    const own = this.env.own;
    const first = s.base / PAGE;
    const end = (s.base + s.size) / PAGE;
    for (let pfn = first; pfn < end; pfn++) {
      const n = this.pageRefs.get(pfn) ?? 0;
      if (n === 0) {
        const r = own.tryShareAndPin(pfn * PAGE, PAGE);
        if (r !== null) {
          if (pfn > first) this.unsharePages({ base: s.base, size: (pfn - first) * PAGE });
          return r;
        }
      }
      this.pageRefs.set(pfn, n + 1);
    }
    return null;
  }

  private unsharePages(s: Span): void {
    for (let pfn = s.base / PAGE; pfn < (s.base + s.size) / PAGE; pfn++) {
      const n = this.pageRefs.get(pfn)!;
      if (n === 1) {
        this.pageRefs.delete(pfn);
        this.env.own.unpinAndUnshare(pfn * PAGE, PAGE);
      } else this.pageRefs.set(pfn, n - 1);
    }
  }

  // ---- the table's life cycle ------------------------------------------------------------------

  tableLive(): void {
    const env = this.env;
    if (this.live) this.tableGone();
    const t = env.view.table;
    this.table = { ...t };
    this.live = true;
    const bytes = t.twoLevel
      ? 2 ** (t.log2size - t.split) * L1D_BYTES
      : 2 ** t.log2size * STE_BYTES;
    const pages = pageSpan(t.base, bytes);
    this.tablePages = pages;
    this.writeProtect.protect(pages.base, pages.size);
    // the host wrote its table while nothing trapped: the shadow catches up with all of it
    this.busy = true;
    try {
      if (t.twoLevel) {
        const l1n = 2 ** (t.log2size - t.split);
        for (let i = 0; i < l1n; i++) this.l1Changed(i);
      } else {
        const n = Math.min(2 ** t.log2size, this.sidLimit);
        const per = 2 ** LINUX_SPLIT;
        for (let s0 = 0; s0 < n; s0 += per) {
          const k = Math.min(per, n - s0);
          this.reshadowRun(s0, k, t.base + s0 * STE_BYTES, k, false);
        }
      }
      this.drain();
    } finally {
      this.busy = false;
      this.pending.length = 0;
    }
  }

  tableGone(): void {
    this.unsynced.clear(); // the next enable reshadows the whole table
    if (!this.live) return;
    this.live = false;
    const p = this.tablePages;
    if (p !== null) this.writeProtect.unprotect(p.base, p.size);
    this.tablePages = null;
    this.followed.forEach((f, idx) => this.release(idx, f));
    this.followed.clear();
    this.byPage.clear();
    this.steRefusals.clear();
  }

  sidReturned(sid: number): void {
    if (!this.live || sid >= this.sidLimit) return;
    const t = this.table;
    this.busy = true;
    try {
      if (!t.twoLevel) {
        if (sid < 2 ** t.log2size) this.reshadowSte(sid, t.base + sid * STE_BYTES);
      } else {
        const per = 2 ** t.split;
        const f = this.followed.get(Math.floor(sid / per));
        const j = sid % per;
        if (f !== undefined && j < f.n) this.reshadowSte(sid, f.l2 + j * STE_BYTES);
        // otherwise the host has no STE for it: the guest's teardown left an abort STE, kept
      }
      this.drain();
    } finally {
      this.busy = false;
      this.pending.length = 0;
    }
  }
}
