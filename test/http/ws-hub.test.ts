/**
 * The WebSocket fan-out on its own: real SQLite (store, lifecycle repository and writer), a real run
 * watch, and sockets reduced to the two calls the hub makes (`send`, `getBufferedAmount`), so that a
 * test decides exactly when a socket is full. Proves catch-up joining the live stream without a gap
 * or a duplicate while events are committed meanwhile, lagging and resuming on backpressure,
 * serialise-once publishing, the subscription limits, and `out_of_range` past what is kept.
 */
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { openDatabase } from '../../src/mailbox/db.js';
import { Store } from '../../src/mailbox/store.js';
import { LifecycleStore } from '../../src/mailbox/lifecycle.js';
import { LifecycleLog } from '../../src/actors/lifecycle/service.js';
import { RunWatch } from '../../src/actors/run/watch.js';
import { systemClock } from '../../src/clock.js';
import { asJobId } from '../../src/ids.js';
import { WsHub, type Peer } from '../../src/http/ws-hub.js';
import { parseClientMessage, type ClientMessage } from '../../src/http/ws-protocol.js';

interface Frame { seq: number; ts: string; type: string; actorId?: string; runId?: string; data: Record<string, unknown> }

/** A socket whose fullness the test controls: `room` frames fit before it reports itself full. */
class TestPeer implements Peer {
  frames: Frame[] = [];
  raw: (string | Uint8Array)[] = [];
  room = Infinity;
  corks: number[] = [];
  cork(fn: () => void): void { const before = this.raw.length; fn(); this.corks.push(this.raw.length - before); }
  send(frame: string | Uint8Array): number {
    this.raw.push(frame);
    this.frames.push(JSON.parse(typeof frame === 'string' ? frame : Buffer.from(frame).toString('utf8')) as Frame);
    this.room--;
    return 1;
  }
  getBufferedAmount(): number { return this.room <= 0 ? 1 << 30 : 0; }
  seqs(type = 'job.event'): number[] { return this.frames.filter((f) => f.type === type).map((f) => f.seq); }
  errors(): Frame['data'][] { return this.frames.filter((f) => f.type === 'ws.error').map((f) => f.data); }
}

function fixture(t: Test, keep = 10_000) {
  const db = openDatabase(join(t.testdir(), 'state.db'));
  t.teardown(() => db.close());
  const store = new Store(db);
  const lifecycle = new LifecycleLog(new LifecycleStore(db), systemClock, keep);
  const runs = new RunWatch({ maxEvents: 5, keepFinished: 1 });
  const hub = new WsHub({
    jobs: {
      read: (job, after, upTo, limit) => store.eventsInRange(job, after, upTo, limit),
      newest: () => store.maxEventSeq(),
      exists: (job) => store.getJob(job) !== undefined,
      inTransaction: () => store.inTransaction(),
    },
    lifecycle,
    runs,
  }, { maxSubscriptions: 4, batch: 3 });
  // Published at once here (the engine wakes the hub, which publishes in a microtask; see the batching test).
  lifecycle.onAppended(() => hub.flush());
  runs.onEvent((id, rec) => { hub.runRecorded(id, rec); hub.flush(); });
  let jobs = 0;
  const newJob = (): string => {
    const id = (++jobs).toString(16).padStart(32, '0');
    store.insertJob({ job_id: asJobId(id), prepare_kind: 'psql', image_id: 'img', resolved_image_id: null, plan_only: true, prepare_args_normalized: '', request: {}, created_at: 'now' });
    return id;
  };
  /** Commits `n` events of a job (one transaction each) and publishes them, as a commit does. */
  const commit = (job: string, n: number): void => {
    for (let i = 0; i < n; i++) {
      store.tx(() => store.appendEvent(job, { type: 'log', ts: new Date().toISOString(), message: `m${i}` }));
      hub.flush();
    }
  };
  const all = (job?: string): number[] => store.eventsInRange(job, 0, Number.MAX_SAFE_INTEGER, 1e6).map((r) => r.seq);
  const msg = (o: unknown): ClientMessage => {
    const m = parseClientMessage(JSON.stringify(o));
    if (typeof m === 'string') throw new Error(m);
    return m;
  };
  return { store, lifecycle, runs, hub, newJob, commit, all, msg };
}

