/**
 * Finds the container API the engine talks to — Docker, or Podman's Docker-compatible API — as
 * users have them set up (main side; the container worker then connects to the chosen socket).
 *
 * - The wanted kind: `SQLRS_CONTAINER_RUNTIME` wins over `container.runtime`. `auto`, `docker` or
 *   `podman`; a binary name or path (as the CLI may pass) selects the kind its name contains.
 * - Docker's socket: `DOCKER_HOST` (`unix://…`), else `/var/run/docker.sock`.
 * - Podman's sockets, in order: `CONTAINER_HOST` (`unix://…`), the rootful `/run/podman/podman.sock`,
 *   the rootless `$XDG_RUNTIME_DIR/podman/podman.sock`, and the default connection of
 *   `podman system connection list` (a `unix://` URI).
 * - `auto` tries Docker's candidates, then Podman's; the first that answers `GET /_ping` wins.
 * - When Podman is wanted (`podman`, or `auto` with nothing answering) and no socket answers but
 *   the `podman` binary is installed, the engine starts `podman system service` on a socket of its
 *   own and stops it when it stops ({@link PodmanService}).
 * - Otherwise detection fails with a ContainerError whose message says exactly what to run.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { request } from 'node:http';
import { delimiter, join } from 'node:path';
import { ContainerError, errorText } from '../errors.js';
import type { Logger } from '../log.js';

export type RuntimeKind = 'docker' | 'podman';
export type RuntimeMode = 'auto' | RuntimeKind;

/** One place a container API may listen. */
export interface DaemonCandidate { kind: RuntimeKind; socketPath: string; source: string }

/** The chosen API. `service` is set when the engine started Podman's service itself. */
export interface DaemonChoice extends DaemonCandidate { service?: PodmanService }

/** How long one `/_ping` may take. */
const PING_TIMEOUT_MS = 2000;
/** How long a started `podman system service` may take to answer. */
const SERVICE_START_MS = 20_000;
/** How long `podman system connection list` may take. */
const CONNECTION_LIST_MS = 10_000;

const DOCKER_SOCKET = '/var/run/docker.sock';
const PODMAN_ROOTFUL = '/run/podman/podman.sock';

function unixPath(uri: string | undefined): string | undefined {
  const v = uri?.trim();
  return v && v.startsWith('unix://') ? v.slice('unix://'.length) : undefined;
}

/**
 * The wanted kind from env and config. @throws ContainerError for a value that names neither.
 */
export function wantedMode(configMode: string, env: NodeJS.ProcessEnv = process.env): RuntimeMode {
  const raw = (env['SQLRS_CONTAINER_RUNTIME'] ?? '').trim();
  const v = (raw !== '' ? raw : configMode).toLowerCase();
  if (v === '' || v === 'auto') return 'auto';
  const base = v.slice(v.lastIndexOf('/') + 1);
  if (base.includes('podman')) return 'podman';
  if (base.includes('docker')) return 'docker';
  throw new ContainerError(`unsupported container runtime ${JSON.stringify(raw !== '' ? raw : configMode)}`, {
    details: `${raw !== '' ? 'SQLRS_CONTAINER_RUNTIME' : 'container.runtime'} must be auto, docker or podman`,
  });
}

/** The `podman` binary on PATH, if any. */
export function findPodman(env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, 'podman');
    try { if (statSync(p).isFile()) return p; } catch { /* not here */ }
  }
  return undefined;
}

/** The `unix://` URI of Podman's default connection (`podman system connection list`), if any. */
export function podmanDefaultConnection(podman: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(podman, ['system', 'connection', 'list', '--format', 'json'], { env, timeout: CONNECTION_LIST_MS }, (err, stdout) => {
      if (err) { resolve(undefined); return; }
      try {
        const list = JSON.parse(stdout) as { URI?: unknown; Default?: unknown }[];
        const def = list.find((c) => c.Default === true) ?? list[0];
        resolve(typeof def?.URI === 'string' ? unixPath(def.URI) : undefined);
      } catch {
        resolve(undefined);
      }
    });
  });
}

/** Where each kind may listen, in probing order (without the default connection, which needs a process). */
export function candidates(mode: RuntimeMode, env: NodeJS.ProcessEnv = process.env): DaemonCandidate[] {
  const docker: DaemonCandidate[] = [];
  const fromDockerHost = unixPath(env['DOCKER_HOST']);
  docker.push(fromDockerHost ? { kind: 'docker', socketPath: fromDockerHost, source: 'DOCKER_HOST' } : { kind: 'docker', socketPath: DOCKER_SOCKET, source: 'default Docker socket' });
  const podman: DaemonCandidate[] = [];
  const fromContainerHost = unixPath(env['CONTAINER_HOST']);
  if (fromContainerHost) podman.push({ kind: 'podman', socketPath: fromContainerHost, source: 'CONTAINER_HOST' });
  podman.push({ kind: 'podman', socketPath: PODMAN_ROOTFUL, source: 'rootful Podman socket' });
  const xdg = env['XDG_RUNTIME_DIR']?.trim();
  if (xdg) podman.push({ kind: 'podman', socketPath: join(xdg, 'podman', 'podman.sock'), source: 'rootless Podman socket' });
  if (mode === 'docker') return docker;
  if (mode === 'podman') return podman;
  return [...docker, ...podman];
}

