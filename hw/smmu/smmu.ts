/**
 * The SMMUv3 device: its register file (Page 0 and Page 1), the CR0/CR0ACK, IRQ_CTRL and GBPA
 * handshakes, guarded registers, GERROR, the queues, the stream table and the DMA entry point.
 *
 * Modelling choices where the architecture allows one (each is also named in the README):
 * - Updates complete immediately: CR0ACK and IRQ_CTRLACK follow a write at once, and
 *   GBPA.Update reads 0 right after a write with Update=1 (QEMU does the same).
 * - Guarded registers ignore writes while guarded, as from SMMUv3.2 (AIDR.ArchMinorRev=2). A v3.0/v3.1
 *   SMMU may instead let them take effect (`guardedWritesTakeEffect`, CONSTRAINED UNPREDICTABLE).
 * - A 64-bit access to a pair of 32-bit registers acts as two 32-bit accesses, low word first.
 *   8- and 16-bit accesses are RAZ/WI. So are undefined Page 0 offsets (RES0), the Page 0
 *   EVENTQ/PRIQ PROD/CONS aliases, and the Secure bank (S_IDR1.SECURE_IMPL=0).
 * - Commands are consumed synchronously inside the CMDQ_PROD write.
 */
import type { AccessSize, Actor, MmioDevice } from '../bus.ts';
import { ExternalAbort, type PhysicalMemory } from '../memory.ts';
import { wordMask } from '../bits.ts';
import { layerLogger } from '../log.ts';
import { CR0, CR1, CR2, IRQ_CTRL, OFF, SMMU_MMIO_SIZE, regNameAt } from './regs.ts';
import {
  DEFAULT_FEATURES,
  idRegisters,
  validateFeatures,
  type IdRegisters,
  type SmmuFeatures,
} from './features.ts';
import { Gbpa } from './gbpa.ts';
import { GERR, GlobalErrors } from './gerror.ts';
import { SmmuWriter } from './msi.ts';
import { EventQueue } from './evtq.ts';
import { CommandQueue } from './cmdq.ts';
import { StreamTable, newLookup, type SteLookup } from './strtab.ts';
import {
  Translator,
  type Txn,
  type TxnResult,
  type AtsResponse,
  type TranslateEnv,
} from './translate.ts';
import { Iotlb, newScope } from './tlb.ts';
import { CdCache } from './cdtab.ts';
import { tlbiScope } from './tlbi.ts';
import { Probe, ProbeSlot } from '../probe.ts';
import { HW_PROBES } from '../probes.ts';

const log = layerLogger('hw');
/** register offsets as a module-local object: the register switches compare against it on every access */
const R = { ...OFF };

export {
  NotImplementedError,
  newTxn,
  newTxnResult,
  type Txn,
  type TxnResult,
} from './translate.ts';

export interface SmmuOptions {
  features?: Partial<SmmuFeatures>;
  /** raw ID register overrides, applied after the feature set */
  idr?: Partial<IdRegisters>;
  /** GBPA reset value (IMPLEMENTATION DEFINED; default 0x1000 as QEMU: bypass, SHCFG=incoming) */
  gbpaReset?: number;
  /** configuration cache and TLB on (default) or off, to tell stale-cache bugs from walk bugs */
  caching?: boolean;
}

const CR0_BASE_MASK =
  wordMask(CR0.SMMUEN) |
  wordMask(CR0.PRIQEN) |
  wordMask(CR0.EVENTQEN) |
  wordMask(CR0.CMDQEN) |
  wordMask(CR0.ATSCHK);
const CR1_MASK = Object.values(CR1).reduce((m, f) => (m | wordMask(f)) >>> 0, 0);
const SMMUEN = 1,
  PRIQEN = 2,
  EVENTQEN = 4,
  CMDQEN = 8;
const ADDR_HI_MASK = 0x00ffffff; // bits [55:32]
const RWA_HI = 1 << 30; // bit 62

/** CoreSight-style ID registers (PIDR4..7, PIDR0..3, CIDR0..3), as QEMU reports an MMU-600-like part. */
const ID_REGS = [0x04, 0, 0, 0, 0x84, 0xb4, 0xf0, 0x10, 0x0d, 0xf0, 0x05, 0xb1];

