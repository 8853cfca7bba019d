/**
 * The hypervisor's paravirtual IOMMU domains (pKVM v1/v2, designs.md §2.1): the domains the
 * host allocates by hypercall, their page tables, the devices attached to them, and the STEs,
 * CDs and invalidations the hypervisor writes for them. Every structure is in hyp memory and
 * only the hypervisor writes it; the host names things by ID.
 *
 * The domain format: **stage 1 with stage 2 bypassed**. A DMA domain is an ARM_64_LPAE_S1
 * io-pgtable in the hyp pool (hyp/iommu/hyp-pgtable.ts) with an ASID of its own under VMID 0;
 * an attached device's STE is S1-only (Config 0b101) with a linear CD table per device (one CD
 * per PASID, each pointing at its domain's table and ASID). Why stage 1: the hypervisor owns the
 * table, so it needs no stage 2 to confine it (every page it maps passed the ownership check and
 * holds a DMA refcount, dma-refcount.ts); walks are single-stage (at most 4 descriptor reads a
 * miss, against up to 24 for nested), which is the "shorter walks, less TLB pressure" of the v2
 * cover; TLB entries are tagged by ASID, so an unmap invalidates one ASID's VA range only; and
 * it needs no nesting-capable SMMU. What it gives up: the host's own page-table features
 * (anything io-pgtable here does not do), and every map and unmap is a hypercall.
 *
 * The identity domain is the reserved IDMAP domain (abi.ts IDMAP_DOMAIN): an attached device's
 * STE is stage 2 only with the idmap (VMID 0), as a host bypass STE becomes under pKVM.
 *
 * Ordering: a device's first attach writes its CDs, then installs its STE (strtab.ts: CFGI_STE
 * + CMD_SYNC); later attaches write the CD and issue CFGI_CD + CMD_SYNC; the last detach makes
 * the STE invalid (V=0, CFGI_STE + CMD_SYNC) and then CFGI_CD_ALL + CMD_SYNC before the CD
 * table goes back to the pool. unmap_pages clears the leaves, issues TLBI_NH_VA for the range
 * (range-encoded with IDR3.RIL) + CMD_SYNC, and only then drops the pages' DMA refcounts; if the
 * invalidation cannot complete, the refcounts stay (the pages can never be donated: fail closed).
 * free_domain issues TLBI_NH_ASID + CMD_SYNC before its ASID can be reused.
 */
import type { MmioBus } from '../../hw/bus.ts';
import { set } from '../../hw/bits.ts';
import { STE, STE_WORDS, CFG, S1FMT, S1DSS, SHCFG } from '../../hw/smmu/ste.ts';
import { CD, CD_WORDS, CD_BYTES } from '../../hw/smmu/cd.ts';
import {
  encodeCommand,
  Opcode,
  OP,
  ASID as F_ASID,
  VMID as F_VMID,
  NUM as F_NUM,
  SCALE as F_SCALE,
  TG as F_TG,
  TTL as F_TTL,
  Leaf as F_LEAF,
  VA as F_VA,
} from '../../hw/smmu/commands.ts';
import { descToOa } from '../../hw/vmsa/descriptor.ts';
import {
  IoPgtableError,
  newGather,
  newRangeInvBuf,
  rangeInvInto,
  type IoPgtable,
  type Prot,
  type S1PgtableCfg,
  type S2PgtableCfg,
} from '../../hw/vmsa/io-pgtable.ts';
import { PAGE } from '../mem/ownership.ts';
import { PoolExhausted, type HypPool } from '../mem/pool.ts';
import { hypStage1Pgtable } from '../iommu/hyp-pgtable.ts';
import { setStage2 } from '../smmuv3/ste-sanitize.ts';
import {
  HYP_SLOT,
  SYNC_OK,
  SYNC_NO_ROOM,
  ShadowQueueError,
  type ShadowQueue,
} from '../smmuv3/shadowq.ts';
import type { ShadowStreamTable } from '../smmuv3/strtab.ts';
import type { StatRecord } from '../../hw/probe.ts';
import type { PV_STATS } from '../probes.ts';
import { ERRNO, IDMAP_DOMAIN, PROT } from './abi.ts';
import { USE_OK, type DmaRefcount } from './dma-refcount.ts';

