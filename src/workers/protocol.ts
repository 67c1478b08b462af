/**
 * Every message between the main thread and the worker threads: the filesystem pool (piscina,
 * `fs-worker.ts`) and the container worker (comlink, `container-worker.ts`). Requests are
 * discriminated unions on `type`; both kinds of worker answer with the one {@link WorkerResult}
 * envelope, so failures travel as serialized engine errors and are rebuilt with their `code`.
 * Values cross a structured-clone boundary: no class instances, no closures (the only exceptions
 * are transferables: the fs task's cancel port and the comlink output proxy).
 *
 * Imports only the kernel, so both the main-side clients and the thread side can depend on it.
 */
import { deserializeError, serializeError, type SerializedError } from '../errors.js';

// ---------------------------------------------------------------------------------------------
// The envelope

/** The answer of every worker operation: its output, or the error it failed with as plain data. */
export type WorkerResult<T> = { type: 'ok'; output: T } | { type: 'error'; error: SerializedError };

/** The error envelope for anything thrown on the thread side. */
export function errorResult(e: unknown): WorkerResult<never> {
  return { type: 'error', error: serializeError(e) };
}

/**
 * The output of a result, or its error rebuilt as an engine error with the original code.
 * @throws EngineError the deserialized thread-side failure
 */
export function unwrapResult<T>(r: WorkerResult<T>): T {
  if (r.type === 'ok') return r.output;
  throw deserializeError(r.error);
}

// ---------------------------------------------------------------------------------------------
// Shared limits

/** Cap, in characters, on output collected from internal commands and put into error details. */
export const OUTPUT_CAP = 64 * 1024;

/**
 * Appends `chunk` to a capped tail of output: keeps the last `cap` characters and marks a cut
 * with a leading `…`. Used for every command output the workers keep (never the streamed kind).
 * @default cap {@link OUTPUT_CAP}
 */
export function appendTail(tail: string, chunk: string, cap = OUTPUT_CAP): string {
  const text = tail + chunk;
  return text.length <= cap ? text : `…${text.slice(-cap)}`;
}

// ---------------------------------------------------------------------------------------------
// Filesystem worker (piscina)

/** Snapshot backend kinds (config `snapshot.backend` minus `auto`). */
export type SnapshotBackendKind = 'copy' | 'overlay' | 'btrfs';

/** Result of probing what the state-store filesystem supports. */
export interface ProbeResult {
  btrfs: boolean;
  overlay: boolean;
  /** Human-readable reasons for unsupported backends. */
  notes: string[];
}

/** The marker file written inside every complete state directory. */
export interface StateMarker {
  v: 1;
  backend: SnapshotBackendKind;
  /** Overlay only: lower layer directories below this state's own layer, top first, relative to the store root. */
  lowers: string[];
  sizeBytes: number;
  createdAt: string;
}

/**
 * Filesystem tasks run in the piscina pool. Paths are absolute. `root` is the state-store root
 * (overlay layer chains are recorded relative to it).
 *
 * On-disk contract (see README "On-disk layout"):
 * - A *base* dir `<base>/` holds `data/` (an initdb'd mount dir: `data/pgdata/PG_VERSION` …).
 *   For btrfs, `data` is a subvolume. Bases are writable only while being initialised.
 * - A *state* dir `<states>/<state_id>/` holds `state.json` ({@link StateMarker}) and `data/`:
 *   copy: a full copy of the runtime's mount dir; btrfs: a read-only subvolume snapshot;
 *   overlay: the runtime's upper layer (only what changed since the runtime's lower stack), whose
 *   lowers are listed in `state.json`. A state dir without `state.json` is incomplete.
 *   States are built in `<states>/.tmp-<state_id>-<rand>/` and renamed into place, so a crash
 *   never leaves a half-written `<states>/<state_id>`.
 * - A *runtime* dir `<runtime>/` is a writable clone: copy/btrfs: `<runtime>/data` is the mount dir;
 *   overlay: `<runtime>/upper`, `<runtime>/work`, `<runtime>/merged` (mount dir = merged), plus
 *   `<runtime>/lowers.json` recording the lower stack used, so a later snapshot knows it.
 *
 * `thread-info` is a diagnostic: it reports which worker thread answered.
 */
