/**
 * The container worker's dockerode client, its log line channel to the main thread, the one
 * daemon error → {@link ContainerError} mapping, and the plain container queries (ping, remove,
 * inspect, list). Thread side: state lives in this module, set once by {@link initClient}.
 */
import { parentPort } from 'node:worker_threads';
import Docker from 'dockerode';
import { ContainerError, EngineError, WorkerError } from '../../errors.js';
import type { ContainerSummary, WorkerInit, WorkerLogLevel, WorkerLogMessage } from '../protocol.js';

let docker: Docker | undefined;
let daemon = 'the container daemon';
let hostKill = true;

/** Creates the client for the daemon at `opts` (the worker's `init`). */
export function initClient(opts: WorkerInit): void {
  docker = opts.socketPath !== undefined ? new Docker({ socketPath: opts.socketPath }) : new Docker();
  daemon = opts.daemon;
  hostKill = opts.hostKill !== false;
}

/**
 * The dockerode client.
 * @throws WorkerError before {@link initClient}
 */
export function client(): Docker {
  if (docker === undefined) throw new WorkerError('container worker used before init');
  return docker;
}

/** Whether an aborted exec's processes may be looked for in this machine's /proc. */
export function hostKillEnabled(): boolean {
  return hostKill;
}

/** Posts a log line to the main thread (a no-op outside a worker); never throws. */
export function logSafe(level: WorkerLogLevel, msg: string, meta: Record<string, string | number | boolean> = {}): void {
  const m: WorkerLogMessage = { type: 'sqlrs-container-worker-log', level, msg, meta };
  try {
    parentPort?.postMessage(m);
  } catch {
    /* logging must never break an operation */
  }
}

interface DockerishError { code?: unknown; syscall?: unknown; statusCode?: unknown; message?: unknown; json?: unknown }

/** The HTTP status of a daemon error, if any. */
export function statusOf(e: unknown): number | undefined {
  const s = (e as DockerishError | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

/** True for the daemon's 404 (no such container or image). */
export function isNotFound(e: unknown): boolean {
  return statusOf(e) === 404;
}

/** The trimmed message of any thrown value. */
export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message.trim();
  return String(e);
}

/**
 * Converts any failure into an engine error; `what` names the operation. Engine errors pass
 * through; an unreachable or forbidden daemon socket gets its own message.
 */
export function toContainerError(what: string, e: unknown): EngineError {
  if (e instanceof EngineError) return e;
  const d = e as DockerishError | null;
  const code = typeof d?.code === 'string' ? d.code : undefined;
  if (code === 'ECONNREFUSED' || (code === 'ENOENT' && d?.syscall === 'connect')) {
    return new ContainerError('docker is not running', {
      details: `cannot connect to ${daemon} (${code}); start the Docker daemon (or the Podman service) and retry`,
      cause: e,
    });
  }
  if (code === 'EACCES' && d?.syscall === 'connect') {
    return new ContainerError('docker is not accessible', {
      details: `permission denied on ${daemon}; run the engine as a user allowed to use the container daemon`,
      cause: e,
    });
  }
  const status = statusOf(e);
  const msg = messageOf(e);
  return new ContainerError(`${what} failed`, {
    details: status === undefined || msg.includes('HTTP code') ? msg : `${msg} (HTTP ${status})`,
    cause: e,
  });
}

/** The daemon's version. */
export async function ping(): Promise<{ version: string; apiVersion: string }> {
  const v = await client().version();
  return { version: String(v.Version), apiVersion: String(v.ApiVersion) };
}

/** Force-removes a container and its anonymous volumes; a missing one, or one already being removed, is success. */
export async function removeContainer(containerId: string): Promise<null> {
  try {
    await client().getContainer(containerId).remove({ force: true, v: true });
  } catch (e) {
    if (isNotFound(e)) return null;
    // A concurrent removal of the same container is not a failure of ours.
    if (statusOf(e) === 409 && /already in progress/i.test(messageOf(e))) return null;
    throw e;
  }
  return null;
}

/** {@link removeContainer} for cleanup paths: failures are logged, never thrown. */
export async function removeQuietly(id: string): Promise<void> {
  try {
    await client().getContainer(id).remove({ force: true, v: true });
  } catch (e) {
    if (!isNotFound(e)) logSafe('warn', 'removing a container failed', { id, error: messageOf(e) });
  }
}

/** True when the container exists and is running. */
export async function isRunning(containerId: string): Promise<boolean> {
  try {
    const info = await client().getContainer(containerId).inspect();
    return info.State.Running === true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** Containers (running or not) carrying all the given labels. */
export async function listContainers(labels: Record<string, string>): Promise<ContainerSummary[]> {
  const label = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  const items = await client().listContainers({ all: true, filters: JSON.stringify({ label }) });
  return items.map((c) => ({
    id: c.Id,
    name: (c.Names?.[0] ?? '').replace(/^\//, ''),
    labels: { ...(c.Labels ?? {}) },
    running: c.State === 'running',
    createdMs: typeof c.Created === 'number' ? c.Created * 1000 : 0,
  }));
}
