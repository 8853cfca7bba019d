/**
 * The isolation oracle (scenarios/check/oracle.ts) on the bare machine, with no hypervisor: structures are
 * written straight into RAM and registers through MMIO as the host, with the reference's
 * encodings (test/hw/helpers.ts, test/hw/smmu/translate/rig.ts; /work/shared/reference/smmuv3.md).
 *
 * The protected range plays the hypervisor's memory: [0x7C00_0000, +64 MiB), owner 'hyp', no
 * device access. The stream table and the stage-2 / stage-1 tables that should be trusted live
 * inside it (as a hypervisor's would); host-owned structures live below it. Wherever the
 * oracle says a page is reachable, a DMA demonstrates it on the hardware model.
 */
import { describe, expect, it } from 'vitest';
import { Machine, type DeviceSpec } from '../../../hw/machine.ts';
import type { SmmuFeatures } from '../../../hw/smmu/features.ts';
import {
  IsolationOracle,
  type IsolationReport,
  type OracleOptions,
  type ProtectedRange,
} from '../../../scenarios/check/oracle.ts';
import {
  ATSCHK,
  CMDQEN,
  EVENTQEN,
  OPC,
  R,
  SMMUEN,
  SYNC_NONE,
  Sw,
  cfgiSte,
  cmd,
  initCmdq,
  initEvtq,
  initStrtab,
  l1std,
  strtabCfg,
  sync,
  type Cmd,
  type SwCmdq,
} from '../../hw/helpers.ts';
import {
  Pt39,
  encodeCd,
  encodeSte,
  s1Leaf,
  s2Leaf,
  tableDesc,
  type CdFields,
  type SteFields,
} from '../../hw/smmu/translate/rig.ts';

// ---- layout -------------------------------------------------------------------------------------------

const RAM = 0x4000_0000;
const PROT = 0x7c00_0000;
const PROT_SIZE = 0x0400_0000;
const HYP: ProtectedRange = {
  base: PROT,
  size: PROT_SIZE,
  owner: 'hyp',
  read: false,
  write: false,
};
/** linear stream table, 64 STEs, in hyp memory */
const STRTAB = PROT;
const CMDQ = RAM + 0x1_0000;
const EVTQ = RAM + 0x2_0000;
/** a single CD in hyp memory */
const CD_PA = PROT + 0x8000;
/** page-table pool in hyp memory */
const POOL = PROT + 0x10_0000;
/** page-table pool in host memory */
const HOST_POOL = RAM + 0x100_0000;
const NIC = 8;
const GPU = 9;
/** 2^48: "everything" */
const ALL = 2 ** 48;

// reference §1: GBPA Update[31], ABORT[20]
const GBPA_UPDATE = 0x8000_0000;
const GBPA_ABORT = 1 << 20;
// reference §2.2: Config values; EATS
const CFG_ABORT = 0b000,
  CFG_BYPASS = 0b100,
  CFG_S1 = 0b101,
  CFG_S2 = 0b110,
  CFG_NESTED = 0b111;
// reference §6.2: the contiguous hint, bit 52
const CONTIG = 1n << 52n;

/** Stage-2 STE fields: 4 KB granule, 39-bit IPA (S2T0SZ=25), start level 1 (S2SL0=1), 48-bit PS, AArch64, S2R. */
function s2Ste(root: number, vmid = 0, extra: SteFields = {}): SteFields {
  return {
    V: 1,
    Config: CFG_S2,
    S2VMID: vmid,
    S2T0SZ: 25,
    S2SL0: 1,
    S2TG: 0,
    S2PS: 5,
    S2AA64: 1,
    S2R: 1,
    S2TTB: root,
    ...extra,
  };
}
/** A CD for a 39-bit TTB0 with 4 KB granule (start level 1), 48-bit IPS, AArch64; TTB1 disabled. */
function cd39(ttb0: number, asid = 1): CdFields {
  return { T0SZ: 25, TG0: 0, IPS: 5, AA64: 1, V: 1, A: 1, R: 1, EPD1: 1, ASID: asid, TTB0: ttb0 };
}

interface BedOpts {
  smmuen?: boolean;
  atschk?: boolean;
  devices?: DeviceSpec[];
  features?: Partial<SmmuFeatures>;
  evtq?: number;
  strtabCfg?: number;
  oracle?: OracleOptions;
}

class Bed {
  readonly m: Machine;
  readonly sw: Sw;
  readonly q: SwCmdq;
  ranges: ProtectedRange[] = [HYP];
  readonly oracle: IsolationOracle;
  private readonly pool = { next: POOL };
  private readonly hostPool = { next: HOST_POOL };

  constructor(o: BedOpts = {}) {
    this.m = new Machine({
      devices: o.devices ?? [{ name: 'nic', sid: NIC }],
      ...(o.features ? { smmu: { features: o.features } } : {}),
    });
    this.sw = new Sw(this.m);
    initStrtab(this.sw, STRTAB, o.strtabCfg ?? strtabCfg(6));
    this.q = initCmdq(this.sw, CMDQ, 6);
    initEvtq(this.sw, o.evtq ?? EVTQ, 4);
    if (o.smmuen ?? true)
      this.sw.cr0(this.sw.r32(R.CR0) | SMMUEN | ((o.atschk ?? true) ? ATSCHK : 0));
    this.oracle = new IsolationOracle(this.m, { protectedRanges: () => this.ranges }, o.oracle);
  }

  get nic() {
    return this.m.devices.get('nic')!;
  }

  w64(a: number, v: bigint): void {
    this.m.mem.write64(a, v);
  }
  ste(sid: number, f: SteFields): void {
    encodeSte(f).forEach((d, i) => this.w64(STRTAB + sid * 64 + 8 * i, d));
  }
  cd(addr: number, f: CdFields): void {
    encodeCd(f).forEach((d, i) => this.w64(addr + 8 * i, d));
  }
  cmds(...c: Cmd[]): void {
    this.q.submit(...c, SYNC_NONE);
  }
  /** A 39-bit 4 KB table tree with its root and tables allocated from hyp memory (or host memory). */
  pt(host = false): Pt39 {
    const pool = host ? this.hostPool : this.pool;
    const root = pool.next;
    pool.next += 0x1000;
    return new Pt39(this.m.mem, root, pool);
  }
  check(): IsolationReport {
    return this.oracle.check();
  }
}

