/**
 * long-file: one class owns the whole config surface (read, validate, persist, notify); its parts share private state.
 * The engine's config: built-in defaults plus the user's overrides in `<root>/config.json`.
 *
 * The file holds only overrides. Reads see either the overrides alone or the effective view
 * (defaults deep-merged with overrides). Writes are validated, persisted atomically, and only then
 * become visible; concurrent writes run one after another, so two updates never interleave their
 * file writes and the file always matches some committed state.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InternalError, InvalidArgumentError, NotFoundError, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import { writeFileAtomic } from './atomic.js';
import { type ConfigPathSegment, formatConfigPath, parseConfigPath } from './path.js';
import {
  CONTAINER_RUNTIMES,
  type ConfigLogLevel,
  type ContainerRuntimeMode,
  KNOWN_CONFIG_KEYS,
  KNOWN_CONFIG_SECTIONS,
  SNAPSHOT_BACKENDS,
  type SnapshotBackendMode,
  configSchema,
  defaultConfig,
  isNonNegativeInteger,
  isWatermark,
  toLogLevel,
  toMinStateAgeNs,
} from './schema.js';
import {
  type JsonObject,
  type JsonValue,
  cloneJson,
  deepMerge,
  getAt,
  isJsonObject,
  removeAt,
  setAt,
  toJson,
} from './tree.js';

/** Cache capacity settings with defaults applied (`behaviour.md` §11.1). */
export interface EffectiveCacheConfig {
  /** Upper bound of the cache in bytes; `0` means "no explicit bound". */
  readonly maxBytes: number;
  /** Bytes to keep free on the filesystem; `null` means "derive from the filesystem size". */
  readonly reserveBytes: number | null;
  /** Eviction starts above this fraction of the effective maximum, in (0, 1]. */
  readonly highWatermark: number;
  /** Eviction stops at this fraction of the effective maximum, below `highWatermark`. */
  readonly lowWatermark: number;
  /** States younger than this are never evicted. */
  readonly minStateAgeMs: number;
  /**
   * `null` when every stored `cache.capacity.*` value is valid. Otherwise what is wrong; the
   * numbers above then hold defaults in place of the invalid values, and capacity enforcement
   * must report itself unavailable rather than act on them.
   */
  readonly invalidReason: string | null;
}

/** The config as the engine consumes it: typed, with defaults in place of missing or invalid values. */
export interface EffectiveConfig {
  /** Normalised `log.level`. @default 'debug' */
  readonly logLevel: ConfigLogLevel;
  readonly cache: EffectiveCacheConfig;
  /** `container.runtime`. @default 'auto' */
  readonly containerRuntime: ContainerRuntimeMode;
  /** `snapshot.backend`. @default 'auto' */
  readonly snapshotBackend: SnapshotBackendMode;
  /** `orchestrator.jobs.maxIdentical`: terminal jobs kept per signature; `0` disables trimming. @default 2 */
  readonly maxIdenticalJobs: number;
}

/** What a listener learns after a committed change. */
export interface ConfigChange {
  readonly op: 'set' | 'remove';
  /** The changed path in canonical form (`a.b[0].c`). */
  readonly path: string;
  /** The effective config after the change. */
  readonly effective: EffectiveConfig;
}

/** Called after each committed change; exceptions are caught and logged. */
export type ConfigChangeListener = (change: ConfigChange) => void;

/** Options of {@link ConfigManager.open}. */
export interface ConfigManagerOptions {
  /**
   * Receives failures of change listeners.
   * @default failures are dropped
   */
  logger?: Logger;
}

/** File name of the overrides inside the state store root. */
export const CONFIG_FILE_NAME = 'config.json';

const DEFAULT_CACHE = {
  maxBytes: 0,
  highWatermark: 0.9,
  lowWatermark: 0.8,
  minStateAgeMs: 600_000,
} as const;
const DEFAULT_MAX_IDENTICAL = 2;

function keys(path: readonly string[]): ConfigPathSegment[] {
  return path.map((key) => ({ type: 'key', key }));
}

