/**
 * STE sanitization (hyp/smmuv3/ste-sanitize.ts) against designs.md §1.7: the host's Config is mapped
 * (V=0 and abort kept, bypass → stage 2, stage 1 → nested, stage 2 stays stage 2, nested and
 * the reserved values refused as ste-config leaving an abort STE), DW2/DW3 are the idmap's
 * (VMID 0, S2PTW=1, S2R=1, S2AA64=1, S2TTB = the idmap VTTBR), SHCFG is forced to "use
 * incoming", EATS is forced to 0 (or split-stage with allowAts) and STRW must be 0; a weakened
 * rule copies its field verbatim.
 *
 * Field positions are the reference's (designs.md Appendix A / smmuv3.md), restated here.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  sanitizeSte,
  abortSte,
  type IdmapS2,
  type SteSanitizeEnv,
} from '../../../hyp/smmuv3/ste-sanitize.ts';
import type { RuleName } from '../../../hyp/policy/policy.ts';

// ---- the STE as eight 64-bit double-words -----------------------------------------------------

type F = readonly [dw: number, hi: number, lo: number];
const V: F = [0, 0, 0];
const CONFIG: F = [0, 3, 1];
const S1FMT: F = [0, 5, 4];
const S1CTXPTR: F = [0, 51, 6];
const S1CDMAX: F = [0, 63, 59];
const S1DSS: F = [1, 1, 0];
const S1CIR: F = [1, 3, 2];
const S1COR: F = [1, 5, 4];
const S1CSH: F = [1, 7, 6];
const EATS: F = [1, 29, 28];
const STRW: F = [1, 31, 30];
const SHCFG: F = [1, 45, 44];
const S2VMID: F = [2, 15, 0];
const S2T0SZ: F = [2, 37, 32];
const S2SL0: F = [2, 39, 38];
const S2IR0: F = [2, 41, 40];
const S2OR0: F = [2, 43, 42];
const S2SH0: F = [2, 45, 44];
const S2TG: F = [2, 47, 46];
const S2PS: F = [2, 50, 48];
const S2AA64: F = [2, 51, 51];
const S2ENDI: F = [2, 52, 52];
const S2AFFD: F = [2, 53, 53];
const S2PTW: F = [2, 54, 54];
const S2HD: F = [2, 55, 55];
const S2HA: F = [2, 56, 56];
const S2S: F = [2, 57, 57];
const S2R: F = [2, 58, 58];
const S2TTB: F = [3, 51, 4];

const CFG_ABORT = 0b000,
  CFG_BYPASS = 0b100,
  CFG_S1 = 0b101,
  CFG_S2 = 0b110,
  CFG_NESTED = 0b111;

function dws(w: Uint32Array): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < 8; i++) out.push((BigInt(w[2 * i + 1]!) << 32n) | BigInt(w[2 * i]!));
  return out;
}
function fromDws(d: readonly bigint[]): Uint32Array {
  const w = new Uint32Array(16);
  for (let i = 0; i < 8; i++) {
    const v = d[i] ?? 0n;
    w[2 * i] = Number(v & 0xffff_ffffn);
    w[2 * i + 1] = Number((v >> 32n) & 0xffff_ffffn);
  }
  return w;
}
function get(w: Uint32Array, [d, hi, lo]: F): number {
  return Number((dws(w)[d]! >> BigInt(lo)) & ((1n << BigInt(hi - lo + 1)) - 1n));
}
/** Build a host STE from field values. */
function ste(
  fields: Array<[F, number | bigint]>,
  raw: Partial<Record<number, bigint>> = {},
): Uint32Array {
  const d = Array.from({ length: 8 }, (_, i) => raw[i] ?? 0n);
  for (const [[dw, hi, lo], v] of fields) {
    const m = ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
    d[dw] = (d[dw]! & ~m) | ((BigInt(v) << BigInt(lo)) & m);
  }
  return fromDws(d);
}

