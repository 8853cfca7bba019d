/**
 * Configuration-cache and IOTLB invalidation (reference §2.5, §3.2, §4.3, §4.4, §7).
 *
 * Pattern of every test: translate (the caches fill), change memory (an STE, a CD, an L1
 * descriptor or a leaf descriptor), translate again — the stale cached copy is still used —
 * then submit the invalidation command and CMD_SYNC: what the command covers now sees the
 * change, what it does not cover is still stale. The model invalidates exactly what §4.3/§4.4
 * require (tlb.ts: "exact-minimal"), so "still stale" is asserted as well as "gone".
 */
import { describe, expect, it } from 'vitest';
import {
  OP,
  EV,
  LAYOUT,
  Pt39,
  Rig,
  cmd,
  s1Leaf,
  s2Leaf,
  type Access,
  type CdFields,
  type SteFields,
} from './rig.ts';
import type { TxnResult } from '../../../../hw/smmu/smmu.ts';

// ---- the shared world ---------------------------------------------------------------------------

/** Input addresses. */
const P = 0x1000_0000; // a page
const Q = 0x1000_1000; // the next page
const G = 0x1000_2000; // a global page (nG=0) in A's tables
const BLK = 0x2000_0000; // a 2 MB block
const IPA0 = 0x8000_0000; // stage-2 pages
const IPA1 = 0x8000_1000;
const IPA2 = 0x8000_2000;

/** Where the new mappings point after a memory change: old PA + MOVED. */
const MOVED = 0x0100_0000;

const S1_STE = (cd: number, vmid = 0): SteFields => ({
  V: 1,
  Config: 0b101,
  S1ContextPtr: cd,
  S1CIR: 1,
  S1COR: 1,
  S1CSH: 3,
  S2VMID: vmid,
});
const CD = (ttb: number, asid: number, extra: CdFields = {}): CdFields => ({
  T0SZ: 25,
  TG0: 0,
  IR0: 1,
  OR0: 1,
  SH0: 3,
  EPD1: 1,
  V: 1,
  IPS: 5,
  AA64: 1,
  R: 1,
  A: 1,
  ASID: asid,
  TTB0: ttb,
  ...extra,
});
const S2_FIELDS = (vmid: number, ttb: number): SteFields => ({
  S2VMID: vmid,
  S2T0SZ: 25,
  S2SL0: 1,
  S2TG: 0,
  S2PS: 5,
  S2AA64: 1,
  S2R: 1,
  S2IR0: 1,
  S2OR0: 1,
  S2SH0: 3,
  S2TTB: ttb,
});

/** Stream IDs of the world. */
const S = {
  /** stage 1, ASID 1, VMID 0 */
  A: 1,
  /** stage 1, ASID 2, VMID 0 (other tables) */
  B: 2,
  /** stage 1, ASID 1, VMID 7 (other tables) */
  C: 3,
  /** stage 2 only, VMID 5 */
  D: 4,
  /** nested, VMID 5 (same stage 2 as D), ASID 3 */
  E: 5,
  /** stage 1, STRW=EL2 */
  F: 6,
} as const;

interface World {
  r: Rig;
  pt: Record<'A' | 'B' | 'C' | 'D' | 'E' | 'F', Pt39>;
  /** the PA each (stream, address) translates to initially */
  pa: (sid: number, addr: number) => number;
}

/**
 * Build the world:
 *   A: P→0x7000_0000, Q→0x7000_1000 (nG), G→0x7000_2000 (global), BLK→0x7020_0000 (2 MB block, nG),
 *      plus pages 0x1001_0000..0x1001_5000 → 0x7001_0000.. (nG)
 *   B: P→0x7100_0000, G→0x7100_2000 (nG)
 *   C: P→0x7200_0000
 *   D (stage 2, VMID 5): IPA 0x4000_0000..0x7FFF_FFFF identity (1 GB block), IPA0/1/2 → 0x7300_0000/1000/2000
 *   E (nested over D): P → IPA0, Q → IPA1
 *   F (EL2): P→0x7500_0000, Q→0x7500_1000
 */