function invalidValue(): InvalidArgumentError {
  return new InvalidArgumentError('invalid config value', { details: 'config value is invalid' });
}

function notFound(): NotFoundError {
  return new NotFoundError('path not found', { details: 'config path not found' });
}

/** Whether one of the paths is a prefix of (or equal to) the other. */
function related(segments: readonly ConfigPathSegment[], known: readonly string[]): boolean {
  const n = Math.min(segments.length, known.length);
  for (let i = 0; i < n; i++) {
    const seg = segments[i];
    if (seg?.type !== 'key' || seg.key !== known[i]) return false;
  }
  return true;
}

function nsToMs(ns: bigint): number {
  return Number(ns / 1_000_000n) + Number(ns % 1_000_000n) / 1e6;
}

/** Builds the typed view of a merged config. */
export function compileEffectiveConfig(merged: JsonObject): EffectiveConfig {
  const at = (path: readonly string[]): JsonValue | undefined => getAt(merged, keys(path));
  const problems: string[] = [];
  const capacity = at(['cache', 'capacity']);
  if (capacity !== undefined && !isJsonObject(capacity)) problems.push('cache.capacity must be an object');
  const pick = <T>(name: string, parse: (v: JsonValue) => T | undefined, fallback: T): T => {
    const v = at(['cache', 'capacity', name]);
    if (v === undefined || v === null) return fallback;
    const parsed = parse(v);
    if (parsed !== undefined) return parsed;
    problems.push(`cache.capacity.${name} is invalid`);
    return fallback;
  };
  const count = (v: JsonValue): number | undefined => (isNonNegativeInteger(v) ? v : undefined);
  const fraction = (v: JsonValue): number | undefined => (isWatermark(v) ? v : undefined);
  const maxBytes = pick('maxBytes', count, DEFAULT_CACHE.maxBytes);
  const reserveBytes = pick<number | null>('reserveBytes', count, null);
  let highWatermark = pick('highWatermark', fraction, DEFAULT_CACHE.highWatermark);
  let lowWatermark = pick('lowWatermark', fraction, DEFAULT_CACHE.lowWatermark);
  const minStateAgeMs = pick(
    'minStateAge',
    (v) => {
      const ns = toMinStateAgeNs(v);
      return ns === undefined ? undefined : nsToMs(ns);
    },
    DEFAULT_CACHE.minStateAgeMs,
  );
  if (!(lowWatermark < highWatermark)) {
    problems.push('cache.capacity.lowWatermark must be below cache.capacity.highWatermark');
    highWatermark = DEFAULT_CACHE.highWatermark;
    lowWatermark = DEFAULT_CACHE.lowWatermark;
  }
  const runtime = at(['container', 'runtime']);
  const backend = at(['snapshot', 'backend']);
  const maxIdentical = at(['orchestrator', 'jobs', 'maxIdentical']);
  return Object.freeze({
    logLevel: toLogLevel(at(['log', 'level'])) ?? 'debug',
    cache: Object.freeze({
      maxBytes,
      reserveBytes,
      highWatermark,
      lowWatermark,
      minStateAgeMs,
      invalidReason: problems.length === 0 ? null : problems.join('; '),
    }),
    containerRuntime: (CONTAINER_RUNTIMES as readonly unknown[]).includes(runtime)
      ? (runtime as ContainerRuntimeMode)
      : 'auto',
    snapshotBackend: (SNAPSHOT_BACKENDS as readonly unknown[]).includes(backend)
      ? (backend as SnapshotBackendMode)
      : 'auto',
    maxIdenticalJobs: isNonNegativeInteger(maxIdentical) ? maxIdentical : DEFAULT_MAX_IDENTICAL,
  });
}

/**
 * Checks the value rules of every known key a set at `segments` can affect: known keys at or under
 * the set path, and known keys and sections the set path runs through.
 *
 * @throws InvalidArgumentError `invalid config value` / `config value is invalid`.
 */
