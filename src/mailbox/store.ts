/**
 * Repositories over the store database: prepare jobs, tasks, events, states, instances, names and
 * bases. Read methods return the wire shapes of `api.md` §3 (snake_case, optional fields omitted).
 * Every statement is prepared once, at construction.
 */
import type Database from 'better-sqlite3';
import type { Db } from './db.js';
import type { ApiError } from '../errors.js';
import type { EventSeq, InstanceId, JobId, StateId } from '../ids.js';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed';
export type TaskStatus = JobStatus;

export interface PrepareResult {
  dsn: string;
  instance_id: string;
  state_id: string;
  image_id: string;
  prepare_kind: string;
  prepare_args_normalized: string;
}

/** A prepare-job event (wire shape, `api.md` §3.6). */
export interface JobEvent {
  type: 'status' | 'task' | 'log' | 'result' | 'error';
  ts: string;
  status?: string;
  task_id?: string;
  message?: string;
  result?: PrepareResult;
  error?: ApiError;
}

export interface JobRow {
  job_id: JobId;
  status: JobStatus;
  prepare_kind: string;
  image_id: string;
  resolved_image_id: string | null;
  plan_only: number;
  prepare_args_normalized: string | null;
  signature: string | null;
  request_json: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  result_json: string | null;
  error_json: string | null;
}

export interface NewJob {
  job_id: JobId;
  prepare_kind: string;
  image_id: string;
  resolved_image_id: string | null;
  plan_only: boolean;
  prepare_args_normalized: string;
  request: unknown;
  created_at: string;
}

export interface JobPatch {
  status?: JobStatus;
  resolved_image_id?: string;
  signature?: string;
  started_at?: string;
  finished_at?: string;
  result?: PrepareResult;
  error?: ApiError;
}

/** A plan task as stored and served (wire shape without status). */
export type WireTask = Record<string, unknown> & { task_id: string; type: string };

export interface TaskPatch {
  status?: TaskStatus;
  started_at?: string;
  finished_at?: string;
  error?: ApiError;
  task?: WireTask;
}

export interface StateRow {
  state_id: StateId;
  parent_state_id: StateId | null;
  image_id: string;
  prepare_kind: string;
  prepare_args_normalized: string;
  created_at: string;
  created_ms: number;
  size_bytes: number | null;
  last_used_at: string | null;
  last_used_ms: number | null;
  use_count: number;
  min_retention_until: string | null;
  backend: string;
  dir: string;
}

export interface InstanceRow {
  instance_id: InstanceId;
  state_id: StateId;
  image_id: string;
  created_at: string;
  expires_at: string | null;
  runtime_id: string | null;
  runtime_dir: string | null;
  host_port: number | null;
  job_id: JobId | null;
  deleting: number;
}

export interface BaseRow { image_id: string; dir: string; backend: string; created_at: string }

/** A job event with its global sequence. */
export interface SeqEventRow { seq: EventSeq; job_id: JobId; event_json: string }

function likePrefix(p: string): string {
  return p.replace(/[\\%_]/g, (c) => `\\${c}`) + '%';
}

function omitNull<T extends Record<string, unknown>>(o: T): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== null && v !== undefined) out[k] = v;
  return out;
}

