/**
 * pkvm-pv-idmap (pKVM v3, designs.md §2.2): identity domains only. enable_dev points a device's
 * STE at the idmap (stage 2 only, VMID 0), disable_dev makes it invalid with CFGI_STE + CMD_SYNC;
 * dma_map is iova = pa with no hypercall. What the design gives up, shown by the isolation
 * oracle: an enabled device reaches every page the host owns, and still none of the
 * hypervisor's or a guest's.
 */
import { describe, expect, it } from 'vitest';
import { ERRNO, PV_CALLS } from '../../../hyp/pv/abi.ts';
import { HYP_BASE, HYP_END, OPCODE } from '../../reference.ts';
import { steF } from '../../guest/rig.ts';
import { bootPv, opsSince } from './rig.ts';

const PAGE = 4096;

describe('pkvm-pv-idmap', () => {
  it('dma_map makes no hypercall and returns iova = pa; dma_unmap makes none either', () => {
    const r = bootPv('pv-idmap');
    r.io.attach(8, 'dma');
    const calls = r.m.bus.hypercalls;
    const cmds = r.phys.length;
    for (let i = 0; i < 16; i++) {
      const pa = 0x5000_0000 + i * PAGE + 0x10;
      expect(r.io.map(8, pa, 64)).toBe(pa);
      r.io.unmap(8, pa, 64);
    }
    expect(r.m.bus.hypercalls).toBe(calls);
    expect(r.phys.length).toBe(cmds);
    expect(r.hyp.stats.traps).toBe(0);
  });

  it('enable_dev: the STE is stage 2 only with the idmap, VMID 0 (CFGI_STE + CMD_SYNC); disable_dev: V=0 with CFGI_STE + CMD_SYNC, and the DMA fails', () => {
    const r = bootPv('pv-idmap');
    const dev = r.m.devices.get('nic')!;
    let from = r.phys.length;
    r.io.attach(8, 'identity');
    expect(opsSince(r, from)).toContain(OPCODE.CFGI_STE);
    expect(opsSince(r, from).at(-1)).toBe(OPCODE.CMD_SYNC);
    const ste = r.hyp.shadowSte(8);
    expect([steF.v(ste), steF.config(ste), steF.vmid(ste), steF.s2ttb(ste)]).toEqual([
      1,
      0b110,
      0,
      r.hyp.idmap.s2.vttbr,
    ]);
    const o = dev.write(0x5000_0000, new Uint8Array([1, 2, 3, 4]));
    expect(o.ok && o.pa).toBe(0x5000_0000);
    expect(r.m.bus.read32('host', 0x5000_0000)).toBe(0x04030201);
    from = r.phys.length;
    r.io.detach(8);
    // V 1→0: DW0 first, CFGI_STE + CMD_SYNC, the rest, CFGI_STE + CMD_SYNC (hyp/smmuv3/strtab.ts)
    expect(opsSince(r, from)).toEqual([
      OPCODE.CFGI_STE,
      OPCODE.CMD_SYNC,
      OPCODE.CFGI_STE,
      OPCODE.CMD_SYNC,
    ]);
    expect(steF.v(r.hyp.shadowSte(8))).toBe(0);
    expect(dev.read(0x5000_0000, 4).ok).toBe(false);
    expect(r.hyp.pv!.calls.enable_dev).toBe(1);
    expect(r.hyp.pv!.calls.disable_dev).toBe(1);
  });

  it('enable twice is -EEXIST, disable of a device not enabled -ENOENT, a guest StreamID -EPERM, the v1/v2 calls not supported', () => {
    const r = bootPv('pv-idmap');
    r.hyp.createGuest({
      name: 'vm1',
      memory: { base: 0x6000_0000, size: 0x100_0000 },
      devices: [{ vsid: 0, psid: 16 }],
    });
    expect(r.hvc('enable_dev', 8)).toBe(0);
    expect(r.hvc('enable_dev', 8)).toBe(-ERRNO.EEXIST);
    expect(r.hvc('disable_dev', 9)).toBe(-ERRNO.ENOENT);
    expect(r.hvc('enable_dev', 16)).toBe(-ERRNO.EPERM);
    expect(r.hvc('enable_dev', 2 ** 16)).toBe(-ERRNO.EINVAL);
    expect(r.m.bus.hvc('host', PV_CALLS.map_pages.id, [1, 0, HYP_BASE, PAGE, 1, 3])).toBe(-1);
    expect(r.hyp.pv!.refusedBy.NOT_SUPPORTED).toBe(1);
    // the guest's device kept the guest's STE: abort, until the guest enables its vSMMU
    const s16 = r.hyp.shadowSte(16);
    expect([steF.v(s16), steF.config(s16)]).toEqual([1, 0]);
  });

  it("an enabled device reaches every host page but never the hypervisor's or a guest's (the oracle, and DMA)", () => {
    const r = bootPv('pv-idmap');
    const GUEST = 0x6000_0000;
    r.hyp.createGuest({
      name: 'vm1',
      memory: { base: GUEST, size: 0x100_0000 },
      devices: [{ vsid: 0, psid: 16 }],
    });
    r.io.attach(8, 'dma');
    r.io.attach(9, 'identity');
    const o = r.oracle();
    expect(o.check().ok).toBe(true);
    const reach = o.reach('nic').filter((x) => x.write);
    const reaches = (pa: number): boolean =>
      reach.some((x) => pa >= x.base && pa < x.base + x.size);
    for (const pa of [0x4000_0000, 0x5000_0000, 0x5fff_f000, 0x7bff_f000])
      expect(reaches(pa)).toBe(true);
    for (const pa of [HYP_BASE, HYP_END - PAGE, GUEST, GUEST + 0xff_f000])
      expect(reaches(pa)).toBe(false);
    const dev = r.m.devices.get('nic')!;
    expect(dev.read(0x7bff_f000, 4).ok).toBe(true);
    expect(dev.read(HYP_BASE, 4).ok).toBe(false);
    expect(dev.read(GUEST, 4).ok).toBe(false);
    // a page donated while the device is enabled leaves the idmap (and the TLBs) before the donation completes
    r.hyp.donate(0x5000_0000, PAGE);
    expect(dev.read(0x5000_0000, 4).ok).toBe(false);
    expect(o.check().ok).toBe(true);
  });
});
