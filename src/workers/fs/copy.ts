/** The `copy` backend: runtimes and states are full copies (reflinked where the filesystem can). */
import path from 'node:path';
import { SnapshotError } from '../../errors.js';
import type { SnapshotBackend } from './backend.js';
import { ensureDirectory, isDirectory, lchownQuiet } from './files.js';
import { copyTree, removeTree } from './tree.js';

/** The copy {@link SnapshotBackend}. */
export const copyBackend: SnapshotBackend = {
  kind: 'copy',
  layered: false,

  async prepareBase(data) {
    await ensureDirectory(data, 'base data');
  },

  async clone(ctx, opts) {
    const data = path.join(ctx.runtimeDir, 'data');
    await copyTree({ src: ctx.sourceData, dest: data }, opts);
    await lchownQuiet(data, ctx.uid, ctx.gid);
    return data;
  },

  async snapshot(ctx, opts) {
    const src = path.join(ctx.runtimeDir, 'data');
    if (!(await isDirectory(src))) throw new SnapshotError(`runtime has no data directory: ${src}`);
    await copyTree({ src, dest: ctx.data }, opts);
    return [];
  },

  removeRuntime: (runtimeDir, opts) => removeTree({ path: runtimeDir }, opts),
  removeState: (stateDir, opts) => removeTree({ path: stateDir }, opts),
};
