/**
 * The malicious-host fuzzer (`smmulab fuzz`): seeded campaigns of hostile host operations
 * against the hypervisor, checked by the isolation oracle and the hypervisor's own invariants,
 * with every failure shrunk to a minimal ordinary scenario file that `smmulab run` replays.
 *
 * Terms:
 *  - an *operation* is one hostile step the host performs: one MMIO access, one `cmd` step
 *    (commands written at CMDQ_PROD and one PROD write), one memory write, one ownership call,
 *    one DMA, or arming one race (a second CPU's write between two hypervisor reads);
 *  - an *iteration* is one attack: a single operation, or a short sequence of them (a
 *    template from the attack catalog, designs.md §7.1, with every value from the grammar);
 *  - a *machine* is a fresh one: the hypervisor booted, then the Linux-like driver probed with
 *    three devices attached and two buffers mapped (or, one machine in seven, the SMMU left as
 *    the hypervisor booted it). Iterations run on a machine until `resetEvery` of them have
 *    run, or the hypervisor panicked, or a failure was found; then a fresh machine takes over;
 *  - an *episode* is `resetEvery` consecutive iterations, drawn from (seed, episode) alone, so
 *    campaigns shard over workers by episode and merge exactly.
 *
 * After every operation (cheap, continuous checks):
 *  - a JavaScript exception out of hypervisor or model code is a bug (HypPanic is a modeled
 *    panic, counted separately; a host data abort is the host's own problem);
 *  - an SMMU-originated write (MSI, event, PRI record) or a DMA that lands on a page the host
 *    may not access is a breach at once;
 *  - every STE the hypervisor reshadowed must be a sanitized STE (the unweakened sanitizer maps
 *    it to itself), and every host command it forwards to the hardware must pass the
 *    unweakened command policy (the hypervisor's invariants);
 * and every `checkEvery` operations, when the hardware or the ownership changed, and at the
 * end of a machine's run: the full isolation oracle (scenarios/check/oracle.ts).
 *
 * A failure is shrunk by delta debugging over its machine's operations (chunks, then single
 * operations, then simpler values), each candidate replayed on a fresh machine, and written as
 * a scenario in raw steps that ends with `isolation: ok` (or the expectation the invariant
 * broke): replaying the file fails that step, and passes once the hypervisor is fixed.
 */
import { spawnSync } from 'node:child_process';
import { Machine, SMMU_BASE } from '../../hw/machine.ts';
import { CpuAbortError } from '../../hw/bus.ts';
import { layerLogger, setLogLevel, type LogLevel } from '../../hw/log.ts';
import { get, set } from '../../hw/bits.ts';
import { STE, STE_FIELDS, CFG } from '../../hw/smmu/ste.ts';
import { SMMU_MMIO_SIZE, regNameAt, OFF } from '../../hw/smmu/regs.ts';
import { opcodeName, OPCODES } from '../../hw/smmu/commands.ts';
import type { DmaEndpoint, DmaOutcome } from '../../hw/dma.ts';
import { HypPanic } from '../../hyp/policy/failure.ts';
import {
  RULE_NAMES,
  V6_GAPS,
  isRule,
  type FailurePolicy,
  type RuleName,
  type PolicyName,
} from '../../hyp/policy/policy.ts';
import { sanitizeSte } from '../../hyp/smmuv3/ste-sanitize.ts';
import { checkCommand, REFUSE, type CmdCheck } from '../../hyp/smmuv3/cmd-policy.ts';
import { HYP_SLOT } from '../../hyp/smmuv3/shadowq.ts';
import { CR1_TEMPLATE } from '../../hyp/pkvm.ts';
import { GUEST_RAM_IPA } from '../../hyp/vm/guest.ts';
import { EMULATION } from '../../hyp/smmuv3/emul.ts';
import { PATHS, IsolationOracle, type ProtectedRange } from '../check/oracle.ts';
import { isolationPolicy } from '../check/isolation.ts';
import { RunContext } from '../engine/context.ts';
import { STEPS } from '../steps/index.ts';
import { buildMachine, bootHyp, runScenario } from '../engine/runner.ts';
import { parseScenarioText } from '../engine/loader.ts';
import type { MachineConfig } from '../engine/schema.ts';
import type { HostKernel } from '../steps/driver.ts';
import {
  Attacker,
  Rng,
  type HostileOp,
  type HostLayout,
  type HostProbe,
} from '../../host/malicious/attacker.ts';
import type { RegName } from '../../hw/smmu/regs.ts';
import { regByName } from '../../hw/smmu/regs.ts';
import { opKind, SHRINK_BUDGET, shrinkFailure, type ShrunkFailure } from './shrink.ts';

// ---- the fuzzing machine ---------------------------------------------------------------------

/**
 * A 16 MiB machine laid out as QEMU virt (RAM at 0x4000_0000, the SMMU at 0x0905_0000): the
 * driver's pages, a scratch area the host keeps its hostile structures in, and 4 MiB of
 * hypervisor memory at the top. Small RAM keeps the hypervisor's page-granular idmap, and so
 * the oracle's walk of it, cheap; every address the attacker aims at exists in it.
 */
export const FUZZ_MACHINE = {
  ram: { base: 0x4000_0000, size: 0x140_0000 },
  hyp: { base: 0x40c0_0000, size: 0x40_0000 },
  /** 4 MiB the host may give a guest (its kernel's queues take 2 MiB) */
  guest: { base: 0x4100_0000, size: 0x40_0000 },
  driverPages: { base: 0x4000_0000, limit: 0x4080_0000 },
  scratch: { base: 0x4080_0000, size: 0x40_0000 },
  devices: [
    { name: 'dev0', sid: 0 },
    { name: 'dev8', sid: 8 },
    { name: 'dev9', sid: 9 },
    { name: 'dev256', sid: 256 },
    { name: 'dev65535', sid: 0xffff },
  ],
} as const;

/** The Linux-like bring-up before the hostile operations: probe, three attached devices, two DMA mappings. */
export const PROLOGUE_JSON: ReadonlyArray<Record<string, unknown>> = [
  {
    op: 'driver',
    call: 'probe',
    pages: {
      base: hexs(FUZZ_MACHINE.driverPages.base),
      limit: hexs(FUZZ_MACHINE.driverPages.limit),
    },
    comment: 'the Linux-like driver probes (every SMMU access traps into the hypervisor)',
  },
  { op: 'driver', call: 'attach', sid: 8, domain: 'dma' },
  { op: 'driver', call: 'attach', sid: 9, domain: 'identity' },
  { op: 'driver', call: 'attach', sid: 256, domain: 'dma', ssidBits: 2 },
  {
    op: 'driver',
    call: 'map',
    sid: 8,
    pa: hexs(FUZZ_MACHINE.scratch.base + 0x30_0000),
    size: 0x2000,
    as: 'm8',
  },
  {
    op: 'driver',
    call: 'map',
    sid: 256,
    pa: hexs(FUZZ_MACHINE.scratch.base + 0x31_0000),
    size: 0x1000,
    as: 'm256',
  },
];

type Step = { op: string; [k: string]: unknown };

function parseStep(json: Record<string, unknown>): Step {
  const def = STEPS.get(json.op as string);
  if (!def) throw new Error(`fuzz: no step op ${String(json.op)}`);
  return def.schema.parse(json) as Step;
}

const PROLOGUE: readonly Step[] = PROLOGUE_JSON.map(parseStep);

function hexs(v: number | bigint): string {
  return '0x' + v.toString(16);
}

// ---- options and results ---------------------------------------------------------------------

export type FailureChoice = FailurePolicy | 'mixed';

export interface FuzzOptions {
  seed: number;
  /** iterations (attacks) to run (default 2000); ignored when `timeSec` is given */
  iterations?: number;
  /** run for this many seconds instead of a fixed number of iterations */
  timeSec?: number;
  target?: 'host' | 'guest';
  policy?: PolicyName;
  weaken?: readonly RuleName[];
  /** the hypervisor's failure policy; 'mixed' draws one per machine (panic 5%, reject 50%, log 45%) */
  failure?: FailureChoice;
  allowAts?: boolean;
  /** iterations per machine, and per episode (default 1000) */
  resetEvery?: number;
  /** full oracle check every N operations when the state changed (default 16; always at the end) */
  checkEvery?: number;
  /** shrink failures (default true) */
  shrink?: boolean;
  /**
   * replays one shrink may spend (default SHRINK_BUDGET); a shrink that ends within it has a
   * 1-minimal reproducer (FuzzFinding.oneMinimal)
   */
  shrinkBudget?: number;
  /** distinct failures shrunk and kept (default 8) */
  maxReproducers?: number;
  /** stop after this many failures (single shard only; default: never) */
  stopAfterFindings?: number;
  /** stop once a kept finding satisfies this (single shard only) */
  stopWhen?: (f: FuzzFinding) => boolean;
  /** run only episodes index, index+count, ... */
  shard?: { index: number; count: number };
  /**
   * A stop flag: once element 0 is non-zero, the campaign stops before its next episode and
   * its result is marked `interrupted` (on a SharedArrayBuffer, worker threads see it too)
   */
  stop?: Int32Array;
  onProgress?: (p: FuzzProgress) => void;
}

export interface FuzzProgress {
  iterations: number;
  operations: number;
  findings: number;
  panics: number;
  seconds: number;
}

export type FindingKind = 'breach' | 'exception' | 'invariant';

