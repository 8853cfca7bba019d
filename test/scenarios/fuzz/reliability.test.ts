/**
 * A campaign never loses what it found (scenarios/cli/fuzz.ts, scenarios/fuzz/engine.ts): an --out
 * that cannot be written is refused before the campaign starts; reproducers that cannot be
 * written at the end still leave the results printed; SIGINT or SIGTERM stops the campaign
 * cleanly with the results and reproducers of what ran (one thread or two, host or guest);
 * --workers is bounded and cut down to the episodes; and `smmulab run` checks --trace and
 * --mmio-log before running. Everything runs in this process, through the CLI's main().
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../cli/in-process.ts';
import { campaign, fuzz, fuzzSliced } from '../../../scenarios/fuzz/engine.ts';
import { makeDirs, unwritableDir, unwritableFile } from '../../../scenarios/cli/out-path.ts';

interface Run {
  code: number;
  out: string;
  err: string;
  ms: number;
}

/**
 * Run the CLI in this process, stdout and stderr captured. `onErr` sees every stderr write
 * (progress lines among them) as it is made.
 */
async function cli(args: string[], onErr?: (s: string) => void): Promise<Run> {
  const listeners = (): number[] => [
    process.listenerCount('SIGINT'),
    process.listenerCount('SIGTERM'),
  ];
  const before = listeners();
  const t0 = performance.now();
  try {
    const r = await runCli([...args, '--log-level', 'silent'], onErr);
    return { code: r.status, out: r.stdout, err: r.stderr, ms: performance.now() - t0 };
  } finally {
    // whatever happened, the campaign's signal handlers are gone
    expect(listeners()).toEqual(before);
  }
}

const tmp = (): string => mkdtempSync(join(tmpdir(), 'smmulab-never-lost-'));
const PROGRESS = /^fuzz: (\d+) iterations, \d+ operations \(\d+\/s\), (\d+) failing/m;
/** long enough that a campaign that ran would not end within the test's timeout */
const FOREVER = '10000000';

afterEach(() => vi.restoreAllMocks());

