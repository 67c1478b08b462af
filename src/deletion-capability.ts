/**
 * The deletion capability: the deletion actor behaviour, `DELETE /v1/instances/{id}` and
 * `DELETE /v1/states/{id}`, the deletion service used by cache eviction, and the start-up check for
 * mounts under the store that no instance owns.
 *
 * A request is planned in the handler (tree, blocked decisions, connection counts — reads only);
 * a blocked plan or a dry run answers at once. Otherwise the plan goes to a new deletion actor and
 * the handler answers when the actor reports the deletion finished (an in-process completion
 * signal keyed by the deletion id; the outcome is also persisted in the actor's state).
 */
import { realpathSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import type { Capability, Engine } from './engine.js';
import type { PrepareCapability } from './prepare-capability.js';
import type { Logger } from './log.js';
import type { ActorBehavior } from './actors/runtime.js';
import * as del from './actors/deletion.js';
import type { DeleteEffect, DeleteMessage, DeleteOp, DeleteReason, DeleteResult, DeleteState, DeleteWork } from './actors/deletion.js';
import { planInstanceDeletion, planStateDeletion, type PlanOptions } from './actors/deletion-plan.js';
import { countConnections } from './actors/connections.js';
import { statesInUse } from './actors/in-use.js';
import type { CapabilityHandlers } from './http/routes.js';
import { parseBoolParam, type Reply } from './http/reply.js';
import { actorId, randomHex } from './ids.js';
import type { ActorId } from './ids.js';
import { ClosedError, InternalError, NotFoundError, errorText, type ApiError } from './errors.js';

/** Finished deletion actors are forgotten at start-up once older than this. */
const KEEP_FINISHED_MS = 24 * 60 * 60 * 1000;

interface Waiter { resolve(): void; reject(e: Error): void }

function isAtOrBelow(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

function canonical(p: string): string {
  try { return realpathSync(p); } catch { return resolve(p); }
}

export class DeletionCapability implements Capability {
  readonly name = 'deletion';
  private engine!: Engine;
  private log!: Logger;
  private readonly waiters = new Map<string, Waiter>();
  /** Deletions not yet finished (started here or resumed after a restart). */
  private readonly active = new Set<string>();
  private readonly stateListeners: ((stateId: string) => void)[] = [];

  constructor(private readonly prepare: PrepareCapability) {}

  init(e: Engine): void {
    this.engine = e;
    this.log = e.log.child({ c: 'deletion' });
    e.runtime.register(this.behavior());
  }

  /** Start-up hygiene for mounts, after the prepare capability's (directories without records). */
  async recover(): Promise<void> {
    await this.mountHygiene();
  }

  started(e: Engine): void {
    for (const a of e.mailbox.activeActors()) {
      if (a.kind !== del.DELETE_KIND) continue;
      const id = a.actorId.slice(del.DELETE_KIND.length + 1);
      this.active.add(id);
      this.log.info('resuming deletion from a previous run', { deletion: id });
    }
    const forgotten = e.mailbox.forgetFinished(del.DELETE_KIND, Date.now() - KEEP_FINISHED_MS);
    if (forgotten > 0) this.log.debug('forgot finished deletions', { count: forgotten });
  }

  /** Called after a state's files and row are gone. */
  onStateDeleted(f: (stateId: string) => void): void { this.stateListeners.push(f); }

  busy(): boolean { return this.active.size > 0; }

  async close(): Promise<void> {
    for (const w of this.waiters.values()) w.reject(new ClosedError('deletion service'));
    this.waiters.clear();
  }

  // ---- the service -----------------------------------------------------------------------------

  /**
   * Runs a deletion plan through a new deletion actor and resolves when it has finished.
   * @throws InternalError when a removal failed for good; ClosedError when the engine stops first
   */
  run(ops: DeleteOp[], result: DeleteResult, reason: DeleteReason): Promise<void> {
    const id = randomHex(16);
    const done = new Promise<void>((res, rej) => this.waiters.set(id, { resolve: res, reject: rej }));
    this.active.add(id);
    try {
      this.engine.runtime.send(actorId(del.DELETE_KIND, id), { type: 'start', deletionId: id, ops, result, reason } satisfies DeleteMessage);
    } catch (e) {
      this.waiters.delete(id);
      this.active.delete(id);
      return Promise.reject(e);
    }
    return done;
  }

  /**
   * Carries out a request's plan (unless blocked or a dry run) and answers with its result:
   * 409 when blocked for real, 200 otherwise; a removal that failed for good is a 500 `failMessage`.
   */
  private async answer(reply: Reply, plan: { ops: DeleteOp[]; result: DeleteResult; blocked: boolean }, dryRun: boolean, failMessage: string): Promise<void> {
    if (!plan.blocked && !dryRun) {
      try {
        await this.run(plan.ops, plan.result, 'request');
      } catch (e) {
        throw new InternalError(failMessage, { details: errorText(e), cause: e });
      }
    }
    reply.json(plan.blocked && !dryRun ? 409 : 200, plan.result);
  }

  /** Plan options for a request. */
  private planOptions(force: boolean, dryRun: boolean): PlanOptions {
    const rts = this.prepare.runtimes;
    const log = this.log;
    return {
      force,
      dryRun,
      countConnections: (row) => countConnections(this.prepare.containers, row.runtime_id, log),
      instanceDir: (id) => join(rts.instancesDir(), id),
    };
  }

  // ---- HTTP ----------------------------------------------------------------------------------

  handlers(): CapabilityHandlers {
    const st = this.engine.store;
    return {
      deleteInstance: async ({ params, req, reply }) => {
        const id = params[0] ?? '';
        const force = parseBoolParam(req.query, 'force');
        const dryRun = parseBoolParam(req.query, 'dry_run');
        const row = st.getInstance(id);
        if (!row) throw new NotFoundError('instance not found');
        await this.answer(reply, await planInstanceDeletion(row, this.planOptions(force, dryRun)), dryRun, 'delete instance failed');
      },
      deleteJob: async ({ params, req, reply }) => {
        const id = params[0] ?? '';
        const force = parseBoolParam(req.query, 'force');
        const dryRun = parseBoolParam(req.query, 'dry_run');
        const job = st.getJob(id);
        if (!job) throw new NotFoundError('job not found');
        const active = job.status === 'queued' || job.status === 'running';
        if (active && !force) {
          reply.json(dryRun ? 200 : 409, { dry_run: dryRun, outcome: 'blocked', root: { kind: 'job', id, blocked: 'active_tasks' } });
          return;
        }
        if (dryRun) { reply.json(200, { dry_run: true, outcome: 'would_delete', root: { kind: 'job', id } }); return; }
        // A forced delete of an active job cancels it and waits until it has stopped (its
        // running work aborted and cleaned up), so nothing half-made outlives the job.
        if (active) await this.prepare.cancelAndWait(id, 120_000);
        if (!st.getJob(id)) throw new NotFoundError('job not found');
        const plan = { ops: [{ kind: 'job' as const, id }], result: { dry_run: false, outcome: 'deleted' as const, root: { kind: 'job' as const, id } }, blocked: false };
        await this.answer(reply, plan, false, 'delete job failed');
      },
      deleteState: async ({ params, req, reply }) => {
        const id = params[0] ?? '';
        const recurse = parseBoolParam(req.query, 'recurse');
        const force = parseBoolParam(req.query, 'force');
        const dryRun = parseBoolParam(req.query, 'dry_run');
        const row = st.getState(id);
        if (!row) throw new NotFoundError('state not found');
        const busy = statesInUse(this.engine.mailbox.pendingWork(), { includeDeletions: false });
        const reader = { instancesOfState: (s: string) => st.instancesOfState(s), childStates: (s: string) => st.childStates(s), inUse: (s: string) => busy.has(s) };
        await this.answer(reply, await planStateDeletion(row, recurse, reader, this.planOptions(force, dryRun)), dryRun, 'delete state failed');
      },
    };
  }

  // ---- the actor -----------------------------------------------------------------------------

  private behavior(): ActorBehavior<DeleteState, DeleteMessage, DeleteWork, DeleteEffect> {
    const st = this.engine.store;
    return {
      kind: del.DELETE_KIND,
      restore: del.restore,
      persist: del.persist,
      transition: del.transition,
      isTerminal: del.isTerminal,
      onFailure: del.onFailure,
      perform: (spec, signal) => this.perform(spec, signal),
      apply: (d) => {
        switch (d.t) {
          case 'mark-deleting': st.setInstanceDeleting(d.instanceId, true); break;
          case 'delete-instance-row': st.deleteInstance(d.instanceId); break;
          case 'delete-state-row': st.deleteState(d.stateId); break;
          case 'delete-job-rows': this.prepare.forgetJob(d.jobId); break;
          case 'finished': break; // the outcome lives in the actor's persisted state
        }
      },
      committed: (id, effects) => this.committed(id, effects),
    };
  }

  private committed(actor: ActorId, effects: DeleteEffect[]): void {
    for (const d of effects) {
      if (d.t === 'delete-state-row') for (const f of this.stateListeners) f(d.stateId);
      if (d.t === 'delete-instance-row') this.log.info('instance deleted', { instance: d.instanceId, actor });
      if (d.t === 'delete-state-row') this.log.info('state deleted', { state: d.stateId, actor });
      if (d.t !== 'finished') continue;
      this.active.delete(d.deletionId);
      const w = this.waiters.get(d.deletionId);
      this.waiters.delete(d.deletionId);
      if (d.ok) {
        w?.resolve();
      } else {
        const err: ApiError = d.error;
        this.log.error('deletion failed', { deletion: d.deletionId, error: err.message, details: err.details });
        w?.reject(new InternalError(err.message, { details: err.details }));
      }
    }
  }

  /** Refuses to remove anything outside the store's instance and state directories. */
  private checkDir(dir: string, area: string): string {
    const abs = resolve(dir);
    if (!isAtOrBelow(abs, area) || abs === area) throw new InternalError('refusing to remove a directory outside the state store', { details: abs });
    return abs;
  }

  private async perform(spec: DeleteWork, signal: AbortSignal): Promise<unknown> {
    const rts = this.prepare.runtimes;
    const fs = this.prepare.fs;
    const op = spec.op;
    if (op.kind === 'job') return { removed: op.id }; // rows only: removed in the commit
    if (op.kind === 'instance') {
      const dir = this.checkDir(op.dir, rts.instancesDir());
      if (op.containerId) {
        try {
          await this.prepare.containers.remove(op.containerId);
        } catch (e) {
          // Tolerated like the reference: start-up hygiene reaps a container whose row is gone.
          this.log.warn('cannot remove instance container', { instance: op.id, container: op.containerId, error: errorText(e) });
        }
      }
      await fs.run({ type: 'remove-runtime', backend: this.prepare.backend, runtimeDir: dir }, signal);
      return { removed: op.id };
    }
    const dir = this.checkDir(op.dir, rts.statesDir());
    await fs.run({ type: 'remove-state', backend: this.prepare.backend, stateDir: dir }, signal);
    return { removed: op.id };
  }

  // ---- start-up hygiene -----------------------------------------------------------------------

  /**
   * Unmounts mounts under the store's instance, state and base directories that no instance owns
   * (an instance owns what is at or below its directory). Runs before actors resume; directories
   * without records were already removed by the prepare capability's hygiene, which runs first.
   */
  private async mountHygiene(): Promise<void> {
    const e = this.engine;
    const log = e.log.child({ c: 'hygiene' });
    const rts = this.prepare.runtimes;
    const owned = e.store.allInstances().map((r) => canonical(r.runtime_dir ?? join(rts.instancesDir(), r.instance_id)));
    let found = 0;
    let unmounted = 0;
    for (const area of [rts.instancesDir(), rts.statesDir(), rts.basesDir()]) {
      const top = canonical(area);
      let mounts: string[];
      try {
        ({ mounts } = await this.prepare.fs.run({ type: 'list-mounts', under: area }));
      } catch (err) {
        log.error('cannot list mounts for cleanup', { dir: area, error: errorText(err) });
        continue;
      }
      for (const mp of mounts) {
        if (mp === top) continue; // the area itself is a mount point: not ours to judge
        found++;
        if (owned.some((d) => isAtOrBelow(mp, d))) continue;
        log.warn('unmounting a mount that no instance owns', { mount: mp });
        try {
          await this.prepare.fs.run({ type: 'unmount', path: mp });
          unmounted++;
        } catch (err) {
          log.error('cannot unmount', { mount: mp, error: errorText(err) });
        }
      }
    }
    log.info('start-up hygiene: mounts checked', { mounts: found, unmounted });
  }
}
