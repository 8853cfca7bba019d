/**
 * The vSMMU: an emulated SMMUv3 programming interface a guest finds at IPA 0x0905_0000
 * (designs.md §3, built stronger than Xen's RFC). The guest runs the unchanged driver on it.
 *
 * - ID registers: stage 1 only (no S2P, HYP, MSI, VMID16, BTM, HTTU, ATOS, PRI), ATS only when
 *   the policy allows it, 16-bit vSIDs, 2-level stream tables, STALL_MODEL=0b01; granules,
 *   RIL, HAD and ASID16 from the hardware; OAS 48 bits (the guest's IPA space).
 * - CR0/CR0ACK, the CR1/CR2 and queue-base guards, GBPA with its Update protocol,
 *   IRQ_CTRL/IRQ_CTRLACK and the GERROR/GERRORN toggle protocol behave as on the hardware (the
 *   same hw/ classes). Without MSIs the *_IRQ_CFG registers are RES0. Unknown offsets RAZ/WI.
 * - The command queue, event queue and stream table live in guest memory (IPAs). Every read
 *   and write of them goes through the guest's stage-2.
 * - Commands are consumed by the hardware model's own queue logic (so legality, CERROR_ILL,
 *   CERROR_ABT and CONS.ERR are architectural), at most `budget` per trap: the rest continue
 *   on the guest's next vSMMU access (its CONS poll), so the hypervisor's work per trap is
 *   bounded (Xen processes up to 2^20 commands per PROD write).
 * - Physical commands are batched and issued with one physical CMD_SYNC when the guest's
 *   CMD_SYNC is reached (or at the end of the trap). A guest CMD_SYNC completes only after the
 *   physical one; if the physical queue cannot complete (the host wedged it), the guest's
 *   CMD_SYNC waits with CONS at it, and is retried on the next trap.
 *
 * Named rules (hyp/policy/policy.ts), each of which the fuzzer can weaken (`--target guest`):
 * `vsid-owner`, `vste-s1-only`, `vste-legal` (vsmmu-ste.ts), `vtlbi-vmid`, `vsmmu-p2m`,
 * `vcmd-budget` and `vevt-vsid`. Weakened, each behaves as the rule's text says.
 */
import { get, set, wordMask } from '../../hw/bits.ts';
import {
  OFF,
  IDR0,
  IDR1,
  IDR3,
  IDR5,
  CR0,
  CR2,
  IRQ_CTRL,
  STRTAB_BASE_CFG,
} from '../../hw/smmu/regs.ts';
import {
  idRegisters,
  OAS_BITS,
  type SmmuFeatures,
  type IdRegisters,
} from '../../hw/smmu/features.ts';
import { CommandQueue, CmdqWait, type CmdqTarget } from '../../hw/smmu/cmdq.ts';
import { EventQueue, OVFLG } from '../../hw/smmu/evtq.ts';
import { GlobalErrors, GERR } from '../../hw/smmu/gerror.ts';
import { Gbpa } from '../../hw/smmu/gbpa.ts';
import { GBPA } from '../../hw/smmu/regs.ts';
import { queueBase } from '../../hw/smmu/smmu.ts';
import { ptrMask } from '../../hw/smmu/queue.ts';
import { OP, encodeCommand, VMID as VMID_F, opcodeName } from '../../hw/smmu/commands.ts';
import {
  EVT,
  EVT_WORDS,
  buildEvent,
  E_StreamID,
  decodeEvent,
  type DecodedEvent,
} from '../../hw/smmu/events.ts';
import { L1STD, STE_WORDS } from '../../hw/smmu/ste.ts';
import { strtabGeometry } from '../../hw/smmu/strtab.ts';
import type { AccessSize } from '../../hw/bus.ts';
import { ShadowQueueError } from '../smmuv3/shadowq.ts';
import { nestSte, disabledSte, type NestEnv, type NestOutcome } from './vsmmu-ste.ts';
import { VSID_BITS, type Guest } from './guest.ts';
import type { RuleName } from '../policy/policy.ts';

