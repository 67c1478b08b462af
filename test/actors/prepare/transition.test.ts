import t from 'tap';
import {
  transition, restore, persist, onFailure, isTerminal,
  type PrepareState, type PrepareMessage, type PrepareEffect, type PlanResult,
} from '../../../src/actors/prepare/transition.js';
import type { TransitionContext } from '../../../src/actors/system/logic.js';
import { asJobId, asStateId, type MessageId, type ActorId } from '../../../src/ids.js';

let idSeq = 0;
const ctx = (): TransitionContext => ({ now: 1_700_000_000_000, messageId: 1 as MessageId, actorId: 'prepare:j' as ActorId, newId: () => `w${++idSeq}` });
const req = { image: 'postgres:15', psqlArgs: ['-f', '/a.sql', '-f', '/b.sql'], planOnly: false };
const JOB = asJobId('0'.repeat(32));
const start: PrepareMessage = { type: 'start', jobId: JOB, request: req, argsNormalized: '-f /a.sql -f /b.sql -X -v ON_ERROR_STOP=1', imageHadDigest: false };

function events(domain: PrepareEffect[] | undefined): string[] {
  return (domain ?? []).filter((d): d is Extract<PrepareEffect, { t: 'event' }> => d.t === 'event')
    .map((d) => `${d.event.type}:${d.event.task_id ?? ''}:${d.event.status ?? d.event.message ?? ''}`);
}

function plan(cached: [boolean, boolean]): PlanResult {
  return {
    steps: [
      { taskHash: 'a'.repeat(64), outputStateId: asStateId('1'.repeat(64)), cached: cached[0], argsSummary: '-f /a.sql' },
      { taskHash: 'b'.repeat(64), outputStateId: asStateId('2'.repeat(64)), cached: cached[1], argsSummary: '-f /b.sql' },
    ],
    requestTaskHash: 'c'.repeat(64), signature: 'd'.repeat(64),
  };
}

/** Drives a job through start → resolve → plan and returns the state. */
function planned(cached: [boolean, boolean], planOnly = false): { s: PrepareState; domain: PrepareEffect[] } {
  const m: PrepareMessage = planOnly ? { ...start, request: { ...req, planOnly: true } } as PrepareMessage : start;
  let r = transition(undefined, m, ctx());
  r = transition(r.state, { type: '$work', workId: r.state.work!.id, ok: true, result: { resolvedId: 'postgres@sha256:x', uid: 999, gid: 999 } }, ctx());
  r = transition(r.state, { type: '$work', workId: r.state.work!.id, ok: true, result: plan(cached) }, ctx());
  return { s: r.state, domain: r.domain ?? [] };
}

t.test('prepare job start moves to running and asks to resolve the image', async (t) => {
  const r = transition(undefined, start, ctx());
  t.equal(r.state.status, 'running');
  t.same(events(r.domain), ['status::running', 'log::resolve image postgres:15']);
  t.equal(r.work?.[0]?.spec.kind, 'resolve');
});

t.test('prepare job plan emits the task sequence and starts the first uncached step', async (t) => {
  const { s, domain } = planned([false, false]);
  t.same(events(domain), [
    'task:plan:running', 'task:plan:succeeded', 'task:resolve-image:running', 'task:resolve-image:succeeded', 'task:execute-0:running',
  ]);
  t.equal(s.tasks.length, 5);
  t.same(s.tasks.map((x) => x.task_id), ['plan', 'resolve-image', 'execute-0', 'execute-1', 'prepare-instance']);
  t.same(s.tasks[3]?.['input'], { kind: 'state', id: '1'.repeat(64) }, 'later steps chain on the previous output');
  t.equal(s.work?.kind, 'step');
  const tasksEffect = domain.find((d) => d.t === 'tasks');
  t.ok(tasksEffect && tasksEffect.t === 'tasks' && tasksEffect.tasks[2]?.argsSummary === '-f /a.sql', 'args summaries are stored with the tasks');
});

t.test('prepare job cached step gets no running event', async (t) => {
  const { domain } = planned([true, false]);
  t.notOk(events(domain).includes('task:execute-0:running'));
});

t.test('prepare job succeeds with a result after the instance is created', async (t) => {
  let { s } = planned([false, false]);
  const stateRow = (id: string) => ({ state: { state_id: id, parent_state_id: null, image_id: 'i', prepare_kind: 'psql', prepare_args_normalized: '', created_at: 'x', created_ms: 1, size_bytes: 1, backend: 'copy', dir: '/d' }, wasCached: false });
  let r = transition(s, { type: '$work', workId: s.work!.id, ok: true, result: stateRow('1'.repeat(64)) }, ctx());
  t.same(events(r.domain), ['task:execute-0:succeeded', 'task:execute-1:running']);
  r = transition(r.state, { type: '$work', workId: r.state.work!.id, ok: true, result: stateRow('2'.repeat(64)) }, ctx());
  t.same(events(r.domain), ['task:execute-1:succeeded', 'task:prepare-instance:running']);
  s = r.state;
  r = transition(s, { type: '$work', workId: s.work!.id, ok: true, result: { instanceId: 'f'.repeat(32), containerId: 'c', port: 5555, dir: '/i', createdAt: 't' } }, ctx());
  t.same(events(r.domain), [`log::instance created ${'f'.repeat(32)}`, 'task:prepare-instance:succeeded', 'status::succeeded', 'result::']);
  const result = (r.domain ?? []).find((d) => d.t === 'event' && d.event.type === 'result');
  t.match(result, { event: { result: { dsn: 'postgres://sqlrs@127.0.0.1:5555/postgres', state_id: '2'.repeat(64), image_id: 'postgres@sha256:x' } } });
  t.ok(isTerminal(r.state));
  t.ok((r.domain ?? []).some((d) => d.t === 'instance'), 'the instance row is written in the same commit');
  t.ok((r.domain ?? []).some((d) => d.t === 'trim'), 'retention runs when the job ends');
});

