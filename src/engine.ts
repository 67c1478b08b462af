/**
 * Composition root: builds every component in start-up order and tears them down in reverse.
 *
 * Lifecycle (`EngineStatus`): `created → starting → running → stopping → stopped`; a start-up
 * failure ends in `failed` after undoing what was built.
 * Start-up order: logger → state root + store lock → SQLite (migrations) → config → worker pools →
 * actor runtime (recovery) → HTTP listener → `engine.json`.
 * Shutdown order: stop accepting → drain actors → close pools → close SQLite → remove `engine.json`
 * → release the store lock. Each step reports its own failure and the rest still run.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { EngineError, errorText, IllegalStateError } from './errors.js';
import { createLogger, fileSink, type Logger, type LogLevel } from './log.js';
import { systemClock, rfc3339Nano, type Clock } from './clock.js';
import { randomHex } from './ids.js';
import { lockStore, type StoreLock } from './store-lock.js';
import { openDatabase, type Db } from './mailbox/db.js';
import { Store } from './mailbox/store.js';
import { Mailbox } from './mailbox/mailbox.js';
import { ActorRuntime } from './actors/runtime.js';
import { ConfigManager } from './config/index.js';
import { HttpServer } from './http/server.js';
import type { WebSocketBehavior } from 'uWebSockets.js';
import { buildRoutes, type CapabilityHandlers } from './http/routes.js';
import { writeEngineJson, removeEngineJson } from './discovery.js';
import { splitHostPort, type EngineFlags } from './flags.js';

export type EngineStatus = 'created' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export interface EngineOptions {
  flags: EngineFlags;
  /** State store root; default `<dir of engine.json>/state-store` (env `SQLRS_STATE_STORE`). */
  stateStore?: string;
  clock?: Clock;
  /** Tee log lines to stderr. */
  logToStderr?: boolean;
}

/** Hooks a capability uses to plug into the engine (registered before start). */
export interface Capability {
  name: string;
  /** Called after the runtime is built, before it starts (register behaviours). */
  init?(e: Engine): void | Promise<void>;
  /**
   * Called once the listener is up and engine.json written, before the actor runtime starts:
   * crash recovery that must finish before outstanding work is redispatched (start-up hygiene).
   * Requests arriving meanwhile only enqueue persistent messages.
   */
  recover?(e: Engine): void | Promise<void>;
  /** Called after recovery, once the runtime runs. */
  started?(e: Engine): void | Promise<void>;
  handlers?(e: Engine): CapabilityHandlers;
  /** WebSocket endpoints by path. */
  websockets?(e: Engine): Record<string, WebSocketBehavior<never>>;
  /** True while the capability has work that must keep the engine alive. */
  busy?(): boolean;
  close?(): Promise<void>;
}

export class Engine {
  status: EngineStatus = 'created';
  readonly version: string;
  readonly instanceId = randomHex(16);
  readonly token = randomHex(32);
  readonly root: string;
  readonly clock: Clock;
  log!: Logger;
  db!: Db;
  store!: Store;
  mailbox!: Mailbox;
  runtime!: ActorRuntime;
  config!: ConfigManager;
  server!: HttpServer;
  port = 0;
  startedAt = '';
  private lock: StoreLock | undefined;
  private readonly capabilities: Capability[] = [];
  private closing: Promise<void> | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private lastBusy = Date.now();
  /** Resolves when the engine has stopped (signal, idle or `close`). */
  readonly stopped: Promise<void>;
  private resolveStopped!: () => void;

  constructor(readonly opts: EngineOptions) {
    this.version = opts.flags.version;
    this.root = resolve(opts.stateStore ?? join(dirname(resolve(opts.flags.writeEngineJson)), 'state-store'));
    this.clock = opts.clock ?? systemClock;
    this.stopped = new Promise((r) => { this.resolveStopped = r; });
  }

  use(c: Capability): this {
    if (this.status !== 'created') throw new IllegalStateError('capabilities must be added before start');
    this.capabilities.push(c);
    return this;
  }

  private setStatus(s: EngineStatus): void {
    this.log?.info('engine status', { from: this.status, to: s });
    this.status = s;
  }

