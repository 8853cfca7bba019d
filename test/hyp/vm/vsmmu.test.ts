/**
 * The vSMMU (hyp/vm/vsmmu.ts) as its guest sees it, unit by unit: the guest-visible ID registers,
 * CR0/CR0ACK, GBPA's Update protocol, IRQ_CTRL/ACK, GERROR/GERRORN, the guarded registers;
 * the command budget per trap and its continuation; how guest commands become physical ones
 * (TLBIs with the guest's VMID, CFGI_CD with the pSID, one physical CMD_SYNC per batch); a
 * guest CMD_SYNC that waits while the physical queue cannot complete; and event routing.
 *
 * Every expected value comes from the reference: IHI 0070 as condensed in smmuv3.md (section
 * numbers in the comments) and designs.md §3 (the Xen vSMMU this one is built stronger than).
 */
import { describe, expect, it } from 'vitest';
import { SMMU_BASE } from '../../../hw/machine.ts';
import { encodeCommand } from '../../../hw/smmu/commands.ts';
import { makePolicy } from '../../../hyp/policy/policy.ts';
import {
  ATSCHK,
  CERROR_ILL,
  CMDQEN,
  CMDQ_ERR,
  EVENTQEN,
  EVENTQ_ABT_ERR,
  EV,
  GUEST_RAM,
  O,
  OPC,
  PRIQEN,
  SMMUEN,
  VM1_PA,
  VM2_PA,
  bitsOf,
  boot,
  cmd,
  gMemRead,
  gMemWrite,
  gR32,
  gR64,
  gW32,
  gW64,
  physSince,
  physSte,
  rawQueue,
  steF,
  vm,
  type Rig,
  type Vm,
} from '../../guest/rig.ts';

/** a guest (vSID 0 → pSID 9) whose kernel has probed its vSMMU and attached a stage-1 DMA domain to vSID 0 */
function attached(o: Parameters<typeof boot>[0] = {}): { r: Rig; a: Vm } {
  const r = boot(o);
  const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }]);
  a.k.dma.attachDefault(0, { ssidBits: 0 });
  return { r, a };
}

/** the guest's event queue records (32 bytes each) between its CONS and PROD, read from its memory */
function guestEvents(r: Rig, a: Vm): Uint32Array[] {
  const qs = a.k.drv.evtq.shift;
  const prod = gR32(r, a, O.EVENTQ_PROD) & (2 ** (qs + 1) - 1);
  let cons = gR32(r, a, O.EVENTQ_CONS) & (2 ** (qs + 1) - 1);
  const out: Uint32Array[] = [];
  while (cons !== prod) {
    out.push(gMemRead(r, a, a.k.drv.evtq.base + (cons % 2 ** qs) * 32, 8));
    cons = (cons + 1) % 2 ** (qs + 1);
  }
  return out;
}

// ---- registers ------------------------------------------------------------------------------------

