/**
 * The `overlay` backend: a runtime is an overlay mount (`merged`) of its own `upper`/`work` dirs
 * over the source's layer stack, recorded in `lowers.json`; a state keeps only the runtime's upper
 * layer (what changed) plus the stack below it in `state.json`. Stacks deeper than `maxDepth` are
 * flattened into one full layer. Runtimes whose mount went away (a reboot) can be remounted.
 */
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { SnapshotError } from '../../errors.js';
import type { SnapshotBackend } from './backend.js';
import { ensureDirectory, isDirectory, lchownQuiet } from './files.js';
import { readRuntimeLowers, writeRuntimeLowers } from './markers.js';
import { isMountPoint, unmount } from './mounts.js';
import { runProgram } from './spawn.js';
import { copyArchive, removeTree } from './tree.js';

/** The kernel copies mount options into one page. */
const MOUNT_OPTIONS_LIMIT = 4000;

/** Relative path of `p` from `root`, as recorded in markers. */
function layerName(root: string, p: string): string {
  const rel = path.relative(path.resolve(root), path.resolve(p));
  if (rel === '' || path.isAbsolute(rel)) throw new SnapshotError(`layer ${p} cannot be expressed relative to ${root}`);
  return rel;
}

/** Refuses characters overlay mount options cannot carry. */
function checkOptionPath(p: string): void {
  if (/[,:\\\n]/.test(p)) throw new SnapshotError(`path cannot be used in overlay mount options: ${p}`);
}

/** The deepest directory containing every path. */
function commonDir(paths: readonly string[]): string {
  const split = paths.map((p) => path.resolve(p).split('/'));
  const first = split[0] ?? [''];
  let n = 0;
  while (n < first.length && split.every((s) => s[n] === first[n])) n++;
  return first.slice(0, n).join('/') || '/';
}

/** Absolute lower dirs of a stack recorded relative to `root`; each must exist. */
async function resolveLowers(root: string, lowers: readonly string[]): Promise<string[]> {
  const abs = lowers.map((l) => path.resolve(root, l));
  for (let i = 0; i < abs.length; i++) {
    if (!(await isDirectory(abs[i] as string))) throw new SnapshotError(`lower layer missing: ${lowers[i]}`);
  }
  return abs;
}

/** Mounts an overlay with `lowers` (absolute, top first). Lower paths are passed relative to their common directory to keep the option string short. */
async function mountOverlay(lowers: readonly string[], upper: string, work: string, merged: string, signal: AbortSignal | undefined): Promise<void> {
  const cwd = commonDir(lowers.map((l) => path.dirname(l)));
  const rel = lowers.map((l) => path.relative(cwd, l));
  for (const p of [...rel, upper, work]) checkOptionPath(p);
  const options = `lowerdir=${rel.join(':')},upperdir=${upper},workdir=${work}`;
  if (options.length > MOUNT_OPTIONS_LIMIT) {
    throw new SnapshotError(`overlay layer stack of ${lowers.length} layers is too long for one mount (${options.length} bytes of options); lower the maximum depth`);
  }
  await runProgram('mount', ['-t', 'overlay', 'overlay', '-o', options, merged], { cwd, signal });
}

/** The overlay {@link SnapshotBackend}. */
export const overlayBackend: SnapshotBackend = {
  kind: 'overlay',
  layered: true,

  async prepareBase(data) {
    await ensureDirectory(data, 'base data');
  },

  async clone(ctx, opts) {
    const lowers = [layerName(ctx.root, ctx.sourceData), ...ctx.sourceLowers];
    const absLowers = await resolveLowers(ctx.root, lowers);
    const upper = path.join(ctx.runtimeDir, 'upper');
    const work = path.join(ctx.runtimeDir, 'work');
    const merged = path.join(ctx.runtimeDir, 'merged');
    await fsp.mkdir(upper, { mode: 0o700 });
    await lchownQuiet(upper, ctx.uid, ctx.gid);
    await fsp.chmod(upper, 0o700);
    await fsp.mkdir(work, { mode: 0o700 });
    await fsp.mkdir(merged, { mode: 0o700 });
    await writeRuntimeLowers(ctx.runtimeDir, lowers);
    await mountOverlay(absLowers, upper, work, merged, opts.signal);
    return merged;
  },

  async snapshot(ctx, opts) {
    const lowers = await readRuntimeLowers(ctx.runtimeDir);
    if (1 + lowers.length > ctx.maxDepth) {
      const merged = path.join(ctx.runtimeDir, 'merged');
      if (!(await isMountPoint(merged))) throw new SnapshotError(`overlay runtime is not mounted: ${merged}`);
      await copyArchive(merged, ctx.data, opts.signal);
      return [];
    }
    const upper = path.join(ctx.runtimeDir, 'upper');
    if (!(await isDirectory(upper))) throw new SnapshotError(`overlay runtime has no upper layer: ${upper}`);
    await copyArchive(upper, ctx.data, opts.signal);
    return lowers;
  },

  async removeRuntime(runtimeDir, opts) {
    const merged = path.join(runtimeDir, 'merged');
    if (await isMountPoint(merged)) await unmount(merged, opts.signal);
    return removeTree({ path: runtimeDir }, opts);
  },

  removeState: (stateDir, opts) => removeTree({ path: stateDir }, opts),

  async remount(runtimeDir, root, opts) {
    const merged = path.join(runtimeDir, 'merged');
    if (await isMountPoint(merged)) return { mountDir: merged, remounted: false };
    const absLowers = await resolveLowers(root, await readRuntimeLowers(runtimeDir));
    const upper = path.join(runtimeDir, 'upper');
    if (!(await isDirectory(upper))) throw new SnapshotError(`overlay runtime has no upper layer: ${upper}`);
    const work = path.join(runtimeDir, 'work');
    await fsp.mkdir(work, { recursive: true, mode: 0o700 });
    await fsp.mkdir(merged, { recursive: true, mode: 0o700 });
    await mountOverlay(absLowers, upper, work, merged, opts.signal);
    return { mountDir: merged, remounted: true };
  },
};
