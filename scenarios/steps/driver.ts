/**
 * The driver step: `{"op":"driver","actor":"host","call":…}` runs the Linux-like host driver
 * (host/) the way the kernel would. Calls:
 *   probe      {pages?:{base,limit}, bypass?}          probe and reset the SMMU
 *   attach     {sid, domain:"dma"|"identity"|"blocked", ssidBits?}
 *   map        {sid, pa, size, dir?, as?, expectIova?}  dma_map_single; `as` names the mapping
 *   unmap      {sid, mapping | iova+size}               dma_unmap_single (TLBI + CMD_SYNC)
 *   dma        {sid, mapping, access, offset?, len?, hex?, expect?}  the device DMAs at the mapping's IOVA
 *   drainEvents {expect?:[type…], expectSids?:[sid…]}  the event handler drains the event queue
 *   issue      {commands:[{name,…}], sync?}            commands (fields as in the cmd step) through the driver's queue
 */
import { z } from 'zod';
import { defineStep, type RunContext } from '../engine/context.ts';
import { zActor, zAddr, zU32, zHex, hexToBytes, bytesToHex } from '../engine/schema.ts';
import { commandValues, zCommand } from './structs.ts';
import { ArmSmmuV3 } from '../../host/driver/driver.ts';
import { DomainManager } from '../../host/driver/domain.ts';
import { DmaApi } from '../../host/dma-api.ts';
import { SMMU_BASE } from '../../hw/machine.ts';
import type { Command } from '../../host/driver/cmdq.ts';
import { isGuestActor } from '../../hw/bus.ts';
import { GuestKernel } from '../../guest/vm.ts';
import { VSMMU_IPA } from '../../hyp/vm/guest.ts';

export interface HostKernel {
  drv: ArmSmmuV3;
  dm: DomainManager;
  dma: DmaApi;
  /** named DMA mappings */
  mappings: Map<string, { sid: number; iova: number; pa: number; size: number }>;
}

/** Host driver pages: 0x4400_0000–0x77FF_FFFF by default (below the scenario page-table pool and the hyp). */
export const HOST_PAGES = { base: 0x4400_0000, limit: 0x7800_0000 };

function kernel(ctx: RunContext, actor: string): HostKernel {
  const k = ctx.kernels.get(actor);
  if (!k) throw new Error(`the ${actor} driver has not probed yet (call "probe" first)`);
  return k;
}

const zDriver = z.discriminatedUnion('call', [
  z
    .object({
      call: z.literal('probe'),
      pages: z.object({ base: zAddr, limit: zAddr }).strict().optional(),
      bypass: z.boolean().optional(),
    })
    .strict(),
  z
    .object({
      call: z.literal('attach'),
      sid: zU32,
      domain: z.enum(['dma', 'identity', 'blocked']),
      ssidBits: zU32.optional(),
    })
    .strict(),
  z
    .object({
      call: z.literal('map'),
      sid: zU32,
      pa: zAddr,
      size: zU32,
      dir: z.enum(['to-device', 'from-device', 'bidirectional']).default('bidirectional'),
      as: z.string().optional(),
      expectIova: zAddr.optional(),
    })
    .strict(),
  z
    .object({
      call: z.literal('unmap'),
      sid: zU32,
      mapping: z.string().optional(),
      iova: zAddr.optional(),
      size: zU32.optional(),
    })
    .strict()
    .refine((s) => s.mapping !== undefined || (s.iova !== undefined && s.size !== undefined), {
      message: 'unmap needs "mapping", or "iova" and "size"',
    }),
  z
    .object({
      call: z.literal('dma'),
      sid: zU32,
      mapping: z.string(),
      access: z.enum(['read', 'write']),
      offset: zU32.default(0),
      len: zU32.optional(),
      hex: zHex.optional(),
      expect: z.enum(['ok', 'fault']).optional(),
      expectHex: zHex.optional(),
    })
    .strict(),
  z
    .object({
      call: z.literal('drainEvents'),
      expect: z.array(z.string()).optional(),
      expectSids: z.array(zU32).optional(),
    })
    .strict(),
  z
    .object({
      call: z.literal('issue'),
      commands: z.array(zCommand).min(1),
      sync: z.boolean().default(true),
      expectRecovered: zU32.optional(),
    })
    .strict(),
]);

