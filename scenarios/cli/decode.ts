/**
 * `smmulab decode` and `smmulab encode`: every field of an STE, CD, L1STD, L1CD, command or
 * event record by its architectural name, with its meaning and any ILLEGAL reason, and the
 * reverse. Both use hw/smmu/describe.ts, which reads the simulator's own field declarations.
 *
 * Input convention: 64-bit double-words, DW0 first, each hex with or without 0x (underscores
 * allowed), as Linux prints commands and as `encode` prints them. --u32 takes 32-bit words
 * (low word first, as the simulator's Uint32Array holds them); --bytes takes bytes in memory
 * order (a hexdump such as `xxd -p`).
 */
import type { Argv, CommandModule } from 'yargs';
import {
  KINDS,
  KIND_DWORDS,
  KIND_MIN_DWORDS,
  InputError,
  describe,
  dwordsOf,
  encode,
  formatDescription,
  parseFeatureOverrides,
  wordsOf,
  type DescribeOptions,
  type FieldInput,
  type Kind,
} from '../../hw/smmu/describe.ts';
import type { SmmuFeatures } from '../../hw/smmu/features.ts';
import { cliStatus, exitWith } from './status.ts';
import { cliIo } from './io.ts';

/** Keep hex strings as strings: yargs would turn 0x… into an inexact Number. */
const PARSER_CONFIG = {
  'parse-numbers': false,
  'parse-positional-numbers': false,
  'camel-case-expansion': false,
  'dot-notation': false,
  'duplicate-arguments-array': true,
} as const;

const DW_NAMES = (n: number): string => Array.from({ length: n }, (_, i) => `DW${i}`).join(' ');

export type InputFormat = 'dw' | 'u32' | 'bytes';

/**
 * Hex tokens → 32-bit words of a structure of `kind`. Tokens may also hold several values
 * separated by spaces or commas. Errors name the bad token and its position.
 */
export function parseHexWords(
  kind: Kind,
  tokens: readonly string[],
  format: InputFormat = 'dw',
): { words: Uint32Array; givenDwords: number } {
  const pieces: string[] = [];
  for (const t of tokens)
    pieces.push(
      ...String(t)
        .split(/[\s,]+/)
        .filter(Boolean),
    );
  const maxDw = KIND_DWORDS[kind];
  const minDw = KIND_MIN_DWORDS[kind];
  const digits = format === 'dw' ? 16 : format === 'u32' ? 8 : Infinity;
  const unit =
    format === 'dw' ? '64-bit double-word' : format === 'u32' ? '32-bit word' : 'byte string';
  const values: bigint[] = [];
  let hexBytes = '';
  pieces.forEach((tok, i) => {
    const s = tok.replace(/_/g, '').replace(/^0x/i, '');
    if (!/^[0-9a-f]+$/i.test(s)) throw new InputError(`"${tok}" (value ${i + 1}) is not hex`);
    if (s.length > digits)
      throw new InputError(
        `"${tok}" (value ${i + 1}) has more than ${digits} hex digits: a ${unit} is at most ${digits * 4} bits`,
      );
    if (format === 'bytes') hexBytes += s;
    else values.push(BigInt('0x' + s));
  });
  let dws: bigint[];
  if (format === 'dw') {
    dws = values;
  } else if (format === 'u32') {
    if (values.length % 2)
      throw new InputError(
        `${values.length} 32-bit words given: give them in pairs (low word first), ${2 * minDw}${maxDw > minDw ? ` to ${2 * maxDw}` : ''} for ${kind}`,
      );
    dws = [];
    for (let i = 0; i < values.length; i += 2) dws.push((values[i + 1]! << 32n) | values[i]!);
  } else {
    if (hexBytes.length % 16)
      throw new InputError(
        `${hexBytes.length / 2} bytes given: a ${kind} is read in whole 8-byte double-words`,
      );
    dws = [];
    for (let i = 0; i < hexBytes.length; i += 16) {
      // bytes in memory order: the first byte is the least significant (little-endian)
      const le = hexBytes
        .slice(i, i + 16)
        .match(/../g)!
        .reverse()
        .join('');
      dws.push(BigInt('0x' + le));
    }
  }
  const want =
    minDw === maxDw
      ? `${maxDw} double-word${maxDw > 1 ? 's' : ''} (${DW_NAMES(maxDw)})`
      : `${minDw} to ${maxDw} double-words (${DW_NAMES(maxDw)}; missing upper ones are taken as 0)`;
  if (dws.length < minDw || dws.length > maxDw)
    throw new InputError(`a ${kind} is ${want}; got ${dws.length}`);
  return { words: wordsOf(dws, maxDw), givenDwords: dws.length };
}