t.test('a catching-up subscription joins the live stream without a gap or a duplicate while events are committed', async (t) => {
  const f = fixture(t);
  const a = f.newJob();
  const b = f.newJob();
  f.commit(a, 10);
  const watcher = new TestPeer();
  const live = new TestPeer();
  const wc = f.hub.connect(watcher);
  f.hub.handle(f.hub.connect(live), f.msg({ op: 'subscribe', job: '*' }));
  watcher.room = 4; // the socket fills up after 4 frames: catch-up stops there
  f.hub.handle(wc, f.msg({ op: 'subscribe', job: '*', after: 2 }));
  t.same(watcher.seqs(), f.all().slice(2, 6), 'catch-up sent what fitted, from after `after`');
  f.commit(b, 5); // committed while the watcher is still catching up
  f.commit(a, 2);
  t.same(watcher.seqs().length, 4, 'nothing is pushed to a full socket');
  watcher.room = 5;
  f.hub.drain(wc); // drains, fills again
  watcher.room = Infinity;
  f.hub.drain(wc);
  f.commit(b, 3); // live again
  t.same(watcher.seqs(), f.all().slice(2), 'every event after `after` exactly once, in order');
  t.same(live.seqs(), f.all(), 'the live subscriber got every event once');
  t.match(f.hub.stats(), { clients: 2, subscriptions: 2, lagging: 0, lags: 0 });
});

t.test('a live subscription that meets a full socket lags and resumes from its last seq when it drains', async (t) => {
  const f = fixture(t);
  const a = f.newJob();
  const p = new TestPeer();
  const c = f.hub.connect(p);
  f.hub.handle(c, f.msg({ op: 'subscribe', job: a }));
  f.commit(a, 3);
  p.room = 0;
  f.commit(a, 4); // the first of these meets the full socket
  t.equal(f.hub.stats().lagging, 1, 'the subscription left the live stream');
  t.equal(f.hub.stats().lags, 1);
  t.equal(p.seqs().length, 3);
  p.room = Infinity;
  f.hub.drain(c);
  f.commit(a, 2);
  t.same(p.seqs(), f.all(a), 'resumed after its last seq: nothing lost, nothing twice');
  t.equal(f.hub.stats().lagging, 0);
});

t.test('a published frame is serialised once and the same bytes go to every subscriber', async (t) => {
  const f = fixture(t);
  const a = f.newJob();
  const peers = [new TestPeer(), new TestPeer(), new TestPeer()];
  for (const p of peers) f.hub.handle(f.hub.connect(p), f.msg({ op: 'subscribe', job: '*' }));
  f.hub.handle(f.hub.connect(peers[0] as TestPeer), f.msg({ op: 'subscribe', job: a }));
  f.commit(a, 1);
  const sent = peers.map((p) => p.raw[p.raw.length - 1]);
  t.ok(sent[0] instanceof Uint8Array, 'an encoded buffer');
  t.ok(sent.every((s) => s === sent[0]), 'one object for all subscribers');
  t.same(peers[0]?.frames[0], { seq: f.all()[0], ts: peers[0]?.frames[0]?.ts, type: 'job.event', actorId: `prepare:${a}`, data: { type: 'log', ts: peers[0]?.frames[0]?.ts, message: 'm0' } },
    'frame ts is the event\'s own time; data is the stored event');
});

t.test('a repeated identical subscription replays nothing; unsubscribe stops delivery', async (t) => {
  const f = fixture(t);
  const a = f.newJob();
  f.commit(a, 3);
  const p = new TestPeer();
  const c = f.hub.connect(p);
  f.hub.handle(c, f.msg({ op: 'subscribe', job: a }));
  f.hub.handle(c, f.msg({ op: 'subscribe', job: a }));
  f.hub.handle(c, f.msg({ op: 'subscribe', job: a, after: 0 }));
  t.same(p.seqs(), f.all(a), 'each event once');
  f.hub.handle(c, f.msg({ op: 'unsubscribe', job: a }));
  f.hub.handle(c, f.msg({ op: 'unsubscribe', job: a }));
  f.commit(a, 2);
  t.equal(p.seqs().length, 3, 'nothing after unsubscribe');
  t.equal(f.hub.stats().subscriptions, 0);
});

