/**
 * storage: large, long-lived scatter-gather mappings, as a block device's: `segments`
 * segments of `segSize` bytes are mapped once (one dma_map each), `ios` DMA reads and writes
 * of `ioSize` bytes land at PRNG-chosen (seeded) segments and offsets, then every segment is
 * unmapped. The host CPU fills a buffer before the device reads it (a block write) and reads it
 * after the device wrote it (a block read); a DMA that faults is a failed I/O, counted
 * (dmaFaults), and the workload goes on.
 */
import { z } from 'zod';
import { defineWorkload } from './types.ts';
import { intParam } from './param.ts';
import { Prng } from './prng.ts';

const PAGE = 4096;

export const storageWorkload = defineWorkload({
  name: 'storage',
  description:
    'long-lived scatter-gather: N segments mapped once, DMA reads/writes spread over them, then unmapped',
  schema: z
    .object({
      segments: intParam(32, 1, 1024),
      segSize: intParam(65536, PAGE, 1 << 22),
      ios: intParam(256, 0, 1 << 20),
      ioSize: intParam(4096, 1, 1 << 20),
      seed: intParam(1, 0, 2 ** 31),
    })
    .strict()
    .refine((p) => p.ioSize <= p.segSize, {
      message: 'ioSize must not exceed segSize',
      path: ['ioSize'],
    }),
  devices: () => 1,
  setup(bed) {
    bed.up();
    bed.attach(bed.sids[0]!, 'dma');
  },
  run(bed, p) {
    const sid = bed.sids[0]!;
    const segs: Array<{ pa: number; iova: number }> = [];
    for (let i = 0; i < p.segments; i++) {
      const pa = bed.alloc(p.segSize);
      segs.push({ pa, iova: bed.map(sid, pa, p.segSize, 'bidirectional') });
    }
    bed.check('map');
    const rng = new Prng(p.seed);
    const fill = new Uint8Array(p.ioSize).fill(0x5a);
    for (let i = 0; i < p.ios; i++) {
      const s = segs[rng.below(segs.length)]!;
      const off = rng.below(Math.floor((p.segSize - p.ioSize) / 512) + 1) * 512;
      const write = (rng.next() & 1) === 1;
      if (!write) bed.cpuWrite(s.pa + off, fill.subarray(0, p.ioSize));
      const out = bed.dma(sid, s.iova + off, p.ioSize, write);
      if (write && out.ok) bed.cpuRead(s.pa + off, p.ioSize);
    }
    bed.check('io');
    for (const s of segs) bed.unmap(sid, s.iova, p.segSize);
    bed.check('unmap');
  },
});
