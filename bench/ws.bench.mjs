#!/usr/bin/env node
/**
 * Scenario benchmark: WebSocket fan-out. WATCHERS clients (spread over THREADS worker threads of
 * this process, so the clients' own work is not the bottleneck) subscribe to every job's events
 * (`{"op":"subscribe","job":"*"}`) on a real engine started from `dist/`, then JOBS prepares are
 * submitted at once. Every watcher must receive every event of every job, complete and in order;
 * the bench reports the delivery latency of each frame (receipt time − the frame's `ts`, which is
 * the commit time of the event) as p50 / p99 / max, and the engine's resident memory.
 *
 * Checks: per watcher, `seq` strictly increases and the number of frames is the number of events
 * the jobs have (summed over their NDJSON streams, read after they ended); all watchers received
 * byte-identical frames (one digest); and one watcher's frames, grouped by job, equal each job's
 * NDJSON events exactly. Any failure exits with code 1.
 *
 * Knobs (environment): WATCHERS=1000, THREADS=4, JOBS=20, JOB_KIND=plan (plan-only prepares:
 * resolve the image, plan, succeed — every event, no container) | full (real prepares, one cached
 * step after the first, each creating an instance that is deleted afterwards) | fail (an image that
 * does not exist: fails at resolution, no Docker needed), IMAGE=sqlrs-local/postgres:15,
 * TIMEOUT_MS=300000, RESULTS_DIR=bench/results.
 *
 * Output: a summary on stdout and `<RESULTS_DIR>/ws-<timestamp>.json`.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir, cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');

// ---- watcher thread -----------------------------------------------------------------------------

if (!isMainThread) {
  const { endpoint, token, count, first, after, client } = workerData;
  const socks = [];
  const now = () => performance.timeOrigin + performance.now();
  let expected = Infinity;
  let reported = false;
  const done = () => socks.every((s) => s.frames >= expected);
  const report = () => {
    if (reported) return;
    reported = true;
    const lat = [];
    for (const s of socks) lat.push(...s.lat);
    parentPort.postMessage({
      type: 'result',
      latencies: Float64Array.from(lat),
      watchers: socks.map((s) => ({ frames: s.frames, ordered: s.ordered, sum: s.sum, digest: s.hash?.digest('hex'), errors: s.errors })),
      reference: first ? socks[0].raw : undefined,
    });
  };
  // Per frame only what the checks need, read off the frame's fixed prefix `{"seq":N,"ts":"…"`: the
  // watchers must not be the bottleneck they measure. Every 50th watcher also hashes whole frames.
  const open = (i) => new Promise((res, rej) => {
    const ws = client === 'raw' ? rawWebSocket(endpoint, token) : new WebSocket(`ws://${endpoint}/v1/ws`, ['sqlrs', `bearer.${token}`], { skipUTF8Validation: true, perMessageDeflate: false });
    const s = { ws, frames: 0, last: 0, ordered: true, sum: 0, hash: i % 50 === 0 ? createHash('sha256') : undefined, lat: [], errors: [], raw: first && i === 0 ? [] : undefined, ready: null };
    const ready = new Promise((r) => { s.ready = r; });
    ws.on('message', (m) => {
      const at = now();
      const text = m.toString('utf8');
      if (text.startsWith('{"seq":0,')) {
        const f = JSON.parse(text);
        if (f.data.code === 'not_found' && f.data.job === 'f'.repeat(32)) s.ready(); else s.errors.push(f.data);
        return;
      }
      const comma = text.indexOf(',', 7);
      const seq = Number(text.slice(7, comma));
      const ts = text.slice(comma + 7, text.indexOf('"', comma + 7));
      s.frames++;
      if (!(seq > s.last)) s.ordered = false;
      s.last = seq;
      s.sum = (s.sum * 31 + seq) % 2147483647;
      s.hash?.update(text);
      s.lat.push(at - Date.parse(ts));
      s.raw?.push(text);
      if (s.frames >= expected && done()) report();
    });
    ws.once('error', rej);
    ws.once('open', () => {
      ws.send(JSON.stringify({ op: 'subscribe', job: '*', after }));
      ws.send(JSON.stringify({ op: 'subscribe', job: 'f'.repeat(32) })); // answered after the first: the subscription is in place
      ready.then(() => res(s));
    });
  });
  for (let i = 0; i < count; i++) socks.push(await open(i));
  parentPort.postMessage({ type: 'ready' });
  parentPort.on('message', (m) => {
    if (m.type === 'expect') { expected = m.total; if (done()) report(); }
    if (m.type === 'close') { for (const s of socks) s.ws.close(); parentPort.close(); }
  });
} else {
  await main();
  // Everything is cleaned up; lingering client sockets of the stopped engine must not delay the exit.
  process.exit();
}

/**
 * A minimal WebSocket client over a raw TCP socket (CLIENT=raw): the handshake, unmasked text
 * frames from the server, masked text frames to it. It costs the watcher threads less per frame
 * than the `ws` package, so more of the measured latency is the engine's.
 */
