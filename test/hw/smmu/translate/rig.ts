/**
 * Shared test rig for the translation-engine suites.
 *
 * Everything that encodes or decodes an architectural structure here (STE, CD, L1CD,
 * descriptors, event records) uses the bit positions of the reference
 * (/work/shared/reference/smmuv3.md §2.2, §3.1, §3.2, §5.2, §6.2), written out below, and
 * not the field tables in hw/: a wrong declaration in the engine then shows up as a failure.
 */
import { Machine } from '../../../../hw/machine.ts';
import { newTxn, newTxnResult, type TxnResult } from '../../../../hw/smmu/smmu.ts';
import type { SmmuFeatures } from '../../../../hw/smmu/features.ts';
import {
  R,
  SMMUEN,
  Sw,
  cmd,
  initCmdq,
  initEvtq,
  initStrtab,
  strtabCfg,
  sync,
  type Cmd,
  type SwCmdq,
} from '../../helpers.ts';
import { EVENT, EVENT_CLASS, OPCODE } from '../../../reference.ts';

export { cmd, sync, type Cmd };

// ---- event numbers (reference §5.1) ------------------------------------------------------------

export const EV = EVENT;
export type EvName = keyof typeof EV;

/** CLASS encoding (reference §5.2): 0 CD, 1 TT, 2 IN. */
export const CLASS = EVENT_CLASS;
export type ClassName = keyof typeof CLASS;

// ---- opcodes (reference §4.2) --------------------------------------------------------------------

export const OP = OPCODE;

/** CMD_SYNC with CS=SIG_NONE. */
export const SYNC: Cmd = sync(0);

// ---- structure encoders (absolute bit positions) ---------------------------------------------

/** [hi, lo] absolute bit positions; `addr` = the field holds address bits [hi':lo'] of a byte address. */
interface Pos {
  hi: number;
  lo: number;
  /** for address fields: the address bit held by the field's least significant bit */
  addrLsb?: number;
}
const p = (hi: number, lo: number, addrLsb?: number): Pos =>
  addrLsb === undefined ? { hi, lo } : { hi, lo, addrLsb };

/** STE fields, reference §2.2 (absolute bit numbers). */
export const STE_POS = {
  V: p(0, 0),
  Config: p(3, 1),
  S1Fmt: p(5, 4),
  S1ContextPtr: p(55, 6, 6),
  S1CDMax: p(63, 59),
  S1DSS: p(65, 64),
  S1CIR: p(67, 66),
  S1COR: p(69, 68),
  S1CSH: p(71, 70),
  EATS: p(93, 92),
  STRW: p(95, 94),
  S2VMID: p(143, 128),
  S2T0SZ: p(165, 160),
  S2SL0: p(167, 166),
  S2IR0: p(169, 168),
  S2OR0: p(171, 170),
  S2SH0: p(173, 172),
  S2TG: p(175, 174),
  S2PS: p(178, 176),
  S2AA64: p(179, 179),
  S2ENDI: p(180, 180),
  S2AFFD: p(181, 181),
  S2PTW: p(182, 182),
  S2HD: p(183, 183),
  S2HA: p(184, 184),
  S2S: p(185, 185),
  S2R: p(186, 186),
  S2TTB: p(247, 196, 4),
} as const;
export type SteFields = Partial<Record<keyof typeof STE_POS, number>>;

/** CD fields, reference §3.1. */
export const CD_POS = {
  T0SZ: p(5, 0),
  TG0: p(7, 6),
  IR0: p(9, 8),
  OR0: p(11, 10),
  SH0: p(13, 12),
  EPD0: p(14, 14),
  ENDI: p(15, 15),
  T1SZ: p(21, 16),
  TG1: p(23, 22),
  EPD1: p(30, 30),
  V: p(31, 31),
  IPS: p(34, 32),
  AFFD: p(35, 35),
  WXN: p(36, 36),
  UWXN: p(37, 37),
  TBI: p(39, 38),
  PAN: p(40, 40),
  AA64: p(41, 41),
  HD: p(42, 42),
  HA: p(43, 43),
  S: p(44, 44),
  R: p(45, 45),
  A: p(46, 46),
  ASET: p(47, 47),
  ASID: p(63, 48),
  HAD0: p(65, 65),
  TTB0: p(119, 68, 4),
  TTB1: p(183, 132, 4),
} as const;
export type CdFields = Partial<Record<keyof typeof CD_POS, number>>;