function world(opts: { cr2?: number; fAsid?: number } = {}): World {
  const r = new Rig(opts.cr2 !== undefined ? { cr2: opts.cr2 } : {});
  const pool = { next: 0x4800_0000 };
  const mk = (root: number) => new Pt39(r.m.mem, root, pool);
  const pt = {
    A: mk(0x4400_0000),
    B: mk(0x4410_0000),
    C: mk(0x4420_0000),
    D: mk(0x4600_0000),
    E: mk(0x4430_0000),
    F: mk(0x4440_0000),
  };
  const init = new Map<string, number>();
  const s1 = (sid: number, t: Pt39, va: number, pa: number, level = 3, ng = true) => {
    t.set(va, level, s1Leaf(pa, level, { ng }));
    init.set(`${sid}:${va}`, pa);
  };
  s1(S.A, pt.A, P, 0x7000_0000);
  s1(S.A, pt.A, Q, 0x7000_1000);
  s1(S.A, pt.A, G, 0x7000_2000, 3, false);
  s1(S.A, pt.A, BLK, 0x7020_0000, 2);
  for (let i = 0; i < 6; i++) s1(S.A, pt.A, 0x1001_0000 + i * 0x1000, 0x7001_0000 + i * 0x1000);
  s1(S.B, pt.B, P, 0x7100_0000);
  s1(S.B, pt.B, G, 0x7100_2000);
  s1(S.C, pt.C, P, 0x7200_0000);
  pt.D.set(0x4000_0000, 1, s2Leaf(0x4000_0000, 1));
  for (const [ipa, pa] of [
    [IPA0, 0x7300_0000],
    [IPA1, 0x7300_1000],
    [IPA2, 0x7300_2000],
  ] as const) {
    pt.D.set(ipa, 3, s2Leaf(pa, 3));
    init.set(`${S.D}:${ipa}`, pa);
  }
  pt.E.set(P, 3, s1Leaf(IPA0, 3));
  pt.E.set(Q, 3, s1Leaf(IPA1, 3));
  pt.E.set(IPA0, 3, s1Leaf(IPA0, 3)); // VA = IPA: a combined entry whose input address equals the IPA
  init.set(`${S.E}:${P}`, 0x7300_0000);
  init.set(`${S.E}:${Q}`, 0x7300_1000);
  init.set(`${S.E}:${IPA0}`, 0x7300_0000);
  s1(S.F, pt.F, P, 0x7500_0000);
  s1(S.F, pt.F, Q, 0x7500_1000);

  r.cd(0x4700_0000, CD(pt.A.root, 1));
  r.cd(0x4700_1000, CD(pt.B.root, 2));
  r.cd(0x4700_2000, CD(pt.C.root, 1));
  r.cd(0x4700_3000, CD(pt.E.root, 3));
  r.cd(0x4700_4000, CD(pt.F.root, opts.fAsid ?? 0));
  r.ste(S.A, S1_STE(0x4700_0000));
  r.ste(S.B, S1_STE(0x4700_1000));
  r.ste(S.C, S1_STE(0x4700_2000, 7));
  r.ste(S.D, { V: 1, Config: 0b110, ...S2_FIELDS(5, pt.D.root) });
  r.ste(S.E, {
    V: 1,
    Config: 0b111,
    S1ContextPtr: 0x4700_3000,
    S1CIR: 1,
    S1COR: 1,
    S1CSH: 3,
    ...S2_FIELDS(5, pt.D.root),
  });
  r.ste(S.F, { ...S1_STE(0x4700_4000), STRW: 0b10 });
  return {
    r,
    pt,
    pa: (sid, addr) => {
      const v = init.get(`${sid}:${addr}`);
      if (v === undefined) throw new Error(`no initial mapping for ${sid}:${addr.toString(16)}`);
      return v;
    },
  };
}

function expectPa(res: TxnResult, pa: number, what: string): void {
  expect(res.reason, what).toBe('');
  expect(res.ok, what).toBe(true);
  expect(res.pa.toString(16), what).toBe(pa.toString(16));
}

/**
 * A set of cached translations whose leaves all move by MOVED in memory. `check(stale)` then
 * asserts, per translation, the old PA (still cached) or the new one (invalidated).
 */
class Probe {
  private readonly items: Array<{
    name: string;
    sid: number;
    addr: number;
    pa: number;
    a: Access;
  }> = [];
  constructor(private readonly w: World) {}

  /** Prime (translate twice: the second is an IOTLB hit) and remember. */
  add(name: string, sid: number, addr: number, a: Access = {}): this {
    const pa = this.w.pa(sid, addr);
    expectPa(this.w.r.txn(sid, addr, a), pa, `${name}: first translation`);
    const again = this.w.r.txn(sid, addr, a);
    expectPa(again, pa, `${name}: second translation`);
    expect(again.tlbHit, `${name}: the second translation hits the IOTLB`).toBe(true);
    this.items.push({ name, sid, addr, pa, a });
    return this;
  }

  /** Move every remembered leaf in memory (stage 2 leaves for D/E entries). */
  moveAll(): this {
    const { pt } = this.w;
    for (const it of this.items) {
      const moved = it.pa + MOVED;
      if (it.sid === S.D || it.sid === S.E) {
        const ipa = it.sid === S.D ? it.addr : it.addr === Q ? IPA1 : IPA0;
        pt.D.rewrite(ipa, s2Leaf(moved, 3));
      } else {
        const t = pt[(Object.keys(S) as Array<keyof typeof S>).find((k) => S[k] === it.sid)!];
        const level = it.addr === BLK ? 2 : 3;
        t.rewrite(it.addr, s1Leaf(moved, level, { ng: it.addr !== G || it.sid !== S.A }));
      }
    }
    return this;
  }

  /** Assert the outcome of each remembered translation: names in `gone` see the new PA, the rest the old one. */
  expect(gone: readonly string[]): void {
    for (const n of gone)
      if (!this.items.some((i) => i.name === n)) throw new Error(`unknown probe ${n}`);
    for (const it of this.items) {
      const isGone = gone.includes(it.name);
      const res = this.w.r.txn(it.sid, it.addr, it.a);
      expectPa(
        res,
        isGone ? it.pa + MOVED : it.pa,
        `${it.name}: ${isGone ? 'invalidated: the new mapping' : 'not covered: still the stale cached PA'}`,
      );
    }
  }
}

