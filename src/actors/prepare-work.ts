/**
 * The work a prepare job asks for: resolve the image, plan (hash + cache lookups), build one
 * step's state (or find it built), create the instance. Every piece is idempotent: after a crash
 * the runtime redoes it and it either finds the result on disk or builds it again.
 */
import { dirname, join, relative, sep, posix } from 'node:path';
import { readdir, rename } from 'node:fs/promises';
import { statSync } from 'node:fs';
import type { Logger } from '../log.js';
import type { Store, JobEvent } from '../mailbox/store.js';
import type { EventHub } from './events-hub.js';
import type { Runtimes, RuntimeHandle, LogFn } from './runtimes.js';
import type { PrepareWork, ResolveResult, PlanResult, StepResult, InstanceResult, StateRowData, PrepareRequest } from './prepare-job.js';
import { validatePsqlRequest, argsSummary, type PsqlPrepared } from './psql-args.js';
import { hashPsqlPrepared, psqlJobSignature, stateId } from './hashing.js';
import { buildPsqlPlan, type StateExecuteTask } from './plan.js';
import { InternalError, InvalidArgumentError, CancelledError, errorText, assertNever, hasCode } from '../errors.js';
import { rfc3339Nano } from '../clock.js';
import type { BindMount } from '../workers/container-types.js';
import { outOfSpaceError } from './cache.js';

const SCRIPTS = '/sqlrs/scripts';
const MAX_ERROR_OUTPUT = 16 * 1024;

/** Cache capacity enforcement (`behaviour.md` §11.2), called at the documented points. */
export interface CapacityGuard {
  /**
   * Evicts what it may and throws the job error (`cache_limit_too_small`, `cache_full_unreclaimable`,
   * `cache_enforcement_unavailable`) when the cache cannot make room.
   * @param protect a state id that must not be evicted (the one just committed).
   */
  ensure(trigger: 'prepare_step' | 'snapshot' | 'metadata_commit', protect?: string): Promise<void>;
}

export interface PrepareWorkDeps {
  store: Store;
  hub: EventHub;
  runtimes: Runtimes;
  log: Logger;
  /** Optional until the cache capability is installed. */
  capacity?: CapacityGuard;
}

/** Deepest common ancestor directory of absolute paths. */
function commonDir(paths: string[]): string | undefined {
  if (paths.length === 0) return undefined;
  let parts = dirname(paths[0] ?? '/').split(sep);
  for (const p of paths.slice(1)) {
    const q = dirname(p).split(sep);
    let i = 0;
    while (i < parts.length && i < q.length && parts[i] === q[i]) i++;
    parts = parts.slice(0, i);
  }
  const d = parts.join(sep);
  return d === '' ? '/' : d;
}

/**
 * Plans a psql request on a resolved image: hashes every step, chains the state ids
 * (`state_id = H(input, task_hash)`) and marks the steps whose state exists. Used by prepare jobs
 * and by cache explain.
 * @throws InvalidArgumentError `cannot compute psql content hash`
 */
export async function planPsql(store: Pick<Store, 'hasState'>, request: PrepareRequest, resolvedImage: string): Promise<PlanResult> {
  const prepared = validatePsqlRequest(request.psqlArgs, request.stdin);
  const hashes = await hashPsqlPrepared(prepared);
  // Chaining and cache lookups are the planner's; only its execute tasks matter here.
  const executes = buildPsqlPlan({
    requestedImage: resolvedImage, resolvedImage, imageHadDigest: true, steps: hashes.steps,
    stateExists: (id) => store.hasState(id),
  }).filter((tk): tk is StateExecuteTask => tk.type === 'state_execute');
  const steps: PlanResult['steps'] = executes.map((tk, i) => {
    const input = prepared.steps[i]?.input;
    const step = { taskHash: tk.task_hash, outputStateId: tk.output_state_id, cached: tk.cached };
    return input ? { ...step, argsSummary: argsSummary(input) } : step;
  });
  return { steps, requestTaskHash: hashes.requestTaskHash, signature: psqlJobSignature(hashes.requestTaskHash, resolvedImage, request.planOnly) };
}

export class PrepareWorker {
  /** State builds in progress, by state id: other jobs wait on them. */
  private readonly builds = new Map<string, Promise<StateRowData>>();

  constructor(private readonly d: PrepareWorkDeps) {}

  /** Installs the cache capacity guard (called once the cache capability is up). */
  setCapacity(capacity: CapacityGuard): void { this.d.capacity = capacity; }

  /** Appends a `log` event for a job (progress output; outside the actor's transactions). */
  logTo(jobId: string): LogFn {
    return (message: string) => {
      if (!this.d.store.getJob(jobId)) return;
      const e: JobEvent = { type: 'log', ts: rfc3339Nano(), message };
      this.d.store.appendEvent(jobId, e);
      this.d.hub.notify(jobId);
    };
  }

