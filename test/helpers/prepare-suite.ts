/**
 * The prepare suite every snapshot backend must pass, against a real engine, the real Docker
 * daemon and the real PostgreSQL image.
 */
import { writeFileSync, existsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import {
  startPrepEngine, prepare, submit, waitJob, psqlAt, entries, ranTasks, storeContainers, mountsUnder,
  type PrepEngine, type JobOutcome,
} from './prepare.js';

export interface SuiteOptions {
  backend: 'copy' | 'overlay' | 'btrfs';
  /** Directory for the engine (must be on btrfs for the btrfs backend). */
  dir?: string;
}

function liveInstances(eng: PrepEngine): Promise<{ instance_id: string; runtime_id: string; state_id: string }[]> {
  return eng.fetch('/v1/instances').then((r) => r.json());
}

/** Asserts the store holds nothing that no record owns. */
export async function assertNoOrphans(t: Test, eng: PrepEngine): Promise<void> {
  const inst = await liveInstances(eng);
  const ids = new Set(inst.map((i) => i.instance_id));
  const runtimeIds = new Set(inst.map((i) => i.runtime_id));
  t.same(storeContainers(eng.store).filter((c) => !runtimeIds.has(c)), [], 'every container belongs to an instance');
  t.same(entries(eng.store, 'instances').filter((d) => !ids.has(d)), [], 'every instance directory belongs to an instance');
  t.same(mountsUnder(eng.store).filter((m) => ![...ids].some((id) => m.includes(`/instances/${id}/`))), [], 'every mount belongs to an instance');
  t.same(entries(eng.store, 'states').filter((d) => d.startsWith('.tmp-')), [], 'no partial snapshot is left');
  const states: { state_id: string }[] = (await eng.fetch('/v1/states')).json();
  t.same(entries(eng.store, 'states').filter((d) => !d.startsWith('.')).sort(), states.map((s) => s.state_id).sort(), 'state directories match state rows');
}

function ok(t: Test, o: JobOutcome): Record<string, string> {
  t.equal(o.status, 'succeeded', `job ${o.jobId} succeeded ${o.error ? JSON.stringify(o.error) : ''}`);
  return o.result ?? {};
}

export function prepareSuite(t: Test, opts: SuiteOptions): void {
  let eng: PrepEngine;
  let a: string;
  let b: string;

  t.before(async () => {
    eng = await startPrepEngine(t, { backend: opts.backend, ...(opts.dir ? { dir: opts.dir } : {}) });
    a = join(eng.scripts, 'schema.sql');
    b = join(eng.scripts, 'data.sql');
    writeFileSync(a, 'create table item(id int primary key, name text not null);\n');
    writeFileSync(join(eng.scripts, 'more.sql'), "insert into item values (3, 'c');\n");
    writeFileSync(b, "insert into item values (1, 'a'), (2, 'b');\n\\i more.sql\n");
  });

  t.test(`${opts.backend}: a multi-step prepare builds one state per step and returns a working instance`, async (t) => {
    const o = await prepare(eng, { psql_args: ['-f', a, '-f', b] });
    const r = ok(t, o);
    t.match(r['dsn'], /^postgres:\/\/sqlrs@127\.0\.0\.1:\d+\/postgres$/);
    t.equal(psqlAt(r['dsn'] ?? '', 'select count(*) from item'), '3', 'both files and the include were applied');
    t.same(ranTasks(o), ['plan', 'resolve-image', 'execute-0', 'execute-1', 'prepare-instance']);
    const states: { state_id: string; parent_state_id?: string }[] = (await eng.fetch('/v1/states')).json();
    t.equal(states.length, 2, 'one state per step');
    const leaf = states.find((s) => s.state_id === r['state_id']);
    t.ok(leaf?.parent_state_id, 'the second state chains on the first');
    const status = (await eng.fetch(`/v1/prepare-jobs/${o.jobId}`)).json<{ backend?: string; tasks: { type: string; cached?: boolean }[] }>();
    t.same(status.tasks.filter((x) => x.type === 'state_execute').map((x) => x.cached), [false, false]);
  });

  t.test(`${opts.backend}: an identical prepare hits the cache for every step and returns a new instance`, async (t) => {
    const first = (await liveInstances(eng)).map((i) => i.instance_id);
    const o = await prepare(eng, { psql_args: ['-f', a, '-f', b] });
    const r = ok(t, o);
    t.same(ranTasks(o), ['plan', 'resolve-image', 'prepare-instance'], 'no step ran');
    t.notOk(first.includes(r['instance_id'] ?? ''), 'a new instance');
    t.equal(psqlAt(r['dsn'] ?? '', 'select count(*) from item'), '3');
    psqlAt(r['dsn'] ?? '', "insert into item values (9, 'z')");
    const other = (await liveInstances(eng)).find((i) => i.instance_id === first[0]);
    t.ok(other, 'the first instance still exists');
    t.equal(((await eng.fetch('/v1/states')).json<unknown[]>()).length, 2, 'no new state');
  });

  t.test(`${opts.backend}: changing the second file reuses the first step`, async (t) => {
    writeFileSync(join(eng.scripts, 'data2.sql'), "insert into item values (1, 'x');\n");
    const o = await prepare(eng, { psql_args: ['-f', a, '-f', join(eng.scripts, 'data2.sql')] });
    const r = ok(t, o);
    t.same(ranTasks(o), ['plan', 'resolve-image', 'execute-1', 'prepare-instance'], 'only the changed step ran');
    t.equal(psqlAt(r['dsn'] ?? '', 'select name from item'), 'x');
    t.equal(((await eng.fetch('/v1/states')).json<unknown[]>()).length, 3);
  });

  t.test(`${opts.backend}: a failing statement fails its step with the psql output`, async (t) => {
    writeFileSync(join(eng.scripts, 'bad.sql'), 'insert into item values (1);\nselect no_such_function();\ncreate table never(x int);\n');
    const o = await prepare(eng, { psql_args: ['-f', a, '-f', join(eng.scripts, 'bad.sql')] });
    t.equal(o.status, 'failed');
    t.equal(o.error?.code, 'internal_error');
    t.equal(o.error?.message, 'psql execution failed');
    t.match(o.error?.details ?? '', /ERROR:.*(null value|no_such_function)/, 'the psql error text is in the details');
    const failed = o.events.find((e) => e.type === 'task' && e.status === 'failed');
    t.equal(failed?.task_id, 'execute-1');
    t.equal(((await eng.fetch('/v1/states')).json<unknown[]>()).length, 3, 'nothing half-made is kept');
    await assertNoOrphans(t, eng);
  });

  t.test(`${opts.backend}: cancelling mid-step leaves no container, mount or partial state`, async (t) => {
    const id = await submit(eng, { psql_args: ['-f', a, '-c', 'select pg_sleep(60)'] });
    const s = await eng.stream(`/v1/prepare-jobs/${id}/events`, { timeoutMs: 120_000 });
    for await (const line of s.lines()) {
      if (line.includes('"psql: start"')) break;
    }
    s.close();
    const c = await eng.fetch(`/v1/prepare-jobs/${id}/cancel`, { method: 'POST' });
    t.equal(c.status, 202);
    const o = await waitJob(eng, id);
    t.equal(o.status, 'failed');
    t.same(o.error, { code: 'cancelled', message: 'task cancelled' });
    t.equal(((await eng.fetch('/v1/states')).json<unknown[]>()).length, 3, 'no state for the cancelled step');
    await assertNoOrphans(t, eng);
    const again = await eng.fetch(`/v1/prepare-jobs/${id}/cancel`, { method: 'POST' });
    t.equal(again.status, 200, 'cancel of a finished job is a no-op');
  });

  t.test(`${opts.backend}: a cached state whose files are gone is invalidated and rebuilt`, async (t) => {
    const states: { state_id: string; parent_state_id?: string }[] = (await eng.fetch('/v1/states')).json();
    const root = states.find((s) => !s.parent_state_id);
    const marker = join(eng.store, 'states', root?.state_id ?? 'x', 'state.json');
    t.ok(existsSync(marker));
    writeFileSync(join(eng.scripts, 'leaf.sql'), "insert into item values (7, 'q');\n");
    // Make the root state unusable, then prepare a new leaf on top of it.
    unlinkSync(marker);
    const o = await prepare(eng, { psql_args: ['-f', a, '-f', join(eng.scripts, 'leaf.sql')] });
    const r = ok(t, o);
    t.ok(o.events.some((e) => e.type === 'log' && /is unusable/.test(e.message ?? '')), 'the invalidation is reported');
    t.ok(ranTasks(o).includes('execute-0'), 'the first step was rebuilt');
    t.equal(psqlAt(r['dsn'] ?? '', 'select count(*) from item'), '1');
    const older = (await liveInstances(eng))[0];
    t.ok(older, 'instances made before the invalidation still exist');
  });

  t.test(`${opts.backend}: plan-only jobs plan without building anything`, async (t) => {
    writeFileSync(join(eng.scripts, 'plan.sql'), 'create table planned(x int);\n');
    const before = (await eng.fetch('/v1/instances')).json<unknown[]>().length;
    const o = await prepare(eng, { psql_args: ['-f', a, '-f', join(eng.scripts, 'plan.sql')], plan_only: true });
    t.equal(o.status, 'succeeded');
    t.notOk(o.result, 'no result');
    const st = (await eng.fetch(`/v1/prepare-jobs/${o.jobId}`)).json<{ plan_only: boolean; tasks: { task_id: string; cached?: boolean }[] }>();
    t.equal(st.plan_only, true);
    t.same(st.tasks.map((x) => x.task_id), ['plan', 'resolve-image', 'execute-0', 'execute-1', 'prepare-instance']);
    t.same(st.tasks.filter((x) => x.cached !== undefined).map((x) => x.cached), [true, false]);
    t.equal((await eng.fetch('/v1/instances')).json<unknown[]>().length, before, 'no instance');
  });

  t.test(`${opts.backend}: the events stream honours Range and replays in full without it`, async (t) => {
    const o = await prepare(eng, { psql_args: ['-f', a, '-f', b] });
    const full = await eng.fetch(`/v1/prepare-jobs/${o.jobId}/events`);
    t.equal(full.status, 200);
    const lines = full.body.split('\n').filter(Boolean);
    t.equal(lines.length, o.events.length);
    const part = await eng.fetch(`/v1/prepare-jobs/${o.jobId}/events`, { headers: { Range: 'events=3-' } });
    t.equal(part.status, 206);
    t.equal(part.headers['content-range'], `events 3-*/${lines.length}`);
    t.same(part.body.split('\n').filter(Boolean), lines.slice(3));
    const tooFar = await eng.fetch(`/v1/prepare-jobs/${o.jobId}/events`, { headers: { Range: `events=${lines.length + 5}-` } });
    t.equal(tooFar.status, 416);
  });

  t.test(`${opts.backend}: nothing is orphaned at the end`, async (t) => {
    await assertNoOrphans(t, eng);
  });
}