/** The standard probe set over the world. */
function standardProbe(w: World): Probe {
  return (
    new Probe(w)
      .add('A:P', S.A, P)
      .add('A:Q', S.A, Q)
      .add('A:G(global)', S.A, G)
      .add('B:P', S.B, P)
      .add('C:P(vmid7)', S.C, P)
      .add('D:IPA0(s2)', S.D, IPA0)
      .add('E:P(nested)', S.E, P)
      .add('E:IPA0(nested, VA=IPA)', S.E, IPA0)
      // privileged: see the EL2 permission note in the final report (unprivileged EL2 accesses fault in this model)
      .add('F:P(el2)', S.F, P, { priv: true })
      .add('F:Q(el2)', S.F, Q, { priv: true })
  );
}

const ALL = [
  'A:P',
  'A:Q',
  'A:G(global)',
  'B:P',
  'C:P(vmid7)',
  'D:IPA0(s2)',
  'E:P(nested)',
  'E:IPA0(nested, VA=IPA)',
  'F:P(el2)',
  'F:Q(el2)',
] as const;

/** Every probe is stale after the memory change and before any command. */
function staleBefore(p: Probe): void {
  p.moveAll();
  p.expect([]);
}

// ---- configuration invalidation (§4.3) ----------------------------------------------------------

