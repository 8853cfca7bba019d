import { describe, expect, it } from 'vitest';
import {
  NS_BANK,
  NS_LAYOUT,
  RegLayout,
  RegisterFile,
  featureWriteMasks,
  type IgnoredCounts,
  type RegFileConfig,
} from '../../../hw/smmu/regfile.ts';
import { OFF, PAGE1, REGISTERS, regByName, writeMask } from '../../../hw/smmu/regs.ts';
import { DEFAULT_FEATURES } from '../../../hw/smmu/features.ts';

const counts = (): IgnoredCounts => ({ guarded: 0, readOnly: 0, size: 0, undefinedOffset: 0 });
const file = (cfg: Partial<RegFileConfig> = {}, layout = NS_LAYOUT) => {
  const ignored = counts();
  return { rf: new RegisterFile({ ignored, ...cfg }, layout), ignored };
};
const ALL = 0xffffffff;

describe('register file: layout', () => {
  it('one slot per 32-bit word: a 64-bit register takes two, looked up by offset/4', () => {
    const s = NS_LAYOUT.slot('STRTAB_BASE');
    expect(NS_LAYOUT.slotAt[OFF.STRTAB_BASE >>> 2]).toBe(s);
    expect(NS_LAYOUT.slotAt[(OFF.STRTAB_BASE + 4) >>> 2]).toBe(s + 1);
    expect(NS_LAYOUT.slot('STRTAB_BASE', 1)).toBe(s + 1);
    expect(NS_LAYOUT.slotAt[OFF.EVENTQ_PROD >>> 2]).toBe(NS_LAYOUT.slot('EVENTQ_PROD'));
    // 7 64-bit registers, 30 32-bit ones, 12 ID registers, and the unused slot 0
    expect(NS_LAYOUT.slots).toBe(1 + REGISTERS.length + 7 + 12);
    expect(() => NS_LAYOUT.slot('CR9')).toThrow('no register CR9');
  });

  it('a Secure bank is the same definitions at +0x8000 with the S_ prefix, guarded by its own S_CR0', () => {
    const secure = {
      name: 'Secure',
      base: 0x8000,
      prefix: 'S_',
      registers: REGISTERS.filter((r) => r.offset < PAGE1 && !r.name.startsWith('PRIQ')),
    };
    const layout = new RegLayout([NS_BANK, secure]);
    expect(layout.slotAt[0x8020 >>> 2]).toBe(layout.slot('S_CR0'));
    const { rf, ignored } = file({}, layout);
    rf.write32(0x8020, 1); // S_CR0.SMMUEN
    expect(rf.read32(0x8024)).toBe(1); // S_CR0ACK follows
    rf.write32(0x8028, 0xd75); // S_CR1: guarded by S_SMMUEN
    rf.write32(OFF.CR1, 0xd75); // CR1: the Non-secure SMMUEN is 0
    expect([rf.read32(0x8028), rf.read32(OFF.CR1), ignored.guarded]).toEqual([0, 0xd75, 1]);
  });
});

