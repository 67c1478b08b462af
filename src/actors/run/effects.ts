/**
 * The run-session actor's effect interpreter. Run events are never stored: after the commit they
 * are stamped and published to the run's in-process channel (`start` is pushed, `exit`/`error`
 * finish it); a finished session's actor row is forgotten.
 */
import type { Logger } from '../../log.js';
import type { Clock } from '../../clock.js';
import { rfc3339Nano } from '../../clock.js';
import type { ActorId } from '../../ids.js';
import type { Mailbox } from '../../mailbox/mailbox.js';
import type { RunChannels, RunEvent } from './channel.js';
import type { RunEffect, RunEventBody } from './transition.js';

/** The wire event of an actor event (`type` first, then `ts`). */
export function stamp(ev: RunEventBody, ts: string): RunEvent {
  switch (ev.type) {
    case 'start': return { type: 'start', ts, instance_id: ev.instance_id };
    case 'exit': return { type: 'exit', ts, exit_code: ev.exit_code };
    case 'error': return { type: 'error', ts, error: ev.error };
  }
}

export interface RunEffectsDeps { mailbox: Mailbox; channels: RunChannels; log: Logger; clock: Clock }

export class RunEffects {
  constructor(private readonly d: RunEffectsDeps) {}

  committed(id: ActorId, effects: readonly RunEffect[]): void {
    for (const e of effects) {
      if (e.t === 'forget') {
        this.d.mailbox.forgetActor(id);
        continue;
      }
      const ch = this.d.channels.get(e.runId);
      const ev = e.event;
      if (ev.type === 'exit') this.d.log.info('run exited', { run: e.runId, exit_code: ev.exit_code });
      if (ev.type === 'error') this.d.log.info('run failed', { run: e.runId, error: `${ev.error.message}${ev.error.details ? `: ${ev.error.details}` : ''}`, client: ch ? 'connected' : 'gone' });
      if (!ch) continue;
      const stamped = stamp(ev, rfc3339Nano(this.d.clock.now()));
      if (stamped.type === 'start') ch.push(stamped);
      else ch.finish(stamped);
    }
  }
}
