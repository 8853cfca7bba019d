/**
 * Property: the caches are invisible to correct software. For random valid translation tables
 * (random granule, input size / start level, non-overlapping page and block mappings with
 * random permissions and Access flags, some invalid entries) in stage 1, stage 2 and nested
 * configurations, a machine with the configuration cache and IOTLB on and one with them off
 * give the same outcome (ok and PA, or the same fault and event) for a sequence of DMAs that
 * repeats addresses (so the IOTLB really hits). Interleaved leaf changes are followed by the
 * invalidation the architecture requires (reference §4.4, §7: TLBI_NH_VA for a stage-1 leaf,
 * TLBI_S2_IPA for a stage-2 leaf, plus TLBI_NH_ALL of the VMID when nested entries may hold
 * it), after which the two machines must agree again.
 *
 * Table geometry follows §6.1 (stage-1 start = 4 − ceil((IAS − g)/stride)) and §6.3 (S2SL0 →
 * start level, min/max IAS per start level).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { OP, Rig, cmd, psEnc, tgEnc, type Access, type Cmd } from './rig.ts';
import type { TxnResult } from '../../../../hw/smmu/smmu.ts';

type Mode = 's1' | 's2' | 'nested';

interface Geo {
  g: number;
  ias: number;
  start: number;
  root: number;
}

const shift = (g: number, level: number): number => g + (3 - level) * (g - 3);
const idxBits = (geo: Geo, level: number): number =>
  level === geo.start ? geo.ias - shift(geo.g, level) : geo.g - 3;

/** Levels at which a leaf may sit (reference §6.1 table: 4 KB L1/L2 blocks, 16 KB and 64 KB L2 blocks; 48-bit OA). */
function leafLevels(geo: Geo): number[] {
  const blocks = geo.g === 12 ? [1, 2] : [2];
  return [...blocks.filter((l) => l >= geo.start), 3];
}

/** Stage-2 {start level → S2SL0, IAS range} per §6.3, restricted to S2T0SZ 16..39 (IAS 25..48). */
function s2Choices(g: number): Array<{ start: number; sl0: number; min: number; max: number }> {
  const stride = g - 3;
  const out: Array<{ start: number; sl0: number; min: number; max: number }> = [];
  for (const start of [0, 1, 2, 3]) {
    const sl0 = g === 12 ? 2 - start : 3 - start;
    if (sl0 < 0 || sl0 > 2) continue;
    const minIas = (3 - start) * stride + g + 1;
    const maxIas = minIas + stride - 1 + 4;
    const min = Math.max(minIas, 25);
    const max = Math.min(maxIas, 48);
    if (min <= max) out.push({ start, sl0, min, max });
  }
  return out;
}

interface Leaf {
  stage: 1 | 2;
  level: number;
  ia: number;
  size: number;
  desc: bigint;
  /** descriptor address (filled when written) */
  at: number;
}

interface Spec {
  mode: Mode;
  s1?: Geo;
  s2?: Geo & { sl0: number };
  leaves: Leaf[];
  /** addresses the transactions pick from */
  targets: number[];
  ops: Array<
    { kind: 'txn'; addr: number; a: Access } | { kind: 'mutate'; leaf: number; desc: bigint }
  >;
}

/** the CD and the stage-1 tables (identity-mapped by stage 2 when nested) */
const CD_ADDR = 0x4100_0000;
const S1_ROOT = 0x4110_0000;
const S1_POOL = 0x4120_0000;
const S2_ROOT = 0x4200_0000; // aligned to 1 MB: up to 16 concatenated 64 KB tables
const S2_POOL = 0x4210_0000;
/** nested: the IPA window stage 1 outputs into, and stage 2 maps randomly */
const WIN = 0x2_0000_0000;
const WIN_SIZE = 0x1_0000_0000;
const SID = 1;
const ASID = 5;

/** Raw random material from fast-check, turned into a valid Spec by `makeSpec`. */
const leafArb = fc.record({
  lvl: fc.nat(),
  where: fc.nat(),
  where2: fc.nat(),
  out: fc.nat(),
  bits: fc.noBias(fc.nat({ max: 0xffff })),
});
const opArb = fc.record({
  mutate: fc.nat({ max: 9 }),
  pick: fc.nat(),
  off: fc.nat(),
  write: fc.boolean(),
  priv: fc.boolean(),
  instr: fc.nat({ max: 5 }),
  bits: fc.noBias(fc.nat({ max: 0xffff })),
  out: fc.nat(),
});
const rawArb = fc.record({
  mode: fc.constantFrom<Mode>('s1', 's2', 'nested'),
  gi: fc.nat({ max: 2 }),
  iasPick: fc.nat(),
  s2Pick: fc.nat(),
  s1Leaves: fc.array(leafArb, { minLength: 1, maxLength: 8 }),
  s2Leaves: fc.array(leafArb, { minLength: 1, maxLength: 8 }),
  extra: fc.array(fc.nat(), { maxLength: 3 }),
  ops: fc.array(opArb, { minLength: 8, maxLength: 32 }),
});
type ArbOf<A> = A extends fc.Arbitrary<infer T> ? T : never;
type Raw = ArbOf<typeof rawArb>;
type RawLeaf = ArbOf<typeof leafArb>;

