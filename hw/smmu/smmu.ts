/**
 * The SMMUv3 device: its register file (Page 0 and Page 1, regfile.ts over the table in regs.ts,
 * with this device's backings and side effects), the CR0/CR0ACK, IRQ_CTRL and GBPA handshakes,
 * guarded registers, GERROR, the queues, the stream table and the DMA entry point.
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
import { definedMask, get } from '../bits.ts';
import { layerLogger } from '../log.ts';
import {
  CR0_BITS,
  CR2_BITS,
  ID_REG_NAMES,
  IRQ_CFG0,
  IRQ_CTRL_BITS,
  PRIQ_REG_NAMES,
  Q_BASE,
  SMMU_MMIO_SIZE,
  STRTAB_BASE,
  regNameAt,
} from './regs.ts';
import {
  RegisterFile,
  componentBackings,
  featureWriteMasks,
  regSlot,
  type Reg64,
} from './regfile.ts';
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
import { queueBase, queueLog2 } from './queue.ts';
import { AtcSize, Global, SSV, StreamID, SubstreamID, VA } from './commands.ts';
import { Probe, ProbeSlot } from '../probe.ts';
import { HW_PROBES } from '../probes.ts';

const log = layerLogger('hw');

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

const { SMMUEN, EVENTQEN, CMDQEN, ATSCHK } = CR0_BITS;
const { E2H, RECINVSID } = CR2_BITS;
/** ADDR[55:32] in the high word of a 64-bit base or MSI address register */
const ADDR_HI = definedMask([Q_BASE.ADDR], 2)[1]!;
/** the low-word bits below STRTAB_BASE.ADDR and IRQ_CFG0.ADDR */
const STRTAB_ADDR_LO = definedMask([STRTAB_BASE.ADDR], 1)[0]!;
const MSI_ADDR_LO = definedMask([IRQ_CFG0.ADDR], 1)[0]!;

/** CMD_ATC_INV Address[63:12]: its low-word bits, and the high-word bits kept (to bit 52: a number holds 53 bits) */
const ATC_ADDR_LO = definedMask([VA], 4)[VA.word]!;
const ATC_ADDR_HI = definedMask([VA], 4)[VA.word + 1]! & (2 ** (53 - 32) - 1);
/** CMD_ATC_INV Size: 52 and above invalidate everything */
const ATC_SIZE_ALL = 52;

/** CoreSight-style ID registers (PIDR4..7, PIDR0..3, CIDR0..3), as QEMU reports an MMU-600-like part. */
const ID_REGS = [0x04, 0, 0, 0, 0x84, 0xb4, 0xf0, 0x10, 0x0d, 0xf0, 0x05, 0xb1];