const hx = (v: number): string => '0x' + v.toString(16);

/** The breaches of a report, without their detail text, with hex addresses. */
function brief(r: IsolationReport) {
  return r.breaches.map((b) => ({
    kind: b.kind,
    ...(b.device ? { device: b.device } : {}),
    path: b.path,
    access: b.access,
    pa: hx(b.pa),
    bytes: hx(b.bytes),
    owner: b.owner,
  }));
}
/** The two breaches (read, then write) of one run. */
function rw(path: string, pa: number, bytes: number, device = 'nic', owner = 'hyp') {
  return [
    { kind: 'dma', device, path, access: 'read', pa: hx(pa), bytes: hx(bytes), owner },
    { kind: 'dma', device, path, access: 'write', pa: hx(pa), bytes: hx(bytes), owner },
  ];
}
const one = (
  path: string,
  access: 'read' | 'write',
  pa: number,
  bytes = 0x1000,
  device = 'nic',
  owner = 'hyp',
) => ({ kind: 'dma', device, path, access, pa: hx(pa), bytes: hx(bytes), owner });

const bytes4 = new Uint8Array([1, 2, 3, 4]);

// ---- SMMUEN=0 ---------------------------------------------------------------------------------------------

describe('SMMUEN=0: GBPA decides', () => {
  it('GBPA.ABORT=0 (the reset value) lets every device reach everything: gbpa-bypass', () => {
    const b = new Bed({ smmuen: false });
    const r = b.check();
    expect(r.ok).toBe(false);
    expect(brief(r)).toEqual(rw('gbpa-bypass', PROT, PROT_SIZE));
    expect(r.breaches[0]!.detail).toContain('GBPA.ABORT=0');
    expect(r.breaches[0]!.sid).toBe(NIC);
    expect(b.oracle.reach('nic')).toEqual([
      { base: 0, size: ALL, read: true, write: true, path: 'gbpa-bypass' },
    ]);
    // the hardware agrees
    expect(b.nic.write(PROT + 0x40, bytes4).ok).toBe(true);
  });

  it('GBPA.ABORT=1 stops everything, including ATS Translated traffic', () => {
    const b = new Bed({ smmuen: false });
    b.sw.w32(R.GBPA, GBPA_UPDATE | GBPA_ABORT);
    expect(b.check()).toEqual({ ok: true, breaches: [], total: 0, omitted: 0 });
    expect(b.oracle.reach('nic')).toEqual([]);
    expect(b.nic.read(PROT, 4).ok).toBe(false);
    expect(b.nic.readTranslated(PROT, 4).ok).toBe(false);
  });
});

// ---- STE configurations ----------------------------------------------------------------------------------