function s1Desc(level: number, oa: number, bits: number): bigint {
  if ((bits & 0xf) === 0) return 0n; // invalid (1 in 16)
  if ((bits & 0xf) === 1 && level === 3) return BigInt(oa) | 1n; // type 0b01 at L3: invalid
  const ap = (bits >> 4) & 4 ? 0b01 : (bits >> 4) & 3; // AP=0b01 (RW at EL0 and EL1) more than half of the time
  const af = (bits >> 7) & 7 ? 1n : 0n; // AF=0 one time in 8
  const ng = (bits >> 8) & 1;
  const uxn = (bits >> 9) & 3 ? 0 : 1; // XN bits one time in 4
  const pxn = (bits >> 11) & 3 ? 0 : 1;
  return (
    BigInt(oa) |
    BigInt(level === 3 ? 3 : 1) |
    (1n << 2n) |
    (BigInt(ap) << 6n) |
    (3n << 8n) |
    (af << 10n) |
    (BigInt(ng) << 11n) |
    (BigInt(pxn) << 53n) |
    (BigInt(uxn) << 54n)
  );
}

function s2Desc(level: number, oa: number, bits: number): bigint {
  if ((bits & 0xf) === 0) return 0n;
  if ((bits & 0xf) === 1 && level === 3) return BigInt(oa) | 1n;
  const s2ap = (bits >> 4) & 4 ? 0b11 : (bits >> 4) & 3;
  const af = (bits >> 7) & 7 ? 1n : 0n;
  const xn = (bits >> 10) & 3 ? 0 : 1;
  return (
    BigInt(oa) |
    BigInt(level === 3 ? 3 : 1) |
    (0xfn << 2n) |
    (BigInt(s2ap) << 6n) |
    (3n << 8n) |
    (af << 10n) |
    (BigInt(xn) << 54n)
  );
}

/** Random non-overlapping leaves of one stage. `iaSpace`/`oaOf` place inputs and outputs. */
function makeLeaves(
  stage: 1 | 2,
  geo: Geo,
  raws: RawLeaf[],
  iaLo: number,
  iaSize: number,
  oaOf: (r: RawLeaf, size: number) => number,
): Leaf[] {
  const levels = leafLevels(geo);
  const out: Leaf[] = [];
  for (const r of raws) {
    const level = levels[r.lvl % levels.length]!;
    const size = 2 ** shift(geo.g, level);
    if (size > iaSize) continue;
    const slots = iaSize / size;
    // concentrate half of the leaves in the first 64 slots, so that they share tables
    const slot =
      r.where % 2 === 0 ? r.where2 % Math.min(slots, 64) : (r.where2 * 2 ** 31 + r.where) % slots;
    const ia = iaLo + Math.floor(slot) * size;
    if (out.some((l) => ia < l.ia + l.size && l.ia < ia + size)) continue;
    const oa = oaOf(r, size);
    out.push({
      stage,
      level,
      ia,
      size,
      desc: stage === 1 ? s1Desc(level, oa, r.bits) : s2Desc(level, oa, r.bits),
      at: -1,
    });
  }
  return out;
}