export type PvStats = StatRecord<typeof PV_STATS.pv>;

const E = ERRNO;
/** entries in one table of a 4 KB-granule table: map_pages and unmap_pages stop at its end */
const TABLE_ENTRIES = 512;
const IAS_LIMIT = 2 ** 48;
const NO_CMDS: readonly Uint32Array[] = [];
/** STE.S1CIR/S1COR write-back read-allocate, S1CSH Inner Shareable (Linux's CD-table STE) */
const CACHE_WBRA = 1;
const SH_ISH = 3;

/** The Prot for each combination of map_pages prot bits (abi.ts PROT), made once. */
const PROTS: readonly Prot[] = Array.from({ length: 64 }, (_, b) =>
  Object.freeze({
    read: (b & PROT.READ) !== 0,
    write: (b & PROT.WRITE) !== 0,
    cache: (b & PROT.CACHE) !== 0,
    exec: (b & PROT.NOEXEC) === 0,
    mmio: (b & PROT.MMIO) !== 0,
    priv: (b & PROT.PRIV) !== 0,
  }),
);

export interface PvDomain {
  readonly id: number;
  readonly asid: number;
  readonly pgtable: IoPgtable;
  /** pKVM's refcount: 1 for the allocation, +1 per attached (device, PASID) */
  refs: number;
  /** pages mapped now */
  mappedPages: number;
}

/** A host device (StreamID) the hypervisor has an STE for. */
interface PvDevice {
  readonly identity: boolean;
  /** the linear CD table (DMA devices), and its size as PASID bits */
  readonly cdTable: number;
  readonly pasidBits: number;
  /** the domain each PASID is attached to, or -1 */
  readonly domains: Int32Array;
  attached: number;
}

export interface PvDomainsEnv {
  readonly bus: MmioBus;
  readonly pool: HypPool;
  readonly shadowQ: ShadowQueue;
  readonly strtab: ShadowStreamTable;
  /** the idmap's stage-2 configuration (identity domains) */
  readonly idmapS2: S2PgtableCfg;
  readonly refcount: DmaRefcount;
  readonly stats: PvStats;
  /** the SMMU's output size (bits) and ASID size (8 or 16) */
  readonly oas: number;
  readonly asidBits: number;
  /** PASID bits a device may have: min(IDR1.SSIDSIZE, MAX_PASID_BITS) */
  readonly pasidBitsMax: number;
  /** IDR3.RIL: range invalidation */
  readonly ril: boolean;
  /** whether the SMMU is on: while it is off no command is issued (power-on invalidates everything) */
  powered(): boolean;
}

export class PvDomains {
  readonly domains = new Map<number, PvDomain>();
  private readonly devices = new Map<number, PvDevice>();
  private nextAsid = 1;
  private readonly freeAsids: number[] = [];
  /** why the last call was refused (for the log and the tests) */
  why = '';
  // reused buffers: the STE and CD being written, one command, the PAs an unmap frees
  private readonly ste = new Uint32Array(STE_WORDS);
  private readonly cd = new Uint32Array(CD_WORDS);
  private readonly cmd = new Uint32Array(4);
  private readonly pas = new Float64Array(TABLE_ENTRIES);
  private readonly rangeBuf = newRangeInvBuf();
  private readonly gather = newGather();
  private readonly sync = (cmds: Uint32Array[]): void => this.issue(cmds);

  constructor(private readonly env: PvDomainsEnv) {}

  private refuse(errno: number, why: string): number {
    this.why = why;
    return -errno;
  }

