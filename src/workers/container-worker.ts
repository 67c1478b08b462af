/**
 * Container worker: a long-lived worker thread that owns the Docker/Podman API client (dockerode)
 * and exposes {@link ContainerWorkerApi} over comlink. The main-thread side is `DockerRuntime` in
 * `containers.ts`.
 *
 * Rules of the protocol:
 * - Every operation answers with an {@link Outcome}: failures travel as serialized engine errors
 *   (rebuilt with `deserializeError` on the main side) so their `code` and `details` survive.
 * - Cancellable operations take an `opId` (> 0). `abort(opId)` aborts the matching operation;
 *   aborting an exec kills the process it started.
 * - Output callbacks are comlink proxies; the worker waits until every chunk has been delivered
 *   before it answers, and releases the proxy afterwards.
 *
 * Only works against the Docker Engine API features Podman's compatible socket also serves.
 */
import { isMainThread, parentPort } from 'node:worker_threads';
import { connect } from 'node:net';
import { readFile, readdir, rm } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as delay } from 'node:timers/promises';
import type { Duplex, Readable } from 'node:stream';
import Docker from 'dockerode';
import * as Comlink from 'comlink';
import nodeAdapter from 'comlink/dist/umd/node-adapter.js';
import { CancelledError, ContainerError, EngineError, WorkerError, serializeError, type SerializedError } from '../errors.js';
import {
  DATA_MOUNT,
  LABEL_ROLE,
  PGDATA,
  type ContainerSummary,
  type ExecRequest,
  type ExecResult,
  type ImageResolution,
  type OutputStream,
  type StartRequest,
  type StartedContainer,
} from './container-types.js';

if (isMainThread || parentPort === null) {
  throw new WorkerError('container-worker must be loaded in a worker thread, not on the main thread');
}
const port = parentPort;

// The UMD module sets `module.exports = fn`; NodeNext types it as `{ default: fn }`.
const nodeEndpoint = nodeAdapter as unknown as typeof nodeAdapter.default;

/** Result envelope of every worker operation. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: SerializedError };

/** Options sent once after the worker starts. */
export interface WorkerInit {
  /** Unix socket of the daemon; when absent, dockerode's own environment handling (DOCKER_HOST…) applies. */
  socketPath?: string;
  /** Human-readable daemon address for error messages. */
  daemon: string;
  /** Look for an aborted exec's processes in this machine's /proc (default true; see killExec). */
  hostKill?: boolean;
}

export type WorkerLogLevel = 'debug' | 'info' | 'warn' | 'error';
/**
 * Log lines are posted on the worker's own port, next to comlink's messages (comlink ignores
 * messages without its `id`); the main side forwards them to its logger.
 */
export interface WorkerLogMessage {
  type: 'sqlrs-container-worker-log';
  level: WorkerLogLevel;
  msg: string;
  meta: Record<string, string | number | boolean>;
}
/** Output callback (a comlink proxy); may return a promise that settles once the chunk is delivered. */
export type OutputSink = (stream: OutputStream, chunk: string) => unknown;

/** The API the worker exposes. */
export interface ContainerWorkerApi {
  init(opts: WorkerInit): void;
  abort(opId: number): void;
  ping(): Promise<Outcome<{ version: string; apiVersion: string }>>;
  resolveImage(opId: number, ref: string, knownUsers?: Record<string, { uid: number; gid: number }>, probeUser?: boolean): Promise<Outcome<ImageResolution>>;
  initBase(opId: number, image: string, dataDir: string, labels: Record<string, string>): Promise<Outcome<null>>;
  start(opId: number, req: StartRequest): Promise<Outcome<StartedContainer>>;
  exec(opId: number, req: ExecRequest, onOutput: OutputSink): Promise<Outcome<ExecResult>>;
  stopPostgres(opId: number, containerId: string): Promise<Outcome<null>>;
  startPostgres(opId: number, containerId: string): Promise<Outcome<null>>;
  remove(containerId: string): Promise<Outcome<null>>;
  isRunning(containerId: string): Promise<Outcome<boolean>>;
  list(labels: Record<string, string>): Promise<Outcome<ContainerSummary[]>>;
}

