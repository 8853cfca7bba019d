/**
 * The guest step: the host asks the hypervisor to build or destroy a guest VM.
 *   create  {name, memory:{base,size}, devices:[{device|psid, vsid}], ipaBase?, boot?}
 *           builds the guest; with "boot":true (default) the guest kernel boots and probes its
 *           vSMMU (the same driver as the host, as actor guest:<name>)
 *   destroy {name, dmaDuring?:{device, iova, access}}
 *           tears it down; with dmaDuring the device DMAs at `iova` after every teardown phase
 *           and the isolation oracle runs then: a DMA may only land in pages its guest still
 *           owns, and the oracle must find no breach, at every phase
 * The guest kernel is then driven with the ordinary driver step and "actor":"guest:<name>"
 * (attach, map, dma, unmap, drainEvents, issue take the guest's vSIDs and IPAs).
 */
import { z } from 'zod';
import { defineStep, type RunContext } from '../engine/context.ts';
import { zAddr, zU32 } from '../engine/schema.ts';
import { GuestError, TEARDOWN_PHASES, type TeardownPhase } from '../../hyp/pkvm.ts';
import { GUEST_RAM_IPA, VSMMU_IPA } from '../../hyp/vm/guest.ts';
import { GuestKernel } from '../../guest/vm.ts';
import { OwnershipError } from '../../hyp/mem/ownership.ts';
import { oracleFor } from '../check/isolation.ts';

const zName = z
  .string()
  .regex(/^[A-Za-z0-9_-]+$/, { message: 'a guest name is letters, digits, _ or -' });
const zDev = z
  .object({ device: z.string().optional(), psid: zU32.optional(), vsid: zU32 })
  .strict()
  .refine((d) => (d.device === undefined) !== (d.psid === undefined), {
    message: 'name the device by "device" or by "psid" (one of them)',
  });

const zGuest = z.discriminatedUnion('call', [
  z
    .object({
      call: z.literal('create'),
      name: zName,
      memory: z.object({ base: zAddr, size: zAddr }).strict(),
      devices: z.array(zDev).min(1),
      ipaBase: zAddr.optional(),
      boot: z.boolean().default(true),
      expect: z.enum(['ok', 'refused']).default('ok'),
    })
    .strict(),
  z
    .object({
      call: z.literal('destroy'),
      name: zName,
      expect: z.enum(['ok', 'refused']).default('ok'),
      dmaDuring: z
        .object({
          device: z.string(),
          iova: zAddr,
          access: z.enum(['read', 'write']).default('write'),
        })
        .strict()
        .optional(),
    })
    .strict(),
]);

/** What a teardown looked like, phase by phase (kept for the JSON output). */
export interface TeardownRecord {
  guest: string;
  phases: Array<{ phase: TeardownPhase; dma?: string; isolation: boolean }>;
}

function psidOf(
  ctx: RunContext,
  d: { device?: string | undefined; psid?: number | undefined },
): number {
  if (d.psid !== undefined) return d.psid;
  const dev = ctx.machine.devices.get(d.device!);
  if (!dev)
    throw new Error(
      `no device named "${d.device}" (devices: ${[...ctx.machine.devices.keys()].join(', ') || 'none'})`,
    );
  return dev.sid;
}

export const guestStep = defineStep({
  op: 'guest',
  doc: 'a guest VM: {"call":"create","name","memory":{base,size},"devices":[{"device"|"psid","vsid"}],"boot"?} builds it (and boots its kernel on the vSMMU); {"call":"destroy","name","dmaDuring"?:{device,iova,access}} tears it down, DMAing and checking isolation after every phase',
  schema: z.intersection(
    z.object({ op: z.literal('guest'), comment: z.string().optional() }),
    zGuest,
  ),
  run(ctx, s) {
    const hyp = ctx.hyp;
    if (!hyp) {
      ctx.fail(
        'a hypervisor (machine "hyp":"pkvm")',
        'no hypervisor',
        'guests need the hypervisor; give the step "when":"pkvm"',
      );
      return;
    }
    if (s.call === 'create') {
      const devices = s.devices.map((d) => ({ vsid: d.vsid, psid: psidOf(ctx, d) }));
      let g;
      try {
        g = hyp.createGuest({
          name: s.name,
          memory: s.memory,
          devices,
          ...(s.ipaBase !== undefined ? { ipaBase: s.ipaBase } : {}),
        });
      } catch (e) {
        if (e instanceof GuestError || e instanceof OwnershipError) {
          if (s.expect === 'ok') ctx.fail('guest created', 'refused', e.message);
          return;
        }
        throw e;
      }
      if (s.expect === 'refused') ctx.fail('refused', 'guest created');
      if (s.boot) {
        const streams: Record<string, number> = {};
        s.devices.forEach((d, i) => (streams[d.device ?? `psid${devices[i]!.psid}`] = d.vsid));
        const k = new GuestKernel(ctx.machine.bus, {
          actor: g.actor,
          ram: { base: s.ipaBase ?? GUEST_RAM_IPA, size: s.memory.size },
          smmu: VSMMU_IPA,
          streams,
        });
        ctx.kernels.set(g.actor, { drv: k.drv, dm: k.dm, dma: k.dma, mappings: new Map() });
      }
      return;
    }
    const rec: TeardownRecord = { guest: s.name, phases: [] };
    const ep = s.dmaDuring ? ctx.machine.devices.get(s.dmaDuring.device) : undefined;
    if (s.dmaDuring && !ep) throw new Error(`no device named "${s.dmaDuring.device}"`);
    const g = hyp.guests.get(s.name);
    const between = (phase: TeardownPhase): void => {
      const entry: TeardownRecord['phases'][number] = { phase, isolation: true };
      if (ep && s.dmaDuring && g) {
        const out =
          s.dmaDuring.access === 'write'
            ? ep.write(s.dmaDuring.iova, new Uint8Array([0xde, 0xad, 0xbe, 0xef]))
            : ep.read(s.dmaDuring.iova, 4);
        entry.dma = out.ok ? `ok at PA 0x${out.pa.toString(16)}` : `fault: ${out.fault}`;
        if (out.ok && hyp.own.state(out.pa).owner !== g.actor)
          ctx.fail(
            `no DMA outside ${g.actor} (phase ${phase})`,
            `DMA landed at PA 0x${out.pa.toString(16)}, owned by ${hyp.own.state(out.pa).owner}`,
          );
      }
      const r = oracleFor(ctx).check();
      entry.isolation = r.ok;
      if (!r.ok)
        ctx.fail(
          `isolation holds after teardown phase ${phase}`,
          `${r.total} breach(es): ${r.breaches
            .slice(0, 3)
            .map(
              (b) =>
                `${b.device ?? b.kind} ${b.access} 0x${b.pa.toString(16)} (${b.owner}, ${b.path})`,
            )
            .join('; ')}`,
        );
      rec.phases.push(entry);
    };
    try {
      hyp.destroyGuest(s.name, between);
      if (s.expect === 'refused') ctx.fail('refused', 'guest destroyed');
    } catch (e) {
      if (e instanceof GuestError) {
        if (s.expect === 'ok') ctx.fail('guest destroyed', 'refused', e.message);
        return;
      }
      throw e;
    } finally {
      ctx.teardowns.push(rec);
    }
    ctx.kernels.delete(`guest:${s.name}`);
    if (rec.phases.length !== TEARDOWN_PHASES.length)
      ctx.fail(`${TEARDOWN_PHASES.length} teardown phases`, String(rec.phases.length));
  },
});

export const GUEST_STEPS = [guestStep];