export interface FuzzFinding {
  kind: FindingKind;
  /** what identifies the failure across runs: kind and path / exception / invariant */
  signature: string;
  detail: string;
  /** the iteration during which it was detected */
  iteration: number;
  /** hostile operations the machine had run when it was detected (including the one that triggered it) */
  operations: number;
  /** the machine's hypervisor set-up */
  policy: string;
  failure: FailurePolicy;
  weaken: RuleName[];
  raw: boolean;
  /**
   * The weakened rules this failure needs (restoring any one of them makes the reproducer
   * pass); empty for a failure of the hypervisor as it is (with every rule on)
   */
  needs: RuleName[];
  /**
   * What tells this failure apart from the others, in a run and across its shards: its
   * signature and the rules it was blamed on when found (findingKey), which is also its key in
   * failuresBySignature. `needs` may narrow after shrinking; the key does not, so a later
   * failure of the same key is never kept as a second finding.
   */
  key: string;
  /** after shrinking */
  minimalOperations?: number;
  /** replays the shrink spent (at most the budget) */
  shrinkRuns?: number;
  /** the shrink ended at a 1-minimal reproducer (removing any one of its operations makes it pass); false: its budget ran out first */
  oneMinimal?: boolean;
  /** the reproducer scenario (JSON) */
  scenario?: Record<string, unknown>;
  /** its file, once written */
  reproducer?: string;
  /** `smmulab run` of the reproducer: whether it fails with this finding */
  replay?: { reproduces: boolean; failures: string[] };
}

export interface FuzzCoverage {
  /** host commands submitted, by opcode (RESERVED for raw reserved opcodes) */
  opcodes: Record<string, number>;
  /** host accesses to each trapped register (the hypervisor's emulation table); "other" for any other SMMU offset */
  registers: Record<string, { read: number; write: number }>;
  /** operations by kind */
  operations: Record<string, number>;
}

export interface FuzzResult {
  seed: number;
  iterations: number;
  operations: number;
  commands: number;
  /** fresh machines built */
  machines: number;
  /** failures that are isolation breaches (each failure ends its machine) */
  breaches: number;
  /** failures that are JavaScript exceptions from hypervisor or model code */
  unexpectedExceptions: number;
  /** failures that are broken hypervisor invariants (with no breach) */
  invariantViolations: number;
  /** machines stopped by a modeled hypervisor panic (an allowed outcome) */
  panics: number;
  operationsPerSecond: number;
  seconds: number;
  target: 'host' | 'guest';
  policy: PolicyName;
  weaken: RuleName[];
  failure: FailureChoice;
  resetEvery: number;
  workers: number;
  panicsByRule: Record<string, number>;
  /** failures by signature (and the weakened rules they need) */
  failuresBySignature: Record<string, number>;
  coverage: FuzzCoverage;
  /** one per distinct signature (the first iteration that showed it), shrunk */
  findings: FuzzFinding[];
  reproducers: string[];
  /** set when the stop flag (FuzzOptions.stop) ended the campaign before all its episodes ran */
  interrupted?: true;
}

export class FuzzInputError extends Error {}

// ---- one machine's set-up --------------------------------------------------------------------

export interface Plan {
  episode: number;
  /** the first iteration run on this machine */
  firstIteration: number;
  machine: MachineConfig;
  failure: FailurePolicy;
  weaken: RuleName[];
  raw: boolean;
  prologue: readonly Step[];
}

function baseWeaken(o: FuzzOptions): RuleName[] {
  const s = new Set<RuleName>(o.weaken ?? []);
  if ((o.policy ?? 'pkvm') === 'pkvm-v6') for (const r of V6_GAPS) s.add(r);
  return RULE_NAMES.filter((r) => s.has(r));
}

/** A machine and its hypervisor, drawn from the episode's random stream. */
export function planMachine(
  o: FuzzOptions,
  episode: number,
  firstIteration: number,
  rng: Rng,
): Plan {
  const choice = o.failure ?? 'mixed';
  const failure: FailurePolicy =
    choice === 'mixed'
      ? rng.weighted<FailurePolicy>([
          [5, 'panic'],
          [50, 'reject'],
          [45, 'log'],
        ])
      : choice;
  let weaken = baseWeaken(o);
  if (weaken.length > 1) {
    // several weakened rules: each machine keeps a random non-empty subset, so one gap does not hide the others
    const keep = weaken.filter(() => rng.chance(0.5));
    weaken = keep.length ? keep : [rng.pick(weaken)];
  }
  const raw = rng.chance(1 / 7);
  // one machine in four has an SMMUv3.1 that lets guarded register writes take effect
  const preV32 = rng.chance(1 / 4);
  return {
    episode,
    firstIteration,
    machine: machineConfig(failure, weaken, o.allowAts ?? false, preV32),
    failure,
    weaken,
    raw,
    prologue: raw ? [] : PROLOGUE,
  };
}

/** The fuzzing machine's configuration; `preV32`: an SMMUv3.1 whose guarded registers take writes (CONSTRAINED UNPREDICTABLE before v3.2). */
export const PRE_V32_SMMU = { archMinor: 1, guardedWritesTakeEffect: true } as const;

export function machineConfig(
  failure: FailurePolicy,
  weaken: readonly RuleName[],
  allowAts: boolean,
  preV32 = false,
): MachineConfig {
  const isV6 = weaken.length === V6_GAPS.length && V6_GAPS.every((r) => weaken.includes(r));
  return {
    hyp: 'pkvm',
    ramBase: FUZZ_MACHINE.ram.base,
    ramSize: FUZZ_MACHINE.ram.size,
    hypMemory: { ...FUZZ_MACHINE.hyp },
    devices: FUZZ_MACHINE.devices.map((d) => ({ ...d })),
    policy: isV6 ? 'pkvm-v6' : 'pkvm',
    failure,
    ...(weaken.length && !isV6 ? { weaken: [...weaken] } : {}),
    ...(allowAts ? { allowAts } : {}),
    ...(preV32 ? { smmu: { ...PRE_V32_SMMU } } : {}),
  };
}

// ---- the executor ----------------------------------------------------------------------------

interface Detected {
  kind: FindingKind;
  signature: string;
  detail: string;
  /** invariant findings: what the reproducer's last step checks */
  expectSte?: { sid: number; fields: Record<string, number> };
  expectViolation?: RuleName;
  /** the DMA that landed on protected memory (index into the executed operations) */
  dmaOp?: number;
  /** invariant:cr1: the reproducer ends by reading the hardware CR1 */
  expectCr1?: boolean;
}

export interface ExecResult {
  /** set when the prologue itself failed (a shrink candidate that cut it too far) */
  invalid?: string;
  executed: HostileOp[];
  found: Detected | null;
  /** index of the operation after which it was found (executed.length - 1 at the end) */
  foundAt: number;
  panic: { rule: string; reason: string } | null;
  commands: number;
  opcodes: Record<string, number>;
  registers: Record<string, { read: number; write: number }>;
  kinds: Record<string, number>;
}

interface ExecOptions {
  /** full oracle check cadence (operations) */
  checkEvery: number;
  /** collect coverage */
  coverage: boolean;
}

/** what an operation whose step reported nothing reported (never written to) */
const NO_REPORTS: RunContext['failures'] = [];
const EMUL_BY_OFFSET = new Map(EMULATION.map((e) => [e.offset, e.name]));
const STRICT_WEAK = (): boolean => false;
const PATH_RANK = new Map<string, number>(PATHS.map((p, i) => [p, i]));
const PAGE = 4096;

function isHypFrame(e: Error): boolean {
  return /[/\\]hyp[/\\][a-z-]+\.ts/.test(e.stack ?? '');
}

/** Where an exception came from: the first frame in the project's own code. */
function origin(e: Error): string {
  const m = /(?:hyp|hw|host|scenarios)[/\\][A-Za-z0-9_/\\.-]+\.ts:\d+/.exec(e.stack ?? '');
  return m ? m[0].replace(/\\/g, '/') : 'unknown';
}

/** An exception message with its numbers taken out, so that one bug has one signature. */
function normalize(msg: string): string {
  return msg
    .replace(/0x[0-9a-f]+/gi, '#')
    .replace(/\d+/g, '#')
    .slice(0, 120);
}

/**
 * Run one trial: build the machine from `plan`, run the prologue, then the operations from
 * `source` until it runs dry, a failure is found, or the hypervisor panics. Operations are
 * executed with the scenario steps themselves (so a reproducer replays exactly), and their
 * `expect` is set to what happened (an aborted access, a refused ownership call), so that the
 * reproducer's only failing step is the one that shows the bug.
 */
export function execute(
  plan: Plan,
  source: () => HostileOp[] | null,
  eo: ExecOptions,
  makeAttacker?: (L: HostLayout, probe: HostProbe, cmdqMaxShift: number) => void,
): ExecResult {
  // the expected outcomes thrown (a host data abort, ...) never carry a stack
  // (hw/expected-error.ts): one that escapes is told by its name and message
  return executeQuietly(plan, source, eo, makeAttacker);
}

