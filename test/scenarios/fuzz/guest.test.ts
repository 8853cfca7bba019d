/**
 * The malicious-guest fuzzer (scenarios/fuzz/target-guest.ts, guest/malicious/attacker.ts; `smmulab fuzz
 * --target guest`): its operations are ordinary scenario steps of the guests' actors, a
 * campaign is determined by its seed (one worker or two), it covers every opcode and every
 * register of the vSMMU, the unweakened hypervisor survives it, and it has teeth: each of the
 * vSMMU's named rules (hyp/policy/policy.ts), switched off, is found from seed 1 within the budget,
 * attributed to that rule alone, shrunk to a reproducer that `smmulab run` replays to the same
 * failure, and that passes once the rule is back on.
 *
 * Budgets are CI-sized: BUDGET iterations (about three operations each) per rule, the run
 * stopping at the finding.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { smmulab } from '../cli/in-process.ts';
import { fuzz, sampleOperations } from '../../../scenarios/fuzz/engine.ts';
import { fuzzParallel } from '../../../scenarios/fuzz/parallel.ts';
import { stepJson } from '../../../scenarios/fuzz/reproducer.ts';
import type { FuzzResult, FindingKind } from '../../../scenarios/fuzz/result.ts';
import {
  GUEST_RULES,
  guestCoverageGaps,
  expectedNesting,
  VSMMU_REGISTERS,
} from '../../../scenarios/fuzz/target-guest.ts';
import { STEPS } from '../../../scenarios/steps/index.ts';
import { parseScenarioText } from '../../../scenarios/engine/loader.ts';
import { runScenario } from '../../../scenarios/engine/runner.ts';
import { OPCODES } from '../../../hw/smmu/commands.ts';
import type { RuleName } from '../../../hyp/policy/policy.ts';
import { boot, vm, bitsOf, VM1_PA } from '../../guest/rig.ts';

const SEED = 1;
const BUDGET = 5000;

/**
 * How each weakened vSMMU rule shows (scenarios/fuzz/target-guest.ts, the checks):
 * - vsid-owner: a guest configures a StreamID it does not own (a host device's, the other
 *   guest's): the device translates through the guest's stage-2 ('s2'/'nested' breach). Asked
 *   for as a breach here; the first thing seen is usually the invariant (a physical command
 *   or STE for a pSID not the guest's);
 * - vste-s1-only: the guest's stage-2 fields, VMID or EATS reach the hardware: a stage-2 table
 *   the guest chose, or full ATS (breach);
 * - vsmmu-p2m: an event record written through the unchecked IPA→PA lands on host or
 *   another guest's memory (breach: hyp-write);
 * - vste-legal, vtlbi-vmid, vcmd-budget, vevt-vsid: no isolation consequence, since the
 *   guest's stage-2 still bounds its devices; each breaks an invariant of the vSMMU: an ILLEGAL
 *   guest STE installed, a physical TLBI of another VMID, more than two budgets of commands in
 *   one trap, a pSID in the guest's event record.
 */
const TEETH: ReadonlyArray<[RuleName, FindingKind]> = [
  ['vsid-owner', 'breach'],
  ['vste-s1-only', 'breach'],
  ['vsmmu-p2m', 'breach'],
  ['vste-legal', 'invariant'],
  ['vtlbi-vmid', 'invariant'],
  ['vcmd-budget', 'invariant'],
  ['vevt-vsid', 'invariant'],
];

function withoutTimings(r: FuzzResult): unknown {
  const { seconds: _s, operationsPerSecond: _o, workers: _w, ...rest } = r;
  return rest;
}

