/**
 * The matrix runner on real counts. Expected values come from what the driver and the
 * hypervisor must do: strict-mode dma_map writes only the host's page tables (no trap, no
 * command); each dma_unmap is one batch (a range TLBI_NH_VA, with IDR3.RIL, and a CMD_SYNC)
 * published by one CMDQ_PROD write, and under trap-and-emulate each host access to the SMMU's
 * registers is one trap; with no hypervisor nothing traps and nothing is the hypervisor's.
 */
import { describe, expect, it } from 'vitest';
import { runCell, runMatrix, WORKLOAD_NAMES } from '../../../scenarios/eval/matrix.ts';
import { designByName, BUILTIN_DESIGNS } from '../../../scenarios/eval/designs.ts';
import { Bed } from '../../../scenarios/eval/bed.ts';
import { startCollect } from '../../../scenarios/eval/collect.ts';
import { METRIC_NAMES, type MetricName } from '../../../scenarios/eval/metrics.ts';
import { SMMU_BASE } from '../../../hw/machine.ts';
import { OFF } from '../../../hw/smmu/regs.ts';
import type { LinuxIommu } from '../../../host/linux-iommu.ts';

const none = designByName('none');
const pkvm = designByName('pkvm');
const v6 = designByName('pkvm-v6');

/** Host accesses to the SMMU's registers, counted on the bus independently of the hypervisor. */
function watchHostMmio(bed: Bed) {
  const n = { prodWrites: 0, accesses: 0 };
  const off = bed.machine.bus.probes.access.subscribe((e) => {
    if (e.actor !== 'host' || e.addr < SMMU_BASE || e.addr >= SMMU_BASE + 0x20000) return;
    n.accesses++;
    if (e.dir === 'w' && e.addr === SMMU_BASE + OFF.CMDQ_PROD) n.prodWrites++;
  });
  return { n, off };
}