describe('configuration cache: CFGI_* (reference §4.3, §2.5, §3.2)', () => {
  it('CFGI_STE (Leaf=1): the changed STE is used only after CFGI_STE + CMD_SYNC for that StreamID', () => {
    const w = world();
    const { r } = w;
    expectPa(r.txn(S.A, P), 0x7000_0000, 'A before');
    expectPa(r.txn(S.B, P), 0x7100_0000, 'B before');
    // both STEs become bypass (Config=0b100) in memory
    r.ste(S.A, { V: 1, Config: 0b100 });
    r.ste(S.B, { V: 1, Config: 0b100 });
    expectPa(r.txn(S.A, P), 0x7000_0000, 'A: stale STE still used');
    expectPa(r.txn(S.B, P), 0x7100_0000, 'B: stale STE still used');
    r.cmds(cmd(OP.CFGI_STE, { sid: S.A, leaf: 1 }));
    expectPa(r.txn(S.A, P), P, 'A: bypass after CFGI_STE(A)');
    expectPa(r.txn(S.B, P), 0x7100_0000, 'B: another StreamID, still the cached STE');
    r.cmds(cmd(OP.CFGI_STE, { sid: S.B, leaf: 1 }));
    expectPa(r.txn(S.B, P), P, 'B: bypass after CFGI_STE(B)');
  });

  it('CFGI_STE also invalidates the CDs cached through that StreamID', () => {
    const w = world();
    const { r } = w;
    expectPa(r.txn(S.A, P), 0x7000_0000, 'A before');
    r.cd(0x4700_0000, CD(w.pt.A.root, 1, { V: 0 }));
    expectPa(r.txn(S.A, P), 0x7000_0000, 'stale CD still used');
    expect(r.eventCount()).toBe(0);
    r.cmds(cmd(OP.CFGI_STE, { sid: S.A, leaf: 1 }));
    const res = r.txn(S.A, P);
    expect(res.ok).toBe(false);
    expect(res.event).toBe(EV.C_BAD_CD);
    expect(r.lastEvent().type).toBe(EV.C_BAD_CD);
  });

  it('CFGI_STE does not touch the IOTLB: a leaf change needs a TLBI', () => {
    const w = world();
    const p = new Probe(w).add('A:P', S.A, P);
    p.moveAll();
    w.r.cmds(
      cmd(OP.CFGI_STE, { sid: S.A, leaf: 1 }),
      cmd(OP.CFGI_STE_RANGE, { sid: 0, range: 31 }),
    );
    p.expect([]);
  });

  it('CFGI_STE_RANGE(SID 5, Range=1) covers SIDs 4..7 only; CFGI_ALL (Range=31) covers every SID', () => {
    const r = new Rig();
    const pool = { next: 0x4800_0000 };
    const pt = new Pt39(r.m.mem, 0x4400_0000, pool);
    pt.set(P, 3, s1Leaf(0x7000_0000, 3));
    r.cd(0x4700_0000, CD(pt.root, 1));
    const sids = [3, 4, 5, 6, 7, 8];
    for (const s of sids) r.ste(s, S1_STE(0x4700_0000));
    for (const s of sids) expectPa(r.txn(s, P), 0x7000_0000, `SID ${s} before`);
    for (const s of sids) r.ste(s, { V: 1, Config: 0b100 });
    for (const s of sids) expectPa(r.txn(s, P), 0x7000_0000, `SID ${s}: stale`);
    // Start = 5 & ~(2^(1+1) − 1) = 4; SIDs 4..4+4−1 = 7
    r.cmds(cmd(OP.CFGI_STE_RANGE, { sid: 5, range: 1 }));
    for (const s of sids)
      expectPa(
        r.txn(s, P),
        s >= 4 && s <= 7 ? P : 0x7000_0000,
        `SID ${s} after CFGI_STE_RANGE(5, 1)`,
      );
    // Range=0: 2 SIDs, Start = 8 & ~1 = 8 → SIDs 8, 9
    r.cmds(cmd(OP.CFGI_STE_RANGE, { sid: 9, range: 0 }));
    expectPa(r.txn(8, P), P, 'SID 8 after CFGI_STE_RANGE(9, 0)');
    expectPa(r.txn(3, P), 0x7000_0000, 'SID 3 still stale');
    r.cmds(cmd(OP.CFGI_STE_RANGE, { sid: 0, range: 31 }));
    expectPa(r.txn(3, P), P, 'SID 3 after CFGI_ALL');
  });

  it('CFGI_ALL also drops every cached CD', () => {
    const w = world();
    const { r } = w;
    expectPa(r.txn(S.A, P), 0x7000_0000, 'A before');
    expectPa(r.txn(S.B, P), 0x7100_0000, 'B before');
    r.cd(0x4700_0000, CD(w.pt.A.root, 1, { V: 0 }));
    r.cd(0x4700_1000, CD(w.pt.B.root, 2, { V: 0 }));
    expectPa(r.txn(S.A, P), 0x7000_0000, 'A stale');
    r.cmds(cmd(OP.CFGI_STE_RANGE, { sid: 0, range: 31 }));
    expect(r.txn(S.A, P).event).toBe(EV.C_BAD_CD);
    expect(r.txn(S.B, P).event).toBe(EV.C_BAD_CD);
  });

  /** 2-level stream table (LOG2SIZE=8, SPLIT=6: 4 L1STDs): SID 65 = L1STD 1, L2 index 1; the L1STD is moved from L2A to L2B. */
  function twoLevel(): Rig {
    const r = new Rig({ split: 6 });
    const pool = { next: 0x4800_0000 };
    const pt = new Pt39(r.m.mem, 0x4400_0000, pool);
    pt.set(P, 3, s1Leaf(0x7000_0000, 3));
    r.cd(0x4700_0000, CD(pt.root, 1));
    const L2A = 0x4011_0000;
    const L2B = 0x4012_0000;
    // L1STD: Span[4:0] = 7 (2^(7−1) = 64 STEs), L2Ptr[55:6]
    r.w64(LAYOUT.STRTAB + 8, BigInt(L2A) | 7n);
    r.steAt(L2A + 64, S1_STE(0x4700_0000));
    r.steAt(L2B + 64, { V: 1, Config: 0b100 });
    expectPa(r.txn(65, P), 0x7000_0000, 'through L2A');
    r.w64(LAYOUT.STRTAB + 8, BigInt(L2B) | 7n);
    expectPa(r.txn(65, P), 0x7000_0000, 'stale STE and L1STD');
    r.cmds(cmd(OP.CFGI_STE, { sid: 65, leaf: 1 }));
    // Leaf=1 need not drop the L1STD (§2.1, §4.3): the model keeps it and refetches the STE from L2A
    expectPa(
      r.txn(65, P),
      0x7000_0000,
      'after CFGI_STE(Leaf=1): the cached L1STD still points at L2A',
    );
    return r;
  }

  it('CFGI_STE with Leaf=0 also drops the cached L1STD of a 2-level stream table', () => {
    const r = twoLevel();
    r.cmds(cmd(OP.CFGI_STE, { sid: 65, leaf: 0 }));
    expectPa(r.txn(65, P), P, 'after CFGI_STE(Leaf=0): the new L1STD → L2B → bypass STE');
  });

  it('CFGI_STE_RANGE also drops the L1STDs of the range', () => {
    const r = twoLevel();
    r.cmds(cmd(OP.CFGI_STE_RANGE, { sid: 1, range: 0 })); // SIDs 0, 1: L1STD 0 only
    expectPa(r.txn(65, P), 0x7000_0000, 'a range in L1STD 0 leaves L1STD 1');
    r.cmds(cmd(OP.CFGI_STE_RANGE, { sid: 65, range: 0 })); // SIDs 64, 65
    expectPa(r.txn(65, P), P, 'after CFGI_STE_RANGE(65, 0): the new L1STD → L2B → bypass STE');
  });

  it('CFGI_CD(SID, SSID) drops one CD; CFGI_CD_ALL(SID) drops all CDs of the StreamID', () => {
    const r = new Rig();
    const pool = { next: 0x4800_0000 };
    const pt = new Pt39(r.m.mem, 0x4400_0000, pool);
    pt.set(P, 3, s1Leaf(0x7000_0000, 3));
    // linear CD table of 4 CDs (S1CDMax=2) at 0x4700_0000, aligned to 4×64 bytes; CD n at +64n
    const base = 0x4700_0000;
    for (let n = 0; n < 4; n++) r.cd(base + 64 * n, CD(pt.root, 10 + n));
    r.ste(9, { ...S1_STE(base), S1CDMax: 2, S1Fmt: 0, S1DSS: 0 });
    for (const ssid of [1, 2, 3])
      expectPa(r.txn(9, P, {}, ssid), 0x7000_0000, `SSID ${ssid} before`);
    for (const ssid of [1, 2, 3]) r.cd(base + 64 * ssid, CD(pt.root, 10 + ssid, { V: 0 }));
    for (const ssid of [1, 2, 3])
      expectPa(r.txn(9, P, {}, ssid), 0x7000_0000, `SSID ${ssid}: stale CD`);
    r.cmds(cmd(OP.CFGI_CD, { sid: 9, ssid: 2, leaf: 1 }));
    expect(r.txn(9, P, {}, 2).event, 'SSID 2 after CFGI_CD(9, 2)').toBe(EV.C_BAD_CD);
    expectPa(r.txn(9, P, {}, 1), 0x7000_0000, 'SSID 1: still the cached CD');
    expectPa(r.txn(9, P, {}, 3), 0x7000_0000, 'SSID 3: still the cached CD');
    r.cmds(cmd(OP.CFGI_CD_ALL, { sid: 9 }));
    expect(r.txn(9, P, {}, 1).event, 'SSID 1 after CFGI_CD_ALL').toBe(EV.C_BAD_CD);
    expect(r.txn(9, P, {}, 3).event, 'SSID 3 after CFGI_CD_ALL').toBe(EV.C_BAD_CD);
    const ev = r.lastEvent();
    expect([ev.type, ev.sid, ev.ssv, ev.ssid]).toEqual([EV.C_BAD_CD, 9, 1, 3]);
  });

  it('CFGI_CD for the single CD of an S1CDMax=0 STE is CD index 0', () => {
    const w = world();
    const { r } = w;
    expectPa(r.txn(S.A, P), 0x7000_0000, 'before');
    r.cd(0x4700_0000, CD(w.pt.A.root, 1, { V: 0 }));
    r.cmds(cmd(OP.CFGI_CD, { sid: S.B, ssid: 0, leaf: 1 }));
    expectPa(r.txn(S.A, P), 0x7000_0000, 'CFGI_CD of another StreamID: still stale');
    r.cmds(cmd(OP.CFGI_CD, { sid: S.A, ssid: 0, leaf: 1 }));
    expect(r.txn(S.A, P).event).toBe(EV.C_BAD_CD);
  });

  it('CFGI_CD_ALL drops the cached L1CDs of a 2-level CD table', () => {
    const r = new Rig();
    const pool = { next: 0x4800_0000 };
    const pt = new Pt39(r.m.mem, 0x4400_0000, pool);
    pt.set(P, 3, s1Leaf(0x7000_0000, 3));
    // S1Fmt=1 (4 KB leaves of 64 CDs), S1CDMax=7: L1 index = SSID[6:6], L2 index = SSID[5:0]
    const l1 = 0x4700_0000;
    const l2a = 0x4701_0000;
    const l2b = 0x4702_0000;
    r.w64(l1 + 8, BigInt(l2a) | 1n); // L1CD[1]: V=1, L2Ptr
    r.cd(l2a + 64 * 1, CD(pt.root, 65));
    r.cd(l2b + 64 * 1, CD(pt.root, 65, { V: 0 }));
    r.ste(9, { ...S1_STE(l1), S1CDMax: 7, S1Fmt: 1 });
    expectPa(r.txn(9, P, {}, 65), 0x7000_0000, 'SSID 65 through L1CD[1] → L2A');
    r.w64(l1 + 8, BigInt(l2b) | 1n);
    expectPa(r.txn(9, P, {}, 65), 0x7000_0000, 'stale');
    r.cmds(cmd(OP.CFGI_CD_ALL, { sid: 9 }));
    expect(r.txn(9, P, {}, 65).event, 'the new L1CD → L2B → CD with V=0').toBe(EV.C_BAD_CD);
  });
});

