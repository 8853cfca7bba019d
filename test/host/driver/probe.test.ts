/**
 * Realism check: the driver's probe against what Linux 6.12 did on QEMU 10.0.2's SMMUv3
 * (linux-sequence.md §2 and §3). Same registers, same order, same values where the values do
 * not depend on allocation addresses, and the same command words.
 */
import { describe, expect, it } from 'vitest';
import { Machine, SMMU_BASE } from '../../../hw/machine.ts';
import { regNameAt } from '../../../hw/smmu/regs.ts';
import { ArmSmmuV3 } from '../../../host/driver/driver.ts';
import { QEMU_VIRT_SMMU } from '../../reference.ts';

/** QEMU virt's SMMUv3: IDR0 0x0d44101b, IDR1 0x02730010, IDR3 0x1414, IDR5 0x74 (linux-sequence.md §1). */
const QEMU = QEMU_VIRT_SMMU;

/** linux-sequence.md §2, in order: [dir, register, value] (null where the value is an allocated address). */
const LINUX_PROBE: Array<[string, string, bigint | null]> = [
  ['r', 'IDR0', 0x0d44101bn],
  ['r', 'IDR1', 0x02730010n],
  ['r', 'IDR3', 0x1414n],
  ['r', 'IDR5', 0x74n],
  ['r', 'IIDR', 0n],
  ['r', 'CR0', 0n],
  ['w', 'CR0', 0n],
  ['r', 'CR0ACK', 0n],
  ['w', 'CR1', 0xd75n],
  ['w', 'CR2', 0x6n],
  ['w', 'STRTAB_BASE', null],
  ['w', 'STRTAB_BASE_CFG', 0x00010210n],
  ['w', 'CMDQ_BASE', null],
  ['w', 'CMDQ_PROD', 0n],
  ['w', 'CMDQ_CONS', 0n],
  ['w', 'CR0', 0x8n],
  ['r', 'CR0ACK', 0x8n],
  ['w', 'CMDQ_PROD', 0x2n],
  ['r', 'CMDQ_CONS', 0x2n],
  ['w', 'CMDQ_PROD', 0x4n],
  ['r', 'CMDQ_CONS', 0x4n],
  ['w', 'EVENTQ_BASE', null],
  ['w', 'EVENTQ_PROD', 0n],
  ['w', 'EVENTQ_CONS', 0n],
  ['w', 'CR0', 0xcn],
  ['r', 'CR0ACK', 0xcn],
  ['w', 'IRQ_CTRL', 0n],
  ['r', 'IRQ_CTRLACK', 0n],
  ['w', 'GERROR_IRQ_CFG0', 0n],
  ['w', 'EVENTQ_IRQ_CFG0', 0n],
  ['w', 'IRQ_CTRL', 0x5n],
  ['r', 'IRQ_CTRLACK', 0x5n],
  ['w', 'CR0', 0xdn],
  ['r', 'CR0ACK', 0xdn],
];

function probeOn(features: object) {
  const m = new Machine({ smmu: { features } });
  const log: Array<[string, string, bigint, number]> = [];
  m.bus.observe((e) => {
    if (e.device === m.smmu) log.push([e.dir, regNameAt(e.offset!), e.value, e.size]);
  });
  const drv = new ArmSmmuV3(m.bus, {
    base: SMMU_BASE,
    pages: { base: 0x4400_0000, limit: 0x7800_0000 },
  });
  drv.probe();
  return { m, drv, log };
}

