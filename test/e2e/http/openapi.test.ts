/**
 * `GET /v1/openapi.json` against a real engine child process: the document is valid OpenAPI 3.1
 * (the official schema, through a maintained validator) whose schemas compile as JSON Schema
 * 2020-12; it describes every route and method of the live route table (derived from `buildRoutes`
 * and routed like the server routes, not from a hand list), with the right authentication; and
 * real responses — health, config, lists in both encodings, a real prepare job's status and NDJSON
 * events, instances, states, runs, cache status and explain, deletions (dry runs, blocked, done),
 * and errors (400, 404, 409, 416) — validate against the schemas documented for their status and
 * content type. Every documented operation is exercised at least once. The Docker-backed part is
 * skipped without a daemon, unless SQLRS_REQUIRE_DOCKER=1, where it fails.
 */
import t, { type Test } from 'tap';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { Validator } from '@seriousme/openapi-schema-validator';
import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { startEngine, type EngineProcess, type HttpResult } from '../../helpers/engine.js';
import { IMAGE, dockerProblem, startPrepEngine, submit, waitJob } from '../../helpers/prepare.js';
import { buildRoutes, type RouteServices } from '../../../src/http/routes.js';
import type { Route } from '../../../src/http/server.js';

t.setTimeout(900_000);

type Json = Record<string, unknown>;
interface Operation { security?: unknown[]; responses: Record<string, { content?: Record<string, { schema: Json }> }> }
type Doc = Json & { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, Json> } };

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];
/** Documented, but not in the route table: the WebSocket upgrade is served by uWS's own `ws` route. */
const OUTSIDE_ROUTE_TABLE = new Set(['/v1/ws']);

// ajv-formats is CommonJS with a default export; under NodeNext its type is the module namespace.
const addFormats = (addFormatsModule as unknown as { default: (ajv: Ajv2020) => void }).default ?? (addFormatsModule as unknown as (ajv: Ajv2020) => void);

/** A stand-in for every service: `buildRoutes` only captures them in closures. */
function stubServices(): RouteServices {
  const anything: unknown = new Proxy(() => anything, { get: (_t, k) => (k === 'then' ? undefined : anything), apply: () => anything });
  return anything as RouteServices;
}

/** A concrete path for a template: every `{param}` becomes a sample value. */
function sample(template: string): string {
  return template.replace(/\{[^}]+\}/g, 'sample-value');
}

/** The route the server would pick for a path: the first that matches. */
function routeFor(routes: Route[], path: string): Route | undefined {
  return routes.find((r) => r.match(path) !== undefined);
}

async function fetchDoc(eng: EngineProcess): Promise<Doc> {
  const r = await eng.fetchRaw('/v1/openapi.json');
  if (r.status !== 200) throw new Error(`openapi.json answered ${r.status}`);
  return r.json<Doc>();
}

/**
 * Starts `POST /v1/runs` and resolves once the stream's first line (`start`) has arrived; `done`
 * resolves with the whole response when the run ends.
 */