/** an idmap configuration as the hypervisor's S2 io-pgtable would give it */
const S2: IdmapS2 = { tsz: 16, sl: 2, tg: 0, ps: 5, irgn: 1, orgn: 1, sh: 3, vttbr: 0x7c05_6000 };
function env(o: { weak?: RuleName[]; allowAts?: boolean; s2?: IdmapS2 } = {}): SteSanitizeEnv {
  const weak = o.weak ?? [];
  return { weak: (r) => weak.includes(r), allowAts: o.allowAts ?? false, s2: o.s2 ?? S2 };
}

/** host junk in every S2 field (which the host does not control), and in DW4..DW7 */
const HOST_S2_JUNK: Partial<Record<number, bigint>> = {
  2: 0xffff_ffff_ffff_0005n, // VMID 5, every VTCR/S2 flag set
  3: 0x0000_0000_4123_4560n, // S2TTB = host memory
  4: 0x1111n,
  5: 0x2222n,
  6: 0x3333n,
  7: 0x4444n,
};

/** the checks every sanitized valid, translating STE must pass */
function expectIdmapS2(w: Uint32Array, s2 = S2): void {
  expect(get(w, S2VMID)).toBe(0);
  expect(get(w, S2T0SZ)).toBe(s2.tsz);
  expect(get(w, S2SL0)).toBe(s2.sl);
  expect(get(w, S2IR0)).toBe(s2.irgn);
  expect(get(w, S2OR0)).toBe(s2.orgn);
  expect(get(w, S2SH0)).toBe(s2.sh);
  expect(get(w, S2TG)).toBe(s2.tg);
  expect(get(w, S2PS)).toBe(s2.ps);
  expect(get(w, S2AA64)).toBe(1);
  expect(get(w, S2PTW)).toBe(1);
  expect(get(w, S2R)).toBe(1);
  expect(get(w, S2ENDI)).toBe(0);
  expect(get(w, S2AFFD)).toBe(0);
  expect(get(w, S2HD)).toBe(0);
  expect(get(w, S2HA)).toBe(0);
  expect(get(w, S2S)).toBe(0);
  expect(get(w, S2TTB) * 16).toBe(s2.vttbr);
  // nothing else in DW2/DW3 (e.g. the IMPLEMENTATION DEFINED DW2[31:16], S2TTB's upper bits)
  const d = dws(w);
  const dw2Known =
    0xffffn |
    (0x7ffffn << 32n) |
    (1n << 51n) |
    (1n << 52n) |
    (1n << 53n) |
    (1n << 54n) |
    (0xfn << 55n);
  expect(d[2]! & ~dw2Known).toBe(0n);
  expect(d[3]! & ~(((1n << 48n) - 1n) << 4n)).toBe(0n);
}

/** the abort STE a refusal leaves: V=1, Config=abort, every other bit 0 */
function expectAbortSte(w: Uint32Array): void {
  expect(get(w, V)).toBe(1);
  expect(get(w, CONFIG)).toBe(CFG_ABORT);
  expect(dws(w)).toEqual([1n, 0n, 0n, 0n, 0n, 0n, 0n, 0n]);
}

// ---- the Config table ------------------------------------------------------------------------

