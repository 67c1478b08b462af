import t from 'tap';
import {
  transition, restore, persist, onFailure, isTerminal, runErrorOf, RUN_KIND,
  type RunState, type RunMessage, type RunEffect, type RunWork, type RunEventBody,
} from '../../../src/actors/run/transition.js';
import type { ActorLogic, TransitionContext } from '../../../src/actors/system/logic.js';
import { ActorSystem } from '../../../src/actors/system/system.js';
import { RunWorker } from '../../../src/actors/run/work.js';
import { RunChannels } from '../../../src/actors/run/channel.js';
import { openDatabase } from '../../../src/mailbox/db.js';
import { Mailbox } from '../../../src/mailbox/mailbox.js';
import { systemClock } from '../../../src/clock.js';
import { nullLogger } from '../../../src/log.js';
import { asInstanceId, type MessageId, type ActorId } from '../../../src/ids.js';
import type { ContainerRuntime, ExecRequest } from '../../../src/workers/protocol.js';
import type { InstanceRow } from '../../../src/mailbox/store.js';

let idSeq = 0;
const ctx = (): TransitionContext => ({ now: 1_700_000_000_000, messageId: 1 as MessageId, actorId: 'run:r1' as ActorId, newId: () => `w${++idSeq}` });
const I1 = asInstanceId('1'.repeat(32));
const start = (stepCount = 2): RunMessage => ({ type: 'start', runId: 'r1', instanceId: I1, runtimeId: 'c1', kind: 'psql', stepCount });

function events(domain: RunEffect[] | undefined): RunEventBody[] {
  return (domain ?? []).flatMap((d) => (d.t === 'event' ? [d.event] : []));
}
function forgets(domain: RunEffect[] | undefined): boolean {
  return (domain ?? []).some((d) => d.t === 'forget');
}
function ok(s: RunState, result: unknown): RunMessage {
  return { type: '$work', workId: s.work?.id ?? '', ok: true, result };
}
function failed(s: RunState, code: string, message: string, details?: string): RunMessage {
  const error = { name: 'E', code, message, ...(details === undefined ? {} : { details }) } as Extract<RunMessage, { ok: false }>['error'];
  return { type: '$work', workId: s.work?.id ?? '', ok: false, error };
}
/** start → ensure ok: the run is executing step 0. */
function executing(stepCount = 2): RunState {
  const r = transition(undefined, start(stepCount), ctx());
  return transition(r.state, ok(r.state, { containerId: 'c1' }), ctx()).state;
}

t.test('run session start asks to ensure the container and emits nothing yet', async (t) => {
  const r = transition(undefined, start(), ctx());
  t.equal(r.state.status, 'preparing');
  t.same(events(r.domain), []);
  t.same(r.work?.map((w) => w.spec), [{ kind: 'ensure', runId: 'r1', instanceId: I1, runtimeId: 'c1' }]);
  t.equal(r.state.work?.kind, 'ensure');
});

t.test('run session emits start once the container runs and executes the first step', async (t) => {
  const s0 = transition(undefined, start(), ctx()).state;
  const r = transition(s0, ok(s0, { containerId: 'c9' }), ctx());
  t.same(events(r.domain), [{ type: 'start', instance_id: I1 }]);
  t.equal(r.state.status, 'executing');
  t.equal(r.state.containerId, 'c9', 'a recreated container replaces the known one');
  t.same(r.work?.map((w) => w.spec), [{ kind: 'exec', runId: 'r1', instanceId: I1, containerId: 'c9', step: 0 }]);
});

t.test('run session runs steps in order and exits with 0 after the last one', async (t) => {
  let s = executing(2);
  let r = transition(s, ok(s, { type: 'exit', exitCode: 0 }), ctx());
  t.same(events(r.domain), []);
  t.equal(r.state.cursor, 1);
  t.same(r.work?.map((w) => (w.spec as Extract<RunWork, { kind: 'exec' }>).step), [1]);
  s = r.state;
  r = transition(s, ok(s, { type: 'exit', exitCode: 0 }), ctx());
  t.same(events(r.domain), [{ type: 'exit', exit_code: 0 }]);
  t.equal(r.state.status, 'exited');
  t.equal(r.state.exitCode, 0);
  t.ok(isTerminal(r.state));
  t.ok(forgets(r.domain), 'a finished run is forgotten');
  t.same(r.work ?? [], []);
});

t.test('run session first failing step ends the run with its exit code', async (t) => {
  const s = executing(3);
  const r = transition(s, ok(s, { type: 'exit', exitCode: 3 }), ctx());
  t.same(events(r.domain), [{ type: 'exit', exit_code: 3 }]);
  t.equal(r.state.status, 'exited');
  t.equal(r.state.cursor, 0, 'no later step is started');
  t.same(r.work ?? [], []);
});

