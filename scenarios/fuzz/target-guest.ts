/**
 * The malicious-guest target of the fuzz engine (scenarios/fuzz/engine.ts; `smmulab fuzz
 * --target guest`): hostile guest operations (guest/malicious/attacker.ts) against the
 * hypervisor's vSMMU, checked by the isolation oracle and by the vSMMU's own invariants. The
 * terms, the campaign, blame, shrinking, workers and the reproducer files are the engine's.
 *
 * A machine: the hypervisor boots on the host fuzzer's 16 MiB machine (FUZZ_MACHINE); the
 * host's driver probes and maps a buffer for its own device (StreamID 8); guest g1 is built
 * from 4 MiB of host memory with two devices (pSID 9 as vSID 0, pSID 256 as vSID 1) and, three
 * machines in four, guest g2 with one (pSID 65535 as vSID 0, the same vSID as g1's first).
 * Their kernels probe their vSMMUs, attach stage-1 DMA domains and map buffers (one machine in
 * seven leaves the vSMMUs at reset). Then the guests' hostile operations run, as scenario steps.
 *
 * After every operation (cheap, continuous checks):
 *  - a JavaScript exception out of hypervisor or model code is a bug (a data abort the guest
 *    takes is its own business; one the hypervisor takes is a bug; HypPanic is counted);
 *  - a DMA from a guest's device that lands outside that guest's memory, or from a host
 *    device outside host memory; an SMMU write (event, MSI) on memory the host may not write;
 *    a guest CPU write that completes outside its RAM; a hypervisor read or write of memory
 *    outside the guest's RAM on that guest's behalf (Guest.watch): breaches at once;
 *  - invariants of the vSMMU: the physical STE installed for a guest's pSID is the nesting of
 *    some legal guest STE under that guest's stage-2 (its VMID, S2TTB and stage-2 fields, S2PTW,
 *    S2R, STRW=NS-EL1, EATS=0: nestSte of the unweakened rules maps it to itself); a guest's
 *    operation installs STEs only for its own pSIDs; every physical command issued on a guest's
 *    behalf is a CFGI/ATC_INV of its own pSIDs, a TLBI_NH_* or TLBI_S12_VMALL of its own VMID,
 *    or CMD_SYNC, and never stops the hardware queue; no trap consumes more than two command
 *    budgets (its own batch and one continuation); every record the guest's event queue receives names one of its vSIDs (but
 *    C_BAD_STREAMID, which names the stray one);
 * and every `checkEvery` operations when the state changed, and at the end: the full
 * isolation oracle (scenarios/check/oracle.ts; a guest's device may reach only its guest's memory).
 *
 * A reproducer ends with a step that fails: `isolation` for a breach the oracle sees, the DMA
 * or the write itself, a `memread` of the page a hypervisor write landed on, `expectSte` for
 * a physical STE, a `read` (as the hypervisor) of the physical command-queue slot, a `read`
 * (as the guest) of its event record; and otherwise, for a failure that needs a weakened
 * rule, probes of what the guest can see (its vSMMU registers) and of the physical STEs and
 * command slots whose expected values come from replaying the same steps with the rule on.
 */
import type { Machine } from '../../hw/machine.ts';
import { CpuAbortError } from '../../hw/bus.ts';
import { get, set } from '../../hw/bits.ts';
import { STE, STE_FIELDS, STE_WORDS, CFG } from '../../hw/smmu/ste.ts';
import { SMMU_MMIO_SIZE, regNameAt, OFF, regByName, type RegName } from '../../hw/smmu/regs.ts';
import { OP, VMID as VMID_F, opcodeName } from '../../hw/smmu/commands.ts';
import { EVT } from '../../hw/smmu/events.ts';
import { GERR } from '../../hw/smmu/gerror.ts';
import { queueBase, queueLog2 } from '../../hw/smmu/queue.ts';
import { qIndex, ptrMask } from '../../hw/smmu/queue.ts';
import {
  V6_GAPS,
  type FailurePolicy,
  type PolicyName,
  type RuleName,
} from '../../hyp/policy/policy.ts';
import { nestSte, S1_FIELDS, type NestEnv } from '../../hyp/vm/vsmmu-ste.ts';
import { VSMMU_IPA, type Guest } from '../../hyp/vm/guest.ts';
import type { VSmmu } from '../../hyp/vm/vsmmu.ts';
import type { PkvmHyp } from '../../hyp/pkvm.ts';
import { RunContext } from '../engine/context.ts';
import { STEPS } from '../steps/index.ts';
import type { RunResult } from '../engine/runner.ts';
import type { MachineConfig } from '../engine/schema.ts';
import type { HostKernel } from '../steps/driver.ts';
// the target's interface, then the engine's pieces a target is built from
import type { FuzzTarget, Trial, Plan, Step } from './target.ts';
import type { Detected as Detection, ExecOptions, Execution } from './target.ts';
import type { FuzzOptions } from './options.ts';
import { drawHypervisor } from './plan.ts';
import { ENDED, NO_REPORTS, runStep, stepThrew, type Ended } from './execute.ts';
import * as check from './checks.ts';
import { driverView } from './view.ts';
import { replayOps, type AnyTarget } from './blame.ts';
import { coverageGapsOf, type FuzzCoverage } from './result.ts';
import {
  exceptionReplays,
  hexs,
  machineJson,
  oracleBreachReplays,
  scenarioName,
  stepJson,
} from './reproducer.ts';
// the host target's machine, which the guests' is laid out in
import { FUZZ_MACHINE, machineConfig } from './target-host.ts';
import {
  GuestAttacker,
  type Rng,
  type GuestOp,
  type GuestView,
  type GuestProbe,
} from '../../guest/malicious/attacker.ts';