describe('the guest-visible registers', () => {
  it('ID registers: stage 1 only, no HYP/MSI/VMID16/PRI/ATS, 16-bit vSIDs, 2-level tables, terminate-only stalls (designs.md §3.2)', () => {
    const r = boot();
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }], false);
    const idr0 = gR32(r, a, O.IDR0);
    const bit = (v: number, b: number) => (v >>> b) & 1;
    // IDR0 (smmuv3.md §1.4): S2P b0, S1P b1, TTF[3:2], HYP b9, ATS b10, MSI b13, PRI b16, VMID16 b18, STALL_MODEL[25:24], ST_LEVEL[28:27]
    expect(bit(idr0, 0), 'S2P').toBe(0);
    expect(bit(idr0, 1), 'S1P').toBe(1);
    expect(bitsOf([idr0], 3, 2), 'TTF = AArch64').toBe(0b10);
    expect(bitsOf([idr0], 7, 6), 'HTTU').toBe(0);
    expect(bit(idr0, 9), 'HYP').toBe(0);
    expect(bit(idr0, 10), 'ATS without allowAts').toBe(0);
    expect(bit(idr0, 13), 'MSI').toBe(0);
    expect(bit(idr0, 15), 'ATOS').toBe(0);
    expect(bit(idr0, 16), 'PRI').toBe(0);
    expect(bit(idr0, 18), 'VMID16').toBe(0);
    expect(bitsOf([idr0], 25, 24), 'STALL_MODEL = terminate only').toBe(0b01);
    expect(bitsOf([idr0], 28, 27), 'ST_LEVEL = 2-level').toBe(0b01);
    // the physical SMMU has all of these (hw/smmu/features.ts defaults): the vSMMU hides them
    const hw0 = r.m.bus.read32('hyp', SMMU_BASE + O.IDR0);
    expect([bit(hw0, 0), bit(hw0, 9), bit(hw0, 10), bit(hw0, 13), bit(hw0, 18)]).toEqual([
      1, 1, 1, 1, 1,
    ]);
    // ASID16 (b12) is the hardware's
    expect(bit(idr0, 12)).toBe(bit(hw0, 12));
    // IDR1: SIDSIZE[5:0]=16, PRIQS[15:11]=0 (no PRI queue), EVENTQS[20:16] and CMDQS[25:21] at most 19, no presets [30:28]
    const idr1 = gR32(r, a, O.IDR1);
    expect(bitsOf([idr1], 5, 0)).toBe(16);
    expect(bitsOf([idr1], 15, 11)).toBe(0);
    expect(bitsOf([idr1], 20, 16)).toBe(19);
    expect(bitsOf([idr1], 25, 21)).toBe(19);
    expect(bitsOf([idr1], 30, 28)).toBe(0);
    // IDR5.OAS[2:0] = 0b101 (48 bits: the guest's IPA space)
    expect(gR32(r, a, O.IDR5) & 7).toBe(5);
    // IDR2/IDR4 RAZ; the MSI configuration registers are RES0 without IDR0.MSI
    expect([gR32(r, a, O.IDR2), gR32(r, a, O.IDR4), gR32(r, a, O.GERROR_IRQ_CFG0)]).toEqual([
      0, 0, 0,
    ]);
  });

  it('IDR0.ATS follows the policy: shown only with allowAts (and then CR0.ATSCHK is writable)', () => {
    const r = boot({ allowAts: true });
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }], false);
    expect((gR32(r, a, O.IDR0) >>> 10) & 1).toBe(1);
    gW32(r, a, O.CR0, ATSCHK);
    expect(gR32(r, a, O.CR0ACK)).toBe(ATSCHK);
  });

  it('ID registers are read-only: writes are ignored', () => {
    const r = boot();
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }], false);
    const before = [O.IDR0, O.IDR1, O.IDR5, O.AIDR].map((o) => gR32(r, a, o));
    for (const o of [O.IDR0, O.IDR1, O.IDR5, O.AIDR]) gW32(r, a, o, 0xffffffff);
    expect([O.IDR0, O.IDR1, O.IDR5, O.AIDR].map((o) => gR32(r, a, o))).toEqual(before);
    expect(a.v.ignored.readOnly).toBe(4);
  });

  it('CR0/CR0ACK: the ACK follows at once; PRIQEN and ATSCHK are RES0 without PRI and ATS (smmuv3.md §1.5)', () => {
    const r = boot();
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }], false);
    expect([gR32(r, a, O.CR0), gR32(r, a, O.CR0ACK)]).toEqual([0, 0]);
    gW32(r, a, O.CR0, CMDQEN | EVENTQEN | PRIQEN | ATSCHK);
    expect(gR32(r, a, O.CR0)).toBe(CMDQEN | EVENTQEN);
    expect(gR32(r, a, O.CR0ACK)).toBe(CMDQEN | EVENTQEN);
    gW32(r, a, O.CR0, 0);
    expect(gR32(r, a, O.CR0ACK)).toBe(0);
  });

  it('GBPA: resets with ABORT=1; a write with Update=0 is ignored; with Update=1 it takes effect and Update reads 0; while SMMUEN=0 the device follows it, confined by stage 2 (smmuv3.md §1.5)', () => {
    const r = boot();
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }], false);
    const gpu = r.m.devices.get('gpu')!;
    // ABORT[20]=1, Update[31]=0
    expect(gR32(r, a, O.GBPA)).toBe(1 << 20);
    // the physical STE: valid, Config=0b000 (abort)
    expect([steF.v(physSte(r, 9)), steF.config(physSte(r, 9))]).toEqual([1, 0]);
    expect(gpu.write(GUEST_RAM + 0x1000, new Uint8Array(4)).ok).toBe(false);
    gW32(r, a, O.GBPA, 0); // Update=0: IGNORED from SMMUv3.2
    expect(gR32(r, a, O.GBPA)).toBe(1 << 20);
    expect(steF.config(physSte(r, 9))).toBe(0);
    gW32(r, a, O.GBPA, 0x8000_0000); // Update=1, ABORT=0
    expect(gR32(r, a, O.GBPA)).toBe(0); // the update completed: Update reads 0
    // bypass of the (disabled) vSMMU = stage 2 only under the guest's VMID
    const ste = physSte(r, 9);
    expect([steF.v(ste), steF.config(ste), steF.vmid(ste)]).toEqual([1, 0b110, a.g.vmid]);
    const ok = gpu.write(GUEST_RAM + 0x1000, new Uint8Array([1, 2, 3, 4]));
    expect(ok.ok && ok.pa).toBe(VM1_PA + 0x1000);
    // an IPA outside its RAM faults at stage 2, and the fault stays with the hypervisor
    expect(gpu.write(0x7c00_0000, new Uint8Array(4)).ok).toBe(false);
    expect(a.g.stats.s2Faults).toBe(1);
  });

  it('IRQ_CTRL/IRQ_CTRLACK: the ACK follows at once; PRIQ_IRQEN is RES0 without PRI', () => {
    const r = boot();
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }], false);
    gW32(r, a, O.IRQ_CTRL, 0b111);
    expect(gR32(r, a, O.IRQ_CTRL)).toBe(0b101);
    expect(gR32(r, a, O.IRQ_CTRLACK)).toBe(0b101);
  });

  it('GERROR/GERRORN: an error toggles GERROR once; it is not toggled again while active; GERRORN = GERROR acknowledges and lets the queue go on (smmuv3.md §1.5, §4.6)', () => {
    const { r, a } = attached();
    const q = rawQueue(r, a, 0x4070_0000, 4);
    const gerrVirqs = a.g.stats.virqs.gerror;
    q.put(0, 'TLBI_S12_VMALL', { VMID: 0 }); // ILLEGAL: the vSMMU has no stage 2 (§4.6)
    q.put(1, 'CMD_SYNC');
    gW32(r, a, O.CMDQ_PROD, 2);
    expect(gR32(r, a, O.CMDQ_CONS)).toBe((CERROR_ILL << 24) | 0);
    expect(gR32(r, a, O.GERROR) & CMDQ_ERR).toBe(1);
    expect(gR32(r, a, O.GERRORN) & CMDQ_ERR).toBe(0);
    expect(a.g.stats.virqs.gerror).toBe(gerrVirqs + 1); // the driver set GERROR_IRQEN
    // while CMDQ_ERR is active nothing is consumed, whatever PROD says
    q.put(2, 'CMD_SYNC');
    gW32(r, a, O.CMDQ_PROD, 3);
    expect(gR32(r, a, O.CMDQ_CONS)).toBe((CERROR_ILL << 24) | 0);
    // the guest fixes the command (Linux writes a CMD_SYNC over it) and acknowledges
    q.put(0, 'CMD_SYNC');
    gW32(r, a, O.GERRORN, gR32(r, a, O.GERROR));
    expect(gR32(r, a, O.CMDQ_CONS)).toBe(3);
    expect((gR32(r, a, O.GERROR) ^ gR32(r, a, O.GERRORN)) & 0x1fd).toBe(0);
    expect(a.g.stats.cmdErrors).toBe(1);
  });

  it("GERROR.EVENTQ_ABT_ERR: an event-queue write that aborts (base outside the guest's RAM) activates it once; later aborts do not toggle it back (smmuv3.md §1.5, §5.4)", () => {
    const { r, a } = attached();
    gW32(r, a, O.CR0, SMMUEN | CMDQEN);
    gW64(r, a, O.EVENTQ_BASE, (1n << 62n) | 0x7000_0000n | 5n);
    gW32(r, a, O.EVENTQ_PROD, 0);
    gW32(r, a, O.EVENTQ_CONS, 0);
    gW32(r, a, O.CR0, SMMUEN | CMDQEN | EVENTQEN);
    const gpu = r.m.devices.get('gpu')!;
    gpu.write(0x1000, new Uint8Array(4)); // a stage-1 fault for the guest
    expect(gR32(r, a, O.GERROR) & EVENTQ_ABT_ERR).toBe(EVENTQ_ABT_ERR);
    gpu.write(0x2000, new Uint8Array(4));
    expect(gR32(r, a, O.GERROR) & EVENTQ_ABT_ERR).toBe(EVENTQ_ABT_ERR);
    expect(a.v.gerr.activations[2]).toBe(1);
    expect(a.g.stats.eventsLost).toBe(2);
    expect(r.m.bus.readBytes('host', 0x7000_0000, 64).every((b) => b === 0)).toBe(true);
  });

  it('guarded registers: CMDQ_BASE/CONS need CMDQEN=0, EVENTQ_BASE/PROD need EVENTQEN=0, STRTAB_BASE/CFG and CR1/CR2 need SMMUEN=0; a guarded write is IGNORED (smmuv3.md §1.5)', () => {
    const { r, a } = attached();
    const before = {
      cmdqBase: gR64(r, a, O.CMDQ_BASE),
      evtqBase: gR64(r, a, O.EVENTQ_BASE),
      strtab: gR64(r, a, O.STRTAB_BASE),
      cfg: gR32(r, a, O.STRTAB_BASE_CFG),
      cr1: gR32(r, a, O.CR1),
      cr2: gR32(r, a, O.CR2),
      evtqProd: gR32(r, a, O.EVENTQ_PROD),
    };
    gW64(r, a, O.CMDQ_BASE, 0x7c00_0013n);
    gW32(r, a, O.CMDQ_CONS, 0x55);
    gW64(r, a, O.EVENTQ_BASE, 0x7c00_0013n);
    gW32(r, a, O.EVENTQ_PROD, 0x55);
    gW64(r, a, O.STRTAB_BASE, 0x7c00_0000n);
    gW32(r, a, O.STRTAB_BASE_CFG, 0x10);
    gW32(r, a, O.CR1, 0);
    gW32(r, a, O.CR2, 0);
    expect({
      cmdqBase: gR64(r, a, O.CMDQ_BASE),
      evtqBase: gR64(r, a, O.EVENTQ_BASE),
      strtab: gR64(r, a, O.STRTAB_BASE),
      cfg: gR32(r, a, O.STRTAB_BASE_CFG),
      cr1: gR32(r, a, O.CR1),
      cr2: gR32(r, a, O.CR2),
      evtqProd: gR32(r, a, O.EVENTQ_PROD),
    }).toEqual(before);
    expect(gR32(r, a, O.CMDQ_CONS) & 0xfffff).not.toBe(0x55);
    // 64-bit writes count once, 32-bit ones once each
    expect(a.v.ignored.guarded).toBe(8);
    // once the enable is off (and acknowledged) the same writes are taken
    gW32(r, a, O.CR0, 0);
    gW64(r, a, O.CMDQ_BASE, 0x4070_0004n);
    gW64(r, a, O.STRTAB_BASE, 0x4060_0000n);
    gW32(r, a, O.CR2, 0);
    expect([gR64(r, a, O.CMDQ_BASE), gR64(r, a, O.STRTAB_BASE), gR32(r, a, O.CR2)]).toEqual([
      0x4070_0004n,
      0x4060_0000n,
      0,
    ]);
  });
});

