/**
 * Crash safety of deletion: the engine is SIGKILLed while a recursive state delete is in progress
 * and restarted on the same store; the deletion resumes and finishes, leaving no container, mount,
 * directory or row — and never a state row without its files once it is done.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { needDocker, startPrepEngine, prepare, mountsUnder, storeContainers, entries, wipe, type JobOutcome } from '../../helpers/prepare.js';
import { startEngine, type EngineProcess } from '../../helpers/engine.js';
import { del, instances, states, until, logLines, stateDirExists } from '../../helpers/del-engine.js';

t.setTimeout(600_000);

function result(o: JobOutcome): Record<string, string> {
  if (o.status !== 'succeeded') throw new Error(`job ${o.jobId} failed: ${JSON.stringify(o.error)}`);
  return o.result ?? {};
}

if (needDocker(t)) {
  t.test('a recursive delete interrupted by SIGKILL is finished cleanly after restart', async (t) => {
    const first = await startPrepEngine(t, { keep: true });
    const dir = first.dir;
    const store = first.store;
    let second: EngineProcess | undefined;
    t.teardown(async () => {
      await first.stop().catch(() => {});
      await second?.stop().catch(() => {});
      wipe(dir, store);
    });

    const a = join(first.scripts, 'a.sql');
    const b = join(first.scripts, 'b.sql');
    writeFileSync(a, 'create table item(id int primary key);\n');
    writeFileSync(b, 'insert into item values (1);\n');
    // sA with four instances, sB (child of sA) with two: six container removals to interrupt.
    const sA = result(await prepare(first, { psql_args: ['-f', a] }))['state_id'] ?? '';
    for (let i = 0; i < 3; i++) result(await prepare(first, { psql_args: ['-f', a] }));
    const sB = result(await prepare(first, { psql_args: ['-f', a, '-f', b] }))['state_id'] ?? '';
    result(await prepare(first, { psql_args: ['-f', a, '-f', b] }));
    const total = (await instances(first)).length;
    t.equal(total, 6);
    const containers = (await instances(first)).map((i) => i.runtime_id ?? '');

    const pending = del(first, `/v1/states/${sA}`, { recurse: 'true' }).catch((e: unknown) => ({ status: 0, error: String(e) }));
    // Kill as soon as the deletion has visibly started but not finished.
    const started = await until(async () => {
      const now = await instances(first).catch(() => undefined);
      return now !== undefined && now.length < total;
    }, 120_000, 20);
    t.ok(started, 'the deletion started');
    await first.kill();
    const answer = await pending;
    t.equal(answer.status, 0, 'the request was cut off by the crash');

    // What the crash left, read from the store while no engine runs.
    const db = new Database(join(store, 'state.db'), { readonly: true });
    const left = {
      states: (db.prepare('SELECT COUNT(*) AS n FROM states').get() as { n: number }).n,
      instances: (db.prepare('SELECT COUNT(*) AS n FROM instances').get() as { n: number }).n,
      deletions: (db.prepare("SELECT COUNT(*) AS n FROM actors WHERE kind = 'delete' AND status = 'active'").get() as { n: number }).n,
    };
    db.close();
    t.ok(left.states > 0, `the crash interrupted the deletion (${JSON.stringify(left)} left)`);
    t.equal(left.deletions, 1, 'the unfinished deletion is recorded');

    second = await startEngine(undefined, { dir, store, idleTimeout: '0', startTimeoutMs: 60_000 });
    const eng = second;

    const finished = await until(async () => (await states(eng)).length === 0 && (await instances(eng)).length === 0, 180_000, 200);
    t.ok(finished, 'the deletion finished after the restart');
    t.ok(logLines(eng, 'resuming deletion from a previous run').length > 0, 'the restarted engine resumed the deletion');
    t.same(await states(eng), [], 'no state row');
    t.same(await instances(eng), [], 'no instance row');
    t.notOk(stateDirExists(eng, sA) || stateDirExists(eng, sB), 'no state directory of the tree');
    t.same(entries(store, 'states').filter((d) => !d.startsWith('.')), [], 'no state directory');
    t.same(entries(store, 'instances'), [], 'no instance directory');
    t.same(storeContainers(store).filter((c) => containers.includes(c)), [], 'no container of the tree');
    t.same(storeContainers(store), [], 'no container of the store');
    t.same(mountsUnder(store), [], 'no mount under the store');
    const health = await eng.fetch('/v1/cache/status');
    t.equal(health.status, 200, 'the engine serves normally');
  });
}
