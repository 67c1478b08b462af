import t from 'tap';
import {
  transition, restore, persist, onFailure, isTerminal, MAX_OP_ATTEMPTS,
  type DeleteState, type DeleteMessage, type DeleteOp, type DeleteResult, type DeleteEffect,
} from '../../../src/actors/deletion/transition.js';
import type { TransitionContext } from '../../../src/actors/system/logic.js';
import { asInstanceId, asJobId, asStateId, type MessageId, type ActorId } from '../../../src/ids.js';

let idSeq = 0;
const ctx = (): TransitionContext => ({ now: 1_700_000_000_000, messageId: 1 as MessageId, actorId: 'delete:d' as ActorId, newId: () => `w${++idSeq}` });

const S1 = asStateId('1'.repeat(64));
const S2 = asStateId('2'.repeat(64));
const I1 = asInstanceId('a'.repeat(32));
const J1 = asJobId('b'.repeat(32));
const ops: DeleteOp[] = [
  { kind: 'instance', id: I1, containerId: 'c1', dir: '/store/instances/' + I1 },
  { kind: 'state', id: S2, dir: '/store/states/' + S2 },
  { kind: 'state', id: S1, dir: '/store/states/' + S1 },
];
const result: DeleteResult = {
  dry_run: false, outcome: 'deleted',
  root: { kind: 'state', id: S1, children: [{ kind: 'instance', id: I1, connections: 0, runtime_id: 'c1' }, { kind: 'state', id: S2 }] },
};
const start: DeleteMessage = { type: 'start', deletionId: 'd', ops, result, reason: 'request' };

function ok(s: DeleteState, result: unknown = {}): DeleteMessage {
  return { type: '$work', workId: s.work?.id ?? '', ok: true, result };
}
function failed(s: DeleteState): DeleteMessage {
  return { type: '$work', workId: s.work?.id ?? '', ok: false, error: { name: 'SnapshotError', code: 'ENGINE_SNAPSHOT', message: 'remove failed', details: 'EBUSY' } };
}
function effects(d: DeleteEffect[] | undefined): string[] {
  return (d ?? []).map((e) => (e.t === 'finished' ? `finished:${e.ok ? 'ok' : 'failed'}` : `${e.t}:${'instanceId' in e ? e.instanceId : 'stateId' in e ? e.stateId : e.jobId}`));
}

t.test('deletion start marks the first instance deleting and asks to remove it', async (t) => {
  const r = transition(undefined, start, ctx());
  t.equal(r.state.status, 'running');
  t.equal(r.state.cursor, 0);
  t.same(effects(r.domain), [`mark-deleting:${I1}`]);
  t.equal(r.work?.length, 1);
  t.same(r.work?.[0]?.spec, { deletionId: 'd', op: ops[0], attempt: 1 });
  t.equal(r.state.work?.id, r.work?.[0]?.workId);
});

t.test('deletion removes rows only after their files, children before parents', async (t) => {
  let r = transition(undefined, start, ctx());
  const seen: string[] = [...effects(r.domain)];
  const workOps: string[] = [r.work?.[0]?.spec.op.id ?? ''];
  while (!isTerminal(r.state)) {
    r = transition(r.state, ok(r.state), ctx());
    seen.push(...effects(r.domain));
    if (r.work?.[0]) workOps.push(r.work[0].spec.op.id);
  }
  t.same(workOps, [I1, S2, S1], 'removal work follows the plan order');
  t.same(seen, [`mark-deleting:${I1}`, `delete-instance-row:${I1}`, `delete-state-row:${S2}`, `delete-state-row:${S1}`, 'finished:ok']);
  t.equal(r.state.status, 'done');
  t.equal(r.state.cursor, 3);
  t.notOk(r.state.work);
});

t.test('deletion with an empty plan finishes at once', async (t) => {
  const r = transition(undefined, { ...start, ops: [] } as DeleteMessage, ctx());
  t.equal(r.state.status, 'done');
  t.same(effects(r.domain), ['finished:ok']);
  t.notOk(r.work?.length);
});

