/**
 * The malicious host's value grammar: a seeded random source and generators that know the
 * SMMUv3 encodings (registers, commands, STEs, CDs, L1 descriptors, translation-table
 * descriptors), biased toward boundary values: StreamID limits, Range 31 against the rest,
 * VMID 0 against the rest, Leaf 0/1, the CMD_SYNC CS values, queue wrap bits and huge PROD
 * jumps, and addresses inside memory the host may not touch.
 *
 * Every field position comes from the declarations in hw/ (bits.ts Field objects); nothing is
 * restated here. Generation is fully determined by the Rng's seed.
 *
 * The malicious guest (guest/malicious/attacker.ts) draws from the same grammar, with its own
 * layout (IPAs, its vSMMU): the operation shapes both attackers make (a register access, a DMA,
 * a batch of commands, an entry at PROD) are drawn here too, each in one fixed order of draws.
 */
import { get, set, type Field } from '../../hw/bits.ts';
import { OPCODES, OPCODE_TABLE, encodeCommand, type OpcodeDef } from '../../hw/smmu/commands.ts';
import { STE, STE_WORDS, CFG } from '../../hw/smmu/ste.ts';
import { CD, CD_WORDS } from '../../hw/smmu/cd.ts';
import { L1STD } from '../../hw/smmu/ste.ts';
import {
  CR0,
  CR1,
  CR2,
  GBPA,
  IRQ_CTRL,
  STRTAB_BASE,
  STRTAB_BASE_CFG,
  Q_BASE,
  REGISTERS,
  OFF,
  type RegDef,
} from '../../hw/smmu/regs.ts';

// ---- the random source -----------------------------------------------------------------------

/** 32-bit mixing (a murmur3 finalizer), for deriving seeds. */
function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * A small fast PRNG (sfc32: Chris Doty-Humphrey's Small Fast Counter) seeded from a campaign
 * seed (any safe integer) and a stream number (the iteration), so that iteration i of seed s is
 * the same sequence whichever worker runs it.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number, stream = 0) {
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 2 ** 32) >>> 0;
    this.a = mix32(lo ^ 0x9e3779b9);
    this.b = mix32(hi ^ 0x243f6a88 ^ mix32(stream));
    this.c = mix32(stream ^ 0xb7e15162);
    this.d = 1;
    for (let i = 0; i < 15; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** uniform in [0, n) for n ≤ 2^32 */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 2 ** 32) * n);
  }

  /** uniform in [lo, hi] */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() < p * 2 ** 32;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  /** an index drawn by weight (the weights are a fixed table: no allocation) */
  index(weights: readonly number[], total: number): number {
    let r = (this.u32() / 2 ** 32) * total;
    for (let i = 0; i < weights.length; i++) {
      if (r < weights[i]!) return i;
      r -= weights[i]!;
    }
    return weights.length - 1;
  }

  /** pick by weight: [[weight, value], ...] */
  weighted<T>(xs: ReadonlyArray<readonly [number, T]>): T {
    let total = 0;
    for (const [w] of xs) total += w;
    let r = (this.u32() / 2 ** 32) * total;
    for (const [w, v] of xs) {
      if (r < w) return v;
      r -= w;
    }
    return xs[xs.length - 1]![1];
  }

  /** `n` random bits as a number (n ≤ 53) */
  bits(n: number): number {
    if (n <= 0) return 0;
    if (n <= 32) return n === 32 ? this.u32() : this.u32() & (2 ** n - 1);
    return (this.u32() & (2 ** (n - 32) - 1)) * 2 ** 32 + this.u32();
  }

  /** a value for an n-bit field, biased to 0, 1, all-ones and the top bit */
  field(n: number): number {
    const max = 2 ** n - 1;
    return this.weighted<number>([
      [3, 0],
      [2, 1 % (max + 1)],
      [2, max],
      [1, 2 ** (n - 1)],
      [8, this.bits(n)],
    ]);
  }
}

// ---- what the host knows ---------------------------------------------------------------------

export interface Span {
  base: number;
  size: number;
}

/**
 * The physical layout as the host knows it: its RAM, the hypervisor's carve-out (which it
 * donated at boot), the SMMU registers, a scratch area it keeps its own hostile structures in,
 * and the queues and tables its driver set up.
 */
