/**
 * The SMMUv3 register file: one engine for the access semantics the register table declares
 * (regs.ts: width, RO, write mask, reset, guard, acknowledge), shared by the hardware SMMU and
 * the vSMMU. Each instance gives its backing storage (a register kept in a component: the queue
 * pointers, GBPA, GERROR/GERRORN), the handlers of the side effects the table names (CR0's
 * enables, GBPA, GERRORN, CMDQ_PROD) and how it differs (registers it does not implement, feature-dependent write
 * masks, IMPLEMENTATION DEFINED reset values). There is no per-register switch anywhere.
 *
 * Layout: registers are grouped in banks, each a base and a list of definitions; a 64-bit
 * register takes two 32-bit slots. The Non-secure bank is the only one built; a Secure bank
 * (S_ registers at +0x8000, IHI 0070 6.3) is another `RegBank` with base 0x8000 and prefix
 * 'S_' over the same definitions (without the PRI queue, with S_INIT), named by its prefix in
 * the instance's configuration: no second table and no second engine.
 *
 * Access (IHI 0070 6.2, smmuv3.md §1): a 32-bit access is a lookup by offset/4; a 64-bit access
 * to a 64-bit register is one access (the guard checked once), to anything else two 32-bit
 * accesses, low word first. 8- and 16-bit and misaligned accesses are RAZ/WI (counted).
 */
import type { AccessSize } from '../bus.ts';
import {
  CMDQ_CONS,
  CR0,
  CR2,
  ID_REGISTERS,
  IRQ_CTRL,
  REGISTERS,
  SMMU_MMIO_SIZE,
  writeMask,
  type RegDef,
  type RegEffect,
} from './regs.ts';
import { place, wordMask } from '../bits.ts';
import type { SmmuFeatures } from './features.ts';
import type { CommandQueue } from './cmdq.ts';
import type { EventQueue } from './evtq.ts';
import type { GlobalErrors } from './gerror.ts';
import { GERR } from './gerror.ts';
import type { Gbpa } from './gbpa.ts';

/** One group of registers at `base`: the Non-secure one, and later the Secure one. */
export interface RegBank {
  readonly name: string;
  /** added to every definition's offset */
  readonly base: number;
  /** added before every definition's name ('S_' for the Secure bank) */
  readonly prefix: string;
  readonly registers: readonly RegDef[];
}

/** The Non-secure programming interface (Page 0 and Page 1) with the identification registers. */
export const NS_BANK: RegBank = {
  name: 'Non-secure',
  base: 0,
  prefix: '',
  registers: [...REGISTERS, ...ID_REGISTERS],
};

/** The two halves of a 64-bit register, as the queue and table base computations take them. */
export interface Reg64 {
  readonly lo: number;
  readonly hi: number;
}

/** A register whose value a component keeps (CMDQ_PROD in the command queue, GBPA in Gbpa). */
export interface RegBacking {
  read(): number;
  /** takes the value already masked by the write mask */
  write?(v: number): void;
}

/** A side effect after a write took effect: the value before and the value written (masked). */
export type AfterWrite = (old: number, nv: number) => void;

/** Accesses the register file ignored, by reason (the instance's own counters object). */
export interface IgnoredCounts {
  guarded: number;
  readOnly: number;
  size: number;
  undefinedOffset: number;
}

export interface RegFileConfig {
  /** where ignored accesses are counted */
  readonly ignored: IgnoredCounts;
  /** reset values by register name, for the IMPLEMENTATION DEFINED ones (low word) */
  readonly reset?: Readonly<Record<string, number>>;
  /** write masks by register name that replace the table's (low word): feature-dependent bits */
  readonly wmask?: Readonly<Record<string, number>>;
  readonly backing?: Readonly<Record<string, RegBacking>>;
  /** the handlers of the side effects the table names (RegEffect), prefixed by the bank's prefix */
  readonly effects?: Readonly<Partial<Record<RegEffect, AfterWrite>>> &
    Readonly<Record<string, AfterWrite>>;
  /** registers this instance does not implement: RES0, each access counted as an undefined offset */
  readonly absent?: readonly string[];
  /** registers whose writes are ignored without a count (RAZ/WI, or a feature not implemented) */
  readonly writesIgnored?: readonly string[];
  /** reads counted as to an undefined offset (and RAZ) */
  readonly readsUndefined?: readonly string[];
  /** writes counted as to an undefined offset */
  readonly writesUndefined?: readonly string[];
  /**
   * A write to a register while its guard holds: returns whether the write is dropped (IGNORED
   * from SMMUv3.2). Default: count it in `ignored.guarded` and drop it.
   */
  readonly guarded?: (offset: number) => boolean;
}

