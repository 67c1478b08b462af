/**
 * The store's repositories — prepare jobs, tasks, events, states, instances, names and bases — on a
 * real SQLite file in a test directory, through the `Store` API only. Raw SQL appears only to seed
 * what the store has no writer for (names, an instance's expiry), never in assertions.
 */
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { openDatabase, type Db } from '../../src/mailbox/db.js';
import { Store, type InstanceRow, type JobEvent, type NewJob, type StateRow, type WireTask } from '../../src/mailbox/store.js';
import { asInstanceId, asJobId, asStateId } from '../../src/ids.js';

interface Fixture { db: Db; store: Store; path: string }

function fixture(t: Test): Fixture {
  const path = join(t.testdir(), 'state.db');
  const db = openDatabase(path);
  t.teardown(() => { if (db.open) db.close(); });
  return { db, store: new Store(db), path };
}

function job(id: string, over: Partial<NewJob> = {}): NewJob {
  return {
    job_id: asJobId(id), prepare_kind: 'psql', image_id: 'postgres:15', resolved_image_id: null, plan_only: false,
    prepare_args_normalized: '-f /s.sql', request: { prepare_kind: 'psql', psql_args: ['-f', '/s.sql'] },
    created_at: '2026-01-01T00:00:00Z', ...over,
  };
}

type NewState = Parameters<Store['insertState']>[0];
function state(id: string, over: Partial<NewState> = {}): NewState {
  return {
    state_id: asStateId(id), parent_state_id: null, image_id: 'postgres:15', prepare_kind: 'psql', prepare_args_normalized: '-f /s.sql',
    created_at: '2026-01-01T00:00:00Z', created_ms: 1_000, size_bytes: null, backend: 'copy', dir: `/store/states/${id}`, ...over,
  };
}

type NewInstance = Parameters<Store['insertInstance']>[0];
function instance(id: string, stateId: string, over: Partial<NewInstance> = {}): NewInstance {
  return {
    instance_id: asInstanceId(id), state_id: asStateId(stateId), image_id: 'postgres:15', created_at: '2026-01-02T00:00:00Z',
    runtime_id: null, runtime_dir: `/store/instances/${id}`, host_port: null, job_id: null, ...over,
  };
}

function task(id: string, extra: Record<string, unknown> = {}): WireTask {
  return { task_id: id, type: 'state_execute', ...extra };
}

const ev = (type: JobEvent['type'], extra: Partial<JobEvent> = {}): JobEvent => ({ type, ts: '2026-01-01T00:00:01Z', ...extra });

/** Seeds a name row: the store serves names but has no writer for them. */
function putName(db: Db, n: { name: string; instance_id?: string | null; state_id?: string | null; state_fingerprint?: string | null; image_id: string; is_primary?: number }): void {
  db.prepare('INSERT INTO names (name, instance_id, state_id, state_fingerprint, image_id, last_used_at, is_primary) VALUES (?, ?, ?, ?, ?, ?, ?)')
    .run(n.name, n.instance_id ?? null, n.state_id ?? null, n.state_fingerprint ?? null, n.image_id, '2026-01-03T00:00:00Z', n.is_primary ?? 1);
}

// ---- jobs -----------------------------------------------------------------------------------------

t.test('store insertJob creates a queued job that getJob reads back field by field', async (t) => {
  const { store } = fixture(t);
  store.insertJob(job('j1', { plan_only: true, resolved_image_id: 'postgres@sha256:abc' }));
  const row = store.getJob('j1');
  t.match(row, {
    job_id: 'j1', status: 'queued', prepare_kind: 'psql', image_id: 'postgres:15', resolved_image_id: 'postgres@sha256:abc',
    plan_only: 1, prepare_args_normalized: '-f /s.sql', signature: null, created_at: '2026-01-01T00:00:00Z',
    started_at: null, finished_at: null, result_json: null, error_json: null,
  });
  t.strictSame(JSON.parse(row?.request_json ?? 'null'), { prepare_kind: 'psql', psql_args: ['-f', '/s.sql'] }, 'the request is kept as JSON');
  t.equal(store.getJob('nope'), undefined, 'an unknown job is undefined');
  t.throws(() => store.insertJob(job('j1')), { code: 'SQLITE_CONSTRAINT_PRIMARYKEY' }, 'a job id is unique');
});

