/**
 * SMMUv3 commands (IHI 0070 4.1–4.7): 16 bytes, two little-endian double-words.
 * Every opcode and its fields are declared here once; the command queue, the hypervisor's
 * sanitizer, the host driver's command builder and the decoders all use this table.
 */
import { dw, get, set, definedMask, type Field, getBig, setBig } from '../bits.ts';

export const CMD_WORDS = 4;
export const CMD_BYTES = 16;

// Common fields (DW0)
export const Opcode = dw(0, 'Opcode', 7, 0);
export const SSec = dw(0, 'SSec', 10, 10, {
  values: { 0: 'Non-secure', 1: 'Secure (CERROR_ILL on the Non-secure queue)' },
});
export const SSV = dw(0, 'SSV', 11, 11, {
  values: { 0: 'no SubstreamID', 1: 'SubstreamID valid' },
});
export const SubstreamID = dw(0, 'SubstreamID', 31, 12);
export const StreamID = dw(0, 'StreamID', 63, 32);
// TLBI fields
export const NUM = dw(0, 'NUM', 16, 12);
/** SCALE is [25:20] in IHI 0070 G.b (Linux declares [24:20]); the model decodes 6 bits. */
export const SCALE = dw(0, 'SCALE', 25, 20);
export const VMID = dw(0, 'VMID', 47, 32);
export const ASID = dw(0, 'ASID', 63, 48);
export const Leaf = dw(1, 'Leaf', 0, 0, {
  values: { 0: 'also non-leaf entries (table walk / L1 descriptors)', 1: 'leaf entries only' },
});
export const TTL128 = dw(1, 'TTL128', 7, 7, { doc: 'TTL refers to 128-bit descriptors (D128)' });
export const TTL = dw(1, 'TTL', 9, 8, {
  values: {
    0: 'any level',
    1: 'leaves at level 1',
    2: 'leaves at level 2',
    3: 'leaves at level 3',
  },
});
/** TLBI TG: 0 is a non-range command; else the range's granule. */
export const TLBI_TG = { NONE: 0, SZ_4K: 1, SZ_16K: 2, SZ_64K: 3 } as const;
export const TG = dw(1, 'TG', 11, 10, {
  values: { 0: 'non-range', 1: '4KB', 2: '16KB', 3: '64KB' },
});
export const VA = dw(1, 'Address', 63, 12, { doc: 'VA[63:12]' });
export const IPA = dw(1, 'Address', 55, 12, { doc: 'IPA[55:12]' });
// CFGI
export const Range = dw(1, 'Range', 4, 0, {
  doc: '2^(Range+1) StreamIDs; 31 means all (CFGI_ALL)',
});
// PREFETCH_ADDR
export const PfSize = dw(1, 'Size', 4, 0, { doc: '2^Size prefetches' });
export const PfStride = dw(1, 'Stride', 9, 5, {
  doc: 'prefetches are 2^(12+Stride) bytes apart (RES0 in v3.0)',
});
// ATC_INV
export const Global = dw(0, 'Global', 9, 9);
/** ATC_INV Size meaning the whole ATC (the largest legal value). */
export const ATC_SIZE_ALL = 52;
export const AtcSize = dw(1, 'Size', 5, 0, {
  doc: 'span 4KB x 2^Size, aligned; 52 means everything',
});
// PRI_RESP
export const PRGIndex = dw(1, 'PRGIndex', 8, 0);
/** PRI_RESP Resp values (3 is ILLEGAL). */
export const RESP = { FAILURE: 0, INVALID: 1, SUCCESS: 2, ILLEGAL: 3 } as const;
export const Resp = dw(1, 'Resp', 13, 12, {
  values: { 0: 'ResponseFailure', 1: 'InvalidRequest', 2: 'Success', 3: 'ILLEGAL' },
});
// RESUME
export const Ac = dw(0, 'Ac', 12, 12, { values: { 0: 'terminate', 1: 'retry' } });
export const Ab = dw(0, 'Ab', 13, 13, { values: { 0: 'RAZ/WI', 1: 'abort' } });
export const STAG = dw(1, 'STAG', 15, 0);
// CMD_SYNC
/** CMD_SYNC completion signal (3 is ILLEGAL). */
export const CS_SIG = { NONE: 0, IRQ: 1, SEV: 2, ILLEGAL: 3 } as const;
export const CS = dw(0, 'CS', 13, 12, {
  values: { 0: 'SIG_NONE', 1: 'SIG_IRQ', 2: 'SIG_SEV', 3: 'ILLEGAL' },
});
export const MSH = dw(0, 'MSH', 23, 22, {
  values: { 0: 'Non-shareable', 1: 'reserved', 2: 'Outer Shareable', 3: 'Inner Shareable' },
});
export const MSIAttr = dw(0, 'MSIAttr', 27, 24, {
  doc: 'MSI memory attributes (STE.MemAttr encoding)',
});
export const MSIData = dw(0, 'MSIData', 63, 32);
export const MSIAddress = dw(1, 'MSIAddress', 55, 2);

