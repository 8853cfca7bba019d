/**
 * Golden walks (reference §6, §5.2–§5.3): the hand-worked cases of golden-walks.ts, run
 *   1. through `walk()` alone, with the stage configuration of the case, and
 *   2. through the whole device (Config=0b101 with a CD, or Config=0b110), checking the
 *      transaction result and the raw event record written to the event queue,
 * plus the S2SL0/S2TG/S2T0SZ consistency table and nested (Config=0b111) walks.
 */
import { describe, expect, it } from 'vitest';
import { ExternalAbort, PhysicalMemory } from '../../../../hw/memory.ts';
import {
  walk,
  newWalkOut,
  s1StartLevel,
  PERM,
  type StageCfg,
  type DescReader,
} from '../../../../hw/smmu/walk.ts';
import { s2StartLevel } from '../../../../hw/smmu/ste.ts';
import { STAGE } from '../../../../hw/smmu/tlb.ts';
import {
  WALK_CASES,
  S2_CONFIG_CASES,
  NESTED_BASE,
  NESTED_CASES,
  NESTED_CD,
  type WalkCase,
  type Access,
  type ExpectedEvent,
  type ExpectOk,
  type ExpectFault,
} from './golden-walks.ts';
import { CLASS, EV, LAYOUT, Rig, psEnc, tgEnc, type RawEvent } from './rig.ts';

const log2 = (n: number): number => Math.round(Math.log2(n));

/** The permission a transaction needs, in walk.ts's PERM encoding (priv/unpriv × R/W/X). */
function need(a: Access = {}): number {
  if (a.instr && !a.write) return a.priv ? PERM.X_P : PERM.X_U;
  if (a.write) return a.priv ? PERM.W_P : PERM.W_U;
  return a.priv ? PERM.R_P : PERM.R_U;
}

function isOk(e: ExpectOk | ExpectFault): e is ExpectOk {
  return (e as ExpectOk).pa !== undefined;
}

/** Check a raw event record against the expectation and the transaction (reference §5.2). */
function checkEvent(
  ev: RawEvent,
  type: number,
  sid: number,
  input: number,
  a: Access,
  x: ExpectedEvent,
  translationClass: boolean,
): void {
  expect(ev.type, 'event number').toBe(type);
  expect(ev.sid, 'StreamID').toBe(sid);
  expect(ev.ssv, 'SSV').toBe(0);
  if (x.FetchAddr !== undefined)
    expect(ev.fetchAddr.toString(16), 'FetchAddr').toBe(x.FetchAddr.toString(16));
  if (!translationClass) return;
  expect(ev.input, 'InputAddr').toBe(BigInt(input));
  expect(ev.stall, 'Stall').toBe(0);
  expect(ev.RnW, 'RnW').toBe(a.write ? 0 : 1);
  expect(ev.PnU, 'PnU').toBe(a.priv ? 1 : 0);
  expect(ev.InD, 'InD').toBe(a.instr && !a.write ? 1 : 0);
  if (x.RnW !== undefined) expect(ev.RnW, 'RnW').toBe(x.RnW);
  if (x.InD !== undefined) expect(ev.InD, 'InD').toBe(x.InD);
  if (x.PnU !== undefined) expect(ev.PnU, 'PnU').toBe(x.PnU);
  if (x.S2 !== undefined) expect(ev.S2, 'S2').toBe(x.S2);
  if (x.CLASS !== undefined) expect(ev.CLASS, 'CLASS').toBe(CLASS[x.CLASS]);
  if (x.IPA !== undefined) {
    expect(ev.ipa.toString(16), 'IPA').toBe(x.IPA.toString(16));
    // IPA[55:12] only: DW3[11:0] carry nothing for a Non-secure stream
    expect(ev.dw[3]! & 0xfffn, 'DW3[11:0]').toBe(0n);
  }
  if (x.FetchAddr !== undefined) expect(ev.dw[3]! & 7n, 'DW3[2:0] below FetchAddr[55:3]').toBe(0n);
}

// ---- 1. walk() on its own ------------------------------------------------------------------------

function ramWithDescs(c: { descs: ReadonlyArray<readonly [number, bigint]> }): PhysicalMemory {
  const mem = new PhysicalMemory();
  mem.addRam('ram', 0x4000_0000, 0x4000_0000);
  for (const [a, v] of c.descs) mem.write64(a, v);
  return mem;
}

function plainReader(mem: PhysicalMemory): DescReader {
  return {
    read(addr, _level, out, desc) {
      try {
        desc[0] = mem.read32(addr);
        desc[1] = mem.read32(addr + 4);
        return addr;
      } catch (e) {
        if (!(e instanceof ExternalAbort)) throw e;
        out.fetchAddr = addr;
        return -1;
      }
    },
  };
}

function stageCfg(c: WalkCase): StageCfg {
  return {
    stage: c.stage,
    g: log2(c.granule),
    ias: 64 - c.tsz,
    start: c.start,
    ttb: c.ttb,
    oas: c.ps,
    affd: c.affd ?? false,
    ha: c.ha ?? false,
    be: false,
    el2: false,
    had: false,
    wxn: false,
    pan: false,
    xnx: true,
  };
}

