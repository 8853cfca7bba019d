import { describe, expect, it } from 'vitest';
import { ExternalAbort, PhysicalMemory } from '../../hw/memory.ts';

const BASE = 0x4000_0000;

function mem(size = 0x10_0000): PhysicalMemory {
  const m = new PhysicalMemory();
  m.addRam('ram', BASE, size);
  return m;
}

describe('PhysicalMemory', () => {
  it('unwritten RAM reads as zero and allocates nothing', () => {
    const m = mem();
    expect(m.read8(BASE)).toBe(0);
    expect(m.read32(BASE + 0x1234)).toBe(0);
    expect(m.read64(BASE + 0xff000)).toBe(0n);
    expect(Array.from(m.readBytes(BASE + 0x10, 8))).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(m.allocatedPages).toBe(0);
  });

  it('writes allocate only the pages touched', () => {
    const m = mem();
    m.write32(BASE + 0x5000, 1);
    m.write32(BASE + 0x5ffc, 2);
    expect(m.allocatedPages).toBe(1);
    m.write8(BASE + 0x9000, 3);
    expect(m.allocatedPages).toBe(2);
  });

  it('is little-endian', () => {
    const m = mem();
    m.write32(BASE, 0x11223344);
    expect([m.read8(BASE), m.read8(BASE + 1), m.read8(BASE + 2), m.read8(BASE + 3)]).toEqual([
      0x44, 0x33, 0x22, 0x11,
    ]);
    expect(m.read16(BASE + 2)).toBe(0x1122);
    m.write64(BASE + 8, 0x0102030405060708n);
    expect(m.read32(BASE + 8)).toBe(0x05060708);
    expect(m.read32(BASE + 12)).toBe(0x01020304);
    expect(Array.from(m.readBytes(BASE + 8, 3))).toEqual([8, 7, 6]);
  });

  it('32-bit values with the top bit set read back unsigned', () => {
    const m = mem();
    m.write32(BASE, 0xdeadbeef);
    expect(m.read32(BASE)).toBe(0xdeadbeef);
    m.write64(BASE + 8, 0xffff_ffff_ffff_fffen);
    expect(m.read64(BASE + 8)).toBe(0xffff_ffff_ffff_fffen);
  });

  it('handles accesses that cross a 4 KiB page boundary', () => {
    const m = mem();
    m.write64(BASE + 0xffc, 0xaabbccdd_11223344n);
    expect(m.read32(BASE + 0xffc)).toBe(0x11223344);
    expect(m.read32(BASE + 0x1000)).toBe(0xaabbccdd);
    expect(m.read64(BASE + 0xffc)).toBe(0xaabbccdd_11223344n);
    m.write32(BASE + 0x1ffe, 0xcafef00d);
    expect(m.read16(BASE + 0x1ffe)).toBe(0xf00d);
    expect(m.read16(BASE + 0x2000)).toBe(0xcafe);
    expect(m.read32(BASE + 0x1ffe)).toBe(0xcafef00d);
    m.write64(BASE + 0x2ff9, 0x0102030405060708n);
    expect(m.read64(BASE + 0x2ff9)).toBe(0x0102030405060708n);
    expect(m.read8(BASE + 0x3000)).toBe(0x01);
    const data = new Uint8Array(0x1800).map((_, i) => i & 0xff);
    m.writeBytes(BASE + 0x3c00, data);
    expect(m.readBytes(BASE + 0x3c00, 0x1800)).toEqual(data);
    expect(m.read8(BASE + 0x4000)).toBe(0x400 & 0xff);
    expect(m.read8(BASE + 0x4001)).toBe(0x401 & 0xff);
  });

  it('readWords/writeWords move 32-bit words', () => {
    const m = mem();
    m.writeWords(BASE + 0x100, [1, 2, 0xffffffff]);
    const out = new Uint32Array(3);
    m.readWords(BASE + 0x100, out);
    expect(Array.from(out)).toEqual([1, 2, 0xffffffff]);
  });

  it('generic read/write sizes', () => {
    const m = mem();
    m.write(BASE, 2, 0x1_2345n);
    expect(m.read(BASE, 2)).toBe(0x2345n);
    m.write(BASE + 16, 8, 0x8000_0000_0000_0001n);
    expect(m.read(BASE + 16, 8)).toBe(0x8000_0000_0000_0001n);
    expect(m.read(BASE + 16, 1)).toBe(1n);
    expect(m.read(BASE + 16, 4)).toBe(1n);
  });

  it('an access outside RAM is an external abort carrying the address', () => {
    const m = mem();
    expect(() => m.read32(0x1000)).toThrow(ExternalAbort);
    expect(() => m.write32(BASE + 0x10_0000, 1)).toThrow(ExternalAbort);
    expect(() => m.read8(BASE - 1)).toThrow(ExternalAbort);
    try {
      m.read64(0x2000_0008);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ExternalAbort);
      expect((e as ExternalAbort).addr).toBe(0x2000_0008);
    }
    // the last byte of RAM is fine, one beyond is not
    m.write8(BASE + 0xf_ffff, 0x5a);
    expect(m.read8(BASE + 0xf_ffff)).toBe(0x5a);
    expect(() => m.read16(BASE + 0xf_ffff)).toThrow(ExternalAbort);
  });

  it('writeBytes that runs off the end of RAM changes nothing', () => {
    const m = mem(0x2000);
    expect(() => m.writeBytes(BASE + 0x1ff0, new Uint8Array(0x20).fill(7))).toThrow(ExternalAbort);
    expect(m.read8(BASE + 0x1ff0)).toBe(0);
    expect(m.allocatedPages).toBe(0);
  });

  it('isRam and region validation', () => {
    const m = mem(0x2000);
    expect(m.isRam(BASE)).toBe(true);
    expect(m.isRam(BASE + 0x1ffc, 4)).toBe(true);
    expect(m.isRam(BASE + 0x1ffc, 8)).toBe(false);
    expect(m.isRam(BASE - 4)).toBe(false);
    expect(() => m.addRam('bad', 0x1234, 0x1000)).toThrow();
    expect(() => m.addRam('bad', 0x1000, 0x800)).toThrow();
    expect(() => m.addRam('overlap', BASE + 0x1000, 0x1000)).toThrow();
    expect(() => m.addRam('huge', 2 ** 48 - 0x1000, 0x2000)).toThrow();
    m.addRam('second', 0x8000_0000, 0x1000);
    m.write32(0x8000_0000, 9);
    expect(m.read32(0x8000_0000)).toBe(9);
    expect(m.ramRegions.map((r) => r.name)).toEqual(['ram', 'second']);
  });
});
