/**
 * The `btrfs` backend: a base's data is a subvolume, a runtime a writable snapshot of its source,
 * a state a read-only snapshot of its runtime. Removal deletes the subvolumes (`tree.ts`).
 */
import path from 'node:path';
import { SnapshotError } from '../../errors.js';
import type { SnapshotBackend } from './backend.js';
import { lchownQuiet, lstatOrUndefined } from './files.js';
import { createSubvolume, isSubvolume, onBtrfs, snapshotSubvolume } from './subvolumes.js';
import { removeTree } from './tree.js';

/** The btrfs {@link SnapshotBackend}. */
export const btrfsBackend: SnapshotBackend = {
  kind: 'btrfs',
  layered: false,

  async prepareBase(data, opts) {
    const baseDir = path.dirname(data);
    if (!(await onBtrfs(baseDir))) throw new SnapshotError(`state store is not mounted as btrfs: ${baseDir}`);
    const st = await lstatOrUndefined(data);
    if (st !== undefined && !(await isSubvolume(data))) await removeTree({ path: data }, opts);
    if (st === undefined || !(await isSubvolume(data))) await createSubvolume(data, opts.signal);
  },

  async clone(ctx, opts) {
    if (!(await isSubvolume(ctx.sourceData))) throw new SnapshotError(`clone source is not a btrfs subvolume: ${ctx.sourceData}`);
    const data = path.join(ctx.runtimeDir, 'data');
    await snapshotSubvolume(ctx.sourceData, data, false, opts.signal);
    await lchownQuiet(data, ctx.uid, ctx.gid);
    return data;
  },

  async snapshot(ctx, opts) {
    const src = path.join(ctx.runtimeDir, 'data');
    if (!(await isSubvolume(src))) throw new SnapshotError(`runtime data is not a btrfs subvolume: ${src}`);
    await snapshotSubvolume(src, ctx.data, true, opts.signal);
    return [];
  },

  removeRuntime: (runtimeDir, opts) => removeTree({ path: runtimeDir }, opts),
  removeState: (stateDir, opts) => removeTree({ path: stateDir }, opts),
};
