/**
 * The malicious-host fuzzer (scenarios/fuzz/target-host.ts, host/malicious/attacker.ts): its operations are
 * ordinary scenario steps, a campaign is determined by its seed (and by nothing else: one
 * worker or two), it covers every opcode and every trapped register, it has teeth (every
 * sanitizer rule with a consequence, switched off, is found from a fixed seed within a small
 * budget, attributed to that rule, and shrunk to a reproducer that `smmulab run` replays), and
 * `--policy pkvm-v6` rediscovers the v6-era gaps (designs.md §1.13 G1–G4 and ATSCHK).
 *
 * Budgets are CI-sized (a few thousand iterations); `npm run fuzz:long` runs long campaigns.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { smmulab } from '../cli/in-process.ts';
import { fuzz, sampleOperations } from '../../../scenarios/fuzz/engine.ts';
import { fuzzParallel } from '../../../scenarios/fuzz/parallel.ts';
import { stepJson } from '../../../scenarios/fuzz/reproducer.ts';
import { coverageGaps, machineConfig } from '../../../scenarios/fuzz/target-host.ts';
import type { FuzzFinding, FuzzResult, FindingKind } from '../../../scenarios/fuzz/result.ts';
import { STEPS } from '../../../scenarios/steps/index.ts';
import { loadScenarios } from '../../../scenarios/engine/loader.ts';
import { runScenario } from '../../../scenarios/engine/runner.ts';
import { RULE_NAMES, V6_GAPS, type RuleName } from '../../../hyp/policy/policy.ts';

/** the fixed seed of the teeth tests, and their budget: iterations (attacks), about twice as many operations */
const SEED = 1;
const BUDGET = 10_000;

/**
 * Every host-side sanitizer rule, and how its weakening shows:
 * - breach: the isolation oracle (a device reaches, or the SMMU wrote, protected memory);
 * - invariant: the hypervisor breaks its own invariant: it installs an STE that is not a
 *   sanitized one, forwards a host command the policy refuses, or lets the hardware CR1 differ
 *   from its template. For the command rules this is the only consequence in this model: the
 *   commands they refuse are invalidations, which can only shrink what a device reaches; CR1
 *   sets the attributes of the SMMU's own accesses, which this coherent model does not use;
 * - exception: the hypervisor reads host memory it has not shared with itself, which in pKVM
 *   is a data abort at EL2 (hyp/mem/hostmem.ts HypAccessFault): cfgi-sid (a StreamID outside the
 *   shared host table), queue-share (nothing shared), strtab-guard and cmdq-guard (a table or
 *   queue moved while in use, and used at once, unshared).
 * queue-guard shows on the SMMUv3.1 machines the fuzzer also builds (one in four), whose
 * guarded registers take writes (CONSTRAINED UNPREDICTABLE before v3.2): an EVENTQ_BASE moved
 * into hypervisor memory while enabled. reg-access shows as a 64-bit base written as two 32-bit
 * halves, passed raw to the hardware's STRTAB_BASE while SMMUEN=0.
 * sid-owner and guest-teardown need a guest: the host creates one (its kernel attaches a device
 * and DMAs), then reconfigures the guest's StreamID from its own table (a host STE on a guest's
 * device), or destroys the guest while the device DMAs (a DMA and the oracle after every
 * teardown phase). The vSMMU's own rules are the guest target's: test/scenarios/fuzz/guest.test.ts.
 * Budgets are iterations from seed 1 (about 2.2 operations each); the run stops at the finding.
 */
const TEETH: ReadonlyArray<[RuleName, FindingKind, number]> = [
  ['cfgi-leaf', 'invariant', BUDGET],
  ['cfgi-all-range', 'invariant', BUDGET],
  ['cfgi-sid', 'exception', BUDGET],
  ['tlbi-vmid', 'invariant', BUDGET],
  ['s2-tlbi', 'invariant', BUDGET],
  ['ste-config', 'breach', BUDGET],
  ['ste-s2-fields', 'invariant', BUDGET],
  ['ste-eats', 'invariant', BUDGET],
  ['ste-strw', 'invariant', BUDGET],
  ['ats-check', 'breach', BUDGET],
  ['sync-msi', 'invariant', BUDGET],
  ['irq-cfg-msi', 'breach', BUDGET],
  ['strtab-guard', 'exception', BUDGET],
  ['cmdq-guard', 'exception', BUDGET],
  ['queue-guard', 'breach', 4 * BUDGET],
  ['queue-share', 'exception', BUDGET],
  ['queue-pin', 'breach', 4 * BUDGET],
  ['donate-tlbi', 'breach', BUDGET],
  ['double-fetch', 'breach', BUDGET],
  ['reg-access', 'breach', BUDGET],
  ['cr1-template', 'invariant', BUDGET],
  ['sid-owner', 'breach', BUDGET],
  ['guest-teardown', 'breach', BUDGET],
];
const GUEST_RULES: readonly RuleName[] = RULE_NAMES.filter((r) => !TEETH.some(([t]) => t === r));

