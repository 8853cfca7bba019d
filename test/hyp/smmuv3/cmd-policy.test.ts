/**
 * The per-opcode policy for host commands (hyp/smmuv3/cmd-policy.ts), against designs.md §1.6:
 * which commands are forwarded unchanged, which are refused (and under which rule), which
 * trigger a reshadow, and the CMD_SYNC rewrite that closes gap G1.
 *
 * Commands are built here from the reference's encodings (opcode in DW0[7:0], StreamID
 * DW0[63:32], VMID DW0[47:32], Leaf DW1[0], Range DW1[4:0], CS DW0[13:12], MSIData DW0[63:32],
 * MSIAddress DW1[55:2]) rather than with the encoder under test elsewhere.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  checkCommand,
  FORWARD,
  RESHADOW,
  REFUSE,
  type CmdCheck,
} from '../../../hyp/smmuv3/cmd-policy.ts';
import type { RuleName } from '../../../hyp/policy/policy.ts';

const OPC = {
  PREFETCH_CONFIG: 0x01,
  PREFETCH_ADDR: 0x02,
  CFGI_STE: 0x03,
  CFGI_STE_RANGE: 0x04,
  CFGI_CD: 0x05,
  CFGI_CD_ALL: 0x06,
  TLBI_NH_ALL: 0x10,
  TLBI_NH_ASID: 0x11,
  TLBI_NH_VA: 0x12,
  TLBI_NH_VAA: 0x13,
  TLBI_EL3_ALL: 0x18,
  TLBI_EL3_VA: 0x1a,
  TLBI_EL2_ALL: 0x20,
  TLBI_EL2_ASID: 0x21,
  TLBI_EL2_VA: 0x22,
  TLBI_EL2_VAA: 0x23,
  TLBI_S12_VMALL: 0x28,
  TLBI_S2_IPA: 0x2a,
  TLBI_NSNH_ALL: 0x30,
  ATC_INV: 0x40,
  PRI_RESP: 0x41,
  RESUME: 0x44,
  STALL_TERM: 0x45,
  CMD_SYNC: 0x46,
} as const;

/** a command as four words: dw0 = (w1 << 32) | w0, dw1 = (w3 << 32) | w2 */
function cmd(
  op: number,
  o: {
    sid?: number;
    vmid?: number;
    asid?: number;
    leaf?: number;
    range?: number;
    w0?: number;
    w2?: number;
    w3?: number;
  } = {},
): Uint32Array {
  const w = new Uint32Array(4);
  w[0] = ((o.w0 ?? 0) & ~0xff) | op;
  w[1] = o.sid ?? (o.vmid ?? 0) | ((o.asid ?? 0) << 16);
  w[2] = (o.w2 ?? 0) | (o.leaf ?? 0) | (o.range ?? 0);
  w[3] = o.w3 ?? 0;
  return w;
}
/** CMD_SYNC: CS[13:12], MSH[23:22], MSIAttr[27:24], MSIData DW0[63:32], MSIAddress DW1[55:2] */
function cmdSync(cs: number, msiAddr = 0, msiData = 0, msh = 3, msiAttr = 0xf): Uint32Array {
  const w = new Uint32Array(4);
  w[0] = (OPC.CMD_SYNC | (cs << 12) | (msh << 22) | (msiAttr << 24)) >>> 0;
  w[1] = msiData >>> 0;
  w[2] = (msiAddr % 2 ** 32) & ~3;
  w[3] = Math.floor(msiAddr / 2 ** 32) & 0xffffff;
  return w;
}

/** a fresh check context; `rule` starts as a rule checkCommand never sets, so a refusal must set it */
function ctx(weak: RuleName[] = []): CmdCheck {
  return {
    weak: (r) => weak.includes(r),
    sid: -1,
    rule: 'reg-access',
    reason: '',
    syncRewrites: 0,
  };
}

function expectForwardedUnchanged(w: Uint32Array, c = ctx()): void {
  const copy = w.slice();
  expect(checkCommand(w, c)).toBe(FORWARD);
  expect([...w]).toEqual([...copy]);
  expect(c.rule).toBe('reg-access');
  expect(c.syncRewrites).toBe(0);
}

