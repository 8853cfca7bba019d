/**
 * A Linux-like arm-smmu-v3 driver: the host kernel's view of the SMMU. It touches the SMMU only
 * through MMIO on the bus as the host actor, and keeps its tables and queues in host pages, so
 * the same code runs on bare hardware and under any hypervisor: all it sees is registers.
 *
 * Probe follows Linux 6.12 (linux-sequence.md §2): read the IDRs and derive the features;
 * allocate the queues (each capped at 1 MiB, as Linux) and the stream table (2-level with
 * SPLIT=8 when supported and the SIDs need it, else linear); then reset: disable (setting
 * GBPA.ABORT first if the SMMU was left enabled), CR1/CR2, the table and queue bases, CMDQEN,
 * CFGI_ALL / TLBI_EL2_ALL (with HYP) / TLBI_NSNH_ALL each with a CMD_SYNC, EVTQ (and PRIQ),
 * ATSCHK, the IRQs, and SMMUEN — each CR0 change waited for in CR0ACK.
 *
 * Domains and attach are in domain.ts, the event queue consumer in events.ts.
 */
import type { MmioBus } from '../../hw/bus.ts';
import {
  OFF,
  IDR0,
  IDR1,
  IDR3,
  IDR5,
  STRTAB_BASE_CFG,
  Q_BASE,
  CR0_BITS as CR0,
  CR1_WB_ISH,
  CR2_BITS as CR2,
  GBPA_BITS,
} from '../../hw/smmu/regs.ts';
import { get, set } from '../../hw/bits.ts';
import { OAS_BITS } from '../../hw/smmu/features.ts';
import { layerLogger } from '../../hw/log.ts';
import { DriverCmdq, type Command } from './cmdq.ts';
import { HostPages } from './pages.ts';
import { makeAbortSte } from './ste-make.ts';
import { EventDrain } from './events.ts';

const log = layerLogger('host');

/** Features the driver derives from the ID registers (Linux's ARM_SMMU_FEAT_*). */
export interface DriverFeatures {
  twoLevelStrtab: boolean;
  twoLevelCd: boolean;
  ttLe: boolean;
  ttBe: boolean;
  pri: boolean;
  ats: boolean;
  sev: boolean;
  msi: boolean;
  hyp: boolean;
  e2h: boolean;
  stalls: boolean;
  stallForce: boolean;
  transS1: boolean;
  transS2: boolean;
  rangeInv: boolean;
  coherent: boolean;
  asidBits: number;
  vmidBits: number;
  sidBits: number;
  ssidBits: number;
  cmdqShift: number;
  evtqShift: number;
  priqShift: number;
  oas: number;
  ias: number;
  pgsizes: number[];
}

export interface DriverOptions {
  /** base of the SMMU MMIO */
  base: number;
  /** host RAM the driver may allocate from */
  pages: { base: number; limit: number };
  /** leave the SMMU in bypass (GBPA.ABORT=0, SMMUEN=0) instead of enabling it (Linux's bypass) */
  bypass?: boolean;
}

/** Linux: Q_MAX_SZ_SHIFT = PAGE_SHIFT + CONFIG_CMA_ALIGNMENT(8): each queue at most 1 MiB. */
const Q_MAX_SZ_SHIFT = 20;
const STRTAB_SPLIT = 8;
const STRTAB_L1_DESC_BYTES = 8;
/** Linux caps the L1 table at 2^20 entries... and the SIDs it covers at sid_bits. */
const STRTAB_MAX_L1_ENTRIES = 1 << 20;
const GBPA_UPDATE = GBPA_BITS.Update;
const GBPA_ABORT = GBPA_BITS.ABORT;
const RA = 1n << 62n;

export class DriverError extends Error {
  constructor(msg: string) {
    super(`arm-smmu-v3: ${msg}`);
    this.name = 'DriverError';
  }
}

export class ArmSmmuV3 {
  ft!: DriverFeatures;
  readonly pages: HostPages;
  cmdq!: DriverCmdq;
  evtq = { base: 0, shift: 0 };
  events!: EventDrain;
  priq = { base: 0, shift: 0 };
  strtab = { base: 0, log2size: 0, fmt: 0 as 0 | 1, split: STRTAB_SPLIT, l1: [] as number[] };
  /** how many CR0ACK/IRQ_CTRLACK/GBPA polls before giving up */
  ackPollLimit = 1000;
  probed = false;

  constructor(
    private readonly bus: MmioBus,
    readonly opts: DriverOptions,
    private readonly actor = 'host',
  ) {
    this.pages = new HostPages(bus, opts.pages.base, opts.pages.limit, actor);
  }

  // ---- MMIO ----------------------------------------------------------------------------------