interface Reg64 {
  lo: number;
  hi: number;
}
const r64 = (): Reg64 => ({ lo: 0, hi: 0 });

export type IrqListener = (line: keyof IrqCounts) => void;

export interface IrqCounts {
  gerror: number;
  eventq: number;
  priq: number;
  cmdSync: number;
}

/** An ATC invalidation delivered to a device (CMD_ATC_INV). */
export type AtcInvalidate = (ssid: number | null, addr: number, bytes: number) => void;

export class Smmu implements MmioDevice, TranslateEnv {
  readonly name = 'smmu';
  readonly size = SMMU_MMIO_SIZE;
  readonly features: SmmuFeatures;
  readonly idr: IdRegisters;
  readonly caching: boolean;

  // control registers
  cr0 = 0;
  cr0ack = 0;
  cr1 = 0;
  cr2 = 0;
  irqCtrl = 0;
  irqCtrlAck = 0;
  readonly gbpa: Gbpa;
  readonly gerror: GlobalErrors;
  readonly gerrorIrqCfg0 = r64();
  gerrorIrqCfg1 = 0;
  gerrorIrqCfg2 = 0;
  readonly strtabBase = r64();
  strtabBaseCfg = 0;
  readonly cmdqBase = r64();
  readonly eventqBase = r64();
  readonly eventqIrqCfg0 = r64();
  eventqIrqCfg1 = 0;
  eventqIrqCfg2 = 0;
  readonly priqBase = r64();
  priqProd = 0;
  priqCons = 0;
  readonly priqIrqCfg0 = r64();
  priqIrqCfg1 = 0;
  priqIrqCfg2 = 0;

  readonly writer: SmmuWriter;
  readonly cmdq: CommandQueue;
  readonly evtq: EventQueue;
  readonly strtab: StreamTable;
  readonly tlb = new Iotlb();
  readonly cds = new CdCache();
  readonly translator: Translator;
  /** devices' ATCs by StreamID, for CMD_ATC_INV */
  readonly atcs = new Map<number, AtcInvalidate[]>();
  atcInvs = 0;
  httuWrites = 0;

  /** interrupts: wired lines raised, MSIs sent, SEV events */
  readonly irqs: IrqCounts = { gerror: 0, eventq: 0, priq: 0, cmdSync: 0 };
  msis = 0;
  sevs = 0;
  /** probe points: wired interrupts raised and SEV events (the host's IRQ handler, WFE) */
  readonly probes = { irq: new Probe(HW_PROBES.irq), sev: new Probe(HW_PROBES.sev) } as const;
  private readonly irqSlot = new ProbeSlot(this.probes.irq, (fn: IrqListener) => fn);
  private readonly sevSlot = new ProbeSlot(this.probes.sev, (fn: () => void) => () => fn());
  /** one replaceable listener on `probes.irq` / `probes.sev` */
  get onIrq(): IrqListener | null {
    return this.irqSlot.get();
  }
  set onIrq(fn: IrqListener | null) {
    this.irqSlot.set(fn);
  }
  get onSev(): (() => void) | null {
    return this.sevSlot.get();
  }
  set onSev(fn: (() => void) | null) {
    this.sevSlot.set(fn);
  }
  /** accesses this model ignored (RAZ/WI), by reason, for diagnostics */
  readonly ignored = { guarded: 0, guardedTaken: 0, readOnly: 0, size: 0, undefinedOffset: 0 };
  readonly tlbiCounts = new Uint32Array(256);

  private readonly tlbiScratch = newScope();
  private readonly lookupScratch: SteLookup = newLookup();

