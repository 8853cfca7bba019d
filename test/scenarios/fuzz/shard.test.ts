/**
 * Campaigns across machines (scenarios/cli/fuzz-merge.ts): `smmulab fuzz --shard K/N --json`
 * runs shard K of N, and `smmulab fuzz merge` of the N shards prints exactly what one
 * unsharded run prints (timings and the worker count aside) and writes the same reproducer
 * files, for several N and both targets; bad --shard values and bad sets of shard results are
 * refused (exit 2, naming what is wrong) before anything runs or is written.
 *
 * In-process: main() from scenarios/cli/main.ts with stdout and stderr captured. The campaigns are
 * small (1200 iterations on machines of 200, not shrunk) and weakened so that they find things.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../cli/in-process.ts';
import { fuzz } from '../../../scenarios/fuzz/engine.ts';
import { workerShard } from '../../../scenarios/fuzz/parallel.ts';
import { mergeResults, type FuzzFinding } from '../../../scenarios/fuzz/result.ts';
import { shardIterations } from '../../../scenarios/cli/fuzz-merge.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `smmulab …` in this process, its output captured. */
async function smmulab(...args: string[]): Promise<Run> {
  const r = await runCli([...args, '--log-level', 'silent']);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

type Json = Record<string, unknown> & {
  findings: Array<Record<string, unknown>>;
  iterations: number;
  workers: number;
  shard: { k: number; n: number };
};

/** A result without what depends on the machine and the threads: the timings and the worker count. */
function untimed(j: Json): Record<string, unknown> {
  const { seconds: _s, operationsPerSecond: _o, workers: _w, ...rest } = j;
  return rest;
}

/** The summary with its timing and its worker count normalized. */
function untimedText(t: string): string {
  return t
    .replace(/ in [0-9.]+ s: [0-9]+ operations\/s/, ' in T s: R operations/s')
    .replace(/, [0-9]+ worker\(s\)$/m, ', W worker(s)');
}

/** The files of a folder, by name. */
function files(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((f) => [f, readFileSync(join(dir, f), 'utf8')]),
  );
}

const tmp = (): string => mkdtempSync(join(tmpdir(), 'smmulab-shard-'));

/** Run shards 1/n … n/n of a campaign with --json; their files, in shard order. */
async function runShards(
  campaign: readonly string[],
  n: number,
  dir: string,
  extra: readonly string[] = [],
): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const out: string[] = [];
  for (let k = 1; k <= n; k++) {
    const r = await smmulab(
      'fuzz',
      ...campaign,
      '--shard',
      `${k}/${n}`,
      ...extra,
      '--json',
      '--out',
      join(dir, `repro-${k}`),
    );
    expect([0, 1], r.stderr).toContain(r.code);
    const file = join(dir, `shard-${k}.json`);
    writeFileSync(file, r.stdout);
    out.push(file);
  }
  return out;
}

const CAMPAIGNS: ReadonlyArray<[string, readonly string[]]> = [
  [
    'host',
    [
      '--seed',
      '1',
      '--iterations',
      '1200',
      '--reset-every',
      '200',
      '--weaken',
      'ste-config',
      '--no-shrink',
      '--max-reproducers',
      '2',
    ],
  ],
  [
    'guest',
    [
      '--target',
      'guest',
      '--seed',
      '1',
      '--iterations',
      '1200',
      '--reset-every',
      '200',
      '--weaken',
      'vsid-owner',
      '--no-shrink',
      '--max-reproducers',
      '2',
    ],
  ],
];

