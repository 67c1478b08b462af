/**
 * The WebSocket fan-out: subscriptions, catch-up and live delivery of job events, lifecycle events
 * and run output. Independent of uWebSockets.js (a socket is a {@link Peer}), so it is tested on
 * its own.
 *
 * Live delivery serialises a frame once: each stream has one reader (a cursor over the store for
 * job and lifecycle events, the run watch's listener for run output) that turns every new event
 * into one encoded buffer and hands that same buffer to every live subscription of its topic.
 * Nothing is re-read or re-serialised per socket on this path. Publishing happens once per task
 * (a microtask after the commits that woke it), and each socket gets its frames in one corked
 * write: with a thousand sockets the cost is a write per socket per task, not per event.
 *
 * Catch-up reads the store (or the run's kept tail) once per subscriber, from its `after` up to
 * the stream's publish cursor, then joins the live topic in the same synchronous turn. Events up
 * to the cursor have all been published before the subscription went live (so catch-up covers
 * them); events above it are published after (so the live path covers them): no gap. A
 * subscription never takes a seq at or below the last one it delivered: no duplicate.
 *
 * Backpressure: nothing is sent to a socket whose buffered amount is at the bound. A live
 * subscription that meets a full socket leaves the live topic ("lags") and, when the socket
 * drains, resumes from the last seq it delivered by catching up again — so a slow socket costs a
 * bounded buffer, never lost or repeated events. A lagging run subscription whose position has
 * left the run's kept tail gets an `out_of_range` error and continues from the oldest kept event.
 */
import { errorFrame, jobFrame, lifecycleFrame, runFrame, topicOf, type ClientMessage, type Target } from './ws-protocol.js';
import type { SeqEventRow } from '../mailbox/store.js';
import type { LifecycleRow } from '../actors/lifecycle/service.js';
import type { RunRecord, RunSlice } from '../actors/run/service.js';

/** The part of a WebSocket the hub uses (uWebSockets.js: `send` returns 2 when it dropped the message). */
export interface Peer {
  send(frame: string | Uint8Array): number;
  getBufferedAmount(): number;
  /** Runs `fn` with the socket corked: its sends leave in one write. */
  cork(fn: () => void): void;
}

/** Where the streams come from. */
export interface HubSources {
  jobs: {
    /** Events with `after < seq <= upTo`, of one job or all. */
    read(job: string | undefined, after: number, upTo: number, limit: number): SeqEventRow[];
    newest(): number;
    exists(job: string): boolean;
    /** Readers must not publish rows of a transaction that may still roll back. */
    inTransaction(): boolean;
  };
  lifecycle: {
    read(after: number, upTo: number, limit: number): LifecycleRow[];
    bounds(): { oldest: number | undefined; newest: number };
  };
  runs: { read(runId: string, after: number, limit: number): RunSlice | undefined };
}

export interface HubOptions {
  /** Buffered bytes per socket above which nothing more is sent until it drains. @default 1 MiB */
  maxBuffered?: number;
  /** Subscriptions per socket. @default 64 */
  maxSubscriptions?: number;
  /** Rows read per store query. @default 256 */
  batch?: number;
}

/** uWebSockets.js `send` result for a message dropped by its backpressure limit. */
const DROPPED = 2;

interface Sub { readonly topic: string; readonly target: Target; readonly client: Client; last: number; live: boolean }
/** A frame waiting for the end of the publish: the topics it goes to; `terminal` ends run subscriptions. */
interface Pending { topics: readonly string[]; seq: number; frame: Uint8Array; terminal: boolean }

/** One connected socket. */
export class Client {
  readonly subs = new Map<string, Sub>();
  closed = false;
  constructor(readonly peer: Peer) {}
}

/**
 * Counters: connected sockets, open subscriptions, subscriptions not live (catching up or lagging),
 * how often a live subscription lagged, and the largest buffered amount seen after a send.
 */
export interface HubStats { clients: number; subscriptions: number; lagging: number; lags: number; peakBuffered: number }

