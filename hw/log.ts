/**
 * Logging: one pino root logger writing JSON lines to stderr (stdout carries results), with a
 * child logger per layer. The CLI sets the level; the default is 'warn', tests run 'silent'.
 */
import { pino, type Logger, type Level } from 'pino';

export type LogLevel = Level | 'silent';

const root: Logger = pino(
  {
    level: process.env.SMMULAB_LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'warn'),
    base: undefined,
  },
  pino.destination({ dest: 2, sync: true }),
);

const children = new Map<string, Logger>();

/** The logger of a layer: 'hw', 'hyp', 'host', 'guest', 'scenarios'. */
export function layerLogger(layer: string): Logger {
  let l = children.get(layer);
  if (!l) {
    l = root.child({ layer });
    children.set(layer, l);
  }
  return l;
}

export function setLogLevel(level: LogLevel): void {
  root.level = level;
  for (const c of children.values()) c.level = level;
}