function executeQuietly(
  plan: Plan,
  source: () => HostileOp[] | null,
  eo: ExecOptions,
  makeAttacker?: (L: HostLayout, probe: HostProbe, cmdqMaxShift: number) => void,
): ExecResult {
  const res: ExecResult = {
    executed: [],
    found: null,
    foundAt: -1,
    panic: null,
    commands: 0,
    opcodes: {},
    registers: {},
    kinds: {},
  };
  const m = buildMachine(plan.machine);
  const hyp = bootHyp(m, plan.machine);
  const ctx = new RunContext(m);
  ctx.hyp = hyp;
  ctx.hypMode = 'pkvm';
  ctx.hypMemory = { ...(plan.machine.hypMemory ?? FUZZ_MACHINE.hyp) };
  const own = hyp.own;
  const hostMay = (a: number): boolean => own.hostMay(a);
  // The oracle, as oracleFor(ctx) makes it for a replay, with two caches that change no answer:
  // the protected ranges (recomputed when a page changes owner) and the idmap's enumeration
  // (its tables change only when a page changes owner: the hypervisor's update then; any other
  // write into hypervisor memory is an SMMU or DMA write that the continuous checks report).
  const owners = (): number => own.counts.donate + own.counts.reclaim;
  let rangesAt = -1;
  let ranges: readonly ProtectedRange[] = [];
  const idmapRoot = hyp.idmap.s2.vttbr;
  let memoAt = -1;
  let memo: { key: string; reach: unknown } | null = null;
  const policy = isolationPolicy(ctx);
  const oracle = new IsolationOracle(
    m,
    {
      ...policy,
      protectedRanges: () => {
        if (owners() !== rangesAt) {
          rangesAt = owners();
          ranges = policy.protectedRanges();
        }
        return ranges;
      },
    },
    {
      stageMemo: {
        get: (key) =>
          memo !== null && memo.key === key && memoAt === owners() ? memo.reach : undefined,
        set: (key, cfg, reach) => {
          if (cfg.stage !== 2 || cfg.ttb !== idmapRoot) return;
          memo = { key, reach };
          memoAt = owners();
        },
      },
    },
  );
  oracle.attach();
  ctx.oracle = oracle;

  // ---- continuous checks -------------------------------------------------------------------
  let landed: Detected | null = null;
  let smmuWrites = 0;
  m.smmu.writer.observe((w) => {
    smmuWrites++;
    if (landed) return;
    for (let a = w.pa - (w.pa % PAGE); a < w.pa + w.len; a += PAGE) {
      if (!own.hostMay(a)) {
        const path = w.kind === 'event' ? 'event' : w.kind === 'priq' ? 'priq' : 'msi';
        landed = {
          kind: 'breach',
          signature: `breach:${path}`,
          detail: `SMMU ${w.kind} write of ${w.len} bytes at 0x${w.pa.toString(16)} landed on ${own.state(a).owner} memory`,
        };
        return;
      }
    }
  });
  const dirtySids = new Set<number>();
  const origReshadow = hyp.reshadow;
  hyp.reshadow = (sid: number) => {
    dirtySids.add(sid);
    return origReshadow.call(hyp, sid);
  };
  let badCmd: Detected | null = null;
  const strict: CmdCheck = {
    weak: STRICT_WEAK,
    sid: 0,
    rule: 'cfgi-leaf',
    reason: '',
    syncRewrites: 0,
  };
  const cmdCopy = new Uint32Array(4);
  {
    // every host command the hypervisor puts in the shadow queue must pass the unweakened policy
    const sq = hyp.shadowQ;
    const origAppend = sq.append;
    sq.append = (w: Uint32Array, hostPtr: number) => {
      if (hostPtr !== HYP_SLOT && badCmd === null) {
        cmdCopy.set(w.subarray(0, 4));
        const before = strict.syncRewrites;
        const v = checkCommand(cmdCopy, strict);
        if (v === REFUSE)
          badCmd = {
            kind: 'invariant',
            signature: `invariant:command:${strict.rule}`,
            detail: `the hypervisor forwarded a host ${opcodeName(w[0]! & 0xff)} to the hardware that the ${strict.rule} rule refuses: ${strict.reason}`,
            expectViolation: strict.rule,
          };
        else if (strict.syncRewrites !== before)
          badCmd = {
            kind: 'invariant',
            signature: 'invariant:command:sync-msi',
            detail:
              'the hypervisor forwarded a host CMD_SYNC with CS=IRQ (an MSI the host aims) to the hardware',
            expectViolation: 'sync-msi',
          };
      }
      origAppend.call(sq, w, hostPtr);
    };
  }
  let dmaLanded: Detected | null = null;
  let dmaIndex = -1;
  const wrapEp = (ep: DmaEndpoint): void => {
    const watch = (out: DmaOutcome, access: string): DmaOutcome => {
      if (out.ok && out.pa >= 0 && dmaLanded === null) {
        // a host device may reach host memory, a device the host gave a guest only that guest's
        const guest = hyp.sidOwner.get(ep.sid);
        const owner = own.state(out.pa).owner;
        if (guest ? owner !== guest.actor : owner !== 'host') {
          dmaLanded = {
            kind: 'breach',
            signature: 'breach:dma-landed',
            detail: `a ${access} DMA from StreamID ${ep.sid}${guest ? ` (guest ${guest.name}'s device)` : ''} reached PA 0x${out.pa.toString(16)}, ${owner} memory`,
            dmaOp: dmaIndex,
          };
        }
      }
      return out;
    };
    const { read, write, readTranslated, writeTranslated } = ep;
    ep.read = (iova, len, o) => watch(read.call(ep, iova, len, o), 'read');
    ep.write = (iova, data, o) => watch(write.call(ep, iova, data, o), 'write');
    ep.readTranslated = (addr, len, o) =>
      watch(readTranslated.call(ep, addr, len, o), 'Translated read');
    ep.writeTranslated = (addr, data, o) =>
      watch(writeTranslated.call(ep, addr, data, o), 'Translated write');
  };
  for (const ep of m.devices.values()) wrapEp(ep);
  const origEndpoint = ctx.endpointForSid;
  ctx.endpointForSid = (sid: number) => {
    const known = m.devices.size;
    const ep = origEndpoint.call(ctx, sid);
    if (m.devices.size !== known) wrapEp(ep);
    return ep;
  };

  const steInvariant = (): Detected | null => {
    for (const sid of dirtySids) {
      const sh = hyp.shadowSte(sid);
      if (get(sh, STE.V) === 0) continue;
      const guest = hyp.sidOwner.get(sid);
      if (guest) {
        // a guest's device: abort, or translated under the guest's stage 2 (Config 0b11x, its VMID)
        const cfg = get(sh, STE.Config);
        dirtySids.delete(sid);
        if (cfg !== 0 && ((cfg & 0b110) !== 0b110 || get(sh, STE.S2VMID) !== guest.vmid)) {
          return {
            kind: 'invariant',
            signature: 'invariant:guest-ste',
            detail: `the shadow STE of StreamID ${sid}, guest ${guest.name}'s device, has Config=0b${cfg.toString(2)} S2VMID=${get(sh, STE.S2VMID)}: not the guest's stage 2 (VMID ${guest.vmid})`,
            expectSte: { sid, fields: { S2VMID: guest.vmid } },
          };
        }
        continue;
      }
      const pre = Uint32Array.from(sh);
      if (get(pre, STE.Config) === CFG.NESTED) set(pre, STE.Config, CFG.S1_TRANS);
      const refusal = sanitizeSte(pre, {
        weak: STRICT_WEAK,
        allowAts: hyp.policy.allowAts,
        s2: hyp.idmap.s2,
      });
      if (get(sh, STE.Config) === CFG.NESTED) set(pre, STE.Config, CFG.NESTED);
      const fields: Record<string, number> = {};
      let first = '';
      if (refusal) {
        fields.Config = 0;
        first = `refused:${refusal.rule}`;
      } else {
        for (const f of STE_FIELDS) {
          if (f.name === 'IMPLEMENTATION_DEFINED' || f.name === 'S2HWU59..62') continue;
          const want = get(pre, f);
          if (get(sh, f) !== want) {
            fields[f.name] = want;
            if (!first) first = f.name;
          }
        }
        if (!first) {
          for (let i = 4; i < 16; i++) if (sh[i] !== pre[i]) first = `DW${i >> 1}`;
        }
      }
      dirtySids.delete(sid);
      if (first) {
        return {
          kind: 'invariant',
          signature: `invariant:shadow-ste:${first}`,
          detail: `the shadow STE of StreamID ${sid} is not a sanitized STE: ${
            refusal
              ? `the sanitizer refuses it (${refusal.rule}: ${refusal.reason})`
              : Object.entries(fields)
                  .map(
                    ([k, v]) =>
                      `${k}=${get(
                        sh,
                        STE_FIELDS.find((f) => f.name === k)!,
                      )} (sanitized: ${v})`,
                  )
                  .join(', ') || first
          }`,
          expectSte: { sid, fields },
        };
      }
    }
    dirtySids.clear();
    return null;
  };

  const fp: number[] = [];
  const fingerprint = (): boolean => {
    const s = m.smmu;
    let dmas = 0;
    let atc = 0;
    for (const d of m.devices.values()) {
      dmas += d.atsRequests;
      atc += d.atc.size;
    }
    const g = s.strtab.geometry();
    // what can widen a device's reach: the SMMU's registers, a page changing owner, an STE the
    // hypervisor installs, a configuration fetched into the cache, an ATC filled, a device
    // appearing, the SMMU writing memory (TLB fills and invalidations only follow the tables)
    const now = [
      s.cr0,
      s.gbpa.value,
      s.irqCtrl,
      s.eventqBase.lo,
      s.eventqBase.hi,
      s.priqBase.lo,
      s.priqBase.hi,
      g.base,
      g.log2size,
      g.fmt,
      g.split,
      s.strtab.fetches,
      s.httuWrites,
      dmas,
      atc,
      m.devices.size,
      owners(),
      hyp.stats.reshadows,
      smmuWrites,
    ];
    let changed = now.length !== fp.length;
    for (let i = 0; i < now.length && !changed; i++) changed = now[i] !== fp[i];
    if (changed) {
      fp.length = 0;
      fp.push(...now);
    }
    return changed;
  };

  const fullCheck = (): Detected | null => {
    const r = oracle.check();
    if (r.ok) return null;
    let best = r.breaches[0]!;
    for (const b of r.breaches)
      if ((PATH_RANK.get(b.path) ?? 99) < (PATH_RANK.get(best.path) ?? 99)) best = b;
    return {
      kind: 'breach',
      signature: `breach:${best.path}`,
      detail: `${r.total} breach(es); ${best.detail}`,
    };
  };

  // the hypervisor writes CR1 at boot and the host can never change it (cr1-template)
  const cr1Invariant = (): Detected | null =>
    m.smmu.cr1 === CR1_TEMPLATE
      ? null
      : {
          kind: 'invariant',
          signature: 'invariant:cr1',
          detail: `the hardware CR1 is 0x${m.smmu.cr1.toString(16)}, not the hypervisor's template 0x${CR1_TEMPLATE.toString(16)} (the SMMU's queue and table accesses would use the host's cacheability and shareability)`,
          expectCr1: true,
        };

  /** every check after one operation, strongest finding first */
  const afterOp = (force: boolean, opNo: number): Detected | null => {
    const cheap = landed ?? dmaLanded ?? steInvariant() ?? badCmd ?? cr1Invariant();
    if (cheap || force || (opNo + 1) % eo.checkEvery === 0) {
      if (cheap || force || fingerprint()) {
        const b = fullCheck();
        if (b) {
          if (cheap && cheap.signature !== b.signature)
            b.detail += ` (first seen as: ${cheap.detail})`;
          return cheap && cheap.signature === 'breach:dma-landed' ? cheap : b;
        }
      }
    }
    return cheap;
  };

  // ---- the prologue ------------------------------------------------------------------------
  const stepCtx = (i: number, op: string): void => {
    ctx.stepIndex = i;
    ctx.op = op;
  };
  for (let i = 0; i < plan.prologue.length; i++) {
    const st = plan.prologue[i]!;
    stepCtx(i, st.op);
    try {
      STEPS.get(st.op)!.run(ctx, st);
    } catch (e) {
      if (e instanceof HypPanic || hyp.panicked) {
        res.panic = hyp.panicked ?? { rule: (e as HypPanic).rule, reason: (e as HypPanic).reason };
        return res;
      }
      // a prologue the shrinker cut down too far (a map without its attach): not a candidate
      res.invalid = `prologue step ${i} (${st.op}): ${(e as Error).message}`;
      return res;
    }
  }
  if (ctx.failures.length) {
    res.invalid = `the prologue failed: ${JSON.stringify(ctx.failures)}`;
    return res;
  }
  fingerprint();

  // ---- what the host knows and can read ------------------------------------------------------
  if (makeAttacker) {
    const k = ctx.kernels.get('host');
    makeAttacker(hostLayout(k, m), hostProbe(m, ctx), m.smmu.features.cmdqs);
  }

  // ---- the hostile operations --------------------------------------------------------------
  let n = 0;
  for (;;) {
    let batch: HostileOp[] | null;
    try {
      batch = source();
    } catch (e) {
      if (e instanceof HypPanic) break;
      const x = e as Error;
      res.found = {
        kind: 'exception',
        signature: `exception:${x.name}:${normalize(x.message)}`,
        detail: `${x.name}: ${x.message} (at ${origin(x)}, in a register read the host made to aim its next operation)`,
      };
      // (the probe's reads build their errors with stacks: hostProbe)
      res.foundAt = res.executed.length - 1;
      return res;
    }
    if (batch === null) break;
    for (const op0 of batch) {
      const op = { ...op0 } as HostileOp;
      const idx = res.executed.length;
      res.executed.push(op);
      if (eo.coverage) cover(res, op, m);
      const at = plan.prologue.length + idx;
      stepCtx(at, op.op);
      const failuresBefore = ctx.failures.length;
      dmaIndex = idx;
      let thrown: unknown = null;
      try {
        STEPS.get(op.op)!.run(ctx, op as unknown as Step);
      } catch (e) {
        thrown = e;
      }
      n++;
      if (thrown !== null || hyp.panicked) {
        if (thrown instanceof HypPanic || hyp.panicked) {
          res.panic = hyp.panicked ?? {
            rule: (thrown as HypPanic).rule,
            reason: (thrown as HypPanic).reason,
          };
          res.found = afterOp(true, idx);
          res.foundAt = idx;
          return res;
        }
        const e = thrown as Error;
        if (!(e instanceof CpuAbortError && e.actor === 'host')) {
          res.found = {
            kind: 'exception',
            signature: `exception:${e.name}:${normalize(e.message)}`,
            detail: `${e.name}: ${e.message} (at ${origin(e)}${isHypFrame(e) ? ', through hypervisor code' : ''})`,
          };
          res.foundAt = idx;
          return res;
        }
      }
      // what the step reported: a data abort the host took, a refused ownership call, a DMA or
      // a breach between two phases of a guest's teardown
      const reported =
        ctx.failures.length > failuresBefore ? ctx.failures.splice(failuresBefore) : NO_REPORTS;
      if (op.op === 'guest' && op.call === 'destroy') {
        const mid = reported.find(
          (f) =>
            typeof f.expected === 'string' &&
            (f.expected.startsWith('isolation holds after teardown') ||
              f.expected.startsWith('no DMA outside')),
        );
        if (mid) {
          res.found = {
            kind: 'breach',
            signature: 'breach:teardown',
            detail: `during the teardown of guest ${op.name}: expected ${String(mid.expected)}, got ${String(mid.actual)}`,
          };
          res.foundAt = idx;
          return res;
        }
      }
      const hypAbort = annotate(op, reported);
      if (hypAbort) {
        res.found = {
          kind: 'exception',
          signature: `exception:CpuAbortError:hyp`,
          detail: `the hypervisor's own access aborted inside a host ${op.op}: ${hypAbort}`,
        };
        res.foundAt = idx;
        return res;
      }
      if (op.op === 'write' || op.op === 'memwrite') {
        const bad = hostWriteLanded(op, hostMay, m);
        if (bad) {
          res.found = { kind: 'breach', signature: 'breach:cpu-write', detail: bad };
          res.foundAt = idx;
          return res;
        }
      }
      const f = afterOp(false, n - 1);
      if (f) {
        res.found = f;
        res.foundAt = idx;
        return res;
      }
    }
  }
  res.found = afterOp(true, n - 1);
  res.foundAt = res.executed.length - 1;
  return res;
}

/**
 * Set an operation's expectation to what happened, from the failures its step recorded.
 * Returns the message when the hypervisor itself took the data abort (a bug, not the host's).
 */
function annotate(
  op: HostileOp,
  failures: ReadonlyArray<{ expected: unknown; actual: unknown; message?: string }>,
): string | null {
  for (const f of failures) {
    if (op.op === 'write' || op.op === 'read' || op.op === 'memwrite') {
      if (f.expected === 'completed' && f.actual === 'abort') {
        if (f.message && !f.message.startsWith('host:')) return f.message;
        op.expect = 'abort';
      } else if (f.expected === 'abort' && f.actual === 'completed') delete op.expect;
    } else if (op.op === 'hyp') {
      if (f.expected === 'completed' && f.actual === 'refused') op.expect = 'refused';
      else if (f.expected === 'refused' && f.actual === 'completed') op.expect = 'ok';
    } else if (op.op === 'dma') {
      if (f.expected === 'fault') delete op.expect;
    } else if (op.op === 'guest') {
      if (
        (f.expected === 'guest created' || f.expected === 'guest destroyed') &&
        f.actual === 'refused'
      )
        op.expect = 'refused';
      else if (f.expected === 'refused') op.expect = 'ok';
    }
  }
  return null;
}

function hostWriteLanded(
  op: HostileOp & { op: 'write' | 'memwrite' },
  hostMay: (a: number) => boolean,
  m: Machine,
): string | null {
  if (op.expect === 'abort') return null;
  const len = op.op === 'write' ? op.size : op.hex.length / 2;
  if (!m.mem.isRam(op.addr, 1)) return null;
  for (let a = op.addr - (op.addr % PAGE); a < op.addr + len; a += PAGE) {
    if (m.mem.isRam(a, 1) && !hostMay(a))
      return `a host CPU write of ${len} bytes at 0x${op.addr.toString(16)} completed on a page the host may not write (0x${a.toString(16)})`;
  }
  return null;
}

function cover(res: ExecResult, op: HostileOp, m: Machine): void {
  res.kinds[op.op] = (res.kinds[op.op] ?? 0) + 1;
  if (op.op === 'cmd') {
    for (const c of op.commands) {
      res.commands++;
      res.opcodes[c.name] = (res.opcodes[c.name] ?? 0) + 1;
    }
  } else if (op.op === 'memwrite' && op.comment?.startsWith('a raw command')) {
    const opc = parseInt(op.hex.slice(0, 2), 16);
    const name = opcodeName(opc).startsWith('RESERVED') ? 'RESERVED' : opcodeName(opc);
    res.commands++;
    res.opcodes[name] = (res.opcodes[name] ?? 0) + 1;
  } else if (op.op === 'write' || op.op === 'read') {
    const off = op.addr - m.smmu.base;
    if (off < 0 || off >= SMMU_MMIO_SIZE) return;
    const name = EMUL_BY_OFFSET.get(off) ?? 'other';
    const e = (res.registers[name] ??= { read: 0, write: 0 });
    if (op.op === 'read') e.read++;
    else e.write++;
  }
}

/** The layout the attacker aims at: the fuzzing machine, plus what the driver set up. */
function hostLayout(k: HostKernel | undefined, m: Machine): HostLayout {
  const structures: Array<{ what: string; base: number; size: number }> = [];
  const mappings: Array<{ sid: number; iova: number; pa: number; size: number }> = [];
  const asids: number[] = [];
  if (k) {
    const d = k.drv;
    structures.push({ what: 'cmdq', base: d.cmdq.base, size: 2 ** d.cmdq.log2size * 16 });
    structures.push({ what: 'evtq', base: d.evtq.base, size: 2 ** d.evtq.shift * 32 });
    structures.push({
      what: 'strtab-l1',
      base: d.strtab.base,
      size: Math.max(PAGE, d.strtab.l1.length * 8),
    });
    for (const l2 of d.strtab.l1)
      if (l2) structures.push({ what: 'strtab-l2', base: l2, size: 256 * 64 });
    for (const [, mp] of k.mappings) mappings.push({ ...mp });
    for (const sid of [8, 256]) {
      try {
        const dd = k.dma.domainOf(sid);
        asids.push(dd.domain.asid);
        const s1 = dd.domain.pgtable?.s1;
        if (s1) structures.push({ what: `pgtable-${sid}`, base: s1.ttbr, size: PAGE });
        // the CD table the host STE points at
        const steAt = d.steAddr(sid);
        const w0 = m.mem.read64(steAt);
        structures.push({
          what: `cd-${sid}`,
          base: Number(w0 & 0x00ff_ffff_ffff_ffc0n),
          size: 256,
        });
      } catch {
        /* not attached */
      }
    }
  }
  return {
    ram: { ...FUZZ_MACHINE.ram },
    hyp: { ...FUZZ_MACHINE.hyp },
    smmu: m.smmu.base,
    scratch: { base: FUZZ_MACHINE.scratch.base, size: 0x30_0000 },
    sids: FUZZ_MACHINE.devices.map((d) => d.sid),
    mappings,
    structures,
    asids,
    sidBits: m.smmu.features.sidSize,
    guest: { ...FUZZ_MACHINE.guest, ipa: GUEST_RAM_IPA },
  };
}

/** Host reads, as the attacker makes them to aim (side-effect free: registers through the trap, its own memory). */
function hostProbe(m: Machine, ctx: RunContext): HostProbe {
  return {
    reg(name: RegName): bigint | null {
      const r = regByName(name);
      if (!r) return null;
      try {
        return m.bus.read('host', m.smmu.base + r.offset, r.width);
      } catch (e) {
        if (e instanceof CpuAbortError) return null;
        throw e;
      }
    },
    guest(name: string) {
      const g = ctx.hyp?.guests.get(name);
      if (!g) return null;
      const k = ctx.kernels.get(g.actor);
      const devices = [...g.vsidToPsid].map(([, psid]) => ({
        device: [...m.devices.values()].find((d) => d.sid === psid)?.name ?? `psid${psid}`,
        psid,
      }));
      return {
        devices,
        alive: !g.dying,
        probed: k !== undefined,
        bufferIova: k?.mappings.get('gbuf')?.iova ?? null,
      };
    },
    mem64(addr: number): bigint | null {
      if (!m.mem.isRam(addr, 8)) return null;
      try {
        return m.bus.read64('host', addr);
      } catch (e) {
        if (e instanceof CpuAbortError) return null;
        throw e;
      }
    },
  };
}

// ---- one episode -----------------------------------------------------------------------------

interface MachineRun {
  plan: Plan;
  exec: ExecResult;
  /** iterations run on this machine, and the last one */
  iterations: number;
  lastIteration: number;
}

/**
 * Episode `e`: iterations [eK, (e+1)K) (bounded by `limit`) on fresh machines, one random
 * stream drawn from (seed, e). Each machine's run is handed to `onRun`; returning true stops.
 */
function runEpisode(
  o: FuzzOptions,
  e: number,
  limit: number,
  onRun: (r: MachineRun) => boolean,
): boolean {
  const K = o.resetEvery ?? 1000;
  const rng = new Rng(o.seed, e);
  const last = Math.min((e + 1) * K, limit);
  let next = e * K;
  while (next < last) {
    const start = next;
    const plan = planMachine(o, e, start, rng);
    let attacker: Attacker | null = null;
    const exec = execute(
      plan,
      () => {
        if (next >= last || !attacker) return null;
        next++;
        return attacker.next();
      },
      { checkEvery: o.checkEvery ?? 16, coverage: true },
      (L, probe, cmdqMaxShift) => {
        attacker = new Attacker(rng, L, probe, { raw: plan.raw, cmdqMaxShift });
      },
    );
    if (next === start) next++; // the machine stopped before its first iteration: do not loop
    if (onRun({ plan, exec, iterations: next - start, lastIteration: next - 1 })) return true;
    if (!exec.found && !exec.panic) break;
  }
  return false;
}

/** The operations a campaign's first `iterations` iterations execute (for tests of the grammar). */
export function sampleOperations(o: FuzzOptions, iterations: number): HostileOp[] {
  const out: HostileOp[] = [];
  const K = o.resetEvery ?? 1000;
  for (let e = 0; e * K < iterations; e++) {
    runEpisode({ ...o, resetEvery: K }, e, iterations, (run) => {
      out.push(...run.exec.executed);
      return false;
    });
  }
  return out;
}

// ---- shrinking -------------------------------------------------------------------------------

/** Replay a fixed list of operations on a fresh machine (a shrink candidate). */
function replayOps(plan: Plan, ops: readonly HostileOp[]): ExecResult {
  let given = false;
  return execute(
    plan,
    () => {
      if (given) return null;
      given = true;
      return ops as HostileOp[];
    },
    { checkEvery: Number.MAX_SAFE_INTEGER, coverage: false },
  );
}

export type Shrunk = ShrunkFailure<Plan, HostileOp, ExecResult>;

/**
 * Shrink a failure (scenarios/fuzz/shrink.ts `shrinkFailure`): chunks of operations then single
 * ones, to a 1-minimal list; simpler values (fewer commands in a cmd step, zeroed words in a
 * memory write) and the prologue (never the probe: everything after it assumes the driver), and
 * single operations again when either changed anything. A candidate is kept when a fresh replay
 * of it fails with the same signature; the result must pass with the rules in `needs` restored.
 * At most `budget` replays in all.
 */
export function shrink(
  plan0: Plan,
  ops0: readonly HostileOp[],
  signature: string,
  budget: number,
  needs: readonly RuleName[] = [],
): Shrunk {
  return shrinkFailure<Plan, HostileOp, ExecResult>(
    {
      replay: replayOps,
      signature: (r) => r.found?.signature,
      failed: (r) => r.executed.slice(0, r.foundAt + 1),
      restored: (p) =>
        needs.length
          ? withWeaken(
              p,
              p.weaken.filter((w) => !needs.includes(w)),
            )
          : null,
      dropStep: (p, i) =>
        i >= 1 ? { ...p, prologue: p.prologue.filter((_, k) => k !== i) } : null,
      kindOf: opKind,
      prologueLength: (p) => p.prologue.length,
    },
    plan0,
    ops0,
    signature,
    budget,
  );
}

/** The same iteration under another set of weakened rules. */
export function withWeaken(plan: Plan, weaken: RuleName[]): Plan {
  return {
    ...plan,
    weaken,
    machine: machineConfig(
      plan.failure,
      weaken,
      plan.machine.allowAts ?? false,
      plan.machine.smmu !== undefined,
    ),
  };
}

/**
 * Which weakened rules the failure needs: those whose restoration (one at a time) makes a
 * replay of the same operations pass. Empty when nothing is weakened, or when the failure
 * happens with every weakened rule restored too (a bug of the hypervisor itself).
 */
export function blame(plan: Plan, ops: readonly HostileOp[], signature: string): RuleName[] {
  if (!plan.weaken.length) return [];
  if (replayOps(withWeaken(plan, []), ops).found?.signature === signature) return [];
  if (plan.weaken.length === 1) return [...plan.weaken];
  const needs = plan.weaken.filter(
    (r) =>
      replayOps(
        withWeaken(
          plan,
          plan.weaken.filter((w) => w !== r),
        ),
        ops,
      ).found?.signature !== signature,
  );
  return needs.length ? needs : [...plan.weaken];
}

// ---- reproducers -----------------------------------------------------------------------------

/** A hostile operation as a scenario file step (64-bit values and addresses as "0x…" strings). */
export function stepJson(op: HostileOp): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(op)) {
    if (v === undefined) continue;
    if (typeof v === 'bigint') out[k] = hexs(v);
    else if ((k === 'addr' || (k === 'size' && op.op === 'hyp')) && typeof v === 'number')
      out[k] = hexs(v);
    else out[k] = v;
  }
  if ((op.op === 'write' || op.op === 'read') && !op.comment) {
    const off = op.addr - 0x0905_0000;
    if (off >= 0 && off < SMMU_MMIO_SIZE)
      out.comment = `${regNameAt(off)}${op.op === 'write' ? ` = 0x${op.value.toString(16)}` : ''}${op.size !== (regByName(regNameAt(off))?.width ?? op.size) ? ` (${op.size}-byte access)` : ''}`;
  }
  return out;
}

