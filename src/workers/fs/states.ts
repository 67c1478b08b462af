/**
 * Bases, runtimes and states, whatever the backend: the steps every backend shares around its
 * own {@link SnapshotBackend} part, and the choice of backend ({@link backendFor}). These are the
 * functions the fs worker dispatches `prepare-base`, `clone`, `snapshot`, `remove-runtime`,
 * `remove-state` and `remount-runtime` to; tests call them directly.
 *
 * Layouts (see `protocol.ts`):
 * - base: `<base>/data` (btrfs: a subvolume).
 * - state: `<states>/<id>/state.json` + `<states>/<id>/data`; built in `<states>/.tmp-<id>-<rand>/`,
 *   `state.json` written last and fsync'd, then renamed into place.
 * - runtime: copy/btrfs `<runtime>/data`; overlay `<runtime>/{upper,work,merged}` + `lowers.json`.
 */
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { throwIfAborted } from '../../abort.js';
import { SnapshotError } from '../../errors.js';
import type { FsArgs, FsTaskOutput, SnapshotBackendKind, StateMarker } from '../protocol.js';
import type { OpOptions, SnapshotBackend } from './backend.js';
import { btrfsBackend } from './btrfs.js';
import { copyBackend } from './copy.js';
import { guard } from './errors.js';
import { claimEmptyDir, fsyncPath, isDirectory, lchownQuiet, lstatOrUndefined } from './files.js';
import { hasRuntimeLowers, loadMarker, requireMarker, writeStateMarker } from './markers.js';
import { overlayBackend } from './overlay.js';
import { runProgram } from './spawn.js';
import { measure, removeTree } from './tree.js';

/** Prefix of in-progress state directories (siblings of the final directory). */
export const TMP_STATE_PREFIX = '.tmp-';

const BACKENDS: Readonly<Record<SnapshotBackendKind, SnapshotBackend>> = {
  copy: copyBackend,
  overlay: overlayBackend,
  btrfs: btrfsBackend,
};

/** The backend of a kind. */
export function backendFor(kind: SnapshotBackendKind): SnapshotBackend {
  return BACKENDS[kind];
}

/** Creates `<baseDir>/data` (btrfs: a subvolume), owned by uid:gid, mode 0700. Keeps an existing one of the right kind. */
export async function prepareBase(args: FsArgs<'prepare-base'>, opts: OpOptions = {}): Promise<FsTaskOutput['prepare-base']> {
  return guard(`prepare base ${args.baseDir}`, async () => {
    await fsp.mkdir(args.baseDir, { recursive: true, mode: 0o700 });
    const data = path.join(args.baseDir, 'data');
    await backendFor(args.backend).prepareBase(data, opts);
    await lchownQuiet(data, args.uid, args.gid);
    await fsp.chmod(data, 0o700);
    return { dataDir: data };
  });
}

/**
 * Makes a writable clone of a base or state in `runtimeDir` (which must not exist or be empty) and
 * returns its mount dir. On failure nothing is left in `runtimeDir`.
 */
export async function clone(args: FsArgs<'clone'>, opts: OpOptions = {}): Promise<FsTaskOutput['clone']> {
  return guard(`clone into ${args.runtimeDir}`, async () => {
    const backend = backendFor(args.backend);
    const sourceData = path.join(args.source.kind === 'base' ? args.source.baseDir : args.source.stateDir, 'data');
    let sourceLowers: string[] = [];
    if (args.source.kind === 'state') {
      const marker = await requireMarker(args.source.stateDir);
      sourceLowers = marker.lowers;
      if (!backend.layered && marker.lowers.length > 0) {
        throw new SnapshotError(`state is an overlay layer and needs the overlay backend: ${args.source.stateDir}`);
      }
    }
    if (!(await isDirectory(sourceData))) throw new SnapshotError(`clone source has no data directory: ${sourceData}`);
    const created = await claimEmptyDir(args.runtimeDir, 'runtime dir');
    try {
      const ctx = { root: args.root, runtimeDir: args.runtimeDir, sourceData, sourceLowers, uid: args.uid, gid: args.gid };
      return { mountDir: await backend.clone(ctx, opts) };
    } catch (e) {
      await removeTree({ path: args.runtimeDir }).catch(() => undefined);
      if (!created) await fsp.mkdir(args.runtimeDir, { recursive: true, mode: 0o700 }).catch(() => undefined);
      throw e;
    }
  });
}

/**
 * Captures a runtime as the immutable state `stateDir`. The state is built in a sibling
 * `.tmp-<id>-<rand>` directory and renamed into place once its files and `state.json` are durable.
 * A complete existing state makes this a no-op returning its recorded size.
 */
