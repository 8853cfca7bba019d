/**
 * GBPA, the Global Bypass Attribute register (IHI 0070 6.3.14).
 *
 * While SMMUEN=0, GBPA decides what happens to incoming Non-secure traffic: ABORT=1 aborts
 * it (recording no event); ABORT=0 passes it through with the GBPA attribute overrides.
 * Update protocol: software does one 32-bit write with Update=1, then polls until Update=0.
 * From SMMUv3.2 a write with Update=0, or a write while Update=1, is IGNORED.
 * This model completes an update immediately (as QEMU does), so Update always reads 0.
 */
import { GBPA } from './regs.ts';
import { wordMask, get } from '../bits.ts';

const FIELDS_MASK = [
  GBPA.MemAttr,
  GBPA.MTCFG,
  GBPA.ALLOCCFG,
  GBPA.SHCFG,
  GBPA.PRIVCFG,
  GBPA.INSTCFG,
  GBPA.ABORT,
].reduce((m, f) => (m | wordMask(f)) >>> 0, 0);
const UPDATE = wordMask(GBPA.Update);
const ABORT = wordMask(GBPA.ABORT);

/** QEMU's reset value: SHCFG=0b01 (use incoming), ABORT=0. The architecture leaves it IMPLEMENTATION DEFINED. */
export const GBPA_RESET_DEFAULT = 0x1000;

export class Gbpa {
  value: number;
  updates = 0;
  ignoredWrites = 0;

  constructor(reset: number = GBPA_RESET_DEFAULT) {
    this.value = (reset & FIELDS_MASK) >>> 0;
  }

  read(): number {
    return this.value;
  }

  write(v: number): void {
    if ((v & UPDATE) === 0) {
      this.ignoredWrites++;
      return;
    }
    this.value = (v & FIELDS_MASK) >>> 0;
    this.updates++;
  }

  get abort(): boolean {
    return (this.value & ABORT) !== 0;
  }

  field(name: keyof typeof GBPA): number {
    return get([this.value], GBPA[name]);
  }
}
