/**
 * `GET /metrics` against a real engine child process, the real container runtime and the local
 * PostgreSQL image: the token is required; the answer is the Prometheus text format (checked line
 * by line); a real prepare moves the job and step histograms and counts a cache miss, an identical
 * second prepare counts a cache hit and a `cached` step, a job with an unknown image counts as
 * failed and a cancelled one as cancelled; the instance, state and job gauges equal what the API
 * lists; cache gauges equal the cache status; the WebSocket gauge rises while a socket is open.
 * Skipped without a daemon, unless SQLRS_REQUIRE_DOCKER=1, where it fails.
 */
import t from 'tap';
import WebSocket from 'ws';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEngine, type EngineProcess } from '../../helpers/engine.js';
import { needDocker, startPrepEngine, submit, waitJob } from '../../helpers/prepare.js';

t.setTimeout(900_000);

/** One sample: metric name, labels, value. */
interface Sample { name: string; labels: Record<string, string>; value: number }

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: -?\\d+)?$`);
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;

/**
 * Parses the Prometheus text exposition format 0.0.4 strictly: every line is a `# HELP`, a
 * `# TYPE` or a sample of a family whose TYPE came first, with well-formed labels and a number.
 * @throws on the first line that is not
 */
function parseExposition(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const familyOf = (name: string): string | undefined =>
    [name, name.replace(/_(bucket|sum|count)$/, '')].find((n) => types.has(n));
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    const where = `line ${i + 1}: ${line}`;
    if (line.startsWith('# HELP ')) { if (!new RegExp(`^# HELP ${NAME} `).test(line)) throw new Error(`bad HELP, ${where}`); continue; }
    if (line.startsWith('# TYPE ')) {
      const m = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line);
      if (!m?.[1] || !m[2]) throw new Error(`bad TYPE, ${where}`);
      types.set(m[1], m[2]);
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m?.[1] || m[3] === undefined) throw new Error(`bad sample, ${where}`);
    if (!familyOf(m[1])) throw new Error(`sample before its TYPE, ${where}`);
    const labels: Record<string, string> = {};
    const raw = m[2] ?? '';
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < raw.length) {
      const l = LABEL.exec(raw);
      if (!l?.[1] || l[2] === undefined) throw new Error(`bad labels, ${where}`);
      labels[l[1]] = l[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    // Values are Go floats (Prometheus parses them with strconv.ParseFloat: NaN and Inf in any case).
    const special = /^([+-]?)(inf|infinity|nan)$/i.exec(m[3]);
    const value = special ? (special[2]?.toLowerCase() === 'nan' ? NaN : special[1] === '-' ? -Infinity : Infinity) : Number(m[3]);
    if (!special && (m[3].trim() === '' || Number.isNaN(value))) throw new Error(`bad value, ${where}`);
    samples.push({ name: m[1], labels, value });
  }
  return { types, samples };
}

