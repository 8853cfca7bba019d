/**
 * Where the CLI writes: results on `out`, messages and progress on `err`. main() points them at
 * the streams it is given (the process's by default, a test's buffers in test/) for one
 * invocation; the command modules write through them, never to process.stdout/stderr.
 * Logs are not here: they go through pino (hw/log.ts) straight to file descriptor 2.
 */

/** Something text can be written to (a stream, or a buffer in a test). */
export interface CliSink {
  write(s: string): unknown;
}

export interface CliIo {
  out: CliSink;
  /** `isTTY` chooses how progress is drawn (one line redrawn, or a line per update) */
  err: CliSink & { isTTY?: boolean };
}

/** The process's own streams: what the bin script, and main() without an `io`, use. */
export function processIo(): CliIo {
  return { out: process.stdout, err: process.stderr };
}

/** The streams of the invocation in progress. */
export const cliIo: CliIo = processIo();
