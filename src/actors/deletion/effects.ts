/**
 * The deletion actor's effect interpreter: removes rows inside the actor's commit (an instance
 * marked `deleting` first, then its row; a state's row after its files; a job's rows through the
 * prepare wing's callback) and, after the commit, settles the waiting request and tells listeners
 * which states are gone.
 */
import type { Logger } from '../../log.js';
import { InternalError, type ApiError } from '../../errors.js';
import type { ActorId } from '../../ids.js';
import type { Store } from '../../mailbox/store.js';
import type { DeleteEffect } from './transition.js';
import type { LifecycleSink } from '../lifecycle/service.js';

export interface DeletionEffectsDeps {
  store: Store;
  /** Deletes a prepare job's rows (the prepare wing's `forgetJob`), inside the commit. */
  forgetJob(jobId: string): void;
  /** `instance.deleted`, `state.deleted` / `state.evicted`, appended with the row's removal. */
  lifecycle: LifecycleSink;
  log: Logger;
}

/** Outcome of a finished deletion, for whoever waits for it. */
export type DeletionOutcome = { ok: true } | { ok: false; error: Error };

export class DeletionEffects {
  private readonly stateListeners: ((stateId: string) => void)[] = [];
  private readonly finishListeners: ((deletionId: string, outcome: DeletionOutcome) => void)[] = [];

  constructor(private readonly d: DeletionEffectsDeps) {}

  /** Called after a state's files and row are gone. */
  onStateDeleted(f: (stateId: string) => void): void { this.stateListeners.push(f); }
  /** Called when a deletion has finished, well or not. */
  onFinished(f: (deletionId: string, outcome: DeletionOutcome) => void): void { this.finishListeners.push(f); }

  apply(e: DeleteEffect): void {
    const st = this.d.store;
    switch (e.t) {
      case 'mark-deleting': st.setInstanceDeleting(e.instanceId, true); break;
      case 'delete-instance-row': {
        const row = st.getInstance(e.instanceId);
        if (st.deleteInstance(e.instanceId)) this.d.lifecycle.append({ event: 'instance.deleted', id: e.instanceId, ...(row ? { state_id: row.state_id } : {}) });
        break;
      }
      case 'delete-state-row': {
        const row = st.getState(e.stateId);
        if (st.deleteState(e.stateId)) {
          this.d.lifecycle.append({ event: e.reason === 'eviction' ? 'state.evicted' : 'state.deleted', id: e.stateId, parent_state_id: row?.parent_state_id ?? null });
        }
        break;
      }
      case 'delete-job-rows': this.d.forgetJob(e.jobId); break;
      case 'finished': break; // the outcome lives in the actor's persisted state
    }
  }

  committed(actor: ActorId, effects: readonly DeleteEffect[]): void {
    this.d.lifecycle.committed();
    for (const e of effects) {
      if (e.t === 'delete-state-row') {
        this.d.log.info('state deleted', { state: e.stateId, actor });
        for (const f of this.stateListeners) f(e.stateId);
      }
      if (e.t === 'delete-instance-row') this.d.log.info('instance deleted', { instance: e.instanceId, actor });
      if (e.t !== 'finished') continue;
      let outcome: DeletionOutcome = { ok: true };
      if (!e.ok) {
        const err: ApiError = e.error;
        this.d.log.error('deletion failed', { deletion: e.deletionId, error: err.message, details: err.details });
        outcome = { ok: false, error: new InternalError(err.message, { details: err.details }) };
      }
      for (const f of this.finishListeners) f(e.deletionId, outcome);
    }
  }
}
