import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEngine } from '../../helpers/engine.js';
import { needDocker, startPrepEngine, submit, waitJob, prepare, psqlAt, wipe } from '../../helpers/prepare.js';
import { assertNoOrphans } from '../../helpers/prepare-suite.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

if (needDocker(t)) {
  t.test('a SIGKILL mid-step is followed, after restart, by the job finishing with nothing orphaned', async (t) => {
    let eng = await startPrepEngine(t, { backend: 'overlay', keep: true });
    const { dir, store } = eng;
    t.teardown(async () => { await eng.stop().catch(() => {}); wipe(dir, store); });
    const a = join(eng.scripts, 'a.sql');
    writeFileSync(a, 'create table r(x int);\ninsert into r values (1);\n');
    const id = await submit(eng, { psql_args: ['-f', a, '-c', 'select pg_sleep(3); insert into r values (2)'] });
    const s = await eng.stream(`/v1/prepare-jobs/${id}/events`, { timeoutMs: 120_000 });
    let seen = 0;
    for await (const line of s.lines()) {
      if (line.includes('"psql: start"') && ++seen === 2) break; // inside the second step
    }
    s.close();
    const k = await eng.kill();
    t.equal(k.signal, 'SIGKILL');
    eng = Object.assign(await startEngine(undefined, { dir, store, idleTimeout: '2m0s' }), { scripts: eng.scripts });
    const o = await waitJob(eng, id);
    t.equal(o.status, 'succeeded', JSON.stringify(o.error ?? ''));
    t.equal(psqlAt(o.result?.['dsn'] ?? '', 'select count(*) from r'), '2');
    const log = (await import('node:fs')).readFileSync(eng.logPath, 'utf8');
    t.match(log, /removing orphaned container/, 'the crashed runtime container was reaped');
    await assertNoOrphans(t, eng);
  });

  t.test('repeated SIGKILLs at random moments never lose or corrupt a job', async (t) => {
    let eng = await startPrepEngine(t, { backend: 'copy', keep: true });
    const { dir, store } = eng;
    t.teardown(async () => { await eng.stop().catch(() => {}); wipe(dir, store); });
    const files = [0, 1, 2].map((i) => {
      const f = join(eng.scripts, `s${i}.sql`);
      writeFileSync(f, `create table t${i}(x int);\ninsert into t${i} select generate_series(1, 1000);\n`);
      return f;
    });
    const args = files.flatMap((f) => ['-f', f]);
    const ids = [await submit(eng, { psql_args: args }), await submit(eng, { psql_args: ['-f', files[0] ?? '', '-c', 'select 1'] })];
    for (let round = 0; round < 3; round++) {
      await sleep(300 + Math.floor(Math.random() * 1500));
      await eng.kill();
      eng = Object.assign(await startEngine(undefined, { dir, store, idleTimeout: '2m0s' }), { scripts: eng.scripts });
    }
    for (const id of ids) {
      const o = await waitJob(eng, id);
      t.equal(o.status, 'succeeded', `job ${id}: ${JSON.stringify(o.error ?? '')}`);
      const terminal = o.events.filter((e) => e.type === 'status' && (e.status === 'succeeded' || e.status === 'failed'));
      t.equal(terminal.length, 1, 'exactly one terminal status event');
      t.equal(o.events.filter((e) => e.type === 'result').length, 1, 'exactly one result event');
    }
    const again = await prepare(eng, { psql_args: args });
    t.equal(again.status, 'succeeded');
    t.same(again.events.filter((e) => e.type === 'task' && e.status === 'running').map((e) => e.task_id), ['plan', 'resolve-image', 'prepare-instance'], 'every state survived the crashes');
    t.equal(psqlAt(again.result?.['dsn'] ?? '', 'select count(*) from t2'), '1000');
    await assertNoOrphans(t, eng);
  });
}