export class WsHub {
  readonly maxBuffered: number;
  readonly maxSubscriptions: number;
  private readonly batch: number;
  private readonly clients = new Set<Client>();
  private readonly live = new Map<string, Set<Sub>>();
  private liveJobSubs = 0;
  private liveLifecycleSubs = 0;
  private jobCursor: number;
  private lifecycleCursor: number;
  private deferred = false;
  private scheduled = false;
  private readonly runQueue: { runId: string; rec: RunRecord }[] = [];
  private pending: Pending[] = [];
  private lags = 0;
  private peakBuffered = 0;

  constructor(private readonly src: HubSources, opts: HubOptions = {}) {
    this.maxBuffered = opts.maxBuffered ?? 1024 * 1024;
    this.maxSubscriptions = opts.maxSubscriptions ?? 64;
    this.batch = opts.batch ?? 256;
    this.jobCursor = src.jobs.newest();
    this.lifecycleCursor = src.lifecycle.bounds().newest;
  }

  connect(peer: Peer): Client {
    const c = new Client(peer);
    this.clients.add(c);
    return c;
  }

  disconnect(c: Client): void {
    c.closed = true;
    for (const sub of c.subs.values()) this.leaveLive(sub);
    c.subs.clear();
    this.clients.delete(c);
  }

  stats(): HubStats {
    let subscriptions = 0;
    let lagging = 0;
    for (const c of this.clients) for (const s of c.subs.values()) { subscriptions++; if (!s.live) lagging++; }
    return { clients: this.clients.size, subscriptions, lagging, lags: this.lags, peakBuffered: this.peakBuffered };
  }

  /** A parsed client message. */
  handle(c: Client, m: ClientMessage): void {
    if (c.closed) return;
    const topic = topicOf(m.target);
    if (m.op === 'unsubscribe') {
      const sub = c.subs.get(topic);
      if (sub) this.end(sub);
      return;
    }
    if (c.subs.has(topic)) return; // the same subscription again: it is already delivering, replay nothing
    if (c.subs.size >= this.maxSubscriptions) {
      c.peer.send(errorFrame('invalid_argument', 'too many subscriptions', `at most ${this.maxSubscriptions} per connection; unsubscribe first`, m.target));
      return;
    }
    const t = m.target;
    let newest: number;
    if (t.kind === 'job') {
      if (t.job !== '*' && !this.src.jobs.exists(t.job)) { c.peer.send(errorFrame('not_found', 'job not found', t.job, t)); return; }
      this.publishJobs();
      newest = this.jobCursor;
    } else if (t.kind === 'lifecycle') {
      this.publishLifecycle();
      newest = this.lifecycleCursor;
    } else {
      const slice = this.src.runs.read(t.run, 0, 0);
      if (!slice) { c.peer.send(errorFrame('not_found', 'run not found', `${t.run}: runs are kept in memory only, while they run and briefly after`, t)); return; }
      newest = slice.last;
    }
    const sub: Sub = { topic, target: t, client: c, last: m.after, live: false };
    if (m.after > newest) {
      c.peer.send(errorFrame('out_of_range', `after ${m.after} is beyond the newest seq ${newest}`, `continuing after seq ${newest}`, t));
      sub.last = newest;
    }
    c.subs.set(topic, sub);
    this.catchUp(sub);
  }

  /** The socket drained: lagging subscriptions catch up (until it is full again). */
  drain(c: Client): void {
    if (c.closed) return;
    for (const sub of [...c.subs.values()]) {
      if (c.subs.get(sub.topic) !== sub) continue; // ended meanwhile
      if (!sub.live && !this.catchUp(sub)) return;
    }
  }

  // ---- live publishing -------------------------------------------------------------------------

