/**
 * A run left mid-exec by an engine shutdown must not execute again after the restart: its client
 * is gone, so the run is marked failed and forgotten. Real engine child processes on one store, the
 * real Docker daemon and the local PostgreSQL image; skipped without a daemon unless
 * SQLRS_REQUIRE_DOCKER=1.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import {
  REQUIRE_DOCKER, dataOf, dockerProblem, exitCodeOf, openStoreDb, postStream, prepareInstance, run, startRunEngine,
} from '../../helpers/run-engine.js';
import type { EngineProcess } from '../../helpers/engine.js';

t.setTimeout(600_000);

const problem = await dockerProblem();
if (problem !== undefined) {
  if (REQUIRE_DOCKER) t.fail(`SQLRS_REQUIRE_DOCKER=1 but ${problem}`);
  else t.plan(0, problem);
} else {
  t.test('run session interrupted by an engine restart is failed and never runs again', async (t) => {
    const first = await startRunEngine(t, { keepDir: true });
    const id = await prepareInstance(first, ['-c', 'create table t(x int)']);
    const s = await postStream(first, '/v1/runs', { instance_ref: id, kind: 'psql', args: ['-c', 'select pg_sleep(30)'] });
    t.equal((await s.events().next()).value?.event.type, 'start');
    await first.stop();
    await s.ended;

    const second = await startRunEngine(t, { dir: first.dir });
    const sleeping = async (eng: EngineProcess): Promise<string> => {
      const r = await run(eng, { instance_ref: id, kind: 'psql', args: ['-At', '-c', "select count(*) from pg_stat_activity where query like '%pg_sleep(30)%' and pid <> pg_backend_pid()"] });
      t.equal(exitCodeOf(r), 0, r.body);
      return dataOf(r, 'stdout').trim();
    };
    let n = '?';
    for (let i = 0; i < 40 && n !== '0'; i++) {
      n = await sleeping(second);
      if (n !== '0') await delay(250);
    }
    t.equal(n, '0', 'the interrupted query is not running');
    await delay(2000);
    t.equal(await sleeping(second), '0', 'and it was not started again');

    const db = openStoreDb(second);
    t.teardown(() => db.close());
    const left = db.prepare("SELECT actor_id, status FROM actors WHERE actor_id LIKE 'run:%'").all();
    t.same(left, [], 'no run session is left behind');
    t.same(db.prepare("SELECT work_id FROM work WHERE actor_id LIKE 'run:%'").all(), [], 'no run work is left in the outbox');
    const log = readFileSync(second.logPath, 'utf8');
    t.match(log, /"msg":"run failed".*"error":"[^"]*run client is gone"/, 'the engine recorded why the run failed');
  });
}
