/**
 * The OpenAPI 3.1 document served at `GET /v1/openapi.json`, generated from valibot schemas with
 * `@valibot/to-json-schema`: request bodies from the schemas that validate them (the wings'
 * `PrepareBodySchema` and `RunBodySchema`, `ConfigPatchBodySchema`), responses from `schemas.ts`.
 * What each route takes and answers is described in `api-paths.ts`, by path template; a test
 * checks that every route and method of the table is in the document and that real responses
 * validate against it.
 *
 * Conventions of the document: an `application/x-ndjson` response's `schema` is the schema of one
 * line (OpenAPI 3.2 calls this `itemSchema`); list routes answer a JSON array, or NDJSON lines when
 * `Accept` contains `application/x-ndjson`; protected routes answer `401` with an empty body.
 * The document itself is public, like `/v1/health`: it describes the API and holds no data.
 */
import type * as v from 'valibot';
import { toJsonSchema, toJsonSchemaDefs, type ConversionConfig, type JsonSchema } from '@valibot/to-json-schema';
import { PrepareBodySchema } from '../actors/prepare/service.js';
import { RunBodySchema } from '../actors/run/service.js';
import * as S from './schemas.js';
import { API_PATHS, type BodyDoc, type OperationDoc, type PathDocs, type ParamDoc } from './api-paths.js';

/** Named schemas, served under `#/components/schemas/<name>` and referenced wherever they are used. */
const COMPONENTS: Record<string, v.GenericSchema> = {
  ApiError: S.ApiErrorSchema,
  Health: S.HealthSchema,
  PrepareRequest: PrepareBodySchema,
  PrepareJobAccepted: S.PrepareJobAcceptedSchema,
  PrepareJobStatus: S.PrepareJobStatusSchema,
  PrepareJobEntry: S.PrepareJobEntrySchema,
  PreparePlanTask: S.PreparePlanTaskSchema,
  PrepareJobEvent: S.PrepareJobEventSchema,
  PrepareResult: S.PrepareResultSchema,
  TaskEntry: S.TaskEntrySchema,
  NameEntry: S.NameEntrySchema,
  InstanceEntry: S.InstanceEntrySchema,
  StateEntry: S.StateEntrySchema,
  DeleteNode: S.DeleteNodeSchema,
  DeleteResult: S.DeleteResultSchema,
  RunRequest: RunBodySchema,
  RunEvent: S.RunEventSchema,
  RunInfo: S.RunInfoSchema,
  CacheStatus: S.CacheStatusSchema,
  LastEviction: S.LastEvictionSchema,
  ContainerRuntime: S.ContainerRuntimeSchema,
  CacheExplain: S.CacheExplainSchema,
  ConfigPatch: S.ConfigPatchBodySchema,
  ConfigPathValue: S.ConfigPathValueSchema,
};

const CONVERSION: ConversionConfig = {
  target: 'draft-2020-12',
  // Request schemas transform (e.g. `null` → ""): what a client sends is their input side.
  typeMode: 'input',
  definitions: COMPONENTS,
  overrideRef: ({ referenceId }) => `#/components/schemas/${referenceId}`,
};

/** A JSON Schema for use inside the document: references to components, no `$schema`/`$defs`. */
function schemaOf(schema: v.GenericSchema): JsonSchema {
  const { $schema: _dialect, $defs: _defs, ...rest } = toJsonSchema(schema, CONVERSION);
  return rest;
}

type Json = Record<string, unknown>;

function content(body: BodyDoc): Json {
  switch (body.kind) {
    case 'json': return { 'application/json': { schema: schemaOf(body.schema) } };
    case 'list': return {
      'application/json': { schema: { type: 'array', items: schemaOf(body.item) } },
      'application/x-ndjson': { schema: schemaOf(body.item) },
    };
    case 'ndjson': return { 'application/x-ndjson': { schema: schemaOf(body.item) } };
    case 'text': return Object.fromEntries([body.contentType].flat().map((t) => [t, { schema: schemaOf(body.schema) }]));
  }
}

function parameter(p: ParamDoc): Json {
  return { name: p.name, in: p.in, description: p.description, required: p.in === 'path' || p.required === true, schema: schemaOf(p.schema) };
}

function operation(op: OperationDoc): Json {
  const responses: Json = {};
  const all = op.public ? op.responses : { ...op.responses, 401: { description: 'missing or wrong bearer token (empty body)' } };
  for (const [code, r] of Object.entries(all).sort(([a], [b]) => a.localeCompare(b))) {
    const out: Json = { description: r.description };
    if (r.headers) out['headers'] = Object.fromEntries(Object.entries(r.headers).map(([h, d]) => [h, { description: d, schema: { type: 'string' } }]));
    if (r.body) out['content'] = content(r.body);
    responses[code] = out;
  }
  const out: Json = { operationId: op.id, summary: op.summary, tags: [op.tag] };
  if (op.description) out['description'] = op.description;
  if (op.public) out['security'] = [];
  if (op.params) out['parameters'] = op.params.map(parameter);
  if (op.body) out['requestBody'] = { description: op.body.description, required: true, content: { 'application/json': { schema: schemaOf(op.body.schema) } } };
  out['responses'] = responses;
  return out;
}

export interface OpenApiOptions {
  /** The engine version (`info.version`). */
  version: string;
  /** The config's own JSON Schema (`GET /v1/config/schema`), served as component `Config`. */
  configSchema: object;
  /** What to describe. @default {@link API_PATHS} */
  paths?: PathDocs;
}

/** Builds the OpenAPI 3.1 document. @throws when a schema cannot be expressed in JSON Schema */
export function buildOpenApi(o: OpenApiOptions): Json {
  const { $schema: _dialect, $id: _id, ...configSchema } = o.configSchema as Json;
  const { definitions: _own, ...defsConfig } = CONVERSION;
  const schemas: Json = { ...toJsonSchemaDefs(COMPONENTS, defsConfig), Config: configSchema };
  const paths: Json = {};
  for (const [path, methods] of Object.entries(o.paths ?? API_PATHS)) {
    const item: Json = {};
    for (const [method, op] of Object.entries(methods)) if (op) item[method] = operation(op);
    paths[path] = item;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'sqlrs-engine',
      version: o.version,
      description: 'Local engine that gives developers disposable PostgreSQL databases in a known state. '
        + 'Every route but `/v1/health` and `/v1/openapi.json` needs `Authorization: Bearer <authToken of engine.json>`. '
        + 'An `application/x-ndjson` response carries one JSON value per line; its `schema` describes one line.',
    },
    tags: [
      { name: 'engine', description: 'health, API description, metrics, config' },
      { name: 'prepare', description: 'prepare jobs, their tasks and event streams' },
      { name: 'resources', description: 'names, instances and states' },
      { name: 'runs', description: 'psql and pgbench against an instance' },
      { name: 'cache', description: 'cache capacity and hit/miss questions' },
      { name: 'ui', description: 'the live web page (static files, no data)' },
    ],
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'the `authToken` of engine.json (64 hex digits, new at every engine start)' } },
      schemas,
    },
  };
}