function expectRefused(w: Uint32Array, rule: RuleName, c = ctx()): CmdCheck {
  expect(checkCommand(w, c)).toBe(REFUSE);
  expect(c.rule).toBe(rule);
  expect(c.reason).not.toBe('');
  return c;
}

describe('cmd-policy: the verdicts are distinct', () => {
  it('FORWARD, RESHADOW and REFUSE are three different values', () => {
    expect(new Set([FORWARD, RESHADOW, REFUSE]).size).toBe(3);
  });
});

describe('cmd-policy: CFGI_STE (0x03)', () => {
  it('Leaf=1 → reshadow that StreamID (then forward)', () => {
    const c = ctx();
    const w = cmd(OPC.CFGI_STE, { sid: 0x1234, leaf: 1 });
    const copy = w.slice();
    expect(checkCommand(w, c)).toBe(RESHADOW);
    expect(c.sid).toBe(0x1234);
    expect([...w]).toEqual([...copy]);
  });

  it('the StreamID is taken as an unsigned 32-bit value', () => {
    const c = ctx();
    expect(checkCommand(cmd(OPC.CFGI_STE, { sid: 0xffff_fff0, leaf: 1 }), c)).toBe(RESHADOW);
    expect(c.sid).toBe(0xffff_fff0);
  });

  it('Leaf=0 is refused under cfgi-leaf (attack 7), and does not ask for a reshadow', () => {
    const c = expectRefused(cmd(OPC.CFGI_STE, { sid: 8, leaf: 0 }), 'cfgi-leaf');
    expect(c.sid).toBe(-1);
    expect(c.reason).toContain('8');
  });

  it('Leaf is DW1 bit 0 only: other DW1 bits set with Leaf=0 are still refused', () => {
    expectRefused(cmd(OPC.CFGI_STE, { sid: 8, w2: 0xfffe }), 'cfgi-leaf');
  });

  it('with cfgi-leaf weakened, Leaf=0 is reshadowed like Leaf=1', () => {
    const c = ctx(['cfgi-leaf']);
    expect(checkCommand(cmd(OPC.CFGI_STE, { sid: 9, leaf: 0 }), c)).toBe(RESHADOW);
    expect(c.sid).toBe(9);
  });
});

describe('cmd-policy: CFGI_STE_RANGE / CFGI_ALL (0x04)', () => {
  it('Range = 31 (CFGI_ALL) is forwarded unchanged', () => {
    expectForwardedUnchanged(cmd(OPC.CFGI_STE_RANGE, { sid: 0, range: 31 }));
  });

  it('every Range other than 31 is refused under cfgi-all-range (attack 8)', () => {
    for (let r = 0; r < 31; r++) {
      const c = expectRefused(cmd(OPC.CFGI_STE_RANGE, { sid: 0, range: r }), 'cfgi-all-range');
      expect(c.reason).toContain(`Range=${r}`);
    }
  });

  it('with cfgi-all-range weakened, other ranges are forwarded', () => {
    expectForwardedUnchanged(
      cmd(OPC.CFGI_STE_RANGE, { sid: 0x100, range: 7 }),
      ctx(['cfgi-all-range']),
    );
  });
});

describe('cmd-policy: TLBI_NH_ASID / NH_VA / NH_VAA need VMID 0', () => {
  for (const [name, op] of [
    ['TLBI_NH_ASID', OPC.TLBI_NH_ASID],
    ['TLBI_NH_VA', OPC.TLBI_NH_VA],
    ['TLBI_NH_VAA', OPC.TLBI_NH_VAA],
  ] as const) {
    it(`${name} with VMID 0 is forwarded unchanged (ASID and address untouched)`, () => {
      expectForwardedUnchanged(cmd(op, { vmid: 0, asid: 0x55, w2: 0x1234_5001, w3: 0xff }));
    });
    it(`${name} with VMID ≠ 0 is refused under tlbi-vmid (attack 10)`, () => {
      for (const vmid of [1, 0x80, 0xffff]) {
        const c = expectRefused(cmd(op, { vmid, asid: 3 }), 'tlbi-vmid');
        expect(c.reason).toContain(name);
        expect(c.reason).toContain(String(vmid));
      }
    });
    it(`${name}: the ASID field (DW0[63:48]) is not mistaken for the VMID`, () => {
      expectForwardedUnchanged(cmd(op, { vmid: 0, asid: 0xffff }));
    });
    it(`${name} with VMID ≠ 0 is forwarded when tlbi-vmid is weakened`, () => {
      expectForwardedUnchanged(cmd(op, { vmid: 7 }), ctx(['tlbi-vmid']));
    });
  }
});

