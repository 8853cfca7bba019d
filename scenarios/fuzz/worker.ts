/**
 * A fuzzing worker thread: runs one shard of a campaign (iterations index, index+count, ...)
 * and posts its progress and its result to the parent (scenarios/fuzz/parallel.ts fuzzParallel).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { setLogLevel, type LogLevel } from '../../hw/log.ts';
import { fuzz } from './engine.ts';
import { storeProgress, type WorkerJob, type WorkerMessage } from './parallel.ts';

const job = workerData as WorkerJob;
const post = (m: WorkerMessage): void => parentPort!.postMessage(m);
setLogLevel(job.logLevel as LogLevel);
// the parent runs a shard itself, and reads this one's progress from shared memory meanwhile
const shared = job.progress ? new Float64Array(job.progress) : null;
const shard = job.slot ?? job.options.shard?.index ?? 0;
try {
  const result = fuzz({
    ...job.options,
    onProgress: (p) => {
      if (shared) storeProgress(shared, shard, p);
      post({ type: 'progress', p });
    },
  });
  post({ type: 'done', result });
} catch (e) {
  post({ type: 'error', message: (e as Error).stack ?? String(e) });
}