/** True when a Docker-compatible API answers `GET /_ping` on the socket. */
export function ping(socketPath: string, timeoutMs = PING_TIMEOUT_MS): Promise<boolean> {
  if (!existsSync(socketPath)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300);
    });
    req.on('timeout', () => { req.destroy(); resolve(false); });
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** `podman system service` started by the engine on a socket of its own; stopped with the engine. */
export class PodmanService {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(readonly podman: string, readonly socketPath: string, private readonly log: Logger, private readonly env: NodeJS.ProcessEnv = process.env) {}

  /** Starts the service and waits until it answers. @throws ContainerError when it does not */
  async start(): Promise<void> {
    let output = '';
    const child = spawn(this.podman, ['system', 'service', '--time=0', `unix://${this.socketPath}`], { env: this.env, stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    child.stderr?.on('data', (b: Buffer) => { output = (output + b.toString('utf8')).slice(-4000); });
    let gone: Error | undefined;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        gone = new Error(`podman system service exited (${signal ?? `code ${code ?? '?'}`})`);
        resolve();
      });
      child.once('error', (e) => { gone = e; resolve(); });
    });
    this.log.info('starting podman system service', { socket: this.socketPath, pid: child.pid ?? 0 });
    const deadline = Date.now() + SERVICE_START_MS;
    while (Date.now() < deadline) {
      if (gone) break;
      if (await ping(this.socketPath, 500)) {
        this.log.info('podman system service answers', { socket: this.socketPath });
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.stop();
    throw new ContainerError('cannot start podman system service', {
      details: `${gone ? errorText(gone) : `no answer on ${this.socketPath} within ${SERVICE_START_MS} ms`}${output.trim() ? `: ${output.trim()}` : ''}`,
    });
  }

  /** Stops the service (SIGTERM, then SIGKILL after 5 s). Idempotent. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
    this.log.info('podman system service stopped', { socket: this.socketPath });
  }
}

export interface FindOptions {
  /** `container.runtime` from the config. */
  configMode: string;
  /** Where a socket of the engine's own may be created (the store root). */
  ownDir: string;
  log: Logger;
  env?: NodeJS.ProcessEnv;
}

/** The socket of a service the engine starts: in its own directory, unless that path is too long for a unix socket. */
export function ownSocket(ownDir: string): string {
  const p = join(ownDir, 'podman.sock');
  return Buffer.byteLength(p) <= 100 ? p : join(tmpdir(), `sqlrs-podman-${createHash('sha256').update(ownDir).digest('hex').slice(0, 16)}.sock`);
}

/** The advice in a "no container runtime" error. */
function advice(mode: RuntimeMode, tried: DaemonCandidate[]): string {
  const where = tried.map((c) => `${c.socketPath} (${c.source})`).join(', ');
  const docker = 'start Docker (e.g. `dockerd` or `systemctl start docker`)';
  const podman = 'install Podman (`apt-get install podman`) or start its API with `podman system service --time=0 unix:///run/podman/podman.sock`';
  const what = mode === 'docker' ? docker : mode === 'podman' ? podman : `${docker}, or ${podman}`;
  return `no container API answered at ${where}; ${what}, or point DOCKER_HOST / CONTAINER_HOST at a running one`;
}

/**
 * Chooses the container API. @throws ContainerError naming what was tried and what to run
 */
export async function findDaemon(o: FindOptions): Promise<DaemonChoice> {
  const env = o.env ?? process.env;
  const mode = wantedMode(o.configMode, env);
  const tried = candidates(mode, env);
  for (const c of tried) {
    if (await ping(c.socketPath)) return c;
  }
  if (mode === 'docker') throw new ContainerError('no container runtime', { details: advice(mode, tried) });
  const podman = findPodman(env);
  if (podman) {
    const uri = await podmanDefaultConnection(podman, env);
    if (uri && !tried.some((c) => c.socketPath === uri)) {
      const c: DaemonCandidate = { kind: 'podman', socketPath: uri, source: 'default podman connection' };
      tried.push(c);
      if (await ping(uri)) return c;
    }
    const service = new PodmanService(podman, ownSocket(o.ownDir), o.log, env);
    await service.start();
    return { kind: 'podman', socketPath: service.socketPath, source: 'podman system service started by the engine', service };
  }
  throw new ContainerError('no container runtime', { details: advice(mode, tried) });
}
