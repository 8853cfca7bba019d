/**
 * Field-by-field decoders and encoders for the SMMUv3 in-memory structures: STE, CD, L1STD,
 * L1CD, commands and event records.
 *
 * Nothing here declares a field. Every field, its bit position and its value meanings come from
 * the declarations the simulator itself uses (ste.ts, cd.ts, commands.ts, events.ts); the
 * ILLEGAL checks are the simulator's own steIllegal()/cdIllegal(), and a command's verdict is
 * what the simulator's command queue does with it. This file only adds what a human needs on
 * top: values shown as binary/hex/addresses, meanings computed from several fields (sizes,
 * start levels, ranges), IGNORED fields, and reserved bits that are set.
 *
 * Address convention: a field holding the upper bits of an address (S1ContextPtr[55:6],
 * S2TTB[55:4], TTB0/TTB1[55:4], L2Ptr, a command's Address[63:12], MSIAddress[55:2], an
 * event's IPA[55:12] and FetchAddr[55:3]) is shown, and encoded, as a byte address: the field
 * value shifted left by the field's position in its double-word.
 */
import { definedMask, get, getBig, setBig, type Field } from '../bits.ts';
import {
  STE,
  STE_RES0,
  STE_WORDS,
  CONFIG_MEANING,
  L1STD,
  steIllegal,
  cfgStage1,
  cfgStage2,
} from './ste.ts';
import { s2StartLevel, tg0Shift as s2GranuleShift } from '../vmsa/geometry.ts';
import { CD, CD_FIELDS, CD_WORDS, L1CD, cdIllegal } from './cd.ts';
import {
  CMD_WORDS,
  OPCODES,
  OPCODE_TABLE,
  OP,
  Opcode,
  encodeCommand,
  opcodeByName,
  type OpcodeDef,
  VA,
  IPA,
  MSIAddress,
  NUM,
  SCALE,
  TG,
  TTL,
  Range,
  StreamID,
  AtcSize,
  PfSize,
  PfStride,
  CS,
  MSIData,
  SSec,
  Resp,
} from './commands.ts';
import {
  EVT,
  EVT_WORDS,
  EventNum,
  E_IPA,
  E_FetchAddr,
  E_InputAddr,
  eventFields,
  eventName,
  eventNumber,
} from './events.ts';
import { CommandQueue, CERROR, type CmdqTarget } from './cmdq.ts';
import { DEFAULT_FEATURES, validateFeatures, type SmmuFeatures } from './features.ts';

// ---------------------------------------------------------------------------------------------
// Kinds and shapes

export type Kind = 'ste' | 'cd' | 'l1std' | 'l1cd' | 'cmd' | 'event';
export const KINDS: readonly Kind[] = ['ste', 'cd', 'l1std', 'l1cd', 'cmd', 'event'];

/** Size of each structure in 64-bit double-words (what the decoders show). */
export const KIND_DWORDS: Readonly<Record<Kind, number>> = {
  ste: 8,
  cd: 8,
  l1std: 1,
  l1cd: 1,
  cmd: CMD_WORDS / 2,
  event: EVT_WORDS / 2,
};
/** The fewest double-words a caller may give; missing upper double-words are taken as 0. */
export const KIND_MIN_DWORDS: Readonly<Record<Kind, number>> = {
  ste: 1,
  cd: 1,
  l1std: 1,
  l1cd: 1,
  cmd: CMD_WORDS / 2,
  event: EVT_WORDS / 2,
};

export const KIND_TITLE: Readonly<Record<Kind, string>> = {
  ste: 'STE (Stream Table Entry, 64 bytes)',
  cd: 'CD (Context Descriptor, 64 bytes)',
  l1std: 'L1STD (Level-1 Stream Table Descriptor, 8 bytes)',
  l1cd: 'L1CD (Level-1 Context Descriptor, 8 bytes)',
  cmd: 'command (16 bytes)',
  event: 'event record (32 bytes)',
};

export interface FieldDescription {
  /** architectural name, as declared */
  readonly name: string;
  /** the name encode() takes for this field (the declaration key; unique within the structure) */
  readonly key: string;
  /** double-word index and bit positions inside it */
  readonly dw: number;
  readonly hi: number;
  readonly lo: number;
  /** "DW1[29:28]" */
  readonly bits: string;
  readonly width: number;
  /** the raw field value, hex */
  readonly value: string;
  /** the value as shown: 0b… for enumerated fields, byte address for address fields, else decimal/hex */
  readonly display: string;
  readonly meaning?: string;
  /** byte address, for fields that hold an address's upper bits */
  readonly address?: string;
  /** why the hardware ignores this field in this structure (e.g. stage 2 disabled by Config) */
  readonly ignored?: string;
  readonly doc?: string;
}

export interface ReservedBits {
  /** "DW0[58:56]" */
  readonly bits: string;
  /** the set bits, hex, in place inside the double-word */
  readonly value: string;
}

export interface Description {
  readonly kind: Kind;
  /** opcode or event name for commands and events (CMD_ prefix dropped), else the kind in capitals */
  readonly name: string;
  readonly title: string;
  /** the double-words decoded, 0x-prefixed 16-digit hex, DW0 first */
  readonly words: string[];
  readonly fields: FieldDescription[];
  /** why the hardware refuses this structure: C_BAD_STE/C_BAD_CD/CERROR_ILL/C_BAD_STREAMID reasons */
  readonly illegal: string[];
  /** reserved (RES0 or undeclared) bits that are set */
  readonly reserved: ReservedBits[];
  /** derived facts: ranges, sizes, notes on missing double-words */
  readonly notes: string[];
  /** the SMMU feature set the checks assumed */
  readonly features: string;
}

export interface DescribeOptions {
  /** SMMU features the ILLEGAL checks assume (merged over DEFAULT_FEATURES) */
  readonly features?: Partial<SmmuFeatures>;
  /** how many double-words the caller gave (the rest are taken as 0); shown as a note */
  readonly givenDwords?: number;
  /** CD checks: STE.S1STALLD of the STE that located the CD */
  readonly s1stalld?: boolean;
  /** CD checks: the StreamWorld has one VA range (EL2, EL3): TTB1 unused, EPDx ignored */
  readonly singleRange?: boolean;
  /** CD checks: the STE uses an AArch32 stage 2 */
  readonly s2aa32?: boolean;
  /** L1STD checks: STRTAB_BASE_CFG.SPLIT (Span must not exceed SPLIT+1) */
  readonly split?: number;
}