export const driverStep = defineStep({
  op: 'driver',
  doc: 'the Linux-like host driver: {"call":"probe"|"attach"|"map"|"unmap"|"dma"|"drainEvents"|"issue", …} (see scenarios/steps/driver.ts)',
  schema: z.intersection(
    z.object({
      op: z.literal('driver'),
      actor: zActor.default('host'),
      comment: z.string().optional(),
    }),
    zDriver,
  ),
  run(ctx, s) {
    const actor = s.actor;
    switch (s.call) {
      case 'probe': {
        if (isGuestActor(actor)) {
          const g = ctx.hyp?.guests.get(actor.slice(6));
          if (!g) throw new Error(`no guest named ${actor.slice(6)} (create it with a guest step)`);
          const k = new GuestKernel(
            ctx.machine.bus,
            { actor, ram: { base: g.ipaBase, size: g.size }, smmu: VSMMU_IPA, streams: {} },
            s.pages,
          );
          ctx.kernels.set(actor, { drv: k.drv, dm: k.dm, dma: k.dma, mappings: new Map() });
          return;
        }
        const drv = new ArmSmmuV3(
          ctx.machine.bus,
          { base: SMMU_BASE, pages: s.pages ?? HOST_PAGES, ...(s.bypass ? { bypass: true } : {}) },
          actor,
        );
        drv.probe();
        const dm = new DomainManager(drv);
        ctx.kernels.set(actor, { drv, dm, dma: new DmaApi(drv, dm), mappings: new Map() });
        return;
      }
      case 'attach': {
        const k = kernel(ctx, actor);
        if (s.domain === 'dma') k.dma.attachDefault(s.sid, { ssidBits: s.ssidBits ?? 0 });
        else k.dm.attach(s.sid, k.dm.alloc(s.domain));
        return;
      }
      case 'map': {
        const k = kernel(ctx, actor);
        const iova = k.dma.map(s.sid, s.pa, s.size, s.dir);
        if (s.as) k.mappings.set(s.as, { sid: s.sid, iova, pa: s.pa, size: s.size });
        if (s.expectIova !== undefined && iova !== s.expectIova)
          ctx.fail('0x' + s.expectIova.toString(16), '0x' + iova.toString(16), 'IOVA');
        return;
      }
      case 'unmap': {
        const k = kernel(ctx, actor);
        const m =
          s.mapping !== undefined
            ? k.mappings.get(s.mapping)
            : { sid: s.sid, iova: s.iova!, pa: 0, size: s.size! };
        if (!m) throw new Error(`no mapping named "${s.mapping}"`);
        k.dma.unmap(s.sid, m.iova, m.size);
        if (s.mapping !== undefined) k.mappings.delete(s.mapping);
        return;
      }
      case 'dma': {
        const k = kernel(ctx, actor);
        const m = k.mappings.get(s.mapping) ?? ctx.unmapped.get(s.mapping);
        if (!m) throw new Error(`no mapping named "${s.mapping}"`);
        ctx.unmapped.set(s.mapping, m); // remembered, so a DMA after the unmap can still name it
        // a guest names its devices by vSID: the device behind it has the pSID
        let psid = s.sid;
        if (isGuestActor(actor)) {
          const p = ctx.hyp?.guests.get(actor.slice(6))?.vsidToPsid.get(s.sid);
          if (p === undefined) throw new Error(`${actor} has no device with vSID ${s.sid}`);
          psid = p;
        }
        const ep = ctx.endpointForSid(psid);
        const len = s.len ?? (s.hex ? s.hex.length / 2 : 4);
        const out =
          s.access === 'write'
            ? ep.write(
                m.iova + s.offset,
                s.hex ? hexToBytes(s.hex) : new Uint8Array(len).map((_, i) => (0xa5 + i) & 0xff),
              )
            : ep.read(m.iova + s.offset, len);
        const hex = (n: number | undefined): string | null =>
          n === undefined ? null : '0x' + n.toString(16);
        ctx.translations.push({
          actor,
          device: ep.name,
          sid: s.sid,
          psid,
          access: s.access,
          iova: '0x' + (m.iova + s.offset).toString(16),
          ipa: out.ok ? hex(out.ipa) : null,
          pa: out.ok ? hex(out.pa) : null,
          ...(out.ok ? {} : { fault: out.event ?? out.fault }),
        });
        if (s.expect === 'ok' && !out.ok) ctx.fail('ok', `fault: ${out.fault}`);
        if (s.expect === 'fault' && out.ok) ctx.fail('fault', `ok at PA 0x${out.pa.toString(16)}`);
        if (s.expectHex !== undefined) {
          const got =
            out.ok && out.data ? bytesToHex(out.data) : out.ok ? 'no data' : `fault: ${out.fault}`;
          if (got !== s.expectHex.toLowerCase()) ctx.fail(s.expectHex.toLowerCase(), got);
        }
        return;
      }
      case 'drainEvents': {
        const evs = kernel(ctx, actor).drv.events.drain();
        const got = evs.map((e) => e.type);
        if (s.expect && JSON.stringify(got) !== JSON.stringify(s.expect))
          ctx.fail(
            s.expect.join(', ') || 'no event',
            got.join(', ') || 'no event',
            'events drained by the driver',
          );
        const sids = evs.map((e) => e.sid);
        if (s.expectSids && JSON.stringify(sids) !== JSON.stringify(s.expectSids))
          ctx.fail(
            s.expectSids.join(', ') || 'no event',
            sids.join(', ') || 'no event',
            'StreamIDs of the events drained (a guest sees its vSIDs)',
          );
        return;
      }
      case 'issue': {
        const k = kernel(ctx, actor);
        const cmds: Command[] = s.commands.map((c) => commandValues(c));
        const before = k.drv.cmdq.stats.errorsRecovered;
        k.drv.issue(cmds, s.sync);
        const rec = k.drv.cmdq.stats.errorsRecovered - before;
        if (s.expectRecovered !== undefined && rec !== s.expectRecovered)
          ctx.fail(String(s.expectRecovered), String(rec), 'command errors recovered');
        return;
      }
    }
  },
});

export const DRIVER_STEPS = [driverStep];
