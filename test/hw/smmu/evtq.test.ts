import { describe, expect, it } from 'vitest';
import { decodeEvent, eventName, eventNumber, EVT } from '../../../hw/smmu/events.ts';
import {
  DMA_BUF,
  E,
  EVENTQEN,
  EVENTQ_IRQEN,
  EVTQ_PA,
  G,
  GERROR_IRQEN,
  MSI_PA,
  NO_RAM,
  OVFLG,
  R,
  RAM,
  SMMUEN,
  Sw,
  initEvtq,
  readEvent,
  rig,
} from '../helpers.ts';
import { Machine } from '../../../hw/machine.ts';
import { EVENT } from '../../reference.ts';

/** A rig with a 4-entry event queue; every STE is zero (V=0), so each DMA records C_BAD_STE. */
function small(opts = {}) {
  const r = rig({ evtqLog2: 2, ...opts });
  const fire = (sid: number, ssid?: number) => {
    const d = r.m.deviceBySid(sid) ?? r.m.addDevice({ name: `s${sid}`, sid });
    return d.read(DMA_BUF, 4, ssid === undefined ? {} : { ssid });
  };
  return { ...r, fire };
}

describe('event records (reference §5.2)', () => {
  it('C_BAD_STE is written at PROD in the 32-byte layout: DW0 = event number | StreamID<<32, rest 0', () => {
    const { m, sw, fire } = small();
    expect(fire(5)).toMatchObject({ ok: false, event: 'C_BAD_STE' });
    expect(sw.r32(R.EVENTQ_PROD)).toBe(1);
    expect(readEvent(m, EVTQ_PA, 0)).toEqual([0x0000_0005_0000_0004n, 0n, 0n, 0n]);
  });

  it('SSV and SubstreamID are in DW0[11] and DW0[31:12]', () => {
    const { m, fire } = small();
    fire(0xf3, 0xabcde);
    const dw0 = readEvent(m, EVTQ_PA, 0)[0]!;
    expect(dw0).toBe(0x0000_00f3_0000_0000n | (0xabcden << 12n) | (1n << 11n) | 0x04n);
  });

  it('the decoded event log matches the raw record', () => {
    const { m, fire } = small();
    fire(7, 3);
    const e = m.smmu.evtq.log[0]!;
    expect(e).toMatchObject({ type: 'C_BAD_STE', num: 4, sid: 7, ssid: 3 });
    expect(e.raw[0]).toBe('0x0000000700003804');
    const words = new Uint32Array(8);
    m.mem.readWords(EVTQ_PA, words);
    expect(decodeEvent(words)).toEqual(e);
  });

  it('event numbers and names', () => {
    expect(EVT).toMatchObject(EVENT);
    expect(eventName(0xe3)).toBe('IMPDEF_EVENT3');
    expect(eventName(0x30)).toBe('RESERVED(0x30)');
    expect(eventNumber('c_bad_ste')).toBe(4);
  });

  it('decodes a translation-fault record: S2, CLASS, RnW, InputAddr', () => {
    const w = new Uint32Array(8);
    // F_PERMISSION, SID 9; DW1: RnW[35]=1, S2[39]=1, CLASS[41:40]=TT(1); DW2 InputAddr; DW3 IPA[55:12]
    const dws = [
      0x0000_0009_0000_0013n,
      (1n << 35n) | (1n << 39n) | (1n << 40n),
      0xffff_0000_1234_5678n,
      0x0000_00ab_cdef_0000n,
    ];
    dws.forEach((d, i) => {
      w[2 * i] = Number(d & 0xffffffffn);
      w[2 * i + 1] = Number(d >> 32n);
    });
    const e = decodeEvent(w);
    expect(e.type).toBe('F_PERMISSION');
    expect(e.fields).toMatchObject({
      RnW: 1,
      S2: 1,
      CLASS: 1,
      InD: 0,
      PnU: 0,
      Stall: 0,
      InputAddr: '0xffff000012345678',
    });
    expect(e.fields).toHaveProperty('IPA');
    expect(e.raw[3]).toBe('0x000000abcdef0000');
  });
});