describe('golden walks: walk() alone', () => {
  it.each(WALK_CASES.filter((c) => !c.deviceOnly).map((c) => [c.name, c] as const))(
    '%s',
    (_n, c) => {
      // the start level worked out by hand is the one the engine derives
      if (c.stage === 1) expect(s1StartLevel(log2(c.granule), 64 - c.tsz)).toBe(c.start);
      else expect(s2StartLevel(c.sl0!, tgEnc(c.granule))).toBe(c.start);
      const mem = ramWithDescs(c);
      const out = newWalkOut();
      const f = walk(stageCfg(c), c.ia, plainReader(mem), out);
      const x = c.expect;
      if (isOk(x)) {
        expect(f, 'fault').toBe(0);
        expect(out.perm & need(c.access), 'permission granted').not.toBe(0);
        expect((out.oa + (c.ia % 2 ** out.pageShift)).toString(16), 'PA').toBe(x.pa.toString(16));
        expect(2 ** out.pageShift, 'page size').toBe(x.size);
        expect(out.level, 'leaf level').toBe(x.level);
        if (c.after)
          expect(out.afUpdate.toString(16), 'descriptor whose AF the SMMU sets').toBe(
            c.after[0]![0].toString(16),
          );
        else expect(out.afUpdate).toBe(-1);
      } else if (x.fault === 'F_PERMISSION') {
        // walk() returns the permissions; the caller raises the Permission fault (it comes last)
        expect(f, 'walk fault').toBe(0);
        expect(out.perm & need(c.access), 'permission granted').toBe(0);
        if (x.level !== undefined) expect(out.level).toBe(x.level);
      } else {
        expect(f.toString(16), 'fault').toBe(EV[x.fault].toString(16));
        if (x.level !== undefined) expect(out.level, 'fault level').toBe(x.level);
        if (x.fetchAddr !== undefined)
          expect(out.fetchAddr.toString(16), 'FetchAddr').toBe(x.fetchAddr.toString(16));
      }
    },
  );
});

// ---- 2. through the device -----------------------------------------------------------------------

const SID = 1;

function deviceFor(c: WalkCase): Rig {
  const r = new Rig(c.ha ? { features: { httu: 1 } } : {});
  r.descs(c.descs);
  if (c.stage === 1) {
    r.cd(LAYOUT.CD, {
      T0SZ: c.tsz,
      TG0: tgEnc(c.granule),
      IR0: 1,
      OR0: 1,
      SH0: 3,
      EPD1: 1,
      V: 1,
      IPS: psEnc(c.ps),
      AFFD: c.affd ? 1 : 0,
      HA: c.ha ? 1 : 0,
      AA64: 1,
      R: 1,
      A: 1,
      ASID: 1,
      TTB0: c.ttb,
    });
    r.ste(SID, { V: 1, Config: 0b101, S1ContextPtr: LAYOUT.CD, S1CIR: 1, S1COR: 1, S1CSH: 3 });
  } else {
    r.ste(SID, {
      V: 1,
      Config: 0b110,
      S2VMID: 1,
      S2T0SZ: c.tsz,
      S2SL0: c.sl0!,
      S2TG: tgEnc(c.granule),
      S2PS: psEnc(c.ps),
      S2AA64: 1,
      S2AFFD: c.affd ? 1 : 0,
      S2HA: c.ha ? 1 : 0,
      S2R: 1,
      S2IR0: 1,
      S2OR0: 1,
      S2SH0: 3,
      S2TTB: c.ttb,
    });
  }
  return r;
}

describe('golden walks: through the device (Config=0b101 / 0b110), raw event records', () => {
  it.each(WALK_CASES.map((c) => [c.name, c] as const))('%s', (_n, c) => {
    const r = deviceFor(c);
    const a = c.access ?? {};
    const res = r.txn(SID, c.ia, a);
    const x = c.expect;
    if (isOk(x)) {
      expect(res.reason).toBe('');
      expect(res.ok).toBe(true);
      expect(res.pa.toString(16), 'PA').toBe(x.pa.toString(16));
      if (c.stage === 2) expect(res.ipa.toString(16), 'IPA').toBe(c.ia.toString(16));
      expect(r.eventCount(), 'no event').toBe(0);
      for (const [addr, v] of c.after ?? [])
        expect(r.r64(addr).toString(16), `descriptor at 0x${addr.toString(16)}`).toBe(
          v.toString(16),
        );
      // the same transaction again (an IOTLB hit) gives the same PA
      const again = r.txn(SID, c.ia, a);
      expect(again.ok && again.pa === x.pa).toBe(true);
      expect(again.tlbHit).toBe(true);
    } else {
      expect(res.ok).toBe(false);
      expect(res.event.toString(16), 'event recorded').toBe(EV[x.fault].toString(16));
      expect(r.eventCount(), 'one event').toBe(1);
      checkEvent(r.lastEvent(), EV[x.fault], SID, c.ia, a, x.event, true);
      // faults are not cached: the same transaction faults the same way
      const again = r.txn(SID, c.ia, a);
      expect(again.event).toBe(EV[x.fault]);
      expect(r.eventCount()).toBe(2);
    }
  });
});

