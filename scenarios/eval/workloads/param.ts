/** A workload parameter: an integer in [min, max] with a default. */
import { z } from 'zod';

export function intParam(def: number, min = 1, max = 1 << 20) {
  return z.number().int().min(min).max(max).default(def);
}
