/**
 * The run-session actor: one per `POST /v1/runs` request (`run:<random>`), executing a psql or
 * pgbench command (or a sequence of psql steps) inside an instance's container.
 *
 * Status, state by state (see {@link RunStatus}):
 * - `preparing` — making sure the instance's container runs (recreating it from the instance's data
 *   directory when it is gone); also used for the single retry after the container vanished.
 * - `executing` — running step `cursor`.
 * - `exited` (terminal) — the command ended; `exitCode` is what the `exit` event reported (the first
 *   failing step's code, or 0).
 * - `failed` (terminal) — the run could not complete; `error` is what the `error` event reported.
 *
 * The transition is pure. Its events are domain effects that carry no database write: they are
 * published to the run's in-process channel after the commit (see `run-capability.ts`). Process
 * output never passes through here: the work streams it straight into the channel.
 *
 * A run belongs to its HTTP client. Its command line and stdin live only in the channel, so a run
 * that outlives its client (an engine restart redispatching its work) finds no channel, fails
 * without executing anything, and is forgotten.
 */
import * as v from 'valibot';
import type { ActorTransitions, SystemMessage, Transition, TransitionContext } from '../system/logic.js';
import type { ApiError, SerializedError } from '../../errors.js';
import { errorText } from '../../errors.js';
import type { RunKind } from './args.js';
import { asInstanceId, isInstanceId, type InstanceId } from '../../ids.js';

export const RUN_KIND = 'run';

export type RunStatus = 'preparing' | 'executing' | 'exited' | 'failed';

/** Why a run was cancelled from outside. */
export type CancelReason = 'client_gone' | 'overflow';

export type RunMessage =
  | { type: 'start'; runId: string; instanceId: InstanceId; runtimeId: string; kind: RunKind; stepCount: number }
  | { type: 'cancel'; reason: CancelReason }
  | SystemMessage;

/** Work the actor asks for; performed by `run-work.ts`. */
export type RunWork =
  | { kind: 'ensure'; runId: string; instanceId: InstanceId; runtimeId: string }
  | { kind: 'exec'; runId: string; instanceId: InstanceId; containerId: string; step: number };

export interface EnsureResult { containerId: string }
/** `missing`: the container was gone before the step produced anything (it may be retried once). */
export type ExecOutcome = { type: 'exit'; exitCode: number } | { type: 'missing' };

/** An event without its timestamp (added when published). */
export type RunEventBody =
  | { type: 'start'; instance_id: string }
  | { type: 'exit'; exit_code: number }
  | { type: 'error'; error: ApiError };

/**
 * Domain effects. None writes to the database: `event` is published to the run's channel after the
 * commit, `forget` removes the actor's row once nothing more can arrive for it.
 */
export type RunEffect =
  | { t: 'event'; runId: string; event: RunEventBody }
  | { t: 'forget'; runId: string };

export interface RunState {
  v: 1;
  runId: string;
  instanceId: InstanceId;
  kind: RunKind;
  stepCount: number;
  status: RunStatus;
  /** Step being (or next to be) executed. */
  cursor: number;
  /** The `start` event has been emitted. */
  started: boolean;
  /** The one recovery retry after a vanished container has been used. */
  retried: boolean;
  /** Container the run executes in (last known). */
  containerId: string;
  /** Work in flight. In a terminal state: aborted work whose result is still to come. */
  work?: { id: string; kind: RunWork['kind'] };
  exitCode?: number;
  error?: ApiError;
}

const ApiErrorSchema = v.object({ code: v.string(), message: v.string(), details: v.optional(v.string()) });
const StateSchema = v.object({
  v: v.literal(1),
  runId: v.string(),
  // '' only in the tombstone of a run that was forgotten
  instanceId: v.custom<InstanceId>((x) => typeof x === 'string' && (x === '' || isInstanceId(x)), 'instance id'),
  kind: v.picklist(['psql', 'pgbench']),
  stepCount: v.pipe(v.number(), v.integer(), v.minValue(0)),
  status: v.picklist(['preparing', 'executing', 'exited', 'failed']),
  cursor: v.pipe(v.number(), v.integer(), v.minValue(0)),
  started: v.boolean(),
  retried: v.boolean(),
  containerId: v.string(),
  work: v.optional(v.object({ id: v.string(), kind: v.picklist(['ensure', 'exec']) })),
  exitCode: v.optional(v.pipe(v.number(), v.integer())),
  error: v.optional(ApiErrorSchema),
});

