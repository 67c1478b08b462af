/**
 * What the wings report for metrics, as a narrow interface of the kernel: the wings call it and
 * never import a metrics library. The composition root passes the real implementation (the
 * Prometheus registry of `http/metrics.ts`); {@link noTelemetry} is for code built without one.
 * Gauges that are read at scrape time (instances, states, cache usage, queues…) are not reported
 * here: the composition root hands the metrics registry callbacks that read them.
 */

/** How a prepare job ended: `cancelled` is a failed job whose error code is `cancelled`. */
export type JobOutcome = 'succeeded' | 'failed' | 'cancelled';

/** How a job's step ended; `cached` is a build step whose state was found (a cache hit). */
export type StepOutcome = JobOutcome | 'cached';

export interface Telemetry {
  /**
   * A job reached a terminal status, `seconds` after it was submitted.
   * @param kind `prepare:<prepare kind>` or `plan:<prepare kind>` (e.g. `prepare:psql`)
   */
  jobFinished(kind: string, outcome: JobOutcome, seconds: number): void;
  /**
   * A step of a job ended after `seconds` of work.
   * @param kind the prepare kind of a build step (`psql`), or `instance`
   */
  stepFinished(kind: string, outcome: StepOutcome, seconds: number): void;
  /** A build step found its state in the cache (`hit`) or had to build it (miss). */
  cacheLookup(hit: boolean): void;
}

/** Reports nothing. */
export const noTelemetry: Telemetry = {
  jobFinished: () => undefined,
  stepFinished: () => undefined,
  cacheLookup: () => undefined,
};
