/**
 * The HTTP contract of `api.md` §1.2–1.3, §2, §4 and §5 against one real engine child process:
 * auth, 401/404/405 rules, the error shape, list encodings, id_prefix validation, config routes,
 * prepare-job submit validation and the job read routes.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startEngine, type EngineProcess, type HttpResult } from '../../helpers/engine.js';

const DEFAULT_CONFIG = {
  log: { level: 'debug' },
  cache: { capacity: { maxBytes: 0, reserveBytes: null, highWatermark: 0.9, lowWatermark: 0.8, minStateAge: '10m' } },
  container: { runtime: 'auto' },
  snapshot: { backend: 'auto' },
  orchestrator: { jobs: { maxIdentical: 2 } },
};

/** Every route that needs the token (api.md §2 table), as concrete paths. */
const PROTECTED: { path: string; method: string }[] = [
  { path: '/v1/config', method: 'GET' },
  { path: '/v1/config', method: 'PATCH' },
  { path: '/v1/config', method: 'DELETE' },
  { path: '/v1/config/schema', method: 'GET' },
  { path: '/v1/cache/status', method: 'GET' },
  { path: '/v1/cache/explain/prepare', method: 'POST' },
  { path: '/v1/prepare-jobs', method: 'GET' },
  { path: '/v1/prepare-jobs', method: 'POST' },
  { path: '/v1/prepare-jobs/x', method: 'GET' },
  { path: '/v1/prepare-jobs/x', method: 'DELETE' },
  { path: '/v1/prepare-jobs/x/cancel', method: 'POST' },
  { path: '/v1/prepare-jobs/x/events', method: 'GET' },
  { path: '/v1/tasks', method: 'GET' },
  { path: '/v1/runs', method: 'POST' },
  { path: '/v1/names', method: 'GET' },
  { path: '/v1/names/x', method: 'GET' },
  { path: '/v1/instances', method: 'GET' },
  { path: '/v1/instances/x', method: 'GET' },
  { path: '/v1/instances/x', method: 'DELETE' },
  { path: '/v1/states', method: 'GET' },
  { path: '/v1/states/x', method: 'GET' },
  { path: '/v1/states/x', method: 'DELETE' },
];

/** A method no protected route accepts, per path. */
const WRONG_METHOD: { path: string; method: string }[] = [
  { path: '/v1/config', method: 'PUT' },
  { path: '/v1/config/schema', method: 'POST' },
  { path: '/v1/cache/status', method: 'POST' },
  { path: '/v1/cache/explain/prepare', method: 'GET' },
  { path: '/v1/prepare-jobs', method: 'DELETE' },
  { path: '/v1/prepare-jobs/x', method: 'POST' },
  { path: '/v1/prepare-jobs/x/cancel', method: 'GET' },
  { path: '/v1/prepare-jobs/x/events', method: 'POST' },
  { path: '/v1/tasks', method: 'POST' },
  { path: '/v1/runs', method: 'PUT' }, // GET lists active runs (an engine extension)
  { path: '/v1/names', method: 'POST' },
  { path: '/v1/names/x', method: 'DELETE' },
  { path: '/v1/instances', method: 'POST' },
  { path: '/v1/instances/x', method: 'PATCH' },
  { path: '/v1/states', method: 'DELETE' },
  { path: '/v1/states/x', method: 'PUT' },
];

const LISTS = ['/v1/prepare-jobs', '/v1/tasks', '/v1/names', '/v1/instances', '/v1/states'];

const NOT_FOUND_TEXT = '404 page not found\n';

const ctJson = /^application\/json/;

function isNotFoundText(r: HttpResult): boolean {
  return r.status === 404 && r.body === NOT_FOUND_TEXT && r.headers['content-type'] === 'text/plain; charset=utf-8';
}

