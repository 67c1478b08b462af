/**
 * Composition root and lifecycle. It builds, in start-up order, everything the wings share — the
 * logger, the store lock, SQLite (mailbox and store), the config, the worker clients (fs pool,
 * container runtime), the snapshot backend and the store layout — then every wing's service by
 * constructor injection (each registers its actor logic with the actor system), wires the
 * callbacks between wings, and starts HTTP. Nothing else imports `http/` or this file.
 *
 * Lifecycle (`EngineStatus`): `created → starting → running → stopping → stopped`; a start-up
 * failure ends in `failed` after undoing what was built.
 * Start-up order: logger → state root + store lock → SQLite (migrations) → config → worker clients
 * → snapshot backend → wings → HTTP listener → `engine.json` → start-up recovery → actor system
 * → resumed deletions and the cache's start-up check.
 * Shutdown runs what was built in reverse: stop listening → drain actors → close wings → close
 * the worker clients → close HTTP → close SQLite → remove `engine.json` → release the store lock.
 * Each step reports its own failure and the rest still run.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { WebSocketBehavior } from 'uWebSockets.js';
import { EngineError, errorText, IllegalStateError, InternalError } from './errors.js';
import type { Logger, LogLevel } from './log.js';
import { openEngineLog, type EngineLog, type LogRotation } from './logging.js';
import { systemClock, rfc3339Nano, type Clock } from './clock.js';
import { randomHex } from './ids.js';
import { lockStore } from './store-lock.js';
import { writeEngineJson, removeEngineJson } from './discovery.js';
import { splitHostPort, type EngineFlags } from './flags.js';
import { ConfigManager } from './config/index.js';
import { openDatabase } from './mailbox/db.js';
import { Store } from './mailbox/store.js';
import { LifecycleStore } from './mailbox/lifecycle.js';
import { LifecycleLog } from './actors/lifecycle/service.js';
import { Mailbox } from './mailbox/mailbox.js';
import { FsPool } from './workers/pool.js';
import { DockerRuntime } from './workers/containers.js';
import { findDaemon, wantedMode, type DaemonChoice } from './workers/daemon.js';
import type { ContainerRuntime, SnapshotBackendKind } from './workers/protocol.js';
import { ActorSystem } from './actors/system/system.js';
import { StoreLayout } from './actors/layout.js';
import { recover } from './actors/recovery.js';
import { statesInUse, deletionWorkStates, type WorkStates } from './actors/deletion/in-use.js';
import { DELETE_KIND } from './actors/deletion/transition.js';
import { PREPARE_KIND } from './actors/prepare/transition.js';
import { PrepareService, prepareWorkStates } from './actors/prepare/service.js';
import { RunService } from './actors/run/service.js';
import { DeletionService } from './actors/deletion/service.js';
import { CacheService } from './actors/cache/service.js';
import { HttpServer } from './http/server.js';
import { buildRoutes, type ContainerRuntimeInfo } from './http/routes.js';
import { eventsWebSocket } from './http/ws.js';
import { Metrics } from './http/metrics.js';
import { RUN_KIND } from './actors/run/transition.js';

export type EngineStatus = 'created' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export interface EngineOptions {
  flags: EngineFlags;
  /** State store root; default `<dir of engine.json>/state-store` (env `SQLRS_STATE_STORE`). */
  stateStore?: string;
  clock?: Clock;
  /** Also write the log, formatted for people, to stderr (when a person runs the engine in a terminal). */
  logToStderr?: boolean;
  /** Bound of `logs/engine.log` and its rotated copies; default `DEFAULT_LOG_ROTATION` (10 MiB × 5 files). */
  logRotation?: LogRotation;
  /** A container runtime to use instead of the Docker/Podman API client. */
  containers?: ContainerRuntime;
}

/** How long the actor system may drain running work at shutdown before aborting it. */
const DRAIN_GRACE_MS = 5000;
/** How often idleness is checked. */
const IDLE_CHECK_MS = 1000;