function validateSet(segments: readonly ConfigPathSegment[], next: JsonObject): void {
  for (const known of KNOWN_CONFIG_KEYS) {
    if (!related(segments, known.path)) continue;
    const v = getAt(next, keys(known.path));
    if (v !== undefined && v !== null && !known.accepts(v)) throw invalidValue();
  }
  for (const path of KNOWN_CONFIG_SECTIONS) {
    if (!related(segments, path)) continue;
    const v = getAt(next, keys(path));
    if (v !== undefined && !isJsonObject(v)) throw invalidValue();
  }
  const high = ['cache', 'capacity', 'highWatermark'];
  const low = ['cache', 'capacity', 'lowWatermark'];
  if (related(segments, high) || related(segments, low)) {
    // Compared on the effective view: an unset (or null) watermark counts as its default.
    const merged = deepMerge(defaultConfig(), next);
    const h = getAt(merged, keys(high));
    const l = getAt(merged, keys(low));
    const hv = isWatermark(h) ? h : DEFAULT_CACHE.highWatermark;
    const lv = isWatermark(l) ? l : DEFAULT_CACHE.lowWatermark;
    if (!(lv < hv)) throw invalidValue();
  }
}

/**
 * Owns `<root>/config.json`. Create it with {@link ConfigManager.open}.
 */
export class ConfigManager {
  readonly #file: string;
  readonly #logger: Logger | undefined;
  readonly #listeners = new Set<ConfigChangeListener>();
  #overrides: JsonObject;
  #merged: JsonObject;
  #effective: EffectiveConfig;
  /** Tail of the write queue; never rejects. */
  #tail: Promise<unknown> = Promise.resolve();

  private constructor(file: string, overrides: JsonObject, opts: ConfigManagerOptions) {
    this.#file = file;
    this.#logger = opts.logger;
    this.#overrides = overrides;
    this.#merged = deepMerge(defaultConfig(), overrides);
    this.#effective = compileEffectiveConfig(this.#merged);
  }

