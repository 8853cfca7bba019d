/**
 * Golden translation table walks, worked out by hand from the reference
 * (/work/shared/reference/smmuv3.md §6.1–§6.4, §5.2–§5.3). Nothing here is computed: every
 * descriptor address, index and expected result is a literal, with the arithmetic in comments.
 *
 * Index at level L = (addr >> shift(L)) & (2^stride − 1); shift(L) = g + (3 − L)·stride;
 * stride = g − 3. Level shifts: 4KB L0 39, L1 30, L2 21, L3 12; 16KB L0 47, L1 36, L2 25,
 * L3 14; 64KB L1 42, L2 29, L3 16. Stage-1 start = 4 − ceil((IAS − g)/stride).
 * Descriptor address = table + 8 × index.
 *
 * Descriptor low bits used below (reference §6.2):
 *   stage-1 leaf, AttrIndx=0 SH=0b11 AF=1 nG=1:  AP=0b01 page 0xF43 / block 0xF41,
 *     AP=0b11 page 0xFC3, AP=0b00 page 0xF03, AF=0 page 0xB43, AF=0 AP=0b11 page 0xBC3;
 *     UXN = bit 54 (0x0040_0000_0000_0000), APTable[1] = bit 62 (0x4000_0000_0000_0000).
 *   stage-2 leaf, MemAttr=0b1111 SH=0b11 AF=1:  S2AP=0b11 page 0x7FF / block 0x7FD,
 *     S2AP=0b01 page 0x77F, S2AP=0b10 page 0x7BF / block 0x7BD, S2AP=0b00 page 0x73F,
 *     AF=0 page 0x3FF / block 0x3FD; MemAttr=0b0001 (Device) block 0x7C5.
 *   table descriptor: next-table address | 0b11.
 */

export type EvName =
  'F_TRANSLATION' | 'F_ADDR_SIZE' | 'F_ACCESS' | 'F_PERMISSION' | 'F_WALK_EABT' | 'F_CD_FETCH';

export interface Access {
  write?: boolean;
  priv?: boolean;
  instr?: boolean;
}

export interface ExpectOk {
  pa: number;
  /** bytes mapped by the leaf */
  size: number;
  /** level of the leaf */
  level: number;
}

export interface ExpectedEvent {
  /** DW1 S2 and CLASS (translation-fault class events only) */
  S2?: 0 | 1;
  CLASS?: 'CD' | 'TT' | 'IN';
  /** DW3 IPA[55:12] (byte address of the page) when S2=1 */
  IPA?: number;
  /** DW3 FetchAddr[55:3] */
  FetchAddr?: number;
  RnW?: 0 | 1;
  InD?: 0 | 1;
  PnU?: 0 | 1;
}

export interface ExpectFault {
  fault: EvName;
  /** level at which the walk faulted (walk-level check) */
  level?: number;
  /** the descriptor PA whose fetch aborted (F_WALK_EABT) */
  fetchAddr?: number;
  event: ExpectedEvent;
}

export interface WalkCase {
  name: string;
  stage: 1 | 2;
  granule: 4096 | 16384 | 65536;
  /** CD.T0SZ (stage 1) or STE.S2T0SZ (stage 2) */
  tsz: number;
  /** STE.S2SL0 (stage 2) */
  sl0?: number;
  /** start level, by hand from §6.1 (stage 1) or the §6.3 S2SL0 table (stage 2) */
  start: number;
  /** CD.TTB0 or STE.S2TTB */
  ttb: number;
  /** effective output size in bits (CD.IPS / STE.S2PS) */
  ps: number;
  affd?: boolean;
  ha?: boolean;
  descs: ReadonlyArray<readonly [number, bigint]>;
  ia: number;
  access?: Access;
  /** only meaningful through the whole device (the check happens before the walk) */
  deviceOnly?: boolean;
  expect: ExpectOk | ExpectFault;
  /** descriptor values expected in memory afterwards (HTTU) */
  after?: ReadonlyArray<readonly [number, bigint]>;
}

const W: Access = { write: true };

// VA used by the 4KB / T0SZ=25 cases: L1 idx 0x1C3, L2 idx 0x07E, L3 idx 0x155, offset 0xABC
//   = 0x1C3<<30 | 0x7E<<21 | 0x155<<12 | 0xABC = 0x70_CFD5_5ABC
// descriptor offsets: L1 0x1C3×8 = 0xE18, L2 0x7E×8 = 0x3F0, L3 0x155×8 = 0xAA8
const VA39 = 0x70_cfd5_5abc;

/** 4KB, T0SZ=25, start L1, a three-level chain at `t` (L1 at t, L2 at t+0x1000, L3 at t+0x2000) ending in `leaf`. */
function chain39(
  t: number,
  leaf: bigint,
  l1 = BigInt(t + 0x1000) | 3n,
): Array<readonly [number, bigint]> {
  return [
    [t + 0xe18, l1],
    [t + 0x1000 + 0x3f0, BigInt(t + 0x2000) | 3n],
    [t + 0x2000 + 0xaa8, leaf],
  ];
}

// IPA used by the 4KB S2SL0=1 S2T0SZ=24 (IAS 40) stage-2 cases:
//   L1 idx 0x048 (first of the 2 concatenated tables), L2 idx 0x0D1, L3 idx 0x1E7, offset 0x123
//   = 0x48<<30 | 0xD1<<21 | 0x1E7<<12 | 0x123 = 0x12_1A3E_7123
// descriptor offsets: L1 0x48×8 = 0x240, L2 0xD1×8 = 0x688, L3 0x1E7×8 = 0xF38
const IPA40 = 0x12_1a3e_7123;
const IPA40_PAGE = 0x12_1a3e_7000;

/** 4KB S2 IAS 40 chain: L1 table at 0x4140_0000 (8 KB, 2 tables), L2 at 0x4140_2000, L3 at 0x4140_3000. */
function chain40(leaf: bigint, l2 = 0x4140_3003n): Array<readonly [number, bigint]> {
  return [
    [0x4140_0240, 0x4140_2003n],
    [0x4140_2688, l2],
    [0x4140_3f38, leaf],
  ];
}
const S2_40 = {
  stage: 2,
  granule: 4096,
  tsz: 24,
  sl0: 1,
  start: 1,
  ttb: 0x4140_0000,
  ps: 48,
} as const;
const S1_39 = { stage: 1, granule: 4096, tsz: 25, start: 1, ps: 48 } as const;

