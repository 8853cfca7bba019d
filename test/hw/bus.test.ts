import { describe, expect, it } from 'vitest';
import { Machine } from '../../hw/machine.ts';
import {
  CpuAbortError,
  MmioBus,
  TRAP,
  isGuestActor,
  type BusAccessEvent,
  type DataAbort,
  type MmioDevice,
} from '../../hw/bus.ts';
import { PhysicalMemory } from '../../hw/memory.ts';
import { NO_RAM, R, RAM, SMMU } from './helpers.ts';

/** A stage-2 check for tests: the guest's IPA 0 maps to PA RAM+0x100000; the SMMU page traps. */
const GUEST_RAM_PA = RAM + 0x10_0000;
function installGuestStage2(m: Machine, handler: (a: DataAbort) => bigint) {
  m.bus.installStage2(
    {
      translate(actor, addr) {
        if (addr >= SMMU && addr < SMMU + 0x20000) return TRAP;
        if (isGuestActor(actor)) return addr < 0x10_0000 ? GUEST_RAM_PA + addr : TRAP;
        return addr;
      },
    },
    handler,
  );
}

describe('MmioBus', () => {
  it('routes CPU accesses to RAM: unwritten RAM reads zero, little-endian, 64-bit', () => {
    const m = new Machine();
    expect(m.bus.read32('host', RAM + 0x40)).toBe(0);
    m.bus.write64('host', RAM + 0x40, 0x1122334455667788n);
    expect(m.bus.read32('host', RAM + 0x40)).toBe(0x55667788);
    expect(m.bus.read32('host', RAM + 0x44)).toBe(0x11223344);
    expect(m.bus.read('host', RAM + 0x40, 1)).toBe(0x88n);
    expect(m.bus.read('host', RAM + 0x46, 2)).toBe(0x1122n);
    expect(m.mem.read64(RAM + 0x40)).toBe(0x1122334455667788n);
  });

  it('handles page-crossing accesses and bulk copies', () => {
    const m = new Machine();
    m.bus.write64('host', RAM + 0xffc, 0xa1a2a3a4_b1b2b3b4n);
    expect(m.bus.read64('host', RAM + 0xffc)).toBe(0xa1a2a3a4_b1b2b3b4n);
    expect(m.mem.read32(RAM + 0x1000)).toBe(0xa1a2a3a4);
    const data = new Uint8Array(5000).map((_, i) => (i * 7) & 0xff);
    m.bus.writeBytes('host', RAM + 0x2f00, data);
    expect(m.bus.readBytes('host', RAM + 0x2f00, 5000)).toEqual(data);
  });

  it('an access with neither RAM nor a device behind it is an external abort', () => {
    const m = new Machine();
    expect(() => m.bus.read32('host', NO_RAM)).toThrow(CpuAbortError);
    expect(() => m.bus.write32('host', 0, 1)).toThrow(CpuAbortError);
    expect(() => m.bus.read64('host', RAM + 0x4000_0000)).toThrow(CpuAbortError);
    expect(() => m.bus.readBytes('host', RAM + 0x3fff_f000, 0x2000)).toThrow(CpuAbortError);
    try {
      m.bus.read32('host', NO_RAM + 4);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(CpuAbortError);
      expect((e as CpuAbortError).addr).toBe(NO_RAM + 4);
      expect((e as CpuAbortError).dir).toBe('r');
      expect((e as CpuAbortError).actor).toBe('host');
    }
  });

  it('routes the SMMU window (Page 0 and Page 1) to the device, with the device offset', () => {
    const m = new Machine();
    const seen: BusAccessEvent[] = [];
    m.bus.observe((e) => seen.push(e));
    m.bus.write32('host', SMMU + R.EVENTQ_CONS, 3);
    expect(m.bus.read32('host', SMMU + R.EVENTQ_CONS)).toBe(3);
    expect(m.bus.deviceAt(SMMU + 0x1ffff)?.name).toBe('smmu');
    expect(m.bus.deviceAt(SMMU + 0x20000)).toBeUndefined();
    expect(seen).toHaveLength(2);
    expect(seen[0]).toMatchObject({
      actor: 'host',
      dir: 'w',
      addr: SMMU + 0x100ac,
      size: 4,
      value: 3n,
      offset: 0x100ac,
      trapped: false,
    });
    expect(seen[0]!.device?.name).toBe('smmu');
    expect(seen[1]).toMatchObject({ dir: 'r', value: 3n, offset: 0x100ac });
    expect(m.bus.deviceAccesses).toBe(2);
  });

  it('observers see device accesses only (not RAM) and can be removed', () => {
    const m = new Machine();
    const seen: BusAccessEvent[] = [];
    const off = m.bus.observe((e) => seen.push(e));
    m.bus.write32('host', RAM, 1);
    m.bus.read32('host', SMMU + R.IDR0);
    off();
    m.bus.read32('host', SMMU + R.IDR1);
    expect(seen.map((e) => e.offset)).toEqual([R.IDR0]);
  });

  it('with no stage 2 installed the host sees physical addresses', () => {
    const m = new Machine();
    expect(m.bus.hasStage2).toBe(false);
    m.bus.write32('guest:vm1', RAM + 0x10, 0x77);
    expect(m.mem.read32(RAM + 0x10)).toBe(0x77);
  });

  it('delivers a trapped read to the handler with address, size, direction and actor, and returns its value', () => {
    const m = new Machine();
    const aborts: DataAbort[] = [];
    installGuestStage2(m, (a) => {
      aborts.push(a);
      return 0x1_2345_6789n; // wider than the access: the CPU sees the low 32 bits
    });
    expect(m.bus.read32('guest:vm1', SMMU + R.IDR0)).toBe(0x23456789);
    expect(aborts).toEqual([
      { actor: 'guest:vm1', addr: SMMU + R.IDR0, size: 4, dir: 'r', value: 0n },
    ]);
    expect(m.bus.traps).toBe(1);
  });

  it('delivers a trapped write with its value, and the device is not touched', () => {
    const m = new Machine();
    const aborts: DataAbort[] = [];
    installGuestStage2(m, (a) => {
      aborts.push(a);
      return 0n;
    });
    m.bus.write64('host', SMMU + R.CMDQ_BASE, 0x4000_0000_4001_0004n);
    expect(aborts).toEqual([
      { actor: 'host', addr: SMMU + R.CMDQ_BASE, size: 8, dir: 'w', value: 0x4000_0000_4001_0004n },
    ]);
    // the hypervisor bypasses stage 2 and sees the register unchanged (reset value 0)
    expect(m.bus.read64('hyp', SMMU + R.CMDQ_BASE)).toBe(0n);
    m.bus.write32('hyp', SMMU + R.CR1, 0xd75);
    expect(m.bus.read32('hyp', SMMU + R.CR1)).toBe(0xd75);
    expect(aborts).toHaveLength(1);
  });

  it('observers see trapped accesses, flagged as trapped, with the value the CPU got', () => {
    const m = new Machine();
    installGuestStage2(m, () => 0xabn);
    const seen: BusAccessEvent[] = [];
    m.bus.observe((e) => seen.push(e));
    m.bus.read('guest:g', SMMU + R.CR0, 4);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({
      actor: 'guest:g',
      dir: 'r',
      addr: SMMU + R.CR0,
      value: 0xabn,
      trapped: true,
    });
    expect(seen[0]!.device).toBeUndefined();
  });

  it('stage 2 translates guest RAM accesses; bulk copies through trapping pages trap per byte', () => {
    const m = new Machine();
    const aborts: DataAbort[] = [];
    installGuestStage2(m, (a) => {
      aborts.push(a);
      return 0x5an;
    });
    m.bus.write32('guest:vm1', 0x20, 0xfeedface);
    expect(m.mem.read32(GUEST_RAM_PA + 0x20)).toBe(0xfeedface);
    expect(m.bus.read32('guest:vm1', 0x20)).toBe(0xfeedface);
    // 0x10_0000.. is outside the guest's RAM and traps
    const got = m.bus.readBytes('guest:vm1', 0xffffe, 4);
    expect(Array.from(got)).toEqual([0, 0, 0x5a, 0x5a]);
    expect(aborts.map((a) => [a.addr, a.size, a.dir])).toEqual([
      [0x100000, 1, 'r'],
      [0x100001, 1, 'r'],
    ]);
  });

  it('a trap with no handler is a CPU abort', () => {
    const m = new Machine();
    m.bus.installStage2({ translate: () => TRAP }, null);
    expect(() => m.bus.read32('host', RAM)).toThrow(CpuAbortError);
    // the hypervisor is never subject to stage 2
    expect(m.bus.read32('hyp', RAM)).toBe(0);
    m.bus.installStage2(null, null);
    expect(m.bus.read32('host', RAM)).toBe(0);
  });

  it('rejects devices that overlap other devices or RAM', () => {
    const mem = new PhysicalMemory();
    mem.addRam('ram', 0x4000_0000, 0x1000);
    const bus = new MmioBus(mem);
    const dev = (name: string, base: number, size: number): MmioDevice => ({
      name,
      base,
      size,
      read: () => 0n,
      write: () => {},
    });
    bus.attach(dev('a', 0x1000, 0x1000));
    expect(() => bus.attach(dev('b', 0x1800, 0x1000))).toThrow();
    expect(() => bus.attach(dev('c', 0x3fff_f000, 0x2000))).toThrow();
    bus.attach(dev('d', 0x2000, 0x1000));
    expect(bus.deviceList.map((d) => d.name)).toEqual(['a', 'd']);
  });
});
