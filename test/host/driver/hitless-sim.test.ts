/**
 * The entry writer against the simulated SMMU (smmuv3.md §8.5 "simulator-level check"): the STE
 * of a live stream is moved between configurations the model translates (abort, bypass,
 * stage 1 with a real CD and page table, stage 2) with each sync = CFGI_STE(sid, Leaf=1) +
 * CMD_SYNC. After every sync a probe DMA from the stream must give exactly the old or the new
 * configuration's result, never a fault, when the update is hitless.
 *
 * With the configuration cache and TLB switched off, the SMMU reads the STE on every
 * transaction, so the probe also runs after every single 64-bit write: hitlessness must hold
 * at every instant, not only at the sync points.
 */
import { describe, it, expect } from 'vitest';
import { Testbed, TB } from '../../../scenarios/engine/testbed.ts';
import { SMMU_BASE } from '../../../hw/machine.ts';
import { OFF } from '../../../hw/smmu/regs.ts';
import type { DmaEndpoint, DmaOutcome } from '../../../hw/dma.ts';
import { writeEntry, steUsed, steUpdateSafe, S1DSS } from '../../../host/driver/entry.ts';
import {
  makeAbortSte,
  makeBypassSte,
  makeCdtableSte,
  makeS2Ste,
  makeS1Cd,
  hostFeaturesFrom,
  S1FMT,
  TCR_WBWA_ISH,
  type HostSmmuFeatures,
} from '../../../host/driver/ste-make.ts';

const SID = 5;
const IOVA = 0x4800_0000; // in RAM, so that bypass reads something
const PA_S1 = 0x4810_0000;
const PA_S1B = 0x4818_0000;
const PA_S2 = 0x4820_0000;
const CD_A = 0x4004_0000;
const CD_B = 0x4004_1000;
const S1_ROOT_A = 0x4005_0000;
const S1_ROOT_B = 0x4005_8000;
const S2_ROOT = 0x4006_0000;
const MARK = { bypass: 0xb1b1b1b1, s1: 0x51515151, s1b: 0x5b5b5b5b, s2: 0x52525252 } as const;

/** stage 2: 48-bit IPA, 4KB granule, start level 0 (SL0=2), WB Inner Shareable walks, 48-bit PS */
const S2_VTCR = { tsz: 16, sl: 2, irgn: 1, orgn: 1, sh: 3, tg: 0, ps: 5 };

type Cfg = 'abort' | 'bypass' | 's1' | 's1b' | 's2' | 's2v1';

/** What a probe read of IOVA gives under each configuration. */
const EXPECT: Record<Cfg, { ok: true; pa: number; mark: number } | { ok: false; reason: RegExp }> =
  {
    abort: { ok: false, reason: /Config=abort/ },
    bypass: { ok: true, pa: IOVA, mark: MARK.bypass },
    s1: { ok: true, pa: PA_S1, mark: MARK.s1 },
    s1b: { ok: true, pa: PA_S1B, mark: MARK.s1b },
    s2: { ok: true, pa: PA_S2, mark: MARK.s2 },
    s2v1: { ok: true, pa: PA_S2, mark: MARK.s2 },
  };

class Rig {
  readonly tb: Testbed;
  readonly dev: DmaEndpoint;
  readonly ft: HostSmmuFeatures;
  readonly steAddr = TB.STRTAB + SID * 64;
  cfgis = 0;

  constructor(caching: boolean) {
    this.tb = new Testbed({ smmu: { caching, features: { attrTypesOvr: true } } });
    const tb = this.tb;
    this.ft = hostFeaturesFrom(tb.m.smmu.features);
    this.dev = tb.m.addDevice({ name: 'probe', sid: SID });
    const mem = tb.m.mem;
    mem.write32(IOVA, MARK.bypass);
    mem.write32(PA_S1, MARK.s1);
    mem.write32(PA_S1B, MARK.s1b);
    mem.write32(PA_S2, MARK.s2);
    // stage 1: two address spaces (ASIDs 1 and 2) with their own CDs and tables
    mem.writeWords(CD_A, this.cd(1, S1_ROOT_A));
    mem.writeWords(CD_B, this.cd(2, S1_ROOT_B));
    tb.map(1, S1_ROOT_A, IOVA, PA_S1, 4096, { pages: true });
    tb.map(1, S1_ROOT_B, IOVA, PA_S1B, 4096, { pages: true });
    // stage 2 (S2_VTCR)
    tb.map(2, S2_ROOT, IOVA, PA_S2, 4096, { pages: true });
    // the stream starts out aborting, as Linux initialises every STE
    mem.writeWords(this.steAddr, makeAbortSte());
    tb.cmd(['CFGI_ALL'], ['CMD_SYNC']);
  }

  cd(asid: number, root: number): Uint32Array {
    return makeS1Cd(
      this.ft,
      {},
      {
        asid,
        tcr: { tsz: 16, tg: 0, ...TCR_WBWA_ISH, ips: 5 },
        ttbr: BigInt(root),
        mair: 0xf404ff44n,
      },
    );
  }

