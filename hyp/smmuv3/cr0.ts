/** The CR0 and GERROR bits the emulation acts on, from their declarations in hw/smmu/regs.ts. */
import { wordMask } from '../../hw/bits.ts';
import { CR0, GERROR } from '../../hw/smmu/regs.ts';

export const SMMUEN = wordMask(CR0.SMMUEN);
export const PRIQEN = wordMask(CR0.PRIQEN);
export const EVTQEN = wordMask(CR0.EVENTQEN);
export const CMDQEN = wordMask(CR0.CMDQEN);
export const ATSCHK = wordMask(CR0.ATSCHK);
export const GERR_CMDQ = wordMask(GERROR.CMDQ_ERR);
