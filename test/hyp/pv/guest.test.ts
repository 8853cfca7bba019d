/**
 * Guests under the paravirtual designs: the hypervisor still owns the shadow queue and stream
 * table, so a guest built by createGuest gets its vSMMU, its kernel (the unchanged driver) attaches
 * its device through it, and the device's DMA is the guest's stage 1 nested under the guest's
 * stage 2 and VMID, exactly as under trap-and-emulate; the host's paravirtual domains sit beside
 * it under VMID 0, and neither reaches the other's memory.
 */
import { describe, expect, it } from 'vitest';
import { GuestKernel } from '../../../guest/vm.ts';
import { ERRNO, IOMMU_ID } from '../../../hyp/pv/abi.ts';
import { steF } from '../../guest/rig.ts';
import { RAM_BASE, SMMU_BASE } from '../../reference.ts';
import { bootPv } from './rig.ts';

const GUEST_PA = 0x6000_0000;
const GUEST_SIZE = 0x100_0000;

describe('a guest under pkvm-pv and pkvm-pv-idmap', () => {
  for (const kind of ['pv', 'pv-idmap'] as const)
    it(`${kind}: the guest's kernel attaches its device through its vSMMU, and the device DMAs into the guest's memory only`, () => {
      const r = bootPv(kind);
      r.io.attach(8, 'dma');
      const hostIova = r.io.map(8, 0x5000_0000, 4096);
      const g = r.hyp.createGuest({
        name: 'vm1',
        memory: { base: GUEST_PA, size: GUEST_SIZE },
        devices: [{ vsid: 0, psid: 9 }],
      });
      const k = new GuestKernel(r.m.bus, {
        actor: g.actor,
        ram: { base: RAM_BASE, size: GUEST_SIZE },
        smmu: SMMU_BASE,
        streams: { dev0: 0 },
      });
      k.dma.attachDefault(0, { ssidBits: 0 });
      const ste = r.hyp.shadowSte(9);
      expect([steF.config(ste), steF.vmid(ste)]).toEqual([0b111, g.vmid]);
      const iova = k.dma.map(0, RAM_BASE + 0x2000, 4096, 'bidirectional');
      const gpu = r.m.devices.get('gpu')!;
      const o = gpu.write(iova, new Uint8Array([9, 8, 7, 6]));
      expect(o.ok && o.pa).toBe(GUEST_PA + 0x2000);
      expect(r.m.bus.read32(g.actor, RAM_BASE + 0x2000)).toBe(0x06070809);
      k.dma.unmap(0, iova, 4096);
      expect(gpu.read(iova, 4).ok).toBe(false);
      // the guest's vSMMU traps are the guest's; the host made no MMIO access at all
      expect(g.stats.traps).toBeGreaterThan(0);
      expect(r.hyp.stats.mmioTraps).toBe(0);
      // the host's device still reaches its own buffer; the host cannot take the guest's device
      const h = r.m.devices.get('nic')!.read(hostIova, 4);
      expect(h.ok && h.pa).toBe(0x5000_0000);
      expect(
        kind === 'pv' ? r.hvc('attach_dev', IOMMU_ID, 0, 9, 0, 0) : r.hvc('enable_dev', 9),
      ).toBe(-ERRNO.EPERM);
      expect(r.oracle().check().ok).toBe(true);
      // torn down, the guest's memory is the host's again and its device takes a host domain
      r.hyp.destroyGuest('vm1');
      expect(r.hyp.own.state(GUEST_PA).owner).toBe('host');
      r.io.attach(9, 'dma');
      const back = r.io.map(9, GUEST_PA, 4096);
      const b = gpu.read(back, 4);
      expect(b.ok && b.pa).toBe(GUEST_PA);
      expect(r.oracle().check().ok).toBe(true);
    });
});
