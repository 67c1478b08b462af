/**
 * Postgres containers: create and start one (`sleep infinity` with the data dir bound at
 * {@link DATA_MOUNT}, port 5432 published on 127.0.0.1), `pg_ctl` start/stop inside it, its
 * published port, and readiness checked over TCP the way clients connect.
 */
import { rm } from 'node:fs/promises';
import { connect } from 'node:net';
import type Docker from 'dockerode';
import { delay, throwIfAborted } from '../../abort.js';
import { ContainerError } from '../../errors.js';
import { DATA_MOUNT, PGDATA, type StartRequest, type StartedContainer } from '../protocol.js';
import { client, logSafe, messageOf, removeQuietly } from './client.js';
import { runExec } from './exec.js';

const PG_LOG = '/tmp/postgres.log';
const PG_PORT = '5432';
/** SSLRequest: length 8, code 80877103. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]);

/** Cleared once the daemon refused `Init: true` (then containers start without an init process). */
let initSupported = true;

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

/**
 * `pg_ctl -m fast -w stop`, verified with `pg_ctl status` when it did not exit 0 (a stopped
 * server is fine).
 * @throws ContainerError `postgres stop failed` when the server is still running
 */
export async function stopPostgres(containerId: string, signal: AbortSignal): Promise<null> {
  const stop = await runExec(containerId, ['pg_ctl', '-D', PGDATA, '-m', 'fast', '-w', 'stop'], {
    user: 'postgres',
    signal,
    collect: true,
  });
  // `pg_ctl -w stop` exits 0 only once postmaster.pid is gone; check the status only otherwise.
  if (stop.exitCode === 0) return null;
  const status = await runExec(containerId, ['pg_ctl', '-D', PGDATA, 'status'], { user: 'postgres', signal, collect: true });
  // pg_ctl status: 0 = running, 3 = not running, 4 = no accessible data directory.
  if (status.exitCode !== 3) {
    throw new ContainerError('postgres stop failed', {
      details: `pg_ctl stop exited ${stop.exitCode}: ${stop.output.trim()}\npg_ctl status exited ${status.exitCode}: ${status.output.trim()}`,
    });
  }
  return null;
}

/** `pg_ctl start` in a running container, then TCP readiness on its published port. */
export async function startPostgres(containerId: string, signal: AbortSignal): Promise<null> {
  await pgStart(containerId, signal);
  await tcpReady(await hostPort(containerId), signal);
  return null;
}

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

/** The host port 5432/tcp of a container is published on (127.0.0.1 preferred). */
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

/**
 * Creates and starts a Postgres container and waits until it answers over TCP; on any failure the
 * container is removed again.
 */
export async function startContainer(req: StartRequest, signal: AbortSignal): Promise<StartedContainer> {
  throwIfAborted(signal, 'container start');
  const container = await createAndStart(req);
  try {
    await pgStart(container.id, signal);
    const port = await hostPort(container.id);
    await tcpReady(port, signal);
    return { id: container.id, host: '127.0.0.1', port };
  } catch (e) {
    await removeQuietly(container.id);
    throw e;
  }
}
