/**
 * The lifecycle events repository on a real SQLite file: append with bounded retention, range
 * reads by sequence, and bounds that remember the newest sequence even when its row is trimmed.
 */
import { join } from 'node:path';
import t from 'tap';
import { openDatabase } from '../../src/mailbox/db.js';
import { LifecycleStore } from '../../src/mailbox/lifecycle.js';

t.test('lifecycle store appends, trims to the newest rows and reads ranges by seq', async (t) => {
  const db = openDatabase(join(t.testdir(), 'state.db'));
  t.teardown(() => db.close());
  const s = new LifecycleStore(db);
  t.same(s.bounds(), { oldest: undefined, newest: 0 });
  const seqs = [1, 2, 3, 4].map((i) => s.append(`ts${i}`, 'state.created', JSON.stringify({ event: 'state.created', id: `s${i}` }), 2));
  t.same(seqs, [1, 2, 3, 4]);
  t.same(s.range(0, 100, 10), [{ seq: 3, ts: 'ts3', data_json: '{"event":"state.created","id":"s3"}' }, { seq: 4, ts: 'ts4', data_json: '{"event":"state.created","id":"s4"}' }]);
  t.same(s.range(3, 100, 10).map((r) => r.seq), [4], 'after is exclusive');
  t.same(s.range(0, 3, 10).map((r) => r.seq), [3], 'upTo is inclusive');
  t.same(s.range(0, 100, 1).map((r) => r.seq), [3], 'limit');
  t.same(s.bounds(), { oldest: 3, newest: 4 });
  t.equal(s.inTransaction(), false);
  db.transaction(() => t.equal(s.inTransaction(), true))();
});
