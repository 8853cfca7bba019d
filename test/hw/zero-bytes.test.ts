/**
 * Scrubbing without a buffer: PhysicalMemory.zero and MmioBus.zeroBytes must do exactly what
 * writeBytes of a zero buffer does (the reference here is writeBytes itself, run side by side),
 * while leaving pages that were never written unallocated.
 */
import { describe, expect, it } from 'vitest';
import { Machine } from '../../hw/machine.ts';
import { CpuAbortError, TRAP, type DataAbort } from '../../hw/bus.ts';
import { ExternalAbort, PhysicalMemory } from '../../hw/memory.ts';
import { RAM } from './helpers.ts';

const BASE = 0x4000_0000;

function filled(seed: number): PhysicalMemory {
  const m = new PhysicalMemory();
  m.addRam('ram', BASE, 0x4_0000);
  // every third page written (with non-zero bytes), the others never touched
  for (let p = 0; p < 0x40; p += 3)
    for (let i = 0; i < 4096; i += 64) m.write8(BASE + p * 4096 + i, ((seed + p + i) & 0xff) | 1);
  return m;
}

describe('zeroing memory', () => {
  it('zero(addr, len) leaves memory as writeBytes of zeros does, for unaligned ranges across pages', () => {
    for (const [addr, len] of [
      [BASE + 0x10, 0x20],
      [BASE + 0xff8, 0x10],
      [BASE + 0x2fff, 0x3002],
      [BASE, 0x4_0000],
      [BASE + 0x5000, 0x1000],
    ] as const) {
      const a = filled(addr);
      const b = filled(addr);
      a.zero(addr, len);
      b.writeBytes(addr, new Uint8Array(len));
      expect(Array.from(a.readBytes(BASE, 0x4_0000))).toEqual(
        Array.from(b.readBytes(BASE, 0x4_0000)),
      );
    }
  });

  it('zero() allocates no page that was never written', () => {
    const m = filled(1);
    const before = m.allocatedPages; // 22 pages: 0, 3, ..., 63
    expect(before).toBe(22);
    m.zero(BASE, 0x4_0000);
    expect(m.allocatedPages).toBe(before);
    expect(m.read32(BASE + 3 * 4096)).toBe(0);
  });

  it('zero() that runs off the end of RAM throws ExternalAbort and changes nothing', () => {
    const m = filled(2);
    const snap = Array.from(m.readBytes(BASE, 0x4_0000));
    expect(() => m.zero(BASE + 0x3_f000, 0x2000)).toThrow(ExternalAbort);
    expect(Array.from(m.readBytes(BASE, 0x4_0000))).toEqual(snap);
  });

  it('bus.zeroBytes goes through stage 2 like writeBytes: a trapped page takes byte-wide trapped writes', () => {
    const traps: Array<[number, number]> = [];
    const machines = [new Machine(), new Machine()];
    for (const m of machines) {
      m.bus.installStage2(
        {
          translate: (actor, addr) =>
            actor === 'host' && addr >= RAM + 0x1000 && addr < RAM + 0x2000 ? TRAP : addr,
        },
        (a: DataAbort) => {
          if (m === machines[0]) traps.push([a.addr, a.size]);
          return 0n;
        },
      );
      m.bus.writeBytes('hyp', RAM + 0xf00, new Uint8Array(0x300).fill(0x5a));
    }
    let writeTraps = 0;
    machines[1]!.bus.installStage2(
      {
        translate: (actor, addr) =>
          actor === 'host' && addr >= RAM + 0x1000 && addr < RAM + 0x2000 ? TRAP : addr,
      },
      () => {
        writeTraps++;
        return 0n;
      },
    );
    machines[0]!.bus.zeroBytes('host', RAM + 0xf80, 0x100);
    machines[1]!.bus.writeBytes('host', RAM + 0xf80, new Uint8Array(0x100));
    // 0x80 bytes in the trapping page [RAM+0x1000, RAM+0x1080): one 1-byte trap each
    expect(traps.length).toBe(0x80);
    expect(traps.every(([, size]) => size === 1)).toBe(true);
    expect(writeTraps).toBe(0x80);
    expect(Array.from(machines[0]!.mem.readBytes(RAM + 0xf00, 0x300))).toEqual(
      Array.from(machines[1]!.mem.readBytes(RAM + 0xf00, 0x300)),
    );
    // the part before the trapping page was zeroed, the trapped part kept its bytes
    expect(machines[0]!.mem.read8(RAM + 0xf80)).toBe(0);
    expect(machines[0]!.mem.read8(RAM + 0x1000)).toBe(0x5a);
  });

  it('bus.zeroBytes outside RAM is a data abort for the actor', () => {
    const m = new Machine();
    expect(() => m.bus.zeroBytes('hyp', 0x1000, 16)).toThrow(CpuAbortError);
  });
});