  read32(off: number): number {
    return this.bus.read32(this.actor, this.opts.base + off);
  }
  write32(off: number, v: number): void {
    this.bus.write32(this.actor, this.opts.base + off, v);
  }
  write64(off: number, v: bigint): void {
    this.bus.write64(this.actor, this.opts.base + off, v);
  }

  /** CPU memory accesses to the driver's own tables (64-bit single-copy atomic stores). */
  writeMem64(addr: number, v: bigint): void {
    this.bus.write64(this.actor, addr, v);
  }
  readMem64(addr: number): bigint {
    return this.bus.read64(this.actor, addr);
  }
  readBytes(addr: number, len: number): Uint8Array {
    return this.bus.readBytes(this.actor, addr, len);
  }

  private pollAck(off: number, want: number, what: string): void {
    for (let i = 0; i < this.ackPollLimit; i++) if (this.read32(off) === want) return;
    throw new DriverError(
      `timeout waiting for ${what} (wanted 0x${want.toString(16)}, read 0x${this.read32(off).toString(16)})`,
    );
  }

  /** Write CR0 and wait for CR0ACK to match (arm_smmu_write_reg_sync). */
  private writeCr0(v: number): void {
    this.write32(OFF.CR0, v);
    this.pollAck(OFF.CR0ACK, v, 'CR0ACK');
  }

  /** arm_smmu_update_gbpa: wait for Update=0, write with Update=1, wait again. */
  private updateGbpa(setBits: number, clrBits: number): void {
    const wait = () => {
      for (let i = 0; i < this.ackPollLimit; i++) {
        const g = this.read32(OFF.GBPA);
        if ((g & GBPA_UPDATE) === 0) return g;
      }
      throw new DriverError('timeout waiting for GBPA.Update');
    };
    let g = wait();
    g = (g & ~clrBits) | setBits;
    this.write32(OFF.GBPA, (g | GBPA_UPDATE) >>> 0);
    wait();
  }

  // ---- probe ---------------------------------------------------------------------------------

  /** arm_smmu_device_hw_probe: features from IDR0/1/3/5 (and IIDR). */
  private hwProbe(): DriverFeatures {
    const r0 = [this.read32(OFF.IDR0)];
    const r1 = [this.read32(OFF.IDR1)];
    const r3 = [this.read32(OFF.IDR3)];
    const r5 = [this.read32(OFF.IDR5)];
    this.read32(OFF.IIDR);
    const ttendian = get(r0, IDR0.TTENDIAN);
    const stallModel = get(r0, IDR0.STALL_MODEL);
    const oas = OAS_BITS[get(r5, IDR5.OAS)] ?? 48;
    const s1 = get(r0, IDR0.S1P) === 1;
    const s2 = get(r0, IDR0.S2P) === 1;
    if (!s1 && !s2) throw new DriverError('no translation support!');
    const ttf = get(r0, IDR0.TTF);
    if (!(ttf & 2)) throw new DriverError('AArch64 table format not supported!');
    const sidBits = get(r1, IDR1.SIDSIZE);
    const pgsizes: number[] = [];
    if (get(r5, IDR5.GRAN64K)) pgsizes.push(1 << 16, 2 ** 29);
    if (get(r5, IDR5.GRAN16K)) pgsizes.push(1 << 14, 1 << 25);
    if (get(r5, IDR5.GRAN4K)) pgsizes.push(1 << 12, 1 << 21, 1 << 30);
    if (get(r1, IDR1.TABLES_PRESET) || get(r1, IDR1.QUEUES_PRESET))
      throw new DriverError('embedded implementation not supported');
    const ft: DriverFeatures = {
      twoLevelStrtab: get(r0, IDR0.ST_LEVEL) === 1 && sidBits > STRTAB_SPLIT,
      twoLevelCd: get(r0, IDR0.CD2L) === 1,
      ttLe: ttendian === 0 || ttendian === 2,
      ttBe: ttendian === 0 || ttendian === 3,
      pri: get(r0, IDR0.PRI) === 1,
      ats: get(r0, IDR0.ATS) === 1,
      sev: get(r0, IDR0.SEV) === 1,
      msi: get(r0, IDR0.MSI) === 1,
      hyp: get(r0, IDR0.HYP) === 1,
      e2h: false,
      stalls: stallModel === 0 || stallModel === 2,
      stallForce: stallModel === 2,
      transS1: s1,
      transS2: s2,
      rangeInv: get(r3, IDR3.RIL) === 1,
      coherent: get(r0, IDR0.COHACC) === 1,
      asidBits: get(r0, IDR0.ASID16) ? 16 : 8,
      vmidBits: get(r0, IDR0.VMID16) ? 16 : 8,
      sidBits,
      ssidBits: get(r1, IDR1.SSIDSIZE),
      cmdqShift: Math.min(get(r1, IDR1.CMDQS), Q_MAX_SZ_SHIFT - 4),
      evtqShift: Math.min(get(r1, IDR1.EVENTQS), Q_MAX_SZ_SHIFT - 5),
      priqShift: Math.min(get(r1, IDR1.PRIQS), Q_MAX_SZ_SHIFT - 4),
      oas,
      ias: oas,
      pgsizes: pgsizes.sort((a, b) => a - b),
    };
    log.info({ oas, sidBits, features: ft }, 'arm-smmu-v3 features');
    return ft;
  }