  constructor(
    readonly base: number,
    readonly mem: PhysicalMemory,
    opts: SmmuOptions = {},
  ) {
    this.features = { ...DEFAULT_FEATURES, ...opts.features };
    const errs = validateFeatures(this.features);
    if (errs.length) throw new Error(`invalid SMMU features: ${errs.join('; ')}`);
    this.idr = { ...idRegisters(this.features), ...opts.idr };
    this.caching = opts.caching ?? true;
    this.gbpa = new Gbpa(opts.gbpaReset);
    this.writer = new SmmuWriter(mem);
    this.gerror = new GlobalErrors((bit) => {
      if (bit !== GERR.MSI_GERROR_ABT_ERR) this.signal('gerror');
    });
    const self = this;
    this.cmdq = new CommandQueue({
      features: this.features,
      smmuEnabled: () => (this.cr0 & SMMUEN) !== 0,
      cfgiSte: (sid, leaf) => {
        this.strtab.invalidateSte(sid, leaf);
        this.cds.invalidateSid(sid); // the CDs and L1CDs cached through that STE
      },
      cfgiSteRange: (sid, range) => {
        this.strtab.invalidateRange(sid, range);
        if (range >= 31) this.cds.invalidateAll();
        else {
          const n = 2 ** (range + 1);
          this.cds.invalidateSidRange(sid - (sid % n), n);
        }
      },
      cfgiCd: (sid, ssid, leaf) => this.cds.invalidateCd(sid, ssid, leaf),
      cfgiCdAll: (sid) => this.cds.invalidateSid(sid),
      prefetchConfig: (sid) => {
        this.strtab.lookup(sid, this.lookupScratch);
      },
      tlbi: (op, w) => {
        this.tlbiCounts[op]!++;
        if (tlbiScope(op, w, this.features, (this.cr2 & 1) === 1, this.tlbiScratch))
          this.tlb.invalidate(this.tlbiScratch);
      },
      atcInv: (w) => {
        this.atcInvs++;
        const sid = w[1]!;
        const global = (w[0]! >>> 9) & 1;
        const ssv = (w[0]! >>> 11) & 1;
        const size = w[2]! & 0x3f;
        const addr = (w[3]! & 0x1fffff) * 0x1_0000_0000 + ((w[2]! & 0xfffff000) >>> 0);
        const bytes = size >= 52 ? 2 ** 64 : 2 ** (12 + size);
        const base = size >= 52 ? 0 : addr - (addr % bytes);
        for (const inv of this.atcs.get(sid) ?? [])
          inv(ssv && !global ? (w[0]! >>> 12) & 0xfffff : null, base, bytes);
      },
      priResp: () => {},
      resume: () => {},
      stallTerm: () => {},
      sync: (cs, msiAddr, msiData) => self.cmdSync(cs, msiAddr, msiData),
      fetch(pa, out) {
        try {
          const m = self.mem;
          out[0] = m.read32(pa);
          out[1] = m.read32(pa + 4);
          out[2] = m.read32(pa + 8);
          out[3] = m.read32(pa + 12);
          return true;
        } catch (e) {
          if (e instanceof ExternalAbort) return false;
          throw e;
        }
      },
      error: (code) => {
        log.debug({ code, cons: this.cmdq.cons }, 'command queue error');
        this.gerror.activate(GERR.CMDQ_ERR);
      },
    });
    this.evtq = new EventQueue({
      enabled: () => (this.cr0 & EVENTQEN) !== 0,
      base: () => queueBase(this.eventqBase, this.log2(this.eventqBase, this.features.eventqs), 32),
      log2size: () => this.log2(this.eventqBase, this.features.eventqs),
      writer: this.writer,
      abort: () => this.gerror.activate(GERR.EVENTQ_ABT_ERR),
      irq: () => this.signal('eventq'),
    });
    this.strtab = new StreamTable({
      features: this.features,
      mem,
      baseAddr: () =>
        (this.strtabBase.hi & ADDR_HI_MASK) * 0x1_0000_0000 + ((this.strtabBase.lo & ~0x3f) >>> 0),
      cfg: () => this.strtabBaseCfg,
      cacheable: () => this.caching && (this.cr0 & SMMUEN) !== 0,
    });
    this.translator = new Translator(this, this.lookupScratch);
  }

  // ---- TranslateEnv --------------------------------------------------------------------------