export const WALK_CASES: readonly WalkCase[] = [
  // ---------------------------------------------------------------- stage 1, 4 KB granule
  {
    name: 's1 4KB T0SZ=16 (IAS 48): start L0, four levels to a page',
    stage: 1,
    granule: 4096,
    tsz: 16,
    start: 0,
    ttb: 0x4100_0000,
    ps: 48,
    // VA = 0xA5<<39 | 0x1C3<<30 | 0x7E<<21 | 0x155<<12 | 0xABC = 0x52F0_CFD5_5ABC
    ia: 0x52f0_cfd5_5abc,
    descs: [
      [0x4100_0528, 0x4100_1003n], // L0: 0x4100_0000 + 0xA5×8
      [0x4100_1e18, 0x4100_2003n], // L1: 0x4100_1000 + 0x1C3×8
      [0x4100_23f0, 0x4100_3003n], // L2: 0x4100_2000 + 0x7E×8
      [0x4100_3aa8, 0x4567_8f43n], // L3: 0x4100_3000 + 0x155×8 → page 0x4567_8000
    ],
    expect: { pa: 0x4567_8abc, size: 0x1000, level: 3 },
  },
  {
    name: 's1 4KB T0SZ=25 (IAS 39): start L1',
    ...S1_39,
    ttb: 0x4101_0000,
    ia: VA39,
    descs: chain39(0x4101_0000, 0x4567_8f43n),
    expect: { pa: 0x4567_8abc, size: 0x1000, level: 3 },
  },
  {
    name: 's1 4KB T0SZ=34 (IAS 30): start L2',
    stage: 1,
    granule: 4096,
    tsz: 34,
    start: 2,
    ttb: 0x4102_0000,
    ps: 48,
    // VA = 0x7E<<21 | 0x155<<12 | 0xABC = 0xFD5_5ABC
    ia: 0x0fd5_5abc,
    descs: [
      [0x4102_03f0, 0x4102_1003n], // L2: 0x4102_0000 + 0x7E×8
      [0x4102_1aa8, 0x4567_8f43n], // L3: 0x4102_1000 + 0x155×8
    ],
    expect: { pa: 0x4567_8abc, size: 0x1000, level: 3 },
  },
  {
    name: 's1 4KB T0SZ=28 (IAS 36): start L1 with a 6-bit index (64-entry table)',
    stage: 1,
    granule: 4096,
    tsz: 28,
    start: 1,
    ttb: 0x4103_0000,
    ps: 48,
    // VA = 0x2D<<30 | 0x7E<<21 | 0x155<<12 | 0xABC = 0xB_4FD5_5ABC
    ia: 0xb_4fd5_5abc,
    descs: [
      [0x4103_0168, 0x4103_1003n], // L1: 0x4103_0000 + 0x2D×8
      [0x4103_13f0, 0x4103_2003n],
      [0x4103_2aa8, 0x4567_8f43n],
    ],
    expect: { pa: 0x4567_8abc, size: 0x1000, level: 3 },
  },
  {
    name: 's1 4KB level-1 block (1 GB)',
    ...S1_39,
    ttb: 0x4104_0000,
    // VA = 3<<30 | 0x1234_5678 = 0xD234_5678; L1 idx 3 → 0x4104_0018
    ia: 0xd234_5678,
    descs: [[0x4104_0018, 0x8000_0f41n]], // block → 0x8000_0000
    expect: { pa: 0x9234_5678, size: 0x4000_0000, level: 1 },
  },
  {
    name: 's1 4KB level-2 block (2 MB)',
    stage: 1,
    granule: 4096,
    tsz: 16,
    start: 0,
    ttb: 0x4105_0000,
    ps: 48,
    // VA = 1<<39 | 1<<30 | 3<<21 | 0x1_1234 = 0x80_4061_1234
    ia: 0x80_4061_1234,
    descs: [
      [0x4105_0008, 0x4105_1003n], // L0 idx 1
      [0x4105_1008, 0x4105_2003n], // L1 idx 1
      [0x4105_2018, 0x4ae0_0f41n], // L2 idx 3: block → 0x4AE0_0000
    ],
    expect: { pa: 0x4ae1_1234, size: 0x20_0000, level: 2 },
  },
  {
    name: 's1 4KB block descriptor at L0 is invalid: F_TRANSLATION at L0',
    stage: 1,
    granule: 4096,
    tsz: 16,
    start: 0,
    ttb: 0x4106_0000,
    ps: 48,
    ia: 0x80_4061_1234,
    descs: [[0x4106_0008, 0x80_0000_0f41n]], // type 0b01 at L0
    expect: { fault: 'F_TRANSLATION', level: 0, event: { S2: 0, CLASS: 'IN', RnW: 1 } },
  },
  {
    name: 's1 4KB type 0b01 at L3 is invalid: F_TRANSLATION at L3',
    ...S1_39,
    ttb: 0x4107_0000,
    ia: VA39,
    descs: chain39(0x4107_0000, 0x4567_8f41n),
    expect: { fault: 'F_TRANSLATION', level: 3, event: { S2: 0, CLASS: 'IN' } },
  },
  {
    name: 's1 4KB invalid (bit[0]=0) descriptor at L2: F_TRANSLATION at L2',
    ...S1_39,
    ttb: 0x4108_0000,
    ia: VA39,
    descs: [
      [0x4108_0e18, 0x4108_1003n],
      [0x4108_13f0, 0x4108_2002n], // bit 0 clear
      [0x4108_2aa8, 0x4567_8f43n],
    ],
    expect: { fault: 'F_TRANSLATION', level: 2, event: { S2: 0, CLASS: 'IN' } },
  },
  {
    name: 's1 input beyond the 39-bit range (T0SZ=25): F_TRANSLATION',
    ...S1_39,
    ttb: 0x4109_0000,
    // VA = 2^39; a walker that dropped bit 39 would use L1 idx 0 and find the block
    ia: 0x80_0000_0000,
    descs: [[0x4109_0000, 0x4000_0f41n]],
    expect: { fault: 'F_TRANSLATION', event: { S2: 0, CLASS: 'IN' } },
  },

  // ---------------------------------------------------------------- stage 1, 16 KB granule
  {
    name: 's1 16KB T0SZ=16 (IAS 48): start L0 with a 1-bit index (VA[47])',
    stage: 1,
    granule: 16384,
    tsz: 16,
    start: 0,
    ttb: 0x4110_0000,
    ps: 48,
    // VA = 1<<47 | 0x5A3<<36 | 0x2C1<<25 | 0x6D2<<14 | 0x1ABC = 0xDA35_83B4_9ABC
    ia: 0xda35_83b4_9abc,
    descs: [
      [0x4110_0008, 0x4110_4003n], // L0 idx 1
      [0x4110_6d18, 0x4110_8003n], // L1: 0x4110_4000 + 0x5A3×8 (0x2D18)
      [0x4110_9608, 0x4110_c003n], // L2: 0x4110_8000 + 0x2C1×8 (0x1608)
      [0x4110_f690, 0x4567_cf43n], // L3: 0x4110_C000 + 0x6D2×8 (0x3690) → page 0x4567_C000
    ],
    expect: { pa: 0x4567_dabc, size: 0x4000, level: 3 },
  },
  {
    name: 's1 16KB T0SZ=17 (IAS 47): start L1 (11-bit index VA[46:36])',
    stage: 1,
    granule: 16384,
    tsz: 17,
    start: 1,
    ttb: 0x4111_0000,
    ps: 48,
    // VA = 0x5A3<<36 | 0x2C1<<25 | 0x6D2<<14 | 0x1ABC = 0x5A35_83B4_9ABC
    ia: 0x5a35_83b4_9abc,
    descs: [
      [0x4111_2d18, 0x4111_4003n],
      [0x4111_5608, 0x4111_8003n],
      [0x4111_b690, 0x4567_cf43n],
    ],
    expect: { pa: 0x4567_dabc, size: 0x4000, level: 3 },
  },
  {
    name: 's1 16KB T0SZ=28 (IAS 36): start L2',
    stage: 1,
    granule: 16384,
    tsz: 28,
    start: 2,
    ttb: 0x4112_0000,
    ps: 48,
    // VA = 0x2C1<<25 | 0x6D2<<14 | 0x1ABC = 0x5_83B4_9ABC
    ia: 0x5_83b4_9abc,
    descs: [
      [0x4112_1608, 0x4112_4003n],
      [0x4112_7690, 0x4567_cf43n],
    ],
    expect: { pa: 0x4567_dabc, size: 0x4000, level: 3 },
  },
  {
    name: 's1 16KB level-2 block (32 MB)',
    stage: 1,
    granule: 16384,
    tsz: 28,
    start: 2,
    ttb: 0x4113_0000,
    ps: 48,
    // VA = 0x2C1<<25 | 0x1AB_CDEF = 0x5_83AB_CDEF
    ia: 0x5_83ab_cdef,
    descs: [[0x4113_1608, 0x5200_0f41n]], // block → 0x5200_0000
    expect: { pa: 0x53ab_cdef, size: 0x200_0000, level: 2 },
  },
  {
    name: 's1 16KB block at L1 (no DS) is invalid: F_TRANSLATION at L1',
    stage: 1,
    granule: 16384,
    tsz: 17,
    start: 1,
    ttb: 0x4114_0000,
    ps: 48,
    ia: 0x5a35_83b4_9abc,
    descs: [[0x4114_2d18, 0x10_0000_0f41n]],
    expect: { fault: 'F_TRANSLATION', level: 1, event: { S2: 0, CLASS: 'IN' } },
  },

  // ---------------------------------------------------------------- stage 1, 64 KB granule
  {
    name: 's1 64KB T0SZ=16 (IAS 48): start L1 with a 6-bit index (VA[47:42])',
    stage: 1,
    granule: 65536,
    tsz: 16,
    start: 1,
    ttb: 0x4120_0000,
    ps: 48,
    // VA = 0x2B<<42 | 0x1A5C<<29 | 0xE37<<16 | 0xBEEF = 0xAF4B_8E37_BEEF
    ia: 0xaf4b_8e37_beef,
    descs: [
      [0x4120_0158, 0x4121_0003n], // L1: 0x4120_0000 + 0x2B×8
      [0x4121_d2e0, 0x4122_0003n], // L2: 0x4121_0000 + 0x1A5C×8 (0xD2E0)
      [0x4122_71b8, 0x4567_0f43n], // L3: 0x4122_0000 + 0xE37×8 (0x71B8) → page 0x4567_0000
    ],
    expect: { pa: 0x4567_beef, size: 0x1_0000, level: 3 },
  },
  {
    name: 's1 64KB T0SZ=22 (IAS 42): start L2 (13-bit index VA[41:29])',
    stage: 1,
    granule: 65536,
    tsz: 22,
    start: 2,
    ttb: 0x4123_0000,
    ps: 48,
    // VA = 0x1A5C<<29 | 0xE37<<16 | 0xBEEF = 0x34B_8E37_BEEF
    ia: 0x34b_8e37_beef,
    descs: [
      [0x4123_d2e0, 0x4124_0003n],
      [0x4124_71b8, 0x4567_0f43n],
    ],
    expect: { pa: 0x4567_beef, size: 0x1_0000, level: 3 },
  },
  {
    name: 's1 64KB level-2 block (512 MB)',
    stage: 1,
    granule: 65536,
    tsz: 22,
    start: 2,
    ttb: 0x4125_0000,
    ps: 48,
    // VA = 0xA3<<29 | 0x1234_5678 = 0x14_7234_5678; L2 idx 0xA3 → +0x518
    ia: 0x14_7234_5678,
    descs: [[0x4125_0518, 0x6000_0f41n]], // block → 0x6000_0000
    expect: { pa: 0x7234_5678, size: 0x2000_0000, level: 2 },
  },
  {
    name: 's1 64KB block at L1 with a 48-bit OA is invalid: F_TRANSLATION at L1',
    stage: 1,
    granule: 65536,
    tsz: 16,
    start: 1,
    ttb: 0x4126_0000,
    ps: 48,
    ia: 0xaf4b_8e37_beef,
    descs: [[0x4126_0158, 0x400_0000_0f41n]],
    expect: { fault: 'F_TRANSLATION', level: 1, event: { S2: 0, CLASS: 'IN' } },
  },

  // ---------------------------------------------------------------- stage 1 faults (4 KB, T0SZ=25)
  {
    name: 's1 F_ADDR_SIZE: page output 0x1_0000_0000 beyond IPS=32 bits',
    ...S1_39,
    ps: 32,
    ttb: 0x4130_0000,
    ia: VA39,
    descs: chain39(0x4130_0000, 0x1_0000_0f43n),
    expect: { fault: 'F_ADDR_SIZE', level: 3, event: { S2: 0, CLASS: 'IN' } },
  },
  {
    name: 's1 the same page output fits IPS=36 bits',
    ...S1_39,
    ps: 36,
    ttb: 0x4130_0000,
    ia: VA39,
    descs: chain39(0x4130_0000, 0x1_0000_0f43n),
    expect: { pa: 0x1_0000_0abc, size: 0x1000, level: 3 },
  },
  {
    name: 's1 F_ADDR_SIZE: next-level table 0x1_4131_1000 beyond IPS=32 bits, at L1',
    ...S1_39,
    ps: 32,
    ttb: 0x4131_0000,
    ia: VA39,
    descs: [[0x4131_0e18, 0x1_4131_1003n]],
    expect: { fault: 'F_ADDR_SIZE', level: 1, event: { S2: 0, CLASS: 'IN' } },
  },
  {
    name: 's1 F_ADDR_SIZE: 1 GB block output 0x1_0000_0000 beyond IPS=32 bits',
    ...S1_39,
    ps: 32,
    ttb: 0x4132_0000,
    ia: VA39,
    descs: [[0x4132_0e18, 0x1_0000_0f41n]],
    expect: { fault: 'F_ADDR_SIZE', level: 1, event: { S2: 0, CLASS: 'IN' } },
  },
  {
    name: 's1 the same block fits IPS=40 bits (VA offset in the 1 GB block 0xFD5_5ABC)',
    ...S1_39,
    ps: 40,
    ttb: 0x4132_0000,
    ia: VA39,
    descs: [[0x4132_0e18, 0x1_0000_0f41n]],
    expect: { pa: 0x1_0fd5_5abc, size: 0x4000_0000, level: 1 },
  },
  {
    name: 's1 F_ACCESS: AF=0, AFFD=0, no HTTU',
    ...S1_39,
    ttb: 0x4133_0000,
    ia: VA39,
    descs: chain39(0x4133_0000, 0x4567_8b43n),
    expect: { fault: 'F_ACCESS', level: 3, event: { S2: 0, CLASS: 'IN' } },
  },
  {
    name: 's1 AF=0 with AFFD=1: no Access flag fault',
    ...S1_39,
    affd: true,
    ttb: 0x4134_0000,
    ia: VA39,
    descs: chain39(0x4134_0000, 0x4567_8b43n),
    expect: { pa: 0x4567_8abc, size: 0x1000, level: 3 },
  },
  {
    name: 's1 AF=0 with HA=1: translated, and the SMMU sets AF in the descriptor',
    ...S1_39,
    ha: true,
    ttb: 0x4135_0000,
    ia: VA39,
    descs: chain39(0x4135_0000, 0x4567_8b43n),
    expect: { pa: 0x4567_8abc, size: 0x1000, level: 3 },
    after: [[0x4135_2aa8, 0x4567_8f43n]], // the L3 descriptor, AF (bit 10) now 1
  },
  {
    name: 's1 F_ACCESS takes priority over F_PERMISSION (AF=0, read-only, write)',
    ...S1_39,
    ttb: 0x4136_0000,
    ia: VA39,
    access: W,
    descs: chain39(0x4136_0000, 0x4567_8bc3n),
    expect: { fault: 'F_ACCESS', level: 3, event: { S2: 0, CLASS: 'IN', RnW: 0 } },
  },
  {
    name: 's1 F_PERMISSION: write to AP=0b11 (read-only)',
    ...S1_39,
    ttb: 0x4137_0000,
    ia: VA39,
    access: W,
    descs: chain39(0x4137_0000, 0x4567_8fc3n),
    expect: { fault: 'F_PERMISSION', level: 3, event: { S2: 0, CLASS: 'IN', RnW: 0, PnU: 0 } },
  },
  {
    name: 's1 read of AP=0b11 (read-only) is allowed',
    ...S1_39,
    ttb: 0x4137_0000,
    ia: VA39,
    descs: chain39(0x4137_0000, 0x4567_8fc3n),
    expect: { pa: 0x4567_8abc, size: 0x1000, level: 3 },
  },
  {
    name: 's1 F_PERMISSION: an instruction-marked write to AP=0b11 reports InD=0 (InD is 0 when RnW=0)',
    ...S1_39,
    ttb: 0x4137_0000,
    ia: VA39,
    access: { write: true, instr: true },
    descs: chain39(0x4137_0000, 0x4567_8fc3n),
    expect: { fault: 'F_PERMISSION', level: 3, event: { S2: 0, CLASS: 'IN', RnW: 0, InD: 0 } },
  },
  {
    name: 's1 F_PERMISSION: unprivileged read of AP=0b00 (EL1 only)',
    ...S1_39,
    ttb: 0x4138_0000,
    ia: VA39,
    descs: chain39(0x4138_0000, 0x4567_8f03n),
    expect: { fault: 'F_PERMISSION', level: 3, event: { S2: 0, CLASS: 'IN', RnW: 1, PnU: 0 } },
  },
  {
    name: 's1 privileged write of AP=0b00 is allowed',
    ...S1_39,
    ttb: 0x4138_0000,
    ia: VA39,
    access: { write: true, priv: true },
    descs: chain39(0x4138_0000, 0x4567_8f03n),
    expect: { pa: 0x4567_8abc, size: 0x1000, level: 3 },
  },
  {
    name: 's1 F_PERMISSION: APTable[1]=1 (no write below) at L1 over an AP=0b01 page, write',
    ...S1_39,
    ttb: 0x4139_0000,
    ia: VA39,
    access: W,
    descs: chain39(0x4139_0000, 0x4567_8f43n, 0x4000_0000_4139_1003n),
    expect: { fault: 'F_PERMISSION', level: 3, event: { S2: 0, CLASS: 'IN', RnW: 0 } },
  },
  {
    name: 's1 F_PERMISSION: unprivileged instruction fetch from a UXN page',
    ...S1_39,
    ttb: 0x413a_0000,
    ia: VA39,
    access: { instr: true },
    descs: chain39(0x413a_0000, 0x0040_0000_4567_8f43n),
    expect: {
      fault: 'F_PERMISSION',
      level: 3,
      event: { S2: 0, CLASS: 'IN', RnW: 1, InD: 1, PnU: 0 },
    },
  },
  {
    name: 's1 unprivileged instruction fetch from the same page without UXN',
    ...S1_39,
    ttb: 0x413b_0000,
    ia: VA39,
    access: { instr: true },
    descs: chain39(0x413b_0000, 0x4567_8f43n),
    expect: { pa: 0x4567_8abc, size: 0x1000, level: 3 },
  },
  {
    name: 's1 F_WALK_EABT: the L3 table at 0x2000_0000 is not RAM (FetchAddr = 0x2000_0000 + 0x155×8)',
    ...S1_39,
    ttb: 0x413c_0000,
    ia: VA39,
    descs: [
      [0x413c_0e18, 0x413c_1003n],
      [0x413c_13f0, 0x2000_0003n],
    ],
    expect: {
      fault: 'F_WALK_EABT',
      level: 3,
      fetchAddr: 0x2000_0aa8,
      event: { S2: 0, CLASS: 'TT', FetchAddr: 0x2000_0aa8 },
    },
  },
  {
    name: 's1 F_WALK_EABT at the start table: TTB0 0x3000_0000 is not RAM (FetchAddr = TTB0 + 0x1C3×8)',
    ...S1_39,
    ttb: 0x3000_0000,
    ia: VA39,
    descs: [],
    expect: {
      fault: 'F_WALK_EABT',
      level: 1,
      fetchAddr: 0x3000_0e18,
      event: { S2: 0, CLASS: 'TT', FetchAddr: 0x3000_0e18 },
    },
  },

  // ---------------------------------------------------------------- stage 2, 4 KB granule
  {
    name: 's2 4KB S2SL0=1 S2T0SZ=24 (IAS 40): 2 concatenated L1 tables, index in the first',
    ...S2_40,
    ia: IPA40,
    descs: chain40(0x4567_87ffn),
    expect: { pa: 0x4567_8123, size: 0x1000, level: 3 },
  },
  {
    name: 's2 4KB IAS 40: L1 index 0x248 lands in the second concatenated table (0x4140_1240)',
    ...S2_40,
    // IPA = 0x248<<30 | 0xD1<<21 | 0x1E7<<12 | 0x123 = 0x92_1A3E_7123; L1 entry 0x4140_0000 + 0x248×8
    ia: 0x92_1a3e_7123,
    descs: [
      ...chain40(0x4567_87ffn), // a decoy at index 0x048 (what a 9-bit index would use)
      [0x4140_1240, 0x4140_4003n],
      [0x4140_4688, 0x4140_5003n],
      [0x4140_5f38, 0x4abc_d7ffn],
    ],
    expect: { pa: 0x4abc_d123, size: 0x1000, level: 3 },
  },
  {
    name: 's2 4KB IAS 40: 1 GB block in the last entry of the second table (index 0x3FF)',
    ...S2_40,
    // IPA = 0x3FF<<30 | 0x2345_6789 = 0xFF_E345_6789; entry 0x4140_0000 + 0x3FF×8 = 0x4140_1FF8
    ia: 0xff_e345_6789,
    descs: [[0x4140_1ff8, 0xc000_07fdn]],
    expect: { pa: 0xe345_6789, size: 0x4000_0000, level: 1 },
  },
  {
    name: 's2 base alignment: S2TTB 0x4140_1000 inside the 8 KB concatenated block uses base 0x4140_0000',
    ...S2_40,
    ttb: 0x4140_1000,
    ia: IPA40,
    descs: chain40(0x4567_87ffn),
    expect: { pa: 0x4567_8123, size: 0x1000, level: 3 },
  },
  {
    name: 's2 4KB S2SL0=0 S2T0SZ=30 (IAS 34): 16 concatenated L2 tables, last entry of the last one',
    stage: 2,
    granule: 4096,
    tsz: 30,
    sl0: 0,
    start: 2,
    ttb: 0x4160_0000,
    ps: 48,
    // IPA = 0x1FFF<<21 | 0x12<<12 | 0x345 = 0x3_FFE1_2345; L2 entry 0x4160_0000 + 0x1FFF×8 = 0x4160_FFF8
    ia: 0x3_ffe1_2345,
    descs: [
      [0x4160_fff8, 0x4162_0003n], // the L3 table after the 128 KB block
      [0x4162_0090, 0x4567_87ffn], // 0x4162_0000 + 0x12×8
    ],
    expect: { pa: 0x4567_8345, size: 0x1000, level: 3 },
  },
  {
    name: 's2 4KB IAS 34: 2 MB block in concatenated table 9 (L2 index 0x1234)',
    stage: 2,
    granule: 4096,
    tsz: 30,
    sl0: 0,
    start: 2,
    ttb: 0x4160_0000,
    ps: 48,
    // IPA = 0x1234<<21 | 0x1_ABCD = 0x2_4681_ABCD; entry 0x4160_0000 + 0x1234×8 = 0x4160_91A0
    ia: 0x2_4681_abcd,
    descs: [[0x4160_91a0, 0x7fe0_07fdn]],
    expect: { pa: 0x7fe1_abcd, size: 0x20_0000, level: 2 },
  },
  {
    name: 's2 4KB S2SL0=2 S2T0SZ=16 (IAS 48): start L0',
    stage: 2,
    granule: 4096,
    tsz: 16,
    sl0: 2,
    start: 0,
    ttb: 0x4170_0000,
    ps: 48,
    ia: 0x52f0_cfd5_5abc,
    descs: [
      [0x4170_0528, 0x4170_1003n],
      [0x4170_1e18, 0x4170_2003n],
      [0x4170_23f0, 0x4170_3003n],
      [0x4170_3aa8, 0x4567_87ffn],
    ],
    expect: { pa: 0x4567_8abc, size: 0x1000, level: 3 },
  },
  {
    name: 's2 4KB S2SL0=1 S2T0SZ=32 (IAS 32): start L1 with a 4-entry table',
    stage: 2,
    granule: 4096,
    tsz: 32,
    sl0: 1,
    start: 1,
    ttb: 0x4171_0000,
    ps: 48,
    // IPA = 3<<30 | 0x7E<<21 | 0x155<<12 | 0xABC = 0xCFD5_5ABC
    ia: 0xcfd5_5abc,
    descs: [
      [0x4171_0018, 0x4171_1003n],
      [0x4171_13f0, 0x4171_2003n],
      [0x4171_2aa8, 0x4567_87ffn],
    ],
    expect: { pa: 0x4567_8abc, size: 0x1000, level: 3 },
  },

  // ---------------------------------------------------------------- stage 2, 16 KB and 64 KB
  {
    name: 's2 16KB S2SL0=1 S2T0SZ=25 (IAS 39): start L2 with 8 concatenated tables, index in table 5',
    stage: 2,
    granule: 16384,
    tsz: 25,
    sl0: 1,
    start: 2,
    ttb: 0x4180_0000,
    ps: 48,
    // IPA = 0x2ABC<<25 | 0x6D2<<14 | 0x1ABC = 0x55_79B4_9ABC; L2 entry 0x4180_0000 + 0x2ABC×8 = 0x4181_55E0
    ia: 0x55_79b4_9abc,
    descs: [
      [0x4181_55e0, 0x4182_0003n],
      [0x4182_3690, 0x4567_c7ffn], // 0x4182_0000 + 0x6D2×8
    ],
    expect: { pa: 0x4567_dabc, size: 0x4000, level: 3 },
  },
  {
    name: 's2 16KB level-2 block (32 MB)',
    stage: 2,
    granule: 16384,
    tsz: 25,
    sl0: 1,
    start: 2,
    ttb: 0x4180_0000,
    ps: 48,
    // IPA = 5<<25 | 0x1AB_CDEF = 0xBAB_CDEF; entry 0x4180_0028
    ia: 0x0bab_cdef,
    descs: [[0x4180_0028, 0x5200_07fdn]],
    expect: { pa: 0x53ab_cdef, size: 0x200_0000, level: 2 },
  },
  {
    name: 's2 64KB S2SL0=1 S2T0SZ=18 (IAS 46): start L2 with 16 concatenated tables, index in table 13',
    stage: 2,
    granule: 65536,
    tsz: 18,
    sl0: 1,
    start: 2,
    ttb: 0x4190_0000,
    ps: 48,
    // IPA = 0x1_ABCD<<29 | 0xE37<<16 | 0xBEEF = 0x3579_AE37_BEEF; entry 0x4190_0000 + 0x1ABCD×8 = 0x419D_5E68
    ia: 0x3579_ae37_beef,
    descs: [
      [0x419d_5e68, 0x41a0_0003n],
      [0x41a0_71b8, 0x4567_07ffn],
    ],
    expect: { pa: 0x4567_beef, size: 0x1_0000, level: 3 },
  },
  {
    name: 's2 64KB level-2 block (512 MB)',
    stage: 2,
    granule: 65536,
    tsz: 18,
    sl0: 1,
    start: 2,
    ttb: 0x4190_0000,
    ps: 48,
    ia: 0x14_7234_5678, // 0xA3<<29 | 0x1234_5678; entry +0xA3×8
    descs: [[0x4190_0518, 0x6000_07fdn]],
    expect: { pa: 0x7234_5678, size: 0x2000_0000, level: 2 },
  },
  {
    name: 's2 64KB S2SL0=0 S2T0SZ=32 (IAS 32): start L3 with 8 concatenated tables',
    stage: 2,
    granule: 65536,
    tsz: 32,
    sl0: 0,
    start: 3,
    ttb: 0x41c0_0000,
    ps: 48,
    // L3 idx = IPA[31:16] = 0xABCD (table 5); entry 0x41C0_0000 + 0xABCD×8 = 0x41C5_5E68
    ia: 0xabcd_beef,
    descs: [[0x41c5_5e68, 0x4567_07ffn]],
    expect: { pa: 0x4567_beef, size: 0x1_0000, level: 3 },
  },
  {
    name: 's2 64KB S2SL0=2 S2T0SZ=16 (IAS 48): start L1',
    stage: 2,
    granule: 65536,
    tsz: 16,
    sl0: 2,
    start: 1,
    ttb: 0x41d0_0000,
    ps: 48,
    ia: 0xaf4b_8e37_beef,
    descs: [
      [0x41d0_0158, 0x41d1_0003n],
      [0x41d1_d2e0, 0x41d2_0003n],
      [0x41d2_71b8, 0x4567_07ffn],
    ],
    expect: { pa: 0x4567_beef, size: 0x1_0000, level: 3 },
  },

  // ---------------------------------------------------------------- stage 2 faults (4 KB, IAS 40)
  {
    name: 's2 F_PERMISSION: write to S2AP=0b01 (read-only)',
    ...S2_40,
    ia: IPA40,
    access: W,
    descs: chain40(0x4567_877fn),
    expect: {
      fault: 'F_PERMISSION',
      level: 3,
      event: { S2: 1, CLASS: 'IN', IPA: IPA40_PAGE, RnW: 0 },
    },
  },
  {
    name: 's2 F_PERMISSION: read of S2AP=0b10 (write-only)',
    ...S2_40,
    ia: IPA40,
    descs: chain40(0x4567_87bfn),
    expect: {
      fault: 'F_PERMISSION',
      level: 3,
      event: { S2: 1, CLASS: 'IN', IPA: IPA40_PAGE, RnW: 1 },
    },
  },
  {
    name: 's2 write to S2AP=0b10 (write-only) is allowed',
    ...S2_40,
    ia: IPA40,
    access: W,
    descs: chain40(0x4567_87bfn),
    expect: { pa: 0x4567_8123, size: 0x1000, level: 3 },
  },
  {
    name: 's2 F_PERMISSION: read of S2AP=0b00',
    ...S2_40,
    ia: IPA40,
    descs: chain40(0x4567_873fn),
    expect: { fault: 'F_PERMISSION', level: 3, event: { S2: 1, CLASS: 'IN', IPA: IPA40_PAGE } },
  },
  {
    name: 's2 F_ACCESS: AF=0, S2AFFD=0',
    ...S2_40,
    ia: IPA40,
    descs: chain40(0x4567_83ffn),
    expect: { fault: 'F_ACCESS', level: 3, event: { S2: 1, CLASS: 'IN', IPA: IPA40_PAGE } },
  },
  {
    name: 's2 AF=0 with S2AFFD=1: no Access flag fault',
    ...S2_40,
    affd: true,
    ia: IPA40,
    descs: chain40(0x4567_83ffn),
    expect: { pa: 0x4567_8123, size: 0x1000, level: 3 },
  },
  {
    name: 's2 F_ADDR_SIZE: page output 0x1_0000_0000 beyond S2PS=32 bits',
    ...S2_40,
    ps: 32,
    ia: IPA40,
    descs: chain40(0x1_0000_07ffn),
    expect: { fault: 'F_ADDR_SIZE', level: 3, event: { S2: 1, CLASS: 'IN', IPA: IPA40_PAGE } },
  },
  {
    name: 's2 F_ADDR_SIZE: L3 table address 0x1_0000_0000 beyond S2PS=32 bits, at L2',
    ...S2_40,
    ps: 32,
    ia: IPA40,
    descs: chain40(0x4567_87ffn, 0x1_0000_0003n),
    expect: { fault: 'F_ADDR_SIZE', level: 2, event: { S2: 1, CLASS: 'IN', IPA: IPA40_PAGE } },
  },
  {
    name: 's2 input IPA 2^40 beyond S2T0SZ=24: stage-2 F_TRANSLATION',
    ...S2_40,
    // L1 index (2^40 >> 30) = 0x400 would alias entry 0 of a 10-bit index: a decoy block there
    ia: 0x100_0000_0000,
    descs: [[0x4140_0000, 0x4000_07fdn]],
    expect: { fault: 'F_TRANSLATION', event: { S2: 1, CLASS: 'IN', IPA: 0x100_0000_0000 } },
  },
  {
    name: 's2-only stream: input 2^48 beyond the SMMU IAS is a stage-1 F_ADDR_SIZE (S2=0)',
    ...S2_40,
    deviceOnly: true,
    ia: 0x1_0000_0000_0000,
    descs: [[0x4140_0000, 0x4000_07fdn]],
    expect: { fault: 'F_ADDR_SIZE', event: { S2: 0, CLASS: 'IN' } },
  },
  {
    name: 's2 F_WALK_EABT: the L3 table at 0x2000_0000 is not RAM (FetchAddr = 0x2000_0000 + 0x1E7×8)',
    ...S2_40,
    ia: IPA40,
    descs: chain40(0x4567_87ffn, 0x2000_0003n),
    expect: {
      fault: 'F_WALK_EABT',
      level: 3,
      fetchAddr: 0x2000_0f38,
      event: { S2: 1, CLASS: 'IN', FetchAddr: 0x2000_0f38 },
    },
  },
];