export type FsTask =
  | { type: 'probe'; root: string }
  | { type: 'prepare-base'; backend: SnapshotBackendKind; baseDir: string; uid: number; gid: number }
  | { type: 'clone'; backend: SnapshotBackendKind; root: string; source: CloneSource; runtimeDir: string; uid: number; gid: number }
  | { type: 'snapshot'; backend: SnapshotBackendKind; root: string; runtimeDir: string; stateDir: string; maxDepth: number }
  | { type: 'remove-runtime'; backend: SnapshotBackendKind; runtimeDir: string }
  | { type: 'remove-state'; backend: SnapshotBackendKind; stateDir: string }
  | { type: 'verify-state'; root: string; stateDir: string }
  | { type: 'copy-tree'; src: string; dest: string }
  | { type: 'measure'; path: string }
  | { type: 'remove-tree'; path: string }
  | { type: 'list-mounts'; under: string }
  | { type: 'remount-runtime'; root: string; runtimeDir: string }
  | { type: 'unmount'; path: string }
  | { type: 'thread-info' };

/** What a runtime is cloned from. */
export type CloneSource = { kind: 'base'; baseDir: string } | { kind: 'state'; stateDir: string };

/** Output per task type. */
export interface FsTaskOutput {
  probe: ProbeResult;
  'prepare-base': { dataDir: string };
  clone: { mountDir: string };
  snapshot: { sizeBytes: number };
  'remove-runtime': { removed: boolean };
  'remove-state': { removed: boolean };
  'verify-state': { ok: boolean; reason?: string };
  'copy-tree': { bytes: number; files: number };
  measure: { bytes: number; files: number };
  'remove-tree': { removed: boolean };
  'list-mounts': { mounts: string[] };
  /** `remounted`: an overlay runtime's `merged` was not mounted and has been mounted again. */
  'remount-runtime': { mountDir: string; remounted: boolean };
  /** How many mounts were found at or below `path` (all are unmounted). */
  unmount: { unmounted: number };
  /** The `threadId` of the worker thread that ran the task. */
  'thread-info': { threadId: number };
}

/** The fields of one task type, without its `type` discriminator (the thread-side functions' argument). */
export type FsArgs<K extends FsTask['type']> = Omit<Extract<FsTask, { type: K }>, 'type'>;

/**
 * What the pool hands a thread: the task and the port on which the main side posts
 * {@link FsControl} (transferred with the task). The thread aborts the task's signal when a
 * message arrives and closes the port when the task settles.
 */
export interface FsRequest {
  task: FsTask;
  cancel: InstanceType<typeof MessagePort>;
}

/** Message on an {@link FsRequest}'s cancel port: stop the task (it then answers `cancelled`). */
export interface FsControl {
  type: 'abort';
}

// ---------------------------------------------------------------------------------------------
// Container worker (comlink): the runtime interface the actors use, and the worker's own API

/** Label on every container the engine creates (marks it as the engine's). */
export const LABEL_ENGINE = 'dev.sqlrs.engine';
/** Container label: a hash of the state store's path (start-up hygiene reaps only its own store's containers). */
export const LABEL_STORE = 'dev.sqlrs.store';
/** Container label: the job that made the container. */
export const LABEL_JOB = 'dev.sqlrs.job';
/** Container label: the instance the container serves. */
export const LABEL_INSTANCE = 'dev.sqlrs.instance';
/** Container label: what the container is for (`runtime`, `initdb`, `probe`). */
export const LABEL_ROLE = 'dev.sqlrs.role';

/** Where the data directory is mounted in every Postgres container. */
export const DATA_MOUNT = '/var/lib/postgresql/data';
/** PGDATA inside every Postgres container (below {@link DATA_MOUNT}). */
export const PGDATA = '/var/lib/postgresql/data/pgdata';

/** What an image ref resolved to. */
export interface ImageResolution {
  /** Registry images: `repo@sha256:…` (RepoDigests[0]); local-only images: the image id `sha256:…`. */
  resolvedId: string;
  /** uid/gid of the image's `postgres` user (data dirs must be owned by it). */
  uid: number;
  gid: number;
}

/** An extra host dir bound into a container. */
export interface BindMount { host: string; container: string; readOnly: boolean }

/** A Postgres container to create and start. */
export interface StartRequest {
  image: string;
  name: string;
  labels: Record<string, string>;
  /** Host dir mounted at {@link DATA_MOUNT}; must already contain `pgdata/PG_VERSION`. */
  dataDir: string;
  extraMounts: BindMount[];
}

/** A started Postgres container and where it listens (always loopback). */
export interface StartedContainer { id: string; host: '127.0.0.1'; port: number }

/** A command to run in a container as `user` (stdin, when given, is written whole and closed). */
export interface ExecRequest {
  containerId: string;
  cmd: string[];
  user: string;
  workdir?: string;
  env?: string[];
  stdin?: string;
}

/** Which output stream a chunk of exec output came from. */
export type OutputStream = 'stdout' | 'stderr';

/** How an exec ended. */
export interface ExecResult { exitCode: number }

/** A container as listed by label. */
export interface ContainerSummary {
  id: string;
  name: string;
  labels: Record<string, string>;
  running: boolean;
  /** Creation time, ms since the epoch. */
  createdMs: number;
}