/** The vSMMU's named rules: the ones `--target guest` exists to test. */
export const GUEST_RULES: readonly RuleName[] = [
  'vsid-owner',
  'vste-s1-only',
  'vste-legal',
  'vtlbi-vmid',
  'vsmmu-p2m',
  'vcmd-budget',
  'vevt-vsid',
];

// ---- the machine -----------------------------------------------------------------------------

/**
 * The fuzzing machine and its guests (host PAs; each guest sees its RAM at IPA 0x4000_0000):
 * 16 MiB of RAM, the host's driver in the first 4 MiB, g1 and g2 in the next two 4 MiB, the
 * hypervisor in the last 4 MiB; the devices are the host fuzzer's.
 */
export const GUEST_FUZZ = {
  machine: {
    ramBase: 0x4000_0000,
    ramSize: 0x100_0000,
    hypMemory: FUZZ_MACHINE.hyp,
    devices: FUZZ_MACHINE.devices,
  },
  hostPages: { base: 0x4000_0000, limit: 0x4040_0000 },
  hostBuffer: 0x4030_0000,
  guests: [
    {
      name: 'g1',
      memory: { base: 0x4040_0000, size: 0x40_0000 },
      devices: [
        { device: 'dev9', vsid: 0 },
        { device: 'dev256', vsid: 1 },
      ],
    },
    {
      name: 'g2',
      memory: { base: 0x4080_0000, size: 0x40_0000 },
      devices: [{ device: 'dev65535', vsid: 0 }],
    },
  ],
  /** the guest kernel's own pages (IPA): its queues and tables */
  guestPages: { base: 0x4010_0000, limit: 0x4040_0000 },
  /** guest RAM kept for the attacker's own structures (IPA) */
  scratch: { base: 0x4004_0000, size: 0xc_0000 },
} as const;

export function guestPrologue(twoGuests: boolean, raw: boolean): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [
    {
      op: 'driver',
      call: 'probe',
      pages: { base: hexs(GUEST_FUZZ.hostPages.base), limit: hexs(GUEST_FUZZ.hostPages.limit) },
      comment: 'the host driver probes (every SMMU access traps into the hypervisor)',
    },
    { op: 'driver', call: 'attach', sid: 8, domain: 'dma' },
    { op: 'driver', call: 'map', sid: 8, pa: hexs(GUEST_FUZZ.hostBuffer), size: 0x2000, as: 'm8' },
  ];
  for (const g of GUEST_FUZZ.guests.slice(0, twoGuests ? 2 : 1)) {
    const actor = `guest:${g.name}`;
    out.push({
      op: 'guest',
      call: 'create',
      name: g.name,
      memory: { base: hexs(g.memory.base), size: hexs(g.memory.size) },
      devices: g.devices.map((d) => ({ ...d })),
      boot: false,
      comment: `the host donates 4 MiB at PA ${hexs(g.memory.base)} to ${g.name} (IPA 0x40000000), with ${g.devices.map((d) => `${d.device} as vSID ${d.vsid}`).join(', ')}`,
    });
    if (raw) continue;
    out.push({
      op: 'driver',
      actor,
      call: 'probe',
      pages: { base: hexs(GUEST_FUZZ.guestPages.base), limit: hexs(GUEST_FUZZ.guestPages.limit) },
      comment: `${g.name}'s kernel probes its vSMMU`,
    });
    g.devices.forEach((d, i) => {
      out.push({
        op: 'driver',
        actor,
        call: 'attach',
        sid: d.vsid,
        domain: 'dma',
        ...(i === 1 ? { ssidBits: 2 } : {}),
      });
      out.push({
        op: 'driver',
        actor,
        call: 'map',
        sid: d.vsid,
        pa: hexs(0x4000_1000 + i * 0x4000),
        size: 0x2000,
        as: `${g.name}-b${d.vsid}`,
      });
    });
  }
  return out;
}

function parseStep(json: Record<string, unknown>): Step {
  const def = STEPS.get(json.op as string);
  if (!def) throw new Error(`fuzz-guest: no step op ${String(json.op)}`);
  return def.schema.parse(json) as Step;
}

/** The race step takes a guest actor (a second vCPU rewriting guest memory between hypervisor reads). */
const GUEST_RACES =
  STEPS.get('race')?.schema.safeParse({ op: 'race', actor: 'guest:g1', addr: 0, hex: '00' })
    .success === true;

export interface GuestPlan extends Plan {
  twoGuests: boolean;
  /** the prologue steps (JSON) and their parsed form */
  prologueJson: Record<string, unknown>[];
  prologue: Step[];
}

/** the weakened rules: --weaken, and the v6-era gaps under --policy pkvm-v6 (host-side rules: they change nothing a guest reaches) */
function baseWeaken(o: FuzzOptions): RuleName[] {
  return [
    ...new Set([...(o.weaken ?? []), ...((o.policy ?? 'pkvm') === 'pkvm-v6' ? V6_GAPS : [])]),
  ];
}

