/**
 * What every route takes and answers, for the OpenAPI document (`openapi.ts`): keyed by OpenAPI
 * path templates (`/v1/states/{stateId}`) that the route table's routes match, and by the
 * lower-case method. Shapes are valibot schemas (`schemas.ts` and the wings' request schemas),
 * never hand-written JSON Schema. A route added to the table without an entry here fails the
 * OpenAPI test, which routes each template the way the server does.
 */
import * as v from 'valibot';
import { PrepareBodySchema } from '../actors/prepare/service.js';
import { RunBodySchema } from '../actors/run/service.js';
import * as S from './schemas.js';

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface ParamDoc {
  name: string;
  in: 'path' | 'query' | 'header';
  description: string;
  schema: v.GenericSchema;
  /** Path parameters are always required. @default false */
  required?: boolean;
}

/** A response body: one JSON value, a list (JSON array or NDJSON by `Accept`), an NDJSON stream, or text. */
export type BodyDoc =
  | { kind: 'json'; schema: v.GenericSchema }
  | { kind: 'list'; item: v.GenericSchema }
  | { kind: 'ndjson'; item: v.GenericSchema }
  | { kind: 'text'; contentType: string | string[]; schema: v.GenericSchema };

export interface ResponseDoc {
  description: string;
  body?: BodyDoc;
  /** Response headers: name → description. */
  headers?: Record<string, string>;
}

export interface OperationDoc {
  id: string;
  summary: string;
  description?: string;
  tag: 'engine' | 'prepare' | 'resources' | 'runs' | 'cache' | 'ui';
  /** No bearer token needed. @default false (a `401` response is added) */
  public?: boolean;
  params?: ParamDoc[];
  body?: { schema: v.GenericSchema; description: string };
  responses: Record<number, ResponseDoc>;
}

export type PathDocs = Record<string, Partial<Record<HttpMethod, OperationDoc>>>;

// ---- building blocks ------------------------------------------------------------------------------

const json = (schema: v.GenericSchema, description: string): ResponseDoc => ({ description, body: { kind: 'json', schema } });
const error = (description: string): ResponseDoc => json(S.ApiErrorSchema, description);
const NOT_FOUND_TEXT: ResponseDoc = {
  description: 'no such resource: the plain text `404 page not found`',
  body: { kind: 'text', contentType: 'text/plain; charset=utf-8', schema: v.literal('404 page not found\n') },
};
const PAGE: ResponseDoc = { description: 'the page (HTML)', body: { kind: 'text', contentType: 'text/html; charset=utf-8', schema: v.string() } };
const BUSY = error('the engine is busy (a mailbox or worker queue is full): `internal_error`, `engine is busy`');
const INTERNAL = error('an unexpected failure: `internal_error`');

const path = (name: string, description: string): ParamDoc => ({ name, in: 'path', description, schema: v.string() });
const query = (name: string, description: string, schema: v.GenericSchema = v.string()): ParamDoc => ({ name, in: 'query', description, schema });
const flag = (name: string, description: string): ParamDoc => query(name, `${description} (Go ParseBool: 1 t T TRUE true True 0 f F FALSE false False; absent = false)`, S.BoolQuerySchema);
const idPrefix = query('id_prefix', 'id prefix: at least 8 hex digits, either case', S.IdPrefixQuerySchema);

const JOB_ID = path('jobId', 'job id (32 hex digits), exact');
const DELETE_FLAGS = [flag('force', 'delete even when blocked by connections or running tasks'), flag('dry_run', 'only answer what would be deleted')];
const deleteResponses = (what: string): Record<number, ResponseDoc> => ({
  200: json(S.DeleteResultSchema, `the deletion tree: \`deleted\`, \`would_delete\` (dry run) or \`blocked\` (dry run)`),
  400: error('a bad flag value'),
  404: error(`${what} not found`),
  409: json(S.DeleteResultSchema, 'blocked: the tree says by what; nothing was deleted'),
  500: INTERNAL,
  503: BUSY,
});

// ---- the routes -----------------------------------------------------------------------------------