function encode(
  layout: Readonly<Record<string, Pos>>,
  fields: Readonly<Record<string, number | undefined>>,
  dws: number,
): bigint[] {
  const out: bigint[] = new Array<bigint>(dws).fill(0n);
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const f = layout[k];
    if (!f) throw new Error(`no field ${k}`);
    let val = BigInt(v);
    if (f.addrLsb !== undefined) {
      if (val % (1n << BigInt(f.addrLsb)) !== 0n)
        throw new Error(`${k}: 0x${v.toString(16)} is not ${2 ** f.addrLsb}-byte aligned`);
      val >>= BigInt(f.addrLsb);
    }
    const width = f.hi - f.lo + 1;
    if (val >= 1n << BigInt(width))
      throw new Error(`${k}: 0x${v.toString(16)} does not fit in ${width} bits`);
    const dw = Math.floor(f.lo / 64);
    if (Math.floor(f.hi / 64) !== dw) throw new Error(`${k} crosses a double-word`);
    out[dw]! |= val << BigInt(f.lo % 64);
  }
  return out;
}

export function encodeSte(f: SteFields): bigint[] {
  return encode(STE_POS, f, 8);
}
export function encodeCd(f: CdFields): bigint[] {
  return encode(CD_POS, f, 8);
}

/** Granule → CD.TG0 / STE.S2TG encoding (0 4KB, 1 64KB, 2 16KB; reference §2.2, §3.1). */
export function tgEnc(granule: number): number {
  if (granule === 4096) return 0;
  if (granule === 65536) return 1;
  if (granule === 16384) return 2;
  throw new Error(`granule ${granule}`);
}
/** Output size in bits → IPS / S2PS encoding (reference §2.2). */
export function psEnc(bits: number): number {
  const e = [32, 36, 40, 42, 44, 48, 52].indexOf(bits);
  if (e < 0) throw new Error(`PS ${bits}`);
  return e;
}

// ---- event records (reference §5.2) ----------------------------------------------------------

export interface RawEvent {
  dw: bigint[];
  type: number;
  ssv: number;
  ssid: number;
  sid: number;
  stall: number;
  PnU: number;
  InD: number;
  RnW: number;
  S2: number;
  CLASS: number;
  input: bigint;
  /** DW3[55:12] as a byte address */
  ipa: number;
  /** DW3[55:3] as a byte address */
  fetchAddr: number;
}

const bit = (v: bigint, b: number): number => Number((v >> BigInt(b)) & 1n);

export function decodeRaw(dw: bigint[]): RawEvent {
  const [d0, d1, d2, d3] = dw as [bigint, bigint, bigint, bigint];
  return {
    dw,
    type: Number(d0 & 0xffn),
    ssv: bit(d0, 11),
    ssid: Number((d0 >> 12n) & 0xfffffn),
    sid: Number(d0 >> 32n),
    stall: bit(d1, 31),
    PnU: bit(d1, 33),
    InD: bit(d1, 34),
    RnW: bit(d1, 35),
    S2: bit(d1, 39),
    CLASS: Number((d1 >> 40n) & 3n),
    input: d2,
    ipa: Number(d3 & 0x00ff_ffff_ffff_f000n),
    fetchAddr: Number(d3 & 0x00ff_ffff_ffff_fff8n),
  };
}

// ---- the device rig ----------------------------------------------------------------------------

