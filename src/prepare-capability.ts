/**
 * The prepare capability: container runtime + filesystem pool, start-up hygiene, the prepare-job
 * actor behaviour, and the HTTP handlers for jobs.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Capability, Engine } from './engine.js';
import { FsPool } from './workers/pool.js';
import { DockerRuntime } from './workers/containers.js';
import type { ContainerRuntime } from './workers/container-types.js';
import { LABEL_INSTANCE, LABEL_ROLE, LABEL_STORE } from './workers/container-types.js';
import type { SnapshotBackendKind } from './workers/protocol.js';
import { Runtimes } from './actors/runtimes.js';
import { PrepareWorker } from './actors/prepare-work.js';
import { EventHub } from './actors/events-hub.js';
import * as job from './actors/prepare-job.js';
import type { PrepareEffect, PrepareMessage, PrepareState, PrepareWork } from './actors/prepare-job.js';
import type { ActorBehavior } from './actors/runtime.js';
import { prepareHandlers, type PrepareBody } from './http/prepare-routes.js';
import { eventsWebSocket } from './http/ws.js';
import type { WebSocketBehavior } from 'uWebSockets.js';
import { validatePsqlRequest } from './actors/psql-args.js';
import { imageHasDigest } from './actors/plan.js';
import { actorId, newJobId } from './ids.js';
import { InvalidArgumentError, InternalError, errorText } from './errors.js';
import { rfc3339Nano } from './clock.js';

/** An exited probe container older than this was left by an engine that died mid-probe. */
const PROBE_ABANDONED_MS = 10 * 60 * 1000;

/** Resolves the container API socket from env and config (`container.runtime`). */
export function containerSocket(mode: string): string {
  const env = (process.env['SQLRS_CONTAINER_RUNTIME'] ?? '').trim();
  const want = env !== '' ? (env.includes('podman') ? 'podman' : 'docker') : mode;
  const fromHost = (v: string | undefined): string | undefined => (v && v.startsWith('unix://') ? v.slice('unix://'.length) : undefined);
  const docker = fromHost(process.env['DOCKER_HOST']) ?? '/var/run/docker.sock';
  const podman = fromHost(process.env['CONTAINER_HOST']) ?? '/run/podman/podman.sock';
  if (want === 'podman') return podman;
  if (want === 'docker') return docker;
  return existsSync(docker) || !existsSync(podman) ? docker : podman;
}

/** Validated submit input shared by jobs and cache explain. */
export interface ValidPrepare { image: string; psqlArgs: string[]; stdin?: string; planOnly: boolean; argsNormalized: string }

/** Synchronous validation of a prepare request (`api.md` §3.1). */
export function validatePrepare(body: PrepareBody): ValidPrepare {
  const kind = (body.prepare_kind ?? '').trim();
  if (kind === '') throw new InvalidArgumentError('prepare_kind is required');
  if (kind === 'lb') throw new InvalidArgumentError('unsupported prepare_kind', { details: 'lb: Liquibase prepares are not supported by this engine' });
  if (kind !== 'psql') throw new InvalidArgumentError('unsupported prepare_kind', { details: kind });
  const image = (body.image_id ?? '').trim();
  if (image === '') throw new InvalidArgumentError('image_id is required');
  const psqlArgs = body.psql_args ?? [];
  const stdin = body.stdin ?? undefined;
  const prepared = validatePsqlRequest(psqlArgs, stdin);
  const out: ValidPrepare = { image, psqlArgs: [...psqlArgs], planOnly: body.plan_only === true, argsNormalized: prepared.argsNormalized };
  if (stdin !== undefined) out.stdin = stdin;
  return out;
}

export class PrepareCapability implements Capability {
  readonly name = 'prepare';
  readonly hub = new EventHub();
  fs!: FsPool;
  containers!: ContainerRuntime;
  runtimes!: Runtimes;
  worker!: PrepareWorker;
  backend!: SnapshotBackendKind;
  private engine!: Engine;
  private streams = 0;

  constructor(private readonly opts: { containers?: ContainerRuntime; maxDepth?: number } = {}) {}

  async init(e: Engine): Promise<void> {
    this.engine = e;
    const log = e.log.child({ c: 'prepare' });
    this.fs = new FsPool({ logger: e.log.child({ c: 'fs' }), maxThreads: 2 });
    const cfg = e.config.effective();
    this.containers = this.opts.containers ?? new DockerRuntime({ socketPath: containerSocket(cfg.containerRuntime), logger: e.log.child({ c: 'containers' }) });
    // Not awaited and not fatal: read endpoints work without it; prepares fail with a clear error.
    this.containers.ping().then(
      (v) => log.info('container runtime ready', { version: v.version, api: v.apiVersion }),
      (err: unknown) => log.error('container runtime is not reachable', { error: errorText(err) }),
    );
    this.backend = await this.chooseBackend(cfg.snapshotBackend);
    log.info('snapshot backend', { backend: this.backend });
    this.runtimes = new Runtimes({ root: e.root, store: e.store, fs: this.fs, containers: this.containers, backend: this.backend, log, maxDepth: this.opts.maxDepth ?? 16 });
    this.worker = new PrepareWorker({ store: e.store, hub: this.hub, runtimes: this.runtimes, log });
    e.runtime.register(this.behavior());
  }

