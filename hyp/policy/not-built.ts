/**
 * A design the policy names that has no implementation yet. Each strategy interface refuses
 * its unbuilt choices through its own selector (the same place a built one is chosen), so
 * filling one in is adding an implementation and a case there.
 */
import { HypBootError } from '../boot-error.ts';
import type { HypPolicy } from './policy.ts';

export class NotBuiltError extends HypBootError {
  constructor(
    readonly field: keyof HypPolicy,
    readonly value: string,
    built: string,
  ) {
    super(`policy ${field}: '${value}' is not built yet (only ${built})`);
    this.name = 'NotBuiltError';
  }
}
