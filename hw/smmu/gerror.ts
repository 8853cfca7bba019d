/**
 * GERROR / GERRORN (IHI 0070 6.3.17–18): global errors use a toggle protocol. An error is
 * active while GERROR[x] != GERRORN[x]. The SMMU activates it by toggling GERROR[x], and never
 * toggles a flag that is already active. Software acknowledges by writing GERRORN[x] = GERROR[x].
 */
import { GERROR, GERROR_IMPLEMENTED_MASK } from './regs.ts';
import { wordMask } from '../bits.ts';

export const GERR = {
  CMDQ_ERR: wordMask(GERROR.CMDQ_ERR),
  EVENTQ_ABT_ERR: wordMask(GERROR.EVENTQ_ABT_ERR),
  PRIQ_ABT_ERR: wordMask(GERROR.PRIQ_ABT_ERR),
  MSI_CMDQ_ABT_ERR: wordMask(GERROR.MSI_CMDQ_ABT_ERR),
  MSI_EVENTQ_ABT_ERR: wordMask(GERROR.MSI_EVENTQ_ABT_ERR),
  MSI_PRIQ_ABT_ERR: wordMask(GERROR.MSI_PRIQ_ABT_ERR),
  MSI_GERROR_ABT_ERR: wordMask(GERROR.MSI_GERROR_ABT_ERR),
  SFM_ERR: wordMask(GERROR.SFM_ERR),
} as const;

export class GlobalErrors {
  gerror = 0;
  gerrorn = 0;
  /** number of activations per bit, for stats */
  readonly activations = new Uint32Array(9);

  /** Called when an error becomes active (for the GERROR interrupt). */
  constructor(private readonly onActivate: (bit: number) => void) {}

  active(bit: number): boolean {
    return ((this.gerror ^ this.gerrorn) & bit) !== 0;
  }

  get activeMask(): number {
    return (this.gerror ^ this.gerrorn) & GERROR_IMPLEMENTED_MASK;
  }

  /** Activate an error; returns false if it was already active (nothing is logged then). */
  activate(bit: number): boolean {
    if (this.active(bit)) return false;
    this.gerror = (this.gerror ^ bit) >>> 0;
    this.activations[31 - Math.clz32(bit)]!++;
    this.onActivate(bit);
    return true;
  }

  /** Software write of GERRORN. */
  writeN(v: number): void {
    this.gerrorn = (v & GERROR_IMPLEMENTED_MASK) >>> 0;
  }

  reset(): void {
    this.gerror = 0;
    this.gerrorn = 0;
  }
}
