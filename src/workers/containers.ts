/**
 * The engine's container runtime: {@link DockerRuntime} runs every Docker/Podman API call in one
 * long-lived worker thread (`container-worker`), so slow or chatty daemon I/O never competes with
 * the main thread. Errors are rebuilt as engine errors with their original `code`.
 */
import { Worker } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeAdapter from 'comlink/dist/umd/node-adapter.js';
import { abortError, raceAbort } from '../abort.js';
import { ClosedError, WorkerError, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import {
  unwrapResult,
  type ContainerRuntime,
  type ContainerSummary,
  type ContainerWorkerApi,
  type ExecRequest,
  type ExecResult,
  type ImageResolution,
  type OutputStream,
  type StartRequest,
  type StartedContainer,
  type WorkerInit,
  type WorkerLogMessage,
  type WorkerResult,
} from './protocol.js';

// The UMD module sets `module.exports = fn`; NodeNext types it as `{ default: fn }`.
const nodeEndpoint = nodeAdapter as unknown as typeof nodeAdapter.default;

const DEFAULT_SOCKET = '/var/run/docker.sock';

/** Options of {@link DockerRuntime}. */
export interface DockerRuntimeOptions {
  /**
   * Unix socket of the Docker (or Podman) API, or a promise of it (detection may still be under
   * way; when it rejects, every call rejects with its error). Default: `DOCKER_HOST` when it is
   * `unix://…`, else `/var/run/docker.sock`.
   */
  socketPath?: string | Promise<string>;
  logger: Logger;
  /**
   * Kill an aborted exec's processes from this machine's /proc when they are visible there (a local
   * daemon). Default true; when false, or when nothing is visible, they are killed from inside the
   * container instead.
   */
  hostKill?: boolean;
}

/**
 * Where the daemon is: an explicit socket wins, then `DOCKER_HOST` (`unix://` → that socket; any
 * other scheme is left to the client library's own `DOCKER_HOST` handling), then the default socket.
 */
export function daemonAddress(socketPath?: string, env: NodeJS.ProcessEnv = process.env): WorkerInit {
  if (socketPath !== undefined && socketPath !== '') return { socketPath, daemon: `unix://${socketPath}` };
  const host = env['DOCKER_HOST']?.trim();
  if (host) {
    if (host.startsWith('unix://')) return { socketPath: host.slice('unix://'.length), daemon: host };
    return { daemon: host };
  }
  return { socketPath: DEFAULT_SOCKET, daemon: `unix://${DEFAULT_SOCKET}` };
}

/** The worker script next to this module: `.ts` when running from sources, `.js` from `dist`. */
function workerUrl(): URL {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./container-worker${ext}`, import.meta.url);
}

function isWorkerLog(m: unknown): m is WorkerLogMessage {
  return typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'sqlrs-container-worker-log';
}

interface LiveWorker {
  worker: Worker;
  api: Comlink.Remote<ContainerWorkerApi>;
  ready: Promise<void>;
  /** Rejects when the worker dies or the runtime closes; every call races against it. */
  gone: Promise<never>;
  fail: (e: Error) => void;
  dead: boolean;
}

/** {@link ContainerRuntime} over the Docker Engine API (also served by Podman), in a worker thread. */
export class DockerRuntime implements ContainerRuntime {
  private readonly logger: Logger;
  private readonly address: Promise<WorkerInit>;
  private live: LiveWorker | undefined;
  private closed = false;
  private opSeq = 0;
  private inFlight = 0;

  constructor(opts: DockerRuntimeOptions) {
    this.logger = opts.logger;
    const hostKill = opts.hostKill !== false;
    const s = opts.socketPath;
    this.address = s instanceof Promise ? s.then((p) => ({ ...daemonAddress(p), hostKill })) : Promise.resolve({ ...daemonAddress(s), hostKill });
    this.address.catch(() => undefined); // observed by every call
  }

  ping(): Promise<{ version: string; apiVersion: string }> {
    return this.call('ping', (api) => api.ping());
  }

  resolveImage(ref: string, signal?: AbortSignal, knownUsers?: Record<string, { uid: number; gid: number }>, probeUser = true): Promise<ImageResolution> {
    return this.call('image resolution', (api, opId) => api.resolveImage(opId, ref, knownUsers, probeUser), signal);
  }

  async initBase(image: string, dataDir: string, labels: Record<string, string>, signal?: AbortSignal): Promise<void> {
    await this.call('initdb', (api, opId) => api.initBase(opId, image, dataDir, labels), signal);
  }

  start(req: StartRequest, signal?: AbortSignal): Promise<StartedContainer> {
    return this.call('container start', (api, opId) => api.start(opId, req), signal);
  }

  exec(req: ExecRequest, onOutput: (stream: OutputStream, chunk: string) => void | Promise<void>, signal?: AbortSignal): Promise<ExecResult> {
    return this.call(
      'exec',
      (api, opId) => {
        const failed = (e: unknown): void => {
          this.logger.warn('exec output consumer failed', { container: req.containerId, error: errorText(e) });
        };
        // A promise from the consumer is handed back to the worker, which stops reading output
        // while too many chunks are unacknowledged (backpressure).
        const sink = Comlink.proxy((stream: OutputStream, chunk: string): void | Promise<void> => {
          try {
            const r = onOutput(stream, chunk);
            if (r instanceof Promise) return r.catch(failed);
          } catch (e) {
            failed(e);
          }
          return undefined;
        });
        return api.exec(opId, req, sink);
      },
      signal,
    );
  }

  async stopPostgres(containerId: string, signal?: AbortSignal): Promise<void> {
    await this.call('postgres stop', (api, opId) => api.stopPostgres(opId, containerId), signal);
  }

  async startPostgres(containerId: string, signal?: AbortSignal): Promise<void> {
    await this.call('postgres start', (api, opId) => api.startPostgres(opId, containerId), signal);
  }

  async remove(containerId: string): Promise<void> {
    await this.call('container removal', (api) => api.remove(containerId));
  }

  isRunning(containerId: string): Promise<boolean> {
    return this.call('container inspect', (api) => api.isRunning(containerId));
  }

  list(labels: Record<string, string>): Promise<ContainerSummary[]> {
    return this.call('container list', (api) => api.list(labels));
  }

  /** Calls made and not settled (waiting for the API address or the worker, or running). */
  get callsInFlight(): number { return this.inFlight; }

  /** Terminates the worker; calls in flight reject with `ENGINE_CLOSED`, later calls throw it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const live = this.live;
    this.live = undefined;
    if (live === undefined) return;
    live.fail(new ClosedError('container runtime'));
    live.api[Comlink.releaseProxy]();
    await live.worker.terminate();
  }

  // -------------------------------------------------------------------------------------------

  private spawn(address: WorkerInit): LiveWorker {
    const worker = new Worker(workerUrl(), { name: 'sqlrs-container-worker' });
    let fail: (e: Error) => void = () => undefined;
    const gone = new Promise<never>((_, reject) => {
      fail = reject;
    });
    gone.catch(() => undefined); // observed by racing calls only
    const api = Comlink.wrap<ContainerWorkerApi>(nodeEndpoint(worker));
    const live: LiveWorker = {
      worker,
      api,
      gone,
      dead: false,
      fail: (e) => {
        if (live.dead) return;
        live.dead = true;
        fail(e);
      },
      ready: Promise.resolve(),
    };
    worker.on('message', (m: unknown) => {
      if (isWorkerLog(m)) this.logger[m.level](m.msg, { component: 'containers', ...m.meta });
    });
    worker.on('error', (e) => {
      this.logger.error('container worker crashed', { error: e.message });
      live.fail(new WorkerError('container worker crashed', { details: e.message, cause: e }));
      if (this.live === live) this.live = undefined;
    });
    worker.on('exit', (code) => {
      if (!live.dead) this.logger.error('container worker exited', { code });
      live.fail(new WorkerError(`container worker exited with code ${code}`));
      if (this.live === live) this.live = undefined;
    });
    live.ready = Promise.resolve(api.init(address));
    live.ready.catch(() => undefined);
    return live;
  }

  private async call<T>(
    what: string,
    fn: (api: Comlink.Remote<ContainerWorkerApi>, opId: number) => Promise<WorkerResult<T>>,
    signal?: AbortSignal,
  ): Promise<T> {
    if (this.closed) throw new ClosedError('container runtime');
    if (signal?.aborted) throw abortError(signal, what);
    this.inFlight++;
    try {
      return await this.callOnce(what, fn, signal);
    } finally {
      this.inFlight--;
    }
  }

  private async callOnce<T>(
    what: string,
    fn: (api: Comlink.Remote<ContainerWorkerApi>, opId: number) => Promise<WorkerResult<T>>,
    signal?: AbortSignal,
  ): Promise<T> {
    const address = await raceAbort(this.address, signal, what);
    if (this.closed) throw new ClosedError('container runtime');
    const live = (this.live ??= this.spawn(address));
    const opId = signal ? ++this.opSeq : 0;
    const onAbort = (): void => {
      live.api.abort(opId).catch(() => undefined);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.race([live.ready, live.gone]);
      if (signal?.aborted) throw abortError(signal, what);
      return unwrapResult(await Promise.race([fn(live.api, opId), live.gone]));
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}