function makeSpec(raw: Raw): Spec {
  const g = [12, 14, 16][raw.gi]!;
  const mode = raw.mode;
  const spec: Spec = { mode, leaves: [], targets: [], ops: [] };
  const randomOa = (r: RawLeaf, size: number) => (r.out % Math.floor(2 ** 40 / size)) * size;
  if (mode !== 's2') {
    const ias = 25 + (raw.iasPick % 24); // T0SZ 16..39
    const start = 4 - Math.ceil((ias - g) / (g - 3));
    spec.s1 = { g, ias, start, root: S1_ROOT };
  }
  if (mode !== 's1') {
    let choices = s2Choices(g);
    // nested: stage 2 must reach the RAM tables and the IPA window [2^33, 2^33 + 2^32)
    if (mode === 'nested')
      choices = choices
        .map((c) => ({ ...c, min: Math.max(c.min, 35) }))
        .filter((c) => c.min <= c.max && c.start <= 2);
    const c = choices[raw.s2Pick % choices.length]!;
    const ias = c.min + (Math.floor(raw.s2Pick / 7) % (c.max - c.min + 1));
    spec.s2 = { g, ias, start: c.start, root: S2_ROOT, sl0: c.sl0 };
  }
  if (mode === 's1') {
    spec.leaves = makeLeaves(1, spec.s1!, raw.s1Leaves, 0, 2 ** spec.s1!.ias, randomOa);
  } else if (mode === 's2') {
    spec.leaves = makeLeaves(2, spec.s2!, raw.s2Leaves, 0, 2 ** spec.s2!.ias, randomOa);
  } else {
    const s2Leaves = makeLeaves(2, spec.s2!, raw.s2Leaves, WIN, WIN_SIZE, randomOa);
    // stage-1 outputs: mostly inside a stage-2 leaf (so that both stages succeed), else anywhere in the window
    const inWin = (r: RawLeaf, size: number) => {
      const l2 = s2Leaves[r.out % s2Leaves.length];
      if (l2 && r.out % 4 !== 0 && size <= l2.size)
        return l2.ia + (Math.floor(r.out / 4) % (l2.size / size)) * size;
      return WIN + (r.out % (WIN_SIZE / size)) * size;
    };
    spec.leaves = [
      ...makeLeaves(1, spec.s1!, raw.s1Leaves, 0, 2 ** spec.s1!.ias, inWin),
      ...s2Leaves,
    ];
  }
  // transaction targets: inside each input-stage leaf (and its first byte), plus unmapped addresses
  const inStage = spec.leaves.filter((l) => l.stage === (mode === 's2' ? 2 : 1));
  const iasIn = (mode === 's2' ? spec.s2! : spec.s1!).ias;
  for (const l of inStage) spec.targets.push(l.ia, l.ia + (l.size - 0x10));
  for (const e of raw.extra)
    spec.targets.push(e % 3 === 0 ? 2 ** iasIn + (e % 0x1000) : (e * 0x1000) % 2 ** iasIn);
  if (spec.targets.length === 0) spec.targets.push(0);
  for (const o of raw.ops) {
    if (o.mutate === 0 && spec.leaves.length > 0) {
      const li = o.pick % spec.leaves.length;
      const l = spec.leaves[li]!;
      const oa =
        mode === 'nested' && l.stage === 1
          ? WIN + (o.out % (WIN_SIZE / l.size)) * l.size
          : (o.out % Math.floor(2 ** 40 / l.size)) * l.size;
      spec.ops.push({
        kind: 'mutate',
        leaf: li,
        desc: l.stage === 1 ? s1Desc(l.level, oa, o.bits) : s2Desc(l.level, oa, o.bits),
      });
    } else {
      const base = spec.targets[o.pick % spec.targets.length]!;
      const leaf = inStage.find((l) => base >= l.ia && base < l.ia + l.size);
      const addr = leaf ? leaf.ia + ((base - leaf.ia + (o.off % 3) * 0x10) % leaf.size) : base;
      spec.ops.push({
        kind: 'txn',
        addr,
        a: { write: o.write, priv: o.priv, instr: o.instr === 0 && !o.write },
      });
    }
  }
  return spec;
}

// ---- building a machine from a spec ---------------------------------------------------------------

/** Write a leaf, creating the tables above it (reference §6.1 indexing; table descriptor = next | 0b11). */
function writeLeaf(
  r: Rig,
  geo: Geo,
  pool: { next: number },
  ia: number,
  level: number,
  desc: bigint,
): number {
  let table = geo.root;
  for (let l = geo.start; l < level; l++) {
    const ea = table + (Math.floor(ia / 2 ** shift(geo.g, l)) % 2 ** idxBits(geo, l)) * 8;
    const d = r.r64(ea);
    if ((d & 3n) === 3n) {
      table = Number(d & 0x0000_ffff_ffff_f000n);
    } else {
      const gsz = 2 ** geo.g;
      const t = Math.ceil(pool.next / gsz) * gsz;
      pool.next = t + gsz;
      r.w64(ea, BigInt(t) | 3n);
      table = t;
    }
  }
  const ea = table + (Math.floor(ia / 2 ** shift(geo.g, level)) % 2 ** idxBits(geo, level)) * 8;
  r.w64(ea, desc);
  return ea;
}