  smmuEnabled(): boolean {
    return (this.cr0 & SMMUEN) !== 0;
  }
  cachingOn(): boolean {
    return this.caching;
  }
  e2h(): boolean {
    return (this.cr2 & 1) === 1;
  }
  recinvsid(): boolean {
    return (this.cr2 & 2) === 2;
  }
  atschk(): boolean {
    return (this.cr0 & 0x10) !== 0;
  }
  recordEventWords(words: Uint32Array): boolean {
    return this.evtq.record(words);
  }
  setAccessFlag(pa: number): void {
    // HTTU: an atomic update of the descriptor's AF (bit 10), an SMMU-originated write
    try {
      this.mem.write32(pa, this.mem.read32(pa) | 0x400);
      this.httuWrites++;
    } catch {
      /* a walk that read the descriptor can write it back */
    }
  }

  /** Register a device ATC to receive CMD_ATC_INV for its StreamID. */
  registerAtc(sid: number, inv: AtcInvalidate): void {
    let l = this.atcs.get(sid);
    if (!l) this.atcs.set(sid, (l = []));
    l.push(inv);
  }

  // ---- helpers -------------------------------------------------------------------------------

  private log2(reg: Reg64, cap: number): number {
    return Math.min(reg.lo & 0x1f, cap);
  }

  /** Raise an interrupt line if enabled in IRQ_CTRL: an MSI where configured, else the wired line. */
  signal(line: 'gerror' | 'eventq' | 'priq'): void {
    const en = line === 'gerror' ? 1 : line === 'priq' ? 2 : 4;
    if ((this.irqCtrl & en) === 0) return;
    const [cfg0, data, abt] =
      line === 'gerror'
        ? [this.gerrorIrqCfg0, this.gerrorIrqCfg1, GERR.MSI_GERROR_ABT_ERR]
        : line === 'eventq'
          ? [this.eventqIrqCfg0, this.eventqIrqCfg1, GERR.MSI_EVENTQ_ABT_ERR]
          : [this.priqIrqCfg0, this.priqIrqCfg1, GERR.MSI_PRIQ_ABT_ERR];
    const addr = (cfg0.hi & ADDR_HI_MASK) * 0x1_0000_0000 + ((cfg0.lo & ~3) >>> 0);
    if (this.features.msi && addr !== 0) {
      if (this.writer.msi(addr, data, line.toUpperCase())) this.msis++;
      else this.gerror.activate(abt);
      return;
    }
    this.irqs[line]++;
    if (this.probes.irq.active) this.probes.irq.fire(line);
  }

  private cmdSync(cs: number, msiAddr: number, msiData: number): void {
    if (cs === 1) {
      if (this.features.msi && msiAddr !== 0) {
        if (this.writer.msi(msiAddr, msiData, 'CMD_SYNC')) this.msis++;
        else this.gerror.activate(GERR.MSI_CMDQ_ABT_ERR);
      } else {
        this.irqs.cmdSync++;
        if (this.probes.irq.active) this.probes.irq.fire('cmdSync');
      }
    } else if (cs === 2 && this.features.sev) {
      this.sevs++;
      if (this.probes.sev.active) this.probes.sev.fire(null);
    }
  }

  /** Whether the command queue may run: CMDQEN=1 and no active CMDQ_ERR. */
  private get cmdqRunnable(): boolean {
    return (this.cr0 & CMDQEN) !== 0 && !this.gerror.active(GERR.CMDQ_ERR);
  }

  private kickCmdq(): void {
    if (!this.cmdqRunnable) return;
    const qs = this.log2(this.cmdqBase, this.features.cmdqs);
    this.cmdq.log2size = qs;
    this.cmdq.base = queueBase(this.cmdqBase, qs, 16);
    this.cmdq.consume();
  }

  // ---- MMIO ----------------------------------------------------------------------------------

  read(offset: number, size: AccessSize, _actor: Actor): bigint {
    if (size === 8) {
      if (offset & 7) {
        this.ignored.size++;
        return 0n;
      }
      const lo = this.read32(offset);
      const hi = this.read32(offset + 4);
      return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
    }
    if (size !== 4 || offset & 3) {
      this.ignored.size++;
      return 0n;
    }
    return BigInt(this.read32(offset) >>> 0);
  }