export const OP = {
  PREFETCH_CONFIG: 0x01,
  PREFETCH_ADDR: 0x02,
  CFGI_STE: 0x03,
  CFGI_STE_RANGE: 0x04,
  CFGI_CD: 0x05,
  CFGI_CD_ALL: 0x06,
  CFGI_VMS_PIDM: 0x07,
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
  TLBI_S_EL2_ALL: 0x50,
  TLBI_S_EL2_ASID: 0x51,
  TLBI_S_EL2_VA: 0x52,
  TLBI_S_EL2_VAA: 0x53,
  TLBI_S_S12_VMALL: 0x58,
  TLBI_S_S2_IPA: 0x5a,
  TLBI_SNH_ALL: 0x60,
  DPTI_ALL: 0x70,
  DPTI_PA: 0x73,
} as const;
export type OpName = keyof typeof OP;

export interface OpcodeDef {
  readonly op: number;
  readonly name: OpName;
  /** all fields including the Opcode */
  readonly fields: readonly Field[];
  /** per-word masks of the bits no field covers (RES0), derived from `fields` */
  readonly res0: Uint32Array;
  readonly doc: string;
}

const range = [NUM, SCALE];
const rangeDw1 = [Leaf, TTL128, TTL, TG];

const DEFS: Array<[OpName, Field[], string]> = [
  [
    'PREFETCH_CONFIG',
    [SSec, SSV, SubstreamID, StreamID],
    'prefetch the configuration for a StreamID',
  ],
  [
    'PREFETCH_ADDR',
    [SSec, SSV, SubstreamID, StreamID, PfSize, PfStride, VA],
    'prefetch translations for an address range',
  ],
  [
    'CFGI_STE',
    [SSec, StreamID, Leaf],
    'invalidate the STE (and CDs) for a StreamID; Leaf=0 also the L1STD',
  ],
  [
    'CFGI_STE_RANGE',
    [SSec, StreamID, Range],
    'invalidate STEs for 2^(Range+1) StreamIDs; Range=31 is CFGI_ALL',
  ],
  ['CFGI_CD', [SSec, SSV, SubstreamID, StreamID, Leaf], 'invalidate one CD; Leaf=0 also the L1CD'],
  ['CFGI_CD_ALL', [SSec, StreamID], 'invalidate all CDs for a StreamID'],
  ['CFGI_VMS_PIDM', [SSec, VMID], 'invalidate VMS PARTID maps (MPAM)'],
  ['TLBI_NH_ALL', [VMID], 'all NS-EL1 stage-1 entries of a VMID'],
  ['TLBI_NH_ASID', [VMID, ASID], 'NS-EL1 non-global entries of an ASID and VMID'],
  [
    'TLBI_NH_VA',
    [...range, VMID, ASID, ...rangeDw1, VA],
    'NS-EL1 entries by VA, ASID (or global) and VMID',
  ],
  ['TLBI_NH_VAA', [...range, VMID, ...rangeDw1, VA], 'NS-EL1 entries by VA, all ASIDs, in a VMID'],
  ['TLBI_EL3_ALL', [], 'EL3 entries (Secure queue only)'],
  ['TLBI_EL3_VA', [...range, ...rangeDw1, VA], 'EL3 entries by VA (Secure queue only)'],
  ['TLBI_EL2_ALL', [], 'all NS-EL2 and NS-EL2-E2H entries'],
  ['TLBI_EL2_ASID', [ASID], 'NS-EL2-E2H non-global entries of an ASID'],
  ['TLBI_EL2_VA', [...range, ASID, ...rangeDw1, VA], 'NS-EL2(-E2H) entries by VA'],
  ['TLBI_EL2_VAA', [...range, ...rangeDw1, VA], 'NS-EL2(-E2H) entries by VA, all ASIDs'],
  ['TLBI_S12_VMALL', [VMID], 'all stage-1 and stage-2 entries of a VMID'],
  [
    'TLBI_S2_IPA',
    [...range, VMID, ...rangeDw1, IPA],
    'stage-2 entries by IPA (not combined S1+S2 entries)',
  ],
  ['TLBI_NSNH_ALL', [], 'all NS non-EL2 entries, all VMIDs and ASIDs'],
  ['ATC_INV', [Global, SSV, SubstreamID, StreamID, AtcSize, VA], 'invalidate a device ATC range'],
  ['PRI_RESP', [SSV, SubstreamID, StreamID, PRGIndex, Resp], 'respond to a PRI page request group'],
  ['RESUME', [SSec, Ac, Ab, StreamID, STAG], 'resume or terminate a stalled transaction'],
  ['STALL_TERM', [SSec, StreamID], 'terminate all stalled transactions of a StreamID'],
  [
    'CMD_SYNC',
    [CS, MSH, MSIAttr, MSIData, MSIAddress],
    'complete all earlier commands, then signal',
  ],
  ['TLBI_S_EL2_ALL', [], 'Secure EL2 (Secure queue only)'],
  ['TLBI_S_EL2_ASID', [ASID], 'Secure EL2 (Secure queue only)'],
  ['TLBI_S_EL2_VA', [...range, ASID, ...rangeDw1, VA], 'Secure EL2 (Secure queue only)'],
  ['TLBI_S_EL2_VAA', [...range, ...rangeDw1, VA], 'Secure EL2 (Secure queue only)'],
  ['TLBI_S_S12_VMALL', [VMID], 'Secure stage 1+2 (Secure queue only)'],
  ['TLBI_S_S2_IPA', [...range, VMID, ...rangeDw1, IPA], 'Secure stage 2 (Secure queue only)'],
  ['TLBI_SNH_ALL', [], 'Secure non-Hyp (Secure queue only)'],
  ['DPTI_ALL', [], 'DPT invalidate all (v3.3 DPT)'],
  ['DPTI_PA', [], 'DPT invalidate by PA (v3.3 DPT)'],
];