describe('ste-sanitize: host Config → hardware Config (designs.md §1.7)', () => {
  it('V=0 stays V=0: DW0/DW1 as the host wrote them, DW2/DW3 zeroed', () => {
    const w = ste(
      [
        [V, 0],
        [CONFIG, CFG_S1],
        [S1CTXPTR, 0x4123_4000 / 64],
        [EATS, 1],
      ],
      HOST_S2_JUNK,
    );
    const hostDw0 = dws(w)[0];
    const hostDw1 = dws(w)[1];
    expect(sanitizeSte(w, env())).toBe(null);
    expect(get(w, V)).toBe(0);
    expect(dws(w)[0]).toBe(hostDw0);
    expect(dws(w)[1]).toBe(hostDw1);
    expect(dws(w)[2]).toBe(0n);
    expect(dws(w)[3]).toBe(0n);
  });

  it('abort stays abort, DW2/DW3 zeroed', () => {
    const w = ste(
      [
        [V, 1],
        [CONFIG, CFG_ABORT],
      ],
      HOST_S2_JUNK,
    );
    expect(sanitizeSte(w, env())).toBe(null);
    expect(get(w, V)).toBe(1);
    expect(get(w, CONFIG)).toBe(CFG_ABORT);
    expect(dws(w)[2]).toBe(0n);
    expect(dws(w)[3]).toBe(0n);
  });

  it('bypass (0b100) becomes stage-2 only (0b110) with the idmap (attack 2)', () => {
    const w = ste(
      [
        [V, 1],
        [CONFIG, CFG_BYPASS],
        [SHCFG, 1],
      ],
      HOST_S2_JUNK,
    );
    expect(sanitizeSte(w, env())).toBe(null);
    expect(get(w, V)).toBe(1);
    expect(get(w, CONFIG)).toBe(CFG_S2);
    expectIdmapS2(w);
  });

  it("stage 1 (0b101) becomes nested (0b111); the host's stage-1 fields are kept", () => {
    const ctx = 0x4123_4000 / 64;
    const w = ste(
      [
        [V, 1],
        [CONFIG, CFG_S1],
        [S1FMT, 1],
        [S1CTXPTR, ctx],
        [S1CDMAX, 5],
        [S1DSS, 2],
        [S1CIR, 1],
        [S1COR, 1],
        [S1CSH, 3],
      ],
      HOST_S2_JUNK,
    );
    expect(sanitizeSte(w, env())).toBe(null);
    expect(get(w, CONFIG)).toBe(CFG_NESTED);
    expect(get(w, S1FMT)).toBe(1);
    expect(get(w, S1CTXPTR)).toBe(ctx);
    expect(get(w, S1CDMAX)).toBe(5);
    expect(get(w, S1DSS)).toBe(2);
    expect([get(w, S1CIR), get(w, S1COR), get(w, S1CSH)]).toEqual([1, 1, 3]);
    expectIdmapS2(w);
  });

  it("stage 2 (0b110) stays stage 2, with the host's VMID and S2TTB replaced by the idmap's (attack 3)", () => {
    const w = ste(
      [
        [V, 1],
        [CONFIG, CFG_S2],
      ],
      HOST_S2_JUNK,
    );
    expect(get(w, S2VMID)).toBe(5);
    expect(sanitizeSte(w, env())).toBe(null);
    expect(get(w, CONFIG)).toBe(CFG_S2);
    expectIdmapS2(w);
  });

  it('nested (0b111) is refused as ste-config and leaves an abort STE (attack 3)', () => {
    const w = ste(
      [
        [V, 1],
        [CONFIG, CFG_NESTED],
        [S1CTXPTR, 0x4100_0000 / 64],
      ],
      HOST_S2_JUNK,
    );
    const r = sanitizeSte(w, env());
    expect(r?.rule).toBe('ste-config');
    expect(r?.reason).toMatch(/0b111/);
    expectAbortSte(w);
  });

  for (const cfg of [0b001, 0b010, 0b011]) {
    it(`reserved Config 0b${cfg.toString(2).padStart(3, '0')} is refused as ste-config and leaves an abort STE (attack 4)`, () => {
      const w = ste(
        [
          [V, 1],
          [CONFIG, cfg],
        ],
        HOST_S2_JUNK,
      );
      const r = sanitizeSte(w, env());
      expect(r?.rule).toBe('ste-config');
      expect(r?.reason).toContain('reserved');
      expectAbortSte(w);
    });
  }

  it('with different idmap parameters, DW2/DW3 follow the idmap, not a constant', () => {
    const other: IdmapS2 = {
      tsz: 24,
      sl: 1,
      tg: 0,
      ps: 2,
      irgn: 0,
      orgn: 0,
      sh: 2,
      vttbr: 0x7d00_0000,
    };
    const w = ste([
      [V, 1],
      [CONFIG, CFG_BYPASS],
    ]);
    expect(sanitizeSte(w, env({ s2: other }))).toBe(null);
    expectIdmapS2(w, other);
  });

  it('DW4..DW7 are cleared', () => {
    const w = ste(
      [
        [V, 1],
        [CONFIG, CFG_S1],
      ],
      HOST_S2_JUNK,
    );
    sanitizeSte(w, env());
    expect(dws(w).slice(4)).toEqual([0n, 0n, 0n, 0n]);
  });
});