// ---- TLB invalidation (§4.4) -------------------------------------------------------------------

describe('IOTLB: TLBI_* + CMD_SYNC (reference §4.4)', () => {
  it('before any command every cached translation is stale after the memory change', () => {
    staleBefore(standardProbe(world()));
  });

  it('TLBI_NH_ALL(VMID 0): every NS-EL1 stage-1 entry of VMID 0, global ones included; not VMID 7, stage 2, nested VMID 5 or EL2', () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_NH_ALL, { vmid: 0 }));
    p.expect(['A:P', 'A:Q', 'A:G(global)', 'B:P']);
  });

  it('TLBI_NH_ALL(VMID 5) removes the combined stage 1+2 entries of VMID 5 but not its stage-2 entries', () => {
    const w = world();
    const { r } = w;
    for (const [sid, va, pa] of [
      [S.E, P, 0x7300_0000],
      [S.E, Q, 0x7300_1000],
      [S.A, P, 0x7000_0000],
    ] as const) {
      expectPa(r.txn(sid, va), pa, 'prime');
      expect(r.txn(sid, va).tlbHit).toBe(true);
    }
    // E:P's stage-1 leaf now points at IPA2 (→ 0x7300_2000); the stage-2 leaf of IPA1 moves; A:P moves
    w.pt.E.rewrite(P, s1Leaf(IPA2, 3));
    w.pt.D.rewrite(IPA1, s2Leaf(0x7300_1000 + MOVED, 3));
    w.pt.A.rewrite(P, s1Leaf(0x7000_0000 + MOVED, 3));
    expectPa(r.txn(S.E, P), 0x7300_0000, 'E:P stale');
    expectPa(r.txn(S.E, Q), 0x7300_1000, 'E:Q stale');
    expectPa(r.txn(S.A, P), 0x7000_0000, 'A:P stale');
    r.cmds(cmd(OP.TLBI_NH_ALL, { vmid: 5 }));
    expectPa(
      r.txn(S.E, P),
      0x7300_2000,
      'E:P: the combined entry is gone, stage 1 is walked again',
    );
    expectPa(
      r.txn(S.E, Q),
      0x7300_1000,
      'E:Q: stage 1 walked again, but the stage-2 entry for IPA1 is still cached',
    );
    expectPa(r.txn(S.A, P), 0x7000_0000, 'A:P: VMID 0, not covered');
  });

  it('TLBI_NH_ASID(VMID 0, ASID 1): non-global entries of ASID 1 only', () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_NH_ASID, { vmid: 0, asid: 1 }));
    p.expect(['A:P', 'A:Q']);
  });

  it('TLBI_NH_VA(VMID 0, ASID 1, P): that page for ASID 1 only', () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_NH_VA, { vmid: 0, asid: 1, addr: BigInt(P), leaf: 1 }));
    p.expect(['A:P']);
  });

  it('TLBI_NH_VA(VMID 0, ASID 2, G) also removes the global entry for G, whatever ASID inserted it', () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_NH_VA, { vmid: 0, asid: 2, addr: BigInt(G), leaf: 1 }));
    p.expect(['A:G(global)']);
  });

  it('TLBI_NH_VAA(VMID 0, P): that page for every ASID of VMID 0', () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_NH_VAA, { vmid: 0, addr: BigInt(P), leaf: 1 }));
    p.expect(['A:P', 'B:P']);
  });

  it('TLBI_NH_VAA(VMID 7, P) reaches the VMID-7 stream only', () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_NH_VAA, { vmid: 7, addr: BigInt(P), leaf: 1 }));
    p.expect(['C:P(vmid7)']);
  });

  it("TLBI_EL2_ALL: the EL2 stream's entries only", () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_EL2_ALL));
    p.expect(['F:P(el2)', 'F:Q(el2)']);
  });

  it('TLBI_EL2_VA (E2H=0): that EL2 page, any ASID', () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_EL2_VA, { asid: 0x55, addr: BigInt(P), leaf: 1 }));
    p.expect(['F:P(el2)']);
  });

  it('TLBI_EL2_VAA (E2H=0): that EL2 page', () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_EL2_VAA, { addr: BigInt(Q), leaf: 1 }));
    p.expect(['F:Q(el2)']);
  });

  it('TLBI_EL2_ASID with CR2.E2H=1: the EL2-E2H entries of that ASID', () => {
    const w = world({ cr2: 1, fAsid: 4 });
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_EL2_ASID, { asid: 5 }));
    p.expect([]);
    w.r.cmds(cmd(OP.TLBI_NH_ALL, { vmid: 0 }), cmd(OP.TLBI_NSNH_ALL));
    p.expect([
      'A:P',
      'A:Q',
      'A:G(global)',
      'B:P',
      'C:P(vmid7)',
      'D:IPA0(s2)',
      'E:P(nested)',
      'E:IPA0(nested, VA=IPA)',
    ]);
    w.r.cmds(cmd(OP.TLBI_EL2_ASID, { asid: 4 }));
    p.expect([...ALL]);
  });

  it('TLBI_EL2_VA with CR2.E2H=1 matches the ASID', () => {
    const w = world({ cr2: 1, fAsid: 4 });
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_EL2_VA, { asid: 5, addr: BigInt(P), leaf: 1 }));
    p.expect([]);
    w.r.cmds(cmd(OP.TLBI_EL2_VA, { asid: 4, addr: BigInt(P), leaf: 1 }));
    p.expect(['F:P(el2)']);
  });

  it('TLBI_S12_VMALL(VMID 5): stage-2 and nested entries of VMID 5', () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_S12_VMALL, { vmid: 5 }));
    p.expect(['D:IPA0(s2)', 'E:P(nested)', 'E:IPA0(nested, VA=IPA)']);
  });

  it('TLBI_S12_VMALL(VMID 0): the stage-1 entries of VMID 0', () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_S12_VMALL, { vmid: 0 }));
    p.expect(['A:P', 'A:Q', 'A:G(global)', 'B:P']);
  });

  it('TLBI_S2_IPA(VMID 5, IPA0) removes the stage-2 entry but NOT the combined stage 1+2 entry; NH_VAA then does', () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_S2_IPA, { vmid: 5, addr: BigInt(IPA0), leaf: 1 }));
    p.expect(['D:IPA0(s2)']);
    // Linux's S2_VMID_S1_CLEAR: a stage-1 invalidation of the VMID completes the job
    w.r.cmds(cmd(OP.TLBI_NH_VAA, { vmid: 5, addr: BigInt(P), leaf: 1 }));
    p.expect(['D:IPA0(s2)', 'E:P(nested)']);
    w.r.cmds(cmd(OP.TLBI_NH_ALL, { vmid: 5 }));
    p.expect(['D:IPA0(s2)', 'E:P(nested)', 'E:IPA0(nested, VA=IPA)']);
  });

  it('TLBI_S2_IPA with another VMID or another IPA leaves the stage-2 entry', () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(
      cmd(OP.TLBI_S2_IPA, { vmid: 6, addr: BigInt(IPA0), leaf: 1 }),
      cmd(OP.TLBI_S2_IPA, { vmid: 5, addr: BigInt(IPA1), leaf: 1 }),
    );
    p.expect([]);
  });

  it('TLBI_NSNH_ALL: every non-EL2 entry, all VMIDs and ASIDs, all stages', () => {
    const w = world();
    const p = standardProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_NSNH_ALL));
    p.expect([
      'A:P',
      'A:Q',
      'A:G(global)',
      'B:P',
      'C:P(vmid7)',
      'D:IPA0(s2)',
      'E:P(nested)',
      'E:IPA0(nested, VA=IPA)',
    ]);
  });
});

