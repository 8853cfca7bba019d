/**
 * The Linux kunit "hitless update" test (arm-smmu-v3-test.c) ported as data: for each case an
 * initial entry, a target entry, the expected number of syncs and whether the update is
 * hitless. Expected counts come from the reference table (smmuv3.md §8.5), not from running
 * the writer. Entry values follow §8.4.
 *
 * Upstream case 25 (invs_test) exercises the driver's internal invalidation list, not an STE or
 * CD write, so it has no counterpart here.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  writeEntry,
  steUsed,
  cdUsed,
  steUpdateSafe,
  planEntryUpdate,
  S1DSS,
  ENTRY_WORDS,
  type EntryWriterOps,
} from '../../../host/driver/entry.ts';
import {
  makeAbortSte,
  makeBypassSte,
  makeCdtableSte,
  makeS2Ste,
  makeNestedSte,
  makeS1Cd,
  makeSvaCd,
  makeClearCd,
  S1FMT,
  TCR_WBWA_ISH,
  type HostSmmuFeatures,
  type MasterOpts,
  type CdTableInfo,
  type S2Config,
} from '../../../host/driver/ste-make.ts';
import { toDwords, fromDwords, get } from '../../../hw/bits.ts';
import { STE } from '../../../hw/smmu/ste.ts';
import { CD } from '../../../hw/smmu/cd.ts';

// ---------------------------------------------------------------------------------------------
// The test SMMU and the entries it builds (§8.4)

/** The kunit SMMU: features = STALLS | ATTR_TYPES_OVR. */
const FT: HostSmmuFeatures = { attrTypesOvr: true, stalls: true };
const ATS: MasterOpts = { ats: true };
const STALL: MasterOpts = { stallEnabled: true };
const PLAIN: MasterOpts = {};

/** The test's fake CD table: S1CDMax 0xFF (the 5-bit field keeps 31), 64K-leaf 2-level format. */
const CDTAB: CdTableInfo = { dma: 0xf0f0f0f0f0f0n, s1cdmax: 0xff, s1fmt: S1FMT.L2_64K };
/** A second CD table for the non-hitless case (only the pointer differs). */
const CDTAB_B: CdTableInfo = { ...CDTAB, dma: 0x4b4b4b4b4b4bn };
/** The test's stage-2 configuration (T0SZ=4 etc. are not legal for the hardware; the writer does not care). */
const S2: S2Config = {
  vmid: 0,
  vtcr: { tsz: 4, sl: 3, irgn: 2, orgn: 1, sh: 3, tg: 2, ps: 1 },
  vttbr: 0xdaedbeefdeadbeefn,
};

const cdtable = (s1dss: number, m: MasterOpts, t: CdTableInfo = CDTAB) =>
  makeCdtableSte(FT, m, t, s1dss);
const s2ste = (m: MasterOpts) => makeS2Ste(FT, m, S2);
const nested = (s1dss: number, m: MasterOpts) => makeNestedSte(FT, m, CDTAB, s1dss, S2, ATS);
const abort = () => makeAbortSte();
const bypass = () => makeBypassSte(FT);

/** The test's stage-1 CD: tsz 4, tg 2, ips 1, the fake TTBR and MAIR; walk attributes left 0. */
const s1cd = (asid: number) =>
  makeS1Cd(FT, PLAIN, {
    asid,
    tcr: { tsz: 4, tg: 2, irgn: 0, orgn: 0, sh: 0, ips: 1 },
    ttbr: 0xdaedbeefdeadbeefn,
    mair: 0x0abcdef012345678n,
  });
const SVA_CPU = { parange: 5, mair: 0x000000ff440c0400n, pageShift: 12 };
const svacd = (asid: number) =>
  makeSvaCd(FT, PLAIN, { pgd: 0x4321_5000n, vaBits: 48 }, asid, SVA_CPU);
