/**
 * Replays the MMIO sequence Linux 6.12 performed on QEMU's SMMUv3 (linux-sequence.md §1–§3)
 * against the model configured with QEMU's feature set, and checks every value the driver
 * read back.
 */
import { describe, expect, it } from 'vitest';
import { Machine } from '../../../hw/machine.ts';
import type { BusAccessEvent } from '../../../hw/bus.ts';
import {
  CFGI_ALL,
  LINUX_SYNC,
  OPC,
  R,
  SMMU,
  Sw,
  SwCmdq,
  bytes,
  cmd,
  writeSte,
} from '../helpers.ts';
import { QEMU_VIRT_SMMU } from '../../reference.ts';

const QEMU = QEMU_VIRT_SMMU;

const L1 = 0x4415_1000;
const L2 = 0x7aa6_0000;
const CMDQ = 0x7ab0_0000;

describe('Linux arm-smmu-v3 probe on the QEMU feature set', () => {
  it('reads the advertised IDs, resets, programs tables and queues, and enables one bit at a time', () => {
    const m = new Machine({
      smmu: { features: QEMU },
      devices: [
        { name: 'virtio-rng', sid: 0x8 },
        { name: 'virtio-blk', sid: 0x10 },
      ],
    });
    const sw = new Sw(m);
    const log: Array<[string, number, bigint]> = [];
    m.bus.observe((e: BusAccessEvent) => log.push([e.dir, e.offset!, e.value]));

    expect(sw.r32(R.IDR0)).toBe(0x0d44101b);
    expect(sw.r32(R.IDR1)).toBe(0x02730010);
    expect(sw.r32(R.IDR3)).toBe(0x1414);
    expect(sw.r32(R.IDR5)).toBe(0x74);
    expect(sw.r32(R.IIDR)).toBe(0);
    expect(sw.r32(R.CR0)).toBe(0);
    sw.w32(R.CR0, 0);
    expect(sw.r32(R.CR0ACK)).toBe(0);
    sw.w32(R.CR1, 0xd75);
    sw.w32(R.CR2, 0x6);
    sw.w64(R.STRTAB_BASE, 0x4000_0000_4415_1000n);
    sw.w32(R.STRTAB_BASE_CFG, 0x0001_0210);
    sw.w64(R.CMDQ_BASE, 0x4000_0000_7ab0_0010n);
    sw.w32(R.CMDQ_PROD, 0);
    sw.w32(R.CMDQ_CONS, 0);
    sw.w32(R.CR0, 0x8);
    expect(sw.r32(R.CR0ACK)).toBe(0x8);

    const q = new SwCmdq(sw, CMDQ, 16);
    q.put(CFGI_ALL, LINUX_SYNC);
    sw.w32(R.CMDQ_PROD, 2);
    expect(sw.r32(R.CMDQ_CONS)).toBe(2);
    q.put(cmd(OPC.TLBI_NSNH_ALL), LINUX_SYNC);
    sw.w32(R.CMDQ_PROD, 4);
    expect(sw.r32(R.CMDQ_CONS)).toBe(4);

    sw.w64(R.EVENTQ_BASE, 0x4000_0000_7ac0_000fn);
    sw.w32(0x100a8, 0);
    sw.w32(0x100ac, 0);
    sw.w32(R.CR0, 0xc);
    expect(sw.r32(R.CR0ACK)).toBe(0xc);
    sw.w32(R.IRQ_CTRL, 0);
    expect(sw.r32(R.IRQ_CTRLACK)).toBe(0);
    sw.w64(R.GERROR_IRQ_CFG0, 0n);
    sw.w64(R.EVENTQ_IRQ_CFG0, 0n);
    sw.w32(R.IRQ_CTRL, 0x5);
    expect(sw.r32(R.IRQ_CTRLACK)).toBe(0x5);
    sw.w32(R.CR0, 0xd);
    expect(sw.r32(R.CR0ACK)).toBe(0xd);

    // every write took effect as written
    expect(sw.r32(R.CR1)).toBe(0xd75);
    expect(sw.r32(R.CR2)).toBe(0x6);
    expect(sw.r64(R.STRTAB_BASE)).toBe(0x4000_0000_4415_1000n);
    expect(sw.r32(R.STRTAB_BASE_CFG)).toBe(0x0001_0210);
    expect(sw.r64(R.CMDQ_BASE)).toBe(0x4000_0000_7ab0_0010n);
    expect(sw.r64(R.EVENTQ_BASE)).toBe(0x4000_0000_7ac0_000fn);
    expect(sw.r32(R.GERROR)).toBe(0);
    expect(m.smmu.tlbiCounts[0x30]).toBe(1);
    expect(m.smmu.cmdq.stats.syncs).toBe(2);
    expect(m.smmu.sevs).toBe(0); // IDR0.SEV=0: CS=SEV signals nothing

    // the bus saw the sequence, in order, at the device offsets (64-bit writes as single accesses)
    const writes = log.filter(([d]) => d === 'w').map(([, off, v]) => [off, v]);
    expect(writes).toEqual([
      [0x20, 0n],
      [0x28, 0xd75n],
      [0x2c, 0x6n],
      [0x80, 0x4000_0000_4415_1000n],
      [0x88, 0x10210n],
      [0x90, 0x4000_0000_7ab0_0010n],
      [0x98, 0n],
      [0x9c, 0n],
      [0x20, 0x8n],
      [0x98, 2n],
      [0x98, 4n],
      [0xa0, 0x4000_0000_7ac0_000fn],
      [0x100a8, 0n],
      [0x100ac, 0n],
      [0x20, 0xcn],
      [0x50, 0n],
      [0x68, 0n],
      [0xb0, 0n],
      [0x50, 0x5n],
      [0x20, 0xdn],
    ]);

    // the stream table: L1[0] = 0x7aa60009 (Span 9, 256 STEs), all initialised to the abort STE (qword0 = 0x1)
    m.mem.write64(L1, 0x7aa6_0009n);
    for (let i = 0; i < 256; i++) writeSte(m, L2 + 64 * i, [0x1n]);
    const rng = m.devices.get('virtio-rng')!;
    const blk = m.devices.get('virtio-blk')!;
    expect(rng.read(0x4800_0000, 4).ok).toBe(false);
    expect(blk.read(0x4800_0000, 4).ok).toBe(false);
    expect(m.smmu.evtq.log).toHaveLength(0); // abort STEs record nothing

    // attach SID 8 to an identity domain: STE = 0x9 0 ..., then CFGI_STE(8, leaf) + SYNC, PREFETCH_CONFIG
    writeSte(m, L2 + 64 * 8, [0x9n]);
    q.put([0x0000_0008_0000_0003n, 0x1n], LINUX_SYNC);
    sw.w32(R.CMDQ_PROD, q.prod);
    expect(sw.r32(R.CMDQ_CONS)).toBe(6);
    q.put([0x0000_0008_0000_0001n, 0n]);
    sw.w32(R.CMDQ_PROD, q.prod);
    expect(sw.r32(R.CMDQ_CONS)).toBe(7);
    expect(rng.write(0x4800_0000, bytes(0xaa, 0xbb))).toMatchObject({ ok: true, pa: 0x4800_0000 });
    expect(m.mem.read16(0x4800_0000)).toBe(0xbbaa);
    expect(blk.read(0x4800_0000, 2).ok).toBe(false);
    expect(sw.r32(R.EVENTQ_PROD)).toBe(0);
    expect(m.bus.read32('host', SMMU + R.GERROR)).toBe(0);
  });
});