/** Persisted form: plain JSON, the state itself. */
export type PersistedRunState = v.InferOutput<typeof StateSchema>;

/** Restores persisted state through its schema. */
export function restore(json: unknown): RunState {
  const p = v.parse(StateSchema, json);
  const s: RunState = {
    v: 1, runId: p.runId, instanceId: p.instanceId, kind: p.kind, stepCount: p.stepCount, status: p.status,
    cursor: p.cursor, started: p.started, retried: p.retried, containerId: p.containerId,
  };
  if (p.work) s.work = { id: p.work.id, kind: p.work.kind };
  if (p.exitCode !== undefined) s.exitCode = p.exitCode;
  if (p.error) s.error = p.error.details === undefined ? { code: p.error.code, message: p.error.message } : { ...p.error, details: p.error.details };
  return s;
}

/** Plain JSON form. */
export function persist(s: RunState): PersistedRunState {
  return s;
}

export function isTerminal(s: RunState): boolean {
  return s.status === 'exited' || s.status === 'failed';
}

type T = Transition<RunState, RunWork, RunEffect>;

/** The API error a failed work item reports. */
export function runErrorOf(e: SerializedError): ApiError {
  switch (e.code) {
    case 'conflict':
    case 'not_found':
    case 'invalid_argument': {
      const out: ApiError = { code: e.code, message: e.message };
      if (e.details !== undefined && e.details !== '') out.details = e.details;
      return out;
    }
    case 'cancelled': {
      const out: ApiError = { code: 'cancelled', message: 'run cancelled' };
      if (e.message !== '') out.details = e.message;
      return out;
    }
    default: {
      const text = e.details !== undefined && e.details !== '' ? `${e.message}: ${e.details}` : e.message;
      return { code: 'internal_error', message: 'run failed', details: `exec failed: ${text}` };
    }
  }
}

class Out {
  domain: RunEffect[] = [];
  work: { workId: string; spec: RunWork }[] = [];
  abort: string[] = [];
  constructor(public s: RunState, private readonly ctx: TransitionContext) {}
  event(event: RunEventBody): void { this.domain.push({ t: 'event', runId: this.s.runId, event }); }
  startWork(spec: RunWork): void {
    const id = this.ctx.newId();
    this.s = { ...this.s, work: { id, kind: spec.kind } };
    this.work.push({ workId: id, spec });
  }
  /** Ends the run; the actor is forgotten at once unless aborted work is still to report. */
  end(status: 'exited' | 'failed', event: RunEventBody, keepWork: boolean): T {
    const s: RunState = { ...this.s, status };
    if (event.type === 'exit') s.exitCode = event.exit_code;
    if (event.type === 'error') s.error = event.error;
    if (!keepWork) delete s.work;
    this.s = s;
    this.event(event);
    if (!keepWork) this.domain.push({ t: 'forget', runId: s.runId });
    return this.done();
  }
  done(): T {
    return { state: this.s, domain: this.domain, work: this.work, abort: this.abort };
  }
}

function runIdOf(actorId: string): string {
  return actorId.startsWith(`${RUN_KIND}:`) ? actorId.slice(RUN_KIND.length + 1) : actorId;
}

/** A terminal placeholder for a message that arrives after the actor was forgotten. */
function tombstone(ctx: TransitionContext, why: string): T {
  const runId = runIdOf(ctx.actorId);
  const state: RunState = {
    v: 1, runId, instanceId: asInstanceId(''), kind: 'psql', stepCount: 0, status: 'failed', cursor: 0, started: false, retried: false,
    containerId: '', error: { code: 'internal_error', message: 'run failed', details: why },
  };
  return { state, domain: [{ t: 'forget', runId }] };
}