const SMMUEN = wordMask(CR0.SMMUEN),
  EVENTQEN = wordMask(CR0.EVENTQEN),
  CMDQEN = wordMask(CR0.CMDQEN),
  ATSCHK = wordMask(CR0.ATSCHK);
const ADDR_HI_MASK = 0x00ffffff; // bits [55:32]
const RWA_HI = 1 << 30; // bit 62
const GBPA_ABORT = wordMask(GBPA.ABORT);
const CFG_MASK =
  wordMask(STRTAB_BASE_CFG.LOG2SIZE) |
  wordMask(STRTAB_BASE_CFG.SPLIT) |
  wordMask(STRTAB_BASE_CFG.FMT);

interface Reg64 {
  lo: number;
  hi: number;
}

/** What the vSMMU needs from the hypervisor: physical commands and STE installs. */
export interface VSmmuHost {
  /** the hardware's ID registers (the hypervisor's mini-probe) */
  hwIdr: { idr0: number; idr1: number; idr3: number; idr5: number; aidr: number; iidr: number };
  allowAts: boolean;
  budget: number;
  /** install a physical STE for pSID (throws ShadowQueueError when the physical queue cannot complete) */
  installSte(psid: number, w: Uint32Array): void;
  /** issue physical commands followed by a CMD_SYNC and wait (throws ShadowQueueError) */
  issue(cmds: Uint32Array[]): void;
  /** whether the physical queue has consumed everything issued so far, with no error */
  drained(): boolean;
  /** the policy's weakened rules (absent: none is weakened) */
  weak?: (rule: RuleName) => boolean;
}

/** The vSMMU's features: stage 1 only, from the hardware's ID registers. */
export function guestFeatures(hw: VSmmuHost['hwIdr'], allowAts: boolean): SmmuFeatures {
  const i0 = [hw.idr0],
    i1 = [hw.idr1],
    i3 = [hw.idr3],
    i5 = [hw.idr5];
  const oasBits = OAS_BITS[get(i5, IDR5.OAS)]!;
  return {
    s1p: true,
    s2p: false,
    ttf: 2,
    cohacc: get(i0, IDR0.COHACC) === 1,
    btm: false,
    httu: 0,
    dormhint: false,
    hyp: false,
    ats: allowAts && get(i0, IDR0.ATS) === 1,
    ns1ats: true,
    asid16: get(i0, IDR0.ASID16) === 1,
    msi: false,
    sev: get(i0, IDR0.SEV) === 1,
    atos: false,
    pri: false,
    vmw: false,
    vmid16: false,
    cd2l: get(i0, IDR0.CD2L) === 1,
    ttendian: get(i0, IDR0.TTENDIAN) as 0 | 2 | 3,
    stallModel: 1,
    termModel: get(i0, IDR0.TERM_MODEL) === 1,
    twoLevelStrtab: true,
    sidSize: VSID_BITS,
    ssidSize: get(i1, IDR1.SSIDSIZE),
    cmdqs: Math.min(get(i1, IDR1.CMDQS), 19),
    eventqs: Math.min(get(i1, IDR1.EVENTQS), 19),
    priqs: 0,
    attrTypesOvr: false,
    attrPermsOvr: false,
    had: get(i3, IDR3.HAD) === 1,
    xnx: get(i3, IDR3.XNX) === 1,
    stt: false,
    ril: get(i3, IDR3.RIL) === 1,
    bbml: 0,
    mpam: false,
    oas: Math.min(oasBits, 48) as 48,
    gran4k: get(i5, IDR5.GRAN4K) === 1,
    gran16k: get(i5, IDR5.GRAN16K) === 1,
    gran64k: get(i5, IDR5.GRAN64K) === 1,
    vax: 0,
    stallMax: 0,
    iidr: hw.iidr,
    archMinor: hw.aidr & 0xf,
    checkRes0: false,
    guardedWritesTakeEffect: false,
  };
}

