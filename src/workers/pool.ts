/**
 * The filesystem worker pool (main thread side). Runs {@link FsTask}s in worker threads so large
 * copies, walks and spawned mount/btrfs commands never block the event loop.
 *
 * - The queue is bounded: at most `maxThreads` running plus `maxQueue` waiting tasks; one more is
 *   refused at once with `ENGINE_QUEUE_FULL` ({@link needsDrain} tells producers to slow down).
 *   Waiting tasks wait here, so every task handed to piscina has a thread of its own.
 * - An aborted signal drops a waiting task. A running task is cancelled through its thread: the
 *   pool posts on the task's cancel port, the thread aborts the operation and stays alive. Only a
 *   thread that has not settled `abortGraceMs` after the abort is terminated. Either way the call
 *   rejects with `cancelled`.
 * - Errors from the worker are rebuilt with their code (`deserializeError`).
 * - `close()` stops accepting work, lets accepted tasks finish (escalating to `destroy()` after
 *   `closeTimeoutMs`) and is idempotent; `destroy()` terminates the workers at once and rejects
 *   unfinished tasks with `ENGINE_CLOSED`. Calls after either reject with `ENGINE_CLOSED`.
 */
import { addAbortListener } from 'node:events';
import { MessageChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { abortError } from '../abort.js';
import { ClosedError, QueueFullError, WorkerError } from '../errors.js';
import type { Logger } from '../log.js';
import { unwrapResult, type FsControl, type FsRequest, type FsTask, type FsTaskOutput, type WorkerResult } from './protocol.js';

/** Options of {@link FsPool}; all but `logger` have defaults. */
export interface FsPoolOptions {
  /** Worker threads. @default 2 */
  maxThreads?: number;
  /** Tasks that may wait for a thread. @default 256 */
  maxQueue?: number;
  /** How long `close()` waits for accepted tasks before destroying the pool. @default 30_000 */
  closeTimeoutMs?: number;
  /** Idle threads above one are stopped after this long. @default 30_000 */
  idleTimeoutMs?: number;
  /**
   * How long a running task may take to stop after its signal aborts before its thread is
   * terminated (the fallback for an operation stuck where it cannot see the signal). @default 5_000
   */
  abortGraceMs?: number;
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

/** A task waiting for a thread. */
interface Waiter {
  start(): void;
  fail(e: Error): void;
}

/** The bounded piscina pool that runs {@link FsTask}s (see the module comment for queueing, abort and close). */
export class FsPool {
  readonly #piscina: Piscina<FsRequest, WorkerResult<unknown>>;
  readonly #log: Logger;
  readonly #maxThreads: number;
  readonly #maxQueue: number;
  readonly #closeTimeoutMs: number;
  readonly #abortGraceMs: number;
  /** Accepted and not settled (running and waiting). */
  #pending = 0;
  /** Handed to piscina (each has a thread). */
  #running = 0;
  #waiting: Waiter[] = [];
  #idleWaiters: (() => void)[] = [];
  #accepting = true;
  #destroyed = false;
  #closing: Promise<void> | undefined;
  #destroying: Promise<void> | undefined;

  /** @throws RangeError when an option is out of range */
  constructor(opts: FsPoolOptions) {
    this.#log = opts.logger;
    this.#maxThreads = positiveInt(opts.maxThreads ?? 2, 'maxThreads');
    this.#maxQueue = nonNegativeInt(opts.maxQueue ?? 256, 'maxQueue');
    this.#closeTimeoutMs = nonNegativeInt(opts.closeTimeoutMs ?? 30_000, 'closeTimeoutMs');
    this.#abortGraceMs = nonNegativeInt(opts.abortGraceMs ?? 5_000, 'abortGraceMs');
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    this.#piscina = new Piscina<FsRequest, WorkerResult<unknown>>({
      filename: new URL(`./fs-worker${ext}`, import.meta.url).href,
      name: 'default',
      minThreads: 1,
      maxThreads: this.#maxThreads,
      idleTimeout: nonNegativeInt(opts.idleTimeoutMs ?? 30_000, 'idleTimeoutMs'),
      // The bound is enforced in run() (running + waiting); piscina's own queue never refuses.
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
   * Runs `task` in a worker.
   * @throws EngineError the worker's error (by code); `ENGINE_QUEUE_FULL` when the queue is full;
   *   `cancelled` when `signal` aborts before the task settles; `ENGINE_CLOSED` after close
   */
  async run<T extends FsTask>(task: T, signal?: AbortSignal): Promise<FsTaskOutput[T['type']]> {
    if (!this.#accepting) throw new ClosedError(POOL_NAME);
    if (signal?.aborted) throw abortError(signal, `fs task ${task.type}`);
    if (this.needsDrain) throw new QueueFullError(POOL_NAME, this.#maxQueue);
    this.#pending++;
    try {
      await this.#acquire(task, signal);
      try {
        return (await this.#runInThread(task, signal)) as FsTaskOutput[T['type']];
      } finally {
        this.#release();
      }
    } finally {
      this.#pending--;
      if (this.#pending === 0) {
        const waiters = this.#idleWaiters;
        this.#idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  /** Resolves once the task may have a thread; a waiting task is dropped when `signal` aborts. */
  #acquire(task: FsTask, signal: AbortSignal | undefined): Promise<void> {
    if (this.#running < this.#maxThreads) {
      this.#running++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      let disposer: Disposable | undefined;
      const waiter: Waiter = {
        start: () => {
          disposer?.[Symbol.dispose]();
          resolve();
        },
        fail: (e) => {
          disposer?.[Symbol.dispose]();
          reject(e);
        },
      };
      this.#waiting.push(waiter);
      if (signal !== undefined) {
        disposer = addAbortListener(signal, () => {
          const i = this.#waiting.indexOf(waiter);
          if (i < 0) return;
          this.#waiting.splice(i, 1);
          waiter.fail(abortError(signal, `fs task ${task.type}`));
        });
      }
    });
  }

  /** A task left its thread: the next waiting task takes the slot over. */
  #release(): void {
    const next = this.#waiting.shift();
    if (next !== undefined) next.start();
    else this.#running--;
  }

  async #runInThread(task: FsTask, signal: AbortSignal | undefined): Promise<unknown> {
    const { port1, port2 } = new MessageChannel();
    // Aborted only by the grace timer: piscina then terminates the thread running the task.
    const terminate = new AbortController();
    let grace: NodeJS.Timeout | undefined;
    const disposer = signal === undefined ? undefined : addAbortListener(signal, () => {
      port1.postMessage({ type: 'abort' } satisfies FsControl);
      grace = setTimeout(() => {
        this.#log.warn('fs task did not stop after abort; terminating its thread', { task: task.type, graceMs: this.#abortGraceMs });
        terminate.abort();
      }, this.#abortGraceMs);
    });
    try {
      let res: WorkerResult<unknown>;
      try {
        const req: FsRequest = { task, cancel: port2 };
        res = await this.#piscina.run(req, { transferList: [port2], signal: terminate.signal });
      } catch (e) {
        throw this.#runFailure(task, e, signal);
      }
      if (res.type === 'error') this.#log.debug('fs task failed', { task: task.type, code: res.error.code, error: res.error.message });
      // An aborted call rejects even when the thread finished before it saw the abort.
      if (signal?.aborted) throw abortError(signal, `fs task ${task.type}`);
      return unwrapResult(res);
    } finally {
      disposer?.[Symbol.dispose]();
      clearTimeout(grace);
      port1.close();
    }
  }

  #runFailure(task: FsTask, e: unknown, signal: AbortSignal | undefined): Error {
    if (signal?.aborted) return abortError(signal, `fs task ${task.type}`);
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
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const w of waiting) w.fail(new ClosedError(POOL_NAME));
    this.#destroying ??= this.#piscina.destroy();
    return this.#destroying;
  }
}