describe('STE configurations', () => {
  it('an invalid or abort STE reaches nothing', () => {
    const b = new Bed();
    expect(b.check().ok).toBe(true);
    b.ste(NIC, { V: 1, Config: CFG_ABORT });
    expect(b.check().ok).toBe(true);
    expect(b.oracle.reach('nic')).toEqual([]);
  });

  it('Config=bypass reaches everything: ste-bypass', () => {
    const b = new Bed();
    b.ste(NIC, { V: 1, Config: CFG_BYPASS });
    const r = b.check();
    expect(brief(r)).toEqual(rw('ste-bypass', PROT, PROT_SIZE));
    expect(r.breaches[0]!.detail).toMatch(
      /SID 8 .*STE at 0x7c000200.*Config=0b100 \(bypass\) reads hyp pages 0x7c000000\.\.0x80000000/,
    );
    expect(b.nic.read(PROT + 0x1000, 4).ok).toBe(true);
  });

  it('a stage 2 mapping only host pages is isolated, and its reach is exactly its leaves', () => {
    const b = new Bed();
    const s2 = b.pt();
    s2.set(RAM, 2, s2Leaf(RAM, 2)); // 2 MiB block, RW
    s2.set(0x4100_0000, 3, s2Leaf(0x4100_0000, 3, { s2ap: 0b01 })); // read-only page
    b.ste(NIC, s2Ste(s2.root));
    expect(b.check().ok).toBe(true);
    expect(b.oracle.reach('nic')).toEqual([
      { base: RAM, size: 0x20_0000, read: true, write: true, path: 's2' },
      { base: 0x4100_0000, size: 0x1000, read: true, write: false, path: 's2' },
    ]);
    expect(b.nic.read(PROT, 4).ok).toBe(false);
  });

  it('a stage 2 mapping one protected page read-only: exactly one read breach', () => {
    const b = new Bed();
    const s2 = b.pt();
    s2.set(RAM, 2, s2Leaf(RAM, 2));
    s2.set(0x5000_0000, 3, s2Leaf(PROT + 0x5000, 3, { s2ap: 0b01 }));
    b.ste(NIC, s2Ste(s2.root));
    const r = b.check();
    expect(brief(r)).toEqual([one('s2', 'read', PROT + 0x5000)]);
    expect(r.breaches[0]!.detail).toContain('stage-2 tables at ' + hx(s2.root));
    expect(b.nic.read(0x5000_0000, 4).ok).toBe(true);
    expect(b.nic.write(0x5000_0000, bytes4).ok).toBe(false);
  });

  it('stage 1 only: a CD mapping a protected page gives read and write breaches on that page', () => {
    const b = new Bed();
    const s1 = b.pt();
    s1.set(0x1000, 3, s1Leaf(RAM + 0x3000, 3));
    s1.set(0x2000, 3, s1Leaf(PROT + 0x7000, 3)); // AP=0b01: RW at EL0 and EL1
    s1.set(0x3000, 3, s1Leaf(PROT + 0x8000, 3, { af: false })); // AF=0 without HA/AFFD: an access fault, unreachable
    b.cd(CD_PA, cd39(s1.root));
    b.ste(NIC, { V: 1, Config: CFG_S1, S1ContextPtr: CD_PA });
    const r = b.check();
    expect(brief(r)).toEqual(rw('s1', PROT + 0x7000, 0x1000));
    expect(r.breaches[0]!.detail).toContain(`CD 0 at ${hx(CD_PA)} TTB0 ${hx(s1.root)}`);
    expect(b.nic.write(0x2000, bytes4).ok).toBe(true);
    expect(b.nic.read(0x3000, 4).ok).toBe(false);
  });

  it('stage 1 only with the CD in host memory: the host can point it anywhere (cd-writable)', () => {
    const b = new Bed();
    const s1 = b.pt();
    s1.set(0x1000, 3, s1Leaf(RAM + 0x3000, 3));
    const hostCd = RAM + 0x80_0000;
    b.cd(hostCd, cd39(s1.root));
    b.ste(NIC, { V: 1, Config: CFG_S1, S1ContextPtr: hostCd });
    expect(brief(b.check())).toEqual(rw('cd-writable', PROT, PROT_SIZE));
    // and with trustTableMemory the CD is taken as it is
    const trusting = new IsolationOracle(
      b.m,
      { protectedRanges: () => b.ranges },
      { trustTableMemory: true },
    );
    expect(trusting.check().ok).toBe(true);
  });

  it('stage 1 only with the tables in host memory: s1-table-writable', () => {
    const b = new Bed();
    const s1 = b.pt(true);
    s1.set(0x1000, 3, s1Leaf(RAM + 0x3000, 3));
    b.cd(CD_PA, cd39(s1.root));
    b.ste(NIC, { V: 1, Config: CFG_S1, S1ContextPtr: CD_PA });
    const r = b.check();
    expect(brief(r)).toEqual(rw('s1-table-writable', PROT, PROT_SIZE));
    expect(r.breaches[0]!.detail).toContain(
      `the table at ${hx(s1.root)} is in host-writable memory`,
    );
  });

  it('stage 1 only: S1DSS=bypass lets transactions without a SubstreamID through untranslated', () => {
    const b = new Bed();
    const s1 = b.pt();
    b.cd(CD_PA, cd39(s1.root));
    // linear CD table of 2^1 CDs, S1DSS=0b01
    b.ste(NIC, { V: 1, Config: CFG_S1, S1ContextPtr: CD_PA, S1CDMax: 1, S1DSS: 1 });
    expect(brief(b.check())).toEqual(rw('s1dss-bypass', PROT, PROT_SIZE));
    expect(b.nic.read(PROT, 4).ok).toBe(true);
  });

  it('stage 1 only with a 2-level CD table: the CD of every selectable SubstreamID counts', () => {
    const b = new Bed();
    const s1 = b.pt();
    s1.set(0x2000, 3, s1Leaf(PROT + 0x7000, 3, { ap: 0b11 })); // read-only
    // S1Fmt=1 (4 KB leaves of 64 CDs), S1CDMax=8: 4 L1CDs (reference §3.2); L1CD = L2Ptr | V
    const l1 = PROT + 0xc000;
    const l2 = PROT + 0xd000;
    b.w64(l1 + 2 * 8, BigInt(l2) | 1n); // SSIDs 128..191
    b.cd(l2 + (130 % 64) * 64, cd39(s1.root));
    b.ste(NIC, { V: 1, Config: CFG_S1, S1Fmt: 1, S1ContextPtr: l1, S1CDMax: 8, S1DSS: 0 });
    const r = b.check();
    expect(brief(r)).toEqual([one('s1', 'read', PROT + 0x7000)]);
    expect(r.breaches[0]!.detail).toContain(`CD 130 at ${hx(l2 + 2 * 64)}`);
    expect(b.nic.read(0x2000, 4, { ssid: 130 }).ok).toBe(true);
    expect(b.nic.read(0x2000, 4).ok).toBe(false); // no SubstreamID: S1DSS=terminate
    // an L2 CD table in host memory: the host may fill in any CD
    const hostL2 = RAM + 0x60_0000;
    b.w64(l1 + 3 * 8, BigInt(hostL2) | 1n);
    // (the DMA above also left an IOTLB entry for the page)
    expect(brief(b.check())).toEqual([
      ...rw('cd-writable', PROT, PROT_SIZE),
      one('iotlb', 'read', PROT + 0x7000),
      one('s1', 'read', PROT + 0x7000),
    ]);
  });

  it('nested: a stage 1 mapping a protected IPA that stage 2 does not map is isolated', () => {
    const b = new Bed();
    const s2 = b.pt();
    // stage 2: identity over the first 8 MiB of RAM (2 MiB blocks)
    for (let a = RAM; a < RAM + 0x80_0000; a += 0x20_0000) s2.set(a, 2, s2Leaf(a, 2));
    // the CD and the stage-1 tables are host memory, read through stage 2
    const cdIpa = RAM + 0x40_0000;
    const s1 = new Pt39(b.m.mem, RAM + 0x41_0000, { next: RAM + 0x42_0000 });
    s1.set(0x1000, 3, s1Leaf(PROT + 0x3000, 3)); // a protected IPA
    s1.set(0x2000, 3, s1Leaf(RAM + 0x5000, 3));
    b.cd(cdIpa, cd39(s1.root));
    b.ste(NIC, { ...s2Ste(s2.root), Config: CFG_NESTED, S1ContextPtr: cdIpa });
    expect(b.check().ok).toBe(true);
    expect(b.oracle.reach('nic')).toEqual([
      { base: RAM, size: 0x80_0000, read: true, write: true, path: 'nested' },
    ]);
    expect(b.nic.read(0x1000, 4).ok).toBe(false);
    const ok = b.nic.read(0x2000, 4);
    expect(ok.ok && ok.pa).toBe(RAM + 0x5000);
  });

  it('nested with HTTU: Access-flag updates write into stage-1 tables the host put in a read-only page (httu)', () => {
    const b = new Bed({ features: { httu: 1 } });
    const shared = RAM + 0x70_0000; // a page the host's devices may read but not write
    b.ranges = [{ base: shared, size: 0x1000, owner: 'guest:vm1', read: true, write: false }, HYP];
    const s2 = b.pt();
    s2.set(RAM, 2, s2Leaf(RAM, 2));
    s2.set(shared, 3, s2Leaf(shared, 3, { s2ap: 0b01 }));
    // stage 1: L1 → L2 in RAM, L2 → an L3 table in the read-only page, whose leaf has AF=0
    const l1 = RAM + 0x10_0000;
    const l2 = RAM + 0x11_0000;
    b.w64(l1, tableDesc(l2));
    b.w64(l2, tableDesc(shared));
    b.w64(shared + 2 * 8, s1Leaf(RAM + 0x5000, 3, { af: false }));
    b.cd(RAM + 0x8000, { ...cd39(l1), HA: 1 });
    b.ste(NIC, { ...s2Ste(s2.root), Config: CFG_NESTED, S1ContextPtr: RAM + 0x8000 });
    const r = b.check();
    expect(brief(r)).toEqual([one('httu', 'write', shared, 0x1000, 'nic', 'guest:vm1')]);
    const before = b.m.mem.read32(shared + 2 * 8);
    expect(b.nic.read(0x2000, 4).ok).toBe(true);
    expect(b.m.mem.read32(shared + 2 * 8)).toBe((before | 0x400) >>> 0); // the SMMU wrote AF into the read-only page
  });

  it('stage-2 tables in host memory: the host can map anything (s2-table-writable)', () => {
    const b = new Bed();
    const s2 = b.pt(true);
    s2.set(RAM, 2, s2Leaf(RAM, 2));
    b.ste(NIC, s2Ste(s2.root));
    expect(brief(b.check())).toEqual(rw('s2-table-writable', PROT, PROT_SIZE));
  });

  it('a 2-level stream table: an STE reached through the L1STD, and an L2 table in host memory (ste-writable)', () => {
    // LOG2SIZE=8, SPLIT=6: four L1STDs; SID 8 is L1 index 0, L2 index 8
    const b = new Bed({ strtabCfg: strtabCfg(8, 1, 6) });
    const l2 = PROT + 0x1000;
    b.w64(STRTAB, l1std(l2, 7)); // Span=7: 64 STEs
    encodeSte({ V: 1, Config: CFG_BYPASS }).forEach((d, i) => b.w64(l2 + NIC * 64 + 8 * i, d));
    expect(brief(b.check())).toEqual(rw('ste-bypass', PROT, PROT_SIZE));
    // an abort STE, but in an L2 table the host can write
    const hostL2 = RAM + 0x50_0000;
    b.w64(STRTAB, l1std(hostL2, 7));
    encodeSte({ V: 1, Config: CFG_ABORT }).forEach((d, i) => b.w64(hostL2 + NIC * 64 + 8 * i, d));
    const r = b.check();
    expect(brief(r)).toEqual(rw('ste-writable', PROT, PROT_SIZE));
    expect(r.breaches[0]!.detail).toContain(
      `the STE at ${hx(hostL2 + NIC * 64)} via the L1STD at ${hx(STRTAB)} is in host-writable memory`,
    );
  });
});

