/**
 * The response shapes of the HTTP API (`api.md` §3, §4) as valibot schemas, and the request shapes
 * that have no wing service to hold them (config PATCH, query parameters). `openapi.ts` generates
 * `GET /v1/openapi.json` from these and from the wings' request schemas (`PrepareBodySchema`,
 * `RunBodySchema`), so the document cannot drift from what is validated; the OpenAPI test checks
 * real responses against it. Objects the engine writes are strict (no undocumented field passes);
 * their optional fields are omitted when unset, never `null`.
 */
import * as v from 'valibot';
import type { ApiErrorCode } from '../errors.js';
import type { CacheExplainResponse } from '../actors/prepare/service.js';
import type { CacheStatus } from '../actors/cache/service.js';
import type { DeleteResult } from '../actors/deletion/service.js';
import type { RunEvent, RunInfo } from '../actors/run/service.js';

/** A schema with a description (carried into the OpenAPI document). */
function describe<S extends v.GenericSchema>(schema: S, text: string) {
  return v.pipe(schema, v.description(text));
}

// ---- scalars --------------------------------------------------------------------------------------

const Hex32 = v.pipe(v.string(), v.regex(/^[0-9a-f]{32}$/));
const Hex64 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/));
/** RFC 3339 UTC timestamp with up to nanoseconds (`2026-03-09T12:00:00.123456789Z`). */
const Timestamp = v.pipe(v.string(), v.isoTimestamp());
const Int = v.pipe(v.number(), v.integer());
const Count = v.pipe(v.number(), v.integer(), v.minValue(0));
const Status = v.picklist(['queued', 'running', 'succeeded', 'failed']);

/** Every wire error code (a record, so that the compiler insists on each of them). */
const ERROR_CODES: Record<ApiErrorCode, true> = {
  invalid_argument: true, not_found: true, conflict: true, internal_error: true, cancelled: true,
  cache_enforcement_unavailable: true, cache_limit_too_small: true, cache_full_unreclaimable: true,
};

// ---- errors, health -------------------------------------------------------------------------------

