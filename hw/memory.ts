/**
 * Sparse physical memory: 4 KiB pages over a 48-bit physical address space, little-endian.
 *
 * RAM is declared as regions. Unwritten RAM reads as zero without allocating. An access
 * outside every RAM region is an external abort (`ExternalAbort`), reported to whoever
 * made it: the CPU (through the bus) or the SMMU (as F_*_FETCH / CERROR_ABT / *_ABT_ERR).
 */

import { ExpectedError } from './expected-error.ts';

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
export const PA_BITS = 48;
export const PA_LIMIT = 2 ** PA_BITS;

/** An architecturally synchronous outcome, thrown; built without a stack (hw/expected-error.ts). */
export class ExternalAbort extends ExpectedError {
  constructor(
    readonly addr: number,
    readonly what: string,
  ) {
    super(`external abort: ${what} at 0x${addr.toString(16)}`);
    this.name = 'ExternalAbort';
  }
}

export interface RamRegion {
  readonly name: string;
  readonly base: number;
  readonly size: number;
}

interface Page {
  readonly u8: Uint8Array;
  readonly dv: DataView;
}

const ZERO_BYTES = new Uint8Array(PAGE_SIZE);
const ZERO_PAGE: Page = { u8: ZERO_BYTES, dv: new DataView(ZERO_BYTES.buffer) };

/** Whether a page-sized buffer is all zeros. */
function allZero(b: Uint8Array): boolean {
  if ((b.byteOffset & 3) === 0) {
    const w = new Int32Array(b.buffer, b.byteOffset, PAGE_SIZE >>> 2);
    let acc = 0;
    for (let i = 0; i < PAGE_SIZE >>> 2; i += 4) acc |= w[i]! | w[i + 1]! | w[i + 2]! | w[i + 3]!;
    return acc === 0;
  }
  let acc = 0;
  for (let i = 0; i < PAGE_SIZE; i++) acc |= b[i]!;
  return acc === 0;
}

export class PhysicalMemory {
  private readonly pages = new Map<number, Page>();
  private readonly regions: RamRegion[] = [];
  /** one-entry lookup caches for the hot paths */
  private lastPfn = -1;
  private lastPage: Page = ZERO_PAGE;

  addRam(name: string, base: number, size: number): void {
    if (base % PAGE_SIZE || size % PAGE_SIZE || size <= 0)
      throw new Error(`RAM region ${name}: base and size must be non-zero multiples of 4 KiB`);
    if (base + size > PA_LIMIT)
      throw new Error(`RAM region ${name}: beyond the 48-bit physical address space`);
    for (const r of this.regions) {
      if (base < r.base + r.size && r.base < base + size)
        throw new Error(`RAM region ${name} overlaps ${r.name}`);
    }
    this.regions.push({ name, base, size });
  }

  get ramRegions(): readonly RamRegion[] {
    return this.regions;
  }

  isRam(addr: number, len = 1): boolean {
    for (const r of this.regions) if (addr >= r.base && addr + len <= r.base + r.size) return true;
    return false;
  }

  /** Pages that have been written (allocated). */
  get allocatedPages(): number {
    return this.pages.size;
  }

  private page(addr: number, write: boolean): Page {
    const pfn = Math.floor(addr / PAGE_SIZE);
    if (pfn === this.lastPfn) {
      if (!write || this.lastPage !== ZERO_PAGE) return this.lastPage;
    }
    let p = this.pages.get(pfn);
    if (!p) {
      if (!this.isRam(pfn * PAGE_SIZE)) throw new ExternalAbort(addr, write ? 'write' : 'read');
      if (!write) {
        this.lastPfn = pfn;
        this.lastPage = ZERO_PAGE;
        return ZERO_PAGE;
      }
      const u8 = new Uint8Array(PAGE_SIZE);
      p = { u8, dv: new DataView(u8.buffer) };
      this.pages.set(pfn, p);
    }
    this.lastPfn = pfn;
    this.lastPage = p;
    return p;
  }

  read8(addr: number): number {
    return this.page(addr, false).u8[addr & 0xfff]!;
  }
  read16(addr: number): number {
    if ((addr & 0xfff) > 0xffe) return this.read8(addr) | (this.read8(addr + 1) << 8);
    return this.page(addr, false).dv.getUint16(addr & 0xfff, true);
  }
  read32(addr: number): number {
    if ((addr & 0xfff) > 0xffc) return (this.read16(addr) | (this.read16(addr + 2) << 16)) >>> 0;
    return this.page(addr, false).dv.getUint32(addr & 0xfff, true);
  }
  read64(addr: number): bigint {
    if ((addr & 0xfff) > 0xff8)
      return BigInt(this.read32(addr)) | (BigInt(this.read32(addr + 4)) << 32n);
    return this.page(addr, false).dv.getBigUint64(addr & 0xfff, true);
  }
  write8(addr: number, v: number): void {
    this.page(addr, true).u8[addr & 0xfff] = v & 0xff;
  }
  write16(addr: number, v: number): void {
    if ((addr & 0xfff) > 0xffe) {
      this.write8(addr, v);
      this.write8(addr + 1, v >>> 8);
      return;
    }
    this.page(addr, true).dv.setUint16(addr & 0xfff, v & 0xffff, true);
  }
  write32(addr: number, v: number): void {
    if ((addr & 0xfff) > 0xffc) {
      this.write16(addr, v);
      this.write16(addr + 2, v >>> 16);
      return;
    }
    this.page(addr, true).dv.setUint32(addr & 0xfff, v >>> 0, true);
  }
  write64(addr: number, v: bigint): void {
    if ((addr & 0xfff) > 0xff8) {
      this.write32(addr, Number(v & 0xffffffffn));
      this.write32(addr + 4, Number((v >> 32n) & 0xffffffffn));
      return;
    }
    this.page(addr, true).dv.setBigUint64(addr & 0xfff, BigInt.asUintN(64, v), true);
  }