  async recover(): Promise<void> {
    await this.hygiene();
  }

  private async chooseBackend(mode: string): Promise<SnapshotBackendKind> {
    const probe = await this.fs.run({ type: 'probe', root: this.engine.root });
    if (mode === 'copy') return 'copy';
    if (mode === 'btrfs' || mode === 'overlay') {
      if (probe[mode]) return mode;
      throw new InternalError(`snapshot.backend is ${mode} but the state store does not support it`, { details: probe.notes.join('; ') });
    }
    return probe.btrfs ? 'btrfs' : probe.overlay ? 'overlay' : 'copy';
  }

  /** Removes containers, mounts and directories that no record owns (after a crash). */
  private async hygiene(): Promise<void> {
    const e = this.engine;
    const log = e.log.child({ c: 'hygiene' });
    try {
      for (const c of await this.containers.list({ [LABEL_STORE]: this.runtimes.label })) {
        const inst = c.labels[LABEL_INSTANCE];
        const row = inst ? e.store.getInstance(inst) : undefined;
        if (!row || row.runtime_id !== c.id) {
          log.warn('removing orphaned container', { id: c.id, name: c.name });
          await this.containers.remove(c.id);
        }
      }
      // One-shot probe containers carry no store label, so they may belong to another engine that
      // is reading one right now: only an exited probe left for long (one lives about a second)
      // is abandoned.
      for (const c of await this.containers.list({ [LABEL_ROLE]: 'probe' })) {
        if (!c.running && Date.now() - c.createdMs > PROBE_ABANDONED_MS) {
          log.warn('removing leftover probe container', { id: c.id });
          await this.containers.remove(c.id);
        }
      }
    } catch (err) {
      log.error('cannot list containers for cleanup', { error: errorText(err) });
    }
    const pendingStates = new Set<string>();
    for (const w of e.mailbox.pendingWork()) {
      const spec = w.spec as Partial<{ outputStateId: string }>;
      if (spec.outputStateId) pendingStates.add(spec.outputStateId);
    }
    const list = (d: string): string[] => (existsSync(d) ? readdirSync(d) : []);
    for (const name of list(this.runtimes.instancesDir())) {
      if (e.store.getInstance(name)) continue;
      log.warn('removing orphaned runtime directory', { dir: name });
      await this.fs.run({ type: 'remove-runtime', backend: this.backend, runtimeDir: join(this.runtimes.instancesDir(), name) });
    }
    for (const name of list(this.runtimes.statesDir())) {
      const dir = join(this.runtimes.statesDir(), name);
      if (name.startsWith('.invalid-')) {
        // Invalidated states may still be a lower layer of overlay instances; reap them only when
        // no instance can depend on them.
        if (this.backend !== 'overlay' || e.store.allInstances().length === 0) {
          log.warn('removing invalidated state directory', { dir: name });
          await this.fs.run({ type: 'remove-tree', path: dir });
        }
      } else if (name.startsWith('.tmp-')) {
        log.warn('removing partial state build', { dir: name });
        await this.fs.run({ type: 'remove-tree', path: dir });
      } else if (!e.store.hasState(name) && !pendingStates.has(name)) {
        log.warn('removing state directory without a record', { dir: name });
        await this.fs.run({ type: 'remove-state', backend: this.backend, stateDir: dir });
      }
    }
    const bases = new Set(e.store.allBases().map((b) => b.dir));
    for (const name of list(this.runtimes.basesDir())) {
      const dir = join(this.runtimes.basesDir(), name);
      if (!bases.has(dir)) {
        log.warn('removing unfinished base directory', { dir: name });
        await this.fs.run({ type: 'remove-tree', path: dir });
      }
    }
  }

