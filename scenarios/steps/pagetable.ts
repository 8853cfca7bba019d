/**
 * A small VMSAv8-64 page-table writer for scenario steps (`pt.map`, `pt.unmap`): it builds
 * stage-1 or stage-2 tables in memory through a CPU actor's bus accesses, allocating table
 * pages from a bump allocator. (The host's Linux-like io-pgtable is a separate component.)
 */
import {
  levelShift,
  s1StartLevel,
  blockAllowed,
  contigBits,
  indexBits,
  startTableBytes,
  oaFolds52,
  LAST_LEVEL,
} from '../../hw/vmsa/geometry.ts';
import {
  DESC,
  DESC_TYPE,
  DESC_VALID,
  maskBig,
  AP_BIT,
  S2AP,
  S2_XN,
  OA_MASK,
  s1LeafAttrs,
  s2LeafAttrs,
  oaToDesc,
} from '../../hw/vmsa/descriptor.ts';

export interface PtMemory {
  read64(addr: number): bigint;
  write64(addr: number, v: bigint): void;
  zero(addr: number, len: number): void;
}

export interface PtGeometry {
  stage: 1 | 2;
  /** log2 granule */
  g: number;
  ias: number;
  start: number;
  root: number;
  oas: number;
}

export interface PtPerm {
  read: boolean;
  write: boolean;
  exec: boolean;
  /** stage 1: accessible unprivileged (AP[1]=1) — Linux's default for DMA */
  user: boolean;
}

export interface PtAttrs {
  af: boolean;
  global: boolean;
  contiguous: boolean;
  /** stage 1: AttrIndx; stage 2: MemAttr */
  attr: number;
  sh: number;
}

export class TableAllocator {
  constructor(
    public next: number,
    readonly limit: number,
  ) {}
  alloc(bytes: number): number {
    const a = this.next + ((bytes - (this.next % bytes)) % bytes);
    if (a + bytes > this.limit)
      throw new Error(
        `page-table pool exhausted at 0x${a.toString(16)} (limit 0x${this.limit.toString(16)})`,
      );
    this.next = a + bytes;
    return a;
  }
}

export function geometry(
  stage: 1 | 2,
  granule: number,
  ias: number,
  root: number,
  oas: number,
  startLevel?: number,
): PtGeometry {
  const g = Math.log2(granule);
  if (![12, 14, 16].includes(g)) throw new Error(`granule ${granule} must be 4096, 16384 or 65536`);
  const start = startLevel ?? s1StartLevel(g, ias);
  return { stage, g, ias, start, root, oas };
}

function leafDesc(geo: PtGeometry, level: number, oa: number, p: PtPerm, a: PtAttrs): bigint {
  const type = BigInt(level === LAST_LEVEL ? DESC_TYPE.PAGE : DESC_TYPE.BLOCK);
  const attrs =
    geo.stage === 1
      ? s1LeafAttrs({
          attrIndx: a.attr,
          ap: (p.write ? 0 : AP_BIT.RDONLY) | (p.user ? AP_BIT.UNPRIV : 0),
          sh: a.sh,
          af: a.af,
          ng: !a.global,
          pxn: !p.exec,
          uxn: !p.exec,
          contiguous: a.contiguous,
        })
      : s2LeafAttrs({
          memAttr: a.attr,
          s2ap: (p.read ? S2AP.READ : 0) | (p.write ? S2AP.WRITE : 0),
          sh: a.sh,
          af: a.af,
          // XN[1] only: execute-never with or without FEAT_XNX
          xn: p.exec ? S2_XN.EXEC : S2_XN.NONE,
          contiguous: a.contiguous,
        });
  const shift = levelShift(geo.g, level);
  const oaField = oa - (oa % 2 ** shift);
  return type | attrs | oaToDesc(oaField, oaFolds52(geo.g, geo.oas));
}

const TYPE_MASK = maskBig(DESC.Type);
const TYPE_TABLE = BigInt(DESC_TYPE.TABLE);
const DESC_VALID_BIG = BigInt(DESC_VALID);

function tableDesc(next: number): bigint {
  return BigInt(next) | TYPE_TABLE;
}

/** The next-level table address of a table descriptor (bits [47:12]). */
function nextTable(d: bigint): number {
  return Number(d & OA_MASK);
}

function isValid(d: bigint): boolean {
  return (d & DESC_VALID_BIG) !== 0n;
}

function isTable(d: bigint): boolean {
  return (d & TYPE_MASK) === TYPE_TABLE;
}