/** Bad input to an encoder or a parser: the message names the field or token. */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}

// ---------------------------------------------------------------------------------------------
// Layouts: the declared fields of each structure, with the key encode() takes

interface Entry {
  readonly key: string;
  readonly field: Field;
}

const entriesOf = (layout: Readonly<Record<string, Field>>): Entry[] =>
  Object.entries(layout).map(([key, field]) => ({ key, field }));

const STE_ENTRIES = entriesOf(STE);
const CD_ENTRIES = entriesOf(CD);
const L1STD_ENTRIES = entriesOf(L1STD);
const L1CD_ENTRIES = entriesOf(L1CD);
const CD_RES0 = definedMask(CD_FIELDS, 10).map((m) => ~m >>> 0);
const L1STD_RES0 = definedMask(Object.values(L1STD), 2).map((m) => ~m >>> 0);
const L1CD_RES0 = definedMask(Object.values(L1CD), 2).map((m) => ~m >>> 0);

function cmdEntries(def: OpcodeDef): Entry[] {
  return def.fields.map((field) => ({ key: field.name, field }));
}

function eventEntries(num: number): Entry[] {
  return [EventNum, ...eventFields(num)].map((field) => ({ key: field.name, field }));
}

/**
 * Fields that hold the upper bits of an address. The byte address is the field value shifted
 * left by the field's bit position inside its double-word.
 */
const ADDRESS_FIELDS: ReadonlySet<Field> = new Set<Field>([
  STE.S1ContextPtr,
  STE.S2TTB,
  L1STD.L2Ptr,
  CD.TTB0,
  CD.TTB1,
  L1CD.L2Ptr,
  VA,
  IPA,
  MSIAddress,
  E_IPA,
  E_FetchAddr,
  E_InputAddr,
]);

const addrShift = (f: Field): bigint => BigInt(f.lsb % 64);
export function isAddressField(f: Field): boolean {
  return ADDRESS_FIELDS.has(f);
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers

const hex = (v: bigint | number): string => '0x' + v.toString(16);
const hex64 = (v: bigint): string => '0x' + v.toString(16).padStart(16, '0');

function bitsOf(f: Field): { dw: number; hi: number; lo: number; bits: string } {
  const dw = Math.floor(f.lsb / 64);
  const lo = f.lsb % 64;
  const hi = lo + f.width - 1;
  if (hi > 63) return { dw, hi, lo, bits: `[${f.lsb + f.width - 1}:${f.lsb}]` };
  return { dw, hi, lo, bits: hi === lo ? `DW${dw}[${lo}]` : `DW${dw}[${hi}:${lo}]` };
}

function displayValue(f: Field, v: bigint): string {
  if (ADDRESS_FIELDS.has(f)) return hex(v << addrShift(f));
  if (f.width === 1) return v.toString();
  if (f.values) return '0b' + v.toString(2).padStart(f.width, '0');
  if (f.width <= 6) return v.toString(10);
  return hex(v);
}

/** Double-words (DW0 first) of a structure held as little-endian 32-bit words. */
export function dwordsOf(w: ArrayLike<number>, ndw: number): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < ndw; i++)
    out.push((BigInt((w[2 * i + 1] ?? 0) >>> 0) << 32n) | BigInt((w[2 * i] ?? 0) >>> 0));
  return out;
}

/** Little-endian 32-bit words from double-words (DW0 first), padded with zeros to `ndw`. */
export function wordsOf(dws: readonly bigint[], ndw = dws.length): Uint32Array {
  const w = new Uint32Array(2 * Math.max(ndw, dws.length));
  dws.forEach((v, i) => {
    w[2 * i] = Number(v & 0xffffffffn);
    w[2 * i + 1] = Number((v >> 32n) & 0xffffffffn);
  });
  return w;
}

/** Contiguous runs of set bits of `mask` in double-word `dw`, as "DW0[58:56]". */
function bitRuns(dw: number, mask: bigint): ReservedBits[] {
  const out: ReservedBits[] = [];
  let b = 0;
  while (b < 64) {
    if (((mask >> BigInt(b)) & 1n) === 0n) {
      b++;
      continue;
    }
    const lo = b;
    while (b < 64 && ((mask >> BigInt(b)) & 1n) === 1n) b++;
    const hi = b - 1;
    const runMask = ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
    out.push({
      bits: hi === lo ? `DW${dw}[${lo}]` : `DW${dw}[${hi}:${lo}]`,
      value: hex(mask & runMask),
    });
  }
  return out;
}

