/** Every step op a scenario may use, by name. Later layers add their vocabularies here. */
import type { StepDef } from '../engine/context.ts';
import { RAW_STEPS } from './raw.ts';
import { STRUCT_STEPS } from './structs.ts';
import { DRIVER_STEPS } from './driver.ts';
import { HYP_STEPS } from './hyp.ts';
import { GUEST_STEPS } from './guest.ts';

export const STEPS: ReadonlyMap<string, StepDef<unknown>> = new Map(
  [...RAW_STEPS, ...STRUCT_STEPS, ...DRIVER_STEPS, ...HYP_STEPS, ...GUEST_STEPS].map((s) => [
    s.op,
    s,
  ]),
);