describe('fuzz --target guest: the operations', () => {
  it('every generated operation is a scenario step of a guest (or its device) that validates and parses back to itself', () => {
    const ops = sampleOperations({ seed: 11, target: 'guest', resetEvery: 200 }, 400);
    expect(ops.length).toBeGreaterThan(800);
    // MMIO, memory, commands, DMA (races only once the race step takes a guest actor)
    expect(new Set(ops.map((o) => o.op))).toEqual(
      new Set(['cmd', 'dma', 'memwrite', 'read', 'write']),
    );
    for (const op of ops) {
      if ('actor' in op) expect(op.actor).toMatch(/^guest:g[12]$/);
      // a guest's devices only: pSIDs 9 and 256 (g1) and 65535 (g2), scenarios/fuzz/target-guest.ts GUEST_FUZZ
      else expect([9, 256, 65535]).toContain(op.sid);
      const json = JSON.parse(JSON.stringify(stepJson(op))) as Record<string, unknown>;
      const parsed = STEPS.get(op.op)!.schema.safeParse(json);
      expect(parsed.success, JSON.stringify(json)).toBe(true);
      const { comment: _c1, ...a } = parsed.data as Record<string, unknown>;
      const { comment: _c2, ...b } = op as unknown as Record<string, unknown>;
      expect(a).toEqual(Object.fromEntries(Object.entries(b).filter(([, v]) => v !== undefined)));
    }
    // vSIDs it does not own are aimed at too: StreamID 8 is the host's device (no guest has a vSID 8)
    expect(ops.some((o) => o.op === 'cmd' && o.commands.some((c) => c.StreamID === 8))).toBe(true);
  });

  it('a campaign is determined by its seed, and --workers 2 gives the same result as one worker', async () => {
    const o = {
      seed: 5,
      iterations: 600,
      resetEvery: 200,
      target: 'guest' as const,
      shrink: false,
    };
    const a = fuzz(o);
    expect(withoutTimings(fuzz(o))).toEqual(withoutTimings(a));
    expect(a.target).toBe('guest');
    expect(a.iterations).toBe(600);
    expect(a.machines).toBeGreaterThanOrEqual(3);
    const c = fuzz({ ...o, seed: 6 });
    expect(c.coverage).not.toEqual(a.coverage);
    const two = await fuzzParallel(o, 2);
    expect(two.workers).toBe(2);
    const one = await fuzzParallel(o, 1);
    expect(withoutTimings(two)).toEqual(withoutTimings(one));
  }, 30_000);
});

describe('fuzz --target guest: the unweakened hypervisor', () => {
  it(`survives ${BUDGET} iterations from seed ${SEED}: no breach, no exception, no broken invariant; every opcode and every vSMMU register touched`, () => {
    const r = fuzz({ seed: SEED, iterations: BUDGET, target: 'guest', maxReproducers: 2 });
    expect(r.failuresBySignature).toEqual({});
    expect([r.breaches, r.unexpectedExceptions, r.invariantViolations]).toEqual([0, 0, 0]);
    expect(r.operations).toBeGreaterThan(2 * BUDGET);
    // the 34 architectural opcodes of hw/smmu/commands.ts, and the vSMMU's 26 registers
    expect(OPCODES.length).toBe(34);
    expect(VSMMU_REGISTERS.length).toBe(26);
    expect(guestCoverageGaps(r.coverage)).toEqual({ registers: [], opcodes: [] });
    expect(Object.keys(r.coverage.opcodes)).toContain('RESERVED');
    for (const k of ['cmd', 'dma', 'memwrite', 'read', 'write'])
      expect(r.coverage.operations[k]).toBeGreaterThan(0);
  }, 60_000);
});

describe('fuzz --target guest: teeth', () => {
  it('the teeth table is every vSMMU rule', () => {
    expect(TEETH.map(([r]) => r).sort()).toEqual([...GUEST_RULES].sort());
  });

  for (const [rule, kind] of TEETH) {
    it(`--weaken ${rule} is found as ${kind === 'invariant' ? 'an' : 'a'} ${kind} from seed ${SEED}, shrunk, and its reproducer replays to it (and passes with the rule on)`, () => {
      const mine = (f: { needs: readonly string[]; kind: string }): boolean =>
        f.needs.includes(rule) && f.kind === kind;
      const r = fuzz({
        seed: SEED,
        iterations: BUDGET,
        target: 'guest',
        weaken: [rule],
        shrinkBudget: 150,
        maxReproducers: 30,
        stopWhen: mine,
      });
      const f = r.findings.find(mine);
      expect(f, `${rule}: ${JSON.stringify(r.failuresBySignature)}`).toBeDefined();
      // blamed on the rule alone: with it restored, the same operations fail nothing
      expect(f!.needs).toEqual([rule]);
      expect(f!.minimalOperations).toBeLessThanOrEqual(12);
      expect(f!.replay?.reproduces, JSON.stringify(f!.replay)).toBe(true);
      // the reproducer is an ordinary scenario; with the rule on it passes
      const sc = f!.scenario!;
      const m = sc.machine as Record<string, unknown>;
      expect(m.weaken).toEqual([rule]);
      const fixed = runScenario(
        parseScenarioText(JSON.stringify({ ...sc, machine: { ...m, weaken: [] } }), 'fixed.json'),
      );
      expect(fixed.failed).toEqual([]);
    }, 30_000);
  }
});

