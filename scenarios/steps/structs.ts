/**
 * Higher-level steps that build translation structures without hand-encoded hex:
 *   pt.map, pt.unmap  — stage-1/stage-2 page tables
 *   ste, cd           — an STE or CD from named fields (the field tables in hw/smmu/)
 *   cmd               — commands written at CMDQ_PROD and submitted with one PROD write
 * All memory and register accesses go through the bus as the step's actor.
 */
import { z } from 'zod';
import { defineStep, type RunContext } from '../engine/context.ts';
import { zActor, zAddr, zU32, zU64, parseBig } from '../engine/schema.ts';
import { geometry, ptMap, ptUnmap, TableAllocator, type PtMemory } from './pagetable.ts';
import { STE, STE_WORDS } from '../../hw/smmu/ste.ts';
import { CD, CD_WORDS } from '../../hw/smmu/cd.ts';
import { encodeCommand, opcodeByName, CMD_WORDS } from '../../hw/smmu/commands.ts';
import { set, setBig, type Field } from '../../hw/bits.ts';
import { OFF } from '../../hw/smmu/regs.ts';
import { SMMU_BASE } from '../../hw/machine.ts';
import { strtabGeometry } from '../../hw/smmu/strtab.ts';
import { qIndex, ptrMask, qInc } from '../../hw/smmu/queue.ts';

function busMemory(ctx: RunContext, actor: string): PtMemory {
  const bus = ctx.machine.bus;
  return {
    read64: (a) => bus.read64(actor, a),
    write64: (a, v) => bus.write64(actor, a, v),
    zero: (a, len) => bus.writeBytes(actor, a, new Uint8Array(len)),
  };
}

export function ptAllocator(ctx: RunContext): TableAllocator {
  if (!ctx.ptAlloc) {
    const m = ctx.machine;
    const base =
      ctx.ptPool?.base ??
      (m.ramSize >= 0x1000_0000 ? m.ramBase + m.ramSize - 0x800_0000 : m.ramBase + m.ramSize / 2);
    const size = ctx.ptPool?.size ?? (m.ramSize >= 0x1000_0000 ? 0x400_0000 : m.ramSize / 4);
    ctx.ptAlloc = new TableAllocator(base, base + size);
  }
  return ctx.ptAlloc;
}

const zPerm = z.string().regex(/^[rwxup-]*$/, {
  message: 'perm is made of r, w, x, u (unprivileged access, stage 1) and p (privileged only)',
});

const zPt = {
  actor: zActor.default('host'),
  root: zAddr,
  stage: z.union([z.literal(1), z.literal(2)]),
  granule: z.union([z.literal(4096), z.literal(16384), z.literal(65536)]).default(4096),
  ias: zU32.optional(),
  startLevel: z.number().int().min(0).max(3).optional(),
  oas: zU32.optional(),
  iova: zAddr,
  size: zAddr.optional(),
  comment: z.string().optional(),
};

export const ptMapStep = defineStep({
  op: 'pt.map',
  doc: 'map [iova, iova+size) → pa in the stage-1/stage-2 tables at `root` (blocks where aligned unless "pages":true; "level" forces one)',
  schema: z
    .object({
      op: z.literal('pt.map'),
      ...zPt,
      pa: zAddr,
      perm: zPerm.default('rw'),
      pages: z.boolean().optional(),
      level: z.number().int().min(0).max(3).optional(),
      af: z.boolean().default(true),
      global: z.boolean().default(false),
      contiguous: z.boolean().default(false),
      attr: zU32.optional(),
      sh: zU32.default(3),
    })
    .strict(),
  run(ctx, s) {
    const geo = geometry(
      s.stage,
      s.granule,
      s.ias ?? 48,
      s.root,
      s.oas ?? ctx.machine.smmu.features.oas,
      s.startLevel,
    );
    const user = s.stage === 1 && (s.perm.includes('u') || !s.perm.includes('p'));
    ptMap(
      busMemory(ctx, s.actor),
      ptAllocator(ctx),
      geo,
      s.iova,
      s.pa,
      s.size ?? s.granule,
      { read: s.perm.includes('r'), write: s.perm.includes('w'), exec: s.perm.includes('x'), user },
      {
        af: s.af,
        global: s.global,
        contiguous: s.contiguous,
        attr: s.attr ?? (s.stage === 1 ? 1 : 0xf),
        sh: s.sh,
      },
      s.pages ?? false,
      s.level,
    );
  },
});