  /**
   * Something was committed (job or lifecycle events): publish it at the end of the current task.
   * Everything committed meanwhile goes out together, one corked write per socket.
   */
  wake(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  /** A run event was recorded (synchronously, as the run watch numbers it): published with the next flush. */
  runRecorded(runId: string, rec: RunRecord): void {
    this.runQueue.push({ runId, rec });
    this.wake();
  }

  /** Publishes everything not published yet. */
  flush(): void {
    this.scheduled = false;
    this.publishJobs();
    this.publishLifecycle();
    const runs = this.runQueue.splice(0);
    for (const { runId, rec } of runs) {
      if (this.live.has(`run:${runId}`)) this.queue([`run:${runId}`], rec.seq, Buffer.from(runFrame(runId, rec)), rec.event.type === 'exit' || rec.event.type === 'error');
    }
    this.sendOutbox();
  }

  /** Publishes every committed job event above the cursor, each serialised once. */
  private publishJobs(): void {
    if (this.deferIfInTransaction()) return;
    if (this.liveJobSubs === 0) { this.jobCursor = Math.max(this.jobCursor, this.src.jobs.newest()); return; }
    for (;;) {
      const rows = this.src.jobs.read(undefined, this.jobCursor, Number.MAX_SAFE_INTEGER, this.batch);
      for (const r of rows) {
        this.jobCursor = r.seq;
        const topic = `job:${r.job_id}`;
        if (this.live.has(topic) || this.live.has('job:*')) this.queue([topic, 'job:*'], r.seq, Buffer.from(jobFrame(r)), false);
      }
      if (rows.length < this.batch) break;
    }
    this.sendOutbox();
  }

  /** Publishes every committed lifecycle event above the cursor. */
  private publishLifecycle(): void {
    if (this.deferIfInTransaction()) return;
    if (this.liveLifecycleSubs === 0) { this.lifecycleCursor = Math.max(this.lifecycleCursor, this.src.lifecycle.bounds().newest); return; }
    for (;;) {
      const rows = this.src.lifecycle.read(this.lifecycleCursor, Number.MAX_SAFE_INTEGER, this.batch);
      for (const r of rows) {
        this.lifecycleCursor = r.seq;
        this.queue(['lifecycle'], r.seq, Buffer.from(lifecycleFrame(r)), false);
      }
      if (rows.length < this.batch) break;
    }
    this.sendOutbox();
  }

  private deferIfInTransaction(): boolean {
    if (!this.src.jobs.inTransaction()) return false;
    // Rows of an open transaction may still roll back (and their seq be reused): publish after it.
    if (!this.deferred) {
      this.deferred = true;
      setImmediate(() => { this.deferred = false; this.wake(); });
    }
    return true;
  }

  private queue(topics: readonly string[], seq: number, frame: Uint8Array, terminal: boolean): void {
    this.pending.push({ topics, seq, frame, terminal });
  }

  /**
   * Sends the pending frames: every socket with a live subscription to one of their topics gets
   * its frames in one corked batch, in order. A subscription that lags takes nothing more.
   */
  private sendOutbox(): void {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    const topics = new Set<string>();
    for (const p of batch) for (const t of p.topics) topics.add(t);
    const clients = new Set<Client>();
    for (const t of topics) for (const sub of this.live.get(t) ?? []) clients.add(sub.client);
    for (const c of clients) {
      if (c.closed) continue;
      c.peer.cork(() => {
        for (const p of batch) {
          for (const t of p.topics) {
            const sub = c.subs.get(t);
            if (sub?.live && this.offer(sub, p.seq, p.frame) && p.terminal) this.end(sub);
          }
        }
      });
    }
  }

  /** Sends a live frame, or makes the subscription lag when the socket is full. True when sent. */
  private offer(sub: Sub, seq: number, frame: Uint8Array): boolean {
    if (seq <= sub.last) return false;
    if (!this.send(sub, seq, frame)) {
      this.leaveLive(sub);
      this.lags++;
      return false;
    }
    return true;
  }

  /** Sends one frame unless the socket is at its bound; advances the subscription's position. */
  private send(sub: Sub, seq: number, frame: string | Uint8Array): boolean {
    const peer = sub.client.peer;
    if (peer.getBufferedAmount() >= this.maxBuffered || peer.send(frame) === DROPPED) return false;
    this.peakBuffered = Math.max(this.peakBuffered, peer.getBufferedAmount());
    sub.last = seq;
    return true;
  }

  // ---- catch-up ----------------------------------------------------------------------------------

  /** Brings a subscription up to its stream's cursor and makes it live. False when the socket filled up first. */
  private catchUp(sub: Sub): boolean {
    const t = sub.target;
    switch (t.kind) {
      case 'job': {
        this.publishJobs();
        const upTo = this.jobCursor;
        const job = t.job === '*' ? undefined : t.job;
        for (;;) {
          const rows = this.src.jobs.read(job, sub.last, upTo, this.batch);
          for (const r of rows) if (!this.send(sub, r.seq, jobFrame(r))) return false;
          if (rows.length < this.batch) break;
        }
        sub.last = Math.max(sub.last, upTo);
        this.joinLive(sub);
        return true;
      }
      case 'lifecycle': {
        this.publishLifecycle();
        const upTo = this.lifecycleCursor;
        const { oldest } = this.src.lifecycle.bounds();
        if (oldest !== undefined && sub.last < oldest - 1) this.skipTo(sub, oldest, 'lifecycle events are kept for a bounded number only');
        for (;;) {
          const rows = this.src.lifecycle.read(sub.last, upTo, this.batch);
          for (const r of rows) if (!this.send(sub, r.seq, lifecycleFrame(r))) return false;
          if (rows.length < this.batch) break;
        }
        sub.last = Math.max(sub.last, upTo);
        this.joinLive(sub);
        return true;
      }
      case 'run':
        return this.catchUpRun(sub, t.run);
    }
  }

  private catchUpRun(sub: Sub, runId: string): boolean {
    for (;;) {
      const slice = this.src.runs.read(runId, sub.last, this.batch);
      if (!slice) {
        sub.client.peer.send(errorFrame('not_found', 'run not found', `${runId}: the run is no longer kept`, sub.target));
        this.end(sub);
        return true;
      }
      if (slice.first > sub.last + 1) this.skipTo(sub, slice.first, 'a run keeps only the tail of its output');
      for (const rec of slice.events) {
        if (!this.send(sub, rec.seq, runFrame(runId, rec))) return false;
        if (rec.event.type === 'exit' || rec.event.type === 'error') { this.end(sub); return true; }
      }
      if (sub.last >= slice.last) { this.joinLive(sub); return true; }
    }
  }

  /** The events between the subscription's position and `first` are no longer kept: say so, go on from `first`. */
  private skipTo(sub: Sub, first: number, why: string): void {
    sub.client.peer.send(errorFrame('out_of_range', `events ${sub.last + 1} to ${first - 1} are no longer kept`, `${why}; continuing from seq ${first}`, sub.target));
    sub.last = first - 1;
  }

  // ---- bookkeeping -------------------------------------------------------------------------------

  private joinLive(sub: Sub): void {
    if (sub.live || sub.client.closed || sub.client.subs.get(sub.topic) !== sub) return;
    sub.live = true;
    let set = this.live.get(sub.topic);
    if (!set) { set = new Set(); this.live.set(sub.topic, set); }
    set.add(sub);
    this.count(sub, 1);
  }

  private leaveLive(sub: Sub): void {
    if (!sub.live) return;
    sub.live = false;
    const set = this.live.get(sub.topic);
    set?.delete(sub);
    if (set?.size === 0) this.live.delete(sub.topic);
    this.count(sub, -1);
  }

  private count(sub: Sub, d: number): void {
    if (sub.target.kind === 'job') this.liveJobSubs += d;
    else if (sub.target.kind === 'lifecycle') this.liveLifecycleSubs += d;
  }

  /** Ends a subscription (unsubscribed, or a run that finished). */
  private end(sub: Sub): void {
    this.leaveLive(sub);
    if (sub.client.subs.get(sub.topic) === sub) sub.client.subs.delete(sub.topic);
  }
}