export const API_PATHS: PathDocs = {
  '/v1/ws': {
    get: {
      id: 'openWebSocket', tag: 'engine', summary: 'WebSocket upgrade: job events (and more) as frames, resumable by sequence',
      description: 'Send `{"op":"subscribe",…}` frames; see the README section on WebSocket for the frames. Browsers may pass the token as `?token=`.',
      params: [query('token', 'the bearer token, for clients that cannot set headers')],
      responses: { 101: { description: 'switched to the WebSocket protocol' } },
    },
  },
  '/v1/health': {
    get: { id: 'getHealth', tag: 'engine', public: true, summary: 'liveness and identity of the engine process', responses: { 200: json(S.HealthSchema, 'the engine is up') } },
  },
  '/v1/openapi.json': {
    get: {
      id: 'getOpenApi', tag: 'engine', public: true, summary: 'this document (OpenAPI 3.1)',
      responses: { 200: json(v.record(v.string(), v.unknown()), 'the OpenAPI document') },
    },
  },
  '/metrics': {
    get: {
      id: 'getMetrics', tag: 'engine', summary: 'Prometheus metrics (text exposition format 0.0.4)',
      description: 'Job and step durations, cache and pool hits and misses, instances, states, cache bytes and limits, WebSocket clients, mailbox depths and worker queue lengths; see the README for every metric.',
      responses: { 200: { description: 'the metrics', body: { kind: 'text', contentType: 'text/plain; version=0.0.4; charset=utf-8', schema: v.string() } } },
    },
  },
  '/v1/config': {
    get: {
      id: 'getConfig', tag: 'engine', summary: 'read the server config, whole or at a path',
      params: [query('path', 'config path (`a.b[0].c`); absent = the whole config'), flag('effective', 'defaults merged with the overrides; otherwise overrides only')],
      responses: {
        200: json(v.union([S.ConfigPathValueSchema, v.record(v.string(), v.unknown())]), 'without `path`: the config object (see component `Config`); with `path`: `{path, value}`'),
        400: error('an invalid path or flag'),
        404: error('nothing at that path (`path not found`)'),
        500: INTERNAL,
      },
    },
    patch: {
      id: 'setConfig', tag: 'engine', summary: 'set a config value (stored as an override)',
      body: { schema: S.ConfigPatchBodySchema, description: 'the path and the value; a body of another shape counts as one without `path`' },
      responses: { 200: json(S.ConfigPathValueSchema, 'the value set'), 400: error('no path, an invalid path or value, or malformed JSON'), 500: error('the override could not be stored') },
    },
    delete: {
      id: 'removeConfig', tag: 'engine', summary: 'remove a config override',
      params: [{ ...query('path', 'config path of the override to remove'), required: true }],
      responses: { 200: json(S.ConfigPathValueSchema, 'the effective value after removal, or `null`'), 400: error('no or an invalid path'), 404: error('no override at that path'), 500: INTERNAL },
    },
  },
  '/v1/config/schema': {
    get: { id: 'getConfigSchema', tag: 'engine', summary: 'the JSON Schema (draft 2020-12) of the config', responses: { 200: json(v.record(v.string(), v.unknown()), 'the schema (also component `Config`)'), 500: INTERNAL } },
  },
  '/v1/prepare-jobs': {
    get: {
      id: 'listPrepareJobs', tag: 'prepare', summary: 'list prepare jobs, oldest first',
      params: [query('job', 'job id prefix (any characters, case-insensitive)')],
      responses: { 200: { description: 'the jobs', body: { kind: 'list', item: S.PrepareJobEntrySchema } }, 500: INTERNAL },
    },
    post: {
      id: 'submitPrepareJob', tag: 'prepare', summary: 'submit a prepare (or plan-only) job',
      description: 'Validation is synchronous (400 with the CLI\'s messages); everything else happens in the job and is reported by its status and events.',
      body: { schema: PrepareBodySchema, description: 'the prepare request; `prepare_kind` `psql` (Liquibase `lb` is refused)' },
      responses: {
        201: { description: 'the job was queued', headers: { Location: 'the job\'s status URL' }, body: { kind: 'json', schema: S.PrepareJobAcceptedSchema } },
        400: error('malformed JSON or an invalid request'),
        500: INTERNAL,
        503: BUSY,
      },
    },
  },
  '/v1/prepare-jobs/{jobId}': {
    get: { id: 'getPrepareJob', tag: 'prepare', summary: 'a job\'s status, plan and result or error', params: [JOB_ID], responses: { 200: json(S.PrepareJobStatusSchema, 'the job'), 404: NOT_FOUND_TEXT, 500: INTERNAL } },
    delete: {
      id: 'deletePrepareJob', tag: 'prepare', summary: 'delete a job\'s rows (never its instance or states)',
      description: 'A queued or running job is blocked (`active_tasks`) unless `force`, which cancels it and waits for it to stop.',
      params: [JOB_ID, ...DELETE_FLAGS], responses: deleteResponses('job'),
    },
  },
  '/v1/prepare-jobs/{jobId}/cancel': {
    post: {
      id: 'cancelPrepareJob', tag: 'prepare', summary: 'cancel a queued or running job', params: [JOB_ID],
      responses: {
        200: json(S.PrepareJobStatusSchema, 'the job was already terminal'),
        202: json(S.PrepareJobStatusSchema, 'cancellation was asked; the job as it is now (it ends `failed` with code `cancelled`)'),
        404: error('job not found'),
        500: INTERNAL,
        503: BUSY,
      },
    },
  },
  '/v1/prepare-jobs/{jobId}/events': {
    get: {
      id: 'streamPrepareJobEvents', tag: 'prepare', summary: 'the job\'s events: full replay, then live until the terminal events',
      description: 'Blank lines are sent every 5 s while nothing happens; clients skip them.',
      params: [JOB_ID, { name: 'Range', in: 'header', description: '`events=N-`: resume at event N (206)', schema: v.pipe(v.string(), v.regex(/^\s*events=\d+-\s*$/)) }],
      responses: {
        200: { description: 'every event from the first', body: { kind: 'ndjson', item: S.PrepareJobEventSchema } },
        206: { description: 'the events from N', headers: { 'Content-Range': '`events N-*/<events so far>`' }, body: { kind: 'ndjson', item: S.PrepareJobEventSchema } },
        404: NOT_FOUND_TEXT,
        416: { description: 'N is past the last event (empty body)', headers: { 'Content-Range': '`events */<events so far>`' } },
      },
    },
  },
  '/v1/tasks': {
    get: {
      id: 'listTasks', tag: 'prepare', summary: 'list the tasks of every job, or of one', params: [query('job', 'exact job id')],
      responses: { 200: { description: 'the tasks, by job then plan order', body: { kind: 'list', item: S.TaskEntrySchema } }, 500: INTERNAL },
    },
  },
  '/v1/names': {
    get: {
      id: 'listNames', tag: 'resources', summary: 'list name bindings',
      params: [query('instance', 'exact instance id'), query('state', 'exact state id'), query('image', 'exact image id')],
      responses: { 200: { description: 'the names', body: { kind: 'list', item: S.NameEntrySchema } }, 500: INTERNAL },
    },
  },
  '/v1/names/{name}': {
    get: { id: 'getName', tag: 'resources', summary: 'one name binding', params: [path('name', 'the name (the rest of the path)')], responses: { 200: json(S.NameEntrySchema, 'the name'), 404: NOT_FOUND_TEXT, 500: INTERNAL } },
  },
  '/v1/instances': {
    get: {
      id: 'listInstances', tag: 'resources', summary: 'list instances',
      params: [idPrefix, query('state', 'exact state id'), query('image', 'exact image id')],
      responses: { 200: { description: 'the instances', body: { kind: 'list', item: S.InstanceEntrySchema } }, 400: error('an invalid `id_prefix`'), 500: INTERNAL },
    },
  },
  '/v1/instances/{instanceId}': {
    get: {
      id: 'getInstance', tag: 'resources', summary: 'one instance, by id or by name', params: [path('instanceId', 'instance id (32 hex digits) or a name')],
      responses: {
        200: json(S.InstanceEntrySchema, 'the instance'),
        307: { description: 'the reference was a name: the instance\'s URL (empty body)', headers: { Location: '`/v1/instances/<instance id>`' } },
        404: NOT_FOUND_TEXT,
        500: INTERNAL,
      },
    },
    delete: {
      id: 'deleteInstance', tag: 'resources', summary: 'delete an instance: container, data directory, row',
      description: 'Blocked (`active_connections`) while clients are connected, unless `force`.',
      params: [path('instanceId', 'instance id (32 hex digits), exact'), ...DELETE_FLAGS], responses: deleteResponses('instance'),
    },
  },
  '/v1/states': {
    get: {
      id: 'listStates', tag: 'resources', summary: 'list states',
      params: [idPrefix, query('kind', 'exact prepare kind'), query('image', 'exact image id')],
      responses: { 200: { description: 'the states', body: { kind: 'list', item: S.StateEntrySchema } }, 400: error('an invalid `id_prefix`'), 500: INTERNAL },
    },
  },
  '/v1/states/{stateId}': {
    get: { id: 'getState', tag: 'resources', summary: 'one state', params: [path('stateId', 'state id (64 hex digits), exact')], responses: { 200: json(S.StateEntrySchema, 'the state'), 404: NOT_FOUND_TEXT, 500: INTERNAL } },
    delete: {
      id: 'deleteState', tag: 'resources', summary: 'delete a state, or with `recurse` its whole tree',
      description: 'Without `recurse` a state with instances or child states is blocked (`has_descendants`); with it, any blocked node blocks its ancestors and nothing is deleted.',
      params: [path('stateId', 'state id (64 hex digits), exact'), flag('recurse', 'delete instances and child states too'), ...DELETE_FLAGS],
      responses: deleteResponses('state'),
    },
  },
  '/v1/runs': {
    get: {
      id: 'listRuns', tag: 'runs', summary: 'the runs in progress (an engine extension)',
      responses: { 200: { description: 'the runs, oldest first', body: { kind: 'list', item: S.RunInfoSchema } }, 500: INTERNAL },
    },
    post: {
      id: 'run', tag: 'runs', summary: 'run psql or pgbench in an instance, streamed live',
      description: 'Failures before the command starts are HTTP errors; afterwards they arrive as an `error` line. A client that disconnects kills the command.',
      body: { schema: RunBodySchema, description: 'the run request' },
      responses: {
        200: { description: '`log` lines of a container recovery, `start`, output as it arrives, then `exit` or `error`', body: { kind: 'ndjson', item: S.RunEventSchema } },
        400: error('malformed JSON or an invalid request'),
        404: error('instance not found'),
        409: error('connection arguments, an instance being deleted, or one without a runtime'),
        500: INTERNAL,
        503: BUSY,
      },
    },
  },
  '/v1/cache/status': {
    get: {
      id: 'getCacheStatus', tag: 'cache', summary: 'cache usage, limits, pressure and the last eviction; the container runtime in use',
      responses: { 200: json(S.CacheStatusSchema, 'the status'), 500: { description: 'the store cannot be measured or the capacity settings are invalid (empty body)' } },
    },
  },
  '/ui': { get: { id: 'getPage', tag: 'ui', public: true, summary: 'the live page (it asks for the token, or reads it from the URL fragment)', responses: { 200: PAGE } } },
  '/ui/': { get: { id: 'getPageSlash', tag: 'ui', public: true, summary: 'the live page', responses: { 200: PAGE } } },
  '/ui/{file}': {
    get: {
      id: 'getPageFile', tag: 'ui', public: true, summary: 'a script, style sheet or image of the page', params: [path('file', 'a file name of the page')],
      responses: { 200: { description: 'the file', body: { kind: 'text', contentType: ['text/javascript; charset=utf-8', 'text/css; charset=utf-8', 'image/svg+xml', 'text/html; charset=utf-8'], schema: v.string() } }, 404: NOT_FOUND_TEXT },
    },
  },
  '/v1/cache/explain/prepare': {
    post: {
      id: 'explainPrepare', tag: 'cache', summary: 'would this prepare hit the cache? (no job, no container)',
      body: { schema: PrepareBodySchema, description: 'a prepare request, validated as for a job' },
      responses: { 200: json(S.CacheExplainSchema, 'the decision'), 400: error('malformed JSON or an invalid request'), 500: error('the image cannot be resolved or the plan fails') },
    },
  },
};
