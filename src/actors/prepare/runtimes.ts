/**
 * Runtimes: writable clones of a base or state with a running Postgres container, used to build
 * states and to serve instances. Coordinates base initialisation (one per image) and state builds
 * (one per state id; other jobs wait for it) in-process. A crash loses nothing here that start-up
 * hygiene does not clean: a runtime that did not become an instance is never reused after restart.
 */
import { statSync } from 'node:fs';
import { chmod, chown } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../log.js';
import type { Store } from '../../mailbox/store.js';
import type { FsPool } from '../../workers/pool.js';
import type { SnapshotBackendKind, CloneSource } from '../../workers/protocol.js';
import { LABEL_INSTANCE, LABEL_JOB, LABEL_ROLE, type BindMount, type ContainerRuntime } from '../../workers/protocol.js';
import type { StoreLayout } from '../layout.js';
import { newInstanceId, type InstanceId } from '../../ids.js';
import { InternalError, errorText, hasCode } from '../../errors.js';
import { rfc3339Nano } from '../../clock.js';

export interface RuntimeHandle {
  instanceId: InstanceId;
  dir: string;
  mountDir: string;
  containerId: string;
  port: number;
  pgRunning: boolean;
  /** The state (or `image:<id>` for a base) whose data the runtime currently holds. */
  holds: string;
  image: string;
}

export interface RuntimeServices {
  layout: StoreLayout;
  store: Store;
  fs: FsPool;
  containers: ContainerRuntime;
  backend: SnapshotBackendKind;
  log: Logger;
  /** Overlay chains deeper than this are flattened. */
  maxDepth: number;
}

export type LogFn = (message: string) => void;

export class Runtimes {
  private readonly byJob = new Map<string, RuntimeHandle>();
  private readonly bases = new Map<string, Promise<{ baseDir: string; uid: number; gid: number }>>();

  constructor(readonly s: RuntimeServices) {}

  get(jobId: string): RuntimeHandle | undefined { return this.byJob.get(jobId); }
  /** Hands a job's runtime over (it becomes an instance). */
  detach(jobId: string): RuntimeHandle | undefined {
    const rt = this.byJob.get(jobId);
    this.byJob.delete(jobId);
    return rt;
  }
  /** Jobs holding a live runtime. */
  get size(): number { return this.byJob.size; }

  /**
   * Initialises (once) the base data directory of an image; returns the base dir and the owner
   * (the image's postgres uid/gid). When the ids are unknown (`-1`), initdb runs in a
   * world-writable data dir and the owner of the cluster it creates tells them — no separate
   * probe container on the cold path.
   */
  ensureBase(image: string, uid: number, gid: number, log: LogFn, signal: AbortSignal): Promise<{ baseDir: string; uid: number; gid: number }> {
    const row = this.s.store.getBase(image);
    if (row) {
      try {
        const st = statSync(join(row.dir, 'data', 'pgdata', 'PG_VERSION'));
        return Promise.resolve({ baseDir: row.dir, uid: st.uid, gid: st.gid });
      } catch { /* unusable: initialise again */ }
    }
    let p = this.bases.get(image);
    if (!p) {
      p = (async () => {
        const baseDir = this.s.layout.baseDir(image);
        log(`docker: initdb base for ${image}`);
        await this.s.fs.run({ type: 'remove-tree', path: baseDir });
        const known = uid >= 0 && gid >= 0;
        const { dataDir } = await this.s.fs.run({ type: 'prepare-base', backend: this.s.backend, baseDir, uid: known ? uid : 0, gid: known ? gid : 0 });
        let owner = { uid, gid };
        try {
          if (!known) await chmod(dataDir, 0o777);
          await this.s.containers.initBase(image, dataDir, this.s.layout.labels({ [LABEL_ROLE]: 'initdb' }), signal);
          if (!known) {
            const st = statSync(join(dataDir, 'pgdata'));
            owner = { uid: st.uid, gid: st.gid };
            await chown(dataDir, st.uid, st.gid);
            await chmod(dataDir, 0o700);
          }
        } catch (e) {
          await this.s.fs.run({ type: 'remove-tree', path: baseDir }).catch(() => {});
          throw new InternalError('cannot initialize base state', { details: errorText(e), cause: e });
        }
        this.s.store.putBase({ image_id: image, dir: baseDir, backend: this.s.backend, created_at: rfc3339Nano() });
        return { baseDir, ...owner };
      })().finally(() => this.bases.delete(image));
      this.bases.set(image, p);
    }
    return p;
  }

