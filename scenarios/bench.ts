/**
 * Benchmarks (`npm run bench`): prints {"results":[{"name","opsPerSec",...}]} as JSON.
 * Performance is measured here, never by timed tests.
 */
import { performance } from 'node:perf_hooks';
import { Machine, SMMU_BASE } from '../hw/machine.ts';
import { OFF } from '../hw/smmu/regs.ts';
import { encodeCommand } from '../hw/smmu/commands.ts';

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
  const w = (off: number, v: number | bigint, size: 4 | 8 = 4) => m.bus.write('host', SMMU_BASE + off, size, BigInt(v));
  w(OFF.STRTAB_BASE, RAM + 0x10_0000, 8);
  w(OFF.STRTAB_BASE_CFG, 8); // linear, 256 SIDs
  w(OFF.CMDQ_BASE, BigInt(RAM + 0x100_0000) | BigInt(qs), 8);
  w(OFF.CMDQ_PROD, 0);
  w(OFF.CMDQ_CONS, 0);
  w(OFF.CR0, 0x8);
  w(OFF.CR0, 0x9);
  return m;
}

/** hw.cmdq: the bare SMMU consuming a host-written mix of CFGI_STE, TLBI_NH_VA and CMD_SYNC. */
function hwCmdq(): BenchResult {
  const qs = 16;
  const entries = 1 << qs;
  const m = bareSmmu(qs);
  const q = RAM + 0x100_0000;
  for (let i = 0; i < entries; i++) {
    const k = i % 3;
    const c =
      k === 0 ? encodeCommand('CFGI_STE', { StreamID: i & 0xff, Leaf: 1 })
      : k === 1 ? encodeCommand('TLBI_NH_VA', { ASID: 1, VMID: 0, Address: (0xffffd000 + (i & 0xff) * 0x1000) / 4096, TG: 1, TTL: 3, Leaf: 1 })
      : encodeCommand('CMD_SYNC', { CS: 0 });
    m.mem.writeWords(q + i * 16, c);
  }
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
  if (consumed !== total + (1 << 18)) throw new Error(`hw.cmdq consumed ${consumed}, expected ${total + (1 << 18)}`);
  return { name: 'hw.cmdq', opsPerSec: Math.round(total / s), ops: total, seconds: +s.toFixed(3), note: 'CFGI_STE/TLBI_NH_VA/CMD_SYNC mix, 1024 commands per CMDQ_PROD write' };
}

const BENCHES: Record<string, () => BenchResult> = { 'hw.cmdq': hwCmdq };

const only = process.argv.slice(2);
const results: BenchResult[] = [];
for (const [name, f] of Object.entries(BENCHES)) {
  if (only.length && !only.includes(name)) continue;
  process.stderr.write(`bench ${name}...\n`);
  results.push(f());
}
process.stdout.write(JSON.stringify({ results }, null, 2) + '\n');
