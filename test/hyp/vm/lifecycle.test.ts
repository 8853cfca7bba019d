/**
 * Guests as the hypervisor builds and destroys them (hyp/pkvm.ts createGuest/destroyGuest,
 * designs.md §3.5 and §3.7): refusals that change nothing, VMIDs, the 'sid-owner' rule that
 * keeps the host away from a guest's StreamIDs, and the teardown order ('guest-teardown'):
 * devices abort, TLBI_S12_VMALL + CMD_SYNC, and only then is the memory scrubbed and returned.
 * The isolation oracle (scenarios/check/oracle.ts) judges every state from the hardware alone.
 */
import { describe, expect, it } from 'vitest';
import { CpuAbortError } from '../../../hw/bus.ts';
import { GuestError, TEARDOWN_PHASES, type TeardownPhase } from '../../../hyp/pkvm.ts';
import { HypPanic } from '../../../hyp/policy/failure.ts';
import { IsolationOracle } from '../../../scenarios/check/oracle.ts';
import {
  GUEST_RAM,
  GUEST_SIZE,
  OPC,
  VM1_PA,
  VM2_PA,
  boot,
  cmd,
  physSince,
  physSte,
  steF,
  vm,
  type Rig,
} from '../../guest/rig.ts';

const PAGE = 4096;

function oracle(r: Rig): IsolationOracle {
  const o = new IsolationOracle(r.m, {
    protectedRanges: () => r.hyp.protectedRanges(),
    rangesFor: (name) => r.hyp.rangesForSid(r.m.devices.get(name)!.sid),
  });
  o.attach();
  return o;
}

/** what a refused createGuest must leave as it was */
function snapshot(r: Rig): unknown {
  return {
    guests: [...r.hyp.guests.keys()],
    vsmmus: [...r.hyp.vsmmus.keys()],
    sidOwner: [...r.hyp.sidOwner].map(([p, g]) => [p, g.name]),
    history: r.hyp.guestHistory.length,
    ownership: r.hyp.own.summary(),
    transitions: { ...r.hyp.own.counts },
    pool: r.hyp.pool.pagesInUse,
    stes: [8, 9, 16].map((s) => Array.from(physSte(r, s))),
    hwCommands: r.phys.length,
  };
}

describe('createGuest', () => {
  it('every refusal throws GuestError and changes nothing: not even a VMID is used up', () => {
    const r = boot();
    r.dma.attachDefault(8, { ssidBits: 0 });
    vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }]);
    const before = snapshot(r);
    const mem = { base: VM2_PA, size: GUEST_SIZE };
    const bad: Array<[string, Parameters<typeof r.hyp.createGuest>[0]]> = [
      ['name taken', { name: 'vm1', memory: mem, devices: [{ vsid: 0, psid: 16 }] }],
      ['bad name', { name: 'vm 2', memory: mem, devices: [{ vsid: 0, psid: 16 }] }],
      [
        'pSID already assigned to vm1',
        { name: 'vm2', memory: mem, devices: [{ vsid: 0, psid: 9 }] },
      ],
      [
        'pSID beyond the 16-bit SIDSIZE',
        { name: 'vm2', memory: mem, devices: [{ vsid: 0, psid: 0x1_0000 }] },
      ],
      [
        'vSID beyond 16 bits',
        { name: 'vm2', memory: mem, devices: [{ vsid: 0x1_0000, psid: 16 }] },
      ],
      [
        'vSID twice',
        {
          name: 'vm2',
          memory: mem,
          devices: [
            { vsid: 0, psid: 16 },
            { vsid: 0, psid: 17 },
          ],
        },
      ],
      [
        'pSID twice',
        {
          name: 'vm2',
          memory: mem,
          devices: [
            { vsid: 0, psid: 16 },
            { vsid: 1, psid: 16 },
          ],
        },
      ],
      ['no device', { name: 'vm2', memory: mem, devices: [] }],
      [
        'memory not page aligned',
        {
          name: 'vm2',
          memory: { base: VM2_PA + 0x800, size: GUEST_SIZE },
          devices: [{ vsid: 0, psid: 16 }],
        },
      ],
      [
        'memory not RAM',
        {
          name: 'vm2',
          memory: { base: 0x1000_0000, size: GUEST_SIZE },
          devices: [{ vsid: 0, psid: 16 }],
        },
      ],
      [
        'memory of the hypervisor',
        {
          name: 'vm2',
          memory: { base: 0x7c00_0000, size: GUEST_SIZE },
          devices: [{ vsid: 0, psid: 16 }],
        },
      ],
      [
        'memory of vm1',
        {
          name: 'vm2',
          memory: { base: VM1_PA + GUEST_SIZE / 2, size: GUEST_SIZE },
          devices: [{ vsid: 0, psid: 16 }],
        },
      ],
      [
        "the host's command queue (shared with and pinned by the hypervisor)",
        {
          name: 'vm2',
          memory: { base: r.drv.cmdq.base, size: GUEST_SIZE },
          devices: [{ vsid: 0, psid: 16 }],
        },
      ],
    ];
    for (const [why, spec] of bad) {
      expect(() => r.hyp.createGuest(spec), why).toThrow(GuestError);
      expect(snapshot(r), why).toEqual(before);
    }
    // the next guest gets the next VMID (2): the refusals took none
    expect(vm(r, 'vm2', VM2_PA, [{ vsid: 0, psid: 16 }], false).g.vmid).toBe(2);
  });

  it("a new guest's devices abort at once (GBPA.ABORT=1 at the vSMMU's reset) and its memory leaves the host", () => {
    const r = boot();
    r.dma.attachDefault(9, { ssidBits: 0 }); // the host had the gpu
    expect(steF.config(physSte(r, 9))).toBe(0b111);
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }], false);
    expect([steF.v(physSte(r, 9)), steF.config(physSte(r, 9))]).toEqual([1, 0]);
    expect(r.hyp.own.state(VM1_PA).owner).toBe(a.actor);
    expect(() => r.m.bus.read32('host', VM1_PA)).toThrow(CpuAbortError);
    expect(r.m.bus.read32(a.actor, GUEST_RAM)).toBe(0);
  });
});