  /**
   * Loads the overrides from `<root>/config.json`; a missing file means no overrides.
   *
   * @throws InternalError `config file must contain a JSON object` when the file holds valid JSON
   *   that is not an object; `config file is not valid JSON` when it does not parse (or holds a
   *   number out of range); `cannot read config` when it cannot be read. The engine treats each
   *   as a start-up failure.
   */
  static async open(root: string, opts: ConfigManagerOptions = {}): Promise<ConfigManager> {
    const file = join(root, CONFIG_FILE_NAME);
    let text: string | undefined;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new InternalError('cannot read config', { details: errorText(e), cause: e });
      }
    }
    let overrides: JsonObject = {};
    if (text !== undefined) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (e) {
        throw new InternalError('config file is not valid JSON', { details: `${file}: ${errorText(e)}`, cause: e });
      }
      if (!isJsonObject(parsed)) {
        throw new InternalError('config file must contain a JSON object', { details: file });
      }
      // JSON.parse turns out-of-range numbers (1e400) into Infinity, which has no JSON form.
      const json = toJson(parsed);
      if (json === undefined) {
        throw new InternalError('config file is not valid JSON', { details: `${file}: number out of range` });
      }
      overrides = json as JsonObject;
    }
    return new ConfigManager(file, overrides, opts);
  }

  /** Absolute path of the overrides file. */
  get file(): string {
    return this.#file;
  }

  /**
   * Reads the config. Without a path: the whole object, a copy. With a path: the value there.
   *
   * @param effective read defaults deep-merged with overrides; otherwise overrides only, so any
   *   key not explicitly overridden is missing.
   * @throws InvalidArgumentError `invalid path` / `config path is invalid` for a malformed path.
   * @throws NotFoundError `path not found` / `config path not found` when nothing is at the path.
   */
  get(path: string, effective: boolean): JsonValue {
    const segments = parseConfigPath(path);
    if (segments === undefined) {
      throw new InvalidArgumentError('invalid path', { details: 'config path is invalid' });
    }
    const v = getAt(effective ? this.#merged : this.#overrides, segments);
    if (v === undefined) throw notFound();
    return cloneJson(v);
  }

  /**
   * Sets an override and persists it. Missing intermediate steps are created (objects under keys,
   * null-padded arrays under indices). `undefined` is stored as `null`, as an absent JSON field is.
   * Known keys are checked (`null` always passes); other keys accept any JSON value.
   *
   * @returns a copy of the value set.
   * @throws InvalidArgumentError `path is required` for an empty path; `invalid config value` with
   *   details `config path is invalid` for a malformed path or one that does not start with a key,
   *   or `config value is invalid` for a value a known key rejects (or that is not JSON data).
   * @throws InternalError `cannot update config` when the file cannot be written; nothing changes.
   */
  set(path: string, value: unknown): Promise<JsonValue> {
    return this.#serial(async () => {
      if (path.trim() === '') throw new InvalidArgumentError('path is required');
      const segments = parseConfigPath(path);
      // The root must stay an object, so a path may not start with an index.
      if (segments === undefined || segments[0]?.type !== 'key') {
        throw new InvalidArgumentError('invalid config value', { details: 'config path is invalid' });
      }
      const v = value === undefined ? null : toJson(value);
      if (v === undefined) throw invalidValue();
      const next = setAt(cloneJson(this.#overrides), segments, cloneJson(v)) as JsonObject;
      validateSet(segments, next);
      await this.#persist(next);
      this.#commit(next, 'set', segments);
      return v;
    });
  }

  /**
   * Removes an override and persists the result: an object key is deleted, an array element is
   * removed (later elements move down). Emptied parent objects stay.
   *
   * @returns a copy of the effective value at the path afterwards, or `null` when there is none.
   * @throws InvalidArgumentError `path is required` for an empty path; `invalid path` /
   *   `config path is invalid` for a malformed one.
   * @throws NotFoundError `path not found` / `config path not found` when no override is there.
   * @throws InternalError `cannot update config` when the file cannot be written; nothing changes.
   */
  remove(path: string): Promise<JsonValue> {
    return this.#serial(async () => {
      if (path.trim() === '') throw new InvalidArgumentError('path is required');
      const segments = parseConfigPath(path);
      if (segments === undefined) {
        throw new InvalidArgumentError('invalid path', { details: 'config path is invalid' });
      }
      const next = cloneJson(this.#overrides);
      if (!removeAt(next, segments)) throw notFound();
      await this.#persist(next);
      this.#commit(next, 'remove', segments);
      const v = getAt(this.#merged, segments);
      return v === undefined ? null : cloneJson(v);
    });
  }

  /** The typed effective config. The same frozen object until the next change. */
  effective(): EffectiveConfig {
    return this.#effective;
  }

  /**
   * Subscribes to committed changes (e.g. to apply `log.level` live).
   *
   * @returns a function that unsubscribes.
   */
  onChange(listener: ConfigChangeListener): () => void {
    const entry: ConfigChangeListener = (c) => listener(c);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  /** The JSON Schema of the config (`GET /v1/config/schema`), a fresh copy. */
  schema(): JsonObject {
    return configSchema();
  }

  /** Resolves once every write queued so far has finished (successfully or not). */
  async settled(): Promise<void> {
    await this.#tail;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  async #persist(next: JsonObject): Promise<void> {
    try {
      await writeFileAtomic(this.#file, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
    } catch (e) {
      throw new InternalError('cannot update config', { details: errorText(e), cause: e });
    }
  }

  #commit(next: JsonObject, op: ConfigChange['op'], segments: readonly ConfigPathSegment[]): void {
    this.#overrides = next;
    this.#merged = deepMerge(defaultConfig(), next);
    this.#effective = compileEffectiveConfig(this.#merged);
    const change: ConfigChange = { op, path: formatConfigPath(segments), effective: this.#effective };
    for (const listener of [...this.#listeners]) {
      try {
        listener(change);
      } catch (e) {
        this.#logger?.warn('config change listener failed', { path: change.path, err: errorText(e) });
      }
    }
  }
}
