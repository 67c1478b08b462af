/**
 * Following runs from outside their HTTP response (the WebSocket's run subscriptions and
 * `GET /v1/runs`). Every event of a run gets a sequence number within the run — 1, 2, 3, … — and
 * is kept in a bounded in-memory tail, so a subscriber can follow a run live and a late one can
 * resume by sequence within what is kept. Nothing here is persisted (runs are not): a run is kept
 * from its start until it has finished and is no longer among the newest finished runs.
 *
 * Bounds, per run: the newest {@link RunWatchOptions.maxEvents} events and at most
 * {@link RunWatchOptions.maxChars} characters of output `data`; older events are dropped first.
 */
import type { RunEvent } from './channel.js';

/** A run in progress, as `GET /v1/runs` lists it. */
export interface RunInfo { run_id: string; instance_id: string; kind: string; started_at: string }

/** One event of a run with its sequence number within the run (from 1). */
export interface RunRecord { seq: number; event: RunEvent }

/** What a reader gets: the kept events after a sequence, and where the kept window starts and ends. */
export interface RunSlice {
  /** Oldest kept sequence (`last + 1` when nothing is kept). */
  first: number;
  /** Newest sequence so far (0 before the first event). */
  last: number;
  finished: boolean;
  events: RunRecord[];
}

export interface RunWatchOptions {
  /** Events kept per run. @default 512 */
  maxEvents?: number;
  /** Characters of `data` kept per run. @default 262144 */
  maxChars?: number;
  /** Finished runs kept for late subscribers. @default 16 */
  keepFinished?: number;
}

export type RunListener = (runId: string, record: RunRecord) => void;

interface Tail { info: RunInfo; records: RunRecord[]; head: number; chars: number; last: number; finished: boolean }

const charsOf = (e: RunEvent): number => ('data' in e ? e.data.length : 0);

/** The runs being followed, by run id. */
export class RunWatch {
  private readonly runs = new Map<string, Tail>();
  private readonly finishedOrder: string[] = [];
  private readonly listeners = new Set<RunListener>();
  private readonly maxEvents: number;
  private readonly maxChars: number;
  private readonly keepFinished: number;

  constructor(opts: RunWatchOptions = {}) {
    this.maxEvents = Math.max(1, opts.maxEvents ?? 512);
    this.maxChars = opts.maxChars ?? 256 * 1024;
    this.keepFinished = opts.keepFinished ?? 16;
  }

  /** Starts following a run (before its first event). */
  open(info: RunInfo): void {
    this.runs.set(info.run_id, { info, records: [], head: 0, chars: 0, last: 0, finished: false });
  }

  /** Forgets a run that never started (its actor could not be messaged). */
  forget(runId: string): void { this.runs.delete(runId); }

  /** Numbers, keeps and announces a run's next event; ignored for unknown runs and after the terminal event. */
  record(runId: string, event: RunEvent): void {
    const t = this.runs.get(runId);
    if (!t || t.finished) return;
    const rec: RunRecord = { seq: ++t.last, event };
    t.records.push(rec);
    t.chars += charsOf(event);
    while (t.records.length - t.head > this.maxEvents || (t.chars > this.maxChars && t.records.length - t.head > 1)) {
      t.chars -= charsOf((t.records[t.head++] as RunRecord).event);
    }
    if (t.head > 1024 && t.head * 2 > t.records.length) { t.records.splice(0, t.head); t.head = 0; }
    if (event.type === 'exit' || event.type === 'error') {
      t.finished = true;
      this.finishedOrder.push(runId);
      while (this.finishedOrder.length > this.keepFinished) this.runs.delete(this.finishedOrder.shift() as string);
    }
    for (const l of this.listeners) l(runId, rec);
  }

  /** Runs that have not finished, oldest first. */
  active(): RunInfo[] {
    return [...this.runs.values()].filter((t) => !t.finished).map((t) => ({ ...t.info }));
  }

  /** The run's description while it is kept. */
  info(runId: string): RunInfo | undefined { return this.runs.get(runId)?.info; }

  /** Kept events with a sequence above `after` (at most `limit`), or undefined for a run not kept. */
  read(runId: string, after: number, limit: number): RunSlice | undefined {
    const t = this.runs.get(runId);
    if (!t) return undefined;
    const kept = t.records.length - t.head;
    const first = t.last - kept + 1;
    const from = t.head + Math.max(0, after - first + 1);
    return { first, last: t.last, finished: t.finished, events: t.records.slice(from, from + Math.max(0, limit)) };
  }

  /** Calls `f` with every recorded event; returns an unsubscribe function. */
  onEvent(f: RunListener): () => void {
    this.listeners.add(f);
    return () => { this.listeners.delete(f); };
  }
}
