/**
 * The deletion actor: one per deletion (an instance, a state tree, or one evicted state).
 *
 * The plan — the ordered list of removals, children before parents — is computed before the actor
 * starts (see `deletion-plan.ts`) and arrives in the `start` message together with the response
 * body. The actor persists the plan and a cursor, so after a crash it resumes where it stopped.
 *
 * Per operation:
 * - instance: mark the row `deleting` (committed with the work request), then remove the container
 *   and the instance directory (unmounting first), then delete the row;
 * - state: remove the state directory, then delete the row.
 *
 * Files always go before rows, and all removal work is idempotent (something already gone counts
 * as removed), so a crash between the two leaves a row whose files are partly or wholly gone: the
 * redispatched work finishes the removal and the row follows. A row never outlives a finished
 * deletion, and files never outlive their row.
 *
 * Failed work is retried a bounded number of times; then the deletion ends `failed` with the error
 * and the remaining plan stays recorded in the actor's state.
 */
import * as v from 'valibot';
import type { ActorTransitions, SystemMessage, Transition, TransitionContext } from '../system/logic.js';
import type { ApiError } from '../../errors.js';
import { isInstanceId, isJobId, isStateId, type InstanceId, type JobId, type StateId } from '../../ids.js';
import { errorText } from '../../errors.js';

export const DELETE_KIND = 'delete';

/** Attempts per removal before the deletion fails. */
export const MAX_OP_ATTEMPTS = 3;

/** Why a node cannot be deleted (`api.md` §3.13). */
export type BlockedReason = 'active_connections' | 'active_tasks' | 'has_descendants' | 'blocked_by_descendant';

/** A node of the deletion tree as served over HTTP. */
export interface DeleteNode {
  kind: 'state' | 'instance' | 'job';
  id: string;
  connections?: number;
  runtime_id?: string;
  blocked?: BlockedReason;
  children?: DeleteNode[];
}

/** The body of every delete endpoint. */
export interface DeleteResult {
  dry_run: boolean;
  outcome: 'deleted' | 'would_delete' | 'blocked';
  root: DeleteNode;
}

/** One removal of the plan. */
export type DeleteOp =
  | { kind: 'instance'; id: InstanceId; containerId: string | null; dir: string }
  | { kind: 'state'; id: StateId; dir: string }
  /** A terminal prepare job: it owns no files, only rows (job, tasks, events, its actor). */
  | { kind: 'job'; id: JobId };

/** Why the deletion runs (logging and busy accounting only). */
export type DeleteReason = 'request' | 'eviction';

export type DeleteMessage =
  | { type: 'start'; deletionId: string; ops: DeleteOp[]; result: DeleteResult; reason: DeleteReason }
  | SystemMessage;

/** Work: perform one removal (files / container); rows are deleted by domain effects. */
export interface DeleteWork { deletionId: string; op: DeleteOp; attempt: number }

/** Domain effects, applied inside the commit transaction. */
export type DeleteEffect =
  | { t: 'mark-deleting'; instanceId: InstanceId }
  | { t: 'delete-instance-row'; instanceId: InstanceId }
  /** `reason` says whether the state is evicted or deleted on request (its lifecycle event). */
  | { t: 'delete-state-row'; stateId: StateId; reason: DeleteReason }
  | { t: 'delete-job-rows'; jobId: JobId }
  | { t: 'finished'; deletionId: string; ok: true }
  | { t: 'finished'; deletionId: string; ok: false; error: ApiError };

export type DeletionStatus = 'running' | 'done' | 'failed';

export interface DeleteState {
  v: 1;
  deletionId: string;
  reason: DeleteReason;
  ops: DeleteOp[];
  /** Index of the operation in progress (== ops.length when finished). */
  cursor: number;
  status: DeletionStatus;
  /** The response body, persisted with the deletion. */
  result: DeleteResult;
  work?: { id: string; attempt: number };
  error?: ApiError;
}

