/**
 * Filesystem worker entry (runs inside the pool's worker threads). Takes one plain-data
 * {@link FsTask}, runs it with the functions of `snapshot.ts`, and answers with an
 * {@link FsResponse}: failures travel as serialized errors, never as thrown class instances.
 */
import { isMainThread } from 'node:worker_threads';
import { assertNever, IllegalStateError, serializeError } from '../errors.js';
import type { FsResponse, FsTask, FsTaskOutput } from './protocol.js';
import {
  clone,
  copyTree,
  listMounts,
  measure,
  prepareBase,
  probe,
  removeRuntime,
  removeState,
  removeTree,
  remountRuntime,
  snapshot,
  unmountTree,
  verifyState,
} from './snapshot.js';

if (isMainThread) throw new IllegalStateError('fs-worker must run in a worker thread');

function ok<K extends FsTask['type']>(output: FsTaskOutput[K]): FsResponse<K> {
  return { type: 'ok', output };
}

async function dispatch(task: FsTask): Promise<FsResponse> {
  switch (task.type) {
    case 'probe': return ok<'probe'>(await probe(task));
    case 'prepare-base': return ok<'prepare-base'>(await prepareBase(task));
    case 'clone': return ok<'clone'>(await clone(task));
    case 'snapshot': return ok<'snapshot'>(await snapshot(task));
    case 'remove-runtime': return ok<'remove-runtime'>(await removeRuntime(task));
    case 'remove-state': return ok<'remove-state'>(await removeState(task));
    case 'verify-state': return ok<'verify-state'>(await verifyState(task));
    case 'copy-tree': return ok<'copy-tree'>(await copyTree(task));
    case 'measure': return ok<'measure'>(await measure(task));
    case 'remove-tree': return ok<'remove-tree'>(await removeTree(task));
    case 'list-mounts': return ok<'list-mounts'>(await listMounts(task));
    case 'unmount': return ok<'unmount'>(await unmountTree(task));
    case 'remount-runtime': return ok<'remount-runtime'>(await remountRuntime(task));
    default: return assertNever(task, 'fs task');
  }
}

/** Runs one filesystem task; never throws. */
export default async function runFsTask(task: FsTask): Promise<FsResponse> {
  try {
    return await dispatch(task);
  } catch (e) {
    return { type: 'error', error: serializeError(e) };
  }
}
