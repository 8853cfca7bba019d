/**
 * Steps for the hypervisor: ownership changes the host asks for, and what the hypervisor and
 * the isolation oracle must say afterwards. Steps that need a hypervisor fail under
 * `"hyp":"none"` unless they carry `"when":"pkvm"`.
 */
import { z } from 'zod';
import { get } from '../../hw/bits.ts';
import { STE, STE_FIELDS } from '../../hw/smmu/ste.ts';
import { newLookup } from '../../hw/smmu/strtab.ts';
import { defineStep, type RunContext } from '../engine/context.ts';
import { zAddr, zU32 } from '../engine/schema.ts';
import { OwnershipError } from '../../hyp/mem/ownership.ts';
import { ShadowQueueError } from '../../hyp/smmuv3/shadowq.ts';
import { RULE_NAMES, isRule } from '../../hyp/policy/policy.ts';
import { oracleFor } from '../check/isolation.ts';

const zRule = z
  .string()
  .refine(isRule, { message: `unknown rule (rules: ${RULE_NAMES.join(', ')})` });
const zOwnerTo = z
  .string()
  .regex(/^(hyp|guest:[A-Za-z0-9_.-]+)$/, { message: 'must be "hyp" or "guest:<name>"' });

function needHyp(ctx: RunContext) {
  if (!ctx.hyp) {
    ctx.fail(
      'a hypervisor (machine "hyp":"pkvm")',
      'no hypervisor',
      'give the step "when":"pkvm" to run it only under the hypervisor',
    );
    return null;
  }
  return ctx.hyp;
}

