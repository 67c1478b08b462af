/**
 * The work of run sessions (performed outside transactions, results fed back to the actor):
 * - `ensure`: make sure the instance's container runs. A container that is gone or stopped is
 *   recreated from the instance's data directory (`behaviour.md` §7.8): an overlay runtime whose
 *   `merged` is no longer mounted is mounted again, a stale `sqlrs-run-<instance_id>` container is
 *   removed, a new one is started under that name with the labels of instance containers, and the
 *   instance's `runtime_id`/port are updated. Recovery of one instance is shared by all runs that
 *   need it at the same time, and each of them gets the recovery `log` events.
 * - `exec`: run one step as user `postgres`, streaming its output into the run's channel. Its
 *   server sessions carry `application_name` `sqlrs-run-<run id>` (`PGAPPNAME`), so that when the
 *   step is aborted (client gone) the queries it left running are terminated too.
 *
 * Both first look up the run's channel: without one the client is gone (e.g. the engine restarted
 * and redispatched the work) and nothing is executed.
 */
import { statSync } from 'node:fs';
import type { Logger } from '../../log.js';
import type { Clock } from '../../clock.js';
import { raceAbort, timeoutSignal } from '../../abort.js';
import type { InstanceRow } from '../../mailbox/store.js';
import type { ContainerRuntime, ExecRequest } from '../../workers/protocol.js';
import { LABEL_INSTANCE, LABEL_JOB, LABEL_ROLE } from '../../workers/protocol.js';
import type { FsTask, FsTaskOutput } from '../../workers/protocol.js';
import { CancelledError, ConflictError, InternalError, assertNever, errorText } from '../../errors.js';
import { rfc3339Nano } from '../../clock.js';
import type { RunChannel, RunChannels } from './channel.js';
import type { EnsureResult, ExecOutcome, RunWork } from './transition.js';
import { LOCAL_CONNECTION_FLAGS } from './args.js';

/** The store operations run work needs. */
export interface RunStore {
  getInstance(id: string): InstanceRow | undefined;
  setInstanceRuntime(id: string, runtimeId: string | null, port: number | null): void;
}

export interface RunWorkDeps {
  store: RunStore;
  channels: RunChannels;
  containers: ContainerRuntime;
  /** Runs filesystem tasks (the fs worker pool). */
  fs: { run<K extends FsTask>(task: K, signal?: AbortSignal): Promise<FsTaskOutput[K['type']]> };
  /** State store root (overlay layers are recorded relative to it). */
  root: string;
  /** Labels of engine containers plus `extra`. */
  labels(extra: Record<string, string>): Record<string, string>;
  log: Logger;
  clock: Clock;
}

/** `application_name` of every server session a run's commands open (via `PGAPPNAME`). */
export function backendTag(runId: string): string {
  return `sqlrs-run-${runId}`;
}

const TERMINATE_TIMEOUT_MS = 10_000;

/** Name of a recreated instance container. */
export function recoveryContainerName(instanceId: string): string {
  return `sqlrs-run-${instanceId}`;
}

type LogFn = (message: string) => void;

interface Recovery {
  logs: string[];
  listeners: Set<LogFn>;
  done: Promise<string>;
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;
  } catch {
    return false;
  }
}

export class RunWorker {
  private readonly recoveries = new Map<string, Recovery>();

  constructor(private readonly d: RunWorkDeps) {}

  perform(spec: RunWork, signal: AbortSignal): Promise<unknown> {
    switch (spec.kind) {
      case 'ensure': return this.ensure(spec, signal);
      case 'exec': return this.exec(spec, signal);
      default: return assertNever(spec, 'run work');
    }
  }

  /** Recoveries in progress (tests, diagnostics). */
  get recovering(): number { return this.recoveries.size; }

  private channelFor(runId: string): RunChannel {
    const ch = this.d.channels.get(runId);
    if (!ch || ch.cancelled) throw new CancelledError('run client is gone');
    return ch;
  }

  /** True when the instance row is gone or marked for deletion. */
  private gone(instanceId: string): boolean {
    const row = this.d.store.getInstance(instanceId);
    return !row || row.deleting !== 0;
  }

  /** Container state, assuming "running" when the daemon cannot tell. */
  private async running(containerId: string): Promise<boolean> {
    if (containerId === '') return false;
    try {
      return await this.d.containers.isRunning(containerId);
    } catch (e) {
      this.d.log.warn('cannot inspect container', { container: containerId, error: errorText(e) });
      return true;
    }
  }

  private async ensure(spec: Extract<RunWork, { kind: 'ensure' }>, signal: AbortSignal): Promise<EnsureResult> {
    const ch = this.channelFor(spec.runId);
    const row = this.d.store.getInstance(spec.instanceId);
    if (!row || row.deleting !== 0) throw new ConflictError('instance is being deleted');
    const current = row.runtime_id ?? '';
    if (current !== '' && await this.d.containers.isRunning(current)) return { containerId: current };
    const sig = AbortSignal.any([signal, ch.signal]);
    const log: LogFn = (data) => ch.push({ type: 'log', ts: rfc3339Nano(), data });
    const containerId = await this.recover(spec.instanceId, current, log, sig);
    return { containerId };
  }