// ---- table formats ------------------------------------------------------------------------------------

describe('table enumeration', () => {
  it('a page-granular identity stage 2 over all host RAM (245,760 leaves) is checked well under a second', () => {
    const b = new Bed();
    const mem = b.m.mem;
    const l1 = POOL;
    const l2 = POOL + 0x1000;
    const l3 = POOL + 0x2000;
    const leafAttrs = Number(s2Leaf(0, 3) & 0xfff_ffffn); // type, MemAttr, S2AP=RW, SH, AF
    mem.write64(l1 + 1 * 8, tableDesc(l2)); // L1 index 1: IPA 0x4000_0000..0x8000_0000
    const n2 = (PROT - RAM) / 0x20_0000; // 480 L2 entries below the protected range
    const words = new Uint32Array(1024);
    for (let i = 0; i < n2; i++) {
      const t = l3 + i * 0x1000;
      mem.write64(l2 + i * 8, tableDesc(t));
      for (let j = 0; j < 512; j++) {
        words[2 * j] = (RAM + i * 0x20_0000 + j * 0x1000 + leafAttrs) >>> 0;
        words[2 * j + 1] = 0;
      }
      mem.writeWords(t, words);
    }
    b.ste(NIC, s2Ste(l1));
    const t0 = performance.now();
    const r = b.check();
    const ms = performance.now() - t0;
    console.log(
      `isolation oracle: 1 GiB page-granular identity stage 2 (${n2 * 512} leaves) checked in ${ms.toFixed(1)} ms`,
    );
    expect(r.ok).toBe(true);
    expect(ms).toBeLessThan(1000);
    expect(b.oracle.reach('nic')).toEqual([
      { base: RAM, size: PROT - RAM, read: true, write: true, path: 's2' },
    ]);
    // a protected page mapped as well: found among the quarter million
    mem.write64(l2 + n2 * 8, tableDesc(l3 + n2 * 0x1000));
    mem.write64(l3 + n2 * 0x1000 + 0x1f8, s2Leaf(PROT + 0x3f000, 3));
    expect(brief(b.check())).toEqual(rw('s2', PROT + 0x3f000, 0x1000));
    expect(b.nic.write(PROT + 0x3f000, bytes4).ok).toBe(true);
  });

  it('tables that loop back on themselves are enumerated once', () => {
    const b = new Bed();
    const mem = b.m.mem;
    const l1 = POOL;
    const t2 = POOL + 0x1000;
    const t3 = POOL + 0x2000;
    for (let i = 0; i < 512; i++) mem.write64(l1 + i * 8, tableDesc(t2)); // every L1 entry → t2
    for (let i = 0; i < 511; i++) mem.write64(t2 + i * 8, tableDesc(t2)); // t2 → itself (as L3: AF=0 pages, unreachable)
    mem.write64(t2 + 511 * 8, tableDesc(t3));
    mem.write64(t3, s2Leaf(RAM + 0x9000, 3));
    b.ste(NIC, s2Ste(l1));
    const t0 = performance.now();
    expect(b.check().ok).toBe(true);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(b.oracle.reach('nic')).toEqual([
      { base: RAM + 0x9000, size: 0x1000, read: true, write: true, path: 's2' },
    ]);
    // IPA: L1 index 5, L2 index 511, L3 index 0
    const ok = b.nic.read(5 * 2 ** 30 + 511 * 2 ** 21, 4);
    expect(ok.ok && ok.pa).toBe(RAM + 0x9000);
  });

  it('concatenated stage-2 start tables: a leaf under the second table is found', () => {
    const b = new Bed();
    const mem = b.m.mem;
    // S2T0SZ=24 (40-bit IPA), S2SL0=1 (start level 1): two concatenated L1 tables, 8 KiB aligned
    const l1 = POOL;
    const l2 = POOL + 0x2000;
    const l3 = POOL + 0x3000;
    const ipa = 0x80_4000_0000; // L1 index 513: entry 1 of the second table
    mem.write64(l1 + 513 * 8, tableDesc(l2));
    mem.write64(l2, tableDesc(l3));
    mem.write64(l3, s2Leaf(PROT + 0xa000, 3, { s2ap: 0b01 }));
    b.ste(NIC, s2Ste(l1, 0, { S2T0SZ: 24 }));
    expect(brief(b.check())).toEqual([one('s2', 'read', PROT + 0xa000)]);
    const ok = b.nic.read(ipa, 4);
    expect(ok.ok && ok.pa).toBe(PROT + 0xa000);
  });

  it('the contiguous hint: the whole aligned output range is reachable (through the IOTLB)', () => {
    const b = new Bed();
    // a guest page at the top of a 64 KB block, and no descriptor pointing at it
    const guest: ProtectedRange = {
      base: 0x5000_f000,
      size: 0x1000,
      owner: 'guest:vm1',
      read: false,
      write: false,
    };
    b.ranges = [guest, HYP];
    const s2 = b.pt();
    // one descriptor with the hint: 16 x 4 KB, output aligned to 64 KB = [0x5000_0000, 0x5001_0000)
    s2.set(0x6000_8000, 3, s2Leaf(0x5000_8000, 3) | CONTIG);
    b.ste(NIC, s2Ste(s2.root));
    expect(brief(b.check())).toEqual(rw('s2', 0x5000_f000, 0x1000, 'nic', 'guest:vm1'));
    expect(b.oracle.reach('nic')).toEqual([
      { base: 0x5000_0000, size: 0x1_0000, read: true, write: true, path: 's2' },
    ]);
    // demonstrate it: the walk through the hinted descriptor fills a 64 KB TLB entry, which then serves its neighbours
    expect(b.nic.read(0x6000_8000, 4).ok).toBe(true);
    const hit = b.nic.read(0x6000_f000, 4);
    expect(hit.ok && hit.pa).toBe(0x5000_f000);
  });
});

