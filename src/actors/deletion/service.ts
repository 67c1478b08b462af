/**
 * The deletion wing's face: plans deletions of instances, states and jobs (reads only; a blocked
 * plan or a dry run answers at once), runs a plan through a new deletion actor and resolves when
 * the actor reports it finished (an in-process completion signal keyed by the deletion id; the
 * outcome is also persisted in the actor's state), resumes deletions after a restart, and
 * evicts states for the cache wing.
 */
import type { Logger } from '../../log.js';
import type { Clock } from '../../clock.js';
import { actorId, randomHex } from '../../ids.js';
import { ClosedError, InternalError, NotFoundError, errorText } from '../../errors.js';
import type { Mailbox } from '../../mailbox/mailbox.js';
import type { StateRow, Store } from '../../mailbox/store.js';
import type { FsPool } from '../../workers/pool.js';
import type { ContainerRuntime, SnapshotBackendKind } from '../../workers/protocol.js';
import type { ActorSystem } from '../system/system.js';
import type { ActorLogic } from '../system/logic.js';
import type { StoreLayout } from '../layout.js';
import { countConnections } from '../postgres/connections.js';
import { planInstanceDeletion, planStateDeletion, type DeletionPlan, type PlanOptions } from './plan.js';
import { DeletionEffects, type DeletionOutcome } from './effects.js';
import { DeletionWorker } from './work.js';
import type { LifecycleSink } from '../lifecycle/service.js';
import * as del from './transition.js';
import type { DeleteEffect, DeleteMessage, DeleteOp, DeleteReason, DeleteResult, DeleteState, DeleteWork } from './transition.js';

export type { DeleteResult } from './transition.js';

/** Finished deletion actors are forgotten at start-up once older than this. */
const KEEP_FINISHED_MS = 24 * 60 * 60 * 1000;
/** How long a forced job delete waits for the job to stop. */
const JOB_STOP_TIMEOUT_MS = 120_000;

export interface DeletionServiceDeps {
  store: Store;
  mailbox: Mailbox;
  system: ActorSystem;
  fs: FsPool;
  containers: ContainerRuntime;
  layout: StoreLayout;
  backend: SnapshotBackendKind;
  /** States that running work uses (builds, instance creation; deletions too when asked). */
  statesInUse(includeDeletions: boolean): Set<string>;
  /** The prepare wing's job operations. */
  jobs: { cancelAndWait(id: string, timeoutMs: number): Promise<void>; forget(id: string): void };
  /** Lifecycle events of deleted instances and deleted or evicted states. */
  lifecycle: LifecycleSink;
  log: Logger;
  clock: Clock;
}

/** A request's answer: the HTTP status and the deletion tree. */
export interface DeletionAnswer { status: number; body: DeleteResult }

export interface DeleteFlags { force: boolean; dryRun: boolean }

interface Waiter { resolve(): void; reject(e: Error): void }

export class DeletionService {
  private readonly waiters = new Map<string, Waiter>();
  /** Deletions not yet finished (started here or resumed after a restart). */
  private readonly active = new Set<string>();
  private readonly effects: DeletionEffects;
  private readonly work: DeletionWorker;

  constructor(private readonly d: DeletionServiceDeps) {
    this.effects = new DeletionEffects({ store: d.store, forgetJob: (id) => d.jobs.forget(id), lifecycle: d.lifecycle, log: d.log });
    this.effects.onFinished((id, outcome) => this.finished(id, outcome));
    this.work = new DeletionWorker({ fs: d.fs, containers: d.containers, layout: d.layout, backend: d.backend, log: d.log });
    d.system.register(this.logic());
  }

  private logic(): ActorLogic<DeleteState, DeleteMessage, DeleteWork, DeleteEffect> {
    return {
      kind: del.DELETE_KIND,
      ...del.transitions,
      perform: (spec, signal) => this.work.perform(spec, signal),
      apply: (e) => this.effects.apply(e),
      committed: (id, effects) => this.effects.committed(id, effects),
    };
  }

  /** Called after a state's files and row are gone. */
  onStateDeleted(f: (stateId: string) => void): void { this.effects.onStateDeleted(f); }

  /** Counts deletions left unfinished by a previous run (the system redelivers them) and forgets old finished ones. */
  resume(): void {
    for (const a of this.d.mailbox.activeActors()) {
      if (a.kind !== del.DELETE_KIND) continue;
      const id = a.actorId.slice(del.DELETE_KIND.length + 1);
      this.active.add(id);
      this.d.log.info('resuming deletion from a previous run', { deletion: id });
    }
    const forgotten = this.d.mailbox.forgetFinished(del.DELETE_KIND, this.d.clock.now() - KEEP_FINISHED_MS);
    if (forgotten > 0) this.d.log.debug('forgot finished deletions', { count: forgotten });
  }

  busy(): boolean { return this.active.size > 0; }