  /** Joins (or starts) the recovery of an instance's container; returns the running container's id. */
  private recover(instanceId: string, seen: string, log: LogFn, signal: AbortSignal): Promise<string> {
    let r = this.recoveries.get(instanceId);
    if (r) {
      for (const m of r.logs) log(m);
      r.listeners.add(log);
    } else {
      const rec: Recovery = { logs: [], listeners: new Set([log]), done: Promise.resolve('') };
      const emit: LogFn = (m) => {
        rec.logs.push(m);
        for (const l of rec.listeners) l(m);
      };
      rec.done = this.recreate(instanceId, seen, emit).finally(() => this.recoveries.delete(instanceId));
      rec.done.catch(() => undefined); // observed by every run waiting on it
      this.recoveries.set(instanceId, rec);
      r = rec;
    }
    const joined = r;
    return raceAbort(joined.done, signal, 'container recovery').finally(() => joined.listeners.delete(log));
  }

  /**
   * Recreates an instance's container from its data directory. Not cancellable by one run: other
   * runs may be waiting for it; it is bounded by the container start's own readiness deadline.
   */
  private async recreate(instanceId: string, seen: string, emit: LogFn): Promise<string> {
    const { store, containers } = this.d;
    const row = store.getInstance(instanceId);
    if (!row || row.deleting !== 0) throw new ConflictError('instance is being deleted');
    // Another run may have recreated it since this one looked.
    const now = row.runtime_id ?? '';
    if (now !== '' && now !== seen && await this.running(now)) return now;
    emit('run: container missing - recreating');
    const dir = row.runtime_dir ?? '';
    if (dir.trim() === '' || !isDirectory(dir)) {
      throw new ConflictError('instance runtime_dir is missing', dir.trim() === '' ? {} : { details: dir });
    }
    emit('run: restoring runtime');
    const { mountDir, remounted } = await this.d.fs.run({ type: 'remount-runtime', root: this.d.root, runtimeDir: dir });
    if (remounted) this.d.log.info('instance data mounted again', { instance: instanceId, dir: mountDir });
    const name = recoveryContainerName(instanceId);
    if (now !== '') await containers.remove(now);
    await containers.remove(name);
    const labels = this.d.labels({
      [LABEL_INSTANCE]: instanceId, [LABEL_ROLE]: 'runtime', ...(row.job_id ? { [LABEL_JOB]: row.job_id } : {}),
    });
    const c = await containers.start({ image: row.image_id, name, labels, dataDir: mountDir, extraMounts: [] });
    if (this.gone(instanceId)) {
      await containers.remove(c.id).catch((e: unknown) => this.d.log.warn('cannot remove container', { id: c.id, error: errorText(e) }));
      throw new ConflictError('instance is being deleted');
    }
    store.setInstanceRuntime(instanceId, c.id, c.port);
    this.d.log.info('instance container recreated', { instance: instanceId, container: c.id, port: c.port });
    emit('run: container started');
    return c.id;
  }

  /**
   * Ends the server sessions an aborted step left behind. Killing a client does not stop a query
   * its backend is running (e.g. `pg_sleep`), so the backends tagged with the run's
   * `application_name` are terminated. Best effort, bounded in time.
   */
  private async terminateBackends(containerId: string, appName: string): Promise<void> {
    const sql = `select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = '${appName}' and pid <> pg_backend_pid()`;
    let out = '';
    const limit = timeoutSignal(this.d.clock, TERMINATE_TIMEOUT_MS, () => new CancelledError(`terminating backends timed out after ${TERMINATE_TIMEOUT_MS} ms`));
    try {
      const r = await this.d.containers.exec(
        { containerId, user: 'postgres', cmd: ['psql', '-X', '-q', '-At', ...LOCAL_CONNECTION_FLAGS, '-d', 'postgres', '-c', sql] },
        (_stream, chunk) => { out += chunk; },
        limit.signal,
      );
      this.d.log.debug('terminated the backends of an aborted run', { container: containerId, app: appName, exit_code: r.exitCode, output: out.trim() });
    } catch (e) {
      this.d.log.warn('cannot terminate the backends of an aborted run', { container: containerId, app: appName, error: errorText(e) });
    } finally {
      limit.clear();
    }
  }

  private async exec(spec: Extract<RunWork, { kind: 'exec' }>, signal: AbortSignal): Promise<ExecOutcome> {
    const ch = this.channelFor(spec.runId);
    const step = ch.input.steps[spec.step];
    if (!step) throw new InternalError('run step is missing', { details: String(spec.step) });
    const sig = AbortSignal.any([signal, ch.signal]);
    const appName = backendTag(spec.runId);
    const req: ExecRequest = { containerId: spec.containerId, cmd: step.cmd, user: 'postgres', env: [`PGAPPNAME=${appName}`] };
    if (step.stdin !== undefined) req.stdin = step.stdin;
    this.d.log.debug('run exec', { run: spec.runId, step: spec.step, container: spec.containerId, argv0: step.cmd[0] ?? '' });
    let produced = false;
    try {
      const r = await this.d.containers.exec(req, (stream, chunk) => {
        produced = true;
        return ch.output(stream, chunk);
      }, sig);
      // A command cut short by the instance's deletion reports the deletion, not its exit code.
      if (r.exitCode !== 0 && this.gone(spec.instanceId)) throw new ConflictError('instance is being deleted');
      return { type: 'exit', exitCode: r.exitCode };
    } catch (e) {
      if (sig.aborted) {
        await this.terminateBackends(spec.containerId, appName);
        throw e;
      }
      if (this.gone(spec.instanceId)) throw new ConflictError('instance is being deleted');
      if (!produced && !(await this.running(spec.containerId))) return { type: 'missing' };
      throw e;
    }
  }
}