function build(spec: Spec, caching: boolean): Rig {
  const r = new Rig({ caching });
  const p1 = { next: S1_POOL };
  const p2 = { next: S2_POOL };
  if (spec.s2 && spec.mode === 'nested') {
    // identity map of the RAM holding the CD and the stage-1 tables: the largest block the geometry allows
    const s2 = spec.s2;
    const level = s2.g === 12 && s2.start <= 1 ? 1 : 2;
    const size = 2 ** shift(s2.g, level);
    for (let a = 0x4000_0000; a < 0x4200_0000; a += size) {
      const base = a - (a % size);
      writeLeaf(
        r,
        s2,
        p2,
        base,
        level,
        BigInt(base) | 1n | (0xfn << 2n) | (3n << 6n) | (3n << 8n) | (1n << 10n),
      );
      a = base;
    }
  }
  for (const l of spec.leaves)
    l.at = writeLeaf(
      r,
      l.stage === 1 ? spec.s1! : spec.s2!,
      l.stage === 1 ? p1 : p2,
      l.ia,
      l.level,
      l.desc,
    );
  if (spec.s1) {
    r.cd(CD_ADDR, {
      T0SZ: 64 - spec.s1.ias,
      TG0: tgEnc(2 ** spec.s1.g),
      IR0: 1,
      OR0: 1,
      SH0: 3,
      EPD1: 1,
      V: 1,
      IPS: psEnc(48),
      AA64: 1,
      R: 1,
      A: 1,
      ASID,
      TTB0: spec.s1.root,
    });
  }
  const s2f = spec.s2
    ? {
        S2VMID: 3,
        S2T0SZ: 64 - spec.s2.ias,
        S2SL0: spec.s2.sl0,
        S2TG: tgEnc(2 ** spec.s2.g),
        S2PS: 5,
        S2AA64: 1,
        S2R: 1,
        S2IR0: 1,
        S2OR0: 1,
        S2SH0: 3,
        S2TTB: spec.s2.root,
      }
    : {};
  const config = spec.mode === 's1' ? 0b101 : spec.mode === 's2' ? 0b110 : 0b111;
  r.ste(SID, {
    V: 1,
    Config: config,
    ...(spec.s1 ? { S1ContextPtr: CD_ADDR, S1CIR: 1, S1COR: 1, S1CSH: 3 } : {}),
    ...s2f,
  });
  return r;
}

/** The invalidation software must issue after changing `l` (reference §4.4, §7 "Change a leaf PTE"). */
function invalidationFor(spec: Spec, l: Leaf): Cmd[] {
  if (l.stage === 1)
    return [
      cmd(OP.TLBI_NH_VA, {
        vmid: spec.mode === 'nested' ? 3 : 0,
        asid: ASID,
        addr: BigInt(l.ia),
        leaf: 1,
      }),
    ];
  const c = [cmd(OP.TLBI_S2_IPA, { vmid: 3, addr: BigInt(l.ia), leaf: 1 })];
  // combined stage 1+2 entries are not reached by TLBI_S2_IPA
  if (spec.mode === 'nested') c.push(cmd(OP.TLBI_NH_ALL, { vmid: 3 }));
  return c;
}

const outcome = (x: TxnResult) => ({
  ok: x.ok,
  pa: x.ok ? x.pa : 0,
  faultType: x.faultType,
  event: x.event,
  ipa: x.ipa,
});

describe('cached vs uncached (property)', () => {
  it('a machine with caching on and one with caching off agree on every DMA', () => {
    let hits = 0;
    let txns = 0;
    let faults = 0;
    let mutations = 0;
    const modes = { s1: 0, s2: 0, nested: 0 };
    fc.assert(
      fc.property(rawArb, (raw) => {
        const spec = makeSpec(raw);
        const on = build(spec, true);
        const off = build(spec, false);
        modes[spec.mode]++;
        for (const op of spec.ops) {
          if (op.kind === 'mutate') {
            const l = spec.leaves[op.leaf]!;
            mutations++;
            for (const r of [on, off]) {
              r.w64(l.at, op.desc);
              r.cmds(...invalidationFor(spec, l));
            }
            continue;
          }
          const a = on.txn(SID, op.addr, op.a);
          const b = off.txn(SID, op.addr, op.a);
          txns++;
          if (a.tlbHit) hits++;
          if (!a.ok) faults++;
          expect(b.tlbHit).toBe(false);
          expect(
            outcome(a),
            `${spec.mode} 0x${op.addr.toString(16)} ${JSON.stringify(op.a)}`,
          ).toEqual(outcome(b));
        }
        expect(on.m.smmu.evtq.log).toEqual(off.m.smmu.evtq.log);
      }),
      { numRuns: 300 },
    );
    // the runs exercised what they claim to: hits, faults and every mode
    expect(hits).toBeGreaterThan(txns / 5);
    expect(faults).toBeGreaterThan(txns / 20);
    expect(txns - faults).toBeGreaterThan(txns / 5);
    expect(mutations).toBeGreaterThan(50);
    expect(Math.min(modes.s1, modes.s2, modes.nested)).toBeGreaterThan(50);
  });
});
