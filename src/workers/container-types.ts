/**
 * The narrow container-runtime interface the actors use. Implemented over dockerode inside a
 * long-lived worker (comlink) by `containers.ts`; a hand-written fake may implement it for actor
 * unit tests only. All values are plain data.
 */

/** Labels put on every container the engine creates. */
export const LABEL_ENGINE = 'dev.sqlrs.engine';
export const LABEL_STORE = 'dev.sqlrs.store';
export const LABEL_JOB = 'dev.sqlrs.job';
export const LABEL_INSTANCE = 'dev.sqlrs.instance';
export const LABEL_ROLE = 'dev.sqlrs.role';

/** Where the data directory is mounted in every Postgres container, and PGDATA inside it. */
export const DATA_MOUNT = '/var/lib/postgresql/data';
export const PGDATA = '/var/lib/postgresql/data/pgdata';

export interface ImageResolution {
  /** Registry images: `repo@sha256:…` (RepoDigests[0]); local-only images: the image id `sha256:…`. */
  resolvedId: string;
  /** uid/gid of the image's `postgres` user (data dirs must be owned by it). */
  uid: number;
  gid: number;
}

export interface BindMount { host: string; container: string; readOnly: boolean }

export interface StartRequest {
  image: string;
  name: string;
  labels: Record<string, string>;
  /** Host dir mounted at {@link DATA_MOUNT}; must already contain `pgdata/PG_VERSION`. */
  dataDir: string;
  extraMounts: BindMount[];
}

export interface StartedContainer { id: string; host: '127.0.0.1'; port: number }

export interface ExecRequest {
  containerId: string;
  cmd: string[];
  user: string;
  workdir?: string;
  env?: string[];
  stdin?: string;
}

export type OutputStream = 'stdout' | 'stderr';

export interface ExecResult { exitCode: number }

export interface ContainerSummary {
  id: string;
  name: string;
  labels: Record<string, string>;
  running: boolean;
  /** Creation time, ms since the epoch. */
  createdMs: number;
}

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