  write(offset: number, size: AccessSize, value: bigint, _actor: Actor): void {
    if (size === 8) {
      if (offset & 7) {
        this.ignored.size++;
        return;
      }
      const lo = Number(value & 0xffffffffn);
      const hi = Number((value >> 32n) & 0xffffffffn);
      if (this.is64(offset)) this.write64(offset, lo, hi);
      else {
        this.write32(offset, lo);
        this.write32(offset + 4, hi);
      }
      return;
    }
    if (size !== 4 || offset & 3) {
      this.ignored.size++;
      return;
    }
    this.write32(offset, Number(value & 0xffffffffn));
  }

  private is64(offset: number): boolean {
    switch (offset) {
      case R.GERROR_IRQ_CFG0:
      case R.STRTAB_BASE:
      case R.CMDQ_BASE:
      case R.EVENTQ_BASE:
      case R.EVENTQ_IRQ_CFG0:
      case R.PRIQ_BASE:
      case R.PRIQ_IRQ_CFG0:
        return true;
    }
    return false;
  }

  /** 32-bit register read at `offset` (the architectural register value). */
  read32(offset: number): number {
    switch (offset) {
      case R.IDR0:
        return this.idr.IDR0;
      case R.IDR1:
        return this.idr.IDR1;
      case R.IDR2:
        return this.idr.IDR2;
      case R.IDR3:
        return this.idr.IDR3;
      case R.IDR4:
        return this.idr.IDR4;
      case R.IDR5:
        return this.idr.IDR5;
      case R.IIDR:
        return this.idr.IIDR;
      case R.AIDR:
        return this.idr.AIDR;
      case R.CR0:
        return this.cr0;
      case R.CR0ACK:
        return this.cr0ack;
      case R.CR1:
        return this.cr1;
      case R.CR2:
        return this.cr2;
      case R.STATUSR:
        return 0;
      case R.GBPA:
        return this.gbpa.read();
      case R.IRQ_CTRL:
        return this.irqCtrl;
      case R.IRQ_CTRLACK:
        return this.irqCtrlAck;
      case R.GERROR:
        return this.gerror.gerror;
      case R.GERRORN:
        return this.gerror.gerrorn;
      case R.GERROR_IRQ_CFG0:
        return this.gerrorIrqCfg0.lo;
      case R.GERROR_IRQ_CFG0 + 4:
        return this.gerrorIrqCfg0.hi;
      case R.GERROR_IRQ_CFG1:
        return this.gerrorIrqCfg1;
      case R.GERROR_IRQ_CFG2:
        return this.gerrorIrqCfg2;
      case R.STRTAB_BASE:
        return this.strtabBase.lo;
      case R.STRTAB_BASE + 4:
        return this.strtabBase.hi;
      case R.STRTAB_BASE_CFG:
        return this.strtabBaseCfg;
      case R.CMDQ_BASE:
        return this.cmdqBase.lo;
      case R.CMDQ_BASE + 4:
        return this.cmdqBase.hi;
      case R.CMDQ_PROD:
        return this.cmdq.prod;
      case R.CMDQ_CONS:
        return (
          (this.cmdq.cons | (this.gerror.active(GERR.CMDQ_ERR) ? this.cmdq.err << 24 : 0)) >>> 0
        );
      case R.EVENTQ_BASE:
        return this.eventqBase.lo;
      case R.EVENTQ_BASE + 4:
        return this.eventqBase.hi;
      case R.EVENTQ_IRQ_CFG0:
        return this.eventqIrqCfg0.lo;
      case R.EVENTQ_IRQ_CFG0 + 4:
        return this.eventqIrqCfg0.hi;
      case R.EVENTQ_IRQ_CFG1:
        return this.eventqIrqCfg1;
      case R.EVENTQ_IRQ_CFG2:
        return this.eventqIrqCfg2;
      case R.PRIQ_BASE:
        return this.priqBase.lo;
      case R.PRIQ_BASE + 4:
        return this.priqBase.hi;
      case R.PRIQ_IRQ_CFG0:
        return this.priqIrqCfg0.lo;
      case R.PRIQ_IRQ_CFG0 + 4:
        return this.priqIrqCfg0.hi;
      case R.PRIQ_IRQ_CFG1:
        return this.priqIrqCfg1;
      case R.PRIQ_IRQ_CFG2:
        return this.priqIrqCfg2;
      case R.EVENTQ_PROD:
        return this.evtq.prod;
      case R.EVENTQ_CONS:
        return this.evtq.cons;
      case R.PRIQ_PROD:
        return this.priqProd;
      case R.PRIQ_CONS:
        return this.priqCons;
    }
    if (offset >= 0xfd0 && offset <= 0xffc) return ID_REGS[(offset - 0xfd0) >> 2]!;
    this.ignored.undefinedOffset++;
    return 0;
  }