export interface HostLayout {
  ram: Span;
  hyp: Span;
  smmu: number;
  scratch: Span;
  /** StreamIDs of the DMA-capable devices */
  sids: readonly number[];
  /** the driver's DMA mappings */
  mappings: ReadonlyArray<{ sid: number; iova: number; pa: number; size: number }>;
  /** the driver's queues and tables, named */
  structures: ReadonlyArray<{ what: string; base: number; size: number }>;
  /** ASIDs the driver uses */
  asids: readonly number[];
  /** the SMMU's StreamID width, as IDR1 shows it */
  sidBits: number;
  /** memory the host keeps for a guest it may create (absent: it creates none), and the IPA the guest sees it at */
  guest?: Span & { ipa: number };
}

const PAGE = 4096;

const TARGET_W = [30, 20, 15, 10, 10, 3, 3];
const TARGET_T = 91;

function inSpan(r: Rng, s: Span): number {
  return s.base + r.int(Math.max(1, s.size / PAGE)) * PAGE;
}

/** Page-aligned and odd addresses the host may aim at: the hypervisor's memory first. */
export function targetAddress(r: Rng, L: HostLayout, align = 1): number {
  let a: number;
  switch (r.index(TARGET_W, TARGET_T)) {
    case 0: {
      const k = r.int(10);
      a =
        k === 0
          ? L.hyp.base
          : k === 1
            ? L.hyp.base + L.hyp.size - PAGE
            : k === 2
              ? L.hyp.base + ((L.hyp.size / 2) & ~(PAGE - 1))
              : inSpan(r, L.hyp);
      break;
    }
    case 1:
      a = inSpan(r, L.scratch);
      break;
    case 2: {
      const s = L.structures.length ? r.pick(L.structures) : L.scratch;
      a = s.base + (r.chance(0.5) ? 0 : r.int(Math.max(1, s.size / PAGE)) * PAGE);
      break;
    }
    case 3:
      a = L.mappings.length ? r.pick(L.mappings).pa : inSpan(r, L.ram);
      break;
    case 4:
      a = inSpan(r, L.ram);
      break;
    case 5:
      a = L.smmu;
      break;
    default:
      a = r.pick([
        0,
        L.ram.base - PAGE,
        L.ram.base + L.ram.size,
        L.ram.base + L.ram.size - PAGE,
        2 ** 48 - PAGE,
        2 ** 52 - PAGE,
      ]);
  }
  const off = r.chance(0.15) ? r.int(PAGE) : 0;
  return Math.max(0, a + off - ((a + off) % align));
}

export function hex(v: number | bigint): string {
  return '0x' + v.toString(16);
}

// ---- registers -------------------------------------------------------------------------------

/** The registers the host aims at (every architectural one), and a few offsets that are not registers. */
export const HOST_REGS: readonly RegDef[] = REGISTERS;

const cr0Bits = [CR0.SMMUEN, CR0.PRIQEN, CR0.EVENTQEN, CR0.CMDQEN, CR0.ATSCHK];

/** A queue base (CMDQ/EVENTQ/PRIQ_BASE): address | LOG2SIZE | RA/WA. */
function queueBase(r: Rng, L: HostLayout, cur: bigint | null): bigint {
  const w = [0, 0];
  const addr =
    r.chance(0.2) && cur !== null ? Number(cur & 0x00ff_ffff_ffff_ffe0n) : targetAddress(r, L, 32);
  set(w, Q_BASE.ADDR, Math.floor(addr / 32));
  set(
    w,
    Q_BASE.LOG2SIZE,
    r.weighted<number>([
      [3, r.range(0, 8)],
      [3, r.range(9, 19)],
      [2, 19],
      [1, r.range(20, 31)],
    ]),
  );
  set(w, Q_BASE.RWA, r.chance(0.8) ? 1 : 0);
  return (BigInt(w[1]!) << 32n) | BigInt(w[0]!);
}

/**
 * A value for a host write to register `reg`. `cur` gives the host's view of a register (for
 * values next to the current one: PROD steps, acknowledgements).
 */