function execStep(o: Out): T {
  const s = o.s;
  o.s = { ...s, status: 'executing' };
  o.startWork({ kind: 'exec', runId: s.runId, instanceId: s.instanceId, containerId: s.containerId, step: s.cursor });
  return o.done();
}

function onWork(o: Out, msg: Extract<SystemMessage, { type: '$work' }>, kind: RunWork['kind']): T {
  const s = o.s;
  if (!msg.ok) return o.end('failed', { type: 'error', error: runErrorOf(msg.error) }, false);
  if (kind === 'ensure') {
    const r = msg.result as EnsureResult;
    o.s = { ...s, containerId: r.containerId, started: true };
    if (!s.started) o.event({ type: 'start', instance_id: s.instanceId });
    return execStep(o);
  }
  const r = msg.result as ExecOutcome;
  if (r.type === 'missing') {
    if (s.retried) {
      return o.end('failed', { type: 'error', error: { code: 'internal_error', message: 'run failed', details: 'exec failed: the instance container is not running' } }, false);
    }
    o.s = { ...s, status: 'preparing', retried: true };
    o.startWork({ kind: 'ensure', runId: s.runId, instanceId: s.instanceId, runtimeId: s.containerId });
    return o.done();
  }
  const last = s.cursor + 1 >= s.stepCount;
  if (r.exitCode !== 0 || last) return o.end('exited', { type: 'exit', exit_code: r.exitCode }, false);
  o.s = { ...s, cursor: s.cursor + 1 };
  return execStep(o);
}

/** The pure transition of the run-session actor. */
export function transition(state: RunState | undefined, msg: RunMessage, ctx: TransitionContext): T {
  if (state === undefined) {
    if (msg.type !== 'start') return tombstone(ctx, `run session is gone (${msg.type})`);
    const s: RunState = {
      v: 1, runId: msg.runId, instanceId: msg.instanceId, kind: msg.kind, stepCount: msg.stepCount, status: 'preparing',
      cursor: 0, started: false, retried: false, containerId: msg.runtimeId,
    };
    const o = new Out(s, ctx);
    if (msg.stepCount < 1) return o.end('exited', { type: 'exit', exit_code: 0 }, false);
    o.startWork({ kind: 'ensure', runId: msg.runId, instanceId: msg.instanceId, runtimeId: msg.runtimeId });
    return o.done();
  }
  const o = new Out(state, ctx);
  if (isTerminal(state)) {
    // The result of work aborted by a cancel: now nothing more can arrive.
    if (msg.type === '$work' && state.work && msg.workId === state.work.id) {
      const s = { ...state };
      delete s.work;
      o.s = s;
      o.domain.push({ t: 'forget', runId: s.runId });
    }
    return o.done();
  }
  switch (msg.type) {
    case 'start':
      return o.done(); // redelivered
    case 'cancel': {
      const error: ApiError = msg.reason === 'overflow'
        ? { code: 'internal_error', message: 'run failed', details: 'the client did not read the output fast enough' }
        : { code: 'cancelled', message: 'run cancelled', details: 'the client went away' };
      if (state.work) o.abort.push(state.work.id);
      return o.end('failed', { type: 'error', error }, state.work !== undefined);
    }
    case '$work': {
      if (!state.work || msg.workId !== state.work.id) return o.done(); // stale result
      return onWork(o, msg, state.work.kind);
    }
    case '$timer':
      return o.done();
  }
}

/** Failure transition used by the supervisor. */
export function onFailure(state: RunState | undefined, error: unknown, ctx: TransitionContext): T {
  if (!state) return tombstone(ctx, errorText(error));
  if (isTerminal(state)) return { state };
  const o = new Out(state, ctx);
  if (state.work) o.abort.push(state.work.id);
  // The supervisor marks the actor failed, so late messages are dead-lettered: forget it now.
  return o.end('failed', { type: 'error', error: { code: 'internal_error', message: 'run failed', details: errorText(error) } }, false);
}

/** This actor kind's pure logic, as the actor system takes it. */
export const transitions: ActorTransitions<RunState, RunMessage, RunWork, RunEffect> = { restore, persist, transition, isTerminal, onFailure };