function finalSteps(
  d: Detected,
  panic: { rule: string; reason: string } | null,
): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  if (panic)
    out.push({
      op: 'expectPanic',
      ...(isRule(panic.rule) ? { rule: panic.rule } : { reason: panic.reason.slice(0, 60) }),
      comment: 'the hypervisor panicked (a modeled outcome); the hardware state is what counts',
    });
  if (d.expectSte && Object.keys(d.expectSte.fields).length)
    out.push({
      op: 'expectSte',
      sid: d.expectSte.sid,
      fields: d.expectSte.fields,
      comment: `fails: ${d.detail}`,
    });
  if (d.expectViolation)
    out.push({ op: 'expectViolation', rule: d.expectViolation, comment: `fails: ${d.detail}` });
  if (d.expectCr1)
    out.push({
      op: 'read',
      actor: 'hyp',
      addr: hexs(SMMU_BASE + OFF.CR1),
      size: 4,
      expect: hexs(CR1_TEMPLATE),
      comment: `fails: ${d.detail}`,
    });
  out.push({
    op: 'isolation',
    expect: 'ok',
    comment: d.kind === 'breach' ? `fails: ${d.detail}` : 'isolation after the failure',
  });
  return out;
}

export function reproducerScenario(
  o: FuzzOptions,
  plan: Plan,
  ops: readonly HostileOp[],
  found: Detected,
  panic: { rule: string; reason: string } | null,
  original: number,
  iteration: number,
): Record<string, unknown> {
  const steps = ops.map((op, i) => {
    const j = stepJson(op);
    if (found.dmaOp !== undefined && i === ops.length - 1 && op.op === 'dma') {
      j.expect = 'fault';
      j.comment = `fails: ${found.detail}`;
    }
    return j;
  });
  const prologue = plan.prologue.map((st) => PROLOGUE_JSON[PROLOGUE.indexOf(st)]!);
  const m = plan.machine;
  const machine: Record<string, unknown> = {
    hyp: 'pkvm',
    ramBase: hexs(m.ramBase!),
    ramSize: hexs(m.ramSize!),
    hypMemory: { base: hexs(m.hypMemory!.base), size: hexs(m.hypMemory!.size) },
    devices: m.devices,
    policy: m.policy,
    failure: m.failure,
    ...(m.weaken ? { weaken: m.weaken } : {}),
    ...(m.allowAts ? { allowAts: true } : {}),
    ...(m.smmu ? { smmu: m.smmu } : {}),
  };
  const fails =
    found.kind === 'exception'
      ? `step ${prologue.length + ops.length - 1} (the ${ops.at(-1)?.op ?? 'last'} operation, which raises it)`
      : found.dmaOp !== undefined
        ? `step ${prologue.length + ops.length - 1} (the DMA, expected to fault)`
        : found.expectSte || found.expectViolation
          ? `the ${found.expectSte ? 'expectSte' : 'expectViolation'} step`
          : found.expectCr1
            ? 'the read of the hardware CR1'
            : 'the last step (isolation: ok)';
  const cli = `smmulab fuzz --seed ${o.seed}${o.policy && o.policy !== 'pkvm' ? ` --policy ${o.policy}` : ''}${(o.weaken ?? []).map((w) => ` --weaken ${w}`).join('')}`;
  return {
    name: `fuzz-s${o.seed}-i${iteration}-${found.signature
      .replace(/[^a-z0-9]+/gi, '-')
      .replace(/-+$/, '')
      .slice(0, 60)}`,
    description: `${cli}, iteration ${iteration} (a machine started at iteration ${plan.firstIteration}): ${found.kind} ${found.signature}: ${found.detail}. Shrunk from ${original} to ${ops.length} hostile operations${plan.raw ? ' (no driver probe)' : ''}. Replaying it fails ${fails}; it passes once the hypervisor is fixed.`,
    machine,
    steps: [...prologue, ...steps, ...finalSteps(found, panic)],
  };
}

