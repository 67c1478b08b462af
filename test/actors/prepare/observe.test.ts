/**
 * The prepare wing's metrics reports (`src/actors/prepare/observe.ts`) with a manual clock and a
 * recording Telemetry: step work is timed and classified (built, cached, failed, cancelled), build
 * steps count cache hits and misses, other work passes through unreported, and a job's terminal
 * commit reports its kind, outcome and time since submit.
 */
import t from 'tap';
import { ManualClock } from '../../../src/clock.js';
import { CancelledError, InternalError } from '../../../src/errors.js';
import { asJobId, asStateId, type JobId } from '../../../src/ids.js';
import { PrepareObserver } from '../../../src/actors/prepare/observe.js';
import type { JobRow } from '../../../src/mailbox/store.js';
import type { PrepareEffect, PrepareWork, StepResult } from '../../../src/actors/prepare/transition.js';
import type { Telemetry } from '../../../src/telemetry.js';

const JOB = asJobId('1'.repeat(32));
const STATE = asStateId('2'.repeat(64));
const request = { image: 'img', psqlArgs: [], planOnly: false };
const step: PrepareWork = {
  kind: 'step', jobId: JOB, index: 0, request, input: { kind: 'image', id: 'img' }, outputStateId: STATE,
  resolvedImage: 'img', argsNormalized: '', uid: 999, gid: 999, last: true,
};
const instance: PrepareWork = { kind: 'instance', jobId: JOB, stateId: STATE, resolvedImage: 'img', uid: 999, gid: 999 };

function recorder(): { telemetry: Telemetry; calls: unknown[][] } {
  const calls: unknown[][] = [];
  return {
    calls,
    telemetry: {
      jobFinished: (...a) => { calls.push(['job', ...a]); },
      stepFinished: (...a) => { calls.push(['step', ...a]); },
      cacheLookup: (hit) => { calls.push(['lookup', hit]); },
    },
  };
}

function observer(rows: Partial<JobRow>[] = []): { o: PrepareObserver; calls: unknown[][]; clock: ManualClock } {
  const clock = new ManualClock(1_700_000_000_000);
  const r = recorder();
  const store = { getJob: (id: string): JobRow | undefined => rows.find((x) => x.job_id === id) as JobRow | undefined };
  return { o: new PrepareObserver({ telemetry: r.telemetry, store, clock, stepKind: 'psql' }), calls: r.calls, clock };
}

/** Work that settles when told, after the clock moved `ms`. */
function slow<R>(clock: ManualClock, ms: number, settle: () => R): Promise<R> {
  return Promise.resolve().then(() => { clock.advance(ms); return settle(); });
}

const built = (wasCached: boolean): StepResult => ({ wasCached, state: {} as StepResult['state'] });

t.test('a built step reports a miss and a succeeded psql step with its work time', async (t) => {
  const { o, calls, clock } = observer();
  const r = await o.work(step, new AbortController().signal, slow(clock, 1500, () => built(false)));
  t.same(r, built(false), 'the work result passes through');
  t.same(calls, [['lookup', false], ['step', 'psql', 'succeeded', 1.5]]);
});

t.test('a step whose state was found reports a hit and a cached step', async (t) => {
  const { o, calls, clock } = observer();
  await o.work(step, new AbortController().signal, slow(clock, 20, () => built(true)));
  t.same(calls, [['lookup', true], ['step', 'psql', 'cached', 0.02]]);
});

t.test('the instance step reports its own kind and no cache lookup', async (t) => {
  const { o, calls, clock } = observer();
  await o.work(instance, new AbortController().signal, slow(clock, 250, () => ({})));
  t.same(calls, [['step', 'instance', 'succeeded', 0.25]]);
});

t.test('a failing step reports failed, a cancelled one cancelled, and both rethrow', async (t) => {
  const { o, calls } = observer();
  const boom = new InternalError('psql execution failed');
  await t.rejects(o.work(step, new AbortController().signal, Promise.reject(boom)), boom);
  await t.rejects(o.work(instance, new AbortController().signal, Promise.reject(new CancelledError('task cancelled'))), { code: 'cancelled' });
  const ac = new AbortController();
  ac.abort();
  await t.rejects(o.work(step, ac.signal, Promise.reject(new Error('socket closed'))), /socket closed/);
  t.same(calls, [['step', 'psql', 'failed', 0], ['step', 'instance', 'cancelled', 0], ['step', 'psql', 'cancelled', 0]], 'no cache lookup for steps that did not complete');
});

t.test('resolve, plan and discard work is passed through without a report', async (t) => {
  const { o, calls } = observer();
  const resolve: PrepareWork = { kind: 'resolve', jobId: JOB, image: 'img' };
  t.same(await o.work(resolve, new AbortController().signal, Promise.resolve('x')), 'x');
  await t.rejects(o.work(resolve, new AbortController().signal, Promise.reject(new Error('no image'))), /no image/);
  t.same(calls, []);
});

t.test('a terminal commit reports the job kind, outcome and time since submit', async (t) => {
  const job = (id: JobId, planOnly: number): Partial<JobRow> => ({ job_id: id, created_at: '2026-03-09T12:00:00.5Z', plan_only: planOnly, prepare_kind: 'psql' });
  const [a, b, c, gone] = ['a', 'b', 'c', 'd'].map((x) => asJobId(x.repeat(32))) as [JobId, JobId, JobId, JobId];
  const { o, calls } = observer([job(a, 0), job(b, 1), job(c, 0)]);
  const effects: PrepareEffect[] = [
    { t: 'job', jobId: a, patch: { status: 'running', started_at: '2026-03-09T12:00:00.6Z' } },
    { t: 'job', jobId: a, patch: { status: 'succeeded', finished_at: '2026-03-09T12:00:03Z' } },
    { t: 'event', jobId: a, event: { type: 'status', status: 'succeeded' } },
    { t: 'job', jobId: b, patch: { status: 'failed', finished_at: '2026-03-09T12:00:01.5Z', error: { code: 'internal_error', message: 'x' } } },
    { t: 'job', jobId: c, patch: { status: 'failed', finished_at: '2026-03-09T12:00:00.75Z', error: { code: 'cancelled', message: 'job cancelled' } } },
    { t: 'job', jobId: gone, patch: { status: 'succeeded', finished_at: '2026-03-09T12:00:01Z' } },
  ];
  o.committed(effects);
  t.same(calls, [['job', 'prepare:psql', 'succeeded', 2.5], ['job', 'plan:psql', 'failed', 1], ['job', 'prepare:psql', 'cancelled', 0.25]],
    'running patches and jobs whose rows are gone report nothing');
});
