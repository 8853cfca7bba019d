/**
 * The malicious-host target of the fuzz engine (scenarios/fuzz/engine.ts; `smmulab fuzz`):
 * hostile host operations (host/malicious/attacker.ts) against the hypervisor.
 *
 * A machine is a fresh one: the hypervisor booted, then the Linux-like driver probed with
 * three devices attached and two buffers mapped (or, one machine in seven, the SMMU left as
 * the hypervisor booted it).
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
 * A reproducer is a scenario in raw steps that ends with `isolation: ok` (or the expectation
 * the invariant broke): replaying the file fails that step, and passes once the hypervisor is
 * fixed.
 */
import { Machine, SMMU_BASE } from '../../hw/machine.ts';
import { CpuAbortError } from '../../hw/bus.ts';
import { get, set } from '../../hw/bits.ts';
import { STE, STE_FIELDS, CFG } from '../../hw/smmu/ste.ts';
import { SMMU_MMIO_SIZE, OFF, regByName, type RegName } from '../../hw/smmu/regs.ts';
import { opcodeName } from '../../hw/smmu/commands.ts';
import {
  RULE_NAMES,
  V6_GAPS,
  isRule,
  type FailurePolicy,
  type PolicyName,
  type RuleName,
} from '../../hyp/policy/policy.ts';
import { sanitizeSte } from '../../hyp/smmuv3/ste-sanitize.ts';
import { checkCommand, REFUSE, type CmdCheck } from '../../hyp/smmuv3/cmd-policy.ts';
import { HYP_SLOT } from '../../hyp/smmuv3/shadowq.ts';
import { CR1_TEMPLATE } from '../../hyp/pkvm.ts';
import { GUEST_RAM_IPA } from '../../hyp/vm/guest.ts';
import { EMULATION } from '../../hyp/smmuv3/emul.ts';
import { RunContext } from '../engine/context.ts';
import type { RunResult } from '../engine/runner.ts';
import { STEPS } from '../steps/index.ts';
import type { MachineConfig } from '../engine/schema.ts';
import type { HostKernel } from '../steps/driver.ts';
import {
  Attacker,
  type HostileOp,
  type HostLayout,
  type HostProbe,
} from '../../host/malicious/attacker.ts';
import type { Rng } from '../../host/malicious/grammar.ts';
import type { FuzzOptions } from './options.ts';
import { coverageGapsOf, type FuzzCoverage } from './result.ts';
import * as check from './checks.ts';
import { drawHypervisor } from './plan.ts';
import { driverView } from './view.ts';
import { ENDED, type Ended, NO_REPORTS, runStep, stepThrew, throughHyp } from './execute.ts';
import {
  hexs,
  machineJson,
  scenarioName,
  stepJson,
  oracleBreachReplays,
  exceptionReplays,
} from './reproducer.ts';
import type {
  Detected as Detection,
  ExecOptions,
  Execution,
  FuzzTarget,
  Plan,
  Step,
  Trial,
} from './target.ts';

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

function parseStep(json: Record<string, unknown>): Step {
  const def = STEPS.get(json.op as string);
  if (!def) throw new Error(`fuzz: no step op ${String(json.op)}`);
  return def.schema.parse(json) as Step;
}

const PROLOGUE: readonly Step[] = PROLOGUE_JSON.map(parseStep);

// ---- one machine's set-up --------------------------------------------------------------------

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
  const { failure, weaken, raw } = drawHypervisor(o, baseWeaken(o), rng);
  // one machine in four has an SMMUv3.1 that lets guarded register writes take effect
  const preV32 = rng.chance(1 / 4);
  return {
    episode,
    firstIteration,
    machine: machineConfig(failure, weaken, o.allowAts ?? false, preV32, o.policy),
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
  design: PolicyName = 'pkvm',
): MachineConfig {
  // pkvm and pkvm-v6 differ only by their weakened rules; the other designs change an axis
  const axis = design !== 'pkvm' && design !== 'pkvm-v6';
  const isV6 =
    !axis && weaken.length === V6_GAPS.length && V6_GAPS.every((r) => weaken.includes(r));
  return {
    hyp: 'pkvm',
    ramBase: FUZZ_MACHINE.ram.base,
    ramSize: FUZZ_MACHINE.ram.size,
    hypMemory: { ...FUZZ_MACHINE.hyp },
    devices: FUZZ_MACHINE.devices.map((d) => ({ ...d })),
    policy: axis ? design : isV6 ? 'pkvm-v6' : 'pkvm',
    failure,
    ...(weaken.length && !isV6 ? { weaken: [...weaken] } : {}),
    ...(allowAts ? { allowAts } : {}),
    ...(preV32 ? { smmu: { ...PRE_V32_SMMU } } : {}),
  };
}