  /** Guard: SMMUEN and its ACK both 0. */
  private get smmuDisabled(): boolean {
    return ((this.cr0 | this.cr0ack) & SMMUEN) === 0;
  }
  private qDisabled(bit: number): boolean {
    return ((this.cr0 | this.cr0ack) & bit) === 0;
  }

  /**
   * A write to a register while it is guarded: IGNORED from SMMUv3.2. Before v3.2 it is
   * CONSTRAINED UNPREDICTABLE (ignored, or the register takes the value and may affect the
   * SMMU); `guardedWritesTakeEffect` picks the second, the one software must defend against.
   * Returns whether the write is dropped.
   */
  private guardHolds(offset: number): boolean {
    if (this.features.guardedWritesTakeEffect) {
      this.ignored.guardedTaken++;
      if (log.isLevelEnabled('debug'))
        log.debug(
          { reg: regNameAt(offset) },
          'write to a guarded register takes effect (pre-v3.2 CONSTRAINED UNPREDICTABLE)',
        );
      return false;
    }
    this.ignored.guarded++;
    if (log.isLevelEnabled('debug'))
      log.debug({ reg: regNameAt(offset) }, 'write to a guarded register ignored');
    return true;
  }

  private write64(offset: number, lo: number, hi: number): void {
    switch (offset) {
      case R.GERROR_IRQ_CFG0:
        if (this.irqCtrl & 1 && this.guardHolds(offset)) return;
        this.gerrorIrqCfg0.lo = (lo & ~3) >>> 0;
        this.gerrorIrqCfg0.hi = hi & ADDR_HI_MASK;
        return;
      case R.EVENTQ_IRQ_CFG0:
        if (this.irqCtrl & 4 && this.guardHolds(offset)) return;
        this.eventqIrqCfg0.lo = (lo & ~3) >>> 0;
        this.eventqIrqCfg0.hi = hi & ADDR_HI_MASK;
        return;
      case R.PRIQ_IRQ_CFG0:
        if (!this.features.pri) return;
        if (this.irqCtrl & 2 && this.guardHolds(offset)) return;
        this.priqIrqCfg0.lo = (lo & ~3) >>> 0;
        this.priqIrqCfg0.hi = hi & ADDR_HI_MASK;
        return;
      case R.STRTAB_BASE:
        if (!this.smmuDisabled && this.guardHolds(offset)) return;
        this.strtabBase.lo = (lo & ~0x3f) >>> 0;
        this.strtabBase.hi = (hi & (ADDR_HI_MASK | RWA_HI)) >>> 0;
        return;
      case R.CMDQ_BASE:
        if (!this.qDisabled(CMDQEN) && this.guardHolds(offset)) return;
        this.setQBase(this.cmdqBase, lo, hi);
        return;
      case R.EVENTQ_BASE:
        if (!this.qDisabled(EVENTQEN) && this.guardHolds(offset)) return;
        this.setQBase(this.eventqBase, lo, hi);
        return;
      case R.PRIQ_BASE:
        if (!this.features.pri) return;
        if (!this.qDisabled(PRIQEN) && this.guardHolds(offset)) return;
        this.setQBase(this.priqBase, lo, hi);
        return;
    }
  }

  private setQBase(r: Reg64, lo: number, hi: number): void {
    r.lo = lo >>> 0; // LOG2SIZE[4:0] and ADDR[31:5]
    r.hi = (hi & (ADDR_HI_MASK | RWA_HI)) >>> 0;
  }