// ---- the command budget -------------------------------------------------------------------------

describe('the command budget per trap, and its continuation', () => {
  it('the default budget is 256 guest commands per trap (policy guestCmdBudget)', () => {
    expect(makePolicy('pkvm').guestCmdBudget).toBe(256);
    const { r, a } = attached();
    const q = rawQueue(r, a, 0x4000_0000, 10);
    for (let i = 0; i < 300; i++) q.put(i, 'PREFETCH_CONFIG', { StreamID: 0 });
    gW32(r, a, O.CMDQ_PROD, 300);
    expect(a.v.cmdq.cons).toBe(256); // the PROD-write trap stopped at the budget
    expect(gR32(r, a, O.CMDQ_CONS)).toBe(300); // the CONS poll (a trap) continued with the rest
  });

  it('a trap consumes at most N commands; each later trap (any vSMMU access) continues with at most N more', () => {
    const N = 10;
    const { r, a } = attached({ budget: N });
    const q = rawQueue(r, a, 0x4070_0000, 6);
    for (let i = 0; i < 25; i++) q.put(i, 'PREFETCH_CONFIG', { StreamID: 0 });
    const cmds0 = a.g.stats.commands,
      stops0 = a.g.stats.budgetStops;
    gW32(r, a, O.CMDQ_PROD, 25);
    // the hypervisor's state, looked at without another trap
    expect(a.v.cmdq.cons).toBe(10);
    expect(a.v.pending).toBe(true);
    expect(a.g.stats.budgetStops - stops0).toBe(1);
    gR32(r, a, O.IDR0); // any trap continues
    expect(a.v.cmdq.cons).toBe(20);
    expect(gR32(r, a, O.CMDQ_CONS)).toBe(25); // this one consumes the last 5 before answering
    expect(a.v.pending).toBe(false);
    expect(a.g.stats.budgetStops - stops0).toBe(2);
    expect(a.g.stats.commands - cmds0).toBe(25);
  });

  it('the physical work of one trap is bounded by the budget too: N forwarded TLBIs and one CMD_SYNC per trap', () => {
    const N = 8;
    const { r, a } = attached({ budget: N });
    const q = rawQueue(r, a, 0x4070_0000, 6);
    for (let i = 0; i < 20; i++) q.put(i, 'TLBI_NH_ASID', { ASID: 1 });
    q.put(20, 'CMD_SYNC');
    const perTrap: number[] = [];
    let from = r.phys.length;
    gW32(r, a, O.CMDQ_PROD, 21);
    for (let t = 0; t < 4; t++) {
      perTrap.push(physSince(r, from).length);
      from = r.phys.length;
      gR32(r, a, O.IDR0);
    }
    // 8 TLBIs + the staged batch's CMD_SYNC, twice; then 4 TLBIs + the guest's CMD_SYNC → one physical CMD_SYNC; then nothing
    expect(perTrap).toEqual([N + 1, N + 1, 4 + 1, 0]);
    expect(a.v.cmdq.cons).toBe(21);
  });
});