t.test('store updateJob changes only the fields a patch sets', async (t) => {
  const { store } = fixture(t);
  store.insertJob(job('j1'));
  store.updateJob('j1', { status: 'running', started_at: '2026-01-01T00:00:02Z', resolved_image_id: 'img@sha256:1', signature: 'sig' });
  t.match(store.getJob('j1'), { status: 'running', started_at: '2026-01-01T00:00:02Z', resolved_image_id: 'img@sha256:1', signature: 'sig', finished_at: null });
  const result = { dsn: 'postgres://sqlrs@127.0.0.1:5555/postgres', instance_id: 'i1', state_id: 's1', image_id: 'postgres:15', prepare_kind: 'psql', prepare_args_normalized: '-f /s.sql' };
  store.updateJob('j1', { status: 'succeeded', finished_at: '2026-01-01T00:00:09Z', result });
  const done = store.getJob('j1');
  t.match(done, { status: 'succeeded', started_at: '2026-01-01T00:00:02Z', finished_at: '2026-01-01T00:00:09Z', signature: 'sig' }, 'earlier fields stay');
  t.strictSame(JSON.parse(done?.result_json ?? 'null'), result);
  store.updateJob('j1', { error: { code: 'internal_error', message: 'boom', details: 'd' } });
  t.strictSame(JSON.parse(store.getJob('j1')?.error_json ?? 'null'), { code: 'internal_error', message: 'boom', details: 'd' });
  const before = store.getJob('j1');
  store.updateJob('j1', {});
  t.strictSame(store.getJob('j1'), before, 'an empty patch changes nothing');
  t.doesNotThrow(() => store.updateJob('missing', { status: 'failed' }), 'updating an unknown job is a no-op');
  t.equal(store.getJob('missing'), undefined);
});

t.test('store jobsWithStatus returns jobs in either status, oldest first', async (t) => {
  const { store } = fixture(t);
  for (const id of ['a', 'b', 'c', 'd']) store.insertJob(job(id));
  store.updateJob('b', { status: 'running' });
  store.updateJob('c', { status: 'succeeded' });
  t.strictSame(store.jobsWithStatus('queued', 'running').map((j) => j.job_id), ['a', 'b', 'd']);
  t.strictSame(store.jobsWithStatus('succeeded', 'failed').map((j) => j.job_id), ['c']);
});

t.test('store deleteJob removes the job with its tasks and events', async (t) => {
  const { store } = fixture(t);
  store.insertJob(job('j1'));
  store.insertJob(job('j2'));
  store.replaceTasks('j1', [{ task: task('t1'), status: 'queued' }, { task: task('t2'), status: 'queued' }]);
  store.replaceTasks('j2', [{ task: task('u1'), status: 'queued' }]);
  store.appendEvent('j1', ev('status', { status: 'queued' }));
  store.appendEvent('j1', ev('log', { message: 'x' }));
  store.appendEvent('j2', ev('status', { status: 'queued' }));

  t.equal(store.deleteJob('j1'), true, 'deleted');
  t.equal(store.getJob('j1'), undefined);
  t.strictSame(store.listTaskEntries('j1'), [], 'its tasks are gone');
  t.equal(store.eventCount('j1'), 0, 'its events are gone');
  t.strictSame(store.eventsFrom('j1', 0), []);
  t.strictSame(store.eventsAfterSeq(undefined, 0, 100).map((e) => e.job_id), ['j2'], 'only the other job\'s event is left');
  t.strictSame(store.listTaskEntries().map((e) => e['task_id']), ['u1'], 'the other job\'s tasks stay');
  t.equal(store.deleteJob('j1'), false, 'a second delete reports nothing deleted');
});

t.test('store terminalJobsWithSignature lists finished jobs of one signature, newest first', async (t) => {
  const { store } = fixture(t);
  const add = (id: string, status: 'queued' | 'running' | 'succeeded' | 'failed', sig: string, created: string, finished?: string): void => {
    store.insertJob(job(id, { created_at: created }));
    store.updateJob(id, { status, signature: sig, ...(finished ? { finished_at: finished } : {}) });
  };
  add('old', 'succeeded', 'S', '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z');
  add('new', 'failed', 'S', '2026-01-01T00:00:01Z', '2026-01-01T00:05:00Z');
  add('mid', 'succeeded', 'S', '2026-01-01T00:00:02Z', '2026-01-01T00:03:00Z');
  add('no-finish', 'failed', 'S', '2026-01-01T00:02:00Z'); // falls back to created_at
  add('tie-a', 'succeeded', 'S', '2026-01-01T00:00:03Z', '2026-01-01T00:04:00Z');
  add('tie-b', 'succeeded', 'S', '2026-01-01T00:00:04Z', '2026-01-01T00:04:00Z'); // same time, created later
  add('running', 'running', 'S', '2026-01-01T00:00:05Z');
  add('other', 'succeeded', 'T', '2026-01-01T00:00:06Z', '2026-01-01T00:09:00Z');
  t.strictSame(store.terminalJobsWithSignature('S'), ['new', 'tie-b', 'tie-a', 'mid', 'no-finish', 'old']);
  t.strictSame(store.terminalJobsWithSignature('T'), ['other']);
  t.strictSame(store.terminalJobsWithSignature('none'), []);
});