describe('fuzz --out is checked before the campaign starts', () => {
  const dir = tmp();
  const file = join(dir, 'a-file');
  writeFileSync(file, 'not a folder\n');

  it.each([
    ['an existing regular file', file, /exists and is not a folder/],
    ['a path under a regular file', join(file, 'sub'), new RegExp(`${file} is not a folder`)],
    ['a path under /proc', '/proc/x', /cannot create folders in \/proc \(ENOENT/],
    ['a deeper path under /proc', '/proc/x/y/z', /cannot create folders in \/proc \(ENOENT/],
  ])('%s: exit 2 at once, naming the path and why, nothing run', async (_what, out, why) => {
    const r = await cli(['fuzz', '--iterations', FOREVER, '--out', out]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`smmulab fuzz: --out ${out}`);
    expect(r.err).toMatch(why);
    expect(r.err).not.toMatch(PROGRESS);
    expect(r.out).toBe('');
    expect(r.ms).toBeLessThan(5000);
  });

  it('a writable path passes, is not created by the check, and is created level by level when written', () => {
    const fresh = join(dir, 'x', 'y', 'z');
    expect(unwritableDir(fresh)).toBeNull();
    expect(existsSync(join(dir, 'x'))).toBe(false);
    expect(readdirSync(dir)).toEqual(['a-file']); // no probe left behind
    makeDirs(fresh);
    expect(existsSync(fresh)).toBe(true);
    expect(unwritableDir(fresh)).toBeNull();
    expect(readdirSync(fresh)).toEqual([]);
    expect(() => makeDirs('/proc/x/y')).toThrow(/ENOENT/);
    expect(() => makeDirs(join(file, 'sub'))).toThrow(/ENOTDIR|not a folder/);
  });

  it('with --max-reproducers 0 nothing is written, so --out is not checked', async () => {
    const r = await cli([
      'fuzz',
      '--iterations',
      '5',
      '--reset-every',
      '5',
      '--max-reproducers',
      '0',
      '--json',
      '--out',
      '/proc/x',
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).iterations).toBe(5);
  });
});

describe('reproducers that cannot be written at the end', () => {
  it('leave the results printed, the others written, the error naming the file, exit 2', async () => {
    const out = tmp();
    // a folder where the first reproducer goes: renaming the file onto it fails
    const blocked = join(out, 'fuzz-s3-i0-breach-ste-bypass.json');
    mkdirSync(blocked);
    const r = await cli([
      'fuzz',
      '--seed',
      '3',
      '--iterations',
      '3000',
      '--weaken',
      'ste-config',
      '--json',
      '--out',
      out,
    ]);
    expect(r.code).toBe(2);
    const j = JSON.parse(r.out);
    expect(j.breaches).toBeGreaterThan(0);
    expect(j.findings.map((f: { signature: string }) => f.signature)).toEqual([
      'breach:ste-bypass',
      'invariant:shadow-ste:Config',
      'breach:cd-writable',
    ]);
    const written = [
      'fuzz-s3-i1582-invariant-shadow-ste-Config.json',
      'fuzz-s3-i1588-breach-cd-writable.json',
    ];
    expect(j.reproducers).toEqual(written.map((f) => join(out, f)));
    expect(JSON.parse(readFileSync(j.reproducers[0], 'utf8')).steps.length).toBeGreaterThan(0);
    expect(r.err).toContain(`--out ${out}: 1 of the 3 reproducers could not be written`);
    expect(r.err).toContain(`cannot write ${blocked}`);
    expect(readdirSync(out).sort()).toEqual(['fuzz-s3-i0-breach-ste-bypass.json', ...written]); // no temporary file left
  });
});

describe('the stop flag (FuzzOptions.stop)', () => {
  it('ends a campaign between episodes (host and guest); a campaign that ran to its end is not marked', async () => {
    const stop = new Int32Array(new SharedArrayBuffer(4));
    for (const [target, resetEvery] of [
      ['host', 100],
      ['guest', 10],
    ] as const) {
      const o = {
        seed: 5,
        target,
        iterations: 4 * resetEvery,
        resetEvery,
        shrink: false,
        maxReproducers: 0,
        stop,
      };
      const whole = await fuzzSliced(o, 0);
      expect(whole.interrupted).toBeUndefined();
      expect(whole.iterations).toBe(4 * resetEvery);
      // the same seed run at once by fuzz(): the same result
      const { seconds: _a, operationsPerSecond: _b, ...sync } = fuzz(o);
      const { seconds: _c, operationsPerSecond: _d, ...sliced } = whole;
      expect(sliced).toEqual(sync);
      // raised after the second episode: exactly two episodes ran
      const g = campaign(o);
      let episodes = 0;
      let s = g.next();
      for (; !s.done; s = g.next()) if (++episodes === 2) Atomics.store(stop, 0, 1);
      expect(s.value.interrupted).toBe(true);
      expect(s.value.iterations).toBe(2 * resetEvery);
      // raised before it starts: nothing runs
      const none = fuzz(o);
      expect(none.interrupted).toBe(true);
      expect(none.iterations).toBe(0);
      Atomics.store(stop, 0, 0);
    }
  });
});

describe('SIGINT or SIGTERM stops a campaign with what it found', () => {
  /**
   * Start a long campaign and raise `signal` once the progress shows at least one failing
   * iteration (the CLI's first progress line comes after the first machine's run).
   */
  async function interrupt(
    signal: 'SIGINT' | 'SIGTERM',
    args: string[],
  ): Promise<Run & { out: string; dir: string }> {
    const dir = tmp();
    let raised = false;
    const r = await cli(['fuzz', '--iterations', FOREVER, '--json', '--out', dir, ...args], (s) => {
      const m = PROGRESS.exec(s);
      if (!raised && m && Number(m[2]) > 0) {
        raised = true;
        // delivered when the campaign next lets the event loop run, as a real signal is
        setTimeout(() => process.emit(signal, signal), 0);
      }
    });
    expect(raised).toBe(true);
    return { ...r, dir };
  }

  function expectPartial(r: Run & { dir: string }, signal: string, workers: number): void {
    expect(r.code).toBe(130);
    expect(r.err).toContain(`smmulab fuzz: ${signal}: stopping at the end of the current episode`);
    const j = JSON.parse(r.out);
    expect(j.interrupted).toBe(true);
    expect(j.signal).toBe(signal);
    expect(j.workers).toBe(workers);
    expect(j.iterations).toBeGreaterThan(0);
    expect(j.iterations).toBeLessThan(Number(FOREVER));
    expect(j.findings.length).toBeGreaterThan(0);
    // every finding so far has its reproducer, written (and shrunk: the first ones are one operation)
    expect(j.reproducers).toHaveLength(j.findings.length);
    expect(readdirSync(r.dir).sort()).toEqual(
      j.reproducers.map((p: string) => p.slice(r.dir.length + 1)).sort(),
    );
    for (const f of j.findings) {
      expect(f.reproducer).toBeDefined();
      expect(f.minimalOperations).toBeLessThanOrEqual(f.operations);
      expect(f.replay.reproduces).toBe(true);
      expect(JSON.parse(readFileSync(f.reproducer, 'utf8')).name).toBe(
        f.reproducer.slice(r.dir.length + 1, -'.json'.length),
      );
    }
  }

  it('SIGINT, host target, one thread: exit 130, the JSON marked interrupted, its reproducers written', async () => {
    const r = await interrupt('SIGINT', ['--seed', '3', '--weaken', 'ste-config']);
    expectPartial(r, 'SIGINT', 1);
    expect(JSON.parse(r.out).findings[0].signature).toBe('breach:ste-bypass');
  });

  it('SIGTERM, host target, two workers: the workers see the stop too and their results are merged', async () => {
    const r = await interrupt('SIGTERM', [
      '--seed',
      '3',
      '--weaken',
      'ste-config',
      '--workers',
      '2',
    ]);
    expectPartial(r, 'SIGTERM', 2);
  });

  it('SIGINT, guest target: the summary says it was interrupted and after how many iterations', async () => {
    const dir = tmp();
    let raised = false;
    const r = await cli(
      [
        'fuzz',
        '--target',
        'guest',
        '--seed',
        '1',
        '--weaken',
        'vevt-vsid',
        '--iterations',
        FOREVER,
        '--reset-every',
        '100',
        '--out',
        dir,
      ],
      (s) => {
        if (!raised && PROGRESS.test(s)) {
          raised = true;
          setTimeout(() => process.emit('SIGINT', 'SIGINT'), 0);
        }
      },
    );
    expect(r.code).toBe(130);
    const m = /^ {2}INTERRUPTED by SIGINT after (\d+) of 10000000 iterations/m.exec(r.out);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(r.out).toMatch(new RegExp(`^ {2}${m![1]} iterations, \\d+ operations`, 'm'));
    expect(r.out).toContain('reproducer: ');
    expect(readdirSync(dir).length).toBeGreaterThan(0);
  });
});

describe('fuzz --workers', () => {
  it('an absurd number is refused before anything runs', async () => {
    const r = await cli(['fuzz', '--workers', '1000000', '--iterations', FOREVER]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--workers 1000000: at most 256/);
    expect(r.out).toBe('');
    expect(r.err).not.toMatch(PROGRESS);
  });

  it("more workers than episodes are cut down to one per episode, said on stderr; the result is one worker's", async () => {
    const args = [
      'fuzz',
      '--seed',
      '2',
      '--iterations',
      '200',
      '--reset-every',
      '100',
      '--json',
      '--no-shrink',
      '--max-reproducers',
      '0',
    ];
    const many = await cli([...args, '--workers', '64']);
    expect(many.code).toBe(0);
    expect(many.err).toContain(
      '--workers 64 cut down to 2: the campaign has 2 episodes (200 iterations, --reset-every 100)',
    );
    const one = await cli([...args, '--workers', '1']);
    expect(one.err).not.toContain('cut down');
    const strip = (s: string): Record<string, unknown> => {
      const { seconds: _s, operationsPerSecond: _o, workers, ...rest } = JSON.parse(s);
      return { ...rest, workers };
    };
    expect(strip(many.out).workers).toBe(2);
    expect({ ...strip(many.out), workers: 1 }).toEqual(strip(one.out));
  });

  it("with --shard, the cap is the shard's own episodes", async () => {
    const r = await cli([
      'fuzz',
      '--seed',
      '2',
      '--iterations',
      '300',
      '--reset-every',
      '100',
      '--shard',
      '2/3',
      '--workers',
      '8',
      '--json',
      '--no-shrink',
      '--max-reproducers',
      '0',
    ]);
    expect(r.code).toBe(0);
    expect(r.err).toContain(
      '--workers 8 cut down to 1: the shard has 1 episode (300 iterations in all, --shard 2/3, --reset-every 100)',
    );
    expect(JSON.parse(r.out).iterations).toBe(100);
  });
});

describe('fuzz --shrink-budget', () => {
  it('bounds the replays of a shrink; the summary says whether the reproducer is 1-minimal', async () => {
    const args = [
      'fuzz',
      '--seed',
      '1',
      '--iterations',
      '20000',
      '--weaken',
      'queue-pin',
      '--max-reproducers',
      '1',
      '--out',
      tmp(),
    ];
    const full = await cli(args);
    expect(full.code).toBe(1);
    expect(full.out).toMatch(/BREACH breach:event \[needs queue-pin\]\n.*minimal: 6 \(1-minimal\)/);
    const cut = await cli([...args, '--shrink-budget', '20', '--json']);
    const f = JSON.parse(cut.out).findings[0];
    expect(f.shrinkRuns).toBeLessThanOrEqual(20);
    expect(f.oneMinimal).toBe(false);
    expect(f.minimalOperations).toBeGreaterThan(6);
    const bad = await cli(['fuzz', '--shrink-budget', '0']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--shrink-budget must be an integer of at least 1, got 0');
  });
});

describe('smmulab run --mmio-log and --trace are checked before running', () => {
  const dir = tmp();
  const file = join(dir, 'a-file');
  writeFileSync(file, 'x\n');

  it.each([
    ['--mmio-log', '/proc/x', /cannot write it \(ENOENT/],
    ['--mmio-log', join(file, 'sub'), new RegExp(`${file} is not a folder`)],
    ['--mmio-log', dir, /it is a folder/],
    ['--trace', '/proc/x', /cannot write it \(ENOENT/],
    ['--trace', join(dir, 'no/such/dir/out.json'), /the folder .*no\/such\/dir does not exist/],
  ])('%s %s: exit 2, naming it and why, nothing run', async (opt, path, why) => {
    const r = await cli(['run', 'guest-nesting', opt, path]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`smmulab run: ${opt} ${path}`);
    expect(r.err).toMatch(why);
    expect(r.out).toBe('');
  });

  it('the same file for --trace and --mmio-log is refused (after resolving the path and links)', async () => {
    const f = join(dir, 'same.json');
    writeFileSync(f, '');
    const link = join(dir, 'link.json');
    symlinkSync(f, link);
    for (const other of [join(dir, 'sub', '..', 'same.json'), link]) {
      const r = await cli(['run', 'guest-nesting', '--trace', f, '--mmio-log', other]);
      expect(r.code).toBe(2);
      expect(r.err).toContain(`--trace and --mmio-log name the same file (${f})`);
      expect(r.out).toBe('');
    }
    expect(readFileSync(f, 'utf8')).toBe('');
  });

  it.skipIf(!existsSync('/dev/full'))(
    'a write that fails during the run (a full disk: /dev/full) still prints the results, exit 2 naming the file',
    async () => {
      const r = await cli(['run', 'guest-nesting', '--mmio-log', '/dev/full']);
      expect(r.code).toBe(2);
      expect(r.out).toMatch(/^scenario guest-nesting \[hyp pkvm\]: ok /);
      expect(r.err).toContain('smmulab run: --mmio-log /dev/full: ENOSPC');
    },
  );

  it('writable files still get the log and the trace', async () => {
    const log = join(dir, 'mmio.jsonl');
    const trace = join(dir, 'trace.json');
    const r = await cli(['run', 'guest-nesting', '--mmio-log', log, '--trace', trace]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/: ok /);
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThan(10);
    expect(JSON.parse(lines[0]!).actor).toBeDefined();
    expect(JSON.parse(readFileSync(trace, 'utf8')).traceEvents.length).toBeGreaterThan(0);
    expect(unwritableFile(log)).toBeNull();
    expect(readFileSync(log, 'utf8').trim().split('\n')).toHaveLength(lines.length); // the check does not truncate
  });
});
