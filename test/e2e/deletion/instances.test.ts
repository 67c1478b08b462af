/**
 * Instance deletion with real connection tracking, deletion error shapes, cache status and cache
 * explain — against a real engine, the real Docker daemon and the real PostgreSQL image.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needDocker, startPrepEngine, prepare, mountsUnder, entries, IMAGE, type PrepEngine } from '../../helpers/prepare.js';
import { holdSession, del, instances, containerExists, states } from '../../helpers/del-engine.js';

t.setTimeout(600_000);

if (needDocker(t)) {
  let eng: PrepEngine;
  let a: string;

  t.before(async () => {
    eng = await startPrepEngine(t);
    a = join(eng.scripts, 'a.sql');
    writeFileSync(a, 'create table item(id int primary key);\n');
  });

  t.test('instance delete with an open psql session is blocked until force', async (t) => {
    const o = await prepare(eng, { psql_args: ['-f', a] });
    t.equal(o.status, 'succeeded', JSON.stringify(o.error ?? {}));
    const id = o.result?.['instance_id'] ?? '';
    const dsn = o.result?.['dsn'] ?? '';
    const row = (await instances(eng)).find((i) => i.instance_id === id);
    const runtime = row?.runtime_id ?? '';
    t.ok(runtime, 'the instance has a container');
    const session = await holdSession(dsn);
    t.teardown(() => session.close());

    const blocked = await del(eng, `/v1/instances/${id}`);
    t.equal(blocked.status, 409);
    t.equal(blocked.body.outcome, 'blocked');
    t.equal(blocked.body.dry_run, false);
    t.equal(blocked.body.root.kind, 'instance');
    t.equal(blocked.body.root.id, id);
    t.equal(blocked.body.root.blocked, 'active_connections');
    t.ok((blocked.body.root.connections ?? 0) >= 1, `the open session is counted (${blocked.body.root.connections})`);
    t.equal(blocked.body.root.runtime_id, runtime);

    const dry = await del(eng, `/v1/instances/${id}`, { dry_run: 'true' });
    t.equal(dry.status, 200, 'a blocked dry run answers 200');
    t.equal(dry.body.outcome, 'blocked');
    t.equal(dry.body.dry_run, true);
    t.ok((await instances(eng)).some((i) => i.instance_id === id), 'the instance is still there');
    t.ok(containerExists(runtime), 'its container is still there');

    const forced = await del(eng, `/v1/instances/${id}`, { force: 'true' });
    t.equal(forced.status, 200);
    t.equal(forced.body.outcome, 'deleted');
    t.notOk(forced.body.root.blocked);
    t.ok((forced.body.root.connections ?? 0) >= 1, 'connections are still reported');
    t.notOk((await instances(eng)).some((i) => i.instance_id === id), 'the row is gone');
    t.equal((await eng.fetch(`/v1/instances/${id}`)).status, 404);
    t.notOk(containerExists(runtime), 'the container is gone');
    t.notOk(entries(eng.store, 'instances').includes(id), 'the directory is gone');
    t.same(mountsUnder(join(eng.store, 'instances', id)), [], 'no mount is left');
    t.ok((await states(eng)).length > 0, 'the state stays');
  });

  t.test('instance delete dry run changes nothing and a second delete is 404', async (t) => {
    const o = await prepare(eng, { psql_args: ['-f', a] });
    const id = o.result?.['instance_id'] ?? '';
    const dry = await del(eng, `/v1/instances/${id}`, { dry_run: '1' });
    t.equal(dry.status, 200);
    t.same(dry.body, { dry_run: true, outcome: 'would_delete', root: { kind: 'instance', id, connections: 0, runtime_id: dry.body.root.runtime_id } });
    t.ok((await instances(eng)).some((i) => i.instance_id === id));
    const gone = await del(eng, `/v1/instances/${id}`);
    t.equal(gone.status, 200);
    t.equal(gone.body.outcome, 'deleted');
    t.equal(gone.body.root.connections, 0);
    const again = await eng.fetch(`/v1/instances/${id}`, { method: 'DELETE' });
    t.equal(again.status, 404);
    t.equal(again.body, '{"code":"not_found","message":"instance not found"}\n');
  });

  t.test('delete endpoints reject bad booleans and unknown ids with the API error shape', async (t) => {
    const r1 = await eng.fetch('/v1/instances/0123456789abcdef0123456789abcdef?force=yes', { method: 'DELETE' });
    t.equal(r1.status, 400);
    t.same(r1.json(), { code: 'invalid_argument', message: 'invalid force', details: 'strconv.ParseBool: parsing "yes": invalid syntax' });
    const r2 = await eng.fetch(`/v1/states/${'0'.repeat(64)}?recurse=maybe`, { method: 'DELETE' });
    t.equal(r2.status, 400);
    t.equal(r2.json<{ message: string }>().message, 'invalid recurse');
    const r3 = await eng.fetch(`/v1/states/${'0'.repeat(64)}`, { method: 'DELETE' });
    t.equal(r3.status, 404);
    t.equal(r3.body, '{"code":"not_found","message":"state not found"}\n');
    const r4 = await eng.fetch('/v1/instances/some-name', { method: 'DELETE' });
    t.equal(r4.status, 404, 'names are not resolved by delete');
  });

  t.test('cache explain answers hit or miss without creating anything', async (t) => {
    const b = join(eng.scripts, 'b.sql');
    writeFileSync(b, 'create table other(id int);\n');
    const jobIds = async (): Promise<string[]> => (await eng.fetch('/v1/prepare-jobs')).json<{ job_id: string }[]>().map((j) => j.job_id);
    const jobsBefore = new Set(await jobIds());
    const instBefore = (await instances(eng)).length;
    const miss = await eng.fetch('/v1/cache/explain/prepare', { method: 'POST', body: { prepare_kind: 'psql', image_id: IMAGE, psql_args: ['-f', b] } });
    t.equal(miss.status, 200);
    const m = miss.json<Record<string, string>>();
    t.equal(m['decision'], 'miss');
    t.equal(m['reason_code'], 'no_matching_state');
    t.match(m['signature'], /^[0-9a-f]{64}$/);
    t.ok(m['resolved_image_id'], 'the resolved image is reported');
    t.notOk('matched_state_id' in m);

    const o = await prepare(eng, { psql_args: ['-f', a] });
    const hit = (await eng.fetch('/v1/cache/explain/prepare', { method: 'POST', body: { prepare_kind: 'psql', image_id: IMAGE, psql_args: ['-f', a] } })).json<Record<string, string>>();
    t.equal(hit['decision'], 'hit');
    t.equal(hit['reason_code'], 'exact_state_match');
    t.equal(hit['matched_state_id'], o.result?.['state_id']);
    t.equal(hit['resolved_image_id'], o.result?.['image_id']);
    const job = (await eng.fetch(`/v1/prepare-jobs?job=${o.jobId}`)).json<{ signature: string }[]>()[0];
    t.equal(hit['signature'], job?.signature, 'the signature is the job signature');
    await del(eng, `/v1/instances/${o.result?.['instance_id'] ?? ''}`);

    t.same((await jobIds()).filter((j) => !jobsBefore.has(j) && j !== o.jobId), [], 'explain creates no job');
    t.equal((await instances(eng)).length, instBefore, 'explain creates no instance');

    const lb = await eng.fetch('/v1/cache/explain/prepare', { method: 'POST', body: { prepare_kind: 'lb', image_id: IMAGE, liquibase_args: ['update'] } });
    t.equal(lb.status, 400);
    t.equal(lb.json<{ message: string }>().message, 'unsupported prepare_kind');
    const bad = await eng.fetch('/v1/cache/explain/prepare', { method: 'POST', body: '{' });
    t.equal(bad.status, 400);
    t.equal(bad.json<{ message: string }>().message, 'invalid json payload');
    const missing = await eng.fetch('/v1/cache/explain/prepare', { method: 'POST', body: { prepare_kind: 'psql', image_id: IMAGE, psql_args: ['-f', '/nonexistent/x.sql'] } });
    t.equal(missing.status, 400);
    t.equal(missing.json<{ message: string }>().message, 'cannot read file');
    const noImage = await eng.fetch('/v1/cache/explain/prepare', { method: 'POST', body: { prepare_kind: 'psql', image_id: 'sqlrs-missing/image:none', psql_args: ['-f', a] } });
    t.equal(noImage.status, 500);
    t.equal(noImage.json<{ code: string; message: string }>().message, 'internal error');
  });

  t.test('cache status reports every field', async (t) => {
    const r = await eng.fetch('/v1/cache/status');
    t.equal(r.status, 200);
    const s = r.json<Record<string, unknown>>();
    for (const k of ['usage_bytes', 'effective_max_bytes', 'reserve_bytes', 'high_watermark', 'low_watermark', 'min_state_age',
      'store_total_bytes', 'store_free_bytes', 'state_count', 'reclaimable_bytes', 'blocked_count', 'pressure_reasons']) {
      t.ok(k in s, `${k} is present`);
    }
    t.notOk('configured_max_bytes' in s, 'omitted without maxBytes');
    t.notOk('last_eviction' in s, 'omitted before any eviction');
    t.equal(s['min_state_age'], '10m0s');
    t.same(s['pressure_reasons'], []);
    t.equal(s['state_count'], (await states(eng)).length);
    t.ok((s['usage_bytes'] as number) > 0, 'states occupy space');
    t.ok((s['reserve_bytes'] as number) <= 10 * 1024 ** 3, 'reserve is at most 10 GiB');
    t.ok((s['reserve_bytes'] as number) <= (s['store_total_bytes'] as number) * 0.1 + 1, 'reserve is at most 10 % of the filesystem');

    t.equal((await eng.fetch('/v1/config', { method: 'PATCH', body: { path: 'cache.capacity.maxBytes', value: 5 * 1024 ** 3 } })).status, 200);
    const s2 = (await eng.fetch('/v1/cache/status')).json<Record<string, unknown>>();
    t.equal(s2['configured_max_bytes'], 5 * 1024 ** 3);
    t.equal(s2['effective_max_bytes'], 5 * 1024 ** 3);
    t.equal((await eng.fetch('/v1/config?path=cache.capacity.maxBytes', { method: 'DELETE' })).status, 200);
  });
}