  /** Commands + CMD_SYNC through the shadow queue (skipped while the SMMU is off); throws ShadowQueueError. */
  private issue(cmds: readonly Uint32Array[]): void {
    if (!this.env.powered()) return;
    this.env.shadowQ.issueAndSync(cmds);
  }

  /** The domain `id` names, for the refusal checks of every call. */
  domain(id: number): PvDomain | undefined {
    return this.domains.get(id);
  }

  /** Whether the hypervisor has an STE for host device `sid` (attached, or enabled under pv-idmap). */
  hasDevice(sid: number): boolean {
    return this.devices.has(sid);
  }

  // ---- domains -------------------------------------------------------------------------------

  alloc(id: number): number {
    if (this.domains.has(id)) return this.refuse(E.EEXIST, `domain ${id} already exists`);
    const asid = this.freeAsids.pop() ?? this.nextAsid;
    if (asid >= 2 ** this.env.asidBits) return this.refuse(E.ENOMEM, 'no ASID left');
    let pgtable: IoPgtable;
    try {
      pgtable = hypStage1Pgtable(this.env.bus, this.env.pool, this.env.oas, `pv domain ${id}`);
    } catch (e) {
      if (asid !== this.nextAsid) this.freeAsids.push(asid);
      if (e instanceof PoolExhausted) return this.refuse(E.ENOMEM, e.message);
      throw e;
    }
    if (asid === this.nextAsid) this.nextAsid++;
    this.domains.set(id, { id, asid, pgtable, refs: 1, mappedPages: 0 });
    this.env.stats.domains++;
    return 0;
  }

  free(id: number): number {
    const d = this.domains.get(id);
    if (!d) return this.refuse(E.ENOENT, `no domain ${id}`);
    if (d.refs !== 1)
      return this.refuse(E.EBUSY, `domain ${id} has ${d.refs - 1} device attachment(s)`);
    if (d.mappedPages !== 0)
      return this.refuse(
        E.EBUSY,
        `domain ${id} still maps ${d.mappedPages} page(s): unmap them first (their DMA refcounts)`,
      );
    // the ASID is reused: nothing of this domain may stay in the TLBs
    try {
      this.issue([encodeCommand('TLBI_NH_ASID', { ASID: d.asid, VMID: 0 })]);
    } catch (e) {
      if (e instanceof ShadowQueueError) return this.refuse(E.EBUSY, e.message);
      throw e;
    }
    this.env.stats.tlbiBatches++;
    d.pgtable.free();
    this.domains.delete(id);
    this.freeAsids.push(d.asid);
    this.env.stats.domains--;
    return 0;
  }

  // ---- devices -------------------------------------------------------------------------------