t.test('http contract', async (t) => {
  const eng: EngineProcess = await startEngine(t);

  t.test('health needs no token and refuses other methods with 405', async (t) => {
    const h = await eng.fetchRaw('/v1/health');
    t.equal(h.status, 200);
    t.same(h.json(), { ok: true, version: 'dev', instanceId: eng.instanceId, pid: eng.pid });
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const r = await eng.fetchRaw('/v1/health', { method });
      t.equal(r.status, 405, `${method} /v1/health → 405`);
      t.equal(r.body, '', `${method} /v1/health → empty body`);
    }
  });

  t.test('protected routes answer 401 with an empty body without a valid bearer token', async (t) => {
    const bad: [string, Record<string, string>][] = [
      ['no header', {}],
      ['wrong token', { Authorization: `Bearer ${'0'.repeat(64)}` }],
      ['lower-case scheme', { Authorization: `bearer ${eng.token}` }],
      ['token only', { Authorization: eng.token }],
      ['two spaces', { Authorization: `Bearer  ${eng.token}` }],
      ['truncated token', { Authorization: `Bearer ${eng.token.slice(0, 63)}` }],
      ['empty header', { Authorization: '' }],
    ];
    for (const { path, method } of PROTECTED) {
      for (const [name, headers] of bad) {
        const r = await eng.fetchRaw(path, { method, headers, ...(method === 'GET' ? {} : { body: '{}' }) });
        t.equal(r.status, 401, `${method} ${path} (${name}) → 401`);
        t.equal(r.body, '', `${method} ${path} (${name}) → empty body`);
        t.equal(r.headers['www-authenticate'], undefined, `${method} ${path} (${name}) → no WWW-Authenticate`);
      }
    }
  });

  t.test('the token is compared after trimming the header value', async (t) => {
    const r = await eng.fetchRaw('/v1/prepare-jobs', { headers: { Authorization: `  Bearer ${eng.token}  ` } });
    t.equal(r.status, 200);
  });

  t.test('wrong method answers 401 without the token and 405 with an empty body with it', async (t) => {
    for (const { path, method } of WRONG_METHOD) {
      const anon = await eng.fetchRaw(path, { method });
      t.equal(anon.status, 401, `${method} ${path} without token → 401 (auth before method)`);
      const r = await eng.fetch(path, { method });
      t.equal(r.status, 405, `${method} ${path} with token → 405`);
      t.equal(r.body, '', `${method} ${path} → empty body`);
      t.equal(r.headers['allow'], undefined, `${method} ${path} → no Allow header`);
    }
  });

  t.test('unknown paths answer 404 page not found as text/plain, with or without the token', async (t) => {
    const paths = ['/', '/v1', '/v1/', '/v2/health', '/v1/nope', '/v1/users/me', '/v1/users/by-identity', '/v1/organizations',
      '/v1/organizations/acme', '/v1/source-blobs/sha256/abc', '/v1/prepare-jobs/x/y', '/v1/prepare-jobs/x/events/1', '/v1/health/x'];
    for (const p of paths) {
      for (const auth of [false, true]) {
        const r = auth ? await eng.fetch(p) : await eng.fetchRaw(p);
        t.ok(isNotFoundText(r), `GET ${p} (${auth ? 'token' : 'no token'}) → 404 text (got ${r.status} ${JSON.stringify(r.body)})`);
      }
    }
    const put = await eng.fetch('/v1/users/me', { method: 'PUT', body: '{}' });
    t.ok(isNotFoundText(put), 'PUT /v1/users/me → 404');
    const post = await eng.fetch('/v1/organizations', { method: 'POST', body: '{}' });
    t.ok(isNotFoundText(post), 'POST /v1/organizations → 404');
  });

  t.test('lists answer [] as JSON, and NDJSON (empty body) on request', async (t) => {
    for (const p of LISTS) {
      const r = await eng.fetch(p);
      t.equal(r.status, 200, `${p} → 200`);
      t.match(r.headers['content-type'], ctJson, `${p} → application/json`);
      t.equal(r.body, '[]\n', `${p} → [] (not null)`);
      const nd = await eng.fetch(p, { headers: { Accept: 'application/x-ndjson' } });
      t.equal(nd.status, 200, `${p} NDJSON → 200`);
      t.equal(nd.headers['content-type'], 'application/x-ndjson', `${p} NDJSON content type`);
      t.equal(nd.body, '', `${p} NDJSON empty → empty body`);
      const mixed = await eng.fetch(p, { headers: { Accept: 'text/plain, APPLICATION/X-NDJSON;q=0.9' } });
      t.equal(mixed.headers['content-type'], 'application/x-ndjson', `${p} Accept substring match is case-insensitive`);
    }
    const filtered = await eng.fetch('/v1/names?instance=a&state=b&image=c');
    t.equal(filtered.body, '[]\n', 'names filters never 400');
    const tasks = await eng.fetch('/v1/tasks?job=whatever');
    t.equal(tasks.body, '[]\n', 'tasks ?job= never 400');
  });

  t.test('id_prefix is validated on instances and states', async (t) => {
    for (const p of ['/v1/instances', '/v1/states']) {
      const short = await eng.fetch(`${p}?id_prefix=abc`);
      t.equal(short.status, 400, `${p} short prefix → 400`);
      t.match(short.headers['content-type'], ctJson);
      t.equal(short.body, '{"code":"invalid_argument","message":"invalid id_prefix","details":"id_prefix must be at least 8 hex characters"}\n', `${p} short prefix body`);
      const nonHex = await eng.fetch(`${p}?id_prefix=zzzzzzzz`);
      t.equal(nonHex.status, 400, `${p} non-hex prefix → 400`);
      t.equal(nonHex.body, '{"code":"invalid_argument","message":"invalid id_prefix","details":"id_prefix must be hex"}\n', `${p} non-hex prefix body`);
      const ok = await eng.fetch(`${p}?id_prefix=%20ABCDEF12%20`);
      t.equal(ok.status, 200, `${p} upper-case hex prefix, trimmed → 200`);
      t.equal(ok.body, '[]\n');
      const blank = await eng.fetch(`${p}?id_prefix=%20%20`);
      t.equal(blank.status, 200, `${p} blank prefix = unset`);
    }
    const kind = await eng.fetch('/v1/states?kind=psql&image=x');
    t.equal(kind.body, '[]\n', 'states kind/image filters');
  });

  t.test('single-resource GETs of unknown ids answer 404 page not found', async (t) => {
    const paths = [
      `/v1/instances/${'0'.repeat(32)}`, '/v1/instances/some-name', `/v1/states/${'0'.repeat(64)}`, '/v1/states/x',
      `/v1/prepare-jobs/${'0'.repeat(32)}`, `/v1/prepare-jobs/${'0'.repeat(32)}/events`, '/v1/names/nobody',
    ];
    for (const p of paths) {
      const r = await eng.fetch(p);
      t.ok(isNotFoundText(r), `GET ${p} → 404 text (got ${r.status} ${JSON.stringify(r.body)})`);
    }
  });

  t.test('JSON-shaped 404s for cancel and delete of unknown resources', async (t) => {
    const cancel = await eng.fetch(`/v1/prepare-jobs/${'0'.repeat(32)}/cancel`, { method: 'POST' });
    t.equal(cancel.status, 404);
    t.same(cancel.json(), { code: 'not_found', message: 'job not found' });
    const del = await eng.fetch(`/v1/prepare-jobs/${'0'.repeat(32)}`, { method: 'DELETE' });
    t.equal(del.status, 404);
    t.same(del.json(), { code: 'not_found', message: 'job not found' });
  });

  t.test('malformed JSON and oversized bodies answer 400', async (t) => {
    const bad = await eng.fetch('/v1/config', { method: 'PATCH', body: '{"path": ' });
    t.equal(bad.status, 400);
    t.match(bad.headers['content-type'], ctJson);
    t.match(bad.json(), { code: 'invalid_argument', message: 'invalid json payload', details: String });
    const empty = await eng.fetch('/v1/config', { method: 'PATCH', body: '' });
    t.equal(empty.status, 400);
    t.same(empty.json(), { code: 'invalid_argument', message: 'invalid json payload', details: 'EOF' }, 'empty body → details EOF');
    const badSubmit = await eng.fetch('/v1/prepare-jobs', { method: 'POST', body: 'nope' });
    t.equal(badSubmit.status, 400);
    t.match(badSubmit.json(), { code: 'invalid_argument', message: 'invalid json payload' });

    const limit = 8 * 1024 * 1024;
    const atLimit = await eng.fetch('/v1/config', { method: 'PATCH', body: Buffer.alloc(limit, 0x20) });
    t.equal(atLimit.status, 400, 'a body of exactly 8 MiB is read');
    t.same(atLimit.json(), { code: 'invalid_argument', message: 'invalid json payload', details: 'EOF' }, '8 MiB of blanks is an empty JSON body');
    const over = await eng.fetch('/v1/config', { method: 'PATCH', body: Buffer.alloc(limit + 1, 0x20) });
    t.equal(over.status, 400, 'a body over 8 MiB → 400');
    t.match(over.json(), { code: 'invalid_argument', message: 'request body too large' });
    const health = await eng.fetchRaw('/v1/health');
    t.equal(health.status, 200, 'engine still serves after an oversized body');
  });

  t.test('config GET reads overrides, the effective view and paths', async (t) => {
    const whole = await eng.fetch('/v1/config');
    t.equal(whole.status, 200);
    t.equal(whole.body, '{}\n', 'no overrides → {} (raw, not wrapped)');
    const eff = await eng.fetch('/v1/config?effective=true');
    t.same(eff.json(), DEFAULT_CONFIG, 'effective = defaults');
    for (const v of ['1', 't', 'T', 'TRUE', 'true', 'True', '%20true%20']) {
      const r = await eng.fetch(`/v1/config?path=log.level&effective=${v}`);
      t.same(r.json(), { path: 'log.level', value: 'debug' }, `effective=${v} is true`);
    }
    for (const v of ['0', 'f', 'F', 'FALSE', 'false', 'False', '']) {
      const r = await eng.fetch(`/v1/config?path=log.level&effective=${v}`);
      t.equal(r.status, 404, `effective=${v} is false → overrides only → 404`);
    }
    const missing = await eng.fetch('/v1/config?path=log.level');
    t.equal(missing.status, 404);
    t.match(missing.headers['content-type'], ctJson);
    t.same(missing.json(), { code: 'not_found', message: 'path not found', details: 'config path not found' });
    const nested = await eng.fetch('/v1/config?path=cache.capacity&effective=true');
    t.same(nested.json(), { path: 'cache.capacity', value: DEFAULT_CONFIG.cache.capacity });
    const nullValue = await eng.fetch('/v1/config?path=cache.capacity.reserveBytes&effective=true');
    t.equal(nullValue.body, '{"path":"cache.capacity.reserveBytes","value":null}\n', 'a null default is served as null');
    const badBool = await eng.fetch('/v1/config?effective=maybe');
    t.equal(badBool.status, 400);
    t.same(badBool.json(), { code: 'invalid_argument', message: 'invalid effective', details: 'strconv.ParseBool: parsing "maybe": invalid syntax' });
    for (const p of ['a..b', '.a', 'a[x]', 'a[', 'a[1']) {
      const r = await eng.fetch(`/v1/config?path=${encodeURIComponent(p)}&effective=true`);
      t.equal(r.status, 400, `GET path ${p} → 400`);
      t.same(r.json(), { code: 'invalid_argument', message: 'invalid path', details: 'config path is invalid' }, `GET path ${p} body`);
    }
    const unknown = await eng.fetch('/v1/config?path=no.such.key&effective=true');
    t.equal(unknown.status, 404, 'unknown key in the effective view → 404');
  });

  t.test('config schema is a JSON Schema object', async (t) => {
    const r = await eng.fetch('/v1/config/schema');
    t.equal(r.status, 200);
    t.match(r.headers['content-type'], ctJson);
    const s = r.json<Record<string, unknown>>();
    t.match(s, {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      additionalProperties: true,
      properties: {
        log: { type: 'object', additionalProperties: true, properties: { level: { enum: ['debug', 'info', 'warn', 'error', null] } } },
        container: { properties: { runtime: { enum: ['auto', 'docker', 'podman', null] } } },
        snapshot: { properties: { backend: { enum: ['auto', 'overlay', 'btrfs', 'copy', null] } } },
        orchestrator: { properties: { jobs: { properties: { maxIdentical: { type: ['integer', 'null'], minimum: 0 } } } } },
        cache: { properties: { capacity: { properties: { maxBytes: { minimum: 0 }, reserveBytes: { minimum: 0 }, highWatermark: {}, lowWatermark: {}, minStateAge: {} } } } },
      },
    });
  });

  t.test('config PATCH validates, sets and persists; DELETE removes overrides', async (t) => {
    const patch = (body: unknown): Promise<HttpResult> => eng.fetch('/v1/config', { method: 'PATCH', body });

    for (const [body, name] of [[{}, 'no path'], [{ path: '' }, 'empty path'], [{ path: '   ', value: 1 }, 'blank path'], [[], 'array body']] as const) {
      const r = await patch(body);
      t.equal(r.status, 400, `${name} → 400`);
      t.same(r.json(), { code: 'invalid_argument', message: 'path is required' }, `${name} → path is required`);
    }
    const badPath = await patch({ path: 'a..b', value: 1 });
    t.equal(badPath.status, 400);
    t.same(badPath.json(), { code: 'invalid_argument', message: 'invalid config value', details: 'config path is invalid' });
    const badValues: [string, unknown][] = [
      ['orchestrator.jobs.maxIdentical', -1], ['orchestrator.jobs.maxIdentical', 1.5], ['orchestrator.jobs.maxIdentical', '2'],
      ['cache.capacity.maxBytes', -5], ['cache.capacity.highWatermark', 0], ['cache.capacity.highWatermark', 1.5],
      ['cache.capacity.lowWatermark', 0.95], ['cache.capacity.minStateAge', 'ten minutes'],
      ['snapshot.backend', 'zfs'], ['container.runtime', 'lxc'], ['log.level', 'verbose'],
    ];
    for (const [path, value] of badValues) {
      const r = await patch({ path, value });
      t.equal(r.status, 400, `${path} = ${JSON.stringify(value)} → 400`);
      t.same(r.json(), { code: 'invalid_argument', message: 'invalid config value', details: 'config value is invalid' }, `${path} = ${JSON.stringify(value)} body`);
    }
    t.equal((await eng.fetch('/v1/config')).body, '{}\n', 'rejected values change nothing');

    const set = await patch({ path: 'orchestrator.jobs.maxIdentical', value: 5 });
    t.equal(set.status, 200);
    t.match(set.headers['content-type'], ctJson);
    t.same(set.json(), { path: 'orchestrator.jobs.maxIdentical', value: 5 });
    t.same((await patch({ path: 'log.level', value: 'INFO' })).json(), { path: 'log.level', value: 'INFO' }, 'log.level is case-insensitive');
    t.same((await patch({ path: 'cache.capacity.reserveBytes', value: null })).json(), { path: 'cache.capacity.reserveBytes', value: null }, 'null is allowed');
    t.same((await patch({ path: 'custom.list[2].x', value: { deep: [1, 'two'] } })).json(), { path: 'custom.list[2].x', value: { deep: [1, 'two'] } }, 'unknown keys accept any value');
    t.same((await patch({ path: 'custom.flag' })).json(), { path: 'custom.flag', value: null }, 'a missing value sets null');
    t.same((await patch({ path: 'cache.capacity.maxBytes', value: 10737418240 })).json(), { path: 'cache.capacity.maxBytes', value: 10737418240 }, 'large integers');

    const expected = {
      orchestrator: { jobs: { maxIdentical: 5 } },
      log: { level: 'INFO' },
      cache: { capacity: { reserveBytes: null, maxBytes: 10737418240 } },
      custom: { list: [null, null, { x: { deep: [1, 'two'] } }], flag: null },
    };
    t.same((await eng.fetch('/v1/config')).json(), expected, 'overrides only; arrays padded with nulls');
    t.same((await eng.fetch('/v1/config?path=orchestrator.jobs.maxIdentical')).json(), { path: 'orchestrator.jobs.maxIdentical', value: 5 });
    t.same((await eng.fetch('/v1/config?path=custom.list[2].x.deep[1]')).json(), { path: 'custom.list[2].x.deep[1]', value: 'two' }, 'index paths');
    const eff = (await eng.fetch('/v1/config?effective=true')).json<typeof DEFAULT_CONFIG>();
    t.same(eff.cache.capacity, { ...DEFAULT_CONFIG.cache.capacity, maxBytes: 10737418240 }, 'effective deep-merges overrides into defaults');
    t.same(JSON.parse(readFileSync(join(eng.store, 'config.json'), 'utf8')), expected, 'overrides persisted in <store>/config.json');

    const delNoPath = await eng.fetch('/v1/config', { method: 'DELETE' });
    t.equal(delNoPath.status, 400);
    t.same(delNoPath.json(), { code: 'invalid_argument', message: 'path is required' });
    const delBad = await eng.fetch('/v1/config?path=a..b', { method: 'DELETE' });
    t.equal(delBad.status, 400);
    t.same(delBad.json(), { code: 'invalid_argument', message: 'invalid path', details: 'config path is invalid' });
    const del = await eng.fetch('/v1/config?path=orchestrator.jobs.maxIdentical', { method: 'DELETE' });
    t.equal(del.status, 200);
    t.same(del.json(), { path: 'orchestrator.jobs.maxIdentical', value: 2 }, 'DELETE answers the effective value after removal');
    const again = await eng.fetch('/v1/config?path=orchestrator.jobs.maxIdentical', { method: 'DELETE' });
    t.equal(again.status, 404);
    t.same(again.json(), { code: 'not_found', message: 'path not found', details: 'config path not found' }, 'no override left → 404');
    const delCustom = await eng.fetch('/v1/config?path=custom.flag&effective=true', { method: 'DELETE' });
    t.same(delCustom.json(), { path: 'custom.flag', value: null }, 'no default → null; effective is ignored');
  });

  t.test('prepare-jobs submit validates synchronously', async (t) => {
    const submit = (body: unknown): Promise<HttpResult> => eng.fetch('/v1/prepare-jobs', { method: 'POST', body });
    const cases: { body: unknown; error: Record<string, string> }[] = [
      { body: {}, error: { code: 'invalid_argument', message: 'prepare_kind is required' } },
      { body: { prepare_kind: '  ', image_id: 'img:1' }, error: { code: 'invalid_argument', message: 'prepare_kind is required' } },
      { body: { prepare_kind: 'xyz', image_id: 'img:1' }, error: { code: 'invalid_argument', message: 'unsupported prepare_kind', details: 'xyz' } },
      { body: { prepare_kind: 'psql', psql_args: ['-c', 'select 1'] }, error: { code: 'invalid_argument', message: 'image_id is required' } },
      { body: { prepare_kind: 'psql', image_id: 'img:1', psql_args: ['-h', 'localhost', '-c', 'select 1'] }, error: { code: 'invalid_argument', message: 'connection flags are not allowed', details: '-h' } },
      { body: { prepare_kind: 'psql', image_id: 'img:1', psql_args: ['--port=5432'] }, error: { code: 'invalid_argument', message: 'connection flags are not allowed', details: '--port=5432' } },
      { body: { prepare_kind: 'psql', image_id: 'img:1', psql_args: ['-f', 'relative.sql'] }, error: { code: 'invalid_argument', message: 'file path must be absolute' } },
      { body: { prepare_kind: 'psql', image_id: 'img:1', psql_args: ['-f', '-'] }, error: { code: 'invalid_argument', message: 'stdin is required when using -f -' } },
    ];
    for (const c of cases) {
      const r = await submit(c.body);
      t.equal(r.status, 400, `${JSON.stringify(c.body)} → 400`);
      t.match(r.headers['content-type'], ctJson);
      t.match(r.json(), c.error, `${JSON.stringify(c.body)} → ${c.error['message']}`);
    }
    const list = await eng.fetch('/v1/prepare-jobs');
    t.equal(list.body, '[]\n', 'rejected submits create no job');
  });

  t.test('prepare-jobs submit creates a job that the read routes show', async (t) => {
    const r = await eng.fetch('/v1/prepare-jobs', {
      method: 'POST',
      body: { prepare_kind: 'psql', image_id: 'does-not-exist:1', psql_args: ['-c', 'select 1'], unknown_field: 'ignored' },
    });
    t.equal(r.status, 201, '201 Created');
    const body = r.json<{ job_id: string; status_url: string; events_url: string; status: string }>();
    t.match(body.job_id, /^[0-9a-f]{32}$/, 'job_id is 32 hex');
    t.same(body, {
      job_id: body.job_id,
      status_url: `/v1/prepare-jobs/${body.job_id}`,
      events_url: `/v1/prepare-jobs/${body.job_id}/events`,
      status: 'queued',
    }, 'the four fields');
    t.equal(r.headers['location'], `/v1/prepare-jobs/${body.job_id}`, 'Location header');
    const id = body.job_id;

    const status = await eng.fetch(`/v1/prepare-jobs/${id}`);
    t.equal(status.status, 200);
    t.match(status.json(), {
      job_id: id, prepare_kind: 'psql', image_id: 'does-not-exist:1',
      status: /^(queued|running|failed)$/, prepare_args_normalized: '-c select 1 -X -v ON_ERROR_STOP=1', created_at: String,
    }, 'job status');
    t.equal(status.json<Record<string, unknown>>()['plan_only'], undefined, 'plan_only omitted when false');

    const exactList = await eng.fetch('/v1/prepare-jobs');
    t.equal(exactList.json<unknown[]>().length, 1, 'one job listed');
    t.match(exactList.json(), [{ job_id: id, prepare_kind: 'psql', image_id: 'does-not-exist:1' }]);
    const nd = await eng.fetch('/v1/prepare-jobs', { headers: { Accept: 'application/x-ndjson' } });
    const lines = nd.body.split('\n');
    t.equal(lines.length, 2, 'one NDJSON line plus the final newline');
    t.match(JSON.parse(lines[0] ?? ''), { job_id: id }, 'NDJSON line is the entry');
    t.equal(lines[1], '', 'NDJSON ends with a newline');

    for (const prefix of [id.slice(0, 1), id.slice(0, 6).toUpperCase(), id, ` ${id.slice(0, 4)} `]) {
      const l = await eng.fetch(`/v1/prepare-jobs?job=${encodeURIComponent(prefix)}`);
      t.match(l.json(), [{ job_id: id }], `job=${JSON.stringify(prefix)} matches (prefix, case-insensitive, trimmed)`);
    }
    for (const prefix of ['%', '_', '%25', `${id.slice(0, 3)}%`, '\\', 'zz', `${id}0`]) {
      const l = await eng.fetch(`/v1/prepare-jobs?job=${encodeURIComponent(prefix)}`);
      t.equal(l.status, 200, `job=${JSON.stringify(prefix)} never 400`);
      t.equal(l.body, '[]\n', `job=${JSON.stringify(prefix)} matches nothing (LIKE wildcards escaped)`);
    }
    const upper = await eng.fetch(`/v1/prepare-jobs/${id.toUpperCase()}`);
    t.ok(isNotFoundText(upper), 'job status is an exact, case-sensitive id match');
    const tasks = await eng.fetch(`/v1/tasks?job=${id.slice(0, 8)}`);
    t.equal(tasks.body, '[]\n', 'tasks ?job= is exact, not a prefix');
  });
});

t.test('config overrides survive an engine restart on the same store', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sqlrs-contract-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = await startEngine(t, { dir });
  t.equal((await first.fetch('/v1/config', { method: 'PATCH', body: { path: 'snapshot.backend', value: 'copy' } })).status, 200);
  t.equal((await first.fetch('/v1/config', { method: 'PATCH', body: { path: 'extra.items[1]', value: 'b' } })).status, 200);
  t.equal((await first.fetch('/v1/config?path=extra.items[1]', { method: 'DELETE' })).status, 200);
  t.same((await first.stop()), { code: 0, signal: null }, 'first engine stopped');

  const second = await startEngine(t, { dir });
  t.not(second.instanceId, first.instanceId, 'a new engine instance');
  t.not(second.token, first.token, 'with a new token');
  const stale = await second.fetch('/v1/config', { headers: { Authorization: `Bearer ${first.token}` } });
  t.equal(stale.status, 401, 'the previous engine\'s token is rejected');
  t.same((await second.fetch('/v1/config')).json(), { snapshot: { backend: 'copy' }, extra: { items: [null] } }, 'overrides read back after restart');
  t.same((await second.fetch('/v1/config?path=snapshot.backend&effective=1')).json(), { path: 'snapshot.backend', value: 'copy' });
});
