/** Which snapshot backends the state store's filesystem supports, found by trying (never guessed). */
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { hasCode } from '../../errors.js';
import type { FsArgs, ProbeResult } from '../protocol.js';
import type { OpOptions } from './backend.js';
import { guard } from './errors.js';
import { unmount } from './mounts.js';
import { findBinary, runProgram } from './spawn.js';
import { BTRFS_MAGIC } from './subvolumes.js';
import { removeTree } from './tree.js';

/** Which snapshot backends the filesystem at `root` supports (creates `root` if missing). */
export async function probe(args: FsArgs<'probe'>, opts: OpOptions = {}): Promise<ProbeResult> {
  return guard(`probe ${args.root}`, async () => {
    const notes: string[] = [];
    await fsp.mkdir(args.root, { recursive: true, mode: 0o700 });
    let btrfs = false;
    const btrfsBin = await findBinary('btrfs');
    const type = (await fsp.statfs(args.root)).type;
    if (btrfsBin === undefined) notes.push('btrfs: the btrfs program is not installed');
    else if (type !== BTRFS_MAGIC) notes.push(`btrfs: ${args.root} is not on a btrfs filesystem (type 0x${type.toString(16)})`);
    else btrfs = true;
    const overlay = await probeOverlay(args.root, notes, opts.signal);
    return { btrfs, overlay, notes };
  });
}

/** Mounts a one-file overlay in a scratch dir under `root` and reads the file through it. */
async function probeOverlay(root: string, notes: string[], signal: AbortSignal | undefined): Promise<boolean> {
  if (process.platform !== 'linux') {
    notes.push('overlay: only available on Linux');
    return false;
  }
  if ((await findBinary('mount')) === undefined || (await findBinary('umount')) === undefined) {
    notes.push('overlay: the mount program is not installed');
    return false;
  }
  let dir: string;
  try {
    dir = await fsp.mkdtemp(path.join(root, '.sqlrs-overlay-probe-'));
  } catch (e) {
    notes.push(`overlay: cannot create a probe directory: ${e instanceof Error ? e.message : String(e)}`);
    return false;
  }
  const merged = path.join(dir, 'merged');
  try {
    for (const d of ['lower', 'upper', 'work', 'merged']) await fsp.mkdir(path.join(dir, d));
    await fsp.writeFile(path.join(dir, 'lower', 'probe'), 'ok');
    await runProgram('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=lower,upperdir=${dir}/upper,workdir=${dir}/work`, merged], {
      cwd: dir,
      signal,
    });
    const seen = await fsp.readFile(path.join(merged, 'probe'), 'utf8').catch(() => '');
    await unmount(merged, signal);
    if (seen !== 'ok') {
      notes.push('overlay: the mounted view did not show the lower layer');
      return false;
    }
    return true;
  } catch (e) {
    if (hasCode(e, 'cancelled')) throw e;
    notes.push(`overlay: ${e instanceof Error ? e.message : String(e)}`);
    return false;
  } finally {
    await removeTree({ path: dir }).catch(() => undefined);
  }
}
