import { describe, expect, it } from 'vitest';
import {
  ptrMask,
  qCount,
  qEmpty,
  qFull,
  qInc,
  qIndex,
  qSpace,
  qWrap,
} from '../../../hw/smmu/queue.ts';
import { Machine } from '../../../hw/machine.ts';
import {
  CMDQ_PA,
  MSI_PA,
  R,
  RAM,
  Sw,
  SwCmdq,
  initCmdq,
  sync,
  SYNC_NONE,
  cmd,
  OPC,
  CERROR_ILL,
} from '../helpers.ts';

describe('queue index arithmetic (reference §1.7)', () => {
  it('QS=2: index is bits [1:0], wrap flag is bit 2', () => {
    expect(ptrMask(2)).toBe(0b111);
    expect(qIndex(0b110, 2)).toBe(2);
    expect(qWrap(0b110, 2)).toBe(1);
    expect(qWrap(0b010, 2)).toBe(0);
    expect(ptrMask(19)).toBe(0xfffff);
    expect(ptrMask(0)).toBe(1);
  });

  it('empty when index and wrap are equal; full when indices equal and wraps differ', () => {
    expect(qEmpty(0b101, 0b101, 2)).toBe(true);
    expect(qFull(0b101, 0b101, 2)).toBe(false);
    expect(qFull(0b101, 0b001, 2)).toBe(true);
    expect(qFull(0b001, 0b101, 2)).toBe(true);
    expect(qEmpty(0b001, 0b101, 2)).toBe(false);
    expect(qFull(0b010, 0b001, 2)).toBe(false);
    // bits above the wrap flag do not take part
    expect(qEmpty(0x8000_0003, 0x3, 2)).toBe(true);
  });

  it('an increment past the end wraps the index to 0 and toggles the wrap flag, several times over', () => {
    const seq: number[] = [];
    let p = 0;
    for (let i = 0; i < 12; i++) {
      p = qInc(p, 2);
      seq.push(p);
    }
    expect(seq).toEqual([1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4]);
    expect(qInc(0xfffff, 19)).toBe(0);
    expect(qInc(0x7ffff, 19)).toBe(0x80000);
  });

  it('count and space', () => {
    expect(qCount(0, 0, 2)).toBe(0);
    expect(qCount(3, 0, 2)).toBe(3);
    expect(qCount(4, 0, 2)).toBe(4); // full
    expect(qCount(1, 6, 2)).toBe(3); // prod wrapped past cons' wrap
    expect(qCount(0, 4, 2)).toBe(4);
    expect(qSpace(1, 6, 2)).toBe(1);
    expect(qSpace(4, 0, 2)).toBe(0);
    expect(qSpace(5, 5, 2)).toBe(4);
  });
});

