/**
 * Scenario file validation (zod). Numbers are JSON numbers, decimal strings or "0x…" strings;
 * 64-bit values are strings. Every error names the file, the step index and the field.
 */
import { z } from 'zod';
import { DEFAULT_FEATURES } from '../../hw/smmu/features.ts';
import { POLICY_NAMES, RULE_NAMES, isRule } from '../../hyp/policy/policy.ts';

/** Parse a number-like scenario value to a BigInt, or return an error message. */
export function parseBig(v: unknown): bigint | string {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0)
      return `expected a non-negative integer, got ${v} (write values above 2^53 as "0x…" strings)`;
    return BigInt(v);
  }
  if (typeof v === 'string') {
    const s = v.trim().replace(/_/g, '');
    if (/^0x[0-9a-f]+$/i.test(s)) return BigInt(s);
    if (/^[0-9]+$/.test(s)) return BigInt(s);
    return `expected a decimal number or a "0x…" string, got "${v}"`;
  }
  return `expected a number or a "0x…" string, got ${v === null ? 'null' : typeof v}`;
}

function numberLike(max: bigint, what: string) {
  return z.union([z.number(), z.string()]).transform((v, ctx) => {
    const r = parseBig(v);
    if (typeof r === 'string') {
      ctx.addIssue({ code: 'custom', message: r });
      return z.NEVER;
    }
    if (r > max) {
      ctx.addIssue({
        code: 'custom',
        message: `${String(v)} is larger than the ${what} limit 0x${max.toString(16)}`,
      });
      return z.NEVER;
    }
    return r;
  });
}

/** An address (fits a 48-bit PA / 64-bit IOVA represented exactly as a JS number up to 2^53). */
export const zAddr = numberLike(2n ** 53n - 1n, 'address').transform((b) => Number(b));
/** A 64-bit value, kept as a BigInt. */
export const zU64 = numberLike(2n ** 64n - 1n, '64-bit');
export const zU32 = numberLike(2n ** 32n - 1n, '32-bit').transform((b) => Number(b));
export const zSize = z.union([z.literal(1), z.literal(2), z.literal(4), z.literal(8)], {
  error: 'size must be 1, 2, 4 or 8',
});
export const zHex = z
  .string()
  .transform((s) => s.replace(/[\s_]/g, '').replace(/^0x/i, ''))
  .refine((s) => /^([0-9a-fA-F]{2})*$/.test(s), {
    message: 'expected hex bytes in memory order (an even number of hex digits)',
  });

/** hex digit values by character code (-1: not a hex digit) */
const HEX_DIGIT = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX_DIGIT['0123456789abcdef'.charCodeAt(i)] = i;
  HEX_DIGIT['0123456789ABCDEF'.charCodeAt(i)] = i;
}

export function hexToBytes(h: string): Uint8Array {
  const out = new Uint8Array(h.length / 2);
  const digit = HEX_DIGIT;
  for (let i = 0; i < out.length; i++) {
    const hi = digit[h.charCodeAt(2 * i)] ?? -1;
    const lo = digit[h.charCodeAt(2 * i + 1)] ?? -1;
    // (anything but two hex digits: as parseInt reads it)
    out[i] = hi >= 0 && lo >= 0 ? (hi << 4) | lo : parseInt(h.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}
export function bytesToHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export const zActor = z.string().regex(/^(host|hyp|guest:[A-Za-z0-9_.-]+)$/, {
  message: 'actor must be "host", "hyp" or "guest:<name>"',
});

// ---- machine ------------------------------------------------------------------------------

const featureKeys = Object.keys(DEFAULT_FEATURES) as Array<keyof typeof DEFAULT_FEATURES>;
const featureShape: Record<string, z.ZodType> = {};
for (const k of featureKeys) {
  const d = DEFAULT_FEATURES[k];
  featureShape[k] = (typeof d === 'boolean' ? z.boolean() : zU32).optional();
}
for (const r of ['IDR0', 'IDR1', 'IDR2', 'IDR3', 'IDR4', 'IDR5', 'IIDR', 'AIDR'])
  featureShape[r] = zU32.optional();
featureShape.gbpaReset = zU32.optional();
featureShape.caching = z.boolean().optional();

export const zSmmuConfig = z.object(featureShape).strict();

export const zDevice = z
  .object({
    name: z.string().min(1),
    sid: zU32,
    ssid: zU32.optional(),
  })
  .strict();

export const zMachine = z
  .object({
    hyp: z.enum(['none', 'pkvm']).default('none'),
    ramBase: zAddr.optional(),
    ramSize: zAddr.optional(),
    smmu: zSmmuConfig.optional(),
    devices: z.array(zDevice).default([]),
    hypMemory: z.object({ base: zAddr, size: zAddr }).strict().optional(),
    ptPool: z.object({ base: zAddr, size: zAddr }).strict().optional(),
    /** hypervisor policy (hyp "pkvm" only) */
    policy: z.enum(POLICY_NAMES).optional(),
    failure: z.enum(['panic', 'reject', 'log']).optional(),
    weaken: z
      .array(
        z.string().refine(isRule, { message: `unknown rule (rules: ${RULE_NAMES.join(', ')})` }),
      )
      .optional(),
    allowAts: z.boolean().optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (m.hyp === 'none') {
      for (const k of ['policy', 'failure', 'weaken', 'allowAts'] as const) {
        if (m[k] !== undefined)
          ctx.addIssue({
            code: 'custom',
            path: [k],
            message: `"${k}" needs "hyp": "pkvm" (there is no hypervisor)`,
          });
      }
    }
  });
export type MachineConfig = z.infer<typeof zMachine>;

/** The scenario file without its steps (steps are validated one by one, per op). */
export const zScenarioFile = z
  .object({
    name: z.string().optional(),
    description: z.string().optional(),
    machine: z.unknown().optional(),
    /** run the scenario under each of these hypervisors (default: the machine's own) */
    variants: z
      .array(z.enum(['none', 'pkvm', 'pkvm-v6']))
      .min(1)
      .optional(),
    steps: z.array(z.unknown(), { error: '"steps" must be an array of step objects' }),
  })
  .strict();

/** Format zod issues as "path: message" lines, with the path as the user wrote it. */
export function formatIssues(issues: readonly z.core.$ZodIssue[], prefix: string): string[] {
  return issues.map((i) => {
    if (i.path[0] === 'steps' && typeof i.path[1] === 'number') {
      return formatIssues([{ ...i, path: i.path.slice(2) }], `${prefix}step ${i.path[1]}: `)[0]!;
    }
    const path = i.path.length
      ? i.path
          .map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`))
          .join('')
          .replace(/^\./, '')
      : '';
    const msg =
      i.code === 'unrecognized_keys'
        ? `unknown field(s) ${(i as { keys: string[] }).keys.map((k) => `"${k}"`).join(', ')}`
        : i.message;
    return `${prefix}${path ? `field "${path}": ` : ''}${msg}`;
  });
}