/** RAM layout used by every rig (RAM is 0x4000_0000..0x7fff_ffff). */
export const LAYOUT = {
  CMDQ: 0x4001_0000,
  CMDQ_LOG2: 8,
  EVTQ: 0x4002_0000,
  EVTQ_LOG2: 7,
  STRTAB: 0x4010_0000,
  STRTAB_LOG2: 6,
  /** where single-stream tests put their CD */
  CD: 0x4080_0000,
} as const;

export interface Access {
  write?: boolean;
  priv?: boolean;
  instr?: boolean;
}

export interface RigOptions {
  caching?: boolean;
  features?: Partial<SmmuFeatures>;
  /** CR2 value (E2H[0], RECINVSID[1]) written before SMMUEN */
  cr2?: number;
  /** 2-level stream table: STRTAB_BASE_CFG FMT=1, LOG2SIZE=8 and this SPLIT */
  split?: number;
}

export class Rig {
  readonly m: Machine;
  readonly sw: Sw;
  readonly q: SwCmdq;

  constructor(o: RigOptions = {}) {
    this.m = new Machine({
      smmu: { caching: o.caching ?? true, ...(o.features ? { features: o.features } : {}) },
    });
    this.sw = new Sw(this.m);
    if (o.cr2 !== undefined) this.sw.w32(R.CR2, o.cr2);
    initStrtab(
      this.sw,
      LAYOUT.STRTAB,
      o.split === undefined ? strtabCfg(LAYOUT.STRTAB_LOG2) : strtabCfg(8, 1, o.split),
    );
    this.q = initCmdq(this.sw, LAYOUT.CMDQ, LAYOUT.CMDQ_LOG2);
    initEvtq(this.sw, LAYOUT.EVTQ, LAYOUT.EVTQ_LOG2);
    this.sw.cr0(this.sw.r32(R.CR0) | SMMUEN);
  }

  w64(addr: number, v: bigint): void {
    this.m.mem.write64(addr, v);
  }
  r64(addr: number): bigint {
    return this.m.mem.read64(addr);
  }
  descs(list: ReadonlyArray<readonly [number, bigint]>): void {
    for (const [a, v] of list) this.w64(a, v);
  }

  /** Write an STE at `addr` (linear table: STRTAB + 64 × SID). */
  steAt(addr: number, f: SteFields): void {
    encodeSte(f).forEach((d, i) => this.w64(addr + 8 * i, d));
  }
  ste(sid: number, f: SteFields): void {
    this.steAt(LAYOUT.STRTAB + sid * 64, f);
  }
  cd(addr: number, f: CdFields): void {
    encodeCd(f).forEach((d, i) => this.w64(addr + 8 * i, d));
  }

  /** Submit commands followed by CMD_SYNC; returns CMDQ_CONS. */
  cmds(...c: Cmd[]): number {
    const cons = this.q.submit(...c, SYNC);
    if (this.q.prod !== (cons & this.q.mask))
      throw new Error(
        `CMDQ_CONS 0x${cons.toString(16)} did not reach PROD 0x${this.q.prod.toString(16)} (a command error?)`,
      );
    return cons;
  }

  /** Present one transaction; returns a copy of the result. */
  txn(sid: number, addr: number, a: Access = {}, ssid?: number): TxnResult {
    const t = newTxn();
    t.sid = sid;
    t.addr = addr;
    t.write = a.write ?? false;
    t.priv = a.priv ?? false;
    t.instr = a.instr ?? false;
    if (ssid !== undefined) {
      t.ssv = true;
      t.ssid = ssid;
    }
    return { ...this.m.smmu.translate(t, newTxnResult()) };
  }

  /** Number of event records written so far (EVENTQ_PROD, wrap ignored: tests write < 128). */
  eventCount(): number {
    return this.sw.r32(R.EVENTQ_PROD) & ((1 << LAYOUT.EVTQ_LOG2) - 1);
  }

  /** The raw event record in slot `idx`, read from the event queue in memory. */
  event(idx: number): RawEvent {
    const dw: bigint[] = [];
    for (let i = 0; i < 4; i++) dw.push(this.m.mem.read64(LAYOUT.EVTQ + idx * 32 + 8 * i));
    return decodeRaw(dw);
  }