/**
 * The narrow container-runtime interface the actors use. Implemented over dockerode inside a
 * long-lived worker (comlink) by `containers.ts`; a hand-written fake may implement it for actor
 * unit tests only. All values are plain data.
 */
export interface ContainerRuntime {
  /** Checks the daemon answers; throws ContainerError with a clear message otherwise. */
  ping(): Promise<{ version: string; apiVersion: string }>;
  /**
   * Resolves an image ref without pulling when it exists locally.
   * @param knownUsers postgres uid/gid already known per resolved id (skips the probe container).
   * @param probeUser when false and the ids are not known, answer uid/gid -1 instead of running
   *   the probe container (the caller learns them from initdb). @default true
   */
  resolveImage(ref: string, signal?: AbortSignal, knownUsers?: Record<string, { uid: number; gid: number }>, probeUser?: boolean): Promise<ImageResolution>;
  /** Runs initdb (`--username=sqlrs`, trust auth) into `dataDir/pgdata` with a one-shot container. */
  initBase(image: string, dataDir: string, labels: Record<string, string>, signal?: AbortSignal): Promise<void>;
  /** Creates and starts a container (`sleep infinity`), starts Postgres, waits until ready over TCP. */
  start(req: StartRequest, signal?: AbortSignal): Promise<StartedContainer>;
  /**
   * Runs a command, streaming output chunks as they arrive; abort kills the process. When
   * `onOutput` returns a promise, reading further output may wait until it settles (backpressure).
   */
  exec(req: ExecRequest, onOutput: (stream: OutputStream, chunk: string) => void | Promise<void>, signal?: AbortSignal): Promise<ExecResult>;
  /** `pg_ctl -m fast -w stop` and verification that it stopped. */
  stopPostgres(containerId: string, signal?: AbortSignal): Promise<void>;
  /** `pg_ctl start` (with a log file) and TCP readiness. */
  startPostgres(containerId: string, signal?: AbortSignal): Promise<void>;
  /** Force-removes a container and its anonymous volumes; a missing container is success. */
  remove(containerId: string): Promise<void>;
  /** True when the container exists and is running. */
  isRunning(containerId: string): Promise<boolean>;
  /** Containers carrying all the given labels. */
  list(labels: Record<string, string>): Promise<ContainerSummary[]>;
  close(): Promise<void>;
}

/** Options sent once to the container worker after it starts. */
export interface WorkerInit {
  /** Unix socket of the daemon; when absent, dockerode's own environment handling (DOCKER_HOST…) applies. */
  socketPath?: string;
  /** Human-readable daemon address for error messages. */
  daemon: string;
  /** Look for an aborted exec's processes in this machine's /proc. @default true */
  hostKill?: boolean;
}

/** Levels of the container worker's log lines. */
export type WorkerLogLevel = 'debug' | 'info' | 'warn' | 'error';

/**
 * Log lines of the container worker, posted on its own port next to comlink's messages (comlink
 * ignores messages without its `id`); the main side forwards them to its logger.
 */
export interface WorkerLogMessage {
  type: 'sqlrs-container-worker-log';
  level: WorkerLogLevel;
  msg: string;
  meta: Record<string, string | number | boolean>;
}

/** Exec output callback (a comlink proxy); may return a promise that settles once the chunk is delivered. */
export type OutputSink = (stream: OutputStream, chunk: string) => unknown;

/**
 * The API the container worker exposes over comlink. Cancellable operations take an `opId`
 * (> 0; 0 = not cancellable): `abort(opId)` aborts the matching operation, and aborting an exec
 * kills the process it started.
 */
export interface ContainerWorkerApi {
  init(opts: WorkerInit): void;
  abort(opId: number): void;
  ping(): Promise<WorkerResult<{ version: string; apiVersion: string }>>;
  resolveImage(opId: number, ref: string, knownUsers?: Record<string, { uid: number; gid: number }>, probeUser?: boolean): Promise<WorkerResult<ImageResolution>>;
  initBase(opId: number, image: string, dataDir: string, labels: Record<string, string>): Promise<WorkerResult<null>>;
  start(opId: number, req: StartRequest): Promise<WorkerResult<StartedContainer>>;
  exec(opId: number, req: ExecRequest, onOutput: OutputSink): Promise<WorkerResult<ExecResult>>;
  stopPostgres(opId: number, containerId: string): Promise<WorkerResult<null>>;
  startPostgres(opId: number, containerId: string): Promise<WorkerResult<null>>;
  remove(containerId: string): Promise<WorkerResult<null>>;
  isRunning(containerId: string): Promise<WorkerResult<boolean>>;
  list(labels: Record<string, string>): Promise<WorkerResult<ContainerSummary[]>>;
}