// ---- guest commands → physical commands ----------------------------------------------------------

describe("guest commands become physical commands for the guest's device, VMID and pSID", () => {
  it("TLBI_NH_VA and TLBI_NH_ASID are forwarded with the guest's VMID (a VMID the guest writes is replaced), the other fields kept", () => {
    const { r, a } = attached();
    const from = r.phys.length;
    a.k.drv.issue([
      ['TLBI_NH_VA', { VMID: 0, ASID: 3, Address: 0x1234, Leaf: 1 }],
      ['TLBI_NH_ASID', { VMID: 7, ASID: 4 }],
      ['TLBI_NH_ALL', { VMID: 0 }],
    ]);
    const p = physSince(r, from);
    expect(p.map(cmd.op)).toEqual([
      OPC.TLBI_NH_VA,
      OPC.TLBI_NH_ASID,
      OPC.TLBI_NH_ALL,
      OPC.CMD_SYNC,
    ]);
    expect(p.slice(0, 3).map(cmd.vmid)).toEqual([a.g.vmid, a.g.vmid, a.g.vmid]);
    expect(a.g.vmid).toBe(1);
    expect([cmd.asid(p[0]!), cmd.va(p[0]!), cmd.leaf(p[0]!), cmd.asid(p[1]!)]).toEqual([
      3,
      0x1234 * 4096,
      1,
      4,
    ]);
  });

  it("TLBI_NSNH_ALL (everything the guest sees) becomes TLBI_S12_VMALL of the guest's VMID, never a physical TLBI_NSNH_ALL", () => {
    const { r, a } = attached();
    const from = r.phys.length;
    a.k.drv.issue([['TLBI_NSNH_ALL']]);
    const p = physSince(r, from, true);
    expect(p.map(cmd.op)).toEqual([OPC.TLBI_S12_VMALL]);
    expect(cmd.vmid(p[0]!)).toBe(a.g.vmid);
  });

  it('CFGI_CD and CFGI_CD_ALL are forwarded for the pSID behind the vSID, SubstreamID and Leaf kept', () => {
    const { r, a } = attached();
    const from = r.phys.length;
    a.k.drv.issue([
      ['CFGI_CD', { StreamID: 0, SubstreamID: 5, Leaf: 1 }],
      ['CFGI_CD_ALL', { StreamID: 0 }],
    ]);
    const p = physSince(r, from, true);
    expect(p.map(cmd.op)).toEqual([OPC.CFGI_CD, OPC.CFGI_CD_ALL]);
    expect(p.map(cmd.sid)).toEqual([9, 9]);
    expect([cmd.ssid(p[0]!), cmd.leaf(p[0]!)]).toEqual([5, 1]);
  });

  it('a batch of guest commands ending in one CMD_SYNC reaches the hardware with one physical CMD_SYNC', () => {
    const { r, a } = attached();
    const from = r.phys.length;
    a.k.drv.issue(
      Array.from(
        { length: 12 },
        (_, i) => ['TLBI_NH_VA', { ASID: 1, Address: i, Leaf: 1 }] as const,
      ),
    );
    const p = physSince(r, from);
    expect(p.filter((w) => cmd.op(w) === OPC.TLBI_NH_VA)).toHaveLength(12);
    expect(p.filter((w) => cmd.op(w) === OPC.CMD_SYNC)).toHaveLength(1);
    expect(cmd.op(p.at(-1)!)).toBe(OPC.CMD_SYNC);
  });

  it('CFGI_STE for a vSID the guest does not have: C_BAD_STREAMID with that vSID in its event queue, and no physical command', () => {
    const { r, a } = attached();
    const from = r.phys.length;
    const ste16 = physSte(r, 16);
    a.k.drv.issue([
      ['CFGI_STE', { StreamID: 16, Leaf: 1 }],
      ['CFGI_CD', { StreamID: 3, SubstreamID: 0, Leaf: 1 }],
    ]);
    expect(physSince(r, from)).toEqual([]);
    expect(physSte(r, 16)).toEqual(ste16);
    const ev = guestEvents(r, a);
    expect(ev.map((w) => w[0]! & 0xff)).toEqual([EV.C_BAD_STREAMID, EV.C_BAD_STREAMID]);
    expect(ev.map((w) => w[1])).toEqual([16, 3]);
  });
});

