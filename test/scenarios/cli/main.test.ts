import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { smmulab } from './in-process.ts';

describe('smmulab CLI', () => {
  it('run --json prints {scenario, ok, steps, failed, events, stats} and exits 0', async () => {
    const r = await smmulab('run', 'bare-bad-ste', '--json');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(Object.keys(out)).toEqual(['scenario', 'ok', 'steps', 'failed', 'events', 'stats']);
    expect(out.ok).toBe(true);
    expect(out.events[0]).toMatchObject({ type: 'C_BAD_STE', sid: 8 });
    expect(out.stats.commandsByOpcode).toEqual({ CFGI_STE: 1, CFGI_STE_RANGE: 2, CMD_SYNC: 2 });
  });

  it('exits 1 when an expectation fails, 2 (naming file, step and field) when the file is invalid', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'smmulab-'));
    const failing = join(dir, 'f.json');
    writeFileSync(
      failing,
      JSON.stringify({
        steps: [{ op: 'read', actor: 'host', addr: '0x9050044', size: 4, expect: '0x0' }],
      }),
    );
    const r1 = await smmulab('run', failing);
    expect(r1.status).toBe(1);
    expect(r1.stdout).toContain('FAILED');
    const invalid = join(dir, 'bad.json');
    writeFileSync(
      invalid,
      JSON.stringify({ steps: [{ op: 'read', actor: 'host', addr: '0x9050044', size: 5 }] }),
    );
    const r2 = await smmulab('run', invalid);
    expect(r2.status).toBe(2);
    expect(r2.stderr).toContain(`${invalid}: invalid scenario`);
    expect(r2.stderr).toContain('step 0 (op "read"): field "size"');
  });

  it('--mmio-log writes each SMMU access as a JSON line with the register name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'smmulab-'));
    const log = join(dir, 'mmio.jsonl');
    expect((await smmulab('run', 'bare-cmdq-error', '--mmio-log', log)).status).toBe(0);
    const lines = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[0]).toEqual({
      actor: 'host',
      dir: 'w',
      addr: '0x9050090',
      offset: '0x90',
      reg: 'CMDQ_BASE',
      size: 8,
      value: '0x40020004',
    });
    expect(lines).toContainEqual({
      actor: 'host',
      dir: 'w',
      addr: '0x90600a8',
      offset: '0x100a8',
      reg: 'EVENTQ_PROD',
      size: 4,
      value: '0x0',
    });
    // a read's value is what the CPU received: CONS with ERR=CERROR_ILL
    expect(lines).toContainEqual({
      actor: 'host',
      dir: 'r',
      addr: '0x905009c',
      offset: '0x9c',
      reg: 'CMDQ_CONS',
      size: 4,
      value: '0x1000001',
    });
  });

  it('list names every built-in with a description; --help works on every command', async () => {
    const r = await smmulab('list', '--json');
    const rows = JSON.parse(r.stdout) as Array<{ name: string; description: string }>;
    expect(rows.map((x) => x.name)).toContain('bare-gbpa');
    for (const x of rows) expect(x.description.length).toBeGreaterThan(10);
    for (const cmd of ['run', 'list', 'demo']) {
      const h = await smmulab(cmd, '--help');
      expect(h.status).toBe(0);
      expect(h.stdout).toContain(`smmulab ${cmd}`);
    }
    expect((await smmulab('nonsense')).status).toBe(2);
  });

  it('the bin script (a process of its own, the tsx loader registered) prints the result and exits with the code main() returns', () => {
    // the only test that spawns it: every other runs main() in this process (./in-process.ts)
    const dir = mkdtempSync(join(tmpdir(), 'smmulab-'));
    const failing = join(dir, 'f.json');
    writeFileSync(
      failing,
      JSON.stringify({
        steps: [{ op: 'read', actor: 'host', addr: '0x9050044', size: 4, expect: '0x0' }],
      }),
    );
    const bin = join(import.meta.dirname, '../../../scenarios/bin/smmulab.mjs');
    const r = spawnSync(process.execPath, [bin, 'run', failing, '--json'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: false,
      failed: [{ step: 0, op: 'read', expected: '0x0' }],
    });
  });
});