const svaReleased = (asid: number) => makeSvaCd(FT, PLAIN, null, asid, SVA_CPU);
const zeroCd = () => makeClearCd();

// ---------------------------------------------------------------------------------------------
// The recording harness (§8.1)

type Kind = 'ste' | 'cd';
type Writer = (cur: Uint32Array, target: Uint32Array, ops: EntryWriterOps) => unknown;

interface Run {
  syncs: number;
  invalidEntryWritten: boolean;
  violations: string[];
  final: Uint32Array;
  /** entry snapshots at each sync */
  states: Uint32Array[];
}

const hex = (e: ArrayLike<number>) =>
  toDwords(e)
    .map((d) => '0x' + d.toString(16).padStart(16, '0'))
    .join(' ');

function matchesMasked(a: ArrayLike<number>, b: ArrayLike<number>, m: ArrayLike<number>): boolean {
  for (let i = 0; i < ENTRY_WORDS; i++) if (((a[i]! ^ b[i]!) & m[i]!) !== 0) return false;
  return true;
}

function record(
  kind: Kind,
  init: Uint32Array,
  target: Uint32Array,
  writer: Writer = writeEntry,
): Run {
  const entry = Uint32Array.from(init);
  const used = kind === 'ste' ? steUsed : cdUsed;
  const safe = kind === 'ste' ? steUpdateSafe(init, target) : new Uint32Array(ENTRY_WORDS);
  const run: Run = {
    syncs: 0,
    invalidEntryWritten: false,
    violations: [],
    final: entry,
    states: [],
  };
  const ops: EntryWriterOps = {
    used,
    ...(kind === 'ste' ? { updateSafe: steUpdateSafe } : {}),
    write(q, lo, hi) {
      if (entry[2 * q] !== lo || entry[2 * q + 1] !== hi)
        run.violations.push(`write(${q}) reported before the entry held it`);
    },
    sync() {
      run.syncs++;
      run.states.push(Uint32Array.from(entry));
      if (entry[0] === 0 && entry[1] === 0) {
        run.invalidEntryWritten = true;
        return;
      }
      // every bit the current configuration uses, less the update-safe bits, must be old or new
      const m = used(entry).map((w, i) => (w & ~safe[i]!) >>> 0);
      if (!matchesMasked(entry, init, m) && !matchesMasked(entry, target, m))
        run.violations.push(
          `sync ${run.syncs}: ${hex(entry)} matches neither the initial nor the target entry in its used bits`,
        );
    },
  };
  writer(entry, target, ops);
  return run;
}

// ---------------------------------------------------------------------------------------------
// The cases (§8.5)

interface Case {
  n: number;
  name: string;
  kind: Kind;
  from: () => Uint32Array;
  to: () => Uint32Array;
  syncs: number;
  hitless: boolean;
  /** the table says "both directions" / "each": run the reverse too, with the same count */
  both?: boolean;
}