function entryAddr(geo: PtGeometry, table: number, level: number, va: number): number {
  const shift = levelShift(geo.g, level);
  const bits = indexBits(geo.g, level, geo.start, geo.ias);
  return table + (Math.floor(va / 2 ** shift) % 2 ** bits) * 8;
}

function tableBytes(geo: PtGeometry, level: number): number {
  return level === geo.start ? Math.max(8, startTableBytes(geo.g, level, geo.ias)) : 2 ** geo.g;
}

/** Map [va, va+size) → pa. Uses the largest blocks allowed by alignment unless `pagesOnly`. Returns descriptors written. */
export function ptMap(
  mem: PtMemory,
  alloc: TableAllocator,
  geo: PtGeometry,
  va: number,
  pa: number,
  size: number,
  p: PtPerm,
  a: PtAttrs,
  pagesOnly = false,
  level?: number,
): number {
  const gsz = 2 ** geo.g;
  if (va % gsz || pa % gsz || size % gsz || size <= 0)
    throw new Error(`iova, pa and size must be multiples of the ${gsz}-byte granule`);
  if (va + size > 2 ** geo.ias)
    throw new Error(`iova range ends beyond the ${geo.ias}-bit input size`);
  let n = 0;
  let off = 0;
  while (off < size) {
    const v = va + off;
    const o = pa + off;
    // choose the leaf level
    let leaf = LAST_LEVEL;
    if (level !== undefined) leaf = level;
    else if (!pagesOnly) {
      for (let l = Math.max(geo.start, 1); l < LAST_LEVEL; l++) {
        const bs = 2 ** levelShift(geo.g, l);
        if (blockAllowed(geo.g, l, geo.oas) && v % bs === 0 && o % bs === 0 && size - off >= bs) {
          leaf = l;
          break;
        }
      }
    }
    if (leaf < geo.start || (leaf < LAST_LEVEL && !blockAllowed(geo.g, leaf, geo.oas)))
      throw new Error(`no block mapping is possible at level ${leaf} with a ${gsz}-byte granule`);
    const bsz = 2 ** levelShift(geo.g, leaf);
    if (v % bsz || o % bsz)
      throw new Error(`a level-${leaf} mapping needs iova and pa aligned to 0x${bsz.toString(16)}`);
    let table = geo.root - (geo.root % Math.max(64, tableBytes(geo, geo.start)));
    for (let l = geo.start; l < leaf; l++) {
      const ea = entryAddr(geo, table, l, v);
      const d = mem.read64(ea);
      if (isTable(d)) {
        table = nextTable(d) - (nextTable(d) % gsz);
      } else {
        if (isValid(d))
          throw new Error(`0x${v.toString(16)} is already mapped by a block at level ${l}`);
        const next = alloc.alloc(gsz);
        mem.zero(next, gsz);
        mem.write64(ea, tableDesc(next));
        n++;
        table = next;
      }
    }
    if (a.contiguous) {
      const run = 2 ** contigBits(geo.g, leaf);
      if (Math.floor(v / bsz) % run !== 0 || size - off < run * bsz)
        throw new Error(`a contiguous run needs ${run} aligned entries`);
      for (let i = 0; i < run; i++)
        mem.write64(
          entryAddr(geo, table, leaf, v + i * bsz),
          leafDesc(geo, leaf, o + i * bsz, p, a),
        );
      n += run;
      off += run * bsz;
      continue;
    }
    mem.write64(entryAddr(geo, table, leaf, v), leafDesc(geo, leaf, o, p, a));
    n++;
    off += bsz;
  }
  return n;
}

/** Clear the leaf descriptors mapping [va, va+size). Returns descriptors cleared. */
export function ptUnmap(mem: PtMemory, geo: PtGeometry, va: number, size: number): number {
  const gsz = 2 ** geo.g;
  let n = 0;
  let off = 0;
  while (off < size) {
    const v = va + off;
    let table = geo.root - (geo.root % Math.max(64, tableBytes(geo, geo.start)));
    let step = gsz;
    for (let l = geo.start; l <= LAST_LEVEL; l++) {
      const ea = entryAddr(geo, table, l, v);
      const d = mem.read64(ea);
      if (!isValid(d)) {
        step = 2 ** levelShift(geo.g, l);
        break;
      }
      if (isTable(d) && l < LAST_LEVEL) {
        table = nextTable(d);
        continue;
      }
      mem.write64(ea, 0n);
      n++;
      step = 2 ** levelShift(geo.g, l);
      break;
    }
    off += step - (v % step);
  }
  return n;
}