// ---- the layout: offset → slot, shared by every instance --------------------------------------

const READ_VALUE = 0,
  READ_UNDEFINED = 1;
const WRITE_STORE = 0,
  WRITE_RO = 1,
  WRITE_IGNORED = 2,
  WRITE_UNDEFINED = 3;

/** The slots of a set of banks: a 64-bit register's high word is the slot after its low word. */
export class RegLayout {
  /** slot by offset/4 (0: no register) */
  readonly slotAt = new Uint16Array(SMMU_MMIO_SIZE >>> 2);
  /** per slot (slot 0 unused) */
  readonly defs: (RegDef | null)[] = [null];
  readonly names: string[] = [''];
  readonly offsets: number[] = [0];
  readonly half: number[] = [0];
  private readonly byName = new Map<string, number>();

  constructor(readonly banks: readonly RegBank[]) {
    for (const b of banks)
      for (const d of b.registers) {
        const name = b.prefix + d.name;
        if (this.byName.has(name)) throw new Error(`register ${name} declared twice`);
        this.byName.set(name, this.defs.length);
        for (let h = 0; h < d.width / 4; h++) {
          const off = b.base + d.offset + 4 * h;
          if (this.slotAt[off >>> 2]) throw new Error(`two registers at 0x${off.toString(16)}`);
          this.slotAt[off >>> 2] = this.defs.length;
          this.defs.push(d);
          this.names.push(name);
          this.offsets.push(off);
          this.half.push(h);
        }
      }
  }

  get slots(): number {
    return this.defs.length;
  }

  /** The slot of a register's low word (or its high word with `half` 1). Unknown names throw. */
  slot(name: string, half = 0): number {
    const s = this.byName.get(name);
    if (s === undefined) throw new Error(`no register ${name}`);
    return s + half;
  }
}

export const NS_LAYOUT = new RegLayout([NS_BANK]);

/** Slot of a Non-secure register, for the module constants of a device's hot paths. */
export const regSlot = (name: string, half = 0): number => NS_LAYOUT.slot(name, half);

// ---- feature-dependent write masks ------------------------------------------------------------

/**
 * The bits of CR0, CR2 and IRQ_CTRL an SMMU with `ft` implements (the others are RES0): PRIQEN
 * and PRIQ_IRQEN with PRI, ATSCHK with ATS, VMW with VMID wildcards, E2H with HYP.
 */
export function featureWriteMasks(ft: SmmuFeatures): Record<string, number> {
  let cr0 =
    wordMask(CR0.SMMUEN) | wordMask(CR0.EVENTQEN) | wordMask(CR0.CMDQEN) | wordMask(CR0.ATSCHK);
  if (ft.pri) cr0 |= wordMask(CR0.PRIQEN);
  if (!ft.ats) cr0 &= ~wordMask(CR0.ATSCHK);
  if (ft.vmw) cr0 |= wordMask(CR0.VMW);
  let cr2 = wordMask(CR2.RECINVSID) | wordMask(CR2.PTM);
  if (ft.hyp) cr2 |= wordMask(CR2.E2H);
  let irq = wordMask(IRQ_CTRL.GERROR_IRQEN) | wordMask(IRQ_CTRL.EVENTQ_IRQEN);
  if (ft.pri) irq |= wordMask(IRQ_CTRL.PRIQ_IRQEN);
  return { CR0: cr0 >>> 0, CR2: cr2, IRQ_CTRL: irq };
}