  /** arm_smmu_init_strtab: 2-level (SPLIT=8, L2 tables on demand) or linear, every STE = abort. */
  private initStrtab(): void {
    const ft = this.ft;
    if (ft.twoLevelStrtab) {
      const l1Entries = Math.min(2 ** (ft.sidBits - STRTAB_SPLIT), STRTAB_MAX_L1_ENTRIES);
      const log2size = Math.log2(l1Entries) + STRTAB_SPLIT;
      this.strtab = {
        base: this.pages.alloc(l1Entries * STRTAB_L1_DESC_BYTES),
        log2size,
        fmt: 1,
        split: STRTAB_SPLIT,
        l1: new Array(l1Entries).fill(0),
      };
    } else {
      const n = 2 ** ft.sidBits;
      const base = this.pages.alloc(n * 64);
      this.strtab = { base, log2size: ft.sidBits, fmt: 0, split: 0, l1: [] };
      const abort = makeAbortSte();
      for (let sid = 0; sid < n; sid++) this.writeSteWords(base + sid * 64, abort);
    }
  }

  private writeSteWords(addr: number, w: Uint32Array): void {
    this.bus.writeBytes(this.actor, addr, new Uint8Array(w.buffer, w.byteOffset, 64));
  }

  /** arm_smmu_init_l2_strtab: allocate the L2 table covering `sid` (256 abort STEs) and publish its L1STD. */
  ensureL2(sid: number): void {
    if (this.strtab.fmt !== 1) return;
    const idx = Math.floor(sid / 2 ** this.strtab.split);
    if (this.strtab.l1[idx]) return;
    const n = 2 ** this.strtab.split;
    const l2 = this.pages.alloc(n * 64);
    const abort = makeAbortSte();
    for (let i = 0; i < n; i++) this.writeSteWords(l2 + i * 64, abort);
    // L1STD: Span = SPLIT + 1, L2Ptr
    const desc = BigInt(l2) | BigInt(this.strtab.split + 1);
    this.bus.write64(this.actor, this.strtab.base + idx * STRTAB_L1_DESC_BYTES, desc);
    this.strtab.l1[idx] = l2;
  }

  /** Address of the STE for `sid` (the L2 table must exist). */
  steAddr(sid: number): number {
    if (this.strtab.fmt === 0) return this.strtab.base + sid * 64;
    const l2 = this.strtab.l1[Math.floor(sid / 2 ** this.strtab.split)];
    if (!l2) throw new DriverError(`no level-2 stream table for SID ${sid}`);
    return l2 + (sid % 2 ** this.strtab.split) * 64;
  }

  private qBase(addr: number, shift: number): bigint {
    const w = [0, 0];
    set(w, Q_BASE.LOG2SIZE, shift);
    return RA | BigInt(addr) | BigInt(w[0]!);
  }

  /** Probe and reset the SMMU. */
  probe(): void {
    const ft = (this.ft = this.hwProbe());
    // arm_smmu_init_structures: queues, then the stream table
    const cmdqBase = this.pages.alloc(2 ** ft.cmdqShift * 16);
    this.cmdq = new DriverCmdq(
      this.bus,
      this.opts.base,
      cmdqBase,
      ft.cmdqShift,
      ft.msi && ft.coherent,
      this.actor,
    );
    this.evtq = { base: this.pages.alloc(2 ** ft.evtqShift * 32), shift: ft.evtqShift };
    this.events = new EventDrain(
      this.bus,
      this.opts.base,
      this.evtq.base,
      this.evtq.shift,
      this.actor,
    );
    if (ft.pri) this.priq = { base: this.pages.alloc(2 ** ft.priqShift * 16), shift: ft.priqShift };
    this.initStrtab();
    this.reset();
    this.probed = true;
  }

  /**
   * Runtime suspend (arm_smmu_runtime_suspend → arm_smmu_device_disable): CR0 to 0, waited
   * for in CR0ACK. The stream table, CDs and page tables in memory are kept, as Linux keeps
   * them across runtime PM.
   */
  suspend(): void {
    if (!this.probed) throw new DriverError('suspend before probe');
    this.writeCr0(0);
  }