t.test('run session retries once after the container vanished before a step ran', async (t) => {
  const s = executing(1);
  let r = transition(s, ok(s, { type: 'missing' }), ctx());
  t.equal(r.state.status, 'preparing');
  t.ok(r.state.retried);
  t.same(r.work?.map((w) => w.spec), [{ kind: 'ensure', runId: 'r1', instanceId: I1, runtimeId: 'c1' }]);
  r = transition(r.state, ok(r.state, { containerId: 'c2' }), ctx());
  t.same(events(r.domain), [], 'start is not emitted twice');
  t.same(r.work?.map((w) => w.spec), [{ kind: 'exec', runId: 'r1', instanceId: I1, containerId: 'c2', step: 0 }], 'the same step runs again');
  r = transition(r.state, ok(r.state, { type: 'missing' }), ctx());
  t.equal(r.state.status, 'failed');
  t.match(events(r.domain), [{ type: 'error', error: { code: 'internal_error', message: 'run failed' } }], 'no second retry');
});

t.test('run session work failures end the run with the API error', async (t) => {
  const s0 = transition(undefined, start(), ctx()).state;
  let r = transition(s0, failed(s0, 'conflict', 'instance runtime_dir is missing', '/x'), ctx());
  t.same(events(r.domain), [{ type: 'error', error: { code: 'conflict', message: 'instance runtime_dir is missing', details: '/x' } }]);
  t.equal(r.state.status, 'failed');
  t.ok(forgets(r.domain));
  const s = executing();
  r = transition(s, failed(s, 'ENGINE_CONTAINER', 'exec failed', 'HTTP 500'), ctx());
  t.same(events(r.domain), [{ type: 'error', error: { code: 'internal_error', message: 'run failed', details: 'exec failed: exec failed: HTTP 500' } }]);
});

t.test('run session cancel aborts the running work and forgets the actor only after its result', async (t) => {
  const s = executing();
  const workId = s.work?.id ?? '';
  let r = transition(s, { type: 'cancel', reason: 'client_gone' }, ctx());
  t.same(r.abort, [workId]);
  t.equal(r.state.status, 'failed');
  t.match(events(r.domain), [{ type: 'error', error: { code: 'cancelled', message: 'run cancelled' } }]);
  t.notOk(forgets(r.domain), 'the aborted work is still to report');
  r = transition(r.state, failed(r.state, 'cancelled', 'exec aborted'), ctx());
  t.same(events(r.domain), [], 'nothing more is emitted');
  t.ok(forgets(r.domain));
  t.equal(r.state.work, undefined);
});

t.test('run session overflow cancel reports a run failure', async (t) => {
  const s = executing();
  const r = transition(s, { type: 'cancel', reason: 'overflow' }, ctx());
  t.match(events(r.domain), [{ type: 'error', error: { code: 'internal_error', message: 'run failed' } }]);
});

t.test('run session ignores stale results, redelivered starts and messages after the end', async (t) => {
  const s = executing();
  t.same(transition(s, { type: '$work', workId: 'other', ok: true, result: { type: 'exit', exitCode: 0 } }, ctx()).state, s);
  t.same(transition(s, start(), ctx()).state, s);
  t.same(transition(s, { type: '$timer', name: 'x' }, ctx()).state, s);
  const done = transition(s, ok(s, { type: 'exit', exitCode: 5 }), ctx());
  const after = transition(done.state, { type: 'cancel', reason: 'client_gone' }, ctx());
  t.same(after.state, done.state);
  t.same(events(after.domain), []);
});

t.test('run session message for a forgotten actor leaves only a forgotten tombstone', async (t) => {
  const r = transition(undefined, { type: 'cancel', reason: 'client_gone' }, ctx());
  t.ok(isTerminal(r.state));
  t.equal(r.state.runId, 'r1');
  t.same(events(r.domain), []);
  t.ok(forgets(r.domain));
});

t.test('run session supervisor failure fails the run and aborts its work', async (t) => {
  const s = executing();
  const r = onFailure(s, new Error('boom'), ctx());
  t.same(r.abort, [s.work?.id]);
  t.match(events(r.domain), [{ type: 'error', error: { code: 'internal_error', message: 'run failed', details: 'boom' } }]);
  t.ok(forgets(r.domain));
  t.ok(isTerminal(onFailure(undefined, new Error('x'), ctx()).state));
  const one = executing(1);
  const done = transition(one, ok(one, { type: 'exit', exitCode: 0 }), ctx()).state;
  t.ok(isTerminal(done));
  t.same(onFailure(done, new Error('late'), ctx()).state, done);
});

t.test('run session state survives persist and restore', async (t) => {
  const ex = executing();
  const states: RunState[] = [
    transition(undefined, start(), ctx()).state,
    ex,
    transition(ex, { type: 'cancel', reason: 'client_gone' }, ctx()).state,
    transition(ex, ok(ex, { type: 'exit', exitCode: 2 }), ctx()).state,
    transition(ex, failed(ex, 'conflict', 'instance is being deleted'), ctx()).state,
  ];
  t.same(states.map((x) => x.status), ['preparing', 'executing', 'failed', 'exited', 'failed']);
  for (const s of states) t.same(restore(JSON.parse(JSON.stringify(persist(s)))), s, s.status);
  t.throws(() => restore({ ...states[0], status: 'nope' }));
});