function withoutTimings(r: FuzzResult): unknown {
  const { seconds: _s, operationsPerSecond: _o, workers: _w, ...rest } = r;
  return rest;
}

describe('fuzz: the operations', () => {
  it('every generated operation is a scenario step that validates and parses back to itself', () => {
    const ops = sampleOperations({ seed: 1 }, 1500);
    expect(ops.length).toBeGreaterThan(2000);
    const kinds = new Set(ops.map((o) => o.op));
    // the attacker's whole vocabulary: MMIO, memory, commands, ownership, DMA, races, and a
    // guest it creates and destroys (whose kernel runs the driver step)
    expect([...kinds].sort()).toEqual([
      'cmd',
      'dma',
      'driver',
      'guest',
      'hyp',
      'memwrite',
      'race',
      'read',
      'write',
    ]);
    for (const op of ops) {
      const json = JSON.parse(JSON.stringify(stepJson(op))) as Record<string, unknown>;
      const parsed = STEPS.get(op.op)!.schema.safeParse(json);
      expect(parsed.success, JSON.stringify(json)).toBe(true);
      // the validated step is the operation that ran (comments aside)
      const { comment: _c1, ...a } = parsed.data as Record<string, unknown>;
      const { comment: _c2, ...b } = op as unknown as Record<string, unknown>;
      expect(a).toEqual(Object.fromEntries(Object.entries(b).filter(([, v]) => v !== undefined)));
    }
  });

  it('a campaign is determined by its seed', () => {
    const o = { seed: 5, iterations: 600, resetEvery: 300, shrink: false };
    const a = fuzz(o);
    const b = fuzz(o);
    expect(withoutTimings(a)).toEqual(withoutTimings(b));
    const c = fuzz({ ...o, seed: 6 });
    expect(c.coverage).not.toEqual(a.coverage);
    // 600 iterations on machines of 300: at least two machines, more when one stopped early
    expect(a.iterations).toBe(600);
    expect(a.machines).toBeGreaterThanOrEqual(2);
  });

  it('touches every opcode and every register the hypervisor traps', () => {
    const r = fuzz({ seed: 2, iterations: 3000, shrink: false, maxReproducers: 0 });
    // the 34 architectural opcodes (hw/smmu/commands.ts) and the 34 registers of hyp/smmuv3/emul.ts
    expect(coverageGaps(r.coverage)).toEqual({ registers: [], opcodes: [] });
    expect(Object.keys(r.coverage.opcodes)).toContain('RESERVED');
    expect(r.coverage.registers.other!.read + r.coverage.registers.other!.write).toBeGreaterThan(0);
  });
});

describe('fuzz: teeth (each weakened rule is found from a fixed seed)', () => {
  it('every rule is either a host-target rule here or a guest-target rule', () => {
    // the 23 host-side rules of hyp/policy/policy.ts are all here; the rest are the vSMMU's
    expect(TEETH.length).toBe(23);
    expect(TEETH.length + GUEST_RULES.length).toBe(RULE_NAMES.length);
  });
  for (const [rule, kind, budget] of TEETH) {
    it(`finds ${rule} switched off (${kind})`, () => {
      // found: a failure this rule's weakening is needed for, of its kind (or a breach, stronger than an invariant)
      const mine = (f: FuzzFinding): boolean =>
        f.needs.includes(rule) && (f.kind === kind || f.kind === 'breach');
      const r = fuzz({
        seed: SEED,
        weaken: [rule],
        iterations: budget,
        maxReproducers: 20,
        shrinkBudget: 60,
        stopWhen: mine,
      });
      const f = r.findings.find(mine);
      expect(
        f,
        `no finding that needs ${rule} in ${r.iterations} iterations: ${JSON.stringify(r.failuresBySignature)}`,
      ).toBeDefined();
      expect([kind, 'breach']).toContain(f!.kind);
      // the shrunk reproducer replays (as `smmulab run` loads it) to the same failure
      expect(f!.replay, JSON.stringify(f!.replay)).toMatchObject({ reproduces: true });
      expect(f!.scenario!.machine).toMatchObject({ policy: 'pkvm', weaken: [rule] });
    });
  }

  // the same budget as the largest above
  it('the unweakened hypervisor survives the same budget: no breach, no exception, no broken invariant', () => {
    const r = fuzz({
      seed: SEED,
      iterations: 4 * BUDGET,
      shrink: false,
      maxReproducers: 0,
      stopAfterFindings: 1,
    });
    expect({
      breaches: r.breaches,
      unexpectedExceptions: r.unexpectedExceptions,
      invariantViolations: r.invariantViolations,
    }).toEqual({ breaches: 0, unexpectedExceptions: 0, invariantViolations: 0 });
  });
});

