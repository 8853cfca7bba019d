/**
 * TLB invalidation commands → what they must remove (reference §4.4), including range
 * invalidation (IDR3.RIL: TG, NUM, SCALE, TTL) and the ASID/VMID width rules.
 */
import { OP } from './commands.ts';
import { STAGE, WORLD, type TlbiScope } from './tlb.ts';
import type { SmmuFeatures } from './features.ts';

const ALL_STAGES = [STAGE.S1, STAGE.S2, STAGE.S12];
const S1_STAGES = [STAGE.S1, STAGE.S12];

/** The scope of a TLBI command, or null when the command need not do anything. */
export function tlbiScope(op: number, w: Uint32Array, ft: SmmuFeatures, e2h: boolean): TlbiScope | null {
  let vmid = w[1]! & 0xffff;
  const asidRaw = w[1]! >>> 16;
  if (!ft.s2p) vmid = 0; // NH_* match the VMID only if stage 2 is implemented
  else if (!ft.vmid16 && vmid >>> 8) return null; // upper bits set: need not do anything
  if (!ft.asid16 && asidRaw >>> 8 && (op === OP.TLBI_NH_ASID || op === OP.TLBI_NH_VA || op === OP.TLBI_EL2_ASID || op === OP.TLBI_EL2_VA)) return null;
  const asid = asidRaw;
  const range = (): Pick<TlbiScope, 'lo' | 'hi' | 'g' | 'level'> => {
    const addr = (w[3]! & 0x1fffff) * 0x1_0000_0000 + ((w[2]! & 0xfffff000) >>> 0);
    const tg = ft.ril ? (w[2]! >>> 10) & 3 : 0;
    if (tg === 0) return { lo: addr, hi: addr + 1 };
    const g = tg === 1 ? 12 : tg === 2 ? 14 : 16;
    const num = (w[0]! >>> 12) & 0x1f;
    const scale = (w[0]! >>> 20) & 0x3f;
    let ttl = (w[2]! >>> 8) & 3;
    if (g === 14 && ttl === 1) ttl = 0; // reserved without DS: treated as 0
    const bytes = (num + 1) * 2 ** scale * 2 ** g;
    return { lo: addr, hi: addr + bytes, g, ...(ttl ? { level: ttl } : {}) };
  };
  const el1 = [WORLD.NS_EL1];
  switch (op) {
    case OP.TLBI_NH_ALL: return { world: el1, stages: S1_STAGES, vmid, global: true };
    case OP.TLBI_NH_ASID: return { world: el1, stages: S1_STAGES, vmid, asid, global: false, nonGlobalOnly: true };
    case OP.TLBI_NH_VA: return { world: el1, stages: S1_STAGES, vmid, asid, global: true, ...range() };
    case OP.TLBI_NH_VAA: return { world: el1, stages: S1_STAGES, vmid, global: true, ...range() };
    case OP.TLBI_EL2_ALL: return { world: [WORLD.NS_EL2, WORLD.NS_EL2_E2H], stages: [STAGE.S1], global: true };
    case OP.TLBI_EL2_ASID: return { world: [WORLD.NS_EL2_E2H], stages: [STAGE.S1], asid, global: false, nonGlobalOnly: true };
    case OP.TLBI_EL2_VA:
      return e2h ? { world: [WORLD.NS_EL2_E2H], stages: [STAGE.S1], asid, global: true, ...range() } : { world: [WORLD.NS_EL2], stages: [STAGE.S1], global: true, ...range() };
    case OP.TLBI_EL2_VAA: return { world: [e2h ? WORLD.NS_EL2_E2H : WORLD.NS_EL2], stages: [STAGE.S1], global: true, ...range() };
    case OP.TLBI_S12_VMALL: return { world: el1, stages: ALL_STAGES, vmid: w[1]! & 0xffff, global: true };
    case OP.TLBI_S2_IPA: {
      const r = range();
      // the S2_IPA address is IPA[55:12]
      return { world: el1, stages: [STAGE.S2], vmid: w[1]! & 0xffff, global: true, ...r };
    }
    case OP.TLBI_NSNH_ALL: return { world: el1, stages: ALL_STAGES, global: true };
  }
  return null;
}