function fail(cmd: string, e: unknown): void {
  if (!(e instanceof InputError)) throw e;
  cliIo.err.write(`smmulab ${cmd}: ${e.message}\n`);
  exitWith(2);
}

function featuresOf(spec: unknown): Partial<SmmuFeatures> | undefined {
  if (spec === undefined) return undefined;
  if (Array.isArray(spec)) return parseFeatureOverrides(spec.join(','));
  return parseFeatureOverrides(String(spec));
}

const KIND_HELP =
  'ste (8 DWs; fewer are padded with 0), cd (8 DWs; likewise), l1std (1 DW), l1cd (1 DW), cmd (2 DWs), event (4 DWs)';

const CONVENTIONS = [
  'Conventions:',
  '* Words are 64-bit double-words, DW0 first, hex with or without 0x (underscores allowed), as Linux prints commands ("dw0 dw1") and as `smmulab encode` prints them. --u32 takes 32-bit words, low word first; --bytes takes bytes in memory order (xxd -p).',
  '* Address fields (S1ContextPtr, S2TTB, TTB0/TTB1, L2Ptr, Address, MSIAddress, IPA, FetchAddr) are shown as byte addresses; the raw field value is in the meaning and in --json "value".',
  "* The ILLEGAL checks are the simulator's own (steIllegal, cdIllegal, the command queue), against the smmulab default SMMU (a QEMU-like SMMUv3.2: stage 1+2, AArch64, OAS 48, STALL_MODEL terminate-only, no PRI, RES0 not checked); --features changes it and the last line of the output names what was assumed.",
  '* Exit status: 0 decoded (even if ILLEGAL), 2 bad input.',
].join('\n');

export const decodeCommand: CommandModule = {
  command: 'decode <kind> [words..]',
  describe:
    'print every field of an STE, CD, L1STD, L1CD, command or event record, with meanings and ILLEGAL reasons',
  builder: (y: Argv) =>
    y
      .parserConfiguration(PARSER_CONFIG)
      .positional('kind', { choices: KINDS, describe: KIND_HELP })
      .positional('words', {
        type: 'string',
        array: true,
        describe: 'the structure as hex double-words, DW0 first',
      })
      .option('json', {
        type: 'boolean',
        default: false,
        describe:
          'print {kind, name, title, words, fields:[{name, key, dw, hi, lo, bits, width, value, display, meaning?, address?, ignored?}], illegal, reserved, notes, features}',
      })
      .option('u32', {
        type: 'boolean',
        describe: 'the words are 32-bit, low word first (as the simulator stores them)',
      })
      .option('bytes', {
        type: 'boolean',
        describe: 'the input is bytes in memory order (e.g. from xxd -p)',
      })
      .option('nonzero', {
        type: 'boolean',
        default: false,
        describe: 'show only fields whose value is not zero',
      })
      .option('features', {
        type: 'string',
        describe:
          'SMMU features the checks assume, as key=value,… over the default (e.g. "pri=1,oas=44,ssidSize=0")',
      })
      .option('split', {
        type: 'string',
        describe: 'l1std: STRTAB_BASE_CFG.SPLIT, to check Span <= SPLIT+1',
      })
      .option('s1stalld', {
        type: 'boolean',
        default: false,
        describe: 'cd: the STE that locates the CD has S1STALLD=1',
      })
      .option('single-range', {
        type: 'boolean',
        default: false,
        describe: 'cd: the StreamWorld has only TTB0 (EL2, EL3)',
      })
      .option('s2aa32', {
        type: 'boolean',
        default: false,
        describe: 'cd: the STE uses an AArch32 stage 2',
      })
      .example(
        '$0 decode cmd 0x000000000fc02046 0x0',
        'CMD_SYNC as Linux issues it (CS=SEV, MSH=ISH, MSIAttr=0xF)',
      )
      .example('$0 decode ste 0x4806c00b 0xd6', 'an S1-translate STE (DW2..DW7 taken as 0)')
      .example(
        '$0 decode cmd $($0 encode cmd TLBI_NH_VA --asid 3 --addr 0x1000 --leaf)',
        'round trip',
      )
      .epilog(CONVENTIONS),
  handler: (a) => {
    // cli.ts's fail() reports a yargs validation error without stopping the handler
    if (cliStatus.code >= 2) return;
    try {
      const kind = a.kind as Kind;
      if (a.u32 && a.bytes) throw new InputError('--u32 and --bytes cannot be used together');
      const tokens = ((a.words as unknown[] | undefined) ?? []).map(String);
      const format: InputFormat = a.u32 ? 'u32' : a.bytes ? 'bytes' : 'dw';
      const { words, givenDwords } = parseHexWords(kind, tokens, format);
      let split: number | undefined;
      if (a.split !== undefined) {
        const s = String(a.split);
        if (!/^[0-9]+$/.test(s) || Number(s) > 31)
          throw new InputError(`--split "${s}" is not a number 0..31`);
        split = Number(s);
      }
      const opts: DescribeOptions = {
        givenDwords,
        ...(a.features !== undefined ? { features: featuresOf(a.features)! } : {}),
        ...(split !== undefined ? { split } : {}),
        s1stalld: Boolean(a.s1stalld),
        singleRange: Boolean(a['single-range']),
        s2aa32: Boolean(a.s2aa32),
      };
      const d = describe(kind, words, opts);
      if (a.json) cliIo.out.write(JSON.stringify(d, null, 2) + '\n');
      else cliIo.out.write(formatDescription(d, { nonzero: Boolean(a.nonzero) }) + '\n');
    } catch (e) {
      fail('decode', e);
    }
  },
};