/** The API error shape (`api.md` §4). Clients must accept codes they do not know. */
export const ApiErrorSchema = v.strictObject({
  code: describe(v.string(), `a stable code: ${Object.keys(ERROR_CODES).map((c) => `\`${c}\``).join(', ')}`),
  message: v.string(),
  details: v.optional(v.string()),
});

export const HealthSchema = v.strictObject({
  ok: v.literal(true),
  version: v.string(),
  instanceId: describe(Hex32, 'this engine process; equals `instanceId` of engine.json'),
  pid: Int,
});

// ---- prepare jobs ---------------------------------------------------------------------------------

export const PrepareResultSchema = v.strictObject({
  dsn: v.string(),
  instance_id: Hex32,
  state_id: Hex64,
  image_id: describe(v.string(), 'the resolved image'),
  prepare_kind: v.string(),
  prepare_args_normalized: v.string(),
});

export const PrepareJobAcceptedSchema = v.strictObject({
  job_id: Hex32,
  status_url: v.string(),
  events_url: v.string(),
  status: v.literal('queued'),
});

const TaskInput = v.strictObject({ kind: v.picklist(['image', 'state']), id: v.string() });

/** The fields of each kind of plan task (`api.md` §3.5), shared by job status and task entries. */
const TASK_FIELDS = {
  plan: { task_id: v.literal('plan'), type: v.literal('plan'), planner_kind: v.string() },
  resolve: { task_id: v.literal('resolve-image'), type: v.literal('resolve_image'), image_id: v.string(), resolved_image_id: v.optional(v.string()) },
  execute: {
    task_id: v.pipe(v.string(), v.regex(/^execute-\d+$/)), type: v.literal('state_execute'), input: TaskInput,
    task_hash: Hex64, output_state_id: Hex64, cached: v.boolean(),
  },
  instance: { task_id: v.literal('prepare-instance'), type: v.literal('prepare_instance'), input: TaskInput, instance_mode: v.literal('ephemeral') },
} as const;

export const PreparePlanTaskSchema = v.variant('type', [
  v.strictObject(TASK_FIELDS.plan),
  v.strictObject(TASK_FIELDS.resolve),
  v.strictObject(TASK_FIELDS.execute),
  v.strictObject(TASK_FIELDS.instance),
]);

const TASK_ENTRY = {
  job_id: Hex32,
  status: Status,
  args_summary: v.optional(describe(v.string(), 'state_execute only: `-f <path>`, `-f -` or `-c <sql>`')),
};

export const TaskEntrySchema = v.variant('type', [
  v.strictObject({ ...TASK_FIELDS.plan, ...TASK_ENTRY }),
  v.strictObject({ ...TASK_FIELDS.resolve, ...TASK_ENTRY }),
  v.strictObject({ ...TASK_FIELDS.execute, ...TASK_ENTRY }),
  v.strictObject({ ...TASK_FIELDS.instance, ...TASK_ENTRY }),
]);

const JOB_COMMON = {
  job_id: Hex32,
  status: Status,
  prepare_kind: v.string(),
  image_id: describe(v.string(), 'the requested image'),
  plan_only: v.optional(v.literal(true)),
  prepare_args_normalized: v.optional(v.string()),
  created_at: Timestamp,
  started_at: v.optional(Timestamp),
  finished_at: v.optional(Timestamp),
};

export const PrepareJobStatusSchema = v.strictObject({
  ...JOB_COMMON,
  tasks: v.optional(v.array(PreparePlanTaskSchema)),
  result: v.optional(PrepareResultSchema),
  error: v.optional(ApiErrorSchema),
});

export const PrepareJobEntrySchema = v.strictObject({
  ...JOB_COMMON,
  resolved_image_id: v.optional(v.string()),
  signature: v.optional(Hex64),
});

/** One line of `GET /v1/prepare-jobs/{jobId}/events` (`api.md` §3.6). */
export const PrepareJobEventSchema = v.variant('type', [
  v.strictObject({ type: v.literal('status'), ts: Timestamp, status: Status }),
  v.strictObject({ type: v.literal('task'), ts: Timestamp, task_id: v.string(), status: Status, message: v.optional(v.string()), error: v.optional(ApiErrorSchema) }),
  v.strictObject({ type: v.literal('log'), ts: Timestamp, message: v.string() }),
  v.strictObject({ type: v.literal('result'), ts: Timestamp, result: PrepareResultSchema }),
  v.strictObject({ type: v.literal('error'), ts: Timestamp, error: ApiErrorSchema }),
]);

// ---- names, instances, states ---------------------------------------------------------------------

export const NameEntrySchema = v.strictObject({
  name: v.string(),
  instance_id: v.optional(v.string()),
  image_id: v.string(),
  state_id: v.string(),
  state_fingerprint: v.optional(v.string()),
  status: v.picklist(['active', 'missing', 'expired']),
  last_used_at: v.optional(Timestamp),
});

export const InstanceEntrySchema = v.strictObject({
  instance_id: Hex32,
  image_id: v.string(),
  state_id: Hex64,
  name: v.optional(v.string()),
  created_at: Timestamp,
  expires_at: v.optional(Timestamp),
  runtime_id: v.optional(describe(v.string(), 'the container id')),
  status: v.picklist(['active', 'orphaned', 'expired']),
});

export const StateEntrySchema = v.strictObject({
  state_id: Hex64,
  parent_state_id: v.optional(Hex64),
  image_id: v.string(),
  prepare_kind: v.string(),
  prepare_args_normalized: v.string(),
  created_at: Timestamp,
  size_bytes: v.optional(Count),
  last_used_at: v.optional(Timestamp),
  use_count: Count,
  min_retention_until: v.optional(Timestamp),
  refcount: describe(Count, 'instances made from this state'),
});

// ---- deletion -------------------------------------------------------------------------------------

export interface DeleteNodeOutput {
  kind: 'state' | 'instance' | 'job';
  id: string;
  connections?: number | undefined;
  runtime_id?: string | undefined;
  blocked?: 'active_connections' | 'active_tasks' | 'has_descendants' | 'blocked_by_descendant' | undefined;
  children?: DeleteNodeOutput[] | undefined;
}

/** A node of a deletion tree (recursive: `children`). */
export const DeleteNodeSchema: v.GenericSchema<DeleteNodeOutput> = v.strictObject({
  kind: v.picklist(['state', 'instance', 'job']),
  id: v.string(),
  connections: v.optional(Count),
  runtime_id: v.optional(v.string()),
  blocked: v.optional(v.picklist(['active_connections', 'active_tasks', 'has_descendants', 'blocked_by_descendant'])),
  children: v.optional(v.array(v.lazy(() => DeleteNodeSchema))),
});

export const DeleteResultSchema = v.strictObject({
  dry_run: v.boolean(),
  outcome: v.picklist(['deleted', 'would_delete', 'blocked']),
  root: DeleteNodeSchema,
});

// ---- runs -----------------------------------------------------------------------------------------

/** One line of the `POST /v1/runs` stream. */
export const RunEventSchema = v.variant('type', [
  v.strictObject({ type: v.literal('log'), ts: Timestamp, data: v.string() }),
  v.strictObject({ type: v.literal('start'), ts: Timestamp, instance_id: Hex32 }),
  v.strictObject({ type: v.picklist(['stdout', 'stderr']), ts: Timestamp, data: describe(v.string(), 'at most 16 KiB of output') }),
  v.strictObject({ type: v.literal('exit'), ts: Timestamp, exit_code: Int }),
  v.strictObject({ type: v.literal('error'), ts: Timestamp, error: ApiErrorSchema }),
]);

/** A run in progress (`GET /v1/runs`). */
export const RunInfoSchema = v.strictObject({
  run_id: Hex32,
  instance_id: Hex32,
  kind: describe(v.string(), '`psql` or `pgbench`'),
  started_at: Timestamp,
});

// ---- cache ----------------------------------------------------------------------------------------

export const LastEvictionSchema = v.strictObject({
  completed_at: Timestamp,
  trigger: v.picklist(['startup_recovery', 'prepare_step', 'snapshot', 'metadata_commit']),
  evicted_count: Count,
  freed_bytes: Count,
  blocked_count: Count,
  reclaimable_bytes: Count,
  usage_bytes_before: Count,
  usage_bytes_after: Count,
  free_bytes_before: Count,
  free_bytes_after: Count,
});

/** `container_runtime` of the cache status: the container API the engine uses. */
export const ContainerRuntimeSchema = v.variant('kind', [
  v.strictObject({ kind: v.picklist(['docker', 'podman']), socket: v.string(), source: v.string() }),
  v.strictObject({ kind: v.literal('none'), error: v.string() }),
  v.strictObject({ kind: v.picklist(['detecting', 'custom']) }),
]);

const CACHE_STATUS = {
  usage_bytes: Count,
  configured_max_bytes: v.optional(Count),
  effective_max_bytes: Count,
  reserve_bytes: Count,
  high_watermark: v.number(),
  low_watermark: v.number(),
  min_state_age: describe(v.string(), 'a Go duration, e.g. `10m0s`'),
  store_total_bytes: Count,
  store_free_bytes: Count,
  state_count: Count,
  reclaimable_bytes: Count,
  blocked_count: Count,
  pressure_reasons: v.array(v.picklist(['usage_above_high_watermark', 'physical_free_below_reserve'])),
  last_eviction: v.optional(LastEvictionSchema),
};

export const CacheStatusSchema = v.strictObject({ ...CACHE_STATUS, container_runtime: ContainerRuntimeSchema });

export const CacheExplainSchema = v.strictObject({
  decision: v.picklist(['hit', 'miss']),
  reason_code: v.picklist(['exact_state_match', 'no_matching_state']),
  signature: Hex64,
  resolved_image_id: v.string(),
  matched_state_id: v.optional(Hex64),
});

// ---- config ---------------------------------------------------------------------------------------

/**
 * `PATCH /v1/config` body. A body of another shape is read as if it had no `path` (the handler
 * answers `path is required`), like the reference decoder.
 */
export const ConfigPatchBodySchema = v.object({
  path: v.optional(v.nullable(describe(v.string(), 'config path, e.g. `cache.capacity.maxBytes` or `a.b[0].c`'))),
  value: v.optional(describe(v.unknown(), 'any JSON value, `null` included')),
});

export const ConfigPathValueSchema = v.strictObject({ path: v.string(), value: v.unknown() });

// ---- query parameters -----------------------------------------------------------------------------

/** Boolean query parameters (Go `strconv.ParseBool`; absent or empty = false). */
export const BoolQuerySchema = v.picklist(['', '1', 't', 'T', 'TRUE', 'true', 'True', '0', 'f', 'F', 'FALSE', 'false', 'False']);
/** `id_prefix`: at least 8 hex digits, either case. */
export const IdPrefixQuerySchema = v.pipe(v.string(), v.regex(/^[0-9a-fA-F]{8,}$/));

// ---- the wings' own types fit these schemas (checked by the compiler) -------------------------------

type Fits<A, B> = [A] extends [B] ? true : false;
/** Each entry is `true` only while the wing's type is assignable to the documented schema. */
export type ResponseTypeChecks = [
  Fits<DeleteResult, v.InferOutput<typeof DeleteResultSchema>>,
  Fits<CacheStatus, Omit<v.InferOutput<typeof CacheStatusSchema>, 'container_runtime'>>,
  Fits<CacheExplainResponse, v.InferOutput<typeof CacheExplainSchema>>,
  Fits<RunEvent, v.InferOutput<typeof RunEventSchema>>,
  Fits<RunInfo, v.InferOutput<typeof RunInfoSchema>>,
];
/** Fails to compile when a check above is `false`. */
export const RESPONSE_TYPES_FIT: ResponseTypeChecks = [true, true, true, true, true];
