/**
 * LinuxIommu and the driver's runtime PM on a bare machine. Suspend is arm_smmu_device_disable:
 * CR0 becomes 0 and CR0ACK follows. Resume is arm_smmu_device_reset over the same tables: the
 * SMMU consumes exactly the reset's commands (CFGI_ALL, TLBI_NSNH_ALL, each with a CMD_SYNC;
 * TLBI_EL2_ALL too when IDR0.HYP), the STEs in memory are untouched, and the device's DMA
 * translates again.
 */
import { describe, expect, it } from 'vitest';
import { Machine, SMMU_BASE } from '../../hw/machine.ts';
import { OFF, CR0_BITS } from '../../hw/smmu/regs.ts';
import { OP } from '../../hw/smmu/commands.ts';
import { LinuxIommu } from '../../host/linux-iommu.ts';

const PAGES = { base: 0x4400_0000, limit: 0x7800_0000 };
const BUF = 0x4000_0000;

function setup(hyp: boolean) {
  const m = new Machine({ smmu: { features: { hyp } }, devices: [{ name: 'nic', sid: 8 }] });
  const io = new LinuxIommu(m.bus, { smmu: SMMU_BASE, pages: PAGES });
  io.probe();
  io.attach(8, 'dma');
  const iova = io.map(8, BUF, 4096);
  return { m, io, iova, nic: m.devices.get('nic')! };
}

const cr0 = (m: Machine) => m.bus.read32('host', SMMU_BASE + OFF.CR0);
const cr0ack = (m: Machine) => m.bus.read32('host', SMMU_BASE + OFF.CR0ACK);

describe('LinuxIommu runtime PM', () => {
  for (const hyp of [false, true]) {
    it(`suspend disables the SMMU; resume resets it with the STEs kept (IDR0.HYP=${hyp ? 1 : 0})`, () => {
      const { m, io, iova, nic } = setup(hyp);
      expect(nic.write(iova, new Uint8Array([1, 2, 3, 4])).ok).toBe(true);
      const steAddr = io.drv.steAddr(8);
      const ste = m.mem.readBytes(steAddr, 64).slice();
      io.suspend();
      expect(cr0(m)).toBe(0);
      expect(cr0ack(m)).toBe(0);
      const per = m.smmu.cmdq.stats.perOpcode;
      const before = Uint32Array.from(per);
      const consumed = m.smmu.cmdq.stats.consumed;
      io.resume();
      const d = (op: number) => per[op]! - before[op]!;
      expect(d(OP.CFGI_STE_RANGE)).toBe(1);
      expect(d(OP.TLBI_NSNH_ALL)).toBe(1);
      expect(d(OP.TLBI_EL2_ALL)).toBe(hyp ? 1 : 0);
      expect(d(OP.CMD_SYNC)).toBe(hyp ? 3 : 2);
      expect(m.smmu.cmdq.stats.consumed - consumed).toBe(hyp ? 6 : 4);
      const { SMMUEN, CMDQEN, EVENTQEN } = CR0_BITS;
      expect(cr0(m) & (SMMUEN | CMDQEN | EVENTQEN)).toBe(SMMUEN | CMDQEN | EVENTQEN);
      expect(cr0ack(m)).toBe(cr0(m));
      expect([...m.mem.readBytes(steAddr, 64)]).toEqual([...ste]);
      const out = nic.write(iova, new Uint8Array([5, 6, 7, 8]));
      expect(out.ok && out.pa).toBe(BUF);
      // the queue restarted at 0 and still works: an unmap's TLBI and CMD_SYNC complete
      io.unmap(8, iova, 4096);
      expect(nic.write(iova, new Uint8Array([9])).ok).toBe(false);
    });
  }

  it('suspend and resume before probe are refused by name', () => {
    const m = new Machine();
    const io = new LinuxIommu(m.bus, { smmu: SMMU_BASE, pages: PAGES });
    expect(() => io.suspend()).toThrow(/suspend before probe/);
    expect(() => io.resume()).toThrow(/resume before probe/);
  });

  it('detach puts the device in the blocked domain (its DMA aborts)', () => {
    const { io, iova, nic } = setup(false);
    io.detach(8);
    expect(nic.read(iova, 4).ok).toBe(false);
    io.attach(8, 'identity');
    const out = nic.read(BUF, 4);
    expect(out.ok && out.pa).toBe(BUF);
  });
});
