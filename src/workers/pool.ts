/**
 * The filesystem worker pool (main thread side). Runs {@link FsTask}s in worker threads so large
 * copies, walks and spawned mount/btrfs commands never block the event loop.
 *
 * - The queue is bounded: at most `maxThreads` running plus `maxQueue` waiting tasks; one more is
 *   refused at once with `ENGINE_QUEUE_FULL` ({@link needsDrain} tells producers to slow down).
 * - An aborted signal drops a queued task, or terminates the worker running it; either way the
 *   call rejects with `cancelled`.
 * - Errors from the worker are rebuilt with their code (`deserializeError`).
 * - `close()` stops accepting work, lets accepted tasks finish (escalating to `destroy()` after
 *   `closeTimeoutMs`) and is idempotent; `destroy()` terminates the workers at once and rejects
 *   unfinished tasks with `ENGINE_CLOSED`. Calls after either reject with `ENGINE_CLOSED`.
 */
import { Piscina } from 'piscina';
import {
  CancelledError,
  ClosedError,
  deserializeError,
  EngineError,
  QueueFullError,
  WorkerError,
} from '../errors.js';
import type { Logger } from '../log.js';
import type { FsResponse, FsTask, FsTaskOutput } from './protocol.js';

export interface FsPoolOptions {
  /** Worker threads (default 2). */
  maxThreads?: number;
  /** Tasks that may wait for a thread (default 256). */
  maxQueue?: number;
  /** How long `close()` waits for accepted tasks before destroying the pool (default 30 s). */
  closeTimeoutMs?: number;
  /** Idle threads above one are stopped after this long (default 30 s). */
  idleTimeoutMs?: number;
  logger: Logger;
}

const POOL_NAME = 'fs pool';

function positiveInt(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${what} must be a positive integer, got ${v}`);
  return v;
}

function nonNegativeInt(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`${what} must be a non-negative integer, got ${v}`);
  return v;
}

export class FsPool {
  readonly #piscina: Piscina<FsTask, FsResponse>;
  readonly #log: Logger;
  readonly #maxThreads: number;
  readonly #maxQueue: number;
  readonly #closeTimeoutMs: number;
  #pending = 0;
  #idleWaiters: (() => void)[] = [];
  #accepting = true;
  #destroyed = false;
  #closing: Promise<void> | undefined;
  #destroying: Promise<void> | undefined;

  constructor(opts: FsPoolOptions) {
    this.#log = opts.logger;
    this.#maxThreads = positiveInt(opts.maxThreads ?? 2, 'maxThreads');
    this.#maxQueue = nonNegativeInt(opts.maxQueue ?? 256, 'maxQueue');
    this.#closeTimeoutMs = nonNegativeInt(opts.closeTimeoutMs ?? 30_000, 'closeTimeoutMs');
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    this.#piscina = new Piscina<FsTask, FsResponse>({
      filename: new URL(`./fs-worker${ext}`, import.meta.url).href,
      name: 'default',
      minThreads: 1,
      maxThreads: this.#maxThreads,
      idleTimeout: nonNegativeInt(opts.idleTimeoutMs ?? 30_000, 'idleTimeoutMs'),
      // The bound is enforced in run() (running + queued); piscina's own queue never refuses.
      maxQueue: Infinity,
    });
  }

  /** Tasks accepted and not yet settled (running and queued). */
  get pending(): number {
    return this.#pending;
  }

  /** True when the next `run()` would be refused with `ENGINE_QUEUE_FULL`. */
  get needsDrain(): boolean {
    return this.#pending >= this.#maxThreads + this.#maxQueue;
  }

  /**
   * Runs `task` in a worker. Rejects with the worker's error (by code), `ENGINE_QUEUE_FULL` when
   * the queue is full, `cancelled` when `signal` aborts first, `ENGINE_CLOSED` after close.
   */
  async run<T extends FsTask>(task: T, signal?: AbortSignal): Promise<FsTaskOutput[T['type']]> {
    if (!this.#accepting) throw new ClosedError(POOL_NAME);
    if (signal?.aborted) throw new CancelledError(`fs task ${task.type} aborted`, { cause: signal.reason });
    if (this.needsDrain) throw new QueueFullError(POOL_NAME, this.#maxQueue);
    this.#pending++;
    try {
      let res: FsResponse;
      try {
        res = await this.#piscina.run(task, signal === undefined ? {} : { signal });
      } catch (e) {
        throw this.#runFailure(task, e, signal);
      }
      if (res.type === 'error') {
        const err = deserializeError(res.error);
        this.#log.debug('fs task failed', { task: task.type, code: err.code, error: err.message });
        throw err;
      }
      return res.output as FsTaskOutput[T['type']];
    } finally {
      this.#pending--;
      if (this.#pending === 0) {
        const waiters = this.#idleWaiters;
        this.#idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  #runFailure(task: FsTask, e: unknown, signal: AbortSignal | undefined): EngineError {
    if (signal?.aborted) return new CancelledError(`fs task ${task.type} aborted`, { cause: signal.reason });
    if (this.#destroyed) return new ClosedError(POOL_NAME);
    const msg = e instanceof Error ? e.message : String(e);
    this.#log.warn('fs worker failed', { task: task.type, error: msg });
    return new WorkerError(`fs task ${task.type} failed in its worker: ${msg}`, { cause: e });
  }

  #whenIdle(): Promise<void> {
    if (this.#pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Stops accepting tasks, waits for accepted ones (up to `closeTimeoutMs`), then stops the threads. */
  close(): Promise<void> {
    this.#closing ??= this.#doClose();
    return this.#closing;
  }

  async #doClose(): Promise<void> {
    this.#accepting = false;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), this.#closeTimeoutMs);
    });
    try {
      const late = await Promise.race([this.#whenIdle().then(() => false), timedOut]);
      if (late) {
        this.#log.warn('fs pool close timed out; destroying', { pending: this.#pending, timeoutMs: this.#closeTimeoutMs });
        await this.destroy();
        return;
      }
    } finally {
      clearTimeout(timer);
    }
    if (!this.#destroyed) await this.#piscina.close();
  }

  /** Terminates the threads at once; unfinished tasks reject with `ENGINE_CLOSED`. Idempotent. */
  destroy(): Promise<void> {
    this.#accepting = false;
    this.#destroyed = true;
    this.#destroying ??= this.#piscina.destroy();
    return this.#destroying;
  }
}
