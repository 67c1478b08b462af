/**
 * The prepare-job actor: one per job, `queued → running → succeeded | failed`.
 *
 * Its transition is pure: it turns messages (`start`, `cancel`, work results) into a new state,
 * domain effects (job/task rows, events, state and instance rows — committed atomically with the
 * actor state) and work requests (resolve image, plan, build a step's state, create the instance),
 * which the runtime runs outside the transaction and feeds back as `$work` messages.
 *
 * Terminal events are appended in the same transaction that makes the job terminal, so an event
 * stream that sees a terminal job has already got every event.
 */
import * as v from 'valibot';
import type { ActorTransitions, SystemMessage, Transition, TransitionContext } from '../system/logic.js';
import type { JobPatch, JobEvent, JobStatus, PrepareResult, TaskPatch, TaskStatus, WireTask } from '../../mailbox/store.js';
import type { ApiError, SerializedError } from '../../errors.js';
import { toApiCode, errorText } from '../../errors.js';
import type { StateExecuteTask } from './plan.js';
import type { PsqlPrepared } from '../postgres/psql-args.js';
import { asStateId, isJobId, type InstanceId, type JobId, type StateId } from '../../ids.js';

export const PREPARE_KIND = 'prepare';

/** Request data the actor needs (validated at submit). */
export interface PrepareRequest {
  image: string;
  psqlArgs: string[];
  stdin?: string;
  planOnly: boolean;
  /** The psql arguments as parsed at submit (absent only in jobs persisted by older engines). */
  psql?: PsqlPrepared;
}

export type PrepareMessage =
  | { type: 'start'; jobId: JobId; request: PrepareRequest; argsNormalized: string; imageHadDigest: boolean }
  | { type: 'cancel' }
  | SystemMessage;

export type WorkKind = 'resolve' | 'plan' | 'step' | 'instance' | 'discard';

/** Work requested by the actor; performed by `prepare-work.ts`. */
export type PrepareWork =
  | { kind: 'resolve'; jobId: JobId; image: string }
  | { kind: 'plan'; jobId: JobId; request: PrepareRequest; resolvedImage: string }
  | {
    kind: 'step'; jobId: JobId; index: number; request: PrepareRequest; input: { kind: 'image'; id: string } | { kind: 'state'; id: StateId };
    outputStateId: StateId; resolvedImage: string; argsNormalized: string; uid: number; gid: number; last: boolean;
  }
  | { kind: 'instance'; jobId: JobId; stateId: StateId; resolvedImage: string; uid: number; gid: number }
  | { kind: 'discard'; jobId: JobId; instanceId: InstanceId; containerId: string; dir: string };

export interface ResolveResult { resolvedId: string; uid: number; gid: number }
export interface PlanResult {
  steps: { taskHash: string; outputStateId: StateId; cached: boolean; argsSummary?: string }[];
  requestTaskHash: string;
  signature: string;
}
export interface StateRowData {
  state_id: StateId; parent_state_id: StateId | null; image_id: string; prepare_kind: string; prepare_args_normalized: string;
  created_at: string; created_ms: number; size_bytes: number | null; backend: string; dir: string;
}
export interface StepResult { state: StateRowData; wasCached: boolean }
export interface InstanceResult { instanceId: InstanceId; containerId: string; port: number; dir: string; createdAt: string }

/** Domain effects applied in the commit transaction. */
export type PrepareEffect =
  | { t: 'job'; jobId: JobId; patch: JobPatch }
  | { t: 'event'; jobId: JobId; event: Omit<JobEvent, 'ts'> }
  | { t: 'tasks'; jobId: JobId; tasks: { task: WireTask; argsSummary?: string; status: TaskStatus }[] }
  | { t: 'task'; jobId: JobId; position: number; patch: TaskPatch }
  | { t: 'state'; row: StateRowData }
  | { t: 'instance'; jobId: JobId; row: InstanceResult & { stateId: StateId; imageId: string } }
  | { t: 'trim'; signature: string };

export interface PrepareState {
  v: 1;
  jobId: JobId;
  status: JobStatus;
  request: PrepareRequest;
  argsNormalized: string;
  imageHadDigest: boolean;
  resolved?: ResolveResult;
  tasks: WireTask[];
  cursor: number;
  work?: { id: string; kind: WorkKind };
  cancelRequested: boolean;
  signature?: string;
}

