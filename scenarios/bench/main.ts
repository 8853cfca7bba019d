/**
 * Benchmarks (`npm run bench`): prints {"results":[{"name","opsPerSec",...}]} as JSON.
 * Performance is measured here, never by timed tests.
 */
import { performance } from 'node:perf_hooks';
import { Machine, SMMU_BASE } from '../../hw/machine.ts';
import { CR0_BITS, OFF } from '../../hw/smmu/regs.ts';
import { encodeCommand, OP } from '../../hw/smmu/commands.ts';
import { newTxn, newTxnResult } from '../../hw/smmu/smmu.ts';
import { Testbed, LINUX_CD, S2_48 } from '../engine/testbed.ts';
import { ArmSmmuV3 } from '../../host/driver/driver.ts';
import { DomainManager } from '../../host/driver/domain.ts';
import { DmaApi } from '../../host/dma-api.ts';
import { PkvmHyp } from '../../hyp/pkvm.ts';
import { guestCmdq } from './guest.ts';
import { benchFuzz } from '../fuzz/bench.ts';
import { evalRunner } from '../cli/policies.ts';
import { costCells } from '../eval/cost.ts';
import { loadProfile } from '../eval/profile.ts';

interface BenchResult {
  name: string;
  opsPerSec: number;
  ops: number;
  seconds: number;
  note?: string;
}

const RAM = 0x4000_0000;

/** Bring up a bare SMMU with a linear stream table and a 2^qs-entry command queue. */
function bareSmmu(qs: number): Machine {
  const m = new Machine();
  const w = (off: number, v: number | bigint, size: 4 | 8 = 4) =>
    m.bus.write('host', SMMU_BASE + off, size, BigInt(v));
  w(OFF.STRTAB_BASE, RAM + 0x10_0000, 8);
  w(OFF.STRTAB_BASE_CFG, 8); // linear, 256 SIDs
  w(OFF.CMDQ_BASE, BigInt(RAM + 0x100_0000) | BigInt(qs), 8);
  w(OFF.CMDQ_PROD, 0);
  w(OFF.CMDQ_CONS, 0);
  w(OFF.CR0, CR0_BITS.CMDQEN);
  w(OFF.CR0, CR0_BITS.CMDQEN | CR0_BITS.SMMUEN);
  return m;
}

const SYNC_NONE = encodeCommand('CMD_SYNC', { CS: 0 });

/** The hw.cmdq command mix at slot `i`: CFGI_STE (Leaf=1), TLBI_NH_VA (VMID 0), CMD_SYNC round-robin. */
function mixCommand(i: number): Uint32Array {
  const k = i % 3;
  return k === 0
    ? encodeCommand('CFGI_STE', { StreamID: i & 0xff, Leaf: 1 })
    : k === 1
      ? tlbiCommand(i)
      : SYNC_NONE;
}

function tlbiCommand(i: number): Uint32Array {
  return encodeCommand('TLBI_NH_VA', {
    ASID: 1,
    VMID: 0,
    Address: (0xffffd000 + (i & 0xff) * 0x1000) / 4096,
    TG: 1,
    TTL: 3,
    Leaf: 1,
  });
}

/** hw.cmdq: the bare SMMU consuming a host-written mix of CFGI_STE, TLBI_NH_VA and CMD_SYNC. */
function hwCmdq(): BenchResult {
  const qs = 16;
  const entries = 1 << qs;
  const m = bareSmmu(qs);
  const q = RAM + 0x100_0000;
  for (let i = 0; i < entries; i++) m.mem.writeWords(q + i * 16, mixCommand(i));
  const batch = 1024;
  const mask = (entries << 1) - 1;
  let prod = 0;
  const run = (n: number) => {
    for (let done = 0; done < n; done += batch) {
      prod = (prod + batch) & mask;
      m.bus.write32('host', SMMU_BASE + OFF.CMDQ_PROD, prod);
    }
  };
  run(1 << 18); // warm up
  const total = 1 << 22;
  const t0 = performance.now();
  run(total);
  const s = (performance.now() - t0) / 1000;
  const consumed = m.smmu.cmdq.stats.consumed;
  if (consumed !== total + (1 << 18))
    throw new Error(`hw.cmdq consumed ${consumed}, expected ${total + (1 << 18)}`);
  return {
    name: 'hw.cmdq',
    opsPerSec: Math.round(total / s),
    ops: total,
    seconds: +s.toFixed(3),
    note: 'CFGI_STE/TLBI_NH_VA/CMD_SYNC mix, 1024 commands per CMDQ_PROD write',
  };
}

