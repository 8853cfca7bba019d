/**
 * Output paths of the CLI (`fuzz --out`, `run --trace`, `run --mmio-log`), checked before
 * anything runs, so that a path that cannot be written fails at once with the reason instead
 * of after a whole run, and the folders created one level at a time: Node's
 * `mkdirSync(p, { recursive: true })` loops forever on a path under /proc, where mkdir says
 * ENOENT of a folder whose parent exists.
 *
 * The checks try the real thing (create a probe file or folder, then remove it) rather than
 * read permission bits: root writes through those, and a read-only mount or /proc refuses
 * whatever they say.
 */
import { closeSync, mkdirSync, openSync, rmdirSync, statSync, unlinkSync, type Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

function why(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code ? `${err.code}: ${err.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '')}` : String(err.message ?? e);
}

/** stat, or null when nothing is there (ENOENT, or a regular file where a folder should be: ENOTDIR). */
function statOrNull(p: string): Stats | null {
  try {
    return statSync(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw e;
  }
}

function probeName(): string {
  return `.smmulab-probe-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}

/**
 * Why files cannot be written into folder `dir` (created, with its missing parents, when
 * needed), or null when they can. Walks up to the nearest existing ancestor, which must be a
 * folder, and creates and removes a probe there: a file when `dir` exists, a folder when it
 * has to be created. The reason names the ancestor at fault, not `dir` itself (the caller does).
 */
export function unwritableDir(dir: string): string | null {
  const abs = resolve(dir);
  let p = abs;
  let st: Stats | null;
  try {
    while (!(st = statOrNull(p))) {
      const up = dirname(p);
      if (up === p) return `the root folder ${p} does not exist`;
      p = up;
    }
  } catch (e) {
    return `cannot look at ${p} (${why(e)})`;
  }
  if (!st.isDirectory()) return p === abs ? 'it exists and is not a folder' : `${p} is not a folder`;
  const probe = join(p, probeName());
  try {
    if (p === abs) {
      closeSync(openSync(probe, 'wx'));
      unlinkSync(probe);
    } else {
      mkdirSync(probe);
      rmdirSync(probe);
    }
  } catch (e) {
    return p === abs ? `cannot create files in it (${why(e)})` : `cannot create folders in ${p} (${why(e)})`;
  }
  return null;
}

/** Create folder `dir` and its missing parents, one level at a time (never `recursive`, which can loop forever). */
export function makeDirs(dir: string): void {
  const abs = resolve(dir);
  const missing: string[] = [];
  for (let p = abs; !statOrNull(p); p = dirname(p)) {
    if (dirname(p) === p) break;
    missing.unshift(p);
  }
  for (const p of missing) {
    try {
      mkdirSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || !statSync(p).isDirectory()) throw e;
    }
  }
  if (!statSync(abs).isDirectory()) throw new Error(`${abs} is not a folder`);
}