/** Replay a reproducer the way `smmulab run` does (JSON text → loader → runner). */
export function replayReproducer(
  sc: Record<string, unknown>,
  signature: string,
  detail: string,
): { reproduces: boolean; failures: string[] } {
  const parsed = parseScenarioText(JSON.stringify(sc), `${String(sc.name)}.json`);
  const r = runScenario(parsed);
  const failures = r.failed.map(
    (f) =>
      `step ${f.step} ${f.op}: expected ${JSON.stringify(f.expected)}, got ${JSON.stringify(f.actual)}${f.message ? ` (${f.message})` : ''}`,
  );
  let reproduces = false;
  if (signature.startsWith('breach:')) {
    const path = signature.slice(7);
    if (path === 'dma-landed')
      reproduces = r.failed.some((f) => f.op === 'dma' && f.expected === 'fault');
    else if (path === 'cpu-write') reproduces = !r.ok;
    else if (path === 'teardown') reproduces = r.failed.some((f) => f.op === 'guest');
    else
      reproduces =
        r.failed.some((f) => f.op === 'isolation') &&
        (r.isolation?.breaches.some((b) => b.path === path) ?? false);
  } else if (signature.startsWith('exception:')) {
    const name = signature.split(':')[1]!;
    reproduces = r.failed.some(
      (f) =>
        (f.expected === 'step completes' && String(f.actual).startsWith(name)) ||
        (name === 'CpuAbortError' && f.actual === 'abort' && (f.message ?? '').startsWith('hyp')),
    );
  } else if (signature.startsWith('invariant:shadow-ste')) {
    reproduces = r.failed.some((f) => f.op === 'expectSte');
  } else if (signature === 'invariant:cr1') {
    reproduces = r.failed.some((f) => f.op === 'read');
  } else if (signature.startsWith('invariant:command')) {
    reproduces = r.failed.some((f) => f.op === 'expectViolation') && detail.length > 0;
  }
  return { reproduces, failures };
}