const PsqlInputSchema = v.variant('kind', [
  v.object({ kind: v.literal('file'), path: v.string() }),
  v.object({ kind: v.literal('stdin') }),
  v.object({ kind: v.literal('command'), sql: v.string() }),
]);
const PsqlPreparedSchema = v.object({
  argsNormalized: v.string(),
  normalized: v.array(v.string()),
  steps: v.array(v.object({ args: v.array(v.string()), input: v.optional(PsqlInputSchema) })),
  inputs: v.array(PsqlInputSchema),
  workDir: v.string(),
  stdin: v.optional(v.string()),
});
const RequestSchema = v.object({
  image: v.string(), psqlArgs: v.array(v.string()), stdin: v.optional(v.string()), planOnly: v.boolean(),
  psql: v.optional(PsqlPreparedSchema),
});
const StateSchema = v.object({
  v: v.literal(1),
  jobId: v.custom<JobId>((x) => typeof x === 'string' && isJobId(x), 'job id'),
  status: v.picklist(['queued', 'running', 'succeeded', 'failed']),
  request: RequestSchema,
  argsNormalized: v.string(),
  imageHadDigest: v.boolean(),
  resolved: v.optional(v.object({ resolvedId: v.string(), uid: v.number(), gid: v.number() })),
  tasks: v.array(v.looseObject({ task_id: v.string(), type: v.string() })),
  cursor: v.number(),
  work: v.optional(v.object({ id: v.string(), kind: v.picklist(['resolve', 'plan', 'step', 'instance', 'discard']) })),
  cancelRequested: v.boolean(),
  signature: v.optional(v.string()),
});

/** Restores persisted state through its schema. */
export function restore(json: unknown): PrepareState {
  return v.parse(StateSchema, json) as PrepareState;
}
/** Plain JSON form (already plain). */
export function persist(s: PrepareState): unknown {
  return s;
}

type T = Transition<PrepareState, PrepareWork, PrepareEffect>;

class Out {
  domain: PrepareEffect[] = [];
  work: { workId: string; spec: PrepareWork }[] = [];
  abort: string[] = [];
  constructor(public s: PrepareState, private readonly ctx: TransitionContext) {}
  now(): string { return new Date(this.ctx.now).toISOString(); }
  event(e: Omit<JobEvent, 'ts'>): void { this.domain.push({ t: 'event', jobId: this.s.jobId, event: e }); }
  job(patch: JobPatch): void { this.domain.push({ t: 'job', jobId: this.s.jobId, patch }); }
  task(position: number, status: TaskStatus, extra: Partial<TaskPatch> = {}, eventExtra: Partial<JobEvent> = {}): void {
    const tk = this.s.tasks[position];
    if (!tk) return;
    const patch: TaskPatch = { status, ...extra };
    if (status === 'running') patch.started_at = this.now();
    if (status === 'succeeded' || status === 'failed') patch.finished_at = this.now();
    this.domain.push({ t: 'task', jobId: this.s.jobId, position, patch });
    this.event({ type: 'task', task_id: tk.task_id, status, ...eventExtra });
  }
  log(message: string): void { this.event({ type: 'log', message }); }
  startWork(spec: PrepareWork): void {
    const id = this.ctx.newId();
    this.s = { ...this.s, work: { id, kind: spec.kind } };
    this.work.push({ workId: id, spec });
  }
  done(): T {
    return { state: this.s, domain: this.domain, work: this.work, abort: this.abort };
  }
}

function isTerminalStatus(s: JobStatus): boolean { return s === 'succeeded' || s === 'failed'; }

/** Converts a work error into the job's API error. */
export function apiErrorOf(e: SerializedError): ApiError {
  const code = toApiCode(e.code);
  const out: ApiError = { code, message: e.message };
  if (e.details !== undefined && e.details !== '') out.details = e.details;
  return out;
}

function fail(o: Out, error: ApiError): T {
  const s = o.s;
  // A task in progress (state_execute running or prepare_instance) fails with the job.
  const cur = s.tasks[s.cursor];
  if (cur && s.work && (s.work.kind === 'step' || s.work.kind === 'instance')) {
    o.task(s.cursor, 'failed', { error }, { message: error.message, error });
  }
  o.s = { ...o.s, status: 'failed' };
  delete o.s.work;
  o.job({ status: 'failed', finished_at: o.now(), error });
  o.event({ type: 'status', status: 'failed' });
  o.event({ type: 'error', error });
  if (o.s.signature) o.domain.push({ t: 'trim', signature: o.s.signature });
  return o.done();
}

function succeed(o: Out, result?: PrepareResult): T {
  o.s = { ...o.s, status: 'succeeded' };
  delete o.s.work;
  o.job(result ? { status: 'succeeded', finished_at: o.now(), result } : { status: 'succeeded', finished_at: o.now() });
  o.event({ type: 'status', status: 'succeeded' });
  if (result) o.event({ type: 'result', result });
  if (o.s.signature) o.domain.push({ t: 'trim', signature: o.s.signature });
  return o.done();
}