/** `snapshot.backend`: an explicit backend the store cannot support is an error, never a silent fallback. */
async function chooseBackend(fs: FsPool, root: string, mode: string): Promise<SnapshotBackendKind> {
  const probe = await fs.run({ type: 'probe', root });
  if (mode === 'copy') return 'copy';
  if (mode === 'btrfs' || mode === 'overlay') {
    if (probe[mode]) return mode;
    throw new InternalError(`snapshot.backend is ${mode} but the state store does not support it`, { details: probe.notes.join('; ') });
  }
  return probe.btrfs ? 'btrfs' : probe.overlay ? 'overlay' : 'copy';
}

export class Engine {
  status: EngineStatus = 'created';
  readonly version: string;
  readonly instanceId = randomHex(16);
  readonly token = randomHex(32);
  readonly root: string;
  readonly clock: Clock;
  readonly log: Logger;
  /** The file behind {@link log}: closed (flushed) last at shutdown and after a failed start. */
  private readonly logOutput: EngineLog;
  /** Resolves when the engine has stopped (signal, idle or `close`). */
  readonly stopped: Promise<void>;
  private resolveStopped: () => void = () => undefined;
  /** What start-up built, undone in reverse at shutdown. */
  private readonly undo: { name: string; run: () => unknown }[] = [];
  /** Whether each part still has work that keeps the engine alive. */
  private readonly busyChecks: (() => boolean)[] = [];
  private closing: Promise<void> | undefined;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(readonly opts: EngineOptions) {
    this.version = opts.flags.version;
    this.root = resolve(opts.stateStore ?? join(dirname(resolve(opts.flags.writeEngineJson)), 'state-store'));
    this.clock = opts.clock ?? systemClock;
    this.stopped = new Promise((r) => { this.resolveStopped = r; });
    const logFile = join(dirname(resolve(opts.flags.writeEngineJson)), 'logs', 'engine.log');
    this.logOutput = openEngineLog({
      file: logFile, level: 'debug',
      ...(opts.logRotation ? { rotation: opts.logRotation } : {}),
      ...(opts.logToStderr ? { pretty: process.stderr } : {}),
    });
    this.log = this.logOutput.logger;
  }

  private setStatus(s: EngineStatus): void {
    this.log.info('engine status', { from: this.status, to: s });
    this.status = s;
  }

  private built(name: string, run: () => unknown): void {
    this.undo.push({ name, run });
  }