for (const [target, campaign] of CAMPAIGNS) {
  describe(`smmulab fuzz --shard and fuzz merge, --target ${target}`, () => {
    // the unsharded run: its JSON, its summary and its reproducers
    const base = {
      dir: '',
      out: '',
      json: null as unknown as Json,
      text: '',
      code: 0,
      files: {} as Record<string, string>,
    };
    beforeAll(async () => {
      base.dir = tmp();
      base.out = join(base.dir, 'repro');
      const j = await smmulab('fuzz', ...campaign, '--json', '--out', base.out);
      base.json = JSON.parse(j.stdout) as Json;
      base.code = j.code;
      base.files = files(base.out);
      const t = await smmulab('fuzz', ...campaign, '--out', base.out);
      base.text = t.stdout;
      expect(t.code).toBe(j.code);
      expect(files(base.out)).toEqual(base.files);
    }, 120_000);

    it('the unsharded run finds failures (so the comparisons below cover findings and reproducers)', () => {
      expect(base.code).toBe(1);
      expect(base.json.iterations).toBe(1200);
      // --max-reproducers 2 of more distinct failures: the cap decides which findings are kept
      expect(base.json.findings.length).toBe(2);
      expect(Object.keys(base.json.failuresBySignature as object).length).toBeGreaterThan(2);
      expect(Object.keys(base.files).length).toBe(2);
      expect(base.json.findings.every((f) => typeof f.scenario === 'object')).toBe(true);
      expect(base.json.shard).toEqual({ k: 1, n: 1 });
      expect(base.text).toMatch(/reproducer: /);
    });

    for (const n of [1, 2, 3, 5]) {
      it(`${n} shard(s) merged print what the unsharded run prints and write the same reproducers`, async () => {
        const dir = tmp();
        const shards = await runShards(campaign, n, dir);
        const parts = shards.map((f) => JSON.parse(readFileSync(f, 'utf8')) as Json);
        // each shard ran its own part of the campaign (1200 iterations, 6 episodes of 200)
        expect(parts.map((p) => p.shard)).toEqual(parts.map((_, i) => ({ k: i + 1, n })));
        expect(parts.map((p) => p.iterations)).toEqual(
          parts.map((_, i) => shardIterations(1200, 200, { index: i, count: n })),
        );
        expect(parts.reduce((t, p) => t + p.iterations, 0)).toBe(1200);
        // merged in any order: the same JSON as the unsharded run, into the same --out
        rmSync(base.out, { recursive: true, force: true });
        const mj = await smmulab(
          'fuzz',
          'merge',
          ...[...shards].reverse(),
          '--json',
          '--out',
          base.out,
        );
        expect(mj.stderr).toBe('');
        expect(mj.code).toBe(base.code);
        const merged = JSON.parse(mj.stdout) as Json;
        expect(untimed(merged)).toEqual(untimed(base.json));
        expect(merged.workers).toBe(n);
        expect(files(base.out)).toEqual(base.files);
        // and the same summary
        rmSync(base.out, { recursive: true, force: true });
        const mt = await smmulab('fuzz', 'merge', ...shards, '--out', base.out);
        expect(mt.code).toBe(base.code);
        expect(untimedText(mt.stdout)).toBe(untimedText(base.text));
        expect(mt.stdout).toMatch(new RegExp(`, ${n} worker\\(s\\)\\n`));
        expect(files(base.out)).toEqual(base.files);
      }, 120_000);
    }

    if (target === 'host') {
      it('shards of 2 workers each merge into the unsharded result; the merged worker count is the sum', async () => {
        const shards = await runShards(campaign, 2, tmp(), ['--workers', '2']);
        const parts = shards.map((f) => JSON.parse(readFileSync(f, 'utf8')) as Json);
        expect(parts.map((p) => p.workers)).toEqual([2, 2]);
        rmSync(base.out, { recursive: true, force: true });
        const m = await smmulab('fuzz', 'merge', ...shards, '--json', '--out', base.out);
        expect(m.code).toBe(base.code);
        const merged = JSON.parse(m.stdout) as Json;
        expect(merged.workers).toBe(4);
        expect(untimed(merged)).toEqual(untimed(base.json));
        expect(files(base.out)).toEqual(base.files);
      }, 120_000);
    }

    it("the unsharded run's own --json merges, as shard 1/1, into itself", async () => {
      const dir = tmp();
      const file = join(dir, 'whole.json');
      writeFileSync(file, JSON.stringify(base.json));
      rmSync(base.out, { recursive: true, force: true });
      const m = await smmulab('fuzz', 'merge', file, '--json', '--out', base.out);
      expect(m.code).toBe(base.code);
      const j = JSON.parse(m.stdout) as Json;
      expect(j).toEqual({
        ...base.json,
        seconds: j.seconds,
        operationsPerSecond: j.operationsPerSecond,
      });
      expect(files(base.out)).toEqual(base.files);
    });

    it('merge checks --out before it merges or writes anything, as a run does', async () => {
      const dir = tmp();
      const file = join(dir, 'whole.json');
      writeFileSync(file, JSON.stringify(base.json));
      const blocker = join(dir, 'a-file');
      writeFileSync(blocker, 'x');
      const m = await smmulab('fuzz', 'merge', file, '--out', join(blocker, 'repro'));
      expect(m.code).toBe(2);
      expect(m.stdout).toBe('');
      expect(m.stderr).toContain(
        `smmulab fuzz merge: --out ${join(blocker, 'repro')}: cannot write reproducers there`,
      );
      expect(readFileSync(blocker, 'utf8')).toBe('x');
    });
  });
}