export class VSmmu implements CmdqTarget {
  readonly features: SmmuFeatures;
  readonly idr: IdRegisters;
  readonly cmdq: CommandQueue;
  readonly evtq: EventQueue;
  readonly gerr: GlobalErrors;
  readonly gbpa: Gbpa;
  cr0 = 0;
  cr0ack = 0;
  cr1 = 0;
  cr2 = 0;
  irqCtrl = 0;
  readonly strtabBase: Reg64 = { lo: 0, hi: 0 };
  strtabCfg = 0;
  readonly cmdqBase: Reg64 = { lo: 0, hi: 0 };
  readonly eventqBase: Reg64 = { lo: 0, hi: 0 };
  /** register accesses ignored: guarded, read-only, RES0/unknown, bad size */
  readonly ignored = { guarded: 0, readOnly: 0, undefinedOffset: 0, size: 0 };
  /** per-opcode counts of the physical commands issued for the guest (its own commands: cmdq.stats.perOpcode) */
  readonly physOps = new Uint32Array(256);
  /** what each vSID's physical STE is now */
  readonly config = new Map<number, NestOutcome>();
  /** events written to the guest (decoded), in order */
  readonly events: DecodedEvent[] = [];
  /** commands remain after a budget stop: continue on the next trap */
  pending = false;
  private readonly staged: Uint32Array[] = [];
  /** staged commands went into the physical queue, which stopped before completing them: a guest CMD_SYNC waits for it to drain */
  private physPending = false;
  private readonly nestEnv: NestEnv;
  private readonly ev = new Uint32Array(EVT_WORDS);
  private readonly gste = new Uint32Array(STE_WORDS);
  private readonly pste = new Uint32Array(STE_WORDS);
  private readonly l1 = new Uint32Array(2);
  /** the weakened rules, fixed with the policy */
  private readonly wk: {
    vsidOwner: boolean;
    tlbiVmid: boolean;
    p2m: boolean;
    budget: boolean;
    evtVsid: boolean;
  };
  /** StreamIDs the hardware has (IDR1.SIDSIZE): the weakened vsid-owner's identity map stops there */
  private readonly hwSids: number;

  constructor(
    readonly guest: Guest,
    private readonly host: VSmmuHost,
  ) {
    this.features = guestFeatures(host.hwIdr, host.allowAts);
    this.idr = idRegisters(this.features);
    const weak = host.weak ?? ((): boolean => false);
    this.wk = {
      vsidOwner: weak('vsid-owner'),
      tlbiVmid: weak('vtlbi-vmid'),
      p2m: weak('vsmmu-p2m'),
      budget: weak('vcmd-budget'),
      evtVsid: weak('vevt-vsid'),
    };
    this.hwSids = 2 ** get([host.hwIdr.idr1], IDR1.SIDSIZE);
    this.nestEnv = { features: this.features, s2: guest.s2cfg, vmid: guest.vmid };
    if (weak('vste-legal') || weak('vste-s1-only'))
      this.nestEnv.weak = { legal: weak('vste-legal'), s1Only: weak('vste-s1-only') };
    // the reset value: ABORT=1 (IMPLEMENTATION DEFINED; a guest device does nothing until the guest says so)
    this.gbpa = new Gbpa(GBPA_ABORT);
    this.gerr = new GlobalErrors((bit) => {
      if (bit === GERR.CMDQ_ERR) guest.stats.cmdErrors++;
      this.virq('gerror');
    });
    this.cmdq = new CommandQueue(this);
    this.evtq = new EventQueue({
      enabled: () => (this.cr0 & EVENTQEN) !== 0,
      base: () => queueBase(this.eventqBase, this.log2(this.eventqBase, this.features.eventqs), 32),
      log2size: () => this.log2(this.eventqBase, this.features.eventqs),
      writer: { record: (_kind, ipa, words) => guest.write(ipa, words, words.length, this.wk.p2m) },
      abort: () => this.gerr.activate(GERR.EVENTQ_ABT_ERR),
      irq: () => this.virq('eventq'),
    });
    this.evtq.keepLog = false;
  }