export const hypStep = defineStep({
  op: 'hyp',
  doc: 'an ownership change the host asks the hypervisor for: `call` donate | reclaim | share | unshare of [`addr`, +`size`) to/from `to` ("hyp" or "guest:<name>"); "expect":"refused" expects it to be refused',
  schema: z
    .object({
      op: z.literal('hyp'),
      call: z.enum(['donate', 'reclaim', 'share', 'unshare']),
      addr: zAddr,
      size: zAddr.default(4096),
      to: zOwnerTo.default('hyp'),
      expect: z.enum(['ok', 'refused']).default('ok'),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    const hyp = needHyp(ctx);
    if (!hyp) return;
    const to = s.to as 'hyp';
    try {
      hyp[s.call](s.addr, s.size, to);
      if (s.expect === 'refused') ctx.fail('refused', 'completed');
    } catch (e) {
      if (e instanceof OwnershipError || e instanceof ShadowQueueError) {
        if (s.expect === 'ok') ctx.fail('completed', 'refused', e.message);
        return;
      }
      throw e;
    }
  },
});

export const expectPanicStep = defineStep({
  op: 'expectPanic',
  doc: 'the hypervisor has panicked (optionally for `rule`, with `reason` containing the text); a run whose hypervisor panics without this step fails',
  schema: z
    .object({
      op: z.literal('expectPanic'),
      rule: zRule.optional(),
      reason: z.string().optional(),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    ctx.panicExpected = true;
    if (!needHyp(ctx)) return;
    const p = ctx.panic;
    if (!p) return ctx.fail(`hyp panic${s.rule ? ` [${s.rule}]` : ''}`, 'no panic');
    if ((s.rule && p.rule !== s.rule) || (s.reason && !p.reason.includes(s.reason)))
      ctx.fail(
        `hyp panic${s.rule ? ` [${s.rule}]` : ''}${s.reason ? ` "…${s.reason}…"` : ''}`,
        `hyp panic [${p.rule}]: ${p.reason}`,
      );
  },
});

export const expectViolationStep = defineStep({
  op: 'expectViolation',
  doc: 'the hypervisor recorded a violation of `rule` (exactly `count` times if given) — under any failure policy',
  schema: z
    .object({
      op: z.literal('expectViolation'),
      rule: zRule,
      count: zU32.optional(),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    const hyp = needHyp(ctx);
    if (!hyp) return;
    const n = hyp.failures.byRule[s.rule] ?? 0;
    if (s.count !== undefined ? n !== s.count : n === 0) {
      ctx.fail(
        `${s.count ?? '≥1'} × ${s.rule}`,
        `${n} × ${s.rule}`,
        `violations so far: ${JSON.stringify(hyp.failures.byRule)}`,
      );
    }
  },
});

export const isolationStep = defineStep({
  op: 'isolation',
  doc: 'run the isolation oracle on the hardware state now: "expect":"ok" (no device can reach, and no SMMU write has landed on, a page the host may not touch) or "breach" (optionally by `path`)',
  schema: z
    .object({
      op: z.literal('isolation'),
      expect: z.enum(['ok', 'breach']),
      path: z.string().optional(),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    const r = oracleFor(ctx).check();
    const shown = r.breaches
      .slice(0, 4)
      .map((b) => b.detail)
      .join('; ');
    if (s.expect === 'ok' && !r.ok)
      ctx.fail('isolation holds', `${r.breaches.length} breach(es): ${shown}`);
    if (s.expect === 'breach') {
      const hit = r.breaches.filter((b) => s.path === undefined || b.path === s.path);
      if (!hit.length)
        ctx.fail(
          `an isolation breach${s.path ? ` by ${s.path}` : ''}`,
          r.ok ? 'isolation holds' : `other breaches only: ${shown}`,
        );
    }
  },
});

const zFieldValue = z.union([
  z.number(),
  z.string().regex(/^(0x[0-9a-fA-F]+|0b[01]+|[0-9]+)$/, { message: 'a number, "0x…" or "0b…"' }),
]);

export const expectSteStep = defineStep({
  op: 'expectSte',
  doc: 'the STE the hardware uses for `sid` (from the stream table the SMMU is programmed with, through its configuration cache) has these `fields` (STE field names, e.g. {"Config":"0b111","S2VMID":0})',
  schema: z
    .object({
      op: z.literal('expectSte'),
      sid: zU32,
      fields: z.record(
        z.string().refine((n) => STE_FIELDS.some((f) => f.name === n), {
          message: 'not an STE field name (see hw/smmu/ste.ts)',
        }),
        zFieldValue,
      ),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    const l = ctx.machine.smmu.strtab.lookup(s.sid, newLookup());
    if (!l.ste) return ctx.fail(`an STE for StreamID ${s.sid}`, `none (event ${l.event})`);
    const w = l.ste.words;
    const bad: string[] = [];
    for (const [name, want] of Object.entries(s.fields)) {
      const f = STE_FIELDS.find((x) => x.name === name)!;
      const got = get(w, f);
      const exp =
        typeof want === 'number'
          ? want
          : want.startsWith('0b')
            ? parseInt(want.slice(2), 2)
            : Number(want);
      if (got !== exp) bad.push(`${name}=${got} (want ${exp})`);
    }
    if (bad.length)
      ctx.fail(
        JSON.stringify(s.fields),
        bad.join(', '),
        `STE of StreamID ${s.sid} at 0x${l.ste.addr.toString(16)} (V=${get(w, STE.V)})`,
      );
  },
});

export const expectTraceStep = defineStep({
  op: 'expectTrace',
  doc: 'since the previous expectTrace, the run\'s trace holds `sequence` in this order (other entries may come between); entries are "hw <OPCODE>" for each command the SMMU consumed and "step N <op> [call]: start|done" (substrings match)',
  schema: z
    .object({
      op: z.literal('expectTrace'),
      sequence: z.array(z.string().min(1)).min(1),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    const t = ctx.trace!;
    const window = t.slice(ctx.traceCursor);
    ctx.traceCursor = t.length;
    let i = 0;
    for (const e of window) if (i < s.sequence.length && e.includes(s.sequence[i]!)) i++;
    if (i < s.sequence.length)
      ctx.fail(
        s.sequence.join(' → '),
        window.slice(0, 40).join(' | ') || 'empty trace',
        `missing from "${s.sequence[i]}" on`,
      );
  },
});

export const raceStep = defineStep({
  op: 'race',
  doc: "a second host CPU: once the hypervisor has read host memory at `addr` `afterReads` times (default 1), the host writes `hex` there before the hypervisor's next read of it — a double fetch would see the new bytes",
  schema: z
    .object({
      op: z.literal('race'),
      addr: zAddr,
      hex: z.string().regex(/^([0-9a-fA-F]{2})+$/, { message: 'hex bytes' }),
      afterReads: zU32.default(1),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    const hyp = needHyp(ctx);
    if (!hyp) return;
    const bytes = Uint8Array.from(s.hex.match(/../g)!.map((x) => parseInt(x, 16)));
    let seen = 0;
    hyp.hostMem.hook = (pa, n) => {
      if (pa + n <= s.addr || pa >= s.addr + bytes.length) return;
      if (seen++ === s.afterReads) {
        ctx.machine.bus.writeBytes('host', s.addr, bytes);
        hyp.hostMem.hook = null;
      }
    };
  },
});

export const HYP_STEPS = [
  hypStep,
  expectPanicStep,
  expectViolationStep,
  isolationStep,
  expectSteStep,
  expectTraceStep,
  raceStep,
];