describe('smmulab fuzz --shard with --workers', () => {
  it('the workers of shard s split exactly its episodes', () => {
    for (const count of [1, 2, 3, 5]) {
      for (let index = 0; index < count; index++) {
        for (const workers of [1, 2, 3]) {
          const mine = (s: { index: number; count: number }, e: number): boolean =>
            e % s.count === s.index;
          for (let e = 0; e < 60; e++) {
            const owners = Array.from({ length: workers }, (_, w) => w).filter((w) =>
              mine(workerShard({ index, count }, w, workers), e),
            );
            expect(owners.length, `episode ${e}, shard ${index}/${count}, ${workers} workers`).toBe(
              mine({ index, count }, e) ? 1 : 0,
            );
          }
        }
      }
    }
  });
});

describe('smmulab fuzz --shard: bad values', () => {
  const dir = tmp();
  afterEach(() => {
    // refused before anything ran: no reproducer folder
    expect(existsSync(join(dir, 'out'))).toBe(false);
  });
  for (const [v, says] of [
    ['0/3', '--shard 0/3: K must be from 1 to 3'],
    ['4/3', '--shard 4/3: K must be from 1 to 3'],
    ['1/0', '--shard 1/0: N (the number of shards) must be at least 1'],
    ['a/b', '--shard a/b: expected K/N, two integers'],
    ['1.5/3', '--shard 1.5/3: expected K/N, two integers'],
    ['2', '--shard 2: expected K/N'],
    ['1/2/3', '--shard 1/2/3: expected K/N'],
  ] as const) {
    it(`--shard ${v} exits 2: ${says}`, async () => {
      const r = await smmulab(
        'fuzz',
        '--iterations',
        '20',
        '--shard',
        v,
        '--out',
        join(dir, 'out'),
      );
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`smmulab fuzz: ${says}`);
      expect(r.stdout).toBe('');
    });
  }
  it('--shard with --time exits 2 (a time-bounded campaign has no shards)', async () => {
    const r = await smmulab('fuzz', '--time', '1', '--shard', '1/2', '--out', join(dir, 'out'));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--shard 1/2 with --time: a time-bounded campaign');
    expect(r.stdout).toBe('');
  });
  it('--shard given twice exits 2', async () => {
    const r = await smmulab(
      'fuzz',
      '--iterations',
      '20',
      '--shard',
      '1/2',
      '--shard',
      '2/2',
      '--out',
      join(dir, 'out'),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--shard given 2 times');
  });
});

