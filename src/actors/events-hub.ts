/**
 * In-process notification of appended job events, for NDJSON streams and WebSocket pushes.
 * Purely a wake-up signal: readers always re-read the store, so nothing here can lose an event.
 */
export type HubListener = (jobId: string) => void;

export class EventHub {
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly listeners = new Set<HubListener>();

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
        clearTimeout(timer);
        set?.delete(wake);
        signal?.removeEventListener('abort', onAbort);
        resolve(r);
      };
      const wake = (): void => done('event');
      const onAbort = (): void => done('aborted');
      const timer = setTimeout(() => done('timeout'), timeoutMs);
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