  /** Attach (sid, pasid) to domain `id` (IDMAP_DOMAIN: identity). The caller has checked the arguments' ranges and the device's owner. */
  attach(sid: number, id: number, pasid: number, pasidBits: number): number {
    const env = this.env;
    const dev = this.devices.get(sid);
    if (id === IDMAP_DOMAIN) {
      if (pasid !== 0 || pasidBits !== 0)
        return this.refuse(
          E.EINVAL,
          'the identity domain takes the whole StreamID: PASID 0, no PASID bits',
        );
      if (dev) return this.refuse(E.EBUSY, `StreamID ${sid} is attached: detach it first`);
      this.identitySte(this.ste);
      try {
        this.installSte(sid, this.ste);
      } catch (e) {
        return this.failed(e);
      }
      this.devices.set(sid, {
        identity: true,
        cdTable: 0,
        pasidBits: 0,
        domains: new Int32Array(0),
        attached: 1,
      });
      return 0;
    }
    const d = this.domains.get(id);
    if (!d) return this.refuse(E.ENOENT, `no domain ${id}`);
    if (pasidBits > env.pasidBitsMax)
      return this.refuse(
        E.EINVAL,
        `pasid_bits ${pasidBits} exceeds the SMMU's ${env.pasidBitsMax}`,
      );
    if (pasid >= 2 ** pasidBits)
      return this.refuse(E.EINVAL, `PASID ${pasid} does not fit in ${pasidBits} PASID bits`);
    if (dev) {
      if (dev.identity) return this.refuse(E.EBUSY, `StreamID ${sid} is in the identity domain`);
      if (dev.pasidBits !== pasidBits)
        return this.refuse(
          E.EINVAL,
          `StreamID ${sid} has ${dev.pasidBits} PASID bits, not ${pasidBits}`,
        );
      if (dev.domains[pasid] !== -1)
        return this.refuse(E.EBUSY, `StreamID ${sid} PASID ${pasid} is attached: detach it first`);
      this.writeCd(dev.cdTable, pasid, d);
      try {
        this.issue([encodeCommand('CFGI_CD', { StreamID: sid, SubstreamID: pasid, Leaf: 1 })]);
      } catch (e) {
        return this.failed(e);
      }
      dev.domains[pasid] = id;
      dev.attached++;
      d.refs++;
      return 0;
    }
    let cdTable: number;
    try {
      cdTable = env.pool.alloc(2 ** pasidBits * CD_BYTES, `pv CD table of StreamID ${sid}`);
    } catch (e) {
      if (e instanceof PoolExhausted) return this.refuse(E.ENOMEM, e.message);
      throw e;
    }
    this.writeCd(cdTable, pasid, d);
    this.dmaSte(this.ste, cdTable, pasidBits);
    try {
      this.installSte(sid, this.ste);
    } catch (e) {
      env.pool.free(cdTable, 2 ** pasidBits * CD_BYTES);
      return this.failed(e);
    }
    const domains = new Int32Array(2 ** pasidBits).fill(-1);
    domains[pasid] = id;
    this.devices.set(sid, { identity: false, cdTable, pasidBits, domains, attached: 1 });
    d.refs++;
    return 0;
  }

  detach(sid: number, id: number, pasid: number): number {
    const dev = this.devices.get(sid);
    if (!dev) return this.refuse(E.ENOENT, `StreamID ${sid} is not attached`);
    if (dev.identity) {
      if (id !== IDMAP_DOMAIN || pasid !== 0)
        return this.refuse(
          E.ENOENT,
          `StreamID ${sid} is in the identity domain, not domain ${id} PASID ${pasid}`,
        );
      return this.invalidate(sid, dev);
    }
    if (pasid >= dev.domains.length || dev.domains[pasid] !== id)
      return this.refuse(
        E.ENOENT,
        `StreamID ${sid} PASID ${pasid} is not attached to domain ${id}`,
      );
    const d = this.domains.get(id)!;
    if (dev.attached === 1) {
      const r = this.invalidate(sid, dev);
      if (r === 0) d.refs--;
      return r;
    }
    this.cd.fill(0);
    this.env.bus.writeWords('hyp', dev.cdTable + pasid * CD_BYTES, this.cd, CD_WORDS);
    this.env.stats.cdWrites++;
    try {
      this.issue([encodeCommand('CFGI_CD', { StreamID: sid, SubstreamID: pasid, Leaf: 1 })]);
    } catch (e) {
      return this.failed(e);
    }
    dev.domains[pasid] = -1;
    dev.attached--;
    d.refs--;
    return 0;
  }

  /** The device's STE becomes invalid (V=0), then its CDs are invalidated and its CD table freed. */
  private invalidate(sid: number, dev: PvDevice): number {
    this.ste.fill(0);
    try {
      this.installSte(sid, this.ste);
      if (!dev.identity) this.issue([encodeCommand('CFGI_CD_ALL', { StreamID: sid })]);
    } catch (e) {
      return this.failed(e);
    }
    if (!dev.identity) this.env.pool.free(dev.cdTable, dev.domains.length * CD_BYTES);
    this.devices.delete(sid);
    return 0;
  }