  async perform(spec: PrepareWork, signal: AbortSignal): Promise<unknown> {
    switch (spec.kind) {
      case 'resolve': return this.resolve(spec, signal);
      case 'plan': return this.plan(spec);
      case 'step': return this.step(spec, signal);
      case 'instance': return this.instance(spec, signal);
      case 'discard': await this.d.runtimes.destroy({ containerId: spec.containerId, dir: spec.dir }); return {};
      default: return assertNever(spec, 'work');
    }
  }

  private async resolve(spec: Extract<PrepareWork, { kind: 'resolve' }>, signal: AbortSignal): Promise<ResolveResult> {
    try {
      // Unknown ids are learnt from initdb when the base is made (no probe container).
      const r = await this.d.runtimes.s.containers.resolveImage(spec.image, signal, this.knownUsers(), false);
      return { resolvedId: r.resolvedId, uid: r.uid, gid: r.gid };
    } catch (e) {
      if (signal.aborted) throw new CancelledError();
      throw new InternalError('cannot resolve image', { details: errorText(e), cause: e });
    }
  }

  /** postgres uid/gid per resolved image, read from the owners of initialised base data dirs. */
  private knownUsers(): Record<string, { uid: number; gid: number }> {
    const out: Record<string, { uid: number; gid: number }> = {};
    for (const b of this.d.store.allBases()) {
      try {
        const st = statSync(join(b.dir, 'data', 'pgdata'));
        out[b.image_id] = { uid: st.uid, gid: st.gid };
      } catch { /* base not usable: the probe decides */ }
    }
    return out;
  }

  private prepared(req: PrepareRequest): PsqlPrepared {
    return validatePsqlRequest(req.psqlArgs, req.stdin);
  }

  private plan(spec: Extract<PrepareWork, { kind: 'plan' }>): Promise<PlanResult> {
    return planPsql(this.d.store, spec.request, spec.resolvedImage);
  }

  /** Builds (or finds) one step's state. */
  private async step(spec: Extract<PrepareWork, { kind: 'step' }>, signal: AbortSignal): Promise<StepResult> {
    const log = this.logTo(spec.jobId);
    const rts = this.d.runtimes;
    for (;;) {
      if (signal.aborted) throw new CancelledError('task cancelled');
      const found = await this.findValid(spec, log);
      if (found) {
        // Cache hit: a runtime holding older data is useless for later steps.
        const rt = rts.get(spec.jobId);
        if (rt && rt.holds !== spec.outputStateId) await rts.release(spec.jobId);
        return { state: found, wasCached: true };
      }
      const other = this.builds.get(spec.outputStateId);
      if (other) {
        log(`waiting for a concurrent build of state ${spec.outputStateId}`);
        try {
          const row = await raceAbort(other, signal);
          const rt = rts.get(spec.jobId);
          if (rt && rt.holds !== spec.outputStateId) await rts.release(spec.jobId);
          return { state: row, wasCached: true };
        } catch (e) {
          if (signal.aborted) throw new CancelledError('task cancelled');
          log(`concurrent build failed (${errorText(e)}); building here`);
          continue;
        }
      }
      const p = this.build(spec, log, signal);
      this.builds.set(spec.outputStateId, p);
      try {
        return { state: await p, wasCached: false };
      } finally {
        this.builds.delete(spec.outputStateId);
      }
    }
  }

  /**
   * A usable existing state: a verified row, or a complete snapshot whose row was never committed
   * (the engine died between snapshot and commit), which is adopted. A broken cached state is
   * invalidated (files, then row) so that it is rebuilt.
   */
  private async findValid(spec: Extract<PrepareWork, { kind: 'step' }>, log: LogFn): Promise<StateRowData | undefined> {
    const rts = this.d.runtimes;
    const id = spec.outputStateId;
    const row = this.d.store.getState(id);
    const dir = row?.dir ?? rts.stateDir(id);
    const v = await rts.s.fs.run({ type: 'verify-state', root: rts.s.root, stateDir: dir });
    if (row && !v.ok) {
      log(`cached state ${id} is unusable (${v.reason ?? 'unknown'}); rebuilding`);
      this.d.log.warn('invalidating cached state', { state: id, reason: v.reason });
      // Move it aside rather than delete it: with overlay, live instances and child states may
      // still have its layer mounted. Start-up hygiene reaps `.invalid-*` when that is safe.
      await rename(dir, join(rts.statesDir(), `.invalid-${id}-${Date.now()}`)).catch(() => {});
      this.d.store.deleteState(id);
      return undefined;
    }
    if (!row) {
      if (!v.ok) return undefined;
      log(`adopting completed snapshot of state ${id}`);
      const { bytes } = await rts.s.fs.run({ type: 'measure', path: dir });
      const now = Date.now();
      return {
        state_id: id, parent_state_id: spec.input.kind === 'state' ? spec.input.id : null, image_id: spec.resolvedImage,
        prepare_kind: 'psql', prepare_args_normalized: spec.argsNormalized, created_at: rfc3339Nano(now), created_ms: now,
        size_bytes: bytes, backend: rts.s.backend, dir,
      };
    }
    return {
      state_id: row.state_id, parent_state_id: row.parent_state_id, image_id: row.image_id, prepare_kind: row.prepare_kind,
      prepare_args_normalized: row.prepare_args_normalized, created_at: row.created_at, created_ms: row.created_ms,
      size_bytes: row.size_bytes, backend: row.backend, dir: row.dir,
    };
  }

