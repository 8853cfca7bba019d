/**
 * The pieces of a trial's checks that both targets make alike (scenarios/fuzz/target.ts
 * `Trial`): the machine and its oracle, the SMMU's and the devices' writes watched as they
 * happen, the full oracle's strongest breach, the fingerprint that says whether the full oracle
 * is worth running again, and what an operation's step reported turned into its expectation.
 */
import type { Machine } from '../../hw/machine.ts';
import type { SmmuWrite } from '../../hw/smmu/msi.ts';
import type { DmaEndpoint, DmaOutcome } from '../../hw/dma.ts';
import { opcodeName } from '../../hw/smmu/commands.ts';
import type { PageOwnership } from '../../hyp/mem/ownership.ts';
import type { PkvmHyp } from '../../hyp/pkvm.ts';
import { PATHS, IsolationOracle, type ProtectedRange } from '../check/oracle.ts';
import { isolationPolicy } from '../check/isolation.ts';
import { RunContext } from '../engine/context.ts';
import { buildMachine, bootHyp } from '../engine/runner.ts';
import type { Detected, Execution, Plan } from './target.ts';

const PAGE = 4096;
const PATH_RANK = new Map<string, number>(PATHS.map((p, i) => [p, i]));

/** A fresh machine from the plan, its hypervisor booted, and the scenario context its steps run in. */
export function trialMachine(
  plan: Plan,
  hypMemory: { base: number; size: number },
): { m: Machine; hyp: PkvmHyp; ctx: RunContext } {
  const m = buildMachine(plan.machine);
  const hyp = bootHyp(m, plan.machine);
  const ctx = new RunContext(m);
  ctx.hyp = hyp;
  ctx.hypMode = 'pkvm';
  ctx.hypMemory = { ...hypMemory };
  return { m, hyp, ctx };
}

/** Page ownership changes so far: what the oracle's caches are keyed by. */
export const ownerChanges = (own: PageOwnership): number => own.counts.donate + own.counts.reclaim;

/**
 * The oracle, as oracleFor(ctx) makes it for a replay, attached to the machine, with caches
 * that change no answer: the protected ranges (recomputed when a page changes owner) and, with
 * `idmapMemo`, the hypervisor idmap's enumeration (its tables change only when a page changes
 * owner: the hypervisor's update then; any other write into hypervisor memory is an SMMU or DMA
 * write that the continuous checks report).
 */
export function trialOracle(
  m: Machine,
  ctx: RunContext,
  hyp: PkvmHyp,
  idmapMemo: boolean,
): IsolationOracle {
  const own = hyp.own;
  let rangesAt = -1;
  let ranges: readonly ProtectedRange[] = [];
  const policy = isolationPolicy(ctx);
  const checked = {
    ...policy,
    protectedRanges: () => {
      if (ownerChanges(own) !== rangesAt) {
        rangesAt = ownerChanges(own);
        ranges = policy.protectedRanges();
      }
      return ranges;
    },
  };
  let oracle: IsolationOracle;
  if (idmapMemo) {
    const idmapRoot = hyp.idmap.s2.vttbr;
    let memoAt = -1;
    let memo: { key: string; reach: unknown } | null = null;
    oracle = new IsolationOracle(m, checked, {
      stageMemo: {
        get: (key) =>
          memo !== null && memo.key === key && memoAt === ownerChanges(own)
            ? memo.reach
            : undefined,
        set: (key, cfg, reach) => {
          if (cfg.stage !== 2 || cfg.ttb !== idmapRoot) return;
          memo = { key, reach };
          memoAt = ownerChanges(own);
        },
      },
    });
  } else oracle = new IsolationOracle(m, checked);
  oracle.attach();
  ctx.oracle = oracle;
  return oracle;
}

/** An SMMU-originated write (MSI, event, PRI record) that landed on a page the host may not write. */
export function smmuWriteBreach(w: SmmuWrite, own: PageOwnership): Detected | null {
  for (let a = w.pa - (w.pa % PAGE); a < w.pa + w.len; a += PAGE) {
    if (!own.hostMay(a)) {
      const path = w.kind === 'event' ? 'event' : w.kind === 'priq' ? 'priq' : 'msi';
      return {
        kind: 'breach',
        signature: `breach:${path}`,
        detail: `SMMU ${w.kind} write of ${w.len} bytes at 0x${w.pa.toString(16)} landed on ${own.state(a).owner} memory`,
      };
    }
  }
  return null;
}