// ---- caches ---------------------------------------------------------------------------------------------

describe('the SMMU caches count', () => {
  it('a stale IOTLB entry for a page unmapped without TLBI is a breach (iotlb) until the TLBI', () => {
    const b = new Bed({
      devices: [
        { name: 'nic', sid: NIC },
        { name: 'gpu', sid: GPU },
      ],
    });
    const s2 = b.pt();
    s2.set(RAM, 2, s2Leaf(RAM, 2));
    s2.set(0x5000_0000, 3, s2Leaf(PROT + 0x9000, 3));
    b.ste(NIC, s2Ste(s2.root, 3));
    b.ste(GPU, s2Ste(s2.root, 4));
    expect(brief(b.check())).toEqual([
      ...rw('s2', PROT + 0x9000, 0x1000, 'nic'),
      ...rw('s2', PROT + 0x9000, 0x1000, 'gpu'),
    ]);
    expect(b.nic.read(0x5000_0000, 4).ok).toBe(true); // fills a VMID 3 stage-2 TLB entry
    s2.rewrite(0x5000_0000, 0n); // unmapped, no TLBI
    const r = b.check();
    // only the VMID 3 stream can hit the stale entry
    expect(brief(r)).toEqual(rw('iotlb', PROT + 0x9000, 0x1000, 'nic'));
    expect(r.breaches[0]!.detail).toContain(
      'IOTLB stage-2 entry (VMID 3) 0x50000000 → 0x7c009000 (4 KiB)',
    );
    expect(b.nic.read(0x5000_0000, 4).ok).toBe(true);
    expect(b.m.devices.get('gpu')!.read(0x5000_0000, 4).ok).toBe(false);
    b.cmds(cmd(OPC.TLBI_S12_VMALL, { vmid: 3 }));
    expect(b.check().ok).toBe(true);
    expect(b.nic.read(0x5000_0000, 4).ok).toBe(false);
  });

  it('nested: TLBI_S2_IPA after a stage-2 unmap leaves the combined S1+S2 entry (iotlb) until TLBI_NH_ALL', () => {
    const b = new Bed();
    const s2 = b.pt();
    s2.set(RAM, 2, s2Leaf(RAM, 2)); // the CD and the stage-1 tables
    s2.set(0x5000_0000, 3, s2Leaf(PROT + 0x6000, 3)); // a page the hyp is about to take back
    const s1 = new Pt39(b.m.mem, RAM + 0x10_0000, { next: RAM + 0x11_0000 });
    s1.set(0x2000, 3, s1Leaf(0x5000_0000, 3));
    b.cd(RAM + 0x8000, cd39(s1.root, 7));
    b.ste(NIC, { ...s2Ste(s2.root, 2), Config: CFG_NESTED, S1ContextPtr: RAM + 0x8000 });
    expect(b.nic.read(0x2000, 4).ok).toBe(true); // combined entry (VMID 2, ASID 7) and stage-2 entry
    s2.rewrite(0x5000_0000, 0n);
    b.cmds(cmd(OPC.TLBI_S2_IPA, { vmid: 2, addr: 0x5000_0000n }));
    const r = b.check();
    expect(brief(r)).toEqual(rw('iotlb', PROT + 0x6000, 0x1000));
    expect(r.breaches[0]!.detail).toContain(
      'IOTLB combined stage-1+2 entry (VMID 2, ASID 7) 0x2000 → 0x7c006000',
    );
    expect(b.nic.read(0x2000, 4).ok).toBe(true);
    b.cmds(cmd(OPC.TLBI_NH_ALL, { vmid: 2 }));
    expect(b.check().ok).toBe(true);
    expect(b.nic.read(0x2000, 4).ok).toBe(false);
  });

  it("a stale stage-1 IOTLB entry counts for the ASID of the stream's CD only", () => {
    const b = new Bed();
    const s1 = b.pt();
    s1.set(0x2000, 3, s1Leaf(PROT + 0x7000, 3));
    b.cd(CD_PA, cd39(s1.root, 5));
    b.ste(NIC, { V: 1, Config: CFG_S1, S1ContextPtr: CD_PA });
    expect(b.nic.read(0x2000, 4).ok).toBe(true); // ASID 5 entry
    s1.rewrite(0x2000, 0n);
    expect(brief(b.check())).toEqual(rw('iotlb', PROT + 0x7000, 0x1000));
    // the CD moves to ASID 6 (CFGI_CD): the ASID 5 entry can no longer be hit
    b.cd(CD_PA, cd39(s1.root, 6));
    b.cmds(cmd(OPC.CFGI_CD, { sid: NIC, leaf: 1 }));
    expect(b.check().ok).toBe(true);
    expect(b.nic.read(0x2000, 4).ok).toBe(false);
  });

  it('a stale STE in the configuration cache: memory says abort, the cache still bypasses, until CFGI_STE', () => {
    const b = new Bed();
    b.ste(NIC, { V: 1, Config: CFG_BYPASS });
    expect(b.nic.read(RAM, 4).ok).toBe(true); // caches the STE
    b.ste(NIC, { V: 1, Config: CFG_ABORT }); // no CFGI
    const r = b.check();
    expect(brief(r)).toEqual(rw('ste-bypass', PROT, PROT_SIZE));
    expect(r.breaches[0]!.detail).toContain(
      'cached STE (fetched from 0x7c000200), Config=0b100 (bypass)',
    );
    expect(b.nic.read(PROT, 4).ok).toBe(true);
    b.cmds(cfgiSte(NIC, 1));
    expect(b.check().ok).toBe(true);
    expect(b.nic.read(PROT, 4).ok).toBe(false);
  });

  it('a stale CD in the CD cache is used as well as the one in memory', () => {
    const b = new Bed();
    const s1 = b.pt();
    s1.set(0x2000, 3, s1Leaf(PROT + 0x7000, 3));
    b.cd(CD_PA, cd39(s1.root));
    b.ste(NIC, { V: 1, Config: CFG_S1, S1ContextPtr: CD_PA });
    expect(b.nic.read(0x4000, 4).ok).toBe(false); // fetches and caches CD 0 (a translation fault, nothing in the IOTLB)
    b.cd(CD_PA, { ...cd39(s1.root), V: 0 }); // no CFGI_CD
    expect(brief(b.check())).toEqual(rw('s1', PROT + 0x7000, 0x1000));
    expect(b.nic.read(0x2000, 4).ok).toBe(true);
    b.cmds(cmd(OPC.CFGI_CD, { sid: NIC, leaf: 1 }));
    expect(b.check().ok).toBe(true);
  });
});