export function registerValue(
  r: Rng,
  L: HostLayout,
  reg: RegDef,
  cur: (name: string) => bigint | null,
): bigint {
  if (r.chance(0.05))
    return BigInt(r.bits(32)) | (reg.width === 8 && r.chance(0.5) ? BigInt(r.bits(32)) << 32n : 0n);
  const w = [0, 0];
  switch (reg.name) {
    case 'CR0': {
      const c = Number(cur('CR0') ?? 0n);
      if (r.chance(0.5)) {
        // flip one enable of the current value
        const b = r.pick(cr0Bits);
        return BigInt((c ^ (1 << b.shift)) >>> 0);
      }
      for (const b of cr0Bits) if (r.chance(0.5)) set(w, b, 1);
      if (r.chance(0.1)) set(w, CR0.VMW, r.bits(3));
      return BigInt(w[0]!);
    }
    case 'CR1': {
      if (r.chance(0.5)) return 0xd75n;
      for (const f of Object.values(CR1)) set(w, f, r.bits(f.width));
      return BigInt(w[0]!);
    }
    case 'CR2':
      for (const f of Object.values(CR2)) if (r.chance(0.5)) set(w, f, 1);
      return BigInt(w[0]!);
    case 'GBPA':
      set(w, GBPA.Update, r.chance(0.7) ? 1 : 0);
      set(w, GBPA.ABORT, r.chance(0.5) ? 1 : 0);
      if (r.chance(0.3)) set(w, GBPA.SHCFG, r.bits(2));
      return BigInt(w[0]!);
    case 'IRQ_CTRL':
      for (const f of Object.values(IRQ_CTRL)) if (r.chance(0.6)) set(w, f, 1);
      return BigInt(w[0]!);
    case 'GERRORN': {
      // acknowledge what is active (toggle to match GERROR), or toggle random bits
      const g = Number(cur('GERROR') ?? 0n);
      const n = Number(cur('GERRORN') ?? 0n);
      if (r.chance(0.7)) return BigInt((g >>> 0) & 0x1fd);
      return BigInt((n ^ r.bits(9)) >>> 0);
    }
    case 'GERROR_IRQ_CFG0':
    case 'EVENTQ_IRQ_CFG0':
    case 'PRIQ_IRQ_CFG0':
      // an MSI doorbell: 0 (no MSI), or a target, the hypervisor's memory first
      return r.chance(0.2) ? 0n : BigInt(targetAddress(r, L, 4));
    case 'GERROR_IRQ_CFG1':
    case 'EVENTQ_IRQ_CFG1':
    case 'PRIQ_IRQ_CFG1':
      return BigInt(r.bits(32));
    case 'STRTAB_BASE': {
      const a = r.chance(0.3)
        ? Number((cur('STRTAB_BASE') ?? 0n) & 0x00ff_ffff_ffff_ffc0n)
        : targetAddress(r, L, 64);
      return (r.chance(0.8) ? 1n << 62n : 0n) | BigInt(a);
    }
    case 'STRTAB_BASE_CFG': {
      const twoLevel = r.chance(0.7);
      set(w, STRTAB_BASE_CFG.FMT, twoLevel ? 1 : r.pick([0, 2, 3]));
      set(
        w,
        STRTAB_BASE_CFG.SPLIT,
        r.weighted<number>([
          [6, 8],
          [1, 6],
          [1, 10],
          [1, r.bits(5)],
        ]),
      );
      set(
        w,
        STRTAB_BASE_CFG.LOG2SIZE,
        r.weighted<number>([
          [4, L.sidBits],
          [2, r.range(0, L.sidBits)],
          [1, L.sidBits + 1],
          [1, r.bits(6)],
        ]),
      );
      return BigInt(w[0]!);
    }
    case 'CMDQ_BASE':
    case 'EVENTQ_BASE':
    case 'PRIQ_BASE':
      return queueBase(r, L, cur(reg.name));
    case 'CMDQ_PROD':
    case 'EVENTQ_CONS':
    case 'PRIQ_CONS': {
      const c = Number(cur(reg.name) ?? 0n);
      return BigInt(prodStep(r, c));
    }
    case 'CMDQ_CONS':
    case 'EVENTQ_PROD':
    case 'PRIQ_PROD':
      return BigInt(r.chance(0.5) ? 0 : (r.bits(20) | (r.chance(0.2) ? 0x8000_0000 : 0)) >>> 0);
    default:
      return BigInt(r.bits(reg.width * 8 > 32 ? 32 : reg.width * 8));
  }
}

/** A queue index write next to `cur`: small steps, wrap-bit games, huge jumps, out-of-range values. */
export function prodStep(r: Rng, cur: number): number {
  return (
    r.weighted<number>([
      [4, (cur + r.range(1, 8)) & 0xfffff],
      [2, cur ^ (1 << r.range(0, 19))],
      [2, (cur + 2 ** r.range(10, 19)) & 0xfffff],
      [1, (cur - r.range(1, 4)) & 0xfffff],
      [1, r.bits(20)],
      [1, r.bits(32)],
      [1, cur],
    ]) >>> 0
  );
}

// ---- commands --------------------------------------------------------------------------------

/** A command as the scenario `cmd` step writes it: its name and field values (Address and MSIAddress as byte addresses). */
export type CmdSpec = { name: string } & Record<string, number | string>;