// ---------------------------------------------------------------------------------------------
// constants

const PG_LOG = '/tmp/postgres.log';
const PG_PORT = '5432';
/** Environment marker put on every exec so an aborted one can be found (with its children). */
const MARKER_ENV = 'SQLRS_EXEC_ID';
/** Cap on output collected for internal commands and error details. */
const OUTPUT_CAP = 64 * 1024;
/**
 * Output chunks handed to the consumer and not yet acknowledged; at this many the exec's stream is
 * paused (the process then blocks on a full pipe) until the consumer catches up.
 */
const MAX_UNACKED_CHUNKS = 8;

const INITDB_SCRIPT = [
  'set -e',
  `initdb --username=sqlrs --auth=trust --auth-host=trust --auth-local=trust --no-sync -D ${PGDATA}`,
  `hba=${PGDATA}/pg_hba.conf`,
  `grep -q '0\\.0\\.0\\.0/0' "$hba" || printf 'host all all 0.0.0.0/0 trust\\n' >> "$hba"`,
  `grep -q '::/0' "$hba" || printf 'host all all ::/0 trust\\n' >> "$hba"`,
  `printf "listen_addresses = '*'\\n" >> ${PGDATA}/postgresql.conf`,
].join('\n');

/** Kills (inside the container) every process whose environment holds the marker `$1`. */
const SWEEP_SCRIPT =
  'for p in /proc/[0-9]*; do ' +
  'if grep -qzx "$1" "$p/environ" 2>/dev/null; then kill -KILL "${p#/proc/}" 2>/dev/null || :; fi; ' +
  'done; exit 0';

// ---------------------------------------------------------------------------------------------
// state

let docker: Docker | undefined;
let daemon = 'the container daemon';
let initSupported = true;
let hostKill = true;
let execSeq = 0;
const ops = new Map<number, AbortController>();
const idCache = new Map<string, { uid: number; gid: number }>();

function client(): Docker {
  if (docker === undefined) throw new WorkerError('container worker used before init');
  return docker;
}

function logSafe(level: WorkerLogLevel, msg: string, meta: Record<string, string | number | boolean> = {}): void {
  const m: WorkerLogMessage = { type: 'sqlrs-container-worker-log', level, msg, meta };
  try {
    port.postMessage(m);
  } catch {
    /* logging must never break an operation */
  }
}

// ---------------------------------------------------------------------------------------------
// errors

interface DockerishError { code?: unknown; syscall?: unknown; statusCode?: unknown; message?: unknown; json?: unknown }

function statusOf(e: unknown): number | undefined {
  const s = (e as DockerishError | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

function isNotFound(e: unknown): boolean {
  return statusOf(e) === 404;
}

function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message.trim();
  return String(e);
}

/** Converts any failure into an engine error; `what` names the operation. */
function toEngineError(what: string, e: unknown): EngineError {
  if (e instanceof EngineError) return e;
  const d = e as DockerishError | null;
  const code = typeof d?.code === 'string' ? d.code : undefined;
  if (code === 'ECONNREFUSED' || (code === 'ENOENT' && d?.syscall === 'connect')) {
    return new ContainerError('docker is not running', {
      details: `cannot connect to ${daemon} (${code}); start the Docker daemon (or the Podman service) and retry`,
      cause: e,
    });
  }
  if (code === 'EACCES' && d?.syscall === 'connect') {
    return new ContainerError('docker is not accessible', {
      details: `permission denied on ${daemon}; run the engine as a user allowed to use the container daemon`,
      cause: e,
    });
  }
  const status = statusOf(e);
  const msg = messageOf(e);
  return new ContainerError(`${what} failed`, {
    details: status === undefined || msg.includes('HTTP code') ? msg : `${msg} (HTTP ${status})`,
    cause: e,
  });
}

async function outcome<T>(what: string, fn: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    const err = toEngineError(what, e);
    return { ok: false, error: serializeError(err) };
  }
}