// ---- ATS -------------------------------------------------------------------------------------------------

describe('ATS', () => {
  it('full ATS (EATS=0b01): Translated transactions carry any PA (ats-translated); ATC entries are listed', () => {
    const b = new Bed();
    const s2 = b.pt();
    s2.set(RAM, 2, s2Leaf(RAM, 2));
    b.ste(NIC, s2Ste(s2.root, 0, { EATS: 1 }));
    const r = b.check();
    expect(brief(r)).toEqual(rw('ats-translated', PROT, PROT_SIZE));
    expect(r.breaches[0]!.detail).toContain('EATS=0b01');
    expect(b.nic.readTranslated(PROT + 0x100, 4).ok).toBe(true);
    // a DMA through the ATC leaves an entry there
    expect(b.nic.read(RAM + 0x1000, 4, { ats: true }).ok).toBe(true);
    expect(b.oracle.reach('nic').filter((x) => x.path === 'atc')).toEqual([
      { base: RAM + 0x1000, size: 0x1000, read: true, write: true, path: 'atc' },
    ]);
    // EATS=0 (with CFGI): Translated traffic is forbidden
    b.ste(NIC, s2Ste(s2.root));
    b.cmds(cfgiSte(NIC, 1));
    expect(b.check().ok).toBe(true);
    expect(b.nic.readTranslated(PROT + 0x100, 4).ok).toBe(false);
  });

  it('CR0.ATSCHK=0: Translated transactions are not checked at all, whatever EATS says', () => {
    const b = new Bed({ atschk: false });
    const s2 = b.pt();
    s2.set(RAM, 2, s2Leaf(RAM, 2));
    b.ste(NIC, s2Ste(s2.root));
    const r = b.check();
    expect(brief(r)).toEqual(rw('ats-translated', PROT, PROT_SIZE));
    expect(r.breaches[0]!.detail).toContain('CR0.ATSCHK=0');
    expect(b.nic.writeTranslated(PROT, bytes4).ok).toBe(true);
    b.sw.cr0(SMMUEN | CMDQEN | EVENTQEN | ATSCHK);
    expect(b.check().ok).toBe(true);
  });

  it('follows the model with IDR0.ATS=0: CR0.ATSCHK stays 0 and Translated transactions pass unchecked', () => {
    const b = new Bed({ features: { ats: false } });
    expect(b.sw.r32(R.CR0) & ATSCHK).toBe(0);
    const s2 = b.pt();
    s2.set(RAM, 2, s2Leaf(RAM, 2));
    b.ste(NIC, s2Ste(s2.root));
    expect(brief(b.check())).toEqual(rw('ats-translated', PROT, PROT_SIZE));
    expect(b.nic.readTranslated(PROT, 4).ok).toBe(true);
  });

  it('split-stage ATS (EATS=0b10, nested) is bounded by stage 2', () => {
    const b = new Bed();
    const s2 = b.pt();
    s2.set(RAM, 2, s2Leaf(RAM, 2));
    const s1 = new Pt39(b.m.mem, RAM + 0x10_0000, { next: RAM + 0x11_0000 });
    b.cd(RAM + 0x8000, cd39(s1.root));
    b.ste(NIC, { ...s2Ste(s2.root), Config: CFG_NESTED, S1ContextPtr: RAM + 0x8000, EATS: 2 });
    expect(b.check().ok).toBe(true);
    expect(b.nic.readTranslated(PROT, 4).ok).toBe(false); // the "translated" address is an IPA
  });
});

