import { describe, expect, it } from 'vitest';
import { Machine } from '../../../hw/machine.ts';
import {
  CERROR_ABT,
  CERROR_ILL,
  CMDQEN,
  CMDQ_PA,
  G,
  GERROR_IRQEN,
  MSI_PA,
  NO_RAM,
  OPC,
  R,
  SYNC_NONE,
  Sw,
  cmd,
  initCmdq,
  sync,
  writeCmd,
  type Cmd,
} from '../helpers.ts';

const ILL: Cmd = [0xffn, 0n];

function setup(features = {}) {
  const m = new Machine({ smmu: { features } });
  const sw = new Sw(m);
  const q = initCmdq(sw, CMDQ_PA, 3);
  return { m, sw, q };
}

describe('GERROR.CMDQ_ERR toggle protocol (reference §1.5, §4.6)', () => {
  it('an illegal command: CMDQ_ERR toggles, CONS.ERR=CERROR_ILL, CONS stays on the bad command, consumption stops', () => {
    const { m, sw, q } = setup();
    const cons = q.submit(sync(1, MSI_PA, 1), ILL, sync(1, MSI_PA + 4, 3));
    expect(cons).toBe(((CERROR_ILL << 24) | 1) >>> 0);
    expect((cons >>> 24) & 0x7f).toBe(1);
    expect(sw.r32(R.GERROR)).toBe(G.CMDQ_ERR);
    expect(sw.r32(R.GERRORN)).toBe(0);
    expect(sw.r32(R.CMDQ_PROD)).toBe(3);
    expect(m.mem.read32(MSI_PA)).toBe(1); // the command before the bad one ran
    expect(m.mem.read32(MSI_PA + 4)).toBe(0); // the one after it did not
  });

  it('while CMDQ_ERR is active a further PROD write does nothing; neither does re-enabling CMDQEN', () => {
    const { m, sw, q } = setup();
    q.submit(ILL);
    const cons = sw.r32(R.CMDQ_CONS);
    expect(q.submit(sync(1, MSI_PA, 7))).toBe(cons);
    sw.cr0(0);
    sw.cr0(CMDQEN);
    expect(sw.r32(R.CMDQ_CONS)).toBe(cons);
    expect(m.mem.read32(MSI_PA)).toBe(0);
    expect(m.smmu.cmdq.stats.errors).toBe(1);
  });

  it('writing GERRORN = GERROR acknowledges and resumes consumption (after the bad command is replaced)', () => {
    const { m, sw, q } = setup();
    q.submit(SYNC_NONE, ILL, sync(1, MSI_PA, 0x11));
    writeCmd(m, q.slotAddr(1), SYNC_NONE); // Linux overwrites the bad command with a CMD_SYNC
    sw.w32(R.GERRORN, sw.r32(R.GERROR));
    expect(sw.r32(R.GERRORN)).toBe(G.CMDQ_ERR);
    expect(sw.gerrorActive()).toBe(0);
    expect(sw.r32(R.CMDQ_CONS)).toBe(3);
    expect(m.mem.read32(MSI_PA)).toBe(0x11);
  });

  it('acknowledging without fixing the command raises the error again: GERROR toggles back to 0', () => {
    const { sw, q } = setup();
    q.submit(ILL);
    expect(sw.r32(R.GERROR)).toBe(1);
    sw.w32(R.GERRORN, 1);
    // consumption resumed on the same illegal command: a new activation toggles GERROR to 0
    expect(sw.r32(R.GERROR)).toBe(0);
    expect(sw.r32(R.GERRORN)).toBe(1);
    expect(sw.gerrorActive()).toBe(G.CMDQ_ERR);
    expect(sw.r32(R.CMDQ_CONS)).toBe(((CERROR_ILL << 24) | 0) >>> 0);
  });

  it('writing GERRORN with a value that does not match does not acknowledge', () => {
    const { sw, q } = setup();
    q.submit(ILL);
    sw.w32(R.GERRORN, 0);
    expect(sw.gerrorActive()).toBe(G.CMDQ_ERR);
    expect(sw.r32(R.CMDQ_CONS) >>> 24).toBe(CERROR_ILL);
  });

  it('a command fetch abort: CONS.ERR=CERROR_ABT and CONS does not advance', () => {
    const m = new Machine();
    const sw = new Sw(m);
    sw.w64(R.CMDQ_BASE, BigInt(NO_RAM) | 3n);
    sw.cr0(CMDQEN);
    sw.w32(R.CMDQ_PROD, 2);
    expect(sw.r32(R.CMDQ_CONS)).toBe(((CERROR_ABT << 24) | 0) >>> 0);
    expect(sw.r32(R.GERROR)).toBe(G.CMDQ_ERR);
  });

  it('a command abort part-way: commands before it are consumed, CONS stops at the aborting entry', () => {
    // RAM ends at 0x4003_0000; a 2^13-entry (128 KiB) queue at 0x4002_0000 has entries 0..4095 in RAM
    const m = new Machine({ ramSize: 0x3_0000 });
    const sw = new Sw(m);
    const base = 0x4002_0000;
    sw.w64(R.CMDQ_BASE, BigInt(base) | 13n);
    sw.w32(R.CMDQ_PROD, 4094);
    sw.w32(R.CMDQ_CONS, 4094);
    sw.cr0(CMDQEN);
    writeCmd(m, base + 16 * 4094, sync(1, base, 0xa));
    writeCmd(m, base + 16 * 4095, sync(1, base + 4, 0xb));
    sw.w32(R.CMDQ_PROD, 4098);
    expect(sw.r32(R.CMDQ_CONS)).toBe(((CERROR_ABT << 24) | 4096) >>> 0);
    expect([m.mem.read32(base), m.mem.read32(base + 4)]).toEqual([0xa, 0xb]);
  });

  it('CONS.ERR reads 0 when no error is active', () => {
    const { sw, q } = setup();
    q.submit(ILL);
    writeCmd(sw.m, q.slotAddr(0), SYNC_NONE);
    sw.ackGerror();
    expect(sw.r32(R.CMDQ_CONS)).toBe(1);
  });

  it('a second error of the same type while active is not re-toggled (MSI_CMDQ_ABT_ERR twice)', () => {
    const { m, sw, q } = setup();
    sw.irqCtrl(GERROR_IRQEN);
    expect(q.submit(sync(1, NO_RAM, 1), sync(1, NO_RAM, 2))).toBe(2);
    expect(sw.r32(R.GERROR)).toBe(G.MSI_CMDQ_ABT_ERR);
    expect(m.smmu.irqs.gerror).toBe(1);
    sw.ackGerror();
    q.submit(sync(1, NO_RAM, 3));
    expect(sw.r32(R.GERROR)).toBe(0);
    expect(sw.gerrorActive()).toBe(G.MSI_CMDQ_ABT_ERR);
    expect(m.smmu.irqs.gerror).toBe(2);
  });

  it('EVENTQ_ABT_ERR: a second aborted event record while active is not re-toggled', () => {
    const m = new Machine({ devices: [{ name: 'dev', sid: 5 }] });
    const sw = new Sw(m);
    sw.w64(R.STRTAB_BASE, BigInt(0x4010_0000));
    sw.w32(R.STRTAB_BASE_CFG, 8);
    sw.w64(R.EVENTQ_BASE, BigInt(NO_RAM) | 4n);
    sw.irqCtrl(GERROR_IRQEN);
    sw.cr0(0x5); // SMMUEN | EVENTQEN
    const dev = m.devices.get('dev')!;
    dev.read(0x4020_0000, 4);
    dev.read(0x4020_0000, 4);
    expect(sw.r32(R.GERROR)).toBe(G.EVENTQ_ABT_ERR);
    expect(m.smmu.irqs.gerror).toBe(1);
    sw.ackGerror();
    dev.read(0x4020_0000, 4);
    expect(sw.r32(R.GERROR)).toBe(0);
    expect(sw.gerrorActive()).toBe(G.EVENTQ_ABT_ERR);
    expect(m.smmu.irqs.gerror).toBe(2);
  });

  it('errors of different types are independent', () => {
    const { sw, q } = setup();
    q.submit(sync(1, NO_RAM, 1), ILL);
    expect(sw.r32(R.GERROR)).toBe((G.CMDQ_ERR | G.MSI_CMDQ_ABT_ERR) >>> 0);
    sw.w32(R.GERRORN, G.MSI_CMDQ_ABT_ERR);
    expect(sw.gerrorActive()).toBe(G.CMDQ_ERR);
  });
});