const HOST_PAGES = { base: 0x4400_0000, limit: 0x7800_0000 };

/** The machine under pKVM, the SMMU brought up by the unchanged host driver (every access trapped). */
function hypBed(): { m: Machine; hyp: PkvmHyp; drv: ArmSmmuV3; dm: DomainManager } {
  const m = new Machine({ devices: [{ name: 'nic', sid: 8 }] });
  const hyp = new PkvmHyp(m).boot();
  const drv = new ArmSmmuV3(m.bus, { base: SMMU_BASE, pages: HOST_PAGES });
  drv.probe();
  return { m, hyp, drv, dm: new DomainManager(drv) };
}

/** Nothing refused, dropped or broken, no panic, no command error left for the host. */
function hypHealthy(name: string, hyp: PkvmHyp): void {
  const st = hyp.hypStats();
  const bad =
    st.commandsRejected +
    st.commandsDropped +
    hyp.cmdq.stats.hwErrors +
    hyp.failures.violations.length;
  if (st.panics.length || bad)
    throw new Error(
      `${name}: the hypervisor refused something: ${JSON.stringify({ rejected: st.commandsRejected, dropped: st.commandsDropped, hwErrors: hyp.cmdq.stats.hwErrors, violations: st.violations, panics: st.panics })}`,
    );
}

/**
 * hyp.cmdq / hyp.cmdq.tlbi: host commands through pKVM's command-queue emulation, 64 commands
 * per host CMDQ_PROD write: the trap, then per command a copy out of the host queue, the policy
 * check and the shadow queue, drained by the hardware before the write returns. The host
 * driver probes the SMMU through the traps and attaches every StreamID the CFGI_STEs name to an
 * identity domain, so each CFGI_STE reshadows a real STE (host STE copy, sanitize, install with
 * CFGI_STE + CMD_SYNC through the shadow queue).
 */
function hypCmdq(
  name: string,
  cmd: (i: number) => Uint32Array,
  warm: number,
  total: number,
  note: string,
): BenchResult {
  const { m, hyp, drv, dm } = hypBed();
  const d = dm.alloc('identity');
  for (let sid = 0; sid < 256; sid++) dm.attach(sid, d);
  const bus = m.bus;
  // the host's queue, as the host sees it (CMDQ_BASE is emulated: the hardware has the shadow queue)
  const cb = bus.read64('host', SMMU_BASE + OFF.CMDQ_BASE);
  const qs = Number(cb & 0x1fn);
  const q = Number(cb & 0x00ff_ffff_ffff_ffe0n);
  if (q !== drv.cmdq.base || qs !== drv.cmdq.log2size)
    throw new Error(
      `${name}: host CMDQ_BASE reads 0x${cb.toString(16)}, the driver's queue is 0x${drv.cmdq.base.toString(16)}`,
    );
  const entries = 2 ** qs;
  const opcode = new Uint8Array(entries);
  for (let i = 0; i < entries; i++) {
    const c = cmd(i);
    bus.writeWords('host', q + i * 16, c, 4);
    opcode[i] = c[0]! & 0xff;
  }
  const batch = 64;
  const mask = 2 * entries - 1;
  const reg = SMMU_BASE + OFF.CMDQ_PROD;
  const start = drv.cmdq.prod;
  let prod = start;
  if (bus.read32('host', SMMU_BASE + OFF.CMDQ_CONS) !== prod)
    throw new Error(`${name}: the host queue is not idle`);
  const run = (n: number) => {
    for (let done = 0; done < n; done += batch) {
      prod = (prod + batch) & mask;
      bus.write32('host', reg, prod);
    }
  };
  const hw = m.smmu.cmdq.stats;
  const st0 = hyp.hypStats();
  const hw0 = { consumed: hw.consumed, errors: hw.errors, tlbi: hw.perOpcode[OP.TLBI_NH_VA]! };
  run(warm);
  const t0 = performance.now();
  run(total);
  const s = (performance.now() - t0) / 1000;
  // nothing refused, every command forwarded, consumed by the hardware, and the host sees its queue drained
  hypHealthy(name, hyp);
  const st = hyp.hypStats();
  const n = warm + total;
  const count = (op: number) => {
    let k = 0;
    for (let i = 0; i < n; i++) if (opcode[(start + i) & (entries - 1)] === op) k++;
    return k;
  };
  const expectReshadows = count(OP.CFGI_STE);
  const fwd = st.commandsForwarded - st0.commandsForwarded;
  const reshadows = st.reshadows - st0.reshadows;
  const hypCmds = st.hypCommands - st0.hypCommands;
  const consumed = hw.consumed - hw0.consumed;
  if (fwd !== n)
    throw new Error(`${name}: the hypervisor forwarded ${fwd} commands, expected ${n}`);
  if (reshadows !== expectReshadows)
    throw new Error(`${name}: ${reshadows} reshadows, expected ${expectReshadows}`);
  if (consumed !== fwd + hypCmds || hw.errors !== hw0.errors)
    throw new Error(
      `${name}: the hardware consumed ${consumed} commands (${hw.errors - hw0.errors} errors), expected ${fwd} host + ${hypCmds} hypervisor commands`,
    );
  const tlbis = hw.perOpcode[OP.TLBI_NH_VA]! - hw0.tlbi;
  const expectTlbis = count(OP.TLBI_NH_VA);
  if (tlbis !== expectTlbis)
    throw new Error(`${name}: the hardware executed ${tlbis} TLBI_NH_VA, expected ${expectTlbis}`);
  const cons = bus.read32('host', SMMU_BASE + OFF.CMDQ_CONS);
  if (cons !== prod)
    throw new Error(
      `${name}: host CMDQ_CONS 0x${cons.toString(16)} after PROD 0x${prod.toString(16)}`,
    );
  const perCmd = (x: number) => +(x / n).toFixed(3);
  return {
    name,
    opsPerSec: Math.round(total / s),
    ops: total,
    seconds: +s.toFixed(3),
    note: `${note}; ${batch} commands per trapped host CMDQ_PROD write; per host command: ${perCmd(reshadows)} reshadows, ${perCmd(hypCmds)} hypervisor commands`,
  };
}

