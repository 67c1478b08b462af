/**
 * Rendering of the live page's sections from the page's model (see `app.js`). Each function
 * builds DOM with `h()` (text only, never HTML) and carries `data-*` attributes that say what an
 * element shows (`data-job-id`, `data-status`, `data-instance-id`, `data-state-id`), for people
 * inspecting the page and for its browser test.
 */
import { h, fill, short, bytes, when, elapsed, badge, bar } from './dom.js';

/** Events of an open job shown at most (the newest). */
const MAX_SHOWN_EVENTS = 300;

const TERMINAL = new Set(['succeeded', 'failed']);

/** What a job's tasks add up to: counts and the task being worked on. */
export function taskProgress(job) {
  const tasks = [...job.tasks.values()];
  const done = tasks.filter((t) => t.status === 'succeeded').length;
  const failed = tasks.filter((t) => t.status === 'failed').length;
  const running = tasks.find((t) => t.status === 'running');
  return { total: tasks.length, done, failed, running };
}

function eventText(e) {
  switch (e.type) {
    case 'status': return `job ${e.status}`;
    case 'task': return `${e.task_id} ${e.status}${e.message ? `: ${e.message}` : ''}`;
    case 'log': return e.message ?? '';
    case 'result': return `result: ${e.result?.dsn ?? ''} (instance ${short(e.result?.instance_id)}, state ${short(e.result?.state_id)})`;
    case 'error': return `error ${e.error?.code ?? ''}: ${e.error?.message ?? ''}${e.error?.details ? ` — ${e.error.details}` : ''}`;
    default: return JSON.stringify(e);
  }
}

function eventsList(job) {
  const shown = job.events.slice(-MAX_SHOWN_EVENTS);
  const hidden = job.dropped + job.events.length - shown.length;
  return h('div', { class: 'events-box' },
    h('div', { class: 'muted' }, `${job.dropped + job.events.length} events`, hidden > 0 ? ` (the first ${hidden} not shown)` : ''),
    h('ol', { class: 'events', start: hidden + 1 },
      shown.map((e) => h('li', { class: `ev ev-${e.type}`, 'data-type': e.type },
        h('time', { datetime: e.ts }, when(e.ts)), ' ', h('span', { class: 'ev-type' }, e.type), ' ', eventText(e)))));
}

function taskTable(job) {
  if (job.tasks.size === 0) return h('p', { class: 'muted' }, 'not planned yet');
  return h('table', { class: 'tasks' },
    h('thead', {}, h('tr', {}, h('th', {}, 'task'), h('th', {}, 'type'), h('th', {}, 'status'), h('th', {}, 'input / output'))),
    h('tbody', {}, [...job.tasks.values()].map((t) => h('tr', { 'data-task-id': t.task_id, 'data-status': t.status },
      h('td', {}, t.task_id),
      h('td', {}, t.type ?? ''),
      h('td', {}, badge(t.status ?? 'queued'), t.cached ? h('span', { class: 'tag' }, 'cached') : null),
      h('td', { class: 'mono' }, t.args_summary ?? '', t.output_state_id ? ` → ${short(t.output_state_id)}` : '')))));
}

/** One job: a `<details>` whose summary shows status and task progress, and whose body the tasks and events. */
export function jobElement(job, open, onToggle) {
  const e = job.entry;
  const p = taskProgress(job);
  const label = p.total === 0 ? e.status : `${p.done}/${p.total} tasks`;
  const now = p.running ? `${p.running.task_id}${job.lastLog ? ` · ${job.lastLog}` : ''}` : (job.error ? `${job.error.code}: ${job.error.message}` : '');
  const details = h('details', { class: 'job', 'data-job-id': e.job_id, 'data-status': e.status, open },
    h('summary', {},
      badge(e.status),
      h('code', { class: 'id', title: e.job_id }, short(e.job_id)),
      h('span', { class: 'kind' }, e.plan_only ? `${e.prepare_kind} (plan)` : e.prepare_kind),
      h('span', { class: 'image', title: e.resolved_image_id ?? e.image_id }, e.image_id),
      bar(p.done, p.total, label, p.failed > 0 || e.status === 'failed' ? 'bad' : TERMINAL.has(e.status) ? 'done' : ''),
      h('span', { class: 'now', title: now }, now),
      h('span', { class: 'muted time' }, when(e.created_at), e.started_at ? ` · ${elapsed(e.started_at, e.finished_at)}` : '')),
    open ? h('div', { class: 'job-body' },
      e.prepare_args_normalized ? h('p', { class: 'mono args' }, e.prepare_args_normalized) : null,
      job.result ? h('p', {}, 'DSN ', h('code', { class: 'dsn' }, job.result.dsn)) : null,
      job.error ? h('p', { class: 'error' }, `${job.error.code}: ${job.error.message}`, job.error.details ? ` — ${job.error.details}` : '') : null,
      taskTable(job),
      eventsList(job)) : null);
  details.addEventListener('toggle', () => onToggle(e.job_id, details.open));
  return details;
}

