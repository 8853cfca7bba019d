/**
 * The `pkvm-wp` design (steShadowing 'trap-writes', hyp/smmuv3/ste-shadow-wp.ts): the host
 * stream table is write-protected in the host CPU stage-2, each host store to it is trapped,
 * emulated and reshadowed, and CFGI_STE is only checked and forwarded. Everything runs the
 * unchanged host driver (ArmSmmuV3 probe, DomainManager attach), and every expected value is
 * compared with what the 'cfgi' design (pkvm) does on the same machine.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Machine, SMMU_BASE } from '../../../hw/machine.ts';
import type { BusAccessEvent } from '../../../hw/bus.ts';
import { OP } from '../../../hw/smmu/commands.ts';
import { STE, STE_WORDS } from '../../../hw/smmu/ste.ts';
import { encodeCommand } from '../../../hw/smmu/commands.ts';
import { OFF, CMDQ_CONS, CERROR } from '../../../hw/smmu/regs.ts';
import { get, set } from '../../../hw/bits.ts';
import { PkvmHyp } from '../../../hyp/pkvm.ts';
import { makePolicy, type FailurePolicy, type PolicyName } from '../../../hyp/policy/policy.ts';
import { sanitizeSte } from '../../../hyp/smmuv3/ste-sanitize.ts';
import { ArmSmmuV3 } from '../../../host/driver/driver.ts';
import { DomainManager } from '../../../host/driver/domain.ts';
import { DmaApi } from '../../../host/dma-api.ts';
import { IsolationOracle } from '../../../scenarios/check/oracle.ts';
import { loadScenario, loadScenarios, type Scenario } from '../../../scenarios/engine/loader.ts';
import { runScenario } from '../../../scenarios/engine/runner.ts';
import { HOST_PAGES, HYP_BASE, PAGE, SMMU_MMIO_SIZE } from '../pkvm-rig.ts';

/** STE Config values (smmuv3.md §2.2) */
const CFG_ABORT = 0,
  CFG_S2 = 6,
  CFG_NESTED = 7;
/** a 2-level L2 table of Linux's split (2^8 STEs of 64 bytes) */
const L2_BYTES = 256 * 64;

function boot(policy: PolicyName, failure: FailurePolicy = 'reject') {
  const m = new Machine({
    devices: [
      { name: 'nic', sid: 8 },
      { name: 'gpu', sid: 9 },
    ],
  });
  const hyp = new PkvmHyp(m, { policy: makePolicy(policy, { failure }) }).boot();
  const drv = new ArmSmmuV3(m.bus, { base: SMMU_BASE, pages: { ...HOST_PAGES } });
  drv.probe();
  const dm = new DomainManager(drv);
  const dma = new DmaApi(drv, dm);
  const oracle = new IsolationOracle(m, {
    protectedRanges: () => hyp.protectedRanges(),
    rangesFor: (name) => hyp.rangesForSid(m.devices.get(name)!.sid),
  });
  return { m, hyp, drv, dm, dma, oracle };
}
type Rig = ReturnType<typeof boot>;

/** Host memory stores that trapped (not SMMU register accesses), recorded from the bus probe. */
function trappedStores(r: Rig): BusAccessEvent[] {
  const got: BusAccessEvent[] = [];
  r.m.bus.observe((e) => {
    const mmio = e.addr >= SMMU_BASE && e.addr < SMMU_BASE + SMMU_MMIO_SIZE;
    if (e.actor === 'host' && e.dir === 'w' && e.trapped && !mmio) got.push(e);
  });
  return got;
}

/** Reshadows that happen while the hypervisor handles a trapped SMMU register access (a CFGI_STE's CMDQ_PROD write). */
function reshadowsOnMmio(r: Rig): { n: number } {
  const c = { n: 0 };
  let mmio = false;
  r.hyp.probes.trap.subscribe((a) => {
    mmio = a.addr >= SMMU_BASE && a.addr < SMMU_BASE + SMMU_MMIO_SIZE;
  });
  r.hyp.probes.reshadow.subscribe(() => {
    if (mmio) c.n++;
  });
  return c;
}

function cfgiVerdicts(r: Rig): { n: number } {
  const c = { n: 0 };
  r.hyp.cmdq.probes.verdict.subscribe((v) => {
    if ((v.words[0]! & 0xff) === OP.CFGI_STE) c.n++;
  });
  return c;
}