export async function snapshot(args: FsArgs<'snapshot'>, opts: OpOptions = {}): Promise<FsTaskOutput['snapshot']> {
  return guard(`snapshot ${args.runtimeDir} into ${args.stateDir}`, async () => {
    if (!Number.isInteger(args.maxDepth) || args.maxDepth < 1) throw new SnapshotError(`maxDepth must be a positive integer, got ${args.maxDepth}`);
    const stateDir = path.resolve(args.stateDir);
    const existing = await loadMarker(stateDir);
    if (existing.ok) return { sizeBytes: existing.marker.sizeBytes };
    const est = await lstatOrUndefined(stateDir);
    if (est !== undefined) {
      if (!est.isDirectory() || (await fsp.readdir(stateDir)).length > 0) {
        throw new SnapshotError(`state dir exists but is incomplete (${existing.reason}): ${stateDir}`);
      }
      await fsp.rmdir(stateDir);
    }
    const statesDir = path.dirname(stateDir);
    await fsp.mkdir(statesDir, { recursive: true, mode: 0o700 });
    const tmp = path.join(statesDir, `${TMP_STATE_PREFIX}${path.basename(stateDir)}-${randomBytes(6).toString('hex')}`);
    await fsp.mkdir(tmp, { mode: 0o700 });
    try {
      const data = path.join(tmp, 'data');
      const lowers = await backendFor(args.backend).snapshot({ runtimeDir: args.runtimeDir, data, maxDepth: args.maxDepth }, opts);
      const { bytes } = await measure({ path: data }, opts);
      // Flush the whole filesystem, so the state's files are durable before its marker is.
      await runProgram('sync', ['-f', tmp], opts);
      const marker: StateMarker = { v: 1, backend: args.backend, lowers, sizeBytes: bytes, createdAt: new Date().toISOString() };
      await writeStateMarker(tmp, marker);
      await fsyncPath(tmp);
      throwIfAborted(opts.signal, 'snapshot');
      try {
        await fsp.rename(tmp, stateDir);
      } catch (e) {
        // Someone else completed the same state meanwhile: theirs wins.
        const other = await loadMarker(stateDir);
        if (other.ok) {
          await removeTree({ path: tmp });
          return { sizeBytes: other.marker.sizeBytes };
        }
        throw e;
      }
      await fsyncPath(statesDir);
      return { sizeBytes: bytes };
    } catch (e) {
      await removeTree({ path: tmp }).catch(() => undefined);
      throw e;
    }
  });
}

/**
 * Makes an existing runtime usable again after its container went away, and returns its mount dir.
 * An overlay runtime (it has `lowers.json`) whose `merged` is no longer mounted (e.g. after a host
 * reboot) is mounted again from the recorded lower stack and its own upper/work dirs; a mounted one is
 * left alone. A copy/btrfs runtime needs nothing: its mount dir is `data`.
 * @throws SnapshotError when the runtime dir, its data, upper layer or a lower layer is missing.
 */
export async function remountRuntime(args: FsArgs<'remount-runtime'>, opts: OpOptions = {}): Promise<FsTaskOutput['remount-runtime']> {
  return guard(`remount runtime ${args.runtimeDir}`, async () => {
    const rt = path.resolve(args.runtimeDir);
    if (!(await isDirectory(rt))) throw new SnapshotError(`runtime dir is missing: ${rt}`);
    // Only overlay runtimes record a lower stack; the others all look alike and need no remount.
    const remount = (await hasRuntimeLowers(rt)) ? backendFor('overlay').remount : undefined;
    if (remount !== undefined) return remount(rt, args.root, opts);
    const data = path.join(rt, 'data');
    if (!(await isDirectory(data))) throw new SnapshotError(`runtime has no data directory: ${data}`);
    return { mountDir: data, remounted: false };
  });
}

/** Unmounts and deletes a runtime (any backend; mounts and subvolumes below it are handled too). */
export async function removeRuntime(args: FsArgs<'remove-runtime'>, opts: OpOptions = {}): Promise<FsTaskOutput['remove-runtime']> {
  return guard(`remove runtime ${args.runtimeDir}`, () => backendFor(args.backend).removeRuntime(args.runtimeDir, opts));
}

/** Deletes a state directory (btrfs: its read-only subvolume too). Callers keep states that are lowers of others. */
export async function removeState(args: FsArgs<'remove-state'>, opts: OpOptions = {}): Promise<FsTaskOutput['remove-state']> {
  return guard(`remove state ${args.stateDir}`, () => backendFor(args.backend).removeState(args.stateDir, opts));
}