// register-file slots read on the hot paths (CR0 on every transaction)
const S_CR0 = regSlot('CR0');
const S_CR1 = regSlot('CR1');
const S_CR2 = regSlot('CR2');
const S_IRQ_CTRL = regSlot('IRQ_CTRL');
const S_STRTAB_BASE_CFG = regSlot('STRTAB_BASE_CFG');
const S_GERROR_IRQ_CFG1 = regSlot('GERROR_IRQ_CFG1');
const S_EVENTQ_IRQ_CFG1 = regSlot('EVENTQ_IRQ_CFG1');
const S_PRIQ_IRQ_CFG1 = regSlot('PRIQ_IRQ_CFG1');

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

  /** the register file (regfile.ts): every register access goes through it */
  readonly regs: RegisterFile;
  /** the register file's stored values, by slot (the hot paths read CR0 here) */
  private readonly rv: Uint32Array;
  readonly gbpa: Gbpa;
  readonly gerror: GlobalErrors;
  readonly gerrorIrqCfg0: Reg64;
  readonly strtabBase: Reg64;
  readonly cmdqBase: Reg64;
  readonly eventqBase: Reg64;
  readonly eventqIrqCfg0: Reg64;
  readonly priqBase: Reg64;
  readonly priqIrqCfg0: Reg64;

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
        if (tlbiScope(op, w, this.features, (this.cr2 & E2H) !== 0, this.tlbiScratch))
          this.tlb.invalidate(this.tlbiScratch);
      },
      atcInv: (w) => {
        this.atcInvs++;
        const sid = get(w, StreamID);
        const size = get(w, AtcSize);
        const addr =
          (w[VA.word + 1]! & ATC_ADDR_HI) * 0x1_0000_0000 + ((w[VA.word]! & ATC_ADDR_LO) >>> 0);
        const bytes = size >= ATC_SIZE_ALL ? 2 ** 64 : 2 ** (12 + size);
        const base = size >= ATC_SIZE_ALL ? 0 : addr - (addr % bytes);
        const ssid = get(w, SSV) === 1 && get(w, Global) === 0 ? get(w, SubstreamID) : null;
        for (const inv of this.atcs.get(sid) ?? []) inv(ssid, base, bytes);
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
      base: () => queueBase(this.eventqBase, queueLog2(this.eventqBase, this.features.eventqs), 32),
      log2size: () => queueLog2(this.eventqBase, this.features.eventqs),
      writer: this.writer,
      abort: () => this.gerror.activate(GERR.EVENTQ_ABT_ERR),
      irq: () => this.signal('eventq'),
    });
    this.regs = new RegisterFile({
      ignored: this.ignored,
      reset: { ...this.idr, ...Object.fromEntries(ID_REGS.map((v, i) => [ID_REG_NAMES[i]!, v])) },
      wmask: featureWriteMasks(this.features),
      backing: componentBackings(this),
      effects: {
        enable: (old, nv) => this.cr0Written(old, nv),
        // acknowledging CMDQ_ERR lets consumption resume (if CMDQEN=1)
        errorAck: () => this.kickCmdq(),
        cmdqProd: () => this.kickCmdq(),
      },
      writesIgnored: ['AGBPA', ...(this.features.pri ? [] : PRIQ_REG_NAMES)],
      readsUndefined: ['AGBPA'],
      writesUndefined: ID_REG_NAMES,
      guarded: (offset) => this.guardHolds(offset),
    });
    this.rv = this.regs.val;
    this.gerrorIrqCfg0 = this.regs.view64('GERROR_IRQ_CFG0');
    this.strtabBase = this.regs.view64('STRTAB_BASE');
    this.cmdqBase = this.regs.view64('CMDQ_BASE');
    this.eventqBase = this.regs.view64('EVENTQ_BASE');
    this.eventqIrqCfg0 = this.regs.view64('EVENTQ_IRQ_CFG0');
    this.priqBase = this.regs.view64('PRIQ_BASE');
    this.priqIrqCfg0 = this.regs.view64('PRIQ_IRQ_CFG0');
    this.strtab = new StreamTable({
      features: this.features,
      mem,
      baseAddr: () =>
        (this.strtabBase.hi & ADDR_HI) * 0x1_0000_0000 +
        ((this.strtabBase.lo & STRTAB_ADDR_LO) >>> 0),
      cfg: () => this.strtabBaseCfg,
      cacheable: () => this.caching && (this.cr0 & SMMUEN) !== 0,
    });
    this.translator = new Translator(this, this.lookupScratch);
  }

  // ---- register values ------------------------------------------------------------------------

  get cr0(): number {
    return this.rv[S_CR0]!;
  }
  get cr1(): number {
    return this.rv[S_CR1]!;
  }
  get cr2(): number {
    return this.rv[S_CR2]!;
  }
  get irqCtrl(): number {
    return this.rv[S_IRQ_CTRL]!;
  }
  get strtabBaseCfg(): number {
    return this.rv[S_STRTAB_BASE_CFG]!;
  }

  // ---- TranslateEnv --------------------------------------------------------------------------

  smmuEnabled(): boolean {
    return (this.cr0 & SMMUEN) !== 0;
  }
  cachingOn(): boolean {
    return this.caching;
  }
  e2h(): boolean {
    return (this.cr2 & E2H) !== 0;
  }
  recinvsid(): boolean {
    return (this.cr2 & RECINVSID) !== 0;
  }
  atschk(): boolean {
    return (this.cr0 & ATSCHK) !== 0;
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

  /** Raise an interrupt line if enabled in IRQ_CTRL: an MSI where configured, else the wired line. */
  signal(line: 'gerror' | 'eventq' | 'priq'): void {
    const en =
      line === 'gerror'
        ? IRQ_CTRL_BITS.GERROR_IRQEN
        : line === 'priq'
          ? IRQ_CTRL_BITS.PRIQ_IRQEN
          : IRQ_CTRL_BITS.EVENTQ_IRQEN;
    if ((this.irqCtrl & en) === 0) return;
    const [cfg0, cfg1, abt] =
      line === 'gerror'
        ? [this.gerrorIrqCfg0, S_GERROR_IRQ_CFG1, GERR.MSI_GERROR_ABT_ERR]
        : line === 'eventq'
          ? [this.eventqIrqCfg0, S_EVENTQ_IRQ_CFG1, GERR.MSI_EVENTQ_ABT_ERR]
          : [this.priqIrqCfg0, S_PRIQ_IRQ_CFG1, GERR.MSI_PRIQ_ABT_ERR];
    const data = this.rv[cfg1]!;
    const addr = (cfg0.hi & ADDR_HI) * 0x1_0000_0000 + ((cfg0.lo & MSI_ADDR_LO) >>> 0);
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
    const qs = queueLog2(this.cmdqBase, this.features.cmdqs);
    this.cmdq.log2size = qs;
    this.cmdq.base = queueBase(this.cmdqBase, qs, 16);
    this.cmdq.consume();
  }

  // ---- MMIO ----------------------------------------------------------------------------------

  read(offset: number, size: AccessSize, _actor: Actor): bigint {
    return this.regs.read(offset, size);
  }

  write(offset: number, size: AccessSize, value: bigint, _actor: Actor): void {
    this.regs.write(offset, size, value);
  }

  /** 32-bit register read at `offset` (the architectural register value). */
  read32(offset: number): number {
    return this.regs.read32(offset);
  }

  /** 32-bit register write at `offset`. */
  write32(offset: number, v: number): void {
    this.regs.write32(offset, v >>> 0);
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

  /** CR0 written (CR0ACK already follows): a CMDQEN 0→1 edge considers the queue. */
  private cr0Written(old: number, nv: number): void {
    if ((old ^ nv) & nv & CMDQEN) this.kickCmdq();
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
