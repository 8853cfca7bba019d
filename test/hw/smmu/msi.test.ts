import { describe, expect, it } from 'vitest';
import { Machine } from '../../../hw/machine.ts';
import type { SmmuWrite } from '../../../hw/smmu/msi.ts';
import {
  CMDQ_PA,
  DMA_BUF,
  EVENTQ_IRQEN,
  EVTQ_PA,
  G,
  GERROR_IRQEN,
  MSI_PA,
  NO_RAM,
  R,
  SMMU,
  Sw,
  initCmdq,
  rig,
  sync,
} from '../helpers.ts';

describe('CMD_SYNC MSI (reference §4.2, §4.5)', () => {
  it('writes exactly 32 bits of MSIData at MSIAddress, leaving neighbouring bytes alone', () => {
    const m = new Machine();
    m.mem.write64(MSI_PA, 0x1111_1111_1111_1111n);
    m.mem.write32(MSI_PA + 8, 0x2222_2222);
    const q = initCmdq(new Sw(m), CMDQ_PA, 4);
    q.submit(sync(1, MSI_PA + 4, 0xa5a5_5a5a));
    expect(m.mem.read32(MSI_PA)).toBe(0x1111_1111);
    expect(m.mem.read32(MSI_PA + 4)).toBe(0xa5a5_5a5a);
    expect(m.mem.read32(MSI_PA + 8)).toBe(0x2222_2222);
  });

  it('MSIAddress bits [1:0] are not part of the address', () => {
    const m = new Machine();
    const q = initCmdq(new Sw(m), CMDQ_PA, 4);
    // DW1 = address | 0b11; the SMMU uses ADDR[55:2]
    q.submit([0x46n | (1n << 12n) | (0x77n << 32n), BigInt(MSI_PA + 0x10) | 3n]);
    expect(m.mem.read32(MSI_PA + 0x10)).toBe(0x77);
  });

  it('an MSI to an address with no RAM activates GERROR.MSI_CMDQ_ABT_ERR; consumption continues', () => {
    const m = new Machine();
    const sw = new Sw(m);
    const q = initCmdq(sw, CMDQ_PA, 4);
    expect(q.submit(sync(1, NO_RAM, 1), sync(1, MSI_PA, 2))).toBe(2);
    expect(sw.r32(R.GERROR)).toBe(G.MSI_CMDQ_ABT_ERR);
    expect(sw.r32(R.CMDQ_CONS) >>> 24).toBe(0);
    expect(m.mem.read32(MSI_PA)).toBe(2);
    expect(m.smmu.msis).toBe(1);
  });

  it('an MSI aimed at a device (the SMMU itself) is not a RAM write: it aborts', () => {
    const m = new Machine();
    const sw = new Sw(m);
    const q = initCmdq(sw, CMDQ_PA, 4);
    q.submit(sync(1, SMMU + R.GERRORN, 0xffffffff));
    expect(sw.r32(R.GERROR)).toBe(G.MSI_CMDQ_ABT_ERR);
    expect(sw.r32(R.GERRORN)).toBe(0);
  });

  it('CS=SIG_NONE and CS=SIG_SEV never write the MSI', () => {
    const m = new Machine();
    const q = initCmdq(new Sw(m), CMDQ_PA, 4);
    q.submit(sync(0, MSI_PA, 1), sync(2, MSI_PA + 4, 2));
    expect([m.mem.read32(MSI_PA), m.mem.read32(MSI_PA + 4)]).toEqual([0, 0]);
    expect(m.smmu.msis).toBe(0);
  });
});

describe('SMMU-originated writes are observable (isolation oracle hook)', () => {
  it('reports CMD_SYNC, GERROR and EVENTQ MSIs and event records with kind, address, length and source', () => {
    const { m, sw, q } = rig();
    const seen: SmmuWrite[] = [];
    const off = m.smmu.writer.observe((w) => seen.push(w));
    sw.w64(R.EVENTQ_IRQ_CFG0, BigInt(MSI_PA + 0x100));
    sw.w32(R.EVENTQ_IRQ_CFG1, 1);
    sw.w64(R.GERROR_IRQ_CFG0, BigInt(MSI_PA + 0x200));
    sw.w32(R.GERROR_IRQ_CFG1, 2);
    sw.irqCtrl(GERROR_IRQEN | EVENTQ_IRQEN);
    q.submit(sync(1, MSI_PA, 3));
    m.devices.get('dev')!.read(DMA_BUF, 4); // STE V=0: C_BAD_STE record + EVENTQ MSI
    q.submit([0xffn, 0n]); // illegal: GERROR MSI
    expect(seen).toEqual([
      { kind: 'msi', pa: MSI_PA, len: 4, source: 'CMD_SYNC' },
      { kind: 'event', pa: EVTQ_PA, len: 32 },
      { kind: 'msi', pa: MSI_PA + 0x100, len: 4, source: 'EVENTQ' },
      { kind: 'msi', pa: MSI_PA + 0x200, len: 4, source: 'GERROR' },
    ]);
    expect([
      m.mem.read32(MSI_PA),
      m.mem.read32(MSI_PA + 0x100),
      m.mem.read32(MSI_PA + 0x200),
    ]).toEqual([3, 1, 2]);
    off();
    q.submit(sync(1, MSI_PA, 4));
    expect(seen).toHaveLength(4);
  });

  it('a write that aborts is not reported', () => {
    const m = new Machine();
    const seen: SmmuWrite[] = [];
    m.smmu.writer.observe((w) => seen.push(w));
    const q = initCmdq(new Sw(m), CMDQ_PA, 4);
    q.submit(sync(1, NO_RAM, 1));
    expect(seen).toEqual([]);
  });
});