  private log2(r: Reg64, cap: number): number {
    return Math.min(r.lo & 0x1f, cap);
  }

  private virq(line: 'eventq' | 'gerror'): void {
    const en =
      line === 'gerror' ? wordMask(IRQ_CTRL.GERROR_IRQEN) : wordMask(IRQ_CTRL.EVENTQ_IRQEN);
    if (this.irqCtrl & en) this.guest.stats.virqs[line]++;
  }

  // ---- MMIO (the trap handler calls these with the offset in the vSMMU's 128 KiB) -------------

  read(off: number, size: AccessSize): bigint {
    this.continueWork();
    this.flushStaged();
    if (size === 8 && (off & 7) === 0)
      return (BigInt(this.read32(off + 4) >>> 0) << 32n) | BigInt(this.read32(off) >>> 0);
    if (size !== 4 || off & 3) {
      this.ignored.size++;
      return 0n;
    }
    return BigInt(this.read32(off) >>> 0);
  }

  write(off: number, size: AccessSize, value: bigint): void {
    this.continueWork();
    if (size === 8 && (off & 7) === 0) {
      const lo = Number(value & 0xffffffffn) >>> 0;
      const hi = Number((value >> 32n) & 0xffffffffn) >>> 0;
      if (off === OFF.STRTAB_BASE || off === OFF.CMDQ_BASE || off === OFF.EVENTQ_BASE)
        this.write64(off, lo, hi);
      else {
        this.write32(off, lo);
        this.write32(off + 4, hi);
      }
    } else if (size !== 4 || off & 3) {
      this.ignored.size++;
    } else {
      this.write32(off, Number(value & 0xffffffffn) >>> 0);
    }
    this.flushStaged();
  }

  read32(off: number): number {
    switch (off) {
      case OFF.IDR0:
        return this.idr.IDR0;
      case OFF.IDR1:
        return this.idr.IDR1;
      case OFF.IDR2:
        return this.idr.IDR2;
      case OFF.IDR3:
        return this.idr.IDR3;
      case OFF.IDR4:
        return this.idr.IDR4;
      case OFF.IDR5:
        return this.idr.IDR5;
      case OFF.IIDR:
        return this.idr.IIDR;
      case OFF.AIDR:
        return this.idr.AIDR;
      case OFF.CR0:
        return this.cr0;
      case OFF.CR0ACK:
        return this.cr0ack;
      case OFF.CR1:
        return this.cr1;
      case OFF.CR2:
        return this.cr2;
      case OFF.GBPA:
        return this.gbpa.read();
      case OFF.IRQ_CTRL:
        return this.irqCtrl;
      case OFF.IRQ_CTRLACK:
        return this.irqCtrl;
      case OFF.GERROR:
        return this.gerr.gerror;
      case OFF.GERRORN:
        return this.gerr.gerrorn;
      case OFF.STRTAB_BASE:
        return this.strtabBase.lo;
      case OFF.STRTAB_BASE + 4:
        return this.strtabBase.hi;
      case OFF.STRTAB_BASE_CFG:
        return this.strtabCfg;
      case OFF.CMDQ_BASE:
        return this.cmdqBase.lo;
      case OFF.CMDQ_BASE + 4:
        return this.cmdqBase.hi;
      case OFF.CMDQ_PROD:
        return this.cmdq.prod;
      case OFF.CMDQ_CONS:
        return (this.cmdq.cons | (this.gerr.active(GERR.CMDQ_ERR) ? this.cmdq.err << 24 : 0)) >>> 0;
      case OFF.EVENTQ_BASE:
        return this.eventqBase.lo;
      case OFF.EVENTQ_BASE + 4:
        return this.eventqBase.hi;
      case OFF.EVENTQ_PROD:
        return this.evtq.prod;
      case OFF.EVENTQ_CONS:
        return this.evtq.cons;
    }
    this.ignored.undefinedOffset++;
    return 0;
  }