describe('fuzz: reproducers', () => {
  it('replay with `smmulab run` to the same breach (exit 1), and pass with the rule restored', async () => {
    const r = fuzz({
      seed: SEED,
      weaken: ['ste-config'],
      iterations: 200,
      stopWhen: (f) => f.needs.includes('ste-config'),
    });
    const f = r.findings.find((x) => x.needs.includes('ste-config'))!;
    expect(f.signature).toBe('breach:ste-bypass');
    const dir = mkdtempSync(join(tmpdir(), 'smmulab-fuzz-'));
    const file = join(dir, 'repro.json');
    writeFileSync(file, JSON.stringify(f.scenario, null, 1));
    const run = await smmulab('run', file, '--json');
    expect(run.status).toBe(1);
    const out = JSON.parse(run.stdout);
    // the last step (isolation: ok) fails with a device reaching hyp memory through a bypass STE
    expect(out.failed.at(-1).op).toBe('isolation');
    expect(out.isolation.breaches.some((b: { path: string }) => b.path === 'ste-bypass')).toBe(
      true,
    );
    // the same file with the rule switched back on passes: the reproducer is a regression test
    const [sc] = loadScenarios(file);
    delete sc!.machine.weaken;
    expect(runScenario(sc!).ok).toBe(true);
  });
});

describe('fuzz: policies, workers, CLI', () => {
  it('--policy pkvm-v6 rediscovers the v6-era gaps on its own', () => {
    const r = fuzz({
      seed: SEED,
      policy: 'pkvm-v6',
      iterations: 6000,
      maxReproducers: 40,
      shrink: false,
    });
    const found = new Set(r.findings.flatMap((f) => f.needs));
    // designs.md §1.13: G1 (sync-msi), G2 (irq-cfg-msi), G3 (ste-eats), G4 (ste-strw), ATSCHK left 0 (ats-check),
    // and G6 (queue-pin: the event queue shared but not pinned, so unshared and donated while live)
    expect([...found].sort()).toEqual([...V6_GAPS].sort());
  });

  it('--workers 2 gives the single-worker result', async () => {
    const o = { seed: 9, iterations: 1200, resetEvery: 300, maxReproducers: 2, shrinkBudget: 20 };
    const one = await fuzzParallel(o, 1, 'silent');
    const two = await fuzzParallel(o, 2, 'silent');
    expect([one.workers, two.workers]).toEqual([1, 2]);
    expect(one.iterations).toBe(1200);
    expect(withoutTimings(two)).toEqual(withoutTimings(one));
  });

  it('CLI: --json prints the counts and the coverage; bad input exits 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'smmulab-fuzz-'));
    const r = await smmulab(
      'fuzz',
      '--seed',
      '3',
      '--iterations',
      '300',
      '--reset-every',
      '300',
      '--json',
      '--no-shrink',
      '--out',
      dir,
    );
    expect([0, 1]).toContain(r.status);
    const out = JSON.parse(r.stdout);
    for (const k of [
      'seed',
      'iterations',
      'operations',
      'commands',
      'breaches',
      'unexpectedExceptions',
      'panics',
      'operationsPerSecond',
      'coverage',
      'reproducers',
    ])
      expect(out).toHaveProperty(k);
    expect(out.seed).toBe(3);
    expect(out.iterations).toBe(300);
    expect(Object.keys(out.coverage)).toEqual(['opcodes', 'registers', 'operations']);
    expect(r.status).toBe(
      out.breaches + out.unexpectedExceptions + out.invariantViolations > 0 ? 1 : 0,
    );
    const g = await smmulab('fuzz', '--target', 'vm');
    expect(g.status).toBe(2);
    expect(g.stderr).toContain('target');
    const w = await smmulab('fuzz', '--weaken', 'no-such-rule');
    expect(w.status).toBe(2);
    expect(w.stderr).toContain('--weaken no-such-rule: no such rule');
    // a paravirtual design gives the host no SMMU MMIO to attack: refused before anything runs
    for (const p of ['pkvm-pv', 'pkvm-pv-idmap']) {
      const pv = await smmulab('fuzz', '--policy', p, '--iterations', '1');
      expect(pv.status).toBe(2);
      expect(pv.stderr).toContain(`--policy ${p}: the host has no access to the SMMU`);
      expect(pv.stdout).toBe('');
    }
  });
});

describe('the fuzzed machine under each trap-and-emulate design', () => {
  it('keeps the design an axis changes, and tells pkvm from pkvm-v6 by the weakened rules', () => {
    expect(machineConfig('panic', [], false).policy).toBe('pkvm');
    expect(machineConfig('panic', [...V6_GAPS], false).policy).toBe('pkvm-v6');
    expect(machineConfig('panic', [...V6_GAPS], false, false, 'pkvm-v6').policy).toBe('pkvm-v6');
    for (const d of ['pkvm-wp', 'pkvm-block', 'pkvm-shared-s2'] as const) {
      const m = machineConfig('reject', ['cfgi-leaf'], false, false, d);
      expect(m.policy).toBe(d);
      expect(m.weaken).toEqual(['cfgi-leaf']);
      // the v6 gaps weakened on another design stay a list of rules, never a change of design
      expect(machineConfig('log', [...V6_GAPS], false, false, d).weaken).toEqual([...V6_GAPS]);
    }
  });
});
