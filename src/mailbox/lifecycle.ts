/**
 * The repository of the engine's lifecycle events (`lifecycle_events`, migration 0002): append,
 * bounded retention, and range reads by sequence. Writes run inside the caller's transaction (the
 * actor's commit that makes the change an event describes), so an event exists exactly when its
 * change was committed. `seq` is AUTOINCREMENT: a value is never reused, not even after trimming,
 * so a client resumes by the last `seq` it saw.
 */
import type { Db } from './db.js';

/** A stored lifecycle event; `data_json` is the WebSocket frame's whole `data` object, serialised once. */
export interface LifecycleRow { seq: number; ts: string; data_json: string }

export class LifecycleStore {
  private readonly s;
  constructor(private readonly db: Db) {
    const p = db.prepare.bind(db);
    this.s = {
      insert: p('INSERT INTO lifecycle_events (ts, event, data_json) VALUES (?, ?, ?)'),
      trim: p('DELETE FROM lifecycle_events WHERE seq <= ?'),
      range: p<[number, number, number], LifecycleRow>('SELECT seq, ts, data_json FROM lifecycle_events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?'),
      bounds: p<[], { lo: number | null; hi: number | null }>('SELECT MIN(seq) AS lo, MAX(seq) AS hi FROM lifecycle_events'),
      sequence: p<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'lifecycle_events'"),
    };
  }

  /** Appends an event and keeps only the newest `keep` rows (inside the caller's transaction); returns its seq. */
  append(ts: string, event: string, dataJson: string, keep: number): number {
    const seq = Number(this.s.insert.run(ts, event, dataJson).lastInsertRowid);
    if (seq > keep) this.s.trim.run(seq - keep);
    return seq;
  }

  /** Events with `after < seq <= upTo`, oldest first, at most `limit`. */
  range(after: number, upTo: number, limit: number): LifecycleRow[] { return this.s.range.all(after, upTo, limit); }

  /**
   * The oldest kept seq (undefined when the table is empty) and the newest seq ever written
   * (0 when none was; trimmed rows count, so it never goes back).
   */
  bounds(): { oldest: number | undefined; newest: number } {
    const b = this.s.bounds.get();
    return { oldest: b?.lo ?? undefined, newest: Math.max(b?.hi ?? 0, this.s.sequence.get()?.seq ?? 0) };
  }

  /** True while a transaction is open on the connection. */
  inTransaction(): boolean { return this.db.inTransaction; }
}