export const OPCODES: readonly OpcodeDef[] = DEFS.map(([name, fields, doc]) => {
  const all = [Opcode, ...fields];
  return Object.freeze({
    op: OP[name],
    name,
    fields: all,
    res0: definedMask(all, CMD_WORDS).map((m) => ~m >>> 0),
    doc,
  });
});

/** Opcode → definition, as a dense table for the hot path (undefined = reserved). */
export const OPCODE_TABLE: ReadonlyArray<OpcodeDef | undefined> = (() => {
  const t: Array<OpcodeDef | undefined> = new Array(256).fill(undefined);
  for (const d of OPCODES) t[d.op] = d;
  return t;
})();

const byName = new Map<string, OpcodeDef>();
for (const d of OPCODES) {
  byName.set(d.name, d);
  byName.set('CMD_' + d.name, d);
}
byName.set('SYNC', byName.get('CMD_SYNC')!);
byName.set('CFGI_ALL', byName.get('CFGI_STE_RANGE')!);
byName.set('PREFETCH_CFG', byName.get('PREFETCH_CONFIG')!);

export function opcodeByName(name: string): OpcodeDef | undefined {
  return byName.get(name.toUpperCase());
}

export function opcodeName(op: number): string {
  return (
    OPCODE_TABLE[op & 0xff]?.name ?? `RESERVED(0x${(op & 0xff).toString(16).padStart(2, '0')})`
  );
}

/** Per-opcode field lookup by name (as declared and lower-case), for encodeCommand. */
const FIELDS_BY_NAME = new Map<OpcodeDef, Map<string, Field>>(
  OPCODES.map((d) => [
    d,
    new Map(
      d.fields.flatMap(
        (f) =>
          [
            [f.name, f],
            [f.name.toLowerCase(), f],
          ] as Array<[string, Field]>,
      ),
    ),
  ]),
);

/**
 * Encode a command from field values. `values` keys are field names (case-insensitive);
 * `CFGI_ALL` sets Range=31. Unknown fields throw with the opcode's valid field list.
 */
export function encodeCommand(
  name: string,
  values: Readonly<Record<string, number | bigint>> = {},
): Uint32Array {
  const def = opcodeByName(name);
  if (!def) throw new Error(`unknown command ${name}`);
  const w = new Uint32Array(CMD_WORDS);
  set(w, Opcode, def.op);
  if (name.toUpperCase() === 'CFGI_ALL') set(w, Range, 31);
  const byName = FIELDS_BY_NAME.get(def)!;
  for (const k in values) {
    const v = values[k]!;
    const fld = byName.get(k) ?? byName.get(k.toLowerCase());
    if (!fld || fld === Opcode)
      throw new Error(
        `${def.name} has no field ${k} (fields: ${def.fields
          .filter((x) => x !== Opcode)
          .map((x) => x.name)
          .join(', ')})`,
      );
    if (typeof v === 'bigint') setBig(w, fld, v);
    else set(w, fld, v);
  }
  return w;
}

export interface DecodedCommand {
  readonly opcode: number;
  readonly name: string;
  readonly fields: Record<string, number | bigint>;
  /** RES0 bits that are set, per word (all zero for a clean command) */
  readonly res0Set: number[];
}

export function decodeCommand(w: ArrayLike<number>): DecodedCommand {
  const op = get(w, Opcode);
  const def = OPCODE_TABLE[op];
  const fields: Record<string, number | bigint> = {};
  const res0Set: number[] = [0, 0, 0, 0];
  if (def) {
    for (const fl of def.fields) {
      if (fl === Opcode) continue;
      fields[fl.name] = fl.width > 53 ? getBig(w, fl) : get(w, fl);
    }
    for (let i = 0; i < CMD_WORDS; i++) res0Set[i] = (w[i]! & def.res0[i]!) >>> 0;
  }
  return { opcode: op, name: opcodeName(op), fields, res0Set };
}
