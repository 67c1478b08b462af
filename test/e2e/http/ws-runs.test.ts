/**
 * Run output over /v1/ws against a real engine, Docker and PostgreSQL. Two runs on one instance
 * are ordered by an advisory lock: run B takes it and sleeps; run A prints a line and waits for it.
 * While both run, `GET /v1/runs` lists them and a WebSocket subscriber to A gets its kept events,
 * then, once B's client goes away (which cancels B and frees the lock), A's further output live —
 * the same events, byte for byte, as A's own NDJSON response. B's terminal error still reaches its
 * subscribers after B's client has gone; run.started / run.finished arrive as lifecycle events;
 * a finished run can be replayed by a late subscriber.
 */
import t from 'tap';
import { REQUIRE_DOCKER, dockerProblem, postStream, prepareInstance, startRunEngine, type TimedEvent } from '../../helpers/run-engine.js';
import { connectWs, type Frame } from '../../helpers/ws-client.js';

t.setTimeout(600_000);

interface RunEntry { run_id: string; instance_id: string; kind: string; started_at: string }

const problem = await dockerProblem();
if (problem !== undefined) {
  if (REQUIRE_DOCKER) t.fail(`SQLRS_REQUIRE_DOCKER=1 but ${problem}`);
  else t.plan(0, problem);
} else {
  t.test('run output subscriptions follow real runs live and from their kept tail', async (t) => {
    const eng = await startRunEngine(t);
    const inst = await prepareInstance(eng, ['-c', 'create table t(x int)']);
    const life = await connectWs(eng);
    life.send({ op: 'subscribe', topic: 'lifecycle' });

    const b = await postStream(eng, '/v1/runs', { instance_ref: inst, kind: 'psql', args: ['-c', 'select pg_advisory_lock(42)', '-c', '\\warn locked', '-c', 'select pg_sleep(600)'] });
    t.equal(b.status, 200);
    const bEvents = b.events();
    for (let e = await bEvents.next(); !e.done; e = await bEvents.next()) if (String(e.value.event['data'] ?? '').includes('locked')) break;

    const a = await postStream(eng, '/v1/runs', { instance_ref: inst, kind: 'psql', args: ['-c', '\\warn first', '-c', 'select pg_advisory_lock(42) is null as x', '-c', '\\warn second'] });
    t.equal(a.status, 200);
    const aEvents: TimedEvent[] = [];
    const aIter = a.events();
    for (let e = await aIter.next(); !e.done; e = await aIter.next()) { aEvents.push(e.value); if (String(e.value.event['data'] ?? '').includes('first')) break; }

    const runs = (await eng.fetch('/v1/runs')).json<RunEntry[]>();
    t.equal(runs.length, 2, 'both runs are in progress');
    t.ok(runs.every((r) => r.instance_id === inst && r.kind === 'psql' && /^[0-9a-f]{32}$/.test(r.run_id) && !Number.isNaN(Date.parse(r.started_at))));
    const [runB, runA] = [runs[0]?.run_id ?? '', runs[1]?.run_id ?? ''];

    const w = await connectWs(eng, { protocols: ['sqlrs', `bearer.${eng.token}`] });
    w.send({ op: 'subscribe', run: runA });
    w.send({ op: 'subscribe', run: runB, after: 1 });
    await w.waitFor((f) => f.runId === runA && String(f.data['data'] ?? '').includes('first'), 'A\'s first line, from the kept tail');
    // Caught up from the kept tail while A waits for the lock: its start and first line, as its own response got them.
    t.same(w.frames.filter((f) => f.runId === runA).slice(0, 2).map((f) => f.data), aEvents.slice(0, 2).map((e) => e.event), 'A so far: what its own response got');

    b.close(); // B's client goes away: B is cancelled, its session ends, the lock is free
    for (let e = await aIter.next(); !e.done; e = await aIter.next()) aEvents.push(e.value);
    const text = (type: string): string => aEvents.filter((e) => e.event.type === type).map((e) => String(e.event['data'])).join('');
    t.same([aEvents[0]?.event.type, text('stderr'), aEvents[aEvents.length - 1]?.event['exit_code']], ['start', 'first\nsecond\n', 0], 'A ran to its end');
    t.match(text('stdout'), /^ x \n---\n f\n/);
    const aDone = await w.waitFor((f) => f.runId === runA && f.data.type === 'exit', 'A\'s exit, live');
    const aFrames = w.frames.filter((f) => f.runId === runA);
    t.same(aFrames.map((f) => f.data), aEvents.map((e) => e.event), 'the WebSocket got exactly the run\'s NDJSON events');
    t.same(aFrames.map((f) => f.seq), aEvents.map((_, i) => i + 1), 'numbered within the run from 1');
    t.ok(aFrames.every((f) => f.type === 'run.event' && f.ts === f.data['ts']));
    t.equal(aDone.seq, aEvents.length);

    const bEnd = await w.waitFor((f) => f.runId === runB && f.data.type === 'error', 'B\'s terminal error, after its client left');
    t.match(bEnd.data, { type: 'error', error: { code: 'cancelled' } });
    t.ok(w.frames.filter((f) => f.runId === runB).every((f) => f.seq > 1), 'B from after seq 1');
    t.same((await eng.fetch('/v1/runs')).json(), [], 'no run in progress any more');

    const started = (id: string): Promise<Frame> => life.waitFor((f) => f.data.event === 'run.started' && f.data.id === id, `run.started ${id}`);
    const finished = (id: string): Promise<Frame> => life.waitFor((f) => f.data.event === 'run.finished' && f.data.id === id, `run.finished ${id}`);
    t.same((await started(runA)).data, { event: 'run.started', id: runA, run_id: runA, instance_id: inst, kind: 'psql' });
    t.same((await finished(runA)).data, { event: 'run.finished', id: runA, run_id: runA, exit_code: 0 });
    t.same((await finished(runB)).data, { event: 'run.finished', id: runB, run_id: runB, error_code: 'cancelled' });
    t.ok((await started(runB)).seq < (await started(runA)).seq);

    const late = await connectWs(eng);
    late.send({ op: 'subscribe', run: runA, after: 2 });
    const replay = await late.next(aFrames.length - 2);
    t.same(replay, aFrames.slice(2), 'a finished run is replayed from its kept tail to a late subscriber');
    late.send({ op: 'subscribe', run: runA }); // the subscription ended with the run: this is a new one
    t.same((await late.next(2 * aFrames.length - 2)).slice(aFrames.length - 2), aFrames, 'from the start');
    await late.close();
    await w.close();
    await life.close();
  });
}
