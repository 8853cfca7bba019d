/**
 * Test helpers: drive the simulated SMMUv3 the way driver software does, through MMIO
 * accesses by the 'host' actor and through structures written into RAM.
 *
 * Every offset and bit position here is taken from the architectural reference
 * (/work/shared/reference/smmuv3.md §1, §2, §4, §5), not from the code under test, so
 * that a wrong declaration in hw/ shows up as a failing test. The values are written once, in
 * test/reference.ts; this file gives them the names the device tests use.
 */
import { Machine, type MachineOptions } from '../../hw/machine.ts';
import {
  CERROR_ABT,
  CERROR_ILL,
  CR0,
  CR2_RECINVSID,
  EVENT,
  GERROR,
  IRQ_CTRL,
  LINUX_CMD_SYNC,
  OPCODE,
  OVFLG,
  RAM_BASE,
  RAM_END,
  REG,
  SMMU_BASE,
  STE_ABORT,
  STE_BYPASS,
  STE_INVALID,
} from '../reference.ts';

export const SMMU = SMMU_BASE;
export const RAM = RAM_BASE;
export { RAM_END }; // 1 GiB default
/** an address with neither RAM nor a device behind it */
export const NO_RAM = 0x2000_0000;

/** Register offsets (reference §1.1, §1.2). */
export const R = REG;

/** CR0 bits (reference §1.5). */
export const { SMMUEN, PRIQEN, EVENTQEN, CMDQEN, ATSCHK } = CR0;
/** IRQ_CTRL bits. */
export const { GERROR_IRQEN, PRIQ_IRQEN, EVENTQ_IRQEN } = IRQ_CTRL;
/** GERROR bits. */
export const G = GERROR;
/** CMDQ_CONS.ERR codes (reference §1.7). */
export { CERROR_ILL, CERROR_ABT };
/** CR2.RECINVSID */
export const RECINVSID = CR2_RECINVSID;
/** *_PROD.OVFLG / *_CONS.OVACKFLG */
export { OVFLG };

/** Event numbers (reference §5.1). */
export const E = EVENT;

/** Opcodes (reference §4.2). */
export const OPC = OPCODE;

/** A command as two 64-bit double-words. */
export type Cmd = readonly [bigint, bigint];

/** The exact CMD_SYNC Linux issues on QEMU (linux-sequence.md §3): CS=SEV, MSH=ISH, MSIAttr=0xF. */
export const LINUX_SYNC: Cmd = LINUX_CMD_SYNC;
/** CMD_SYNC with CS=SIG_NONE. */
export const SYNC_NONE: Cmd = [0x46n, 0n];

/** Generic command builder with the reference's field positions. */
export function cmd(
  op: number,
  f: {
    ssec?: number;
    ssv?: number;
    ssid?: number;
    sid?: number;
    vmid?: number;
    asid?: number;
    num?: number;
    scale?: number;
    leaf?: number;
    ttl?: number;
    tg?: number;
    addr?: bigint;
    range?: number;
    dw0?: bigint;
    dw1?: bigint;
  } = {},
): Cmd {
  let d0 = BigInt(op & 0xff);
  let d1 = 0n;
  if (f.ssec !== undefined) d0 |= BigInt(f.ssec & 1) << 10n;
  if (f.ssv !== undefined) d0 |= BigInt(f.ssv & 1) << 11n;
  if (f.ssid !== undefined) d0 |= BigInt(f.ssid & 0xfffff) << 12n;
  if (f.sid !== undefined) d0 |= BigInt(f.sid >>> 0) << 32n;
  if (f.num !== undefined) d0 |= BigInt(f.num & 0x1f) << 12n;
  if (f.scale !== undefined) d0 |= BigInt(f.scale & 0x3f) << 20n;
  if (f.vmid !== undefined) d0 |= BigInt(f.vmid & 0xffff) << 32n;
  if (f.asid !== undefined) d0 |= BigInt(f.asid & 0xffff) << 48n;
  if (f.leaf !== undefined) d1 |= BigInt(f.leaf & 1);
  if (f.range !== undefined) d1 |= BigInt(f.range & 0x1f);
  if (f.ttl !== undefined) d1 |= BigInt(f.ttl & 3) << 8n;
  if (f.tg !== undefined) d1 |= BigInt(f.tg & 3) << 10n;
  if (f.addr !== undefined) d1 |= f.addr & ~0xfffn;
  if (f.dw0 !== undefined) d0 |= f.dw0;
  if (f.dw1 !== undefined) d1 |= f.dw1;
  return [d0, d1];
}

