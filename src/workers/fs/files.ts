/**
 * Small file and path helpers shared by the filesystem thread's modules: existence checks that
 * treat "missing" as a value, durable writes, bounded parallelism, path containment.
 */
import type { Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { SnapshotError } from '../../errors.js';
import { errnoOf } from './errors.js';

/** `lstat`, or undefined when the path (or a parent) does not exist. */
export async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(p);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') return undefined;
    throw e;
  }
}

/** True when `p` is a directory (not a symlink to one). */
export async function isDirectory(p: string): Promise<boolean> {
  return (await lstatOrUndefined(p))?.isDirectory() ?? false;
}

/** Runs `fn` over `items` with at most `limit` in flight; on failure waits for the running ones, then throws the first error. */
export async function eachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  let first: unknown;
  const lane = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (e) {
        if (!failed) {
          failed = true;
          first = e;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failed) throw first;
}

/** fsync of a file or directory. */
export async function fsyncPath(p: string): Promise<void> {
  const fh = await fsp.open(p, 'r');
  try {
    await fh.sync();
  } catch (e) {
    // Some filesystems refuse fsync on directories; the data is still written.
    if (errnoOf(e) !== 'EINVAL' && errnoOf(e) !== 'EBADF') throw e;
  } finally {
    await fh.close();
  }
}

/** Creates `p` (which must not exist) with `text`, fsync'd. */
export async function writeFileDurably(p: string, text: string): Promise<void> {
  const fh = await fsp.open(p, 'wx', 0o644);
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** `lchown` that tolerates running without root (files then stay owned by the engine user). */
export async function lchownQuiet(p: string, uid: number, gid: number): Promise<void> {
  try {
    await fsp.lchown(p, uid, gid);
  } catch (e) {
    if (errnoOf(e) !== 'EPERM') throw e;
  }
}

/** Makes `dir` a directory (keeping an existing one); refuses anything else at that path. */
export async function ensureDirectory(dir: string, what: string): Promise<void> {
  const st = await lstatOrUndefined(dir);
  if (st !== undefined && !st.isDirectory()) throw new SnapshotError(`${what} is not a directory: ${dir}`);
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
}

/** Makes `dir` an empty directory; returns whether it was created here. */
export async function claimEmptyDir(dir: string, what: string): Promise<boolean> {
  const st = await lstatOrUndefined(dir);
  if (st === undefined) {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    return true;
  }
  if (!st.isDirectory() || (await fsp.readdir(dir)).length > 0) {
    throw new SnapshotError(`${what} already exists and is not an empty directory: ${dir}`);
  }
  return false;
}

/** `realpath` of `p`, or its absolute form when it cannot be resolved. */
export async function canonical(p: string): Promise<string> {
  const abs = path.resolve(p);
  try {
    return await fsp.realpath(abs);
  } catch {
    return abs;
  }
}

/** Resolves `p` through its deepest existing ancestor (so a not-yet-existing path is still canonical). */
export async function canonicalMaybeMissing(p: string): Promise<string> {
  const abs = path.resolve(p);
  const rest: string[] = [];
  let cur = abs;
  for (;;) {
    try {
      return path.join(await fsp.realpath(cur), ...rest.reverse());
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return abs;
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

/** True when `p` is `dir` or lies below it (both absolute and normalised). */
export function isAtOrBelow(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir === '/' ? '/' : `${dir}/`);
}