// ---- a campaign (one shard) ------------------------------------------------------------------

function emptyCoverage(): FuzzCoverage {
  return { opcodes: {}, registers: {}, operations: {} };
}

export function validateOptions(o: FuzzOptions): void {
  if (!Number.isSafeInteger(o.seed) || o.seed < 0)
    throw new FuzzInputError(`--seed must be a non-negative integer, got ${o.seed}`);
  if (o.iterations !== undefined && (!Number.isSafeInteger(o.iterations) || o.iterations < 1))
    throw new FuzzInputError(`--iterations must be a positive integer, got ${o.iterations}`);
  if (o.timeSec !== undefined && !(o.timeSec > 0))
    throw new FuzzInputError(`--time must be a positive number of seconds, got ${o.timeSec}`);
  if (o.resetEvery !== undefined && (!Number.isSafeInteger(o.resetEvery) || o.resetEvery < 1))
    throw new FuzzInputError(`--reset-every must be a positive integer, got ${o.resetEvery}`);
  for (const w of o.weaken ?? [])
    if (!isRule(w))
      throw new FuzzInputError(`--weaken ${w}: no such rule (rules: ${RULE_NAMES.join(', ')})`);
  if (
    o.shard &&
    !(
      Number.isSafeInteger(o.shard.count) &&
      o.shard.count >= 1 &&
      Number.isSafeInteger(o.shard.index) &&
      o.shard.index >= 0 &&
      o.shard.index < o.shard.count
    )
  )
    throw new FuzzInputError(
      `shard: index ${o.shard.index} of ${o.shard.count} (0-based) is not a shard`,
    );
}

/**
 * Run a campaign (or one shard of it) in this thread. Iterations run in index order; every
 * distinct failure signature is shrunk once (its first iteration), up to `maxReproducers`.
 */
// the malicious-guest campaign (scenarios/fuzz/guest.ts); `fuzz()` hands `target: 'guest'` to it
import { fuzzGuest, guestCampaign } from './guest.ts';

export function fuzz(o: FuzzOptions): FuzzResult {
  if (o.target === 'guest') return fuzzGuest(o);
  const g = hostCampaign(o);
  for (;;) {
    const s = g.next();
    if (s.done) return s.value;
  }
}

/** Whether a campaign's stop flag is up. */
export function stopRequested(o: FuzzOptions): boolean {
  return o.stop !== undefined && Atomics.load(o.stop, 0) !== 0;
}

/**
 * A campaign (or one shard of it) that yields after each episode: `fuzz()` runs it to the end
 * at once, `fuzzSliced()` lets the event loop run between slices of it.
 */
export function campaign(o: FuzzOptions): Generator<void, FuzzResult, void> {
  return o.target === 'guest' ? guestCampaign(o) : hostCampaign(o);
}

/**
 * Run a campaign in this thread in slices of about `sliceMs` (whole episodes), awaiting
 * `setImmediate` between them: signal handlers, timers and worker messages run meanwhile, and
 * a stop flag raised by them ends the campaign at the next episode.
 */
export async function fuzzSliced(o: FuzzOptions, sliceMs = 50): Promise<FuzzResult> {
  const g = campaign(o);
  let t = performance.now();
  for (;;) {
    const s = g.next();
    if (s.done) return s.value;
    if (performance.now() - t >= sliceMs) {
      await new Promise<void>((r) => setImmediate(r));
      t = performance.now();
    }
  }
}