function fieldValue(r: Rng, L: HostLayout, def: OpcodeDef, f: Field): number | string {
  switch (f.name) {
    case 'StreamID':
      return r.weighted<number>([
        [6, r.pick(L.sids)],
        [1, 0],
        [1, 255],
        [1, 256],
        [1, 2 ** L.sidBits - 1],
        [1, 2 ** L.sidBits],
        [1, 0xffffffff],
        [1, r.bits(32)],
      ]);
    case 'SubstreamID':
      return r.weighted<number>([
        [4, 0],
        [2, 1],
        [1, 3],
        [1, r.bits(20)],
      ]);
    case 'SSec':
      return r.chance(0.1) ? 1 : 0;
    case 'SSV':
      return r.chance(0.3) ? 1 : 0;
    case 'Leaf':
      return r.chance(0.7) ? 1 : 0;
    case 'Range':
      return r.chance(0.5) ? 31 : r.range(0, 30);
    case 'VMID':
      return r.weighted<number>([
        [6, 0],
        [1, 1],
        [1, 0xffff],
        [1, r.bits(16)],
      ]);
    case 'ASID':
      return r.weighted<number>([
        [4, L.asids.length ? r.pick(L.asids) : 1],
        [2, 0],
        [1, 0xffff],
        [1, r.bits(16)],
      ]);
    case 'Address': {
      // byte address, page aligned (the step shifts it into the field)
      const a = r.weighted<number>([
        [4, L.mappings.length ? r.pick(L.mappings).iova : 0x1000],
        [3, targetAddress(r, L, PAGE)],
        [1, 0],
        [
          1,
          (r.bits(def.name === 'TLBI_S2_IPA' || def.name === 'TLBI_S_S2_IPA' ? 44 : 48) * PAGE) %
            2 ** 52,
        ],
      ]);
      return hex(a - (a % PAGE));
    }
    case 'CS':
      return r.weighted<number>([
        [2, 0],
        [4, 1],
        [2, 2],
        [1, 3],
      ]);
    case 'MSIAddress': {
      const a = r.chance(0.15) ? 0 : targetAddress(r, L, 4);
      return hex(a);
    }
    case 'MSIData':
      return r.bits(32);
    default:
      return r.field(f.width);
  }
}

/** A command of `def` with every field drawn from the grammar (each field set with probability `p`). */
export function commandOf(r: Rng, L: HostLayout, def: OpcodeDef, p = 0.8): CmdSpec {
  const c: CmdSpec = { name: def.name };
  for (const f of def.fields) {
    if (f.name === 'Opcode') continue;
    if (f.name in c) continue;
    if (!r.chance(p) && f.name !== 'StreamID' && f.name !== 'Leaf' && f.name !== 'Range') continue;
    c[f.name] = fieldValue(r, L, def, f);
  }
  return c;
}

/** Any opcode, uniformly over the architectural ones. */
export function anyCommand(r: Rng, L: HostLayout): CmdSpec {
  return commandOf(r, L, r.pick(OPCODES));
}

export function opcodeDef(name: string): OpcodeDef {
  const d = OPCODES.find((x) => x.name === name);
  if (!d) throw new Error(`no opcode ${name}`);
  return d;
}

/** A raw 16-byte command: a real opcode or a reserved one, every other bit random (for memory writes into the queue). */
export function rawCommandWords(r: Rng): Uint32Array {
  const w = new Uint32Array(4);
  for (let i = 0; i < 4; i++) w[i] = r.chance(0.5) ? r.u32() : 0;
  const op = r.chance(0.7) ? r.pick(OPCODES).op : r.bits(8);
  w[0] = ((w[0]! & ~0xff) | op) >>> 0;
  return w;
}

export function isReservedOpcode(op: number): boolean {
  return OPCODE_TABLE[op & 0xff] === undefined;
}

// ---- structures in memory --------------------------------------------------------------------

