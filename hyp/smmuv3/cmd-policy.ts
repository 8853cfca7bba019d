/**
 * pKVM's per-opcode policy for host commands (designs.md §1.6), hardened where the reference
 * notes gaps. `checkCommand` looks at (and may rewrite) the hypervisor's private copy of one
 * command; it never reads host memory. It allocates nothing unless the command is refused.
 *
 * | opcode                               | policy                                                   |
 * |--------------------------------------|----------------------------------------------------------|
 * | PREFETCH_CONFIG / PREFETCH_ADDR      | forwarded                                                |
 * | CFGI_STE                             | Leaf=1 required; the STE is reshadowed, then forwarded   |
 * | CFGI_STE_RANGE                       | only Range=31 (CFGI_ALL); forwarded, no reshadow         |
 * | CFGI_CD / CFGI_CD_ALL                | forwarded (the host owns its CDs)                        |
 * | TLBI_NH_ASID / NH_VA / NH_VAA        | only with VMID 0                                         |
 * | TLBI_NH_ALL, TLBI_EL2_*, TLBI_S12_VMALL, TLBI_S2_IPA | refused                                  |
 * | CMD_SYNC                             | CS=IRQ rewritten to CS=SEV with no MSI (closes G1)       |
 * | everything else                      | forwarded (the hardware refuses what is illegal)         |
 */
import {
  OP,
  CS as CS_F,
  MSIAddress as MSIADDR_F,
  MSIData as MSIDATA_F,
  VMID as VMID_F,
  Leaf as LEAF_F,
  Range as RANGE_F,
  StreamID as SID_F,
} from '../../hw/smmu/commands.ts';
import type { RuleName } from '../policy/policy.ts';

/** verdicts */
export const FORWARD = 0;
/** CFGI_STE: reshadow the StreamID in `sid`, then forward */
export const RESHADOW = 1;
/** refused: `rule` and `reason` say why */
export const REFUSE = 2;

export interface CmdCheck {
  /** rules switched off */
  weak: (r: RuleName) => boolean;
  /** set on RESHADOW */
  sid: number;
  /** set on REFUSE */
  rule: RuleName;
  reason: string;
  /** CMD_SYNCs rewritten (G1) */
  syncRewrites: number;
}

// field positions, module-local for the hot path
const C = {
  CFGI_STE: OP.CFGI_STE,
  CFGI_STE_RANGE: OP.CFGI_STE_RANGE,
  TLBI_NH_ALL: OP.TLBI_NH_ALL,
  TLBI_NH_ASID: OP.TLBI_NH_ASID,
  TLBI_NH_VA: OP.TLBI_NH_VA,
  TLBI_NH_VAA: OP.TLBI_NH_VAA,
  TLBI_EL2_ALL: OP.TLBI_EL2_ALL,
  TLBI_EL2_ASID: OP.TLBI_EL2_ASID,
  TLBI_EL2_VA: OP.TLBI_EL2_VA,
  TLBI_EL2_VAA: OP.TLBI_EL2_VAA,
  TLBI_S12_VMALL: OP.TLBI_S12_VMALL,
  TLBI_S2_IPA: OP.TLBI_S2_IPA,
  CMD_SYNC: OP.CMD_SYNC,
};
const LEAF_W = LEAF_F.word,
  LEAF_S = LEAF_F.shift;
const RANGE_W = RANGE_F.word,
  RANGE_S = RANGE_F.shift,
  RANGE_M = RANGE_F.mask;
const VMID_W = VMID_F.word,
  VMID_S = VMID_F.shift,
  VMID_M = VMID_F.mask;
const SID_W = SID_F.word;
const CS_W = CS_F.word,
  CS_S = CS_F.shift,
  CS_M = CS_F.mask;
const CS_IRQ = 1,
  CS_SEV = 2;
const MSIDATA_W = MSIDATA_F.word;
const MSIADDR_LO_W = MSIADDR_F.word;

function refuse(c: CmdCheck, rule: RuleName, reason: string): number {
  if (c.weak(rule)) return FORWARD;
  c.rule = rule;
  c.reason = reason;
  return REFUSE;
}

/** Check (and possibly rewrite in place) one host command. */
export function checkCommand(w: Uint32Array, c: CmdCheck): number {
  const op = w[0]! & 0xff;
  switch (op) {
    case C.CFGI_STE:
      if (((w[LEAF_W]! >>> LEAF_S) & 1) === 0 && !c.weak('cfgi-leaf')) {
        c.rule = 'cfgi-leaf';
        c.reason = `CFGI_STE StreamID ${w[SID_W]! >>> 0} with Leaf=0`;
        return REFUSE;
      }
      c.sid = w[SID_W]! >>> 0;
      return RESHADOW;
    case C.CFGI_STE_RANGE: {
      const range = (w[RANGE_W]! >>> RANGE_S) & RANGE_M;
      return range === 31
        ? FORWARD
        : refuse(
            c,
            'cfgi-all-range',
            `CFGI_STE_RANGE with Range=${range} (only 31, CFGI_ALL, is allowed)`,
          );
    }
    case C.TLBI_NH_ASID:
    case C.TLBI_NH_VA:
    case C.TLBI_NH_VAA: {
      const vmid = (w[VMID_W]! >>> VMID_S) & VMID_M;
      return vmid === 0
        ? FORWARD
        : refuse(
            c,
            'tlbi-vmid',
            `${op === C.TLBI_NH_ASID ? 'TLBI_NH_ASID' : op === C.TLBI_NH_VA ? 'TLBI_NH_VA' : 'TLBI_NH_VAA'} with VMID ${vmid} (the host's VMID is 0)`,
          );
    }
    case C.TLBI_NH_ALL:
      return refuse(c, 's2-tlbi', 'TLBI_NH_ALL (Linux never issues it)');
    case C.TLBI_EL2_ALL:
    case C.TLBI_EL2_ASID:
    case C.TLBI_EL2_VA:
    case C.TLBI_EL2_VAA:
      return refuse(
        c,
        's2-tlbi',
        `TLBI_EL2_* (opcode 0x${op.toString(16)}): EL2 translation belongs to the hypervisor`,
      );
    case C.TLBI_S12_VMALL:
      return refuse(c, 's2-tlbi', 'TLBI_S12_VMALL: stage 2 belongs to the hypervisor');
    case C.TLBI_S2_IPA:
      return refuse(c, 's2-tlbi', 'TLBI_S2_IPA: stage 2 belongs to the hypervisor');
    case C.CMD_SYNC:
      if (((w[CS_W]! >>> CS_S) & CS_M) === CS_IRQ && !c.weak('sync-msi')) {
        // rewrite the copy (the copy is what reaches the hardware): SEV, no MSI
        w[CS_W] = ((w[CS_W]! & ~(CS_M << CS_S)) | (CS_SEV << CS_S)) >>> 0;
        w[MSIDATA_W] = 0;
        w[MSIADDR_LO_W] = 0;
        w[MSIADDR_LO_W + 1] = 0;
        c.syncRewrites++;
      }
      return FORWARD;
    default:
      return FORWARD;
  }
}
