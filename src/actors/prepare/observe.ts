/**
 * What the prepare wing reports to {@link Telemetry}: the duration and outcome of each step's work
 * (timed around the work, so a step redone after a crash is timed again), cache hits and misses of
 * build steps, and the duration and outcome of each job once its terminal status is committed.
 */
import type { Clock } from '../../clock.js';
import { hasCode } from '../../errors.js';
import type { JobOutcome, Telemetry } from '../../telemetry.js';
import type { Store } from '../../mailbox/store.js';
import type { PrepareEffect, PrepareWork, StepResult } from './transition.js';

export class PrepareObserver {
  constructor(private readonly d: { telemetry: Telemetry; store: Pick<Store, 'getJob'>; clock: Clock; stepKind: string }) {}

  /**
   * Times the work of a build step (`step`) or of the instance step (`instance`) and reports how it
   * ended; other work is passed through. A completed build step also counts a cache hit (its state
   * was found, or built by a concurrent job) or a miss (it built the state).
   */
  async work<R>(spec: PrepareWork, signal: AbortSignal, run: Promise<R>): Promise<R> {
    if (spec.kind !== 'step' && spec.kind !== 'instance') return run;
    const kind = spec.kind === 'step' ? this.d.stepKind : 'instance';
    const started = this.d.clock.now();
    const seconds = (): number => Math.max(0, this.d.clock.now() - started) / 1000;
    try {
      const r = await run;
      const cached = spec.kind === 'step' && (r as StepResult).wasCached;
      if (spec.kind === 'step') this.d.telemetry.cacheLookup(cached);
      this.d.telemetry.stepFinished(kind, cached ? 'cached' : 'succeeded', seconds());
      return r;
    } catch (e) {
      this.d.telemetry.stepFinished(kind, signal.aborted || hasCode(e, 'cancelled') ? 'cancelled' : 'failed', seconds());
      throw e;
    }
  }

  /** After a commit: a job that became terminal reports its kind, outcome and time since submit. */
  committed(effects: readonly PrepareEffect[]): void {
    for (const e of effects) {
      if (e.t !== 'job' || (e.patch.status !== 'succeeded' && e.patch.status !== 'failed')) continue;
      const row = this.d.store.getJob(e.jobId);
      if (!row) continue; // already removed (retention): nothing to measure from
      const outcome: JobOutcome = e.patch.status === 'succeeded' ? 'succeeded' : e.patch.error?.code === 'cancelled' ? 'cancelled' : 'failed';
      const end = e.patch.finished_at !== undefined ? Date.parse(e.patch.finished_at) : this.d.clock.now();
      const seconds = Math.max(0, end - Date.parse(row.created_at)) / 1000;
      this.d.telemetry.jobFinished(`${row.plan_only ? 'plan' : 'prepare'}:${row.prepare_kind}`, outcome, Number.isFinite(seconds) ? seconds : 0);
    }
  }
}
