import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'threads',
    // vitest's default for `run` is one worker fewer than the CPUs: a single worker on the
    // 2-core CI machine, which leaves a core idle while the main process waits. Two workers
    // measured faster there (issue 15: test/hw, hyp, host, guest, builtin: 145 s and 137 s
    // against 203 s and 158 s with one, alternated, on a loaded machine)
    maxWorkers: 2,
    testTimeout: 60_000,
  },
});