  private get smmuDisabled(): boolean {
    return ((this.cr0 | this.cr0ack) & SMMUEN) === 0;
  }

  private qDisabled(bit: number): boolean {
    return ((this.cr0 | this.cr0ack) & bit) === 0;
  }

  private write64(off: number, lo: number, hi: number): void {
    switch (off) {
      case OFF.STRTAB_BASE:
        if (!this.smmuDisabled) return void this.ignored.guarded++;
        this.strtabBase.lo = (lo & ~0x3f) >>> 0;
        this.strtabBase.hi = (hi & (ADDR_HI_MASK | RWA_HI)) >>> 0;
        return;
      case OFF.CMDQ_BASE:
        if (!this.qDisabled(CMDQEN)) return void this.ignored.guarded++;
        this.cmdqBase.lo = lo >>> 0;
        this.cmdqBase.hi = (hi & (ADDR_HI_MASK | RWA_HI)) >>> 0;
        return;
      case OFF.EVENTQ_BASE:
        if (!this.qDisabled(EVENTQEN)) return void this.ignored.guarded++;
        this.eventqBase.lo = lo >>> 0;
        this.eventqBase.hi = (hi & (ADDR_HI_MASK | RWA_HI)) >>> 0;
        return;
    }
  }

  write32(off: number, v: number): void {
    switch (off) {
      case OFF.IDR0:
      case OFF.IDR1:
      case OFF.IDR2:
      case OFF.IDR3:
      case OFF.IDR4:
      case OFF.IDR5:
      case OFF.IIDR:
      case OFF.AIDR:
      case OFF.CR0ACK:
      case OFF.STATUSR:
      case OFF.IRQ_CTRLACK:
      case OFF.GERROR:
        this.ignored.readOnly++;
        return;
      case OFF.CR0:
        return this.writeCr0(v);
      case OFF.CR1:
        if (!this.smmuDisabled) return void this.ignored.guarded++;
        this.cr1 = v & 0xfff;
        return;
      case OFF.CR2:
        if (!this.smmuDisabled) return void this.ignored.guarded++;
        this.cr2 = v & (wordMask(CR2.RECINVSID) | wordMask(CR2.PTM));
        return;
      case OFF.GBPA: {
        const wasAbort = this.gbpa.abort;
        this.gbpa.write(v);
        if (this.gbpa.abort !== wasAbort && this.smmuDisabled) this.configureAll(false);
        return;
      }
      case OFF.IRQ_CTRL:
        this.irqCtrl = v & (wordMask(IRQ_CTRL.GERROR_IRQEN) | wordMask(IRQ_CTRL.EVENTQ_IRQEN));
        return;
      case OFF.GERRORN: {
        const wasErr = this.gerr.active(GERR.CMDQ_ERR);
        this.gerr.writeN(v);
        if (wasErr && !this.gerr.active(GERR.CMDQ_ERR)) this.kick();
        return;
      }
      case OFF.STRTAB_BASE:
      case OFF.STRTAB_BASE + 4:
        if (!this.smmuDisabled) return void this.ignored.guarded++;
        if (off === OFF.STRTAB_BASE) this.strtabBase.lo = (v & ~0x3f) >>> 0;
        else this.strtabBase.hi = (v & (ADDR_HI_MASK | RWA_HI)) >>> 0;
        return;
      case OFF.STRTAB_BASE_CFG:
        if (!this.smmuDisabled) return void this.ignored.guarded++;
        this.strtabCfg = (v & CFG_MASK) >>> 0;
        return;
      case OFF.CMDQ_BASE:
      case OFF.CMDQ_BASE + 4:
        if (!this.qDisabled(CMDQEN)) return void this.ignored.guarded++;
        if (off === OFF.CMDQ_BASE) this.cmdqBase.lo = v >>> 0;
        else this.cmdqBase.hi = (v & (ADDR_HI_MASK | RWA_HI)) >>> 0;
        return;
      case OFF.CMDQ_PROD:
        this.cmdq.prod = v & 0xfffff;
        this.kick();
        return;
      case OFF.CMDQ_CONS:
        if (!this.qDisabled(CMDQEN)) return void this.ignored.guarded++;
        this.cmdq.cons = v & 0xfffff;
        return;
      case OFF.EVENTQ_BASE:
      case OFF.EVENTQ_BASE + 4:
        if (!this.qDisabled(EVENTQEN)) return void this.ignored.guarded++;
        if (off === OFF.EVENTQ_BASE) this.eventqBase.lo = v >>> 0;
        else this.eventqBase.hi = (v & (ADDR_HI_MASK | RWA_HI)) >>> 0;
        return;
      case OFF.EVENTQ_PROD:
        if (!this.qDisabled(EVENTQEN)) return void this.ignored.guarded++;
        this.evtq.prod = v & (0xfffff | OVFLG);
        return;
      case OFF.EVENTQ_CONS:
        this.evtq.cons = v & (0xfffff | OVFLG);
        return;
    }
    this.ignored.undefinedOffset++;
  }