  /** pv-idmap's enable_dev: the device's STE points at the idmap. */
  enableIdentity(sid: number): number {
    if (this.devices.has(sid)) return this.refuse(E.EEXIST, `StreamID ${sid} is enabled already`);
    return this.attach(sid, IDMAP_DOMAIN, 0, 0);
  }

  /** pv-idmap's disable_dev: the device's STE becomes invalid. */
  disableIdentity(sid: number): number {
    const dev = this.devices.get(sid);
    if (!dev) return this.refuse(E.ENOENT, `StreamID ${sid} is not enabled`);
    return this.invalidate(sid, dev);
  }

  // ---- mappings ------------------------------------------------------------------------------

  /**
   * map_pages on domain `d` (the arguments are safe integers, `prot` within PROT_ALLOWED and
   * nothing overflows): check and count every page (__pkvm_use_dma), then map up to the end of
   * the table holding the first entry. Returns the bytes mapped or -errno; the pages not mapped
   * are un-counted.
   */
  map(
    d: PvDomain,
    iova: number,
    paddr: number,
    pgsize: number,
    pgcount: number,
    prot: number,
  ): number {
    const pt = d.pgtable;
    const env = this.env;
    if (!pt.pgsizeBitmap.includes(pgsize))
      return this.refuse(
        E.EINVAL,
        `pgsize 0x${pgsize.toString(16)} is not a page or block size of the domain`,
      );
    if (iova % pgsize || paddr % pgsize)
      return this.refuse(
        E.EINVAL,
        `iova 0x${iova.toString(16)} / paddr 0x${paddr.toString(16)} not aligned to 0x${pgsize.toString(16)}`,
      );
    if (iova + pgsize * pgcount > IAS_LIMIT)
      return this.refuse(
        E.EINVAL,
        `iova 0x${iova.toString(16)} + 0x${(pgsize * pgcount).toString(16)} is beyond the 48-bit input size`,
      );
    if (paddr + pgsize * pgcount > 2 ** pt.oas)
      return this.refuse(
        E.EINVAL,
        `paddr 0x${paddr.toString(16)} + 0x${(pgsize * pgcount).toString(16)} is beyond the ${pt.oas}-bit output size`,
      );
    if (pgcount === 0) return 0;
    const left = TABLE_ENTRIES - (Math.floor(iova / pgsize) % TABLE_ENTRIES);
    const bytes = Math.min(pgcount, left) * pgsize;
    const rc = env.refcount;
    if (rc.use(paddr, bytes) !== USE_OK)
      return this.refuse(E.EPERM, `paddr 0x${rc.refusedPa.toString(16)}: ${rc.refusedWhy}`);
    let done: number;
    try {
      done = pt.map(iova, paddr, pgsize, bytes / pgsize, PROTS[prot]!);
    } catch (e) {
      rc.unuse(paddr, bytes);
      if (e instanceof IoPgtableError)
        return this.refuse(e.errno === 'EEXIST' ? E.EEXIST : E.EINVAL, e.message);
      if (e instanceof PoolExhausted) return this.refuse(E.ENOMEM, e.message);
      throw e;
    }
    if (done < bytes) rc.unuse(paddr + done, bytes - done);
    d.mappedPages += done / PAGE;
    env.stats.pagesMapped += done / PAGE;
    return done;
  }