describe('IOTLB: range invalidation, TG/NUM/SCALE/TTL (reference §4.4 "Range invalidation")', () => {
  /** pages 0x1001_0000 + n·0x1000, n = 0..5, of stream A */
  const R = (n: number) => 0x1001_0000 + n * 0x1000;
  const rangeProbe = (w: World): Probe => {
    const p = new Probe(w);
    for (let n = 0; n < 6; n++) p.add(`R${n}`, S.A, R(n));
    return p.add('A:P', S.A, P).add('A:BLK', S.A, BLK);
  };

  it('TG=4KB NUM=3 SCALE=0 TTL=3 at R1: (3+1)·2^0·4 KB = 4 pages, R1..R4', () => {
    const w = world();
    const p = rangeProbe(w);
    staleBefore(p);
    w.r.cmds(
      cmd(OP.TLBI_NH_VA, {
        vmid: 0,
        asid: 1,
        addr: BigInt(R(1)),
        tg: 1,
        num: 3,
        scale: 0,
        ttl: 3,
        leaf: 1,
      }),
    );
    p.expect(['R1', 'R2', 'R3', 'R4']);
  });

  it('TG=4KB NUM=1 SCALE=1 TTL=3 at R0: (1+1)·2^1·4 KB = 4 pages, R0..R3', () => {
    const w = world();
    const p = rangeProbe(w);
    staleBefore(p);
    w.r.cmds(
      cmd(OP.TLBI_NH_VAA, {
        vmid: 0,
        addr: BigInt(R(0)),
        tg: 1,
        num: 1,
        scale: 1,
        ttl: 3,
        leaf: 1,
      }),
    );
    p.expect(['R0', 'R1', 'R2', 'R3']);
  });

  it('TTL selects the leaf level: over [0x1000_0000, 0x3000_0000) TTL=2 hits the 2 MB block, TTL=3 the pages', () => {
    // (NUM+1)·2^SCALE·4 KB = 2·2^16·4 KB = 0x2000_0000 bytes
    const range = { vmid: 0, asid: 1, addr: 0x1000_0000n, tg: 1, num: 1, scale: 16, leaf: 1 };
    const w = world();
    const p = rangeProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_NH_VA, { ...range, ttl: 2 }));
    p.expect(['A:BLK']);
    w.r.cmds(cmd(OP.TLBI_NH_VA, { ...range, ttl: 3 }));
    p.expect(['A:BLK', 'A:P', 'R0', 'R1', 'R2', 'R3', 'R4', 'R5']);
  });

  it('TTL=0 (any level) with a range covers pages and blocks', () => {
    const w = world();
    const p = rangeProbe(w);
    staleBefore(p);
    w.r.cmds(
      cmd(OP.TLBI_NH_VA, {
        vmid: 0,
        asid: 1,
        addr: 0x1000_0000n,
        tg: 1,
        num: 1,
        scale: 16,
        ttl: 0,
        leaf: 1,
      }),
    );
    p.expect(['A:BLK', 'A:P', 'R0', 'R1', 'R2', 'R3', 'R4', 'R5']);
  });

  it('TG selects the granule: a 64 KB-granule range does not hit entries inserted with the 4 KB granule', () => {
    const w = world();
    const p = rangeProbe(w);
    staleBefore(p);
    // TG=3 (64 KB), NUM=0, SCALE=0, TTL=3: 64 KB from R0, covering R0..R5
    w.r.cmds(
      cmd(OP.TLBI_NH_VA, {
        vmid: 0,
        asid: 1,
        addr: BigInt(R(0)),
        tg: 3,
        num: 0,
        scale: 0,
        ttl: 3,
        leaf: 1,
      }),
    );
    p.expect([]);
    // the same range with TG=1 (4 KB): (15+1)·4 KB = 64 KB
    w.r.cmds(
      cmd(OP.TLBI_NH_VA, {
        vmid: 0,
        asid: 1,
        addr: BigInt(R(0)),
        tg: 1,
        num: 15,
        scale: 0,
        ttl: 3,
        leaf: 1,
      }),
    );
    p.expect(['R0', 'R1', 'R2', 'R3', 'R4', 'R5']);
  });

  it('TG=0 (not a range): any entry containing the address goes, e.g. the 2 MB block from an address inside it', () => {
    const w = world();
    const p = rangeProbe(w);
    staleBefore(p);
    w.r.cmds(cmd(OP.TLBI_NH_VA, { vmid: 0, asid: 1, addr: BigInt(BLK + 0x12_3000), leaf: 1 }));
    p.expect(['A:BLK']);
  });

  it('16 KB granule: TTL=1 is reserved without DS and acts as TTL=0 (any level); TTL=2 leaves a level-3 page', () => {
    // the "s1 16KB T0SZ=28 (IAS 36)" golden walk: VA 0x5_83B4_9ABC, page 0x5_83B4_8000 → 0x4567_C000
    const r = new Rig();
    r.descs([
      [0x4112_1608, 0x4112_4003n],
      [0x4112_7690, 0x4567_cf43n],
    ]);
    r.cd(0x4700_0000, CD(0x4112_0000, 1, { T0SZ: 28, TG0: 2 }));
    r.ste(S.A, S1_STE(0x4700_0000));
    const va = 0x5_83b4_9abc;
    const page = 0x5_83b4_8000;
    expectPa(r.txn(S.A, va), 0x4567_dabc, 'first');
    r.w64(0x4112_7690, 0x4667_cf43n);
    expectPa(r.txn(S.A, va), 0x4567_dabc, 'stale');
    // TG=2 (16 KB), NUM=0, SCALE=0: one 16 KB granule at the page
    r.cmds(
      cmd(OP.TLBI_NH_VA, {
        vmid: 0,
        asid: 1,
        addr: BigInt(page),
        tg: 2,
        num: 0,
        scale: 0,
        ttl: 2,
        leaf: 1,
      }),
    );
    expectPa(r.txn(S.A, va), 0x4567_dabc, 'TTL=2: a level-3 entry stays');
    r.cmds(
      cmd(OP.TLBI_NH_VA, {
        vmid: 0,
        asid: 1,
        addr: BigInt(page),
        tg: 2,
        num: 0,
        scale: 0,
        ttl: 1,
        leaf: 1,
      }),
    );
    expectPa(r.txn(S.A, va), 0x4667_dabc, 'TTL=1 (reserved for 16 KB) acts as any level');
  });

  it('TLBI_S2_IPA with TG=4KB NUM=1 SCALE=0 TTL=3 at IPA0: IPA0 and IPA1, not IPA2', () => {
    const w = world();
    const p = new Probe(w).add('D0', S.D, IPA0).add('D1', S.D, IPA1).add('D2', S.D, IPA2);
    staleBefore(p);
    w.r.cmds(
      cmd(OP.TLBI_S2_IPA, {
        vmid: 5,
        addr: BigInt(IPA0),
        tg: 1,
        num: 1,
        scale: 0,
        ttl: 3,
        leaf: 1,
      }),
    );
    p.expect(['D0', 'D1']);
  });
});