/** Every DMA of every device, those that appear later included, seen by `watch` as it completes. */
export function watchDma(
  m: Machine,
  ctx: RunContext,
  watch: (ep: DmaEndpoint, out: DmaOutcome, access: string) => DmaOutcome,
): void {
  const wrapEp = (ep: DmaEndpoint): void => {
    const { read, write, readTranslated, writeTranslated } = ep;
    ep.read = (iova, len, o) => watch(ep, read.call(ep, iova, len, o), 'read');
    ep.write = (iova, data, o) => watch(ep, write.call(ep, iova, data, o), 'write');
    ep.readTranslated = (addr, len, o) =>
      watch(ep, readTranslated.call(ep, addr, len, o), 'Translated read');
    ep.writeTranslated = (addr, data, o) =>
      watch(ep, writeTranslated.call(ep, addr, data, o), 'Translated write');
  };
  for (const ep of m.devices.values()) wrapEp(ep);
  const origEndpoint = ctx.endpointForSid;
  ctx.endpointForSid = (sid: number) => {
    const known = m.devices.size;
    const ep = origEndpoint.call(ctx, sid);
    if (m.devices.size !== known) wrapEp(ep);
    return ep;
  };
}

/** Whether the fingerprint `now` differs from `fp` (which then becomes `now`). */
export function fingerprintChanged(fp: number[], now: readonly number[]): boolean {
  let changed = now.length !== fp.length;
  for (let i = 0; i < now.length && !changed; i++) changed = now[i] !== fp[i];
  if (changed) {
    fp.length = 0;
    fp.push(...now);
  }
  return changed;
}

/** The full oracle: its strongest breach (the first path in PATHS), or null when isolation holds. */
export function oracleBreach(oracle: IsolationOracle): { found: Detected; best: string } | null {
  const r = oracle.check();
  if (r.ok) return null;
  let best = r.breaches[0]!;
  for (const b of r.breaches)
    if ((PATH_RANK.get(b.path) ?? 99) < (PATH_RANK.get(best.path) ?? 99)) best = b;
  return {
    found: {
      kind: 'breach',
      signature: `breach:${best.path}`,
      detail: `${r.total} breach(es); ${best.detail}`,
    },
    best: best.detail,
  };
}

export type Reported = { expected: unknown; actual: unknown; message?: string };
type Accessing = { op: string; expect?: string };

/**
 * Set a CPU access's or a DMA's expectation to what its step reported: an access that aborted
 * expects the abort, a DMA that faulted its fault. Returns the message when the abort was not
 * the acting side's own (its message does not start with `own`): the hypervisor took it.
 */
export function annotateAccess(op: Accessing, f: Reported, own: string): string | null {
  if (op.op === 'write' || op.op === 'read' || op.op === 'memwrite') {
    if (f.expected === 'completed' && f.actual === 'abort') {
      if (f.message && !f.message.startsWith(own)) return f.message;
      op.expect = 'abort';
    } else if (f.expected === 'abort' && f.actual === 'completed') delete op.expect;
  } else if (op.op === 'dma') {
    if (f.expected === 'fault') delete op.expect;
  }
  return null;
}

/**
 * Set an operation's expectation to what its step reported (`failures`): CPU accesses and
 * DMAs by annotateAccess, other steps by `other`. Returns the message of the first abort the
 * hypervisor itself took (a bug, not the acting side's).
 */
export function annotate<Op extends Accessing>(
  op: Op,
  failures: readonly Reported[],
  own: string,
  other?: (op: Op, f: Reported) => void,
): string | null {
  for (const f of failures) {
    const hypAbort = annotateAccess(op, f, own);
    if (hypAbort) return hypAbort;
    other?.(op, f);
  }
  return null;
}

// ---- coverage --------------------------------------------------------------------------------

type Coverage = Pick<Execution<unknown, Detected>, 'commands' | 'opcodes' | 'registers' | 'kinds'>;

/** One operation of its kind, and the commands of a cmd step. */
export function coverOperation(
  res: Coverage,
  op: { op: string; commands?: ReadonlyArray<{ name: string }> },
): void {
  res.kinds[op.op] = (res.kinds[op.op] ?? 0) + 1;
  if (op.op === 'cmd') for (const c of op.commands!) coverOpcode(res, c.name);
}

/** `k` commands of the (raw) opcode that starts `hex`, reserved ones as RESERVED. */
export function coverRawCommand(res: Coverage, hex: string, k = 1): void {
  const opc = parseInt(hex.slice(0, 2), 16);
  coverOpcode(res, opcodeName(opc).startsWith('RESERVED') ? 'RESERVED' : opcodeName(opc), k);
}

function coverOpcode(res: Coverage, name: string, k = 1): void {
  res.commands += k;
  res.opcodes[name] = (res.opcodes[name] ?? 0) + k;
}

/** A register access (`name`: the register, or "other"). */
export function coverRegister(res: Coverage, name: string, read: boolean): void {
  const e = (res.registers[name] ??= { read: 0, write: 0 });
  if (read) e.read++;
  else e.write++;
}