export const ptUnmapStep = defineStep({
  op: 'pt.unmap',
  doc: 'clear the leaf descriptors mapping [iova, iova+size) in the tables at `root` (no invalidation: use a cmd step)',
  schema: z.object({ op: z.literal('pt.unmap'), ...zPt }).strict(),
  run(ctx, s) {
    const geo = geometry(
      s.stage,
      s.granule,
      s.ias ?? 48,
      s.root,
      s.oas ?? ctx.machine.smmu.features.oas,
      s.startLevel,
    );
    ptUnmap(busMemory(ctx, s.actor), geo, s.iova, s.size ?? s.granule);
  },
});

/** Fields given as byte addresses (converted to the field's units). */
const ADDRESS_FIELDS: Record<string, number> = { S1ContextPtr: 6, S2TTB: 4, TTB0: 4, TTB1: 4 };

function encodeFields(
  layout: Readonly<Record<string, Field>>,
  nwords: number,
  fields: Record<string, unknown>,
  what: string,
): Uint32Array {
  const w = new Uint32Array(nwords);
  const byName = new Map(Object.values(layout).map((f) => [f.name.toLowerCase(), f]));
  for (const [k, v] of Object.entries(fields)) {
    const f = byName.get(k.toLowerCase());
    if (!f)
      throw new Error(
        `${what} has no field "${k}" (fields: ${Object.values(layout)
          .map((x) => x.name)
          .join(', ')})`,
      );
    let b = parseBig(v);
    if (typeof b === 'string') throw new Error(`${what} field "${k}": ${b}`);
    const sh = ADDRESS_FIELDS[f.name];
    if (sh !== undefined) {
      if (b % (1n << BigInt(sh)) !== 0n)
        throw new Error(
          `${what} field "${k}" is a byte address and must be ${1 << sh}-byte aligned`,
        );
      b >>= BigInt(sh);
    }
    if (b >= 1n << BigInt(f.width))
      throw new Error(
        `${what} field "${k}" value 0x${b.toString(16)} does not fit in ${f.width} bits`,
      );
    if (f.width > 53) setBig(w, f, b);
    else set(w, f, Number(b));
  }
  return w;
}

function wordsToBytes(w: Uint32Array): Uint8Array {
  return new Uint8Array(w.buffer.slice(0));
}

/** Address of the STE for `sid` from the SMMU's current STRTAB registers (read through the bus). */
function steAddress(ctx: RunContext, actor: string, sid: number): number {
  const bus = ctx.machine.bus;
  const base = Number(bus.read64(actor, SMMU_BASE + OFF.STRTAB_BASE) & 0x00ff_ffff_ffff_ffc0n);
  const cfg = bus.read32(actor, SMMU_BASE + OFF.STRTAB_BASE_CFG);
  const g = strtabGeometry(
    base,
    cfg,
    ctx.machine.smmu.features.sidSize,
    ctx.machine.smmu.features.twoLevelStrtab,
  );
  if (g.fmt === 0) return g.base + sid * 64;
  const l1 = bus.read64(actor, g.base + Math.floor(sid / 2 ** g.split) * 8);
  const span = Number(l1 & 0x1fn);
  if (span === 0) throw new Error(`SID ${sid}: its L1STD has Span=0 (no level-2 table)`);
  const l2 = Number(l1 & 0x00ff_ffff_ffff_ffc0n);
  return l2 + (sid % 2 ** g.split) * 64;
}

export const steStep = defineStep({
  op: 'ste',
  doc: 'write an STE from named fields ("Config":5, "S1ContextPtr":"0x…" as a byte address, …) at `addr`, or for `sid` in the current stream table',
  schema: z
    .object({
      op: z.literal('ste'),
      actor: zActor.default('host'),
      sid: zU32.optional(),
      addr: zAddr.optional(),
      fields: z.record(z.string(), z.union([z.number(), z.string()])),
      comment: z.string().optional(),
    })
    .strict()
    .refine((s) => (s.sid === undefined) !== (s.addr === undefined), {
      message: 'give exactly one of "sid" and "addr"',
    }),
  run(ctx, s) {
    const w = encodeFields(STE, STE_WORDS, s.fields, 'STE');
    const addr = s.addr ?? steAddress(ctx, s.actor, s.sid!);
    ctx.machine.bus.writeBytes(s.actor, addr, wordsToBytes(w));
  },
});