describe('command queue wrap through the device', () => {
  it('a 4-entry queue (LOG2SIZE=2) wraps several times; each command is read from its slot', () => {
    const m = new Machine();
    const sw = new Sw(m);
    const q = initCmdq(sw, CMDQ_PA, 2);
    // each CMD_SYNC signals by MSI with a unique value to a unique address
    const consSeen: number[] = [];
    let n = 0;
    for (let batch = 0; batch < 5; batch++) {
      const cmds = [0, 1, 2].map(() => {
        n++;
        return sync(1, MSI_PA + 4 * n, 0x1000 + n);
      });
      consSeen.push(q.submit(...cmds));
    }
    // PROD/CONS after each batch of 3 in a 3-bit pointer space: 3, 6, 1, 4, 7
    expect(consSeen).toEqual([0b011, 0b110, 0b001, 0b100, 0b111]);
    for (let i = 1; i <= 15; i++) expect(m.mem.read32(MSI_PA + 4 * i)).toBe(0x1000 + i);
    expect(sw.r32(R.GERROR)).toBe(0);
  });

  it('a batch that fills the queue exactly (PROD index = CONS index, wrap differs) consumes all entries', () => {
    const m = new Machine();
    const sw = new Sw(m);
    const q = initCmdq(sw, CMDQ_PA, 2);
    q.put(
      sync(1, MSI_PA, 1),
      sync(1, MSI_PA + 4, 2),
      sync(1, MSI_PA + 8, 3),
      sync(1, MSI_PA + 12, 4),
    );
    expect(q.prod).toBe(0b100);
    expect(q.publish()).toBe(0b100);
    expect([0, 4, 8, 12].map((o) => m.mem.read32(MSI_PA + o))).toEqual([1, 2, 3, 4]);
  });

  it('CONS.RD has the wrap flag at bit QS (LOG2SIZE=3: bit 3)', () => {
    const m = new Machine();
    const sw = new Sw(m);
    const q = initCmdq(sw, CMDQ_PA, 3);
    for (let i = 0; i < 7; i++) q.put(SYNC_NONE);
    expect(q.publish()).toBe(7);
    q.put(SYNC_NONE, SYNC_NONE);
    expect(q.publish()).toBe(0b1001);
  });

  it('commands published while CMDQEN=0 are consumed once CMDQEN is set', () => {
    const m = new Machine();
    const sw = new Sw(m);
    sw.w64(R.CMDQ_BASE, BigInt(CMDQ_PA) | 2n);
    const q = new SwCmdq(sw, CMDQ_PA, 2);
    expect(q.submit(sync(1, MSI_PA, 1), sync(1, MSI_PA + 4, 2))).toBe(0);
    expect(m.mem.read32(MSI_PA)).toBe(0);
    expect(sw.cr0(8)).toBe(8);
    expect(sw.r32(R.CMDQ_CONS)).toBe(2);
    expect([m.mem.read32(MSI_PA), m.mem.read32(MSI_PA + 4)]).toEqual([1, 2]);
  });

  it('LOG2SIZE is capped at IDR1.CMDQS', () => {
    const m = new Machine({ smmu: { features: { cmdqs: 2 } } });
    const sw = new Sw(m);
    expect((sw.r32(R.IDR1) >>> 21) & 0x1f).toBe(2);
    // program a 16-entry queue; the SMMU uses only 4 entries
    sw.w64(R.CMDQ_BASE, BigInt(CMDQ_PA) | 4n);
    sw.w32(R.CMDQ_PROD, 0);
    sw.w32(R.CMDQ_CONS, 0);
    sw.cr0(8);
    const small = new SwCmdq(sw, CMDQ_PA, 2);
    // slot 4 of a 16-entry queue holds an illegal command; a 4-entry queue never reads it
    m.mem.write64(CMDQ_PA + 4 * 16, 0xffn);
    expect(small.submit(SYNC_NONE, SYNC_NONE, SYNC_NONE)).toBe(3);
    // the next three go to slots 3, 0, 1 (a 16-entry queue would use 3, 4, 5)
    small.put(SYNC_NONE, SYNC_NONE, SYNC_NONE);
    expect(small.prod).toBe(0b110);
    expect(small.publish()).toBe(0b110);
    expect(sw.r32(R.GERROR)).toBe(0);
  });

  it('the base is aligned to the queue size: low ADDR bits below the size are ignored', () => {
    const m = new Machine();
    const sw = new Sw(m);
    // 4 entries x 16 bytes = 64 bytes; program base+0x20 (ADDR[5] set), the SMMU reads from base
    sw.w64(R.CMDQ_BASE, BigInt(CMDQ_PA + 0x20) | 2n);
    expect(sw.r64(R.CMDQ_BASE)).toBe(BigInt(CMDQ_PA + 0x20) | 2n);
    sw.w32(R.CMDQ_PROD, 0);
    sw.w32(R.CMDQ_CONS, 0);
    sw.cr0(8);
    const q = new SwCmdq(sw, CMDQ_PA, 2);
    m.mem.write64(CMDQ_PA + 0x20, 0xffn); // an illegal command where an unaligned base would look
    expect(q.submit(sync(1, MSI_PA, 0x77))).toBe(1);
    expect(m.mem.read32(MSI_PA)).toBe(0x77);
    expect(sw.r32(R.GERROR)).toBe(0);
  });

  it('a queue larger than 64 KiB: the index crosses page boundaries', () => {
    const m = new Machine();
    const sw = new Sw(m);
    const base = RAM + 0x10_0000;
    const q = initCmdq(sw, base, 13); // 8192 entries x 16 B = 128 KiB
    const cmds = Array.from({ length: 5000 }, () => cmd(OPC.TLBI_NSNH_ALL));
    expect(q.submit(...cmds)).toBe(5000);
    expect(m.smmu.tlbiCounts[0x30]).toBe(5000);
    // the illegal command at index 5000 stops consumption there
    q.put(cmd(0xff));
    expect(q.publish()).toBe(((CERROR_ILL << 24) | 5000) >>> 0);
  });
});