t.test('store listJobEntries serves the wire shape in creation order, filtered by a raw id prefix', async (t) => {
  const { store } = fixture(t);
  store.insertJob(job('abc1', { resolved_image_id: 'postgres:15' }));
  store.insertJob(job('ABD2', { resolved_image_id: 'postgres@sha256:x', plan_only: true, prepare_args_normalized: '' }));
  store.insertJob(job('a_c3'));
  store.insertJob(job('zzz'));
  store.updateJob('abc1', { signature: 'sig', started_at: '2026-01-01T00:00:02Z' });
  const all = store.listJobEntries();
  t.strictSame(all.map((e) => e['job_id']), ['abc1', 'ABD2', 'a_c3', 'zzz'], 'creation order');
  t.strictSame(all[0], {
    job_id: 'abc1', status: 'queued', prepare_kind: 'psql', image_id: 'postgres:15', prepare_args_normalized: '-f /s.sql',
    signature: 'sig', created_at: '2026-01-01T00:00:00Z', started_at: '2026-01-01T00:00:02Z',
  }, 'a resolved id equal to the image id, nulls and a false plan_only are omitted');
  t.strictSame(all[1], {
    job_id: 'ABD2', status: 'queued', prepare_kind: 'psql', image_id: 'postgres:15', resolved_image_id: 'postgres@sha256:x',
    plan_only: true, created_at: '2026-01-01T00:00:00Z',
  }, 'a different resolved id and plan_only are served; empty args are omitted');
  t.strictSame(store.listJobEntries('ab').map((e) => e['job_id']), ['abc1', 'ABD2'], 'the prefix matches case-insensitively');
  t.strictSame(store.listJobEntries('a_').map((e) => e['job_id']), ['a_c3'], '_ is literal, not a wildcard');
  t.strictSame(store.listJobEntries('%').map((e) => e['job_id']), [], '% is literal, not a wildcard');
  t.strictSame(store.listJobEntries('').map((e) => e['job_id']), ['abc1', 'ABD2', 'a_c3', 'zzz'], 'an empty prefix lists everything');
});

t.test('store jobStatus serves the job with its tasks, result and error', async (t) => {
  const { store } = fixture(t);
  t.equal(store.jobStatus('nope'), undefined, 'an unknown job has no status');
  store.insertJob(job('j1'));
  t.strictSame(store.jobStatus('j1'), {
    job_id: 'j1', status: 'queued', prepare_kind: 'psql', image_id: 'postgres:15', prepare_args_normalized: '-f /s.sql',
    created_at: '2026-01-01T00:00:00Z',
  }, 'a fresh job: no tasks, result, error or plan_only fields');
  store.replaceTasks('j1', [{ task: task('plan', { type: 'plan' }), status: 'succeeded' }, { task: task('t1', { input: { kind: 'file' } }), status: 'running' }]);
  const result = { dsn: 'postgres://x', instance_id: 'i1', state_id: 's1', image_id: 'postgres:15', prepare_kind: 'psql', prepare_args_normalized: '-f /s.sql' };
  store.updateJob('j1', { status: 'succeeded', started_at: '2026-01-01T00:00:01Z', finished_at: '2026-01-01T00:00:02Z', result });
  t.strictSame(store.jobStatus('j1'), {
    job_id: 'j1', status: 'succeeded', prepare_kind: 'psql', image_id: 'postgres:15', prepare_args_normalized: '-f /s.sql',
    created_at: '2026-01-01T00:00:00Z', started_at: '2026-01-01T00:00:01Z', finished_at: '2026-01-01T00:00:02Z',
    tasks: [{ task_id: 'plan', type: 'plan' }, { task_id: 't1', type: 'state_execute', input: { kind: 'file' } }],
    result,
  });
  store.insertJob(job('j2', { plan_only: true }));
  store.updateJob('j2', { status: 'failed', error: { code: 'invalid_argument', message: 'bad' } });
  t.match(store.jobStatus('j2'), { plan_only: true, status: 'failed', error: { code: 'invalid_argument', message: 'bad' } });
  t.notOk('result' in (store.jobStatus('j2') ?? {}), 'no result for a failed job');
});

// ---- tasks ----------------------------------------------------------------------------------------

