/**
 * The actor runtime over real SQLite: per-actor ordering, atomic commits of state + domain effects
 * + sends + outbox, the supervisor, work results as `$work` messages, aborting work, timers through
 * the injected clock, and recovery (outbox redispatch, lease release) by a new runtime on the same
 * database.
 */
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ManualClock } from '../../../src/clock.js';
import { openDatabase, type Db } from '../../../src/mailbox/db.js';
import { Mailbox, type MailboxOptions } from '../../../src/mailbox/mailbox.js';
import { ActorSystem, type SystemOptions } from '../../../src/actors/system/system.js';
import type { ActorLogic, SystemMessage, Transition } from '../../../src/actors/system/logic.js';
import { actorId, type ActorId } from '../../../src/ids.js';
import { InvalidArgumentError, errorText } from '../../../src/errors.js';
import { nullLogger } from '../../../src/log.js';

type Work =
  | { kind: 'echo'; value: unknown; delayMs?: number }
  | { kind: 'fail' }
  | { kind: 'wait' };

type Msg =
  | { type: 'add'; n: number }
  | { type: 'send'; to: string; n: number }
  | { type: 'explode'; n: number; to: string }
  | { type: 'throw' }
  | { type: 'work'; id: string; spec: Work }
  | { type: 'abort'; id: string }
  | { type: 'timer'; name: string; ms: number }
  | { type: 'finish' };

interface State {
  total: number;
  /** `n` of every `add`, in processing order. */
  seen: number[];
  work: Record<string, unknown>;
  timers: string[];
  done: boolean;
}

type Effect = { t: 'row'; n: number } | { t: 'explode' } | { t: 'failed'; why: string };

const KIND = 'counter';
const A = actorId(KIND, 'a');
const B = actorId(KIND, 'b');

const initial = (): State => ({ total: 0, seen: [], work: {}, timers: [], done: false });

/** Probes shared between a behaviour and the test. */
interface Probe {
  /** Transitions seen: actor, message type and the state total before it. */
  log: { actor: ActorId; type: string; before: number }[];
  performed: { actor: ActorId; spec: Work }[];
  /** How many more `explode` effects throw. */
  explodeBudget: number;
  /** `onFailure` throws too. */
  failFailure: boolean;
  /** When set, `wait` work returns this at once instead of waiting for an abort. */
  waitResult?: unknown;
}

function behavior(db: Db, probe: Probe): ActorLogic<State, Msg, Work, Effect> {
  db.exec('CREATE TABLE IF NOT EXISTS t_effects (actor TEXT NOT NULL, msg INTEGER NOT NULL, n INTEGER NOT NULL)');
  db.exec('CREATE TABLE IF NOT EXISTS t_failed (actor TEXT NOT NULL, why TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO t_effects (actor, msg, n) VALUES (?, ?, ?)');
  const failed = db.prepare('INSERT INTO t_failed (actor, why) VALUES (?, ?)');
  return {
    kind: KIND,
    restore: (json) => json as State,
    persist: (s) => s,
    isTerminal: (s) => s.done,
    transition(state, msg: Msg | SystemMessage, ctx): Transition<State, Work, Effect> {
      const s: State = structuredClone(state ?? initial());
      probe.log.push({ actor: ctx.actorId, type: msg.type, before: s.total });
      switch (msg.type) {
        case 'add':
          s.total += msg.n;
          s.seen.push(msg.n);
          return { state: s, domain: [{ t: 'row', n: msg.n }] };
        case 'send':
          return { state: s, send: [{ to: msg.to as ActorId, msg: { type: 'add', n: msg.n } }] };
        case 'explode':
          s.total += msg.n;
          return {
            state: s,
            domain: [{ t: 'row', n: msg.n }, { t: 'explode' }],
            send: [{ to: msg.to as ActorId, msg: { type: 'add', n: msg.n } }],
            work: [{ workId: `w-${ctx.messageId}`, spec: { kind: 'echo', value: msg.n } }],
          };
        case 'throw':
          throw new Error('handler exploded');
        case 'work':
          return { state: s, work: [{ workId: msg.id, spec: msg.spec }] };
        case 'abort':
          return { state: s, abort: [msg.id] };
        case 'timer':
          return { state: s, timers: [{ name: msg.name, ms: msg.ms }] };
        case 'finish':
          s.done = true;
          return { state: s };
        case '$timer':
          s.timers.push(msg.name);
          return { state: s };
        case '$work':
          s.work[msg.workId] = msg.ok ? { ok: true, result: msg.result } : { ok: false, code: msg.error.code, message: msg.error.message };
          return { state: s };
      }
    },
    apply(d, ctx) {
      switch (d.t) {
        case 'row': insert.run(ctx.actorId, ctx.messageId, d.n); break;
        case 'explode':
          if (probe.explodeBudget > 0) { probe.explodeBudget--; throw new Error('apply exploded'); }
          break;
        case 'failed': failed.run(ctx.actorId, d.why); break;
      }
    },
    async perform(spec, signal, actor) {
      probe.performed.push({ actor, spec });
      switch (spec.kind) {
        case 'echo':
          if (spec.delayMs) await new Promise((r) => setTimeout(r, spec.delayMs));
          return spec.value;
        case 'fail':
          throw new InvalidArgumentError('bad work input');
        case 'wait':
          if (probe.waitResult !== undefined) return probe.waitResult;
          return new Promise((_, reject) => {
            if (signal.aborted) { reject(signal.reason); return; }
            signal.addEventListener('abort', () => reject(signal.reason), { once: true });
          });
      }
    },
    onFailure(state, error): Transition<State, Work, Effect> {
      if (probe.failFailure) throw new Error('failure handler exploded too');
      return { state: state ?? initial(), domain: [{ t: 'failed', why: errorText(error) }] };
    },
  };
}