describe('runCell', () => {
  it('is deterministic: the same cell twice gives the same result', () => {
    for (const wl of ['net-rx', 'storage'] as const) {
      const p: Record<string, number> =
        wl === 'net-rx' ? { packets: 40, ring: 8 } : { ios: 40, segments: 4 };
      expect(runCell(pkvm, wl, p)).toEqual(runCell(pkvm, wl, p));
    }
    expect(runCell(pkvm, 'vm-lifecycle', { cycles: 1 })).toEqual(
      runCell(pkvm, 'vm-lifecycle', { cycles: 1 }),
    );
  });

  it('none: no traps, no hypervisor commands, no reshadows, on every workload', () => {
    for (const wl of WORKLOAD_NAMES) {
      const c = runCell(none, wl);
      expect(c.error).toBeUndefined();
      const m = c.metrics;
      for (const k of [
        'traps',
        'mmioTraps',
        'memoryTraps',
        'hostCommands',
        'forwarded',
        'hypCommands',
        'reshadows',
        'ownershipChanges',
        'poolPages',
      ] as MetricName[])
        expect(m[k], `${wl} ${k}`).toBe(0);
    }
    expect(runCell(none, 'vm-lifecycle').notApplicable).toMatch(/hypervisor/);
  });

  it('pkvm: dma_map makes no trap and no command; dma_unmap traps once per host register access, one PROD write, and forwards TLBI + CMD_SYNC', () => {
    const bed = new Bed(pkvm, { devices: 1 });
    bed.up();
    const sid = bed.sids[0]!;
    bed.attach(sid, 'dma');
    const buf = bed.alloc(4096);
    const w = watchHostMmio(bed);
    let col = startCollect(bed);
    const iova = bed.map(sid, buf, 4096, 'from-device');
    let m = col.finish();
    expect(w.n.accesses).toBe(0);
    expect([m.traps, m.hostCommands, m.hwCommands, m.hypCommands]).toEqual([0, 0, 0, 0]);
    expect(m.maps).toBe(1);

    const polls = (bed.iommu as LinuxIommu).drv.cmdq.stats.consPolls;
    const prodTraps = bed.hyp!.cmdq.stats.prodWrites;
    col = startCollect(bed);
    bed.unmap(sid, iova, 4096);
    m = col.finish();
    w.off();
    expect(w.n.prodWrites).toBe(1);
    expect(bed.hyp!.cmdq.stats.prodWrites - prodTraps).toBe(w.n.prodWrites);
    // every other register access was a CMDQ_CONS poll for the CMD_SYNC
    const consPolls = (bed.iommu as LinuxIommu).drv.cmdq.stats.consPolls - polls;
    expect(w.n.accesses).toBe(w.n.prodWrites + consPolls);
    expect(m.traps).toBe(w.n.accesses);
    expect(m.mmioTraps).toBe(m.traps);
    expect(m.hostCommands).toBe(2);
    expect(m.forwarded).toBe(2);
    expect([m.hwCommands, m.tlbis, m.cmdSyncs, m.hypCommands]).toEqual([2, 1, 1, 0]);
  });

  it('without IDR3.RIL an unmap of two pages is two TLBI_NH_VA (one per page), with it one range TLBI', () => {
    for (const ril of [true, false]) {
      const bed = new Bed(pkvm, {
        devices: 1,
        smmu: { features: ril ? {} : { ril, archMinor: 1 } },
      });
      bed.up();
      const sid = bed.sids[0]!;
      bed.attach(sid, 'dma');
      const iova = bed.map(sid, bed.alloc(8192), 8192);
      const col = startCollect(bed);
      bed.unmap(sid, iova, 8192);
      const m = col.finish();
      expect(m.tlbis, `ril=${ril}`).toBe(ril ? 1 : 2);
      expect(m.cmdSyncs).toBe(1);
    }
  });

  it('net-rx: maps = unmaps = packets, one TLBI batch and one CMD_SYNC per unmap', () => {
    for (const d of [none, pkvm]) {
      const c = runCell(d, 'net-rx', { packets: 100, ring: 16 });
      const m = c.metrics;
      expect(c.error).toBeUndefined();
      expect([m.maps, m.unmaps, m.dmas, m.dmaFaults]).toEqual([100, 100, 100, 0]);
      expect(m.ops).toBe(200);
      // a 2048-byte buffer is one 4 KiB page: one range TLBI (RIL) + one CMD_SYNC per unmap
      expect(m.tlbis).toBe(100);
      expect(m.cmdSyncs).toBe(100);
      expect(m.hwCommands).toBe(200);
      expect(m.cfgis).toBe(0);
      if (d === pkvm) {
        expect(m.forwarded).toBe(200);
        expect(m.hypCommands).toBe(0);
        expect(m.reshadows).toBe(0);
      }
      // every packet's first touch by the device misses the IOTLB (the unmap invalidated it)
      expect(m.iotlbMisses).toBe(100);
    }
    // an 8 KiB buffer is still one range TLBI with RIL, and the device writes both pages
    const big = runCell(pkvm, 'net-rx', { packets: 10, ring: 4, size: 8192 }).metrics;
    expect(big.tlbis).toBe(10);
    expect(big.iotlbMisses).toBe(20);
  });

  it('storage: one map per segment, the I/Os spread over them, one unmap each', () => {
    const c = runCell(pkvm, 'storage', { segments: 8, ios: 64 });
    const m = c.metrics;
    expect([m.maps, m.unmaps, m.dmas, m.dmaFaults]).toEqual([8, 8, 64, 0]);
    expect(m.cmdSyncs).toBe(8);
    expect(m.iotlbHits + m.iotlbMisses).toBeGreaterThanOrEqual(64);
  });

  it('boot counts its probe; the bed boot of other workloads is not counted', () => {
    const b = runCell(pkvm, 'boot', { devices: 2 }).metrics;
    expect(b.ops).toBe(3); // the probe and two attaches
    expect(b.traps).toBeGreaterThan(0);
    // each attach: CFGI_STE through the hypervisor (a reshadow each); the probe's CFGI_ALL forwarded
    expect(b.reshadows).toBeGreaterThanOrEqual(2);
    const s = runCell(pkvm, 'storage', { segments: 1, ios: 0 }).metrics;
    expect(s.cfgis).toBe(0); // no probe, no attach in the counted part
    expect(s.ops).toBe(2);
  });

  it('vm-lifecycle under pkvm: each cycle donates the guest memory and gets it back', () => {
    const c = runCell(pkvm, 'vm-lifecycle', { cycles: 2, guestMiB: 8 });
    expect(c.error).toBeUndefined();
    const m = c.metrics;
    expect([m.maps, m.unmaps, m.dmas, m.dmaFaults]).toEqual([2, 2, 2, 0]);
    // at least the donation and the return of 8 MiB (2048 pages) each cycle
    expect(m.ownershipChanges).toBeGreaterThanOrEqual(2 * 2 * 2048);
    expect(c.isolation).toEqual({ ok: true, breaches: 0 });
  });

  it('pkvm-v6 and pkvm give identical host-side counts (the gaps matter only to attacks)', () => {
    const HOST_SIDE = METRIC_NAMES.filter((k) => k !== 'ownershipChanges');
    for (const wl of WORKLOAD_NAMES) {
      const a = runCell(pkvm, wl).metrics;
      const b = runCell(v6, wl).metrics;
      for (const k of HOST_SIDE) expect(b[k], `${wl} ${k}`).toBe(a[k]);
    }
    // at boot the hardened design pins the event queue (queue-pin) where v6 only shares it
    const bed = new Bed(pkvm, { devices: 1 });
    bed.up();
    const evtqPages = (2 ** (bed.iommu as LinuxIommu).drv.ft.evtqShift * 32) / 4096;
    const a = runCell(pkvm, 'boot').metrics.ownershipChanges;
    const b = runCell(v6, 'boot').metrics.ownershipChanges;
    expect(a - b).toBe(evtqPages);
  });

  it('records what stopped a workload as the cell error, with the counts up to it', () => {
    // 1024 segments of 4 MiB do not fit the bed's buffer memory: the maps before that count
    const c = runCell(pkvm, 'storage', { segments: 1024, segSize: 1 << 22, ios: 0 });
    expect(c.error).toMatch(/^Error: bed: out of buffer memory .* for 4194304 bytes$/);
    expect(c.metrics.maps).toBeGreaterThan(0);
    expect(c.metrics.maps).toBeLessThan(1024);
    expect(c.metrics.unmaps).toBe(0);
  });

  it('the isolation oracle finds no breach in any pkvm cell, after every phase', () => {
    for (const wl of WORKLOAD_NAMES) {
      const c = runCell(pkvm, wl);
      expect(c.error, wl).toBeUndefined();
      expect(c.isolation, wl).toEqual({ ok: true, breaches: 0 });
    }
  });

  it("pkvm-v6's breaches are its ATSCHK gap: Translated transactions unchecked", () => {
    const bed = new Bed(v6, { devices: 1 });
    bed.up();
    bed.attach(bed.sids[0]!, 'dma');
    const r = bed.oracle.check();
    expect(r.ok).toBe(false);
    expect(new Set(r.breaches.map((b) => b.path))).toEqual(new Set(['ats-translated']));
  });
});