function startRun(eng: EngineProcess, body: unknown): Promise<{ done: Promise<HttpResult> }> {
  return new Promise((resolve, reject) => {
    const text = JSON.stringify(body);
    const req = httpRequest(new URL('/v1/runs', eng.baseUrl), {
      method: 'POST', agent: false,
      headers: { Authorization: `Bearer ${eng.token}`, 'Content-Length': String(Buffer.byteLength(text)), Connection: 'close' },
    }, (res) => {
      let all = '';
      let started = false;
      let finish!: (r: HttpResult) => void;
      const done = new Promise<HttpResult>((r) => { finish = r; });
      res.setEncoding('utf8');
      res.on('data', (d: string) => { all += d; if (!started && all.includes('\n')) { started = true; resolve({ done }); } });
      res.on('end', () => {
        if (!started) reject(new Error(`run answered ${res.statusCode ?? 0} before starting: ${all}`));
        finish({ status: res.statusCode ?? 0, headers: res.headers, body: all, json: <T>() => JSON.parse(all) as T });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(text);
  });
}

/** Checks real responses against the document and records which operations were exercised. */
class ResponseChecker {
  private readonly ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true });
  private readonly compiled = new Map<string, ValidateFunction>();
  readonly exercised = new Set<string>();

  constructor(private readonly doc: Doc) {
    addFormats(this.ajv);
    // The document's components ride along at the root of each compiled schema, where its
    // `#/components/schemas/…` references point; strict mode otherwise refuses the keyword.
    this.ajv.addKeyword({ keyword: 'components' });
  }

  /** Compiles a schema of the document (its `#/components/...` references resolve against the document). */
  compile(key: string, schema: Json): ValidateFunction {
    let f = this.compiled.get(key);
    if (!f) { f = this.ajv.compile({ ...schema, components: this.doc.components }); this.compiled.set(key, f); }
    return f;
  }

  /** Asserts that `res` is a documented response of `method path` and that its body fits the schema. */
  check(tt: Test, method: string, template: string, res: HttpResult): void {
    const name = `${method.toUpperCase()} ${template} → ${res.status}`;
    this.exercised.add(`${method} ${template}`);
    const op = this.doc.paths[template]?.[method];
    if (!op) { tt.fail(`${method.toUpperCase()} ${template} is not documented`); return; }
    const documented = op.responses[String(res.status)];
    if (!documented) { tt.fail(`${name} is not a documented response (${res.body.slice(0, 200)})`); return; }
    if (!documented.content) { tt.equal(res.body, '', `${name}: documented without a body, and the body is empty`); return; }
    const ct = String(res.headers['content-type'] ?? '');
    const media = documented.content[ct] ?? documented.content[ct.split(';')[0] ?? ''];
    if (!media) { tt.fail(`${name}: content type ${ct} is not documented (${Object.keys(documented.content).join(', ')})`); return; }
    const validate = this.compile(`${method} ${template} ${res.status} ${ct}`, media.schema);
    const values: unknown[] = ct.startsWith('application/x-ndjson')
      ? res.body.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as unknown)
      : ct.startsWith('application/json') ? [res.json()] : [res.body];
    for (const [i, value] of values.entries()) {
      const ok = validate(value);
      tt.ok(ok, `${name} (${ct})${values.length > 1 ? ` line ${i + 1}` : ''} fits its documented schema`, ok ? {} : { errors: validate.errors, value });
    }
  }
}

t.test('the OpenAPI document', async (t) => {
  const eng = await startEngine(t);
  const doc = await fetchDoc(eng);

  t.test('is served without a token, as JSON, and says which engine it describes', async (t) => {
    const r = await eng.fetchRaw('/v1/openapi.json');
    t.equal(r.status, 200);
    t.match(r.headers['content-type'], /^application\/json/);
    t.equal(doc['openapi'], '3.1.0');
    t.match(doc['info'], { title: 'sqlrs-engine', version: 'dev' });
    t.same((await eng.fetch('/v1/openapi.json')).json(), doc, 'the same document with a token');
  });

  t.test('is valid OpenAPI 3.1 by the official schema, and every schema in it compiles as JSON Schema 2020-12', async (t) => {
    const validator = new Validator();
    const res = await validator.validate(structuredClone(doc));
    t.ok(res.valid, 'valid OpenAPI', res.valid ? {} : { errors: res.errors });
    t.equal(validator.version, '3.1');
    const checker = new ResponseChecker(doc);
    for (const [name, schema] of Object.entries(doc.components.schemas)) {
      t.doesNotThrow(() => checker.compile(`component ${name}`, schema), `component ${name} compiles`);
    }
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        for (const [status, r] of Object.entries(op.responses)) {
          for (const [ct, media] of Object.entries(r.content ?? {})) {
            t.doesNotThrow(() => checker.compile(`${method} ${path} ${status} ${ct}`, media.schema), `${method.toUpperCase()} ${path} ${status} ${ct} compiles`);
          }
        }
      }
    }
  });

  t.test('describes every route and method of the route table, with its authentication', async (t) => {
    const routes = buildRoutes(stubServices());
    const documented = Object.keys(doc.paths).filter((p) => !OUTSIDE_ROUTE_TABLE.has(p));
    const byRoute = new Map<Route, string[]>();
    for (const path of documented) {
      const route = routeFor(routes, sample(path));
      if (!route) { t.fail(`documented path ${path} is served by no route`); continue; }
      byRoute.set(route, [...(byRoute.get(route) ?? []), path]);
    }
    routes.forEach((route, i) => {
      const paths = byRoute.get(route);
      const methods = Object.keys(route.methods).map((m) => m.toLowerCase()).sort();
      if (!paths) { t.fail(`route #${i} of the table (methods ${methods.join(', ')}) is in no documented path`); return; }
      for (const path of paths) {
        const item = doc.paths[path] ?? {};
        t.same(Object.keys(item).filter((m) => METHODS.includes(m)).sort(), methods, `${path}: the documented methods are the route's`);
        for (const m of methods) {
          const op = item[m];
          if (!op) continue;
          if (route.auth) {
            t.not(op.security?.length, 0, `${m.toUpperCase()} ${path} needs the token`);
            t.ok(op.responses['401'], `${m.toUpperCase()} ${path} documents 401`);
          } else {
            t.same(op.security, [], `${m.toUpperCase()} ${path} is public`);
          }
        }
      }
    });
    t.ok(routes.length >= 20, `the table has its ${routes.length} routes`);
  });
});

