/**
 * Stage-2 domains (where IDR0.S2P is visible) and PASIDs (SSIDSIZE > 0) through the driver.
 */
import { describe, expect, it } from 'vitest';
import { Machine, SMMU_BASE } from '../../../hw/machine.ts';
import { ArmSmmuV3 } from '../../../host/driver/driver.ts';
import { DomainManager } from '../../../host/driver/domain.ts';
import { DmaApi, DmaDomain } from '../../../host/dma-api.ts';
import { IoPgtable } from '../../../hw/vmsa/io-pgtable.ts';

function setup() {
  const m = new Machine({ devices: [{ name: 'vf', sid: 8 }] }); // default SMMU: S1+S2, SSIDSIZE=16, RIL
  const drv = new ArmSmmuV3(m.bus, {
    base: SMMU_BASE,
    pages: { base: 0x4400_0000, limit: 0x7800_0000 },
  });
  drv.probe();
  const dm = new DomainManager(drv);
  return { m, drv, dm };
}

describe('domains', () => {
  it('a stage-2 domain: the STE is Config=0b110 with the VMID and the io-pgtable VTCR, and the device DMAs through it', () => {
    const { m, drv, dm } = setup();
    const noop = { tlbFlushAll() {}, tlbFlushWalk() {}, tlbAddPage() {} };
    const pt = new IoPgtable(
      {
        fmt: 'ARM_64_LPAE_S2',
        pgsizeBitmap: drv.ft.pgsizes,
        ias: 40,
        oas: drv.ft.oas,
        coherentWalk: true,
      },
      { read64: (a) => drv.readMem64(a), write64: (a, v) => drv.writeMem64(a, v) },
      { alloc: (b, al) => drv.pages.alloc(b, al) },
      noop,
    );
    pt.mapRange(0x8000_0000, 0x4510_0000, 0x2000, { read: true, write: true, cache: true });
    const d = dm.alloc('s2', { s2: pt.s2! });
    expect(d.vmid).toBe(1);
    dm.attach(8, d);
    const ste = drv.steAddr(8);
    const q0 = m.mem.read64(ste);
    const q2 = m.mem.read64(ste + 16);
    expect(q0 & 0xfn).toBe(0xdn); // V=1, Config=0b110
    expect(q2 & 0xffffn).toBe(1n); // S2VMID
    expect(Number((q2 >> 32n) & 0x3fn)).toBe(64 - 40); // S2T0SZ for a 40-bit IPA
    expect((q2 >> 51n) & 1n).toBe(1n); // S2AA64
    expect((q2 >> 54n) & 1n).toBe(1n); // S2PTW
    expect((q2 >> 58n) & 1n).toBe(1n); // S2R
    expect(m.devices.get('vf')!.write(0x8000_1008, new Uint8Array([7]))).toMatchObject({
      ok: true,
      pa: 0x4510_1008,
    });
    expect(m.devices.get('vf')!.read(0x9000_0000, 4).ok).toBe(false);
    expect(drv.events.drain()[0]).toMatchObject({
      type: 'F_TRANSLATION',
      fields: { S2: 1, IPA: '0x90000000' },
    });
  });

  it('PASIDs: a DMA domain on PASID 5 translates SSID 5 through CD[5]; the RID keeps its own domain', () => {
    const { m, drv, dm } = setup();
    const dma = new DmaApi(drv, dm);
    const rid = dma.attachDefault(8, { ssidBits: 8 });
    const pasidDom = new DmaDomain(drv, dm);
    const cmds: string[] = [];
    m.smmu.cmdq.onCommand = (w) => cmds.push(`${w[0]! & 0xff}:${(w[0]! >>> 12) & 0xfffff}`);
    dm.attachPasid(8, 5, pasidDom.domain);
    expect(cmds).toContain(`${0x05}:5`); // CFGI_CD with SubstreamID 5
    pasidDom.pgtable.mapRange(0x1000_0000, 0x4520_0000, 0x1000, {
      read: true,
      write: true,
      cache: true,
      exec: true,
    });
    rid.pgtable.mapRange(0x1000_0000, 0x4530_0000, 0x1000, {
      read: true,
      write: true,
      cache: true,
      exec: true,
    });
    const ep = m.devices.get('vf')!;
    expect(ep.read(0x1000_0010, 4, { ssid: 5 })).toMatchObject({ ok: true, pa: 0x4520_0010 });
    expect(ep.read(0x1000_0010, 4)).toMatchObject({ ok: true, pa: 0x4530_0010 }); // no PASID: CD 0 (S1DSS=SSID0)
    expect(ep.read(0x1000_0010, 4, { ssid: 300 }).ok).toBe(false); // beyond S1CDMax=8
    expect(drv.events.drain().map((e) => e.type)).toEqual(['C_BAD_SUBSTREAMID']);
    expect(() => dm.attachPasid(8, 256, pasidDom.domain)).toThrow(/does not fit the CD table/);
  });
});