  /** Rejects every waiting request with `ENGINE_CLOSED`. */
  close(): void {
    for (const w of this.waiters.values()) w.reject(new ClosedError('deletion service'));
    this.waiters.clear();
  }

  private finished(id: string, outcome: DeletionOutcome): void {
    this.active.delete(id);
    const w = this.waiters.get(id);
    this.waiters.delete(id);
    if (outcome.ok) w?.resolve(); else w?.reject(outcome.error);
  }

  /**
   * Runs a deletion plan through a new deletion actor and resolves when it has finished.
   * @throws InternalError when a removal failed for good; ClosedError when the engine stops first
   */
  run(ops: DeleteOp[], result: DeleteResult, reason: DeleteReason): Promise<void> {
    const id = randomHex(16);
    const done = new Promise<void>((res, rej) => this.waiters.set(id, { resolve: res, reject: rej }));
    this.active.add(id);
    try {
      this.d.system.send(actorId(del.DELETE_KIND, id), { type: 'start', deletionId: id, ops, result, reason } satisfies DeleteMessage);
    } catch (e) {
      this.waiters.delete(id);
      this.active.delete(id);
      return Promise.reject(e);
    }
    return done;
  }

  /** Evicts a state for the cache: the same path as a state delete. */
  evictState(row: StateRow): Promise<void> {
    return this.run([{ kind: 'state', id: row.state_id, dir: row.dir }], { dry_run: false, outcome: 'deleted', root: { kind: 'state', id: row.state_id } }, 'eviction');
  }

  /**
   * Carries out a plan (unless blocked or a dry run) and answers with its result: 409 when
   * blocked for real, 200 otherwise; a removal that failed for good is a 500 `failMessage`.
   */
  private async answer(plan: DeletionPlan, dryRun: boolean, failMessage: string): Promise<DeletionAnswer> {
    if (!plan.blocked && !dryRun) {
      try {
        await this.run(plan.ops, plan.result, 'request');
      } catch (e) {
        throw new InternalError(failMessage, { details: errorText(e), cause: e });
      }
    }
    return { status: plan.blocked && !dryRun ? 409 : 200, body: plan.result };
  }

  private planOptions(f: DeleteFlags): PlanOptions {
    return {
      force: f.force,
      dryRun: f.dryRun,
      countConnections: (row) => countConnections(this.d.containers, row.runtime_id, this.d.log, this.d.clock),
      instanceDir: (id) => this.d.layout.instanceDir(id),
    };
  }

  /** `DELETE /v1/instances/{id}`. @throws NotFoundError */
  async deleteInstance(id: string, f: DeleteFlags): Promise<DeletionAnswer> {
    const row = this.d.store.getInstance(id);
    if (!row) throw new NotFoundError('instance not found');
    return this.answer(await planInstanceDeletion(row, this.planOptions(f)), f.dryRun, 'delete instance failed');
  }

  /** `DELETE /v1/states/{id}`. @throws NotFoundError */
  async deleteState(id: string, recurse: boolean, f: DeleteFlags): Promise<DeletionAnswer> {
    const st = this.d.store;
    const row = st.getState(id);
    if (!row) throw new NotFoundError('state not found');
    const busy = this.d.statesInUse(false);
    const reader = { instancesOfState: (s: string) => st.instancesOfState(s), childStates: (s: string) => st.childStates(s), inUse: (s: string) => busy.has(s) };
    return this.answer(await planStateDeletion(row, recurse, reader, this.planOptions(f)), f.dryRun, 'delete state failed');
  }

  /**
   * `DELETE /v1/prepare-jobs/{id}`: rows only, never an instance or state the job made. An active
   * job is blocked `active_tasks` unless forced; a forced delete cancels it and waits until it
   * has stopped (its running work aborted and cleaned up), so nothing half-made outlives it.
   * @throws NotFoundError
   */
  async deleteJob(id: string, f: DeleteFlags): Promise<DeletionAnswer> {
    const job = this.d.store.getJob(id);
    if (!job) throw new NotFoundError('job not found');
    const active = job.status === 'queued' || job.status === 'running';
    if (active && !f.force) return { status: f.dryRun ? 200 : 409, body: { dry_run: f.dryRun, outcome: 'blocked', root: { kind: 'job', id, blocked: 'active_tasks' } } };
    if (f.dryRun) return { status: 200, body: { dry_run: true, outcome: 'would_delete', root: { kind: 'job', id } } };
    if (active) await this.d.jobs.cancelAndWait(id, JOB_STOP_TIMEOUT_MS);
    const row = this.d.store.getJob(id);
    if (!row) throw new NotFoundError('job not found');
    const plan: DeletionPlan = { ops: [{ kind: 'job', id: row.job_id }], result: { dry_run: false, outcome: 'deleted', root: { kind: 'job', id } }, blocked: false };
    return this.answer(plan, false, 'delete job failed');
  }
}
