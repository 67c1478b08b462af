/**
 * What the engine knows about its config: the defaults, the value rules checked when a value is
 * set, and the JSON Schema served at `GET /v1/config/schema`. All three describe the same keys;
 * everything else in `config.json` is kept and served but never interpreted.
 */
import { parseGoDurationNs } from './duration.js';
import type { JsonObject, JsonValue } from './tree.js';

/** Log levels accepted by `log.level` (compared case-insensitively). */
export const CONFIG_LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
/** Values of `container.runtime`. */
export const CONTAINER_RUNTIMES = ['auto', 'docker', 'podman'] as const;
/** Values of `snapshot.backend`. */
export const SNAPSHOT_BACKENDS = ['auto', 'overlay', 'btrfs', 'copy'] as const;

/** A `log.level` value after normalisation. */
export type ConfigLogLevel = (typeof CONFIG_LOG_LEVELS)[number];
/** A `container.runtime` value. */
export type ContainerRuntimeMode = (typeof CONTAINER_RUNTIMES)[number];
/** A `snapshot.backend` value. */
export type SnapshotBackendMode = (typeof SNAPSHOT_BACKENDS)[number];

/**
 * The defaults every override is merged onto. A fresh copy on every call, so callers may mutate it.
 * `cache.capacity.reserveBytes: null` means "computed from the filesystem size".
 */
export function defaultConfig(): JsonObject {
  return {
    log: { level: 'debug' },
    cache: {
      capacity: { maxBytes: 0, reserveBytes: null, highWatermark: 0.9, lowWatermark: 0.8, minStateAge: '10m' },
    },
    container: { runtime: 'auto' },
    snapshot: { backend: 'auto' },
    orchestrator: { jobs: { maxIdentical: 2 } },
  };
}

/** True for a safe integer ≥ 0 (what a JSON number without fraction or exponent can carry here). */
export function isNonNegativeInteger(v: JsonValue | undefined): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** True for a watermark: a number in (0, 1]. */
export function isWatermark(v: JsonValue | undefined): v is number {
  return typeof v === 'number' && v > 0 && v <= 1;
}

/** Normalises a `log.level` value (trimmed, case-insensitive), or `undefined` when it is not one. */
export function toLogLevel(v: JsonValue | undefined): ConfigLogLevel | undefined {
  if (typeof v !== 'string') return undefined;
  const l = v.trim().toLowerCase();
  return (CONFIG_LOG_LEVELS as readonly string[]).includes(l) ? (l as ConfigLogLevel) : undefined;
}

/** Nanoseconds of a non-negative duration string (`10m`, `1h30m`, `0s`), or `undefined`. */
export function toMinStateAgeNs(v: JsonValue | undefined): bigint | undefined {
  if (typeof v !== 'string') return undefined;
  const ns = parseGoDurationNs(v);
  return ns !== undefined && ns >= 0n ? ns : undefined;
}

function oneOf(values: readonly string[]): (v: JsonValue) => boolean {
  return (v) => typeof v === 'string' && values.includes(v);
}

/** A key the engine interprets, with the rule a non-null value set there must satisfy. */
export interface KnownConfigKey {
  /** Key names from the root. */
  readonly path: readonly string[];
  /** Whether a non-null value is acceptable (`null` always is: it means "use the default"). */
  readonly accepts: (v: JsonValue) => boolean;
}

/** Every key the engine interprets, with its value rule (`api.md` §3.14). */
export const KNOWN_CONFIG_KEYS: readonly KnownConfigKey[] = [
  { path: ['log', 'level'], accepts: (v) => toLogLevel(v) !== undefined },
  { path: ['cache', 'capacity', 'maxBytes'], accepts: isNonNegativeInteger },
  { path: ['cache', 'capacity', 'reserveBytes'], accepts: isNonNegativeInteger },
  { path: ['cache', 'capacity', 'highWatermark'], accepts: isWatermark },
  { path: ['cache', 'capacity', 'lowWatermark'], accepts: isWatermark },
  { path: ['cache', 'capacity', 'minStateAge'], accepts: (v) => toMinStateAgeNs(v) !== undefined },
  { path: ['container', 'runtime'], accepts: oneOf(CONTAINER_RUNTIMES) },
  { path: ['snapshot', 'backend'], accepts: oneOf(SNAPSHOT_BACKENDS) },
  { path: ['orchestrator', 'jobs', 'maxIdentical'], accepts: isNonNegativeInteger },
];

/**
 * Objects that hold known keys. A value set at one of these paths must be a JSON object, so that
 * the keys below it keep their meaning.
 */
export const KNOWN_CONFIG_SECTIONS: readonly (readonly string[])[] = [
  ['log'],
  ['cache'],
  ['cache', 'capacity'],
  ['container'],
  ['snapshot'],
  ['orchestrator'],
  ['orchestrator', 'jobs'],
];

function section(properties: JsonObject): JsonObject {
  return { type: 'object', properties, additionalProperties: true };
}

/**
 * The JSON Schema (draft 2020-12) of the config, as served by `GET /v1/config/schema`. Every
 * object level allows additional properties; every known key also allows `null`. The schema is
 * descriptive: set-time checks are {@link KNOWN_CONFIG_KEYS}. A fresh copy on every call.
 */
export function configSchema(): JsonObject {
  const intMin0 = (): JsonObject => ({ type: ['integer', 'null'], minimum: 0 });
  const fraction = (): JsonObject => ({ type: ['number', 'null'], minimum: 0, maximum: 1 });
  const enumOf = (values: readonly string[]): JsonObject => ({ type: ['string', 'null'], enum: [...values, null] });
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    type: 'object',
    properties: {
      log: section({ level: enumOf(CONFIG_LOG_LEVELS) }),
      cache: section({
        capacity: section({
          maxBytes: intMin0(),
          reserveBytes: intMin0(),
          highWatermark: fraction(),
          lowWatermark: fraction(),
          minStateAge: { type: ['string', 'null'] },
        }),
      }),
      container: section({ runtime: enumOf(CONTAINER_RUNTIMES) }),
      snapshot: section({ backend: enumOf(SNAPSHOT_BACKENDS) }),
      orchestrator: section({ jobs: section({ maxIdentical: intMin0() }) }),
    },
    additionalProperties: true,
  };
}