const OpSchema = v.variant('kind', [
  v.object({ kind: v.literal('instance'), id: v.custom<InstanceId>((x) => typeof x === 'string' && isInstanceId(x), 'instance id'), containerId: v.nullable(v.string()), dir: v.string() }),
  v.object({ kind: v.literal('state'), id: v.custom<StateId>((x) => typeof x === 'string' && isStateId(x), 'state id'), dir: v.string() }),
  v.object({ kind: v.literal('job'), id: v.custom<JobId>((x) => typeof x === 'string' && isJobId(x), 'job id') }),
]);
const ApiErrorSchema = v.object({ code: v.string(), message: v.string(), details: v.optional(v.string()) });
const StateSchema = v.object({
  v: v.literal(1),
  deletionId: v.string(),
  reason: v.picklist(['request', 'eviction']),
  ops: v.array(OpSchema),
  cursor: v.number(),
  status: v.picklist(['running', 'done', 'failed']),
  result: v.looseObject({ dry_run: v.boolean(), outcome: v.picklist(['deleted', 'would_delete', 'blocked']), root: v.looseObject({ kind: v.string(), id: v.string() }) }),
  work: v.optional(v.object({ id: v.string(), attempt: v.number() })),
  error: v.optional(ApiErrorSchema),
});

/** Restores persisted state through its schema. */
export function restore(json: unknown): DeleteState {
  return v.parse(StateSchema, json) as DeleteState;
}
/** Plain JSON form (already plain). */
export function persist(s: DeleteState): unknown {
  return s;
}
export function isTerminal(s: DeleteState): boolean {
  return s.status !== 'running';
}

type T = Transition<DeleteState, DeleteWork, DeleteEffect>;

/** Starts (or retries) the operation at the cursor, or finishes when none is left. */
function step(s: DeleteState, ctx: TransitionContext, attempt: number, domain: DeleteEffect[] = []): T {
  const op = s.ops[s.cursor];
  if (!op) {
    const done: DeleteState = { ...s, status: 'done' };
    delete done.work;
    return { state: done, domain: [...domain, { t: 'finished', deletionId: s.deletionId, ok: true }] };
  }
  const workId = ctx.newId();
  // The `deleting` mark commits together with the work request: a crash after this point
  // redispatches the work, and the row is recognisably on its way out.
  if (op.kind === 'instance' && attempt === 1) domain.push({ t: 'mark-deleting', instanceId: op.id });
  return {
    state: { ...s, work: { id: workId, attempt } },
    domain,
    work: [{ workId, spec: { deletionId: s.deletionId, op, attempt } }],
  };
}

function failWith(s: DeleteState, error: ApiError, domain: DeleteEffect[] = []): T {
  const failed: DeleteState = { ...s, status: 'failed', error };
  delete failed.work;
  return { state: failed, domain: [...domain, { t: 'finished', deletionId: s.deletionId, ok: false, error }] };
}

/** The pure transition of the deletion actor. */
export function transition(state: DeleteState | undefined, msg: DeleteMessage, ctx: TransitionContext): T {
  if (state === undefined) {
    if (msg.type !== 'start') throw new Error(`deletion actor got ${msg.type} before start`);
    const s: DeleteState = { v: 1, deletionId: msg.deletionId, reason: msg.reason, ops: msg.ops, cursor: 0, status: 'running', result: msg.result };
    return step(s, ctx, 1);
  }
  if (isTerminal(state)) return { state };
  if (msg.type !== '$work') return { state }; // a redelivered start, or a stray timer
  if (!state.work || msg.workId !== state.work.id) return { state }; // stale result
  const op = state.ops[state.cursor];
  if (!op) return step(state, ctx, 1);
  if (msg.ok) {
    const domain: DeleteEffect[] = [
      op.kind === 'instance' ? { t: 'delete-instance-row', instanceId: op.id }
        : op.kind === 'state' ? { t: 'delete-state-row', stateId: op.id, reason: state.reason }
          : { t: 'delete-job-rows', jobId: op.id },
    ];
    return step({ ...state, cursor: state.cursor + 1 }, ctx, 1, domain);
  }
  if (state.work.attempt < MAX_OP_ATTEMPTS) return step(state, ctx, state.work.attempt + 1);
  const what = `${op.kind} ${op.id}`;
  const details = msg.error.details ? `${msg.error.message}: ${msg.error.details}` : msg.error.message;
  return failWith(state, { code: 'internal_error', message: `cannot delete ${what}`, details });
}

/** Failure transition used by the supervisor. */
export function onFailure(state: DeleteState | undefined, error: unknown): T {
  if (!state) throw new Error(`deletion failed before start: ${errorText(error)}`);
  if (isTerminal(state)) return { state };
  return failWith(state, { code: 'internal_error', message: 'internal error', details: errorText(error) });
}

/** This actor kind's pure logic, as the actor system takes it. */
export const transitions: ActorTransitions<DeleteState, DeleteMessage, DeleteWork, DeleteEffect> = { restore, persist, transition, isTerminal, onFailure };