t.test('store replaceTasks replaces the whole plan and listTaskEntries serves it in plan order', async (t) => {
  const { store } = fixture(t);
  store.insertJob(job('j1'));
  store.insertJob(job('j2'));
  store.replaceTasks('j1', [
    { task: task('t1'), status: 'queued', argsSummary: '-f a.sql' },
    { task: task('t2'), status: 'queued' },
    { task: task('t3'), status: 'queued' },
  ]);
  store.replaceTasks('j2', [{ task: task('u1'), status: 'queued' }]);
  t.strictSame(store.listTaskEntries('j1'), [
    { task_id: 't1', type: 'state_execute', job_id: 'j1', status: 'queued', args_summary: '-f a.sql' },
    { task_id: 't2', type: 'state_execute', job_id: 'j1', status: 'queued' },
    { task_id: 't3', type: 'state_execute', job_id: 'j1', status: 'queued' },
  ]);
  store.replaceTasks('j1', [{ task: task('n1', { cached: true }), status: 'succeeded' }]);
  t.strictSame(store.listTaskEntries('j1'), [{ task_id: 'n1', type: 'state_execute', cached: true, job_id: 'j1', status: 'succeeded' }], 'the old plan is gone');
  t.strictSame(store.listTaskEntries().map((e) => `${String(e['job_id'])}/${String(e['task_id'])}`), ['j1/n1', 'j2/u1'], 'all tasks, by job then position');
  t.strictSame(store.listTaskEntries('none'), []);
  store.replaceTasks('j1', []);
  t.strictSame(store.listTaskEntries('j1'), [], 'an empty plan clears the tasks');
});

t.test('store updateTask changes one task by position and can rewrite its wire form', async (t) => {
  const { store } = fixture(t);
  store.insertJob(job('j1'));
  store.replaceTasks('j1', [{ task: task('t1'), status: 'queued' }, { task: task('t2'), status: 'queued' }]);
  store.updateTask('j1', 1, { status: 'running', started_at: '2026-01-01T00:00:01Z' });
  t.strictSame(store.listTaskEntries('j1').map((e) => e['status']), ['queued', 'running'], 'only position 1 changed');
  store.updateTask('j1', 1, { status: 'failed', finished_at: '2026-01-01T00:00:02Z', error: { code: 'internal_error', message: 'psql failed' }, task: task('t2', { output_state_id: 's9' }) });
  t.strictSame(store.listTaskEntries('j1')[1], { task_id: 't2', type: 'state_execute', output_state_id: 's9', job_id: 'j1', status: 'failed' });
  t.strictSame(store.jobStatus('j1')?.['tasks'], [task('t1'), task('t2', { output_state_id: 's9' })], 'the job status serves the rewritten task');
  const before = store.listTaskEntries('j1');
  store.updateTask('j1', 0, {});
  t.strictSame(store.listTaskEntries('j1'), before, 'an empty patch changes nothing');
});

// ---- events ---------------------------------------------------------------------------------------

t.test('store appendEvent numbers events per job from 0 and eventsFrom lists them in order', async (t) => {
  const { store } = fixture(t);
  store.insertJob(job('j1'));
  store.insertJob(job('j2'));
  t.equal(store.appendEvent('j1', ev('status', { status: 'queued' })), 0);
  t.equal(store.appendEvent('j2', ev('status', { status: 'queued' })), 0, 'each job counts on its own');
  t.equal(store.appendEvent('j1', ev('status', { status: 'running' })), 1);
  t.equal(store.appendEvent('j1', ev('task', { task_id: 't1', status: 'running' })), 2);
  t.equal(store.eventCount('j1'), 3);
  t.equal(store.eventCount('j2'), 1);
  t.equal(store.eventCount('none'), 0);
  const lines = store.eventsFrom('j1', 0);
  t.strictSame(lines.map((l) => JSON.parse(l) as JobEvent), [
    ev('status', { status: 'queued' }), ev('status', { status: 'running' }), ev('task', { task_id: 't1', status: 'running' }),
  ], 'stored as JSON lines, in order');
  t.strictSame(store.eventsFrom('j1', 2).map((l) => (JSON.parse(l) as JobEvent).type), ['task'], 'from an index on');
  t.strictSame(store.eventsFrom('j1', 3), [], 'past the end: nothing');
  t.throws(() => store.appendEvent('none', ev('log')), { code: 'SQLITE_CONSTRAINT_FOREIGNKEY' }, 'an event needs its job');
});