  ste(c: Cfg): Uint32Array {
    const ats = { ats: this.ft.ats === true };
    switch (c) {
      case 'abort':
        return makeAbortSte();
      case 'bypass':
        return makeBypassSte(this.ft);
      case 's1':
        return makeCdtableSte(
          this.ft,
          ats,
          { dma: BigInt(CD_A), s1cdmax: 0, s1fmt: S1FMT.LINEAR },
          S1DSS.SSID0,
        );
      // another CD, and S1DSS=bypass (ignored by the SMMU with S1CDMax=0, but a used field for the writer)
      case 's1b':
        return makeCdtableSte(
          this.ft,
          ats,
          { dma: BigInt(CD_B), s1cdmax: 0, s1fmt: S1FMT.LINEAR },
          S1DSS.BYPASS,
        );
      // VMID 0, as in the kunit S2 entry: stage-1 STEs carry S2VMID=0 too, so S1 <-> S2 can be hitless
      case 's2':
        return makeS2Ste(this.ft, ats, { vmid: 0, vtcr: S2_VTCR, vttbr: BigInt(S2_ROOT) });
      // VMID 1, as Linux really allocates for a stage-2 domain (VMID 0 is kept for stage-1 STEs)
      case 's2v1':
        return makeS2Ste(this.ft, ats, { vmid: 1, vtcr: S2_VTCR, vttbr: BigInt(S2_ROOT) });
    }
  }

  readSte(): Uint32Array {
    const w = new Uint32Array(16);
    this.tb.m.mem.readWords(this.steAddr, w);
    return w;
  }

  install(c: Cfg): void {
    this.tb.m.mem.writeWords(this.steAddr, this.ste(c));
    this.cfgiSync();
  }

  cfgiSync(): void {
    this.cfgis++;
    this.tb.cmd(['CFGI_STE', { StreamID: SID, Leaf: 1 }], ['CMD_SYNC']);
  }

  probe(): DmaOutcome {
    return this.dev.read(IOVA, 4);
  }

  events(): number {
    return this.tb.m.bus.read32('host', SMMU_BASE + OFF.EVENTQ_PROD);
  }

  cmdqErr(): number {
    return (this.tb.m.bus.read32('host', SMMU_BASE + OFF.CMDQ_CONS) >>> 24) & 0x7f;
  }
}

function matches(o: DmaOutcome, c: Cfg): boolean {
  const e = EXPECT[c];
  if (!e.ok) return !o.ok && o.event === undefined && e.reason.test(o.fault);
  if (!o.ok || o.pa !== e.pa || !o.data) return false;
  return new DataView(o.data.buffer, o.data.byteOffset).getUint32(0, true) === e.mark;
}

function describeOutcome(o: DmaOutcome): string {
  return o.ok
    ? `ok pa=0x${o.pa.toString(16)}`
    : `fault ${o.fault}${o.event ? ` (${o.event})` : ''}`;
}

interface SimRun {
  syncs: number;
  /** probe outcomes that were neither the old nor the new configuration's */
  strays: string[];
  /** probe outcomes after each sync */
  atSync: DmaOutcome[];
}

function transition(rig: Rig, from: Cfg, to: Cfg, probeEveryWrite: boolean): SimRun {
  rig.install(from);
  expect(matches(rig.probe(), from), `initial ${from}: ${describeOutcome(rig.probe())}`).toBe(true);
  const run: SimRun = { syncs: 0, strays: [], atSync: [] };
  const check = (when: string) => {
    const o = rig.probe();
    if (!matches(o, from) && !matches(o, to)) run.strays.push(`${when}: ${describeOutcome(o)}`);
    return o;
  };
  const cur = rig.readSte();
  const mem = rig.tb.m.mem;
  writeEntry(cur, rig.ste(to), {
    used: steUsed,
    updateSafe: steUpdateSafe,
    write(q, lo, hi) {
      // one 64-bit single-copy-atomic store
      mem.write64(rig.steAddr + 8 * q, (BigInt(hi) << 32n) | BigInt(lo));
      if (probeEveryWrite) check(`after writing qword ${q}`);
    },
    sync() {
      run.syncs++;
      rig.cfgiSync();
      run.atSync.push(check(`after sync ${run.syncs}`));
    },
  });
  expect(Array.from(rig.readSte())).toEqual(Array.from(rig.ste(to)));
  expect(matches(rig.probe(), to), `final ${to}: ${describeOutcome(rig.probe())}`).toBe(true);
  return run;
}

/**
 * The hitless transitions between the translatable configurations, with the sync counts of
 * the kunit analogues (§8.5): abort/bypass 2 (#1, #2), cdtable/abort 2 (#3, #4), S1→bypass 3
 * and bypass→S1 3 (#5, #6), S2/abort 2 (#10, #11), S2/bypass 2 (#12, #13), S1/S2 3 (#14, #15),
 * and a VMID-only change of a stage-2 STE: 1 (only qword 2 changes).
 */