describe('cmd-policy: stage-2 and EL2 invalidations belong to the hypervisor (s2-tlbi)', () => {
  const refused = [
    ['TLBI_NH_ALL', OPC.TLBI_NH_ALL],
    ['TLBI_EL2_ALL', OPC.TLBI_EL2_ALL],
    ['TLBI_EL2_ASID', OPC.TLBI_EL2_ASID],
    ['TLBI_EL2_VA', OPC.TLBI_EL2_VA],
    ['TLBI_EL2_VAA', OPC.TLBI_EL2_VAA],
    ['TLBI_S12_VMALL', OPC.TLBI_S12_VMALL],
    ['TLBI_S2_IPA', OPC.TLBI_S2_IPA],
  ] as const;
  for (const [name, op] of refused) {
    it(`${name} (0x${op.toString(16)}) is refused, even with VMID 0`, () => {
      expectRefused(cmd(op, { vmid: 0 }), 's2-tlbi');
      expectRefused(cmd(op, { vmid: 5 }), 's2-tlbi');
    });
  }
  it('with s2-tlbi weakened they are all forwarded unchanged', () => {
    for (const [, op] of refused) expectForwardedUnchanged(cmd(op, { vmid: 1 }), ctx(['s2-tlbi']));
  });
});

describe('cmd-policy: CMD_SYNC (0x46) and gap G1', () => {
  it('CS=IRQ is rewritten to CS=SEV with MSIAddress and MSIData cleared; MSH and MSIAttr kept', () => {
    const c = ctx();
    const w = cmdSync(1, 0x7c00_1000, 0xdead_beef, 3, 0xf);
    expect(checkCommand(w, c)).toBe(FORWARD);
    expect(w[0]! & 0xff).toBe(OPC.CMD_SYNC);
    expect((w[0]! >>> 12) & 3).toBe(2); // CS = SEV
    expect((w[0]! >>> 22) & 3).toBe(3); // MSH
    expect((w[0]! >>> 24) & 0xf).toBe(0xf); // MSIAttr
    expect(w[1]).toBe(0); // MSIData
    expect(w[2]).toBe(0); // MSIAddress[31:2]
    expect(w[3]! & 0xffffff).toBe(0); // MSIAddress[55:32]
    expect(c.syncRewrites).toBe(1);
  });

  it('a high MSIAddress (above 4 GiB) is cleared too', () => {
    const w = cmdSync(1, 0x12_3456_7000, 1);
    const c = ctx();
    checkCommand(w, c);
    expect([w[1], w[2], w[3]! & 0xffffff]).toEqual([0, 0, 0]);
  });

  it('rewrites are counted across commands', () => {
    const c = ctx();
    checkCommand(cmdSync(1, 0x4000_0000, 1), c);
    checkCommand(cmdSync(2), c);
    checkCommand(cmdSync(1, 0x4000_1000, 2), c);
    expect(c.syncRewrites).toBe(2);
  });

  it('CS=NONE and CS=SEV are forwarded unchanged', () => {
    expectForwardedUnchanged(cmdSync(0));
    expectForwardedUnchanged(cmdSync(2, 0, 0));
  });

  it('with sync-msi weakened (the v6-era behaviour) CS=IRQ reaches the hardware unchanged', () => {
    const c = ctx(['sync-msi']);
    expectForwardedUnchanged(cmdSync(1, 0x7c00_1000, 0xdead_beef), c);
  });
});