const config = (w: Uint32Array): number => (w[0]! >>> 1) & 7;
const hostSte = (r: Rig, sid: number): Uint32Array => {
  const w = new Uint32Array(STE_WORDS);
  r.m.bus.readWords('host', r.drv.steAddr(sid), w, STE_WORDS);
  return w;
};
/** What the sanitizer makes of the host's STE of `sid` now (the hypervisor's rules, none weakened). */
const sanitizedHost = (r: Rig, sid: number): Uint32Array => {
  const w = hostSte(r, sid);
  sanitizeSte(w, { weak: () => false, allowAts: false, s2: r.hyp.idmap.s2 });
  return w;
};
const l2Of = (r: Rig, sid: number): number => r.drv.steAddr(sid) & ~(L2_BYTES - 1);

describe('pkvm-wp: an attach of a DMA domain with the unchanged driver', () => {
  it('traps every host store to the stream table and reshadows nothing on CFGI_STE', () => {
    const wp = boot('pkvm-wp');
    const stores = trappedStores(wp);
    const onMmio = reshadowsOnMmio(wp);
    const cfgis = cfgiVerdicts(wp);
    const st0 = { ...wp.hyp.steStoreStats! };
    const traps0 = wp.hyp.stats.memoryTraps;
    wp.dma.attachDefault(8);
    const st = wp.hyp.steStoreStats!;
    // every trapped host store landed in the host's table: the L1 descriptor for SIDs 0-255,
    // or the STE of SID 8 in its new L2
    const l1 = wp.drv.strtab.base;
    const ste8 = wp.drv.steAddr(8);
    for (const s of stores)
      expect(
        (s.addr >= l1 && s.addr < l1 + 8) || (s.addr >= ste8 && s.addr < ste8 + 64),
        `store at 0x${s.addr.toString(16)}`,
      ).toBe(true);
    const l1Stores = stores.filter((s) => s.addr < l1 + 8 && s.addr >= l1).length;
    expect(l1Stores).toBe(1); // ensureL2 publishes one L1 descriptor
    expect(stores.length).toBeGreaterThanOrEqual(3); // and the STE takes at least two qword stores
    expect(st.steStoreTraps - st0.steStoreTraps).toBe(stores.length);
    expect(wp.hyp.stats.memoryTraps - traps0).toBe(stores.length);
    expect(st.l1Stores - st0.l1Stores).toBe(1);
    // one STE rebuilt per STE store, plus the 256 STEs of the span the L1 store made followed
    expect(st.storeReshadows - st0.storeReshadows).toBe(stores.length - 1 + 256);
    // no CFGI-time reshadow: every CFGI_STE the host issued was checked and forwarded
    expect(onMmio.n).toBe(0);
    expect(cfgis.n).toBeGreaterThanOrEqual(1);
    expect(st.cfgisForwarded - st0.cfgisForwarded).toBe(cfgis.n);

    // the same attach under 'cfgi': no memory trap at all, and every reshadow is a CFGI's
    const pk = boot('pkvm');
    const pkStores = trappedStores(pk);
    const pkOnMmio = reshadowsOnMmio(pk);
    const pkCfgis = cfgiVerdicts(pk);
    pk.dma.attachDefault(8);
    expect(pkStores).toEqual([]);
    expect(pk.hyp.stats.memoryTraps).toBe(0);
    expect(pkCfgis.n).toBe(cfgis.n); // the unchanged driver issues the same commands
    expect(pkOnMmio.n).toBe(pkCfgis.n);
  });

  it("leaves the shadow STE equal to what 'cfgi' installs, and DMA translates the same", () => {
    const wp = boot('pkvm-wp');
    const pk = boot('pkvm');
    const got: Array<[number, number]> = [];
    for (const r of [wp, pk]) {
      r.dma.attachDefault(8);
      const iova = r.dma.map(8, 0x4100_0000, PAGE);
      const nic = r.m.devices.get('nic')!;
      const ok = nic.read(iova, 4);
      expect(ok.ok).toBe(true);
      got.push([iova, ok.ok ? ok.pa : -1]);
      expect(nic.read(HYP_BASE, 4).ok).toBe(false);
      expect(r.oracle.check().ok).toBe(true);
    }
    expect([...wp.hyp.shadowSte(8)]).toEqual([...pk.hyp.shadowSte(8)]);
    expect(config(wp.hyp.shadowSte(8))).toBe(CFG_NESTED);
    expect(got[0]).toEqual(got[1]);
    expect(got[0]![1]).toBe(0x4100_0000);
    // the other STEs of the span follow the driver's abort STEs; under 'cfgi' they stay invalid
    // until a CFGI_STE for them
    expect(config(wp.hyp.shadowSte(7))).toBe(CFG_ABORT);
    expect(wp.hyp.shadowSte(7)[0]! & 1).toBe(1);
    expect(pk.hyp.shadowSte(7)[0]! & 1).toBe(0);
  });

  it('shares, pins and write-protects an L2 while an L1 descriptor points at it, and releases it when it no longer does', () => {
    const wp = boot('pkvm-wp');
    wp.dma.attachDefault(8);
    const l2 = l2Of(wp, 8);
    expect(wp.hyp.own.state(l2)).toMatchObject({ owner: 'host', sharedWith: 'hyp', pins: 1 });
    expect(wp.hyp.own.state(l2 + L2_BYTES - PAGE).pins).toBe(1);
    const wpSet = (wp.hyp as unknown as { steShadow: { writeProtect: { pages: number } } })
      .steShadow.writeProtect;
    expect(wpSet.pages).toBe(1 + L2_BYTES / PAGE); // the L1 page and the L2's four
    // a host store to the L2 traps (STE 20, unused) and the shadow follows it
    const traps0 = wp.hyp.steStoreStats!.steStoreTraps;
    wp.m.bus.write64('host', l2 + 20 * 64, 0n); // V=0
    expect(wp.hyp.steStoreStats!.steStoreTraps).toBe(traps0 + 1);
    expect(wp.hyp.shadowSte(20)[0]! & 1).toBe(0);
    // the host points the L1 descriptor at a fresh L2 of its own (all zero: every STE invalid)
    const fresh = wp.drv.pages.alloc(L2_BYTES);
    wp.m.bus.write64('host', wp.drv.strtab.base, BigInt(fresh) | 9n);
    expect(wp.hyp.own.state(l2)).toMatchObject({ sharedWith: null, pins: 0 });
    expect(wp.hyp.own.state(fresh)).toMatchObject({ sharedWith: 'hyp', pins: 1 });
    expect(wp.hyp.shadowSte(8)[0]! & 1).toBe(0); // SID 8 now has the new L2's invalid STE
    const before = wp.hyp.steStoreStats!.steStoreTraps;
    wp.m.bus.write64('host', l2 + 8 * 64, 0x9n); // the old L2 is plain host memory again
    expect(wp.hyp.steStoreStats!.steStoreTraps).toBe(before);
    expect(wp.hyp.shadowSte(8)[0]! & 1).toBe(0);
    // SMMUEN 1→0 unprotects and unshares everything the design holds
    const cr0 = wp.m.bus.read32('host', SMMU_BASE + 0x20);
    wp.m.bus.write32('host', SMMU_BASE + 0x20, cr0 & ~1);
    expect(wp.hyp.own.state(fresh)).toMatchObject({ sharedWith: null, pins: 0 });
    expect(wpSet.pages).toBe(0);
    const t = wp.hyp.steStoreStats!.steStoreTraps;
    wp.m.bus.write64('host', fresh + 8 * 64, 0x9n);
    expect(wp.hyp.steStoreStats!.steStoreTraps).toBe(t);
  });

  it("a refused STE becomes abort at the store and is reported on the host's CFGI_STE, as under 'cfgi'", () => {
    for (const policy of ['pkvm-wp', 'pkvm'] as const) {
      const r = boot(policy);
      r.dma.attachDefault(8);
      const a = r.drv.steAddr(8);
      r.m.bus.write64('host', a, 0xfn); // V=1, Config=0b111 (nested): refused
      if (policy === 'pkvm-wp') {
        expect(config(r.hyp.shadowSte(8))).toBe(CFG_ABORT);
        expect(r.hyp.failures.byRule['ste-config'] ?? 0).toBe(0);
      } else expect(config(r.hyp.shadowSte(8))).toBe(CFG_NESTED);
      const recovered = r.drv.cmdq.stats.errorsRecovered;
      r.drv.issue([['CFGI_STE', { StreamID: 8, Leaf: 1 }]]);
      expect(r.hyp.failures.byRule['ste-config'], policy).toBe(1);
      // reject: the host's CFGI_STE failed with CERROR_ILL, and the driver recovered
      expect(r.drv.cmdq.stats.errorsRecovered, policy).toBe(recovered + 1);
      expect(config(r.hyp.shadowSte(8)), policy).toBe(CFG_ABORT);
    }
  });
});