function* hostCampaign(o: FuzzOptions): Generator<void, FuzzResult, void> {
  validateOptions(o);
  const t0 = performance.now();
  const shard = o.shard ?? { index: 0, count: 1 };
  const K = o.resetEvery ?? 1000;
  const limit = o.timeSec !== undefined ? Infinity : (o.iterations ?? 2000);
  const deadline = o.timeSec !== undefined ? t0 + o.timeSec * 1000 : Infinity;
  const res: FuzzResult = {
    seed: o.seed,
    iterations: 0,
    operations: 0,
    commands: 0,
    machines: 0,
    breaches: 0,
    unexpectedExceptions: 0,
    invariantViolations: 0,
    panics: 0,
    operationsPerSecond: 0,
    seconds: 0,
    target: o.target ?? 'host',
    policy: o.policy ?? 'pkvm',
    weaken: [...(o.weaken ?? [])],
    failure: o.failure ?? 'mixed',
    resetEvery: K,
    workers: 1,
    panicsByRule: {},
    failuresBySignature: {},
    coverage: emptyCoverage(),
    findings: [],
    reproducers: [],
  };
  let lastProgress = t0;
  let failing = 0;
  const onRun = (run: MachineRun): boolean => {
    const { plan, exec } = run;
    res.machines++;
    res.iterations += run.iterations;
    res.operations += exec.executed.length;
    res.commands += exec.commands;
    mergeCoverage(res.coverage, {
      opcodes: exec.opcodes,
      registers: exec.registers,
      operations: exec.kinds,
    });
    const f = exec.found;
    let stop = false;
    if (f) {
      failing++;
      if (f.kind === 'breach') res.breaches++;
      else if (f.kind === 'exception') res.unexpectedExceptions++;
      else res.invariantViolations++;
      const needs = blame(plan, exec.executed.slice(0, exec.foundAt + 1), f.signature);
      const key = findingKey(f.signature, needs);
      res.failuresBySignature[key] = (res.failuresBySignature[key] ?? 0) + 1;
      if (
        !res.findings.some((x) => x.key === key) &&
        res.findings.length < (o.maxReproducers ?? 8)
      ) {
        const finding = makeFinding(o, plan, exec, f, needs, run.lastIteration);
        res.findings.push(finding);
        if (o.stopWhen?.(finding)) stop = true;
      }
    } else if (exec.panic) {
      res.panics++;
      res.panicsByRule[exec.panic.rule] = (res.panicsByRule[exec.panic.rule] ?? 0) + 1;
    }
    const now = performance.now();
    if (o.onProgress && now - lastProgress > 500) {
      lastProgress = now;
      o.onProgress({
        iterations: res.iterations,
        operations: res.operations,
        findings: failing,
        panics: res.panics,
        seconds: (now - t0) / 1000,
      });
    }
    return stop || (o.stopAfterFindings !== undefined && failing >= o.stopAfterFindings);
  };
  for (let e = shard.index; e * K < limit; e += shard.count) {
    if (performance.now() >= deadline) break;
    if (stopRequested(o)) {
      res.interrupted = true;
      break;
    }
    if (runEpisode(o, e, limit, onRun)) break;
    yield;
  }
  res.seconds = (performance.now() - t0) / 1000;
  res.operationsPerSecond = Math.round(res.operations / Math.max(res.seconds, 1e-9));
  return res;
}

/** Failures are told apart by their signature and by the weakened rules they need. */
export function findingKey(signature: string, needs: readonly string[]): string {
  return needs.length ? `${signature} [needs ${needs.join('+')}]` : signature;
}

function makeFinding(
  o: FuzzOptions,
  plan: Plan,
  exec: ExecResult,
  f: Detected,
  needs: RuleName[],
  iteration: number,
): FuzzFinding {
  const finding: FuzzFinding = {
    kind: f.kind,
    signature: f.signature,
    detail: f.detail,
    iteration,
    operations: exec.foundAt + 1,
    policy: plan.machine.policy ?? 'pkvm',
    failure: plan.failure,
    weaken: plan.weaken,
    raw: plan.raw,
    needs,
    key: findingKey(f.signature, needs),
  };
  const original = exec.foundAt + 1;
  let sPlan = plan;
  let ops = exec.executed.slice(0, exec.foundAt + 1);
  let found = f;
  let panic = exec.panic;
  if (o.shrink ?? true) {
    const s = shrink(plan, ops, f.signature, o.shrinkBudget ?? SHRINK_BUDGET, needs);
    sPlan = s.plan;
    ops = s.ops;
    if (s.exec) {
      found = s.exec.found ?? f;
      panic = s.exec.panic;
    } else finding.detail += ' (did not reproduce from its operations alone: not shrunk)';
    finding.shrinkRuns = s.runs;
    finding.oneMinimal = s.oneMinimal;
  }
  if (needs.length && finding.shrinkRuns !== undefined)
    finding.needs = blame(sPlan, ops, f.signature);
  finding.minimalOperations = ops.length;
  finding.scenario = reproducerScenario(o, sPlan, ops, found, panic, original, iteration);
  try {
    finding.replay = replayReproducer(finding.scenario, f.signature, found.detail);
  } catch (e) {
    finding.replay = {
      reproduces: false,
      failures: [`the reproducer does not load or run: ${(e as Error).message}`],
    };
  }
  return finding;
}

export function mergeCoverage(into: FuzzCoverage, c: FuzzCoverage): void {
  for (const [k, v] of Object.entries(c.opcodes)) into.opcodes[k] = (into.opcodes[k] ?? 0) + v;
  for (const [k, v] of Object.entries(c.operations))
    into.operations[k] = (into.operations[k] ?? 0) + v;
  for (const [k, v] of Object.entries(c.registers)) {
    const e = (into.registers[k] ??= { read: 0, write: 0 });
    e.read += v.read;
    e.write += v.write;
  }
}

/** Merge shard results: counts add up, findings keep the first iteration of each signature. */
export function mergeResults(o: FuzzOptions, parts: FuzzResult[], seconds: number): FuzzResult {
  const res: FuzzResult = {
    ...parts[0]!,
    iterations: 0,
    operations: 0,
    commands: 0,
    machines: 0,
    breaches: 0,
    unexpectedExceptions: 0,
    invariantViolations: 0,
    panics: 0,
    panicsByRule: {},
    failuresBySignature: {},
    coverage: emptyCoverage(),
    findings: [],
    reproducers: [],
    workers: parts.length,
  };
  for (const p of parts) {
    res.iterations += p.iterations;
    res.operations += p.operations;
    res.commands += p.commands;
    res.machines += p.machines;
    res.breaches += p.breaches;
    res.unexpectedExceptions += p.unexpectedExceptions;
    res.invariantViolations += p.invariantViolations;
    res.panics += p.panics;
    for (const [k, v] of Object.entries(p.panicsByRule))
      res.panicsByRule[k] = (res.panicsByRule[k] ?? 0) + v;
    for (const [k, v] of Object.entries(p.failuresBySignature))
      res.failuresBySignature[k] = (res.failuresBySignature[k] ?? 0) + v;
    mergeCoverage(res.coverage, p.coverage);
  }
  const all = parts.flatMap((p) => p.findings).sort((a, b) => a.iteration - b.iteration);
  for (const f of all) if (!res.findings.some((x) => x.key === f.key)) res.findings.push(f);
  res.findings = res.findings.slice(0, o.maxReproducers ?? 8);
  delete res.interrupted;
  if (parts.some((p) => p.interrupted)) res.interrupted = true;
  res.seconds = seconds;
  res.operationsPerSecond = Math.round(res.operations / Math.max(seconds, 1e-9));
  res.coverage = sortCoverage(res.coverage);
  res.panicsByRule = sortKeys(res.panicsByRule);
  res.failuresBySignature = sortKeys(res.failuresBySignature);
  return res;
}

function sortKeys<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function sortCoverage(c: FuzzCoverage): FuzzCoverage {
  return {
    opcodes: sortKeys(c.opcodes),
    registers: sortKeys(c.registers),
    operations: sortKeys(c.operations),
  };
}

/** The registers of the emulation table no operation touched, and the opcodes no command used. */
export function coverageGaps(c: FuzzCoverage): { registers: string[]; opcodes: string[] } {
  const registers = EMULATION.map((e) => e.name).filter(
    (n) => !c.registers[n] || c.registers[n]!.read + c.registers[n]!.write === 0,
  );
  const opcodes = OPCODES.map((d) => d.name as string).filter((n) => !c.opcodes[n]);
  return { registers, opcodes };
}

// ---- workers ---------------------------------------------------------------------------------

/** What a worker needs: the options without callbacks, and the log level. */
export interface WorkerJob {
  options: Omit<FuzzOptions, 'onProgress' | 'stopWhen'>;
  logLevel: string;
  /** every shard's progress (PROGRESS_FIELDS per shard, this one's at `slot`), read by the parent while it runs a shard itself */
  progress?: SharedArrayBuffer;
  /** this worker's place in `progress` (its worker number; default: its shard index) */
  slot?: number;
}

/** The FuzzProgress counts a shard keeps in WorkerJob.progress. */
export const PROGRESS_FIELDS = ['iterations', 'operations', 'findings', 'panics'] as const;

/** Store one shard's progress in the shared progress array. */
export function storeProgress(shared: Float64Array, shard: number, p: FuzzProgress): void {
  for (let k = 0; k < PROGRESS_FIELDS.length; k++)
    shared[shard * PROGRESS_FIELDS.length + k] = p[PROGRESS_FIELDS[k]!];
}

/**
 * The episodes worker `w` of `workers` runs of shard `s` of a campaign (all of it when `s` is
 * undefined): shard s runs episodes s.index + s.count·j, and worker w those with j ≡ w mod
 * `workers`, so the workers' shards together are exactly s's.
 */
export function workerShard(
  s: { index: number; count: number } | undefined,
  w: number,
  workers: number,
): { index: number; count: number } {
  const base = s ?? { index: 0, count: 1 };
  return { index: base.index + base.count * w, count: base.count * workers };
}

export type WorkerMessage =
  | { type: 'progress'; p: FuzzProgress }
  | { type: 'done'; result: FuzzResult }
  | { type: 'error'; message: string };

