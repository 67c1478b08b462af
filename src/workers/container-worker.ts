/**
 * Container worker entry: a long-lived worker thread that owns the Docker/Podman API client and
 * exposes {@link ContainerWorkerApi} over comlink; the work itself lives in `docker/`. The
 * main-thread side is `DockerRuntime` in `containers.ts`.
 *
 * - Every operation answers with a {@link WorkerResult}: failures travel as serialized engine
 *   errors (daemon errors mapped by `toContainerError`), so their `code` and `details` survive.
 * - Cancellable operations take an `opId` (> 0); `abort(opId)` aborts the matching operation.
 * - Output callbacks are comlink proxies; the exec waits until every chunk has been delivered
 *   before it answers, and the proxy is released afterwards.
 *
 * Only works against the Docker Engine API features Podman's compatible socket also serves.
 */
import { isMainThread, parentPort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeAdapter from 'comlink/dist/umd/node-adapter.js';
import { WorkerError } from '../errors.js';
import { initClient, isRunning, listContainers, ping, removeContainer, toContainerError } from './docker/client.js';
import { execStreaming } from './docker/exec.js';
import { initBase, resolveImage } from './docker/images.js';
import { startContainer, startPostgres, stopPostgres } from './docker/postgres.js';
import { errorResult, type ContainerWorkerApi, type WorkerResult } from './protocol.js';

if (isMainThread || parentPort === null) {
  throw new WorkerError('container-worker must be loaded in a worker thread, not on the main thread');
}
const port = parentPort;

// The UMD module sets `module.exports = fn`; NodeNext types it as `{ default: fn }`.
const nodeEndpoint = nodeAdapter as unknown as typeof nodeAdapter.default;

/** Abort controllers of the cancellable operations in flight, by opId. */
const ops = new Map<number, AbortController>();

async function result<T>(what: string, fn: () => Promise<T>): Promise<WorkerResult<T>> {
  try {
    return { type: 'ok', output: await fn() };
  } catch (e) {
    return errorResult(toContainerError(what, e));
  }
}

/** Runs a cancellable operation registered under `opId`. */
async function operation<T>(opId: number, what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<WorkerResult<T>> {
  const ac = new AbortController();
  if (opId > 0) ops.set(opId, ac);
  try {
    return await result(what, () => fn(ac.signal));
  } finally {
    if (opId > 0) ops.delete(opId);
  }
}

/** Releases a comlink proxy (once its operation is over); an already released one is fine. */
function release(proxy: unknown): void {
  const fn = (proxy as Partial<Comlink.ProxyMethods>)[Comlink.releaseProxy];
  if (typeof fn !== 'function') return;
  try {
    fn.call(proxy);
  } catch {
    /* already released */
  }
}

const api: ContainerWorkerApi = {
  init: (opts) => initClient(opts),
  abort: (opId) => ops.get(opId)?.abort(),
  ping: () => result('docker ping', ping),
  resolveImage: (opId, ref, knownUsers, probeUser = true) =>
    operation(opId, 'image resolution', (signal) => resolveImage(ref, knownUsers, probeUser, signal)),
  initBase: (opId, image, dataDir, labels) => operation(opId, 'initdb', (signal) => initBase(image, dataDir, labels, signal)),
  start: (opId, req) => operation(opId, 'container start', (signal) => startContainer(req, signal)),
  exec: (opId, req, onOutput) =>
    operation(opId, 'exec', (signal) => execStreaming(req, onOutput, signal).finally(() => release(onOutput))),
  stopPostgres: (opId, containerId) => operation(opId, 'postgres stop', (signal) => stopPostgres(containerId, signal)),
  startPostgres: (opId, containerId) => operation(opId, 'postgres start', (signal) => startPostgres(containerId, signal)),
  remove: (containerId) => result('container removal', () => removeContainer(containerId)),
  isRunning: (containerId) => result('container inspect', () => isRunning(containerId)),
  list: (labels) => result('container list', () => listContainers(labels)),
};

Comlink.expose(api, nodeEndpoint(port));