/** {S2SL0, S2TG, S2T0SZ} consistency (reference §6.3 table): illegal combinations give C_BAD_STE. */
export interface S2ConfigCase {
  granule: 4096 | 16384 | 65536;
  sl0: number;
  tsz: number;
  legal: boolean;
  why: string;
}

export const S2_CONFIG_CASES: readonly S2ConfigCase[] = [
  { granule: 4096, sl0: 0, tsz: 30, legal: true, why: '4KB L2: IAS 34 is the maximum (22..34)' },
  { granule: 4096, sl0: 0, tsz: 29, legal: false, why: '4KB L2: IAS 35 > 34' },
  { granule: 4096, sl0: 1, tsz: 21, legal: true, why: '4KB L1: IAS 43 is the maximum (31..43)' },
  { granule: 4096, sl0: 1, tsz: 20, legal: false, why: '4KB L1: IAS 44 > 43' },
  { granule: 4096, sl0: 1, tsz: 33, legal: true, why: '4KB L1: IAS 31 is the minimum' },
  { granule: 4096, sl0: 1, tsz: 34, legal: false, why: '4KB L1: IAS 30 < 31' },
  { granule: 4096, sl0: 2, tsz: 24, legal: true, why: '4KB L0: IAS 40 is the minimum (40..52)' },
  { granule: 4096, sl0: 2, tsz: 25, legal: false, why: '4KB L0: IAS 39 < 40' },
  { granule: 65536, sl0: 1, tsz: 18, legal: true, why: '64KB L2: IAS 46 is the maximum (30..46)' },
  { granule: 65536, sl0: 1, tsz: 17, legal: false, why: '64KB L2: IAS 47 > 46' },
  { granule: 65536, sl0: 0, tsz: 31, legal: true, why: '64KB L3: IAS 33 is the maximum (17..33)' },
  { granule: 65536, sl0: 0, tsz: 30, legal: false, why: '64KB L3: IAS 34 > 33' },
  { granule: 65536, sl0: 2, tsz: 21, legal: true, why: '64KB L1: IAS 43 is the minimum (43..59)' },
  { granule: 65536, sl0: 2, tsz: 22, legal: false, why: '64KB L1: IAS 42 < 43' },
  { granule: 4096, sl0: 3, tsz: 30, legal: false, why: 'S2SL0=3 is reserved without TTST' },
];

