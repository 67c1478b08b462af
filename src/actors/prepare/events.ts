/**
 * A prepare job's event stream has one writer: {@link JobEventLog}. The actor's effects append
 * through it inside the actor's commit, and progress from running work (psql output, step
 * progress) goes through it too, in a transaction of its own that keeps the stream's rules:
 * - events of a job are numbered densely from 0 in the order they are committed;
 * - nothing is appended to a job that is gone or terminal, so the terminal `status` and
 *   `result`/`error` events, committed with the terminal job status, are always the last ones;
 * - readers are woken after the commit, never before.
 * The {@link EventHub} is only a wake-up signal: readers always re-read the store.
 */
import type { Clock } from '../../clock.js';
import { rfc3339Nano } from '../../clock.js';
import type { JobEvent, Store } from '../../mailbox/store.js';

export type HubListener = (jobId: string) => void;

/** In-process wake-ups for readers of job events (NDJSON streams, WebSocket pushes). */
export class EventHub {
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly listeners = new Set<HubListener>();

  constructor(private readonly clock: Clock) {}

  notify(jobId: string): void {
    const set = this.waiters.get(jobId);
    if (set) { this.waiters.delete(jobId); for (const f of set) f(); }
    for (const l of this.listeners) l(jobId);
  }

  /** Resolves on the next notification for `jobId`, after `timeoutMs`, or on abort. */
  wait(jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<'event' | 'timeout' | 'aborted'> {
    return new Promise((resolve) => {
      if (signal?.aborted) { resolve('aborted'); return; }
      let set = this.waiters.get(jobId);
      if (!set) { set = new Set(); this.waiters.set(jobId, set); }
      const done = (r: 'event' | 'timeout' | 'aborted'): void => {
        this.clock.clearTimeout(timer);
        set?.delete(wake);
        signal?.removeEventListener('abort', onAbort);
        resolve(r);
      };
      const wake = (): void => done('event');
      const onAbort = (): void => done('aborted');
      const timer = this.clock.setTimeout(() => done('timeout'), timeoutMs);
      set.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Subscribes to every notification; returns an unsubscribe function. */
  subscribe(l: HubListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}

/** The one writer of job events. */
export class JobEventLog {
  constructor(private readonly store: Store, readonly hub: EventHub, private readonly clock: Clock) {}

  /** Appends inside the caller's transaction (the actor's commit); the caller notifies after it. */
  appendInCommit(jobId: string, event: Omit<JobEvent, 'ts'>): void {
    const { type, ...rest } = event;
    this.store.appendEvent(jobId, { type, ts: rfc3339Nano(this.clock.now()), ...rest });
  }

  /**
   * Appends a progress `log` event for a job that is still queued or running, in its own
   * transaction, then wakes readers. Returns false (and appends nothing) once the job is gone or
   * terminal: output of work that outlived its job never follows the terminal events.
   */
  progress(jobId: string, message: string): boolean {
    const appended = this.store.tx(() => {
      const job = this.store.getJob(jobId);
      if (!job || job.status === 'succeeded' || job.status === 'failed') return false;
      this.appendInCommit(jobId, { type: 'log', message });
      return true;
    });
    if (appended) this.hub.notify(jobId);
    return appended;
  }
}
