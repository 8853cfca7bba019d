import { describe, expect, it } from 'vitest';
import { inspectCaches } from '../../../hw/smmu/inspect.ts';
import { CFG } from '../../../hw/smmu/ste.ts';
import { DMA_BUF, STE_BYPASS, SYNC_NONE, cfgiSte, rig, steAddr, writeSte } from '../helpers.ts';

describe('hw/smmu/inspect: the configuration caches, read without side effects', () => {
  it('shows the STE a DMA cached, and counts no hit for looking', () => {
    const { m } = rig();
    const view = inspectCaches(m.smmu);
    expect(view.caching).toBe(true);
    expect(view.ste(5)).toBeUndefined();
    writeSte(m, steAddr(5), [STE_BYPASS]);
    expect(m.devices.get('dev')!.read(DMA_BUF, 4).ok).toBe(true);
    const hits = m.smmu.strtab.hits;
    const misses = m.smmu.strtab.misses;
    const e = view.ste(5);
    expect(e?.addr).toBe(steAddr(5));
    expect(e?.valid).toBe(true);
    expect(e?.config).toBe(CFG.BYPASS);
    expect([m.smmu.strtab.hits, m.smmu.strtab.misses]).toEqual([hits, misses]);
    expect(view.ste(6)).toBeUndefined(); // never fills on a miss
    expect(m.smmu.strtab.cachedStes).toBe(1);
  });

  it('a cached STE stays visible after the STE in memory changes, until CFGI_STE', () => {
    const { m, q } = rig();
    const view = inspectCaches(m.smmu);
    writeSte(m, steAddr(5), [STE_BYPASS]);
    m.devices.get('dev')!.read(DMA_BUF, 4);
    writeSte(m, steAddr(5), [0n]);
    expect(view.ste(5)?.valid).toBe(true);
    q.submit(cfgiSte(5, 1), SYNC_NONE);
    expect(view.ste(5)).toBeUndefined();
  });

  it('a linear stream table has no L1STDs; no CDs are cached for a bypass STE', () => {
    const { m } = rig();
    const view = inspectCaches(m.smmu);
    writeSte(m, steAddr(5), [STE_BYPASS]);
    m.devices.get('dev')!.read(DMA_BUF, 4);
    expect(view.l1std(0)).toBeUndefined();
    expect(view.cds(5)).toBeUndefined();
    expect(view.l1cds(5)).toBeUndefined();
  });
});