// =================================================================================================
// Nested (Config=0b111) walks through the whole device.
//
// Baseline:
//   STE: S1ContextPtr = IPA 0x5000_0000, S2VMID 3, stage 2 4KB S2SL0=1 S2T0SZ=24 (IAS 40,
//        2 concatenated L1 tables at S2TTB 0x4200_0000), S2PS 48 bits, S2R=1.
//   Stage 2:
//     L1[1]     @ 0x4200_0008 = 1 GB block IPA 0x4000_0000 → PA 0x4000_0000 (identity RAM)
//     L1[0x200] @ 0x4200_1000 → L2 table 0x4201_0000           (IPA 0x80_xxxx_xxxx)
//     L2[0x091] @ 0x4201_0488 → L3 table 0x4201_1000
//     L3[0x145] @ 0x4201_1A28 = page → PA 0x4567_8000          (IPA 0x80_1234_5000)
//       (0x80_1234_5000: L1 = >>30 = 0x200, L2 = (>>21)&0x1FF = 0x91, L3 = (>>12)&0x1FF = 0x145)
//   CD at IPA = PA 0x5000_0000: T0SZ=25 (start L1), 4KB, TTB0 = IPA 0x5001_0000, ASID 9, R=1.
//   Stage 1 for VA 0x4060_3ABC (L1 idx 1, L2 idx 3, L3 idx 3, offset 0xABC):
//     L1[1] @ 0x5001_0008 → L2 table 0x5001_1000
//     L2[3] @ 0x5001_1018 → L3 table 0x5001_2000
//     L3[3] @ 0x5001_2018 = page → IPA 0x80_1234_5000
//   Result: IPA 0x80_1234_5ABC → PA 0x4567_8ABC.
//   Stage-2 L1[3] (IPA 0xC000_0000..0xFFFF_FFFF, entry 0x4200_0018) is empty unless a case fills it.
// =================================================================================================