/** Runs a cancellable operation registered under `opId`. */
async function operation<T>(opId: number, what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<Outcome<T>> {
  const ac = new AbortController();
  if (opId > 0) ops.set(opId, ac);
  try {
    return await outcome(what, () => fn(ac.signal));
  } finally {
    if (opId > 0) ops.delete(opId);
  }
}

function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new CancelledError(`${what} aborted`);
}

// ---------------------------------------------------------------------------------------------
// output handling

/** Keeps the last {@link OUTPUT_CAP} characters of a growing text. */
class Tail {
  private text = '';
  private dropped = false;
  add(s: string): void {
    this.text += s;
    if (this.text.length > OUTPUT_CAP * 2) {
      this.text = this.text.slice(-OUTPUT_CAP);
      this.dropped = true;
    }
  }
  toString(): string {
    const t = this.text.length > OUTPUT_CAP ? this.text.slice(-OUTPUT_CAP) : this.text;
    return (this.dropped || this.text.length > OUTPUT_CAP ? '…' : '') + t;
  }
}

/**
 * Splits Docker's multiplexed stream (8-byte header: type, 0, 0, 0, big-endian length) into
 * frames as they arrive. Type 2 is stderr; 0 and 1 are stdout.
 */
function demux(stream: Readable, onFrame: (s: OutputStream, data: Buffer) => void): void {
  let pending: Buffer = Buffer.alloc(0);
  stream.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 8) {
      const type = pending[0];
      const len = pending.readUInt32BE(4);
      if (pending.length < 8 + len) break;
      const payload = pending.subarray(8, 8 + len);
      pending = pending.subarray(8 + len);
      if (payload.length > 0) onFrame(type === 2 ? 'stderr' : 'stdout', payload);
    }
  });
}

/** Decodes a buffered multiplexed log (container logs without follow). */
function demuxBuffer(buf: Buffer): string {
  let out = '';
  let i = 0;
  // A TTY-less container's logs are framed; anything else is returned as-is.
  if (buf.length >= 8 && (buf[0] === 1 || buf[0] === 2) && buf[1] === 0 && buf[2] === 0 && buf[3] === 0) {
    while (i + 8 <= buf.length) {
      const len = buf.readUInt32BE(i + 4);
      out += buf.subarray(i + 8, i + 8 + len).toString('utf8');
      i += 8 + len;
    }
    return out;
  }
  return buf.toString('utf8');
}

// ---------------------------------------------------------------------------------------------
// exec

interface RunExecOptions {
  user: string;
  env?: string[] | undefined;
  workdir?: string | undefined;
  stdin?: string | undefined;
  signal?: AbortSignal | undefined;
  /** Streams decoded chunks; the returned promise (if any) is awaited before the exec returns. */
  onOutput?: OutputSink | undefined;
  /** Collects the combined output (capped). */
  collect?: boolean;
  /** False for the sweep exec itself (it must not carry the marker it looks for). */
  mark?: boolean;
}

interface RunExecResult { exitCode: number; output: string }