  lastEvent(): RawEvent {
    const n = this.eventCount();
    if (n === 0) throw new Error('no event recorded');
    return this.event(n - 1);
  }
}

// ---- descriptors (reference §6.2) ------------------------------------------------------------

/** Stage-1 leaf attribute bits: AttrIndx=0, SH=0b11, AF=1, and AP[2:1] / nG as given. */
export function s1Leaf(
  oa: number,
  level: number,
  o: { ap?: number; af?: boolean; ng?: boolean; uxn?: boolean; pxn?: boolean } = {},
): bigint {
  const ap = o.ap ?? 0b01;
  let lo =
    BigInt(level === 3 ? 0b11 : 0b01) |
    (BigInt(ap) << 6n) |
    (3n << 8n) |
    ((o.af ?? true) ? 1n << 10n : 0n) |
    ((o.ng ?? true) ? 1n << 11n : 0n);
  if (o.pxn) lo |= 1n << 53n;
  if (o.uxn) lo |= 1n << 54n;
  return lo | BigInt(oa);
}

/** Stage-2 leaf: MemAttr=0b1111 (Normal WB), SH=0b11, AF=1, S2AP as given (bit 6 read, bit 7 write). */
export function s2Leaf(
  oa: number,
  level: number,
  o: { s2ap?: number; af?: boolean; memattr?: number } = {},
): bigint {
  const s2ap = o.s2ap ?? 0b11;
  return (
    BigInt(level === 3 ? 0b11 : 0b01) |
    (BigInt(o.memattr ?? 0xf) << 2n) |
    (BigInt(s2ap) << 6n) |
    (3n << 8n) |
    ((o.af ?? true) ? 1n << 10n : 0n) |
    BigInt(oa)
  );
}

export function tableDesc(next: number): bigint {
  return BigInt(next) | 3n;
}

// ---- a small 4 KB-granule table writer for the cache tests ----------------------------------------

/**
 * 4 KB granule tables with a 39-bit input (T0SZ / S2T0SZ = 25): start level 1, one 512-entry
 * start table (reference §6.1: 4 − ceil((39 − 12)/9) = 1; for stage 2, S2SL0=1 with IAS 39
 * needs 2^(39 − 39) = 1 table, §6.3). Index at level L = (va >> (12 + 9·(3 − L))) & 0x1FF.
 */
export class Pt39 {
  /** descriptor address of each leaf written, by input address */
  readonly leaves = new Map<number, number>();

  constructor(
    readonly mem: { read64(a: number): bigint; write64(a: number, v: bigint): void },
    readonly root: number,
    private readonly pool: { next: number },
  ) {}

  static shift(level: number): number {
    return 12 + 9 * (3 - level);
  }

  /** Descriptor address for `va` at `level`, creating tables above it. */
  entry(va: number, level: number): number {
    let table = this.root;
    for (let l = 1; l < level; l++) {
      const ea = table + (Math.floor(va / 2 ** Pt39.shift(l)) % 512) * 8;
      const d = this.mem.read64(ea);
      if ((d & 3n) === 3n) {
        table = Number(d & 0x0000_ffff_ffff_f000n);
      } else {
        const t = this.pool.next;
        this.pool.next += 0x1000;
        this.mem.write64(ea, tableDesc(t));
        table = t;
      }
    }
    return table + (Math.floor(va / 2 ** Pt39.shift(level)) % 512) * 8;
  }

  /** Write a leaf descriptor (built by s1Leaf/s2Leaf) for `va` at `level`; returns its address. */
  set(va: number, level: number, desc: bigint): number {
    const ea = this.entry(va, level);
    this.mem.write64(ea, desc);
    this.leaves.set(va, ea);
    return ea;
  }

  /** Rewrite the leaf previously written for `va`. */
  rewrite(va: number, desc: bigint): void {
    const ea = this.leaves.get(va);
    if (ea === undefined) throw new Error(`no leaf for 0x${va.toString(16)}`);
    this.mem.write64(ea, desc);
  }
}