t.test('store eventsAfterSeq resumes a global, increasing sequence per job or across jobs', async (t) => {
  const { store } = fixture(t);
  store.insertJob(job('j1'));
  store.insertJob(job('j2'));
  store.appendEvent('j1', ev('status', { status: 'queued' }));
  store.appendEvent('j2', ev('status', { status: 'queued' }));
  store.appendEvent('j1', ev('log', { message: 'a' }));
  store.appendEvent('j2', ev('log', { message: 'b' }));
  store.appendEvent('j1', ev('log', { message: 'c' }));
  const all = store.eventsAfterSeq(undefined, 0, 100);
  t.strictSame(all.map((e) => e.job_id), ['j1', 'j2', 'j1', 'j2', 'j1'], 'every job, in append order');
  t.ok(all.every((e, i) => i === 0 || e.seq > (all[i - 1]?.seq ?? Infinity)), 'seq strictly increases');
  t.strictSame(all.map((e) => (JSON.parse(e.event_json) as JobEvent).message ?? null), [null, null, 'a', 'b', 'c']);
  const second = all[1]?.seq ?? -1;
  t.strictSame(store.eventsAfterSeq(undefined, second, 100).map((e) => e.seq), all.slice(2).map((e) => e.seq), 'exactly the tail after a seq');
  t.strictSame(store.eventsAfterSeq(undefined, 0, 2).map((e) => e.seq), all.slice(0, 2).map((e) => e.seq), 'limit caps the page');
  const j1 = store.eventsAfterSeq('j1', 0, 100);
  t.strictSame(j1.map((e) => e.seq), all.filter((e) => e.job_id === 'j1').map((e) => e.seq), 'one job\'s events only');
  t.strictSame(store.eventsAfterSeq('j1', j1[1]?.seq ?? -1, 100).map((e) => e.seq), [j1[2]?.seq], 'resume within one job');
  t.strictSame(store.eventsAfterSeq(undefined, all[4]?.seq ?? -1, 100), [], 'nothing after the last seq');
});

// ---- states ---------------------------------------------------------------------------------------

t.test('store insertState records a state once; has/get/delete read and remove it', async (t) => {
  const { store } = fixture(t);
  t.equal(store.hasState('s1'), false);
  t.equal(store.insertState(state('s1', { size_bytes: 4096 })), true, 'inserted');
  t.equal(store.insertState(state('s1', { dir: '/elsewhere' })), false, 'a second insert of the same id is ignored');
  t.equal(store.hasState('s1'), true);
  t.strictSame(store.getState('s1'), {
    state_id: asStateId('s1'), parent_state_id: null, image_id: 'postgres:15', prepare_kind: 'psql', prepare_args_normalized: '-f /s.sql',
    created_at: '2026-01-01T00:00:00Z', created_ms: 1_000, size_bytes: 4096, last_used_at: '2026-01-01T00:00:00Z', last_used_ms: 1_000,
    use_count: 0, min_retention_until: null, backend: 'copy', dir: '/store/states/s1',
  } satisfies StateRow, 'a new state was last used when it was created, never counted');
  t.equal(store.deleteState('s1'), true);
  t.equal(store.hasState('s1'), false);
  t.equal(store.getState('s1'), undefined);
  t.equal(store.deleteState('s1'), false, 'deleting again deletes nothing');
});

t.test('store childStates and allStates list states by creation time, then id', async (t) => {
  const { store } = fixture(t);
  store.insertState(state('root', { created_ms: 1 }));
  store.insertState(state('c-late', { parent_state_id: asStateId('root'), created_ms: 30 }));
  store.insertState(state('c-b', { parent_state_id: asStateId('root'), created_ms: 20 }));
  store.insertState(state('c-a', { parent_state_id: asStateId('root'), created_ms: 20 }));
  store.insertState(state('grandchild', { parent_state_id: asStateId('c-a'), created_ms: 40 }));
  t.strictSame(store.childStates('root').map((s) => s.state_id), ['c-a', 'c-b', 'c-late'], 'direct children only');
  t.strictSame(store.childStates('c-a').map((s) => s.state_id), ['grandchild']);
  t.strictSame(store.childStates('grandchild'), []);
  t.strictSame(store.allStates().map((s) => s.state_id), ['root', 'c-a', 'c-b', 'c-late', 'grandchild']);
});

t.test('store touchState records a use and refcount counts the state\'s instances', async (t) => {
  const { store } = fixture(t);
  store.insertState(state('s1'));
  store.touchState('s1', '2026-02-01T00:00:00Z', 5_000);
  store.touchState('s1', '2026-02-02T00:00:00Z', 6_000);
  t.match(store.getState('s1'), { last_used_at: '2026-02-02T00:00:00Z', last_used_ms: 6_000, use_count: 2 });
  t.equal(store.refcount('s1'), 0);
  store.insertInstance(instance('i1', 's1'));
  store.insertInstance(instance('i2', 's1'));
  t.equal(store.refcount('s1'), 2);
  t.equal(store.stateEntry(store.getState('s1') as StateRow)['refcount'], 2, 'the entry carries the refcount');
});

