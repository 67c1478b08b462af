/**
 * Persistent mailboxes and the store database: enqueue/claim/ack/nack with leases, bounded
 * mailboxes, lease sweeping through an injected clock, the work outbox, effect markers, actor rows,
 * numbered migrations and refusal of a newer schema. Real SQLite files in a test directory.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import { ManualClock } from '../../src/clock.js';
import { openDatabase, migrate, type Db } from '../../src/mailbox/db.js';
import { Mailbox, type Envelope, type MailboxOptions } from '../../src/mailbox/mailbox.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/mailbox/migrations.js';
import { actorId, type ActorId } from '../../src/ids.js';

const A = actorId('test', 'a');
const B = actorId('test', 'b');

interface Fixture { dir: string; path: string; db: Db; clock: ManualClock; mb: Mailbox }

function fixture(t: Test, opts: MailboxOptions = {}): Fixture {
  const dir = t.testdir();
  const path = join(dir, 'state.db');
  const db = openDatabase(path);
  t.teardown(() => { if (db.open) db.close(); });
  const clock = new ManualClock(1_000_000);
  return { dir, path, db, clock, mb: new Mailbox(db, clock, opts) };
}

function claim(t: Test, mb: Mailbox, id: ActorId): Envelope {
  const env = mb.claimNext(id);
  if (!env) throw new Error(`no message for ${id}`);
  t.ok(env, `claimed a message of ${id}`);
  return env;
}

t.test('mailbox delivers messages of an actor oldest first, one lease at a time', async (t) => {
  const { mb } = fixture(t);
  const ids = [mb.enqueue(A, { n: 1 }), mb.enqueue(A, { n: 2 }), mb.enqueue(B, { n: 'b' }), mb.enqueue(A, { n: 3 })];
  t.ok(ids.every((id, i) => i === 0 || id > (ids[i - 1] ?? 0)), 'ids increase');
  t.equal(mb.depth(A), 3);
  t.equal(mb.depth(B), 1);
  t.same(mb.actorsWithMail().sort(), [A, B].sort(), 'actors with mail');

  const e1 = claim(t, mb, A);
  t.same(e1.payload, { n: 1 }, 'oldest first');
  t.equal(e1.attempts, 1, 'first delivery');
  t.equal(e1.actorId, A);
  t.match(e1.leaseToken, /^[0-9a-f]{16}$/, 'a lease token');
  t.equal(mb.claimNext(A), undefined, 'the head is leased: nothing else of A is claimable');
  t.same(claim(t, mb, B).payload, { n: 'b' }, 'other actors are independent');

  mb.ack(e1);
  t.equal(mb.depth(A), 2, 'ack removes the message');
  const e2 = claim(t, mb, A);
  t.same(e2.payload, { n: 2 });
  mb.ack(e2);
  const e3 = claim(t, mb, A);
  t.same(e3.payload, { n: 3 });
  mb.ack(e3);
  t.equal(mb.claimNext(A), undefined, 'empty');
  t.equal(mb.depth(A), 0);
});

t.test('mailbox ack and nack require the current lease token', async (t) => {
  const { mb } = fixture(t);
  mb.enqueue(A, 'x');
  const env = claim(t, mb, A);
  t.throws(() => mb.ack({ ...env, leaseToken: 'ffffffffffffffff' }), { code: 'ENGINE_LEASE_LOST', name: 'LeaseLostError' }, 'wrong token → LeaseLostError');
  t.throws(() => mb.nack({ ...env, leaseToken: 'ffffffffffffffff' }), { code: 'ENGINE_LEASE_LOST' }, 'nack with a wrong token');
  t.equal(mb.depth(A), 1, 'a failed ack removes nothing');
  mb.ack(env);
  t.throws(() => mb.ack(env), { code: 'ENGINE_LEASE_LOST' }, 'a second ack of the same delivery');
});

t.test('mailbox nack returns a message for redelivery, optionally after a delay', async (t) => {
  const { mb, clock } = fixture(t);
  mb.enqueue(A, 'x');
  const first = claim(t, mb, A);
  mb.nack(first);
  const second = claim(t, mb, A);
  t.equal(second.id, first.id, 'same message again');
  t.equal(second.attempts, 2, 'attempts count deliveries');
  t.not(second.leaseToken, first.leaseToken, 'a new lease token');
  t.throws(() => mb.ack(first), { code: 'ENGINE_LEASE_LOST' }, 'the old delivery can no longer ack');

  mb.nack(second, 500);
  t.equal(mb.claimNext(A), undefined, 'delayed: not claimable yet');
  t.equal(mb.headDelay(A), 500, 'head delay reported');
  clock.advance(499);
  t.equal(mb.claimNext(A), undefined, 'still delayed after 499 ms');
  clock.advance(1);
  const third = claim(t, mb, A);
  t.equal(third.attempts, 3);
  t.equal(mb.headDelay(B), undefined, 'no head for an empty mailbox');
});

t.test('mailbox is bounded per actor and refuses with ENGINE_MAILBOX_FULL', async (t) => {
  const { mb } = fixture(t, { maxPerActor: 3 });
  mb.enqueue(A, 1);
  mb.enqueue(A, 2);
  mb.enqueue(A, 3);
  t.throws(() => mb.enqueue(A, 4), { code: 'ENGINE_MAILBOX_FULL', name: 'MailboxFullError' }, 'fourth message refused');
  t.equal(mb.depth(A), 3, 'nothing added');
  t.doesNotThrow(() => mb.enqueue(B, 1), 'other actors have their own bound');
  const env = claim(t, mb, A);
  t.throws(() => mb.enqueue(A, 4), { code: 'ENGINE_MAILBOX_FULL' }, 'a leased message still counts');
  mb.ack(env);
  t.doesNotThrow(() => mb.enqueue(A, 4), 'room again after an ack');
  t.equal(mb.maxPerActor, 3);
});

t.test('mailbox sweep returns expired leases to the queue', async (t) => {
  const { mb, clock } = fixture(t, { leaseMs: 1000 });
  mb.enqueue(A, 'a');
  mb.enqueue(B, 'b');
  const ea = claim(t, mb, A);
  clock.advance(500);
  claim(t, mb, B);
  clock.advance(499);
  t.equal(mb.sweep(), 0, 'nothing expired at 999 ms');
  clock.advance(2);
  t.equal(mb.sweep(), 1, 'A\'s lease expired');
  const again = claim(t, mb, A);
  t.equal(again.id, ea.id, 'A\'s message is claimable again');
  t.equal(again.attempts, 2);
  t.throws(() => mb.ack(ea), { code: 'ENGINE_LEASE_LOST' }, 'the expired delivery lost its lease');
  t.equal(mb.claimNext(B), undefined, 'B is still leased');
  clock.advance(1001);
  t.equal(mb.sweep(), 2, 'both leases expired');
});

t.test('mailbox sweep leaves delayed (nacked) messages alone', async (t) => {
  const { mb, clock } = fixture(t, { leaseMs: 100 });
  mb.enqueue(A, 'a');
  mb.nack(claim(t, mb, A), 10_000);
  clock.advance(5000);
  t.equal(mb.sweep(), 0, 'not a lease');
  t.equal(mb.claimNext(A), undefined, 'still delayed');
});

t.test('mailbox releases every lease at start-up and keeps messages across reopen', async (t) => {
  const f = fixture(t);
  f.mb.enqueue(A, { k: 1 });
  f.mb.enqueue(A, { k: 2 });
  f.mb.enqueue(B, { k: 'b' });
  claim(t, f.mb, A); // "crash" while handling it
  f.db.close();

  const db = openDatabase(f.path);
  t.teardown(() => db.close());
  const mb = new Mailbox(db, f.clock);
  t.equal(mb.claimNext(A), undefined, 'the lease survives the reopen');
  t.equal(mb.releaseAllLeases(), 1, 'one lease released');
  const env = claim(t, mb, A);
  t.same(env.payload, { k: 1 }, 'the unacknowledged message is redelivered first');
  t.equal(env.attempts, 2, 'its delivery count persisted');
});

t.test('mailbox ack inside a rolled-back transaction keeps the message', async (t) => {
  const { mb } = fixture(t);
  mb.enqueue(A, 'x');
  const env = claim(t, mb, A);
  t.throws(() => mb.tx(() => { mb.ack(env); mb.enqueue(B, 'sent'); throw new Error('boom'); }), /boom/);
  t.equal(mb.depth(A), 1, 'message still there');
  t.equal(mb.depth(B), 0, 'the send rolled back too');
  mb.ack(env);
  t.equal(mb.depth(A), 0, 'the lease still holds');
});

t.test('mailbox dead-letters a message', async (t) => {
  const { mb, db } = fixture(t);
  mb.enqueue(A, { bad: true });
  const env = claim(t, mb, A);
  mb.deadLetter(env, 'cannot handle');
  t.equal(mb.depth(A), 0, 'removed from the mailbox');
  const rows = db.prepare('SELECT id, actor_id, payload, error FROM dead_letters').all();
  t.same(rows, [{ id: env.id, actor_id: A, payload: '{"bad":true}', error: 'cannot handle' }]);
});

t.test('mailbox keeps actor rows', async (t) => {
  const { mb } = fixture(t);
  t.equal(mb.getActor(A), undefined);
  mb.putActor({ actorId: A, kind: 'test', status: 'active', state: { n: 1 }, failure: null });
  mb.putActor({ actorId: B, kind: 'test', status: 'active', state: null, failure: null });
  t.same(mb.getActor(A), { actorId: A, kind: 'test', status: 'active', state: { n: 1 }, failure: null });
  mb.putActor({ actorId: B, kind: 'test', status: 'failed', state: null, failure: 'why' });
  t.same(mb.activeActors().map((r) => r.actorId), [A], 'only active actors');
  t.equal(mb.getActor(B)?.failure, 'why', 'failure recorded');
  mb.enqueue(A, 'x');
  mb.forgetActor(A);
  t.equal(mb.getActor(A), undefined, 'row removed');
  t.equal(mb.depth(A), 0, 'its mail removed');
});

t.test('mailbox work outbox records, lists and completes work idempotently', async (t) => {
  const { mb } = fixture(t);
  mb.addWork({ workId: 'w1', actorId: A, spec: { op: 'copy' } });
  mb.addWork({ workId: 'w1', actorId: A, spec: { op: 'other' } });
  mb.addWork({ workId: 'w2', actorId: B, spec: [1, 2] });
  t.ok(mb.hasWork('w1'));
  t.same(mb.pendingWork(), [
    { workId: 'w1', actorId: A, spec: { op: 'copy' } },
    { workId: 'w2', actorId: B, spec: [1, 2] },
  ], 'a second add of the same id is ignored');
  mb.completeWork('w1');
  t.notOk(mb.hasWork('w1'));
  t.equal(mb.pendingWork().length, 1);
});

t.test('mailbox markEffect records an effect once per message', async (t) => {
  const { mb } = fixture(t);
  const id = mb.enqueue(A, 'x');
  t.equal(mb.markEffect(A, id, 'copy'), true, 'first time');
  t.equal(mb.markEffect(A, id, 'copy'), false, 'already applied');
  t.equal(mb.markEffect(A, id, 'other'), true, 'another effect of the same message');
  t.equal(mb.markEffect(B, id, 'copy'), true, 'another actor');
});

t.test('store database runs numbered migrations recorded in user_version', async (t) => {
  const path = join(t.testdir(), 'state.db');
  const versions = MIGRATIONS.map((m) => m.version);
  t.same(versions, versions.map((_, i) => i + 1), 'migrations are numbered 1..n without gaps');
  t.equal(SCHEMA_VERSION, versions[versions.length - 1], 'schema version is the last migration');
  const db = openDatabase(path);
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION, 'user_version recorded');
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal', 'WAL mode');
  t.equal(db.pragma('foreign_keys', { simple: true }), 1, 'foreign keys on');
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name);
  for (const name of ['jobs', 'tasks', 'events', 'states', 'instances', 'names', 'actors', 'mailbox', 'work', 'effects_log']) {
    t.ok(tables.includes(name), `table ${name}`);
  }
  db.prepare('INSERT INTO mailbox (actor_id, payload, enqueued_ms) VALUES (?, ?, ?)').run('test:a', '1', 0);
  t.equal(migrate(db), SCHEMA_VERSION, 'migrating again is a no-op');
  db.close();
  const again = openDatabase(path);
  t.equal((again.prepare('SELECT COUNT(*) AS n FROM mailbox').get() as { n: number }).n, 1, 'reopening keeps data');
  again.close();
});

t.test('store database refuses a schema newer than this engine with ENGINE_SCHEMA_TOO_NEW', async (t) => {
  const path = join(t.testdir(), 'state.db');
  openDatabase(path).close();
  const raw = new Database(path);
  raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  raw.close();
  t.throws(() => openDatabase(path), {
    code: 'ENGINE_SCHEMA_TOO_NEW',
    name: 'SchemaTooNewError',
    message: new RegExp(`version ${SCHEMA_VERSION + 1} is newer than this engine supports \\(${SCHEMA_VERSION}\\)`),
  });
  const check = new Database(path, { readonly: true });
  t.equal(check.pragma('user_version', { simple: true }), SCHEMA_VERSION + 1, 'the database is left untouched');
  check.close();
});

t.test('store database migration failure rolls back and records nothing', async (t) => {
  const path = join(t.testdir(), 'state.db');
  const raw = new Database(path);
  raw.exec('CREATE TABLE jobs (x INTEGER)'); // collides with migration 1
  raw.close();
  t.throws(() => openDatabase(path), /already exists/);
  const check = new Database(path, { readonly: true });
  t.equal(check.pragma('user_version', { simple: true }), 0, 'user_version unchanged');
  t.same(check.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all(), [{ name: 'jobs' }], 'no partial schema');
  check.close();
});
