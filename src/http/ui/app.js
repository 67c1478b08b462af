/**
 * The live page at `/ui`: the engine's jobs (tasks and events), runs in progress, instances with
 * their DSNs, the state tree and the cache, updated live without reloading.
 *
 * Data flow: every list is read over HTTP at start; the WebSocket (`api.js`) then brings every
 * job event (they update the jobs in place) and lifecycle events (each makes the page re-read
 * the affected list over HTTP, coalesced). Without a live socket, or when the engine refuses the
 * lifecycle subscription, the lists are re-read every few seconds instead.
 */
import { takeToken, keepToken, dropToken, Api, AuthError, HttpError, Live } from './api.js';
import { fill, copyText } from './dom.js';
import { renderJobs, renderInstances, renderStates, renderCache, renderRuns } from './view.js';

/** Re-read period of the lists when they are not kept live. */
const POLL_MS = 3000;
/** Re-read period of the cache figures even when live (free space changes without events). */
const CACHE_POLL_MS = 15_000;
/** Events kept per job in the page (the newest). */
const MAX_EVENTS = 2000;

const RANK = { queued: 0, running: 1, succeeded: 2, failed: 2 };
/** The later of two statuses: a late HTTP answer never turns a finished job or task back. */
const later = (a, b) => ((RANK[b] ?? 0) >= (RANK[a] ?? 0) ? b : a);

const $ = (id) => document.getElementById(id);

const model = {
  /** job_id → {entry, tasks: Map(task_id → task), events, dropped, lastLog, result, error, firstSeen} */
  jobs: new Map(),
  jobEls: new Map(),
  openJobs: new Set(),
  instances: [],
  states: [],
  cache: undefined,
  cacheError: undefined,
  runs: undefined,
  runsError: undefined,
  runsSupported: true,
  /** instance_id → DSN, from the jobs' `result` events */
  dsnByInstance: new Map(),
  ws: 'connecting',
  lifecycle: 'pending',
};

let api;
let live;
let pollTimer;
let seenCounter = 0;

// ---- rendering, coalesced ------------------------------------------------------------------

const dirty = { jobs: new Set(), allJobs: false, instances: false, states: false, cache: false, runs: false };
let renderTimer;

function mark(what, jobId) {
  if (what === 'job') dirty.jobs.add(jobId); else dirty[what] = true;
  renderTimer ??= setTimeout(render, 30);
}

function onToggle(jobId, open) {
  if (open === model.openJobs.has(jobId)) return;
  if (open) model.openJobs.add(jobId); else model.openJobs.delete(jobId);
  mark('job', jobId);
}

async function onCopy(dsn, button) {
  const ok = await copyText(dsn);
  button.textContent = ok ? 'Copied' : 'Copy failed';
  button.dataset.copied = ok ? 'yes' : 'no';
}

function render() {
  renderTimer = undefined;
  if (dirty.allJobs || dirty.jobs.size > 0) {
    renderJobs($('jobs'), model, dirty.allJobs ? undefined : dirty.jobs, onToggle);
    $('jobs-count').textContent = String(model.jobs.size);
  }
  if (dirty.instances) {
    renderInstances($('instances'), model, onCopy);
    $('instances-count').textContent = String(model.instances.length);
  }
  if (dirty.states || dirty.instances) {
    renderStates($('states'), model);
    $('states-count').textContent = String(model.states.length);
  }
  if (dirty.cache) renderCache($('cache'), model);
  if (dirty.runs) {
    renderRuns($('runs'), model);
    $('runs-count').textContent = model.runs ? String(model.runs.length) : '';
  }
  dirty.jobs.clear();
  dirty.allJobs = dirty.instances = dirty.states = dirty.cache = dirty.runs = false;
}

// ---- HTTP reads, one in flight per list, coalesced -----------------------------------------

const reads = new Map(); // name → {running, again}

/** Runs the read `name` now, or once more after the one in flight. */
function refresh(name, fn) {
  const r = reads.get(name) ?? { running: false, again: false };
  reads.set(name, r);
  if (r.running) { r.again = true; return; }
  r.running = true;
  void (async () => {
    try {
      do { r.again = false; await fn(); } while (r.again);
    } catch (e) {
      failed(e);
    } finally {
      r.running = false;
    }
  })();
}

