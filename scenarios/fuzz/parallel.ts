/**
 * A campaign over worker threads (`smmulab fuzz --workers N`), for either target: shard k runs
 * episodes k, k+N, k+2N, ... (each seeded from (seed, episode) alone) and the shard results
 * merge into exactly the single-thread result (scenarios/fuzz/engine.ts).
 */
import { layerLogger, setLogLevel, type LogLevel } from '../../hw/log.ts';
import { fuzzSliced } from './engine.ts';
import { validateOptions, type FuzzOptions } from './options.ts';
import { mergeResults, type FuzzProgress, type FuzzResult } from './result.ts';

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