/** A host STE: every Config (bypass, stage 1, stage 2, nested, reserved), EATS, STRW, stage-2 fields and overrides. */
export function steWords(r: Rng, L: HostLayout): Uint32Array {
  const w = new Uint32Array(STE_WORDS);
  set(w, STE.V, r.chance(0.92) ? 1 : 0);
  const config = r.weighted<number>([
    [20, CFG.BYPASS],
    [30, CFG.S1_TRANS],
    [15, CFG.S2_TRANS],
    [10, CFG.NESTED],
    [10, CFG.ABORT],
    [8, r.range(1, 3)],
  ]);
  set(w, STE.Config, config);
  if (config === CFG.S1_TRANS || config === CFG.NESTED || r.chance(0.2)) {
    set(w, STE.S1ContextPtr, Math.floor(targetAddress(r, L, 64) / 64));
    set(w, STE.S1CDMax, r.chance(0.7) ? 0 : r.field(5));
    set(w, STE.S1Fmt, r.chance(0.7) ? 0 : r.bits(2));
    set(
      w,
      STE.S1DSS,
      r.weighted<number>([
        [2, 0],
        [2, 1],
        [3, 2],
        [1, 3],
      ]),
    );
    set(w, STE.S1CIR, 1);
    set(w, STE.S1COR, 1);
    set(w, STE.S1CSH, 3);
  }
  set(
    w,
    STE.EATS,
    r.weighted<number>([
      [6, 0],
      [3, 1],
      [2, 2],
      [1, 3],
    ]),
  );
  set(
    w,
    STE.STRW,
    r.weighted<number>([
      [7, 0],
      [3, 2],
      [1, 1],
      [1, 3],
    ]),
  );
  if (r.chance(0.15)) {
    for (const f of [
      STE.MTCFG,
      STE.MemAttr,
      STE.ALLOCCFG,
      STE.SHCFG,
      STE.PRIVCFG,
      STE.INSTCFG,
      STE.S1STALLD,
      STE.DCP,
      STE.MEV,
      STE.CONT,
    ])
      set(w, f, r.field(f.width));
  }
  if (config === CFG.S2_TRANS || config === CFG.NESTED || r.chance(0.3)) {
    set(
      w,
      STE.S2VMID,
      r.weighted<number>([
        [3, 0],
        [2, r.bits(16)],
        [1, 1],
      ]),
    );
    set(
      w,
      STE.S2T0SZ,
      r.weighted<number>([
        [4, 16],
        [2, 24],
        [2, 32],
        [1, r.bits(6)],
      ]),
    );
    set(w, STE.S2SL0, r.bits(2));
    set(w, STE.S2IR0, 1);
    set(w, STE.S2OR0, 1);
    set(w, STE.S2SH0, 3);
    set(w, STE.S2TG, r.chance(0.8) ? 0 : r.bits(2));
    set(w, STE.S2PS, r.chance(0.7) ? 5 : r.bits(3));
    set(w, STE.S2AA64, r.chance(0.9) ? 1 : 0);
    set(w, STE.S2PTW, r.bits(1));
    set(w, STE.S2R, r.bits(1));
    set(w, STE.S2AFFD, r.bits(1));
    if (r.chance(0.1)) set(w, STE.S2HA, 1);
    set(w, STE.S2TTB, Math.floor(targetAddress(r, L, PAGE) / 16));
  }
  if (r.chance(0.1)) for (let i = 8; i < 16; i++) w[i] = r.u32();
  return w;
}

/** A CD whose TTB0 points where the host likes (its own tables, the hypervisor's memory). */
export function cdWords(r: Rng, L: HostLayout): Uint32Array {
  const w = new Uint32Array(CD_WORDS);
  set(w, CD.V, r.chance(0.9) ? 1 : 0);
  set(w, CD.T0SZ, r.chance(0.8) ? r.pick([16, 25, 32, 39]) : r.bits(6));
  set(w, CD.TG0, r.chance(0.8) ? 0 : r.bits(2));
  set(w, CD.IR0, 1);
  set(w, CD.OR0, 1);
  set(w, CD.SH0, 3);
  set(w, CD.EPD0, r.chance(0.1) ? 1 : 0);
  set(w, CD.EPD1, r.chance(0.7) ? 1 : 0);
  set(w, CD.IPS, r.chance(0.7) ? 5 : r.bits(3));
  set(w, CD.AA64, r.chance(0.9) ? 1 : 0);
  set(w, CD.R, 1);
  set(w, CD.A, 1);
  set(w, CD.ASET, r.bits(1));
  set(w, CD.AFFD, r.bits(1));
  if (r.chance(0.1)) set(w, CD.HA, 1);
  set(w, CD.ASID, r.chance(0.6) && L.asids.length ? r.pick(L.asids) : r.bits(16));
  set(w, CD.TTB0, Math.floor(targetAddress(r, L, PAGE) / 16));
  if (r.chance(0.3)) set(w, CD.TTB1, Math.floor(targetAddress(r, L, PAGE) / 16));
  set(w, CD.MAIR0, 0xf404ff44);
  return w;
}

/** An L1 stream table descriptor: L2Ptr anywhere (the hypervisor's memory first), any Span. */
export function l1Words(r: Rng, L: HostLayout): Uint32Array {
  const w = new Uint32Array(2);
  set(w, L1STD.L2Ptr, Math.floor(targetAddress(r, L, 64) / 64));
  set(
    w,
    L1STD.Span,
    r.weighted<number>([
      [5, 9],
      [2, 0],
      [1, 1],
      [1, r.bits(5)],
    ]),
  );
  return w;
}