function failed(e) {
  if (e instanceof AuthError) { signOut('The engine refused the token: paste the current one.'); return; }
  showConn(`${e.message ?? e}`);
}

function jobOf(id) {
  let job = model.jobs.get(id);
  if (!job) {
    job = { entry: { job_id: id, status: 'queued' }, tasks: new Map(), events: [], dropped: 0, lastLog: '', firstSeen: ++seenCounter };
    model.jobs.set(id, job);
    mark('allJobs');
  }
  return job;
}

async function readJobs() {
  const since = seenCounter;
  const list = await api.list('/v1/prepare-jobs');
  const ids = new Set();
  for (const e of list) {
    ids.add(e.job_id);
    const job = jobOf(e.job_id);
    job.entry = { ...e, status: later(job.entry.status, e.status) };
    mark('job', e.job_id);
  }
  // Deleted jobs go; one first seen after this read began may simply be newer than it.
  for (const [id, job] of model.jobs) if (!ids.has(id) && job.firstSeen <= since) { model.jobs.delete(id); mark('allJobs'); }
}

function applyTasks(list) {
  for (const t of list) {
    const job = model.jobs.get(t.job_id);
    if (!job) continue;
    const had = job.tasks.get(t.task_id);
    job.tasks.set(t.task_id, { ...t, status: had ? later(had.status, t.status) : t.status });
    mark('job', t.job_id);
  }
}

const readTasks = (jobId) => async () => applyTasks(await api.list(jobId ? `/v1/tasks?job=${encodeURIComponent(jobId)}` : '/v1/tasks'));
const readInstances = async () => { model.instances = await api.list('/v1/instances'); mark('instances'); };
const readStates = async () => { model.states = await api.list('/v1/states'); mark('states'); };
const readCache = async () => {
  try {
    model.cache = await api.get('/v1/cache/status');
    model.cacheError = undefined;
  } catch (e) {
    if (e instanceof AuthError) throw e;
    model.cacheError = `cache status unavailable (${e.message})`;
  }
  mark('cache');
};
const readRuns = async () => {
  if (!model.runsSupported) return;
  try {
    model.runs = await api.list('/v1/runs');
  } catch (e) {
    if (!(e instanceof HttpError) || (e.status !== 404 && e.status !== 405)) throw e;
    model.runsSupported = false;
    model.runs = undefined;
    model.runsError = 'This engine does not list runs (GET /v1/runs).';
  }
  mark('runs');
};

function readAll() {
  refresh('jobs', async () => { await readJobs(); await readTasks(undefined)(); });
  refresh('instances', readInstances);
  refresh('states', readStates);
  refresh('cache', readCache);
  refresh('runs', readRuns);
}

// ---- live frames ---------------------------------------------------------------------------

function onJobEvent(jobId, ev) {
  const known = model.jobs.has(jobId);
  const job = jobOf(jobId);
  if (!known) refresh('jobs', readJobs);
  job.events.push(ev);
  if (job.events.length > MAX_EVENTS) job.dropped += job.events.splice(0, job.events.length - MAX_EVENTS).length;
  switch (ev.type) {
    case 'status':
      job.entry = { ...job.entry, status: later(job.entry.status, ev.status) };
      if (ev.status === 'succeeded' || ev.status === 'failed') {
        job.lastLog = '';
        refresh('jobs', readJobs); // finished_at, resolved image
        refresh('states', readStates);
        refresh('cache', readCache);
      }
      break;
    case 'task': {
      const t = job.tasks.get(ev.task_id);
      if (t) job.tasks.set(ev.task_id, { ...t, status: later(t.status, ev.status) });
      else refresh(`tasks:${jobId}`, readTasks(jobId));
      if (ev.status !== 'running') job.lastLog = '';
      break;
    }
    case 'log': job.lastLog = ev.message ?? ''; break;
    case 'result':
      job.result = ev.result;
      if (ev.result?.instance_id && ev.result?.dsn) model.dsnByInstance.set(ev.result.instance_id, ev.result.dsn);
      refresh('instances', readInstances);
      break;
    case 'error': job.error = ev.error; break;
    default: break;
  }
  mark('job', jobId);
}

