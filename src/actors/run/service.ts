/**
 * The run wing's face: validates a run request against the store's instances, opens the run's
 * output channel and starts a run-session actor; cancels runs whose client went away or could not
 * keep up; and registers the run-session logic with the actor system.
 */
import * as v from 'valibot';
import type { Logger } from '../../log.js';
import { rfc3339Nano, type Clock } from '../../clock.js';
import { actorId, randomHex } from '../../ids.js';
import { errorText } from '../../errors.js';
import type { Mailbox } from '../../mailbox/mailbox.js';
import type { Store } from '../../mailbox/store.js';
import type { FsPool } from '../../workers/pool.js';
import type { ContainerRuntime } from '../../workers/protocol.js';
import type { ActorSystem } from '../system/system.js';
import type { ActorLogic } from '../system/logic.js';
import type { StoreLayout } from '../layout.js';
import { validateRunRequest, type InstanceLookup, type RunRequestInput } from './args.js';
import { RunChannels, type RunChannel, type RunChannelOptions } from './channel.js';
import { RunEffects } from './effects.js';
import { RunWorker } from './work.js';
import { RunWatch, type RunInfo } from './watch.js';
import type { LifecycleSink } from '../lifecycle/service.js';
import * as session from './transition.js';
import type { CancelReason, RunEffect, RunMessage, RunState, RunWork } from './transition.js';

export type { RunChannel, RunEvent } from './channel.js';
export type { RunRequestInput } from './args.js';
export type { RunWatch, RunInfo, RunRecord, RunSlice } from './watch.js';

/** A string where the reference decoder accepts `null` (it becomes ""). */
const Str = v.pipe(v.nullable(v.string()), v.transform((s) => s ?? ''));

/** `POST /v1/runs` body as the reference decoder accepts it. */
export const RunBodySchema = v.nullable(v.object({
  instance_ref: v.optional(v.nullable(v.string())),
  kind: v.optional(v.nullable(v.string())),
  command: v.optional(v.nullable(v.string())),
  args: v.optional(v.nullable(v.array(Str))),
  stdin: v.optional(v.nullable(v.string())),
  steps: v.optional(v.nullable(v.array(v.nullable(v.object({
    args: v.optional(v.nullable(v.array(Str))),
    stdin: v.optional(v.nullable(v.string())),
  }))))),
}));

/** A decoded body as the validator takes it: a `null` step is an empty one, like the reference decoder. */
export function runInput(body: v.InferOutput<typeof RunBodySchema>): RunRequestInput {
  const { steps, ...rest } = body ?? {};
  return steps === undefined || steps === null ? rest : { ...rest, steps: steps.map((s) => s ?? {}) };
}

export interface RunServiceDeps {
  store: Store;
  mailbox: Mailbox;
  system: ActorSystem;
  fs: FsPool;
  containers: ContainerRuntime;
  layout: StoreLayout;
  log: Logger;
  clock: Clock;
  channels?: RunChannelOptions;
  /** `run.started` / `run.finished` lifecycle events. */
  lifecycle: LifecycleSink;
}

export class RunService {
  private readonly channels: RunChannels;
  private readonly worker: RunWorker;
  private readonly effects: RunEffects;
  private readonly lookup: InstanceLookup;
  /** Every run's numbered events, kept in a bounded tail for WebSocket subscribers. */
  readonly watch = new RunWatch();

  constructor(private readonly d: RunServiceDeps) {
    this.channels = new RunChannels(d.channels ?? {});
    this.worker = new RunWorker({
      store: d.store, channels: this.channels, containers: d.containers, fs: d.fs, root: d.layout.root,
      labels: (extra) => d.layout.labels(extra), log: d.log, clock: d.clock,
    });
    this.effects = new RunEffects({ mailbox: d.mailbox, channels: this.channels, log: d.log, clock: d.clock, lifecycle: d.lifecycle, watch: this.watch });
    this.lookup = { byId: (id) => d.store.getInstance(id), idOfName: (name) => d.store.instanceIdOfName(name) };
    d.system.register(this.logic());
  }

  private logic(): ActorLogic<RunState, RunMessage, RunWork, RunEffect> {
    return {
      kind: session.RUN_KIND,
      ...session.transitions,
      perform: (spec, signal) => this.worker.perform(spec, signal),
      // Run events are not stored (only their lifecycle events are): they are published to the
      // run's channel after the commit.
      apply: (e) => this.effects.apply(e),
      committed: (id, effects) => this.effects.committed(id, effects),
    };
  }

  /**
   * Validates a run request and starts it: opens its channel and messages a new run-session actor.
   * @throws InvalidArgumentError / NotFoundError / ConflictError (the CLI's messages), ClosedError, MailboxFullError
   */
  start(input: RunRequestInput): RunChannel {
    const run = validateRunRequest(input, this.lookup);
    const runId = randomHex(16);
    const ch = this.channels.open(runId, { instanceId: run.instanceId, steps: run.steps });
    ch.onOverflow = () => this.cancel(runId, 'overflow');
    this.watch.open({ run_id: runId, instance_id: run.instanceId, kind: run.kind, started_at: rfc3339Nano(this.d.clock.now()) });
    ch.onEvent = (e) => this.watch.record(runId, e);
    try {
      this.d.system.send(actorId(session.RUN_KIND, runId), {
        type: 'start', runId, instanceId: run.instanceId, runtimeId: run.runtimeId, kind: run.kind, stepCount: run.steps.length,
      } satisfies RunMessage);
    } catch (err) {
      this.channels.close(runId);
      this.watch.forget(runId);
      throw err;
    }
    this.d.log.debug('run started', { run: runId, instance: run.instanceId, kind: run.kind, steps: run.steps.length });
    return ch;
  }

  /** Cancels a run (its client went away, or could not keep up). */
  cancel(runId: string, reason: CancelReason = 'client_gone'): void {
    try {
      this.d.system.send(actorId(session.RUN_KIND, runId), { type: 'cancel', reason } satisfies RunMessage);
    } catch (err) {
      this.d.log.warn('cannot cancel run', { run: runId, error: errorText(err) });
    }
  }

  /** The response is over: the run's channel is no longer read. */
  release(runId: string): void { this.channels.close(runId); }

  /** Runs currently streaming against an instance. */
  activeRuns(instanceId: string): number { return this.channels.activeOn(instanceId); }

  /** `GET /v1/runs`: the runs in progress. */
  listRuns(): RunInfo[] { return this.watch.active(); }

  busy(): boolean { return this.channels.size > 0; }

  close(): void { this.channels.closeAll(); }
}