  /** Removes `.tmp-<state>-*` directories of an interrupted snapshot. */
  private async removePartial(stateId: string): Promise<void> {
    const dir = this.d.runtimes.statesDir();
    let names: string[] = [];
    try { names = await readdir(dir); } catch { return; }
    for (const n of names) {
      if (n.startsWith(`.tmp-${stateId}`)) await this.d.runtimes.s.fs.run({ type: 'remove-tree', path: join(dir, n) });
    }
  }

  /**
   * Re-hashes the request (the content may have changed since planning) and derives the read-only
   * script mount: the deepest directory holding every file read, includes too.
   * @throws InvalidArgumentError when the step's content no longer matches its planned state id.
   */
  private async scriptMounts(prepared: PsqlPrepared, spec: Extract<PrepareWork, { kind: 'step' }>): Promise<{ mounts: BindMount[]; root?: string }> {
    const hashes = await hashPsqlPrepared(prepared);
    const h = hashes.steps[spec.index];
    if (!h || stateId(spec.input.kind, spec.input.id, h.taskHash) !== spec.outputStateId) {
      throw new InvalidArgumentError('psql inputs changed while the job was running', { details: hashes.files.join(', ') || 'inline SQL' });
    }
    const root = commonDir(hashes.files);
    if (!root) return { mounts: [] };
    return { mounts: [{ host: root, container: SCRIPTS, readOnly: true }], root };
  }

  private async build(spec: Extract<PrepareWork, { kind: 'step' }>, log: LogFn, signal: AbortSignal): Promise<StateRowData> {
    const rts = this.d.runtimes;
    const prepared = this.prepared(spec.request);
    const step = prepared.steps[spec.index];
    if (!step) throw new InternalError('cannot resolve psql step', { details: `step ${spec.index} of ${prepared.steps.length}` });
    const { mounts, root } = await this.scriptMounts(prepared, spec);
    let rt = rts.get(spec.jobId);
    if (rt && rt.holds !== spec.input.id) { await rts.release(spec.jobId); rt = undefined; }
    const stateDir = rts.stateDir(spec.outputStateId);
    let phase: 'prepare_step' | 'snapshot' | 'metadata_commit' = 'prepare_step';
    try {
      await this.d.capacity?.ensure('prepare_step');
      if (!rt) {
        if (spec.input.kind === 'image') {
          log(`docker: init base ${spec.resolvedImage}`);
          const base = await rts.ensureBase(spec.resolvedImage, spec.uid, spec.gid, log, signal);
          rt = await rts.create(spec.jobId, spec.resolvedImage, { kind: 'base', baseDir: base.baseDir }, spec.input.id, base.uid, base.gid, mounts, log, signal);
        } else {
          const parent = this.d.store.getState(spec.input.id);
          if (!parent) throw new InternalError('input state not found', { details: spec.input.id });
          const o = await rts.owner(spec.resolvedImage, spec.uid, spec.gid, log, signal);
          rt = await rts.create(spec.jobId, spec.resolvedImage, { kind: 'state', stateDir: parent.dir }, spec.input.id, o.uid, o.gid, mounts, log, signal);
        }
      } else {
        await rts.ensurePg(rt, log, signal);
      }
      await this.runPsql(rt, step.args, prepared, root, log, signal);
      phase = 'snapshot';
      await this.d.capacity?.ensure('snapshot');
      log('pg_ctl: stop for snapshot');
      await rts.s.containers.stopPostgres(rt.containerId, signal);
      rt.pgRunning = false;
      log('snapshot: start');
      const { sizeBytes } = await rts.s.fs.run({ type: 'snapshot', backend: rts.s.backend, root: rts.s.root, runtimeDir: rt.dir, stateDir, maxDepth: rts.s.maxDepth }, signal);
      log('snapshot: complete');
      rt.holds = spec.outputStateId;
      phase = 'metadata_commit';
      await this.d.capacity?.ensure('metadata_commit', spec.outputStateId);
      const now = Date.now();
      return {
        state_id: spec.outputStateId, parent_state_id: spec.input.kind === 'state' ? spec.input.id : null,
        image_id: spec.resolvedImage, prepare_kind: 'psql', prepare_args_normalized: spec.argsNormalized,
        created_at: rfc3339Nano(now), created_ms: now, size_bytes: sizeBytes, backend: rts.s.backend, dir: stateDir,
      };
    } catch (e) {
      // A failed or cancelled step leaves nothing: no container, no mount, no partial state.
      await rts.release(spec.jobId).catch((e2: unknown) => this.d.log.error('cannot release runtime', { job: spec.jobId, error: errorText(e2) }));
      await this.removePartial(spec.outputStateId).catch((e2: unknown) => this.d.log.error('cannot remove partial state', { state: spec.outputStateId, error: errorText(e2) }));
      if (signal.aborted || hasCode(e, 'cancelled')) throw new CancelledError('task cancelled');
      throw outOfSpaceError(e, phase) ?? e;
    }
  }