// ---- CMD_SYNC against a stopped physical queue ------------------------------------------------------

/** The host stops the physical command queue: an illegal command (TLBI_EL3_ALL, §4.6) it does not acknowledge. */
function wedgePhysicalQueue(r: Rig): void {
  const q = r.drv.cmdq;
  const mask = 2 ** (q.log2size + 1) - 1;
  r.m.bus.writeWords(
    'host',
    q.base + (q.prod % 2 ** q.log2size) * 16,
    encodeCommand('TLBI_EL3_ALL'),
    4,
  );
  q.prod = (q.prod + 1) & mask;
  r.m.bus.write32('host', SMMU_BASE + O.CMDQ_PROD, q.prod);
  expect(r.m.bus.read32('host', SMMU_BASE + O.GERROR) & CMDQ_ERR).toBe(1);
}
const hostAck = (r: Rig): void =>
  r.m.bus.write32('host', SMMU_BASE + O.GERRORN, r.m.bus.read32('host', SMMU_BASE + O.GERROR));

describe('a guest CMD_SYNC completes only after the physical one', () => {
  it("while the host has stopped the physical queue, the guest's CMD_SYNC waits (CONS stays at it, no error shown to the guest); after the host's ack it completes and the TLBI reaches the hardware with the guest's VMID", () => {
    const { r, a } = attached();
    wedgePhysicalQueue(r);
    const q = rawQueue(r, a, 0x4070_0000, 4);
    q.put(0, 'TLBI_NH_ASID', { ASID: 1 });
    q.put(1, 'CMD_SYNC');
    const from = r.phys.length;
    gW32(r, a, O.CMDQ_PROD, 2);
    for (let i = 0; i < 3; i++) {
      // CONS = 1: the TLBI was consumed, the CMD_SYNC (index 1) has not completed
      expect(gR32(r, a, O.CMDQ_CONS)).toBe(1);
      expect(gR32(r, a, O.GERROR) & CMDQ_ERR).toBe(0);
    }
    expect(physSince(r, from)).toEqual([]); // the hardware has consumed nothing
    hostAck(r);
    expect(gR32(r, a, O.CMDQ_CONS)).toBe(2);
    const tlbi = physSince(r, from).filter((w) => cmd.op(w) === OPC.TLBI_NH_ASID);
    expect(tlbi.length).toBeGreaterThan(0);
    expect(tlbi.every((w) => cmd.vmid(w) === a.g.vmid && cmd.asid(w) === 1)).toBe(true);
  });

  // Regression (found by the guest tests in hyp/vm/vsmmu.ts flushStaged / sync, hyp/smmuv3/shadowq.ts issueAndSync, fixed): a failed issueAndSync
  // leaves its commands and CMD_SYNC in the shadow queue, and the vSMMU keeps them staged and
  // appends them again on the next attempt: two attempts per trap (kick's CMD_SYNC, then the
  // end-of-trap flush). After the host's ack the hardware executes every copy (here the one
  // guest TLBI 9 times, with 9 physical CMD_SYNCs for one guest CMD_SYNC), and a guest that
  // keeps polling fills the 4096-slot shadow queue while it is stopped.
  it("a waiting guest CMD_SYNC is issued once: after the host's ack the hardware sees the guest's TLBI once", () => {
    const { r, a } = attached();
    wedgePhysicalQueue(r);
    const q = rawQueue(r, a, 0x4070_0000, 4);
    q.put(0, 'TLBI_NH_ASID', { ASID: 1 });
    q.put(1, 'CMD_SYNC');
    const from = r.phys.length;
    gW32(r, a, O.CMDQ_PROD, 2);
    for (let i = 0; i < 3; i++) gR32(r, a, O.CMDQ_CONS);
    hostAck(r);
    expect(gR32(r, a, O.CMDQ_CONS)).toBe(2);
    const after = physSince(r, from).filter(
      (w) => cmd.op(w) !== 0x18 /* the host's TLBI_EL3_ALL slot, patched */,
    );
    expect(after.filter((w) => cmd.op(w) === OPC.TLBI_NH_ASID)).toHaveLength(1);
  });
});