t.test('store listStateEntries serves the wire shape, filtered by id prefix, kind and image', async (t) => {
  const { store } = fixture(t);
  store.insertState(state('aa11', { created_ms: 1, size_bytes: 10 }));
  store.insertState(state('aa22', { created_ms: 2, parent_state_id: asStateId('aa11'), image_id: 'postgres:16' }));
  store.insertState(state('bb33', { created_ms: 3, prepare_kind: 'lb' }));
  store.insertInstance(instance('i1', 'aa22'));
  t.strictSame(store.listStateEntries({})[0], {
    state_id: 'aa11', image_id: 'postgres:15', prepare_kind: 'psql', prepare_args_normalized: '-f /s.sql', created_at: '2026-01-01T00:00:00Z',
    size_bytes: 10, last_used_at: '2026-01-01T00:00:00Z', use_count: 0, refcount: 0,
  }, 'nulls omitted; backend and dir are not served');
  t.match(store.listStateEntries({})[1], { state_id: 'aa22', parent_state_id: 'aa11', refcount: 1 });
  const ids = (f: Parameters<Store['listStateEntries']>[0]): unknown[] => store.listStateEntries(f).map((e) => e['state_id']);
  t.strictSame(ids({}), ['aa11', 'aa22', 'bb33']);
  t.strictSame(ids({ idPrefix: 'aa' }), ['aa11', 'aa22']);
  t.strictSame(ids({ kind: 'lb' }), ['bb33']);
  t.strictSame(ids({ image: 'postgres:16' }), ['aa22']);
  t.strictSame(ids({ idPrefix: 'aa', image: 'postgres:15' }), ['aa11'], 'filters combine');
  t.strictSame(ids({ idPrefix: 'zz' }), []);
});

// ---- instances ------------------------------------------------------------------------------------

t.test('store insertInstance and getInstance keep every field; deleting starts false', async (t) => {
  const { store } = fixture(t);
  store.insertState(state('s1'));
  store.insertInstance(instance('i1', 's1', { runtime_id: 'c1', host_port: 5555, job_id: asJobId('j1') }));
  t.strictSame(store.getInstance('i1'), {
    instance_id: asInstanceId('i1'), state_id: asStateId('s1'), image_id: 'postgres:15', created_at: '2026-01-02T00:00:00Z', expires_at: null,
    runtime_id: 'c1', runtime_dir: '/store/instances/i1', host_port: 5555, job_id: asJobId('j1'), deleting: 0,
  } satisfies InstanceRow);
  t.equal(store.getInstance('nope'), undefined);
  t.throws(() => store.insertInstance(instance('i1', 's1')), { code: 'SQLITE_CONSTRAINT_PRIMARYKEY' }, 'an instance id is unique');
});

t.test('store setInstanceDeleting flags and unflags an instance', async (t) => {
  const { store } = fixture(t);
  store.insertInstance(instance('i1', 's1'));
  store.insertInstance(instance('i2', 's1'));
  store.setInstanceDeleting('i1', true);
  t.equal(store.getInstance('i1')?.deleting, 1);
  t.equal(store.getInstance('i2')?.deleting, 0, 'only that instance');
  store.setInstanceDeleting('i1', false);
  t.equal(store.getInstance('i1')?.deleting, 0);
});

t.test('store setInstanceRuntime sets the container and keeps the port when none is given', async (t) => {
  const { store } = fixture(t);
  store.insertInstance(instance('i1', 's1', { runtime_id: 'old', host_port: 5000 }));
  store.setInstanceRuntime('i1', 'new', null);
  t.match(store.getInstance('i1'), { runtime_id: 'new', host_port: 5000 });
  store.setInstanceRuntime('i1', 'newer', 6000);
  t.match(store.getInstance('i1'), { runtime_id: 'newer', host_port: 6000 });
  store.setInstanceRuntime('i1', null, null);
  t.match(store.getInstance('i1'), { runtime_id: null, host_port: 6000 });
});