describe('ste-sanitize: DW1 fields', () => {
  it('SHCFG is forced to 1 ("use incoming") whatever the host wrote', () => {
    for (const sh of [0, 1, 2, 3]) {
      const w = ste([
        [V, 1],
        [CONFIG, CFG_BYPASS],
        [SHCFG, sh],
      ]);
      expect(sanitizeSte(w, env())).toBe(null);
      expect(get(w, SHCFG)).toBe(1);
    }
  });

  it('EATS is forced to 0 without allowAts (gap G3, attack 6)', () => {
    for (const eats of [0, 1, 2, 3]) {
      const w = ste([
        [V, 1],
        [CONFIG, CFG_S1],
        [EATS, eats],
      ]);
      expect(sanitizeSte(w, env())).toBe(null);
      expect(get(w, EATS)).toBe(0);
    }
  });

  it('with allowAts, EATS≠0 becomes split-stage (2), which returns IPAs; EATS=0 stays 0', () => {
    for (const [eats, want] of [
      [0, 0],
      [1, 2],
      [2, 2],
      [3, 2],
    ] as const) {
      const w = ste([
        [V, 1],
        [CONFIG, CFG_S1],
        [EATS, eats],
      ]);
      expect(sanitizeSte(w, env({ allowAts: true }))).toBe(null);
      expect(get(w, EATS)).toBe(want);
    }
  });

  it('STRW ≠ 0 (EL2 regimes) is refused as ste-strw and leaves an abort STE (attack 5)', () => {
    for (const strw of [1, 2, 3]) {
      const w = ste(
        [
          [V, 1],
          [CONFIG, CFG_S1],
          [STRW, strw],
        ],
        HOST_S2_JUNK,
      );
      const r = sanitizeSte(w, env());
      expect(r?.rule).toBe('ste-strw');
      expect(r?.reason).toContain(`STRW=${strw}`);
      expectAbortSte(w);
    }
  });

  it('STRW = 0 passes', () => {
    const w = ste([
      [V, 1],
      [CONFIG, CFG_S1],
      [STRW, 0],
    ]);
    expect(sanitizeSte(w, env())).toBe(null);
    expect(get(w, STRW)).toBe(0);
  });

  it('a STE breaking two rules reports the Config refusal', () => {
    const w = ste([
      [V, 1],
      [CONFIG, CFG_NESTED],
      [STRW, 2],
    ]);
    expect(sanitizeSte(w, env())?.rule).toBe('ste-config');
    expectAbortSte(w);
  });
});