export const NESTED_VA = 0x4060_3abc;
export const NESTED_VA2 = 0x8000_0abc;
/** For the S2PTW cases: stage-2 L1[3] = Device block → PA 0x4000_0000; see the cases. */
const NESTED_PTW_DESCS: ReadonlyArray<readonly [number, bigint]> = [
  [0x4200_0018, 0x4000_07c5n],
  [0x5001_0008, 0xd001_1003n],
  [0x5001_0010, 0x5001_3003n],
  [0x5001_3000, 0x5001_4003n],
  [0x5001_4000, 0xd000_0f43n],
];
export const NESTED_CD = 0x5000_0000;

export const NESTED_BASE = {
  ste: {
    V: 1,
    Config: 0b111,
    S1ContextPtr: NESTED_CD,
    S1DSS: 0,
    S1CIR: 1,
    S1COR: 1,
    S1CSH: 3,
    S2VMID: 3,
    S2T0SZ: 24,
    S2SL0: 1,
    S2TG: 0,
    S2PS: 5,
    S2AA64: 1,
    S2R: 1,
    S2IR0: 1,
    S2OR0: 1,
    S2SH0: 3,
    S2TTB: 0x4200_0000,
  } as Record<string, number>,
  cd: {
    T0SZ: 25,
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
    ASID: 9,
    TTB0: 0x5001_0000,
  } as Record<string, number>,
  descs: [
    [0x4200_0008, 0x4000_07fdn],
    [0x4200_1000, 0x4201_0003n],
    [0x4201_0488, 0x4201_1003n],
    [0x4201_1a28, 0x4567_87ffn],
    [0x5001_0008, 0x5001_1003n],
    [0x5001_1018, 0x5001_2003n],
    [0x5001_2018, 0x80_1234_5f43n],
  ] as ReadonlyArray<readonly [number, bigint]>,
};