/** The same machine under another set of weakened rules. */
export function withWeaken(plan: Plan, weaken: RuleName[]): Plan {
  return {
    ...plan,
    weaken,
    machine: machineConfig(
      plan.failure,
      weaken,
      plan.machine.allowAts ?? false,
      plan.machine.smmu !== undefined,
      plan.machine.policy,
    ),
  };
}

// ---- the executor and its invariants ----------------------------------------------------------

export interface Detected extends Detection {
  /** invariant findings: what the reproducer's last step checks */
  expectSte?: { sid: number; fields: Record<string, number> };
  expectViolation?: RuleName;
  /** the DMA that landed on protected memory (index into the executed operations) */
  dmaOp?: number;
  /** invariant:cr1: the reproducer ends by reading the hardware CR1 */
  expectCr1?: boolean;
}

export type ExecResult = Execution<HostileOp, Detected>;

/** What the host's attacker aims with. */
export interface HostView {
  L: HostLayout;
  probe: HostProbe;
  /** the largest command queue the SMMU takes (IDR1.CMDQS) */
  cmdqMaxShift: number;
}

type HostTarget = FuzzTarget<Plan, HostileOp, Detected, HostView>;

const EMUL_BY_OFFSET = new Map(EMULATION.map((e) => [e.offset, e.name]));
const STRICT_WEAK = (): boolean => false;
const PAGE = 4096;
const ownAbort = (actor: string): boolean => actor === 'host';

/** One fresh machine of the host target: its continuous checks and the full oracle. */
function hostTrial(
  plan: Plan,
  eo: ExecOptions,
  res: ExecResult,
): Trial<HostileOp, Detected, HostView> {
  const { m, hyp, ctx } = check.trialMachine(plan, plan.machine.hypMemory ?? FUZZ_MACHINE.hyp);
  const own = hyp.own;
  const hostMay = (a: number): boolean => own.hostMay(a);
  const oracle = check.trialOracle(m, ctx, hyp, true);

  // ---- continuous checks -------------------------------------------------------------------
  let landed: Detected | null = null;
  let smmuWrites = 0;
  m.smmu.writer.observe((w) => {
    smmuWrites++;
    if (!landed) landed = check.smmuWriteBreach(w, own);
  });
  const dirtySids = new Set<number>();
  hyp.probes.reshadow.subscribe((sid) => dirtySids.add(sid));
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
    hyp.shadowQ.probes.append.subscribe(({ words: w, hostPtr }) => {
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
    });
  }
  let dmaLanded: Detected | null = null;
  let dmaIndex = -1;
  check.watchDma(m, ctx, (ep, out, access) => {
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
  });

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
      check.ownerChanges(own),
      hyp.stats.reshadows,
      smmuWrites,
    ];
    return check.fingerprintChanged(fp, now);
  };

  const fullCheck = (): Detected | null => check.oracleBreach(oracle)?.found ?? null;

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

  const run = (op: HostileOp, idx: number): Detected | Ended | null => {
    if (eo.coverage) cover(res, op, m);
    const failuresBefore = ctx.failures.length;
    dmaIndex = idx;
    const thrown = runStep(ctx, op);
    if (thrown !== null || hyp.panicked) {
      const how = stepThrew(res, hyp, thrown, ownAbort, throughHyp);
      if (how === 'panic') return afterOp(true, idx) ?? ENDED;
      if (how !== 'own') return ENDED;
    }
    // what the step reported: a data abort the host took, a refused ownership call, a DMA or
    // a breach between two phases of a guest's teardown
    const reported =
      ctx.failures.length > failuresBefore ? ctx.failures.splice(failuresBefore) : NO_REPORTS;
    if (op.op === 'guest' && op.call === 'destroy') {
      const mid = reported.find(
        (x) =>
          typeof x.expected === 'string' &&
          (x.expected.startsWith('isolation holds after teardown') ||
            x.expected.startsWith('no DMA outside')),
      );
      if (mid)
        return {
          kind: 'breach',
          signature: 'breach:teardown',
          detail: `during the teardown of guest ${op.name}: expected ${String(mid.expected)}, got ${String(mid.actual)}`,
        };
    }
    const hypAbort = check.annotate(op, reported, 'host:', expectCall);
    if (hypAbort)
      return {
        kind: 'exception',
        signature: `exception:CpuAbortError:hyp`,
        detail: `the hypervisor's own access aborted inside a host ${op.op}: ${hypAbort}`,
      };
    if (op.op === 'write' || op.op === 'memwrite') {
      const bad = hostWriteLanded(op, hostMay, m);
      if (bad) return { kind: 'breach', signature: 'breach:cpu-write', detail: bad };
    }
    return afterOp(false, idx);
  };

  return {
    ctx,
    hyp,
    afterPrologueStep: () => {},
    ready: () => {
      fingerprint();
    },
    // what the host knows and can read
    view: () => ({
      L: hostLayout(ctx.kernels.get('host'), m),
      probe: hostProbe(m, ctx),
      cmdqMaxShift: m.smmu.features.cmdqs,
    }),
    run,
    finish: (opNo) => afterOp(true, opNo),
  };
}