  async start(): Promise<void> {
    if (this.status !== 'created') throw new IllegalStateError(`start in status ${this.status}`);
    const f = this.opts.flags;
    const engineJsonDir = dirname(resolve(f.writeEngineJson));
    this.log = createLogger(fileSink(join(engineJsonDir, 'logs', 'engine.log'), this.opts.logToStderr ?? false), 'debug');
    this.log.info(`sqlrs-engine version=${this.version}`, { pid: process.pid, root: this.root });
    this.setStatus('starting');
    try {
      if (f.runDir) mkdirSync(f.runDir, { recursive: true, mode: 0o700 });
      mkdirSync(this.root, { recursive: true, mode: 0o700 });
      this.lock = lockStore(this.root);
      this.db = openDatabase(join(this.root, 'state.db'));
      this.store = new Store(this.db);
      this.mailbox = new Mailbox(this.db, this.clock);
      this.config = await ConfigManager.open(this.root);
      const applyLevel = (): void => this.log.setLevel(this.config.effective().logLevel as LogLevel);
      applyLevel();
      this.config.onChange(applyLevel);
      this.runtime = new ActorRuntime(this.mailbox, this.clock, this.log.child({ c: 'actors' }));
      for (const c of this.capabilities) await c.init?.(this);
      const handlers: CapabilityHandlers = {};
      const websockets: Record<string, WebSocketBehavior<never>> = {};
      for (const c of this.capabilities) {
        Object.assign(handlers, c.handlers?.(this) ?? {});
        Object.assign(websockets, c.websockets?.(this) ?? {});
      }
      this.server = new HttpServer({
        token: this.token,
        logger: this.log.child({ c: 'http' }),
        routes: buildRoutes({ version: this.version, instanceId: this.instanceId, pid: process.pid, store: this.store, config: this.config }, handlers),
        websockets,
      });
      const { host, port } = splitHostPort(f.listen);
      this.port = await this.server.listen(host, port);
      this.startedAt = rfc3339Nano();
      writeEngineJson(resolve(f.writeEngineJson), {
        endpoint: `${host.includes(':') ? `[${host}]` : host}:${this.port}`,
        pid: process.pid,
        startedAt: this.startedAt,
        authToken: this.token,
        version: this.version,
        instanceId: this.instanceId,
      });
      this.log.info('engine listening', { endpoint: `${host}:${this.port}` });
      for (const c of this.capabilities) await c.recover?.(this);
      this.runtime.start();
      for (const c of this.capabilities) await c.started?.(this);
      this.armIdle();
      this.setStatus('running');
    } catch (e) {
      this.log.error('engine start failed', { error: errorText(e) });
      await this.teardown();
      this.setStatus('failed');
      this.resolveStopped();
      throw e;
    }
  }

  /** True while queued/running jobs or capability work must keep the engine alive. */
  busy(): boolean {
    if (this.runtime?.activeWork > 0) return true;
    if (this.store && this.store.jobsWithStatus('queued', 'running').length > 0) return true;
    return this.capabilities.some((c) => c.busy?.() ?? false);
  }

  private armIdle(): void {
    const idleMs = this.opts.flags.idleTimeoutMs;
    if (idleMs <= 0) return;
    this.idleTimer = setInterval(() => {
      if (this.status !== 'running') return;
      const now = Date.now();
      if (this.server.inFlight > 0 || this.busy()) { this.lastBusy = now; return; }
      const last = Math.max(this.lastBusy, this.server.lastActivity);
      if (now - last >= idleMs) {
        this.log.info('idle timeout reached; shutting down', { idle_ms: now - last });
        void this.close();
      }
    }, 1000);
    this.idleTimer.unref();
  }

  /** Graceful shutdown (idempotent). */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        if (this.status === 'running') this.setStatus('stopping');
        await this.teardown();
        this.setStatus('stopped');
        this.resolveStopped();
      })();
    }
    return this.closing;
  }

  private async teardown(): Promise<void> {
    if (this.idleTimer) clearInterval(this.idleTimer);
    const step = async (name: string, fn: () => unknown): Promise<void> => {
      try { await fn(); } catch (e) { this.log?.error(`shutdown step failed: ${name}`, { error: errorText(e) }); }
    };
    await step('stop listening', () => this.server?.stopListening());
    await step('drain actors', () => this.runtime?.close(5000));
    for (const c of [...this.capabilities].reverse()) await step(`close ${c.name}`, () => c.close?.());
    await step('close http', () => this.server?.close());
    await step('close database', () => { if (this.db?.open) this.db.close(); });
    await step('remove engine.json', () => removeEngineJson(resolve(this.opts.flags.writeEngineJson), this.instanceId));
    await step('release store lock', () => this.lock?.release());
  }
}

/** Exit code for a start-up error: 2 for usage, 1 otherwise. */
export function exitCodeFor(e: unknown): number {
  return e instanceof EngineError && e.code === 'ENGINE_USAGE' ? 2 : 1;
}