interface Fixture {
  path: string;
  db: Db;
  clock: ManualClock;
  mb: Mailbox;
  rt: ActorSystem;
  probe: Probe;
}

function newProbe(): Probe { return { log: [], performed: [], explodeBudget: 0, failFailure: false }; }

/** A runtime over `path` (a fresh test database unless given). Not started. */
function fixture(t: Test, opts: { path?: string; runtime?: SystemOptions; mailbox?: MailboxOptions; clock?: ManualClock } = {}): Fixture {
  const path = opts.path ?? join(t.testdir(), 'state.db');
  const db = openDatabase(path);
  const clock = opts.clock ?? new ManualClock(1_000_000);
  const mb = new Mailbox(db, clock, opts.mailbox);
  const rt = new ActorSystem(mb, clock, nullLogger, opts.runtime);
  const probe = newProbe();
  rt.register(behavior(db, probe));
  t.teardown(async () => { await rt.close(0); if (db.open) db.close(); });
  return { path, db, clock, mb, rt, probe };
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

function stateOf(f: Fixture, id: ActorId): State | undefined {
  return f.mb.getActor(id)?.state as State | undefined;
}
function effects(db: Db, id?: ActorId): { actor: string; msg: number; n: number }[] {
  return (id ? db.prepare('SELECT actor, msg, n FROM t_effects WHERE actor = ? ORDER BY rowid').all(id)
    : db.prepare('SELECT actor, msg, n FROM t_effects ORDER BY rowid').all()) as { actor: string; msg: number; n: number }[];
}
function count(db: Db, sql: string, ...args: unknown[]): number {
  return (db.prepare(sql).get(...args) as { n: number }).n;
}

t.test('runtime processes one message at a time per actor, in order, round-robin across actors', async (t) => {
  const f = fixture(t);
  f.rt.start();
  f.mb.tx(() => {
    for (let i = 1; i <= 50; i++) { f.rt.send(A, { type: 'add', n: i }); f.rt.send(B, { type: 'add', n: 100 + i }); }
  });
  await f.rt.whenIdle();
  const a = stateOf(f, A);
  const b = stateOf(f, B);
  t.same(a?.seen, Array.from({ length: 50 }, (_, i) => i + 1), 'A saw its messages in send order');
  t.same(b?.seen, Array.from({ length: 50 }, (_, i) => 101 + i), 'B saw its messages in send order');
  t.equal(a?.total, 1275);
  // Each transition saw the state committed by the previous one of the same actor.
  for (const [id, first] of [[A, 1], [B, 101]] as const) {
    const befores = f.probe.log.filter((l) => l.actor === id).map((l) => l.before);
    const expected: number[] = [];
    for (let i = 0, sum = 0; i < 50; sum += first + i, i++) expected.push(sum);
    t.same(befores, expected, `${id}: each transition saw the state the previous one committed`);
  }
  const order = f.probe.log.slice(0, 6).map((l) => l.actor);
  t.same(order, [A, B, A, B, A, B], 'actors are served round-robin');
  t.equal(effects(f.db).length, 100, 'one domain effect per message');
  t.equal(f.mb.depth(A) + f.mb.depth(B), 0, 'every message acknowledged');
  t.equal(f.mb.getActor(A)?.status, 'active');
});

t.test('runtime delivers messages an actor sends to another actor', async (t) => {
  const f = fixture(t);
  f.rt.start();
  f.rt.send(A, { type: 'send', to: B, n: 7 });
  await f.rt.whenIdle();
  t.equal(stateOf(f, B)?.total, 7, 'B got the message A sent');
  t.same(effects(f.db, B).map((e) => e.n), [7]);
});

t.test('runtime commits state, domain effects, sends, outbox and the ack in one transaction', async (t) => {
  const f = fixture(t, { runtime: { maxAttempts: 5, retryBaseMs: 100 } });
  f.rt.start();
  f.rt.send(A, { type: 'add', n: 1 });
  await f.rt.whenIdle();
  f.probe.explodeBudget = 1; // the first apply of `explode` throws after its `row` effect ran
  const msgId = f.rt.send(A, { type: 'explode', n: 10, to: B });
  await f.rt.whenIdle();

  t.equal(stateOf(f, A)?.total, 1, 'state not updated');
  t.same(effects(f.db, A).map((e) => e.n), [1], 'the row effect applied before the throw was rolled back');
  t.equal(f.mb.depth(B), 0, 'the send was rolled back');
  t.equal(stateOf(f, B), undefined, 'B never ran');
  t.same(f.mb.pendingWork(), [], 'no outbox row');
  t.equal(f.probe.performed.length, 0, 'no work started');
  t.equal(count(f.db, 'SELECT COUNT(*) AS n FROM mailbox WHERE id = ?', msgId), 1, 'the message was not acknowledged');
  t.equal(count(f.db, 'SELECT attempts AS n FROM mailbox WHERE id = ?', msgId), 1, 'one attempt recorded');

  f.clock.advance(100); // supervisor retry
  await f.rt.whenIdle();
  await until('work result', () => stateOf(f, A)?.work[`w-${msgId}`] !== undefined);
  t.equal(stateOf(f, A)?.total, 11, 'applied once on retry');
  t.same(effects(f.db, A).map((e) => e.n), [1, 10], 'the effect exists exactly once');
  t.equal(stateOf(f, B)?.total, 10, 'the send was delivered exactly once');
  t.same(f.probe.performed.map((p) => p.spec), [{ kind: 'echo', value: 10 }], 'the work ran once');
  t.same(f.mb.pendingWork(), [], 'outbox empty after the result');
  t.equal(count(f.db, 'SELECT COUNT(*) AS n FROM mailbox'), 0, 'mailboxes empty');
});

t.test('runtime supervisor retries with backoff, then fails the actor recording why', async (t) => {
  const f = fixture(t, { runtime: { maxAttempts: 3, retryBaseMs: 100 } });
  f.rt.start();
  f.rt.send(A, { type: 'add', n: 5 });
  const bad = f.rt.send(A, { type: 'throw' });
  f.rt.send(A, { type: 'add', n: 6 });
  await f.rt.whenIdle();
  const attempts = (): number => f.probe.log.filter((l) => l.type === 'throw').length;
  t.equal(attempts(), 1, 'first attempt');
  f.clock.advance(99);
  await f.rt.whenIdle();
  t.equal(attempts(), 1, 'no retry before the backoff');
  f.clock.advance(1);
  await f.rt.whenIdle();
  t.equal(attempts(), 2, 'second attempt after 100 ms');
  f.clock.advance(199);
  await f.rt.whenIdle();
  t.equal(attempts(), 2, 'backoff doubles');
  f.clock.advance(1);
  await f.rt.whenIdle();
  t.equal(attempts(), 3, 'third attempt after 200 ms more');
  t.equal(f.probe.log.filter((l) => l.type === 'add').length, 1, 'later messages wait behind the failing one');

  const row = f.mb.getActor(A);
  t.equal(row?.status, 'failed', 'actor failed');
  t.match(row?.failure, /handler exploded/, 'failure records why');
  t.equal((row?.state as State).total, 5, 'state kept from onFailure');
  t.same(f.db.prepare('SELECT actor, why FROM t_failed').all(), [{ actor: A, why: 'handler exploded' }], 'onFailure domain effects applied');
  t.equal(count(f.db, 'SELECT COUNT(*) AS n FROM mailbox WHERE id = ?', bad), 0, 'the failing message is acknowledged');
  await f.rt.whenIdle();
  t.same(f.db.prepare('SELECT actor_id, error FROM dead_letters').all(), [{ actor_id: A, error: 'actor failed: handler exploded' }], 'later mail to a failed actor is dead-lettered');
  t.equal(f.mb.depth(A), 0);
});

t.test('runtime fails an actor even when its failure handler throws', async (t) => {
  const f = fixture(t, { runtime: { maxAttempts: 1 } });
  f.probe.failFailure = true;
  f.rt.start();
  f.rt.send(A, { type: 'throw' });
  await f.rt.whenIdle();
  const row = f.mb.getActor(A);
  t.equal(row?.status, 'failed');
  t.match(row?.failure, /handler exploded; failure handler exploded too/, 'both errors recorded');
  t.equal(count(f.db, 'SELECT COUNT(*) AS n FROM dead_letters'), 1, 'the message is dead-lettered');
  t.equal(f.mb.depth(A), 0);
});

t.test('runtime dead-letters messages for unknown actor kinds', async (t) => {
  const f = fixture(t);
  f.rt.start();
  f.rt.send(actorId('nobody', 'x'), { type: 'add', n: 1 });
  await f.rt.whenIdle();
  t.same(f.db.prepare('SELECT actor_id, error FROM dead_letters').all(), [{ actor_id: 'nobody:x', error: 'unknown actor kind' }]);
});

t.test('runtime delivers work results as $work messages and removes the outbox row', async (t) => {
  const f = fixture(t);
  f.rt.start();
  f.rt.send(A, { type: 'work', id: 'w1', spec: { kind: 'echo', value: { copied: 3 }, delayMs: 30 } });
  f.rt.send(A, { type: 'work', id: 'w2', spec: { kind: 'fail' } });
  await f.rt.whenIdle();
  t.ok(f.mb.hasWork('w1'), 'outbox row recorded while the work runs');
  t.ok(f.rt.activeWork >= 1, 'w1 still running');
  t.ok(f.rt.hasRunningWork(A));
  await until('both results', () => Object.keys(stateOf(f, A)?.work ?? {}).length === 2);
  t.same(stateOf(f, A)?.work, {
    w1: { ok: true, result: { copied: 3 } },
    w2: { ok: false, code: 'invalid_argument', message: 'bad work input' },
  }, 'results and errors arrive as $work');
  t.same(f.mb.pendingWork(), [], 'outbox empty');
  t.equal(f.probe.performed.length, 2, 'each work ran once');
  t.equal(f.rt.activeWork, 0);
});

t.test('runtime aborts running work on request; the abort arrives as a cancelled $work', async (t) => {
  const f = fixture(t);
  f.rt.start();
  f.rt.send(A, { type: 'work', id: 'long', spec: { kind: 'wait' } });
  await until('work started', () => f.probe.performed.length === 1);
  t.equal(f.rt.activeWork, 1);
  f.rt.send(A, { type: 'abort', id: 'long' });
  await until('abort result', () => stateOf(f, A)?.work['long'] !== undefined);
  t.same(stateOf(f, A)?.work['long'], { ok: false, code: 'cancelled', message: 'task cancelled' });
  t.same(f.mb.pendingWork(), []);
  t.equal(f.rt.activeWork, 0);
});

t.test('runtime timers deliver $timer through the injected clock', async (t) => {
  const f = fixture(t);
  f.rt.start();
  f.rt.send(A, { type: 'timer', name: 'tick', ms: 1000 });
  await f.rt.whenIdle();
  f.clock.advance(999);
  await f.rt.whenIdle();
  t.same(stateOf(f, A)?.timers, [], 'not yet');
  f.clock.advance(1);
  await f.rt.whenIdle();
  t.same(stateOf(f, A)?.timers, ['tick'], 'delivered after 1000 ms of clock time');
});

t.test('runtime marks terminal actors done', async (t) => {
  const f = fixture(t);
  f.rt.start();
  f.rt.send(A, { type: 'finish' });
  await f.rt.whenIdle();
  t.equal(f.mb.getActor(A)?.status, 'done');
  t.same(f.mb.activeActors(), []);
});

t.test('runtime refuses sends to a full mailbox, and a transition sending to one is retried', async (t) => {
  const f = fixture(t, { mailbox: { maxPerActor: 2 }, runtime: { maxAttempts: 5, retryBaseMs: 100 } });
  f.rt.start();
  // Fill B without scheduling it, so it stays full.
  f.mb.enqueue(B, { type: 'add', n: 1 });
  f.mb.enqueue(B, { type: 'add', n: 1 });
  t.throws(() => f.rt.send(B, { type: 'add', n: 1 }), { code: 'ENGINE_MAILBOX_FULL' }, 'send refuses');
  f.rt.send(A, { type: 'send', to: B, n: 9 });
  await f.rt.whenIdle();
  t.equal(f.mb.depth(A), 1, 'A\'s message was not acknowledged');
  t.equal(f.mb.getActor(A), undefined, 'A\'s state was not committed');
  t.equal(f.mb.depth(B), 2, 'nothing added to B');
});

t.test('runtime rejects registration after start and sends after close', async (t) => {
  const f = fixture(t);
  t.equal(f.rt.state, 'created');
  f.rt.start();
  t.equal(f.rt.state, 'running');
  t.throws(() => f.rt.register(behavior(f.db, newProbe())), { code: 'ENGINE_ILLEGAL_STATE' });
  t.throws(() => f.rt.start(), { code: 'ENGINE_ILLEGAL_STATE' });
  await f.rt.close(0);
  t.equal(f.rt.state, 'stopped');
  t.throws(() => f.rt.send(A, { type: 'add', n: 1 }), { code: 'ENGINE_CLOSED' });
});

t.test('runtime on restart redispatches outbox work and redelivers unacknowledged messages', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'state.db');
  const clock = new ManualClock(1_000_000);
  {
    const db = openDatabase(path);
    const mb = new Mailbox(db, clock);
    const rt = new ActorSystem(mb, clock, nullLogger);
    const probe = newProbe();
    rt.register(behavior(db, probe));
    rt.start();
    rt.send(A, { type: 'add', n: 2 });
    rt.send(A, { type: 'work', id: 'job-1', spec: { kind: 'wait' } });
    await until('work started', () => probe.performed.length === 1);
    await rt.close(0); // the work is aborted by shutdown: its result must not be delivered
    t.same(mb.pendingWork(), [{ workId: 'job-1', actorId: A, spec: { kind: 'wait' } }], 'the outbox row survives shutdown');
    t.equal(mb.depth(A), 0, 'no $work result was delivered for aborted work');
    // A message claimed but never acknowledged, as after a crash mid-message.
    mb.enqueue(A, { type: 'add', n: 40 });
    t.ok(mb.claimNext(A), 'message leased');
    db.close();
  }
  const f = fixture(t, { path, clock });
  t.equal(stateOf(f, A)?.total, 2, 'committed state survived');
  f.probe.waitResult = 'redone'; // this time the work completes
  f.rt.start();
  await until('recovery', () => stateOf(f, A)?.work['job-1'] !== undefined && stateOf(f, A)?.total === 42);
  t.same(f.probe.performed, [{ actor: A, spec: { kind: 'wait' } }], 'the outbox work was dispatched again');
  t.same(stateOf(f, A)?.work['job-1'], { ok: true, result: 'redone' }, 'its result reached the actor');
  t.equal(stateOf(f, A)?.total, 42, 'the leased message was redelivered and applied once');
  t.same(effects(f.db, A).map((e) => e.n), [2, 40], 'each domain effect exactly once');
  t.same(f.mb.pendingWork(), [], 'outbox empty at the end');
});