/** Starts the task at `cursor` (skipping nothing: every execute task goes through a step). */
function advance(o: Out): T {
  const s = o.s;
  const tk = s.tasks[s.cursor];
  const resolved = s.resolved;
  if (!tk || !resolved) return fail(o, { code: 'internal_error', message: 'missing output state' });
  if (tk.type === 'state_execute') {
    const ex = tk as unknown as StateExecuteTask;
    if (!ex.cached) o.task(s.cursor, 'running');
    const index = Number(tk.task_id.slice('execute-'.length));
    const next = s.tasks[s.cursor + 1];
    o.startWork({
      kind: 'step', jobId: s.jobId, index, request: s.request, input: ex.input, outputStateId: ex.output_state_id,
      resolvedImage: resolved.resolvedId, argsNormalized: s.argsNormalized, uid: resolved.uid, gid: resolved.gid,
      last: next?.type !== 'state_execute',
    });
    return o.done();
  }
  if (tk.type === 'prepare_instance') {
    o.task(s.cursor, 'running');
    const input = tk['input'] as { id: StateId }; // written by this actor's plan
    o.startWork({ kind: 'instance', jobId: s.jobId, stateId: input.id, resolvedImage: resolved.resolvedId, uid: resolved.uid, gid: resolved.gid });
    return o.done();
  }
  // plan / resolve-image are completed at planning time; skip any other.
  o.s = { ...o.s, cursor: s.cursor + 1 };
  return advance(o);
}

function onWork(o: Out, msg: Extract<SystemMessage, { type: '$work' }>): T {
  const s = o.s;
  const kind = s.work?.kind;
  if (!msg.ok) {
    if (s.cancelRequested || msg.error.code === 'cancelled') {
      const inTask = kind === 'step' || kind === 'instance';
      return fail(o, { code: 'cancelled', message: inTask ? 'task cancelled' : 'job cancelled' });
    }
    return fail(o, apiErrorOf(msg.error));
  }
  switch (kind) {
    case 'resolve': {
      const r = msg.result as ResolveResult;
      o.s = { ...s, resolved: r };
      if (!s.imageHadDigest) o.log(`resolved image ${r.resolvedId}`);
      o.job({ resolved_image_id: r.resolvedId });
      if (s.cancelRequested) return fail(o, { code: 'cancelled', message: 'job cancelled' });
      o.startWork({ kind: 'plan', jobId: s.jobId, request: s.request, resolvedImage: r.resolvedId });
      return o.done();
    }
    case 'plan': {
      const r = msg.result as PlanResult;
      const resolved = s.resolved;
      if (!resolved) return fail(o, { code: 'internal_error', message: 'resolved image id is required' });
      // Wire tasks assembled from the plan work's ids (computed by `buildPsqlPlan` in `planPsql`).
      const tasks: WireTask[] = [{ task_id: 'plan', type: 'plan', planner_kind: 'psql' }];
      if (!s.imageHadDigest) tasks.push({ task_id: 'resolve-image', type: 'resolve_image', image_id: s.request.image, resolved_image_id: resolved.resolvedId });
      r.steps.forEach((st, i) => {
        tasks.push({
          task_id: `execute-${i}`, type: 'state_execute',
          input: i === 0 ? { kind: 'image', id: resolved.resolvedId } : { kind: 'state', id: r.steps[i - 1]?.outputStateId ?? '' },
          task_hash: st.taskHash, output_state_id: st.outputStateId, cached: st.cached,
        });
      });
      const final = r.steps[r.steps.length - 1]?.outputStateId ?? '';
      tasks.push({ task_id: 'prepare-instance', type: 'prepare_instance', input: { kind: 'state', id: final }, instance_mode: 'ephemeral' });
      const summaries = new Map<string, string>();
      r.steps.forEach((st, i) => { if (st.argsSummary !== undefined) summaries.set(`execute-${i}`, st.argsSummary); });
      o.s = { ...s, tasks, signature: r.signature, cursor: 0 };
      o.domain.push({
        t: 'tasks', jobId: s.jobId,
        tasks: tasks.map((task) => {
          const sum = summaries.get(task.task_id);
          return sum === undefined ? { task, status: 'queued' as const } : { task, status: 'queued' as const, argsSummary: sum };
        }),
      });
      o.job({ signature: r.signature });
      o.domain.push({ t: 'trim', signature: r.signature });
      if (s.cancelRequested) return fail(o, { code: 'cancelled', message: 'job cancelled' });
      if (s.request.planOnly) {
        tasks.forEach((_, i) => o.task(i, 'succeeded'));
        return succeed(o);
      }
      o.task(0, 'running');
      o.task(0, 'succeeded');
      let cursor = 1;
      if (!s.imageHadDigest) { o.task(1, 'running'); o.task(1, 'succeeded'); cursor = 2; }
      o.s = { ...o.s, cursor };
      return advance(o);
    }
    case 'step': {
      const r = msg.result as StepResult;
      o.domain.push({ t: 'state', row: r.state });
      const tk = s.tasks[s.cursor] as unknown as StateExecuteTask | undefined;
      if (tk && tk.cached && !r.wasCached) o.task(s.cursor, 'running'); // planned as cached but had to be rebuilt
      o.task(s.cursor, 'succeeded');
      if (s.cancelRequested) return fail(o, { code: 'cancelled', message: 'job cancelled' });
      o.s = { ...o.s, cursor: s.cursor + 1 };
      return advance(o);
    }
    case 'instance': {
      const r = msg.result as InstanceResult;
      const tk = s.tasks[s.cursor];
      const stateId = (tk?.['input'] as { id: StateId } | undefined)?.id ?? asStateId(''); // written by this actor's plan
      if (s.cancelRequested) {
        // The instance was made after cancel was asked: discard it rather than keep it.
        const failed = fail(o, { code: 'cancelled', message: 'task cancelled' });
        const id = `${o.s.jobId}-discard`;
        return { ...failed, work: [{ workId: id, spec: { kind: 'discard', jobId: s.jobId, instanceId: r.instanceId, containerId: r.containerId, dir: r.dir } }] };
      }
      const resolved = s.resolved?.resolvedId ?? s.request.image;
      o.domain.push({ t: 'instance', jobId: s.jobId, row: { ...r, stateId, imageId: resolved } });
      o.log(`instance created ${r.instanceId}`);
      o.task(s.cursor, 'succeeded');
      return succeed(o, {
        dsn: `postgres://sqlrs@127.0.0.1:${r.port}/postgres`, instance_id: r.instanceId, state_id: stateId,
        image_id: resolved, prepare_kind: 'psql', prepare_args_normalized: s.argsNormalized,
      });
    }
    default:
      return o.done();
  }
}

