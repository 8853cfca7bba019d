/**
 * smmu-rpm: runtime suspend/resume of the SMMU under each design.
 *
 * With no hypervisor each resume is the driver's device reset: CFGI_ALL, TLBI_EL2_ALL (the
 * SMMU has IDR0.HYP), TLBI_NSNH_ALL, each with a CMD_SYNC, and nothing else.
 *
 * Under pkvm the suspend (CR0 to 0) turns the whole SMMU off at once, which the hypervisor
 * accepts (the event queue is released once the hardware has stopped); disabling the event
 * queue alone stays refused (queue-guard, catalog a23). The host wrote its table unwatched
 * while it was released, so each resume's SMMUEN 0→1 reshadows every STE the host table holds
 * (rule rpm-reshadow; the v6 cover's warning), before the hardware is enabled.
 */
import { describe, expect, it } from 'vitest';
import { runCell } from '../../../scenarios/eval/matrix.ts';
import { designByName, parseDesigns } from '../../../scenarios/eval/designs.ts';
import { Bed } from '../../../scenarios/eval/bed.ts';
import { startCollect } from '../../../scenarios/eval/collect.ts';
import { smmuRpmWorkload } from '../../../scenarios/eval/workloads/smmu-rpm.ts';
import { RULES } from '../../../hyp/policy/policy.ts';
import type { LinuxIommu } from '../../../host/linux-iommu.ts';
import { SMMU_BASE } from '../../../hw/machine.ts';
import { CR0_BITS, OFF } from '../../../hw/smmu/regs.ts';

const [unwatched] = parseDesigns(
  'name: pkvm-rpm-stale\ndescription: pkvm that keeps its shadow STEs across a resume\nbase: pkvm\nweaken: [rpm-reshadow]\n',
  'rpm.yaml',
);

/** the STEs a 2-level host table holds: 2^split per L1 descriptor the driver made valid */
function hostStes(bed: Bed): number {
  const t = (bed.iommu as LinuxIommu).drv.strtab;
  return new Set(bed.sids.map((s) => s >> t.split)).size * 2 ** t.split;
}

describe('smmu-rpm', () => {
  it('none: each resume is the reset sequence and nothing of a hypervisor', () => {
    const c = runCell(designByName('none'), 'smmu-rpm', { devices: 3, cycles: 5 });
    expect(c.error).toBeUndefined();
    const m = c.metrics;
    expect(m.ops).toBe(10); // a suspend and a resume per cycle
    expect([m.cfgis, m.tlbis, m.cmdSyncs, m.hwCommands]).toEqual([5, 10, 15, 30]);
    expect([m.traps, m.reshadows, m.hypCommands]).toEqual([0, 0, 0]);
    expect([m.dmas, m.dmaFaults]).toEqual([15, 0]);
  });

  it('pkvm: every resume reshadows every STE of the host table; the shadow comes back the same', () => {
    expect(RULES['rpm-reshadow']).toMatch(/reshadows every host STE/);
    const p = { devices: 4, cycles: 3 };
    const bed = new Bed(designByName('pkvm'), { devices: p.devices });
    const iovas = smmuRpmWorkload.setup(bed, p);
    const before = bed.sids.map((s) => [...bed.hyp!.shadowSte(s)]);
    const col = startCollect(bed);
    smmuRpmWorkload.run(bed, p, iovas);
    const m = col.finish();
    // the devices' StreamIDs 8-11 share one L1 descriptor: 256 STEs per resume
    expect(hostStes(bed)).toBe(256);
    expect(m.reshadows).toBe(p.cycles * hostStes(bed));
    // the reshadows are installed while the hardware is off, so the hypervisor's own commands
    // are one CFGI_ALL + CMD_SYNC per resume (the reset's commands are the host's, forwarded)
    expect(m.hypCommands).toBe(p.cycles * 2);
    expect(bed.sids.map((s) => [...bed.hyp!.shadowSte(s)])).toEqual(before);
    expect([m.dmas, m.dmaFaults]).toEqual([p.devices * p.cycles, 0]);
    expect(bed.checks.every((c) => c.ok)).toBe(true);
    const cell = runCell(designByName('pkvm'), 'smmu-rpm', p);
    expect(cell.error).toBeUndefined();
    expect(cell.metrics.reshadows).toBe(m.reshadows);
  });

  it('pkvm: a STE the host changed while suspended takes effect at the resume; with rpm-reshadow weakened it does not', () => {
    for (const [d, follows] of [
      [designByName('pkvm'), true],
      [unwatched!, false],
    ] as const) {
      const bed = new Bed(d, { devices: 1 });
      const [iova] = smmuRpmWorkload.setup(bed, { devices: 1, cycles: 1 });
      const sid = bed.sids[0]!;
      expect(bed.dma(sid, iova!, 64, true).ok).toBe(true);
      bed.suspend();
      // the host blocks the device while the SMMU is off: its STE becomes abort, and no CFGI
      // can reach a disabled SMMU's command queue until the reset
      const drv = (bed.iommu as LinuxIommu).drv;
      const ste = new Uint8Array(64);
      ste[0] = 1; // V=1, Config=0 (abort)
      bed.machine.bus.writeBytes('host', drv.steAddr(sid), ste);
      bed.resume();
      const out = bed.dma(sid, iova!, 64, true);
      expect(out.ok, d.name).toBe(!follows);
      expect(bed.checks.every((c) => c.ok)).toBe(true);
    }
  });

  it('pkvm: disabling the event queue while the SMMU stays on is still refused (queue-guard)', () => {
    expect(RULES['queue-guard']).toMatch(/disabling them is refused/);
    const bed = new Bed(designByName('pkvm'), { devices: 1 });
    bed.up();
    const cr0 = bed.machine.bus.read32('host', SMMU_BASE + OFF.CR0ACK);
    const off = cr0 & ~CR0_BITS.EVENTQEN;
    expect(() => bed.machine.bus.write32('host', SMMU_BASE + OFF.CR0, off)).toThrow(
      /queue-guard.*EVENTQEN 1→0 is not supported/,
    );
  });
});