/**
 * hyp.cmdq.linux: host.map_unmap under pKVM, Linux's own unmap pattern: a 4 KiB dma_map_single
 * (PTE write) + dma_unmap_single (PTE clear, then TLBI_NH_VA + CMD_SYNC published with one
 * trapped CMDQ_PROD write, and the CMD_SYNC polled through trapped CMDQ_CONS reads).
 */
function hypCmdqLinux(): BenchResult {
  const { m, hyp, drv, dm } = hypBed();
  const dma = new DmaApi(drv, dm);
  dma.attachDefault(8);
  const hw = m.smmu.cmdq.stats;
  const f0 = hyp.hypStats().commandsForwarded;
  const w0 = hyp.cmdq.stats.prodWrites;
  const t0 = hw.perOpcode[OP.TLBI_NH_VA]!;
  const n = 200_000;
  const res = timeLoop(
    'hyp.cmdq.linux',
    n,
    (i) => {
      const iova = dma.map(8, 0x4100_0000 + (i % 256) * 4096, 4096);
      dma.unmap(8, iova, 4096);
    },
    'host.map_unmap under pKVM: PTE write, then PTE clear + TLBI_NH_VA + CMD_SYNC in one trapped CMDQ_PROD write (trap, copy, check, shadow queue, hardware), CMD_SYNC polled through trapped CMDQ_CONS reads; unmaps per second',
  );
  hypHealthy('hyp.cmdq.linux', hyp);
  const ops = n + Math.min(n, 20000);
  const per = (hyp.hypStats().commandsForwarded - f0) / ops;
  const writes = (hyp.cmdq.stats.prodWrites - w0) / ops;
  const tlbis = (hw.perOpcode[OP.TLBI_NH_VA]! - t0) / ops;
  if (per !== 2 || writes !== 1 || tlbis !== 1)
    throw new Error(
      `hyp.cmdq.linux: expected 2 commands (1 TLBI_NH_VA) in 1 PROD write per map+unmap, saw ${per} (${tlbis}) in ${writes}`,
    );
  return res;
}

function timeLoop(name: string, n: number, body: (i: number) => void, note: string): BenchResult {
  for (let i = 0; i < Math.min(n, 20000); i++) body(i); // warm up
  const t0 = performance.now();
  for (let i = 0; i < n; i++) body(i);
  const s = (performance.now() - t0) / 1000;
  return { name, opsPerSec: Math.round(n / s), ops: n, seconds: +s.toFixed(3), note };
}