  private async runPsql(rt: RuntimeHandle, args: string[], prepared: PsqlPrepared, root: string | undefined, log: LogFn, signal: AbortSignal): Promise<void> {
    const toContainer = (p: string): string => (root ? posix.join(SCRIPTS, relative(root, p).split(sep).join('/')) : p);
    const execArgs: string[] = [];
    let usesStdin = false;
    for (let i = 0; i < args.length; i++) {
      const a = args[i] ?? '';
      if (a === '-f' && i + 1 < args.length) {
        const p = args[++i] ?? '';
        if (p === '-') usesStdin = true;
        execArgs.push('-f', p === '-' ? '-' : toContainer(p));
      } else execArgs.push(a);
    }
    const hasFile = prepared.inputs.some((x) => x.kind === 'file');
    const workdir = hasFile && root ? toContainer(prepared.workDir + sep + '.').replace(/\/\.$/, '') : undefined;
    log('psql: start');
    let tail = '';
    const partial: Record<string, string> = { stdout: '', stderr: '' };
    const onOutput = (stream: 'stdout' | 'stderr', chunk: string): void => {
      tail = (tail + chunk).slice(-MAX_ERROR_OUTPUT);
      const text = (partial[stream] ?? '') + chunk;
      const lines = text.split('\n');
      partial[stream] = lines.pop() ?? '';
      for (const l of lines) { const t = l.replace(/\r$/, ''); if (t.trim() !== '') log(`psql: ${t}`); }
    };
    const cmd = ['psql', '-h', '127.0.0.1', '-p', '5432', '-U', 'sqlrs', '-d', 'postgres', ...execArgs];
    const req = { containerId: rt.containerId, cmd, user: 'postgres', ...(workdir ? { workdir } : {}), ...(usesStdin && prepared.stdin !== undefined ? { stdin: prepared.stdin } : {}) };
    const r = await this.d.runtimes.s.containers.exec(req, onOutput, signal);
    for (const s of ['stdout', 'stderr']) { const rest = partial[s] ?? ''; if (rest.trim() !== '') log(`psql: ${rest}`); }
    if (r.exitCode !== 0) {
      throw new InternalError('psql execution failed', { details: tail.trim() || `exit status ${r.exitCode}` });
    }
  }

  private async instance(spec: Extract<PrepareWork, { kind: 'instance' }>, signal: AbortSignal): Promise<InstanceResult> {
    const rts = this.d.runtimes;
    const log = this.logTo(spec.jobId);
    let rt = rts.get(spec.jobId);
    try {
      if (rt && rt.holds !== spec.stateId) { await rts.release(spec.jobId); rt = undefined; }
      if (rt) {
        await rts.ensurePg(rt, log, signal);
      } else {
        const st = this.d.store.getState(spec.stateId);
        if (!st) throw new InternalError('input state not found', { details: spec.stateId });
        const o = await rts.owner(spec.resolvedImage, spec.uid, spec.gid, log, signal);
        rt = await rts.create(spec.jobId, spec.resolvedImage, { kind: 'state', stateDir: st.dir }, spec.stateId, o.uid, o.gid, [], log, signal);
      }
      rts.detach(spec.jobId);
      return { instanceId: rt.instanceId, containerId: rt.containerId, port: rt.port, dir: rt.dir, createdAt: rfc3339Nano() };
    } catch (e) {
      await rts.release(spec.jobId).catch(() => {});
      if (signal.aborted || hasCode(e, 'cancelled')) throw new CancelledError('task cancelled');
      throw e;
    }
  }
}

/** Resolves like `p`, or rejects when `signal` aborts first. */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new CancelledError('task cancelled'));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(new CancelledError('task cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