  private writeCr0(v: number): void {
    let mask = SMMUEN | EVENTQEN | CMDQEN;
    if (this.features.ats) mask |= ATSCHK;
    const old = this.cr0;
    const nv = (v & mask) >>> 0;
    this.cr0 = nv;
    this.cr0ack = nv;
    if ((old ^ nv) & SMMUEN) this.configureAll(false);
    if ((old ^ nv) & nv & CMDQEN) this.kick();
  }

  // ---- command consumption ---------------------------------------------------------------------

  private get runnable(): boolean {
    return (this.cr0 & CMDQEN) !== 0 && !this.gerr.active(GERR.CMDQ_ERR);
  }

  /** Consume up to the budget; remember whether more remain. */
  private kick(): void {
    if (!this.runnable || this.guest.dying) {
      this.pending = false;
      return;
    }
    const qs = this.log2(this.cmdqBase, this.features.cmdqs);
    this.cmdq.log2size = qs;
    this.cmdq.base = queueBase(this.cmdqBase, qs, 16);
    const n = this.cmdq.consume(this.wk.budget ? Infinity : this.host.budget);
    this.guest.stats.commands += n;
    const m = ptrMask(qs);
    this.pending = this.runnable && (this.cmdq.cons & m) !== (this.cmdq.prod & m);
    if (this.pending && n >= this.host.budget) this.guest.stats.budgetStops++;
  }

  /** The continuation: a trap resumes a stopped batch (at most one more budget). */
  continueWork(): void {
    if (this.pending) this.kick();
  }

  /** Issue the physical commands staged so far, with one CMD_SYNC. False when the physical queue cannot complete. */
  private flushStaged(): boolean {
    if (this.physPending) {
      if (!this.host.drained()) return false;
      this.physPending = false;
    }
    if (this.staged.length === 0) return true;
    try {
      this.host.issue(this.staged);
    } catch (e) {
      if (!(e instanceof ShadowQueueError)) throw e;
      // already in the physical queue: they run when it restarts, and are not issued again
      if (e.queued) {
        this.staged.length = 0;
        this.physPending = true;
      }
      return false;
    }
    this.staged.length = 0;
    return true;
  }

  private stage(w: Uint32Array): void {
    this.staged.push(w);
  }

  // CmdqTarget (what each guest command does)

  smmuEnabled(): boolean {
    return (this.cr0 & SMMUEN) !== 0;
  }

  fetch(ipa: number, out: Uint32Array): boolean {
    return this.guest.read(ipa, out, 4, this.wk.p2m);
  }

  error(_code: number): void {
    this.gerr.activate(GERR.CMDQ_ERR);
  }

  cfgiSte(vsid: number, _leaf: boolean): void {
    this.configure(vsid, true);
  }

  cfgiSteRange(vsid: number, range: number): void {
    // only the guest's own vSIDs in the range: bounded by its device count, not by 2^(Range+1)
    const n = 2 ** (Math.min(range, 31) + 1);
    const start = vsid - (vsid % n);
    for (const v of this.guest.vsidToPsid.keys())
      if (v >= start && v < start + n) this.configure(v, false);
  }