/**
 * A VMSAv8-64 translation-table descriptor: invalid, block, table or page, with output addresses
 * in the hypervisor's memory first, any permissions and the Access flag mostly set.
 */
export function ptDescriptor(r: Rng, L: HostLayout): bigint {
  const type = r.weighted<number>([
    [1, 0],
    [3, 1],
    [4, 3],
  ]);
  const oa = BigInt(targetAddress(r, L, PAGE));
  let d = oa | BigInt(type);
  if (type !== 0) {
    d |= 1n << 10n; // AF
    d |= BigInt(r.bits(2)) << 6n; // AP / S2AP
    d |= BigInt(r.bits(4)) << 2n; // AttrIndx / MemAttr
    d |= 3n << 8n; // SH
    if (r.chance(0.2)) d |= BigInt(r.bits(4)) << 51n; // DBM, Contiguous, PXN, UXN
  }
  return d;
}

export function wordsToHex(w: Uint32Array): string {
  let s = '';
  for (let i = 0; i < w.length; i++) {
    const v = w[i]!;
    for (let b = 0; b < 4; b++) s += ((v >>> (8 * b)) & 0xff).toString(16).padStart(2, '0');
  }
  return s;
}

export function u64ToHex(v: bigint): string {
  const w = new Uint32Array([Number(v & 0xffffffffn), Number((v >> 32n) & 0xffffffffn)]);
  return wordsToHex(w);
}

export const REG_OFF = OFF;

// ---- what an attacker reads back ---------------------------------------------------------------

/** A 64-bit register value as the two words its fields are declared over. */
function regWords(v: bigint): number[] {
  return [Number(v & 0xffff_ffffn), Number((v >> 32n) & 0xffff_ffffn)];
}

/** Reads of the attacker's own memory (8 bytes at an address; null when it aborts). */
export interface Mem64 {
  mem64(addr: number): bigint | null;
}

/**
 * The STE address of `sid` in the stream table that STRTAB_BASE and STRTAB_BASE_CFG describe
 * (a 2-level table's L1 descriptor read through `mem`); null when that descriptor is invalid.
 */
export function steAddress(base: bigint, cfg: bigint, sid: number, mem: Mem64): number | null {
  const b = get(regWords(base), STRTAB_BASE.ADDR) * 64;
  const c = regWords(cfg);
  if (get(c, STRTAB_BASE_CFG.FMT) !== 1) return b + sid * 64;
  const split = get(c, STRTAB_BASE_CFG.SPLIT);
  const l1 = mem.mem64(b + Math.floor(sid / 2 ** split) * 8);
  if (l1 === null) return null;
  const d = regWords(l1);
  if (get(d, L1STD.Span) === 0) return null;
  return get(d, L1STD.L2Ptr) * 64 + (sid % 2 ** split) * 64;
}

/** The L1 descriptor address of `sid` in a 2-level stream table (null for a linear one). */
export function l1Address(base: bigint, cfg: bigint, sid: number): number | null {
  const c = regWords(cfg);
  if (get(c, STRTAB_BASE_CFG.FMT) !== 1) return null;
  return (
    get(regWords(base), STRTAB_BASE.ADDR) * 64 +
    Math.floor(sid / 2 ** get(c, STRTAB_BASE_CFG.SPLIT)) * 8
  );
}

/** A command queue as CMDQ_BASE and CMDQ_PROD say (LOG2SIZE capped at `maxShift`): base, size and PROD with its wrap bit. */
export function queueOf(
  base: bigint,
  prod: bigint,
  maxShift: number,
): { base: number; qs: number; prod: number } {
  const b = regWords(base);
  const qs = Math.min(get(b, Q_BASE.LOG2SIZE), maxShift);
  return { base: get(b, Q_BASE.ADDR) * 32, qs, prod: Number(prod) & (2 ** (qs + 1) - 1) };
}

/** A command spec encoded as the cmd step encodes it (Address and MSIAddress are byte addresses). */
export function encodeSpec(c: CmdSpec): Uint32Array {
  const vals: Record<string, bigint> = {};
  for (const [k, v] of Object.entries(c)) {
    if (k === 'name') continue;
    const b = BigInt(v);
    vals[k] = k === 'Address' ? b >> 12n : k === 'MSIAddress' ? b >> 2n : b;
  }
  return encodeCommand(c.name, vals);
}

// ---- the operations both attackers draw ----------------------------------------------------------

export type AccessSize = 1 | 2 | 4 | 8;

/**
 * A register write: any register (its value from registerValue), one in twenty at an odd size,
 * one at an odd offset, one at `odd` (offsets that are not the register's: AIDR twice as
 * likely, then these, then page 1 and anywhere in the page), one `elsewhere` (outside the SMMU).
 */