  /**
   * unmap_pages on domain `d`: the leaves of `pgsize` from `iova`, up to the end of the table and
   * the first hole; then TLBI + CMD_SYNC; then the DMA refcounts drop. Returns the bytes
   * unmapped or -errno (a range mapped with smaller pages than `pgsize` is -EINVAL: the tables
   * under it would be freed with their pages still counted).
   */
  unmap(d: PvDomain, iova: number, pgsize: number, pgcount: number): number {
    const pt = d.pgtable;
    const env = this.env;
    if (!pt.pgsizeBitmap.includes(pgsize))
      return this.refuse(
        E.EINVAL,
        `pgsize 0x${pgsize.toString(16)} is not a page or block size of the domain`,
      );
    if (iova % pgsize)
      return this.refuse(
        E.EINVAL,
        `iova 0x${iova.toString(16)} not aligned to 0x${pgsize.toString(16)}`,
      );
    if (iova + pgsize * pgcount > IAS_LIMIT)
      return this.refuse(
        E.EINVAL,
        `iova 0x${iova.toString(16)} + 0x${(pgsize * pgcount).toString(16)} is beyond the 48-bit input size`,
      );
    const left = TABLE_ENTRIES - (Math.floor(iova / pgsize) % TABLE_ENTRIES);
    const want = Math.min(pgcount, left);
    // the PA of every leaf about to go (the refcounts to drop once the TLBs are clean)
    const pas = this.pas;
    let n = 0;
    for (; n < want; n++) {
      const e = pt.lookup(iova + n * pgsize);
      if (e === null) break;
      const size = pt.blockSize(e.level);
      if (size < pgsize && n === 0)
        return this.refuse(
          E.EINVAL,
          `iova 0x${iova.toString(16)} is mapped with 0x${size.toString(16)} pages, not 0x${pgsize.toString(16)}`,
        );
      if (size !== pgsize) break;
      pas[n] = descToOa(e.pte, false);
    }
    if (n === 0) return 0;
    const g = this.gather;
    const done = pt.unmap(iova, pgsize, n, g);
    if (done === 0) return 0;
    if (env.powered()) {
      const r = this.invalidateRange(d.asid, iova, done, pgsize);
      if (r !== SYNC_OK) {
        d.mappedPages -= done / PAGE;
        return this.refuse(
          E.EBUSY,
          `the TLB invalidation of 0x${iova.toString(16)}+0x${done.toString(16)} did not complete (${env.shadowQ.why(r)}): the pages stay in use`,
        );
      }
    }
    const rc = env.refcount;
    for (let i = 0; i < done / pgsize; i++) rc.unuse(pas[i]!, pgsize);
    d.mappedPages -= done / PAGE;
    env.stats.pagesUnmapped += done / PAGE;
    return done;
  }

  /** TLBI_NH_VA (ASID, VMID 0, Leaf) over [iova, iova+size) + CMD_SYNC, encoded into one reused command; a shadowq.ts sync() code. */
  private invalidateRange(asid: number, iova: number, size: number, granule: number): number {
    const sq = this.env.shadowQ;
    const w = this.cmd;
    if (this.env.ril) {
      const b = this.rangeBuf;
      const n = rangeInvInto(b, iova, size, granule, true, PAGE);
      if (!sq.hasRoom(n + 1)) return SYNC_NO_ROOM;
      for (let i = 0; i < n; i++) {
        tlbiNhVa(w, asid, b.num[i]!, b.scale[i]!, b.tg, b.ttl, b.addr[i]! / PAGE);
        sq.append(w, HYP_SLOT);
      }
    } else {
      const n = size / granule;
      if (!sq.hasRoom(n + 1)) return SYNC_NO_ROOM;
      for (let i = 0; i < n; i++) {
        tlbiNhVa(w, asid, 0, 0, 0, 0, (iova + i * granule) / PAGE);
        sq.append(w, HYP_SLOT);
      }
    }
    this.env.stats.tlbiBatches++;
    return sq.sync(NO_CMDS);
  }

  /** iova_to_phys: the PA, or 0 when nothing is mapped there. */
  iovaToPhys(d: PvDomain, iova: number): number {
    if (iova >= IAS_LIMIT)
      return this.refuse(E.EINVAL, `iova 0x${iova.toString(16)} is beyond the 48-bit input size`);
    return d.pgtable.iovaToPhys(iova) ?? 0;
  }

  // ---- structures ----------------------------------------------------------------------------

  private installSte(sid: number, w: Uint32Array): void {
    this.env.strtab.install(sid, w, this.sync);
    this.env.stats.steWrites++;
  }