describe('bad input', () => {
  it('an unknown workload, a bad or unknown parameter: errors naming the workload and key', () => {
    expect(() => runCell(pkvm, 'net-tx')).toThrow(
      /unknown workload "net-tx" \(known: boot, net-rx, storage, vm-lifecycle, smmu-rpm\)/,
    );
    expect(() => runCell(pkvm, 'net-rx', { ring: 0 })).toThrow(
      /workload net-rx: parameter "ring": .*>=1/,
    );
    expect(() => runCell(pkvm, 'net-rx', { ring: 1.5 })).toThrow(/parameter "ring"/);
    expect(() => runCell(pkvm, 'net-rx', { rings: 3 })).toThrow(
      /workload net-rx: unknown parameter\(s\) "rings"/,
    );
    expect(() => runCell(pkvm, 'storage', { segSize: 4096, ioSize: 8192 })).toThrow(
      /workload storage: parameter "ioSize": ioSize must not exceed segSize/,
    );
  });

  it("runMatrix checks every workload's parameters before running any cell", () => {
    let ran = 0;
    expect(() =>
      runMatrix([pkvm], ['boot', 'net-rx'], { 'net-rx': { packets: -1 } }, () => ran++),
    ).toThrow(/workload net-rx: parameter "packets"/);
    expect(ran).toBe(0);
    expect(() => runMatrix([pkvm], ['boot'], { storage: { ios: 1 } })).toThrow(
      /parameters for workload "storage", which is not in the matrix/,
    );
  });
});

describe('runMatrix', () => {
  it('runs designs × workloads in a stable order with progress, defaults filled in', () => {
    const seen: string[] = [];
    const ds = BUILTIN_DESIGNS.filter((d) => ['none', 'pkvm', 'pkvm-pv'].includes(d.name));
    const out = runMatrix(ds, ['boot', 'storage'], { storage: { ios: 8 } }, (c, i, n) =>
      seen.push(`${i}/${n} ${c.design}:${c.workload}`),
    );
    expect(out.map((c) => `${c.design}:${c.workload}`)).toEqual([
      'none:boot',
      'none:storage',
      'pkvm:boot',
      'pkvm:storage',
      'pkvm-pv:boot',
      'pkvm-pv:storage',
    ]);
    expect(seen[5]).toBe('6/6 pkvm-pv:storage');
    expect(out[1]!.params).toEqual({ segments: 32, segSize: 65536, ios: 8, ioSize: 4096, seed: 1 });
  });
});
