#!/usr/bin/env node
/**
 * Scenario benchmark: prepare:psql through the whole engine (HTTP → prepare-job actor → workers →
 * Docker), against a baseline measured in the same run — a fresh container from the same image with
 * the same scripts applied by the host's psql, which is what users do without the engine.
 *
 * Scenarios (engine):
 *   cold-fresh   fresh state store, base not initialised: `-f schema.sql`
 *   cold-base    same store, base initialised, a different script: `-f schema_b.sql`
 *   data-step    `-f schema.sql -f data.sql`: step 1 cached, step 2 built (primes the warm runs)
 *   warm         `-f schema.sql -f data.sql` again, every step cached, RUNS times
 *   parallel     PARALLEL warm prepares submitted at once, PARALLEL_RUNS times
 *   restart      the engine is stopped and started again on the same store, then one warm prepare
 *                (what the CLI sees after the engine's idle shutdown; informational)
 * Baseline: `docker run` + `pg_isready` loop + `psql -f schema.sql` + `psql -f data.sql`, RUNS times
 * (interleaved with the warm runs so that machine noise hits both), then PARALLEL at once.
 *
 * Where the time goes: every job's events (`status`, `task`, engine `log` notes; psql output and
 * heartbeat copies left out) are merged with the daemon's own events for the store's containers
 * (`docker events`: create, start, each exec's start and exit), and each gap between two consecutive
 * markers is a named segment; the breakdown tables show each segment's median over the jobs.
 *
 * Knobs (environment): RUNS=5, PARALLEL=8, PARALLEL_RUNS=1, BACKEND=auto|copy|overlay|btrfs,
 * ROWS=20000, IMAGE=sqlrs-local/postgres:15, PG_BIN=/usr/lib/postgresql/15/bin, BASELINE=1 (0 skips
 * it), KEEP=0 (1 keeps the temp dir; containers and mounts are removed regardless),
 * PREPARE_TIMEOUT_MS=180000, RESULTS_DIR=bench/results.
 *
 * Output: a table on stdout, `<RESULTS_DIR>/<timestamp>.json` (every figure, every job's events and
 * segments) and `<RESULTS_DIR>/<timestamp>.engine.log`. Everything it creates is removed at the end
 * (also on Ctrl-C): the engine's containers are found by the store label, the baseline's by a label
 * of this run, so containers of other engines on the same daemon are never touched. The leak check at
 * the end proves it (exit code 1 if anything is left).
 */