t.test('run error mapping keeps client-facing codes and wraps the rest', async (t) => {
  t.same(runErrorOf({ name: 'E', code: 'not_found', message: 'instance not found' }), { code: 'not_found', message: 'instance not found' });
  t.same(runErrorOf({ name: 'E', code: 'cancelled', message: 'run client is gone' }), { code: 'cancelled', message: 'run cancelled', details: 'run client is gone' });
  t.same(runErrorOf({ name: 'E', code: 'ENGINE_WORKER', message: 'crash' }), { code: 'internal_error', message: 'run failed', details: 'exec failed: crash' });
});

/** A container runtime that records execs; every other call is unused here. */
function fakeContainers(onExec: (req: ExecRequest, signal?: AbortSignal) => Promise<{ exitCode: number }>): ContainerRuntime {
  const no = (): never => { throw new Error('not used'); };
  return {
    ping: no, resolveImage: no, initBase: no, start: no, stopPostgres: no, startPostgres: no, list: no,
    remove: async () => undefined,
    isRunning: async () => true,
    exec: (req, _onOutput, signal) => onExec(req, signal),
    close: async () => undefined,
  };
}

function behavior(worker: RunWorker, mailbox: Mailbox, seen: RunEventBody[] = []): ActorLogic<RunState, RunMessage, RunWork, RunEffect> {
  return {
    kind: RUN_KIND, restore, persist, transition, isTerminal, onFailure,
    perform: (spec, signal) => worker.perform(spec, signal),
    apply: () => undefined,
    committed: (id, effects) => {
      seen.push(...events(effects));
      if (forgets(effects)) mailbox.forgetActor(id);
    },
  };
}

t.test('run session left mid-exec by an engine restart fails without running the command again', async (t) => {
  const db = openDatabase(':memory:');
  t.teardown(() => db.close());
  const mailbox = new Mailbox(db, systemClock);
  const row = { instance_id: I1, runtime_id: 'c1', deleting: 0 } as InstanceRow;
  const store = { getInstance: () => row, setInstanceRuntime: () => undefined };
  const deps = (containers: ContainerRuntime, channels: RunChannels): ConstructorParameters<typeof RunWorker>[0] => ({
    store, channels, containers, fs: { run: () => Promise.reject(new Error('not used')) }, root: '/', labels: (x) => x, log: nullLogger, clock: systemClock,
  });

  // First engine: the step starts and is still running at shutdown.
  let started!: () => void;
  const execStarted = new Promise<void>((r) => { started = r; });
  const first = new ActorSystem(mailbox, systemClock, nullLogger);
  const channels1 = new RunChannels();
  channels1.open('r1', { instanceId: I1, steps: [{ cmd: ['psql', '-c', 'select pg_sleep(30)'] }] });
  const terminations: string[] = [];
  const hanging = fakeContainers((req, signal) => {
    if (req.cmd.join(' ').includes('pg_terminate_backend')) {
      terminations.push(req.cmd.join(' '));
      return Promise.resolve({ exitCode: 0 });
    }
    return new Promise((_, reject) => {
      started();
      signal?.addEventListener('abort', () => reject(new Error('killed')), { once: true });
    });
  });
  first.register(behavior(new RunWorker(deps(hanging, channels1)), mailbox));
  first.start();
  first.send('run:r1' as ActorId, start(1));
  await execStarted;
  await first.close(0);
  t.equal(mailbox.pendingWork().length, 1, 'the exec is still in the outbox');
  t.match(terminations, [/application_name = 'sqlrs-run-r1'/], "the aborted step's server sessions were terminated");
  t.equal(mailbox.getActor('run:r1' as ActorId)?.status, 'active');

  // Second engine on the same store: no client, so the redispatched exec must not run.
  let execs = 0;
  const second = new ActorSystem(mailbox, systemClock, nullLogger);
  const seen: RunEventBody[] = [];
  second.register(behavior(new RunWorker(deps(fakeContainers(async () => { execs++; return { exitCode: 0 }; }), new RunChannels())), mailbox, seen));
  second.start();
  for (let i = 0; i < 200 && mailbox.getActor('run:r1' as ActorId) !== undefined; i++) {
    await new Promise((r) => setTimeout(r, 10));
    await second.whenIdle();
  }
  await second.close(0);
  t.equal(execs, 0, 'the command was not executed again');
  t.same(seen, [{ type: 'error', error: { code: 'cancelled', message: 'run cancelled', details: 'run client is gone' } }], 'the run was marked failed');
  t.equal(mailbox.getActor('run:r1' as ActorId), undefined, 'the failed run was forgotten');
  t.same(mailbox.pendingWork(), []);
});