export class Store {
  private readonly s;
  /** Statements whose SQL depends on which fields a patch sets, prepared once per shape. */
  private readonly byShape = new Map<string, Database.Statement>();
  constructor(private readonly db: Db) {
    const p = db.prepare.bind(db);
    this.s = {
      insertJob: p(`INSERT INTO jobs (job_id, status, prepare_kind, image_id, resolved_image_id, plan_only, prepare_args_normalized, request_json, created_at, created_seq)
        VALUES (@job_id, 'queued', @prepare_kind, @image_id, @resolved_image_id, @plan_only, @prepare_args_normalized, @request_json, @created_at,
        (SELECT COALESCE(MAX(created_seq), 0) + 1 FROM jobs))`),
      getJob: p<[string], JobRow>('SELECT * FROM jobs WHERE job_id = ?'),
      listJobs: p<[], JobRow>('SELECT * FROM jobs ORDER BY created_seq'),
      listJobsPrefix: p<[string], JobRow>("SELECT * FROM jobs WHERE job_id LIKE ? ESCAPE '\\' ORDER BY created_seq"),
      jobsByStatus: p<[string, string], JobRow>('SELECT * FROM jobs WHERE status IN (?, ?) ORDER BY created_seq'),
      deleteJob: p('DELETE FROM jobs WHERE job_id = ?'),
      terminalBySignature: p<[string], { job_id: JobId }>(
        "SELECT job_id FROM jobs WHERE signature = ? AND status IN ('succeeded','failed') ORDER BY COALESCE(finished_at, created_at) DESC, created_seq DESC"),
      deleteTasks: p('DELETE FROM tasks WHERE job_id = ?'),
      insertTask: p('INSERT INTO tasks (job_id, position, task_id, status, task_json, args_summary) VALUES (?, ?, ?, ?, ?, ?)'),
      getTasks: p<[string], { job_id: string; position: number; task_id: string; status: string; task_json: string; args_summary: string | null; error_json: string | null }>(
        'SELECT * FROM tasks WHERE job_id = ? ORDER BY position'),
      allTasks: p<[], { job_id: string; position: number; task_id: string; status: string; task_json: string; args_summary: string | null }>(
        'SELECT * FROM tasks ORDER BY job_id, position'),
      eventCount: p<[string], { n: number }>('SELECT COUNT(*) AS n FROM events WHERE job_id = ?'),
      insertEvent: p('INSERT INTO events (job_id, idx, event_json) VALUES (?, ?, ?)'),
      eventsFrom: p<[string, number], { idx: number; event_json: string }>('SELECT idx, event_json FROM events WHERE job_id = ? AND idx >= ? ORDER BY idx'),
      seqRangeJob: p<[string, number, number, number], SeqEventRow>('SELECT seq, job_id, event_json FROM events WHERE job_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?'),
      seqRangeAll: p<[number, number, number], SeqEventRow>('SELECT seq, job_id, event_json FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?'),
      maxEventSeq: p<[], { n: number }>("SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), COALESCE((SELECT MAX(seq) FROM events), 0)) AS n"),
      insertState: p(`INSERT OR IGNORE INTO states (state_id, parent_state_id, image_id, prepare_kind, prepare_args_normalized, created_at, created_ms, size_bytes, last_used_at, last_used_ms, use_count, backend, dir)
        VALUES (@state_id, @parent_state_id, @image_id, @prepare_kind, @prepare_args_normalized, @created_at, @created_ms, @size_bytes, @created_at, @created_ms, 0, @backend, @dir)`),
      getState: p<[string], StateRow>('SELECT * FROM states WHERE state_id = ?'),
      allStates: p<[], StateRow>('SELECT * FROM states ORDER BY created_ms, state_id'),
      deleteState: p('DELETE FROM states WHERE state_id = ?'),
      childStates: p<[string], StateRow>('SELECT * FROM states WHERE parent_state_id = ? ORDER BY created_ms, state_id'),
      touchState: p('UPDATE states SET last_used_at = ?, last_used_ms = ?, use_count = use_count + 1 WHERE state_id = ?'),
      refcount: p<[string], { n: number }>('SELECT COUNT(*) AS n FROM instances WHERE state_id = ?'),
      refcounts: p<[], { state_id: string; n: number }>('SELECT state_id, COUNT(*) AS n FROM instances GROUP BY state_id'),
      insertInstance: p(`INSERT INTO instances (instance_id, state_id, image_id, created_at, runtime_id, runtime_dir, host_port, job_id)
        VALUES (@instance_id, @state_id, @image_id, @created_at, @runtime_id, @runtime_dir, @host_port, @job_id)`),
      getInstance: p<[string], InstanceRow>('SELECT * FROM instances WHERE instance_id = ?'),
      allInstances: p<[], InstanceRow>('SELECT * FROM instances ORDER BY created_at, instance_id'),
      instancesOfState: p<[string], InstanceRow>('SELECT * FROM instances WHERE state_id = ? ORDER BY created_at, instance_id'),
      deleteInstance: p('DELETE FROM instances WHERE instance_id = ?'),
      setRuntime: p('UPDATE instances SET runtime_id = ?, host_port = COALESCE(?, host_port) WHERE instance_id = ?'),
      setDeleting: p('UPDATE instances SET deleting = ? WHERE instance_id = ?'),
      nameOfInstance: p<[string], { name: string }>('SELECT name FROM names WHERE instance_id = ? ORDER BY is_primary DESC, name LIMIT 1'),
      getName: p<[string], Record<string, unknown>>('SELECT * FROM names WHERE name = ?'),
      allNames: p<[], Record<string, unknown>>('SELECT * FROM names ORDER BY name'),
      getBase: p<[string], BaseRow>('SELECT * FROM bases WHERE image_id = ?'),
      putBase: p('INSERT OR REPLACE INTO bases (image_id, dir, backend, created_at) VALUES (?, ?, ?, ?)'),
      deleteBase: p('DELETE FROM bases WHERE image_id = ?'),
      allBases: p<[], BaseRow>('SELECT * FROM bases'),
      countRows: p<[], { instances: number; states: number }>('SELECT (SELECT COUNT(*) FROM instances) AS instances, (SELECT COUNT(*) FROM states) AS states'),
      jobsPerStatus: p<[], { status: string; n: number }>('SELECT status, COUNT(*) AS n FROM jobs GROUP BY status'),
    };
  }