describe('cmd-policy: commands forwarded unchanged', () => {
  const forwarded = [
    ['PREFETCH_CONFIG', cmd(OPC.PREFETCH_CONFIG, { sid: 8 })],
    ['PREFETCH_ADDR', cmd(OPC.PREFETCH_ADDR, { sid: 8, w2: 0x4000_0005, w3: 1 })],
    ['CFGI_CD', cmd(OPC.CFGI_CD, { sid: 8, leaf: 1, w0: 5 << 12 })],
    ['CFGI_CD (Leaf=0)', cmd(OPC.CFGI_CD, { sid: 8, leaf: 0 })],
    ['CFGI_CD_ALL', cmd(OPC.CFGI_CD_ALL, { sid: 8 })],
    ['ATC_INV', cmd(OPC.ATC_INV, { sid: 8, w2: 0x1000 | 12 })],
    ['TLBI_NSNH_ALL', cmd(OPC.TLBI_NSNH_ALL)],
    ['TLBI_EL3_ALL', cmd(OPC.TLBI_EL3_ALL)],
    ['TLBI_EL3_VA', cmd(OPC.TLBI_EL3_VA, { w2: 0x1000 })],
    ['PRI_RESP', cmd(OPC.PRI_RESP, { sid: 8, w2: 2 << 12 })],
    ['RESUME', cmd(OPC.RESUME, { sid: 8 })],
    ['STALL_TERM', cmd(OPC.STALL_TERM, { sid: 8 })],
    ['reserved opcode 0x00', cmd(0x00, { sid: 1 })],
    ['reserved opcode 0xff', cmd(0xff, { sid: 1, w2: 7 })],
  ] as const;
  for (const [name, w] of forwarded) {
    it(`${name}`, () => expectForwardedUnchanged(w.slice()));
  }
});

describe('cmd-policy: property over arbitrary command words', () => {
  const S2 = new Set<number>([
    OPC.TLBI_NH_ALL,
    OPC.TLBI_EL2_ALL,
    OPC.TLBI_EL2_ASID,
    OPC.TLBI_EL2_VA,
    OPC.TLBI_EL2_VAA,
    OPC.TLBI_S12_VMALL,
    OPC.TLBI_S2_IPA,
  ]);
  const NH = new Set<number>([OPC.TLBI_NH_ASID, OPC.TLBI_NH_VA, OPC.TLBI_NH_VAA]);
  const interesting = fc.constantFrom(...Object.values(OPC), 0x07, 0x50, 0x5a, 0x60, 0x70);
  const word = fc.integer({ min: 0, max: 0xffff_ffff });

  it('each opcode gets its §1.6 verdict, and only CMD_SYNC is ever modified', () => {
    fc.assert(
      fc.property(
        fc.oneof(interesting, fc.integer({ min: 0, max: 255 })),
        word,
        word,
        word,
        word,
        (op, w0, w1, w2, w3) => {
          const w = new Uint32Array([((w0 & ~0xff) | op) >>> 0, w1, w2, w3]);
          const before = w.slice();
          const c = ctx();
          const v = checkCommand(w, c);
          if (S2.has(op)) return v === REFUSE && c.rule === 's2-tlbi';
          if (NH.has(op))
            return (w1 & 0xffff) === 0 ? v === FORWARD : v === REFUSE && c.rule === 'tlbi-vmid';
          if (op === OPC.CFGI_STE)
            return (w2 & 1) === 1
              ? v === RESHADOW && c.sid === w1
              : v === REFUSE && c.rule === 'cfgi-leaf';
          if (op === OPC.CFGI_STE_RANGE)
            return (w2 & 0x1f) === 31 ? v === FORWARD : v === REFUSE && c.rule === 'cfgi-all-range';
          if (op === OPC.CMD_SYNC) {
            if (v !== FORWARD) return false;
            const cs = (before[0]! >>> 12) & 3;
            if (cs !== 1) return [...w].every((x, i) => x === before[i]);
            return (
              ((w[0]! >>> 12) & 3) === 2 &&
              w[1] === 0 &&
              w[2] === 0 &&
              (w[3]! & 0xffffff) === 0 &&
              (w[0]! & ~0x3000) === (before[0]! & ~0x3000)
            );
          }
          return v === FORWARD && [...w].every((x, i) => x === before[i]);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('with every rule weakened nothing is refused and nothing is rewritten', () => {
    const all: RuleName[] = ['cfgi-leaf', 'cfgi-all-range', 'tlbi-vmid', 's2-tlbi', 'sync-msi'];
    fc.assert(
      fc.property(
        fc.oneof(interesting, fc.integer({ min: 0, max: 255 })),
        word,
        word,
        word,
        word,
        (op, w0, w1, w2, w3) => {
          const w = new Uint32Array([((w0 & ~0xff) | op) >>> 0, w1, w2, w3]);
          const before = w.slice();
          const v = checkCommand(w, ctx(all));
          return v !== REFUSE && [...w].every((x, i) => x === before[i]);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