describe('register file: reset values, read-only registers and write masks (IHI 0070 6.3, smmuv3.md §1)', () => {
  it('every stored register resets to 0; the instance gives the IMPLEMENTATION DEFINED ones', () => {
    const { rf } = file({ reset: { IDR0: 0x0800_2e1b, IIDR: 0x43b } });
    for (const r of REGISTERS)
      if (r.name !== 'IDR0' && r.name !== 'IIDR')
        expect([r.name, rf.read32(r.offset)]).toEqual([r.name, 0]);
    expect(rf.read32(OFF.IDR0)).toBe(0x0800_2e1b);
    expect(rf.read32(OFF.IIDR)).toBe(0x43b);
    rf.write32(OFF.CR1, 0xd75);
    rf.reset();
    expect(rf.read32(OFF.CR1)).toBe(0);
  });

  it('RO registers ignore writes and count them', () => {
    const { rf, ignored } = file({ reset: { IDR0: 0x1b } });
    for (const name of ['IDR0', 'CR0ACK', 'STATUSR', 'IRQ_CTRLACK', 'GERROR'] as const)
      rf.write32(OFF[name], ALL);
    expect([rf.read32(OFF.IDR0), rf.read32(OFF.CR0ACK), rf.read32(OFF.GERROR)]).toEqual([
      0x1b, 0, 0,
    ]);
    expect(ignored.readOnly).toBe(5);
  });

  it('write masks follow the fields: only the defined bits are taken', () => {
    const { rf } = file();
    const w = (name: keyof typeof OFF, v: number, off = 0): number => {
      rf.write32(OFF[name] + off, v);
      return rf.read32(OFF[name] + off);
    };
    expect(w('CR1', ALL)).toBe(0xfff); // QUEUE_IC[1:0] .. TABLE_SH[11:10]
    expect(w('CR2', ALL)).toBe(0x7); // E2H, RECINVSID, PTM
    expect(w('IRQ_CTRL', ALL)).toBe(0x7);
    rf.write32(OFF.IRQ_CTRL, 0); // the IRQ_CFGs are guarded by their IRQEN
    expect(w('STRTAB_BASE_CFG', ALL)).toBe(0x3_07ff); // LOG2SIZE[5:0] SPLIT[10:6] FMT[17:16]
    expect(w('STRTAB_BASE', ALL)).toBe(0xffff_ffc0); // ADDR[31:6]
    expect(w('STRTAB_BASE', ALL, 4)).toBe(0x40ff_ffff); // RA[62], ADDR[55:32]
    expect(w('CMDQ_BASE', ALL)).toBe(ALL); // ADDR[31:5], LOG2SIZE[4:0]
    expect(w('CMDQ_BASE', ALL, 4)).toBe(0x40ff_ffff);
    expect(w('GERROR_IRQ_CFG0', ALL)).toBe(0xffff_fffc); // ADDR[31:2]
    expect(w('GERROR_IRQ_CFG0', ALL, 4)).toBe(0x00ff_ffff);
    expect(w('GERROR_IRQ_CFG2', ALL)).toBe(0x3f); // MemAttr[3:0], SH[5:4]
    expect(w('GERRORN', ALL)).toBe(0x1fd);
    expect(w('PRIQ_PROD', ALL)).toBe(0x800f_ffff); // OVFLG, WR[19:0]
    expect(w('PRIQ_CONS', ALL)).toBe(0x800f_ffff); // OVACKFLG, RD[19:0]
    // last: SMMUEN=1 guards the others
    expect(w('CR0', ALL)).toBe(0x5df); // SMMUEN..ATSCHK[4:0], VMW[8:6], DPT_WALK_EN[10]
    expect(writeMask(regByName('CMDQ_CONS')!)).toEqual([0xfffff]); // ERR[30:24] is the SMMU's
    expect(writeMask(regByName('IDR0')!)).toEqual([0]);
  });

  it('feature write masks: PRIQEN/PRIQ_IRQEN with PRI, ATSCHK with ATS, VMW with VMID wildcards, E2H with HYP', () => {
    expect(featureWriteMasks(DEFAULT_FEATURES)).toEqual({ CR0: 0x1d, CR2: 0x7, IRQ_CTRL: 0x5 });
    const ft = { ...DEFAULT_FEATURES, pri: true, ats: false, vmw: true, hyp: false };
    expect(featureWriteMasks(ft)).toEqual({ CR0: 0x1cf, CR2: 0x6, IRQ_CTRL: 0x7 });
    const { rf } = file({ wmask: featureWriteMasks(DEFAULT_FEATURES) });
    rf.write32(OFF.CR0, ALL);
    expect(rf.read32(OFF.CR0)).toBe(0x1d);
  });

  it('CR0ACK and IRQ_CTRLACK acknowledge at once', () => {
    const { rf } = file();
    rf.write32(OFF.CR0, 0xd);
    rf.write32(OFF.IRQ_CTRL, 0x5);
    expect([rf.read32(OFF.CR0ACK), rf.read32(OFF.IRQ_CTRLACK)]).toEqual([0xd, 0x5]);
  });
});