  tx<T>(fn: () => T): T { return this.db.transaction(fn)(); }
  /** True while a transaction is open (readers must not publish what may still roll back). */
  inTransaction(): boolean { return this.db.inTransaction; }

  private shaped(sql: string): Database.Statement {
    let st = this.byShape.get(sql);
    if (!st) { st = this.db.prepare(sql); this.byShape.set(sql, st); }
    return st;
  }

  // ---- jobs -------------------------------------------------------------------------------
  insertJob(j: NewJob): void {
    this.s.insertJob.run({
      job_id: j.job_id, prepare_kind: j.prepare_kind, image_id: j.image_id, resolved_image_id: j.resolved_image_id,
      plan_only: j.plan_only ? 1 : 0, prepare_args_normalized: j.prepare_args_normalized,
      request_json: JSON.stringify(j.request), created_at: j.created_at,
    });
  }
  getJob(id: string): JobRow | undefined { return this.s.getJob.get(id); }
  jobsWithStatus(a: JobStatus, b: JobStatus): JobRow[] { return this.s.jobsByStatus.all(a, b); }
  updateJob(id: string, p: JobPatch): void {
    const sets: string[] = [];
    const vals: unknown[] = [];
    const put = (col: string, v: unknown): void => { sets.push(`${col} = ?`); vals.push(v); };
    if (p.status !== undefined) put('status', p.status);
    if (p.resolved_image_id !== undefined) put('resolved_image_id', p.resolved_image_id);
    if (p.signature !== undefined) put('signature', p.signature);
    if (p.started_at !== undefined) put('started_at', p.started_at);
    if (p.finished_at !== undefined) put('finished_at', p.finished_at);
    if (p.result !== undefined) put('result_json', JSON.stringify(p.result));
    if (p.error !== undefined) put('error_json', JSON.stringify(p.error));
    if (sets.length === 0) return;
    this.shaped(`UPDATE jobs SET ${sets.join(', ')} WHERE job_id = ?`).run(...vals, id);
  }
  deleteJob(id: string): boolean { return this.s.deleteJob.run(id).changes > 0; }
  /** Terminal jobs with a signature, newest first. */
  terminalJobsWithSignature(sig: string): string[] { return this.s.terminalBySignature.all(sig).map((r) => r.job_id); }

  /** `GET /v1/prepare-jobs` entries; `prefix` is a raw, case-insensitive job id prefix. */
  listJobEntries(prefix?: string): Record<string, unknown>[] {
    const rows = prefix ? this.s.listJobsPrefix.all(likePrefix(prefix)) : this.s.listJobs.all();
    return rows.map((r) => omitNull({
      job_id: r.job_id, status: r.status, prepare_kind: r.prepare_kind, image_id: r.image_id,
      resolved_image_id: r.resolved_image_id !== r.image_id ? r.resolved_image_id : null,
      prepare_args_normalized: r.prepare_args_normalized || null, signature: r.signature,
      plan_only: r.plan_only ? true : null, created_at: r.created_at, started_at: r.started_at, finished_at: r.finished_at,
    }));
  }

  /** `GET /v1/prepare-jobs/{id}` body. */
  jobStatus(id: string): Record<string, unknown> | undefined {
    const r = this.getJob(id);
    if (!r) return undefined;
    const tasks = this.s.getTasks.all(id).map((t) => JSON.parse(t.task_json) as WireTask);
    return omitNull({
      job_id: r.job_id, status: r.status, prepare_kind: r.prepare_kind, image_id: r.image_id,
      plan_only: r.plan_only ? true : null, prepare_args_normalized: r.prepare_args_normalized || null,
      created_at: r.created_at, started_at: r.started_at, finished_at: r.finished_at,
      tasks: tasks.length > 0 ? tasks : null,
      result: r.result_json ? JSON.parse(r.result_json) as unknown : null,
      error: r.error_json ? JSON.parse(r.error_json) as unknown : null,
    });
  }

