/**
 * The vSMMU: an emulated SMMUv3 programming interface a guest finds at IPA 0x0905_0000
 * (designs.md §3, built stronger than Xen's RFC). The guest runs the unchanged driver on it.
 *
 * - ID registers: stage 1 only (no S2P, HYP, MSI, VMID16, BTM, HTTU, ATOS, PRI), ATS only when
 *   the policy allows it, 16-bit vSIDs, 2-level stream tables, STALL_MODEL=0b01; granules,
 *   RIL, HAD and ASID16 from the hardware; OAS 48 bits (the guest's IPA space).
 * - CR0/CR0ACK, the CR1/CR2 and queue-base guards, GBPA with its Update protocol,
 *   IRQ_CTRL/IRQ_CTRLACK and the GERROR/GERRORN toggle protocol behave as on the hardware (the
 *   same hw/ classes and the same register file, hw/smmu/regfile.ts: what differs is data given
 *   to it, VSMMU_ABSENT and the hooks below). Without MSIs the *_IRQ_CFG registers are RES0. Unknown offsets RAZ/WI.
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
import { definedMask, get, set } from '../../hw/bits.ts';
import {
  IDR0,
  IDR1,
  IDR3,
  IDR5,
  CR0_BITS,
  GBPA_BITS,
  ID_REG_NAMES,
  IRQ_CFG_REG_NAMES,
  PRIQ_REG_NAMES,
  IRQ_CTRL_BITS,
  STRTAB_BASE,
} from '../../hw/smmu/regs.ts';
import {
  RegisterFile,
  componentBackings,
  featureWriteMasks,
  regSlot,
  type Reg64,
} from '../../hw/smmu/regfile.ts';
import {
  idRegisters,
  OAS_BITS,
  type SmmuFeatures,
  type IdRegisters,
} from '../../hw/smmu/features.ts';
import { CommandQueue, CmdqWait, type CmdqTarget } from '../../hw/smmu/cmdq.ts';
import { EventQueue } from '../../hw/smmu/evtq.ts';
import { GlobalErrors, GERR } from '../../hw/smmu/gerror.ts';
import { Gbpa } from '../../hw/smmu/gbpa.ts';
import { queueBase, queueLog2 } from '../../hw/smmu/queue.ts';
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

const { SMMUEN, EVENTQEN, CMDQEN } = CR0_BITS;
const ADDR_HI = definedMask([STRTAB_BASE.ADDR], 2)[1]!;
const STRTAB_ADDR_LO = definedMask([STRTAB_BASE.ADDR], 1)[0]!;
const S_CR0 = regSlot('CR0');
const S_CR0ACK = regSlot('CR0ACK');
const S_IRQ_CTRL = regSlot('IRQ_CTRL');
const S_STRTAB_BASE_CFG = regSlot('STRTAB_BASE_CFG');

/**
 * What the vSMMU does not implement (RES0, RAZ/WI, counted as undefined offsets): without MSIs
 * the *_IRQ_CFG registers, without PRI the PRI queue, AGBPA and the identification registers.
 */
const VSMMU_ABSENT = ['AGBPA', ...IRQ_CFG_REG_NAMES, ...PRIQ_REG_NAMES, ...ID_REG_NAMES];

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
  /** the register file (hw/smmu/regfile.ts), with the vSMMU's backings, hooks and absent registers */
  readonly regs: RegisterFile;
  readonly strtabBase: Reg64;
  readonly cmdqBase: Reg64;
  readonly eventqBase: Reg64;
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
    this.gbpa = new Gbpa(GBPA_BITS.ABORT);
    this.gerr = new GlobalErrors((bit) => {
      if (bit === GERR.CMDQ_ERR) guest.stats.cmdErrors++;
      this.virq('gerror');
    });
    this.cmdq = new CommandQueue(this);
    this.evtq = new EventQueue({
      enabled: () => (this.cr0 & EVENTQEN) !== 0,
      base: () => queueBase(this.eventqBase, queueLog2(this.eventqBase, this.features.eventqs), 32),
      log2size: () => queueLog2(this.eventqBase, this.features.eventqs),
      writer: { record: (_kind, ipa, words) => guest.write(ipa, words, words.length, this.wk.p2m) },
      abort: () => this.gerr.activate(GERR.EVENTQ_ABT_ERR),
      irq: () => this.virq('eventq'),
    });
    this.evtq.keepLog = false;
    this.regs = new RegisterFile({
      ignored: this.ignored,
      reset: { ...this.idr },
      wmask: featureWriteMasks(this.features),
      backing: componentBackings({
        cmdq: this.cmdq,
        evtq: this.evtq,
        gerror: this.gerr,
        gbpa: this.gbpa,
      }),
      effects: {
        enable: (old, nv) => {
          if ((old ^ nv) & SMMUEN) this.configureAll(false);
          if ((old ^ nv) & nv & CMDQEN) this.kick();
        },
        // the device follows GBPA while SMMUEN=0
        bypass: (old) => {
          if (this.gbpa.abort !== ((old & GBPA_BITS.ABORT) !== 0) && this.smmuDisabled)
            this.configureAll(false);
        },
        // acknowledging CMDQ_ERR lets consumption resume
        errorAck: (old) => {
          const wasErr = ((this.gerr.gerror ^ old) & GERR.CMDQ_ERR) !== 0;
          if (wasErr && !this.gerr.active(GERR.CMDQ_ERR)) this.kick();
        },
        cmdqProd: () => this.kick(),
      },
      absent: VSMMU_ABSENT,
      readsUndefined: ['STATUSR'],
    });
    this.strtabBase = this.regs.view64('STRTAB_BASE');
    this.cmdqBase = this.regs.view64('CMDQ_BASE');
    this.eventqBase = this.regs.view64('EVENTQ_BASE');
  }

  get cr0(): number {
    return this.regs.val[S_CR0]!;
  }
  get irqCtrl(): number {
    return this.regs.val[S_IRQ_CTRL]!;
  }
  private get strtabCfg(): number {
    return this.regs.val[S_STRTAB_BASE_CFG]!;
  }
  private get smmuDisabled(): boolean {
    return ((this.regs.val[S_CR0]! | this.regs.val[S_CR0ACK]!) & SMMUEN) === 0;
  }

  private virq(line: 'eventq' | 'gerror'): void {
    const en = line === 'gerror' ? IRQ_CTRL_BITS.GERROR_IRQEN : IRQ_CTRL_BITS.EVENTQ_IRQEN;
    if (this.irqCtrl & en) this.guest.stats.virqs[line]++;
  }

  // ---- MMIO (the trap handler calls these with the offset in the vSMMU's 128 KiB) -------------

  read(off: number, size: AccessSize): bigint {
    this.continueWork();
    this.flushStaged();
    return this.regs.read(off, size);
  }

  write(off: number, size: AccessSize, value: bigint): void {
    this.continueWork();
    this.regs.write(off, size, value);
    this.flushStaged();
  }

  read32(off: number): number {
    return this.regs.read32(off);
  }

  write32(off: number, v: number): void {
    this.regs.write32(off, v);
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
    const qs = queueLog2(this.cmdqBase, this.features.cmdqs);
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
      (this.strtabBase.hi & ADDR_HI) * 0x1_0000_0000 +
        ((this.strtabBase.lo & STRTAB_ADDR_LO) >>> 0),
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