// ---- events -----------------------------------------------------------------------------------------

describe('event routing', () => {
  it("a stage-1 fault of the guest's device is copied into its event queue with the vSID; the physical record has the pSID", () => {
    const r = boot();
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 7, psid: 9 }]);
    a.k.dma.attachDefault(7, { ssidBits: 0 });
    const virqs = a.g.stats.virqs.eventq;
    const out = r.m.devices.get('gpu')!.write(0x1000, new Uint8Array(4));
    expect(out.ok).toBe(false);
    expect(r.m.smmu.evtq.log.at(-1)).toMatchObject({ type: 'F_TRANSLATION', sid: 9 });
    const ev = guestEvents(r, a);
    expect(ev).toHaveLength(1);
    // DW0: event number [7:0], StreamID [63:32]; DW1 S2 [39] = 0 (stage 1); DW2 InputAddr
    expect([ev[0]![0]! & 0xff, ev[0]![1], bitsOf(ev[0]!, 39, 39), ev[0]![4]]).toEqual([
      EV.F_TRANSLATION,
      7,
      0,
      0x1000,
    ]);
    expect(a.g.stats.eventsInjected).toBe(1);
    expect(a.g.stats.virqs.eventq).toBe(virqs + 1);
  });

  it("a stage-2 fault of the guest's device (its stage 1 maps an IPA it does not own) stays with the hypervisor", () => {
    const { r, a } = attached();
    const iova = a.k.dma.map(0, 0x7c00_0000, 4096, 'bidirectional');
    const kept = r.hyp.hypStats().guestFaultsKept;
    expect(r.m.devices.get('gpu')!.write(iova, new Uint8Array(4)).ok).toBe(false);
    expect(r.m.smmu.evtq.log.at(-1)).toMatchObject({
      type: 'F_TRANSLATION',
      sid: 9,
      fields: { S2: 1, CLASS: 2 },
    });
    expect(guestEvents(r, a)).toEqual([]);
    expect(a.g.stats.s2Faults).toBe(1);
    expect(r.hyp.hypStats().guestFaultsKept).toBe(kept + 1);
  });

  it('a fault of a host device never reaches a guest', () => {
    const { r, a } = attached();
    r.dma.attachDefault(8, { ssidBits: 0 });
    expect(r.m.devices.get('nic')!.write(0x1000, new Uint8Array(4)).ok).toBe(false);
    expect(r.m.smmu.evtq.log.at(-1)).toMatchObject({ type: 'F_TRANSLATION', sid: 8 });
    expect(guestEvents(r, a)).toEqual([]);
    expect(a.g.stats.eventsInjected + a.g.stats.s2Faults).toBe(0);
  });

  it("C_BAD_CD of the guest's own CD (V=0 after CFGI_CD) reaches it with the vSID", () => {
    const { r, a } = attached();
    const steIpa = a.k.drv.steAddr(0);
    const cdIpa = steF.s1ctx(gMemRead(r, a, steIpa, 16));
    const cd = gMemRead(r, a, cdIpa, 16);
    cd[0] = cd[0]! & ~(1 << 31); // CD.V = DW0[31]
    gMemWrite(r, a, cdIpa, cd);
    a.k.drv.issue([['CFGI_CD', { StreamID: 0, SubstreamID: 0, Leaf: 1 }]]);
    expect(r.m.devices.get('gpu')!.write(0x1000, new Uint8Array(4)).ok).toBe(false);
    expect(guestEvents(r, a).map((w) => [w[0]! & 0xff, w[1]])).toEqual([[EV.C_BAD_CD, 0]]);
  });

  // BUG (hyp/pkvm.ts routeEvent, the `switch (num)` list of guest events): F_STREAM_DISABLED
  // (0x06) is a configuration error of the guest's own STE (S1CDMax > 0 with S1DSS=0b00 and a
  // transaction without a SubstreamID, smmuv3.md §2.3), but it is not in the list, so the
  // hypervisor keeps it and the guest never learns why its device's DMA was terminated (C_BAD_CD
  // and C_BAD_SUBSTREAMID of the same kind are forwarded).
  it("F_STREAM_DISABLED caused by the guest's STE (S1CDMax=1, S1DSS=terminate) reaches the guest with the vSID", () => {
    const { r, a } = attached();
    const steIpa = a.k.drv.steAddr(0);
    const ste = gMemRead(r, a, steIpa, 16);
    ste[1] = (ste[1]! & ~(0x1f << 27)) | (1 << 27); // S1CDMax = DW0[63:59] = 1
    ste[2] = ste[2]! & ~3; // S1DSS = DW1[1:0] = 0b00 (terminate)
    gMemWrite(r, a, steIpa, ste);
    a.k.drv.issue([['CFGI_STE', { StreamID: 0, Leaf: 1 }]]);
    const out = r.m.devices.get('gpu')!.write(0x1000, new Uint8Array(4));
    expect(out.ok).toBe(false);
    expect(r.m.smmu.evtq.log.at(-1)).toMatchObject({ type: 'F_STREAM_DISABLED', sid: 9 });
    expect(guestEvents(r, a).map((w) => [w[0]! & 0xff, w[1]])).toEqual([[EV.F_STREAM_DISABLED, 0]]);
  });

  it("two guests: each gets its own VMID, its devices' physical STEs carry it with its own stage-2, and its TLBIs carry it", () => {
    const r = boot();
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }]);
    const b = vm(r, 'vm2', VM2_PA, [{ vsid: 0, psid: 16 }]);
    a.k.dma.attachDefault(0, { ssidBits: 0 });
    b.k.dma.attachDefault(0, { ssidBits: 0 });
    expect([a.g.vmid, b.g.vmid]).toEqual([1, 2]);
    const [s9, s16] = [physSte(r, 9), physSte(r, 16)];
    expect([steF.config(s9), steF.vmid(s9), steF.config(s16), steF.vmid(s16)]).toEqual([
      0b111, 1, 0b111, 2,
    ]);
    expect(steF.s2ttb(s9)).not.toBe(steF.s2ttb(s16));
    const from = r.phys.length;
    b.k.drv.issue([['TLBI_NH_ASID', { ASID: 1 }]]);
    expect(physSince(r, from, true).map(cmd.vmid)).toEqual([2]);
    // the same vSID 0 in both guests names different devices
    const ia = a.k.dma.map(0, GUEST_RAM + 0x1000, 4096, 'bidirectional');
    const ib = b.k.dma.map(0, GUEST_RAM + 0x1000, 4096, 'bidirectional');
    const oa = r.m.devices.get('gpu')!.write(ia, new Uint8Array(4));
    const ob = r.m.devices.get('disk')!.write(ib, new Uint8Array(4));
    expect([oa.ok && oa.pa, ob.ok && ob.pa]).toEqual([VM1_PA + 0x1000, VM2_PA + 0x1000]);
  });
});