/** The pure transition of the prepare-job actor. */
export function transition(state: PrepareState | undefined, msg: PrepareMessage, ctx: TransitionContext): T {
  if (state === undefined) {
    if (msg.type !== 'start') {
      // A message for a job that never started (e.g. a cancel racing the submit): keep no state.
      throw new Error(`prepare job actor got ${msg.type} before start`);
    }
    const s: PrepareState = {
      v: 1, jobId: msg.jobId, status: 'running', request: msg.request, argsNormalized: msg.argsNormalized,
      imageHadDigest: msg.imageHadDigest, tasks: [], cursor: 0, cancelRequested: false,
    };
    const o = new Out(s, ctx);
    o.job({ status: 'running', started_at: o.now() });
    o.event({ type: 'status', status: 'running' });
    if (!msg.imageHadDigest) o.log(`resolve image ${msg.request.image}`);
    o.startWork({ kind: 'resolve', jobId: msg.jobId, image: msg.request.image });
    return o.done();
  }
  const o = new Out(state, ctx);
  // Anything arriving after the job ended (e.g. a work result after cancel) changes nothing.
  if (isTerminalStatus(state.status)) return o.done();
  switch (msg.type) {
    case 'start':
      return o.done(); // redelivered start
    case 'cancel':
      if (state.cancelRequested) return o.done();
      o.s = { ...state, cancelRequested: true };
      if (state.work) { o.abort.push(state.work.id); return o.done(); }
      return fail(o, { code: 'cancelled', message: 'job cancelled' });
    case '$work':
      if (!state.work || msg.workId !== state.work.id) return o.done(); // stale result
      return onWork(o, msg);
    case '$timer':
      return o.done();
    default:
      return o.done();
  }
}

/** Failure transition used by the supervisor. */
export function onFailure(state: PrepareState | undefined, error: unknown, ctx: TransitionContext): T {
  if (!state) throw new Error(`prepare job failed before start: ${errorText(error)}`);
  if (isTerminalStatus(state.status)) return { state };
  const o = new Out(state, ctx);
  if (state.work) o.abort.push(state.work.id);
  return fail(o, { code: 'internal_error', message: 'internal error', details: errorText(error) });
}

export function isTerminal(s: PrepareState): boolean { return isTerminalStatus(s.status); }

/** This actor kind's pure logic, as the actor system takes it. */
export const transitions: ActorTransitions<PrepareState, PrepareMessage, PrepareWork, PrepareEffect> = { restore, persist, transition, isTerminal, onFailure };