/**
 * Puts the job elements into `container` newest first, rebuilding only the jobs in `dirty` (all
 * when undefined), so that an open job's scroll position survives other jobs' events.
 */
export function renderJobs(container, model, dirty, onToggle) {
  const jobs = [...model.jobs.values()].sort((a, b) => String(b.entry.created_at ?? '').localeCompare(String(a.entry.created_at ?? '')) || b.firstSeen - a.firstSeen);
  if (jobs.length === 0) { fill(container, h('p', { class: 'muted empty' }, 'No prepare jobs yet.')); model.jobEls.clear(); return; }
  container.querySelector(':scope > .empty')?.remove();
  const keep = new Set(jobs.map((j) => j.entry.job_id));
  for (const [id, el] of model.jobEls) if (!keep.has(id)) { el.remove(); model.jobEls.delete(id); }
  jobs.forEach((job, i) => {
    const id = job.entry.job_id;
    let el = model.jobEls.get(id);
    if (!el || dirty === undefined || dirty.has(id)) {
      const old = el;
      const box = old?.querySelector('.events');
      const atBottom = !box || box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
      el = jobElement(job, model.openJobs.has(id), onToggle);
      if (old) old.replaceWith(el);
      model.jobEls.set(id, el);
      const nb = el.querySelector('.events');
      if (nb) nb.scrollTop = atBottom ? nb.scrollHeight : (box?.scrollTop ?? 0);
    }
    if (container.children[i] !== el) container.insertBefore(el, container.children[i] ?? null);
  });
}

/** The DSN of an instance: the engine's own field when it has one, else from its port, else from the job that made it. */
export function dsnOf(inst, model) {
  if (typeof inst.dsn === 'string' && inst.dsn) return inst.dsn;
  if (typeof inst.host_port === 'number') return `postgres://sqlrs@127.0.0.1:${inst.host_port}/postgres`;
  return model.dsnByInstance.get(inst.instance_id) ?? '';
}

/** The instances table, with each DSN and its copy button. */
export function renderInstances(container, model, onCopy) {
  const list = model.instances;
  if (list.length === 0) { fill(container, h('p', { class: 'muted empty' }, 'No instances.')); return; }
  fill(container, h('table', { class: 'instances' },
    h('thead', {}, h('tr', {}, h('th', {}, 'instance'), h('th', {}, 'DSN'), h('th', {}, 'state'), h('th', {}, 'image'), h('th', {}, 'created'), h('th', {}, 'status'))),
    h('tbody', {}, list.map((i) => {
      const dsn = dsnOf(i, model);
      return h('tr', { 'data-instance-id': i.instance_id, 'data-state-id': i.state_id },
        h('td', {}, h('code', { class: 'id', title: i.instance_id }, short(i.instance_id)), i.name ? h('span', { class: 'tag' }, i.name) : null),
        h('td', { class: 'dsn-cell' }, dsn
          ? [h('code', { class: 'dsn' }, dsn), h('button', { type: 'button', class: 'copy', 'data-copy': dsn, title: 'copy the DSN', onclick: (ev) => onCopy(dsn, ev.currentTarget) }, 'Copy')]
          : h('span', { class: 'muted' }, 'unknown (its job is gone)')),
        h('td', {}, h('code', { class: 'id', title: i.state_id }, short(i.state_id))),
        h('td', {}, h('span', { class: 'clip', title: i.image_id }, i.image_id)),
        h('td', { class: 'muted nowrap' }, when(i.created_at)),
        h('td', {}, badge(i.status ?? 'active')));
    }))));
}

function stateNode(s, kids, usedBy) {
  const users = usedBy.get(s.state_id) ?? [];
  const children = kids.get(s.state_id) ?? [];
  return h('li', { 'data-state-id': s.state_id },
    h('div', { class: 'state' },
      h('code', { class: 'id', title: s.state_id }, short(s.state_id)),
      h('span', { class: 'size' }, bytes(s.size_bytes)),
      h('span', { class: 'mono args', title: s.prepare_args_normalized ?? '' }, s.prepare_args_normalized ?? ''),
      users.length > 0
        ? h('span', { class: 'users' }, `used by ${users.length}: `, users.map((u) => h('code', { class: 'id', title: u }, short(u))))
        : h('span', { class: 'muted' }, 'no instances'),
      h('span', { class: 'muted time' }, `created ${when(s.created_at)}`, s.use_count ? ` · used ${s.use_count}× · last ${when(s.last_used_at)}` : '')),
    children.length > 0 ? h('ul', {}, children.map((c) => stateNode(c, kids, usedBy))) : null);
}

