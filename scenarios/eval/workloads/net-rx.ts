/**
 * net-rx: a NIC's receive ring in strict mode. `ring` buffers of `size` bytes (each rounded up
 * to whole pages) are recycled in order; for each of `packets` packets the driver dma_maps the
 * next buffer (from-device), the NIC writes the packet (a DMA write), the driver dma_unmaps it
 * (strict: the TLBIs and a CMD_SYNC before the unmap returns) and only then does the host CPU
 * read the packet. The CPU touches a buffer first after the device wrote it, never before
 * (under a shared stage-2 an untouched page is not mapped yet). A write that faults is a lost
 * packet: counted (dmaFaults), and the ring goes on, as a NIC driver's does.
 */
import { z } from 'zod';
import { defineWorkload } from './types.ts';
import { intParam } from './param.ts';

const PAGE = 4096;

export const netRxWorkload = defineWorkload({
  name: 'net-rx',
  description:
    'a NIC RX ring: per packet dma_map (from-device), device write, strict dma_unmap, CPU read',
  schema: z
    .object({
      ring: intParam(64, 1, 4096),
      size: intParam(2048, 1, 1 << 20),
      packets: intParam(512, 1, 1 << 20),
    })
    .strict(),
  devices: () => 1,
  setup(bed) {
    bed.up();
    bed.attach(bed.sids[0]!, 'dma');
  },
  run(bed, p) {
    const sid = bed.sids[0]!;
    const bytes = Math.ceil(p.size / PAGE) * PAGE;
    const ring: number[] = [];
    for (let i = 0; i < p.ring; i++) ring.push(bed.alloc(bytes));
    for (let k = 0; k < p.packets; k++) {
      const buf = ring[k % p.ring]!;
      const iova = bed.map(sid, buf, p.size, 'from-device');
      const out = bed.dma(sid, iova, p.size, true);
      bed.unmap(sid, iova, p.size);
      // the driver reads a packet that arrived, and recycles the buffer of one that did not
      if (out.ok) bed.cpuRead(buf, p.size);
    }
    bed.check('packets');
  },
});