export function registerWrite(
  r: Rng,
  L: HostLayout,
  cur: (name: string) => bigint | null,
  odd: readonly number[],
  elsewhere: (r: Rng, L: HostLayout) => number,
): { addr: number; size: AccessSize; value: bigint } {
  const reg = r.pick(HOST_REGS);
  let addr = L.smmu + reg.offset;
  let size: AccessSize = reg.width;
  const which = r.int(20);
  if (which === 0) size = r.pick([1, 2, 4, 8] as const);
  else if (which === 1) addr += r.pick([1, 2, 4, 8]);
  else if (which === 2)
    addr =
      L.smmu +
      r.weighted<number>([
        [2, OFF.AIDR],
        ...odd.map((o): [number, number] => [1, o]),
        [1, 0x8000 + r.int(0x80) * 4],
        [1, r.int(0x20000 / 4) * 4],
      ]);
  else if (which === 3) addr = elsewhere(r, L);
  const value = registerValue(r, L, reg, cur);
  return { addr, size, value: BigInt.asUintN(size * 8, value) };
}

/** A register read: any register, sometimes at an odd size, anywhere in the SMMU page, or (`elsewhere`) outside it. */
export function registerRead(
  r: Rng,
  L: HostLayout,
  elsewhere?: (r: Rng) => number,
): { addr: number; size: AccessSize } {
  const reg = r.pick(HOST_REGS);
  let addr = L.smmu + reg.offset;
  let size: AccessSize = reg.width;
  if (r.chance(0.1)) size = r.pick([1, 2, 4, 8] as const);
  if (r.chance(0.05)) addr = L.smmu + r.int(0x20000 / 4) * 4;
  // eslint-disable-next-line no-dupe-else-if -- each draw is a fresh random number
  else if (elsewhere && r.chance(0.05)) addr = elsewhere(r);
  return { addr, size };
}

/** 1 to 8 commands from `one`, and (mostly) a CMD_SYNC from `sync` after them. */
export function commandBatch(r: Rng, one: () => CmdSpec, sync: () => CmdSpec): CmdSpec[] {
  const n = r.weighted<number>([
    [5, 1],
    [3, 2],
    [1, 4],
    [1, 8],
  ]);
  const cmds: CmdSpec[] = [];
  for (let i = 0; i < n; i++) cmds.push(one());
  if (r.chance(0.6)) cmds.push(sync());
  return cmds;
}

/** A CMD_SYNC: mostly plain (CS from `cs`), else with every field from the grammar. */
export function syncCommand(r: Rng, L: HostLayout, cs: (r: Rng) => number): CmdSpec {
  return r.chance(0.7) ? { name: 'CMD_SYNC', CS: cs(r) } : commandOf(r, L, opcodeDef('CMD_SYNC'));
}

/** A raw command for the slot at PROD, and the PROD written after it (mostly the next slot, else a jump). */
export function rawAtProd(r: Rng, q: { qs: number; prod: number }): { hex: string; prod: number } {
  const hex = wordsToHex(rawCommandWords(r));
  const next = (q.prod + 1) & (2 ** (q.qs + 1) - 1);
  return { hex, prod: r.chance(0.8) ? next : prodStep(r, q.prod) };
}

/** A command (raw or from `cmd`) for a slot at PROD or up to 8 ahead of it, which PROD does not reach yet. */
export function entryAhead(
  r: Rng,
  q: { qs: number; prod: number },
  cmd: () => CmdSpec,
): { index: number; hex: string } {
  const words = r.chance(0.5) ? rawCommandWords(r) : encodeSpec(cmd());
  return { index: (q.prod + r.range(0, 8)) & (2 ** (q.qs + 1) - 1), hex: wordsToHex(words) };
}

/** Bytes of any length up to 256, a third of them zero (a memory write of anything). */
export function randomBytesHex(r: Rng): string {
  const len = r.pick([1, 4, 8, 16, 64, r.range(1, 256)]);
  let hx = '';
  for (let i = 0; i < len; i++) hx += (r.chance(0.3) ? 0 : r.bits(8)).toString(16).padStart(2, '0');
  return hx;
}

/** Where a CD goes: (with probability `p`) a CD of the driver's tables, else anywhere. */
export function cdAddress(r: Rng, L: HostLayout, p: number): number {
  const cdTables = L.structures.filter((s) => s.what.startsWith('cd'));
  return cdTables.length && r.chance(p)
    ? r.pick(cdTables).base + r.int(4) * 64
    : targetAddress(r, L, 64);
}