export const cdStep = defineStep({
  op: 'cd',
  doc: 'write a CD from named fields ("T0SZ":16, "TTB0":"0x…" as a byte address, "ASID":1, …) at `addr`',
  schema: z
    .object({
      op: z.literal('cd'),
      actor: zActor.default('host'),
      addr: zAddr,
      fields: z.record(z.string(), z.union([z.number(), z.string()])),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    const w = encodeFields(CD, CD_WORDS, s.fields, 'CD');
    ctx.machine.bus.writeBytes(s.actor, s.addr, wordsToBytes(w));
  },
});

/**
 * A scenario command object ({"name":"TLBI_NH_VA","ASID":1,"Address":"0x1000",…}) as a name and
 * field values; Address and MSIAddress are given as byte addresses. Used by the cmd step and
 * the driver's issue call.
 */
export function commandValues(c: { name: string }): [string, Record<string, number | bigint>] {
  const fields = c as { name: string } & Record<string, unknown>;
  const name = fields.name;
  const vals: Record<string, number | bigint> = {};
  for (const k of Object.keys(fields)) {
    if (k === 'name') continue;
    const v = fields[k];
    const lk = k.toLowerCase();
    const unit = lk === 'msiaddress' ? 4 : lk === 'address' ? 4096 : 1;
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) {
      // a JSON number: exact as a number (encodeCommand sets it exactly as it would its BigInt)
      vals[k] = unit === 1 ? v : Math.floor(v / unit);
      continue;
    }
    const b = parseBig(v);
    if (typeof b === 'string') throw new Error(`command ${name} field ${k}: ${b}`);
    vals[k] = unit === 4 ? b >> 2n : unit === 4096 ? b >> 12n : b;
  }
  return [name, vals];
}

export const zCommand = z.looseObject({
  name: z
    .string()
    .refine((n) => opcodeByName(n) !== undefined, { message: 'unknown command name' }),
});

export const cmdStep = defineStep({
  op: 'cmd',
  doc: 'write commands ({"name":"CFGI_STE","StreamID":8,"Leaf":1}, …) at CMDQ_PROD and submit them with one PROD write; "expectCons" checks CMDQ_CONS after',
  schema: z
    .object({
      op: z.literal('cmd'),
      actor: zActor.default('host'),
      commands: z.array(zCommand).min(1),
      expectCons: zU64.optional(),
      comment: z.string().optional(),
    })
    .strict(),
  run(ctx, s) {
    const bus = ctx.machine.bus;
    const baseReg = bus.read64(s.actor, SMMU_BASE + OFF.CMDQ_BASE);
    const qs = Math.min(Number(baseReg & 0x1fn), ctx.machine.smmu.features.cmdqs);
    const base = Number(baseReg & 0x00ff_ffff_ffff_ffe0n);
    let prod = bus.read32(s.actor, SMMU_BASE + OFF.CMDQ_PROD) & ptrMask(qs);
    for (const c of s.commands) {
      const [name, vals] = commandValues(c);
      const w = encodeCommand(name, vals);
      bus.writeBytes(
        s.actor,
        base + qIndex(prod, qs) * 16,
        new Uint8Array(w.buffer, w.byteOffset, CMD_WORDS * 4),
      );
      prod = qInc(prod, qs);
    }
    bus.write32(s.actor, SMMU_BASE + OFF.CMDQ_PROD, prod);
    if (s.expectCons !== undefined) {
      const cons = bus.read32(s.actor, SMMU_BASE + OFF.CMDQ_CONS);
      if (BigInt(cons) !== s.expectCons)
        ctx.fail(
          '0x' + s.expectCons.toString(16),
          '0x' + cons.toString(16),
          'CMDQ_CONS after the commands',
        );
    }
  },
});

export const STRUCT_STEPS = [ptMapStep, ptUnmapStep, steStep, cdStep, cmdStep];