  /** A refusal from a failed install or invalidation: the queue (-EBUSY) or the pool (-ENOMEM). */
  private failed(e: unknown): number {
    if (e instanceof ShadowQueueError) return this.refuse(E.EBUSY, e.message);
    if (e instanceof PoolExhausted) return this.refuse(E.ENOMEM, e.message);
    throw e;
  }

  /** CD `pasid` of a device's table: domain `d`'s stage-1 table and ASID. */
  private writeCd(table: number, pasid: number, d: PvDomain): void {
    dmaCd(this.cd, d.pgtable.s1!, d.asid);
    this.env.bus.writeWords('hyp', table + pasid * CD_BYTES, this.cd, CD_WORDS);
    this.env.stats.cdWrites++;
  }

  /** The STE of an identity device: stage 2 only with the idmap, VMID 0. */
  identitySte(w: Uint32Array): void {
    w.fill(0);
    set(w, STE.V, 1);
    set(w, STE.Config, CFG.S2_TRANS);
    set(w, STE.SHCFG, SHCFG.INCOMING);
    setStage2(w, this.env.idmapS2, 0);
  }

  /** The STE of a DMA device: stage 1 only, its linear CD table, VMID 0 (EATS 0, STRW NS-EL1). */
  private dmaSte(w: Uint32Array, cdTable: number, pasidBits: number): void {
    w.fill(0);
    set(w, STE.V, 1);
    set(w, STE.Config, CFG.S1_TRANS);
    set(w, STE.S1Fmt, S1FMT.LINEAR);
    set(w, STE.S1ContextPtr, cdTable / 64);
    set(w, STE.S1CDMax, pasidBits);
    // with PASIDs, traffic without one uses CD 0 (the device's own domain)
    if (pasidBits) set(w, STE.S1DSS, S1DSS.SSID0);
    set(w, STE.S1CIR, CACHE_WBRA);
    set(w, STE.S1COR, CACHE_WBRA);
    set(w, STE.S1CSH, SH_ISH);
    set(w, STE.SHCFG, SHCFG.INCOMING);
    set(w, STE.S2VMID, 0);
  }
}

/** A CD for a stage-1 table `s1` under `asid`: TTB0 only, AArch64, faults recorded, aborting. */
function dmaCd(w: Uint32Array, s1: S1PgtableCfg, asid: number): void {
  w.fill(0);
  set(w, CD.T0SZ, s1.tsz);
  set(w, CD.TG0, s1.tg);
  set(w, CD.IR0, s1.irgn);
  set(w, CD.OR0, s1.orgn);
  set(w, CD.SH0, s1.sh);
  set(w, CD.EPD1, 1);
  set(w, CD.V, 1);
  set(w, CD.IPS, s1.ips);
  set(w, CD.AA64, 1);
  set(w, CD.R, 1);
  set(w, CD.A, 1);
  set(w, CD.ASET, 1);
  set(w, CD.ASID, asid);
  set(w, CD.TTB0, s1.ttbr / 16);
  set(w, CD.MAIR0, Number(s1.mair & 0xffff_ffffn));
  set(w, CD.MAIR1, Number(s1.mair >> 32n));
}

const OP_TLBI_NH_VA = OP.TLBI_NH_VA;

/** TLBI_NH_VA with VMID 0 and Leaf=1 into `w` (no allocation). */
function tlbiNhVa(
  w: Uint32Array,
  asid: number,
  num: number,
  scale: number,
  tg: number,
  ttl: number,
  page: number,
): void {
  w[0] = 0;
  w[1] = 0;
  w[2] = 0;
  w[3] = 0;
  set(w, Opcode, OP_TLBI_NH_VA);
  set(w, F_ASID, asid);
  set(w, F_VMID, 0);
  set(w, F_NUM, num);
  set(w, F_SCALE, scale);
  set(w, F_TG, tg);
  set(w, F_TTL, ttl);
  set(w, F_LEAF, 1);
  set(w, F_VA, page);
}
