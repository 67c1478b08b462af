/**
 * The work a prepare job asks for: resolve the image, plan (hash + cache lookups), build one
 * step's state (or find it built), create the instance. Every piece is idempotent: after a crash
 * the system redoes it and it either finds the result on disk or builds it again. Progress goes
 * to the job's event stream through its one writer ({@link JobEventLog}).
 */
import { join } from 'node:path';
import { readdir, rename } from 'node:fs/promises';
import { statSync } from 'node:fs';
import type { Logger } from '../../log.js';
import type { Clock } from '../../clock.js';
import { rfc3339Nano } from '../../clock.js';
import type { Store } from '../../mailbox/store.js';
import type { FsPool } from '../../workers/pool.js';
import type { ContainerRuntime, SnapshotBackendKind } from '../../workers/protocol.js';
import { InternalError, CancelledError, errorText, assertNever, hasCode } from '../../errors.js';
import { raceAbort } from '../../abort.js';
import type { StoreLayout } from '../layout.js';
import { outOfSpaceError, type BuildPhase, type CapacityGuard } from '../cache/capacity.js';
import type { JobEventLog } from './events.js';
import type { Runtimes } from './runtimes.js';
import type { PrepareWork, ResolveResult, PlanResult, StepResult, InstanceResult, StateRowData } from './transition.js';
import type { LogFn, StepKind, StepSpec } from './step-kind.js';
import type { LifecycleSink } from '../lifecycle/service.js';

export interface PrepareWorkDeps {
  store: Store;
  events: JobEventLog;
  runtimes: Runtimes;
  layout: StoreLayout;
  fs: FsPool;
  containers: ContainerRuntime;
  backend: SnapshotBackendKind;
  capacity: CapacityGuard;
  /** The step kind of psql requests (the only prepare kind so far). */
  psql: StepKind;
  /** A broken cached state's row is deleted together with its `state.deleted` event. */
  lifecycle: LifecycleSink;
  log: Logger;
  clock: Clock;
}

export class PrepareWorker {
  /** State builds in progress, by state id: other jobs wait on them. */
  private readonly builds = new Map<string, Promise<StateRowData>>();

  constructor(private readonly d: PrepareWorkDeps) {}

  /** Progress of a job's running work, through the job's one event writer. */
  logTo(jobId: string): LogFn {
    return (message: string) => { this.d.events.progress(jobId, message); };
  }

  async perform(spec: PrepareWork, signal: AbortSignal): Promise<unknown> {
    switch (spec.kind) {
      case 'resolve': return this.resolve(spec, signal);
      case 'plan': return this.plan(spec);
      case 'step': return this.step(spec, signal);
      case 'instance': return this.instance(spec, signal);
      case 'discard': await this.d.runtimes.destroy({ containerId: spec.containerId, dir: spec.dir }); return {};
      default: return assertNever(spec, 'work');
    }
  }

  private async resolve(spec: Extract<PrepareWork, { kind: 'resolve' }>, signal: AbortSignal): Promise<ResolveResult> {
    try {
      // Unknown ids are learnt from initdb when the base is made (no probe container).
      const r = await this.d.containers.resolveImage(spec.image, signal, this.knownUsers(), false);
      return { resolvedId: r.resolvedId, uid: r.uid, gid: r.gid };
    } catch (e) {
      if (signal.aborted) throw new CancelledError();
      throw new InternalError('cannot resolve image', { details: errorText(e), cause: e });
    }
  }

  /** postgres uid/gid per resolved image, read from the owners of initialised base data dirs. */
  private knownUsers(): Record<string, { uid: number; gid: number }> {
    const out: Record<string, { uid: number; gid: number }> = {};
    for (const b of this.d.store.allBases()) {
      try {
        const st = statSync(join(b.dir, 'data', 'pgdata'));
        out[b.image_id] = { uid: st.uid, gid: st.gid };
      } catch { /* base not usable: the probe decides */ }
    }
    return out;
  }

  private plan(spec: Extract<PrepareWork, { kind: 'plan' }>): Promise<PlanResult> {
    return this.d.psql.plan(this.d.store, spec.request, spec.resolvedImage);
  }