describe("the host and a guest's StreamIDs (rule sid-owner)", () => {
  it("the host's CFGI_STE for a guest-owned pSID is refused (CERROR_ILL to the host, which recovers) and the guest's physical STE stays", () => {
    const r = boot({ failure: 'reject' });
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }]);
    a.k.dma.attachDefault(0, { ssidBits: 0 });
    const ste = Array.from(physSte(r, 9));
    const rec = r.drv.cmdq.stats.errorsRecovered;
    r.dma.attachDefault(9, { ssidBits: 0 }); // the host driver writes its STE for SID 9 and issues CFGI_STE
    expect(r.hyp.failures.byRule['sid-owner']).toBeGreaterThanOrEqual(1);
    expect(r.drv.cmdq.stats.errorsRecovered).toBeGreaterThan(rec);
    expect(Array.from(physSte(r, 9))).toEqual(ste);
    expect([steF.config(physSte(r, 9)), steF.vmid(physSte(r, 9))]).toEqual([0b111, a.g.vmid]);
    expect(oracle(r).check().ok).toBe(true);
  });

  it("under the panic policy the same CFGI_STE stops the machine (pKVM's fatal WARN)", () => {
    const r = boot({ failure: 'panic' });
    vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }], false);
    expect(() => r.dma.attachDefault(9, { ssidBits: 0 })).toThrow(HypPanic);
    expect(r.hyp.panicked?.rule).toBe('sid-owner');
  });

  it("with sid-owner weakened the host takes the guest's device: it gets the host's STE (VMID 0, the idmap) and the oracle sees it reach host memory", () => {
    const r = boot({ weaken: ['sid-owner'] });
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }]);
    a.k.dma.attachDefault(0, { ssidBits: 0 });
    const o = oracle(r);
    expect(o.check().ok).toBe(true);
    r.dma.attachDefault(9, { ssidBits: 0 });
    expect(steF.vmid(physSte(r, 9))).toBe(0);
    const rep = o.check();
    expect(rep.ok).toBe(false);
    expect(rep.breaches.some((b) => b.device === 'gpu' && b.owner === 'not guest:vm1')).toBe(true);
  });
});

describe('memory of a running guest', () => {
  it("the host cannot donate or share the guest's pages again", () => {
    const r = boot();
    vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }], false);
    expect(() => r.hyp.donate(VM1_PA, PAGE, 'hyp')).toThrow();
    expect(() => r.hyp.share(VM1_PA, PAGE, 'hyp')).toThrow();
    expect(r.hyp.own.state(VM1_PA).owner).toBe('guest:vm1');
  });

  // Regression (found by the guest tests in hyp/pkvm.ts PkvmHyp.reclaim, ~line 276, fixed): the host may reclaim pages "from guest:vm1"
  // while vm1 runs. The pages become host-owned (and host-mapped in the idmap) but stay mapped
  // in vm1's stage-2, used by both vm1's vCPU and its device's nested STE, with no invalidation:
  // vm1 writes at IPA 0x4000_0000 and the host reads it at PA 0x6000_0000, and the oracle finds
  // vm1's gpu reaching host pages. Only destroyGuest should return a guest's memory.
  it('the host cannot reclaim a page of a running guest (only its teardown returns memory)', () => {
    const r = boot();
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }]);
    a.k.dma.attachDefault(0, { ssidBits: 0 });
    a.k.dma.map(0, GUEST_RAM + 0x1000, PAGE, 'bidirectional');
    const o = oracle(r);
    let refused = false;
    try {
      r.hyp.reclaim(VM1_PA, PAGE, 'guest:vm1');
    } catch {
      refused = true;
    }
    expect(o.check().ok).toBe(true);
    expect(refused).toBe(true);
  });
});