export interface NestedStep {
  va: number;
  access?: Access;
  expect: { pa: number; ipa: number } | { fault: EvName; event: ExpectedEvent };
}

export interface NestedCase {
  name: string;
  ste?: Record<string, number>;
  cd?: Record<string, number>;
  /** written after the baseline descriptors (0n clears an entry) */
  descs?: ReadonlyArray<readonly [number, bigint]>;
  steps: readonly NestedStep[];
  /** log2 sizes of the combined (stage 1+2) TLB entries after the steps */
  combinedShifts?: readonly number[];
}

export const NESTED_CASES: readonly NestedCase[] = [
  {
    // §5.4/§6.4: the stage-1 walk and its checks (F_PERMISSION last) come before the final
    // stage-2 translation, so a stage-1 permission fault wins over a stage-2 fault on the IPA.
    // L3[3] = 0x80_2000_0FC3: a page, AP[2:1]=0b11 (read-only), AF, nG; IPA 0x80_2000_0000 is not mapped by stage 2.
    name: 'nested: a stage-1 permission fault is reported (S2=0) before the unmapped output IPA is looked at',
    descs: [[0x5001_2018, 0x80_2000_0fc3n]],
    steps: [
      {
        va: NESTED_VA,
        access: { write: true },
        expect: { fault: 'F_PERMISSION', event: { S2: 0, CLASS: 'IN' } },
      },
      {
        va: NESTED_VA,
        expect: { fault: 'F_TRANSLATION', event: { S2: 1, CLASS: 'IN', IPA: 0x80_2000_0000 } },
      },
    ],
  },
  {
    name: 'nested: VA → IPA 0x80_1234_5ABC → PA 0x4567_8ABC',
    steps: [
      { va: NESTED_VA, access: { write: true }, expect: { pa: 0x4567_8abc, ipa: 0x80_1234_5abc } },
    ],
    combinedShifts: [12],
  },
  {
    name: 'nested CD fetch: the CD IPA 0xC000_0000 is unmapped → F_TRANSLATION S2=1 CLASS=CD',
    ste: { S1ContextPtr: 0xc000_0000 },
    steps: [
      {
        va: NESTED_VA,
        expect: { fault: 'F_TRANSLATION', event: { S2: 1, CLASS: 'CD', IPA: 0xc000_0000 } },
      },
    ],
  },
  {
    name: 'nested CD fetch: the CD page is write-only at stage 2 → F_PERMISSION S2=1 CLASS=CD',
    ste: { S1ContextPtr: 0xc000_0000 },
    descs: [[0x4200_0018, 0x4000_07bdn]],
    steps: [
      {
        va: NESTED_VA,
        expect: { fault: 'F_PERMISSION', event: { S2: 1, CLASS: 'CD', IPA: 0xc000_0000 } },
      },
    ],
  },
  {
    name: 'nested CD fetch: the stage-2 L2 table at 0x2000_0000 is not RAM → F_WALK_EABT S2=1 CLASS=CD',
    ste: { S1ContextPtr: 0xc000_0000 },
    // S2 L2 index of 0xC000_0000 = (>>21)&0x1FF = 0 → read at 0x2000_0000
    descs: [[0x4200_0018, 0x2000_0003n]],
    steps: [
      {
        va: NESTED_VA,
        expect: { fault: 'F_WALK_EABT', event: { S2: 1, CLASS: 'CD', FetchAddr: 0x2000_0000 } },
      },
    ],
  },
  {
    name: 'nested CD fetch: stage 2 maps the CD to PA 0x1_0000_0000 (no RAM) → F_CD_FETCH',
    ste: { S1ContextPtr: 0xc000_0000 },
    descs: [[0x4200_0018, 0x1_0000_07fdn]],
    steps: [
      { va: NESTED_VA, expect: { fault: 'F_CD_FETCH', event: { FetchAddr: 0x1_0000_0000 } } },
    ],
  },
  {
    name: 'nested stage-1 walk: TTB0 IPA 0xC000_0000 unmapped → F_TRANSLATION S2=1 CLASS=TT (IPA of the L1 descriptor)',
    cd: { TTB0: 0xc000_0000 },
    steps: [
      {
        va: NESTED_VA,
        expect: { fault: 'F_TRANSLATION', event: { S2: 1, CLASS: 'TT', IPA: 0xc000_0000 } },
      },
    ],
  },
  {
    name: 'nested stage-1 walk: the L3 table IPA 0xC000_3000 unmapped → F_TRANSLATION S2=1 CLASS=TT',
    // L3 descriptor IPA = 0xC000_3000 + 3×8
    descs: [[0x5001_1018, 0xc000_3003n]],
    steps: [
      {
        va: NESTED_VA,
        expect: { fault: 'F_TRANSLATION', event: { S2: 1, CLASS: 'TT', IPA: 0xc000_3000 } },
      },
    ],
  },
  {
    name: 'nested stage-1 walk: the table page has AF=0 at stage 2 → F_ACCESS S2=1 CLASS=TT',
    cd: { TTB0: 0xd001_0000 }, // IPA 0xD001_0000 → PA 0x5001_0000 through the L1[3] block
    descs: [[0x4200_0018, 0x4000_03fdn]],
    steps: [
      {
        va: NESTED_VA,
        expect: { fault: 'F_ACCESS', event: { S2: 1, CLASS: 'TT', IPA: 0xd001_0000 } },
      },
    ],
  },
  {
    name: 'nested S2PTW=1: the L2 table read through stage-2 Device memory → F_PERMISSION S2=1 CLASS=TT, also when the stage-2 entry is cached',
    ste: { S2PTW: 1 },
    // L1[1] → L2 table at IPA 0xD001_1000, which the Device block L1[3] maps to PA 0x5001_1000.
    // NESTED_VA2 = 0x8000_0ABC (L1 idx 2, L2 idx 0, L3 idx 0): L1[2] @ 0x5001_0010 → 0x5001_3000,
    //   L2[0] @ 0x5001_3000 → 0x5001_4000, L3[0] @ 0x5001_4000 = page → IPA 0xD000_0000 (Device block)
    //   → PA 0x4000_0000 + 0x1000_0000 = 0x5000_0000. A data access to Device memory is allowed, and
    //   it caches the stage-2 block entry that the later table read hits.
    descs: [...NESTED_PTW_DESCS],
    steps: [
      { va: NESTED_VA2, expect: { pa: 0x5000_0abc, ipa: 0xd000_0abc } },
      {
        va: NESTED_VA,
        expect: { fault: 'F_PERMISSION', event: { S2: 1, CLASS: 'TT', IPA: 0xd001_1000 } },
      },
      { va: NESTED_VA2, expect: { pa: 0x5000_0abc, ipa: 0xd000_0abc } },
    ],
  },
  {
    name: 'nested S2PTW=1: a CD fetch from stage-2 Device memory → F_PERMISSION S2=1 CLASS=CD',
    ste: { S2PTW: 1, S1ContextPtr: 0xd000_0000 }, // → PA 0x5000_0000 (the CD) through the Device block
    descs: [[0x4200_0018, 0x4000_07c5n]],
    steps: [
      {
        va: NESTED_VA,
        expect: { fault: 'F_PERMISSION', event: { S2: 1, CLASS: 'CD', IPA: 0xd000_0000 } },
      },
    ],
  },
  {
    name: 'nested S2PTW=0: the same Device-memory table walk is allowed',
    ste: { S2PTW: 0 },
    descs: [...NESTED_PTW_DESCS],
    steps: [
      { va: NESTED_VA2, expect: { pa: 0x5000_0abc, ipa: 0xd000_0abc } },
      { va: NESTED_VA, expect: { pa: 0x4567_8abc, ipa: 0x80_1234_5abc } },
    ],
  },
  {
    name: 'nested: abort reading a stage-1 descriptor after stage 2 succeeded → F_WALK_EABT S2=0 CLASS=TT',
    cd: { TTB0: 0xc000_0000 },
    // IPA 0xC000_0008 → PA 0x1_0000_0008 (no RAM)
    descs: [[0x4200_0018, 0x1_0000_07fdn]],
    steps: [
      {
        va: NESTED_VA,
        expect: { fault: 'F_WALK_EABT', event: { S2: 0, CLASS: 'TT', FetchAddr: 0x1_0000_0008 } },
      },
    ],
  },
  {
    name: 'nested: abort reading a stage-2 descriptor during the stage-1 walk → F_WALK_EABT S2=1 CLASS=TT',
    cd: { TTB0: 0xc000_0000 },
    descs: [[0x4200_0018, 0x2000_0003n]],
    steps: [
      {
        va: NESTED_VA,
        expect: { fault: 'F_WALK_EABT', event: { S2: 1, CLASS: 'TT', FetchAddr: 0x2000_0000 } },
      },
    ],
  },
  {
    name: 'nested final stage 2: output IPA 0x80_2000_0ABC unmapped → F_TRANSLATION S2=1 CLASS=IN',
    // S2 L2 index of 0x80_2000_0000 = (0x2000_0000>>21)&0x1FF = 0x100: entry 0x4201_0800 is empty
    descs: [[0x5001_2018, 0x80_2000_0f43n]],
    steps: [
      {
        va: NESTED_VA,
        expect: { fault: 'F_TRANSLATION', event: { S2: 1, CLASS: 'IN', IPA: 0x80_2000_0000 } },
      },
    ],
  },
  {
    name: 'nested final stage 2: write to an S2AP=0b01 page → F_PERMISSION S2=1 CLASS=IN; a read is allowed',
    descs: [[0x4201_1a28, 0x4567_877fn]],
    steps: [
      {
        va: NESTED_VA,
        access: { write: true },
        expect: {
          fault: 'F_PERMISSION',
          event: { S2: 1, CLASS: 'IN', IPA: 0x80_1234_5000, RnW: 0 },
        },
      },
      { va: NESTED_VA, expect: { pa: 0x4567_8abc, ipa: 0x80_1234_5abc } },
      {
        va: NESTED_VA,
        access: { write: true },
        expect: {
          fault: 'F_PERMISSION',
          event: { S2: 1, CLASS: 'IN', IPA: 0x80_1234_5000, RnW: 0 },
        },
      },
    ],
  },
  {
    name: 'nested final stage 2: AF=0 → F_ACCESS S2=1 CLASS=IN',
    descs: [[0x4201_1a28, 0x4567_83ffn]],
    steps: [
      {
        va: NESTED_VA,
        expect: { fault: 'F_ACCESS', event: { S2: 1, CLASS: 'IN', IPA: 0x80_1234_5000 } },
      },
    ],
  },
  {
    name: 'nested final stage 2: output 0x100_0000_0000 beyond S2PS=40 bits → F_ADDR_SIZE S2=1 CLASS=IN',
    ste: { S2PS: 2 },
    descs: [[0x4201_1a28, 0x100_0000_07ffn]],
    steps: [
      {
        va: NESTED_VA,
        expect: { fault: 'F_ADDR_SIZE', event: { S2: 1, CLASS: 'IN', IPA: 0x80_1234_5000 } },
      },
    ],
  },
  {
    name: 'nested stage-1 translation fault (invalid L3 descriptor) → S2=0 CLASS=IN',
    descs: [[0x5001_2018, 0n]],
    steps: [{ va: NESTED_VA, expect: { fault: 'F_TRANSLATION', event: { S2: 0, CLASS: 'IN' } } }],
  },
  {
    name: 'nested stage-1 permission fault (read-only page, write) → S2=0 CLASS=IN',
    descs: [[0x5001_2018, 0x80_1234_5fc3n]],
    steps: [
      {
        va: NESTED_VA,
        access: { write: true },
        expect: { fault: 'F_PERMISSION', event: { S2: 0, CLASS: 'IN', RnW: 0 } },
      },
    ],
  },
  {
    name: 'nested combined entry size = MIN(S1 2 MB block, S2 4 KB page): the next S2 page is walked, not hit',
    // S1 L2[3] @ 0x5001_1018 = 2 MB block → IPA 0x80_1220_0000; VA 0x4060_3ABC → IPA 0x80_1220_3ABC
    // S2 L2[0x91] covers 0x80_1220_0000 too (0x1220_0000>>21 = 0x91); L3 idx 3 @ 0x4201_1018 → PA 0x4567_9000
    // VA + 0x1000 → IPA 0x80_1220_4ABC: S2 L3 idx 4 @ 0x4201_1020 is empty
    descs: [
      [0x5001_1018, 0x80_1220_0f41n],
      [0x4201_1018, 0x4567_97ffn],
    ],
    steps: [
      { va: NESTED_VA, expect: { pa: 0x4567_9abc, ipa: 0x80_1220_3abc } },
      {
        va: NESTED_VA + 0x1000,
        expect: { fault: 'F_TRANSLATION', event: { S2: 1, CLASS: 'IN', IPA: 0x80_1220_4000 } },
      },
      { va: NESTED_VA, expect: { pa: 0x4567_9abc, ipa: 0x80_1220_3abc } },
    ],
    combinedShifts: [12],
  },
];