/** The registers the SMMU's own components keep: GBPA, GERROR/GERRORN, the queue pointers. */
export function componentBackings(c: {
  cmdq: CommandQueue;
  evtq: EventQueue;
  gerror: GlobalErrors;
  gbpa: Gbpa;
}): Record<string, RegBacking> {
  const { cmdq, evtq, gerror, gbpa } = c;
  return {
    GBPA: { read: () => gbpa.read(), write: (v) => gbpa.write(v) },
    GERROR: { read: () => gerror.gerror },
    GERRORN: { read: () => gerror.gerrorn, write: (v) => gerror.writeN(v) },
    CMDQ_PROD: { read: () => cmdq.prod, write: (v) => (cmdq.prod = v) },
    CMDQ_CONS: {
      // ERR is valid while CMDQ_ERR is active
      read: () =>
        (cmdq.cons | (gerror.active(GERR.CMDQ_ERR) ? place(CMDQ_CONS.ERR, cmdq.err) : 0)) >>> 0,
      write: (v) => (cmdq.cons = v),
    },
    EVENTQ_PROD: { read: () => evtq.prod, write: (v) => (evtq.prod = v) },
    EVENTQ_CONS: { read: () => evtq.cons, write: (v) => (evtq.cons = v) },
  };
}

// ---- the register file -------------------------------------------------------------------------

export class RegisterFile {
  /** the stored value of each slot (the registers no component backs) */
  readonly val: Uint32Array;
  private readonly reset0: Uint32Array;
  private readonly wmask: Uint32Array;
  private readonly rkind: Uint8Array;
  private readonly wkind: Uint8Array;
  /** the guard: the enable's slot and its acknowledge's, and the enable bit (0: no guard) */
  private readonly guardA: Uint16Array;
  private readonly guardB: Uint16Array;
  private readonly guardMask: Uint32Array;
  private readonly ackSlot: Uint16Array;
  private readonly wide: Uint8Array;
  private readonly rd: ((() => number) | null)[];
  private readonly wr: (((v: number) => void) | null)[];
  private readonly after: (AfterWrite | null)[];
  private readonly ignored: IgnoredCounts;
  private readonly onGuarded: (offset: number) => boolean;

  constructor(
    cfg: RegFileConfig,
    readonly layout: RegLayout = NS_LAYOUT,
  ) {
    const n = layout.slots;
    this.val = new Uint32Array(n);
    this.reset0 = new Uint32Array(n);
    this.wmask = new Uint32Array(n);
    this.rkind = new Uint8Array(n);
    this.wkind = new Uint8Array(n);
    this.guardA = new Uint16Array(n);
    this.guardB = new Uint16Array(n);
    this.guardMask = new Uint32Array(n);
    this.ackSlot = new Uint16Array(n);
    this.wide = new Uint8Array(n);
    this.rd = new Array<(() => number) | null>(n).fill(null);
    this.wr = new Array<((v: number) => void) | null>(n).fill(null);
    this.after = new Array<AfterWrite | null>(n).fill(null);
    this.ignored = cfg.ignored;
    const ignored = cfg.ignored;
    this.onGuarded =
      cfg.guarded ??
      ((): boolean => {
        ignored.guarded++;
        return true;
      });

    const effects = new Set<string>();
    for (let s = 1; s < n; s++) {
      const d = layout.defs[s]!;
      const h = layout.half[s]!;
      const name = layout.names[s]!;
      this.wmask[s] = writeMask(d)[h]!;
      this.wkind[s] = d.access === 'RO' ? WRITE_RO : WRITE_STORE;
      this.wide[s] = d.width === 8 ? 1 : 0;
      if (h === 0) this.reset0[s] = d.reset ?? 0;
      const bank = name.slice(0, name.length - d.name.length);
      if (d.guard) {
        // the enable and the register that acknowledges it (CR0ACK, IRQ_CTRLACK)
        const en = layout.slot(bank + d.guard.reg);
        const ack = layout.defs[en]!.ack;
        this.guardA[s] = en;
        this.guardB[s] = ack ? layout.slot(bank + ack) : en;
        this.guardMask[s] = wordMask(d.guard.field);
      }
      if (d.ack) this.ackSlot[s] = layout.slot(bank + d.ack);
      if (d.effect && h === 0) {
        const key = bank + d.effect;
        this.after[s] = cfg.effects?.[key] ?? null;
        effects.add(key);
      }
    }
    for (const k of Object.keys(cfg.effects ?? {}))
      if (!effects.has(k)) throw new Error(`no register has the side effect ${k}`);
    const each = <T>(o: Readonly<Record<string, T>> | undefined, fn: (s: number, v: T) => void) => {
      for (const [k, v] of Object.entries(o ?? {})) fn(layout.slot(k), v);
    };
    const halves = (names: readonly string[] | undefined, fn: (s: number) => void): void => {
      for (const k of names ?? []) {
        const s = layout.slot(k);
        for (let h = 0; h < layout.defs[s]!.width / 4; h++) fn(s + h);
      }
    };
    each(cfg.reset, (s, v) => (this.reset0[s] = v >>> 0));
    each(cfg.wmask, (s, v) => (this.wmask[s] = v >>> 0));
    each(cfg.backing, (s, b) => {
      this.rd[s] = b.read;
      if (b.write) this.wr[s] = b.write;
    });
    halves(cfg.absent, (s) => {
      this.rkind[s] = READ_UNDEFINED;
      this.wkind[s] = WRITE_UNDEFINED;
    });
    halves(cfg.writesIgnored, (s) => (this.wkind[s] = WRITE_IGNORED));
    halves(cfg.readsUndefined, (s) => (this.rkind[s] = READ_UNDEFINED));
    halves(cfg.writesUndefined, (s) => (this.wkind[s] = WRITE_UNDEFINED));
    this.reset();
  }

