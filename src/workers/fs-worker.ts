/**
 * Filesystem worker entry (runs inside the pool's piscina threads): takes one {@link FsRequest},
 * dispatches its task to the functions of `fs/`, and answers with a {@link WorkerResult}; failures
 * travel as serialized errors, never as thrown class instances.
 *
 * Abort is cooperative: a message on the request's cancel port aborts the task's signal, the
 * operation stops and answers `cancelled`, and the thread stays alive for the next task.
 */
import { isMainThread, receiveMessageOnPort, threadId } from 'node:worker_threads';
import { assertNever, CancelledError, IllegalStateError } from '../errors.js';
import type { OpOptions } from './fs/backend.js';
import { verifyState } from './fs/markers.js';
import { listMounts, unmountTree } from './fs/mounts.js';
import { probe } from './fs/probe.js';
import { clone, prepareBase, remountRuntime, removeRuntime, removeState, snapshot } from './fs/states.js';
import { copyTree, measure, removeTree } from './fs/tree.js';
import { errorResult, type FsControl, type FsRequest, type FsTask, type FsTaskOutput, type WorkerResult } from './protocol.js';

if (isMainThread) throw new IllegalStateError('fs-worker must run in a worker thread');

async function dispatch(task: FsTask, opts: OpOptions): Promise<FsTaskOutput[FsTask['type']]> {
  switch (task.type) {
    case 'probe': return probe(task, opts);
    case 'prepare-base': return prepareBase(task, opts);
    case 'clone': return clone(task, opts);
    case 'snapshot': return snapshot(task, opts);
    case 'remove-runtime': return removeRuntime(task, opts);
    case 'remove-state': return removeState(task, opts);
    case 'verify-state': return verifyState(task, opts);
    case 'copy-tree': return copyTree(task, opts);
    case 'measure': return measure(task, opts);
    case 'remove-tree': return removeTree(task, opts);
    case 'list-mounts': return listMounts(task);
    case 'unmount': return unmountTree(task, opts);
    case 'remount-runtime': return remountRuntime(task, opts);
    case 'thread-info': return { threadId };
    default: return assertNever(task, 'fs task');
  }
}

/** Runs one filesystem task, honouring its cancel port; never throws. */
export default async function runFsTask(req: FsRequest): Promise<WorkerResult<FsTaskOutput[FsTask['type']]>> {
  const ac = new AbortController();
  const abort = (): void => ac.abort(new CancelledError(`fs task ${req.task.type} cancelled`));
  // An abort posted before this thread took the task is already waiting on the port.
  if (receiveMessageOnPort(req.cancel) !== undefined) abort();
  const onControl = (m: FsControl): void => {
    if (m.type === 'abort') abort();
  };
  req.cancel.on('message', onControl);
  try {
    return { type: 'ok', output: await dispatch(req.task, { signal: ac.signal }) };
  } catch (e) {
    return errorResult(e);
  } finally {
    req.cancel.off('message', onControl);
    req.cancel.close();
  }
}