describe('probe, compared with Linux on QEMU', () => {
  it('writes and reads the same registers in the same order with the same values', () => {
    const { log } = probeOn(QEMU);
    expect(log.map(([d, r]) => [d, r])).toEqual(LINUX_PROBE.map(([d, r]) => [d, r]));
    LINUX_PROBE.forEach(([, reg, v], i) => {
      if (v !== null) expect(log[i]![2], `${i}: ${reg}`).toBe(v);
    });
  });

  it('uses 64-bit writes for the bases and IRQ_CFG0s, with the RA/WA hint and Linux queue sizes', () => {
    const { log } = probeOn(QEMU);
    const w64 = log.filter(([d, , , size]) => d === 'w' && size === 8).map(([, r]) => r);
    expect(w64).toEqual([
      'STRTAB_BASE',
      'CMDQ_BASE',
      'EVENTQ_BASE',
      'GERROR_IRQ_CFG0',
      'EVENTQ_IRQ_CFG0',
    ]);
    const v = (reg: string) => log.find(([d, r]) => d === 'w' && r === reg)![2];
    expect(v('STRTAB_BASE') >> 62n).toBe(1n); // RA
    expect(v('CMDQ_BASE') & 0x1fn).toBe(16n); // 2^16 commands = 1 MiB (Linux caps each queue at 1 MiB)
    expect(v('CMDQ_BASE') >> 62n).toBe(1n);
    expect(v('EVENTQ_BASE') & 0x1fn).toBe(15n); // 2^15 records = 1 MiB
  });

  it('issues CFGI_ALL + SYNC and TLBI_NSNH_ALL + SYNC with the captured command words', () => {
    const { m, drv } = probeOn(QEMU);
    const q = drv.cmdq.base;
    const words = [0, 1, 2, 3].map((i) => [m.mem.read64(q + 16 * i), m.mem.read64(q + 16 * i + 8)]);
    expect(words).toEqual([
      [0x4n, 0x1fn], // CFGI_STE_RANGE sid 0 range 31 = CFGI_ALL
      [0x0fc02046n, 0n], // CMD_SYNC: CS=SEV, MSH=ISH, MSIATTR=0xF
      [0x30n, 0n], // TLBI_NSNH_ALL
      [0x0fc02046n, 0n],
    ]);
    expect(m.smmu.smmuEnabled()).toBe(true);
    expect(m.smmu.cmdq.stats.consumed).toBe(4);
  });

  it('with HYP adds TLBI_EL2_ALL; with MSIs polls the CMD_SYNC entry (CS=IRQ at its own address) instead of CONS', () => {
    const { m, drv, log } = probeOn({ ...QEMU, hyp: true, msi: true });
    const q = drv.cmdq.base;
    expect(m.mem.read64(q + 32)).toBe(0x20n); // TLBI_EL2_ALL
    // the MSI wrote MSIData (0) over the CMD_SYNC's first word; CS=IRQ (1 << 12) and MSIAddress = the entry
    expect(m.mem.read32(q + 16)).toBe(0);
    expect(m.mem.read32(q + 20)).toBe(0); // MSIData = 0
    expect(m.mem.read64(q + 24)).toBe(BigInt(q + 16));
    expect(log.filter(([d, r]) => d === 'r' && r === 'CMDQ_CONS')).toEqual([]);
  });

  it('uses a linear stream table when the SIDs fit one level-2 span, and leaves bypass when asked', () => {
    const { drv } = probeOn({ ...QEMU, sidSize: 6 });
    expect(drv.strtab.fmt).toBe(0);
    expect(drv.strtab.log2size).toBe(6);
    const m = new Machine({ smmu: { features: QEMU } });
    const bypass = new ArmSmmuV3(m.bus, {
      base: SMMU_BASE,
      pages: { base: 0x4400_0000, limit: 0x7800_0000 },
      bypass: true,
    });
    bypass.probe();
    expect(m.smmu.smmuEnabled()).toBe(false);
    expect(m.smmu.gbpa.abort).toBe(false);
  });

  it('sets GBPA.ABORT before resetting an SMMU that was left enabled', () => {
    const m = new Machine({ smmu: { features: QEMU } });
    m.bus.write32('host', SMMU_BASE + 0x20, 1); // SMMUEN left on by firmware
    const drv = new ArmSmmuV3(m.bus, {
      base: SMMU_BASE,
      pages: { base: 0x4400_0000, limit: 0x7800_0000 },
    });
    drv.probe();
    expect(m.smmu.gbpa.abort).toBe(true);
    expect(m.smmu.smmuEnabled()).toBe(true);
  });

  it('times out with a clear error when the SMMU never completes a CMD_SYNC', () => {
    const m = new Machine({ smmu: { features: QEMU } });
    const drv = new ArmSmmuV3(m.bus, {
      base: SMMU_BASE,
      pages: { base: 0x4400_0000, limit: 0x7800_0000 },
    });
    drv.probe();
    m.bus.write32('host', SMMU_BASE + 0x20, 0x5); // the host itself turns CMDQEN off: nothing is consumed
    drv.cmdq.pollLimit = 50;
    expect(() => drv.issue([['TLBI_NSNH_ALL']])).toThrow(
      /CMD_SYNC timeout: CONS did not pass the CMD_SYNC/,
    );
  });

  it('recovers from an illegal command as Linux does: the bad command becomes a CMD_SYNC and GERRORN acks', () => {
    const { m, drv } = probeOn(QEMU);
    drv.issue([['TLBI_EL2_ALL']]); // ILLEGAL with IDR0.HYP=0
    expect(drv.cmdq.stats.errorsRecovered).toBe(1);
    expect(m.smmu.gerror.activeMask).toBe(0);
    expect(drv.cmdq.idle()).toBe(true);
    const bad = drv.cmdq.base + 4 * 16;
    expect(m.mem.read32(bad) & 0xff).toBe(0x46); // replaced by a CMD_SYNC
  });
});