function rawWebSocket(endpoint, token) {
  const [host, port] = endpoint.split(':');
  const ee = new EventEmitter();
  const sock = net.connect(Number(port), host);
  sock.setNoDelay(true);
  let buf = Buffer.alloc(0);
  let open = false;
  sock.on('connect', () => sock.write(`GET /v1/ws HTTP/1.1\r\nHost: ${endpoint}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sqlrs, bearer.${token}\r\n\r\n`));
  sock.on('error', (e) => ee.emit('error', e));
  sock.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    if (!open) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      if (!buf.subarray(0, 12).toString().includes(' 101')) { ee.emit('error', new Error(buf.subarray(0, end).toString())); return; }
      open = true;
      buf = buf.subarray(end + 4);
      ee.emit('open');
    }
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; } else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      if (buf.length < off + len) return;
      const op = buf[0] & 0x0f;
      const payload = buf.subarray(off, off + len);
      buf = buf.subarray(off + len);
      if (op === 1) ee.emit('message', payload);
    }
  });
  ee.send = (text) => {
    const p = Buffer.from(text);
    const mask = randomBytes(4);
    const head = p.length < 126 ? Buffer.from([0x81, 0x80 | p.length]) : Buffer.from([0x81, 0x80 | 126, p.length >> 8, p.length & 0xff]);
    for (let i = 0; i < p.length; i++) p[i] ^= mask[i & 3];
    sock.write(Buffer.concat([head, mask, p]));
  };
  ee.close = () => sock.destroy();
  return ee;
}

// ---- main ---------------------------------------------------------------------------------------

function intEnv(name, def, min = 0) {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch { return NaN; }
}

async function http(base, token, path, init = {}) {
  const r = await fetch(`${base}${path}`, { ...init, headers: { Authorization: `Bearer ${token}`, ...(init.body ? { 'Content-Type': 'application/json' } : {}), ...init.headers } });
  return { status: r.status, text: await r.text() };
}

