/**
 * The hyp-owned shadow stream table: the only stream table the hardware reads (designs.md
 * §1.7). It is allocated at its maximum size at boot (2-level: an L1 with a descriptor for
 * every 256-STE span of the SID space, Linux's split of 8; linear when the SID space is no
 * larger than one span), and L2 tables come from the hyp pool on the first CFGI_STE in their
 * span. The host's own table is only ever read by the hypervisor.
 *
 * A sanitized STE is installed with pKVM's ordering: V 1→0 writes DW0 first, CFGI_STE + SYNC,
 * then the rest; V 0→1 writes DW1–DW7 first, CFGI_STE + SYNC, then DW0; anything else writes
 * all eight double-words. A final CFGI_STE + SYNC follows in every case.
 */
import type { MmioBus } from '../../hw/bus.ts';
import { get, set } from '../../hw/bits.ts';
import { OFF, STRTAB_BASE_CFG } from '../../hw/smmu/regs.ts';
import { L1STD, STE, STE_WORDS } from '../../hw/smmu/ste.ts';
import { encodeCommand } from '../../hw/smmu/commands.ts';
import type { HypPool } from '../mem/pool.ts';

export const LINUX_SPLIT = 8;
const STE_BYTES = 64;

export class ShadowStreamTable {
  readonly twoLevel: boolean;
  readonly split: number;
  readonly log2size: number;
  readonly base: number;
  readonly l1Entries: number;
  /** L1 index → L2 table address */
  private readonly l2 = new Map<number, number>();
  /** STEs installed, and L2 tables allocated */
  installs = 0;
  private readonly cur = new Uint32Array(STE_WORDS);
  private readonly l1 = new Uint32Array(2);

  constructor(
    private readonly bus: MmioBus,
    private readonly pool: HypPool,
    readonly sidBits: number,
    twoLevelSupported: boolean,
  ) {
    this.twoLevel = twoLevelSupported && sidBits > LINUX_SPLIT;
    this.split = this.twoLevel ? LINUX_SPLIT : 0;
    this.log2size = sidBits;
    if (this.twoLevel) {
      this.l1Entries = 2 ** (sidBits - LINUX_SPLIT);
      this.base = pool.alloc(this.l1Entries * 8, 'shadow L1 stream table', 64);
    } else {
      this.l1Entries = 0;
      this.base = pool.alloc(2 ** sidBits * STE_BYTES, 'shadow linear stream table', 64);
    }
  }

  /** pages of hyp memory the shadow table holds */
  get pages(): number {
    const l1 = this.twoLevel
      ? Math.ceil((this.l1Entries * 8) / 4096)
      : Math.ceil((2 ** this.sidBits * STE_BYTES) / 4096);
    return l1 + this.l2.size * ((2 ** LINUX_SPLIT * STE_BYTES) / 4096);
  }

  get l2Tables(): number {
    return this.l2.size;
  }

  /** STRTAB_BASE (RA=1) and STRTAB_BASE_CFG for the hardware. */
  programHw(mmio: number): void {
    this.bus.write64('hyp', mmio + OFF.STRTAB_BASE, (1n << 62n) | BigInt(this.base));
    const cfg = [0];
    set(cfg, STRTAB_BASE_CFG.FMT, this.twoLevel ? 1 : 0);
    set(cfg, STRTAB_BASE_CFG.LOG2SIZE, this.log2size);
    if (this.twoLevel) set(cfg, STRTAB_BASE_CFG.SPLIT, this.split);
    this.bus.write32('hyp', mmio + OFF.STRTAB_BASE_CFG, cfg[0]!);
  }

  /** Address of the shadow STE for `sid`, allocating its L2 table if needed (may throw PoolExhausted). Also says whether the L2 is new. */
  steAddr(sid: number): { addr: number; newL2: boolean } {
    if (!this.twoLevel) return { addr: this.base + sid * STE_BYTES, newL2: false };
    const i = sid >>> LINUX_SPLIT;
    let l2 = this.l2.get(i);
    let newL2 = false;
    if (l2 === undefined) {
      l2 = this.pool.alloc(2 ** LINUX_SPLIT * STE_BYTES, 'shadow L2 stream table');
      this.l2.set(i, l2);
      const d = this.l1;
      d.fill(0);
      set(d, L1STD.Span, LINUX_SPLIT + 1);
      set(d, L1STD.L2Ptr, l2 / 64);
      this.bus.writeWords('hyp', this.base + i * 8, d, 2);
      newL2 = true;
    }
    return { addr: l2 + (sid & (2 ** LINUX_SPLIT - 1)) * STE_BYTES, newL2 };
  }