  async start(): Promise<void> {
    if (this.status !== 'created') throw new IllegalStateError(`start in status ${this.status}`);
    const f = this.opts.flags;
    const clock = this.clock;
    const log = this.log;
    log.info(`sqlrs-engine version=${this.version}`, { pid: process.pid, root: this.root });
    this.setStatus('starting');
    try {
      if (f.runDir) mkdirSync(f.runDir, { recursive: true, mode: 0o700 });
      mkdirSync(this.root, { recursive: true, mode: 0o700 });
      const lock = lockStore(this.root);
      this.built('release store lock', () => lock.release());
      const engineJson = resolve(f.writeEngineJson);
      this.built('remove engine.json', () => removeEngineJson(engineJson, this.instanceId));
      const db = openDatabase(join(this.root, 'state.db'));
      this.built('close database', () => { if (db.open) db.close(); });
      const store = new Store(db);
      const mailbox = new Mailbox(db, clock);
      const lifecycle = new LifecycleLog(new LifecycleStore(db), clock);
      let runtime: ContainerRuntimeInfo = { kind: this.opts.containers ? 'custom' : 'detecting' };
      const config = await ConfigManager.open(this.root);
      const applyLevel = (): void => log.setLevel(config.effective().logLevel as LogLevel);
      applyLevel();
      config.onChange(applyLevel);

      // Worker clients and the store's shape.
      const fs = new FsPool({ logger: log.child({ c: 'fs' }), maxThreads: 2 });
      this.built('close fs pool', () => fs.close());
      // The container API is found in the background (it may start Podman's service): read
      // endpoints work without it, and container work waits for it or fails with its advice.
      const runtimeLog = log.child({ c: 'containers' });
      wantedMode(config.effective().containerRuntime); // an unsupported SQLRS_CONTAINER_RUNTIME is a start-up error
      let containers: ContainerRuntime;
      let containerCalls = (): number => 0;
      if (this.opts.containers) {
        containers = this.opts.containers;
      } else {
        const detection: Promise<DaemonChoice> = findDaemon({ configMode: config.effective().containerRuntime, ownDir: f.runDir || this.root, log: runtimeLog });
        detection.then(
          (d) => { runtime = { kind: d.kind, socket: d.socketPath, source: d.source }; runtimeLog.info('container runtime', { runtime: d.kind, socket: d.socketPath, source: d.source }); },
          (err: unknown) => { runtime = { kind: 'none', error: errorText(err) }; runtimeLog.error('no container runtime', { error: errorText(err) }); },
        );
        this.built('stop podman service', async () => { await (await detection.catch(() => undefined))?.service?.stop(); });
        const docker = new DockerRuntime({ socketPath: detection.then((d) => d.socketPath), logger: runtimeLog });
        containerCalls = () => docker.callsInFlight;
        containers = docker;
      }
      this.built('close container runtime', () => containers.close());
      // Not awaited and not fatal.
      containers.ping().then(
        (v) => runtimeLog.info('container runtime ready', { version: v.version, api: v.apiVersion }),
        (err: unknown) => runtimeLog.error('container runtime is not reachable', { error: errorText(err) }),
      );
      const backend = await chooseBackend(fs, this.root, config.effective().snapshotBackend);
      log.info('snapshot backend', { backend });
      const layout = new StoreLayout(this.root);
      // HTTP closes after the wings (open streams end once the work behind them has stopped).
      let server: HttpServer | undefined;
      this.built('close http', () => server?.close());

      // The wings. Work of each kind says which states it uses; eviction and deletion respect them.
      const system = new ActorSystem(mailbox, clock, log.child({ c: 'actors' }));
      const workStates = (withDeletions: boolean): Set<string> => {
        const byKind = new Map<string, WorkStates>([[PREPARE_KIND, prepareWorkStates]]);
        if (withDeletions) byKind.set(DELETE_KIND, deletionWorkStates);
        return statesInUse(mailbox.pendingWork(), byKind);
      };
      const shared = { store, mailbox, system, fs, containers, layout, clock, lifecycle };
      // Eviction goes through the deletion wing, built below: the callback is only called later.
      let evict = (row: { state_id: string }): Promise<void> => Promise.reject(new IllegalStateError(`eviction of ${row.state_id} before start`));
      const cache = new CacheService({
        store, fs, layout, clock, log: log.child({ c: 'cache' }),
        config: () => config.effective().cache, statesInUse: () => workStates(true), evict: (row) => evict(row),
      });
      // Metrics: the wings report through it (Telemetry); gauges are read at scrape time.
      const metrics = new Metrics({
        counts: () => store.counts(),
        cache: () => cache.usage(),
        webSocketClients: () => server?.openSockets ?? 0,
        mailboxDepths: () => ({ [PREPARE_KIND]: 0, [RUN_KIND]: 0, [DELETE_KIND]: 0, ...mailbox.depthByKind() }),
        workerQueues: () => ({ fs: fs.pending, containers: containerCalls() }),
        runningWork: () => system.activeWork,
      });
      const prepare = new PrepareService({
        ...shared, backend, capacity: cache, log: log.child({ c: 'prepare' }), telemetry: metrics,
        maxIdenticalJobs: () => config.effective().maxIdenticalJobs,
      });
      const deletion = new DeletionService({
        ...shared, backend, log: log.child({ c: 'deletion' }), statesInUse: (withDeletions) => workStates(withDeletions),
        jobs: { cancelAndWait: (id, ms) => prepare.cancelAndWait(id, ms), forget: (id) => prepare.forgetJob(id) },
      });
      evict = (row) => deletion.evictState(row as Parameters<DeletionService['evictState']>[0]);
      deletion.onStateDeleted((id) => cache.forget(id));
      const runs = new RunService({ ...shared, log: log.child({ c: 'run' }) });
      this.built('close wings', () => { runs.close(); deletion.close(); });
      this.built('drain actors', () => system.close(DRAIN_GRACE_MS));
      this.busyChecks.push(
        () => system.activeWork > 0,
        () => store.jobsWithStatus('queued', 'running').length > 0,
        () => prepare.busy(), () => runs.busy(), () => deletion.busy(), () => cache.busy(),
      );

      // HTTP.
      const ws = eventsWebSocket({
        store, onEvents: (fn) => prepare.onEvents(fn), lifecycle, runs: runs.watch, log: log.child({ c: 'ws' }), token: this.token,
        authorized: (h) => http.authorized(h),
        opened: () => { http.openSockets++; },
        closed: () => { http.openSockets--; },
      });
      const http = new HttpServer({
        token: this.token,
        logger: log.child({ c: 'http' }),
        routes: buildRoutes({ version: this.version, instanceId: this.instanceId, pid: process.pid, store, config, prepare, runs, deletion, cache, containerRuntime: () => runtime, metrics }),
        // The behaviour is typed with its own per-socket data; uWS only sees it through this map.
        websockets: { '/v1/ws': ws as unknown as WebSocketBehavior<never> },
      });
      server = http;
      const { host, port: wantPort } = splitHostPort(f.listen);
      const port = await http.listen(host, wantPort);
      this.built('stop listening', () => http.stopListening());
      this.busyChecks.push(() => http.inFlight > 0);
      writeEngineJson(engineJson, {
        endpoint: `${host.includes(':') ? `[${host}]` : host}:${port}`,
        pid: process.pid,
        startedAt: rfc3339Nano(clock.now()),
        authToken: this.token,
        version: this.version,
        instanceId: this.instanceId,
      });
      log.info('engine listening', { endpoint: `${host}:${port}` });

      // Recovery before the actors resume; requests meanwhile only enqueue persistent messages.
      await recover({ store, mailbox, fs, containers, layout, backend, log: log.child({ c: 'hygiene' }), clock });
      system.start();
      deletion.resume();
      cache.checkAtStartup();
      this.armIdle(() => http.lastActivity);
      this.setStatus('running');
    } catch (e) {
      log.error('engine start failed', { error: errorText(e) });
      await this.teardown();
      this.setStatus('failed');
      await this.logOutput.close(); // the caller exits the process next: the last lines must be on disk
      this.resolveStopped();
      throw e;
    }
  }