export function planGuestMachine(
  o: FuzzOptions,
  episode: number,
  firstIteration: number,
  rng: Rng,
): GuestPlan {
  const { failure, weaken, raw } = drawHypervisor(o, baseWeaken(o), rng);
  const twoGuests = rng.chance(3 / 4);
  const prologueJson = guestPrologue(twoGuests, raw);
  return {
    episode,
    firstIteration,
    machine: guestMachineConfig(failure, weaken, o.allowAts ?? false, o.policy),
    failure,
    weaken,
    raw,
    twoGuests,
    prologueJson,
    prologue: prologueJson.map(parseStep),
  };
}

/** The host fuzzer's machine configuration (policy, failure, weakened rules), on this file's layout. */
function guestMachineConfig(
  failure: FailurePolicy,
  weaken: readonly RuleName[],
  allowAts: boolean,
  design?: PolicyName,
): MachineConfig {
  const L = GUEST_FUZZ.machine;
  return {
    ...machineConfig(failure, weaken, allowAts, false, design),
    ramBase: L.ramBase,
    ramSize: L.ramSize,
    hypMemory: { ...L.hypMemory },
    devices: L.devices.map((d) => ({ ...d })),
  };
}

function withWeaken(plan: GuestPlan, weaken: RuleName[]): GuestPlan {
  return {
    ...plan,
    weaken,
    machine: guestMachineConfig(
      plan.failure,
      weaken,
      plan.machine.allowAts ?? false,
      plan.machine.policy,
    ),
  };
}

// ---- the executor ----------------------------------------------------------------------------

/** A reproducer's closing step, and what it is for. */
type Probe = Record<string, unknown>;

export interface Detected extends Detection {
  /** steps that fail on replay and pass once fixed (after the operations) */
  checks?: Probe[];
  /** the last operation itself fails on replay (its expectation is set here) */
  lastOpExpect?: 'abort';
  /** physical command slots and pSIDs worth probing (differential reproducers) */
  slots?: number[];
  psids?: number[];
}

export interface GuestExecResult extends Execution<GuestOp, Detected> {
  /** the machine at the end (for probes) */
  machine?: { m: Machine; hyp: PkvmHyp; ctx: RunContext };
}

type GuestTarget = FuzzTarget<GuestPlan, GuestOp, Detected, GuestView[], GuestExecResult>;

const ownAbort = (actor: string): boolean => actor.startsWith('guest:');
const PAGE = 4096;
const EVT_SID_MASK = 0xffff_ffff_0000_0000n;
/** VMID's position in the first doubleword of a TLBI command (bits [47:32]) */
const VMID_MASK64 = 0xffffn << 32n;
const ALLOWED_PHYS = new Set<number>([
  OP.CFGI_STE,
  OP.CFGI_CD,
  OP.CFGI_CD_ALL,
  OP.ATC_INV,
  OP.TLBI_NH_ALL,
  OP.TLBI_NH_ASID,
  OP.TLBI_NH_VA,
  OP.TLBI_NH_VAA,
  OP.TLBI_S12_VMALL,
  OP.CMD_SYNC,
]);
/** (CFGI_STE comes with an STE install, which the install check judges by its effect) */
const SID_OPS = new Set<number>([OP.CFGI_CD, OP.CFGI_CD_ALL, OP.ATC_INV]);
const VMID_OPS = new Set<number>([
  OP.TLBI_NH_ALL,
  OP.TLBI_NH_ASID,
  OP.TLBI_NH_VA,
  OP.TLBI_NH_VAA,
  OP.TLBI_S12_VMALL,
]);
const STE_CHECKED = STE_FIELDS.filter((f) => f.name !== 'IMPLEMENTATION_DEFINED');

const bytesHex = (b: Uint8Array): string =>
  Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

/**
 * The physical STE the unweakened vSMMU would install for a guest STE with this STE's
 * configuration: the guest STE is read back from the physical one (V, Config un-nested, the
 * stage-1 fields), then nested again by the rules. An STE that is not a nesting of a legal
 * guest STE under `env` differs from the result.
 */
export function expectedNesting(phys: Uint32Array, env: NestEnv): Uint32Array {
  const out = new Uint32Array(STE_WORDS);
  if (get(phys, STE.V) === 0) return out;
  const g = new Uint32Array(STE_WORDS);
  set(g, STE.V, 1);
  const c = get(phys, STE.Config);
  set(
    g,
    STE.Config,
    c === CFG.NESTED
      ? CFG.S1_TRANS
      : c === CFG.S2_TRANS
        ? CFG.BYPASS
        : c === CFG.ABORT
          ? CFG.ABORT
          : CFG.BYPASS,
  );
  if (c === CFG.NESTED) for (const f of S1_FIELDS) set(g, f, get(phys, f));
  nestSte(g, out, { features: env.features, s2: env.s2, vmid: env.vmid }, []);
  return out;
}

/** The differing fields of two STEs, as expectSte wants them (the `want` side), and the first one. */
function steDiff(
  got: Uint32Array,
  want: Uint32Array,
): { fields: Record<string, number | string>; first: string } {
  // V=0 is the whole story when it is wanted (nothing else of an invalid STE matters)
  if (get(want, STE.V) === 0 && get(got, STE.V) === 1) return { fields: { V: 0 }, first: 'V' };
  const fields: Record<string, number | string> = {};
  let first = '';
  for (const f of STE_CHECKED) {
    const w = get(want, f);
    if (get(got, f) !== w) {
      fields[f.name] =
        f.name === 'S2TTB' ? hexs(w * 16) : f.name === 'S1ContextPtr' ? hexs(w * 64) : w;
      if (!first) first = f.name;
    }
  }
  return { fields, first };
}