  /** Builds (or finds) one step's state. */
  private async step(spec: StepSpec, signal: AbortSignal): Promise<StepResult> {
    const log = this.logTo(spec.jobId);
    const rts = this.d.runtimes;
    for (;;) {
      if (signal.aborted) throw new CancelledError('task cancelled');
      const found = await this.findValid(spec, log);
      if (found) {
        // Cache hit: a runtime holding older data is useless for later steps.
        const rt = rts.get(spec.jobId);
        if (rt && rt.holds !== spec.outputStateId) await rts.release(spec.jobId);
        return { state: found, wasCached: true };
      }
      const other = this.builds.get(spec.outputStateId);
      if (other) {
        log(`waiting for a concurrent build of state ${spec.outputStateId}`);
        try {
          const row = await raceAbort(other, signal, 'task');
          const rt = rts.get(spec.jobId);
          if (rt && rt.holds !== spec.outputStateId) await rts.release(spec.jobId);
          return { state: row, wasCached: true };
        } catch (e) {
          if (signal.aborted) throw new CancelledError('task cancelled');
          log(`concurrent build failed (${errorText(e)}); building here`);
          continue;
        }
      }
      const p = this.build(spec, log, signal);
      this.builds.set(spec.outputStateId, p);
      try {
        return { state: await p, wasCached: false };
      } finally {
        this.builds.delete(spec.outputStateId);
      }
    }
  }

  /**
   * A usable existing state: a verified row, or a complete snapshot whose row was never committed
   * (the engine died between snapshot and commit), which is adopted. A broken cached state is
   * invalidated (files, then row) so that it is rebuilt.
   */
  private async findValid(spec: StepSpec, log: LogFn): Promise<StateRowData | undefined> {
    const id = spec.outputStateId;
    const row = this.d.store.getState(id);
    const dir = row?.dir ?? this.d.layout.stateDir(id);
    const v = await this.d.fs.run({ type: 'verify-state', root: this.d.layout.root, stateDir: dir });
    if (row && !v.ok) {
      log(`cached state ${id} is unusable (${v.reason ?? 'unknown'}); rebuilding`);
      this.d.log.warn('invalidating cached state', { state: id, reason: v.reason });
      // Move it aside rather than delete it: with overlay, live instances and child states may
      // still have its layer mounted. Start-up hygiene reaps `.invalid-*` when that is safe.
      await rename(dir, join(this.d.layout.statesDir, `.invalid-${id}-${this.d.clock.now()}`)).catch(() => {});
      this.d.store.tx(() => {
        if (this.d.store.deleteState(id)) this.d.lifecycle.append({ event: 'state.deleted', id, parent_state_id: row.parent_state_id, reason: 'invalidated' });
      });
      this.d.lifecycle.committed();
      return undefined;
    }
    if (!row) {
      if (!v.ok) return undefined;
      log(`adopting completed snapshot of state ${id}`);
      const { bytes } = await this.d.fs.run({ type: 'measure', path: dir });
      const now = this.d.clock.now();
      return {
        state_id: id, parent_state_id: spec.input.kind === 'state' ? spec.input.id : null, image_id: spec.resolvedImage,
        prepare_kind: 'psql', prepare_args_normalized: spec.argsNormalized, created_at: rfc3339Nano(now), created_ms: now,
        size_bytes: bytes, backend: this.d.backend, dir,
      };
    }
    return {
      state_id: row.state_id, parent_state_id: row.parent_state_id, image_id: row.image_id, prepare_kind: row.prepare_kind,
      prepare_args_normalized: row.prepare_args_normalized, created_at: row.created_at, created_ms: row.created_ms,
      size_bytes: row.size_bytes, backend: row.backend, dir: row.dir,
    };
  }

  /** Removes `.tmp-<state>-*` directories of an interrupted snapshot. */
  private async removePartial(stateId: string): Promise<void> {
    const dir = this.d.layout.statesDir;
    let names: string[] = [];
    try { names = await readdir(dir); } catch { return; }
    for (const n of names) {
      if (n.startsWith(`.tmp-${stateId}`)) await this.d.fs.run({ type: 'remove-tree', path: join(dir, n) });
    }
  }