async function main() {
  const K = {
    watchers: intEnv('WATCHERS', 1000, 1),
    threads: intEnv('THREADS', 4, 1),
    jobs: intEnv('JOBS', 20, 1),
    kind: (process.env.JOB_KIND ?? 'plan').trim(),
    image: process.env.IMAGE ?? 'sqlrs-local/postgres:15',
    timeoutMs: intEnv('TIMEOUT_MS', 300_000, 1000),
    client: (process.env.CLIENT ?? 'ws').trim(),
    results: resolve(process.env.RESULTS_DIR ?? join(HERE, 'results')),
  };
  if (!['plan', 'full', 'fail'].includes(K.kind)) throw new Error(`JOB_KIND must be plan, full or fail, got ${K.kind}`);
  if (!existsSync(join(ROOT, 'dist', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` at the repository root first');

  const dir = await mkdtemp(join(tmpdir(), 'sqlrs-ws-bench-'));
  const engineJson = join(dir, 'engine.json');
  const engine = spawn(process.execPath, [join(ROOT, 'bin', 'sqlrs-engine.js'), '--listen', '127.0.0.1:0', '--write-engine-json', engineJson, '--idle-timeout', '0', '--run-dir', join(dir, 'run')],
    { env: { ...process.env, SQLRS_STATE_STORE: join(dir, 'state-store') }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  engine.stderr.on('data', (d) => { stderr += d; });
  const workers = [];
  const cleanup = async () => {
    for (const w of workers) await w.terminate().catch(() => {});
    if (engine.exitCode === null) {
      engine.kill('SIGTERM');
      await Promise.race([new Promise((r) => engine.once('exit', r)), sleep(20_000)]);
      if (engine.exitCode === null) engine.kill('SIGKILL');
    }
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  };
  process.once('SIGINT', () => { void cleanup().then(() => process.exit(130)); });

  try {
    let info;
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (engine.exitCode !== null) throw new Error(`engine exited: ${stderr}`);
      if (Date.now() > deadline) throw new Error('engine did not start');
      try { info = JSON.parse(readFileSync(engineJson, 'utf8')); if ((await fetch(`http://${info.endpoint}/v1/health`)).ok) break; } catch { /* not yet */ }
      await sleep(50);
    }
    const base = `http://${info.endpoint}`;
    const token = info.authToken;
    const scriptDir = join(dir, 'sql');
    await mkdir(scriptDir, { recursive: true });
    const script = join(scriptDir, 'schema.sql');
    await writeFile(script, 'create table t(id int primary key, name text);\ncreate index on t(name);\n');
    const body = (i) => ({
      prepare_kind: 'psql',
      image_id: K.kind === 'fail' ? 'sqlrs-bench/does-not-exist:1' : K.image,
      psql_args: K.kind === 'full' ? ['-f', script] : ['-f', script, '-c', `select ${i}`],
      ...(K.kind === 'plan' ? { plan_only: true } : {}),
    });
    // Keep every job's rows (retention would trim identical terminal jobs, and their events with them).
    await http(base, token, '/v1/config', { method: 'PATCH', body: JSON.stringify({ path: 'orchestrator.jobs.maxIdentical', value: 0 }) });
    if (K.kind !== 'fail') {
      // Warm-up outside the measurement: the base (full) or the image resolution cache (plan).
      const r = await http(base, token, '/v1/prepare-jobs', { method: 'POST', body: JSON.stringify(body(-1)) });
      const id = JSON.parse(r.text).job_id;
      const ev = (await http(base, token, `/v1/prepare-jobs/${id}/events`)).text;
      if (!ev.includes('"succeeded"')) throw new Error(`warm-up job failed: ${ev.slice(-500)}`);
      const inst = /"instance_id":"([0-9a-f]{32})"/.exec(ev)?.[1];
      if (inst) await http(base, token, `/v1/instances/${inst}`, { method: 'DELETE' });
    }

    // Watchers start after the warm-up's events: every frame they get is live.
    const after = await new Promise((res, rej) => {
      const ws = new WebSocket(`ws://${info.endpoint}/v1/ws`, ['sqlrs', `bearer.${token}`]);
      let last = 0;
      ws.on('message', (m) => {
        const f = JSON.parse(m.toString('utf8'));
        if (f.type === 'ws.error') { ws.close(); res(last); } else last = f.seq;
      });
      ws.once('error', rej);
      ws.once('open', () => { ws.send(JSON.stringify({ op: 'subscribe', job: '*' })); ws.send(JSON.stringify({ op: 'subscribe', job: 'f'.repeat(32) })); });
    });
    const rss = { idle: rssKiB(info.pid), watching: NaN, peak: 0 };
    const t0 = performance.now();
    const per = Math.ceil(K.watchers / K.threads);
    const results = [];
    let ready = 0;
    const allResults = new Promise((res, rej) => {
      for (let i = 0; i < K.threads; i++) {
        const count = Math.min(per, K.watchers - i * per);
        if (count <= 0) break;
        const w = new Worker(fileURLToPath(import.meta.url), { workerData: { endpoint: info.endpoint, token, count, first: i === 0, after, client: K.client } });
        workers.push(w);
        w.on('error', rej);
        w.on('message', (m) => {
          if (m.type === 'ready') ready++;
          if (m.type === 'result') { results.push(m); if (results.length === workers.length) res(); }
        });
      }
    });
    while (ready < workers.length) await sleep(20);
    const connectMs = performance.now() - t0;
    rss.watching = rssKiB(info.pid);
    console.log(`${K.watchers} watchers connected and subscribed in ${connectMs.toFixed(0)} ms; engine RSS ${(rss.watching / 1024).toFixed(1)} MiB (idle before: ${(rss.idle / 1024).toFixed(1)} MiB)`);

    const sampler = setInterval(() => { rss.peak = Math.max(rss.peak, rssKiB(info.pid)); }, 50);
    const s0 = performance.now();
    const ids = await Promise.all(Array.from({ length: K.jobs }, async (_, i) => {
      const r = await http(base, token, '/v1/prepare-jobs', { method: 'POST', body: JSON.stringify(body(i)) });
      if (r.status !== 201) throw new Error(`submit answered ${r.status}: ${r.text}`);
      return JSON.parse(r.text).job_id;
    }));
    const streams = await Promise.all(ids.map((id) => http(base, token, `/v1/prepare-jobs/${id}/events`)));
    const jobsMs = performance.now() - s0;
    const expected = new Map(ids.map((id, i) => [id, streams[i].text.split('\n').filter(Boolean)]));
    const total = [...expected.values()].reduce((n, e) => n + e.length, 0);
    const statuses = [...expected.values()].map((e) => JSON.parse(e.filter((l) => l.includes('"status"')).pop() ?? '{}').status);
    console.log(`${K.jobs} ${K.kind} jobs ended in ${jobsMs.toFixed(0)} ms (${statuses.filter((s) => s === 'succeeded').length} succeeded, ${statuses.filter((s) => s === 'failed').length} failed), ${total} events`);
    for (const w of workers) w.postMessage({ type: 'expect', total });
    await Promise.race([allResults, sleep(K.timeoutMs).then(() => { throw new Error('watchers did not receive every event in time'); })]);
    const deliveredMs = performance.now() - s0;
    clearInterval(sampler);
    rss.peak = Math.max(rss.peak, rssKiB(info.pid));

    // Checks.
    const problems = [];
    const watchers = results.flatMap((r) => r.watchers);
    if (watchers.length !== K.watchers) problems.push(`${watchers.length} watchers reported, ${K.watchers} expected`);
    const short = watchers.filter((w) => w.frames !== total);
    if (short.length) problems.push(`${short.length} watchers got a wrong number of frames (e.g. ${short[0].frames} of ${total})`);
    const unordered = watchers.filter((w) => !w.ordered);
    if (unordered.length) problems.push(`${unordered.length} watchers got seq out of order`);
    const sums = new Set(watchers.map((w) => w.sum));
    if (sums.size !== 1) problems.push(`${sums.size} different sequences of seq among watchers`);
    const digests = new Set(watchers.filter((w) => w.digest).map((w) => w.digest));
    if (digests.size !== 1) problems.push(`${digests.size} different frame streams among the hashed watchers`);
    const errors = watchers.flatMap((w) => w.errors);
    if (errors.length) problems.push(`${errors.length} ws.error frames, e.g. ${JSON.stringify(errors[0])}`);
    const ref = results.find((r) => r.reference)?.reference ?? [];
    for (const [id, events] of expected) {
      const got = ref.map((t) => JSON.parse(t)).filter((f) => f.actorId === `prepare:${id}`).map((f) => JSON.stringify(f.data));
      if (JSON.stringify(got) !== JSON.stringify(events.map((e) => JSON.stringify(JSON.parse(e))))) problems.push(`job ${id}: the frames' data differ from its NDJSON events`);
    }

    const lat = Float64Array.from(results.flatMap((r) => Array.from(r.latencies))).sort();
    const fig = {
      p50: percentile(lat, 50), p90: percentile(lat, 90), p99: percentile(lat, 99), max: lat[lat.length - 1],
      frames: lat.length,
    };
    const summary = {
      at: new Date().toISOString(), knobs: K, machine: { cpus: cpus().length, load: loadavg() },
      jobs: { count: K.jobs, kind: K.kind, events: total, statuses, ms: jobsMs }, delivered_ms: deliveredMs, connect_ms: connectMs,
      latency_ms: fig, engine_rss_mib: { idle: rss.idle / 1024, with_watchers: rss.watching / 1024, peak: rss.peak / 1024 },
      checks: problems.length === 0 ? 'ok' : problems,
    };
    console.log(`delivery latency (frame ts → receipt) over ${fig.frames} frames: p50 ${fig.p50.toFixed(1)} ms, p90 ${fig.p90.toFixed(1)} ms, p99 ${fig.p99.toFixed(1)} ms, max ${fig.max.toFixed(1)} ms`);
    console.log(`all frames delivered ${deliveredMs.toFixed(0)} ms after the first submit; engine RSS peak ${(rss.peak / 1024).toFixed(1)} MiB`);
    console.log(problems.length === 0 ? `checks: every watcher got all ${total} events, in order, byte-identical` : `CHECKS FAILED:\n  ${problems.join('\n  ')}`);
    await mkdir(K.results, { recursive: true });
    const out = join(K.results, `ws-${summary.at.replace(/[:.]/g, '-')}.json`);
    await writeFile(out, JSON.stringify(summary, null, 2));
    console.log(`results: ${out}`);
    for (const w of workers) w.postMessage({ type: 'close' });
    for (const i of JSON.parse((await http(base, token, '/v1/instances')).text)) {
      await http(base, token, `/v1/instances/${i.instance_id}?force=true`, { method: 'DELETE' });
    }
    if (problems.length) process.exitCode = 1;
  } finally {
    await cleanup();
  }
}