/** Set an ownership call's or a guest call's expectation to what its step reported. */
function expectCall(op: HostileOp, f: check.Reported): void {
  if (op.op === 'hyp') {
    if (f.expected === 'completed' && f.actual === 'refused') op.expect = 'refused';
    else if (f.expected === 'refused' && f.actual === 'completed') op.expect = 'ok';
  } else if (op.op === 'guest') {
    if (
      (f.expected === 'guest created' || f.expected === 'guest destroyed') &&
      f.actual === 'refused'
    )
      op.expect = 'refused';
    else if (f.expected === 'refused') op.expect = 'ok';
  }
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
  check.coverOperation(res, op);
  if (op.op === 'memwrite' && op.comment?.startsWith('a raw command'))
    check.coverRawCommand(res, op.hex);
  else if (op.op === 'write' || op.op === 'read') {
    const off = op.addr - m.smmu.base;
    if (off < 0 || off >= SMMU_MMIO_SIZE) return;
    check.coverRegister(res, EMUL_BY_OFFSET.get(off) ?? 'other', op.op === 'read');
  }
}

/** The layout the attacker aims at: the fuzzing machine, plus what the driver set up. */
function hostLayout(k: HostKernel | undefined, m: Machine): HostLayout {
  const { structures, mappings, asids } = driverView(k, [8, 256], m.mem);
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

const reproducerScenario: HostTarget['scenario'] = (f) => {
  const { o, plan, ops, found, panic, original, iteration } = f;
  const steps = ops.map((op, i) => {
    const j = stepJson(op);
    if (found.dmaOp !== undefined && i === ops.length - 1 && op.op === 'dma') {
      j.expect = 'fault';
      j.comment = `fails: ${found.detail}`;
    }
    return j;
  });
  const prologue = plan.prologue.map((st) => PROLOGUE_JSON[PROLOGUE.indexOf(st)]!);
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
    name: scenarioName('fuzz', o.seed, iteration, found.signature),
    description: `${cli}, iteration ${iteration} (a machine started at iteration ${plan.firstIteration}): ${found.kind} ${found.signature}: ${found.detail}. Shrunk from ${original} to ${ops.length} hostile operations${plan.raw ? ' (no driver probe)' : ''}. Replaying it fails ${fails}; it passes once the hypervisor is fixed.`,
    machine: machineJson(plan.machine),
    steps: [...prologue, ...steps, ...finalSteps(found, panic)],
  };
};

/** Whether the replay of a reproducer fails with its finding. */
function reproduces(r: RunResult, signature: string, found: Detected): boolean {
  if (signature.startsWith('breach:')) {
    const path = signature.slice(7);
    if (path === 'dma-landed')
      return r.failed.some((f) => f.op === 'dma' && f.expected === 'fault');
    if (path === 'cpu-write') return !r.ok;
    if (path === 'teardown') return r.failed.some((f) => f.op === 'guest');
    return oracleBreachReplays(r, path);
  }
  if (signature.startsWith('exception:'))
    return exceptionReplays(r, signature, (message) => message.startsWith('hyp'));
  if (signature.startsWith('invariant:shadow-ste'))
    return r.failed.some((f) => f.op === 'expectSte');
  if (signature === 'invariant:cr1') return r.failed.some((f) => f.op === 'read');
  if (signature.startsWith('invariant:command'))
    return r.failed.some((f) => f.op === 'expectViolation') && found.detail.length > 0;
  return false;
}

/** The registers of the emulation table no operation touched, and the opcodes no command used. */
export function coverageGaps(c: FuzzCoverage): { registers: string[]; opcodes: string[] } {
  return coverageGapsOf(
    c,
    EMULATION.map((e) => e.name),
  );
}

// ---- the target ------------------------------------------------------------------------------

/** The malicious host, as the fuzz engine runs it. */
export const HOST_TARGET: HostTarget = {
  name: 'host',
  aiming: 'in a register read the host made to aim its next operation',
  // (a weakened rule can fail the driver's probe: queue-share)
  prologueFailures: false,
  plan: planMachine,
  withWeaken,
  // never the probe: everything after it assumes the driver
  dropStep: (p, i) => (i >= 1 ? { ...p, prologue: p.prologue.filter((_, k) => k !== i) } : null),
  shrink: {},
  trial: hostTrial,
  attacker: (rng: Rng, plan, v) =>
    new Attacker(rng, v.L, v.probe, { raw: plan.raw, cmdqMaxShift: v.cmdqMaxShift }),
  scenario: reproducerScenario,
  reproduces,
};