// ---- SMMU-originated writes ----------------------------------------------------------------------------

describe('SMMU-originated writes', () => {
  it('a CMD_SYNC MSI aimed at the protected range is a breach (msi), kept until reset()', () => {
    const b = new Bed();
    const detach = b.oracle.attach();
    b.q.submit(sync(1, RAM + 0x3_0000, 1)); // host memory: fine
    expect(b.check().ok).toBe(true);
    b.q.submit(sync(1, PROT + 0x1230, 0xdead));
    b.q.submit(sync(1, PROT + 0x1ff0, 0xbeef)); // same page: same breach
    const r = b.check();
    expect(brief(r)).toEqual([
      {
        kind: 'smmu-write',
        path: 'msi',
        access: 'write',
        pa: hx(PROT + 0x1000),
        bytes: '0x1000',
        owner: 'hyp',
      },
    ]);
    expect(r.breaches[0]!.detail).toContain(
      'CMD_SYNC MSI write of 4 bytes at 0x7c001230 lands on hyp memory',
    );
    expect(r.breaches[0]!.detail).toContain('2 writes');
    expect(b.m.mem.read32(PROT + 0x1230)).toBe(0xdead); // it really happened
    // still reported while the DMA state is clean, until reset
    expect(b.check().ok).toBe(false);
    b.oracle.reset();
    expect(b.check().ok).toBe(true);
    detach();
    b.q.submit(sync(1, PROT + 0x1230, 0xdead));
    expect(b.check().ok).toBe(true);
  });

  it('an event queue based in the protected range: a breach (event) once an event is recorded', () => {
    const evtq = PROT + 0x2_0000;
    const b = new Bed({ evtq });
    b.oracle.attach();
    expect(b.check().ok).toBe(true);
    // a latent-write oracle sees the queue before anything is written
    const latent = new IsolationOracle(
      b.m,
      { protectedRanges: () => b.ranges },
      { latentSmmuWrites: true },
    );
    const lr = latent.check();
    expect(brief(lr)).toEqual([
      {
        kind: 'smmu-write',
        path: 'event',
        access: 'write',
        pa: hx(evtq),
        bytes: '0x1000',
        owner: 'hyp',
      },
    ]);
    expect(lr.breaches[0]!.detail).toContain('latent');
    expect(b.nic.read(RAM, 4).ok).toBe(false); // STE V=0: C_BAD_STE, recorded
    expect(b.m.smmu.evtq.written).toBe(1);
    const r = b.check();
    expect(brief(r)).toEqual([
      {
        kind: 'smmu-write',
        path: 'event',
        access: 'write',
        pa: hx(evtq),
        bytes: '0x1000',
        owner: 'hyp',
      },
    ]);
    expect(r.breaches[0]!.detail).toContain(`event record write of 32 bytes at ${hx(evtq)}`);
  });

  it('a write landing on a range the host may write is not a breach', () => {
    const b = new Bed();
    // the hyp keeps its first 16 MiB (tables) to itself and lets host devices write the rest
    b.ranges = [
      { base: PROT, size: 0x100_0000, owner: 'hyp', read: false, write: false },
      {
        base: PROT + 0x100_0000,
        size: PROT_SIZE - 0x100_0000,
        owner: 'hyp',
        read: false,
        write: true,
      },
    ];
    b.oracle.attach();
    b.q.submit(sync(1, PROT + 0x100_1230, 1));
    expect(b.check().ok).toBe(true);
    b.q.submit(sync(1, PROT + 0x1230, 1));
    expect(brief(b.check())).toEqual([
      {
        kind: 'smmu-write',
        path: 'msi',
        access: 'write',
        pa: hx(PROT + 0x1000),
        bytes: '0x1000',
        owner: 'hyp',
      },
    ]);
  });
});

// ---- the report -----------------------------------------------------------------------------------------

