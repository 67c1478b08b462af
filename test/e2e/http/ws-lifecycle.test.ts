/**
 * Lifecycle events over /v1/ws against a real engine, Docker and PostgreSQL: a prepare reports
 * state.created, instance.created and job.terminal; deletes report instance.deleted and
 * state.deleted; cache eviction reports state.evicted; `after` resumes with exactly the missed tail;
 * and after SIGKILLs — once the jobs are done, and at random moments while they run — the restarted
 * engine has every event exactly once: one per row that exists, none invented, none lost.
 */
import t from 'tap';
import { startEngine } from '../../helpers/engine.js';
import { needDocker, startPrepEngine, submit, waitJob, prepare, wipe, type PrepEngine, type JobOutcome } from '../../helpers/prepare.js';
import { del, states, instances } from '../../helpers/del-engine.js';
import { connectWs, type Frame } from '../../helpers/ws-client.js';

t.setTimeout(900_000);

function ok(o: JobOutcome): Record<string, string> {
  if (o.status !== 'succeeded' || !o.result) throw new Error(`job ${o.jobId} failed: ${JSON.stringify(o.error)}`);
  return o.result;
}

/** Every lifecycle frame the engine has, read from the start. */
async function allLifecycle(eng: PrepEngine): Promise<Frame[]> {
  const c = await connectWs(eng);
  c.send({ op: 'subscribe', topic: 'lifecycle' });
  c.send({ op: 'subscribe', job: 'f'.repeat(32) }); // answered after the catch-up: marks its end
  await c.waitFor((f) => f.type === 'ws.error', 'the end of the catch-up');
  await c.close();
  return c.frames.filter((f) => f.type === 'lifecycle');
}

const brief = (f: Frame): string => `${f.data.event ?? ''} ${f.data.id ?? ''}`;