  // ---- tasks ------------------------------------------------------------------------------
  replaceTasks(jobId: string, tasks: { task: WireTask; argsSummary?: string | undefined; status: TaskStatus }[]): void {
    this.s.deleteTasks.run(jobId);
    tasks.forEach((t, i) => this.s.insertTask.run(jobId, i, t.task.task_id, t.status, JSON.stringify(t.task), t.argsSummary ?? null));
  }
  updateTask(jobId: string, position: number, p: TaskPatch): void {
    const sets: string[] = [];
    const vals: unknown[] = [];
    const put = (col: string, v: unknown): void => { sets.push(`${col} = ?`); vals.push(v); };
    if (p.status !== undefined) put('status', p.status);
    if (p.started_at !== undefined) put('started_at', p.started_at);
    if (p.finished_at !== undefined) put('finished_at', p.finished_at);
    if (p.error !== undefined) put('error_json', JSON.stringify(p.error));
    if (p.task !== undefined) put('task_json', JSON.stringify(p.task));
    if (sets.length === 0) return;
    this.shaped(`UPDATE tasks SET ${sets.join(', ')} WHERE job_id = ? AND position = ?`).run(...vals, jobId, position);
  }
  /** `GET /v1/tasks` entries (`job` = exact job id). */
  listTaskEntries(job?: string): Record<string, unknown>[] {
    const rows = job ? this.s.getTasks.all(job) : this.s.allTasks.all();
    return rows.map((t) => omitNull({ ...(JSON.parse(t.task_json) as WireTask), job_id: t.job_id, status: t.status, args_summary: t.args_summary }));
  }

  // ---- events -----------------------------------------------------------------------------
  /** Appends an event; returns its per-job index. */
  appendEvent(jobId: string, e: JobEvent): number {
    const idx = this.s.eventCount.get(jobId)?.n ?? 0;
    this.s.insertEvent.run(jobId, idx, JSON.stringify(e));
    return idx;
  }
  eventCount(jobId: string): number { return this.s.eventCount.get(jobId)?.n ?? 0; }
  /** Events with index ≥ `from`, as raw JSON lines (without newline). */
  eventsFrom(jobId: string, from: number): string[] { return this.s.eventsFrom.all(jobId, from).map((r) => r.event_json); }

  /** Events with a global sequence above `afterSeq` (one job, or all when `jobId` is undefined). */
  eventsAfterSeq(jobId: string | undefined, afterSeq: number, limit: number): SeqEventRow[] {
    return this.eventsInRange(jobId, afterSeq, Number.MAX_SAFE_INTEGER, limit);
  }

  /** Events with `after < seq <= upTo` (one job, or all when `jobId` is undefined). */
  eventsInRange(jobId: string | undefined, after: number, upTo: number, limit: number): SeqEventRow[] {
    return jobId === undefined ? this.s.seqRangeAll.all(after, upTo, limit) : this.s.seqRangeJob.all(jobId, after, upTo, limit);
  }
  /** The newest event sequence ever written (deleted jobs' events count; 0 when there is none). */
  maxEventSeq(): number { return this.s.maxEventSeq.get()?.n ?? 0; }

  // ---- states -----------------------------------------------------------------------------
  insertState(r: Omit<StateRow, 'last_used_at' | 'last_used_ms' | 'use_count' | 'min_retention_until'>): boolean {
    return this.s.insertState.run(r).changes > 0;
  }
  getState(id: string): StateRow | undefined { return this.s.getState.get(id); }
  hasState(id: string): boolean { return this.s.getState.get(id) !== undefined; }
  allStates(): StateRow[] { return this.s.allStates.all(); }
  childStates(id: string): StateRow[] { return this.s.childStates.all(id); }
  deleteState(id: string): boolean { return this.s.deleteState.run(id).changes > 0; }
  touchState(id: string, at: string, ms: number): void { this.s.touchState.run(at, ms, id); }
  refcount(stateId: string): number { return this.s.refcount.get(stateId)?.n ?? 0; }
  stateEntry(r: StateRow, refcount = this.refcount(r.state_id)): Record<string, unknown> {
    return omitNull({
      state_id: r.state_id, parent_state_id: r.parent_state_id, image_id: r.image_id, prepare_kind: r.prepare_kind,
      prepare_args_normalized: r.prepare_args_normalized, created_at: r.created_at, size_bytes: r.size_bytes,
      last_used_at: r.last_used_at, use_count: r.use_count, min_retention_until: r.min_retention_until,
      refcount,
    });
  }
  listStateEntries(f: { idPrefix?: string; kind?: string; image?: string }): Record<string, unknown>[] {
    const counts = new Map(this.s.refcounts.all().map((c) => [c.state_id, c.n]));
    return this.allStates()
      .filter((r) => (!f.idPrefix || r.state_id.toLowerCase().startsWith(f.idPrefix)) && (!f.kind || r.prepare_kind === f.kind) && (!f.image || r.image_id === f.image))
      .map((r) => this.stateEntry(r, counts.get(r.state_id) ?? 0));
  }