describe('event queue PROD, wrap and overflow (reference §1.7)', () => {
  it('PROD advances and wraps (wrap flag at bit 2 for LOG2SIZE=2) while software consumes', () => {
    const { m, sw, fire } = small();
    const prods: number[] = [];
    for (let i = 0; i < 10; i++) {
      fire(100 + i);
      const prod = sw.r32(R.EVENTQ_PROD);
      prods.push(prod);
      // the record is in the slot PROD just moved past
      const slot = (prod - 1) & 3;
      expect(readEvent(m, EVTQ_PA, slot)[0]).toBe((BigInt(100 + i) << 32n) | 4n);
      sw.w32(R.EVENTQ_CONS, prod);
    }
    expect(prods).toEqual([1, 2, 3, 4, 5, 6, 7, 0, 1, 2]);
    expect(m.smmu.evtq.written).toBe(10);
  });

  it('overflow: records are dropped when full, OVFLG toggles once, ack through CONS.OVACKFLG, then a new overflow can be signalled', () => {
    const { m, sw, fire } = small();
    for (let i = 0; i < 4; i++) fire(10 + i);
    expect(sw.r32(R.EVENTQ_PROD)).toBe(0b100); // full: index 0, wrap 1, CONS = 0
    fire(20);
    expect(sw.r32(R.EVENTQ_PROD)).toBe((OVFLG | 0b100) >>> 0);
    fire(21);
    fire(22);
    expect(sw.r32(R.EVENTQ_PROD)).toBe((OVFLG | 0b100) >>> 0); // toggled only once
    // the dropped records did not overwrite anything
    expect([0, 1, 2, 3].map((i) => Number(readEvent(m, EVTQ_PA, i)[0]! >> 32n))).toEqual([
      10, 11, 12, 13,
    ]);
    expect(m.smmu.evtq.dropped).toBe(3);
    // software consumes everything but does not acknowledge yet: delivery continues
    sw.w32(R.EVENTQ_CONS, 0b100);
    fire(30);
    expect(sw.r32(R.EVENTQ_PROD)).toBe((OVFLG | 0b101) >>> 0);
    // acknowledge: OVACKFLG = OVFLG
    sw.w32(R.EVENTQ_CONS, (OVFLG | 0b101) >>> 0);
    expect(sw.r32(R.EVENTQ_CONS)).toBe((OVFLG | 0b101) >>> 0);
    // fill again: 4 more make it full (PROD index 1 wrap 0 vs CONS index 1 wrap 1)
    for (let i = 0; i < 4; i++) fire(40 + i);
    expect(sw.r32(R.EVENTQ_PROD)).toBe((OVFLG | 0b001) >>> 0);
    fire(50);
    expect(sw.r32(R.EVENTQ_PROD)).toBe(0b001); // OVFLG toggled back to 0: a new overflow
    expect(m.smmu.evtq.overflows).toBe(2);
  });

  it('EVENTQEN=0: events are dropped and no overflow is signalled', () => {
    const { m, sw, fire } = small();
    sw.cr0(sw.r32(R.CR0) & ~EVENTQEN);
    for (let i = 0; i < 6; i++)
      expect(fire(60 + i)).toMatchObject({ ok: false, event: 'C_BAD_STE' });
    expect(sw.r32(R.EVENTQ_PROD)).toBe(0);
    expect(readEvent(m, EVTQ_PA, 0)).toEqual([0n, 0n, 0n, 0n]);
    expect(m.smmu.evtq.overflows).toBe(0);
    // enabling the queue again: new events are recorded from PROD
    sw.cr0(sw.r32(R.CR0) | EVENTQEN);
    fire(70);
    expect(sw.r32(R.EVENTQ_PROD)).toBe(1);
  });

  it('a record write that aborts activates GERROR.EVENTQ_ABT_ERR and PROD does not move', () => {
    const m = new Machine({ devices: [{ name: 'dev', sid: 5 }] });
    const sw = new Sw(m);
    sw.w64(R.STRTAB_BASE, BigInt(RAM + 0x10_0000));
    sw.w32(R.STRTAB_BASE_CFG, 8);
    initEvtq(sw, NO_RAM, 4);
    sw.irqCtrl(GERROR_IRQEN | EVENTQ_IRQEN);
    sw.cr0(sw.r32(R.CR0) | SMMUEN);
    expect(m.devices.get('dev')!.read(DMA_BUF, 4)).toMatchObject({ ok: false, event: 'C_BAD_STE' });
    expect(sw.r32(R.GERROR)).toBe(G.EVENTQ_ABT_ERR);
    expect(sw.r32(R.EVENTQ_PROD)).toBe(0);
    expect(m.smmu.irqs.gerror).toBe(1);
    expect(m.smmu.irqs.eventq).toBe(0);
    expect(m.smmu.evtq.aborts).toBe(1);
  });

  it('EVENTQ LOG2SIZE is capped at IDR1.EVENTQS', () => {
    const { m, sw, fire } = small({ smmu: { features: { eventqs: 1 } }, evtqLog2: 5 });
    expect((sw.r32(R.IDR1) >>> 16) & 0x1f).toBe(1);
    fire(1);
    fire(2);
    expect(sw.r32(R.EVENTQ_PROD)).toBe(0b10); // 2 entries: wrap flag at bit 1
    fire(3);
    expect(sw.r32(R.EVENTQ_PROD)).toBe((OVFLG | 0b10) >>> 0);
    expect(readEvent(m, EVTQ_PA, 2)).toEqual([0n, 0n, 0n, 0n]);
  });

  it('the event queue base is aligned to the queue size', () => {
    const m = new Machine({ devices: [{ name: 'dev', sid: 5 }] });
    const sw = new Sw(m);
    sw.w64(R.STRTAB_BASE, BigInt(RAM + 0x10_0000));
    sw.w32(R.STRTAB_BASE_CFG, 8);
    // 4 entries x 32 bytes = 128 bytes; program base + 0x40
    initEvtq(sw, EVTQ_PA + 0x40, 2);
    sw.cr0(sw.r32(R.CR0) | SMMUEN);
    m.devices.get('dev')!.read(DMA_BUF, 4);
    expect(m.mem.read64(EVTQ_PA)).toBe(0x0000_0005_0000_0004n);
    expect(m.mem.read64(EVTQ_PA + 0x40)).toBe(0n);
  });
});