  private behavior(): ActorBehavior<PrepareState, PrepareMessage, PrepareWork, PrepareEffect> {
    const e = this.engine;
    const st = e.store;
    return {
      kind: job.PREPARE_KIND,
      restore: job.restore,
      persist: job.persist,
      transition: job.transition,
      isTerminal: job.isTerminal,
      onFailure: job.onFailure,
      perform: (spec, signal) => this.worker.perform(spec, signal),
      apply: (d) => {
        switch (d.t) {
          case 'job': st.updateJob(d.jobId, d.patch); break;
          case 'event': { const { type, ...rest } = d.event; st.appendEvent(d.jobId, { type, ts: rfc3339Nano(), ...rest }); break; }
          case 'tasks': st.replaceTasks(d.jobId, d.tasks); break;
          case 'task': st.updateTask(d.jobId, d.position, d.patch); break;
          case 'state': st.insertState(d.row); break;
          case 'instance':
            st.insertInstance({
              instance_id: d.row.instanceId, state_id: d.row.stateId, image_id: d.row.imageId, created_at: d.row.createdAt,
              runtime_id: d.row.containerId, runtime_dir: d.row.dir, host_port: d.row.port, job_id: d.jobId,
            });
            st.touchState(d.row.stateId, d.row.createdAt, Date.now());
            break;
          case 'trim': this.trim(d.signature); break;
        }
      },
      committed: (id, effects) => {
        const jobs = new Set<string>();
        for (const d of effects) if ('jobId' in d) jobs.add(d.jobId);
        for (const j of jobs) this.hub.notify(j);
        for (const d of effects) {
          if (d.t === 'job' && (d.patch.status === 'failed' || d.patch.status === 'succeeded')) {
            // A runtime that did not become an instance is of no further use.
            void this.runtimes.release(d.jobId).catch((err: unknown) => e.log.error('cannot release runtime', { job: d.jobId, actor: id, error: errorText(err) }));
          }
        }
      },
    };
  }

  /** Retention: keep the newest `maxIdentical` terminal jobs per signature (rows only). */
  private trim(signature: string): void {
    const limit = this.engine.config.effective().maxIdenticalJobs;
    if (limit <= 0) return;
    for (const id of this.engine.store.terminalJobsWithSignature(signature).slice(limit)) this.forgetJob(id);
  }

  /** Deletes a job's rows (tasks and events cascade) and its actor; call inside a transaction. */
  forgetJob(id: string): void {
    this.engine.store.deleteJob(id);
    this.engine.mailbox.forgetActor(actorId(job.PREPARE_KIND, id));
    setImmediate(() => this.hub.notify(id)); // open streams of the job end
  }

  /**
   * Asks an active job to cancel and waits until it is terminal (or gone).
   * @throws InvalidArgumentError when it does not stop within `timeoutMs`
   */
  async cancelAndWait(id: string, timeoutMs: number): Promise<void> {
    const st = this.engine.store;
    this.engine.runtime.send(actorId(job.PREPARE_KIND, id), { type: 'cancel' });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const cur = st.getJob(id);
      if (!cur || cur.status === 'succeeded' || cur.status === 'failed') return;
      if (Date.now() > deadline) throw new InvalidArgumentError('job did not stop in time', { details: id });
      await this.hub.wait(id, 1000);
    }
  }

  submit(body: PrepareBody): string {
    const e = this.engine;
    const p = validatePrepare(body);
    const id = newJobId();
    const request: job.PrepareRequest = { image: p.image, psqlArgs: p.psqlArgs, planOnly: p.planOnly };
    if (p.stdin !== undefined) request.stdin = p.stdin;
    const hadDigest = imageHasDigest(p.image);
    e.mailbox.tx(() => {
      e.store.insertJob({
        job_id: id, prepare_kind: 'psql', image_id: p.image, resolved_image_id: hadDigest ? p.image : null,
        plan_only: p.planOnly, prepare_args_normalized: p.argsNormalized, request: { ...body }, created_at: rfc3339Nano(),
      });
      e.store.appendEvent(id, { type: 'status', ts: rfc3339Nano(), status: 'queued' });
      e.runtime.send(actorId(job.PREPARE_KIND, id), { type: 'start', jobId: id, request, argsNormalized: p.argsNormalized, imageHadDigest: hadDigest });
    });
    this.hub.notify(id);
    return id;
  }

  handlers(): ReturnType<typeof prepareHandlers> {
    return prepareHandlers({
      store: this.engine.store,
      hub: this.hub,
      submit: (b) => this.submit(b),
      cancel: (id) => { this.engine.runtime.send(actorId(job.PREPARE_KIND, id), { type: 'cancel' }); },
      streamOpened: () => { this.streams++; },
      streamClosed: () => { this.streams--; },
    });
  }

  websockets(): Record<string, WebSocketBehavior<never>> {
    const e = this.engine;
    const b = eventsWebSocket({
      store: e.store, hub: this.hub, log: e.log.child({ c: 'ws' }), token: e.token,
      authorized: (h) => e.server.authorized(h),
      opened: () => { e.server.openSockets++; },
      closed: () => { e.server.openSockets--; },
    });
    // The behaviour is typed with its own per-socket data; uWS only sees it through this map.
    return { '/v1/ws': b as unknown as WebSocketBehavior<never> };
  }

  busy(): boolean { return this.streams > 0 || this.runtimes?.size > 0; }

  async close(): Promise<void> {
    await this.fs?.close();
    await this.containers?.close();
  }
}