  // ---- instances --------------------------------------------------------------------------
  insertInstance(r: Omit<InstanceRow, 'expires_at' | 'deleting'>): void { this.s.insertInstance.run(r); }
  getInstance(id: string): InstanceRow | undefined { return this.s.getInstance.get(id); }
  allInstances(): InstanceRow[] { return this.s.allInstances.all(); }
  instancesOfState(stateId: string): InstanceRow[] { return this.s.instancesOfState.all(stateId); }
  deleteInstance(id: string): boolean { return this.s.deleteInstance.run(id).changes > 0; }
  setInstanceRuntime(id: string, runtimeId: string | null, port: number | null): void { this.s.setRuntime.run(runtimeId, port, id); }
  setInstanceDeleting(id: string, deleting: boolean): void { this.s.setDeleting.run(deleting ? 1 : 0, id); }
  instanceEntry(r: InstanceRow, now = Date.now()): Record<string, unknown> {
    const name = this.s.nameOfInstance.get(r.instance_id)?.name ?? null;
    const expired = r.expires_at !== null && Date.parse(r.expires_at) < now;
    return omitNull({
      instance_id: r.instance_id, image_id: r.image_id, state_id: r.state_id, name, created_at: r.created_at,
      expires_at: r.expires_at, runtime_id: r.runtime_id, status: expired ? 'expired' : name === null ? 'orphaned' : 'active',
    });
  }
  listInstanceEntries(f: { idPrefix?: string; state?: string; image?: string }): Record<string, unknown>[] {
    return this.allInstances()
      .filter((r) => (!f.idPrefix || r.instance_id.toLowerCase().startsWith(f.idPrefix)) && (!f.state || r.state_id === f.state) && (!f.image || r.image_id === f.image))
      .map((r) => this.instanceEntry(r));
  }

  // ---- names ------------------------------------------------------------------------------
  private nameEntry(n: Record<string, unknown>): Record<string, unknown> {
    const instanceId = n['instance_id'] as string | null;
    const inst = instanceId ? this.getInstance(instanceId) : undefined;
    const expired = inst?.expires_at ? Date.parse(inst.expires_at) < Date.now() : false;
    return omitNull({
      name: n['name'], instance_id: instanceId, image_id: n['image_id'],
      state_id: (n['state_id'] as string | null) || (n['state_fingerprint'] as string | null) || '',
      state_fingerprint: n['state_fingerprint'], status: !inst ? 'missing' : expired ? 'expired' : 'active',
      last_used_at: n['last_used_at'],
    });
  }
  getNameEntry(name: string): Record<string, unknown> | undefined {
    const n = this.s.getName.get(name);
    return n ? this.nameEntry(n) : undefined;
  }
  /** Instance id a name points at, if any. */
  instanceIdOfName(name: string): string | undefined {
    const n = this.s.getName.get(name);
    return (n?.['instance_id'] as string | null) ?? undefined;
  }
  listNameEntries(f: { instance?: string; state?: string; image?: string }): Record<string, unknown>[] {
    return this.s.allNames.all()
      .filter((n) => (!f.instance || n['instance_id'] === f.instance) && (!f.state || n['state_id'] === f.state) && (!f.image || n['image_id'] === f.image))
      .map((n) => this.nameEntry(n));
  }

  // ---- bases ------------------------------------------------------------------------------
  getBase(imageId: string): BaseRow | undefined { return this.s.getBase.get(imageId); }
  putBase(r: BaseRow): void { this.s.putBase.run(r.image_id, r.dir, r.backend, r.created_at); }
  deleteBase(imageId: string): void { this.s.deleteBase.run(imageId); }
  allBases(): BaseRow[] { return this.s.allBases.all(); }

  // ---- counts -----------------------------------------------------------------------------
  /** How many instances, states and prepare jobs (by status) there are: cheap, for metrics. */
  counts(): { instances: number; states: number; jobs: Record<string, number> } {
    const rows = this.s.countRows.get() ?? { instances: 0, states: 0 };
    return { instances: rows.instances, states: rows.states, jobs: Object.fromEntries(this.s.jobsPerStatus.all().map((r) => [r.status, r.n])) };
  }
}