/** The state tree: per image, root states and their children, with sizes and the instances using each. */
export function renderStates(container, model) {
  const states = model.states;
  if (states.length === 0) { fill(container, h('p', { class: 'muted empty' }, 'No states.')); return; }
  const ids = new Set(states.map((s) => s.state_id));
  const kids = new Map();
  const roots = [];
  for (const s of [...states].sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)))) {
    if (s.parent_state_id && ids.has(s.parent_state_id)) {
      if (!kids.has(s.parent_state_id)) kids.set(s.parent_state_id, []);
      kids.get(s.parent_state_id).push(s);
    } else roots.push(s);
  }
  const usedBy = new Map();
  for (const i of model.instances) {
    if (!usedBy.has(i.state_id)) usedBy.set(i.state_id, []);
    usedBy.get(i.state_id).push(i.instance_id);
  }
  const byImage = new Map();
  for (const r of roots) {
    if (!byImage.has(r.image_id)) byImage.set(r.image_id, []);
    byImage.get(r.image_id).push(r);
  }
  const total = states.reduce((n, s) => n + (s.size_bytes ?? 0), 0);
  fill(container,
    h('p', { class: 'muted' }, `${states.length} states, ${bytes(total)}`),
    [...byImage].map(([image, rs]) => h('div', { class: 'tree-image' },
      h('div', { class: 'image-root' }, 'image ', h('code', {}, image)),
      h('ul', { class: 'tree' }, rs.map((r) => stateNode(r, kids, usedBy))))));
}

function stat(label, value, title) {
  return h('div', { class: 'stat', title }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value));
}

/** Cache usage against its limits, the watermarks, pressure and the last eviction. */
export function renderCache(container, model) {
  const c = model.cache;
  if (!c) { fill(container, h('p', { class: 'muted' }, model.cacheError ?? 'loading…')); return; }
  const max = c.effective_max_bytes ?? 0;
  const used = c.usage_bytes ?? 0;
  const pct = max > 0 ? (used / max) * 100 : 0;
  const gauge = bar(used, max, `${bytes(used)} of ${bytes(max)} (${pct.toFixed(1)} %)`, c.pressure_reasons?.length ? 'bad' : '');
  gauge.classList.add('gauge');
  for (const [cls, w] of [['high', c.high_watermark], ['low', c.low_watermark]]) {
    if (typeof w !== 'number') continue;
    const mark = h('span', { class: `mark mark-${cls}`, title: `${cls} watermark ${Math.round(w * 100)} %` });
    mark.style.left = `${Math.min(100, w * 100)}%`;
    gauge.append(mark);
  }
  const pressure = c.pressure_reasons ?? [];
  const rt = c.container_runtime;
  const ev = c.last_eviction;
  fill(container,
    h('div', { class: 'pressure', 'data-pressure': pressure.length > 0 ? 'yes' : 'no' },
      pressure.length > 0 ? pressure.map((p) => h('span', { class: 'badge st-failed' }, p)) : h('span', { class: 'badge st-succeeded' }, 'no pressure')),
    gauge,
    h('div', { class: 'stats' },
      stat('states', String(c.state_count ?? 0)),
      stat('usage', bytes(used)),
      stat('effective max', bytes(max), 'filesystem size − reserve, capped by cache.capacity.maxBytes'),
      c.configured_max_bytes !== undefined ? stat('configured max', bytes(c.configured_max_bytes)) : null,
      stat('reserve', bytes(c.reserve_bytes)),
      stat('watermarks', `${Math.round((c.low_watermark ?? 0) * 100)} % / ${Math.round((c.high_watermark ?? 0) * 100)} %`, 'eviction starts above high, stops below low'),
      stat('store free', `${bytes(c.store_free_bytes)} of ${bytes(c.store_total_bytes)}`),
      stat('reclaimable', bytes(c.reclaimable_bytes), `${c.blocked_count ?? 0} states blocked`),
      stat('min state age', c.min_state_age ?? ''),
      rt ? stat('containers', rt.kind, rt.error ?? (rt.socket ? `${rt.socket} (${rt.source ?? ''})` : '')) : null),
    ev ? h('p', { class: 'muted' }, `last eviction ${when(ev.completed_at)} (${ev.trigger}): ${ev.evicted_count} states, ${bytes(ev.freed_bytes)} freed`) : h('p', { class: 'muted' }, 'no eviction since the engine started'));
}

/** Runs in progress (`GET /v1/runs`), or why they cannot be shown. */
export function renderRuns(container, model) {
  if (model.runs === undefined) {
    fill(container, h('p', { class: 'muted' }, model.runsError ?? 'loading…'));
    return;
  }
  const runs = model.runs;
  if (runs.length === 0) { fill(container, h('p', { class: 'muted empty' }, 'No runs in progress.')); return; }
  fill(container, h('table', { class: 'runs' },
    h('thead', {}, h('tr', {}, h('th', {}, 'run'), h('th', {}, 'kind'), h('th', {}, 'instance'), h('th', {}, 'started'), h('th', {}, 'status'))),
    h('tbody', {}, runs.map((r) => {
      const id = r.run_id ?? r.id ?? '';
      const started = r.started_at ?? r.created_at ?? r.ts;
      return h('tr', { 'data-run-id': id },
        h('td', {}, h('code', { class: 'id', title: id }, short(id))),
        h('td', {}, r.kind ?? ''),
        h('td', {}, h('code', { class: 'id', title: r.instance_id ?? '' }, short(r.instance_id))),
        h('td', { class: 'muted' }, when(started), started ? ` · ${elapsed(started)}` : ''),
        h('td', {}, badge(r.status ?? 'running')));
    }))));
}