const CASES: Case[] = [
  {
    n: 1,
    name: 'ste bypass_to_abort',
    kind: 'ste',
    from: bypass,
    to: abort,
    syncs: 2,
    hitless: true,
  },
  {
    n: 2,
    name: 'ste abort_to_bypass',
    kind: 'ste',
    from: abort,
    to: bypass,
    syncs: 2,
    hitless: true,
  },
  {
    n: 3,
    name: 'ste cdtable_to_abort',
    kind: 'ste',
    from: () => cdtable(S1DSS.SSID0, ATS),
    to: abort,
    syncs: 2,
    hitless: true,
  },
  {
    n: 4,
    name: 'ste abort_to_cdtable',
    kind: 'ste',
    from: abort,
    to: () => cdtable(S1DSS.SSID0, ATS),
    syncs: 2,
    hitless: true,
  },
  {
    n: 5,
    name: 'ste cdtable_to_bypass',
    kind: 'ste',
    from: () => cdtable(S1DSS.SSID0, ATS),
    to: bypass,
    syncs: 3,
    hitless: true,
  },
  {
    n: 6,
    name: 'ste bypass_to_cdtable',
    kind: 'ste',
    from: bypass,
    to: () => cdtable(S1DSS.SSID0, ATS),
    syncs: 3,
    hitless: true,
  },
  {
    n: 7,
    name: 'ste cdtable_s1dss_change',
    kind: 'ste',
    from: () => cdtable(S1DSS.SSID0, ATS),
    to: () => cdtable(S1DSS.BYPASS, ATS),
    syncs: 1,
    hitless: true,
    both: true,
  },
  {
    n: 8,
    name: 'ste s1dssbypass_to_stebypass',
    kind: 'ste',
    from: () => cdtable(S1DSS.BYPASS, ATS),
    to: bypass,
    syncs: 2,
    hitless: true,
  },
  {
    n: 9,
    name: 'ste stebypass_to_s1dssbypass',
    kind: 'ste',
    from: bypass,
    to: () => cdtable(S1DSS.BYPASS, ATS),
    syncs: 2,
    hitless: true,
  },
  {
    n: 10,
    name: 'ste s2_to_abort',
    kind: 'ste',
    from: () => s2ste(ATS),
    to: abort,
    syncs: 2,
    hitless: true,
  },
  {
    n: 11,
    name: 'ste abort_to_s2',
    kind: 'ste',
    from: abort,
    to: () => s2ste(ATS),
    syncs: 2,
    hitless: true,
  },
  {
    n: 12,
    name: 'ste s2_to_bypass',
    kind: 'ste',
    from: () => s2ste(ATS),
    to: bypass,
    syncs: 2,
    hitless: true,
  },
  {
    n: 13,
    name: 'ste bypass_to_s2',
    kind: 'ste',
    from: bypass,
    to: () => s2ste(ATS),
    syncs: 2,
    hitless: true,
  },
  {
    n: 14,
    name: 'ste s1_to_s2',
    kind: 'ste',
    from: () => cdtable(S1DSS.SSID0, ATS),
    to: () => s2ste(ATS),
    syncs: 3,
    hitless: true,
  },
  {
    n: 15,
    name: 'ste s2_to_s1',
    kind: 'ste',
    from: () => s2ste(ATS),
    to: () => cdtable(S1DSS.SSID0, ATS),
    syncs: 3,
    hitless: true,
  },
  {
    n: 16,
    name: 'ste non_hitless',
    kind: 'ste',
    from: () => cdtable(S1DSS.SSID0, ATS),
    to: () => cdtable(S1DSS.BYPASS, ATS, CDTAB_B),
    syncs: 3,
    hitless: false,
  },
  {
    n: 17,
    name: 'cd s1_clear',
    kind: 'cd',
    from: zeroCd,
    to: () => s1cd(1997),
    syncs: 2,
    hitless: false,
    both: true,
  },
  {
    n: 18,
    name: 'cd s1_change_asid',
    kind: 'cd',
    from: () => s1cd(778),
    to: () => s1cd(1997),
    syncs: 1,
    hitless: true,
    both: true,
  },
  {
    n: 19,
    name: 'ste s1_to_s2_stall',
    kind: 'ste',
    from: () => cdtable(S1DSS.SSID0, STALL),
    to: () => s2ste(STALL),
    syncs: 3,
    hitless: true,
  },
  {
    n: 20,
    name: 'ste s2_to_s1_stall',
    kind: 'ste',
    from: () => s2ste(STALL),
    to: () => cdtable(S1DSS.SSID0, STALL),
    syncs: 3,
    hitless: true,
  },
  {
    n: 21,
    name: 'ste nested_s1dssbypass_to_s1bypass',
    kind: 'ste',
    from: () => nested(S1DSS.BYPASS, ATS),
    to: () => s2ste(PLAIN),
    syncs: 3,
    hitless: true,
  },
  {
    n: 22,
    name: 'ste nested_s1bypass_to_s1dssbypass',
    kind: 'ste',
    from: () => s2ste(PLAIN),
    to: () => nested(S1DSS.BYPASS, ATS),
    syncs: 2,
    hitless: true,
  },
  {
    n: 23,
    name: 'cd sva_clear',
    kind: 'cd',
    from: zeroCd,
    to: () => svacd(1997),
    syncs: 2,
    hitless: false,
    both: true,
  },
  {
    n: 24,
    name: 'cd sva_release',
    kind: 'cd',
    from: () => svacd(1997),
    to: () => svaReleased(1997),
    syncs: 2,
    hitless: true,
    both: true,
  },
];

