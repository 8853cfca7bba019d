/**
 * Event records (IHI 0070 7.3): 32 bytes, four little-endian double-words.
 * Event numbers and the record layout are declared here once.
 */
import { dw, get, getBig, set, setBig, type Field } from '../bits.ts';

export const EVT_WORDS = 8;
export const EVT_BYTES = 32;

export const EVT = {
  F_UUT: 0x01,
  C_BAD_STREAMID: 0x02,
  F_STE_FETCH: 0x03,
  C_BAD_STE: 0x04,
  F_BAD_ATS_TREQ: 0x05,
  F_STREAM_DISABLED: 0x06,
  F_TRANSL_FORBIDDEN: 0x07,
  C_BAD_SUBSTREAMID: 0x08,
  F_CD_FETCH: 0x09,
  C_BAD_CD: 0x0a,
  F_WALK_EABT: 0x0b,
  F_TRANSLATION: 0x10,
  F_ADDR_SIZE: 0x11,
  F_ACCESS: 0x12,
  F_PERMISSION: 0x13,
  F_TLB_CONFLICT: 0x20,
  F_CFG_CONFLICT: 0x21,
  E_PAGE_REQUEST: 0x24,
  F_VMS_FETCH: 0x25,
} as const;
export type EventName = keyof typeof EVT;

const byNum = new Map<number, EventName>(Object.entries(EVT).map(([k, v]) => [v, k as EventName]));
export function eventName(n: number): string {
  if (n >= 0xe0 && n <= 0xef) return `IMPDEF_EVENT${n - 0xe0}`;
  return byNum.get(n) ?? `RESERVED(0x${n.toString(16).padStart(2, '0')})`;
}
export function eventNumber(name: string): number | undefined {
  return (EVT as Record<string, number>)[name.toUpperCase()];
}

// DW0 (all events)
export const EventNum = dw(0, 'EventNum', 7, 0);
export const E_SSV = dw(0, 'SSV', 11, 11, {
  values: { 0: 'no SubstreamID', 1: 'SubstreamID valid' },
});
export const E_SubstreamID = dw(0, 'SubstreamID', 31, 12);
export const E_StreamID = dw(0, 'StreamID', 63, 32);
// DW1 (translation-fault class)
export const E_STAG = dw(1, 'STAG', 15, 0, { doc: 'stall tag for CMD_RESUME' });
export const E_Stall = dw(1, 'Stall', 31, 31, {
  values: { 0: 'terminated', 1: 'stalled: resume or terminate it with STAG' },
});
export const E_PnU = dw(1, 'PnU', 33, 33, { values: { 0: 'unprivileged', 1: 'privileged' } });
export const E_InD = dw(1, 'InD', 34, 34, { values: { 0: 'data', 1: 'instruction' } });
export const E_RnW = dw(1, 'RnW', 35, 35, { values: { 0: 'write', 1: 'read' } });
export const E_S2 = dw(1, 'S2', 39, 39, { values: { 0: 'stage 1', 1: 'stage 2' } });
export const E_CLASS = dw(1, 'CLASS', 41, 40, {
  values: { 0: 'CD', 1: 'TT', 2: 'IN', 3: 'reserved' },
});
export const E_TTRnW = dw(1, 'TTRnW', 44, 44, {
  values: { 0: 'descriptor write (HTTU update)', 1: 'descriptor read' },
});
// F_STE_FETCH / F_UUT
export const E_Reason = dw(1, 'Reason', 15, 0, { doc: 'IMPLEMENTATION DEFINED' });
// F_BAD_ATS_TREQ
export const E_Span = dw(1, 'Span', 3, 0);
// DW2
export const E_InputAddr = dw(2, 'InputAddr', 63, 0);
// DW3
export const E_IPA = dw(3, 'IPA', 55, 12, {
  doc: 'IPA of the faulting stage-2 input (valid when S2=1)',
});
export const E_FetchAddr = dw(3, 'FetchAddr', 55, 3, { doc: 'PA whose fetch aborted' });

export const CLASS = { CD: 0, TT: 1, IN: 2 } as const;

const common = [E_SSV, E_SubstreamID, E_StreamID];
const translation = [
  ...common,
  E_STAG,
  E_Stall,
  E_PnU,
  E_InD,
  E_RnW,
  E_S2,
  E_CLASS,
  E_TTRnW,
  E_InputAddr,
  E_IPA,
];

/** The fields each event type carries, for decoding. */
export function eventFields(num: number): readonly Field[] {
  switch (num) {
    case EVT.F_TRANSLATION:
    case EVT.F_ADDR_SIZE:
    case EVT.F_ACCESS:
    case EVT.F_PERMISSION:
    case EVT.F_TLB_CONFLICT:
      return translation;
    case EVT.F_WALK_EABT:
      return [
        ...common,
        E_STAG,
        E_Stall,
        E_PnU,
        E_InD,
        E_RnW,
        E_S2,
        E_CLASS,
        E_TTRnW,
        E_InputAddr,
        E_FetchAddr,
      ];
    case EVT.F_STE_FETCH:
    case EVT.F_CD_FETCH:
    case EVT.F_VMS_FETCH:
      return [...common, E_Reason, E_InputAddr, E_FetchAddr];
    case EVT.F_UUT:
      return [...common, E_Reason, E_PnU, E_InD, E_RnW, E_InputAddr];
    case EVT.F_BAD_ATS_TREQ:
      return [...common, E_Span, E_InputAddr];
    case EVT.F_TRANSL_FORBIDDEN:
      return [...common, E_RnW, E_InputAddr];
    default:
      return common;
  }
}

/** A decoded event record, as tests, scenarios and the JSON output see it. */
export interface DecodedEvent {
  readonly type: string;
  readonly num: number;
  readonly sid: number;
  readonly ssid?: number;
  readonly fields: Record<string, number | string>;
  /** raw record as four 64-bit hex strings */
  readonly raw: string[];
}

export function decodeEvent(w: ArrayLike<number>): DecodedEvent {
  const num = get(w, EventNum);
  const fields: Record<string, number | string> = {};
  for (const fl of eventFields(num)) {
    // address fields are shown as byte addresses: IPA[55:12] and FetchAddr[55:3] shifted into place
    const sh = fl === E_IPA ? 12n : fl === E_FetchAddr ? 3n : 0n;
    fields[fl.name] = fl.width > 32 || sh ? '0x' + (getBig(w, fl) << sh).toString(16) : get(w, fl);
  }
  const raw: string[] = [];
  for (let i = 0; i < EVT_WORDS; i += 2)
    raw.push(
      '0x' +
        ((BigInt(w[i + 1]! >>> 0) << 32n) | BigInt(w[i]! >>> 0)).toString(16).padStart(16, '0'),
    );
  const ssv = get(w, E_SSV);
  return {
    type: eventName(num),
    num,
    sid: get(w, E_StreamID),
    ...(ssv ? { ssid: get(w, E_SubstreamID) } : {}),
    fields,
    raw,
  };
}

/** Fill `out` (8 words) with an event record. Fields are given by name. */
export function buildEvent(
  out: Uint32Array,
  num: number,
  values: Readonly<Record<string, number | bigint>>,
): Uint32Array {
  out.fill(0);
  set(out, EventNum, num);
  const fl = eventFields(num);
  for (const [k, v] of Object.entries(values)) {
    const f = fl.find((x) => x.name === k);
    if (!f) throw new Error(`event ${eventName(num)} has no field ${k}`);
    if (typeof v === 'bigint') setBig(out, f, v);
    else set(out, f, v);
  }
  return out;
}
