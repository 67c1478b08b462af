/**
 * Prometheus metrics (prom-client) for `GET /metrics`. The wings report durations and cache
 * lookups through the kernel's {@link Telemetry} interface, which this registry implements; gauges
 * of things that exist anyway (rows in the store, cache usage, open sockets, queues) are read at
 * scrape time through {@link MetricsSources} callbacks wired by the composition root, so nothing is
 * counted twice and nothing drifts. Each engine has its own registry (no global state).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { JobOutcome, StepOutcome, Telemetry } from '../telemetry.js';
import type { CacheUsage } from '../actors/cache/service.js';

/** Where scrape-time gauges are read from. Each is called once per scrape. */
export interface MetricsSources {
  /** Rows in the store: instances, states and prepare jobs by status. */
  counts(): { instances: number; states: number; jobs: Record<string, number> };
  /** Cache usage and limits; may reject (invalid capacity settings, an unreadable store). */
  cache(): Promise<CacheUsage>;
  /** Open WebSocket connections. */
  webSocketClients(): number;
  /** Undelivered mailbox messages by actor kind. */
  mailboxDepths(): Record<string, number>;
  /** Worker tasks accepted and not settled (running and waiting), by queue. */
  workerQueues(): Record<string, number>;
  /** Slow work the actor system is running now. */
  runningWork(): number;
}

/** Job and step durations: from a cached step (well under a second) to a long build. */
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600];
const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed'];

export class Metrics implements Telemetry {
  readonly registry = new Registry();
  private readonly jobs: Histogram<'kind' | 'outcome'>;
  private readonly steps: Histogram<'kind' | 'outcome'>;
  private readonly cacheHits: Counter;
  private readonly cacheMisses: Counter;
  private readonly scrapeErrors: Counter<'source'>;
  private readonly gauges: {
    instances: Gauge; states: Gauge; jobsByStatus: Gauge<'status'>; wsClients: Gauge; mailbox: Gauge<'kind'>;
    queues: Gauge<'queue'>; runningWork: Gauge;
    usage: Gauge; effectiveMax: Gauge; configuredMax: Gauge; reserve: Gauge; high: Gauge; low: Gauge; storeSize: Gauge; storeFree: Gauge;
  };

  constructor(private readonly sources: MetricsSources) {
    const r = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.jobs = new Histogram({
      name: 'sqlrs_job_duration_seconds', help: 'Jobs from submit to their terminal status, by kind (prepare:psql, plan:psql) and outcome (succeeded, failed, cancelled).',
      labelNames: ['kind', 'outcome'], buckets: DURATION_BUCKETS, registers: r,
    });
    this.steps = new Histogram({
      name: 'sqlrs_step_duration_seconds', help: 'Work of job steps, by kind (psql: a build step; instance: the instance step) and outcome (succeeded, failed, cancelled; cached: the state was found).',
      labelNames: ['kind', 'outcome'], buckets: DURATION_BUCKETS, registers: r,
    });
    this.cacheHits = new Counter({ name: 'sqlrs_cache_hits_total', help: 'Build steps whose state was found in the cache (or built by a concurrent job).', registers: r });
    this.cacheMisses = new Counter({ name: 'sqlrs_cache_misses_total', help: 'Build steps that had to build their state.', registers: r });
    // Registered ahead of the ready-instance pool so that dashboards can use them: 0 until it exists.
    new Counter({ name: 'sqlrs_pool_hits_total', help: 'Prepares served from the ready-instance pool (0: there is no pool yet).', registers: r });
    new Counter({ name: 'sqlrs_pool_misses_total', help: 'Prepares the ready-instance pool could not serve (0: there is no pool yet).', registers: r });
    this.scrapeErrors = new Counter({ name: 'sqlrs_scrape_errors_total', help: 'Scrapes whose gauges of a source could not be read (their last values are kept).', labelNames: ['source'], registers: r });
    const gauge = <L extends string = never>(name: string, help: string, labelNames: L[] = []): Gauge<L> => new Gauge<L>({ name, help, labelNames, registers: r });
    this.gauges = {
      instances: gauge('sqlrs_instances', 'Instances in the store.'),
      states: gauge('sqlrs_states', 'States in the store.'),
      jobsByStatus: gauge('sqlrs_jobs', 'Prepare jobs in the store, by status.', ['status']),
      wsClients: gauge('sqlrs_websocket_clients', 'Open WebSocket connections.'),
      mailbox: gauge('sqlrs_mailbox_depth', 'Undelivered mailbox messages, by actor kind.', ['kind']),
      queues: gauge('sqlrs_worker_queue_length', 'Worker tasks accepted and not settled (running and waiting), by queue (fs: the fs thread pool; containers: container API calls).', ['queue']),
      runningWork: gauge('sqlrs_actor_work_running', 'Slow work (builds, clones, container calls) the actors are running.'),
      usage: gauge('sqlrs_cache_usage_bytes', 'Bytes used by the state cache.'),
      effectiveMax: gauge('sqlrs_cache_effective_max_bytes', 'Effective cache maximum: filesystem size minus the reserve, capped by cache.capacity.maxBytes.'),
      configuredMax: gauge('sqlrs_cache_configured_max_bytes', 'cache.capacity.maxBytes (0: no cap).'),
      reserve: gauge('sqlrs_cache_reserve_bytes', 'Free space the cache keeps on the filesystem.'),
      high: gauge('sqlrs_cache_high_watermark_ratio', 'Eviction starts above this fraction of the effective maximum.'),
      low: gauge('sqlrs_cache_low_watermark_ratio', 'Eviction stops below this fraction of the effective maximum.'),
      storeSize: gauge('sqlrs_store_size_bytes', 'Size of the filesystem of the state store.'),
      storeFree: gauge('sqlrs_store_free_bytes', 'Free bytes on the filesystem of the state store.'),
    };
  }

  jobFinished(kind: string, outcome: JobOutcome, seconds: number): void { this.jobs.observe({ kind, outcome }, seconds); }
  stepFinished(kind: string, outcome: StepOutcome, seconds: number): void { this.steps.observe({ kind, outcome }, seconds); }
  cacheLookup(hit: boolean): void { (hit ? this.cacheHits : this.cacheMisses).inc(); }

  /** Reads the scrape-time gauges, then renders every metric in the text format. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    await this.refresh();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private async refresh(): Promise<void> {
    const g = this.gauges;
    const s = this.sources;
    const counts = s.counts();
    g.instances.set(counts.instances);
    g.states.set(counts.states);
    for (const status of JOB_STATUSES) g.jobsByStatus.set({ status }, counts.jobs[status] ?? 0);
    g.wsClients.set(s.webSocketClients());
    g.mailbox.reset();
    for (const [kind, n] of Object.entries(s.mailboxDepths())) g.mailbox.set({ kind }, n);
    for (const [queue, n] of Object.entries(s.workerQueues())) g.queues.set({ queue }, n);
    g.runningWork.set(s.runningWork());
    try {
      const c = await s.cache();
      g.usage.set(c.usageBytes);
      g.effectiveMax.set(c.effectiveMaxBytes);
      g.configuredMax.set(c.configuredMaxBytes);
      g.reserve.set(c.reserveBytes);
      g.high.set(c.highWatermark);
      g.low.set(c.lowWatermark);
      g.storeSize.set(c.storeTotalBytes);
      g.storeFree.set(c.storeFreeBytes);
    } catch {
      // GET /v1/cache/status says why; the scrape still answers with everything else.
      this.scrapeErrors.inc({ source: 'cache' });
    }
  }
}