  /** Read a 64-bit descriptor as two 32-bit words into out[0] (low) and out[1] (high), with one page lookup. */
  readPair(addr: number, out: Uint32Array): void {
    if ((addr & 0xfff) > 0xff8) {
      out[0] = this.read32(addr);
      out[1] = this.read32(addr + 4);
      return;
    }
    const dv = this.page(addr, false).dv;
    const off = addr & 0xfff;
    out[0] = dv.getUint32(off, true);
    out[1] = dv.getUint32(off + 4, true);
  }

  /** Read `n` consecutive 32-bit words into `out` (the structure fetch used by the SMMU). */
  readWords(addr: number, out: Uint32Array, n = out.length): void {
    const off = addr & 0xfff;
    if ((off & 3) === 0 && off + n * 4 <= PAGE_SIZE) {
      // one page lookup for the whole run
      const dv = this.page(addr, false).dv;
      for (let i = 0; i < n; i++) out[i] = dv.getUint32(off + 4 * i, true);
      return;
    }
    let a = addr;
    for (let i = 0; i < n; i++, a += 4) out[i] = this.read32(a);
  }

  writeWords(addr: number, words: ArrayLike<number>): void {
    for (let i = 0; i < words.length; i++) this.write32(addr + 4 * i, words[i]!);
  }

  readBytes(addr: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const off = a & 0xfff;
      const n = Math.min(PAGE_SIZE - off, len - done);
      out.set(this.page(a, false).u8.subarray(off, off + n), done);
      done += n;
    }
    return out;
  }

  writeBytes(addr: number, data: Uint8Array): void {
    // check the whole range first so that an aborting write changes nothing
    for (let a = addr - (addr % PAGE_SIZE); a < addr + data.length; a += PAGE_SIZE) {
      if (!this.isRam(Math.max(a, addr))) throw new ExternalAbort(Math.max(a, addr), 'write');
    }
    let done = 0;
    while (done < data.length) {
      const a = addr + done;
      const off = a & 0xfff;
      const n = Math.min(PAGE_SIZE - off, data.length - done);
      const part = n === data.length ? data : data.subarray(done, done + n);
      // zeros over a whole unwritten page (a scrub) leave it unallocated: it reads as zero already
      if (n !== PAGE_SIZE || this.pages.has(Math.floor(a / PAGE_SIZE)) || !allZero(part))
        this.page(a, true).u8.set(part, off);
      done += n;
    }
  }

  /**
   * Write `len` zero bytes at `addr` (a scrub): writeBytes of zeros without the buffer. Pages
   * never written stay unallocated (they read as zero already); an aborting range changes nothing.
   */
  zero(addr: number, len: number): void {
    for (let a = addr - (addr % PAGE_SIZE); a < addr + len; a += PAGE_SIZE) {
      if (!this.isRam(Math.max(a, addr))) throw new ExternalAbort(Math.max(a, addr), 'write');
    }
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const off = a & 0xfff;
      const n = Math.min(PAGE_SIZE - off, len - done);
      const p = this.pages.get(Math.floor(a / PAGE_SIZE));
      if (p) p.u8.fill(0, off, off + n);
      done += n;
    }
  }

  /** Generic sized read; 8-byte values come back as BigInt, smaller ones as BigInt too for uniformity. */
  read(addr: number, size: 1 | 2 | 4 | 8): bigint {
    switch (size) {
      case 1:
        return BigInt(this.read8(addr));
      case 2:
        return BigInt(this.read16(addr));
      case 4:
        return BigInt(this.read32(addr));
      case 8:
        return this.read64(addr);
    }
  }

  write(addr: number, size: 1 | 2 | 4 | 8, v: bigint): void {
    switch (size) {
      case 1:
        return this.write8(addr, Number(v & 0xffn));
      case 2:
        return this.write16(addr, Number(v & 0xffffn));
      case 4:
        return this.write32(addr, Number(v & 0xffffffffn));
      case 8:
        return this.write64(addr, v);
    }
  }
}
