/** btrfs helpers: recognising subvolumes and creating, snapshotting and deleting them with the `btrfs` program. */
import type { Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { throwIfAborted } from '../../abort.js';
import { lstatOrUndefined } from './files.js';
import { runProgram } from './spawn.js';

/** `statfs` magic number of btrfs. */
export const BTRFS_MAGIC = 0x9123683e;
/** Inode number of every btrfs subvolume's root directory. */
const BTRFS_SUBVOL_INO = 256;

/** True when `p` is on a btrfs filesystem. */
export async function onBtrfs(p: string): Promise<boolean> {
  return (await fsp.statfs(p)).type === BTRFS_MAGIC;
}

/** True when `p` is the root directory of a btrfs subvolume. */
export async function isSubvolume(p: string): Promise<boolean> {
  const st = await lstatOrUndefined(p);
  if (st === undefined || !st.isDirectory() || st.ino !== BTRFS_SUBVOL_INO) return false;
  return onBtrfs(p);
}

/** Subvolume roots strictly below `dir` and `dir` itself if it is one, deepest first. */
export async function subvolumesAtOrBelow(dir: string, signal: AbortSignal | undefined): Promise<string[]> {
  if (!(await onBtrfs(dir))) return [];
  const found: string[] = [];
  const walk = async (d: string, st: Stats): Promise<void> => {
    throwIfAborted(signal, 'subvolume scan');
    if (st.ino === BTRFS_SUBVOL_INO) found.push(d);
    const entries = await fsp.readdir(d, { withFileTypes: true });
    for (const ent of entries) {
      if (!ent.isDirectory()) continue;
      const child = path.join(d, ent.name);
      const cst = await fsp.lstat(child);
      await walk(child, cst);
    }
  };
  const st = await fsp.lstat(dir);
  if (st.isDirectory()) await walk(dir, st);
  return found.reverse();
}

/** Creates an empty subvolume at `p`. */
export async function createSubvolume(p: string, signal: AbortSignal | undefined): Promise<void> {
  await runProgram('btrfs', ['subvolume', 'create', p], { signal });
}

/** Snapshots subvolume `src` as `dest` (read-only when asked). */
export async function snapshotSubvolume(src: string, dest: string, readOnly: boolean, signal: AbortSignal | undefined): Promise<void> {
  await runProgram('btrfs', ['subvolume', 'snapshot', ...(readOnly ? ['-r'] : []), src, dest], { signal });
}

/** Deletes the subvolume `p` (read-only ones too). */
export async function deleteSubvolume(p: string, signal: AbortSignal | undefined): Promise<void> {
  await runProgram('btrfs', ['subvolume', 'delete', p], { signal });
}