describe('register file: guards (smmuv3.md §1.5: IGNORED from SMMUv3.2)', () => {
  it('CR1, CR2, STRTAB_BASE(_CFG) only while SMMUEN=0 and its ACK is 0', () => {
    const { rf, ignored } = file();
    rf.write32(OFF.CR0, 1);
    rf.write32(OFF.CR1, 0xd75);
    rf.write32(OFF.CR2, 2);
    rf.write32(OFF.STRTAB_BASE_CFG, 0x10);
    rf.write(OFF.STRTAB_BASE, 8, 0x4000_0000n); // one 64-bit write: counted once
    expect(ignored.guarded).toBe(4);
    expect(rf.read(OFF.STRTAB_BASE, 8)).toBe(0n);
    // CR0.SMMUEN=0 but CR0ACK.SMMUEN still 1 (the disable not yet acknowledged): still guarded
    rf.val[NS_LAYOUT.slot('CR0')] = 0;
    rf.write32(OFF.CR1, 0xd75);
    expect([rf.read32(OFF.CR1), ignored.guarded]).toEqual([0, 5]);
    rf.write32(OFF.CR0, 0);
    rf.write32(OFF.CR1, 0xd75);
    expect(rf.read32(OFF.CR1)).toBe(0xd75);
  });

  it('a queue base follows its own enable, not SMMUEN; an IRQ_CFG follows its IRQEN', () => {
    const { rf, ignored } = file();
    rf.write32(OFF.CR0, 0x1); // SMMUEN only
    rf.write(OFF.CMDQ_BASE, 8, 0x4070_0004n);
    rf.write32(OFF.CR0, 0x9); // CMDQEN
    rf.write(OFF.CMDQ_BASE, 8, 0x4080_0004n);
    rf.write32(OFF.EVENTQ_BASE, 0x4090_0004);
    expect([rf.read(OFF.CMDQ_BASE, 8), rf.read32(OFF.EVENTQ_BASE), ignored.guarded]).toEqual([
      0x4070_0004n,
      0x4090_0004,
      1,
    ]);
    rf.write32(OFF.IRQ_CTRL, 0x4); // EVENTQ_IRQEN
    rf.write32(OFF.EVENTQ_IRQ_CFG1, 0x1234);
    rf.write32(OFF.GERROR_IRQ_CFG1, 0x5678);
    expect([rf.read32(OFF.EVENTQ_IRQ_CFG1), rf.read32(OFF.GERROR_IRQ_CFG1)]).toEqual([0, 0x5678]);
    expect(ignored.guarded).toBe(2);
  });

  it('a guard handler may let the write take effect (pre-v3.2 CONSTRAINED UNPREDICTABLE)', () => {
    const seen: number[] = [];
    const { rf, ignored } = file({ guarded: (off) => (seen.push(off), false) });
    rf.write32(OFF.CR0, 1);
    rf.write32(OFF.CR1, 0xd75);
    expect([rf.read32(OFF.CR1), seen, ignored.guarded]).toEqual([0xd75, [OFF.CR1], 0]);
  });
});

describe('register file: backings, hooks and what an instance leaves out', () => {
  it('a backed register reads and writes its component; the effect handler sees the old and new value', () => {
    let prod = 0;
    const log: number[][] = [];
    const { rf } = file({
      backing: { CMDQ_PROD: { read: () => prod, write: (v) => (prod = v) } },
      effects: {
        cmdqProd: (old, nv) => log.push([old, nv]),
        enable: (old, nv) => log.push([old, nv]),
      },
    });
    rf.write32(OFF.CMDQ_PROD, 0xfff0_0005); // WR[19:0] only
    rf.write32(OFF.CMDQ_PROD, 6);
    rf.write32(OFF.CR0, 0x8);
    expect([prod, rf.read32(OFF.CMDQ_PROD), log]).toEqual([
      6,
      6,
      [
        [0, 5],
        [5, 6],
        [0, 8],
      ],
    ]);
  });

  it('side effects are those the table names (CR0 enable, GBPA bypass, GERRORN errorAck, CMDQ_PROD cmdqProd)', () => {
    expect(REGISTERS.filter((r) => r.effect).map((r) => [r.name, r.effect])).toEqual([
      ['CR0', 'enable'],
      ['GBPA', 'bypass'],
      ['GERRORN', 'errorAck'],
      ['CMDQ_PROD', 'cmdqProd'],
    ]);
    expect(() => file({ effects: { eventqProd: () => {} } })).toThrow(
      'no register has the side effect eventqProd',
    );
  });

  it('absent registers are RES0 and counted; ignored writes are not; bad sizes are RAZ/WI', () => {
    const { rf, ignored } = file({
      absent: ['GERROR_IRQ_CFG0'],
      writesIgnored: ['AGBPA'],
      readsUndefined: ['STATUSR'],
    });
    rf.write(OFF.GERROR_IRQ_CFG0, 8, 0x1234_5678_9abcn); // two 32-bit writes to nothing
    expect(rf.read(OFF.GERROR_IRQ_CFG0, 8)).toBe(0n);
    rf.write32(OFF.AGBPA, ALL);
    rf.read32(OFF.STATUSR);
    rf.read32(0x38); // no register
    rf.write32(PAGE1 + 0x20, 1);
    expect(ignored.undefinedOffset).toBe(2 + 2 + 1 + 1 + 1);
    rf.write(OFF.CR1, 2, 1n);
    rf.read(OFF.CR1 + 1, 4);
    rf.read(OFF.CMDQ_BASE + 4, 8);
    expect([ignored.size, rf.read32(OFF.CR1), rf.read32(OFF.AGBPA)]).toEqual([3, 0, 0]);
  });
});