describe('stage-2 walk consistency {S2SL0, S2TG, S2T0SZ} (reference §6.3): illegal → C_BAD_STE', () => {
  it.each(
    S2_CONFIG_CASES.map(
      (c) =>
        [
          `${c.granule / 1024}KB S2SL0=${c.sl0} S2T0SZ=${c.tsz}: ${c.legal ? 'legal' : 'ILLEGAL'} (${c.why})`,
          c,
        ] as const,
    ),
  )('%s', (_n, c) => {
    const r = new Rig();
    r.ste(SID, {
      V: 1,
      Config: 0b110,
      S2VMID: 1,
      S2T0SZ: c.tsz,
      S2SL0: c.sl0,
      S2TG: tgEnc(c.granule),
      S2PS: 5,
      S2AA64: 1,
      S2R: 1,
      S2TTB: 0x4300_0000,
    });
    // nothing is mapped: a legal STE gives a stage-2 translation fault, an illegal one C_BAD_STE
    const res = r.txn(SID, 0x1000);
    expect(res.ok).toBe(false);
    expect(r.eventCount()).toBe(1);
    const ev = r.lastEvent();
    if (c.legal) {
      expect(ev.type).toBe(EV.F_TRANSLATION);
      expect(ev.S2).toBe(1);
    } else {
      expect(ev.type).toBe(EV.C_BAD_STE);
      expect(ev.sid).toBe(SID);
    }
  });
});

// ---- 3. nested -----------------------------------------------------------------------------------

describe('nested walks through the device (Config=0b111): S2 and CLASS in the raw event records (reference §5.3, §6.4)', () => {
  it.each(NESTED_CASES.map((c) => [c.name, c] as const))('%s', (_n, c) => {
    const r = new Rig();
    r.descs(NESTED_BASE.descs);
    r.descs(c.descs ?? []);
    r.cd(NESTED_CD, { ...NESTED_BASE.cd, ...c.cd });
    r.ste(SID, { ...NESTED_BASE.ste, ...c.ste });
    let events = 0;
    for (const s of c.steps) {
      const a = s.access ?? {};
      const res = r.txn(SID, s.va, a);
      const x = s.expect;
      if ('pa' in x) {
        expect(res.reason).toBe('');
        expect(res.ok).toBe(true);
        expect(res.pa.toString(16), 'PA').toBe(x.pa.toString(16));
        expect(res.ipa.toString(16), 'IPA').toBe(x.ipa.toString(16));
        expect(r.eventCount()).toBe(events);
      } else {
        expect(res.ok).toBe(false);
        expect(res.event.toString(16), 'event').toBe(EV[x.fault].toString(16));
        expect(r.eventCount()).toBe(++events);
        checkEvent(r.lastEvent(), EV[x.fault], SID, s.va, a, x.event, x.fault !== 'F_CD_FETCH');
      }
    }
    if (c.combinedShifts) {
      const shifts = r.m.smmu.tlb
        .entries()
        .filter((e) => e.ctx.stage === STAGE.S12)
        .map((e) => e.shift)
        .sort();
      expect(shifts).toEqual(c.combinedShifts);
    }
  });
});

describe('CD.EPD0 (reference §3.1, §6.1 TTB selection)', () => {
  const tables = (r: Rig) => {
    // 4 KB, T0SZ=25: the chain of the "s1 4KB T0SZ=25" golden case (L1 idx 0x1C3, L2 0x7E, L3 0x155)
    r.descs([
      [0x4101_0e18, 0x4101_1003n],
      [0x4101_13f0, 0x4101_2003n],
      [0x4101_2aa8, 0x4567_8f43n],
    ]);
  };
  const cd = {
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
    ASID: 1,
    TTB0: 0x4101_0000,
  };
  it.each([
    [0, true],
    [1, false],
  ] as const)(
    'EPD0=%i: translated = %s; with EPD0=1 an input in the TTB0 range gives F_TRANSLATION S2=0 CLASS=IN',
    (epd0, ok) => {
      const r = new Rig();
      tables(r);
      r.cd(LAYOUT.CD, { ...cd, EPD0: epd0 });
      r.ste(SID, { V: 1, Config: 0b101, S1ContextPtr: LAYOUT.CD });
      const res = r.txn(SID, 0x70_cfd5_5abc);
      if (ok) {
        expect(res.ok).toBe(true);
        expect(res.pa).toBe(0x4567_8abc);
      } else {
        expect(res.event).toBe(EV.F_TRANSLATION);
        const ev = r.lastEvent();
        expect([ev.type, ev.S2, ev.CLASS, ev.input]).toEqual([
          EV.F_TRANSLATION,
          0,
          CLASS.IN,
          0x70_cfd5_5abcn,
        ]);
      }
    },
  );
});
