/**
 * Circular queue index arithmetic shared by the command, event and PRI queues (IHI 0070 3.5).
 *
 * With QS = log2(entries), PROD/CONS bits [QS-1:0] are the index and bit [QS] is the wrap
 * flag. The queue is empty when index and wrap are equal, full when the indices are equal
 * and the wrap flags differ. Bits above QS (other than the register's extra fields) are RES0.
 * A queue's base and size come from its *_BASE register (queueBase, queueLog2).
 */
import { definedMask, wordMask } from '../bits.ts';
import { Q_BASE } from './regs.ts';
import type { Reg64 } from './regfile.ts';

/** Mask of the index+wrap bits for a queue of 2^qs entries. */
export function ptrMask(qs: number): number {
  return qs >= 31 ? 0xffffffff : ((1 << (qs + 1)) >>> 0) - 1;
}

export function qIndex(ptr: number, qs: number): number {
  return ptr & (((1 << qs) >>> 0) - 1);
}

export function qWrap(ptr: number, qs: number): number {
  return (ptr >>> qs) & 1;
}

export function qEmpty(prod: number, cons: number, qs: number): boolean {
  const m = ptrMask(qs);
  return (prod & m) === (cons & m);
}

export function qFull(prod: number, cons: number, qs: number): boolean {
  return qIndex(prod, qs) === qIndex(cons, qs) && qWrap(prod, qs) !== qWrap(cons, qs);
}

/** Advance a pointer by one entry, wrapping the index and toggling the wrap bit. */
export function qInc(ptr: number, qs: number): number {
  return (ptr + 1) & ptrMask(qs);
}

/** Number of entries between cons and prod (0 .. 2^qs). */
export function qCount(prod: number, cons: number, qs: number): number {
  const m = ptrMask(qs);
  return ((prod & m) - (cons & m) + (m + 1)) % (m + 1);
}

/** Free slots from the producer's point of view. */
export function qSpace(prod: number, cons: number, qs: number): number {
  return 2 ** qs - qCount(prod, cons, qs);
}

// ---- a queue's place in memory, from its *_BASE register (Q_BASE in regs.ts) -----------------

/** ADDR[55:32] in the high word, ADDR's bits in the low word, and LOG2SIZE */
const Q_ADDR_HI = definedMask([Q_BASE.ADDR], 2)[1]!;
const Q_ADDR_LO = definedMask([Q_BASE.ADDR], 1)[0]!;
const Q_LOG2SIZE = wordMask(Q_BASE.LOG2SIZE);

/** A queue's log2 size from its *_BASE register: LOG2SIZE, capped at the IDR1 maximum. */
export function queueLog2(r: Reg64, cap: number): number {
  return Math.min(r.lo & Q_LOG2SIZE, cap);
}

/** Queue base PA from a *_BASE register: ADDR[55:5], aligned to MAX(queue bytes, 32). */
export function queueBase(r: Reg64, log2size: number, entryBytes: number): number {
  const addr = (r.hi & Q_ADDR_HI) * 0x1_0000_0000 + ((r.lo & Q_ADDR_LO) >>> 0);
  const align = Math.max(2 ** log2size * entryBytes, 32);
  return addr - (addr % align);
}