// ---- the guest's stream table ---------------------------------------------------------------------

describe("the vSMMU reads the guest's stream table as the hardware reads its own", () => {
  const BYPASS = [0b1001, 0]; // STE DW0: V=1, Config=0b100
  /** a guest without a kernel (vSID `vsid` → pSID 9): write its tables, then SMMUEN 0→1 makes the vSMMU read every STE */
  function enableWith(
    vsid: number,
    strtabBase: number,
    cfg: number,
    tables: Array<[number, number[]]>,
  ): { r: Rig; a: Vm } {
    const r = boot();
    const a = vm(r, 'vm1', VM1_PA, [{ vsid, psid: 9 }], false);
    for (const [ipa, w] of tables) gMemWrite(r, a, ipa, w);
    gW64(r, a, O.STRTAB_BASE, BigInt(strtabBase));
    gW32(r, a, O.STRTAB_BASE_CFG, cfg);
    gW32(r, a, O.CR0, SMMUEN);
    return { r, a };
  }
  // STRTAB_BASE_CFG (smmuv3.md §1.6): LOG2SIZE[5:0], SPLIT[10:6], FMT[17:16]
  const cfgOf = (fmt: number, split: number, log2: number) => (fmt << 16) | (split << 6) | log2;
  const l1 = (l2: number, span: number) => [(l2 | span) >>> 0, 0];

  it('linear: the STE of vSID n is at base + 64n; a vSID at or above 2^LOG2SIZE has none', () => {
    const A = 0x4060_0000;
    const { r } = enableWith(3, A, cfgOf(0, 0, 6), [[A + 3 * 64, BYPASS]]);
    // bypass of the guest's stage 1 = stage 2 only under its VMID
    expect([steF.v(physSte(r, 9)), steF.config(physSte(r, 9)), steF.vmid(physSte(r, 9))]).toEqual([
      1, 0b110, 1,
    ]);
    const out = enableWith(70, A, cfgOf(0, 0, 6), [[A + 6 * 64, BYPASS]]);
    expect(steF.v(physSte(out.r, 9))).toBe(0);
  });

  it('2-level with SPLIT=6: L1 index = vSID >> 6, L2 index = vSID & 63', () => {
    const A = 0x4060_0000,
      B = 0x4061_0000;
    const { r } = enableWith(65, A, cfgOf(1, 6, 16), [
      [A + 1 * 8, l1(B, 7)],
      [B + 1 * 64, BYPASS],
    ]);
    expect(steF.config(physSte(r, 9))).toBe(0b110);
  });

  // Regression (found by the guest tests in hyp/vm/vsmmu.ts readGuestSte, fixed): STRTAB_BASE_CFG.SPLIT values other than 6, 8 and 10 are
  // reserved and behave as 6 (smmuv3.md §1.6; hw/smmu/strtab.ts does so), but the vSMMU uses
  // the raw value, so with SPLIT=7 it looks for vSID 65 in L1[0] instead of L1[1].
  it('a reserved SPLIT (7) behaves as 6, as on the hardware', () => {
    const A = 0x4060_0000,
      B = 0x4061_0000;
    const { r } = enableWith(65, A, cfgOf(1, 7, 16), [
      [A + 1 * 8, l1(B, 7)],
      [B + 1 * 64, BYPASS],
    ]);
    expect(steF.config(physSte(r, 9))).toBe(0b110);
  });

  // Regression (found by the guest tests in hyp/vm/vsmmu.ts readGuestSte, fixed): the effective STRTAB_BASE is aligned to the (first-level)
  // table size (smmuv3.md §1.6; hw/smmu/strtab.ts strtabGeometry), but the vSMMU only clears
  // ADDR[5:0]: a base 0x40 past a 2 KiB-aligned L1 table makes it read L1[8] for vSID 0.
  it('an unaligned STRTAB_BASE is taken as aligned to the L1 table size', () => {
    const A = 0x4060_0000,
      B = 0x4061_0000;
    const { r } = enableWith(0, A + 0x40, cfgOf(1, 8, 16), [
      [A, l1(B, 9)],
      [B, BYPASS],
    ]);
    expect(steF.config(physSte(r, 9))).toBe(0b110);
  });
});