describe('fuzz --target guest: the invariant and the hook', () => {
  it('the physical STE of a guest device is the nesting of its guest STE, and a changed VMID, stage-2 base or Config is not', () => {
    const r = boot();
    const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }]);
    a.k.dma.attachDefault(0);
    const phys = r.hyp.shadowSte(9);
    // designs.md §3.4 / guest-nesting: Config 0b111 (nested), S2VMID = the guest's VMID (1)
    expect(bitsOf(phys, 3, 1)).toBe(0b111);
    expect(bitsOf(phys, 143, 128)).toBe(1);
    const env = { features: a.v.features, s2: a.g.s2cfg, vmid: a.g.vmid };
    expect(expectedNesting(phys, env)).toEqual(phys);
    const vmid0 = Uint32Array.from(phys);
    vmid0[4] = vmid0[4]! & ~0xffff; // S2VMID, STE bits [143:128]
    expect(expectedNesting(vmid0, env)).not.toEqual(vmid0);
    const ttb = Uint32Array.from(phys);
    ttb[6] = (ttb[6]! ^ 0x1000) >>> 0; // S2TTB, bits [243:196]: one bit of the table address moved
    expect(expectedNesting(ttb, env)).not.toEqual(ttb);
    const bypass = Uint32Array.from(phys);
    bypass[0] = (bypass[0]! & ~0xe) | (0b100 << 1); // Config = bypass
    expect(expectedNesting(bypass, env)).not.toEqual(bypass);
  });

  it('Guest.watch sees each hypervisor access to guest memory with its PA, inside the guest; the weakened vsmmu-p2m reaches past it', () => {
    for (const weak of [false, true]) {
      const r = boot(weak ? { weaken: ['vsmmu-p2m'] } : {});
      const a = vm(r, 'vm1', VM1_PA, [{ vsid: 0, psid: 9 }]);
      const seen: Array<[string, number, number]> = [];
      a.g.watch = (dir, ipa, pa) => seen.push([dir, ipa, pa]);
      a.k.dma.attachDefault(0);
      // the attach's CFGI_STE: the vSMMU fetched commands and read the L1 descriptor and the STE, all at IPA + (PA − IPA base)
      expect(seen.length).toBeGreaterThan(2);
      for (const [, ipa, pa] of seen) expect(pa).toBe(VM1_PA + (ipa - 0x4000_0000));
      // one page past the guest's 16 MiB of RAM (IPA 0x4100_0000): refused (-1), or with the rule off the next PA
      const w = new Uint32Array(8);
      seen.length = 0;
      expect(a.g.write(0x4100_0000, w, 8, weak)).toBe(weak);
      expect(seen).toEqual([['w', 0x4100_0000, weak ? VM1_PA + 0x100_0000 : -1]]);
    }
  });
});

describe('smmulab fuzz --target guest (CLI)', () => {
  it("--json keeps the host target's shape, exits 1 on a finding, and its reproducer fails `smmulab run` at its check", async () => {
    const out = mkdtempSync(join(tmpdir(), 'fuzz-guest-'));
    const p = await smmulab(
      'fuzz',
      '--target',
      'guest',
      '--seed',
      '1',
      '--iterations',
      '30',
      '--weaken',
      'vevt-vsid',
      '--max-reproducers',
      '1',
      '--json',
      '--out',
      out,
      '--log-level',
      'silent',
    );
    expect(p.status, p.stderr).toBe(1);
    const j = JSON.parse(p.stdout) as Record<string, unknown>;
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
      expect(j).toHaveProperty(k);
    expect(Object.keys(j.coverage as object)).toEqual(
      expect.arrayContaining(['opcodes', 'registers']),
    );
    expect(j.target).toBe('guest');
    expect(j.invariantViolations).toBeGreaterThan(0);
    const files = readdirSync(out);
    expect(files.length).toBe(1);
    expect((j.reproducers as string[])[0]).toBe(join(out, files[0]!));
    const sc = JSON.parse(readFileSync(join(out, files[0]!), 'utf8')) as {
      steps: Array<{ op: string }>;
    };
    const run = await smmulab('run', join(out, files[0]!), '--json', '--log-level', 'silent');
    expect(run.status).toBe(1);
    const res = JSON.parse(run.stdout) as {
      results?: Array<{ failed: Array<{ step: number; op: string }> }>;
      failed?: Array<{ step: number; op: string }>;
    };
    const failed = res.failed ?? res.results?.[0]?.failed ?? [];
    // it fails the guest's read of its own event record (the StreamID must be the vSID), after the operations
    expect(failed.length).toBeGreaterThan(0);
    expect(failed[0]!.op).toBe('read');
    expect(failed[0]!.step).toBeGreaterThanOrEqual(sc.steps.length - 3);
  }, 30_000);

  it('without a weakened rule it exits 0 and says what it covered', async () => {
    const p = await smmulab(
      'fuzz',
      '--target',
      'guest',
      '--seed',
      '2',
      '--iterations',
      '200',
      '--reset-every',
      '100',
      '--log-level',
      'silent',
    );
    expect(p.status, p.stderr).toBe(0);
    expect(p.stdout).toMatch(/--target guest/);
    expect(p.stdout).toMatch(/no breach, no unexpected exception, no broken invariant/);
    expect(p.stdout).toMatch(/guest commands/);
  }, 30_000);
});