describe('smmulab fuzz merge: refusals', () => {
  // a tiny campaign, unweakened (nothing found), in 3 shards; and shards of other campaigns
  const TINY = ['--seed', '4', '--iterations', '60', '--reset-every', '10', '--no-shrink'];
  const dir = tmp();
  const out = join(dir, 'out');
  let a: string[] = [];
  let b2 = '';
  let c2 = '';
  let half1 = '';
  beforeAll(async () => {
    a = await runShards(TINY, 3, join(dir, 'a'));
    b2 = (await runShards(['--seed', '5', ...TINY.slice(2)], 3, join(dir, 'b')))[1]!;
    c2 = (await runShards([...TINY, '--check-every', '8'], 3, join(dir, 'c')))[1]!;
    half1 = (await runShards(TINY, 2, join(dir, 'half')))[0]!;
  }, 120_000);
  afterEach(() => {
    // nothing written when refused
    expect(existsSync(out)).toBe(false);
  });
  const refused = async (says: string | RegExp, ...inputs: string[]): Promise<void> => {
    const r = await smmulab('fuzz', 'merge', ...inputs, '--out', out);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      typeof says === 'string' ? new RegExp(says.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : says,
    );
  };

  it("the tiny campaign's shards merge, and with nothing found exit 0", async () => {
    const whole = await smmulab('fuzz', ...TINY, '--json', '--out', join(dir, 'whole'));
    expect(whole.code).toBe(0);
    const m = await smmulab('fuzz', 'merge', ...a, '--json', '--out', join(dir, 'merged'));
    expect(m.code).toBe(0);
    expect(untimed(JSON.parse(m.stdout) as Json)).toEqual(
      untimed(JSON.parse(whole.stdout) as Json),
    );
    // nothing found: no reproducer folder either
    expect(existsSync(join(dir, 'merged'))).toBe(false);
  });
  it('results of another campaign (another seed; another --check-every), naming the file and the field', async () => {
    await refused(
      `${b2}: not the same campaign as ${a[0]} (seed 5 there, 4 here)`,
      a[0]!,
      b2,
      a[2]!,
    );
    await refused(
      `${c2}: not the same campaign as ${a[0]} (checkEvery 8 there, 16 here)`,
      a[0]!,
      c2,
      a[2]!,
    );
  });
  it('a missing shard', async () => {
    await refused('shard 2/3 of the campaign is missing (2 of 3 given)', a[0]!, a[2]!);
    await refused('shards 2/3, 3/3 of the campaign are missing (1 of 3 given)', a[0]!);
  });
  it('a shard given twice, and a file given twice', async () => {
    const copy = join(dir, 'copy-of-2.json');
    writeFileSync(copy, readFileSync(a[1]!));
    await refused(
      `${a[1]} and ${copy} are both shard 2/3: give each shard once`,
      a[0]!,
      a[1]!,
      copy,
      a[2]!,
    );
    await refused(`${a[1]} is given twice`, a[0]!, a[1]!, a[1]!, a[2]!);
  });
  it('shards of different counts', async () => {
    await refused(`${half1} is shard 1/2 but ${a[0]} is shard 1/3`, a[0]!, half1, a[1]!, a[2]!);
  });
  it('a file that cannot be read, is not JSON, or is not a fuzz result', async () => {
    await refused(`${join(dir, 'nope.json')}: cannot read it (ENOENT`, join(dir, 'nope.json'));
    const garbage = join(dir, 'garbage.json');
    writeFileSync(garbage, '{"seed": 4, ');
    await refused(`${garbage}: not JSON`, a[0]!, garbage);
    const run = join(dir, 'run.json');
    writeFileSync(run, JSON.stringify({ scenario: 'bare-gbpa', ok: true, steps: 3 }));
    await refused(
      `${run}: not a smmulab fuzz --json result (no "format": "smmulab-fuzz-result/1")`,
      run,
    );
    const list = join(dir, 'list.json');
    writeFileSync(list, '[1, 2]');
    await refused(`${list}: not a smmulab fuzz --json result (not a JSON object)`, list);
    const j = JSON.parse(readFileSync(a[0]!, 'utf8')) as Record<string, unknown>;
    const old = join(dir, 'old.json');
    const { format: _f, campaign: _c, shard: _s, ...before } = j;
    writeFileSync(old, JSON.stringify(before));
    await refused(`${old}: a smmulab fuzz --json result without "format" and "campaign"`, old);
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, JSON.stringify({ ...j, coverage: { opcodes: {} } }));
    await refused(`${broken}: not a valid smmulab fuzz result: coverage.registers:`, broken);
    const badShard = join(dir, 'bad-shard.json');
    writeFileSync(badShard, JSON.stringify({ ...j, shard: { k: 4, n: 3 } }));
    await refused(
      `${badShard}: not a valid smmulab fuzz result: shard: k must not exceed n`,
      badShard,
    );
  });
  it('a shard that did not run all its iterations (interrupted, or edited)', async () => {
    const j = JSON.parse(readFileSync(a[1]!, 'utf8')) as Record<string, number>;
    const cut = join(dir, 'cut.json');
    writeFileSync(cut, JSON.stringify({ ...j, iterations: j.iterations! - 5 }));
    await refused(
      `${cut}: shard 2/3 ran 15 iterations, but that shard of a 60-iteration campaign has 20`,
      a[0]!,
      cut,
      a[2]!,
    );
  });
  it('an option of fuzz runs', async () => {
    await refused('Unknown argument: seed', ...a, '--seed', '4');
    await refused(
      '--iterations is an option of smmulab fuzz, not of fuzz merge',
      ...a,
      '--iterations',
      '60',
    );
  });
});

describe('mergeResults tells findings apart by their key at detection', () => {
  it('a finding whose needs narrowed while shrinking is still the one finding of its key, in a run and across shards', () => {
    const o = { seed: 4, iterations: 20, resetEvery: 10, shrink: false };
    const [a, b] = [0, 1].map((index) => fuzz({ ...o, shard: { index, count: 2 } }));
    const finding = (iteration: number, needs: FuzzFinding['needs'], key: string): FuzzFinding => ({
      kind: 'breach',
      signature: 'breach:event',
      detail: '',
      iteration,
      operations: 1,
      policy: 'pkvm',
      failure: 'reject',
      weaken: ['queue-pin', 'queue-guard'],
      raw: false,
      needs,
      key,
    });
    // shard 0 found it first and its shrink narrowed needs to one rule; shard 1 found the same failure later, unshrunk
    a!.findings = [finding(3, ['queue-pin'], 'breach:event [needs queue-pin+queue-guard]')];
    b!.findings = [
      finding(12, ['queue-pin', 'queue-guard'], 'breach:event [needs queue-pin+queue-guard]'),
      finding(15, ['queue-guard'], 'breach:event [needs queue-guard]'),
    ];
    const m = mergeResults(o, [b!, a!], 0);
    expect(m.findings.map((f) => [f.iteration, f.key])).toEqual([
      [3, 'breach:event [needs queue-pin+queue-guard]'],
      [15, 'breach:event [needs queue-guard]'],
    ]);
  });
});