t.test('deletion ignores stale work results and redelivered starts', async (t) => {
  const r = transition(undefined, start, ctx());
  const stale = transition(r.state, { type: '$work', workId: 'other', ok: true, result: {} }, ctx());
  t.same(stale.state, r.state);
  t.notOk(stale.domain?.length);
  const again = transition(r.state, start, ctx());
  t.same(again.state, r.state);
  t.notOk(again.work?.length);
});

t.test('deletion retries a failed removal, then fails keeping the remaining plan', async (t) => {
  let r = transition(undefined, start, ctx());
  r = transition(r.state, ok(r.state), ctx()); // instance done
  const firstWork = r.state.work?.id;
  for (let attempt = 2; attempt <= MAX_OP_ATTEMPTS; attempt++) {
    r = transition(r.state, failed(r.state), ctx());
    t.equal(r.state.status, 'running');
    t.equal(r.state.work?.attempt, attempt);
    t.not(r.state.work?.id, firstWork, 'a retry is new work');
    t.same(r.work?.[0]?.spec.op, ops[1], 'the same removal is retried');
    t.notOk(r.domain?.some((d) => d.t === 'delete-state-row'), 'no row goes while its files may remain');
  }
  r = transition(r.state, failed(r.state), ctx());
  t.equal(r.state.status, 'failed');
  t.equal(r.state.cursor, 1, 'the remaining plan stays recorded');
  t.equal(r.state.error?.code, 'internal_error');
  t.match(r.state.error?.message, `cannot delete state ${S2}`);
  t.match(r.state.error?.details, 'EBUSY');
  t.same(effects(r.domain), ['finished:failed']);
  const after = transition(r.state, ok(r.state), ctx());
  t.same(after.state, r.state, 'a failed deletion takes no more messages');
});

t.test('deletion retry of an instance does not mark it deleting twice', async (t) => {
  let r = transition(undefined, start, ctx());
  r = transition(r.state, failed(r.state), ctx());
  t.same(effects(r.domain), []);
  t.equal(r.work?.[0]?.spec.attempt, 2);
});

t.test('deletion state survives persist and restore at every step', async (t) => {
  let r = transition(undefined, start, ctx());
  while (!isTerminal(r.state)) {
    const back = restore(JSON.parse(JSON.stringify(persist(r.state))));
    t.same(back, r.state);
    r = transition(back, ok(back), ctx());
  }
  t.same(restore(JSON.parse(JSON.stringify(persist(r.state)))), r.state);
  t.throws(() => restore({ v: 1, deletionId: 'd' }), 'a malformed state is refused');
});

t.test('deletion supervisor failure ends the deletion with an internal error', async (t) => {
  const r = transition(undefined, start, ctx());
  const f = onFailure(r.state, new Error('boom'));
  t.equal(f.state.status, 'failed');
  t.same(f.state.error, { code: 'internal_error', message: 'internal error', details: 'boom' });
  t.same(effects(f.domain), ['finished:failed']);
  t.throws(() => onFailure(undefined, new Error('x')));
  t.throws(() => transition(undefined, { type: '$timer', name: 'x' }, ctx()), 'only start can begin a deletion');
});

t.test('deletion of a job op removes only rows: the job rows go in the commit after its (file-less) work', async (t) => {
  const result = { dry_run: false, outcome: 'deleted' as const, root: { kind: 'job' as const, id: J1 } };
  const ctx = { now: 1, messageId: 1 as never, actorId: 'delete:d' as never, newId: () => 'w1' };
  const started = transition(undefined, { type: 'start', deletionId: 'd', ops: [{ kind: 'job', id: J1 }], result, reason: 'request' }, ctx);
  t.same(started.work?.map((w) => w.spec.op), [{ kind: 'job', id: J1 }]);
  t.same(effects(started.domain), [], 'no instance is marked deleting');
  const done = transition(started.state, { type: '$work', workId: 'w1', ok: true, result: {} }, ctx);
  t.same(effects(done.domain), [`delete-job-rows:${J1}`, 'finished:ok']);
  t.equal(done.state.status, 'done');
  t.same(restore(JSON.parse(JSON.stringify(persist(done.state)))), done.state, 'a job op survives persist/restore');
});