async function runExec(containerId: string, cmd: string[], opts: RunExecOptions): Promise<RunExecResult> {
  const { signal } = opts;
  throwIfAborted(signal, 'exec');
  const container = client().getContainer(containerId);
  const hasStdin = opts.stdin !== undefined;
  const marker = `${MARKER_ENV}=${process.pid}-${++execSeq}-${Date.now().toString(36)}`;
  const env = [...(opts.env ?? [])];
  if (opts.mark !== false) env.push(marker);
  const exec = await container.exec({
    Cmd: cmd,
    User: opts.user,
    Env: env,
    ...(opts.workdir !== undefined ? { WorkingDir: opts.workdir } : {}),
    AttachStdin: hasStdin,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
  });
  const stream: Duplex = await exec.start({ hijack: true, stdin: hasStdin });

  const collected = new Tail();
  const deliveries = new Set<Promise<unknown>>();
  const decoders: Record<OutputStream, StringDecoder> = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  const emit = (s: OutputStream, text: string): void => {
    if (text === '') return;
    if (opts.collect) collected.add(text);
    if (opts.onOutput) {
      let r: unknown;
      try {
        r = opts.onOutput(s, text);
      } catch {
        return; // a failing consumer must not break the exec
      }
      if (r instanceof Promise) {
        const p: Promise<unknown> = r.catch(() => undefined).finally(() => {
          deliveries.delete(p);
          if (deliveries.size < MAX_UNACKED_CHUNKS && stream.isPaused() && !stream.destroyed) stream.resume();
        });
        deliveries.add(p);
        if (deliveries.size >= MAX_UNACKED_CHUNKS && !stream.isPaused()) stream.pause();
      }
    }
  };

  const ended = new Promise<void>((resolve, reject) => {
    stream.once('end', () => resolve());
    stream.once('close', () => resolve());
    stream.on('error', (e: unknown) => (signal?.aborted ? resolve() : reject(e)));
  });
  demux(stream, (s, data) => emit(s, decoders[s].write(data)));

  let killing: Promise<void> | undefined;
  const onAbort = (): void => {
    killing ??= killExec(containerId, opts.user, marker).finally(() => {
      stream.destroy();
    });
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (signal?.aborted) onAbort();
    if (hasStdin) {
      stream.write(opts.stdin ?? '');
      stream.end();
    }
    await ended;
    emit('stdout', decoders.stdout.end());
    emit('stderr', decoders.stderr.end());
    await Promise.allSettled([...deliveries]);
    if (signal?.aborted) {
      onAbort();
      await killing;
      throw new CancelledError('exec aborted', { details: cmd.join(' ') });
    }
    const exitCode = await exitCodeOf(exec);
    return { exitCode, output: collected.toString() };
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!stream.destroyed) stream.destroy();
  }
}

/** Exec inspect may still report Running for a moment after the stream ends. */
async function exitCodeOf(exec: Docker.Exec): Promise<number> {
  for (let i = 0; ; i++) {
    const info = await exec.inspect();
    if (!info.Running || i >= 200) return info.ExitCode ?? -1;
    await delay(10);
  }
}

/**
 * Kills an exec'd process and everything it started. Every exec carries a unique marker in its
 * environment, inherited by its children:
 * 1. when the daemon shares our pid namespace (local daemon), the processes carrying the marker
 *    are found in /proc and killed from here — a pid is only ever killed after its environment
 *    proved it is ours;
 * 2. otherwise (remote or rootless daemon) a sweep runs inside the container as the exec's user
 *    (reading another user's environment needs a capability containers do not have).
 */
async function killExec(containerId: string, user: string, marker: string): Promise<void> {
  let killed = 0;
  try {
    // Repeat while something was killed: a process may fork while a pass is under way.
    for (let pass = 0, n = -1; hostKill && pass < 3 && n !== 0; pass++) {
      n = await hostSweep(marker);
      killed += n;
    }
  } catch (e) {
    logSafe('debug', 'host-side exec kill failed', { error: messageOf(e) });
  }
  if (killed > 0) return;
  try {
    await runExec(containerId, ['sh', '-c', SWEEP_SCRIPT, 'sh', marker], { user, mark: false });
  } catch (e) {
    logSafe('warn', 'exec kill inside the container failed', { container: containerId, error: messageOf(e) });
  }
}