describe('destroyGuest', () => {
  interface Seen {
    phase: TeardownPhase;
    dma: number | false;
    owner: string;
    config: number;
    tlbi: boolean;
    isolation: boolean;
  }

  function teardown(weaken: boolean): { r: Rig; seen: Seen[]; data: number[] } {
    const r = boot(weaken ? { weaken: ['guest-teardown'] } : {});
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }]);
    a.k.dma.attachDefault(0, { ssidBits: 0 });
    const iova = a.k.dma.map(0, GUEST_RAM + 0x1000, PAGE, 'bidirectional');
    const gpu = r.m.devices.get('gpu')!;
    const first = gpu.write(iova, new Uint8Array([0x5a, 0x5a, 0x5a, 0x5a]));
    expect(first.ok && first.pa).toBe(VM1_PA + 0x1000);
    const o = oracle(r);
    const from = r.phys.length;
    const seen: Seen[] = [];
    let data: number[] = [];
    r.hyp.destroyGuest('vm1', (phase) => {
      // the oracle first (the DMA below refills the IOTLB), then the device tries again
      const isolation = o.check().ok;
      if (phase === 'memory-returned')
        data = Array.from(r.m.bus.readBytes('hyp', VM1_PA + 0x1000, 4));
      const out = gpu.read(iova, 4);
      seen.push({
        phase,
        dma: out.ok ? out.pa : false,
        owner: r.hyp.own.state(VM1_PA + 0x1000).owner,
        config: steF.config(physSte(r, 9)),
        tlbi: physSince(r, from).some((w) => cmd.op(w) === OPC.TLBI_S12_VMALL && cmd.vmid(w) === 1),
        isolation,
      });
    });
    return { r, seen, data };
  }

  it('the order: devices stopped → STEs abort → TLBI_S12_VMALL(VMID) + CMD_SYNC → memory scrubbed and returned last; isolation holds at every phase', () => {
    const { r, seen, data } = teardown(false);
    expect(seen.map((s) => s.phase)).toEqual([...TEARDOWN_PHASES]);
    expect(seen).toEqual([
      // the vCPU is stopped; the device still translates into vm1's own page
      {
        phase: 'stopped',
        dma: VM1_PA + 0x1000,
        owner: 'guest:vm1',
        config: 0b111,
        tlbi: false,
        isolation: true,
      },
      // CFGI_STE + CMD_SYNC: the STE aborts (Config=0b000), the memory is still vm1's
      {
        phase: 'ste-abort',
        dma: false,
        owner: 'guest:vm1',
        config: 0,
        tlbi: false,
        isolation: true,
      },
      { phase: 'tlbi', dma: false, owner: 'guest:vm1', config: 0, tlbi: true, isolation: true },
      {
        phase: 'memory-returned',
        dma: false,
        owner: 'host',
        config: 0,
        tlbi: true,
        isolation: true,
      },
    ]);
    // scrubbed before the host gets it back
    expect(data).toEqual([0, 0, 0, 0]);
    expect(r.m.bus.read32('host', VM1_PA + 0x1000)).toBe(0);
    // the guest is gone: its vCPU aborts, its StreamID is the host's again (no sid-owner refusal)
    expect(() => r.m.bus.read32('guest:vm1', GUEST_RAM)).toThrow(CpuAbortError);
    expect(r.hyp.sidOwner.has(9)).toBe(false);
    r.dma.attachDefault(9, { ssidBits: 0 });
    expect(r.hyp.failures.byRule['sid-owner'] ?? 0).toBe(0);
    expect(steF.vmid(physSte(r, 9))).toBe(0);
  });

  it("with guest-teardown weakened the memory returns first, while the device still translates through the guest's tables: the oracle finds the breach", () => {
    const { seen } = teardown(true);
    expect(seen.map((s) => s.phase)).toEqual(['stopped', 'memory-returned', 'ste-abort', 'tlbi']);
    const early = seen[1]!;
    expect(early.isolation).toBe(false);
    // and the device does write into what is now a host page
    expect(early.dma).toBe(VM1_PA + 0x1000);
    expect(early.owner).toBe('host');
    expect(seen[3]!.isolation).toBe(true);
  });

  it("a destroyed guest's VMID is reused only after its TLBI_S12_VMALL", () => {
    const r = boot();
    vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }]);
    const from = r.phys.length;
    r.hyp.destroyGuest('vm1');
    expect(
      physSince(r, from).some((w) => cmd.op(w) === OPC.TLBI_S12_VMALL && cmd.vmid(w) === 1),
    ).toBe(true);
    const c = vm(r, 'vm3', VM1_PA, [{ vsid: 0, psid: 9 }]);
    expect(c.g.vmid).toBe(1);
    expect(() => r.hyp.destroyGuest('vm1')).toThrow(GuestError);
  });
});