describe('pkvm-wp: attacks', () => {
  it('a17: the host rewriting its STE to bypass without CFGI_STE gets a stage-2 STE through the idmap, never hyp memory', () => {
    const sc = loadScenario('pkvm-attacks/a17-ste-toctou');
    const wpSc: Scenario = { ...sc, machine: { ...sc.machine, policy: 'pkvm-wp' } };
    const r = runScenario(wpSc, { hyp: 'pkvm' });
    expect(r.hyp!.policy).toBe('pkvm-wp');
    expect(r.isolation).toEqual({ ok: true, breaches: [] });
    // the DMA to hyp memory faults as under pkvm; only the STE expectation differs: the store
    // was sanitized at once (bypass → stage 2), where 'cfgi' still has the old nested STE
    expect(r.failed.map((f) => f.op)).toEqual(['expectSte']);
    expect(r.failed[0]!.actual).toBe('Config=6 (want 7)');
    expect(r.hyp!.memoryTraps).toBeGreaterThan(0);

    // the same on a rig: the 64-byte bypass STE goes in as 64 trapped byte stores
    const b = boot('pkvm-wp');
    b.dma.attachDefault(8);
    const t0 = b.hyp.steStoreStats!.steStoreTraps;
    const bypass = new Uint8Array(64);
    bypass[0] = 0x09; // V=1, Config=0b100
    b.m.bus.writeBytes('host', b.drv.steAddr(8), bypass);
    expect(b.hyp.steStoreStats!.steStoreTraps - t0).toBe(64);
    expect(config(b.hyp.shadowSte(8))).toBe(CFG_S2);
    expect([...b.hyp.shadowSte(8)]).toEqual([...sanitizedHost(b, 8)]);
    const nic = b.m.devices.get('nic')!;
    expect(nic.read(HYP_BASE, 4).ok).toBe(false);
    const id = nic.read(0x4100_0000, 4);
    expect(id.ok && id.pa).toBe(0x4100_0000); // identity through the idmap
    expect(b.oracle.check().ok).toBe(true);
  });

  it('every host attack of the catalog leaves isolation intact under pkvm-wp', () => {
    const attacks = loadScenarios('pkvm-attacks');
    expect(attacks.length).toBeGreaterThanOrEqual(30);
    let trapped = 0;
    for (const sc of attacks) {
      const wpSc: Scenario = { ...sc, machine: { ...sc.machine, policy: 'pkvm-wp' } };
      const r = runScenario(wpSc, { hyp: 'pkvm' });
      expect(r.hyp!.policy, sc.name).toBe('pkvm-wp');
      expect(r.isolation, sc.name).toEqual({ ok: true, breaches: [] });
      if (r.hyp!.memoryTraps > 0) trapped++;
    }
    // most attacks run the driver, whose table writes now trap
    expect(trapped).toBeGreaterThanOrEqual(attacks.length / 2);
  });
});

