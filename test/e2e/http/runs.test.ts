/**
 * `POST /v1/runs` end to end: a real engine child process, the real Docker daemon and the local
 * PostgreSQL image. Two instances are prepared once; the subtests run psql and pgbench against
 * them and check what streams back. Without a daemon the file is skipped, unless
 * SQLRS_REQUIRE_DOCKER=1, where it fails.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import {
  REQUIRE_DOCKER, dataOf, docker, dockerProblem, exitCodeOf, openStoreDb, postStream, prepareInstance, run, startRunEngine,
  type RunResult,
} from '../../helpers/run-engine.js';
import type { EngineProcess } from '../../helpers/engine.js';

t.setTimeout(900_000);

const TS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

const problem = await dockerProblem();
if (problem !== undefined) {
  if (REQUIRE_DOCKER) t.fail(`SQLRS_REQUIRE_DOCKER=1 but ${problem}`);
  else t.plan(0, problem);
} else {
  await suite();
}

function types(r: RunResult): string[] {
  return r.events.map((e) => e.event.type);
}

async function runtimeIdOf(eng: EngineProcess, id: string): Promise<string> {
  const r = await eng.fetch(`/v1/instances/${id}`);
  return r.json<{ runtime_id: string }>().runtime_id;
}

/** psql `-At -c <sql>` on an instance; returns the trimmed stdout after asserting exit 0. */
async function query(eng: EngineProcess, instance: string, sql: string): Promise<string> {
  const r = await run(eng, { instance_ref: instance, kind: 'psql', args: ['-At', '-c', sql] });
  if (r.status !== 200 || exitCodeOf(r) !== 0) throw new Error(`query failed: ${r.status} ${r.body}`);
  return dataOf(r, 'stdout').trim();
}