const problem = dockerProblem();
t.test('real responses of a real engine fit the documented schemas', { skip: problem !== undefined && process.env['SQLRS_REQUIRE_DOCKER'] !== '1' ? problem : false }, async (t) => {
  if (problem !== undefined) { t.fail(`SQLRS_REQUIRE_DOCKER=1 but ${problem}`); return; }
  const eng = await startPrepEngine(t);
  const doc = await fetchDoc(eng);
  const c = new ResponseChecker(doc);
  const check = (method: string, template: string, r: HttpResult): HttpResult => { c.check(t, method, template, r); return r; };
  const get = async (template: string, path: string, headers: Record<string, string> = {}): Promise<HttpResult> => check('get', template, await eng.fetch(path, { headers }));
  const ndjson = { Accept: 'application/x-ndjson' };
  const script = join(eng.scripts, 'schema.sql');
  writeFileSync(script, `create table t_${Date.now()} (id int primary key);\n`);

  // Engine, config.
  check('get', '/v1/health', await eng.fetchRaw('/v1/health'));
  check('get', '/v1/openapi.json', await eng.fetchRaw('/v1/openapi.json'));
  check('get', '/metrics', await eng.fetch('/metrics'));
  check('get', '/metrics', await eng.fetchRaw('/metrics'));
  await get('/v1/config', '/v1/config');
  await get('/v1/config', '/v1/config?effective=true');
  await get('/v1/config', '/v1/config?path=log.level&effective=true');
  await get('/v1/config', '/v1/config?path=log.level');
  await get('/v1/config', '/v1/config?path=a..b');
  await get('/v1/config/schema', '/v1/config/schema');
  check('patch', '/v1/config', await eng.fetch('/v1/config', { method: 'PATCH', body: { path: 'orchestrator.jobs.maxIdentical', value: 5 } }));
  check('patch', '/v1/config', await eng.fetch('/v1/config', { method: 'PATCH', body: { value: 5 } }));
  check('patch', '/v1/config', await eng.fetch('/v1/config', { method: 'PATCH', body: '{"path":' }));
  check('delete', '/v1/config', await eng.fetch('/v1/config?path=orchestrator.jobs.maxIdentical', { method: 'DELETE' }));
  check('delete', '/v1/config', await eng.fetch('/v1/config?path=orchestrator.jobs.maxIdentical', { method: 'DELETE' }));
  check('delete', '/v1/config', await eng.fetch('/v1/config', { method: 'DELETE' }));
  await get('/ui', '/ui');
  await get('/ui/', '/ui/');
  await get('/ui/{file}', '/ui/no-such-file.js');

  // A real prepare job, a plan-only job and a job that fails.
  const post = (path: string, body: unknown): Promise<HttpResult> => eng.fetch(path, { method: 'POST', body });
  const request = { prepare_kind: 'psql', image_id: IMAGE, psql_args: ['-f', script] };
  const accepted = check('post', '/v1/prepare-jobs', await post('/v1/prepare-jobs', request));
  const jobId = accepted.json<{ job_id: string }>().job_id;
  const outcome = await waitJob(eng, jobId);
  t.equal(outcome.status, 'succeeded', 'the prepare job succeeded');
  const result = outcome.result ?? {};
  const instanceId = result['instance_id'] ?? '';
  const stateId = result['state_id'] ?? '';
  check('post', '/v1/prepare-jobs', await post('/v1/prepare-jobs', { image_id: IMAGE }));
  check('post', '/v1/prepare-jobs', await post('/v1/prepare-jobs', { prepare_kind: 'psql', image_id: IMAGE, psql_args: ['-f', 'relative.sql'] }));
  const planId = await submit(eng, { ...request, plan_only: true });
  await waitJob(eng, planId);
  const failedId = await submit(eng, { psql_args: ['-c', 'select 1'], image_id: 'sqlrs-test/does-not-exist:1' });
  t.equal((await waitJob(eng, failedId)).status, 'failed', 'a job with an unknown image fails');

  for (const id of [jobId, planId, failedId]) {
    await get('/v1/prepare-jobs/{jobId}', `/v1/prepare-jobs/${id}`);
    await get('/v1/prepare-jobs/{jobId}/events', `/v1/prepare-jobs/${id}/events`);
    check('post', '/v1/prepare-jobs/{jobId}/cancel', await post(`/v1/prepare-jobs/${id}/cancel`, undefined));
  }
  await get('/v1/prepare-jobs/{jobId}/events', `/v1/prepare-jobs/${jobId}/events`, { Range: 'events=3-' });
  await get('/v1/prepare-jobs/{jobId}/events', `/v1/prepare-jobs/${jobId}/events`, { Range: 'events=9999-' });
  await get('/v1/prepare-jobs/{jobId}', `/v1/prepare-jobs/${'0'.repeat(32)}`);
  await get('/v1/prepare-jobs/{jobId}/events', `/v1/prepare-jobs/${'0'.repeat(32)}/events`);
  check('post', '/v1/prepare-jobs/{jobId}/cancel', await post(`/v1/prepare-jobs/${'0'.repeat(32)}/cancel`, undefined));
  for (const [template, path] of [['/v1/prepare-jobs', '/v1/prepare-jobs'], ['/v1/tasks', '/v1/tasks'], ['/v1/tasks', `/v1/tasks?job=${jobId}`],
    ['/v1/names', '/v1/names'], ['/v1/instances', '/v1/instances'], ['/v1/states', '/v1/states']] as const) {
    await get(template, path);
    await get(template, path, ndjson);
  }
  await get('/v1/instances', '/v1/instances?id_prefix=zz');
  await get('/v1/states', '/v1/states?id_prefix=0123');
  await get('/v1/names/{name}', '/v1/names/nobody');
  await get('/v1/instances/{instanceId}', `/v1/instances/${instanceId}`);
  await get('/v1/instances/{instanceId}', '/v1/instances/nobody');
  await get('/v1/states/{stateId}', `/v1/states/${stateId}`);
  await get('/v1/states/{stateId}', `/v1/states/${'0'.repeat(64)}`);

  // Cache.
  await get('/v1/cache/status', '/v1/cache/status');
  check('post', '/v1/cache/explain/prepare', await post('/v1/cache/explain/prepare', request));
  check('post', '/v1/cache/explain/prepare', await post('/v1/cache/explain/prepare', { ...request, psql_args: ['-c', 'select 2'] }));
  check('post', '/v1/cache/explain/prepare', await post('/v1/cache/explain/prepare', { prepare_kind: 'lb', image_id: IMAGE }));

  // Runs: a stream, and errors before it starts.
  const run = check('post', '/v1/runs', await post('/v1/runs', { instance_ref: instanceId, kind: 'psql', args: ['-c', 'select 1'] }));
  t.match(run.body, /"type":"exit","ts":"[^"]+","exit_code":0/, 'the run exited 0');
  const slow = await startRun(eng, { instance_ref: instanceId, kind: 'psql', args: ['-c', 'select pg_sleep(2)'] });
  const active = await get('/v1/runs', '/v1/runs');
  t.match(active.json(), [{ instance_id: instanceId, kind: 'psql' }], 'the run in progress is listed');
  await get('/v1/runs', '/v1/runs', ndjson);
  check('post', '/v1/runs', await slow.done);
  check('post', '/v1/runs', await post('/v1/runs', { kind: 'psql', args: [] }));
  check('post', '/v1/runs', await post('/v1/runs', { instance_ref: 'f'.repeat(32), kind: 'psql', args: [] }));
  check('post', '/v1/runs', await post('/v1/runs', { instance_ref: instanceId, kind: 'psql', args: ['-h', 'elsewhere'] }));

  // Deletions: dry runs, blocked, unknown, done.
  const del = (template: string, path: string): Promise<HttpResult> => eng.fetch(path, { method: 'DELETE' }).then((r) => check('delete', template, r));
  t.equal((await del('/v1/states/{stateId}', `/v1/states/${stateId}`)).status, 409, 'a state with an instance is blocked');
  await del('/v1/states/{stateId}', `/v1/states/${stateId}?dry_run=true`);
  const tree = await del('/v1/states/{stateId}', `/v1/states/${stateId}?recurse=true&dry_run=true`);
  t.match(tree.json(), { outcome: 'would_delete', root: { children: [{ kind: 'instance', id: instanceId }] } }, 'a recursive dry run lists the instance');
  await del('/v1/states/{stateId}', `/v1/states/${stateId}?recurse=maybe`);
  await del('/v1/states/{stateId}', `/v1/states/${'0'.repeat(64)}`);
  await del('/v1/prepare-jobs/{jobId}', `/v1/prepare-jobs/${planId}?dry_run=true`);
  await del('/v1/prepare-jobs/{jobId}', `/v1/prepare-jobs/${planId}`);
  await del('/v1/prepare-jobs/{jobId}', `/v1/prepare-jobs/${planId}`);
  await del('/v1/instances/{instanceId}', `/v1/instances/${instanceId}?dry_run=true`);
  await del('/v1/instances/{instanceId}', `/v1/instances/${instanceId}`);
  await del('/v1/instances/{instanceId}', `/v1/instances/${instanceId}`);

  const all = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).filter((m) => METHODS.includes(m)).map((m) => `${m} ${path}`));
  const missed = all.filter((op) => !c.exercised.has(op) && !op.endsWith(' /v1/ws'));
  t.same(missed, [], 'every documented operation (but the WebSocket upgrade) was exercised');
});
