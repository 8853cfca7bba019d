/**
 * Regressions for engine bugs found by the acceptance suites: each case is a minimal
 * reproduction with its expected result from the reference.
 */
import { describe, expect, it } from 'vitest';
import { Rig, Pt39, EV, CLASS, OP, cmd, s1Leaf } from './rig.ts';

const P = 0x1000_0000;
const CD_FIELDS = {
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
};

describe('translation engine regressions', () => {
  it('CFGI_CD with Leaf=0 drops the cached L1CD on the path (reference §4.3)', () => {
    const r = new Rig();
    const pool = { next: 0x4500_0000 };
    const pt = new Pt39(r.m.mem, 0x4400_0000, pool);
    pt.set(P, 3, s1Leaf(0x4600_0000, 3));
    // 2-level CD table with 4 KB leaves (S1Fmt=1), S1CDMax=7: L1 index = SSID[6:6], L2 index = SSID[5:0]
    r.w64(0x4700_0008, 0x4701_0001n); // L1CD[1]: V=1, L2Ptr 0x4701_0000
    r.cd(0x4701_0000 + 1 * 64, { ...CD_FIELDS, ASID: 7, TTB0: 0x4400_0000 }); // CD 65 in the first L2 table
    r.cd(0x4702_0000 + 1 * 64, { ...CD_FIELDS, V: 0, ASID: 7, TTB0: 0x4400_0000 }); // CD 65 in the second: V=0
    r.ste(9, {
      V: 1,
      Config: 0b101,
      S1ContextPtr: 0x4700_0000,
      S1CDMax: 7,
      S1Fmt: 1,
      S1CIR: 1,
      S1COR: 1,
      S1CSH: 3,
    });
    r.cmds(cmd(OP.CFGI_STE, { sid: 9, leaf: 1 }));
    expect(r.txn(9, P, {}, 65).ok).toBe(true);
    r.w64(0x4700_0008, 0x4702_0001n); // re-point L1CD[1] at the second L2 table
    r.cmds(cmd(OP.CFGI_CD, { sid: 9, ssid: 65, leaf: 1 }));
    expect(r.txn(9, P, {}, 65).ok).toBe(true); // Leaf=1: the cached L1CD may still be used
    r.cmds(cmd(OP.CFGI_CD, { sid: 9, ssid: 65, leaf: 0 }));
    const res = r.txn(9, P, {}, 65);
    expect(res.ok).toBe(false);
    expect(r.lastEvent()).toMatchObject({ type: EV.C_BAD_CD, sid: 9 });
  });

  it('an EL2 (STRW=0b10, E2H=0) stream ignores AP[1]: unprivileged DMA gets AP[2]-only permissions (reference §6.2)', () => {
    const r = new Rig();
    const pt = new Pt39(r.m.mem, 0x4400_0000, { next: 0x4500_0000 });
    pt.set(P, 3, s1Leaf(0x4600_0000, 3, { ap: 0b00 })); // AP[2:1]=00: EL1&0 would deny EL0; at EL2 it is RW
    pt.set(P + 0x1000, 3, s1Leaf(0x4600_1000, 3, { ap: 0b10 })); // AP[2]=1: read-only
    r.cd(0x4080_0000, { ...CD_FIELDS, ASID: 0, TTB0: 0x4400_0000 });
    r.ste(6, { V: 1, Config: 0b101, S1ContextPtr: 0x4080_0000, STRW: 0b10 });
    r.cmds(cmd(OP.CFGI_STE, { sid: 6, leaf: 1 }));
    expect(r.txn(6, P, { write: true }).pa).toBe(0x4600_0000); // unprivileged write allowed
    expect(r.txn(6, P + 0x1000, {}).pa).toBe(0x4600_1000); // read allowed
    const w = r.txn(6, P + 0x1000, { write: true });
    expect(w.ok).toBe(false);
    expect(r.lastEvent()).toMatchObject({ type: EV.F_PERMISSION, S2: 0, CLASS: CLASS.IN, RnW: 0 });
  });

  it('HTTU does not set AF on a translation that takes a permission fault', () => {
    const r = new Rig({ features: { httu: 1 } });
    const pt = new Pt39(r.m.mem, 0x4400_0000, { next: 0x4500_0000 });
    const ea = pt.set(P, 3, s1Leaf(0x4600_0000, 3, { ap: 0b11, af: false })); // read-only, AF=0
    r.cd(0x4080_0000, { ...CD_FIELDS, HA: 1, ASID: 1, TTB0: 0x4400_0000 });
    r.ste(5, { V: 1, Config: 0b101, S1ContextPtr: 0x4080_0000 });
    r.cmds(cmd(OP.CFGI_STE, { sid: 5, leaf: 1 }));
    expect(r.txn(5, P, { write: true }).ok).toBe(false);
    expect(r.r64(ea) & (1n << 10n)).toBe(0n); // AF still 0 after the faulting write
    expect(r.txn(5, P, {}).pa).toBe(0x4600_0000);
    expect(r.r64(ea) & (1n << 10n)).toBe(1n << 10n); // the successful read set AF
  });

  it('CFGI_STE_RANGE drops the CDs cached through the SIDs it covers, and only those (reference §4.3)', () => {
    const r = new Rig();
    const pt = new Pt39(r.m.mem, 0x4400_0000, { next: 0x4500_0000 });
    pt.set(P, 3, s1Leaf(0x4600_0000, 3));
    for (const sid of [4, 7, 8]) {
      r.cd(0x4700_0000 + sid * 64, { ...CD_FIELDS, ASID: sid, TTB0: 0x4400_0000 });
      r.ste(sid, { V: 1, Config: 0b101, S1ContextPtr: 0x4700_0000 + sid * 64 });
    }
    r.cmds(cmd(OP.CFGI_STE_RANGE, { sid: 0, range: 31 }));
    for (const sid of [4, 7, 8]) expect(r.txn(sid, P).ok).toBe(true);
    for (const sid of [4, 7, 8])
      r.cd(0x4700_0000 + sid * 64, { ...CD_FIELDS, V: 0, ASID: sid, TTB0: 0x4400_0000 }); // CDs now invalid
    r.cmds(cmd(OP.CFGI_STE_RANGE, { sid: 5, range: 1 })); // SIDs 4..7
    expect(r.txn(4, P).ok).toBe(false); // the new (V=0) CD is fetched: C_BAD_CD
    expect(r.lastEvent()).toMatchObject({ type: EV.C_BAD_CD, sid: 4 });
    expect(r.txn(7, P).ok).toBe(false);
    expect(r.txn(8, P).ok).toBe(true); // SID 8 is outside the range: its CD stays cached
  });
});