function onLifecycle(d) {
  const ev = String(d?.event ?? '');
  if (ev.startsWith('instance.')) { refresh('instances', readInstances); }
  else if (ev.startsWith('state.')) { refresh('states', readStates); refresh('cache', readCache); }
  else if (ev.startsWith('run.')) { refresh('runs', readRuns); }
  else if (ev === 'job.terminal') { refresh('jobs', readJobs); }
}

function onFrame(f) {
  if (f.type === 'job.event' && typeof f.actorId === 'string' && f.data) onJobEvent(f.actorId.replace(/^prepare:/, ''), f.data);
  else if (f.type === 'lifecycle') onLifecycle(f.data);
}

function showConn(detail = '') {
  const el = $('conn');
  const text = model.ws !== 'live' ? `${model.ws} — refreshing every ${POLL_MS / 1000} s`
    : model.lifecycle === 'refused' ? `live jobs — lists refresh every ${POLL_MS / 1000} s` : 'live';
  el.textContent = text;
  el.title = detail;
  el.dataset.state = model.ws;
  document.body.dataset.ws = model.ws;
  document.body.dataset.lifecycle = model.lifecycle;
}

function onState(s) {
  const wasLive = model.ws === 'live';
  model.ws = s.ws;
  model.lifecycle = s.lifecycle;
  document.body.dataset.wsAuth = s.mode ?? '';
  showConn(s.detail);
  // Back live after a gap: what happened meanwhile arrives as job events, but lists are re-read.
  if (s.ws === 'live' && !wasLive && document.body.dataset.ready === 'yes') readAll();
}

function poll() {
  pollTimer = setTimeout(poll, POLL_MS);
  const now = Date.now();
  if (model.ws !== 'live') {
    readAll();
  } else if (model.lifecycle === 'refused') {
    refresh('instances', readInstances);
    refresh('states', readStates);
    refresh('cache', readCache);
    refresh('runs', readRuns);
  } else if (now - (model.cacheAt ?? 0) >= CACHE_POLL_MS) {
    model.cacheAt = now;
    refresh('cache', readCache);
  }
}

// ---- sign-in -------------------------------------------------------------------------------

function signOut(message) {
  live?.stop();
  live = undefined;
  clearTimeout(pollTimer);
  dropToken();
  $('app').hidden = true;
  $('login').hidden = false;
  const err = $('login-error');
  err.textContent = message ?? '';
  err.hidden = !message;
  $('token').focus();
}

async function start(token) {
  api = new Api(token);
  try {
    const health = await fetch('/v1/health', { cache: 'no-store' }).then((r) => r.json());
    fill($('engine'), `version ${health.version} · pid ${health.pid}`);
  } catch { /* shown as a connection problem below if the API is away */ }
  try {
    await api.get('/v1/prepare-jobs?job=-'); // checks the token before anything is shown
  } catch (e) {
    if (e instanceof AuthError) { signOut('The engine refused this token.'); return; }
  }
  $('login').hidden = true;
  $('app').hidden = false;
  mark('allJobs'); mark('instances'); mark('states'); mark('cache'); mark('runs');
  readAll();
  live = new Live(token, {
    onFrame,
    onState,
    onAllModesFailed: () => refresh('auth', async () => { await api.get('/v1/prepare-jobs?job=-'); }),
  });
  live.start();
  pollTimer = setTimeout(poll, POLL_MS);
  document.body.dataset.ready = 'yes';
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  const tok = $('token').value.trim();
  if (!tok) return;
  $('token').value = '';
  keepToken(tok);
  void start(tok);
});

window.addEventListener('hashchange', () => {
  const before = api?.token;
  const tok = takeToken();
  if (tok && tok !== before) { live?.stop(); clearTimeout(pollTimer); void start(tok); }
});

const initial = takeToken();
if (initial) void start(initial);
else signOut();