/** Where a translation-table descriptor goes: (with probability `p`) the driver's tables, else any page. */
export function descriptorAddress(r: Rng, L: HostLayout, p: number): number {
  const tables = L.structures.filter((s) => s.what.startsWith('pgtable'));
  const base = tables.length && r.chance(p) ? r.pick(tables).base : targetAddress(r, L, PAGE);
  return base - (base % PAGE) + r.int(512) * 8;
}

/** How an STE a memory write puts reads in its comment: V and Config. */
export function steSummary(w: Uint32Array): string {
  return `V=${get(w, STE.V)}, Config=0b${get(w, STE.Config).toString(2).padStart(3, '0')}`;
}

/** The CPU operations both attackers make (`actor`: who makes them), shaped as the scenario steps take them. */
export type CpuOp<A extends string> =
  | {
      op: 'write';
      actor: A;
      addr: number;
      size: AccessSize;
      value: bigint;
      expect?: 'abort';
      comment?: string;
    }
  | { op: 'read'; actor: A; addr: number; size: AccessSize; expect?: 'abort'; comment?: string }
  | { op: 'memwrite'; actor: A; addr: number; hex: string; expect?: 'abort'; comment?: string }
  | { op: 'cmd'; actor: A; commands: CmdSpec[]; comment?: string };

/** The attacks on the command queue and the structures both attackers make. */
export interface StructureAttacks<Op> {
  rawCommand(): Op[];
  steAndCfgi(): Op[];
  cdWrite(): Op[];
  ptWrite(): Op;
  l1Write(): Op[];
  queueEntryWrite(): Op;
  randomMemWrite(): Op;
}

/** Those attacks as entries of an attacker's table, with their weights (in the catalog's order: where they stand in a table is part of its draws). */
export function structureAttacks<Op>(
  a: StructureAttacks<Op>,
): Array<readonly [number, () => Op[]]> {
  return [
    [3, () => a.rawCommand()],
    [10, () => a.steAndCfgi()],
    [3, () => a.cdWrite()],
    [3, () => [a.ptWrite()]],
    [3, () => a.l1Write()],
    [2, () => [a.queueEntryWrite()]],
    [2, () => [a.randomMemWrite()]],
  ];
}

/** A DMA from StreamID `sid`, shaped as the `dma` step takes it. */
export interface DmaOp {
  op: 'dma';
  sid: number;
  iova: bigint;
  access: 'read' | 'write';
  len?: number;
  ats?: boolean;
  translated?: boolean;
  ssid?: number;
  ssv?: boolean;
  expect?: 'fault';
  comment?: string;
}

/**
 * An IOVA for a DMA: (weight `wMap`) in one of the device's `maps`, (`wTarget`) an address the
 * attacker aims at, (1) any 48-bit one.
 */
export function dmaAddress(
  r: Rng,
  L: HostLayout,
  maps: ReadonlyArray<{ iova: number }>,
  wMap: number,
  wTarget: number,
): number {
  return r.weighted<number>([
    [wMap, maps.length ? r.pick(maps).iova + r.int(PAGE / 4) * 4 : 0x1000],
    [wTarget, targetAddress(r, L, 4)],
    [1, r.bits(48)],
  ]);
}

/** A DMA at `iova`: mostly plain, else through the ATC or as an ATS Translated request; any length and direction, sometimes with a SubstreamID. */
export function dmaOf(r: Rng, sid: number, iova: number, comment?: string): DmaOp {
  const mode = r.weighted<number>([
    [8, 0],
    [1, 1],
    [1, 2],
  ]);
  const op: DmaOp = {
    op: 'dma',
    sid,
    iova: BigInt(iova),
    access: r.chance(0.5) ? 'write' : 'read',
    len: r.weighted<number>([
      [6, 4],
      [2, r.range(1, 64)],
      [1, PAGE + 8],
    ]),
    ...(comment !== undefined ? { comment } : {}),
  };
  if (mode === 1) op.ats = true;
  if (mode === 2) op.translated = true;
  if (r.chance(0.1)) {
    op.ssid = r.pick([0, 1, 3]);
    op.ssv = true;
  }
  return op;
}

/** How many hypervisor reads of the raced memory the second CPU waits for (mostly one). */
export function raceAfterReads(r: Rng, once = 7, never = 2): number {
  return r.weighted<number>([
    [once, 1],
    [never, 0],
    [1, 2],
  ]);
}

/** Whether a scenario step can hold an operation's address (an exact JSON number, below 2^53). */
export function addressable(op: object): boolean {
  return !('addr' in op) || (Number.isSafeInteger(op.addr) && (op.addr as number) >= 0);
}