/** Kills every process visible in /proc whose environment holds `marker`; returns how many. */
async function hostSweep(marker: string): Promise<number> {
  if (process.platform !== 'linux') return 0;
  const needle = Buffer.from(`\0${marker}\0`, 'latin1');
  const head = Buffer.from(`${marker}\0`, 'latin1');
  let killed = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let env: Buffer;
    try {
      env = await readFile(`/proc/${entry}/environ`);
    } catch {
      continue; // gone, or not ours to read
    }
    if (env.indexOf(needle) < 0 && !env.subarray(0, head.length).equals(head)) continue;
    try {
      process.kill(pid, 'SIGKILL');
      killed++;
    } catch {
      /* already gone */
    }
  }
  return killed;
}

// ---------------------------------------------------------------------------------------------
// one-shot containers

interface OneShot {
  image: string;
  cmd: string[];
  labels: Record<string, string>;
  user?: string;
  binds?: string[];
  signal: AbortSignal;
}

async function runOneShot(spec: OneShot): Promise<RunExecResult> {
  throwIfAborted(spec.signal, 'container');
  const container = await client().createContainer({
    Image: spec.image,
    Entrypoint: ['sh', '-c'],
    Cmd: spec.cmd,
    Labels: spec.labels,
    ...(spec.user !== undefined ? { User: spec.user } : {}),
    Tty: false,
    HostConfig: { Binds: spec.binds ?? [], NetworkMode: 'none' },
  });
  const onAbort = (): void => {
    container.kill().catch(() => undefined);
  };
  spec.signal.addEventListener('abort', onAbort, { once: true });
  try {
    await container.start();
    if (spec.signal.aborted) onAbort();
    const res = (await container.wait()) as { StatusCode?: unknown };
    throwIfAborted(spec.signal, 'container');
    const logs = await container.logs({ stdout: true, stderr: true, follow: false });
    const output = demuxBuffer(Buffer.isBuffer(logs) ? logs : Buffer.from(String(logs)));
    return { exitCode: typeof res.StatusCode === 'number' ? res.StatusCode : -1, output: output.slice(-OUTPUT_CAP) };
  } finally {
    spec.signal.removeEventListener('abort', onAbort);
    await container.remove({ force: true, v: true }).catch((e: unknown) => {
      if (!isNotFound(e)) logSafe('warn', 'removing a one-shot container failed', { id: container.id, error: messageOf(e) });
    });
  }
}

// ---------------------------------------------------------------------------------------------
// images