/** One fresh machine of the guest target: the vSMMU's invariants and the full oracle. */
function guestTrial(
  plan: GuestPlan,
  eo: ExecOptions,
  res: GuestExecResult,
): Trial<GuestOp, Detected, GuestView[]> {
  const { m, hyp, ctx } = check.trialMachine(plan, GUEST_FUZZ.machine.hypMemory);
  if (eo.keep) res.machine = { m, hyp, ctx };
  const own = hyp.own;
  const oracle = check.trialOracle(m, ctx, hyp, false);

  /** the guest whose operation is running (null: the prologue, the host) */
  let acting: Guest | null = null;
  let cheap: Detected | null = null;
  /** one operation may break several things: keep the most telling (a breach, then what the hardware was given, then the rest) */
  const rank = (d: Detected): number =>
    d.kind === 'breach'
      ? 0
      : d.signature.startsWith('invariant:guest-ste')
        ? 1
        : d.signature.startsWith('invariant:guest-command')
          ? 2
          : 3;
  const flag = (d: Detected): void => {
    if (cheap === null || rank(d) < rank(cheap)) cheap = d;
  };

  // ---- continuous checks -------------------------------------------------------------------
  let smmuWrites = 0;
  m.smmu.writer.observe((w) => {
    smmuWrites++;
    const d = check.smmuWriteBreach(w, own);
    if (d) flag(d);
  });

  // DMA: a guest's device within its guest's memory, a host device within host memory
  check.watchDma(m, ctx, (ep, out, access) => {
    if (out.ok && out.pa >= 0) {
      const g = hyp.sidOwner.get(ep.sid);
      const ok = g ? own.state(out.pa).owner === g.actor : own.hostMay(out.pa);
      if (!ok)
        flag({
          kind: 'breach',
          signature: 'breach:dma-landed',
          detail: `a ${access} DMA from StreamID ${ep.sid} (${g ? `${g.actor}'s device` : 'a host device'}) reached PA 0x${out.pa.toString(16)}, ${own.state(out.pa).owner} memory`,
        });
    }
    return out;
  });

  // physical STE installs: which pSIDs changed, and none of another's during a guest's operation
  const dirty = new Set<number>();
  let installs = 0;
  const strtab = hyp.strtab;
  const origInstall = strtab.install;
  strtab.install = (sid: number, next: Uint32Array, sync: (cmds: Uint32Array[]) => void): void => {
    const g = acting;
    const before = g && !g.psidToVsid.has(sid) ? hyp.shadowSte(sid) : null;
    origInstall.call(strtab, sid, next, sync);
    installs++;
    dirty.add(sid);
    if (g && before) {
      const d = steDiff(hyp.shadowSte(sid), before);
      if (d.first)
        flag({
          kind: 'invariant',
          signature: 'invariant:guest-ste:foreign-psid',
          detail: `an operation of ${g.actor} changed the physical STE of pSID ${sid}, which is ${hyp.sidOwner.get(sid)?.actor ?? 'the host'}'s (${Object.keys(d.fields).join(', ')})`,
          checks: [
            {
              op: 'expectSte',
              sid,
              fields: d.fields,
              comment: `pSID ${sid} is not ${g.name}'s: its STE must be as it was`,
            },
          ],
          psids: [sid],
        });
    }
  };

  // physical commands issued on a guest's behalf
  const sq = hyp.shadowQ;
  const origIssue = sq.issueAndSync;
  sq.issueAndSync = (cmds: readonly Uint32Array[]): void => {
    const g = acting;
    const p0 = sq.prod;
    let thrown: unknown = null;
    try {
      origIssue.call(sq, cmds);
    } catch (e) {
      thrown = e;
    }
    if (g && sq.prod !== p0) {
      const size = 2 ** sq.log2size;
      cmds.forEach((c, i) => {
        const op = c[0]! & 0xff;
        const slot = sq.base + ((p0 + i) & (size - 1)) * 16;
        const name = opcodeName(op);
        const at = `the physical command-queue slot 0x${slot.toString(16)}`;
        if (!ALLOWED_PHYS.has(op)) {
          flag({
            kind: 'invariant',
            signature: `invariant:guest-command:${name}`,
            detail: `${g.actor}'s vSMMU issued a physical ${name} (${at}); a guest gets only CFGI/ATC_INV of its pSIDs, TLBI_NH_*/TLBI_S12_VMALL of its VMID and CMD_SYNC`,
            slots: [slot],
          });
        } else if (SID_OPS.has(op) && !g.psidToVsid.has(c[1]!)) {
          flag({
            kind: 'invariant',
            signature: 'invariant:guest-command:foreign-sid',
            detail: `${g.actor}'s vSMMU issued a physical ${name} for StreamID ${c[1]}, which is not one of its pSIDs (${at})`,
            slots: [slot],
            psids: [c[1]!],
          });
        } else if (VMID_OPS.has(op) && get(c, VMID_F) !== g.vmid) {
          flag({
            kind: 'invariant',
            signature: 'invariant:guest-command:vmid',
            detail: `${g.actor}'s vSMMU issued a physical ${name} with VMID ${get(c, VMID_F)}, not its VMID ${g.vmid} (${at})`,
            slots: [slot],
            checks: [
              {
                op: 'read',
                actor: 'hyp',
                addr: hexs(slot),
                size: 8,
                mask: hexs(VMID_MASK64),
                expect: hexs(BigInt(g.vmid) << 32n),
                comment: `the physical ${name} issued for ${g.name}'s TLBI (${at}): its VMID must be ${g.name}'s, ${g.vmid}`,
              },
            ],
          });
        }
      });
    }
    if (thrown !== null) throw thrown;
  };

  // per guest: hypervisor accesses to its memory, the command budget, its event records
  const budget = hyp.policy.guestCmdBudget;
  const watched = new Set<string>();
  const watchGuests = (): void => {
    for (const [name, g] of hyp.guests) {
      if (watched.has(name)) continue;
      watched.add(name);
      const v = hyp.vsmmus.get(name)!;
      g.watch = (dir, ipa, pa, bytes) => {
        if (pa < 0 || g.ownsPa(pa, bytes)) return;
        const what = `the hypervisor ${dir === 'w' ? 'wrote' : 'read'} ${bytes} bytes at PA 0x${pa.toString(16)} (${own.state(pa).owner} memory) for ${g.actor}'s IPA 0x${ipa.toString(16)}`;
        if (dir === 'w') {
          const orig = m.mem.readBytes(pa, bytes);
          flag({
            kind: 'breach',
            signature: 'breach:hyp-write',
            detail: what,
            checks: [
              {
                op: 'memread',
                actor: 'hyp',
                addr: hexs(pa),
                len: bytes,
                expect: bytesHex(orig),
                comment: `${own.state(pa).owner} memory at PA 0x${pa.toString(16)} must not hold a record of ${g.name}'s`,
              },
            ],
          });
        } else flag({ kind: 'breach', signature: 'breach:hyp-read', detail: what });
      };
      // commands consumed per trap: the trap's own batch and one continuation, a budget each
      const q = v.cmdq;
      const origConsume = q.consume;
      let inTrap = 0;
      q.consume = (limit?: number): number => {
        const n = origConsume.call(q, limit);
        inTrap += n;
        return n;
      };
      const trapped = <T>(f: () => T): T => {
        inTrap = 0;
        const out = f();
        if (inTrap > 2 * budget)
          flag({
            kind: 'invariant',
            signature: 'invariant:guest-work',
            detail: `one trap of ${g.actor} made the vSMMU consume ${inTrap} of its commands (at most ${2 * budget}: a budget of ${budget} for the trap's own batch and one for the continuation)`,
          });
        return out;
      };
      const { read: vRead, write: vWrite } = v;
      v.read = (off, size) => trapped(() => vRead.call(v, off, size));
      v.write = (off, size, value) => trapped(() => vWrite.call(v, off, size, value));
      const origInject = v.inject;
      v.inject = (words: Uint32Array): boolean => {
        const qs = queueLog2(v.eventqBase, v.features.eventqs);
        const ipa = queueBase(v.eventqBase, qs, 32) + qIndex(v.evtq.prod & ptrMask(qs), qs) * 32;
        const ok = origInject.call(v, words);
        const sid = words[1]!;
        if (ok && (words[0]! & 0xff) !== EVT.C_BAD_STREAMID && !g.vsidToPsid.has(sid)) {
          const vsid = g.psidToVsid.get(sid);
          flag({
            kind: 'invariant',
            signature: 'invariant:guest-event-sid',
            detail: `${g.actor}'s event queue got a record for StreamID ${sid}, which is not one of its vSIDs${vsid !== undefined ? ` (it is the pSID behind its vSID ${vsid})` : ''}`,
            ...(vsid !== undefined
              ? {
                  checks: [
                    {
                      op: 'read',
                      actor: g.actor,
                      addr: hexs(ipa),
                      size: 8,
                      mask: hexs(EVT_SID_MASK),
                      expect: hexs(BigInt(vsid) << 32n),
                      comment: `${g.name} reads its event record: the StreamID must be its vSID ${vsid}, not the pSID ${sid}`,
                    },
                  ],
                }
              : {}),
          });
        }
        return ok;
      };
    }
  };

  const steInvariant = (): Detected | null => {
    for (const psid of dirty) {
      const g = hyp.sidOwner.get(psid);
      if (!g) continue;
      const v = hyp.vsmmus.get(g.name);
      if (!v) continue;
      const sh = hyp.shadowSte(psid);
      const want = expectedNesting(sh, { features: v.features, s2: g.s2cfg, vmid: g.vmid });
      const d = steDiff(sh, want);
      dirty.delete(psid);
      if (d.first) {
        return {
          kind: 'invariant',
          signature: `invariant:guest-ste:${d.first}`,
          detail: `the physical STE of ${g.actor}'s pSID ${psid} is not the nesting of a legal guest STE under its stage-2: ${Object.entries(
            d.fields,
          )
            .map(
              ([k, w]) =>
                `${k}=${get(
                  sh,
                  STE_FIELDS.find((f) => f.name === k)!,
                )} (want ${w})`,
            )
            .join(', ')}`,
          checks: [
            {
              op: 'expectSte',
              sid: psid,
              fields: d.fields,
              comment: `${g.name}'s pSID ${psid}: only the guest's stage-1 fields under the hypervisor's stage-2`,
            },
          ],
          psids: [psid],
        };
      }
    }
    dirty.clear();
    return null;
  };

  const fp: number[] = [];
  const fingerprint = (): boolean => {
    let dmas = 0;
    for (const d of m.devices.values()) dmas += d.dmas + d.atsRequests + d.atc.size;
    const s = m.smmu;
    const now = [
      s.cr0,
      s.gbpa.value,
      installs,
      check.ownerChanges(own),
      smmuWrites,
      dmas,
      s.strtab.fetches,
      m.devices.size,
    ];
    return check.fingerprintChanged(fp, now);
  };

  const fullCheck = (): Detected | null => {
    const b = check.oracleBreach(oracle);
    return b
      ? {
          ...b.found,
          checks: [{ op: 'isolation', expect: 'ok', comment: `fails: ${b.best}` }],
        }
      : null;
  };

  const afterOp = (force: boolean, opNo: number): Detected | null => {
    const c: Detected | null = cheap ?? steInvariant();
    cheap = null;
    if (c || force || (opNo + 1) % eo.checkEvery === 0) {
      if (c || force || fingerprint()) {
        const b = fullCheck();
        if (b) {
          if (c && c.signature !== b.signature) b.detail += ` (first seen as: ${c.detail})`;
          return b;
        }
      }
    }
    return c;
  };

  const run = (op: GuestOp, idx: number): Detected | Ended | null => {
    if (eo.coverage) cover(res, op);
    const actor = 'actor' in op ? op.actor : null;
    acting = actor?.startsWith('guest:') ? (hyp.guests.get(actor.slice(6)) ?? null) : null;
    const physErr = m.smmu.gerror.active(GERR.CMDQ_ERR);
    const failuresBefore = ctx.failures.length;
    const thrown = runStep(ctx, op);
    const g = acting;
    acting = null;
    if (thrown !== null || hyp.panicked) {
      const how = stepThrew(res, hyp, thrown, ownAbort);
      if (how === 'panic') return afterOp(true, idx) ?? ENDED;
      if (how !== 'own') return ENDED;
    }
    const reported =
      ctx.failures.length > failuresBefore ? ctx.failures.splice(failuresBefore) : NO_REPORTS;
    const hypAbort = check.annotate(op, reported, 'guest:');
    if (hypAbort)
      return {
        kind: 'exception',
        signature: 'exception:CpuAbortError:hyp',
        detail: `the hypervisor's own access aborted inside a guest ${op.op}: ${hypAbort}`,
      };
    if (g && (op.op === 'write' || op.op === 'memwrite') && op.expect !== 'abort') {
      const bad = guestWriteLanded(op, g, hyp);
      if (bad)
        flag({
          kind: 'breach',
          signature: 'breach:cpu-write',
          detail: bad,
          lastOpExpect: 'abort',
        });
    }
    if (g && !physErr && m.smmu.gerror.active(GERR.CMDQ_ERR)) {
      const cons = m.smmu.cmdq.err;
      flag({
        kind: 'invariant',
        signature: 'invariant:guest-command:hw-error',
        detail: `a physical command issued for ${g.actor} stopped the hardware command queue (CONS.ERR=${cons}): the guest can stall the host's and every guest's invalidations`,
        checks: [
          {
            op: 'read',
            actor: 'hyp',
            addr: hexs(m.smmu.base + OFF.GERROR),
            size: 4,
            mask: '0x1',
            expect: hexs(m.smmu.gerror.gerrorn & 1),
            comment: 'the hardware GERROR.CMDQ_ERR must not be active after a guest operation',
          },
        ],
      });
    }
    return afterOp(false, idx);
  };

  return {
    ctx,
    hyp,
    afterPrologueStep: watchGuests,
    ready: () => {
      cheap = null;
      dirty.clear();
      fingerprint();
    },
    view: () =>
      [...hyp.guests.values()].map((g) => guestView(g, hyp, m, ctx.kernels.get(g.actor), plan.raw)),
    run,
    finish: (opNo) => afterOp(true, opNo),
  };
}

