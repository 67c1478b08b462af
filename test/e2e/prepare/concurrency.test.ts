import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needDocker, startPrepEngine, submit, waitJob, prepare, psqlAt, type JobOutcome } from '../../helpers/prepare.js';
import { assertNoOrphans } from '../../helpers/prepare-suite.js';

function span(o: JobOutcome, task: string): [number, number] {
  const run = o.events.find((e) => e.type === 'task' && e.task_id === task && e.status === 'running');
  const end = o.events.find((e) => e.type === 'task' && e.task_id === task && e.status !== 'running');
  return [Date.parse(run?.ts ?? ''), Date.parse(end?.ts ?? '')];
}

if (needDocker(t)) {
  t.test('concurrent prepares', async (t) => {
    const eng = await startPrepEngine(t, { backend: 'overlay' });
    const base = join(eng.scripts, 'base.sql');
    writeFileSync(base, 'create table k(x int);\n');
    // Warm the base image first so the timings below are about steps.
    t.equal((await prepare(eng, { psql_args: ['-f', base] })).status, 'succeeded');

    t.test('two jobs that need the same missing state share one build', async (t) => {
      const f = join(eng.scripts, 'shared.sql');
      writeFileSync(f, 'select pg_sleep(2);\ninsert into k values (1);\n');
      const ids = await Promise.all([submit(eng, { psql_args: ['-f', base, '-f', f] }), submit(eng, { psql_args: ['-f', base, '-f', f] })]);
      const [a, b] = await Promise.all(ids.map((id) => waitJob(eng, id)));
      t.equal(a?.status, 'succeeded');
      t.equal(b?.status, 'succeeded');
      const builds = [a, b].filter((o) => o?.events.some((e) => e.message === 'psql: start')).length;
      t.equal(builds, 1, 'psql ran in exactly one of the jobs');
      t.ok([a, b].some((o) => o?.events.some((e) => /waiting for a concurrent build/.test(e.message ?? ''))), 'the other job waited for it');
      t.equal(a?.result?.['state_id'], b?.result?.['state_id']);
      t.not(a?.result?.['instance_id'], b?.result?.['instance_id'], 'each job gets its own instance');
      t.equal(psqlAt(a?.result?.['dsn'] ?? '', 'select count(*) from k'), '1');
      t.equal(psqlAt(b?.result?.['dsn'] ?? '', 'select count(*) from k'), '1');
    });

    t.test('jobs that need different states build in parallel', async (t) => {
      const f1 = join(eng.scripts, 'p1.sql');
      const f2 = join(eng.scripts, 'p2.sql');
      writeFileSync(f1, "select pg_sleep(3);\ninsert into k values (11);\n");
      writeFileSync(f2, "select pg_sleep(3);\ninsert into k values (22);\n");
      const ids = await Promise.all([submit(eng, { psql_args: ['-f', base, '-f', f1] }), submit(eng, { psql_args: ['-f', base, '-f', f2] })]);
      const [a, b] = await Promise.all(ids.map((id) => waitJob(eng, id)));
      t.equal(a?.status, 'succeeded');
      t.equal(b?.status, 'succeeded');
      const [a0, a1] = span(a!, 'execute-1');
      const [b0, b1] = span(b!, 'execute-1');
      t.ok(a0 < b1 && b0 < a1, `the two builds overlapped in time (a ${a0}-${a1}, b ${b0}-${b1})`);
    });

    t.test('many warm prepares at once each get a working instance', async (t) => {
      const n = 6;
      const ids = await Promise.all(Array.from({ length: n }, () => submit(eng, { psql_args: ['-f', base] })));
      const outs = await Promise.all(ids.map((id) => waitJob(eng, id)));
      t.same(outs.map((o) => o.status), Array(n).fill('succeeded'));
      const inst = new Set(outs.map((o) => o.result?.['instance_id']));
      t.equal(inst.size, n, 'distinct instances');
      for (const o of outs) t.equal(psqlAt(o.result?.['dsn'] ?? '', 'select count(*) from k'), '0');
      await assertNoOrphans(t, eng);
    });
  });
}