interface Directed {
  title: string;
  c: Case;
  from: Uint32Array;
  to: Uint32Array;
}

const DIRECTED: Directed[] = CASES.flatMap((c) => {
  const fwd = { title: `#${c.n} ${c.name}`, c, from: c.from(), to: c.to() };
  return c.both
    ? [fwd, { title: `#${c.n} ${c.name} (reverse)`, c, from: c.to(), to: c.from() }]
    : [fwd];
});

describe('kunit hitless-update cases (smmuv3.md §8.5)', () => {
  it('covers cases 1-24, five of them in both directions', () => {
    expect(CASES.map((c) => c.n)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    expect(DIRECTED).toHaveLength(29);
  });

  for (const d of DIRECTED) {
    it(`${d.title}: ${d.c.syncs} sync(s), ${d.c.hitless ? 'hitless' : 'breaking'}`, () => {
      expect(d.from).not.toEqual(d.to);
      const r = record(d.c.kind, d.from, d.to);
      expect(r.violations).toEqual([]);
      expect(r.invalidEntryWritten).toBe(!d.c.hitless);
      expect(r.syncs).toBe(d.c.syncs);
      expect(hex(r.final)).toBe(hex(d.to));
    });
  }

  it('the builders never set bits their own configuration ignores (Linux WARNs on that)', () => {
    for (const d of DIRECTED) {
      for (const e of [d.from, d.to]) {
        const used = d.c.kind === 'ste' ? steUsed : cdUsed;
        const u = used(e);
        for (let i = 0; i < ENTRY_WORDS; i++)
          expect((e[i]! & ~u[i]!) >>> 0, `${d.title} word ${i}`).toBe(0);
      }
    }
  });
});

describe('entries of §8.4', () => {
  it('cdtable STE: S1CDMax 0xFF keeps 31, 64K-leaf format, pointer [51:6], WBRA/ISH fetches, S1STALLD, EATS, STRW NS-EL1', () => {
    const e = cdtable(S1DSS.SSID0, ATS);
    expect(get(e, STE.S1CDMax)).toBe(31);
    expect(get(e, STE.S1Fmt)).toBe(2);
    expect(get(e, STE.S1ContextPtr) * 64).toBe(0xf0f0f0f0f0c0);
    expect(get(e, STE.Config)).toBe(5);
    expect([get(e, STE.S1DSS), get(e, STE.S1CIR), get(e, STE.S1COR), get(e, STE.S1CSH)]).toEqual([
      2, 1, 1, 3,
    ]);
    expect(get(e, STE.S1STALLD)).toBe(1);
    expect(get(e, STE.EATS)).toBe(1);
    expect(get(e, STE.SHCFG)).toBe(0);
    expect(get(e, STE.STRW)).toBe(0);
    expect(get(cdtable(S1DSS.BYPASS, PLAIN), STE.SHCFG)).toBe(1);
    expect(get(cdtable(S1DSS.SSID0, STALL), STE.S1STALLD)).toBe(0);
    expect(get(makeCdtableSte({ ...FT, e2h: true }, PLAIN, CDTAB, S1DSS.SSID0), STE.STRW)).toBe(2);
  });

  it('S2 STE: VTCR fields, S2AA64, S2PTW, S2R, S2TTB masked to [51:4], SHCFG, EATS; S2S for a stalling master', () => {
    const e = s2ste(ATS);
    const d = toDwords(e);
    expect(d[0]).toBe(0xdn);
    expect(d[1]).toBe((1n << 28n) | (1n << 44n));
    // VTCR at DW2[50:32]: T0SZ 4 | SL0 3<<6 | IR0 2<<8 | OR0 1<<10 | SH0 3<<12 | TG 2<<14 | PS 1<<16
    const vtcr =
      4n | (3n << 6n) | (2n << 8n) | (1n << 10n) | (3n << 12n) | (2n << 14n) | (1n << 16n);
    expect(d[2]).toBe((vtcr << 32n) | (1n << 51n) | (1n << 54n) | (1n << 58n));
    expect(d[3]).toBe(0x000dbeefdeadbee0n);
    expect(get(s2ste(STALL), STE.S2S)).toBe(1);
    expect(get(s2ste(PLAIN), STE.EATS)).toBe(0);
  });

  it('nested STE: Config 7, the S1 DW0/DW1 bits plus MEV, DW2/DW3 of the S2 STE', () => {
    const n = nested(S1DSS.BYPASS, ATS);
    const s1 = cdtable(S1DSS.BYPASS, ATS);
    const s2 = s2ste(ATS);
    expect(get(n, STE.Config)).toBe(7);
    expect(n[0]! & ~0xe).toBe(s1[0]! & ~0xe);
    expect(n[1]).toBe(s1[1]);
    expect(get(n, STE.MEV)).toBe(1);
    expect(Array.from(n.subarray(4))).toEqual(Array.from(s2.subarray(4)));
  });

  it('abort and bypass STEs', () => {
    expect(hex(abort())).toBe(hex(fromDwords([1n, 0n, 0n, 0n, 0n, 0n, 0n, 0n])));
    expect(hex(bypass())).toBe(hex(fromDwords([9n, 1n << 44n, 0n, 0n, 0n, 0n, 0n, 0n])));
    expect(hex(makeBypassSte({ attrTypesOvr: false, stalls: false }))).toBe(
      hex(fromDwords([9n, 0n, 0n, 0n, 0n, 0n, 0n, 0n])),
    );
  });

  it('S1 CD of the test: tsz 4, tg 2, ips 1, ASID, TTB0 [51:4], MAIR in DW3', () => {
    const c = s1cd(1997);
    expect([get(c, CD.T0SZ), get(c, CD.TG0), get(c, CD.IPS), get(c, CD.ASID)]).toEqual([
      4, 2, 1, 1997,
    ]);
    expect([
      get(c, CD.V),
      get(c, CD.EPD1),
      get(c, CD.AA64),
      get(c, CD.R),
      get(c, CD.A),
      get(c, CD.ASET),
      get(c, CD.EPD0),
      get(c, CD.S),
    ]).toEqual([1, 1, 1, 1, 1, 1, 0, 0]);
    const d = toDwords(c);
    expect(d[1]).toBe(0x000dbeefdeadbee0n);
    expect(d[2]).toBe(0n);
    expect(d[3]).toBe(0x0abcdef012345678n);
  });

  it('SVA CD and its released form share the ASID and MAIR; the released one has EPD0, no TTB0, no R/S', () => {
    const a = svacd(1997);
    const r = svaReleased(1997);
    expect([get(a, CD.EPD0), get(a, CD.T0SZ), get(a, CD.ASET), get(a, CD.R)]).toEqual([
      0, 16, 0, 1,
    ]);
    expect([get(r, CD.EPD0), get(r, CD.T0SZ), get(r, CD.R), get(r, CD.S), get(r, CD.V)]).toEqual([
      1, 0, 0, 0, 1,
    ]);
    expect(toDwords(a)[1]).toBe(0x4321_5000n);
    expect(toDwords(r)[1]).toBe(0n);
    expect(toDwords(r)[3]).toBe(toDwords(a)[3]);
    expect(get(r, CD.ASID)).toBe(get(a, CD.ASID));
    const forced = makeSvaCd({ ...FT, stallForce: true }, STALL, null, 5, SVA_CPU);
    expect([get(forced, CD.S), get(forced, CD.R)]).toEqual([1, 1]);
  });
});

describe('the Linux capture (linux-sequence.md §3)', () => {
  // QEMU's SMMU: no STALLS, no ATTR_TYPES_OVR, no ATS
  const QFT: HostSmmuFeatures = { attrTypesOvr: false, stalls: false };
  const qSte = () =>
    makeCdtableSte(QFT, PLAIN, { dma: 0x4806c000n, s1cdmax: 0, s1fmt: S1FMT.LINEAR }, S1DSS.SSID0);
  const qCd = (asid: number, ttbr: bigint) =>
    makeS1Cd(QFT, PLAIN, {
      asid,
      tcr: { tsz: 16, tg: 0, ...TCR_WBWA_ISH, ips: 4 },
      ttbr,
      mair: 0xfffffffff404ff44n,
    });

  it('the S1 STE for SID 8 is 0x000000004806c00b 0x00000000000000d6 0...', () => {
    expect(toDwords(qSte())).toEqual([0x4806c00bn, 0xd6n, 0n, 0n, 0n, 0n, 0n, 0n]);
  });

  it('the CD is 0x0001e204c0003510 0x0000000048089000 0 0xfffffffff404ff44', () => {
    expect(toDwords(qCd(1, 0x48089000n))).toEqual([
      0x0001e204c0003510n,
      0x48089000n,
      0n,
      0xfffffffff404ff44n,
      0n,
      0n,
      0n,
      0n,
    ]);
  });

  /** the qwords written before each sync */
  function writesPerSync(kind: Kind, from: Uint32Array, to: Uint32Array): number[][] {
    const cur = Uint32Array.from(from);
    const groups: number[][] = [[]];
    writeEntry(cur, to, {
      used: kind === 'ste' ? steUsed : cdUsed,
      ...(kind === 'ste' ? { updateSafe: steUpdateSafe } : {}),
      write: (q) => groups[groups.length - 1]!.push(q),
      sync: () => groups.push([]),
    });
    groups.pop();
    return groups;
  }

  it('zero CD → valid CD: 2 CFGI_CD, qwords 1 and 3 (TTB0, MAIR) first, then qword 0', () => {
    expect(writesPerSync('cd', zeroCd(), qCd(1, 0x48089000n))).toEqual([[1, 3], [0]]);
  });
  it('abort STE → S1 STE: 2 CFGI_STE, qword 1 first, then qword 0', () => {
    expect(writesPerSync('ste', abort(), qSte())).toEqual([[1], [0]]);
  });
  it('DMA → identity: S1 STE → bypass STE (no SHCFG): qword 0 first, then qword 1 cleared', () => {
    expect(writesPerSync('ste', qSte(), makeBypassSte(QFT))).toEqual([[0], [1]]);
  });
  it('arm_smmu_clear_cd: V=0 first, then the rest zeroed', () => {
    expect(writesPerSync('cd', qCd(1, 0x48089000n), zeroCd())).toEqual([[0], [1, 3]]);
  });
  it('DMA-FQ → DMA: the CD changes ASID and TTB0 while valid, a breaking 3-sync update', () => {
    expect(writesPerSync('cd', qCd(1, 0x48089000n), qCd(3, 0x4808a000n))).toEqual([[0], [1], [0]]);
  });
});

describe('the writer', () => {
  it('writes nothing and never syncs when the entry already equals the target', () => {
    const r = record('ste', cdtable(S1DSS.SSID0, ATS), cdtable(S1DSS.SSID0, ATS));
    expect(r.syncs).toBe(0);
  });

  it('an update-safe-only change (MEV) takes one sync and no V=0 window', () => {
    const from = s2ste(ATS);
    const to = Uint32Array.from(from);
    to[STE.MEV.word] = (to[STE.MEV.word]! | (1 << STE.MEV.shift)) >>> 0;
    expect(planEntryUpdate(from, to, { used: steUsed, updateSafe: steUpdateSafe }).diff).toBe(0);
    const r = record('ste', from, to);
    expect(r).toMatchObject({ syncs: 1, invalidEntryWritten: false, violations: [] });
  });

  it('EATS is not update-safe when S2S=1 is involved: S2 (stall, no ATS) → S2 (stall, ATS) still hitless through qword 1', () => {
    const from = s2ste(STALL);
    const to = makeS2Ste(FT, { stallEnabled: true, ats: true }, S2);
    expect(steUpdateSafe(from, to)[STE.EATS.word]! & (1 << STE.EATS.shift)).toBe(0);
    expect(planEntryUpdate(from, to, { used: steUsed, updateSafe: steUpdateSafe }).diff).toBe(0b10);
    const r = record('ste', from, to);
    expect(r).toMatchObject({ syncs: 1, invalidEntryWritten: false, violations: [] });
  });

  it('the harness catches a writer that writes qwords in order with a sync after each', () => {
    const naive: Writer = (cur, target, ops) => {
      for (let q = 0; q < 8; q++) {
        if (cur[2 * q] === target[2 * q] && cur[2 * q + 1] === target[2 * q + 1]) continue;
        cur[2 * q] = target[2 * q]!;
        cur[2 * q + 1] = target[2 * q + 1]!;
        ops.write(q, cur[2 * q]!, cur[2 * q + 1]!);
        ops.sync();
      }
    };
    const r = record('ste', cdtable(S1DSS.SSID0, ATS), s2ste(ATS), naive);
    expect(r.violations.length).toBeGreaterThan(0);
  });

  it('random transitions between the test entries: always ends at the target, old-or-new at every valid sync, ≤ 3 syncs', () => {
    const stes = [
      abort(),
      bypass(),
      cdtable(S1DSS.SSID0, ATS),
      cdtable(S1DSS.BYPASS, ATS),
      cdtable(S1DSS.SSID0, STALL),
      cdtable(S1DSS.BYPASS, ATS, CDTAB_B),
      cdtable(S1DSS.TERMINATE, PLAIN, CDTAB_B),
      s2ste(ATS),
      s2ste(PLAIN),
      s2ste(STALL),
      nested(S1DSS.BYPASS, ATS),
      nested(S1DSS.SSID0, PLAIN),
    ];
    const cds = [zeroCd(), s1cd(1), s1cd(1997), svacd(1997), svaReleased(1997), svaReleased(12)];
    fc.assert(
      fc.property(fc.boolean(), fc.nat(), fc.nat(), (isSte, i, j) => {
        const pool = isSte ? stes : cds;
        const from = pool[i % pool.length]!;
        const to = pool[j % pool.length]!;
        const kind: Kind = isSte ? 'ste' : 'cd';
        const plan = planEntryUpdate(
          from,
          to,
          isSte ? { used: steUsed, updateSafe: steUpdateSafe } : { used: cdUsed },
        );
        const r = record(kind, from, to);
        expect(r.violations).toEqual([]);
        expect(hex(r.final)).toBe(hex(to));
        expect(r.syncs).toBeLessThanOrEqual(3);
        // a V=0 window appears only when the update is breaking, or when one side is itself invalid
        const eitherInvalid =
          (isSte ? get(from, STE.V) & get(to, STE.V) : get(from, CD.V) & get(to, CD.V)) === 0;
        if (!eitherInvalid)
          expect(r.invalidEntryWritten).toBe(
            plan.diff !== 0 && (plan.diff & (plan.diff - 1)) !== 0,
          );
      }),
      { numRuns: 300 },
    );
  });
});