describe('pkvm-wp: property', () => {
  it('any sequence of host stores to an STE leaves the shadow STE equal to sanitize(host STE)', () => {
    const r = boot('pkvm-wp', 'log');
    r.dma.attachDefault(8);
    const a = r.drv.steAddr(10);
    // qword 0's low bits: V, Config (all eight values, reserved ones included), S1Fmt
    const dw0 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => v & ~0xffn);
    const store = fc.oneof(
      fc.record({
        q: fc.constant(0),
        v: fc.tuple(fc.integer({ min: 0, max: 0xff }), dw0).map(([lo, hi]) => hi | BigInt(lo)),
        size: fc.constant(8 as const),
      }),
      fc.record({
        q: fc.integer({ min: 0, max: 7 }),
        v: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        size: fc.constant(8 as const),
      }),
      fc.record({
        q: fc.integer({ min: 0, max: 15 }),
        v: fc.bigInt({ min: 0n, max: 0xffff_ffffn }),
        size: fc.constant(4 as const),
      }),
      fc.record({
        q: fc.integer({ min: 0, max: 63 }),
        v: fc.bigInt({ min: 0n, max: 0xffn }),
        size: fc.constant(1 as const),
      }),
    );
    fc.assert(
      fc.property(fc.array(store, { minLength: 1, maxLength: 12 }), (ops) => {
        for (const o of ops) {
          r.m.bus.write('host', a + o.q * o.size, o.size, o.v);
          expect([...r.hyp.shadowSte(10)]).toEqual([...sanitizedHost(r, 10)]);
        }
      }),
      { numRuns: 60 },
    );
    // and the device on the STE the attach made was never disturbed
    expect([...r.hyp.shadowSte(8)]).toEqual([...sanitizedHost(r, 8)]);
    expect(r.oracle.check().ok).toBe(true);
  });
});