import { spawn, execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, writeFile, rm, copyFile } from 'node:fs/promises';
import { tmpdir, cpus, totalmem, loadavg, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');

function intEnv(name, def, min = 0) {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

const K = {
  runs: intEnv('RUNS', 5, 1),
  parallel: intEnv('PARALLEL', 8, 1),
  parallelRuns: intEnv('PARALLEL_RUNS', 1, 1),
  rows: intEnv('ROWS', 20000, 1),
  backend: (process.env.BACKEND ?? 'auto').trim() || 'auto',
  image: process.env.IMAGE ?? 'sqlrs-local/postgres:15',
  pgBin: process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin',
  baseline: intEnv('BASELINE', 1) !== 0,
  prepareTimeoutMs: intEnv('PREPARE_TIMEOUT_MS', 180_000, 1),
  keep: intEnv('KEEP', 0) !== 0,
  resultsDir: resolve(process.env.RESULTS_DIR ?? join(HERE, 'results')),
};
if (!['auto', 'copy', 'overlay', 'btrfs'].includes(K.backend)) throw new Error(`BACKEND must be auto, copy, overlay or btrfs, got ${K.backend}`);

const TARGETS = { warmMedianMs: 1000, coldSingleStepMs: 4000, parallelWallMs: 4000 };
const LABEL_ENGINE = 'dev.sqlrs.engine';
const LABEL_STORE = 'dev.sqlrs.store';
const LABEL_INSTANCE = 'dev.sqlrs.instance';
const LABEL_BENCH = 'dev.sqlrs.bench';
const RUN_ID = `${Date.now().toString(36)}-${process.pid}`;

// ------------------------------------------------------------------------------------------------
// small helpers

/** Wall-clock milliseconds with sub-millisecond precision (same clock as the engine's event `ts`). */
const now = () => performance.timeOrigin + performance.now();

/** Runs a command; never throws for a non-zero exit (the caller looks at `code`). */
function run(cmd, args, opts = {}) {
  return new Promise((res) => {
    execFile(cmd, args, { maxBuffer: 16 << 20, timeout: opts.timeout ?? 120_000, env: opts.env ?? process.env }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      res({ code, stdout: String(stdout), stderr: String(stderr) || (err && code === -1 ? err.message : '') });
    });
  });
}

async function must(cmd, args, opts) {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
  return r;
}

function sorted(xs) { return [...xs].sort((a, b) => a - b); }
/** Nearest-rank percentile. */
function pct(xs, p) {
  if (xs.length === 0) return null;
  const s = sorted(xs);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
function median(xs) {
  if (xs.length === 0) return null;
  const s = sorted(xs);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
function stats(xs) {
  return { n: xs.length, median: median(xs), p90: pct(xs, 90), min: xs.length ? Math.min(...xs) : null, max: xs.length ? Math.max(...xs) : null, all: xs.map(r1) };
}
const r1 = (x) => (x === null || x === undefined ? x : Math.round(x * 10) / 10);
const fmt = (x) => (x === null || x === undefined ? '—' : String(Math.round(x)));
const ratio = (a, b) => (a == null || b == null || b === 0 ? null : Math.round((a / b) * 100) / 100);

function say(msg) { process.stderr.write(`bench: ${msg}\n`); }

/** RFC 3339 (nanosecond) → epoch ms. */
function tsMs(ts) {
  return Date.parse(String(ts).replace(/(\.\d{3})\d*Z$/, '$1Z'));
}

// ------------------------------------------------------------------------------------------------
// the workload

const SCHEMA_SQL = `-- sqlrs bench schema: a small shop
CREATE TABLE customers (
  id         bigint PRIMARY KEY,
  email      text NOT NULL UNIQUE,
  name       text NOT NULL,
  country    char(2) NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_country_idx ON customers (country);
CREATE TABLE products (
  id          bigint PRIMARY KEY,
  sku         text NOT NULL UNIQUE,
  title       text NOT NULL,
  price_cents integer NOT NULL CHECK (price_cents >= 0)
);
CREATE TABLE orders (
  id          bigint PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers (id),
  status      text NOT NULL CHECK (status IN ('new', 'paid', 'shipped', 'cancelled')),
  created_at  timestamptz NOT NULL
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_created_idx ON orders (created_at);
CREATE TABLE order_items (
  order_id   bigint NOT NULL REFERENCES orders (id),
  product_id bigint NOT NULL REFERENCES products (id),
  qty        integer NOT NULL CHECK (qty > 0),
  PRIMARY KEY (order_id, product_id)
);
CREATE INDEX order_items_product_idx ON order_items (product_id);
CREATE VIEW order_totals AS
  SELECT o.id, o.customer_id, sum(i.qty * p.price_cents) AS total_cents
  FROM orders o JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id
  GROUP BY o.id, o.customer_id;
`;
const SCHEMA_TABLES = 4;

function dataSql(rows) {
  return `-- sqlrs bench data: ${rows} customers, ${rows} orders, ${rows * 2} order items
INSERT INTO customers (id, email, name, country, created_at)
  SELECT g, 'user' || g || '@example.com', 'User ' || g, (ARRAY['DE','FR','US','GB','PL'])[1 + g % 5],
         timestamptz '2024-01-01' + g * interval '1 minute'
  FROM generate_series(1, ${rows}) AS g;
INSERT INTO products (id, sku, title, price_cents)
  SELECT g, 'SKU-' || lpad(g::text, 6, '0'), 'Product ' || g, 100 + (g * 37) % 10000
  FROM generate_series(1, 500) AS g;
INSERT INTO orders (id, customer_id, status, created_at)
  SELECT g, 1 + (g * 7919) % ${rows}, (ARRAY['new','paid','shipped','cancelled'])[1 + g % 4],
         timestamptz '2024-06-01' + g * interval '30 seconds'
  FROM generate_series(1, ${rows}) AS g;
INSERT INTO order_items (order_id, product_id, qty)
  SELECT o, 1 + (o * 31) % 250 + (k - 1) * 250, 1 + (o + k) % 5
  FROM generate_series(1, ${rows}) AS o, generate_series(1, 2) AS k;
ANALYZE;
`;
}

async function writeScripts(dir) {
  await mkdir(dir, { recursive: true });
  const f = {
    schema: join(dir, 'schema.sql'),
    // Same statements, different bytes: a distinct content hash, so a distinct (uncached) step.
    schemaB: join(dir, 'schema_b.sql'),
    data: join(dir, 'data.sql'),
  };
  await writeFile(f.schema, SCHEMA_SQL);
  await writeFile(f.schemaB, `-- variant b (${RUN_ID})\n${SCHEMA_SQL}`);
  await writeFile(f.data, dataSql(K.rows));
  return f;
}

// ------------------------------------------------------------------------------------------------
// the engine process

class EngineProc {
  constructor(dir) {
    this.dir = dir;
    this.store = join(dir, 'store');
    this.runDir = join(dir, 'run');
    this.engineJson = join(this.runDir, 'engine.json');
    this.logPath = join(this.runDir, 'logs', 'engine.log');
    this.stdioPath = join(this.runDir, 'engine.stdio.log');
    this.label = createHash('sha256').update(resolve(this.store)).digest('hex').slice(0, 16);
  }

  async start() {
    await mkdir(this.store, { recursive: true, mode: 0o700 });
    await mkdir(this.runDir, { recursive: true, mode: 0o700 });
    if (K.backend !== 'auto') {
      await writeFile(join(this.store, 'config.json'), JSON.stringify({ snapshot: { backend: K.backend } }, null, 2) + '\n');
    }
    const main = join(ROOT, 'dist', 'main.js');
    if (!existsSync(main)) throw new Error(`${main} is missing: run \`npm run build\` in ${ROOT} first`);
    const out = openSync(this.stdioPath, 'a');
    const t0 = now();
    this.proc = spawn(process.execPath, [join(ROOT, 'bin', 'sqlrs-engine.js'), '--listen', '127.0.0.1:0', '--write-engine-json', this.engineJson, '--idle-timeout', '0'], {
      env: { ...process.env, SQLRS_STATE_STORE: this.store },
      stdio: ['ignore', out, out],
    });
    closeSync(out);
    this.exited = new Promise((r) => this.proc.once('exit', (code, signal) => { this.proc = undefined; r({ code, signal }); }));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (!this.proc) throw new Error(`engine exited during start-up: ${this.tail(this.stdioPath)}`);
      if (Date.now() > deadline) throw new Error(`engine did not start within 30 s: ${this.tail(this.stdioPath)}`);
      if (existsSync(this.engineJson)) {
        try {
          const info = JSON.parse(readFileSync(this.engineJson, 'utf8'));
          this.base = `http://${String(info.endpoint).replace(/^https?:\/\//, '')}`;
          this.token = info.authToken;
          const h = await fetch(`${this.base}/v1/health`);
          if (h.ok && (await h.json()).instanceId === info.instanceId) break;
        } catch { /* not yet */ }
      }
      await sleep(20);
    }
    this.startMs = now() - t0;
    return this.startMs;
  }

  tail(path, n = 20) {
    try { return readFileSync(path, 'utf8').trim().split('\n').slice(-n).join('\n'); } catch { return '(no output)'; }
  }

  async req(method, path, body) {
    const res = await fetch(this.base + path, {
      method,
      signal: AbortSignal.timeout(30_000),
      headers: { Authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.status, json, text };
  }

  /** The backend the engine chose (its log says so at start-up). */
  chosenBackend() {
    const m = /snapshot backend .*backend=(\w+)/.exec(this.tail(this.logPath, 100000));
    return m ? m[1] : 'unknown';
  }

  async stop() {
    if (!this.proc) return;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc?.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(t);
  }
}

// ------------------------------------------------------------------------------------------------
// the daemon's own timeline: `docker events` for this store's containers

/**
 * Collects the daemon's events (container create/start, every exec's create/start/exit) for the
 * containers of one state store. The engine's `log` events say "start container" and "container
 * started"; these say what happened in between (and during psql, stop and snapshot).
 */
class DockerEvents {
  constructor(label) {
    this.events = [];
    this.execs = new Map();
    this.proc = spawn('docker', ['events', '--since', String(Math.floor(Date.now() / 1000) - 1), '--filter', `label=${LABEL_STORE}=${label}`, '--format', '{{json .}}'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let buf = '';
    this.proc.stdout.setEncoding('utf8');
    this.proc.stdout.on('data', (chunk) => {
      buf += chunk;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try { this.add(JSON.parse(line)); } catch { /* not an event */ }
      }
    });
    this.exited = new Promise((r) => this.proc.once('exit', r));
  }

  add(e) {
    if (e.Type !== 'container') return;
    const attrs = e.Actor?.Attributes ?? {};
    const [action, ...rest] = String(e.Action).split(': ');
    const cmd = rest.join(': ').trim();
    if (attrs.execID && cmd) this.execs.set(attrs.execID, shortCmd(cmd));
    this.events.push({ t: Number(BigInt(e.timeNano) / 1000n) / 1000, action, exec: attrs.execID, exitCode: attrs.exitCode, job: attrs['dev.sqlrs.job'], role: attrs['dev.sqlrs.role'], container: e.id });
  }

  /** Markers of one job: its labelled containers, plus unlabelled ones (initdb) inside its window when `solo`. */
  markers(job, solo) {
    const out = [];
    for (const e of this.events) {
      if (e.t < job.t0 || e.t > job.tEnd) continue; // e.g. the bench's own removal of the instance afterwards
      const mine = e.job === job.jobId || (solo && e.job === undefined);
      if (!mine || !['create', 'start', 'exec_create', 'exec_start', 'exec_die', 'die', 'destroy'].includes(e.action)) continue;
      const who = e.role === 'initdb' ? 'initdb container' : 'container';
      let name;
      if (e.action.startsWith('exec_')) {
        const c = this.execs.get(e.exec) ?? 'exec';
        name = e.action === 'exec_die' ? `${c} exited${e.exitCode && e.exitCode !== '0' ? ` (${e.exitCode})` : ''}` : `${e.action} ${c}`;
      } else name = `${who} ${e.action}`;
      out.push({ name: `[docker] ${name}`, t: e.t });
    }
    return out;
  }

  async stop() {
    if (this.stopped) return this.stopped;
    this.stopped = (async () => {
      await sleep(300); // let trailing events arrive
      this.proc.kill('SIGTERM');
      await this.exited;
    })();
    return this.stopped;
  }
}

/** `pg_ctl -D … -w start` → `pg_ctl start`; `pg_isready -h …` → `pg_isready`. */
function shortCmd(cmd) {
  const w = cmd.split(/\s+/);
  const bin = w[0].split('/').pop();
  if (bin === 'pg_ctl') return `pg_ctl ${w.find((x) => ['start', 'stop', 'status', 'restart', 'promote'].includes(x)) ?? ''}`.trim();
  if (bin === 'sh' && w[1] === '-c') return `sh -c ${w[2] ?? ''}`;
  return bin;
}

// ------------------------------------------------------------------------------------------------
// one prepare through the API

function isTerminal(events) {
  const i = events.findIndex((e) => e.ev.type === 'status' && (e.ev.status === 'succeeded' || e.ev.status === 'failed'));
  return i >= 0 && events.slice(i).some((e) => e.ev.type === 'result' || e.ev.type === 'error');
}

/** Reads the NDJSON events stream to its end, reconnecting with `Range` like the CLI does. */
async function readEvents(engine, url) {
  const got = [];
  for (let attempt = 0; attempt < 5; attempt++) {
    const headers = { Authorization: `Bearer ${engine.token}` };
    if (got.length > 0) headers.Range = `events=${got.length}-`;
    const res = await fetch(engine.base + url, { headers, signal: AbortSignal.timeout(K.prepareTimeoutMs) });
    if (res.status !== 200 && res.status !== 206) throw new Error(`events stream: HTTP ${res.status}: ${await res.text()}`);
    let skip = got.length;
    if (res.status === 206) {
      const m = /events (\d+)-/.exec(res.headers.get('content-range') ?? '');
      skip = m ? got.length - Number(m[1]) : 0;
    }
    const dec = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body) {
      const rx = now();
      buf += dec.decode(chunk, { stream: true });
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line === '') continue;
        if (skip > 0) { skip--; continue; }
        got.push({ ev: JSON.parse(line), rx });
      }
    }
    if (isTerminal(got)) return got;
  }
  throw new Error('events stream ended without terminal status');
}

/** Submits one prepare and follows it to its `result` (or `error`) event. */
async function prepare(engine, psqlArgs) {
  const t0 = now();
  const r = await engine.req('POST', '/v1/prepare-jobs', { prepare_kind: 'psql', image_id: K.image, psql_args: psqlArgs });
  const t201 = now();
  if (r.status !== 201 && r.status !== 202) throw new Error(`submit: HTTP ${r.status}: ${r.text}`);
  const jobId = r.json.job_id;
  const events = await readEvents(engine, r.json.events_url ?? `/v1/prepare-jobs/${jobId}/events`);
  const end = events.find((e) => e.ev.type === 'result' || e.ev.type === 'error');
  const result = end.ev.type === 'result' ? end.ev.result : undefined;
  return {
    jobId, psqlArgs, ok: result !== undefined, t0, t201, tEnd: end.rx, wallMs: end.rx - t0,
    dsn: result?.dsn, instanceId: result?.instance_id, error: end.ev.type === 'error' ? end.ev.error : undefined,
    events: events.map((e) => ({ ...e.ev, rx: r1(e.rx) })),
  };
}

function expectOk(job, what) {
  if (!job.ok) throw new Error(`${what} failed: ${JSON.stringify(job.error)}`);
  return job;
}

// ------------------------------------------------------------------------------------------------
// phase breakdown from the events

/** Replaces ids and digests so that equal phases of different jobs get the same name. */
function normalize(msg) {
  return msg.replace(/sha256:[0-9a-f]{12,}/g, 'sha256:…').replace(/\b[0-9a-f]{12,}\b/g, '…').replace(/\/[^\s]*\//g, '…/');
}

/**
 * A job's timeline as named markers: client submit, every status/task change, every engine `log`
 * note (psql output lines and heartbeat copies left out), the client's receipt of the result.
 */
function markers(job, docker, solo) {
  const out = [{ name: 'client submit', t: job.t0 }, ...(docker ? docker.markers(job, solo) : [])];
  let last = '';
  const seenRunning = new Set();
  for (const ev of job.events) {
    let name;
    if (ev.type === 'status') name = `status ${ev.status}`;
    else if (ev.type === 'task') {
      name = `${ev.task_id} ${ev.status}`;
      if (ev.status === 'running') { if (seenRunning.has(ev.task_id)) continue; seenRunning.add(ev.task_id); }
    } else if (ev.type === 'log') {
      if (ev.message.startsWith('psql: ') && ev.message !== 'psql: start') continue;
      name = `"${normalize(ev.message)}"`;
    } else name = ev.type;
    if (name === last) continue; // heartbeat copy
    last = name;
    out.push({ name, t: tsMs(ev.ts) });
  }
  out.push({ name: 'client got result', t: job.tEnd });
  return out.sort((a, b) => a.t - b.t);
}

/** Consecutive marker pairs with their durations. */
function segments(job, docker, solo) {
  const m = markers(job, docker, solo);
  const out = [];
  for (let i = 0; i + 1 < m.length; i++) out.push({ name: `${m[i].name} → ${m[i + 1].name}`, ms: r1(m[i + 1].t - m[i].t) });
  return out;
}

/**
 * Each segment's time per job (a segment that repeats in a job, like a pg_isready poll, is summed;
 * `n` is how often it occurred in the median job), then the median over the jobs, in order of first
 * appearance.
 */
function breakdown(jobs, docker, solo = false) {
  const by = new Map();
  for (const j of jobs) {
    const per = new Map();
    for (const s of segments(j, docker, solo)) {
      const cur = per.get(s.name) ?? { ms: 0, n: 0 };
      per.set(s.name, { ms: cur.ms + s.ms, n: cur.n + 1 });
    }
    for (const [name, v] of per) {
      if (!by.has(name)) by.set(name, []);
      by.get(name).push(v);
    }
  }
  const total = median(jobs.map((j) => j.wallMs));
  return [...by.entries()].map(([name, xs]) => {
    const m = median(xs.map((x) => x.ms));
    return { name, jobs: xs.length, n: median(xs.map((x) => x.n)), median: r1(m), max: r1(Math.max(...xs.map((x) => x.ms))), share: total ? r1((m / total) * 100) : null };
  });
}

// ------------------------------------------------------------------------------------------------
// the baseline: a fresh container, pg_isready, host psql

const hostBin = (name) => (existsSync(join(K.pgBin, name)) ? join(K.pgBin, name) : name);

async function baselineOnce(scripts) {
  const t0 = now();
  const r = await must('docker', ['run', '-d', '--label', `${LABEL_BENCH}=${RUN_ID}`, '-e', 'POSTGRES_HOST_AUTH_METHOD=trust', '-p', '127.0.0.1::5432', K.image]);
  const id = r.stdout.trim();
  const tRun = now();
  const p = await must('docker', ['port', id, '5432/tcp']);
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(p.stdout)?.[1]);
  const tPort = now();
  const deadline = Date.now() + 60_000;
  let probes = 0;
  for (;;) {
    probes++;
    const q = await run(hostBin('pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-t', '1']);
    if (q.code === 0) break;
    if (Date.now() > deadline) throw new Error(`baseline container ${id} not ready within 60 s`);
    await sleep(50);
  }
  const tReady = now();
  const psql = (f) => must(hostBin('psql'), ['-X', '-q', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-f', f]);
  await psql(scripts.schema);
  const tSchema = now();
  await psql(scripts.data);
  const tData = now();
  return {
    id, port, probes,
    schemaOnlyMs: r1(tSchema - t0), fullMs: r1(tData - t0),
    phases: { dockerRun: r1(tRun - t0), dockerPort: r1(tPort - tRun), untilReady: r1(tReady - tPort), psqlSchema: r1(tSchema - tReady), psqlData: r1(tData - tSchema) },
  };
}

async function removeContainers(ids) {
  if (ids.length > 0) await run('docker', ['rm', '-f', '-v', ...ids]);
}

// ------------------------------------------------------------------------------------------------
// checks and clean-up

async function psqlValue(dsn, sql) {
  const r = await must(hostBin('psql'), ['-X', '-A', '-t', '-d', dsn, '-c', sql]);
  return r.stdout.trim();
}

const instanceDrops = { api: 0, docker: 0 };
/** Drops an instance: the API if it has the route, else the instance's container (its dir goes with the store). */
async function dropInstance(engine, instanceId) {
  if (!instanceId) return;
  const r = await engine.req('DELETE', `/v1/instances/${instanceId}`);
  if (r.status === 200) { instanceDrops.api++; return; }
  const ps = await run('docker', ['ps', '-aq', '--filter', `label=${LABEL_STORE}=${engine.label}`, '--filter', `label=${LABEL_INSTANCE}=${instanceId}`]);
  await removeContainers(ps.stdout.split('\n').filter(Boolean));
  instanceDrops.docker++;
}

function mountsUnder(dir) {
  const unescape = (s) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean)
    .map((l) => unescape(l.split(' ')[4] ?? ''))
    .filter((mp) => mp === dir || mp.startsWith(dir + '/'));
}

async function containersOf(engine) {
  const a = engine ? await run('docker', ['ps', '-aq', '--filter', `label=${LABEL_STORE}=${engine.label}`]) : { stdout: '' };
  const b = await run('docker', ['ps', '-aq', '--filter', `label=${LABEL_BENCH}=${RUN_ID}`]);
  return [...a.stdout.split('\n'), ...b.stdout.split('\n')].filter(Boolean);
}

/** Stops the engine and removes every container, mount and file this run created. */
async function cleanUp(tmp, engine) {
  try { await engine?.stop(); } catch (e) { say(`engine stop: ${e.message}`); }
  await removeContainers(await containersOf(engine));
  for (const mp of mountsUnder(tmp).sort((a, b) => b.length - a.length)) {
    const u = await run('umount', [mp]);
    if (u.code !== 0) await run('umount', ['-l', mp]);
  }
  if (!K.keep) await rm(tmp, { recursive: true, force: true }).catch((e) => say(`rm ${tmp}: ${e.message}`));
  const leaks = { containers: (await containersOf(engine)).length, mounts: mountsUnder(tmp).length, tempDirLeft: existsSync(tmp) && !K.keep };
  return leaks;
}

// ------------------------------------------------------------------------------------------------
// report

function table(rows) {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r, ri) => r.map((c, i) => (i === 0 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join('  ') + (ri === 0 ? '\n' + w.map((n) => '-'.repeat(n)).join('  ') : '')).join('\n');
}

function printBreakdown(title, rows, limit = 30) {
  const shown = rows.filter((r) => r.median >= 5).slice(0, limit);
  process.stdout.write(`\n${title} (segments ≥ 5 ms)\n` + table([['segment (event → next event)', 'times', 'median ms', 'max ms', '% of wall'], ...shown.map((r) => [r.name, r.n, fmt(r.median), fmt(r.max), r.share ?? '—'])]) + '\n');
}

// ------------------------------------------------------------------------------------------------
// main

async function main() {
  const startedAt = new Date();
  const tmp = await mkdtemp(join(tmpdir(), 'sqlrs-bench-'));
  let engine;
  let docker;
  let cleaned = false;
  const finish = async () => {
    if (cleaned) return undefined;
    cleaned = true;
    await docker?.stop().catch(() => {});
    return cleanUp(tmp, engine);
  };
  process.once('SIGINT', () => { say('interrupted; cleaning up'); void finish().finally(() => process.exit(130)); });

  const out = { meta: {}, knobs: K, engine: {}, baseline: {}, checks: {}, summary: {}, targets: TARGETS };
  try {
    // preflight
    const dv = await must('docker', ['version', '--format', '{{.Server.Version}}']);
    await must('docker', ['image', 'inspect', '--format', '{{.Id}}', K.image]);
    await must(hostBin('psql'), ['--version']);
    const git = await run('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']);
    const dirty = await run('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src']);
    out.meta = {
      startedAt: startedAt.toISOString(), node: process.version, kernel: release(), cpus: cpus().length, memMb: Math.round(totalmem() / 2 ** 20),
      loadavgAtStart: loadavg().map(r1), docker: dv.stdout.trim(), image: K.image, git: git.stdout.trim(), srcDirty: dirty.stdout.trim() !== '', tmp,
    };
    const scripts = await writeScripts(join(tmp, 'scripts'));
    const A = { schema: ['-f', scripts.schema], schemaB: ['-f', scripts.schemaB], full: ['-f', scripts.schema, '-f', scripts.data] };

    say(`temp dir ${tmp}; knobs ${JSON.stringify({ RUNS: K.runs, PARALLEL: K.parallel, PARALLEL_RUNS: K.parallelRuns, BACKEND: K.backend, ROWS: K.rows })}`);
    engine = new EngineProc(tmp);
    docker = new DockerEvents(engine.label);
    const startMs = await engine.start();
    out.engine.startMs = r1(startMs);
    out.engine.backend = engine.chosenBackend();
    say(`engine up in ${fmt(startMs)} ms at ${engine.base}, snapshot backend ${out.engine.backend}`);

    // cold
    const coldFresh = expectOk(await prepare(engine, A.schema), 'cold prepare (fresh store)');
    say(`cold (fresh store) ${fmt(coldFresh.wallMs)} ms`);
    out.checks.coldTables = Number(await psqlValue(coldFresh.dsn, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"));
    await dropInstance(engine, coldFresh.instanceId);
    const coldBase = expectOk(await prepare(engine, A.schemaB), 'cold prepare (base initialised)');
    say(`cold (base initialised) ${fmt(coldBase.wallMs)} ms`);
    await dropInstance(engine, coldBase.instanceId);
    const dataStep = expectOk(await prepare(engine, A.full), 'data step prepare');
    say(`data step (step 1 cached) ${fmt(dataStep.wallMs)} ms`);
    await dropInstance(engine, dataStep.instanceId);

    // warm, interleaved with the baseline
    const warm = [];
    const base = [];
    for (let i = 0; i < K.runs; i++) {
      const w = expectOk(await prepare(engine, A.full), `warm prepare ${i + 1}`);
      warm.push(w);
      if (i === 0) {
        out.checks.warmDsn = w.dsn;
        out.checks.warmCounts = (await psqlValue(w.dsn, 'SELECT (SELECT count(*) FROM customers) || \' \' || (SELECT count(*) FROM order_items)')).split(' ').map(Number);
      }
      await dropInstance(engine, w.instanceId);
      let bmsg = '';
      if (K.baseline) {
        const b = await baselineOnce(scripts);
        base.push(b);
        if (i === 0) out.checks.baselineCustomers = Number(await psqlValue(`postgres://postgres@127.0.0.1:${b.port}/postgres`, 'SELECT count(*) FROM customers'));
        await removeContainers([b.id]);
        bmsg = `, baseline ${fmt(b.fullMs)} ms`;
      }
      say(`warm ${i + 1}/${K.runs}: ${fmt(w.wallMs)} ms${bmsg}`);
    }

    // parallel
    const par = [];
    const basePar = [];
    for (let r = 0; r < K.parallelRuns; r++) {
      const t0 = now();
      const jobs = await Promise.all(Array.from({ length: K.parallel }, () => prepare(engine, A.full)));
      const wallMs = now() - t0;
      jobs.forEach((j, i) => expectOk(j, `parallel prepare ${i + 1}`));
      par.push({ wallMs, jobs });
      if (r === 0) {
        const ports = new Set(jobs.map((j) => new URL(j.dsn).port));
        out.checks.parallelDistinctPorts = ports.size;
        out.checks.parallelCustomers = Number(await psqlValue(jobs[jobs.length - 1].dsn, 'SELECT count(*) FROM customers'));
      }
      for (const j of jobs) await dropInstance(engine, j.instanceId);
      let bmsg = '';
      if (K.baseline) {
        const b0 = now();
        const settled = await Promise.allSettled(Array.from({ length: K.parallel }, () => baselineOnce(scripts)));
        const bWall = now() - b0;
        const okRuns = settled.filter((s) => s.status === 'fulfilled').map((s) => s.value);
        await removeContainers(okRuns.map((b) => b.id));
        const bad = settled.find((s) => s.status === 'rejected');
        if (bad) throw bad.reason;
        basePar.push({ wallMs: bWall, runs: okRuns });
        bmsg = `, baseline ${fmt(bWall)} ms`;
      }
      say(`${K.parallel} parallel warm: ${fmt(wallMs)} ms wall${bmsg}`);
    }

    // the CLI stops an idle engine; the first prepare after a restart has only in-memory caches cold
    let warmRestart;
    try {
      await engine.stop();
      out.engine.restartMs = r1(await engine.start());
      warmRestart = expectOk(await prepare(engine, A.full), 'warm prepare after an engine restart');
      say(`warm after an engine restart: ${fmt(warmRestart.wallMs)} ms`);
      await dropInstance(engine, warmRestart.instanceId);
    } catch (e) {
      // informational only: keep the figures measured so far
      out.engine.warmRestartError = String(e?.message ?? e);
      say(`warm after an engine restart FAILED: ${out.engine.warmRestartError}`);
      warmRestart = undefined;
    }

    // figures
    await docker.stop();
    const keepJob = (j, solo) => ({ ...j, segments: segments(j, docker, solo) });
    out.engine.coldFresh = { ...keepJob(coldFresh, true), breakdown: breakdown([coldFresh], docker, true) };
    out.engine.coldBase = { ...keepJob(coldBase, true), breakdown: breakdown([coldBase], docker, true) };
    out.engine.dataStep = { ...keepJob(dataStep, true), breakdown: breakdown([dataStep], docker, true) };
    if (warmRestart) out.engine.warmRestart = { ...keepJob(warmRestart, true), breakdown: breakdown([warmRestart], docker, true) };
    out.engine.warm = { stats: stats(warm.map((j) => j.wallMs)), breakdown: breakdown(warm, docker), jobs: warm.map((j) => keepJob(j, true)) };
    out.engine.parallel = par.map((p) => ({ wallMs: r1(p.wallMs), perJob: stats(p.jobs.map((j) => j.wallMs)), breakdown: breakdown(p.jobs, docker), jobs: p.jobs.map((j) => keepJob(j, false)) }));
    out.engine.instanceDrops = instanceDrops;
    if (K.baseline) {
      out.baseline.runs = base;
      out.baseline.full = stats(base.map((b) => b.fullMs));
      out.baseline.schemaOnly = stats(base.map((b) => b.schemaOnlyMs));
      out.baseline.phases = Object.fromEntries(Object.keys(base[0].phases).map((k) => [k, r1(median(base.map((b) => b.phases[k])))]));
      out.baseline.parallel = basePar.map((p) => ({ wallMs: r1(p.wallMs), perJob: stats(p.runs.map((b) => b.fullMs)), phases: Object.fromEntries(Object.keys(p.runs[0].phases).map((k) => [k, r1(median(p.runs.map((b) => b.phases[k])))])) }));
    }

    const parWall = median(par.map((p) => p.wallMs));
    const parJob = median(par.flatMap((p) => p.jobs.map((j) => j.wallMs)));
    const bFull = out.baseline.full?.median ?? null;
    const bSchema = out.baseline.schemaOnly?.median ?? null;
    const bParWall = basePar.length ? median(basePar.map((p) => p.wallMs)) : null;
    const bParJob = basePar.length ? median(basePar.flatMap((p) => p.runs.map((b) => b.fullMs))) : null;
    const verdict = (v, t) => (v <= t ? 'met' : 'MISSED');
    const S = out.summary = {
      warmAfterRestartMs: warmRestart ? r1(warmRestart.wallMs) : null,
      coldFreshMs: r1(coldFresh.wallMs), coldBaseMs: r1(coldBase.wallMs), dataStepMs: r1(dataStep.wallMs),
      warmMedianMs: r1(out.engine.warm.stats.median), warmP90Ms: r1(out.engine.warm.stats.p90),
      parallelWallMs: r1(parWall), parallelPerJobMedianMs: r1(parJob),
      baselineSchemaOnlyMedianMs: r1(bSchema), baselineFullMedianMs: r1(bFull), baselineFullP90Ms: r1(out.baseline.full?.p90),
      baselineParallelWallMs: r1(bParWall), baselineParallelPerJobMedianMs: r1(bParJob),
      verdicts: {
        warmMedian: verdict(out.engine.warm.stats.median, TARGETS.warmMedianMs),
        coldSingleStep: verdict(coldFresh.wallMs, TARGETS.coldSingleStepMs),
        parallelWall: verdict(parWall, TARGETS.parallelWallMs),
      },
    };
    out.checks.ok = out.checks.coldTables === SCHEMA_TABLES && out.checks.warmCounts?.[0] === K.rows && out.checks.warmCounts?.[1] === 2 * K.rows
      && out.checks.parallelDistinctPorts === K.parallel && out.checks.parallelCustomers === K.rows
      && (!K.baseline || out.checks.baselineCustomers === K.rows);

    const rows = [
      ['scenario', 'engine ms', 'baseline ms', 'engine/baseline', 'target ms', 'verdict'],
      ['cold single-step, fresh store (schema.sql)', fmt(S.coldFreshMs), fmt(bSchema), ratio(S.coldFreshMs, bSchema) ?? '—', TARGETS.coldSingleStepMs, S.verdicts.coldSingleStep],
      ['cold single-step, base initialised (schema_b.sql)', fmt(S.coldBaseMs), fmt(bSchema), ratio(S.coldBaseMs, bSchema) ?? '—', '', ''],
      ['data step built, step 1 cached (schema+data)', fmt(S.dataStepMs), fmt(bFull), ratio(S.dataStepMs, bFull) ?? '—', '', ''],
      [`warm prepare median (n=${K.runs})`, fmt(S.warmMedianMs), fmt(bFull), ratio(S.warmMedianMs, bFull) ?? '—', TARGETS.warmMedianMs, S.verdicts.warmMedian],
      [`warm prepare p90 (n=${K.runs})`, fmt(S.warmP90Ms), fmt(out.baseline.full?.p90), ratio(S.warmP90Ms, out.baseline.full?.p90) ?? '—', '', ''],
      ['warm prepare, first after an engine restart', fmt(S.warmAfterRestartMs), fmt(bFull), ratio(S.warmAfterRestartMs, bFull) ?? '—', '', ''],
      [`${K.parallel} parallel warm, wall`, fmt(parWall), fmt(bParWall), ratio(parWall, bParWall) ?? '—', TARGETS.parallelWallMs, S.verdicts.parallelWall],
      [`${K.parallel} parallel warm, per-job median`, fmt(parJob), fmt(bParJob), ratio(parJob, bParJob) ?? '—', '', ''],
    ];
    process.stdout.write(`\nsqlrs-engine prepare bench — ${out.meta.startedAt}, backend ${out.engine.backend}, ${out.meta.cpus} cpus, load ${out.meta.loadavgAtStart.join(' ')} → ${loadavg().map(r1).join(' ')}, engine start ${fmt(startMs)} ms\n\n`);
    process.stdout.write(table(rows) + '\n');
    if (K.baseline) {
      process.stdout.write(`\nbaseline phases (median, ms): ${Object.entries(out.baseline.phases).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}\n`);
      process.stdout.write(`baseline parallel phases (median, ms): ${Object.entries(out.baseline.parallel[0].phases).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}\n`);
    }
    process.stdout.write(`checks: cold tables ${out.checks.coldTables}/${SCHEMA_TABLES}, warm rows ${out.checks.warmCounts?.join('/')} (want ${K.rows}/${2 * K.rows}), parallel distinct ports ${out.checks.parallelDistinctPorts}/${K.parallel}, parallel rows ${out.checks.parallelCustomers}, baseline rows ${out.checks.baselineCustomers ?? '—'} → ${out.checks.ok ? 'ok' : 'FAILED'}\n`);
    printBreakdown('cold single-step, fresh store: where the time goes', out.engine.coldFresh.breakdown, 60);
    printBreakdown('cold single-step, base initialised', out.engine.coldBase.breakdown, 60);
    printBreakdown(`warm prepare (median over ${K.runs} jobs)`, out.engine.warm.breakdown);
    printBreakdown(`${K.parallel} parallel warm (median over ${K.parallel} jobs)`, out.engine.parallel[0].breakdown);
    if (warmRestart) printBreakdown('warm prepare, first after an engine restart', out.engine.warmRestart.breakdown);
  } catch (e) {
    out.error = String(e?.stack ?? e);
    say(`FAILED: ${e?.message ?? e}`);
    process.exitCode = 1;
  } finally {
    await mkdir(K.resultsDir, { recursive: true });
    const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
    if (engine && existsSync(engine.logPath)) await copyFile(engine.logPath, join(K.resultsDir, `${stamp}.engine.log`)).catch(() => {});
    out.meta.loadavgAtEnd = loadavg().map(r1);
    out.meta.finishedAt = new Date().toISOString();
    out.leaks = await finish();
    if (out.leaks) {
      process.stdout.write(`\nclean-up: containers left ${out.leaks.containers}, mounts left ${out.leaks.mounts}, temp dir left ${out.leaks.tempDirLeft}; instances dropped via API ${instanceDrops.api}, via docker ${instanceDrops.docker}\n`);
      if (out.leaks.containers || out.leaks.mounts || out.leaks.tempDirLeft) process.exitCode = 1;
    }
    const file = join(K.resultsDir, `${stamp}.json`);
    await writeFile(file, JSON.stringify(out, null, 2) + '\n');
    process.stdout.write(`results: ${file}\n`);
  }
}

await main();
