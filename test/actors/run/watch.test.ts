/**
 * The run watch: numbering of a run's events from 1, the bounded tail (events and characters),
 * finished runs kept for late subscribers, the list of runs in progress, and its listeners.
 */
import t from 'tap';
import { RunWatch, type RunRecord } from '../../../src/actors/run/watch.js';

const info = (id: string) => ({ run_id: id, instance_id: 'i1', kind: 'psql', started_at: '2026-01-01T00:00:00Z' });

t.test('run watch numbers a run\'s events from 1 and announces each as it is recorded', async (t) => {
  const w = new RunWatch();
  const seen: [string, RunRecord][] = [];
  const off = w.onEvent((id, rec) => seen.push([id, rec]));
  w.open(info('r'));
  w.record('r', { type: 'start', ts: 'a', instance_id: 'i1' });
  w.record('r', { type: 'stdout', ts: 'b', data: 'x' });
  w.record('nope', { type: 'stdout', ts: 'b', data: 'x' });
  t.same(seen.map(([id, r]) => [id, r.seq, r.event.type]), [['r', 1, 'start'], ['r', 2, 'stdout']], 'unknown runs are ignored');
  t.same(w.read('r', 0, 10), { first: 1, last: 2, finished: false, events: seen.map(([, r]) => r) });
  t.same(w.read('r', 1, 10)?.events.map((r) => r.seq), [2], 'after a seq');
  t.same(w.read('r', 0, 1)?.events.map((r) => r.seq), [1], 'at most limit');
  t.same(w.read('r', 2, 10)?.events, []);
  off();
  w.record('r', { type: 'stdout', ts: 'c', data: 'y' });
  t.equal(seen.length, 2, 'unsubscribed');
});

t.test('run watch keeps a bounded tail: the newest events within the event and character bounds', async (t) => {
  const w = new RunWatch({ maxEvents: 3, maxChars: 10 });
  w.open(info('r'));
  for (let i = 1; i <= 5; i++) w.record('r', { type: 'stdout', ts: String(i), data: 'ab' });
  t.same(w.read('r', 0, 10)?.events.map((r) => r.seq), [3, 4, 5], 'the newest 3 events');
  t.equal(w.read('r', 0, 10)?.first, 3);
  w.record('r', { type: 'stdout', ts: '6', data: '12345678' });
  t.same(w.read('r', 0, 10)?.events.map((r) => r.seq), [5, 6], 'and at most 10 characters of output');
  w.record('r', { type: 'stderr', ts: '7', data: 'x'.repeat(50) });
  t.same(w.read('r', 0, 10)?.events.map((r) => r.seq), [7], 'one event is always kept, however large');
  for (let i = 0; i < 3000; i++) w.record('r', { type: 'log', ts: 'l', data: '' });
  const s = w.read('r', 0, 10);
  t.same([s?.first, s?.last, s?.events.length], [3005, 3007, 3], 'the window slides over a long run');
});

t.test('run watch lists runs in progress and keeps only the newest finished runs', async (t) => {
  const w = new RunWatch({ keepFinished: 2 });
  for (const id of ['a', 'b', 'c', 'd']) w.open(info(id));
  t.same(w.active().map((r) => r.run_id), ['a', 'b', 'c', 'd']);
  w.record('a', { type: 'exit', ts: 't', exit_code: 0 });
  w.record('a', { type: 'stdout', ts: 't', data: 'late' });
  t.same(w.read('a', 0, 10)?.events.map((r) => r.event.type), ['exit'], 'nothing after the terminal event');
  t.equal(w.read('a', 0, 10)?.finished, true);
  w.record('b', { type: 'error', ts: 't', error: { code: 'cancelled', message: 'run cancelled' } });
  w.record('c', { type: 'exit', ts: 't', exit_code: 3 });
  t.same(w.active().map((r) => r.run_id), ['d']);
  t.equal(w.read('a', 0, 10), undefined, 'the oldest finished run is forgotten');
  t.ok(w.read('b', 0, 10) && w.read('c', 0, 10), 'the newest two are kept');
  t.same(w.info('d'), info('d'));
  w.forget('d');
  t.same(w.active(), []);
});
