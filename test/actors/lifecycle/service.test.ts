/**
 * The lifecycle writer on a real SQLite store: events exist exactly when the transaction that
 * appended them committed, readers are woken after the commit (once per commit), and the table
 * keeps the newest events with a sequence that never goes back, across trims and reopening.
 */
import { join } from 'node:path';
import t from 'tap';
import { openDatabase } from '../../../src/mailbox/db.js';
import { Store } from '../../../src/mailbox/store.js';
import { LifecycleStore } from '../../../src/mailbox/lifecycle.js';
import { LifecycleLog, DEFAULT_KEEP } from '../../../src/actors/lifecycle/service.js';
import { ManualClock } from '../../../src/clock.js';

const microtasks = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('lifecycle events exist exactly when their transaction committed, and readers are woken after the commit', async (t) => {
  const db = openDatabase(join(t.testdir(), 'state.db'));
  t.teardown(() => db.close());
  const store = new Store(db);
  const log = new LifecycleLog(new LifecycleStore(db), new ManualClock(Date.parse('2026-01-02T03:04:05Z')));
  t.equal(log.keep, DEFAULT_KEEP);
  let wakes = 0;
  let seenInWake = -1;
  log.onAppended(() => { wakes++; seenInWake = log.read(0, 1e9, 100).length; });
  store.tx(() => {
    log.append({ event: 'state.created', id: 's1', parent_state_id: null, image_id: 'img', size_bytes: 10 });
    log.append({ event: 'instance.created', id: 'i1', state_id: 's1', image_id: 'img', job_id: 'j1' });
    log.committed(); // inside the transaction: too early, nothing is woken
    t.equal(wakes, 0);
  });
  log.committed();
  log.committed();
  t.equal(wakes, 1, 'one wake-up per commit, after it');
  t.equal(seenInWake, 2, 'readers see the committed events when woken');
  await microtasks();
  t.equal(wakes, 1, 'the fallback wake-up does not repeat it');
  t.throws(() => store.tx(() => {
    log.append({ event: 'state.deleted', id: 's1' });
    throw new Error('rollback');
  }));
  await microtasks();
  t.same(log.read(0, 1e9, 100).map((r) => JSON.parse(r.data_json) as unknown), [
    { event: 'state.created', id: 's1', parent_state_id: null, image_id: 'img', size_bytes: 10 },
    { event: 'instance.created', id: 'i1', state_id: 's1', image_id: 'img', job_id: 'j1' },
  ], 'a rolled-back event does not exist');
  t.equal(log.read(0, 1e9, 1)[0]?.ts, '2026-01-02T03:04:05Z', 'stamped with the injected clock');
  store.tx(() => log.append({ event: 'job.terminal', id: 'j1', status: 'succeeded' }));
  await microtasks();
  t.equal(wakes, 3, 'a writer that never calls committed() still wakes readers (a rollback may too: they find nothing new)');
  t.same(log.read(0, 1e9, 100).map((r) => r.seq), [1, 2, 3], 'the seq of a rolled-back event was never seen by anyone, so it is reused');
});

t.test('the lifecycle table keeps the newest events and its seq never goes back, across reopening', async (t) => {
  const path = join(t.testdir(), 'state.db');
  let db = openDatabase(path);
  let log = new LifecycleLog(new LifecycleStore(db), new ManualClock(0), 3);
  t.same(log.bounds(), { oldest: undefined, newest: 0 });
  for (let i = 0; i < 5; i++) log.append({ event: 'state.evicted', id: `s${i}` });
  t.same(log.read(0, 1e9, 100).map((r) => r.seq), [3, 4, 5]);
  t.same(log.read(3, 4, 100).map((r) => r.seq), [4], 'a range (after, upTo]');
  db.close();
  db = openDatabase(path);
  t.teardown(() => db.close());
  log = new LifecycleLog(new LifecycleStore(db), new ManualClock(0), 3);
  db.exec('DELETE FROM lifecycle_events');
  t.same(log.bounds(), { oldest: undefined, newest: 5 }, 'newest counts trimmed events');
  log.append({ event: 'run.finished', id: 'r', run_id: 'r', exit_code: 0 });
  t.same(log.read(0, 1e9, 100).map((r) => r.seq), [6], 'a seq is never reused');
});