async function suite(): Promise<void> {
  const eng = await startRunEngine(t);
  const A = await prepareInstance(eng, ['-c', 'create table t(x int)']);
  const B = await prepareInstance(eng, ['-c', 'create table u(y int)']);

  t.test('run psql streams start, stdout and exit 0', async (t) => {
    const r = await run(eng, { instance_ref: A, kind: 'psql', args: ['-c', 'select 1'] });
    t.equal(r.status, 200);
    t.match(r.headers['content-type'], /^application\/x-ndjson/);
    t.same(types(r), ['start', 'stdout', 'exit']);
    t.same(r.events[0]?.event, { type: 'start', ts: r.events[0]?.event['ts'], instance_id: A });
    t.match(dataOf(r, 'stdout'), /^\s+1$/m);
    t.equal(exitCodeOf(r), 0);
    for (const e of r.events) t.match(e.event['ts'], TS, `${e.event.type} has an RFC 3339 timestamp`);
  });

  t.test('run psql kind and instance_ref by name are resolved like the reference', async (t) => {
    const db = openStoreDb(eng);
    t.teardown(() => db.close());
    db.prepare('INSERT INTO names (name, instance_id, image_id) VALUES (?, ?, ?)').run('run-test-name', A, 'img');
    t.teardown(() => { db.prepare('DELETE FROM names WHERE name = ?').run('run-test-name'); });
    const r = await run(eng, { instance_ref: 'run-test-name', kind: '  PSQL ', args: ['-At', '-c', 'select 7'] });
    t.equal(r.status, 200);
    t.equal(r.events[0]?.event['instance_id'], A);
    t.equal(dataOf(r, 'stdout'), '7\n');
  });

  t.test('run psql failing query exits with psql code and its error arrives as stderr', async (t) => {
    const r = await run(eng, { instance_ref: A, kind: 'psql', args: ['-c', 'select 1/0'] });
    t.equal(r.status, 200);
    t.same(types(r), ['start', 'stderr', 'exit']);
    t.match(dataOf(r, 'stderr'), /division by zero/);
    t.equal(exitCodeOf(r), 1);
    const stop = await run(eng, { instance_ref: A, kind: 'psql', args: ['-v', 'ON_ERROR_STOP=1', '-f', '-'], stdin: 'select 1/0;\n' });
    t.equal(stop.status, 200);
    t.match(dataOf(stop, 'stderr'), /ERROR:\s+division by zero/);
    t.equal(exitCodeOf(stop), 3, 'a script error under ON_ERROR_STOP exits 3');
  });

  t.test('run psql feeds stdin to the command', async (t) => {
    const r = await run(eng, { instance_ref: A, kind: 'psql', args: ['-At', '-f', '-'], stdin: 'select 40 + 2;\nselect \'b\';\n' });
    t.equal(r.status, 200);
    t.equal(dataOf(r, 'stdout'), '42\nb\n');
    t.equal(exitCodeOf(r), 0);
  });

  t.test('run psql steps run in order and the first failing step ends the run with its code', async (t) => {
    const ok = await run(eng, {
      instance_ref: A, kind: 'psql', args: [],
      steps: [{ args: ['-At', '-c', 'select 1'] }, { args: ['-At', '-f', '-'], stdin: 'select 2;' }, { args: ['-At', '-c', 'select 3'], stdin: null }],
    });
    t.equal(ok.status, 200);
    t.equal(dataOf(ok, 'stdout'), '1\n2\n3\n');
    t.same(types(ok).filter((x) => x === 'start' || x === 'exit'), ['start', 'exit'], 'one start and one exit for the whole run');
    t.equal(exitCodeOf(ok), 0);

    const bad = await run(eng, {
      instance_ref: A, kind: 'psql',
      steps: [
        { args: ['-At', '-c', 'select 1'] },
        { args: ['-v', 'ON_ERROR_STOP=1', '-f', '-'], stdin: 'select 1/0;' },
        { args: ['-c', 'create table never_made(x int)'] },
      ],
    });
    t.equal(bad.status, 200);
    t.equal(exitCodeOf(bad), 3);
    t.match(dataOf(bad, 'stderr'), /division by zero/);
    t.equal(await query(eng, A, "select to_regclass('never_made') is null"), 't', 'the step after the failing one did not run');
  });

  t.test('run pgbench streams progress while it runs and does not run in debug mode', async (t) => {
    const init = await run(eng, { instance_ref: A, kind: 'pgbench', args: ['-i', '-q'] });
    t.equal(init.status, 200);
    t.equal(exitCodeOf(init), 0, dataOf(init, 'stderr'));
    const r = await run(eng, { instance_ref: A, kind: 'pgbench', args: ['-T', '5', '-P', '1', '-c', '2'] });
    t.equal(r.status, 200);
    t.equal(exitCodeOf(r), 0, dataOf(r, 'stderr'));
    const exit = r.events.find((e) => e.event.type === 'exit');
    const progress = r.events.find((e) => /progress: /.test(String(e.event['data'] ?? '')));
    t.ok(progress, 'a progress line was streamed');
    if (exit && progress) t.ok(exit.at - progress.at >= 2000, `progress arrived ${exit.at - progress.at} ms before the exit`);
    t.match(dataOf(r, 'stdout'), /tps = /);
    t.notMatch(`${dataOf(r, 'stdout')}${dataOf(r, 'stderr')}`, /pghost:/, 'no debug output');
  });

  t.test('run psql delivers 10 MB of output complete in events of at most 16 KiB', async (t) => {
    const r = await run(eng, { instance_ref: A, kind: 'psql', args: ['-At', '-c', "select repeat('x', 1000) from generate_series(1, 10000)"] });
    t.equal(r.status, 200);
    t.equal(exitCodeOf(r), 0);
    const out = r.events.filter((e) => e.event.type === 'stdout');
    const sizes = out.map((e) => Buffer.byteLength(String(e.event['data'])));
    t.ok(sizes.every((n) => n <= 16 * 1024), `largest event ${Math.max(...sizes)} bytes`);
    t.ok(out.length >= 611, `${out.length} events`);
    const text = dataOf(r, 'stdout');
    t.equal(text.length, 1001 * 10000);
    t.ok(text === `${'x'.repeat(1000)}\n`.repeat(10000), 'the output is complete and in order');
    t.ok(r.body.split('\n').every((l) => Buffer.byteLength(l) <= 64 * 1024), 'every line fits a 64 KiB line reader');
  });

  t.test('a slow client pauses the command instead of the engine buffering its output', async (t) => {
    const rows = 50_000;
    const s = await postStream(eng, '/v1/runs', { instance_ref: A, kind: 'psql', args: ['-At', '-c', `select repeat('x', 1000) from generate_series(1, ${rows})`] });
    t.equal(s.status, 200);
    s.pause();
    await delay(3000);
    const cid = await runtimeIdOf(eng, A);
    const top = await docker.getContainer(cid).top({ ps_args: '-eo pid,args' }) as { Processes?: string[][] };
    t.ok((top.Processes ?? []).some((p) => p.join(' ').includes('generate_series')), 'psql is still writing, held back by the unread output');
    s.resume();
    let bytes = 0;
    let lines = 0;
    let exit: number | undefined;
    for await (const e of s.events()) {
      if (e.event.type === 'stdout') {
        const d = String(e.event['data']);
        bytes += d.length;
        for (let i = d.indexOf('\n'); i >= 0; i = d.indexOf('\n', i + 1)) lines++;
      }
      if (e.event.type === 'exit') exit = Number(e.event['exit_code']);
    }
    t.equal(exit, 0);
    t.equal(lines, rows, 'every row arrived');
    t.equal(bytes, rows * 1001, 'every byte arrived');
  });

  t.test('run on an instance whose container was removed recreates it and keeps the data', async (t) => {
    await query(eng, A, 'insert into t values (7)');
    const before = await runtimeIdOf(eng, A);
    await docker.getContainer(before).remove({ force: true });
    const r = await run(eng, { instance_ref: A, kind: 'psql', args: ['-At', '-c', 'select x from t'] });
    t.equal(r.status, 200);
    t.same(types(r), ['log', 'log', 'log', 'start', 'stdout', 'exit']);
    t.same(r.events.slice(0, 3).map((e) => e.event['data']), ['run: container missing - recreating', 'run: restoring runtime', 'run: container started']);
    t.equal(dataOf(r, 'stdout'), '7\n', 'the data survived');
    const after = await runtimeIdOf(eng, A);
    t.not(after, before, 'runtime_id was updated');
    const info = await docker.getContainer(after).inspect();
    t.equal(info.Name, `/sqlrs-run-${A}`);
    t.equal(info.Config.Labels['dev.sqlrs.instance'], A);
    t.ok(info.Config.Labels['dev.sqlrs.store'], 'labelled with the store');
    t.equal(await query(eng, A, 'select 1'), '1', 'later runs use the new container without recovery');
  });

  t.test('run recreates a stale sqlrs-run container and remounts unmounted instance data', async (t) => {
    const dir = join(eng.store, 'instances', A);
    const overlay = existsSync(join(dir, 'lowers.json'));
    const before = await runtimeIdOf(eng, A);
    await docker.getContainer(before).stop({ t: 0 }); // stopped, not removed: the name is still taken
    if (overlay) execFileSync('umount', [join(dir, 'merged')]);
    const r = await run(eng, { instance_ref: A, kind: 'psql', args: ['-At', '-c', 'select x from t'] });
    t.equal(r.status, 200, r.body);
    t.equal(types(r)[0], 'log');
    t.equal(dataOf(r, 'stdout'), '7\n', overlay ? 'the overlay was mounted again' : 'the data is there');
    t.not(await runtimeIdOf(eng, A), before);
    await t.rejects(docker.getContainer(before).inspect(), 'the stale container was removed');
    if (overlay) {
      const mounted = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === join(dir, 'merged'));
      t.ok(mounted, 'merged is mounted again');
    } else {
      t.comment('the store does not use the overlay backend: no remount to check');
    }
  });

  t.test('client disconnect kills the command and ends its query', async (t) => {
    const s = await postStream(eng, '/v1/runs', { instance_ref: A, kind: 'psql', args: ['-c', 'select pg_sleep(30)'] });
    t.equal(s.status, 200);
    const it = s.events();
    const first = await it.next();
    t.equal(first.value?.event.type, 'start');
    const cid = await runtimeIdOf(eng, A);
    const sql = "select count(*) from pg_stat_activity where query like '%pg_sleep(30)%' and pid <> pg_backend_pid()";
    // Disconnect once the query really runs on the server.
    let running = '0';
    for (let i = 0; i < 80 && running === '0'; i++) {
      running = await query(eng, A, sql);
      if (running === '0') await delay(250);
    }
    t.equal(running, '1', 'the query is running before the client goes away');
    s.close();
    let left = '?';
    for (let i = 0; i < 40; i++) {
      left = await query(eng, A, sql);
      if (left === '0') break;
      await delay(250);
    }
    t.equal(left, '0', 'no pg_sleep backend remains');
    const top = await docker.getContainer(cid).top({ ps_args: '-eo pid,args' }) as { Processes?: string[][] };
    t.notOk((top.Processes ?? []).some((p) => p.join(' ').includes('pg_sleep')), 'no psql process remains');
  });

  t.test('many concurrent runs on one instance and across instances all succeed', async (t) => {
    const jobs = [
      ...Array.from({ length: 6 }, (_, i) => ({ inst: A, n: i })),
      ...Array.from({ length: 3 }, (_, i) => ({ inst: B, n: 100 + i })),
    ];
    const results = await Promise.all(jobs.map((j) => run(eng, { instance_ref: j.inst, kind: 'psql', args: ['-At', '-c', `select ${j.n}, pg_sleep(0.5)`] })));
    results.forEach((r, i) => {
      const j = jobs[i];
      t.equal(r.status, 200);
      t.equal(exitCodeOf(r), 0);
      t.equal(r.events[0]?.event['instance_id'], j?.inst);
      t.equal(dataOf(r, 'stdout'), `${j?.n}|\n`);
    });
  });

  t.test('run validation errors are HTTP errors with the exact bodies', async (t) => {
    const db = openStoreDb(eng);
    t.teardown(() => db.close());
    const fake = (id: string, runtimeId: string | null, dir: string | null, deleting: number): void => {
      db.prepare(`INSERT INTO instances (instance_id, state_id, image_id, created_at, runtime_id, runtime_dir, deleting)
        VALUES (?, 's', 'img', '2026-01-01T00:00:00Z', ?, ?, ?)`).run(id, runtimeId, dir, deleting);
      t.teardown(() => { db.prepare('DELETE FROM instances WHERE instance_id = ?').run(id); });
    };
    const noRuntime = 'a'.repeat(32);
    const deleting = 'b'.repeat(32);
    const noDir = 'c'.repeat(32);
    fake(noRuntime, null, null, 0);
    fake(deleting, 'feedface', '/nonexistent', 1);
    fake(noDir, 'feedfacefeedface', '/nonexistent/sqlrs-run-test', 0);

    const cases: [string, unknown, number, unknown][] = [
      ['empty body', '', 400, { code: 'invalid_argument', message: 'invalid json payload', details: 'EOF' }],
      ['malformed JSON', '{"instance_ref":', 400, { code: 'invalid_argument', message: 'invalid json payload' }],
      ['instance_ref of the wrong type', { instance_ref: 5, kind: 'psql' }, 400, { code: 'invalid_argument', message: 'invalid json payload' }],
      ['args of the wrong type', { instance_ref: A, kind: 'psql', args: 'select 1' }, 400, { code: 'invalid_argument', message: 'invalid json payload' }],
      ['missing instance_ref', { kind: 'psql', args: [] }, 400, { code: 'invalid_argument', message: 'instance_ref is required' }],
      ['blank instance_ref', { instance_ref: '  ', kind: 'nope' }, 400, { code: 'invalid_argument', message: 'instance_ref is required' }],
      ['unknown kind', { instance_ref: 'x', kind: 'mysql' }, 400, { code: 'invalid_argument', message: 'unknown run kind' }],
      ['unknown instance id', { instance_ref: '0'.repeat(32), kind: 'psql', args: ['-h', 'x'] }, 404, { code: 'not_found', message: 'instance not found' }],
      ['unknown instance name', { instance_ref: 'no-such-name', kind: 'psql' }, 404, { code: 'not_found', message: 'instance not found' }],
      ['instance without a runtime id', { instance_ref: noRuntime, kind: 'psql', args: ['-h', 'x'] }, 409, { code: 'conflict', message: 'instance runtime id is missing' }],
      ['psql -h', { instance_ref: A, kind: 'psql', args: ['-h', 'x'] }, 409, { code: 'conflict', message: 'conflicting psql connection arguments' }],
      ['psql glued -p', { instance_ref: A, kind: 'psql', args: ['-c', 'select 1', '-p5433'] }, 409, { code: 'conflict', message: 'conflicting psql connection arguments' }],
      ['psql --dbname=', { instance_ref: A, kind: 'psql', args: ['--dbname=x'] }, 409, { code: 'conflict', message: 'conflicting psql connection arguments' }],
      ['psql URI', { instance_ref: A, kind: 'psql', args: ['postgres://u@h/db'] }, 409, { code: 'conflict', message: 'conflicting psql connection arguments' }],
      ['pgbench -U', { instance_ref: A, kind: 'pgbench', args: ['-U', 'x'] }, 409, { code: 'conflict', message: 'conflicting pgbench connection arguments' }],
      ['pgbench glued -d', { instance_ref: A, kind: 'pgbench', args: ['-dfoo'] }, 409, { code: 'conflict', message: 'conflicting pgbench connection arguments' }],
      ['conflict before steps rules', { instance_ref: A, kind: 'pgbench', args: ['-h', 'x'], steps: [{ args: [] }] }, 409, { code: 'conflict', message: 'conflicting pgbench connection arguments' }],
      ['steps for pgbench', { instance_ref: A, kind: 'pgbench', steps: [{ args: ['-i'] }] }, 400, { code: 'invalid_argument', message: 'steps are only supported for run:psql' }],
      ['steps with args', { instance_ref: A, kind: 'psql', args: ['-c', 'select 1'], steps: [{ args: [] }] }, 400, { code: 'invalid_argument', message: 'steps cannot be combined with args' }],
      ['steps with stdin', { instance_ref: A, kind: 'psql', stdin: '', steps: [{ args: [] }] }, 400, { code: 'invalid_argument', message: 'steps cannot be combined with stdin' }],
      ['a step with a connection argument', { instance_ref: A, kind: 'psql', steps: [{ args: ['-c', 'select 1'] }, { args: ['-Ux'] }] }, 409, { code: 'conflict', message: 'conflicting psql connection arguments' }],
      ['instance being deleted', { instance_ref: deleting, kind: 'psql', args: [] }, 409, { code: 'conflict', message: 'instance is being deleted' }],
      ['missing data directory', { instance_ref: noDir, kind: 'psql', args: ['-c', 'select 1'] }, 409, { code: 'conflict', message: 'instance runtime_dir is missing', details: '/nonexistent/sqlrs-run-test' }],
    ];
    for (const [name, body, status, want] of cases) {
      const r = await eng.fetch('/v1/runs', { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
      t.equal(r.status, status, `${name}: status`);
      t.match(r.headers['content-type'], /^application\/json/, `${name}: JSON`);
      const got = r.json<Record<string, unknown>>();
      if (typeof body === 'string' || name.includes('wrong type')) {
        t.match(got, want, `${name}: body`);
        t.type(got['details'], 'string', `${name}: details`);
      } else {
        t.same(got, want, `${name}: body`);
      }
    }
    t.equal((await eng.fetchRaw('/v1/runs', { method: 'POST', body: '{}' })).status, 401, 'no token: 401');
    // GET lists active runs (an engine extension); other methods are refused.
    const put = await eng.fetch('/v1/runs', { method: 'PUT' });
    t.equal(put.status, 405);
    t.equal(put.body, '');
  });

  t.test('run on an instance deleted mid-run ends with an error event', async (t) => {
    const s = await postStream(eng, '/v1/runs', { instance_ref: B, kind: 'psql', args: ['-c', 'select pg_sleep(30)'] });
    const it = s.events();
    t.equal((await it.next()).value?.event.type, 'start');
    const del = await eng.fetch(`/v1/instances/${B}?force=true`, { method: 'DELETE', timeoutMs: 120_000 });
    if (del.status === 404 || del.status === 405) {
      s.close();
      t.comment(`instance deletion is not available (${del.status}); nothing to check`);
      return;
    }
    t.equal(del.status, 200, del.body);
    const rest: string[] = [];
    let last: Record<string, unknown> | undefined;
    for await (const e of it) { rest.push(e.event.type); last = e.event; }
    t.equal(rest[rest.length - 1], 'error', `events after start: ${rest.join(',')}`);
    t.match(last, { error: { code: 'conflict', message: 'instance is being deleted' } });
    const again = await eng.fetch('/v1/runs', { method: 'POST', body: { instance_ref: B, kind: 'psql' } });
    t.equal(again.status, 404);
  });
}