  /** 32-bit register write at `offset`. */
  write32(offset: number, v: number): void {
    v >>>= 0;
    switch (offset) {
      case R.IDR0:
      case R.IDR1:
      case R.IDR2:
      case R.IDR3:
      case R.IDR4:
      case R.IDR5:
      case R.IIDR:
      case R.AIDR:
      case R.CR0ACK:
      case R.STATUSR:
      case R.IRQ_CTRLACK:
      case R.GERROR:
        this.ignored.readOnly++;
        return;
      case R.CR0:
        return this.writeCr0(v);
      case R.CR1:
        if (!this.smmuDisabled && this.guardHolds(offset)) return;
        this.cr1 = v & CR1_MASK;
        return;
      case R.CR2: {
        if (!this.smmuDisabled && this.guardHolds(offset)) return;
        let m = wordMask(CR2.RECINVSID) | wordMask(CR2.PTM);
        if (this.features.hyp) m |= wordMask(CR2.E2H);
        this.cr2 = v & m;
        return;
      }
      case R.GBPA:
        return this.gbpa.write(v);
      case R.AGBPA:
        return;
      case R.IRQ_CTRL: {
        let m = wordMask(IRQ_CTRL.GERROR_IRQEN) | wordMask(IRQ_CTRL.EVENTQ_IRQEN);
        if (this.features.pri) m |= wordMask(IRQ_CTRL.PRIQ_IRQEN);
        this.irqCtrl = v & m;
        this.irqCtrlAck = this.irqCtrl;
        return;
      }
      case R.GERRORN: {
        this.gerror.writeN(v);
        // acknowledging CMDQ_ERR lets consumption resume (if CMDQEN=1)
        this.kickCmdq();
        return;
      }
      case R.GERROR_IRQ_CFG0:
      case R.GERROR_IRQ_CFG0 + 4:
        if (this.irqCtrl & 1 && this.guardHolds(offset)) return;
        return this.half(this.gerrorIrqCfg0, offset - R.GERROR_IRQ_CFG0, v, ~3, ADDR_HI_MASK);
      case R.GERROR_IRQ_CFG1:
        if (this.irqCtrl & 1 && this.guardHolds(offset)) return;
        this.gerrorIrqCfg1 = v;
        return;
      case R.GERROR_IRQ_CFG2:
        if (this.irqCtrl & 1 && this.guardHolds(offset)) return;
        this.gerrorIrqCfg2 = v & 0x3f;
        return;
      case R.STRTAB_BASE:
      case R.STRTAB_BASE + 4:
        if (!this.smmuDisabled && this.guardHolds(offset)) return;
        return this.half(this.strtabBase, offset - R.STRTAB_BASE, v, ~0x3f, ADDR_HI_MASK | RWA_HI);
      case R.STRTAB_BASE_CFG:
        if (!this.smmuDisabled && this.guardHolds(offset)) return;
        this.strtabBaseCfg = v & (0x3f | (0x1f << 6) | (3 << 16));
        return;
      case R.CMDQ_BASE:
      case R.CMDQ_BASE + 4:
        if (!this.qDisabled(CMDQEN) && this.guardHolds(offset)) return;
        return this.half(this.cmdqBase, offset - R.CMDQ_BASE, v, 0xffffffff, ADDR_HI_MASK | RWA_HI);
      case R.CMDQ_PROD:
        this.cmdq.prod = v & 0xfffff;
        this.kickCmdq();
        return;
      case R.CMDQ_CONS:
        if (!this.qDisabled(CMDQEN) && this.guardHolds(offset)) return;
        this.cmdq.cons = v & 0xfffff;
        return;
      case R.EVENTQ_BASE:
      case R.EVENTQ_BASE + 4:
        if (!this.qDisabled(EVENTQEN) && this.guardHolds(offset)) return;
        return this.half(
          this.eventqBase,
          offset - R.EVENTQ_BASE,
          v,
          0xffffffff,
          ADDR_HI_MASK | RWA_HI,
        );
      case R.EVENTQ_IRQ_CFG0:
      case R.EVENTQ_IRQ_CFG0 + 4:
        if (this.irqCtrl & 4 && this.guardHolds(offset)) return;
        return this.half(this.eventqIrqCfg0, offset - R.EVENTQ_IRQ_CFG0, v, ~3, ADDR_HI_MASK);
      case R.EVENTQ_IRQ_CFG1:
        if (this.irqCtrl & 4 && this.guardHolds(offset)) return;
        this.eventqIrqCfg1 = v;
        return;
      case R.EVENTQ_IRQ_CFG2:
        if (this.irqCtrl & 4 && this.guardHolds(offset)) return;
        this.eventqIrqCfg2 = v & 0x3f;
        return;
      case R.EVENTQ_PROD:
        // the SMMU owns PROD while the queue is enabled
        if (!this.qDisabled(EVENTQEN) && this.guardHolds(offset)) return;
        this.evtq.prod = v & (0xfffff | 0x8000_0000);
        return;
      case R.EVENTQ_CONS:
        this.evtq.cons = v & (0xfffff | 0x8000_0000);
        return;
      case R.PRIQ_BASE:
      case R.PRIQ_BASE + 4:
        if (!this.features.pri) return;
        if (!this.qDisabled(PRIQEN) && this.guardHolds(offset)) return;
        return this.half(this.priqBase, offset - R.PRIQ_BASE, v, 0xffffffff, ADDR_HI_MASK | RWA_HI);
      case R.PRIQ_IRQ_CFG0:
      case R.PRIQ_IRQ_CFG0 + 4:
        if (!this.features.pri) return;
        if (this.irqCtrl & 2 && this.guardHolds(offset)) return;
        return this.half(this.priqIrqCfg0, offset - R.PRIQ_IRQ_CFG0, v, ~3, ADDR_HI_MASK);
      case R.PRIQ_IRQ_CFG1:
        if (!this.features.pri) return;
        if (this.irqCtrl & 2 && this.guardHolds(offset)) return;
        this.priqIrqCfg1 = v;
        return;
      case R.PRIQ_IRQ_CFG2:
        if (!this.features.pri) return;
        if (this.irqCtrl & 2 && this.guardHolds(offset)) return;
        this.priqIrqCfg2 = v & 0x3f;
        return;
      case R.PRIQ_PROD:
        if (!this.features.pri) return;
        if (!this.qDisabled(PRIQEN) && this.guardHolds(offset)) return;
        this.priqProd = v & (0xfffff | 0x8000_0000);
        return;
      case R.PRIQ_CONS:
        if (!this.features.pri) return;
        this.priqCons = v & (0xfffff | 0x8000_0000);
        return;
    }
    this.ignored.undefinedOffset++;
  }

