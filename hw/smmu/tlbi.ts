/**
 * TLB invalidation commands → what they must remove (reference §4.4), including range
 * invalidation (IDR3.RIL: TG, NUM, SCALE, TTL) and the ASID/VMID width rules. The scope is
 * written into a caller-supplied object, so the command path allocates nothing.
 */
import { OP, VA, NUM, SCALE, TTL, TG, TLBI_TG, VMID, ASID } from './commands.ts';
import { inWord, addressMasks } from '../bits.ts';
import { STAGE, WORLD, type TlbiScope } from './tlb.ts';
import type { SmmuFeatures } from './features.ts';

const S1 = 1 << STAGE.S1;
const S2 = 1 << STAGE.S2;
const S12 = 1 << STAGE.S12;
const W_EL1 = 1 << WORLD.NS_EL1;
const W_EL2 = 1 << WORLD.NS_EL2;
const W_E2H = 1 << WORLD.NS_EL2_E2H;

// Command fields as shift / mask in their word, from the declarations in commands.ts
/** Address[63:12] (VA; IPA[55:12] is the same bits) over words 2-3, kept below 2^53 */
const ADDR = addressMasks(inWord(VA, 2), 53);
const ADDR_LO_M = ADDR.lo;
const ADDR_HI_M = ADDR.hi;
const TG_SH = inWord(TG, 2).shift;
const TG_M = TG.mask;
const TTL_SH = inWord(TTL, 2).shift;
const TTL_M = TTL.mask;
const NUM_SH = inWord(NUM, 0).shift;
const NUM_M = NUM.mask;
const SCALE_SH = inWord(SCALE, 0).shift;
const SCALE_M = SCALE.mask;
const VMID_SH = inWord(VMID, 1).shift;
const VMID_M = VMID.mask;
const ASID_SH = inWord(ASID, 1).shift;
const ASID_M = ASID.mask;

function setRange(s: TlbiScope, w: Uint32Array, ft: SmmuFeatures): void {
  const addr = (w[3]! & ADDR_HI_M) * 0x1_0000_0000 + ((w[2]! & ADDR_LO_M) >>> 0);
  const tg = ft.ril ? (w[2]! >>> TG_SH) & TG_M : TLBI_TG.NONE;
  if (tg === TLBI_TG.NONE) {
    // non-range: any entry containing the address
    s.lo = addr;
    s.hi = addr + 1;
    return;
  }
  const g = tg === TLBI_TG.SZ_4K ? 12 : tg === TLBI_TG.SZ_16K ? 14 : 16;
  const num = (w[0]! >>> NUM_SH) & NUM_M;
  const scale = (w[0]! >>> SCALE_SH) & SCALE_M;
  let ttl = (w[2]! >>> TTL_SH) & TTL_M;
  if (g === 14 && ttl === 1) ttl = 0; // reserved without DS: treated as 0
  s.lo = addr;
  s.hi = addr + (num + 1) * 2 ** scale * 2 ** g;
  s.g = g;
  s.level = ttl ? ttl : -1;
}

/** Fill `s` with the scope of a TLBI command; returns false when the command need not do anything. */
export function tlbiScope(
  op: number,
  w: Uint32Array,
  ft: SmmuFeatures,
  e2h: boolean,
  s: TlbiScope,
): boolean {
  let vmid = (w[1]! >>> VMID_SH) & VMID_M;
  const asid = (w[1]! >>> ASID_SH) & ASID_M;
  if (!ft.s2p)
    vmid = 0; // NH_* match the VMID only if stage 2 is implemented
  else if (!ft.vmid16 && vmid >>> 8) return false; // upper bits set: need not do anything
  if (
    !ft.asid16 &&
    asid >>> 8 &&
    (op === OP.TLBI_NH_ASID ||
      op === OP.TLBI_NH_VA ||
      op === OP.TLBI_EL2_ASID ||
      op === OP.TLBI_EL2_VA)
  )
    return false;
  s.vmid = -1;
  s.asid = -1;
  s.global = true;
  s.nonGlobalOnly = false;
  s.lo = -1;
  s.hi = 0;
  s.g = -1;
  s.level = -1;
  switch (op) {
    case OP.TLBI_NH_ALL:
      s.worlds = W_EL1;
      s.stages = S1 | S12;
      s.vmid = vmid;
      return true;
    case OP.TLBI_NH_ASID:
      s.worlds = W_EL1;
      s.stages = S1 | S12;
      s.vmid = vmid;
      s.asid = asid;
      s.global = false;
      s.nonGlobalOnly = true;
      return true;
    case OP.TLBI_NH_VA:
      s.worlds = W_EL1;
      s.stages = S1 | S12;
      s.vmid = vmid;
      s.asid = asid;
      setRange(s, w, ft);
      return true;
    case OP.TLBI_NH_VAA:
      s.worlds = W_EL1;
      s.stages = S1 | S12;
      s.vmid = vmid;
      setRange(s, w, ft);
      return true;
    case OP.TLBI_EL2_ALL:
      s.worlds = W_EL2 | W_E2H;
      s.stages = S1;
      return true;
    case OP.TLBI_EL2_ASID:
      s.worlds = W_E2H;
      s.stages = S1;
      s.asid = asid;
      s.global = false;
      s.nonGlobalOnly = true;
      return true;
    case OP.TLBI_EL2_VA:
      // E2H=1: EL2-E2H entries with the ASID (or global); E2H=0: NS-EL2 entries, ASID ignored
      s.worlds = e2h ? W_E2H : W_EL2;
      s.stages = S1;
      if (e2h) s.asid = asid;
      setRange(s, w, ft);
      return true;
    case OP.TLBI_EL2_VAA:
      s.worlds = e2h ? W_E2H : W_EL2;
      s.stages = S1;
      setRange(s, w, ft);
      return true;
    case OP.TLBI_S12_VMALL:
      s.worlds = W_EL1;
      s.stages = S1 | S2 | S12;
      s.vmid = (w[1]! >>> VMID_SH) & VMID_M;
      return true;
    case OP.TLBI_S2_IPA:
      // stage-2 entries only: combined stage 1+2 entries are not required to go
      s.worlds = W_EL1;
      s.stages = S2;
      s.vmid = (w[1]! >>> VMID_SH) & VMID_M;
      setRange(s, w, ft);
      return true;
    case OP.TLBI_NSNH_ALL:
      s.worlds = W_EL1;
      s.stages = S1 | S2 | S12;
      return true;
  }
  return false;
}