const CD_ADDR = 0x4004_0000;
const S1_ROOT = 0x4005_0000;
const S2_ROOT = 0x4006_0000;

/** A stage-1 stream (SID 8) with 4-level tables mapping 0x1000_0000 → 0x4010_0000. */
function s1Bed(caching: boolean): Testbed {
  const tb = new Testbed({ smmu: { caching } });
  tb.cd(CD_ADDR, { ...LINUX_CD, ASID: 1, TTB0: S1_ROOT });
  tb.map(1, S1_ROOT, 0x1000_0000, 0x4010_0000, 4096, { pages: true });
  tb.ste(8, { V: 1, Config: 5, S1ContextPtr: CD_ADDR, S1CIR: 1, S1COR: 1, S1CSH: 3 });
  tb.cmd(['CFGI_ALL'], ['CMD_SYNC']);
  return tb;
}

/** A nested stream (SID 9): 4-level stage 1 over a 4-level stage 2 (48-bit IPA, start level 0). */
function nestedBed(caching: boolean): Testbed {
  const tb = new Testbed({ smmu: { caching } });
  // stage 2: identity for the CD, the stage-1 tables and the pool; IPA 0x8000_0000 → PA 0x4030_0000 (all 4KB pages)
  tb.map(2, S2_ROOT, CD_ADDR, CD_ADDR, 0x1000, { pages: true });
  tb.cd(CD_ADDR, { ...LINUX_CD, ASID: 2, TTB0: S1_ROOT });
  tb.map(1, S1_ROOT, 0x1000_0000, 0x8000_0000, 4096, { pages: true });
  tb.map(2, S2_ROOT, S1_ROOT, S1_ROOT, 0x1000, { pages: true });
  tb.map(2, S2_ROOT, 0x7800_0000, 0x7800_0000, 0x10000, { pages: true });
  tb.map(2, S2_ROOT, 0x8000_0000, 0x4030_0000, 4096, { pages: true });
  tb.ste(9, {
    V: 1,
    Config: 7,
    S1ContextPtr: CD_ADDR,
    S1CIR: 1,
    S1COR: 1,
    S1CSH: 3,
    S2VMID: 1,
    S2TTB: S2_ROOT,
    ...S2_48,
  });
  tb.cmd(['CFGI_ALL'], ['CMD_SYNC']);
  return tb;
}

function translateBench(
  name: string,
  tb: Testbed,
  sid: number,
  expectPa: number,
  expectReads: number | null,
  n: number,
  note: string,
  miss = false,
): BenchResult {
  const tlb = tb.m.smmu.tlb;
  const t = newTxn();
  const r = newTxnResult();
  t.sid = sid;
  t.addr = 0x1000_0010;
  tb.m.smmu.translate(t, r);
  if (!r.ok || r.pa !== expectPa) throw new Error(`${name}: translation failed: ${r.reason}`);
  const st = tb.m.smmu.translator.stats(sid);
  const before = st.descReads;
  if (miss) tlb.clear();
  tb.m.smmu.translate(t, r);
  const reads = st.descReads - before;
  if (expectReads !== null && reads !== expectReads)
    throw new Error(`${name}: expected ${expectReads} descriptor reads per DMA, saw ${reads}`);
  const res = timeLoop(
    name,
    n,
    miss
      ? () => {
          tlb.clear();
          tb.m.smmu.translate(t, r);
        }
      : () => {
          tb.m.smmu.translate(t, r);
        },
    note + (expectReads !== null ? ` (${reads} descriptor reads each)` : ''),
  );
  if (!r.ok) throw new Error(`${name}: a translation failed during the run`);
  return res;
}