  cfgiCd(vsid: number, ssid: number, leaf: boolean): void {
    const psid = this.psidOrReport(vsid);
    if (psid < 0) return;
    this.stage(encodeCommand('CFGI_CD', { StreamID: psid, SubstreamID: ssid, Leaf: leaf ? 1 : 0 }));
  }

  cfgiCdAll(vsid: number): void {
    const psid = this.psidOrReport(vsid);
    if (psid < 0) return;
    this.stage(encodeCommand('CFGI_CD_ALL', { StreamID: psid }));
  }

  prefetchConfig(_vsid: number): void {
    // a hint: nothing to do (the physical STE is already in place)
  }

  tlbi(op: number, w: Uint32Array): void {
    if (this.wk.tlbiVmid) {
      // the weakened rule: the guest's command goes to the hardware as the guest wrote it
      this.stage(Uint32Array.from(w));
      return;
    }
    if (op === OP.TLBI_NSNH_ALL) {
      // everything the guest can see: stage 1 and stage 2 of its VMID
      this.stage(encodeCommand('TLBI_S12_VMALL', { VMID: this.guest.vmid }));
      return;
    }
    // TLBI_NH_ALL/ASID/VA/VAA: the guest's own VMID substituted, the range fields kept
    const c = Uint32Array.from(w);
    set(c, VMID_F, this.guest.vmid);
    this.stage(c);
  }

  atcInv(w: Uint32Array): void {
    const psid = this.psidOrReport(w[1]!);
    if (psid < 0) return;
    const c = Uint32Array.from(w);
    c[1] = psid;
    this.stage(c);
  }

  priResp(_w: Uint32Array): void {
    // IDR0.PRI=0 on the vSMMU: the queue logic refuses PRI_RESP before it gets here
  }

  resume(_w: Uint32Array): void {
    // STALL_MODEL=0b01: refused by the queue logic
  }

  stallTerm(_sid: number): void {
    // STALL_MODEL=0b01: refused by the queue logic
  }

  sync(_cs: number, _msiAddr: number, _msiData: number): void {
    if (!this.flushStaged()) {
      throw new CmdqWait('the physical CMD_SYNC cannot complete yet');
    }
    // CS=SIG_IRQ without MSIs is the wired interrupt; CS=SIG_SEV a WFE wake-up: nothing to model
  }

  // ---- stream configuration --------------------------------------------------------------------

  private psidOrReport(vsid: number): number {
    const psid = this.guest.vsidToPsid.get(vsid);
    if (psid !== undefined) return psid;
    // the weakened rule: a vSID the table does not hold is taken as a pSID (Xen's RFC: vSID = pSID)
    if (this.wk.vsidOwner && vsid < this.hwSids) return vsid;
    this.inject(buildEvent(this.ev, EVT.C_BAD_STREAMID, { StreamID: vsid }));
    return -1;
  }

  /** Reconfigure every device of the guest (SMMUEN or GBPA changed). */
  configureAll(report: boolean): void {
    for (const v of this.guest.vsidToPsid.keys()) this.configure(v, report);
  }

  /**
   * Derive and install the physical STE of `vsid` from the vSMMU's state: GBPA while SMMUEN=0,
   * else the guest STE read through the guest's stage-2. `report` synthesizes the C_BAD_*
   * events a CFGI_STE of a bad configuration gets.
   */
  configure(vsid: number, report: boolean): void {
    const psid = report ? this.psidOrReport(vsid) : (this.guest.vsidToPsid.get(vsid) ?? -1);
    if (psid < 0) return;
    const out = this.pste;
    let outcome: NestOutcome;
    if ((this.cr0 & SMMUEN) === 0) {
      outcome = disabledSte(this.gbpa.abort, out, this.nestEnv);
    } else {
      const found = this.readGuestSte(vsid, report);
      if (!found) {
        out.fill(0);
        outcome = 'invalid';
      } else {
        const why: string[] = [];
        outcome = nestSte(this.gste, out, this.nestEnv, why);
        if (outcome === 'illegal') {
          this.guest.stats.badSte++;
          if (report) this.inject(buildEvent(this.ev, EVT.C_BAD_STE, { StreamID: vsid }));
        }
      }
    }
    try {
      this.host.installSte(psid, out);
    } catch (e) {
      if (e instanceof ShadowQueueError)
        throw new CmdqWait(`installing the STE of pSID ${psid}: ${e.message}`);
      throw e;
    }
    this.config.set(vsid, outcome);
  }

