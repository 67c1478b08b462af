/**
 * The prepare wing's face for HTTP and for other wings: validates and submits jobs, cancels them,
 * answers cache-explain questions, lets readers wait for a job's events, and registers the
 * prepare-job actor's logic (its transition, effect interpreter and work) with the actor system.
 */
import * as v from 'valibot';
import type { Logger } from '../../log.js';
import type { Clock } from '../../clock.js';
import { rfc3339Nano } from '../../clock.js';
import { actorId, newJobId } from '../../ids.js';
import { InternalError, InvalidArgumentError, errorText, hasCode } from '../../errors.js';
import type { Mailbox } from '../../mailbox/mailbox.js';
import type { Store } from '../../mailbox/store.js';
import type { FsPool } from '../../workers/pool.js';
import type { ContainerRuntime, SnapshotBackendKind } from '../../workers/protocol.js';
import type { ActorSystem } from '../system/system.js';
import type { ActorLogic } from '../system/logic.js';
import type { StoreLayout } from '../layout.js';
import type { CapacityGuard } from '../cache/capacity.js';
import type { LifecycleSink } from '../lifecycle/service.js';
import { validatePsqlRequest } from '../postgres/psql-args.js';
import { imageHasDigest } from './plan.js';
import { EventHub, JobEventLog } from './events.js';
import { Runtimes } from './runtimes.js';
import { PrepareEffects } from './effects.js';
import { PrepareWorker } from './work.js';
import { PsqlStepKind } from './psql.js';
import * as job from './transition.js';
import { PrepareObserver } from './observe.js';
import { noTelemetry, type Telemetry } from '../../telemetry.js';
import type { PrepareEffect, PrepareMessage, PrepareRequest, PrepareState, PrepareWork } from './transition.js';

export const PrepareBodySchema = v.object({
  prepare_kind: v.optional(v.nullable(v.string())),
  image_id: v.optional(v.nullable(v.string())),
  psql_args: v.optional(v.nullable(v.array(v.string()))),
  stdin: v.optional(v.nullable(v.string())),
  liquibase_args: v.optional(v.nullable(v.array(v.string()))),
  liquibase_exec: v.optional(v.nullable(v.string())),
  liquibase_exec_mode: v.optional(v.nullable(v.string())),
  liquibase_env: v.optional(v.nullable(v.record(v.string(), v.string()))),
  work_dir: v.optional(v.nullable(v.string())),
  plan_only: v.optional(v.nullable(v.boolean())),
});
/** A prepare request body as decoded (`api.md` §3.1). */
export type PrepareBody = v.InferOutput<typeof PrepareBodySchema>;

/** `POST /v1/cache/explain/prepare` body (`api.md` §3.16). */
export interface CacheExplainResponse {
  decision: 'hit' | 'miss';
  reason_code: 'exact_state_match' | 'no_matching_state';
  signature: string;
  resolved_image_id: string;
  matched_state_id?: string;
}

/**
 * Synchronous validation of a prepare request (`api.md` §3.1): the actor's request, with the psql
 * arguments parsed once here and carried in the job.
 * @throws InvalidArgumentError with the CLI's messages
 */
export function validatePrepare(body: PrepareBody): PrepareRequest {
  const kind = (body.prepare_kind ?? '').trim();
  if (kind === '') throw new InvalidArgumentError('prepare_kind is required');
  if (kind === 'lb') throw new InvalidArgumentError('unsupported prepare_kind', { details: 'lb: Liquibase prepares are not supported by this engine' });
  if (kind !== 'psql') throw new InvalidArgumentError('unsupported prepare_kind', { details: kind });
  const image = (body.image_id ?? '').trim();
  if (image === '') throw new InvalidArgumentError('image_id is required');
  const psqlArgs = body.psql_args ?? [];
  const stdin = body.stdin ?? undefined;
  const psql = validatePsqlRequest(psqlArgs, stdin);
  const out: PrepareRequest = { image, psqlArgs: [...psqlArgs], planOnly: body.plan_only === true, psql };
  if (stdin !== undefined) out.stdin = stdin;
  return out;
}

/** The states a prepare job's outstanding work reads or writes (never evicted or deleted meanwhile). */
export function prepareWorkStates(spec: unknown): readonly string[] {
  const s = spec as Partial<PrepareWork> | null;
  if (s?.kind === 'step') {
    const step = s as Extract<PrepareWork, { kind: 'step' }>;
    return step.input.kind === 'state' ? [step.outputStateId, step.input.id] : [step.outputStateId];
  }
  if (s?.kind === 'instance') return [(s as Extract<PrepareWork, { kind: 'instance' }>).stateId];
  return [];
}

export interface PrepareServiceDeps {
  store: Store;
  mailbox: Mailbox;
  system: ActorSystem;
  fs: FsPool;
  containers: ContainerRuntime;
  layout: StoreLayout;
  backend: SnapshotBackendKind;
  capacity: CapacityGuard;
  /** Lifecycle events of jobs, states and instances, appended in the commits that make them. */
  lifecycle: LifecycleSink;
  /** Terminal jobs kept per signature (`orchestrator.jobs.maxIdentical`). */
  maxIdenticalJobs(): number;
  log: Logger;
  clock: Clock;
  /** Overlay chains deeper than this are flattened. @default 16 */
  maxDepth?: number;
  /** Where job and step durations and cache hits are reported. @default {@link noTelemetry} */
  telemetry?: Telemetry;
}

export class PrepareService {
  private readonly hub: EventHub;
  private readonly events: JobEventLog;
  private readonly runtimes: Runtimes;
  private readonly effects: PrepareEffects;
  private readonly work: PrepareWorker;
  private readonly psql: PsqlStepKind;
  private readonly observer: PrepareObserver;
  private streams = 0;

