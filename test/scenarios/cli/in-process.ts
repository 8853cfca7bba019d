/**
 * `smmulab …` in the test's own process: main() from scenarios/cli/main.ts with its output
 * streams (scenarios/cli/io.ts) pointed at buffers. The result has the shape of a spawnSync
 * result, so a test reads it as it would a child's. Logs (pino, hw/log.ts) are silenced unless
 * the command line sets --log-level itself. What needs a real process (the bin script and its
 * exit status) is tested by spawning it: test/scenarios/cli/main.test.ts.
 */
import { main } from '../../../scenarios/cli/main.ts';

export interface CliRun {
  /** the exit code main() returned (what the bin script sets as the process's exit code) */
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * Run the CLI with `args`, stdout and stderr captured. `onErr` sees every stderr write (progress
 * lines among them) as it is made.
 */
export async function runCli(args: string[], onErr?: (s: string) => void): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const argv = args.includes('--log-level') ? args : [...args, '--log-level', 'silent'];
  const status = await main(argv, {
    out: { write: (s: string) => out.push(s) },
    err: {
      write: (s: string) => {
        err.push(s);
        onErr?.(s);
      },
    },
  });
  return { status, stdout: out.join(''), stderr: err.join('') };
}

/** `smmulab ...args`, in this process. */
export const smmulab = (...args: string[]): Promise<CliRun> => runCli(args);