/** CMD_SYNC: CS[13:12], MSH[23:22], MSIAttr[27:24], MSIData[63:32]; DW1 MSIAddress[55:2]. */
export function sync(cs: number, msiAddr = 0, msiData = 0): Cmd {
  return [
    0x46n | (BigInt(cs & 3) << 12n) | (BigInt(msiData >>> 0) << 32n),
    BigInt(msiAddr) & 0x00ff_ffff_ffff_fffcn,
  ];
}

export const cfgiSte = (sid: number, leaf: number): Cmd => cmd(OPC.CFGI_STE, { sid, leaf });
export const cfgiRange = (sid: number, range: number): Cmd =>
  cmd(OPC.CFGI_STE_RANGE, { sid, range });
export const CFGI_ALL: Cmd = [0x4n, 0x1fn];

/** Software's view of the SMMU: MMIO as the host CPU. */
export class Sw {
  constructor(
    readonly m: Machine,
    readonly actor = 'host',
  ) {}
  r32(off: number): number {
    return this.m.bus.read32(this.actor, SMMU + off);
  }
  w32(off: number, v: number): void {
    this.m.bus.write32(this.actor, SMMU + off, v);
  }
  r64(off: number): bigint {
    return this.m.bus.read64(this.actor, SMMU + off);
  }
  w64(off: number, v: bigint): void {
    this.m.bus.write64(this.actor, SMMU + off, v);
  }
  /** CR0 write followed by a CR0ACK poll (returns the ACK) */
  cr0(v: number): number {
    this.w32(R.CR0, v);
    return this.r32(R.CR0ACK);
  }
  irqCtrl(v: number): number {
    this.w32(R.IRQ_CTRL, v);
    return this.r32(R.IRQ_CTRLACK);
  }
  gerrorActive(): number {
    return (this.r32(R.GERROR) ^ this.r32(R.GERRORN)) >>> 0;
  }
  /** acknowledge every active global error the way Linux does: GERRORN = GERROR */
  ackGerror(): void {
    this.w32(R.GERRORN, this.r32(R.GERROR));
  }
}

/** A command queue driven by software: writes entries at PROD and publishes PROD. */
export class SwCmdq {
  prod = 0;
  constructor(
    readonly sw: Sw,
    readonly base: number,
    readonly log2: number,
  ) {}
  get mask(): number {
    return (1 << (this.log2 + 1)) - 1;
  }
  slotAddr(ptr: number): number {
    return this.base + (ptr & ((1 << this.log2) - 1)) * 16;
  }
  /** write commands into RAM at PROD (without publishing) */
  put(...cmds: Cmd[]): void {
    for (const c of cmds) {
      writeCmd(this.sw.m, this.slotAddr(this.prod), c);
      this.prod = (this.prod + 1) & this.mask;
    }
  }
  publish(): number {
    this.sw.w32(R.CMDQ_PROD, this.prod);
    return this.sw.r32(R.CMDQ_CONS);
  }
  /** write commands and publish PROD; returns CMDQ_CONS as read back */
  submit(...cmds: Cmd[]): number {
    this.put(...cmds);
    return this.publish();
  }
}

export function writeCmd(m: Machine, pa: number, c: Cmd): void {
  m.mem.write64(pa, c[0]);
  m.mem.write64(pa + 8, c[1]);
}