describe('IOTLB tags: ASID, global (nG=0) and VMID (reference §7, §6.2)', () => {
  it('a global entry inserted by ASID 1 is used by a stream with ASID 2 of the same VMID; an nG entry is not', () => {
    const w = world();
    const { r } = w;
    // B maps G itself (nG, → 0x7100_2000); A maps G as global (→ 0x7000_2000)
    expectPa(r.txn(S.B, G), 0x7100_2000, 'B alone: its own table');
    expectPa(r.txn(S.A, G), 0x7000_2000, 'A: an ASID-2 entry is not used for ASID 1');
    const w2 = world();
    expectPa(w2.r.txn(S.A, G), 0x7000_2000, 'A first: a global entry');
    const hit = w2.r.txn(S.B, G);
    expectPa(hit, 0x7000_2000, 'B then hits the global entry');
    expect(hit.tlbHit).toBe(true);
  });

  it('the same ASID in another VMID is a different address space', () => {
    const w = world();
    expectPa(w.r.txn(S.A, P), 0x7000_0000, 'ASID 1 VMID 0');
    const c = w.r.txn(S.C, P);
    expectPa(c, 0x7200_0000, 'ASID 1 VMID 7: its own tables, not the VMID-0 entry');
    expect(c.tlbHit).toBe(false);
  });

  it("stage-2 entries are shared by the streams of one VMID: the nested stream reuses the S2-only stream's entry", () => {
    const w = world();
    expectPa(w.r.txn(S.D, IPA0), 0x7300_0000, 'D fills the stage-2 entry for IPA0');
    // change the stage-2 leaf: E's final stage 2 for IPA0 hits D's stale entry
    w.pt.D.rewrite(IPA0, s2Leaf(0x7300_0000 + MOVED, 3));
    expectPa(w.r.txn(S.E, P), 0x7300_0000, 'E: stage-2 entry of VMID 5 reused');
  });
});