  /**
   * Runtime resume (arm_smmu_runtime_resume → arm_smmu_device_reset): the same reset as the
   * probe's, over the tables the driver already has: the queues start empty again, the
   * stream table base is reprogrammed, and CFGI_ALL / TLBI_NSNH_ALL drop whatever the SMMU
   * cached before it was powered down.
   */
  resume(): void {
    if (!this.probed) throw new DriverError('resume before probe');
    this.reset();
  }

  /** arm_smmu_device_reset (probe and runtime resume). */
  private reset(): void {
    const ft = this.ft;
    if (this.read32(OFF.CR0) & CR0.SMMUEN) {
      log.warn('SMMU currently enabled! Resetting...');
      this.updateGbpa(GBPA_ABORT, 0);
    }
    this.writeCr0(0); // arm_smmu_device_disable
    // Linux's CR1: queues and tables Inner Shareable, Write-Back (0xd75)
    this.write32(OFF.CR1, CR1_WB_ISH);
    let cr2 = CR2.RECINVSID | CR2.PTM;
    if (ft.e2h) cr2 |= CR2.E2H;
    this.write32(OFF.CR2, cr2);
    // stream table
    this.write64(OFF.STRTAB_BASE, RA | BigInt(this.strtab.base));
    const cfg = [0];
    set(cfg, STRTAB_BASE_CFG.FMT, this.strtab.fmt);
    set(cfg, STRTAB_BASE_CFG.LOG2SIZE, this.strtab.log2size);
    if (this.strtab.fmt === 1) set(cfg, STRTAB_BASE_CFG.SPLIT, this.strtab.split);
    this.write32(OFF.STRTAB_BASE_CFG, cfg[0]!);
    // command queue
    this.write64(OFF.CMDQ_BASE, this.qBase(this.cmdq.base, this.cmdq.log2size));
    this.cmdq.prod = 0; // the queue starts empty (again, after a runtime suspend)
    this.write32(OFF.CMDQ_PROD, 0);
    this.write32(OFF.CMDQ_CONS, 0);
    let enables = CR0.CMDQEN;
    this.writeCr0(enables);
    // invalidate any cached configuration, then the TLBs (each batch ends with a CMD_SYNC)
    this.cmdq.issue([['CFGI_ALL']]);
    if (ft.hyp) this.cmdq.issue([['TLBI_EL2_ALL']]);
    this.cmdq.issue([['TLBI_NSNH_ALL']]);
    // event queue
    this.write64(OFF.EVENTQ_BASE, this.qBase(this.evtq.base, this.evtq.shift));
    this.write32(OFF.EVENTQ_PROD, 0);
    this.write32(OFF.EVENTQ_CONS, 0);
    enables |= CR0.EVENTQEN;
    this.writeCr0(enables);
    if (ft.pri) {
      this.write64(OFF.PRIQ_BASE, this.qBase(this.priq.base, this.priq.shift));
      this.write32(OFF.PRIQ_PROD, 0);
      this.write32(OFF.PRIQ_CONS, 0);
      enables |= CR0.PRIQEN;
      this.writeCr0(enables);
    }
    if (ft.ats) {
      enables |= CR0.ATSCHK;
      this.writeCr0(enables);
    }
    this.setupIrqs();
    if (this.opts.bypass) {
      this.updateGbpa(0, GBPA_ABORT);
    } else {
      enables |= CR0.SMMUEN;
      this.writeCr0(enables);
    }
  }

  /** arm_smmu_setup_irqs: disable, clear the MSI addresses (wired interrupts), enable. */
  private setupIrqs(): void {
    this.write32(OFF.IRQ_CTRL, 0);
    this.pollAck(OFF.IRQ_CTRLACK, 0, 'IRQ_CTRLACK');
    this.write64(OFF.GERROR_IRQ_CFG0, 0n);
    this.write64(OFF.EVENTQ_IRQ_CFG0, 0n);
    if (this.ft.pri) this.write64(OFF.PRIQ_IRQ_CFG0, 0n);
    const irqen = 1 | 4 | (this.ft.pri ? 2 : 0); // GERROR_IRQEN | EVENTQ_IRQEN | PRIQ_IRQEN
    this.write32(OFF.IRQ_CTRL, irqen);
    this.pollAck(OFF.IRQ_CTRLACK, irqen, 'IRQ_CTRLACK');
  }

  /** Issue commands with a trailing CMD_SYNC. */
  issue(cmds: readonly Command[], sync = true): void {
    this.cmdq.issue(cmds, sync);
  }

  /** Issue `n` pre-encoded commands (four words each) with a trailing CMD_SYNC: see DriverCmdq.issueWords. */
  issueWords(words: Uint32Array, n: number, sync = true): void {
    this.cmdq.issueWords(words, n, sync);
  }
}