  /** The image's postgres uid/gid: given, or from its base (initialised if needed). */
  async owner(image: string, uid: number, gid: number, log: LogFn, signal: AbortSignal): Promise<{ uid: number; gid: number }> {
    if (uid >= 0 && gid >= 0) return { uid, gid };
    const b = await this.ensureBase(image, uid, gid, log, signal);
    return { uid: b.uid, gid: b.gid };
  }

  /**
   * Clones `source` into a fresh instance directory and starts a container on it.
   * @throws InternalError `cannot start runtime` (or the abort reason)
   */
  async create(jobId: string, image: string, source: CloneSource, holds: string, uid: number, gid: number, mounts: BindMount[], log: LogFn, signal: AbortSignal): Promise<RuntimeHandle> {
    const instanceId = newInstanceId();
    const dir = this.s.layout.instanceDir(instanceId);
    let mountDir: string;
    try {
      ({ mountDir } = await this.s.fs.run({ type: 'clone', backend: this.s.backend, root: this.s.layout.root, source, runtimeDir: dir, uid, gid }, signal));
    } catch (e) {
      await this.s.fs.run({ type: 'remove-runtime', backend: this.s.backend, runtimeDir: dir }).catch(() => {});
      if (signal.aborted) throw e;
      throw new InternalError('cannot clone state', { details: errorText(e), cause: e });
    }
    log('docker: start container');
    try {
      const c = await this.s.containers.start({
        image, name: `sqlrs-${instanceId}`,
        labels: this.s.layout.labels({ [LABEL_JOB]: jobId, [LABEL_INSTANCE]: instanceId, [LABEL_ROLE]: 'runtime' }),
        dataDir: mountDir, extraMounts: mounts,
      }, signal);
      log(`docker: container started ${c.id}`);
      log('docker: postgres ready');
      const rt: RuntimeHandle = { instanceId, dir, mountDir, containerId: c.id, port: c.port, pgRunning: true, holds, image };
      this.byJob.set(jobId, rt);
      return rt;
    } catch (e) {
      await this.s.fs.run({ type: 'remove-runtime', backend: this.s.backend, runtimeDir: dir }).catch(() => {});
      if (signal.aborted || hasCode(e, 'cancelled')) throw e;
      throw new InternalError('cannot start runtime', { details: errorText(e), cause: e });
    }
  }

  /** Starts Postgres again after a snapshot, if needed. */
  async ensurePg(rt: RuntimeHandle, log: LogFn, signal: AbortSignal): Promise<void> {
    if (rt.pgRunning) return;
    log('pg_ctl: start after snapshot');
    await this.s.containers.startPostgres(rt.containerId, signal);
    rt.pgRunning = true;
  }

  /** Removes a runtime's container and data (idempotent). */
  async destroy(rt: { containerId: string; dir: string }): Promise<void> {
    try { await this.s.containers.remove(rt.containerId); } catch (e) { this.s.log.warn('cannot remove container', { id: rt.containerId, error: errorText(e) }); }
    await this.s.fs.run({ type: 'remove-runtime', backend: this.s.backend, runtimeDir: rt.dir });
  }

  /** Destroys a job's runtime if it still holds one. */
  async release(jobId: string): Promise<void> {
    const rt = this.detach(jobId);
    if (rt) await this.destroy(rt);
  }
}
