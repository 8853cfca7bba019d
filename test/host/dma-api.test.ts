/**
 * The DMA API against linux-sequence.md §3 "Map and unmap (DMA-API strict mode)": map issues
 * no command; unmap is one batch of TLBI_NH_VA + CMD_SYNC with the captured encodings
 * (4 KiB: NUM=0 SCALE=0 TG=1 TTL=3 LEAF=1; 8 KiB: NUM=0 SCALE=1); IOVAs are allocated top-down
 * from 0xfffff000. The device's data lands in the right physical page, and after the unmap the
 * DMA faults and the driver's event handler reports it.
 */
import { describe, expect, it } from 'vitest';
import { Machine, SMMU_BASE } from '../../hw/machine.ts';
import { ArmSmmuV3 } from '../../host/driver/driver.ts';
import { DomainManager } from '../../host/driver/domain.ts';
import { DmaApi, IovaAllocator } from '../../host/dma-api.ts';
import { QEMU_VIRT_SMMU } from '../reference.ts';

const QEMU = QEMU_VIRT_SMMU;

function setup(features: object = QEMU) {
  const m = new Machine({
    smmu: { features },
    devices: [
      { name: 'rng', sid: 8 },
      { name: 'blk', sid: 0x10 },
    ],
  });
  const drv = new ArmSmmuV3(m.bus, {
    base: SMMU_BASE,
    pages: { base: 0x4400_0000, limit: 0x7800_0000 },
  });
  drv.probe();
  const dm = new DomainManager(drv);
  const dma = new DmaApi(drv, dm);
  const words: Array<[bigint, bigint]> = [];
  m.smmu.cmdq.onCommand = (w) =>
    words.push([(BigInt(w[1]!) << 32n) | BigInt(w[0]!), (BigInt(w[3]!) << 32n) | BigInt(w[2]!)]);
  return { m, drv, dma, words };
}

describe('DMA API (strict mode)', () => {
  it('maps with no command, lands data at the PA, unmaps with one TLBI_NH_VA + CMD_SYNC as captured, then faults', () => {
    const { m, drv, dma, words } = setup();
    dma.attachDefault(8);
    words.length = 0;
    const buf = 0x4123_4000;
    const iova = dma.map(8, buf, 4096);
    expect(iova).toBe(0xfffff000); // the first IOVA, top-down below 4 GiB
    expect(words).toEqual([]); // map: 0 commands
    expect(
      m.devices.get('rng')!.write(iova + 0x10, new Uint8Array([0xde, 0xad, 0xbe, 0xef])),
    ).toMatchObject({ ok: true, pa: buf + 0x10 });
    expect(m.mem.read32(buf + 0x10)).toBe(0xefbeadde);
    dma.unmap(8, iova, 4096);
    // TLBI_NH_VA asid=1, NUM=0 SCALE=0, addr 0xfffff000, TG=1 (4K) TTL=3 LEAF=1; then SYNC CS=SEV MSH=ISH MSIATTR=0xF
    expect(words).toEqual([
      [0x0001000000000012n, 0x00000000fffff701n],
      [0x000000000fc02046n, 0n],
    ]);
    expect(m.devices.get('rng')!.read(iova + 0x10, 4).ok).toBe(false);
    const ev = drv.events.drain();
    expect(ev.map((e) => [e.type, e.sid, e.fields.InputAddr])).toEqual([
      ['F_TRANSLATION', 8, '0xfffff010'],
    ]);
  });

  it('an 8 KiB unmap is one range command with NUM=0 SCALE=1 (the captured 0x0002000000100012)', () => {
    const { dma, words } = setup();
    dma.attachDefault(8); // asid 1
    dma.attachDefault(0x10); // asid 2, as the capture's second device
    const iova = dma.map(0x10, 0x4200_0000, 8192);
    expect(iova).toBe(0xffffe000); // each domain has its own IOVA space: the first 8 KiB slot below 4 GiB
    words.length = 0;
    dma.unmap(0x10, iova, 8192);
    expect(words[0]).toEqual([0x0002000000100012n, BigInt(iova) | 0x701n]);
    expect(words).toHaveLength(2);
  });

  it('without RIL, unmap issues one non-range TLBI_NH_VA per page and a single CMD_SYNC', () => {
    const { dma, words } = setup({ ...QEMU, ril: false, archMinor: 1 });
    dma.attachDefault(8);
    const iova = dma.map(8, 0x4300_0000, 3 * 4096);
    words.length = 0;
    dma.unmap(8, iova, 3 * 4096);
    expect(words.map(([d0, d1]) => [d0 & 0xffn, d1])).toEqual([
      [0x12n, BigInt(iova) | 1n],
      [0x12n, BigInt(iova + 0x1000) | 1n],
      [0x12n, BigInt(iova + 0x2000) | 1n],
      [0x46n, 0n],
    ]);
  });

  it('allocates size-aligned IOVAs top-down and reuses freed ones', () => {
    const a = new IovaAllocator(4096, 2 ** 32, 4096);
    expect(a.alloc(4096)).toBe(0xfffff000);
    expect(a.alloc(8192)).toBe(0xffffc000);
    expect(a.alloc(4096)).toBe(0xffffb000);
    expect(a.free(0xffffc000)).toBe(8192);
    // freeing at or above the cached point moves it up to the next allocation (0xfffff000)
    expect(a.alloc(4096)).toBe(0xffffe000);
    expect(a.alloc(3 * 4096)).toBe(0xffff4000); // rounded to 16 KiB, 16 KiB aligned, below 0xffffb000
  });
});
