/**
 * The draws every target's planner makes first for a machine, from the episode's random stream
 * and in this order: the hypervisor's failure policy, the weakened rules it keeps, and whether
 * the acting side's driver is left unprobed (a raw machine).
 */
import type { FailurePolicy, RuleName } from '../../hyp/policy/policy.ts';
import type { Rng } from '../../host/malicious/grammar.ts';
import type { FuzzOptions } from './options.ts';

export function drawHypervisor(
  o: FuzzOptions,
  base: RuleName[],
  rng: Rng,
): { failure: FailurePolicy; weaken: RuleName[]; raw: boolean } {
  const choice = o.failure ?? 'mixed';
  const failure: FailurePolicy =
    choice === 'mixed'
      ? rng.weighted<FailurePolicy>([
          [5, 'panic'],
          [50, 'reject'],
          [45, 'log'],
        ])
      : choice;
  let weaken = base;
  if (weaken.length > 1) {
    // several weakened rules: each machine keeps a random non-empty subset, so one gap does not hide the others
    const keep = weaken.filter(() => rng.chance(0.5));
    weaken = keep.length ? keep : [rng.pick(weaken)];
  }
  const raw = rng.chance(1 / 7);
  return { failure, weaken, raw };
}