  private async build(spec: StepSpec, log: LogFn, signal: AbortSignal): Promise<StateRowData> {
    const rts = this.d.runtimes;
    const kind = this.d.psql;
    const inputs = await kind.inputs(spec);
    const mounts = inputs.mounts;
    let rt = rts.get(spec.jobId);
    if (rt && rt.holds !== spec.input.id) { await rts.release(spec.jobId); rt = undefined; }
    const stateDir = this.d.layout.stateDir(spec.outputStateId);
    let phase: BuildPhase = 'prepare_step';
    try {
      await this.d.capacity.ensure('prepare_step');
      if (!rt) {
        if (spec.input.kind === 'image') {
          log(`docker: init base ${spec.resolvedImage}`);
          const base = await rts.ensureBase(spec.resolvedImage, spec.uid, spec.gid, log, signal);
          rt = await rts.create(spec.jobId, spec.resolvedImage, { kind: 'base', baseDir: base.baseDir }, spec.input.id, base.uid, base.gid, mounts, log, signal);
        } else {
          const parent = this.d.store.getState(spec.input.id);
          if (!parent) throw new InternalError('input state not found', { details: spec.input.id });
          const o = await rts.owner(spec.resolvedImage, spec.uid, spec.gid, log, signal);
          rt = await rts.create(spec.jobId, spec.resolvedImage, { kind: 'state', stateDir: parent.dir }, spec.input.id, o.uid, o.gid, mounts, log, signal);
        }
      } else {
        await rts.ensurePg(rt, log, signal);
      }
      await kind.execute(rt, inputs, spec, log, signal);
      phase = 'snapshot';
      await this.d.capacity.ensure('snapshot');
      log('pg_ctl: stop for snapshot');
      await this.d.containers.stopPostgres(rt.containerId, signal);
      rt.pgRunning = false;
      log('snapshot: start');
      const { sizeBytes } = await this.d.fs.run({ type: 'snapshot', backend: this.d.backend, root: this.d.layout.root, runtimeDir: rt.dir, stateDir, maxDepth: rts.s.maxDepth }, signal);
      log('snapshot: complete');
      rt.holds = spec.outputStateId;
      phase = 'metadata_commit';
      await this.d.capacity.ensure('metadata_commit', spec.outputStateId);
      const now = this.d.clock.now();
      return {
        state_id: spec.outputStateId, parent_state_id: spec.input.kind === 'state' ? spec.input.id : null,
        image_id: spec.resolvedImage, prepare_kind: 'psql', prepare_args_normalized: spec.argsNormalized,
        created_at: rfc3339Nano(now), created_ms: now, size_bytes: sizeBytes, backend: this.d.backend, dir: stateDir,
      };
    } catch (e) {
      // A failed or cancelled step leaves nothing: no container, no mount, no partial state.
      await rts.release(spec.jobId).catch((e2: unknown) => this.d.log.error('cannot release runtime', { job: spec.jobId, error: errorText(e2) }));
      await this.removePartial(spec.outputStateId).catch((e2: unknown) => this.d.log.error('cannot remove partial state', { state: spec.outputStateId, error: errorText(e2) }));
      if (signal.aborted || hasCode(e, 'cancelled')) throw new CancelledError('task cancelled');
      throw outOfSpaceError(e, phase) ?? e;
    }
  }

  private async instance(spec: Extract<PrepareWork, { kind: 'instance' }>, signal: AbortSignal): Promise<InstanceResult> {
    const rts = this.d.runtimes;
    const log = this.logTo(spec.jobId);
    let rt = rts.get(spec.jobId);
    try {
      if (rt && rt.holds !== spec.stateId) { await rts.release(spec.jobId); rt = undefined; }
      if (rt) {
        await rts.ensurePg(rt, log, signal);
      } else {
        const st = this.d.store.getState(spec.stateId);
        if (!st) throw new InternalError('input state not found', { details: spec.stateId });
        const o = await rts.owner(spec.resolvedImage, spec.uid, spec.gid, log, signal);
        rt = await rts.create(spec.jobId, spec.resolvedImage, { kind: 'state', stateDir: st.dir }, spec.stateId, o.uid, o.gid, [], log, signal);
      }
      rts.detach(spec.jobId);
      return { instanceId: rt.instanceId, containerId: rt.containerId, port: rt.port, dir: rt.dir, createdAt: rfc3339Nano(this.d.clock.now()) };
    } catch (e) {
      await rts.release(spec.jobId).catch(() => {});
      if (signal.aborted || hasCode(e, 'cancelled')) throw new CancelledError('task cancelled');
      throw e;
    }
  }
}