t.test('subscriptions past the per-socket limit are refused with invalid_argument; unknown jobs and runs with not_found', async (t) => {
  const f = fixture(t);
  const p = new TestPeer();
  const c = f.hub.connect(p);
  const jobs = [f.newJob(), f.newJob(), f.newJob()];
  for (const j of jobs) f.hub.handle(c, f.msg({ op: 'subscribe', job: j }));
  f.hub.handle(c, f.msg({ op: 'subscribe', topic: 'lifecycle' }));
  f.hub.handle(c, f.msg({ op: 'subscribe', job: '*' }));
  t.same(p.errors().map((e) => [e['code'], e['message']]), [['invalid_argument', 'too many subscriptions']]);
  t.equal(p.errors()[0]?.['job'], '*', 'the error names the subscription it refuses');
  t.equal(f.hub.stats().subscriptions, 4);
  const q = new TestPeer();
  const d = f.hub.connect(q);
  f.hub.handle(d, f.msg({ op: 'subscribe', job: 'f'.repeat(32) }));
  f.hub.handle(d, f.msg({ op: 'subscribe', run: 'r0' }));
  t.same(q.errors().map((e) => [e['code'], e['message']]), [['not_found', 'job not found'], ['not_found', 'run not found']]);
  t.equal(f.hub.stats().subscriptions, 4, 'refused subscriptions take no slot');
});

t.test('client messages are parsed strictly', async (t) => {
  const bad = (x: string): string | ClientMessage => parseClientMessage(x);
  t.equal(bad('{'), 'not JSON');
  t.match(bad('{"op":"subscribe"}'), /exactly one of job, topic or run/);
  t.match(bad('{"op":"subscribe","job":"a","run":"b"}'), /exactly one/);
  t.match(bad('{"op":"subscribe","topic":"jobs"}'), /^topic: the only topic is "lifecycle"/);
  t.match(bad('{"op":"watch","job":"a"}'), /^op:/);
  t.match(bad('{"op":"subscribe","job":"a","after":-1}'), /^after:/);
  t.same(bad('{"op":"subscribe","run":"r"}'), { op: 'subscribe', target: { kind: 'run', run: 'r' }, after: 0 });
  t.same(bad('{"op":"unsubscribe","topic":"lifecycle"}'), { op: 'unsubscribe', target: { kind: 'lifecycle' } });
});

t.test('lifecycle events resume by seq; a position past the kept window gets out_of_range, then the kept events', async (t) => {
  const f = fixture(t, 5);
  const append = (n: number): void => {
    for (let i = 0; i < n; i++) {
      f.store.tx(() => f.lifecycle.append({ event: 'state.deleted', id: `s${i}` }));
      f.lifecycle.committed();
    }
  };
  append(3);
  const p = new TestPeer();
  const c = f.hub.connect(p);
  f.hub.handle(c, f.msg({ op: 'subscribe', topic: 'lifecycle', after: 1 }));
  t.same(p.seqs('lifecycle'), [2, 3], 'exactly the tail after `after`');
  append(2);
  t.same(p.seqs('lifecycle'), [2, 3, 4, 5], 'then live');
  t.same(p.frames[0]?.data, { event: 'state.deleted', id: 's1' });
  append(4); // seq 6..9; only 5..9 are kept
  const late = new TestPeer();
  f.hub.handle(f.hub.connect(late), f.msg({ op: 'subscribe', topic: 'lifecycle', after: 2 }));
  t.same(late.errors().map((e) => [e['code'], e['message'], e['topic']]), [['out_of_range', 'events 3 to 4 are no longer kept', 'lifecycle']]);
  t.same(late.seqs('lifecycle'), [5, 6, 7, 8, 9]);
  const future = new TestPeer();
  f.hub.handle(f.hub.connect(future), f.msg({ op: 'subscribe', topic: 'lifecycle', after: 50 }));
  t.same(future.errors().map((e) => e['code']), ['out_of_range'], 'an `after` beyond the newest seq is reported');
  append(1);
  t.same(future.seqs('lifecycle'), [10], 'and the stream continues after the newest');
});

t.test('events of an open transaction are published only after it commits', async (t) => {
  const f = fixture(t);
  const a = f.newJob();
  const p = new TestPeer();
  f.hub.handle(f.hub.connect(p), f.msg({ op: 'subscribe', job: a }));
  await new Promise<void>((resolve) => {
    f.store.tx(() => {
      f.store.appendEvent(a, { type: 'log', ts: 'x', message: 'in tx' });
      f.hub.flush();
      t.equal(p.frames.length, 0, 'not while the transaction is open');
    });
    setImmediate(() => setImmediate(resolve));
  });
  t.same(p.seqs(), f.all(a), 'published after the commit');
});

