/** Mount points from /proc/self/mountinfo, and unmounting everything at or below a path. */
import * as fsp from 'node:fs/promises';
import { hasCode, SnapshotError } from '../../errors.js';
import type { FsArgs, FsTaskOutput } from '../protocol.js';
import { guard } from './errors.js';
import { canonical, isAtOrBelow } from './files.js';
import type { OpOptions } from './backend.js';
import { runProgram } from './spawn.js';

/** Decodes mountinfo's octal escapes (`\040` for a space, …). */
export function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Every mount point of this mount namespace, decoded. */
async function mountPoints(): Promise<string[]> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[4];
    if (mp !== undefined && mp !== '') out.push(unescapeMountinfo(mp));
  }
  return out;
}

function depth(p: string): number {
  return p === '/' ? 0 : p.split('/').length - 1;
}

/** Mount points at or below `under` (from /proc/self/mountinfo), deepest first, each listed once. */
export async function listMounts(args: FsArgs<'list-mounts'>): Promise<FsTaskOutput['list-mounts']> {
  return guard('list mounts', async () => {
    const base = await canonical(args.under);
    const found = new Set((await mountPoints()).filter((mp) => isAtOrBelow(mp, base)));
    const mounts = [...found].sort((a, b) => depth(b) - depth(a) || b.length - a.length || a.localeCompare(b));
    return { mounts };
  });
}

/** True when `p` (resolved) is a mount point. */
export async function isMountPoint(p: string): Promise<boolean> {
  const c = await canonical(p);
  return (await mountPoints()).includes(c);
}

/** Unmounts `mp`, falling back to a lazy unmount when it is busy. */
export async function unmount(mp: string, signal: AbortSignal | undefined): Promise<void> {
  try {
    await runProgram('umount', [mp], { signal });
  } catch (e) {
    if (hasCode(e, 'cancelled')) throw e;
    if (!(await isMountPoint(mp))) return;
    await runProgram('umount', ['-l', mp], { signal });
  }
}

/** Unmounts everything at or below `dir`, deepest first, until nothing is left. */
export async function unmountAllBelow(dir: string, signal: AbortSignal | undefined): Promise<void> {
  for (let round = 0; round < 16; round++) {
    const { mounts } = await listMounts({ under: dir });
    if (mounts.length === 0) return;
    for (const mp of mounts) await unmount(mp, signal);
  }
  const { mounts } = await listMounts({ under: dir });
  if (mounts.length > 0) throw new SnapshotError(`cannot unmount ${mounts.join(', ')}`);
}

/** Unmounts everything at or below `path`, deepest first; never removes a file. */
export async function unmountTree(args: FsArgs<'unmount'>, opts: OpOptions = {}): Promise<FsTaskOutput['unmount']> {
  return guard(`unmount ${args.path}`, async () => {
    const { mounts } = await listMounts({ under: args.path });
    if (mounts.length > 0) await unmountAllBelow(await canonical(args.path), opts.signal);
    return { unmounted: mounts.length };
  });
}