/** A scrape: the value of a sample by name and labels (0 when absent, as Prometheus reads it). */
class Scrape {
  constructor(readonly types: Map<string, string>, readonly samples: Sample[]) {}
  value(name: string, labels: Record<string, string> = {}): number {
    const s = this.samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v) && Object.keys(x.labels).length === Object.keys(labels).length);
    return s?.value ?? 0;
  }
  has(name: string, labels: Record<string, string> = {}): boolean {
    return this.samples.some((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  }
}

async function scrape(eng: EngineProcess): Promise<Scrape> {
  const r = await eng.fetch('/metrics');
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
  const { types, samples } = parseExposition(r.body);
  return new Scrape(types, samples);
}

const job = (kind: string, outcome: string): Record<string, string> => ({ kind, outcome });

if (needDocker(t)) {
  t.test('metrics', async (t) => {
    const eng = await startPrepEngine(t);
    const unique = `select ${Date.now()} as marker`;
    const request = { psql_args: ['-c', unique] };

    t.test('need the token: 401 with an empty body without it', async (t) => {
      const r = await eng.fetchRaw('/metrics');
      t.equal(r.status, 401);
      t.equal(r.body, '');
      const wrong = await eng.fetchRaw('/metrics', { headers: { Authorization: `Bearer ${'0'.repeat(64)}` } });
      t.equal(wrong.status, 401);
    });

    t.test('are the Prometheus text format with every documented family', async (t) => {
      const r = await eng.fetch('/metrics');
      t.equal(r.status, 200);
      t.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8', 'prom-client\'s content type');
      const parsed = parseExposition(r.body);
      const s = new Scrape(parsed.types, parsed.samples);
      const expected: [string, string][] = [
        ['sqlrs_job_duration_seconds', 'histogram'], ['sqlrs_step_duration_seconds', 'histogram'],
        ['sqlrs_cache_hits_total', 'counter'], ['sqlrs_cache_misses_total', 'counter'],
        ['sqlrs_pool_hits_total', 'counter'], ['sqlrs_pool_misses_total', 'counter'],
        ['sqlrs_instances', 'gauge'], ['sqlrs_states', 'gauge'], ['sqlrs_jobs', 'gauge'], ['sqlrs_websocket_clients', 'gauge'],
        ['sqlrs_mailbox_depth', 'gauge'], ['sqlrs_worker_queue_length', 'gauge'], ['sqlrs_actor_work_running', 'gauge'],
        ['sqlrs_cache_usage_bytes', 'gauge'], ['sqlrs_cache_effective_max_bytes', 'gauge'], ['sqlrs_cache_configured_max_bytes', 'gauge'],
        ['sqlrs_cache_reserve_bytes', 'gauge'], ['sqlrs_cache_high_watermark_ratio', 'gauge'], ['sqlrs_cache_low_watermark_ratio', 'gauge'],
        ['sqlrs_store_size_bytes', 'gauge'], ['sqlrs_store_free_bytes', 'gauge'], ['process_cpu_seconds_total', 'counter'],
      ];
      for (const [name, type] of expected) t.equal(s.types.get(name), type, `${name} is a ${type}`);
      t.equal(s.value('sqlrs_pool_hits_total'), 0, 'no pool yet: pool hits stay 0');
      t.equal(s.value('sqlrs_pool_misses_total'), 0, 'no pool yet: pool misses stay 0');
      for (const kind of ['prepare', 'run', 'delete']) t.ok(s.has('sqlrs_mailbox_depth', { kind }), `mailbox depth of ${kind} actors`);
      for (const queue of ['fs', 'containers']) t.ok(s.has('sqlrs_worker_queue_length', { queue }), `queue length of ${queue}`);
      t.ok(s.value('sqlrs_store_size_bytes') > 0, 'the store filesystem has a size');
      t.equal(s.value('sqlrs_cache_high_watermark_ratio'), 0.9, 'default high watermark');
    });

    t.test('a prepare, an identical one, a failed and a cancelled job move the histograms and cache counters', async (t) => {
      const before = await scrape(eng);
      const count = (s: Scrape, name: string, labels: Record<string, string>): number => s.value(`${name}_count`, labels);
      const first = await waitJob(eng, await submit(eng, request));
      t.equal(first.status, 'succeeded', 'first prepare succeeded');
      const afterFirst = await scrape(eng);
      t.equal(count(afterFirst, 'sqlrs_job_duration_seconds', job('prepare:psql', 'succeeded')) - count(before, 'sqlrs_job_duration_seconds', job('prepare:psql', 'succeeded')), 1, 'one succeeded prepare:psql job observed');
      t.ok(afterFirst.value('sqlrs_job_duration_seconds_sum', job('prepare:psql', 'succeeded')) > 0, 'its duration is positive');
      t.equal(count(afterFirst, 'sqlrs_step_duration_seconds', job('psql', 'succeeded')) - count(before, 'sqlrs_step_duration_seconds', job('psql', 'succeeded')), 1, 'one built psql step');
      t.equal(count(afterFirst, 'sqlrs_step_duration_seconds', job('instance', 'succeeded')) - count(before, 'sqlrs_step_duration_seconds', job('instance', 'succeeded')), 1, 'one instance step');
      t.equal(afterFirst.value('sqlrs_cache_misses_total') - before.value('sqlrs_cache_misses_total'), 1, 'the new step was a cache miss');
      t.equal(afterFirst.value('sqlrs_cache_hits_total') - before.value('sqlrs_cache_hits_total'), 0, 'and no hit');

      const second = await waitJob(eng, await submit(eng, request));
      t.equal(second.status, 'succeeded', 'identical prepare succeeded');
      const afterSecond = await scrape(eng);
      t.equal(afterSecond.value('sqlrs_cache_hits_total') - afterFirst.value('sqlrs_cache_hits_total'), 1, 'the identical step was a cache hit');
      t.equal(afterSecond.value('sqlrs_cache_misses_total') - afterFirst.value('sqlrs_cache_misses_total'), 0, 'and no miss');
      t.equal(count(afterSecond, 'sqlrs_step_duration_seconds', job('psql', 'cached')) - count(afterFirst, 'sqlrs_step_duration_seconds', job('psql', 'cached')), 1, 'a cached psql step');
      t.equal(count(afterSecond, 'sqlrs_job_duration_seconds', job('prepare:psql', 'succeeded')) - count(before, 'sqlrs_job_duration_seconds', job('prepare:psql', 'succeeded')), 2, 'two succeeded jobs in all');

      const failed = await waitJob(eng, await submit(eng, { image_id: 'sqlrs-test/does-not-exist:1', psql_args: ['-c', 'select 1'] }));
      t.equal(failed.status, 'failed');
      const afterFailed = await scrape(eng);
      t.equal(count(afterFailed, 'sqlrs_job_duration_seconds', job('prepare:psql', 'failed')) - count(before, 'sqlrs_job_duration_seconds', job('prepare:psql', 'failed')), 1, 'one failed job');

      const slowId = await submit(eng, { psql_args: ['-c', `select pg_sleep(60) /* ${Date.now()} */`] });
      const events = await eng.stream(`/v1/prepare-jobs/${slowId}/events`);
      for await (const line of events.lines()) {
        const e = JSON.parse(line) as { type: string; task_id?: string; status?: string };
        if (e.type === 'task' && e.task_id === 'execute-0' && e.status === 'running') break;
      }
      const cancel = await eng.fetch(`/v1/prepare-jobs/${slowId}/cancel`, { method: 'POST' });
      t.equal(cancel.status, 202, 'cancel accepted while the step runs');
      events.close();
      const cancelled = await waitJob(eng, slowId);
      t.equal(cancelled.error?.code, 'cancelled', 'the job ended cancelled');
      const afterCancel = await scrape(eng);
      t.equal(count(afterCancel, 'sqlrs_job_duration_seconds', job('prepare:psql', 'cancelled')) - count(before, 'sqlrs_job_duration_seconds', job('prepare:psql', 'cancelled')), 1, 'one cancelled job');
      t.equal(count(afterCancel, 'sqlrs_step_duration_seconds', job('psql', 'cancelled')) - count(before, 'sqlrs_step_duration_seconds', job('psql', 'cancelled')), 1, 'one cancelled psql step');
    });

    t.test('instance, state and job gauges equal the API lists; cache gauges equal the cache status', async (t) => {
      const s = await scrape(eng);
      const instances = (await eng.fetch('/v1/instances')).json<unknown[]>();
      const states = (await eng.fetch('/v1/states')).json<unknown[]>();
      const jobs = (await eng.fetch('/v1/prepare-jobs')).json<{ status: string }[]>();
      t.ok(instances.length >= 2, `there are instances (${instances.length})`);
      t.equal(s.value('sqlrs_instances'), instances.length, 'sqlrs_instances = GET /v1/instances');
      t.equal(s.value('sqlrs_states'), states.length, 'sqlrs_states = GET /v1/states');
      for (const status of ['queued', 'running', 'succeeded', 'failed']) {
        t.equal(s.value('sqlrs_jobs', { status }), jobs.filter((j) => j.status === status).length, `sqlrs_jobs{status="${status}"} = the job list`);
      }
      const cache = (await eng.fetch('/v1/cache/status')).json<{ usage_bytes: number; effective_max_bytes: number; reserve_bytes: number; store_total_bytes: number }>();
      t.equal(s.value('sqlrs_cache_usage_bytes'), cache.usage_bytes, 'usage = cache status');
      t.ok(cache.usage_bytes > 0, 'the states occupy bytes');
      t.equal(s.value('sqlrs_cache_effective_max_bytes'), cache.effective_max_bytes, 'effective max = cache status');
      t.equal(s.value('sqlrs_cache_reserve_bytes'), cache.reserve_bytes, 'reserve = cache status');
      t.equal(s.value('sqlrs_store_size_bytes'), cache.store_total_bytes, 'store size = cache status');
    });

    t.test('a scrape still answers when the cache figures cannot be read, and counts the error', async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'sqlrs-metrics-'));
      mkdirSync(join(dir, 'state-store'));
      writeFileSync(join(dir, 'state-store', 'config.json'), JSON.stringify({ cache: { capacity: { highWatermark: 0.5, lowWatermark: 0.7 } } }));
      const bad = await startEngine(t, { dir }); // stopped at teardown, before the directory goes
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      t.equal((await bad.fetch('/v1/cache/status')).status, 500, 'the cache status cannot be computed either');
      const first = await scrape(bad);
      t.equal(first.value('sqlrs_scrape_errors_total', { source: 'cache' }), 1, 'one failed read of the cache figures');
      t.equal(first.types.get('sqlrs_instances'), 'gauge', 'the other metrics are there');
      t.equal((await scrape(bad)).value('sqlrs_scrape_errors_total', { source: 'cache' }), 2, 'counted per scrape');
    });

    t.test('the WebSocket clients gauge rises while a socket is open and falls when it closes', async (t) => {
      const before = (await scrape(eng)).value('sqlrs_websocket_clients');
      const ws = new WebSocket(`ws://${eng.endpoint}/v1/ws`, { headers: { Authorization: `Bearer ${eng.token}` } });
      await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
      t.equal((await scrape(eng)).value('sqlrs_websocket_clients'), before + 1, 'one more while open');
      // The client's close event follows the server's close handshake, which runs the server's close handler.
      await new Promise<void>((resolve) => { ws.once('close', () => resolve()); ws.close(); });
      t.equal((await scrape(eng)).value('sqlrs_websocket_clients'), before, 'back when closed');
    });
  });
}
