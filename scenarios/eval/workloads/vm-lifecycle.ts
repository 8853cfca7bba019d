/**
 * vm-lifecycle: `cycles` times, a protected guest is born and dies. The host donates the
 * guest's memory and the hypervisor builds it with one assigned device; the guest kernel
 * probes its vSMMU, attaches the device (its vSID) to a DMA domain, maps a buffer, the device
 * DMAs into it, the guest unmaps it; then the guest is torn down (isolation checked after
 * every teardown phase) and its memory returns to the host. Needs a hypervisor.
 */
import { z } from 'zod';
import { defineWorkload } from './types.ts';
import { intParam } from './param.ts';

const PAGE = 4096;
const VSID = 0;

export const vmLifecycleWorkload = defineWorkload({
  name: 'vm-lifecycle',
  description:
    'create a guest (donated memory, one assigned device), its kernel probes, attaches, maps and DMAs, then teardown',
  schema: z.object({ cycles: intParam(2, 1, 256), guestMiB: intParam(8, 4, 32) }).strict(),
  devices: () => 2,
  needsHypervisor: 'guests are built by the hypervisor: a bare machine has none',
  setup(bed, p) {
    bed.up();
    // the host keeps device 0 for itself; device 1 goes to the guest
    bed.attach(bed.sids[0]!, 'dma');
    const size = p.guestMiB << 20;
    return { memory: { base: bed.alloc(size, size), size } };
  },
  run(bed, p, s) {
    const psid = bed.sids[1]!;
    for (let c = 0; c < p.cycles; c++) {
      const name = `vm${c}`;
      const g = bed.createGuest(name, s.memory, [{ vsid: VSID, psid }]);
      bed.check(`${name}: created`);
      g.kernel.dma.attachDefault(VSID);
      bed.counts.ops++;
      const buf = g.ram.base + PAGE; // IPA, in the lower half the guest kernel leaves for buffers
      const iova = g.kernel.dma.map(VSID, buf, PAGE, 'bidirectional');
      bed.counts.maps++;
      bed.counts.ops++;
      const out = bed.dma(psid, iova, 256, true);
      if (!out.ok)
        throw new Error(`vm-lifecycle ${name}: the guest's device DMA faulted: ${out.fault}`);
      bed.check(`${name}: dma`);
      g.kernel.dma.unmap(VSID, iova, PAGE);
      bed.counts.unmaps++;
      bed.counts.ops++;
      bed.destroyGuest(name);
      bed.check(`${name}: destroyed`);
    }
  },
});