describe('ste-sanitize: weakened rules copy verbatim', () => {
  it('ste-config weakened: bypass stays bypass (the hole the rule closes)', () => {
    const w = ste([
      [V, 1],
      [CONFIG, CFG_BYPASS],
    ]);
    expect(sanitizeSte(w, env({ weak: ['ste-config'] }))).toBe(null);
    expect(get(w, CONFIG)).toBe(CFG_BYPASS);
  });

  it('ste-config weakened: nested and reserved values are copied, not refused', () => {
    for (const cfg of [CFG_NESTED, 0b001, 0b010, 0b011]) {
      const w = ste([
        [V, 1],
        [CONFIG, cfg],
      ]);
      expect(sanitizeSte(w, env({ weak: ['ste-config'] }))).toBe(null);
      expect(get(w, CONFIG)).toBe(cfg);
    }
  });

  it('ste-eats weakened: EATS is copied (gap G3 reopened)', () => {
    const w = ste([
      [V, 1],
      [CONFIG, CFG_S1],
      [EATS, 1],
    ]);
    expect(sanitizeSte(w, env({ weak: ['ste-eats'] }))).toBe(null);
    expect(get(w, EATS)).toBe(1);
  });

  it('ste-strw weakened: STRW is copied and not refused', () => {
    const w = ste([
      [V, 1],
      [CONFIG, CFG_S1],
      [STRW, 2],
    ]);
    expect(sanitizeSte(w, env({ weak: ['ste-strw'] }))).toBe(null);
    expect(get(w, STRW)).toBe(2);
    expect(get(w, CONFIG)).toBe(CFG_NESTED);
  });

  it("ste-s2-fields weakened: the host's DW2/DW3 reach the hardware (VMID 5, host S2TTB)", () => {
    const w = ste(
      [
        [V, 1],
        [CONFIG, CFG_S2],
      ],
      HOST_S2_JUNK,
    );
    expect(sanitizeSte(w, env({ weak: ['ste-s2-fields'] }))).toBe(null);
    expect(dws(w)[2]).toBe(HOST_S2_JUNK[2]);
    expect(dws(w)[3]).toBe(HOST_S2_JUNK[3]);
    expect(get(w, S2VMID)).toBe(5);
  });

  it("ste-s2-fields weakened: an abort STE keeps the host's DW2/DW3 too", () => {
    const w = ste(
      [
        [V, 1],
        [CONFIG, CFG_ABORT],
      ],
      HOST_S2_JUNK,
    );
    expect(sanitizeSte(w, env({ weak: ['ste-s2-fields'] }))).toBe(null);
    expect(dws(w)[2]).toBe(HOST_S2_JUNK[2]);
  });
});

describe('ste-sanitize: abortSte', () => {
  it('is V=1, Config=abort and nothing else, whatever was there', () => {
    const w = new Uint32Array(16).fill(0xffff_ffff);
    abortSte(w);
    expectAbortSte(w);
  });
});

describe('ste-sanitize: property over arbitrary host STEs', () => {
  const dw = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
  it('the result is V=0, an abort, or a stage-2/nested STE on the idmap with no ATS and NS-EL1', () => {
    fc.assert(
      fc.property(fc.array(dw, { minLength: 8, maxLength: 8 }), fc.boolean(), (d, allowAts) => {
        const w = fromDws(d);
        const hostCfg = get(w, CONFIG);
        const hostV = get(w, V);
        const r = sanitizeSte(w, env({ allowAts }));
        const out = dws(w);
        if (r) {
          // refused: exactly the abort STE, and only for a reason §1.7 names
          if (!['ste-config', 'ste-strw'].includes(r.rule)) return false;
          return out.every((x, i) => x === (i === 0 ? 1n : 0n));
        }
        if (out[2] !== 0n && (!hostV || hostCfg === CFG_ABORT)) return false;
        if (!hostV) return get(w, V) === 0;
        if (hostCfg === CFG_ABORT) return get(w, CONFIG) === CFG_ABORT && out[3] === 0n;
        const cfg = get(w, CONFIG);
        if (cfg !== CFG_S2 && cfg !== CFG_NESTED) return false;
        if ((hostCfg === CFG_S1) !== (cfg === CFG_NESTED)) return false;
        if (
          get(w, S2VMID) !== 0 ||
          get(w, S2PTW) !== 1 ||
          get(w, S2R) !== 1 ||
          get(w, S2AA64) !== 1
        )
          return false;
        if (get(w, S2TTB) * 16 !== S2.vttbr) return false;
        if (get(w, STRW) !== 0 || get(w, SHCFG) !== 1) return false;
        const eats = get(w, EATS);
        if (allowAts ? eats !== 0 && eats !== 2 : eats !== 0) return false;
        return out.slice(4).every((x) => x === 0n);
      }),
      { numRuns: 1000 },
    );
  });
});
