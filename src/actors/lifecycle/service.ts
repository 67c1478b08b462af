/**
 * The engine's lifecycle events — instances created and deleted, states created, evicted and
 * deleted, jobs reaching a terminal status, runs starting and finishing — and their one writer,
 * {@link LifecycleLog}.
 *
 * Each event is appended by the wing that makes the change, inside the same transaction as that
 * change (the actor's commit), so a crash at any point either keeps both or neither: an event is
 * never lost and never invented. After the commit the writer wakes its readers (the WebSocket
 * fan-out), which read what was appended once and publish it to every subscriber.
 *
 * Retention: the table keeps the newest {@link DEFAULT_KEEP} events; `seq` keeps growing across
 * trims and restarts, so a client resumes by the last `seq` it saw.
 */
import type { Clock } from '../../clock.js';
import { rfc3339Nano } from '../../clock.js';
import type { LifecycleRow, LifecycleStore } from '../../mailbox/lifecycle.js';

export type { LifecycleRow } from '../../mailbox/lifecycle.js';

/** One lifecycle event: the `data` of a `lifecycle` WebSocket frame. `id` names what changed. */
export type LifecycleEvent =
  | { event: 'instance.created'; id: string; state_id: string; image_id: string; job_id: string }
  | { event: 'instance.deleted'; id: string; state_id?: string }
  | { event: 'state.created'; id: string; parent_state_id: string | null; image_id: string; size_bytes: number | null }
  /** `state.evicted`: removed by cache eviction; `state.deleted`: by a request, or `reason: 'invalidated'` (a broken cached state about to be rebuilt). */
  | { event: 'state.evicted' | 'state.deleted'; id: string; parent_state_id?: string | null; reason?: 'invalidated' }
  | { event: 'job.terminal'; id: string; status: 'succeeded' | 'failed'; error_code?: string }
  | { event: 'run.started'; id: string; run_id: string; instance_id: string; kind?: string }
  /** `exit_code` when the command ended, `error_code` when the run failed (also before it started). */
  | { event: 'run.finished'; id: string; run_id: string; exit_code?: number; error_code?: string };

export type LifecycleEventName = LifecycleEvent['event'];

/** What a wing needs to record lifecycle events: append inside its commit, wake readers after it. */
export interface LifecycleSink {
  /** Appends inside the caller's transaction. */
  append(e: LifecycleEvent): void;
  /** After the commit: wakes the readers if anything was appended (idempotent). */
  committed(): void;
}

/** Lifecycle events kept in the store. */
export const DEFAULT_KEEP = 10_000;

/** The one writer (and the reader's face) of the lifecycle event stream. */
export class LifecycleLog implements LifecycleSink {
  private readonly listeners = new Set<() => void>();
  private pending = false;

  constructor(private readonly store: LifecycleStore, private readonly clock: Clock, readonly keep: number = DEFAULT_KEEP) {}

  append(e: LifecycleEvent): void {
    this.store.append(rfc3339Nano(this.clock.now()), e.event, JSON.stringify(e), this.keep);
    if (this.pending) return;
    this.pending = true;
    // A writer that does not call `committed()` is still published, after its synchronous commit.
    queueMicrotask(() => this.committed());
  }

  committed(): void {
    if (!this.pending || this.store.inTransaction()) return;
    this.pending = false;
    for (const l of this.listeners) l();
  }

  /** Calls `f` after every commit that appended events; returns an unsubscribe function. */
  onAppended(f: () => void): () => void {
    this.listeners.add(f);
    return () => { this.listeners.delete(f); };
  }

  /** Events with `after < seq <= upTo`, oldest first, at most `limit`. */
  read(after: number, upTo: number, limit: number): LifecycleRow[] { return this.store.range(after, upTo, limit); }

  /** Oldest kept seq and newest seq ever written. */
  bounds(): { oldest: number | undefined; newest: number } { return this.store.bounds(); }
}
