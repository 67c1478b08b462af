/**
 * Whole-tree operations: copying a directory tree (modes, owners, symlinks, times; reflinks where
 * possible), measuring it, and removing it (mounts and btrfs subvolumes below it included). Copies
 * and walks check the signal between entries.
 */
import { constants as fsc, type Dirent, type Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { throwIfAborted } from '../../abort.js';
import { SnapshotError } from '../../errors.js';
import type { FsArgs, FsTaskOutput } from '../protocol.js';
import { errnoOf, guard } from './errors.js';
import { canonicalMaybeMissing, eachLimit, isAtOrBelow, lchownQuiet, lstatOrUndefined } from './files.js';
import { unmountAllBelow } from './mounts.js';
import type { OpOptions } from './backend.js';
import { runProgram } from './spawn.js';
import { deleteSubvolume, subvolumesAtOrBelow } from './subvolumes.js';

/** Parallel file operations per directory during copies and walks. */
const COPY_PARALLELISM = 8;

/** Deletes `p` and everything below it: unmounts mounts under it, deletes btrfs subvolumes, then removes files. */
export async function removeTree(args: FsArgs<'remove-tree'>, opts: OpOptions = {}): Promise<FsTaskOutput['remove-tree']> {
  return guard(`remove ${args.path}`, async () => {
    const abs = path.resolve(args.path);
    if (abs === '/') throw new SnapshotError('refusing to remove /');
    await unmountAllBelow(abs, opts.signal);
    const st = await lstatOrUndefined(abs);
    if (st === undefined) return { removed: false };
    if (st.isDirectory()) {
      for (const sv of await subvolumesAtOrBelow(abs, opts.signal)) await deleteSubvolume(sv, opts.signal);
    }
    throwIfAborted(opts.signal, `remove ${args.path}`);
    await fsp.rm(abs, { recursive: true, force: true, maxRetries: 3 });
    return { removed: true };
  });
}

interface Tally {
  bytes: number;
  files: number;
}

async function measureInto(p: string, st: Stats, tally: Tally, signal: AbortSignal | undefined): Promise<void> {
  if (st.isFile()) {
    tally.bytes += st.size;
    tally.files += 1;
    return;
  }
  if (!st.isDirectory()) return;
  throwIfAborted(signal, 'measure');
  const entries = await fsp.readdir(p, { withFileTypes: true });
  await eachLimit(entries, COPY_PARALLELISM, async (ent: Dirent) => {
    if (!ent.isFile() && !ent.isDirectory()) return;
    const child = path.join(p, ent.name);
    await measureInto(child, await fsp.lstat(child), tally, signal);
  });
}

/** Apparent size and count of the regular files at or below `path` (symlinks are not followed). */
export async function measure(args: FsArgs<'measure'>, opts: OpOptions = {}): Promise<FsTaskOutput['measure']> {
  return guard(`measure ${args.path}`, async () => {
    const st = await lstatOrUndefined(args.path);
    if (st === undefined) throw new SnapshotError(`cannot measure ${args.path}: no such file or directory`, { details: 'ENOENT' });
    const tally: Tally = { bytes: 0, files: 0 };
    await measureInto(args.path, st, tally, opts.signal);
    return tally;
  });
}

async function copyEntry(src: string, dest: string, st: Stats, tally: Tally, signal: AbortSignal | undefined, topLevel: boolean): Promise<void> {
  throwIfAborted(signal, 'copy');
  if (st.isDirectory()) {
    try {
      await fsp.mkdir(dest, { mode: 0o700 });
    } catch (e) {
      if (!(topLevel && errnoOf(e) === 'EEXIST')) throw e;
    }
    const entries = await fsp.readdir(src, { withFileTypes: true });
    await eachLimit(entries, COPY_PARALLELISM, async (ent: Dirent) => {
      const s = path.join(src, ent.name);
      await copyEntry(s, path.join(dest, ent.name), await fsp.lstat(s), tally, signal, false);
    });
    await lchownQuiet(dest, st.uid, st.gid);
    await fsp.chmod(dest, st.mode & 0o7777);
    await fsp.utimes(dest, st.atime, st.mtime);
  } else if (st.isFile()) {
    // FICLONE makes a reflink where the filesystem supports it and silently copies otherwise.
    await fsp.copyFile(src, dest, fsc.COPYFILE_FICLONE | fsc.COPYFILE_EXCL);
    await lchownQuiet(dest, st.uid, st.gid);
    await fsp.chmod(dest, st.mode & 0o7777);
    await fsp.utimes(dest, st.atime, st.mtime);
    tally.bytes += st.size;
    tally.files += 1;
  } else if (st.isSymbolicLink()) {
    const target = await fsp.readlink(src, { encoding: 'buffer' });
    await fsp.symlink(target, dest);
    await lchownQuiet(dest, st.uid, st.gid);
    await fsp.lutimes(dest, st.atime, st.mtime);
  } else {
    throw new SnapshotError(`cannot copy ${src}: unsupported file type (mode ${st.mode.toString(8)})`);
  }
}

/**
 * Copies directory `src` to `dest` (which must not exist, or be an empty directory), preserving
 * modes, owners, symlink texts and timestamps, using reflinks where the filesystem has them.
 */
export async function copyTree(args: FsArgs<'copy-tree'>, opts: OpOptions = {}): Promise<FsTaskOutput['copy-tree']> {
  return guard(`copy ${args.src} to ${args.dest}`, async () => {
    const st = await lstatOrUndefined(args.src);
    if (st === undefined || !st.isDirectory()) throw new SnapshotError(`source must be a directory: ${args.src}`);
    const srcReal = await fsp.realpath(args.src);
    const destReal = await canonicalMaybeMissing(args.dest);
    if (isAtOrBelow(destReal, srcReal)) throw new SnapshotError(`destination must not be inside source: ${args.dest} is in ${args.src}`);
    const dst = await lstatOrUndefined(args.dest);
    if (dst !== undefined) {
      if (!dst.isDirectory() || (await fsp.readdir(args.dest)).length > 0) {
        throw new SnapshotError(`destination already exists and is not an empty directory: ${args.dest}`);
      }
    } else {
      await fsp.mkdir(path.dirname(path.resolve(args.dest)), { recursive: true, mode: 0o700 });
    }
    const tally: Tally = { bytes: 0, files: 0 };
    await copyEntry(srcReal, path.resolve(args.dest), st, tally, opts.signal, true);
    return tally;
  });
}

/** `cp -a`: keeps owners, modes, times, xattrs (overlay opaque markers) and device nodes (whiteouts). */
export async function copyArchive(src: string, dest: string, signal: AbortSignal | undefined): Promise<void> {
  await runProgram('cp', ['-a', '--reflink=auto', '--', src, dest], { signal });
}
