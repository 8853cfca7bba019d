/**
 * A programmatic testbed for benchmarks and tests: a bare machine brought up with a linear
 * stream table and command/event queues, and helpers to write STEs, CDs and page tables and to
 * submit commands — the same encodings the scenario steps use.
 */
import { Machine, SMMU_BASE, type MachineOptions } from '../../hw/machine.ts';
import { CR0_BITS, CR2_BITS, OFF } from '../../hw/smmu/regs.ts';
import { STE, STE_WORDS } from '../../hw/smmu/ste.ts';
import { CD, CD_WORDS } from '../../hw/smmu/cd.ts';
import { build, type Field } from '../../hw/bits.ts';
import { encodeCommand } from '../../hw/smmu/commands.ts';
import { qIndex, qInc } from '../../hw/smmu/queue.ts';
import { geometry, ptMap, TableAllocator, type PtMemory } from '../steps/pagetable.ts';

export const TB = {
  STRTAB: 0x4001_0000,
  CMDQ: 0x4002_0000,
  EVTQ: 0x4003_0000,
  CMDQ_LOG2: 8,
  EVTQ_LOG2: 8,
  STRTAB_LOG2: 8,
} as const;

export class Testbed {
  readonly m: Machine;
  readonly alloc = new TableAllocator(0x7800_0000, 0x7c00_0000);
  readonly pt: PtMemory;
  private prod = 0;

  constructor(opts: MachineOptions = {}) {
    this.m = new Machine(opts);
    const mem = this.m.mem;
    this.pt = {
      read64: (a) => mem.read64(a),
      write64: (a, v) => mem.write64(a, v),
      zero: (a, n) => mem.writeBytes(a, new Uint8Array(n)),
    };
    this.reg64(OFF.STRTAB_BASE, TB.STRTAB);
    this.reg(OFF.STRTAB_BASE_CFG, TB.STRTAB_LOG2);
    this.reg64(OFF.CMDQ_BASE, TB.CMDQ + TB.CMDQ_LOG2);
    this.reg64(OFF.EVENTQ_BASE, TB.EVTQ + TB.EVTQ_LOG2);
    this.reg(OFF.CR2, CR2_BITS.RECINVSID);
    const { ATSCHK, CMDQEN, EVENTQEN, SMMUEN } = CR0_BITS;
    this.reg(OFF.CR0, ATSCHK | CMDQEN | EVENTQEN | SMMUEN);
  }

  reg(off: number, v: number): void {
    this.m.bus.write32('host', SMMU_BASE + off, v);
  }
  reg64(off: number, v: number): void {
    this.m.bus.write64('host', SMMU_BASE + off, BigInt(v));
  }

  private writeStruct(
    addr: number,
    layout: Record<string, Field>,
    nwords: number,
    fields: Record<string, number | bigint>,
  ): void {
    this.m.mem.writeWords(addr, build(layout, nwords, fields));
  }

  /** Write STE[sid]; pointer fields (S1ContextPtr, S2TTB) are byte addresses. */
  ste(sid: number, f: Record<string, number>): void {
    const v: Record<string, number> = { ...f };
    if (v.S1ContextPtr !== undefined) v.S1ContextPtr /= 64;
    if (v.S2TTB !== undefined) v.S2TTB /= 16;
    this.writeStruct(TB.STRTAB + sid * 64, STE, STE_WORDS, v);
  }

  /** Write a CD; TTB0/TTB1 are byte addresses. */
  cd(addr: number, f: Record<string, number>): void {
    const v: Record<string, number> = { ...f };
    if (v.TTB0 !== undefined) v.TTB0 /= 16;
    if (v.TTB1 !== undefined) v.TTB1 /= 16;
    this.writeStruct(addr, CD, CD_WORDS, v);
  }

  /** Submit commands at CMDQ_PROD with one PROD write. */
  cmd(...cmds: Array<[string, Record<string, number | bigint>?]>): void {
    for (const [name, f] of cmds) {
      this.m.mem.writeWords(
        TB.CMDQ + qIndex(this.prod, TB.CMDQ_LOG2) * 16,
        encodeCommand(name, f ?? {}),
      );
      this.prod = qInc(this.prod, TB.CMDQ_LOG2);
    }
    this.reg(OFF.CMDQ_PROD, this.prod);
  }

  map(
    stage: 1 | 2,
    root: number,
    va: number,
    pa: number,
    size = 4096,
    opts: { ias?: number; start?: number; perm?: string; pages?: boolean } = {},
  ): void {
    const geo = geometry(stage, 4096, opts.ias ?? 48, root, this.m.smmu.features.oas, opts.start);
    const perm = opts.perm ?? 'rw';
    ptMap(
      this.pt,
      this.alloc,
      geo,
      va,
      pa,
      size,
      { read: perm.includes('r'), write: perm.includes('w'), exec: perm.includes('x'), user: true },
      { af: true, global: false, contiguous: false, attr: stage === 1 ? 1 : 0xf, sh: 3 },
      opts.pages ?? false,
    );
  }
}

/** The CD fields Linux writes for a stage-1 DMA domain (linux-sequence.md §3), with 48-bit IPS. */
export const LINUX_CD = {
  T0SZ: 16,
  TG0: 0,
  IR0: 1,
  OR0: 1,
  SH0: 3,
  EPD1: 1,
  V: 1,
  IPS: 5,
  AA64: 1,
  R: 1,
  A: 1,
  ASET: 1,
} as const;
/** Stage-2 STE fields: 48-bit IPA, 4KB granule, start level 0 (S2SL0=2), 48-bit PS, AArch64, S2R, S2PTW. */
export const S2_48 = {
  S2T0SZ: 16,
  S2SL0: 2,
  S2IR0: 1,
  S2OR0: 1,
  S2SH0: 3,
  S2TG: 0,
  S2PS: 5,
  S2AA64: 1,
  S2R: 1,
  S2PTW: 1,
} as const;