  /** Find the guest STE of `vsid` (linear or 2-level, through the guest's stage-2) into `gste`. */
  private readGuestSte(vsid: number, report: boolean): boolean {
    // the hardware's geometry rules: reserved SPLIT behaves as 6, the base is aligned to the table
    const geo = strtabGeometry(
      (this.strtabBase.hi & ADDR_HI_MASK) * 0x1_0000_0000 + ((this.strtabBase.lo & ~0x3f) >>> 0),
      this.strtabCfg,
      VSID_BITS,
      true,
    );
    const log2size = geo.log2size;
    const base = geo.base;
    const bad = (num: number, values: Record<string, number>): false => {
      if (report) this.inject(buildEvent(this.ev, num, { StreamID: vsid, ...values }));
      return false;
    };
    if (vsid >= 2 ** log2size) return bad(EVT.C_BAD_STREAMID, {});
    let steIpa: number;
    if (geo.fmt === 1) {
      const split = geo.split;
      const l1Ipa = base + Math.floor(vsid / 2 ** split) * 8;
      if (!this.guest.read(l1Ipa, this.l1, 2, this.wk.p2m))
        return bad(EVT.F_STE_FETCH, { FetchAddr: Math.floor(l1Ipa / 8) });
      const span = get(this.l1, L1STD.Span);
      const low = vsid % 2 ** split;
      if (span === 0 || span > 11 || span > split + 1 || low >= 2 ** (span - 1))
        return bad(EVT.C_BAD_STREAMID, {});
      const l2 = get(this.l1, L1STD.L2Ptr) * 64;
      const l2Bytes = 2 ** (span - 1) * 64;
      steIpa = l2 - (l2 % l2Bytes) + low * 64;
    } else {
      steIpa = base + vsid * 64;
    }
    if (!this.guest.read(steIpa, this.gste, STE_WORDS, this.wk.p2m))
      return bad(EVT.F_STE_FETCH, { FetchAddr: Math.floor(steIpa / 8) });
    return true;
  }

  // ---- events ----------------------------------------------------------------------------------

  /** Write an event record (with a vSID already in it) to the guest's event queue. */
  inject(words: Uint32Array): boolean {
    const ok = this.evtq.record(words);
    if (ok) {
      this.guest.stats.eventsInjected++;
      this.events.push(decodeEvent(words));
    } else this.guest.stats.eventsLost++;
    return ok;
  }

  /** A physical event record for one of the guest's pSIDs: copy it with the vSID and inject it. */
  forward(words: Uint32Array, vsid: number): boolean {
    this.ev.set(words);
    if (!this.wk.evtVsid) set(this.ev, E_StreamID, vsid);
    return this.inject(this.ev);
  }

  /** Stop the vSMMU (teardown): no more commands are consumed. */
  stop(): void {
    this.pending = false;
    this.staged.length = 0;
  }

  stats(): { commandsByOpcode: Record<string, number>; physicalByOpcode: Record<string, number> } {
    const name = (a: Uint32Array): Record<string, number> => {
      const o: Record<string, number> = {};
      a.forEach((n, op) => {
        if (n) o[opcodeName(op)] = n;
      });
      return o;
    };
    return {
      commandsByOpcode: name(this.cmdq.stats.perOpcode),
      physicalByOpcode: name(this.physOps),
    };
  }
}
