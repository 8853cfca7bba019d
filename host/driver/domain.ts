/**
 * IOMMU domains and attach/detach, as Linux's arm-smmu-v3 does them:
 *   blocked  → abort STE
 *   identity → bypass STE
 *   dma      → stage-1 domain: a CD (ASID, TTB0, MAIR) in the master's CD table and a
 *              stage-1 STE pointing at it
 *   s2       → stage-2 domain (only where IDR0.S2P is visible): VMID, S2 tables in the STE
 * Every STE and CD change goes through the hitless entry writer (host/driver/entry.ts): each sync is
 * CFGI_STE/CFGI_CD(Leaf=1) + CMD_SYNC, and an attach ends with PREFETCH_CONFIG (no sync).
 */
import type { ArmSmmuV3 } from './driver.ts';
import { DriverError } from './driver.ts';
import { writeEntry, steWriterOps, cdWriterOps, S1DSS, ENTRY_WORDS } from './entry.ts';
import {
  makeAbortSte,
  makeBypassSte,
  makeCdtableSte,
  makeS1Cd,
  makeS2Ste,
  S1FMT,
  type MasterOpts,
  type HostSmmuFeatures,
} from './ste-make.ts';
import type { S1PgtableCfg, S2PgtableCfg } from '../../hw/vmsa/io-pgtable.ts';

export type DomainType = 'blocked' | 'identity' | 'dma' | 's2';

/** What a domain needs from its page table: io-pgtable's CD (stage 1) or STE (stage 2) configuration. */
export interface DomainPgtable {
  readonly s1?: S1PgtableCfg;
  readonly s2?: S2PgtableCfg;
}

export class Domain {
  readonly sids = new Set<number>();
  constructor(
    readonly type: DomainType,
    readonly id: number,
    readonly asid: number,
    readonly vmid: number,
    readonly pgtable: DomainPgtable | null,
  ) {}
}

/** A master's CD table (Linux: arm_smmu_ctx_desc_cfg). */
interface CdTable {
  base: number;
  s1cdmax: number;
  s1fmt: number;
}

export interface AttachOptions extends MasterOpts {
  /** the master's PASID bits (0: one CD, no substreams) */
  ssidBits?: number;
}

export class DomainManager {
  private nextAsid = 1;
  private nextVmid = 1;
  private nextId = 1;
  private readonly cdTables = new Map<number, CdTable>();
  private readonly attached = new Map<number, Domain>();
  private readonly hf: HostSmmuFeatures;

  constructor(
    private readonly drv: ArmSmmuV3,
    attrTypesOvr = false,
  ) {
    const ft = drv.ft;
    this.hf = {
      attrTypesOvr,
      stalls: ft.stalls,
      stallForce: ft.stallForce,
      e2h: false,
      ats: ft.ats,
    };
  }

  alloc(type: DomainType, pgtable: DomainPgtable | null = null): Domain {
    if (type === 'dma' && !pgtable?.s1)
      throw new DriverError('a DMA domain needs a stage-1 page table');
    if (type === 's2') {
      if (!this.drv.ft.transS2) throw new DriverError('stage-2 domains need IDR0.S2P');
      if (!pgtable?.s2) throw new DriverError('a stage-2 domain needs a stage-2 page table');
    }
    const asid = type === 'dma' ? this.nextAsid++ : 0;
    const vmid = type === 's2' ? this.nextVmid++ : 0;
    if (asid >= 2 ** this.drv.ft.asidBits) throw new DriverError('out of ASIDs');
    return new Domain(type, this.nextId++, asid, vmid, pgtable);
  }

  domainOf(sid: number): Domain | undefined {
    return this.attached.get(sid);
  }

  private readEntry(addr: number): Uint32Array {
    const w = new Uint32Array(ENTRY_WORDS);
    const b = this.drv.readBytes(addr, 64);
    new Uint8Array(w.buffer).set(b);
    return w;
  }

