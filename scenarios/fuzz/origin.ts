/**
 * Where an exception the fuzzer caught came from, and its signature: one bug, one signature,
 * whatever numbers its message carries; and the layer (the first frame in the project's own
 * code: hw/, hyp/, host/, guest/ or scenarios/) that threw it.
 */
import type { Detected } from './target.ts';

/** Whether a hypervisor frame is on the error's stack. */
export function isHypFrame(e: Error): boolean {
  return /[/\\]hyp[/\\][a-z0-9/\\-]+\.ts/.test(e.stack ?? '');
}

/** Where an exception came from: the first frame in the project's own code. */
export function origin(e: Error): string {
  const m = /(?:hyp|hw|host|guest|scenarios)[/\\][A-Za-z0-9_/\\.-]+\.ts:\d+/.exec(e.stack ?? '');
  return m ? m[0].replace(/\\/g, '/') : 'unknown';
}

/** An exception message with its numbers taken out, so that one bug has one signature. */
export function normalize(msg: string): string {
  return msg
    .replace(/0x[0-9a-f]+/gi, '#')
    .replace(/\d+/g, '#')
    .slice(0, 120);
}

/** The finding of an unexpected exception; `where` follows its origin in the detail (", through …"). */
export function exceptionFound(e: Error, where = ''): Detected {
  return {
    kind: 'exception',
    signature: `exception:${e.name}:${normalize(e.message)}`,
    detail: `${e.name}: ${e.message} (at ${origin(e)}${where})`,
  };
}