t.test('store instancesOfState lists a state\'s instances by creation, and deleteInstance removes one', async (t) => {
  const { store } = fixture(t);
  store.insertInstance(instance('i-b', 's1', { created_at: '2026-01-02T00:00:00Z' }));
  store.insertInstance(instance('i-a', 's1', { created_at: '2026-01-02T00:00:00Z' }));
  store.insertInstance(instance('i-0', 's1', { created_at: '2026-01-01T00:00:00Z' }));
  store.insertInstance(instance('other', 's2'));
  t.strictSame(store.instancesOfState('s1').map((i) => i.instance_id), ['i-0', 'i-a', 'i-b']);
  t.strictSame(store.instancesOfState('none'), []);
  t.strictSame(store.allInstances().map((i) => i.instance_id), ['i-0', 'i-a', 'i-b', 'other']);
  t.equal(store.deleteInstance('i-a'), true);
  t.equal(store.deleteInstance('i-a'), false, 'already gone');
  t.strictSame(store.instancesOfState('s1').map((i) => i.instance_id), ['i-0', 'i-b']);
});

t.test('store listInstanceEntries serves the wire shape with a name-derived status, filtered by prefix, state and image', async (t) => {
  const { db, store } = fixture(t);
  store.insertInstance(instance('ab1', 's1', { runtime_id: 'c1' }));
  store.insertInstance(instance('ab2', 's2', { image_id: 'postgres:16' }));
  store.insertInstance(instance('cd3', 's1'));
  putName(db, { name: 'dev', instance_id: 'ab1', image_id: 'postgres:15', state_id: 's1' });
  putName(db, { name: 'alias', instance_id: 'ab1', image_id: 'postgres:15', state_id: 's1', is_primary: 0 });
  putName(db, { name: 'old', instance_id: 'cd3', image_id: 'postgres:15', state_id: 's1' });
  db.prepare('UPDATE instances SET expires_at = ? WHERE instance_id = ?').run('2020-01-01T00:00:00Z', 'cd3'); // no writer for expiry
  const entries = store.listInstanceEntries({});
  t.strictSame(entries, [
    { instance_id: 'ab1', image_id: 'postgres:15', state_id: 's1', name: 'dev', created_at: '2026-01-02T00:00:00Z', runtime_id: 'c1', status: 'active' },
    { instance_id: 'ab2', image_id: 'postgres:16', state_id: 's2', created_at: '2026-01-02T00:00:00Z', status: 'orphaned' },
    { instance_id: 'cd3', image_id: 'postgres:15', state_id: 's1', name: 'old', created_at: '2026-01-02T00:00:00Z', expires_at: '2020-01-01T00:00:00Z', status: 'expired' },
  ], 'the primary name; no name: orphaned; past expiry: expired');
  const ids = (f: Parameters<Store['listInstanceEntries']>[0]): unknown[] => store.listInstanceEntries(f).map((e) => e['instance_id']);
  t.strictSame(ids({ idPrefix: 'ab' }), ['ab1', 'ab2']);
  t.strictSame(ids({ state: 's1' }), ['ab1', 'cd3']);
  t.strictSame(ids({ image: 'postgres:16' }), ['ab2']);
  t.strictSame(ids({ idPrefix: 'ab', state: 's1' }), ['ab1'], 'filters combine');
  t.equal(store.instanceEntry(store.getInstance('cd3') as InstanceRow, Date.parse('2019-01-01T00:00:00Z'))['status'], 'active', 'expiry is judged at the given time');
});

// ---- names ----------------------------------------------------------------------------------------

t.test('store serves names with the status of the instance they point at', async (t) => {
  const { db, store } = fixture(t);
  store.insertInstance(instance('i1', 's1'));
  putName(db, { name: 'dev', instance_id: 'i1', image_id: 'postgres:15', state_id: 's1' });
  putName(db, { name: 'gone', instance_id: 'i9', image_id: 'postgres:16', state_fingerprint: 'fp1' });
  putName(db, { name: 'bare', image_id: 'postgres:15' });
  t.strictSame(store.getNameEntry('dev'), { name: 'dev', instance_id: 'i1', image_id: 'postgres:15', state_id: 's1', status: 'active', last_used_at: '2026-01-03T00:00:00Z' });
  t.strictSame(store.getNameEntry('gone'), {
    name: 'gone', instance_id: 'i9', image_id: 'postgres:16', state_id: 'fp1', state_fingerprint: 'fp1', status: 'missing', last_used_at: '2026-01-03T00:00:00Z',
  }, 'a missing instance; the fingerprint stands in for the state id');
  t.strictSame(store.getNameEntry('bare'), { name: 'bare', image_id: 'postgres:15', state_id: '', status: 'missing', last_used_at: '2026-01-03T00:00:00Z' });
  t.equal(store.getNameEntry('nope'), undefined);
  t.equal(store.instanceIdOfName('dev'), 'i1');
  t.equal(store.instanceIdOfName('bare'), undefined, 'a name without an instance');
  t.equal(store.instanceIdOfName('nope'), undefined);
  const names = (f: Parameters<Store['listNameEntries']>[0]): unknown[] => store.listNameEntries(f).map((e) => e['name']);
  t.strictSame(names({}), ['bare', 'dev', 'gone'], 'by name');
  t.strictSame(names({ instance: 'i1' }), ['dev']);
  t.strictSame(names({ state: 's1' }), ['dev']);
  t.strictSame(names({ image: 'postgres:15' }), ['bare', 'dev']);
});