/**
 * Run a campaign over `workers` threads: shard k runs episodes k, k+N, k+2N, ... (each seeded
 * from (seed, episode) alone), and the shard results are merged; the merged result is the
 * single-thread result for the same seed and iterations (only the timings differ). Shard 0
 * runs in this thread (which would otherwise only wait, and has the modules loaded already: a
 * worker thread spends about half a second loading them), shards 1..N-1 in worker threads.
 * With `o.shard` the workers split that shard's episodes among them (workerShard).
 */
export async function fuzzParallel(
  o: FuzzOptions,
  workers: number,
  logLevel = 'silent',
): Promise<FuzzResult> {
  validateOptions(o);
  const t0 = performance.now();
  if (workers <= 1) {
    const r = await fuzzSliced(o);
    return mergeResults(o, [r], r.seconds);
  }
  // Every thread warms its JIT up on its own: TurboFan compiles the several hundred functions a
  // campaign makes hot, on background threads that a single shard gets a spare core for but
  // parallel shards compete for. Without inlining that compiling costs about a sixth less CPU
  // and the warmed-up shards run as fast (2 threads, 200,000 iterations on 2 cores: about 15%
  // sooner). The flag is process-wide, so it is put back afterwards.
  const { setFlagsFromString } = await import('node:v8');
  const inlining = !process.execArgv.includes('--no-turbo-inlining');
  setFlagsFromString('--no-turbo-inlining');
  try {
    return await runShards(o, workers, logLevel, t0);
  } finally {
    if (inlining) setFlagsFromString('--turbo-inlining');
  }
}

async function runShards(
  o: FuzzOptions,
  workers: number,
  logLevel: string,
  t0: number,
): Promise<FuzzResult> {
  const { Worker } = await import('node:worker_threads');
  const { createRequire } = await import('node:module');
  const { pathToFileURL } = await import('node:url');
  // tsx's ESM API (the package resolves to its CommonJS build from here; the ESM one sits beside it)
  const tsxApi = pathToFileURL(
    createRequire(import.meta.url)
      .resolve('tsx/esm/api')
      .replace(/\.cjs$/, '.mjs'),
  ).href;
  const entry = new URL('./worker.ts', import.meta.url).href;
  // the worker registers the TypeScript loader itself, then loads the worker module
  const boot = `const { parentPort } = require('node:worker_threads'); import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); }).catch((e) => parentPort.postMessage({ type: 'error', message: String((e && e.stack) || e) }));`;
  const { onProgress, stopWhen: _stop, ...plain } = o;
  // every shard's progress, shared with the workers: this thread reads it while it runs shard 0
  const nf = PROGRESS_FIELDS.length;
  const progressBuf = new SharedArrayBuffer(workers * nf * 8);
  const progress = new Float64Array(progressBuf);
  const report = (): void => {
    if (!onProgress) return;
    const sum = (k: number): number => {
      let a = 0;
      for (let i = 0; i < workers; i++) a += progress[i * nf + k]!;
      return a;
    };
    onProgress({
      iterations: sum(0),
      operations: sum(1),
      findings: sum(2),
      panics: sum(3),
      seconds: (performance.now() - t0) / 1000,
    });
  };
  const threads: Array<{ terminate(): Promise<number> }> = [];
  const others = Promise.all(
    Array.from({ length: workers - 1 }, (_, i) => i + 1).map(
      (index) =>
        new Promise<FuzzResult>((resolve, reject) => {
          const job: WorkerJob = {
            options: { ...plain, shard: workerShard(o.shard, index, workers) },
            logLevel,
            progress: progressBuf,
            slot: index,
          };
          const w = new Worker(boot, { eval: true, workerData: job });
          threads.push(w);
          w.on('message', (msg: WorkerMessage) => {
            if (msg.type === 'progress') {
              storeProgress(progress, index, msg.p);
              report();
            } else if (msg.type === 'done') {
              resolve(msg.result);
              void w.terminate();
            } else {
              reject(new Error(`fuzz worker ${index}: ${msg.message}`));
              void w.terminate();
            }
          });
          w.on('error', (e) => reject(e));
          w.on('exit', (code) => {
            if (code !== 0) reject(new Error(`fuzz worker ${index} exited with code ${code}`));
          });
        }),
    ),
  );
  others.catch(() => {}); // (a worker failing while this thread runs its shard is reported below)
  let own: FuzzResult;
  // at the workers' log level, as they run theirs
  const level = layerLogger('scenarios').level as LogLevel;
  setLogLevel(logLevel as LogLevel);
  try {
    own = await fuzzSliced({
      ...plain,
      shard: workerShard(o.shard, 0, workers),
      onProgress: (p) => {
        storeProgress(progress, 0, p);
        report();
      },
    });
  } catch (e) {
    for (const w of threads) void w.terminate();
    throw e;
  } finally {
    setLogLevel(level);
  }
  const parts = [own, ...(await others)];
  return mergeResults(o, parts, (performance.now() - t0) / 1000);
}

/**
 * Write each finding's reproducer into `dir` (created if needed, one level at a time); returns
 * the paths. Each file is written whole or not at all (a temporary file renamed into place).
 * A file that cannot be written (a full disk…) does not stop the others: `r.reproducers` lists
 * those written, and then the error names every file that failed.
 */
export async function writeReproducers(r: FuzzResult, dir: string): Promise<string[]> {
  const { renameSync, rmSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { makeDirs } = await import('../cli/out-path.ts');
  const out: string[] = [];
  r.reproducers = out;
  if (!r.findings.some((f) => f.scenario)) return out;
  try {
    makeDirs(dir);
  } catch (e) {
    throw new Error(`cannot create the folder ${dir}: ${(e as Error).message}`, { cause: e });
  }
  const failed: string[] = [];
  for (const f of r.findings) {
    if (!f.scenario) continue;
    const file = join(dir, `${String(f.scenario.name)}.json`);
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, JSON.stringify(f.scenario, null, 1) + '\n');
      renameSync(tmp, file);
    } catch (e) {
      rmSync(tmp, { force: true });
      failed.push(`cannot write ${file}: ${(e as Error).message}`);
      continue;
    }
    f.reproducer = file;
    out.push(file);
  }
  if (failed.length) throw new Error(failed.join('; '));
  return out;
}

// ---- benchmark -------------------------------------------------------------------------------

/** Iterations of the campaigns the `fuzz.workers*` bench entries run through the CLI. */
export const BENCH_CLI_ITERATIONS = 200_000;

/**
 * `npm run bench` entries: operations per second of a campaign with the oracle on (the
 * default checks, no shrinking).
 *  - `fuzz` (`cli` false): in this thread, at steady state: 20,000 iterations of seed 1 after
 *    two 20,000-iteration campaigns (seeds 97 and 98) have warmed the JIT up. A fresh thread
 *    runs its first 20,000 iterations at about half that speed, and the next at about three
 *    quarters: TurboFan is still compiling (on a background thread) the several hundred
 *    functions a campaign makes hot.
 *  - `fuzz.workers<N>` (`cli` true): `smmulab fuzz --workers N` in a fresh process, a campaign
 *    of BENCH_CLI_ITERATIONS, timed by the campaign itself: the workers' start-up and every
 *    thread's JIT warm-up included.
 */
export function benchFuzz(
  workers = 1,
  cli = workers > 1,
): { name: string; opsPerSec: number; ops: number; seconds: number; note: string } {
  const what =
    '(machines of 1000 iterations), default policy, full oracle every 16 operations when the state changed and at the end of each machine, invariants after every operation; failures counted, not shrunk';
  if (!cli) {
    const iterations = 20_000;
    for (const seed of [97, 98]) fuzz({ seed, iterations, shrink: false, maxReproducers: 0 }); // warm up
    const r = fuzz({ seed: 1, iterations, shrink: false, maxReproducers: 0 });
    return {
      name: 'fuzz',
      opsPerSec: r.operationsPerSecond,
      ops: r.operations,
      seconds: +r.seconds.toFixed(3),
      note: `smmulab fuzz --seed 1 --iterations ${iterations} ${what}; 1 thread, at steady state (after ${iterations}-iteration campaigns of seeds 97 and 98 have warmed the JIT up)`,
    };
  }
  const iterations = BENCH_CLI_ITERATIONS;
  const bin = new URL('../bin/smmulab.mjs', import.meta.url).pathname;
  const out = spawnSync(
    process.execPath,
    [
      bin,
      'fuzz',
      '--seed',
      '1',
      '--iterations',
      String(iterations),
      '--workers',
      String(workers),
      '--json',
      '--no-shrink',
      '--max-reproducers',
      '0',
      '--log-level',
      'silent',
    ],
    { encoding: 'utf8' },
  );
  if (out.status !== 0 && out.status !== 1)
    throw new Error(`bench fuzz --workers ${workers}: exit ${out.status}: ${out.stderr}`);
  const r = JSON.parse(out.stdout) as {
    operationsPerSecond: number;
    operations: number;
    seconds: number;
  };
  const threads =
    workers > 1
      ? `the CLI's thread runs one shard and ${workers - 1} worker thread${workers > 2 ? 's' : ''} the others (start-up included)`
      : "in the CLI's thread";
  return {
    name: `fuzz.workers${workers}`,
    opsPerSec: r.operationsPerSecond,
    ops: r.operations,
    seconds: r.seconds,
    note: `smmulab fuzz --seed 1 --iterations ${iterations} --workers ${workers} ${what}; a fresh process: ${threads}, every thread's JIT warm-up included`,
  };
}
