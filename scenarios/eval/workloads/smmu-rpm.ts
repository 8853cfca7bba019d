/**
 * smmu-rpm: runtime PM of the SMMU. `devices` endpoints are attached to DMA domains with one
 * buffer mapped each; then `cycles` times the SMMU is suspended (disabled) and resumed (the
 * device reset again, the STEs in memory kept), and every device DMAs after each resume to
 * show its translation came back (a DMA that faults is counted, not fatal).
 */
import { z } from 'zod';
import { defineWorkload } from './types.ts';
import { intParam } from './param.ts';

const PAGE = 4096;

export const smmuRpmWorkload = defineWorkload({
  name: 'smmu-rpm',
  description:
    'N devices attached, then suspend/resume cycles of the SMMU (runtime PM) with a DMA after each resume',
  schema: z.object({ devices: intParam(4, 1, 64), cycles: intParam(8, 1, 4096) }).strict(),
  devices: (p) => p.devices,
  setup(bed) {
    bed.up();
    const iovas: number[] = [];
    for (const sid of bed.sids) {
      bed.attach(sid, 'dma');
      // a buffer in use: the host has written it (under a shared stage-2 that maps it)
      const pa = bed.alloc(PAGE);
      bed.cpuWrite(pa, new Uint8Array(64));
      iovas.push(bed.iommu.map(sid, pa, PAGE, 'bidirectional'));
    }
    return iovas; // the mapping each device DMAs to after a resume
  },
  run(bed, p, iovas) {
    const sids = bed.sids;
    for (let c = 0; c < p.cycles; c++) {
      bed.suspend();
      bed.resume();
      for (let i = 0; i < sids.length; i++) {
        bed.dma(sids[i]!, iovas[i]!, 64, true); // a fault is counted (dmaFaults)
      }
      bed.check(`cycle ${c}`);
    }
  },
});
