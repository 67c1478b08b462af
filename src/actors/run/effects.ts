/**
 * The run-session actor's effect interpreter. Run events are never stored, only the lifecycle events
 * of a run's start and end (inside the commit): after the commit they are stamped and published to
 * the run's in-process channel (`start` is pushed, `exit`/`error` finish it), or straight to the
 * run's watchers once its client is gone; a finished session's actor row is forgotten.
 */
import type { Logger } from '../../log.js';
import type { Clock } from '../../clock.js';
import { rfc3339Nano } from '../../clock.js';
import type { ActorId } from '../../ids.js';
import type { Mailbox } from '../../mailbox/mailbox.js';
import type { RunChannels, RunEvent } from './channel.js';
import type { RunEffect, RunEventBody } from './transition.js';
import type { RunWatch } from './watch.js';
import type { LifecycleSink } from '../lifecycle/service.js';

/** The wire event of an actor event (`type` first, then `ts`). */
export function stamp(ev: RunEventBody, ts: string): RunEvent {
  switch (ev.type) {
    case 'start': return { type: 'start', ts, instance_id: ev.instance_id };
    case 'exit': return { type: 'exit', ts, exit_code: ev.exit_code };
    case 'error': return { type: 'error', ts, error: ev.error };
  }
}

export interface RunEffectsDeps {
  mailbox: Mailbox; channels: RunChannels; log: Logger; clock: Clock;
  /** `run.started` / `run.finished`, appended in the commit of the run's start and end. */
  lifecycle: LifecycleSink;
  /** The runs' watchers: they get the events a channel no longer takes (its client is gone). */
  watch: RunWatch;
}

export class RunEffects {
  constructor(private readonly d: RunEffectsDeps) {}

  /** Inside the commit: the run's lifecycle events (`run.finished` also ends a run that failed before it started). */
  apply(e: RunEffect): void {
    if (e.t !== 'event') return;
    const ev = e.event;
    const id = e.runId;
    if (ev.type === 'start') {
      const kind = this.d.watch.info(id)?.kind;
      this.d.lifecycle.append({ event: 'run.started', id, run_id: id, instance_id: ev.instance_id, ...(kind === undefined ? {} : { kind }) });
    } else {
      this.d.lifecycle.append({ event: 'run.finished', id, run_id: id, ...(ev.type === 'exit' ? { exit_code: ev.exit_code } : { error_code: ev.error.code }) });
    }
  }

  committed(id: ActorId, effects: readonly RunEffect[]): void {
    this.d.lifecycle.committed();
    for (const e of effects) {
      if (e.t === 'forget') {
        this.d.mailbox.forgetActor(id);
        continue;
      }
      const ch = this.d.channels.get(e.runId);
      const ev = e.event;
      if (ev.type === 'exit') this.d.log.info('run exited', { run: e.runId, exit_code: ev.exit_code });
      if (ev.type === 'error') this.d.log.info('run failed', { run: e.runId, error: `${ev.error.message}${ev.error.details ? `: ${ev.error.details}` : ''}`, client: ch ? 'connected' : 'gone' });
      const stamped = stamp(ev, rfc3339Nano(this.d.clock.now()));
      if (!ch || ch.cancelled || ch.finished) { this.d.watch.record(e.runId, stamped); continue; }
      if (stamped.type === 'start') ch.push(stamped);
      else ch.finish(stamped);
    }
  }
}