/** Reserved bits that are set, from per-32-bit-word RES0 masks. */
function reservedSet(w: ArrayLike<number>, res0: ArrayLike<number>, ndw: number): ReservedBits[] {
  const out: ReservedBits[] = [];
  for (let d = 0; d < ndw && 2 * d < res0.length; d++) {
    const lo = ((w[2 * d] ?? 0) & (res0[2 * d] ?? 0)) >>> 0;
    const hi = ((w[2 * d + 1] ?? 0) & (res0[2 * d + 1] ?? 0)) >>> 0;
    const m = (BigInt(hi) << 32n) | BigInt(lo);
    if (m !== 0n) out.push(...bitRuns(d, m));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Features

export function resolveFeatures(f?: Partial<SmmuFeatures>): SmmuFeatures {
  return { ...DEFAULT_FEATURES, ...(f ?? {}) };
}

/** One line naming the feature bits the checks depend on, and what differs from the default. */
export function featureSummary(ft: SmmuFeatures): string {
  const b = (x: boolean): number => (x ? 1 : 0);
  const ttf = ft.ttf === 1 ? 'AArch32' : ft.ttf === 2 ? 'AArch64' : 'AArch32+AArch64';
  const endian = ft.ttendian === 0 ? 'mixed' : ft.ttendian === 2 ? 'LE' : 'BE';
  const grans = [ft.gran4k && '4K', ft.gran16k && '16K', ft.gran64k && '64K']
    .filter(Boolean)
    .join('/');
  const core =
    `SMMUv3.${ft.archMinor} S1P=${b(ft.s1p)} S2P=${b(ft.s2p)} TTF=${ttf} OAS=${ft.oas} SSIDSIZE=${ft.ssidSize} CD2L=${b(ft.cd2l)} ` +
    `ASID16=${b(ft.asid16)} VMID16=${b(ft.vmid16)} HTTU=${ft.httu} STALL_MODEL=0b${ft.stallModel.toString(2).padStart(2, '0')} ` +
    `TERM_MODEL=${b(ft.termModel)} TTENDIAN=${endian} ATS=${b(ft.ats)} NS1ATS=${b(ft.ns1ats)} PRI=${b(ft.pri)} HYP=${b(ft.hyp)} ` +
    `RIL=${b(ft.ril)} MPAM=${b(ft.mpam)} STT=${b(ft.stt)} ATTR_TYPES_OVR=${b(ft.attrTypesOvr)} ATTR_PERMS_OVR=${b(ft.attrPermsOvr)} ` +
    `granules ${grans}, RES0 checks ${ft.checkRes0 ? 'on' : 'off'}`;
  const diff = (Object.keys(DEFAULT_FEATURES) as Array<keyof SmmuFeatures>).filter(
    (k) => ft[k] !== DEFAULT_FEATURES[k],
  );
  return diff.length === 0
    ? `smmulab default SMMU: ${core}`
    : `smmulab default SMMU with ${diff.map((k) => `${k}=${String(ft[k])}`).join(', ')}: ${core}`;
}

/**
 * Parse feature overrides "key=value,key=value" (keys as in SmmuFeatures, e.g. "pri=1,oas=44").
 * Booleans take 0/1/true/false; numbers decimal or 0x hex. The result is validated.
 */
export function parseFeatureOverrides(spec: string): Partial<SmmuFeatures> {
  const out: Record<string, boolean | number> = {};
  const keys = Object.keys(DEFAULT_FEATURES) as Array<keyof SmmuFeatures>;
  for (const part of spec.split(/[,\s]+/).filter(Boolean)) {
    const m = /^([A-Za-z0-9_]+)=(.+)$/.exec(part);
    if (!m) throw new InputError(`feature "${part}" is not key=value`);
    const key = keys.find((k) => k.toLowerCase() === m[1]!.toLowerCase());
    if (!key) throw new InputError(`unknown feature "${m[1]}" (features: ${keys.join(', ')})`);
    const raw = m[2]!;
    if (typeof DEFAULT_FEATURES[key] === 'boolean') {
      if (/^(1|true)$/i.test(raw)) out[key] = true;
      else if (/^(0|false)$/i.test(raw)) out[key] = false;
      else throw new InputError(`feature ${key}: "${raw}" is not 0/1/true/false`);
    } else {
      const n = /^0x[0-9a-f]+$/i.test(raw)
        ? parseInt(raw, 16)
        : /^[0-9]+$/.test(raw)
          ? parseInt(raw, 10)
          : NaN;
      if (!Number.isSafeInteger(n))
        throw new InputError(`feature ${key}: "${raw}" is not a number`);
      out[key] = n;
    }
  }
  const errs = validateFeatures(resolveFeatures(out as Partial<SmmuFeatures>));
  if (errs.length) throw new InputError(`features: ${errs.join('; ')}`);
  return out as Partial<SmmuFeatures>;
}

// ---------------------------------------------------------------------------------------------
// Computed meanings (values that depend on the value itself or on other fields)

type Ctx = (f: Field) => number;
type Meaning = (v: number, ctx: Ctx) => string | undefined;

const sizeName = (bytes: number): string => {
  const units: Array<[number, string]> = [
    [2 ** 40, 'TB'],
    [2 ** 30, 'GB'],
    [2 ** 20, 'MB'],
    [2 ** 10, 'KB'],
  ];
  for (const [u, n] of units) if (bytes >= u && bytes % u === 0) return `${bytes / u}${n}`;
  return `${bytes} bytes`;
};

const COMPUTED = new Map<Field, Meaning>([
  [
    STE.S1CDMax,
    (v) =>
      v === 0
        ? 'substreams disabled: one CD at S1ContextPtr'
        : `2^${v} = ${2 ** v} CDs, SubstreamIDs 0..${2 ** v - 1}`,
  ],
  [STE.CONT, (v) => (v === 0 ? 'no contiguous hint' : `hint: 2^${v} = ${2 ** v} identical STEs`)],
  [STE.S2T0SZ, (v) => `IPA size ${64 - v} bits`],
  [
    STE.S2SL0,
    (v, c) => {
      const lvl = s2StartLevel(v, c(STE.S2TG));
      return lvl < 0 || s2GranuleShift(c(STE.S2TG)) === 0
        ? 'reserved'
        : `walk starts at level ${lvl} (with S2TG=${c(STE.S2TG)})`;
    },
  ],
  [CD.T0SZ, (v) => `VA size ${64 - v} bits`],
  [CD.T1SZ, (v) => `VA size ${64 - v} bits`],
  [CD.MAIR0, (v) => mairBytes(v, 0)],
  [CD.MAIR1, (v) => mairBytes(v, 4)],
  [
    L1STD.Span,
    (v) =>
      v === 0
        ? 'invalid descriptor'
        : v <= 11
          ? `L2 table of 2^(Span-1) = ${2 ** (v - 1)} STEs (${sizeName(2 ** (v - 1) * 64)})`
          : 'reserved, behaves as 0 (invalid)',
  ],
  [
    Opcode,
    (v) => {
      const d = OPCODE_TABLE[v];
      if (d) return cmdName(d);
      return v >= 0x80 && v <= 0x8f ? 'IMPLEMENTATION DEFINED opcode' : 'reserved opcode';
    },
  ],
  [
    Range,
    (v, c) => {
      if (v === 31) return 'all StreamIDs (CMD_CFGI_ALL)';
      const n = 2 ** (v + 1);
      const start = c(StreamID) - (c(StreamID) % n);
      return `2^(Range+1) = ${n} StreamIDs: 0x${start.toString(16)}..0x${(start + n - 1).toString(16)}`;
    },
  ],
  [
    AtcSize,
    (v) =>
      v === 52
        ? 'everything (Size=52)'
        : v > 52
          ? 'larger than 52 (may be CERROR_ILL)'
          : `span 4KB x 2^${v} = ${sizeName(4096 * 2 ** v)}, aligned`,
  ],
  [PfSize, (v) => `2^${v} = ${2 ** v} prefetches`],
  [PfStride, (v) => `${sizeName(2 ** (12 + v))} apart`],
  [EventNum, (v) => eventName(v)],
]);

/** CMD_ name of an opcode (the table names CMD_SYNC with its prefix, the others without). */
export function cmdName(d: OpcodeDef): string {
  return d.name.startsWith('CMD_') ? d.name : `CMD_${d.name}`;
}

function mairBytes(v: number, first: number): string {
  const parts: string[] = [];
  for (let i = 0; i < 4; i++)
    parts.push(`Attr${first + i}=0x${((v >>> (8 * i)) & 0xff).toString(16).padStart(2, '0')}`);
  return parts.join(' ');
}

// ---------------------------------------------------------------------------------------------
// The generic field walk

type IgnoredFn = (e: Entry) => string | undefined;

function describeFields(
  w: ArrayLike<number>,
  entries: readonly Entry[],
  ignored?: IgnoredFn,
): FieldDescription[] {
  const ctx: Ctx = (f) => get(w, f);
  return entries.map((e) => {
    const f = e.field;
    const v = getBig(w, f);
    const pos = bitsOf(f);
    const isAddr = ADDRESS_FIELDS.has(f);
    let meaning: string | undefined;
    const comp = COMPUTED.get(f);
    if (comp && f.width <= 53) meaning = comp(Number(v), ctx);
    else if (f.values) meaning = f.values[Number(v)] ?? 'reserved';
    if (isAddr && addrShift(f) !== 0n) {
      meaning = `byte address; the field holds address bits [${pos.hi}:${pos.lo}] = ${hex(v)}`;
    }
    const ign = ignored?.(e);
    return {
      name: f.name,
      key: e.key,
      ...pos,
      width: f.width,
      value: hex(v),
      display: displayValue(f, v),
      ...(meaning !== undefined ? { meaning } : {}),
      ...(isAddr ? { address: hex(v << addrShift(f)) } : {}),
      ...(ign ? { ignored: ign } : {}),
      ...(f.doc ? { doc: f.doc } : {}),
    };
  });
}

function pad(w: ArrayLike<number>, nwords: number): Uint32Array {
  const out = new Uint32Array(nwords);
  for (let i = 0; i < Math.min(nwords, w.length); i++) out[i] = w[i]! >>> 0;
  return out;
}

function missingNote(kind: Kind, given: number | undefined, out: string[]): void {
  const total = KIND_DWORDS[kind];
  if (given === undefined || given >= total) return;
  out.push(
    given === total - 1
      ? `DW${total - 1} not given, taken as 0`
      : `DW${given}..DW${total - 1} not given, taken as 0`,
  );
}

// ---------------------------------------------------------------------------------------------
// STE

export function describeSte(words: ArrayLike<number>, opts: DescribeOptions = {}): Description {
  const w = pad(words, STE_WORDS);
  const ft = resolveFeatures(opts.features);
  const config = get(w, STE.Config);
  const s1 = cfgStage1(config);
  const s2 = cfgStage2(config);
  const enabled = (config & 0b100) !== 0;
  const ignored: IgnoredFn = ({ key, field }) => {
    if (key === 'V' || key === 'Config') return undefined;
    if (get(w, STE.V) === 0) return undefined;
    if (!enabled) return 'Config=0b0xx aborts all traffic';
    if (field.name.startsWith('S1') && !s1) return 'stage 1 disabled (Config=0b1x0)';
    if (field.name.startsWith('S2') && field.name !== 'S2VMID' && !s2)
      return 'stage 2 disabled (Config=0b10x)';
    if (key === 'STRW' && s2) return 'IGNORED for Config=0b11x (StreamWorld NS-EL1)';
    if (key === 'EATS' && (config === 0b100 || !ft.ats))
      return config === 0b100 ? 'effective EATS=0 for bypass' : 'IDR0.ATS=0';
    return undefined;
  };
  const fields = describeFields(w, STE_ENTRIES, ignored);
  const illegal: string[] = [];
  const notes: string[] = [];
  const why = steIllegal(w, { features: ft });
  if (why === 'V=0') illegal.push('V=0: invalid STE, every transaction gets C_BAD_STE');
  else if (why) illegal.push(`C_BAD_STE: ${why}`);
  if (get(w, STE.V) === 1 && !enabled)
    notes.push(
      `Config=0b${config.toString(2).padStart(3, '0')} (${CONFIG_MEANING[config]}): transactions abort with no event`,
    );
  if (s1 && s2) notes.push('S1ContextPtr is an IPA (stage 2 translates the CD fetch)');
  const reserved = reservedSet(w, STE_RES0, 4);
  if (reserved.length)
    notes.push(
      ft.checkRes0
        ? 'RES0 bits are set: with RES0 checks on the STE is ILLEGAL'
        : 'RES0 bits are set: this model ignores them (RES0 checks off); an implementation may treat the STE as ILLEGAL',
    );
  const hiDw = dwordsOf(w, 8).slice(4);
  if (hiDw.some((d) => d !== 0n))
    notes.push('DW4..DW7 are not zero: they hold features this model does not implement (IGNORED)');
  missingNote('ste', opts.givenDwords, notes);
  return {
    kind: 'ste',
    name: 'STE',
    title: KIND_TITLE.ste,
    words: dwordsOf(w, 8).map(hex64),
    fields,
    illegal,
    reserved,
    notes,
    features: featureSummary(ft),
  };
}

// ---------------------------------------------------------------------------------------------
// CD

const TTB0_FIELDS: ReadonlySet<Field> = new Set([CD.T0SZ, CD.TG0, CD.IR0, CD.OR0, CD.SH0, CD.TTB0]);
const TTB1_FIELDS: ReadonlySet<Field> = new Set([CD.T1SZ, CD.TG1, CD.IR1, CD.OR1, CD.SH1, CD.TTB1]);

export function describeCd(words: ArrayLike<number>, opts: DescribeOptions = {}): Description {
  const w = pad(words, CD_WORDS);
  const ft = resolveFeatures(opts.features);
  const single = opts.singleRange ?? false;
  const ignored: IgnoredFn = ({ field }) => {
    if (TTB0_FIELDS.has(field) && !single && get(w, CD.EPD0)) return 'EPD0=1 (no TTB0 walks)';
    if (TTB1_FIELDS.has(field) && (single || get(w, CD.EPD1)))
      return single ? 'one VA range in this StreamWorld (TTB1 unused)' : 'EPD1=1 (no TTB1 walks)';
    return undefined;
  };
  const fields = describeFields(w, CD_ENTRIES, ignored);
  const illegal: string[] = [];
  const notes: string[] = [];
  const why = cdIllegal(w, {
    features: ft,
    s1stalld: opts.s1stalld ?? false,
    singleRange: single,
    s2aa32: opts.s2aa32 ?? false,
  });
  if (why === 'V=0') illegal.push('V=0: invalid CD, every transaction using it gets C_BAD_CD');
  else if (why) illegal.push(`C_BAD_CD: ${why}`);
  const ctx = [
    `STE.S1STALLD=${opts.s1stalld ? 1 : 0}`,
    single ? 'StreamWorld with one VA range (EL2/EL3)' : 'StreamWorld NS-EL1 (two VA ranges)',
    `${opts.s2aa32 ? 'AArch32' : 'no AArch32'} stage 2`,
  ];
  notes.push(`CD checks assume ${ctx.join(', ')}`);
  const reserved = reservedSet(w, CD_RES0, 5);
  if (reserved.length) notes.push('reserved bits are set (this model ignores them)');
  if (
    dwordsOf(w, 8)
      .slice(5)
      .some((d) => d !== 0n)
  )
    notes.push('DW5..DW7 are not zero: they hold features this model does not implement (IGNORED)');
  missingNote('cd', opts.givenDwords, notes);
  return {
    kind: 'cd',
    name: 'CD',
    title: KIND_TITLE.cd,
    words: dwordsOf(w, 8).map(hex64),
    fields,
    illegal,
    reserved,
    notes,
    features: featureSummary(ft),
  };
}

// ---------------------------------------------------------------------------------------------
// L1STD and L1CD

export function describeL1std(words: ArrayLike<number>, opts: DescribeOptions = {}): Description {
  const w = pad(words, 2);
  const ft = resolveFeatures(opts.features);
  const fields = describeFields(w, L1STD_ENTRIES);
  const span = get(w, L1STD.Span);
  const illegal: string[] = [];
  const notes: string[] = [];
  if (span === 0)
    illegal.push(
      'Span=0: invalid descriptor; SIDs through it give C_BAD_STREAMID (recorded if CR2.RECINVSID=1)',
    );
  else if (span > 11)
    illegal.push(`Span=${span} is reserved and behaves as 0: SIDs through it give C_BAD_STREAMID`);
  else if (opts.split !== undefined && span > opts.split + 1)
    illegal.push(
      `Span=${span} exceeds SPLIT+1=${opts.split + 1}: SIDs through it give C_BAD_STREAMID`,
    );
  if (span >= 1 && span <= 11) {
    if (opts.split === undefined)
      notes.push('valid only if Span <= STRTAB_BASE_CFG.SPLIT+1 (give the SPLIT to check)');
    const ptr = getBig(w, L1STD.L2Ptr) << 6n;
    const align = 1n << BigInt(6 + span - 1);
    const base = ptr - (ptr % align);
    notes.push(
      base === ptr
        ? `L2 table at ${hex(ptr)}, ${sizeName(Number(align))}`
        : `L2Ptr is not aligned to the table size (${sizeName(Number(align))}): bits below are treated as 0, so the L2 table is at ${hex(base)}`,
    );
  }
  const reserved = reservedSet(w, L1STD_RES0, 1);
  if (reserved.length) notes.push('reserved bits are set (this model ignores them)');
  return {
    kind: 'l1std',
    name: 'L1STD',
    title: KIND_TITLE.l1std,
    words: dwordsOf(w, 1).map(hex64),
    fields,
    illegal,
    reserved,
    notes,
    features: featureSummary(ft),
  };
}

export function describeL1cd(words: ArrayLike<number>, opts: DescribeOptions = {}): Description {
  const w = pad(words, 2);
  const ft = resolveFeatures(opts.features);
  const fields = describeFields(w, L1CD_ENTRIES);
  const illegal: string[] = [];
  if (get(w, L1CD.V) === 0)
    illegal.push('V=0: SubstreamIDs through this descriptor give C_BAD_SUBSTREAMID');
  const reserved = reservedSet(w, L1CD_RES0, 1);
  const notes = reserved.length ? ['reserved bits are set (this model ignores them)'] : [];
  return {
    kind: 'l1cd',
    name: 'L1CD',
    title: KIND_TITLE.l1cd,
    words: dwordsOf(w, 1).map(hex64),
    fields,
    illegal,
    reserved,
    notes,
    features: featureSummary(ft),
  };
}

// ---------------------------------------------------------------------------------------------
// Commands

const NOOP_TARGET = (ft: SmmuFeatures): CmdqTarget => ({
  features: ft,
  smmuEnabled: () => false,
  cfgiSte: () => {},
  cfgiSteRange: () => {},
  cfgiCd: () => {},
  cfgiCdAll: () => {},
  prefetchConfig: () => {},
  tlbi: () => {},
  atcInv: () => {},
  priResp: () => {},
  resume: () => {},
  stallTerm: () => {},
  sync: () => {},
  fetch: () => false,
  error: () => {},
});

/** What the simulator's command queue does with a command: CERROR code (0 = accepted). */
export function commandVerdict(w: ArrayLike<number>, features?: Partial<SmmuFeatures>): number {
  const q = new CommandQueue(NOOP_TARGET(resolveFeatures(features)));
  return q.execute(pad(w, CMD_WORDS));
}

const RANGED = new Set<number>([
  OP.TLBI_NH_VA,
  OP.TLBI_NH_VAA,
  OP.TLBI_EL3_VA,
  OP.TLBI_EL2_VA,
  OP.TLBI_EL2_VAA,
  OP.TLBI_S2_IPA,
  OP.TLBI_S_EL2_VA,
  OP.TLBI_S_EL2_VAA,
  OP.TLBI_S_S2_IPA,
]);

/**
 * Why a command the simulator refused is ILLEGAL, in the reference's words (§4.2, §4.4, §4.6).
 * Only consulted after commandVerdict() said CERROR_ILL, so it explains, never decides.
 */
function illReasons(w: Uint32Array, def: OpcodeDef | undefined, ft: SmmuFeatures): string[] {
  const op = get(w, Opcode);
  if (!def)
    return [
      op >= 0x80 && op <= 0x8f
        ? `opcode 0x${op.toString(16)} is IMPLEMENTATION DEFINED and not implemented`
        : `opcode 0x${op.toString(16).padStart(2, '0')} is reserved`,
    ];
  const r: string[] = [];
  if (ft.checkRes0 && reservedSet(w, def.res0, 2).length)
    r.push('RES0 bits are set and this SMMU checks them');
  const ssec = get(w, SSec);
  const secureOnly = (op >= 0x50 && op <= 0x60) || op === OP.TLBI_EL3_ALL || op === OP.TLBI_EL3_VA;
  if (secureOnly) r.push(`${def.name} is accepted on the Secure command queue only`);
  else if (ssec) r.push('SSec=1 on the Non-secure command queue');
  if (op === OP.CMD_SYNC && get(w, CS) === 3) r.push('CS=0b11 is ILLEGAL');
  if (op === OP.PRI_RESP) {
    if (!ft.pri) r.push('IDR0.PRI=0');
    if (get(w, Resp) === 3) r.push('Resp=0b11 is ILLEGAL');
  }
  if (
    (op === OP.CFGI_CD ||
      op === OP.CFGI_CD_ALL ||
      (op >= OP.TLBI_NH_ALL && op <= OP.TLBI_NH_VAA)) &&
    !ft.s1p
  )
    r.push('IDR0.S1P=0 (no stage 1)');
  if ((op === OP.TLBI_S12_VMALL || op === OP.TLBI_S2_IPA) && !ft.s2p)
    r.push('IDR0.S2P=0 (no stage 2)');
  if (op >= OP.TLBI_EL2_ALL && op <= OP.TLBI_EL2_VAA && !ft.hyp) r.push('IDR0.HYP=0');
  if (op === OP.CFGI_VMS_PIDM && !ft.mpam) r.push('IDR3.MPAM=0');
  if (op === OP.ATC_INV) {
    if (!ft.ats) r.push('IDR0.ATS=0');
    if (get(w, AtcSize) > 52) r.push(`Size=${get(w, AtcSize)} is larger than 52`);
  }
  if ((op === OP.RESUME || op === OP.STALL_TERM) && ft.stallModel === 1)
    r.push('STALL_MODEL=0b01 (terminate only): there is nothing to resume');
  if (op === OP.DPTI_ALL || op === OP.DPTI_PA) r.push('DPT is not implemented');
  if (
    RANGED.has(op) &&
    ft.ril &&
    get(w, TG) !== 0 &&
    get(w, NUM) === 0 &&
    get(w, SCALE) === 0 &&
    get(w, TTL) === 0
  )
    r.push('TG!=0 with NUM=SCALE=TTL=0 is a reserved range encoding');
  if (op === OP.PREFETCH_ADDR && ft.archMinor === 0 && get(w, PfStride) !== 0)
    r.push('Stride is RES0 on SMMUv3.0');
  return r.length ? r : ["refused by the model's command checks"];
}

function rangeNote(w: Uint32Array, op: number): string | undefined {
  if (!RANGED.has(op)) return undefined;
  const tg = get(w, TG);
  const addr = getBig(w, op === OP.TLBI_S2_IPA || op === OP.TLBI_S_S2_IPA ? IPA : VA) << 12n;
  if (tg === 0) {
    const extra =
      get(w, NUM) | get(w, SCALE) | get(w, TTL)
        ? '; NUM, SCALE and TTL are RES0 when TG=0 but are not zero'
        : '';
    return `non-range (TG=0): invalidates the entries containing ${hex(addr)}${extra}`;
  }
  const g = tg === 1 ? 12 : tg === 2 ? 14 : 16;
  const pages = (get(w, NUM) + 1) * 2 ** get(w, SCALE);
  const bytes = BigInt(pages) << BigInt(g);
  return `range: (NUM+1) x 2^SCALE = ${pages} x ${sizeName(2 ** g)} = ${sizeName(Number(bytes))}, addresses ${hex(addr)}..${hex(addr + bytes - 1n)}`;
}

export function describeCommand(words: ArrayLike<number>, opts: DescribeOptions = {}): Description {
  const w = pad(words, CMD_WORDS);
  const ft = resolveFeatures(opts.features);
  const op = get(w, Opcode);
  const def = OPCODE_TABLE[op];
  const entries = def ? cmdEntries(def) : [{ key: 'Opcode', field: Opcode }];
  const fields = describeFields(w, entries);
  const notes: string[] = [];
  const illegal: string[] = [];
  const verdict = commandVerdict(w, ft);
  if (verdict === CERROR.ILL)
    illegal.push(...illReasons(w, def, ft).map((r) => `CERROR_ILL: ${r}`));
  else if (verdict !== CERROR.NONE) illegal.push(`CERROR code ${verdict}`);
  const reserved = def ? reservedSet(w, def.res0, 2) : [];
  if (!def) notes.push('an unknown opcode has no fields: the SMMU stops with CONS.ERR=CERROR_ILL');
  if (reserved.length && !ft.checkRes0)
    notes.push(
      'RES0 bits are set: this model ignores them (RES0 checks off); an implementation may raise CERROR_ILL',
    );
  if (def) {
    const rn = rangeNote(w, op);
    if (rn) notes.push(rn);
    if (op === OP.CMD_SYNC && get(w, CS) === 1) {
      const a = getBig(w, MSIAddress) << 2n;
      notes.push(
        a === 0n
          ? 'SIG_IRQ with MSIAddress=0: no MSI is written (wired interrupt only)'
          : `SIG_IRQ: MSI of data 0x${get(w, MSIData).toString(16)} to ${hex(a)} ${ft.msi ? '' : '(not written: IDR0.MSI=0)'}`.trimEnd(),
      );
    }
  }
  const name = def
    ? def.name
    : op >= 0x80 && op <= 0x8f
      ? `IMPDEF(0x${op.toString(16)})`
      : `RESERVED(0x${op.toString(16).padStart(2, '0')})`;
  const alias = def && op === OP.CFGI_STE_RANGE && get(w, Range) === 31 ? ' = CMD_CFGI_ALL' : '';
  const title = def
    ? `${cmdName(def)} (opcode 0x${op.toString(16).padStart(2, '0')})${alias}: ${def.doc}`
    : `${name}: not a defined command`;
  return {
    kind: 'cmd',
    name,
    title,
    words: dwordsOf(w, 2).map(hex64),
    fields,
    illegal,
    reserved,
    notes,
    features: featureSummary(ft),
  };
}

// ---------------------------------------------------------------------------------------------
// Events

export function describeEvent(words: ArrayLike<number>, opts: DescribeOptions = {}): Description {
  const w = pad(words, EVT_WORDS);
  const ft = resolveFeatures(opts.features);
  const num = get(w, EventNum);
  const entries = eventEntries(num);
  const fields = describeFields(w, entries);
  const name = eventName(num);
  const notes: string[] = [];
  const known = Object.values(EVT).includes(num as never);
  if (!known)
    notes.push(
      num >= 0xe0 && num <= 0xef
        ? 'IMPLEMENTATION DEFINED event: only DW0 is decoded'
        : 'reserved event number: only DW0 is decoded',
    );
  const stall = fields.find((f) => f.name === 'Stall');
  if (stall && stall.value === '0x1')
    notes.push(
      `stalled: resume with CMD_RESUME(StreamID=0x${get(w, StreamID).toString(16)}, STAG=...) or CMD_STALL_TERM`,
    );
  const res0 = definedMask(
    entries.map((e) => e.field),
    EVT_WORDS,
  ).map((m) => ~m >>> 0);
  const reserved = reservedSet(w, res0, 4);
  if (reserved.length) notes.push(`bits outside the fields declared for ${name} are set`);
  const title = `${name} (event 0x${num.toString(16).padStart(2, '0')})`;
  return {
    kind: 'event',
    name,
    title,
    words: dwordsOf(w, 4).map(hex64),
    fields,
    illegal: [],
    reserved,
    notes,
    features: featureSummary(ft),
  };
}

// ---------------------------------------------------------------------------------------------
// Dispatch, values, text

export function describe(
  kind: Kind,
  words: ArrayLike<number>,
  opts: DescribeOptions = {},
): Description {
  switch (kind) {
    case 'ste':
      return describeSte(words, opts);
    case 'cd':
      return describeCd(words, opts);
    case 'l1std':
      return describeL1std(words, opts);
    case 'l1cd':
      return describeL1cd(words, opts);
    case 'cmd':
      return describeCommand(words, opts);
    case 'event':
      return describeEvent(words, opts);
  }
}

/**
 * Field values by encode() key, as encode() takes them: address fields as byte addresses,
 * the rest as the raw field value. The Opcode and EventNum are left out (they are the name).
 */
export function fieldValues(d: Description): Record<string, bigint> {
  const out: Record<string, bigint> = {};
  for (const f of d.fields) {
    if ((d.kind === 'cmd' && f.key === 'Opcode') || (d.kind === 'event' && f.key === 'EventNum'))
      continue;
    out[f.key] = BigInt(f.address ?? f.value);
  }
  return out;
}

export interface FormatOptions {
  /** show only fields whose value is not zero */
  readonly nonzero?: boolean;
  /** leave out the features line */
  readonly noFeatures?: boolean;
}

/** Human-readable text: the title, then `Name=value (meaning)` lines grouped by double-word. */
export function formatDescription(d: Description, o: FormatOptions = {}): string {
  const lines: string[] = [d.title];
  const shown = d.fields.filter((f) => !o.nonzero || f.value !== '0x0');
  const posW = Math.max(
    0,
    ...shown.map((f) => `[${f.hi === f.lo ? f.lo : `${f.hi}:${f.lo}`}]`.length),
  );
  const bodyOf = (f: FieldDescription): string =>
    `${f.name}=${f.display}${f.meaning ? ` (${f.meaning})` : ''}`;
  d.words.forEach((dwHex, dw) => {
    const inDw = shown.filter((f) => f.dw === dw);
    const declared = d.fields.filter((f) => f.dw === dw).length;
    const none =
      d.kind === 'ste' || d.kind === 'cd'
        ? '  (not modelled by this simulator)'
        : '  (no fields: reserved)';
    const tag = declared === 0 ? none : inDw.length === 0 ? '  (all fields zero)' : '';
    lines.push(`DW${dw} ${dwHex}${tag}`);
    for (const f of inDw) {
      const pos = `[${f.hi === f.lo ? f.lo : `${f.hi}:${f.lo}`}]`.padEnd(posW);
      const body = bodyOf(f);
      lines.push(`  ${pos}  ${body}${f.ignored ? `  [IGNORED: ${f.ignored}]` : ''}`);
    }
  });
  for (const r of d.reserved) lines.push(`reserved bits set: ${r.bits} = ${r.value}`);
  for (const i of d.illegal) lines.push(`ILLEGAL: ${i}`);
  for (const n of d.notes) lines.push(`note: ${n}`);
  if (!o.noFeatures) lines.push(`assumed: ${d.features}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Encoders

export type FieldInput = bigint | number | boolean | string;

/** Parse a field value: 0x hex, 0b binary, decimal (underscores allowed), or a boolean. */
export function parseFieldValue(v: FieldInput, what: string): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'boolean') return v ? 1n : 0n;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0)
      throw new InputError(`${what}: ${v} is not a non-negative integer`);
    return BigInt(v);
  }
  const s = v.trim().replace(/_/g, '');
  if (/^0x[0-9a-f]+$/i.test(s) || /^0b[01]+$/i.test(s) || /^[0-9]+$/.test(s)) return BigInt(s);
  if (/^true$/i.test(s)) return 1n;
  if (/^false$/i.test(s)) return 0n;
  throw new InputError(`${what}: "${v}" is not a number (use 0x… hex, 0b… binary or decimal)`);
}

/** Alternative names accepted by encode(), lower-case → declared field name. */
const ALIASES: Readonly<Record<string, string>> = {
  addr: 'address',
  sid: 'streamid',
  ssid: 'substreamid',
};

/** Resolve user-given names against a structure's entries (key or architectural name, any case). */
function resolveEntries(
  entries: readonly Entry[],
  values: Readonly<Record<string, FieldInput>>,
  what: string,
): Map<Entry, bigint> {
  const out = new Map<Entry, bigint>();
  const givenAs = new Map<Entry, string>();
  for (const [given, raw] of Object.entries(values)) {
    const lc = ALIASES[given.toLowerCase()] ?? given.toLowerCase();
    const byKey = entries.filter((e) => e.key.toLowerCase() === lc);
    const matches = byKey.length ? byKey : entries.filter((e) => e.field.name.toLowerCase() === lc);
    if (matches.length === 0) {
      const names = entries.map((e) =>
        e.key === e.field.name ? e.key : `${e.key} (${e.field.name})`,
      );
      throw new InputError(`${what} has no field "${given}" (fields: ${names.join(', ')})`);
    }
    if (matches.length > 1)
      throw new InputError(
        `${what}: "${given}" is ambiguous: ${matches.map((e) => `${e.key} (${bitsOf(e.field).bits})`).join(' or ')}`,
      );
    const e = matches[0]!;
    if (givenAs.has(e))
      throw new InputError(
        `${what}: field ${e.key} given twice (as "${givenAs.get(e)}" and "${given}")`,
      );
    givenAs.set(e, given);
    const f = e.field;
    const label = `${what} field ${f.name} (${bitsOf(f).bits}, ${f.width} bit${f.width > 1 ? 's' : ''})`;
    if (typeof raw === 'boolean' && f.width > 1) throw new InputError(`${label} needs a value`);
    let v = parseFieldValue(raw, label);
    if (ADDRESS_FIELDS.has(f) && addrShift(f) !== 0n) {
      const sh = addrShift(f);
      if (v % (1n << sh) !== 0n)
        throw new InputError(
          `${label}: address ${hex(v)} is not ${1n << sh}-byte aligned (the field holds address bits [${bitsOf(f).hi}:${bitsOf(f).lo}])`,
        );
      if (v >> (sh + BigInt(f.width)) !== 0n)
        throw new InputError(
          `${label}: address ${hex(v)} does not fit in address bits [${bitsOf(f).hi}:${bitsOf(f).lo}]`,
        );
      v >>= sh;
    } else if (v >> BigInt(f.width) !== 0n) {
      throw new InputError(
        `${label}: ${hex(v)} does not fit (largest ${hex((1n << BigInt(f.width)) - 1n)})`,
      );
    }
    out.set(e, v);
  }
  return out;
}

function build(
  nwords: number,
  entries: readonly Entry[],
  values: Readonly<Record<string, FieldInput>>,
  what: string,
): Uint32Array {
  const w = new Uint32Array(nwords);
  for (const [e, v] of resolveEntries(entries, values, what)) setBig(w, e.field, v);
  return w;
}

export function encodeSte(values: Readonly<Record<string, FieldInput>>): Uint32Array {
  return build(STE_WORDS, STE_ENTRIES, values, 'STE');
}
export function encodeCd(values: Readonly<Record<string, FieldInput>>): Uint32Array {
  return build(CD_WORDS, CD_ENTRIES, values, 'CD');
}
export function encodeL1std(values: Readonly<Record<string, FieldInput>>): Uint32Array {
  return build(2, L1STD_ENTRIES, values, 'L1STD');
}
export function encodeL1cd(values: Readonly<Record<string, FieldInput>>): Uint32Array {
  return build(2, L1CD_ENTRIES, values, 'L1CD');
}

/** Encode a command through commands.ts encodeCommand, after checking names and widths. */
export function encodeCmd(
  opcode: string,
  values: Readonly<Record<string, FieldInput>>,
): Uint32Array {
  const name = opcode.trim();
  const def = opcodeByName(name);
  if (!def)
    throw new InputError(
      `unknown command "${opcode}" (commands: ${OPCODES.map((d) => d.name).join(', ')}, CFGI_ALL; a CMD_ prefix is allowed)`,
    );
  const entries = cmdEntries(def).filter((e) => e.field !== Opcode);
  const resolved = resolveEntries(entries, values, cmdName(def));
  const byName: Record<string, bigint> = {};
  for (const [e, v] of resolved) byName[e.field.name] = v;
  return encodeCommand(name, byName);
}

/** Encode an event record: the event by name (F_TRANSLATION) or number (0x10). */
export function encodeEvent(
  event: string,
  values: Readonly<Record<string, FieldInput>>,
): Uint32Array {
  const s = event.trim();
  let num = eventNumber(s);
  if (num === undefined && /^(0x[0-9a-f]{1,2}|[0-9]{1,3})$/i.test(s)) num = Number(s);
  if (num === undefined || num > 0xff)
    throw new InputError(
      `unknown event "${event}" (events: ${Object.keys(EVT).join(', ')}, or a number 0..0xff)`,
    );
  const entries = eventEntries(num).filter((e) => e.field !== EventNum);
  const w = build(EVT_WORDS, entries, values, eventName(num));
  setBig(w, EventNum, BigInt(num));
  return w;
}

/** Encode any kind; `name` is the opcode (cmd) or event (event), unused otherwise. */
export function encode(
  kind: Kind,
  values: Readonly<Record<string, FieldInput>>,
  name?: string,
): Uint32Array {
  if ((kind === 'cmd' || kind === 'event') && !name)
    throw new InputError(
      `encode ${kind} needs the ${kind === 'cmd' ? 'command name (e.g. TLBI_NH_VA)' : 'event name (e.g. F_TRANSLATION)'}`,
    );
  if (kind !== 'cmd' && kind !== 'event' && name)
    throw new InputError(`encode ${kind} takes fields only, not "${name}"`);
  switch (kind) {
    case 'ste':
      return encodeSte(values);
    case 'cd':
      return encodeCd(values);
    case 'l1std':
      return encodeL1std(values);
    case 'l1cd':
      return encodeL1cd(values);
    case 'cmd':
      return encodeCmd(name!, values);
    case 'event':
      return encodeEvent(name!, values);
  }
}

/** The names encode() accepts for a kind (and, for cmd/event, the given opcode or event). */
export function fieldNames(kind: Kind, name?: string): string[] {
  const keys = (es: readonly Entry[]) => es.map((e) => e.key);
  switch (kind) {
    case 'ste':
      return keys(STE_ENTRIES);
    case 'cd':
      return keys(CD_ENTRIES);
    case 'l1std':
      return keys(L1STD_ENTRIES);
    case 'l1cd':
      return keys(L1CD_ENTRIES);
    case 'cmd': {
      const d = name ? opcodeByName(name) : undefined;
      return d ? keys(cmdEntries(d)).filter((k) => k !== 'Opcode') : [];
    }
    case 'event': {
      const n = name ? eventNumber(name) : undefined;
      return n !== undefined ? keys(eventEntries(n)).filter((k) => k !== 'EventNum') : [];
    }
  }
}