  private writeSte(sid: number, target: Uint32Array): void {
    const addr = this.drv.steAddr(sid);
    const cur = this.readEntry(addr);
    writeEntry(
      cur,
      target,
      steWriterOps(
        () => this.drv.issue([['CFGI_STE', { StreamID: sid, Leaf: 1 }]]),
        (q, lo, hi) =>
          this.drv.writeMem64(addr + 8 * q, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)),
      ),
    );
  }

  private writeCd(sid: number, ssid: number, addr: number, target: Uint32Array): void {
    const cur = this.readEntry(addr);
    writeEntry(
      cur,
      target,
      cdWriterOps(
        () => this.drv.issue([['CFGI_CD', { StreamID: sid, SubstreamID: ssid, Leaf: 1 }]]),
        (q, lo, hi) =>
          this.drv.writeMem64(addr + 8 * q, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)),
      ),
    );
  }

  /** arm_smmu_alloc_cd_tables: one CD, or a linear table of 2^s1cdmax CDs (2-level not built yet). */
  private cdTable(sid: number, o: AttachOptions): CdTable {
    let t = this.cdTables.get(sid);
    if (t) return t;
    const bits = Math.min(o.ssidBits ?? 0, this.drv.ft.ssidBits);
    if (bits > 10)
      throw new DriverError('2-level CD tables (more than 1024 PASIDs) are not built yet');
    const n = 2 ** bits;
    t = {
      base: this.drv.pages.alloc(n * 64, Math.max(64, n * 64)),
      s1cdmax: bits,
      s1fmt: S1FMT.LINEAR,
    };
    this.cdTables.set(sid, t);
    return t;
  }

  private cdAddr(t: CdTable, ssid: number): number {
    return t.base + ssid * 64;
  }

  /**
   * Attach a stage-1 DMA domain to a PASID of `sid` (Linux arm_smmu_set_pasid): write CD[ssid]
   * in the master's CD table (CFGI_CD with that SubstreamID). The master's CD table must have
   * room (ssidBits at its first attach). If the RID is not on a DMA domain, its STE becomes a
   * CD-table STE with S1DSS=bypass, so traffic without a PASID keeps bypassing.
   */
  attachPasid(sid: number, ssid: number, d: Domain, o: AttachOptions = {}): void {
    if (d.type !== 'dma')
      throw new DriverError('only stage-1 DMA domains can be attached to a PASID');
    if (ssid === 0) throw new DriverError('PASID 0 is the RID (IOMMU_NO_PASID): use attach()');
    const drv = this.drv;
    drv.ensureL2(sid);
    const t = this.cdTable(sid, o);
    if (ssid >= 2 ** t.s1cdmax)
      throw new DriverError(`PASID ${ssid} does not fit the CD table (S1CDMax=${t.s1cdmax})`);
    const s1 = d.pgtable!.s1!;
    if (d.sids.size === 0) drv.issue([['TLBI_NH_ASID', { ASID: d.asid, VMID: 0 }]]);
    const cd = makeS1Cd(this.hf, o, {
      asid: d.asid,
      tcr: { tsz: s1.tsz, tg: s1.tg, irgn: s1.irgn, orgn: s1.orgn, sh: s1.sh, ips: s1.ips },
      ttbr: BigInt(s1.ttbr),
      mair: s1.mair,
    });
    this.writeCd(sid, ssid, this.cdAddr(t, ssid), cd);
    if (this.attached.get(sid)?.type !== 'dma') {
      this.writeSte(
        sid,
        makeCdtableSte(
          this.hf,
          o,
          { dma: BigInt(t.base), s1cdmax: t.s1cdmax, s1fmt: t.s1fmt },
          S1DSS.BYPASS,
        ),
      );
    }
    d.sids.add(sid);
  }

  /** Attach `sid` to `d` (Linux arm_smmu_attach_dev / attach_identity / attach_blocked). */
  attach(sid: number, d: Domain, o: AttachOptions = {}): void {
    const drv = this.drv;
    drv.ensureL2(sid);
    const old = this.attached.get(sid);
    if (old === d) return;
    let target: Uint32Array;
    switch (d.type) {
      case 'blocked':
        target = makeAbortSte();
        break;
      case 'identity':
        target = makeBypassSte(this.hf);
        break;
      case 's2': {
        const s2 = d.pgtable!.s2!;
        target = makeS2Ste(this.hf, o, {
          vmid: d.vmid,
          vtcr: {
            tsz: s2.tsz,
            sl: s2.sl,
            irgn: s2.irgn,
            orgn: s2.orgn,
            sh: s2.sh,
            tg: s2.tg,
            ps: s2.ps,
          },
          vttbr: BigInt(s2.vttbr),
        });
        break;
      }
      case 'dma': {
        const s1 = d.pgtable!.s1!;
        const t = this.cdTable(sid, o);
        if (d.sids.size === 0) drv.issue([['TLBI_NH_ASID', { ASID: d.asid, VMID: 0 }]]); // flush_iotlb_all before first use
        const cd = makeS1Cd(this.hf, o, {
          asid: d.asid,
          tcr: { tsz: s1.tsz, tg: s1.tg, irgn: s1.irgn, orgn: s1.orgn, sh: s1.sh, ips: s1.ips },
          ttbr: BigInt(s1.ttbr),
          mair: s1.mair,
        });
        this.writeCd(sid, 0, this.cdAddr(t, 0), cd);
        target = makeCdtableSte(
          this.hf,
          o,
          { dma: BigInt(t.base), s1cdmax: t.s1cdmax, s1fmt: t.s1fmt },
          S1DSS.SSID0,
        );
        break;
      }
    }
    this.writeSte(sid, target);
    if (d.type !== 'blocked') drv.issue([['PREFETCH_CONFIG', { StreamID: sid }]], false);
    // leaving a DMA domain: clear the CD, and flush the ASID once no master uses it
    if (old?.type === 'dma') {
      const t = this.cdTables.get(sid);
      if (t) {
        const zero = new Uint32Array(ENTRY_WORDS);
        this.writeCd(sid, 0, this.cdAddr(t, 0), zero);
      }
      old.sids.delete(sid);
      if (old.sids.size === 0) drv.issue([['TLBI_NH_ASID', { ASID: old.asid, VMID: 0 }]]);
    } else old?.sids.delete(sid);
    d.sids.add(sid);
    this.attached.set(sid, d);
  }
}
