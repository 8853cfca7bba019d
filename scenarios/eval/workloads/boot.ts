/**
 * boot: the host IOMMU comes up: the driver's probe and reset (under a trap-and-emulate
 * hypervisor every register access traps), then N devices attached to DMA domains, as
 * iommu_probe_device does for each device at boot. The probe is counted (the bed does not
 * probe for this workload).
 */
import { z } from 'zod';
import { defineWorkload } from './types.ts';
import { intParam } from './param.ts';

export const bootWorkload = defineWorkload({
  name: 'boot',
  description: 'probe and reset the SMMU, then attach N devices to DMA domains (default 4)',
  schema: z.object({ devices: intParam(4, 1, 64) }).strict(),
  devices: (p) => p.devices,
  setup() {},
  run(bed) {
    bed.probe();
    bed.check('probe');
    for (const sid of bed.sids) bed.attach(sid, 'dma');
    bed.check('attach');
  },
});