describe('GERROR interrupt', () => {
  it('wired: counted in irqs.gerror when IRQ_CTRL.GERROR_IRQEN=1 and no MSI address', () => {
    const { m, sw, q } = setup();
    sw.irqCtrl(GERROR_IRQEN);
    const lines: string[] = [];
    m.smmu.onIrq = (l) => lines.push(l);
    q.submit(ILL);
    expect(m.smmu.irqs.gerror).toBe(1);
    expect(lines).toEqual(['gerror']);
  });

  it('none when GERROR_IRQEN=0', () => {
    const { m, q } = setup();
    q.submit(ILL);
    expect(m.smmu.irqs.gerror).toBe(0);
    expect(m.smmu.msis).toBe(0);
  });

  it('MSI: GERROR_IRQ_CFG1 written to GERROR_IRQ_CFG0 when IDR0.MSI=1 and CFG0 != 0', () => {
    const { m, sw, q } = setup();
    sw.w64(R.GERROR_IRQ_CFG0, BigInt(MSI_PA + 0x80));
    sw.w32(R.GERROR_IRQ_CFG1, 0xcafef00d);
    sw.irqCtrl(GERROR_IRQEN);
    q.submit(ILL);
    expect(m.mem.read32(MSI_PA + 0x80)).toBe(0xcafef00d);
    expect(m.smmu.msis).toBe(1);
    expect(m.smmu.irqs.gerror).toBe(0);
  });

  it('without MSI support a configured CFG0 is not used: the wired line fires', () => {
    const { m, sw, q } = setup({ msi: false });
    sw.w64(R.GERROR_IRQ_CFG0, BigInt(MSI_PA));
    sw.w32(R.GERROR_IRQ_CFG1, 0x1234);
    sw.irqCtrl(GERROR_IRQEN);
    q.submit(ILL);
    expect(m.mem.read32(MSI_PA)).toBe(0);
    expect(m.smmu.irqs.gerror).toBe(1);
  });

  it('a GERROR MSI that aborts activates MSI_GERROR_ABT_ERR, which raises no further interrupt', () => {
    const { m, sw, q } = setup();
    sw.w64(R.GERROR_IRQ_CFG0, BigInt(NO_RAM));
    sw.irqCtrl(GERROR_IRQEN);
    q.submit(ILL);
    expect(sw.r32(R.GERROR)).toBe((G.CMDQ_ERR | G.MSI_GERROR_ABT_ERR) >>> 0);
    expect(m.smmu.msis).toBe(0);
    expect(m.smmu.irqs.gerror).toBe(0);
  });

  it('the GERROR MSI is also sent for an MSI_CMDQ_ABT_ERR', () => {
    const { m, sw, q } = setup();
    sw.w64(R.GERROR_IRQ_CFG0, BigInt(MSI_PA));
    sw.w32(R.GERROR_IRQ_CFG1, 0xe1);
    sw.irqCtrl(GERROR_IRQEN);
    q.submit(sync(1, NO_RAM, 9));
    expect(sw.r32(R.GERROR)).toBe(G.MSI_CMDQ_ABT_ERR);
    expect(m.mem.read32(MSI_PA)).toBe(0xe1);
  });
});

describe('commands after a CMD_SYNC MSI abort', () => {
  it('the queue keeps going (an MSI abort is not a command error)', () => {
    const { m, sw, q } = setup();
    expect(q.submit(sync(1, NO_RAM, 1), cmd(OPC.TLBI_NSNH_ALL), SYNC_NONE)).toBe(3);
    expect(sw.r32(R.GERROR) & G.CMDQ_ERR).toBe(0);
    expect(m.smmu.tlbiCounts[0x30]).toBe(1);
  });
});