/** Options of `encode` itself; every other --flag is a field. */
const ENCODE_OWN = new Set([
  '_',
  '$0',
  'kind',
  'name',
  'json',
  'features',
  'log-level',
  'help',
  'h',
  'version',
]);

export const encodeCommand: CommandModule = {
  command: 'encode <kind> [name]',
  describe:
    'build an STE, CD, L1STD, L1CD, command or event record from --field value flags and print its double-words',
  builder: (y: Argv) =>
    y
      .parserConfiguration(PARSER_CONFIG)
      .strict(false)
      .positional('kind', { choices: KINDS, describe: KIND_HELP })
      .positional('name', {
        type: 'string',
        describe:
          'cmd: the command (TLBI_NH_VA, CMD_SYNC, CFGI_ALL…); event: the event (F_TRANSLATION or a number)',
      })
      .option('json', {
        type: 'boolean',
        default: false,
        describe: 'print the decoded result as decode --json does',
      })
      .option('features', {
        type: 'string',
        describe: 'SMMU features for the ILLEGAL checks in --json (as for decode)',
      })
      .example(
        '$0 encode cmd TLBI_NH_VA --asid 3 --vmid 0 --addr 0x1000 --leaf',
        'prints 0x0003000000000012 0x0000000000001001',
      )
      .example(
        '$0 encode ste --v 1 --config 5 --s1contextptr 0x40001000',
        'an S1-translate STE, 8 double-words',
      )
      .example(
        '$0 encode cmd CMD_SYNC --cs 2 --msh 3 --msiattr 0xf',
        "Linux's CMD_SYNC: 0x000000000fc02046 0x0000000000000000",
      )
      .epilog(
        [
          'Fields:',
          '* --<name> <value> for each field, names as decode prints them (any case; for the STE and CD the declaration keys also work, e.g. --s2hwu, --impdef1). --addr, --sid and --ssid stand for Address, StreamID and SubstreamID. Fields not given are 0.',
          '* Values are 0x hex, 0b binary or decimal; a bare --flag is 1 (one-bit fields only).',
          "* Address fields take the BYTE address, which must be aligned to the field's low bit: S1ContextPtr and L1STD.L2Ptr 64 bytes, S2TTB/TTB0/TTB1 16 bytes, L1CD.L2Ptr and a command's Address 4KB, MSIAddress 4 bytes. --s1contextptr 0x40001000 stores 0x40001000 >> 6 in S1ContextPtr[55:6].",
          '* An unknown field, a value too wide for its field, a misaligned address or bad hex exits 2 with a message naming it.',
          '* Output: the double-words, DW0 first, in the form decode takes, so `smmulab decode cmd $(smmulab encode cmd ...)` round-trips.',
        ].join('\n'),
      ),
  handler: (a) => {
    if (cliStatus.code >= 2) return;
    try {
      const kind = a.kind as Kind;
      const name = a.name === undefined ? undefined : String(a.name);
      const values: Record<string, FieldInput> = {};
      for (const [k, v] of Object.entries(a)) {
        if (ENCODE_OWN.has(k)) continue;
        if (Array.isArray(v)) throw new InputError(`--${k} given ${v.length} times`);
        if (v === undefined) continue;
        values[k] = typeof v === 'boolean' ? v : String(v);
      }
      const extra = (a._ as unknown[]).slice(1);
      if (extra.length)
        throw new InputError(
          `unexpected argument "${String(extra[0])}" (fields are given as --name value)`,
        );
      const words = encode(kind, values, name);
      const d = describe(
        kind,
        words,
        a.features !== undefined ? { features: featuresOf(a.features)! } : {},
      );
      if (a.json) cliIo.out.write(JSON.stringify(d, null, 2) + '\n');
      else
        cliIo.out.write(
          dwordsOf(words, KIND_DWORDS[kind])
            .map((v) => '0x' + v.toString(16).padStart(16, '0'))
            .join(' ') + '\n',
        );
    } catch (e) {
      fail('encode', e);
    }
  },
};