const HITLESS: Array<[Cfg, Cfg, number]> = [
  ['bypass', 'abort', 2],
  ['abort', 'bypass', 2],
  ['s1', 'abort', 2],
  ['abort', 's1', 2],
  ['s1', 'bypass', 3],
  ['bypass', 's1', 3],
  ['s2', 'abort', 2],
  ['abort', 's2', 2],
  ['s2', 'bypass', 2],
  ['bypass', 's2', 2],
  ['s1', 's2', 3],
  ['s2', 's1', 3],
  ['s2', 's2v1', 1],
  ['s2v1', 's2', 1],
];

/**
 * Breaking transitions: two qwords change bits both configurations use, so the writer goes
 * through V=0 (3 syncs). s1 → s1b changes the CD pointer (DW0) and S1DSS (DW1), like kunit #16.
 * s1 <-> s2v1 changes Config (DW0) and S2VMID (DW2, used by both: a stage-1 STE's S2VMID tags
 * its TLB entries) — so with real, non-zero stage-2 VMIDs, S1 <-> S2 is not hitless.
 */
const BREAKING: Array<[Cfg, Cfg]> = [
  ['s1', 's1b'],
  ['s1', 's2v1'],
  ['s2v1', 's1'],
];

describe('the writer on the simulated SMMU (CFGI_STE + CMD_SYNC per sync)', () => {
  for (const caching of [true, false]) {
    const mode = caching
      ? 'caches on, probe after each sync'
      : 'caches off, probe after every 64-bit write';
    describe(mode, () => {
      for (const [from, to, syncs] of HITLESS) {
        it(`${from} → ${to}: ${syncs} sync(s), every probe is ${from} or ${to}, no events`, () => {
          const rig = new Rig(caching);
          const ev0 = rig.events();
          const r = transition(rig, from, to, !caching);
          expect(r.strays).toEqual([]);
          expect(r.syncs).toBe(syncs);
          expect(rig.events()).toBe(ev0);
          expect(rig.cmdqErr()).toBe(0);
        });
      }

      it('stage-1 CD pointer change alone (s1 → s1 with CD B, S1DSS unchanged): 1 sync, hitless', () => {
        const rig = new Rig(caching);
        rig.install('s1');
        const cur = rig.readSte();
        const target = makeCdtableSte(
          rig.ft,
          { ats: true },
          { dma: BigInt(CD_B), s1cdmax: 0, s1fmt: S1FMT.LINEAR },
          S1DSS.SSID0,
        );
        const outcomes: DmaOutcome[] = [];
        const res = writeEntry(cur, target, {
          used: steUsed,
          updateSafe: steUpdateSafe,
          write: (q, lo, hi) =>
            rig.tb.m.mem.write64(rig.steAddr + 8 * q, (BigInt(hi) << 32n) | BigInt(lo)),
          sync: () => {
            rig.cfgiSync();
            outcomes.push(rig.probe());
          },
        });
        expect(res).toMatchObject({ kind: 'hitless', critical: 0, syncs: 1 });
        expect(outcomes.map((o) => matches(o, 's1b'))).toEqual([true]);
      });

      for (const [from, to] of BREAKING) {
        it(`${from} → ${to}: breaking, 3 syncs, C_BAD_STE only while V=0`, () => {
          const rig = new Rig(caching);
          const ev0 = rig.events();
          const r = transition(rig, from, to, !caching);
          expect(r.syncs).toBe(3);
          // V=0 at the first sync (qword 0 cleared) and the second (qwords 1..7 written); valid again at the third
          expect(r.atSync.map((o) => (o.ok ? 'ok' : o.event))).toEqual([
            'C_BAD_STE',
            'C_BAD_STE',
            'ok',
          ]);
          expect(matches(r.atSync[2]!, to)).toBe(true);
          expect(r.strays.length).toBeGreaterThan(0);
          expect(r.strays.every((x) => x.includes('C_BAD_STE'))).toBe(true);
          expect(rig.events()).not.toBe(ev0);
        });
      }
    });
  }

  it('the probes catch a writer that is not hitless (qwords in order, CFGI + SYNC after each)', () => {
    const rig = new Rig(false);
    rig.install('s1');
    const target = rig.ste('s2');
    const strays: string[] = [];
    for (let q = 0; q < 8; q++) {
      rig.tb.m.mem.writeWords(rig.steAddr + 8 * q, target.subarray(2 * q, 2 * q + 2));
      rig.cfgiSync();
      const o = rig.probe();
      if (!matches(o, 's1') && !matches(o, 's2')) strays.push(describeOutcome(o));
    }
    // Config=S2 with the stage-2 fields still zero is ILLEGAL
    expect(strays.length).toBeGreaterThan(0);
    expect(strays[0]).toMatch(/C_BAD_STE/);
  });
});
