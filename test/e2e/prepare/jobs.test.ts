import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needDocker, startPrepEngine, submit, waitJob, prepare, psqlAt } from '../../helpers/prepare.js';

if (needDocker(t)) {
  t.test('job retention and deletion', async (t) => {
    const eng = await startPrepEngine(t, { backend: 'overlay' });
    const f = join(eng.scripts, 'r.sql');
    writeFileSync(f, 'create table kept(x int);\n');

    t.test('retention keeps the newest identical jobs and never touches instances', async (t) => {
      t.equal((await eng.fetch('/v1/config', { method: 'PATCH', body: { path: 'orchestrator.jobs.maxIdentical', value: 1 } })).status, 200);
      const first = await prepare(eng, { psql_args: ['-f', f] });
      const second = await prepare(eng, { psql_args: ['-f', f] });
      t.equal(first.status, 'succeeded');
      t.equal(second.status, 'succeeded');
      t.equal((await eng.fetch(`/v1/prepare-jobs/${first.jobId}`)).status, 404, 'the older job was trimmed');
      t.equal((await eng.fetch(`/v1/prepare-jobs/${second.jobId}`)).status, 200);
      t.equal(psqlAt(first.result?.['dsn'] ?? '', 'select count(*) from kept'), '0', "the trimmed job's instance still works");
      const plan = await prepare(eng, { psql_args: ['-f', f], plan_only: true });
      t.equal((await eng.fetch(`/v1/prepare-jobs/${plan.jobId}`)).status, 200, 'plan-only jobs have their own signature');
      t.equal((await eng.fetch(`/v1/prepare-jobs/${second.jobId}`)).status, 200);
      await eng.fetch('/v1/config?path=orchestrator.jobs.maxIdentical', { method: 'DELETE' });
    });

    t.test('deleting a running job is blocked unless forced', async (t) => {
      const id = await submit(eng, { psql_args: ['-c', 'select pg_sleep(60)'] });
      const s = await eng.stream(`/v1/prepare-jobs/${id}/events`, { timeoutMs: 120_000 });
      for await (const line of s.lines()) if (line.includes('"psql: start"')) break;
      s.close();
      const dry = await eng.fetch(`/v1/prepare-jobs/${id}?dry_run=true`, { method: 'DELETE' });
      t.equal(dry.status, 200);
      t.same(dry.json(), { dry_run: true, outcome: 'blocked', root: { kind: 'job', id, blocked: 'active_tasks' } });
      const blocked = await eng.fetch(`/v1/prepare-jobs/${id}`, { method: 'DELETE' });
      t.equal(blocked.status, 409);
      const forced = await eng.fetch(`/v1/prepare-jobs/${id}?force=true`, { method: 'DELETE', timeoutMs: 120_000 });
      t.equal(forced.status, 200);
      t.same(forced.json(), { dry_run: false, outcome: 'deleted', root: { kind: 'job', id } });
      t.equal((await eng.fetch(`/v1/prepare-jobs/${id}`)).status, 404);
      const gone = await eng.fetch(`/v1/prepare-jobs/${id}`, { method: 'DELETE' });
      t.equal(gone.status, 404);
      t.same(gone.json(), { code: 'not_found', message: 'job not found' });
      t.same((await eng.fetch(`/v1/tasks?job=${id}`)).json(), [], 'tasks went with the job');
    });

    t.test('a finished job can be deleted and dry runs change nothing', async (t) => {
      const o = await waitJob(eng, await submit(eng, { psql_args: ['-f', f], plan_only: true }));
      const dry = await eng.fetch(`/v1/prepare-jobs/${o.jobId}?dry_run=1`, { method: 'DELETE' });
      t.same(dry.json(), { dry_run: true, outcome: 'would_delete', root: { kind: 'job', id: o.jobId } });
      t.equal((await eng.fetch(`/v1/prepare-jobs/${o.jobId}`)).status, 200);
      t.equal((await eng.fetch(`/v1/prepare-jobs/${o.jobId}`, { method: 'DELETE' })).status, 200);
      t.equal((await eng.fetch(`/v1/prepare-jobs/${o.jobId}/events`)).status, 404);
    });

    t.test('a script changed while its job runs fails the step instead of caching the wrong content', async (t) => {
      const g = join(eng.scripts, 'drift.sql');
      writeFileSync(g, 'create table drift(x int);\n');
      const id = await submit(eng, { psql_args: ['-c', 'select pg_sleep(2)', '-f', g] });
      const s = await eng.stream(`/v1/prepare-jobs/${id}/events`, { timeoutMs: 120_000 });
      for await (const line of s.lines()) if (line.includes('"psql: start"')) break;
      s.close();
      writeFileSync(g, 'create table drifted(x int);\n');
      const o = await waitJob(eng, id);
      t.equal(o.status, 'failed');
      t.equal(o.error?.code, 'invalid_argument');
      t.equal(o.error?.message, 'psql inputs changed while the job was running');
      t.match(o.error?.details ?? '', /drift\.sql/);
      const again = await prepare(eng, { psql_args: ['-c', 'select pg_sleep(2)', '-f', g] });
      t.equal(again.status, 'succeeded', 'a new job with the new content works');
      t.equal(psqlAt(again.result?.['dsn'] ?? '', "select count(*) from pg_tables where tablename = 'drifted'"), '1');
    });

    t.test('deleting a finished job removes its rows but never its instance or states', async (t) => {
      const o = await prepare(eng, { psql_args: ['-f', f] });
      t.equal(o.status, 'succeeded');
      const states = (await eng.fetch('/v1/states')).json<unknown[]>().length;
      const del = await eng.fetch(`/v1/prepare-jobs/${o.jobId}`, { method: 'DELETE' });
      t.equal(del.status, 200);
      t.same(del.json(), { dry_run: false, outcome: 'deleted', root: { kind: 'job', id: o.jobId } });
      t.same((await eng.fetch(`/v1/tasks?job=${o.jobId}`)).json(), []);
      t.equal((await eng.fetch(`/v1/instances/${o.result?.['instance_id'] ?? ''}`)).status, 200, 'the instance is still listed');
      t.equal(psqlAt(o.result?.['dsn'] ?? '', 'select count(*) from kept'), '0', 'and still answers');
      t.equal((await eng.fetch('/v1/states')).json<unknown[]>().length, states, 'no state was removed');
    });

    t.test('many readers of one job stream the same events', async (t) => {
      const id = await submit(eng, { psql_args: ['-f', f, '-c', 'select pg_sleep(1)'] });
      const outs = await Promise.all(Array.from({ length: 5 }, () => waitJob(eng, id)));
      const ref = JSON.stringify(outs[0]?.events);
      for (const o of outs) t.equal(JSON.stringify(o.events), ref);
      t.equal(outs[0]?.status, 'succeeded');
    });
  });
}