describe('pkvm-wp: edges', () => {
  it("a guest's StreamID is not reshadowed from host stores; given back, it catches up with the host's STE", () => {
    const r = boot('pkvm-wp');
    r.dma.attachDefault(8);
    r.dm.attach(9, r.dm.alloc('identity'));
    expect(config(r.hyp.shadowSte(9))).toBe(CFG_S2); // identity: bypass, through the idmap
    r.hyp.createGuest({
      name: 'vm1',
      memory: { base: 0x6000_0000, size: 0x100_0000 },
      devices: [{ vsid: 0, psid: 9 }],
    });
    const guests = [...r.hyp.shadowSte(9)];
    const reshadows = r.hyp.steStoreStats!.storeReshadows;
    r.m.bus.write64('host', r.drv.steAddr(9), 0x9n); // the host's STE of 9: bypass again
    expect(r.hyp.steStoreStats!.storeReshadows).toBe(reshadows); // trapped, not reshadowed
    expect([...r.hyp.shadowSte(9)]).toEqual(guests);
    expect(r.hyp.failures.byRule['sid-owner'] ?? 0).toBe(0); // a store is not a CFGI
    r.hyp.destroyGuest('vm1');
    expect([...r.hyp.shadowSte(9)]).toEqual([...sanitizedHost(r, 9)]);
    expect(config(r.hyp.shadowSte(9))).toBe(CFG_S2);
    expect(r.oracle.check().ok).toBe(true);
  });

  it('an unaligned store across two STEs reshadows both', () => {
    const r = boot('pkvm-wp');
    r.dma.attachDefault(8);
    const a = r.drv.steAddr(12);
    const n0 = r.hyp.steStoreStats!.storeReshadows;
    // the last 4 bytes of STE 12 and the first 4 of STE 13 (V=1, Config=abort → bypass)
    r.m.bus.write('host', a + 60, 8, 0x9n << 32n);
    expect(r.hyp.steStoreStats!.storeReshadows - n0).toBe(2);
    for (const sid of [12, 13])
      expect([...r.hyp.shadowSte(sid)]).toEqual([...sanitizedHost(r, sid)]);
    expect(config(r.hyp.shadowSte(13))).toBe(CFG_S2);
  });

  it('a second host CPU storing while the hypervisor reads an STE: both STEs end as sanitize(host STE)', () => {
    const r = boot('pkvm-wp');
    r.dma.attachDefault(8);
    const a = r.drv.steAddr(14);
    const b = r.drv.steAddr(15);
    let fired = false;
    r.hyp.hostMem.hook = (pa) => {
      if (fired || pa !== a) return;
      fired = true;
      // the racing store (to the next STE) traps too, inside the first one's handling
      r.m.bus.write64('host', b, 0x9n);
    };
    const t0 = r.hyp.steStoreStats!.steStoreTraps;
    r.m.bus.write64('host', a, 0x9n);
    r.hyp.hostMem.hook = null;
    expect(fired).toBe(true);
    expect(r.hyp.steStoreStats!.steStoreTraps - t0).toBe(2);
    for (const sid of [14, 15]) {
      expect([...r.hyp.shadowSte(sid)]).toEqual([...sanitizedHost(r, sid)]);
      expect(config(r.hyp.shadowSte(sid))).toBe(CFG_S2);
    }
  });

  it('a linear host table is reshadowed whole at SMMUEN 0→1, then followed store by store', () => {
    const lin = (policy: PolicyName) => {
      const m = new Machine({
        smmu: { features: { twoLevelStrtab: false, sidSize: 8 } },
        devices: [{ name: 'nic', sid: 8 }],
      });
      const hyp = new PkvmHyp(m, { policy: makePolicy(policy, { failure: 'reject' }) }).boot();
      const drv = new ArmSmmuV3(m.bus, { base: SMMU_BASE, pages: { ...HOST_PAGES } });
      drv.probe();
      const dm = new DomainManager(drv);
      const dma = new DmaApi(drv, dm);
      return { m, hyp, drv, dm, dma };
    };
    const wp = lin('pkvm-wp');
    expect(wp.drv.strtab.fmt).toBe(0);
    // the driver wrote 256 abort STEs before SMMUEN: all of them are in the shadow now
    expect(wp.hyp.steStoreStats!.storeReshadows).toBe(256);
    expect(wp.hyp.steStoreStats!.steStoreTraps).toBe(0);
    for (const sid of [0, 8, 255]) expect(config(wp.hyp.shadowSte(sid))).toBe(CFG_ABORT);
    const pk = lin('pkvm');
    // installed together: the V 0→1 ordering's two CMD_SYNCs for all 256, where one at a time
    // would take two each
    expect(wp.m.smmu.cmdq.stats.syncs - pk.m.smmu.cmdq.stats.syncs).toBe(2);
    for (const r of [wp, pk]) r.dma.attachDefault(8);
    expect(wp.hyp.steStoreStats!.steStoreTraps).toBeGreaterThanOrEqual(2);
    expect([...wp.hyp.shadowSte(8)]).toEqual([...pk.hyp.shadowSte(8)]);
    expect(config(wp.hyp.shadowSte(8))).toBe(CFG_NESTED);
  });
});