t.test('runtime runs at most maxConcurrentWork work items at once; the rest wait and can be aborted while waiting', async (t) => {
  const f = fixture(t, { runtime: { maxConcurrentWork: 2 } });
  f.rt.start();
  for (const id of ['w1', 'w2', 'w3', 'w4']) f.rt.send(A, { type: 'work', id, spec: { kind: 'wait' } });
  await until('two started', () => f.probe.performed.length === 2);
  await f.rt.whenIdle(); // every message handled: all four items were dispatched
  t.equal(f.probe.performed.length, 2, 'the other two wait for a slot');
  t.equal(f.mb.pendingWork().length, 4, 'waiting work is in the outbox');
  f.rt.send(A, { type: 'abort', id: 'w4' });
  await until('w4 aborted', () => stateOf(f, A)?.work['w4'] !== undefined);
  t.same(stateOf(f, A)?.work['w4'], { ok: false, code: 'cancelled', message: 'task cancelled' }, 'a waiting item aborts without running');
  f.rt.send(A, { type: 'abort', id: 'w1' });
  await until('w3 started in the freed slot', () => f.probe.performed.length === 3);
  t.same(f.probe.performed.map((p) => (p.spec.kind)), ['wait', 'wait', 'wait']);
  t.notOk(f.probe.performed.length > 3, 'w4 never ran');
});