describe('caching:false sees every memory change at once', () => {
  it('STE, CD, stage-1 and stage-2 descriptors, with no command', () => {
    const r = new Rig({ caching: false });
    const pool = { next: 0x4800_0000 };
    const pt = new Pt39(r.m.mem, 0x4400_0000, pool);
    const s2 = new Pt39(r.m.mem, 0x4600_0000, pool);
    const e = new Pt39(r.m.mem, 0x4430_0000, pool);
    pt.set(P, 3, s1Leaf(0x7000_0000, 3));
    s2.set(0x4000_0000, 1, s2Leaf(0x4000_0000, 1));
    s2.set(IPA0, 3, s2Leaf(0x7300_0000, 3));
    e.set(P, 3, s1Leaf(IPA0, 3));
    r.cd(0x4700_0000, CD(pt.root, 1));
    r.cd(0x4700_3000, CD(e.root, 3));
    r.ste(1, S1_STE(0x4700_0000));
    r.ste(5, { V: 1, Config: 0b111, S1ContextPtr: 0x4700_3000, ...S2_FIELDS(5, s2.root) });
    expectPa(r.txn(1, P), 0x7000_0000, 'stage 1');
    expectPa(r.txn(5, P), 0x7300_0000, 'nested');
    expect(r.txn(1, P).tlbHit).toBe(false);
    pt.rewrite(P, s1Leaf(0x7000_0000 + MOVED, 3));
    s2.rewrite(IPA0, s2Leaf(0x7300_0000 + MOVED, 3));
    expectPa(r.txn(1, P), 0x7000_0000 + MOVED, 'stage-1 leaf change seen');
    expectPa(r.txn(5, P), 0x7300_0000 + MOVED, 'stage-2 leaf change seen');
    r.cd(0x4700_0000, CD(pt.root, 1, { V: 0 }));
    expect(r.txn(1, P).event, 'CD change seen').toBe(EV.C_BAD_CD);
    r.ste(1, { V: 1, Config: 0b100 });
    expectPa(r.txn(1, P), P, 'STE change seen');
    expect(r.m.smmu.tlb.size).toBe(0);
  });
});