t.test('prepare job plan-only marks every task succeeded without running events and without a result', async (t) => {
  const { s, domain } = planned([false, false], true);
  t.equal(s.status, 'succeeded');
  const ev = events(domain);
  t.notOk(ev.some((e) => e.endsWith(':running')));
  t.equal(ev.filter((e) => e.startsWith('task:') && e.endsWith(':succeeded')).length, 5);
  t.notOk(ev.some((e) => e.startsWith('result')));
});

t.test('prepare job step failure fails the task and the job with the error', async (t) => {
  const { s } = planned([false, false]);
  const r = transition(s, { type: '$work', workId: s.work!.id, ok: false, error: { name: 'InternalError', code: 'internal_error', message: 'psql execution failed', details: 'ERROR: boom' } }, ctx());
  t.equal(r.state.status, 'failed');
  t.same(events(r.domain), ['task:execute-0:failed', 'status::failed', 'error::']);
  const err = (r.domain ?? []).find((d) => d.t === 'job' && d.patch.status === 'failed');
  t.match(err, { patch: { error: { code: 'internal_error', message: 'psql execution failed', details: 'ERROR: boom' } } });
});

t.test('prepare job cancel aborts running work and fails as cancelled when the work ends', async (t) => {
  const { s } = planned([false, false]);
  const c = transition(s, { type: 'cancel' }, ctx());
  t.same(c.abort, [s.work!.id]);
  t.equal(c.state.status, 'running', 'still running until the work has stopped');
  const r = transition(c.state, { type: '$work', workId: s.work!.id, ok: false, error: { name: 'CancelledError', code: 'cancelled', message: 'task cancelled' } }, ctx());
  t.equal(r.state.status, 'failed');
  const job = (r.domain ?? []).find((d) => d.t === 'job' && d.patch.status === 'failed');
  t.match(job, { patch: { error: { code: 'cancelled', message: 'task cancelled' } } });
});

t.test('prepare job ignores stale work results and redelivered starts', async (t) => {
  const { s } = planned([false, false]);
  const r = transition(s, { type: '$work', workId: 'not-current', ok: true, result: {} }, ctx());
  t.same(r.state, s);
  t.same(r.domain, []);
  const r2 = transition(s, start, ctx());
  t.same(r2.state, s);
});

t.test('prepare job cancelled after its instance was made discards the instance', async (t) => {
  let { s } = planned([true, true]);
  // Both steps cached: walk to the instance task.
  const row = (id: string) => ({ state: { state_id: id, parent_state_id: null, image_id: 'i', prepare_kind: 'psql', prepare_args_normalized: '', created_at: 'x', created_ms: 1, size_bytes: 1, backend: 'copy', dir: '/d' }, wasCached: true });
  let r = transition(s, { type: '$work', workId: s.work!.id, ok: true, result: row('1'.repeat(64)) }, ctx());
  r = transition(r.state, { type: '$work', workId: r.state.work!.id, ok: true, result: row('2'.repeat(64)) }, ctx());
  s = r.state;
  const c = transition(s, { type: 'cancel' }, ctx());
  const done = transition(c.state, { type: '$work', workId: s.work!.id, ok: true, result: { instanceId: 'e'.repeat(32), containerId: 'c', port: 1, dir: '/i', createdAt: 't' } }, ctx());
  t.equal(done.state.status, 'failed');
  t.equal(done.work?.[0]?.spec.kind, 'discard');
  t.notOk((done.domain ?? []).some((d) => d.t === 'instance'), 'no instance row is written');
});

t.test('prepare job state survives a persist/restore round trip', async (t) => {
  const { s } = planned([false, true]);
  t.same(restore(JSON.parse(JSON.stringify(persist(s)))), s);
  t.throws(() => restore({ ...s, status: 'weird' }));
});

t.test('prepare job supervisor failure fails the job with internal_error', async (t) => {
  const { s } = planned([false, false]);
  const r = onFailure(s, new Error('handler broke'), ctx());
  t.equal(r.state.status, 'failed');
  t.same(r.abort, [s.work!.id]);
  const job = (r.domain ?? []).find((d) => d.t === 'job' && d.patch.status === 'failed');
  t.match(job, { patch: { error: { code: 'internal_error', details: 'handler broke' } } });
});