/** host.map_unmap: dma_map_single + dma_unmap_single of one 4 KiB page, with its TLBI + CMD_SYNC. */
function hostMapUnmap(): BenchResult {
  const m = new Machine({ devices: [{ name: 'nic', sid: 8 }] });
  const drv = new ArmSmmuV3(m.bus, {
    base: SMMU_BASE,
    pages: { base: 0x4400_0000, limit: 0x7800_0000 },
  });
  drv.probe();
  const dma = new DmaApi(drv, new DomainManager(drv));
  dma.attachDefault(8);
  const before = m.smmu.cmdq.stats.consumed;
  const res = timeLoop(
    'host.map_unmap',
    200_000,
    (i) => {
      const iova = dma.map(8, 0x4100_0000 + (i % 256) * 4096, 4096);
      dma.unmap(8, iova, 4096);
    },
    'one 4 KiB page: PTE write, then PTE clear + TLBI_NH_VA + CMD_SYNC through the MMIO bus',
  );
  const per = (m.smmu.cmdq.stats.consumed - before) / (200_000 + 20_000);
  if (per !== 2) throw new Error(`host.map_unmap: expected 2 commands per map+unmap, saw ${per}`);
  return res;
}

/** policies: the default matrix of `smmulab policies` (every design × every workload), priced. */
async function policiesMatrix(): Promise<BenchResult> {
  const runner = await evalRunner.load();
  const profile = loadProfile();
  const t0 = performance.now();
  const cells = await runner.runMatrix(runner.designs, runner.workloads, {});
  costCells(cells, profile);
  const seconds = (performance.now() - t0) / 1000;
  return {
    name: 'policies',
    opsPerSec: Math.round(cells.length / seconds),
    ops: cells.length,
    seconds,
    note: `the default smmulab policies matrix: ${runner.designs.length} designs × ${runner.workloads.length} workloads (ops are cells), priced with the default profile; wall time in seconds`,
  };
}

const BENCHES: Record<string, () => BenchResult | Promise<BenchResult>> = {
  'host.map_unmap': hostMapUnmap,
  'hw.cmdq': hwCmdq,
  'hyp.cmdq': () =>
    hypCmdq(
      'hyp.cmdq',
      mixCommand,
      4096,
      1 << 16,
      'the hw.cmdq mix (CFGI_STE Leaf=1 / TLBI_NH_VA VMID 0 / CMD_SYNC) under pKVM: trap, copy, check, shadow queue, hardware; every CFGI_STE also reshadows its STE (host STE copy + sanitize + install with CFGI_STE + CMD_SYNC through the shadow queue), real pKVM work the bare SMMU does not do',
    ),
  'hyp.cmdq.tlbi': () =>
    hypCmdq(
      'hyp.cmdq.tlbi',
      (i) => (i & 1 ? SYNC_NONE : tlbiCommand(i)),
      1 << 18,
      1 << 22,
      'TLBI_NH_VA (VMID 0) / CMD_SYNC under pKVM, no reshadows: trap, then per command copy + check + shadow queue, hardware',
    ),
  'hyp.cmdq.linux': hypCmdqLinux,
  'guest.cmdq': guestCmdq,
  'hw.translate.hit': () =>
    translateBench(
      'hw.translate.hit',
      s1Bed(true),
      8,
      0x4010_0010,
      0,
      2_000_000,
      'stage-1 DMA translation that hits the IOTLB',
    ),
  'hw.translate.s1walk': () =>
    translateBench(
      'hw.translate.s1walk',
      s1Bed(true),
      8,
      0x4010_0010,
      4,
      1_000_000,
      'STE and CD from the configuration cache, IOTLB emptied before every DMA: a full 4-level stage-1 walk per DMA',
      true,
    ),
  'hw.translate.nestedwalk': () =>
    translateBench(
      'hw.translate.nestedwalk',
      nestedBed(true),
      9,
      0x4030_0010,
      24,
      300_000,
      'STE and CD cached, IOTLB (stage-1+2 and stage-2 entries) emptied before every DMA: 4-level stage 1 nested in 4-level stage 2',
      true,
    ),
  'hw.translate.s1walk.nocache': () =>
    translateBench(
      'hw.translate.s1walk.nocache',
      s1Bed(false),
      8,
      0x4010_0010,
      4,
      200_000,
      'caching switched off: STE fetch + CD fetch + 4-level stage-1 walk per DMA',
    ),
  policies: policiesMatrix,
  fuzz: () => benchFuzz(1),
  'fuzz.workers1': () => benchFuzz(1, true),
  'fuzz.workers2': () => benchFuzz(2),
};

const only = process.argv.slice(2);
const results: BenchResult[] = [];
for (const [name, f] of Object.entries(BENCHES)) {
  if (only.length && !only.includes(name)) continue;
  process.stderr.write(`bench ${name}...\n`);
  results.push(await f());
}
process.stdout.write(JSON.stringify({ results }, null, 2) + '\n');
