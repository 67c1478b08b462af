/**
 * The prepare-job actor's effect interpreter: turns the transition's domain effects into store
 * writes inside the actor's commit (job and task rows, events through the job's one event writer,
 * state and instance rows, retention), and after the commit wakes readers and releases runtimes
 * that did not become instances.
 */
import type { Logger } from '../../log.js';
import type { Clock } from '../../clock.js';
import { errorText } from '../../errors.js';
import { actorId, type ActorId } from '../../ids.js';
import type { Mailbox } from '../../mailbox/mailbox.js';
import type { Store } from '../../mailbox/store.js';
import type { JobEventLog } from './events.js';
import type { Runtimes } from './runtimes.js';
import type { LifecycleSink } from '../lifecycle/service.js';
import { PREPARE_KIND, type PrepareEffect } from './transition.js';

export interface PrepareEffectsDeps {
  store: Store;
  mailbox: Mailbox;
  events: JobEventLog;
  runtimes: Runtimes;
  /** Lifecycle events (instance and state created, job terminal), appended in the same commit. */
  lifecycle: LifecycleSink;
  /** Terminal jobs kept per signature (`orchestrator.jobs.maxIdentical`; 0 keeps all). */
  maxIdenticalJobs(): number;
  log: Logger;
  clock: Clock;
}

export class PrepareEffects {
  constructor(private readonly d: PrepareEffectsDeps) {}

  /** Applies one effect inside the actor's commit. */
  apply(e: PrepareEffect): void {
    const st = this.d.store;
    switch (e.t) {
      case 'job':
        st.updateJob(e.jobId, e.patch);
        if (e.patch.status === 'succeeded' || e.patch.status === 'failed') {
          this.d.lifecycle.append({ event: 'job.terminal', id: e.jobId, status: e.patch.status, ...(e.patch.error ? { error_code: e.patch.error.code } : {}) });
        }
        break;
      case 'event': this.d.events.appendInCommit(e.jobId, e.event); break;
      case 'tasks': st.replaceTasks(e.jobId, e.tasks); break;
      case 'task': st.updateTask(e.jobId, e.position, e.patch); break;
      case 'state':
        if (st.insertState(e.row)) {
          const r = e.row;
          this.d.lifecycle.append({ event: 'state.created', id: r.state_id, parent_state_id: r.parent_state_id, image_id: r.image_id, size_bytes: r.size_bytes });
        }
        break;
      case 'instance':
        st.insertInstance({
          instance_id: e.row.instanceId, state_id: e.row.stateId, image_id: e.row.imageId, created_at: e.row.createdAt,
          runtime_id: e.row.containerId, runtime_dir: e.row.dir, host_port: e.row.port, job_id: e.jobId,
        });
        st.touchState(e.row.stateId, e.row.createdAt, this.d.clock.now());
        this.d.lifecycle.append({ event: 'instance.created', id: e.row.instanceId, state_id: e.row.stateId, image_id: e.row.imageId, job_id: e.jobId });
        break;
      case 'trim': this.trim(e.signature); break;
    }
  }

  /** After the commit: wake the jobs' readers; a terminal job's leftover runtime is released. */
  committed(id: ActorId, effects: readonly PrepareEffect[]): void {
    const jobs = new Set<string>();
    for (const e of effects) if ('jobId' in e) jobs.add(e.jobId);
    for (const j of jobs) this.d.events.hub.notify(j);
    this.d.lifecycle.committed();
    for (const e of effects) {
      if (e.t === 'job' && (e.patch.status === 'failed' || e.patch.status === 'succeeded')) {
        // A runtime that did not become an instance is of no further use.
        void this.d.runtimes.release(e.jobId).catch((err: unknown) => this.d.log.error('cannot release runtime', { job: e.jobId, actor: id, error: errorText(err) }));
      }
    }
  }

  /** Retention: keep the newest `maxIdentical` terminal jobs per signature (rows only). */
  private trim(signature: string): void {
    const limit = this.d.maxIdenticalJobs();
    if (limit <= 0) return;
    for (const id of this.d.store.terminalJobsWithSignature(signature).slice(limit)) this.forgetJob(id);
  }

  /** Deletes a job's rows (tasks and events cascade) and its actor; call inside a transaction. */
  forgetJob(id: string): void {
    this.d.store.deleteJob(id);
    this.d.mailbox.forgetActor(actorId(PREPARE_KIND, id));
    setImmediate(() => this.d.events.hub.notify(id)); // open streams of the job end
  }
}
