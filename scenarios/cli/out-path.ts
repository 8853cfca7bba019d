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
import {
  closeSync,
  mkdirSync,
  openSync,
  realpathSync,
  rmdirSync,
  statSync,
  unlinkSync,
  type Stats,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

function why(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code
    ? `${err.code}: ${err.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '')}`
    : String(err.message ?? e);
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
  if (!st.isDirectory())
    return p === abs ? 'it exists and is not a folder' : `${p} is not a folder`;
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
    return p === abs
      ? `cannot create files in it (${why(e)})`
      : `cannot create folders in ${p} (${why(e)})`;
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

/**
 * Why `file` cannot be written (its folder must exist; an existing file is overwritten), or
 * null when it can. An existing file is opened for writing without truncating it; a missing
 * one is created and removed again. The reason does not name `file` (the caller does).
 */
export function unwritableFile(file: string): string | null {
  const abs = resolve(file);
  const dir = dirname(abs);
  let st: Stats | null;
  try {
    const d = statOrNull(dir);
    if (!d) return `the folder ${dir} does not exist`;
    if (!d.isDirectory()) return `${dir} is not a folder`;
    st = statOrNull(abs);
  } catch (e) {
    return `cannot look at it (${why(e)})`;
  }
  if (st?.isDirectory()) return 'it is a folder';
  try {
    if (st) closeSync(openSync(abs, 'r+'));
    else {
      closeSync(openSync(abs, 'wx'));
      unlinkSync(abs);
    }
  } catch (e) {
    return `cannot write it (${why(e)})`;
  }
  return null;
}

/** The file a path names, symbolic links and `..` resolved as far as it exists (to tell two options naming one file). */
export function canonicalPath(file: string): string {
  const abs = resolve(file);
  try {
    return realpathSync(abs);
  } catch {
    try {
      return join(realpathSync(dirname(abs)), basename(abs));
    } catch {
      return abs;
    }
  }
}
