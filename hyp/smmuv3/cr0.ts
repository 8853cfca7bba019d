/** The CR0 and GERROR bits the emulation acts on, as declared in hw/smmu/regs.ts. */
import { wordMask } from '../../hw/bits.ts';
import { CR0_BITS, GERROR } from '../../hw/smmu/regs.ts';

export const { SMMUEN, PRIQEN, CMDQEN, ATSCHK } = CR0_BITS;
export const EVTQEN = CR0_BITS.EVENTQEN;
export const GERR_CMDQ = wordMask(GERROR.CMDQ_ERR);