describe('event queue interrupt', () => {
  it('wired: counted when EVENTQ_IRQEN=1, not when 0', () => {
    const { m, sw, fire } = small();
    fire(1);
    expect(m.smmu.irqs.eventq).toBe(0);
    sw.irqCtrl(EVENTQ_IRQEN);
    fire(2);
    expect(m.smmu.irqs.eventq).toBeGreaterThan(0);
    expect(m.smmu.msis).toBe(0);
  });

  it('MSI: EVENTQ_IRQ_CFG1 is written to EVENTQ_IRQ_CFG0', () => {
    const { m, sw, fire } = small();
    sw.w64(R.EVENTQ_IRQ_CFG0, BigInt(MSI_PA + 8));
    sw.w32(R.EVENTQ_IRQ_CFG1, 0x5ee0_0001);
    sw.irqCtrl(EVENTQ_IRQEN);
    fire(3);
    expect(m.mem.read32(MSI_PA + 8)).toBe(0x5ee0_0001);
    expect(m.smmu.msis).toBeGreaterThan(0);
    expect(m.smmu.irqs.eventq).toBe(0);
  });

  it('an EVENTQ MSI that aborts activates GERROR.MSI_EVENTQ_ABT_ERR; the record itself is written', () => {
    const { m, sw, fire } = small();
    sw.w64(R.EVENTQ_IRQ_CFG0, BigInt(NO_RAM));
    sw.irqCtrl(EVENTQ_IRQEN);
    fire(4);
    expect(sw.r32(R.GERROR)).toBe(G.MSI_EVENTQ_ABT_ERR);
    expect(sw.r32(R.EVENTQ_PROD)).toBe(1);
    expect(readEvent(m, EVTQ_PA, 0)[0]).toBe((4n << 32n) | BigInt(E.C_BAD_STE));
  });
});