  /** Every stored register to its reset value (the backed ones are their components'). */
  reset(): void {
    this.val.set(this.reset0);
  }

  /** A stored 64-bit register's halves, read live (one object per call site, not per access). */
  view64(name: string): Reg64 {
    const s = this.layout.slot(name);
    const val = this.val;
    return {
      get lo(): number {
        return val[s]!;
      },
      get hi(): number {
        return val[s + 1]!;
      },
    };
  }

  /** Whether the guard of slot `s` holds now: its enable, or the enable's ACK, is 1. */
  guardHolds(s: number): boolean {
    const m = this.guardMask[s]!;
    return m !== 0 && ((this.val[this.guardA[s]!]! | this.val[this.guardB[s]!]!) & m) !== 0;
  }

  private slotOf(offset: number): number {
    return offset >= 0 && offset < SMMU_MMIO_SIZE ? this.layout.slotAt[offset >>> 2]! : 0;
  }

  // ---- 32-bit accesses ------------------------------------------------------------------------

  /** The register value at `offset` (4-byte aligned). */
  read32(offset: number): number {
    const s = this.slotOf(offset);
    if (s === 0 || this.rkind[s] !== READ_VALUE) {
      this.ignored.undefinedOffset++;
      return 0;
    }
    const rd = this.rd[s]!;
    return rd === null ? this.val[s]! : rd();
  }

  /** A 32-bit write at `offset` (4-byte aligned). */
  write32(offset: number, v: number): void {
    const s = this.slotOf(offset);
    switch (s === 0 ? WRITE_UNDEFINED : this.wkind[s]) {
      case WRITE_STORE:
        if (this.guardHolds(s) && this.onGuarded(offset)) return;
        this.store(s, v);
        return;
      case WRITE_RO:
        this.ignored.readOnly++;
        return;
      case WRITE_IGNORED:
        return;
      default:
        this.ignored.undefinedOffset++;
    }
  }

  private store(s: number, v: number): void {
    const nv = (v & this.wmask[s]!) >>> 0;
    const after = this.after[s]!;
    const wr = this.wr[s]!;
    const old = after === null ? 0 : wr === null ? this.val[s]! : this.rd[s]!();
    if (wr === null) {
      this.val[s] = nv;
      const ack = this.ackSlot[s]!;
      if (ack !== 0) this.val[ack] = nv;
    } else wr(nv);
    if (after !== null) after(old, nv);
  }

  // ---- sized accesses (the bus's) -------------------------------------------------------------

  read(offset: number, size: AccessSize): bigint {
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

  write(offset: number, size: AccessSize, value: bigint): void {
    if (size === 8) {
      if (offset & 7) {
        this.ignored.size++;
        return;
      }
      const lo = Number(value & 0xffffffffn) >>> 0;
      const hi = Number((value >> 32n) & 0xffffffffn) >>> 0;
      const s = this.slotOf(offset);
      if (s !== 0 && this.wide[s] === 1 && this.wkind[s] === WRITE_STORE) {
        // one 64-bit register: one guard check, both halves
        if (this.guardHolds(s) && this.onGuarded(offset)) return;
        this.store(s, lo);
        this.store(s + 1, hi);
      } else {
        this.write32(offset, lo);
        this.write32(offset + 4, hi);
      }
      return;
    }
    if (size !== 4 || offset & 3) {
      this.ignored.size++;
      return;
    }
    this.write32(offset, Number(value & 0xffffffffn) >>> 0);
  }
}