describe('the report', () => {
  it('lists at most 64 breaches and counts the rest', () => {
    const b = new Bed();
    const s2 = b.pt();
    // 100 read-only protected pages, every other page: 100 separate runs
    for (let i = 0; i < 100; i++)
      s2.set(0x5000_0000 + i * 0x1000, 3, s2Leaf(PROT + 2 * i * 0x1000, 3, { s2ap: 0b01 }));
    b.ste(NIC, s2Ste(s2.root));
    const r = b.check();
    expect(r.ok).toBe(false);
    expect(r.total).toBe(100);
    expect(r.breaches.length).toBe(64);
    expect(r.omitted).toBe(36);
    expect(brief(r).slice(0, 2)).toEqual([
      one('s2', 'read', PROT),
      one('s2', 'read', PROT + 0x2000),
    ]);
    const capped = new IsolationOracle(
      b.m,
      { protectedRanges: () => b.ranges },
      { maxBreaches: 5 },
    ).check();
    expect([capped.breaches.length, capped.total, capped.omitted]).toEqual([5, 100, 95]);
  });

  it('contiguous protected pages reached through one path coalesce into one run; a read-only range only breaches writes', () => {
    const b = new Bed();
    b.ranges = [
      { base: PROT, size: 0x2000, owner: 'hyp', read: false, write: false },
      { base: PROT + 0x2000, size: 0x2000, owner: 'guest:vm1', read: true, write: false },
      { base: PROT + 0x4000, size: PROT_SIZE - 0x4000, owner: 'hyp', read: false, write: false },
    ];
    const s2 = b.pt();
    for (let i = 0; i < 4; i++) s2.set(0x5000_0000 + i * 0x1000, 3, s2Leaf(PROT + i * 0x1000, 3));
    b.ste(NIC, s2Ste(s2.root));
    expect(brief(b.check())).toEqual([
      one('s2', 'read', PROT, 0x2000),
      one('s2', 'write', PROT, 0x2000),
      one('s2', 'write', PROT + 0x2000, 0x2000, 'nic', 'guest:vm1'),
    ]);
  });

  it('rejects a policy whose ranges overlap or are not page-aligned', () => {
    const b = new Bed();
    b.ranges = [HYP, { base: PROT + 0x1000, size: 0x1000, owner: 'x', read: false, write: false }];
    expect(() => b.check()).toThrow(/overlap/);
    b.ranges = [{ base: PROT + 8, size: 0x1000, owner: 'x', read: false, write: false }];
    expect(() => b.check()).toThrow(/page-aligned/);
  });
});

// ---- soundness against the hardware --------------------------------------------------------------------

describe('soundness: every DMA the hardware lets through is inside reach()', () => {
  function inside(runs: ReturnType<IsolationOracle['reach']>, pa: number, write: boolean): boolean {
    return runs.some((r) => pa >= r.base && pa < r.base + r.size && (write ? r.write : r.read));
  }
  // mulberry32: a small seeded PRNG whose every bit is usable
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * n) >>> 0;
  };

  it('random stage-2 and stage-1 mappings, with stale TLB entries', () => {
    for (const config of [CFG_S2, CFG_S1, CFG_NESTED]) {
      const b = new Bed();
      const s2 = b.pt();
      const s1 = b.pt();
      const ias: number[] = [];
      for (let i = 0; i < 64; i++) {
        const ia = 0x5000_0000 + rnd(4096) * 0x1000;
        const pa = rnd(2) ? PROT + rnd(1024) * 0x1000 : RAM + 0x100_0000 + rnd(4096) * 0x1000;
        if (config === CFG_S1) s1.set(ia, 3, s1Leaf(pa, 3, { ap: rnd(4), af: rnd(8) !== 0 }));
        else s2.set(ia, 3, s2Leaf(pa, 3, { s2ap: rnd(4), af: rnd(8) !== 0 }));
        ias.push(ia);
      }
      if (config !== CFG_S2) {
        if (config === CFG_NESTED) {
          // stage 1 in host memory, identity-mapped by stage 2 along with the IPAs the S2 maps
          for (let a = RAM; a < RAM + 0x40_0000; a += 0x20_0000) s2.set(a, 2, s2Leaf(a, 2));
          const s1n = new Pt39(b.m.mem, RAM + 0x20_0000, { next: RAM + 0x21_0000 });
          for (const ia of ias) s1n.set(0x1000_0000 + (ia - 0x5000_0000), 3, s1Leaf(ia, 3));
          b.cd(RAM + 0x1000, cd39(s1n.root));
          b.ste(NIC, { ...s2Ste(s2.root), Config: CFG_NESTED, S1ContextPtr: RAM + 0x1000 });
        } else {
          b.cd(CD_PA, cd39(s1.root));
          b.ste(NIC, { V: 1, Config: CFG_S1, S1ContextPtr: CD_PA });
        }
      } else {
        b.ste(NIC, s2Ste(s2.root));
      }
      const base = config === CFG_NESTED ? 0x1000_0000 : 0x5000_0000;
      const probe = (): { passed: number; protectedHits: number } => {
        const runs = b.oracle.reach('nic');
        let passed = 0;
        let protectedHits = 0;
        for (const ia of ias) {
          for (const write of [false, true]) {
            for (const priv of [false, true]) {
              const io = base + (ia - 0x5000_0000);
              const res = write ? b.nic.write(io, bytes4, { priv }) : b.nic.read(io, 4, { priv });
              if (!res.ok) continue;
              passed++;
              if (res.pa >= PROT && res.pa < PROT + PROT_SIZE) protectedHits++;
              expect(
                inside(runs, res.pa, write),
                `config ${config}: ${write ? 'write' : 'read'} of ${hx(io)} reached ${hx(res.pa)}`,
              ).toBe(true);
            }
          }
        }
        return { passed, protectedHits };
      };
      const first = probe();
      // drop every mapping without TLBI: only the IOTLB is left, and it must still be covered
      for (const ia of ias) (config === CFG_S1 ? s1 : s2).rewrite(ia, 0n);
      const second = probe();
      // the probes did exercise the hardware: walks, stale TLB hits, and protected pages among them
      expect(first.passed).toBeGreaterThan(40);
      expect(first.protectedHits).toBeGreaterThan(10);
      expect(second.passed).toBeGreaterThan(20);
      expect(second.protectedHits).toBeGreaterThan(5);
      expect(b.check().ok).toBe(false);
    }
  });
});