describe('pkvm-wp: a store while the hardware queue is stopped at a host error', () => {
  it('is emulated without a hypervisor fault, and the install is finished on the host’s CFGI_STE', () => {
    const r = boot('pkvm-wp', 'reject');
    r.dma.attachDefault(8);
    // a command the hardware refuses (TLBI_EL3_ALL on the Non-secure queue: CERROR_ILL), issued
    // without a CMD_SYNC and not yet acknowledged: the shadow queue the hardware reads stops there
    r.drv.issueWords(encodeCommand('TLBI_EL3_ALL', {}), 1, false);
    const cons = r.m.bus.read32('hyp', SMMU_BASE + OFF.CMDQ_CONS);
    expect(get([cons], CMDQ_CONS.ERR)).toBe(CERROR.ILL);
    // the host now makes StreamID 9's STE a valid stage-1-bypass one, word by word (trapped)
    const ste = new Uint32Array(STE_WORDS);
    set(ste, STE.V, 1);
    set(ste, STE.Config, 4); // bypass: the hypervisor makes it stage 2 through the idmap
    r.m.bus.writeWords('host', r.drv.steAddr(9), ste, STE_WORDS);
    expect(r.hyp.panicked).toBeNull();
    expect(r.oracle.check().breaches).toEqual([]);
    // the span's shadow STEs were valid (abort), so the install wrote the whole sanitized STE
    // and stopped at its CFGI: the hardware may use its cached abort STE until the host's own
    const want = new Uint32Array(ste);
    expect(
      sanitizeSte(want, { weak: () => false, allowAts: false, s2: r.hyp.idmap.s2 }),
    ).toBeNull();
    expect(get(want, STE.Config)).toBe(CFG_S2);
    expect([...r.hyp.shadowSte(9)]).toEqual([...want]);
    // the host acknowledges the error (Linux's recovery skips the slot) and issues CFGI_STE
    r.drv.issue([['CFGI_STE', { StreamID: 9, Leaf: 1 }]]);
    expect([...r.hyp.shadowSte(9)]).toEqual([...want]);
    expect(r.m.devices.get('gpu')!.read(0x4000_0000, 4).ok).toBe(true);
    expect(r.hyp.panicked).toBeNull();
  });
});