/** Program CMDQ_BASE/PROD/CONS and set CMDQEN (reference §1.7 initialization order). */
export function initCmdq(sw: Sw, base: number, log2: number, ra = true): SwCmdq {
  sw.w64(R.CMDQ_BASE, (ra ? 1n << 62n : 0n) | BigInt(base) | BigInt(log2));
  sw.w32(R.CMDQ_PROD, 0);
  sw.w32(R.CMDQ_CONS, 0);
  sw.cr0(sw.r32(R.CR0) | CMDQEN);
  return new SwCmdq(sw, base, log2);
}

export function initEvtq(sw: Sw, base: number, log2: number): void {
  sw.w64(R.EVENTQ_BASE, BigInt(base) | BigInt(log2));
  sw.w32(R.EVENTQ_PROD, 0);
  sw.w32(R.EVENTQ_CONS, 0);
  sw.cr0(sw.r32(R.CR0) | EVENTQEN);
}

/** STRTAB_BASE_CFG: LOG2SIZE[5:0], SPLIT[10:6], FMT[17:16] */
export function strtabCfg(log2: number, fmt = 0, split = 0): number {
  return (log2 & 0x3f) | ((split & 0x1f) << 6) | ((fmt & 3) << 16);
}

export function initStrtab(sw: Sw, base: number, cfg: number): void {
  sw.w64(R.STRTAB_BASE, BigInt(base));
  sw.w32(R.STRTAB_BASE_CFG, cfg);
}

/** STE DW0: V[0], Config[3:1]. Linux abort STE = 0x1, bypass (identity) STE = 0x9. */
export { STE_ABORT, STE_BYPASS, STE_INVALID };

/** Write an STE (up to 8 double-words; the rest are zero). */
export function writeSte(m: Machine, pa: number, dws: readonly bigint[]): void {
  for (let i = 0; i < 8; i++) m.mem.write64(pa + 8 * i, dws[i] ?? 0n);
}

/** L1STD: Span[4:0], L2Ptr[55:6] */
export function l1std(l2ptr: number, span: number): bigint {
  return BigInt(l2ptr) | BigInt(span & 0x1f);
}

/** Read an event record (four double-words) from the event queue slot `idx`. */
export function readEvent(m: Machine, base: number, idx: number): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < 4; i++) out.push(m.mem.read64(base + idx * 32 + 8 * i));
  return out;
}

/** Standard layout used by the device tests. */
export const CMDQ_PA = RAM + 0x0001_0000;
export const EVTQ_PA = RAM + 0x0002_0000;
export const STRTAB_PA = RAM + 0x0010_0000;
export const DMA_BUF = RAM + 0x0020_0000;
export const MSI_PA = RAM + 0x0030_0000;

export interface Rig {
  m: Machine;
  sw: Sw;
  q: SwCmdq;
}

/**
 * A machine with a linear stream table (2^log2 STEs, all zero = V=0), a command queue of 2^6
 * entries, an event queue of 2^4 entries, and SMMUEN set.
 */
export function rig(
  opts: MachineOptions & {
    strtabLog2?: number;
    evtqLog2?: number;
    smmuen?: boolean;
    cr2?: number;
  } = {},
): Rig {
  const m = new Machine({ devices: [{ name: 'dev', sid: 5 }], ...opts });
  const sw = new Sw(m);
  if (opts.cr2 !== undefined) sw.w32(R.CR2, opts.cr2);
  initStrtab(sw, STRTAB_PA, strtabCfg(opts.strtabLog2 ?? 8));
  const q = initCmdq(sw, CMDQ_PA, 6);
  initEvtq(sw, EVTQ_PA, opts.evtqLog2 ?? 4);
  if (opts.smmuen ?? true) sw.cr0(sw.r32(R.CR0) | SMMUEN);
  return { m, sw, q };
}

export const steAddr = (sid: number): number => STRTAB_PA + sid * 64;

export const bytes = (...v: number[]): Uint8Array => new Uint8Array(v);