// ---- bases ----------------------------------------------------------------------------------------

t.test('store putBase records (and replaces) a base per image; deleteBase removes it', async (t) => {
  const { store } = fixture(t);
  t.equal(store.getBase('postgres:15'), undefined);
  store.putBase({ image_id: 'postgres:15', dir: '/b/1', backend: 'copy', created_at: '2026-01-01T00:00:00Z' });
  store.putBase({ image_id: 'postgres:16', dir: '/b/2', backend: 'overlay', created_at: '2026-01-01T00:00:00Z' });
  t.strictSame(store.getBase('postgres:15'), { image_id: 'postgres:15', dir: '/b/1', backend: 'copy', created_at: '2026-01-01T00:00:00Z' });
  store.putBase({ image_id: 'postgres:15', dir: '/b/3', backend: 'btrfs', created_at: '2026-01-02T00:00:00Z' });
  t.strictSame(store.getBase('postgres:15'), { image_id: 'postgres:15', dir: '/b/3', backend: 'btrfs', created_at: '2026-01-02T00:00:00Z' }, 'replaced');
  t.strictSame(store.allBases().map((b) => b.image_id).sort(), ['postgres:15', 'postgres:16']);
  store.deleteBase('postgres:15');
  t.equal(store.getBase('postgres:15'), undefined);
  t.strictSame(store.allBases().map((b) => b.image_id), ['postgres:16']);
  t.doesNotThrow(() => store.deleteBase('postgres:15'), 'deleting a missing base is a no-op');
});

// ---- transactions and persistence -------------------------------------------------------------------

t.test('store tx commits all writes together or none', async (t) => {
  const { store } = fixture(t);
  t.equal(store.tx(() => { store.insertJob(job('j1')); store.appendEvent('j1', ev('status', { status: 'queued' })); return 'done'; }), 'done', 'returns the callback\'s value');
  t.equal(store.eventCount('j1'), 1);
  t.throws(() => store.tx(() => {
    store.insertJob(job('j2'));
    store.appendEvent('j2', ev('status', { status: 'queued' }));
    throw new Error('abort');
  }), { message: 'abort' });
  t.equal(store.getJob('j2'), undefined, 'the job insert was rolled back');
  t.equal(store.eventCount('j2'), 0, 'and its event');
});

t.test('store rows survive closing and reopening the database', async (t) => {
  const { db, store, path } = fixture(t);
  store.insertJob(job('j1'));
  store.appendEvent('j1', ev('status', { status: 'queued' }));
  store.insertState(state('s1'));
  store.insertInstance(instance('i1', 's1'));
  db.close();
  const again = openDatabase(path);
  t.teardown(() => again.close());
  const s = new Store(again);
  t.equal(s.getJob('j1')?.status, 'queued');
  t.equal(s.eventCount('j1'), 1);
  t.equal(s.appendEvent('j1', ev('log', { message: 'after reopen' })), 1, 'numbering continues');
  t.equal(s.hasState('s1'), true);
  t.equal(s.refcount('s1'), 1);
});

t.test('store eventsInRange reads (after, upTo] and maxEventSeq remembers the newest seq of deleted jobs', async (t) => {
  const { store } = fixture(t);
  t.equal(store.maxEventSeq(), 0);
  store.insertJob(job('j1'));
  store.insertJob(job('j2'));
  for (const j of ['j1', 'j2', 'j1', 'j2']) store.appendEvent(j, { type: 'log', ts: 't', message: j });
  const all = store.eventsInRange(undefined, 0, Number.MAX_SAFE_INTEGER, 100).map((e) => e.seq);
  t.equal(all.length, 4);
  t.same(store.eventsInRange(undefined, all[0] ?? 0, all[2] ?? 0, 100).map((e) => e.seq), all.slice(1, 3));
  t.same(store.eventsInRange('j2', 0, all[2] ?? 0, 100).map((e) => e.seq), [all[1]]);
  t.equal(store.maxEventSeq(), all[3]);
  store.deleteJob('j2');
  t.equal(store.maxEventSeq(), all[3], 'still the newest ever written');
  t.equal(store.inTransaction(), false);
  store.tx(() => t.equal(store.inTransaction(), true));
});