async function inspectImage(ref: string): Promise<Docker.ImageInspectInfo | undefined> {
  try {
    return await client().getImage(ref).inspect();
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

/** `name` → `name:latest` (pulling a bare name would fetch every tag). */
function pullRef(ref: string): string {
  if (ref.includes('@')) return ref;
  const lastSlash = ref.lastIndexOf('/');
  return ref.slice(lastSlash + 1).includes(':') ? ref : `${ref}:latest`;
}

async function pull(ref: string, signal: AbortSignal): Promise<void> {
  const d = client();
  logSafe('info', 'pulling image', { ref });
  try {
    const stream = (await d.pull(pullRef(ref))) as Readable;
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        stream.destroy();
        reject(new CancelledError('image pull aborted'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      d.modem.followProgress(stream, (err: Error | null, events: unknown[]) => {
        signal.removeEventListener('abort', onAbort);
        if (err) return reject(err);
        // The daemon reports some pull failures as an error event inside a 200 response.
        const bad = events.find((ev) => typeof ev === 'object' && ev !== null && 'error' in ev) as { error?: unknown } | undefined;
        if (bad) return reject(new Error(String(bad.error)));
        resolve();
      });
    });
  } catch (e) {
    if (e instanceof CancelledError) throw e;
    const err = toEngineError('pull', e);
    if (err.message === 'docker is not running') throw err;
    throw new ContainerError('cannot resolve image', { details: `${ref}: not present locally and pull failed: ${messageOf(e)}`, cause: e });
  }
}

function repoOf(ref: string): string {
  const at = ref.indexOf('@');
  if (at >= 0) return ref.slice(0, at);
  const lastSlash = ref.lastIndexOf('/');
  const colon = ref.indexOf(':', lastSlash + 1);
  return colon >= 0 ? ref.slice(0, colon) : ref;
}

async function postgresIds(imageId: string, signal: AbortSignal): Promise<{ uid: number; gid: number }> {
  const cached = idCache.get(imageId);
  if (cached) return cached;
  const r = await runOneShot({
    image: imageId,
    cmd: ['id -u postgres && id -g postgres'],
    labels: { [LABEL_ROLE]: 'probe' },
    signal,
  });
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(r.output);
  if (r.exitCode !== 0 || !m) {
    throw new ContainerError('cannot determine the postgres user of the image', {
      details: `${imageId}: \`id -u postgres; id -g postgres\` exited ${r.exitCode}: ${r.output.trim()}`,
    });
  }
  const ids = { uid: Number(m[1]), gid: Number(m[2]) };
  idCache.set(imageId, ids);
  return ids;
}

// ---------------------------------------------------------------------------------------------
// postgres control

async function logTail(containerId: string): Promise<string> {
  try {
    const r = await runExec(containerId, ['tail', '-n', '40', PG_LOG], { user: '0', collect: true });
    return r.output.trim();
  } catch (e) {
    return `(cannot read ${PG_LOG}: ${messageOf(e)})`;
  }
}

async function pgStart(containerId: string, signal: AbortSignal): Promise<void> {
  const r = await runExec(
    containerId,
    ['pg_ctl', '-D', PGDATA, '-l', PG_LOG, '-o', `-c listen_addresses='*' -p ${PG_PORT}`, '-w', 'start'],
    { user: 'postgres', signal, collect: true },
  );
  if (r.exitCode !== 0) {
    throw new ContainerError('postgres start failed', {
      details: `pg_ctl start exited ${r.exitCode}: ${r.output.trim()}\n--- ${PG_LOG} ---\n${await logTail(containerId)}`,
    });
  }
  // `pg_ctl -w start` returns once postmaster.pid reports "ready", i.e. the listeners are up:
  // a separate readiness probe would only cost another exec round trip.
}

async function pgStop(containerId: string, signal: AbortSignal): Promise<void> {
  const stop = await runExec(containerId, ['pg_ctl', '-D', PGDATA, '-m', 'fast', '-w', 'stop'], {
    user: 'postgres',
    signal,
    collect: true,
  });
  // `pg_ctl -w stop` exits 0 only once postmaster.pid is gone; check the status only otherwise.
  if (stop.exitCode === 0) return;
  const status = await runExec(containerId, ['pg_ctl', '-D', PGDATA, 'status'], { user: 'postgres', signal, collect: true });
  // pg_ctl status: 0 = running, 3 = not running, 4 = no accessible data directory.
  if (status.exitCode !== 3) {
    throw new ContainerError('postgres stop failed', {
      details: `pg_ctl stop exited ${stop.exitCode}: ${stop.output.trim()}\npg_ctl status exited ${status.exitCode}: ${status.output.trim()}`,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// containers

function startOptions(req: StartRequest, withInit: boolean): Docker.ContainerCreateOptions {
  const binds = [`${req.dataDir}:${DATA_MOUNT}`, ...req.extraMounts.map((m) => `${m.host}:${m.container}${m.readOnly ? ':ro' : ''}`)];
  return {
    name: req.name,
    Image: req.image,
    Entrypoint: ['sleep'],
    Cmd: ['infinity'],
    Labels: req.labels,
    StopSignal: 'SIGINT',
    Env: [`PGDATA=${PGDATA}`],
    ExposedPorts: { [`${PG_PORT}/tcp`]: {} },
    Tty: false,
    HostConfig: {
      Binds: binds,
      PortBindings: { [`${PG_PORT}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: '' }] },
      ...(withInit ? { Init: true } : {}),
    },
  };
}

function looksLikeInitProblem(e: unknown): boolean {
  return /\binit\b|docker-init|catatonit|tini/i.test(messageOf(e));
}

async function removeQuietly(id: string): Promise<void> {
  try {
    await client().getContainer(id).remove({ force: true, v: true });
  } catch (e) {
    if (!isNotFound(e)) logSafe('warn', 'removing a container failed', { id, error: messageOf(e) });
  }
}

/** Creates and starts the container; retries once without `Init` when the daemon cannot provide one. */
async function createAndStart(req: StartRequest): Promise<Docker.Container> {
  // A new container cannot have a live postmaster: a postmaster.pid in its data is left over from
  // a crash. Left in place it can fool `pg_ctl -w start` (container pids repeat, so the stale file
  // may name the new postmaster's pid) into reporting ready before the server is.
  await rm(`${req.dataDir}/pgdata/postmaster.pid`, { force: true });
  const withInit = initSupported;
  let container: Docker.Container | undefined;
  try {
    container = await client().createContainer(startOptions(req, withInit));
    await container.start();
    return container;
  } catch (e) {
    if (container) await removeQuietly(container.id);
    if (!withInit || !looksLikeInitProblem(e)) throw e;
    logSafe('warn', 'the container daemon cannot run an init process; starting containers without one', { error: messageOf(e) });
    initSupported = false;
    const again = await client().createContainer(startOptions(req, false));
    try {
      await again.start();
    } catch (e2) {
      await removeQuietly(again.id);
      throw e2;
    }
    return again;
  }
}

async function hostPort(containerId: string): Promise<number> {
  const info = await client().getContainer(containerId).inspect();
  const bindings = info.NetworkSettings.Ports[`${PG_PORT}/tcp`] ?? [];
  const pick = bindings.find((b) => b.HostIp === '127.0.0.1') ?? bindings[0];
  const port = pick ? Number.parseInt(pick.HostPort, 10) : Number.NaN;
  if (!Number.isInteger(port) || port <= 0) {
    throw new ContainerError('container has no published port', { details: `${containerId}: ${PG_PORT}/tcp → ${JSON.stringify(bindings)}` });
  }
  return port;
}

/**
 * Readiness over TCP, the way clients connect: through the published loopback port. Sends a
 * PostgreSQL SSLRequest and waits for the server's one-byte answer (`N` or `S`); the port proxy
 * accepts connections before the server listens, so a bare connect proves nothing.
 */
async function tcpReady(port: number, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = '';
  for (;;) {
    throwIfAborted(signal, 'postgres readiness wait');
    const answer = await new Promise<string>((resolve) => {
      const sock = connect({ host: '127.0.0.1', port });
      const done = (r: string): void => { sock.destroy(); resolve(r); };
      sock.setTimeout(1000, () => done('timeout'));
      sock.once('error', (e) => done(`error: ${e.message}`));
      sock.once('connect', () => sock.write(SSL_REQUEST));
      sock.once('data', (b: Buffer) => done(String.fromCharCode(b[0] ?? 0)));
      sock.once('end', () => done('closed'));
    });
    if (answer === 'N' || answer === 'S') return;
    last = answer;
    if (Date.now() >= deadline) throw new ContainerError('postgres readiness timed out', { details: `127.0.0.1:${port}: ${last}` });
    await delay(20);
  }
}

/** SSLRequest: length 8, code 80877103. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]);

// ---------------------------------------------------------------------------------------------
// the API

const api: ContainerWorkerApi = {
  init(opts) {
    docker = opts.socketPath !== undefined ? new Docker({ socketPath: opts.socketPath }) : new Docker();
    daemon = opts.daemon;
    hostKill = opts.hostKill !== false;
  },

  abort(opId) {
    ops.get(opId)?.abort();
  },

  ping() {
    return outcome('docker ping', async () => {
      const v = await client().version();
      return { version: String(v.Version), apiVersion: String(v.ApiVersion) };
    });
  },

  resolveImage(opId, ref, knownUsers, probeUser = true) {
    return operation(opId, 'image resolution', async (signal) => {
      let info = await inspectImage(ref);
      if (info === undefined) {
        throwIfAborted(signal, 'image resolution');
        await pull(ref, signal);
        info = await inspectImage(ref);
        if (info === undefined) throw new ContainerError('cannot resolve image', { details: `${ref}: not found after pull` });
      }
      let resolvedId: string;
      if (ref.includes('@')) {
        resolvedId = ref;
      } else {
        const digests = info.RepoDigests ?? [];
        const repo = repoOf(ref);
        resolvedId = digests.find((d) => repoOf(d) === repo) ?? digests[0] ?? info.Id;
      }
      const ids = knownUsers?.[resolvedId] ?? (probeUser ? await postgresIds(info.Id, signal) : { uid: -1, gid: -1 });
      return { resolvedId, uid: ids.uid, gid: ids.gid };
    });
  },

  initBase(opId, image, dataDir, labels) {
    return operation(opId, 'initdb', async (signal) => {
      const r = await runOneShot({
        image,
        cmd: [INITDB_SCRIPT],
        labels,
        user: 'postgres',
        binds: [`${dataDir}:${DATA_MOUNT}`],
        signal,
      });
      if (r.exitCode !== 0) {
        throw new ContainerError('initdb failed', { details: `exit code ${r.exitCode}: ${r.output.trim()}` });
      }
      return null;
    });
  },

  start(opId, req) {
    return operation(opId, 'container start', async (signal) => {
      throwIfAborted(signal, 'container start');
      const container = await createAndStart(req);
      try {
        await pgStart(container.id, signal);
        const port = await hostPort(container.id);
        await tcpReady(port, signal);
        return { id: container.id, host: '127.0.0.1' as const, port };
      } catch (e) {
        await removeQuietly(container.id);
        throw e;
      }
    });
  },

  exec(opId, req, onOutput) {
    return operation(opId, 'exec', async (signal) => {
      try {
        const r = await runExec(req.containerId, req.cmd, {
          user: req.user,
          env: req.env,
          workdir: req.workdir,
          stdin: req.stdin,
          signal,
          onOutput,
        });
        return { exitCode: r.exitCode };
      } finally {
        const release = (onOutput as Partial<Comlink.ProxyMethods>)[Comlink.releaseProxy];
        if (typeof release === 'function') {
          try {
            release.call(onOutput);
          } catch {
            /* already released */
          }
        }
      }
    });
  },

  stopPostgres(opId, containerId) {
    return operation(opId, 'postgres stop', async (signal) => {
      await pgStop(containerId, signal);
      return null;
    });
  },

  startPostgres(opId, containerId) {
    return operation(opId, 'postgres start', async (signal) => {
      await pgStart(containerId, signal);
      await tcpReady(await hostPort(containerId), signal);
      return null;
    });
  },

  remove(containerId) {
    return outcome('container removal', async () => {
      try {
        await client().getContainer(containerId).remove({ force: true, v: true });
      } catch (e) {
        if (isNotFound(e)) return null;
        // A concurrent removal of the same container is not a failure of ours.
        if (statusOf(e) === 409 && /already in progress/i.test(messageOf(e))) return null;
        throw e;
      }
      return null;
    });
  },

  isRunning(containerId) {
    return outcome('container inspect', async () => {
      try {
        const info = await client().getContainer(containerId).inspect();
        return info.State.Running === true;
      } catch (e) {
        if (isNotFound(e)) return false;
        throw e;
      }
    });
  },

  list(labels) {
    return outcome('container list', async () => {
      const label = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
      const items = await client().listContainers({ all: true, filters: JSON.stringify({ label }) });
      return items.map((c) => ({
        id: c.Id,
        name: (c.Names?.[0] ?? '').replace(/^\//, ''),
        labels: { ...(c.Labels ?? {}) },
        running: c.State === 'running',
        createdMs: typeof c.Created === 'number' ? c.Created * 1000 : 0,
      }));
    });
  },
};

Comlink.expose(api, nodeEndpoint(port));