  /** True while requests, streams, queued or running jobs or running work keep the engine alive. */
  busy(): boolean {
    return this.busyChecks.some((b) => b());
  }

  private armIdle(lastActivity: () => number): void {
    const idleMs = this.opts.flags.idleTimeoutMs;
    if (idleMs <= 0) return;
    let lastBusy = this.clock.now();
    this.idleTimer = setInterval(() => {
      if (this.status !== 'running') return;
      const now = this.clock.now();
      if (this.busy()) { lastBusy = now; return; }
      const last = Math.max(lastBusy, lastActivity());
      if (now - last >= idleMs) {
        this.log.info('idle timeout reached; shutting down', { idle_ms: now - last });
        void this.close();
      }
    }, IDLE_CHECK_MS);
    this.idleTimer.unref();
  }

  /** Graceful shutdown (idempotent). */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        if (this.status === 'running') this.setStatus('stopping');
        await this.teardown();
        this.setStatus('stopped');
        await this.logOutput.close();
        this.resolveStopped();
      })();
    }
    return this.closing;
  }

  private async teardown(): Promise<void> {
    if (this.idleTimer) clearInterval(this.idleTimer);
    for (const step of this.undo.splice(0).reverse()) {
      try { await step.run(); } catch (e) { this.log.error(`shutdown step failed: ${step.name}`, { error: errorText(e) }); }
    }
  }
}

/** Exit code for a start-up error: 2 for usage, 1 otherwise. */
export function exitCodeFor(e: unknown): number {
  return e instanceof EngineError && e.code === 'ENGINE_USAGE' ? 2 : 1;
}
