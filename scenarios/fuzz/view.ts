/**
 * What an attacker knows of the Linux-like driver beside it (the host's, or a guest kernel's):
 * the queues and stream tables the driver set up, its DMA mappings, and for each attached
 * StreamID its domain's ASID, stage-1 table and the CD table its STE points at. Read without
 * side effects, in the layout's terms (PAs for the host, IPAs for a guest).
 */
import type { PhysicalMemory } from '../../hw/memory.ts';
import { get } from '../../hw/bits.ts';
import { STE } from '../../hw/smmu/ste.ts';
import type { HostLayout } from '../../host/malicious/grammar.ts';
import type { HostKernel } from '../steps/driver.ts';

const PAGE = 4096;
/** the CD table of an STE spans 256 bytes of the attacker's interest (4 CDs) */
const CD_SPAN = 256;

export type DriverView = Pick<HostLayout, 'structures' | 'mappings' | 'asids'>;

/**
 * The driver's structures and mappings (empty without a driver), and for `sids` (the
 * StreamIDs as the driver names them) what their domains use; `stePa` turns the driver's STE
 * address into the PA it is read at.
 */
export function driverView(
  k: HostKernel | undefined,
  sids: readonly number[],
  mem: PhysicalMemory,
  stePa: (addr: number) => number = (a) => a,
): DriverView {
  const structures: Array<{ what: string; base: number; size: number }> = [];
  const mappings: Array<{ sid: number; iova: number; pa: number; size: number }> = [];
  const asids: number[] = [];
  if (!k) return { structures, mappings, asids };
  const d = k.drv;
  structures.push({ what: 'cmdq', base: d.cmdq.base, size: 2 ** d.cmdq.log2size * 16 });
  structures.push({ what: 'evtq', base: d.evtq.base, size: 2 ** d.evtq.shift * 32 });
  structures.push({
    what: 'strtab-l1',
    base: d.strtab.base,
    size: Math.max(PAGE, d.strtab.l1.length * 8),
  });
  for (const l2 of d.strtab.l1)
    if (l2) structures.push({ what: 'strtab-l2', base: l2, size: 256 * 64 });
  for (const [, mp] of k.mappings) mappings.push({ ...mp });
  for (const sid of sids) {
    try {
      const dd = k.dma.domainOf(sid);
      asids.push(dd.domain.asid);
      const s1 = dd.domain.pgtable?.s1;
      if (s1) structures.push({ what: `pgtable-${sid}`, base: s1.ttbr, size: PAGE });
      // the CD table the STE points at
      const pa = stePa(d.steAddr(sid));
      const dw0 = [mem.read32(pa), mem.read32(pa + 4)];
      structures.push({ what: `cd-${sid}`, base: get(dw0, STE.S1ContextPtr) * 64, size: CD_SPAN });
    } catch {
      /* not attached */
    }
  }
  return { structures, mappings, asids };
}
