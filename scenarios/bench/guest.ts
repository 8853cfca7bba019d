/**
 * guest.cmdq: guest TLBI_NH_VA + CMD_SYNC pairs through the vSMMU. The guest kernel (the host's
 * driver, unchanged) probes its vSMMU and attaches a stage-1 domain; then each batch of 64 pairs
 * is written into the guest's command queue (guest memory, through its stage-2) and published
 * with one trapped CMDQ_PROD write. Per guest command the hypervisor reads it through the
 * guest's stage-2, checks it with the hardware's queue logic, forwards the TLBI with the
 * guest's VMID, and completes each guest CMD_SYNC after a physical CMD_SYNC.
 */
import { performance } from 'node:perf_hooks';
import { Machine, SMMU_BASE } from '../../hw/machine.ts';
import { OFF } from '../../hw/smmu/regs.ts';
import { encodeCommand, OP } from '../../hw/smmu/commands.ts';
import { PkvmHyp } from '../../hyp/pkvm.ts';
import { ArmSmmuV3 } from '../../host/driver/driver.ts';
import { GUEST_RAM_IPA, VSMMU_IPA } from '../../hyp/vm/guest.ts';
import { GuestKernel } from '../../guest/vm.ts';

export interface GuestBenchResult {
  name: string;
  opsPerSec: number;
  ops: number;
  seconds: number;
  note: string;
}

export function guestCmdq(): GuestBenchResult {
  const m = new Machine({ devices: [{ name: 'gpu', sid: 9 }] });
  const hyp = new PkvmHyp(m).boot();
  new ArmSmmuV3(m.bus, {
    base: SMMU_BASE,
    pages: { base: 0x4400_0000, limit: 0x7800_0000 },
  }).probe();
  const g = hyp.createGuest({
    name: 'vm1',
    memory: { base: 0x6000_0000, size: 0x0100_0000 },
    devices: [{ vsid: 0, psid: 9 }],
  });
  const k = new GuestKernel(m.bus, {
    actor: g.actor,
    ram: { base: GUEST_RAM_IPA, size: g.size },
    smmu: VSMMU_IPA,
    streams: { gpu: 0 },
  });
  k.dma.attachDefault(0, { ssidBits: 0 });
  const qs = k.drv.ft.cmdqShift;
  const qBase = k.drv.cmdq.base;
  const bus = m.bus;
  const actor = g.actor;
  const v = hyp.vsmmus.get('vm1')!;
  let prod = bus.read32(actor, VSMMU_IPA + OFF.CMDQ_PROD);
  const mask = 2 ** (qs + 1) - 1;
  const tlbi = encodeCommand('TLBI_NH_VA', { ASID: 1, Address: 0x1000, Leaf: 1 });
  const sync = encodeCommand('CMD_SYNC', { CS: 0 });
  const PAIRS = 64;
  const batch = (n: number): void => {
    for (let b = 0; b < n; b++) {
      for (let i = 0; i < PAIRS; i++) {
        for (const c of [tlbi, sync]) {
          bus.writeWords(actor, qBase + (prod & (2 ** qs - 1)) * 16, c, 4);
          prod = (prod + 1) & mask;
        }
      }
      bus.write32(actor, VSMMU_IPA + OFF.CMDQ_PROD, prod);
    }
  };
  batch(64); // warm up
  const before = g.stats.commands;
  const physBefore = v.physOps[OP.CMD_SYNC]!;
  const N = 1024;
  const t0 = performance.now();
  batch(N);
  const s = (performance.now() - t0) / 1000;
  const cmds = g.stats.commands - before;
  if (cmds !== N * PAIRS * 2)
    throw new Error(`guest.cmdq: ${cmds} guest commands consumed, expected ${N * PAIRS * 2}`);
  if (v.physOps[OP.CMD_SYNC]! - physBefore !== N * PAIRS)
    throw new Error('guest.cmdq: expected one physical CMD_SYNC per guest CMD_SYNC');
  return {
    name: 'guest.cmdq',
    opsPerSec: Math.round(cmds / s),
    ops: cmds,
    seconds: +s.toFixed(3),
    note: 'guest TLBI_NH_VA + CMD_SYNC commands per second through the vSMMU (64 pairs per trapped PROD write): read through the guest stage-2, the hardware queue logic, TLBI forwarded with the guest VMID, a physical CMD_SYNC per guest CMD_SYNC',
  };
}
