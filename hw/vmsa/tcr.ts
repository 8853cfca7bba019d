/**
 * Translation control encodings (TCR_ELx / VTCR_EL2), as the CD (TG0, IR0, OR0, SH0, IPS) and
 * the STE (S2TG, S2IR0, S2OR0, S2SH0, S2PS, and S1CIR/S1COR/S1CSH for the CD fetch) carry them.
 * The granule encodings sit with the level geometry (geometry.ts: TG0, TG1); the
 * shareability encoding is the descriptor's (descriptor.ts: SH).
 */
export { SH } from './descriptor.ts';

/** IRGN/ORGN: the walk's cacheability. */
export const RGN = { NC: 0b00, WBWA: 0b01, WT: 0b10, WB: 0b11 } as const;

/** Address sizes in bits by IPS/PS encoding (also IDR5.OAS's encoding). */
export const PS_BITS = [32, 36, 40, 42, 44, 48, 52, 56] as const;

/** The IPS/PS encoding of an address size, or -1 when it has none. */
export function psEncoding(bits: number): number {
  return (PS_BITS as readonly number[]).indexOf(bits);
}