t.test('a run subscription catches up from the kept tail, goes live, and ends after the terminal event', async (t) => {
  const f = fixture(t);
  f.runs.open({ run_id: 'r1', instance_id: 'i', kind: 'psql', started_at: 'now' });
  f.runs.record('r1', { type: 'start', ts: 't0', instance_id: 'i' });
  f.runs.record('r1', { type: 'stdout', ts: 't1', data: 'a' });
  const p = new TestPeer();
  const c = f.hub.connect(p);
  f.hub.handle(c, f.msg({ op: 'subscribe', run: 'r1' }));
  f.runs.record('r1', { type: 'stdout', ts: 't2', data: 'b' });
  p.room = 0; // full: the next event makes it lag
  for (let i = 0; i < 6; i++) f.runs.record('r1', { type: 'stdout', ts: `u${i}`, data: String(i) }); // seq 4..9; 5 are kept
  p.room = Infinity;
  f.hub.drain(c);
  t.same(p.errors().map((e) => [e['code'], e['run']]), [['out_of_range', 'r1']], 'the lagging position left the kept tail');
  t.same(p.seqs('run.event'), [1, 2, 3, 5, 6, 7, 8, 9]);
  f.runs.record('r1', { type: 'exit', ts: 't9', exit_code: 0 });
  t.same(p.frames[p.frames.length - 1], { seq: 10, ts: 't9', type: 'run.event', runId: 'r1', data: { type: 'exit', ts: 't9', exit_code: 0 } });
  t.equal(f.hub.stats().subscriptions, 0, 'the subscription ended with the run');

  const late = new TestPeer();
  f.hub.handle(f.hub.connect(late), f.msg({ op: 'subscribe', run: 'r1', after: 8 }));
  t.same(late.seqs('run.event'), [9, 10], 'a finished run is still kept for late subscribers');
  f.runs.open({ run_id: 'r2', instance_id: 'i', kind: 'psql', started_at: 'now' });
  f.runs.record('r2', { type: 'error', ts: 't', error: { code: 'cancelled', message: 'run cancelled' } });
  const gone = new TestPeer();
  f.hub.handle(f.hub.connect(gone), f.msg({ op: 'subscribe', run: 'r1' }));
  t.same(gone.errors().map((e) => e['code']), ['not_found'], 'only the newest finished runs are kept');
});

t.test('a lagging run subscription whose run is forgotten meanwhile gets not_found and ends', async (t) => {
  const f = fixture(t);
  f.runs.open({ run_id: 'r1', instance_id: 'i', kind: 'psql', started_at: 'now' });
  const p = new TestPeer();
  const c = f.hub.connect(p);
  f.hub.handle(c, f.msg({ op: 'subscribe', run: 'r1' }));
  p.room = 0;
  f.runs.record('r1', { type: 'exit', ts: 't', exit_code: 1 });
  f.runs.open({ run_id: 'r2', instance_id: 'i', kind: 'psql', started_at: 'now' });
  f.runs.record('r2', { type: 'exit', ts: 't', exit_code: 0 }); // r1 is no longer kept
  p.room = Infinity;
  f.hub.drain(c);
  t.same(p.errors().map((e) => [e['code'], e['run']]), [['not_found', 'r1']]);
  t.equal(f.hub.stats().subscriptions, 0);
});

t.test('a disconnected socket is never written to again', async (t) => {
  const f = fixture(t);
  const a = f.newJob();
  const p = new TestPeer();
  const c = f.hub.connect(p);
  f.hub.handle(c, f.msg({ op: 'subscribe', job: '*' }));
  f.hub.disconnect(c);
  f.commit(a, 2);
  f.hub.handle(c, f.msg({ op: 'subscribe', job: a }));
  f.hub.drain(c);
  t.equal(p.frames.length, 0);
  t.same(f.hub.stats(), { clients: 0, subscriptions: 0, lagging: 0, lags: 0, peakBuffered: 0 });
});

t.test('wake-ups in one task are published together: one corked write per socket', async (t) => {
  const f = fixture(t);
  const a = f.newJob();
  const peers = [new TestPeer(), new TestPeer()];
  for (const p of peers) f.hub.handle(f.hub.connect(p), f.msg({ op: 'subscribe', job: '*' }));
  for (let i = 0; i < 3; i++) {
    f.store.tx(() => f.store.appendEvent(a, { type: 'log', ts: 't', message: String(i) }));
    f.hub.wake();
  }
  t.equal(peers[0]?.frames.length, 0, 'nothing before the task ends');
  await Promise.resolve();
  for (const p of peers) {
    t.same(p.seqs(), f.all(a));
    t.same(p.corks, [3], 'three events, one corked batch');
  }
});
