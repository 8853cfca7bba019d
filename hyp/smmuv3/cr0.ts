/** The CR0 and GERROR bits the emulation acts on, as declared in hw/smmu/regs.ts and gerror.ts. */
import { CR0_BITS } from '../../hw/smmu/regs.ts';
import { GERR } from '../../hw/smmu/gerror.ts';

export const { SMMUEN, PRIQEN, CMDQEN, ATSCHK } = CR0_BITS;
export const EVTQEN = CR0_BITS.EVENTQEN;
export const GERR_CMDQ = GERR.CMDQ_ERR;