/** A guest CPU write that completed must have stayed in the guest's RAM (or trapped to its vSMMU). */
function guestWriteLanded(
  op: GuestOp & { op: 'write' | 'memwrite' },
  g: Guest,
  hyp: PkvmHyp,
): string | null {
  const len = op.op === 'write' ? op.size : op.hex.length / 2;
  const off = op.addr - VSMMU_IPA;
  if (off >= 0 && off + len <= SMMU_MMIO_SIZE) return null;
  for (let a = op.addr - (op.addr % PAGE); a < op.addr + len; a += PAGE) {
    const pa = g.ipaToPa(a);
    if (pa < 0 || hyp.own.state(pa).owner !== g.actor)
      return `a ${g.actor} CPU write of ${len} bytes at IPA 0x${op.addr.toString(16)} completed outside its RAM (IPA page 0x${a.toString(16)})`;
  }
  return null;
}

function cover(res: GuestExecResult, op: GuestOp): void {
  check.coverOperation(res, op);
  if (
    op.op === 'memwrite' &&
    op.comment &&
    (op.comment.startsWith('a raw command') || / × |at the guest's CMDQ_PROD slot/.test(op.comment))
  ) {
    check.coverRawCommand(res, op.hex, op.comment.includes(' × ') ? op.hex.length / 32 : 1);
  } else if (op.op === 'write' || op.op === 'read') {
    const off = op.addr - VSMMU_IPA;
    if (off < 0 || off >= SMMU_MMIO_SIZE) return;
    check.coverRegister(res, VSMMU_REG_BY_OFFSET.get(off) ?? 'other', op.op === 'read');
  }
}

/** The registers the vSMMU implements (others are RAZ/WI, counted as "other"), by offset; 64-bit ones by either half. */
export const VSMMU_REGISTERS: readonly RegName[] = [
  'IDR0',
  'IDR1',
  'IDR2',
  'IDR3',
  'IDR4',
  'IDR5',
  'IIDR',
  'AIDR',
  'CR0',
  'CR0ACK',
  'CR1',
  'CR2',
  'STATUSR',
  'GBPA',
  'IRQ_CTRL',
  'IRQ_CTRLACK',
  'GERROR',
  'GERRORN',
  'STRTAB_BASE',
  'STRTAB_BASE_CFG',
  'CMDQ_BASE',
  'CMDQ_PROD',
  'CMDQ_CONS',
  'EVENTQ_BASE',
  'EVENTQ_PROD',
  'EVENTQ_CONS',
];
const VSMMU_REG_BY_OFFSET = new Map<number, string>();
for (const name of VSMMU_REGISTERS) {
  const r = regByName(name)!;
  VSMMU_REG_BY_OFFSET.set(r.offset, name);
  if (r.width === 8) VSMMU_REG_BY_OFFSET.set(r.offset + 4, name);
}

/** The vSMMU registers no operation touched, and the opcodes no guest command used. */
export function guestCoverageGaps(c: FuzzCoverage): { registers: string[]; opcodes: string[] } {
  return coverageGapsOf(c, VSMMU_REGISTERS);
}

/** A guest as its attacker sees it, from its kernel's structures and the vSMMU (side-effect free). */
function guestView(
  g: Guest,
  hyp: PkvmHyp,
  m: Machine,
  k: HostKernel | undefined,
  raw: boolean,
): GuestView {
  const v: VSmmu = hyp.vsmmus.get(g.name)!;
  const vsids = [...g.vsidToPsid.keys()];
  const { structures, mappings, asids } = driverView(k, vsids, m.mem, (ipa) => g.ipaToPa(ipa));
  const others = [...hyp.guests.values()].filter((o) => o !== g);
  const foreign = [
    ...new Set([
      ...others.flatMap((o) => [...o.vsidToPsid.keys(), ...o.psidToVsid.keys()]),
      ...g.psidToVsid.keys(),
      ...GUEST_FUZZ.machine.devices.map((d) => d.sid).filter((s) => !hyp.sidOwner.has(s)),
    ]),
  ]
    .filter((s) => !g.vsidToPsid.has(s))
    .sort((a, b) => a - b);
  const probe: GuestProbe = {
    reg(name: RegName): bigint {
      const r = regByName(name)!;
      const lo = BigInt(v.read32(r.offset) >>> 0);
      return r.width === 8 ? lo | (BigInt(v.read32(r.offset + 4) >>> 0) << 32n) : lo;
    },
    mem64(ipa: number): bigint | null {
      const pa = g.ipaToPa(ipa);
      return pa < 0 || g.ipaToPa(ipa + 7) < 0 ? null : m.mem.read64(pa);
    },
  };
  return {
    actor: g.actor,
    L: {
      ram: { base: g.ipaBase, size: g.size },
      hyp: { ...GUEST_FUZZ.machine.hypMemory },
      smmu: VSMMU_IPA,
      scratch: { ...GUEST_FUZZ.scratch },
      sids: vsids,
      mappings,
      structures,
      asids,
      sidBits: 16,
    },
    devices: [...g.vsidToPsid].map(([vsid, psid]) => ({ vsid, psid })),
    foreign,
    probe,
    raw: raw || !k,
  };
}

/** The steps of the prologue a shrink may drop: not the host's probe, not g1's creation. */
function droppable(plan: GuestPlan, i: number): boolean {
  const st = plan.prologueJson[i]!;
  return i > 0 && !(st.op === 'guest' && st.name === 'g1');
}

/**
 * Shrink a failure as the host fuzzer's `shrink` does (scenarios/fuzz/shrink.ts `shrinkFailure`),
// ---- reproducers -----------------------------------------------------------------------------

/**
 * Probes for a failure with no check of its own: what each guest reads in its vSMMU, the
 * physical STEs of the guests' (and the flagged) pSIDs, and the flagged physical command slots,
 * run after the operations; the expected values are those of a replay with `needs` restored.
 */
function differentialChecks(
  plan: GuestPlan,
  ops: readonly GuestOp[],
  d: Detected,
  needs: readonly RuleName[],
): Probe[] {
  const reads = (hyp: PkvmHyp): Array<{ actor: string; addr: number; size: 4 | 8 }> => {
    const out: Array<{ actor: string; addr: number; size: 4 | 8 }> = [];
    for (const g of hyp.guests.values())
      for (const r of ['CMDQ_CONS', 'GERROR', 'EVENTQ_PROD', 'CR0'] as const)
        out.push({ actor: g.actor, addr: VSMMU_IPA + regByName(r)!.offset, size: 4 });
    for (const s of d.slots ?? [])
      out.push({ actor: 'hyp', addr: s, size: 8 }, { actor: 'hyp', addr: s + 8, size: 8 });
    return out;
  };
  const observe = (
    p: GuestPlan,
  ): {
    reads: Array<{ actor: string; addr: number; size: 4 | 8; value: bigint | 'abort' }>;
    stes: Map<number, Uint32Array>;
  } | null => {
    const r = replayOps(GUEST_TARGET as unknown as AnyTarget, p, ops, true) as GuestExecResult;
    if (!r.machine) return null;
    const { m, hyp } = r.machine;
    const values = reads(hyp).map((x) => {
      try {
        return { ...x, value: m.bus.read(x.actor, x.addr, x.size) };
      } catch (e) {
        if (e instanceof CpuAbortError) return { ...x, value: 'abort' as const };
        throw e;
      }
    });
    const stes = new Map<number, Uint32Array>();
    for (const psid of new Set([...hyp.sidOwner.keys(), ...(d.psids ?? [])]))
      stes.set(psid, hyp.shadowSte(psid));
    return { reads: values, stes };
  };
  const fixed = observe(
    withWeaken(
      plan,
      plan.weaken.filter((w) => !needs.includes(w)),
    ),
  );
  const broken = observe(plan);
  if (!fixed || !broken) return [];
  const out: Probe[] = [];
  fixed.reads.forEach((x, i) => {
    const differs = broken.reads[i]?.value !== x.value;
    const what =
      x.actor === 'hyp'
        ? `the physical command-queue slot 0x${x.addr.toString(16)}`
        : `${x.actor}'s ${regNameAt(x.addr - VSMMU_IPA)}`;
    out.push({
      op: 'read',
      actor: x.actor,
      addr: hexs(x.addr),
      size: x.size,
      expect: x.value === 'abort' ? 'abort' : hexs(x.value),
      comment: `${what}${differs ? ` (fails: ${hexs(broken.reads[i]!.value === 'abort' ? 0 : (broken.reads[i]!.value as bigint))} here, ${x.value === 'abort' ? 'abort' : hexs(x.value)} with ${needs.join(', ')} on)` : ''}`,
    });
  });
  for (const [psid, want] of fixed.stes) {
    const got = broken.stes.get(psid);
    if (!got) continue;
    const diff = steDiff(got, want);
    if (diff.first)
      out.push({
        op: 'expectSte',
        sid: psid,
        fields: diff.fields,
        comment: `the physical STE of pSID ${psid}, as with ${needs.join(', ')} on`,
      });
  }
  return out;
}

const reproducerScenario: GuestTarget['scenario'] = ({
  o,
  plan,
  ops,
  found,
  panic,
  needs,
  original,
  iteration,
}) => {
  const steps = ops.map((op, i) => {
    const j = stepJson(op);
    if (i === ops.length - 1 && found.lastOpExpect) {
      j.expect = found.lastOpExpect;
      j.comment = `fails: ${found.detail}`;
    }
    return j;
  });
  let checks = found.checks ?? [];
  if (!checks.length && !found.lastOpExpect && found.kind !== 'exception' && needs.length)
    checks = differentialChecks(plan, ops, found, needs);
  const tail: Record<string, unknown>[] = [];
  if (panic)
    tail.push({
      op: 'expectPanic',
      reason: panic.reason.slice(0, 60),
      comment: 'the hypervisor panicked (a modeled outcome)',
    });
  tail.push(...checks);
  if (!checks.some((c) => c.op === 'isolation'))
    tail.push({ op: 'isolation', expect: 'ok', comment: 'isolation after the failure' });
  const cli = `smmulab fuzz --target guest --seed ${o.seed}${(o.weaken ?? []).map((w) => ` --weaken ${w}`).join('')}`;
  return {
    name: scenarioName('fuzz-guest', o.seed, iteration, found.signature),
    description: `${cli}, iteration ${iteration} (a machine started at iteration ${plan.firstIteration}): ${found.kind} ${found.signature}: ${found.detail}. Shrunk from ${original} to ${ops.length} hostile guest operations${plan.raw ? ' (the guest kernels did not probe)' : ''}. Replaying it fails ${found.kind === 'exception' ? 'the last operation' : found.lastOpExpect ? 'the last operation (expected to abort)' : 'a step after the operations'}; it passes once the hypervisor is fixed.`,
    machine: machineJson(plan.machine),
    steps: [...plan.prologueJson, ...steps, ...tail],
  };
};

/**
 * Whether the replay of a reproducer fails with its finding: at step `lastOp` (its last
 * operation) or after it, where its checks are (and, for an oracle breach, with the same path;
 * for an exception, with the same exception).
 */
function reproduces(r: RunResult, signature: string, _found: Detected, lastOp: number): boolean {
  if (
    signature.startsWith('breach:') &&
    !['breach:dma-landed', 'breach:cpu-write', 'breach:hyp-write', 'breach:hyp-read'].includes(
      signature,
    )
  )
    return oracleBreachReplays(r, signature.slice(7));
  if (signature.startsWith('exception:'))
    return exceptionReplays(r, signature, (message) => !message.startsWith('guest:'));
  return r.failed.some((f) => f.step >= lastOp);
}

// ---- the target ------------------------------------------------------------------------------

/** The malicious guests, as the fuzz engine runs them. */
export const GUEST_TARGET: GuestTarget = {
  name: 'guest',
  aiming: 'while the guest aimed its next operation',
  prologueFailures: true,
  plan: planGuestMachine,
  withWeaken,
  dropStep: (p, i) => {
    if (!droppable(p, i)) return null;
    const keep = (_: unknown, k: number): boolean => k !== i;
    return { ...p, prologueJson: p.prologueJson.filter(keep), prologue: p.prologue.filter(keep) };
  },
  // the last operations alone first (then twice as many, ...: a failure usually needs only the
  // last attack); memory writes of more than 64 words keep their values
  shrink: { suffixes: true, maxHex: 512 },
  trial: guestTrial,
  attacker: (rng: Rng, _plan, views) => new GuestAttacker(rng, views, { races: GUEST_RACES }),
  scenario: reproducerScenario,
  reproduces,
};
