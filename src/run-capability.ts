/**
 * The run capability: the run-session actor behaviour, its work, the in-process output channels
 * and the `POST /v1/runs` handler. It uses the container runtime and filesystem pool of the prepare
 * capability (one container worker per engine).
 */
import type { Capability, Engine } from './engine.js';
import type { ContainerRuntime } from './workers/container-types.js';
import type { FsPool } from './workers/pool.js';
import type { ActorBehavior } from './actors/runtime.js';
import * as session from './actors/run-session.js';
import type { CancelReason, RunEffect, RunEventBody, RunMessage, RunState, RunWork } from './actors/run-session.js';
import { RunChannels, type RunChannel, type RunChannelOptions, type RunEvent } from './actors/run-channel.js';
import { RunWorker } from './actors/run-work.js';
import type { InstanceLookup, ValidRun } from './actors/run-args.js';
import { runHandlers } from './http/run-routes.js';
import { actorId, randomHex, type ActorId } from './ids.js';
import { errorText } from './errors.js';
import { rfc3339Nano } from './clock.js';

/** The wire event of an actor event (`type` first, then `ts`). */
function stamp(ev: RunEventBody, ts: string): RunEvent {
  switch (ev.type) {
    case 'start': return { type: 'start', ts, instance_id: ev.instance_id };
    case 'exit': return { type: 'exit', ts, exit_code: ev.exit_code };
    case 'error': return { type: 'error', ts, error: ev.error };
  }
}

/** What runs borrow from the prepare capability (read after its `init`). */
export interface RunResources {
  readonly containers: ContainerRuntime;
  readonly fs: FsPool;
  readonly runtimes: { labels(extra: Record<string, string>): Record<string, string> };
}

export class RunCapability implements Capability {
  readonly name = 'run';
  readonly channels: RunChannels;
  private engine!: Engine;
  private worker!: RunWorker;

  constructor(private readonly resources: RunResources, opts: RunChannelOptions = {}) {
    this.channels = new RunChannels(opts);
  }

  init(e: Engine): void {
    this.engine = e;
    const r = this.resources;
    this.worker = new RunWorker({
      store: e.store, channels: this.channels, containers: r.containers, fs: r.fs, root: e.root,
      labels: (extra) => r.runtimes.labels(extra), log: e.log.child({ c: 'run' }),
    });
    e.runtime.register(this.behavior());
  }

  private behavior(): ActorBehavior<RunState, RunMessage, RunWork, RunEffect> {
    const e = this.engine;
    const log = e.log.child({ c: 'run' });
    return {
      kind: session.RUN_KIND,
      restore: session.restore,
      persist: session.persist,
      transition: session.transition,
      isTerminal: session.isTerminal,
      onFailure: session.onFailure,
      perform: (spec, signal) => this.worker.perform(spec, signal),
      // Run events are not stored: they are published to the run's channel after the commit.
      apply: () => undefined,
      committed: (id: ActorId, effects) => {
        for (const d of effects) {
          if (d.t === 'forget') {
            e.mailbox.forgetActor(id);
            continue;
          }
          const ch = this.channels.get(d.runId);
          const ev = d.event;
          if (ev.type === 'exit') log.info('run exited', { run: d.runId, exit_code: ev.exit_code });
          if (ev.type === 'error') log.info('run failed', { run: d.runId, error: `${ev.error.message}${ev.error.details ? `: ${ev.error.details}` : ''}`, client: ch ? 'connected' : 'gone' });
          if (!ch) continue;
          const stamped = stamp(ev, rfc3339Nano());
          if (stamped.type === 'start') ch.push(stamped);
          else ch.finish(stamped);
        }
      },
    };
  }

  /** Starts a validated run: opens its channel and messages a new run-session actor. */
  start(run: ValidRun): RunChannel {
    const runId = randomHex(16);
    const ch = this.channels.open(runId, { instanceId: run.instanceId, steps: run.steps });
    ch.onOverflow = () => this.cancel(runId, 'overflow');
    try {
      this.engine.runtime.send(actorId(session.RUN_KIND, runId), {
        type: 'start', runId, instanceId: run.instanceId, runtimeId: run.runtimeId, kind: run.kind, stepCount: run.steps.length,
      } satisfies RunMessage);
    } catch (err) {
      this.channels.close(runId);
      throw err;
    }
    this.engine.log.debug('run started', { run: runId, instance: run.instanceId, kind: run.kind, steps: run.steps.length });
    return ch;
  }

  /** Cancels a run (its client went away, or could not keep up). */
  cancel(runId: string, reason: CancelReason): void {
    try {
      this.engine.runtime.send(actorId(session.RUN_KIND, runId), { type: 'cancel', reason } satisfies RunMessage);
    } catch (err) {
      this.engine.log.warn('cannot cancel run', { run: runId, error: errorText(err) });
    }
  }

  /** Runs currently streaming against an instance (e.g. for deletion). */
  activeRuns(instanceId: string): number {
    return this.channels.activeOn(instanceId);
  }

  handlers(): ReturnType<typeof runHandlers> {
    const st = this.engine.store;
    const lookup: InstanceLookup = {
      byId: (id) => st.getInstance(id),
      idOfName: (name) => st.instanceIdOfName(name),
    };
    return runHandlers({
      lookup,
      start: (run) => this.start(run),
      cancel: (runId) => this.cancel(runId, 'client_gone'),
      release: (runId) => this.channels.close(runId),
    });
  }

  busy(): boolean { return this.channels.size > 0; }

  close(): Promise<void> {
    this.channels.closeAll();
    return Promise.resolve();
  }
}