  constructor(private readonly d: PrepareServiceDeps) {
    const log = d.log;
    this.hub = new EventHub(d.clock);
    this.events = new JobEventLog(d.store, this.hub, d.clock);
    this.runtimes = new Runtimes({ layout: d.layout, store: d.store, fs: d.fs, containers: d.containers, backend: d.backend, log, maxDepth: d.maxDepth ?? 16 });
    this.psql = new PsqlStepKind(d.containers);
    this.observer = new PrepareObserver({ telemetry: d.telemetry ?? noTelemetry, store: d.store, clock: d.clock, stepKind: this.psql.kind });
    this.effects = new PrepareEffects({ store: d.store, mailbox: d.mailbox, events: this.events, runtimes: this.runtimes, lifecycle: d.lifecycle, maxIdenticalJobs: d.maxIdenticalJobs, log, clock: d.clock });
    this.work = new PrepareWorker({
      store: d.store, events: this.events, runtimes: this.runtimes, layout: d.layout, fs: d.fs, containers: d.containers,
      backend: d.backend, capacity: d.capacity, psql: this.psql, lifecycle: d.lifecycle, log, clock: d.clock,
    });
    d.system.register(this.logic());
  }

  private logic(): ActorLogic<PrepareState, PrepareMessage, PrepareWork, PrepareEffect> {
    return {
      kind: job.PREPARE_KIND,
      ...job.transitions,
      perform: (spec, signal) => this.observer.work(spec, signal, this.work.perform(spec, signal)),
      apply: (e) => this.effects.apply(e),
      committed: (id, effects) => { this.effects.committed(id, effects); this.observer.committed(effects); },
    };
  }

  /**
   * Validates a request and creates its job: the job row, its `queued` event and the actor's
   * `start` message in one transaction. @throws InvalidArgumentError, MailboxFullError
   */
  submit(body: PrepareBody): string {
    const request = validatePrepare(body);
    const id = newJobId();
    const hadDigest = imageHasDigest(request.image);
    const argsNormalized = request.psql?.argsNormalized ?? '';
    const now = rfc3339Nano(this.d.clock.now());
    this.d.mailbox.tx(() => {
      this.d.store.insertJob({
        job_id: id, prepare_kind: 'psql', image_id: request.image, resolved_image_id: hadDigest ? request.image : null,
        plan_only: request.planOnly, prepare_args_normalized: argsNormalized, request: { ...body }, created_at: now,
      });
      this.events.appendInCommit(id, { type: 'status', status: 'queued' });
      this.d.system.send(actorId(job.PREPARE_KIND, id), { type: 'start', jobId: id, request, argsNormalized, imageHadDigest: hadDigest } satisfies PrepareMessage);
    });
    this.hub.notify(id);
    return id;
  }

  /** Asks an active job to cancel (a terminal or unknown job ignores it). */
  cancel(id: string): void {
    this.d.system.send(actorId(job.PREPARE_KIND, id), { type: 'cancel' } satisfies PrepareMessage);
  }

  /**
   * Asks an active job to cancel and waits until it is terminal (or gone).
   * @throws InvalidArgumentError when it does not stop within `timeoutMs`
   */
  async cancelAndWait(id: string, timeoutMs: number): Promise<void> {
    this.cancel(id);
    const deadline = this.d.clock.now() + timeoutMs;
    for (;;) {
      const cur = this.d.store.getJob(id);
      if (!cur || cur.status === 'succeeded' || cur.status === 'failed') return;
      if (this.d.clock.now() > deadline) throw new InvalidArgumentError('job did not stop in time', { details: id });
      await this.hub.wait(id, 1000);
    }
  }

  /** Deletes a job's rows and its actor; call inside a transaction (the deletion actor's commit). */
  forgetJob(id: string): void { this.effects.forgetJob(id); }

  /** Resolves on the job's next event, after `timeoutMs`, or on abort. */
  waitForEvents(jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<'event' | 'timeout' | 'aborted'> {
    return this.hub.wait(jobId, timeoutMs, signal);
  }

  /** Calls `f` with the job id of every committed event; returns an unsubscribe function. */
  onEvents(f: (jobId: string) => void): () => void { return this.hub.subscribe(f); }

  /** An events stream opened or closed (activity that keeps the engine alive). */
  streamOpened(): void { this.streams++; }
  streamClosed(): void { this.streams--; }

  /** Dry cache hit/miss decision for a prepare request: no job, no container, no events. */
  async explain(body: PrepareBody): Promise<CacheExplainResponse> {
    const request = validatePrepare(body);
    let resolved: string;
    try {
      resolved = (await this.d.containers.resolveImage(request.image, undefined, {}, false)).resolvedId;
    } catch (e) {
      throw new InternalError('internal error', { details: `cannot resolve image: ${errorText(e)}`, cause: e });
    }
    let plan;
    try {
      plan = await this.psql.plan(this.d.store, request, resolved);
    } catch (e) {
      if (hasCode(e, 'invalid_argument')) throw e;
      throw new InternalError('internal error', { details: errorText(e), cause: e });
    }
    const final = plan.steps[plan.steps.length - 1]?.outputStateId;
    if (final !== undefined && this.d.store.hasState(final)) {
      return { decision: 'hit', reason_code: 'exact_state_match', signature: plan.signature, resolved_image_id: resolved, matched_state_id: final };
    }
    return { decision: 'miss', reason_code: 'no_matching_state', signature: plan.signature, resolved_image_id: resolved };
  }

  /** True while event streams are open or jobs hold live runtimes. */
  busy(): boolean { return this.streams > 0 || this.runtimes.size > 0; }
}
