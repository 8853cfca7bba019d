/**
 * The raw step vocabulary. Scenario files written elsewhere depend on these exactly:
 *   write, read, memwrite, memread, dma, expectEvent
 * plus expectNoEvent (an smmulab extension).
 */
import { z } from 'zod';
import { CpuAbortError } from '../../hw/bus.ts';
import { defineStep, type RunContext } from '../engine/context.ts';
import {
  zActor,
  zAddr,
  zHex,
  zSize,
  zU32,
  zU64,
  hexToBytes,
  bytesToHex,
} from '../engine/schema.ts';
import { eventNumber, eventFields } from '../../hw/smmu/events.ts';

const hex = (v: bigint | number): string => '0x' + v.toString(16);

/** Run a CPU access, turning a data abort into a failure (or a success when "abort" was expected). */
function cpu<T>(ctx: RunContext, expectAbort: boolean, f: () => T): T | undefined {
  try {
    const r = f();
    if (expectAbort) ctx.fail('abort', 'completed');
    return r;
  } catch (e) {
    if (e instanceof CpuAbortError) {
      if (!expectAbort) ctx.fail('completed', 'abort', e.message);
      return undefined;
    }
    throw e;
  }
}

export const writeStep = defineStep({
  op: 'write',
  doc: 'CPU write of `size` bytes of `value` at `addr` as `actor` (MMIO or memory); "expect":"abort" expects a data abort',
  schema: z
    .object({
      op: z.literal('write'),
      actor: zActor,
      addr: zAddr,
      size: zSize,
      value: zU64,
      expect: z.literal('abort').optional(),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    cpu(ctx, s.expect === 'abort', () => ctx.machine.bus.write(s.actor, s.addr, s.size, s.value));
  },
});

export const readStep = defineStep({
  op: 'read',
  doc: 'CPU read of `size` bytes at `addr`; holds when (value & mask) == (expect & mask); "expect":"abort" expects a data abort',
  schema: z
    .object({
      op: z.literal('read'),
      actor: zActor,
      addr: zAddr,
      size: zSize,
      expect: z.union([z.literal('abort'), zU64]).optional(),
      mask: zU64.optional(),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    const v = cpu(ctx, s.expect === 'abort', () => ctx.machine.bus.read(s.actor, s.addr, s.size));
    if (v === undefined || s.expect === undefined || s.expect === 'abort') return;
    const mask = s.mask ?? (1n << BigInt(8 * s.size)) - 1n;
    if ((v & mask) !== ((s.expect as bigint) & mask)) {
      ctx.fail(
        hex(s.expect as bigint),
        hex(v),
        s.mask !== undefined ? `under mask ${hex(mask)}` : undefined,
      );
    }
  },
});

export const memwriteStep = defineStep({
  op: 'memwrite',
  doc: 'CPU write of `hex` bytes (in memory order) at `addr` as `actor`',
  schema: z
    .object({
      op: z.literal('memwrite'),
      actor: zActor,
      addr: zAddr,
      hex: zHex,
      expect: z.literal('abort').optional(),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    cpu(ctx, s.expect === 'abort', () =>
      ctx.machine.bus.writeBytes(s.actor, s.addr, hexToBytes(s.hex)),
    );
  },
});

export const memreadStep = defineStep({
  op: 'memread',
  doc: 'CPU read of `len` bytes at `addr`; `expect` is hex bytes in memory order',
  schema: z
    .object({
      op: z.literal('memread'),
      actor: zActor,
      addr: zAddr,
      len: zU32,
      expect: z.union([z.literal('abort'), zHex]).optional(),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    const b = cpu(ctx, s.expect === 'abort', () =>
      ctx.machine.bus.readBytes(s.actor, s.addr, s.len),
    );
    if (b === undefined || s.expect === undefined || s.expect === 'abort') return;
    const got = bytesToHex(b);
    if (got !== s.expect.toLowerCase()) ctx.fail(s.expect.toLowerCase(), got);
  },
});

export const dmaStep = defineStep({
  op: 'dma',
  doc: 'a device DMA through the SMMU; expect "ok", "fault" or the PA it must reach. ssid 0 means no SubstreamID unless "ssv":true; "ats":true goes through the device ATC; "translated":true sends a Translated transaction to iova as given',
  schema: z
    .object({
      op: z.literal('dma'),
      sid: zU32.optional(),
      device: z.string().optional(),
      ssid: zU32.optional(),
      ssv: z.boolean().optional(),
      iova: zU64,
      access: z.enum(['read', 'write']),
      ats: z.boolean().optional(),
      translated: z.boolean().optional(),
      len: zU32.optional(),
      hex: zHex.optional(),
      expect: z.union([z.literal('ok'), z.literal('fault'), zAddr]).optional(),
      expectHex: zHex.optional(),
      priv: z.boolean().optional(),
      comment: z.string().optional(),
    })
    .strict()
    .refine((s) => s.sid !== undefined || s.device !== undefined, {
      message: 'a dma step needs "sid" or "device"',
    })
    .refine((s) => s.len === undefined || (s.len > 0 && s.len <= 1 << 20), {
      message: 'len must be 1..1048576',
      path: ['len'],
    })
    .refine((s) => s.hex === undefined || s.len === undefined || s.hex.length / 2 === s.len, {
      message: '"hex" must hold "len" bytes',
      path: ['hex'],
    }),
  run(ctx, s) {
    const ep =
      s.device !== undefined ? ctx.machine.devices.get(s.device) : ctx.endpointForSid(s.sid!);
    if (!ep) {
      ctx.fail(`device ${s.device}`, 'no such device');
      return;
    }
    const ssv = s.ssv ?? (s.ssid !== undefined && s.ssid !== 0);
    const opts = {
      ...(ssv ? { ssid: s.ssid ?? 0 } : {}),
      ...(s.priv !== undefined ? { priv: s.priv } : {}),
      ...(s.ats ? { ats: true } : {}),
    };
    const iova = s.iova < 2n ** 53n ? Number(s.iova) : s.iova;
    const len = s.len ?? (s.hex !== undefined ? s.hex.length / 2 : 4);
    let data: Uint8Array | undefined;
    if (s.access === 'write') {
      // without "hex", a write carries the bytes a5 a6 a7 ... so the data is recognisable in memory
      if (s.hex !== undefined) data = hexToBytes(s.hex);
      else {
        data = new Uint8Array(len);
        for (let i = 0; i < len; i++) data[i] = (0xa5 + i) & 0xff;
      }
    }
    const out = s.translated
      ? s.access === 'write'
        ? ep.writeTranslated(Number(iova), data!, opts)
        : ep.readTranslated(Number(iova), len, opts)
      : s.access === 'write'
        ? ep.write(iova, data!, opts)
        : ep.read(iova, len, opts);
    const expect = s.expect;
    if (expect !== undefined) {
      if (expect === 'ok' && !out.ok)
        ctx.fail('ok', `fault: ${out.fault}${out.event ? ` (${out.event})` : ''}`);
      else if (expect === 'fault' && out.ok) ctx.fail('fault', `ok at PA ${hex(out.pa)}`);
      else if (typeof expect === 'number') {
        if (!out.ok)
          ctx.fail(hex(expect), `fault: ${out.fault}${out.event ? ` (${out.event})` : ''}`);
        else if (out.pa !== expect) ctx.fail(hex(expect), hex(out.pa));
      }
    }
    if (s.expectHex !== undefined) {
      if (!out.ok || !out.data)
        ctx.fail(s.expectHex, out.ok ? 'no data (a write)' : `fault: ${out.fault}`);
      else if (bytesToHex(out.data) !== s.expectHex.toLowerCase())
        ctx.fail(s.expectHex.toLowerCase(), bytesToHex(out.data));
    }
  },
});

const zEventType = z.string().refine((t) => eventNumber(t) !== undefined, {
  message: 'unknown event type (use the reference name, e.g. "C_BAD_STE")',
});

export const expectEventStep = defineStep({
  op: 'expectEvent',
  doc: 'an event record of `type` (for `sid`, optional `ssid` and `fields`) was written to the event queue since the previous expectEvent',
  schema: z
    .object({
      op: z.literal('expectEvent'),
      type: zEventType,
      sid: zU32.optional(),
      ssid: zU32.optional(),
      fields: z.record(z.string(), z.union([z.number(), z.string()])).optional(),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    const log = ctx.machine.smmu.evtq.log;
    const window = log.slice(ctx.eventCursor);
    ctx.eventCursor = log.length;
    const match = window.find(
      (e) =>
        e.type === s.type.toUpperCase() &&
        (s.sid === undefined || e.sid === s.sid) &&
        (s.ssid === undefined || e.ssid === s.ssid) &&
        Object.entries(s.fields ?? {}).every(([k, v]) => fieldMatches(e.num, k, e.fields[k], v)),
    );
    if (!match) {
      const want = `${s.type}${s.sid !== undefined ? ` sid=${s.sid}` : ''}${s.ssid !== undefined ? ` ssid=${s.ssid}` : ''}${s.fields ? ' ' + JSON.stringify(s.fields) : ''}`;
      ctx.fail(
        want,
        window.length ? window.map((e) => `${e.type} sid=${e.sid}`).join(', ') : 'no event',
      );
    }
  },
});

/** A field matches a number, a "0x…" string, or the name of its value ("CLASS":"TT", "RnW":"write"). */
function fieldMatches(
  num: number,
  name: string,
  actual: number | string | undefined,
  want: number | string,
): boolean {
  if (actual === undefined) return false;
  const a = typeof actual === 'string' ? BigInt(actual) : BigInt(actual);
  if (typeof want === 'number') return a === BigInt(want);
  if (/^0x[0-9a-f]+$/i.test(want) || /^[0-9]+$/.test(want)) return a === BigInt(want);
  const f = eventFields(num).find((x) => x.name === name);
  const named =
    f?.values === undefined
      ? undefined
      : Object.entries(f.values).find(([, v]) => v.toLowerCase() === want.toLowerCase());
  return named !== undefined && a === BigInt(named[0]);
}

export const expectNoEventStep = defineStep({
  op: 'expectNoEvent',
  doc: 'no event record was written since the previous expectEvent/expectNoEvent',
  schema: z.object({ op: z.literal('expectNoEvent'), comment: z.string().optional() }).strict(),
  run(ctx) {
    const log = ctx.machine.smmu.evtq.log;
    const window = log.slice(ctx.eventCursor);
    ctx.eventCursor = log.length;
    if (window.length) ctx.fail('no event', window.map((e) => `${e.type} sid=${e.sid}`).join(', '));
  },
});

export const RAW_STEPS = [
  writeStep,
  readStep,
  memwriteStep,
  memreadStep,
  dmaStep,
  expectEventStep,
  expectNoEventStep,
];