  private half(r: Reg64, which: number, v: number, loMask: number, hiMask: number): void {
    if (which === 0) r.lo = (v & loMask) >>> 0;
    else r.hi = (v & hiMask) >>> 0;
  }

  private writeCr0(v: number): void {
    let mask = CR0_BASE_MASK;
    if (!this.features.pri) mask &= ~PRIQEN;
    if (!this.features.ats) mask &= ~wordMask(CR0.ATSCHK);
    if (this.features.vmw) mask |= wordMask(CR0.VMW);
    const old = this.cr0;
    const nv = (v & mask) >>> 0;
    this.cr0 = nv;
    this.cr0ack = nv; // the update completes at once
    if ((old ^ nv) & CMDQEN) {
      if (nv & CMDQEN) this.kickCmdq();
    }
    if ((old ^ nv) & SMMUEN) log.debug({ smmuen: nv & SMMUEN }, 'SMMUEN changed');
  }

  // ---- transactions --------------------------------------------------------------------------

  /** Present an untranslated transaction (see translate.ts). */
  translate(t: Txn, r: TxnResult): TxnResult {
    return this.translator.translate(t, r);
  }

  /** An ATS Translation Request. */
  atsTranslate(t: Txn): AtsResponse {
    return this.translator.atsTranslate(t);
  }

  /** An ATS Translated transaction (the address came from the device's ATC). */
  translated(t: Txn, r: TxnResult): TxnResult {
    return this.translator.translated(t, r);
  }
}

/** Queue base PA from a *_BASE register: ADDR[55:5], aligned to MAX(queue bytes, 32). */
export function queueBase(r: Reg64, log2size: number, entryBytes: number): number {
  const addr = (r.hi & ADDR_HI_MASK) * 0x1_0000_0000 + ((r.lo & ~0x1f) >>> 0);
  const align = Math.max(2 ** log2size * entryBytes, 32);
  return addr - (addr % align);
}