  /**
   * Install `next` (16 words, sanitized) as the STE of `sid`, with the ordering above. `sync`
   * issues the hypervisor's commands followed by a CMD_SYNC and waits.
   */
  install(sid: number, next: Uint32Array, sync: (cmds: Uint32Array[]) => void): void {
    const { addr, newL2 } = this.steAddr(sid);
    const cfgi = encodeCommand('CFGI_STE', { StreamID: sid, Leaf: newL2 ? 0 : 1 });
    const cur = this.cur;
    this.bus.readWords('hyp', addr, cur, STE_WORDS);
    const wasValid = get(cur, STE.V) === 1;
    const valid = get(next, STE.V) === 1;
    if (wasValid && !valid) {
      this.bus.writeWords('hyp', addr, next, 2);
      sync([cfgi]);
      this.bus.writeWords('hyp', addr + 8, next.subarray(2), STE_WORDS - 2);
    } else if (!wasValid && valid) {
      this.bus.writeWords('hyp', addr + 8, next.subarray(2), STE_WORDS - 2);
      sync([cfgi]);
      this.bus.writeWords('hyp', addr, next, 2);
    } else {
      this.bus.writeWords('hyp', addr, next, STE_WORDS);
    }
    sync([cfgi]);
    this.installs++;
  }

  /**
   * Install several sanitized STEs of one L2 span at once, `stes` holding 16 words for each of
   * `sids` in order: the same per-STE ordering as `install`, with the CFGI_STEs of each step
   * batched before one CMD_SYNC (at most three syncs where `install` takes up to two per STE).
   * For a host L1 descriptor change under the 'trap-writes' design, which reshadows a whole span.
   */
  installMany(
    sids: readonly number[],
    stes: Uint32Array,
    sync: (cmds: Uint32Array[]) => void,
  ): void {
    const n = sids.length;
    if (n === 0) return;
    const span = sids[0]! >>> LINUX_SPLIT;
    for (const sid of sids)
      if (this.twoLevel && sid >>> LINUX_SPLIT !== span)
        throw new Error(`installMany: StreamIDs ${sids[0]} and ${sid} are in different spans`);
    const { newL2 } = this.steAddr(sids[0]!);
    const addrs = sids.map((sid) => this.steAddr(sid).addr);
    const cfgis = sids.map((sid) =>
      encodeCommand('CFGI_STE', { StreamID: sid, Leaf: newL2 ? 0 : 1 }),
    );
    // 0: rewritten whole, 1: V 1→0 (DW0 first), 2: V 0→1 (DW0 last)
    const kind = new Uint8Array(n);
    const cur = this.cur;
    for (let i = 0; i < n; i++) {
      this.bus.readWords('hyp', addrs[i]!, cur, STE_WORDS);
      const was = get(cur, STE.V) === 1;
      const will = get(stes.subarray(i * STE_WORDS), STE.V) === 1;
      kind[i] = was && !will ? 1 : !was && will ? 2 : 0;
    }
    const step = (k: number): Uint32Array[] => cfgis.filter((_, i) => kind[i] === k);
    const next = (i: number): Uint32Array => stes.subarray(i * STE_WORDS, (i + 1) * STE_WORDS);
    for (let i = 0; i < n; i++)
      if (kind[i] === 1) this.bus.writeWords('hyp', addrs[i]!, next(i), 2);
    const off = step(1);
    if (off.length) sync(off);
    for (let i = 0; i < n; i++) {
      if (kind[i] === 0) this.bus.writeWords('hyp', addrs[i]!, next(i), STE_WORDS);
      else this.bus.writeWords('hyp', addrs[i]! + 8, next(i).subarray(2), STE_WORDS - 2);
    }
    const on = step(2);
    if (on.length) {
      sync(on);
      for (let i = 0; i < n; i++)
        if (kind[i] === 2) this.bus.writeWords('hyp', addrs[i]!, next(i), 2);
    }
    sync(cfgis);
    this.installs += n;
  }

  /** Whether the shadow has the L2 table for `sid`'s span (a linear table has every STE). */
  hasSpan(sid: number): boolean {
    return !this.twoLevel || this.l2.has(sid >>> LINUX_SPLIT);
  }

  /** Read the shadow STE of `sid` (for tests and invariant checks); all zero if its L2 does not exist. */
  read(sid: number, out: Uint32Array): void {
    out.fill(0);
    if (this.twoLevel && !this.l2.has(sid >>> LINUX_SPLIT)) return;
    this.bus.readWords('hyp', this.steAddr(sid).addr, out, STE_WORDS);
  }
}