if (needDocker(t)) {
  t.test('lifecycle events of prepares, deletes and eviction, resumable by seq and kept exactly once across a SIGKILL', async (t) => {
    let eng = await startPrepEngine(t, { keep: true });
    const { dir, store } = eng;
    t.teardown(async () => { await eng.stop().catch(() => {}); wipe(dir, store); });
    const watch = await connectWs(eng, { protocols: ['sqlrs', `bearer.${eng.token}`] });
    watch.send({ op: 'subscribe', topic: 'lifecycle' });

    const oa = await prepare(eng, { psql_args: ['-c', 'create table a(x int)'] });
    const a = ok(oa);
    const [iA, sA, resolved] = [a['instance_id'] ?? '', a['state_id'] ?? '', a['image_id'] ?? ''];
    await watch.waitFor((f) => f.data.event === 'job.terminal', 'job.terminal');
    t.match(watch.frames.map((f) => f.data), [
      { event: 'state.created', id: sA, parent_state_id: null, image_id: resolved, size_bytes: Number },
      { event: 'instance.created', id: iA, state_id: sA, image_id: resolved, job_id: oa.jobId },
      { event: 'job.terminal', id: oa.jobId, status: 'succeeded' },
    ], 'a prepare: its state, its instance, its end — in commit order');
    t.equal(watch.frames.length, 3);
    t.ok(watch.frames.every((f, i) => f.type === 'lifecycle' && f.seq === i + 1 && !Number.isNaN(Date.parse(f.ts))), 'seq from 1, commit timestamps');

    t.equal((await del(eng, `/v1/instances/${iA}`)).status, 200);
    t.same((await watch.waitFor((f) => f.data.event === 'instance.deleted', 'instance.deleted')).data, { event: 'instance.deleted', id: iA, state_id: sA });
    t.equal((await del(eng, `/v1/states/${sA}`)).status, 200);
    t.same((await watch.waitFor((f) => f.data.event === 'state.deleted', 'state.deleted')).data, { event: 'state.deleted', id: sA, parent_state_id: null });

    // Eviction: two unused leaf states and a cache limit they fill (as in test/e2e/deletion/eviction.test.ts).
    const leaves: Record<string, string>[] = [];
    const expected = [`state.created ${sA}`, `instance.created ${iA}`, `job.terminal ${oa.jobId}`, `instance.deleted ${iA}`, `state.deleted ${sA}`];
    for (const name of ['b1', 'b2']) {
      const o = await prepare(eng, { psql_args: ['-c', `create table ${name}(x int)`] });
      const r = ok(o);
      t.equal((await del(eng, `/v1/instances/${r['instance_id'] ?? ''}`)).status, 200);
      leaves.push(r);
      expected.push(`state.created ${r['state_id']}`, `instance.created ${r['instance_id']}`, `job.terminal ${o.jobId}`, `instance.deleted ${r['instance_id']}`);
    }
    const usage = (await eng.fetch('/v1/cache/status')).json<{ usage_bytes: number }>().usage_bytes;
    for (const [path, value] of [['cache.capacity.minStateAge', '0s'], ['cache.capacity.maxBytes', usage]] as const) {
      t.equal((await eng.fetch('/v1/config', { method: 'PATCH', body: { path, value } })).status, 200);
    }
    const oc = await prepare(eng, { psql_args: ['-c', 'create table c(x int)'] });
    const c = ok(oc);
    await watch.waitFor((f) => f.data.event === 'job.terminal' && f.data.id === oc.jobId, 'the last job\'s end');
    t.same(watch.frames.slice(0, expected.length).map(brief), expected, 'prepares and deletes, in order');
    const rest = watch.frames.slice(expected.length);
    const evicted = rest.filter((f) => f.data.event === 'state.evicted');
    t.same(evicted[0]?.data, { event: 'state.evicted', id: leaves[0]?.['state_id'], parent_state_id: null }, 'the least recently used state is evicted, and told apart from a delete');
    t.ok(evicted.every((f) => leaves.some((l) => l['state_id'] === f.data.id)), 'only unused leaves are evicted');
    t.same(rest.filter((f) => f.data.event !== 'state.evicted').map(brief), [`state.created ${c['state_id']}`, `instance.created ${c['instance_id']}`, `job.terminal ${oc.jobId}`]);

    const mid = watch.frames[4]?.seq ?? 0; // after state.deleted
    const late = await connectWs(eng);
    late.send({ op: 'subscribe', topic: 'lifecycle', after: mid });
    const tail = await late.next(watch.frames.length - 5);
    t.same(tail, watch.frames.slice(5), 'resumed after a seq: exactly the missed tail, frame for frame');
    await late.close();
    await watch.close();

    t.equal((await eng.fetch('/v1/config?path=cache.capacity.maxBytes', { method: 'DELETE' })).status, 200, 'no cache limit from here on');
    const before = await allLifecycle(eng);
    const k = await eng.kill();
    t.equal(k.signal, 'SIGKILL');
    eng = Object.assign(await startEngine(undefined, { dir, store, idleTimeout: '2m0s' }), { scripts: eng.scripts });
    t.same(await allLifecycle(eng), before, 'after a SIGKILL and restart: the same events, each once');
    const d = ok(await prepare(eng, { psql_args: ['-c', 'create table a(x int)'] }));
    const after = await allLifecycle(eng);
    t.same(after.slice(0, before.length), before);
    t.same(after.slice(before.length).map(brief).slice(0, 2), [`state.created ${d['state_id']}`, `instance.created ${d['instance_id']}`]);
    t.ok(after.every((f, i) => i === 0 || f.seq === (after[i - 1]?.seq ?? 0) + 1), 'numbering continues after the restart');
  });

  t.test('SIGKILLs at random moments while jobs run lose and invent no lifecycle event', async (t) => {
    let eng = await startPrepEngine(t, { keep: true });
    const { dir, store } = eng;
    t.teardown(async () => { await eng.stop().catch(() => {}); wipe(dir, store); });
    const sql = (n: number): string[] => ['-c', `create table t${n}(x int)`, '-c', `insert into t${n} select generate_series(1, 1000)`];
    const ids = [await submit(eng, { psql_args: sql(1) }), await submit(eng, { psql_args: [...sql(1), ...sql(2)] }), await submit(eng, { psql_args: sql(3) })];
    for (let round = 0; round < 3; round++) {
      await new Promise((r) => setTimeout(r, 300 + Math.floor(Math.random() * 1500))); // a random moment, not a wait for something
      await eng.kill();
      eng = Object.assign(await startEngine(undefined, { dir, store, idleTimeout: '2m0s' }), { scripts: eng.scripts });
    }
    for (const id of ids) t.equal((await waitJob(eng, id)).status, 'succeeded');
    const frames = await allLifecycle(eng);
    const count = (event: string, id: string): number => frames.filter((f) => f.data.event === event && f.data.id === id).length;
    const stateRows = await states(eng);
    const instanceRows = await instances(eng);
    for (const s of stateRows) t.equal(count('state.created', s.state_id), 1, `state ${s.state_id.slice(0, 8)}: one state.created`);
    for (const i of instanceRows) t.equal(count('instance.created', i.instance_id), 1, `instance ${i.instance_id.slice(0, 8)}: one instance.created`);
    for (const id of ids) t.equal(count('job.terminal', id), 1, `job ${id.slice(0, 8)}: one job.terminal`);
    t.equal(frames.length, stateRows.length + instanceRows.length + ids.length, 'and no other event');
    t.ok(frames.every((f, i) => f.seq === i + 1), 'dense numbering: nothing was committed and then lost');
  });
}
