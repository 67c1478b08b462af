/**
 * Test helpers for deletion and cache suites against a real engine child process and the real
 * Docker daemon (or Podman's API, see `./docker.ts`): holding a client session open on an
 * instance, reading rows and the store's leftovers, and polling.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EngineProcess } from './engine.js';
import { mountsUnder, storeContainers, entries } from './prepare.js';
import { dockerCli } from './docker.js';

export interface StateEntry { state_id: string; parent_state_id?: string; refcount: number; size_bytes?: number; last_used_at?: string }
export interface InstanceEntry { instance_id: string; state_id: string; runtime_id?: string }

export interface DeleteNode { kind: string; id: string; connections?: number; runtime_id?: string; blocked?: string; children?: DeleteNode[] }
export interface DeleteBody { dry_run: boolean; outcome: string; root: DeleteNode }

/** An open psql session on an instance (the host's psql client). */
export interface Session { proc: ChildProcess; close(): Promise<void> }

/** Opens a psql session against `dsn` and resolves once it has run a query. */
export function holdSession(dsn: string, timeoutMs = 30_000): Promise<Session> {
  const proc = spawn('psql', [dsn, '-X', '-q', '-A', '-t'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const close = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.stdin?.end();
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { void close(); reject(new Error(`psql session did not start: ${err}`)); }, timeoutMs);
    proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('session-ready')) { clearTimeout(timer); resolve({ proc, close }); }
    });
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d; });
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`psql exited (${code}) before the session was ready: ${err}`)); });
    proc.stdin?.write("select 'session-ready';\n");
  });
}

export async function states(eng: EngineProcess): Promise<StateEntry[]> {
  return (await eng.fetch('/v1/states')).json<StateEntry[]>();
}
export async function instances(eng: EngineProcess): Promise<InstanceEntry[]> {
  return (await eng.fetch('/v1/instances')).json<InstanceEntry[]>();
}

/** `DELETE` with query parameters; returns status and parsed body. */
export async function del(eng: EngineProcess, path: string, q: Record<string, string> = {}): Promise<{ status: number; body: DeleteBody & { code?: string; message?: string; details?: string } }> {
  const qs = new URLSearchParams(q).toString();
  const r = await eng.fetch(`${path}${qs ? `?${qs}` : ''}`, { method: 'DELETE', timeoutMs: 180_000 });
  return { status: r.status, body: r.json() };
}

/** True when a container with this id exists (any status). */
export function containerExists(id: string): boolean {
  try {
    dockerCli(['inspect', '--format', '{{.Id}}', id], { stdio: 'ignore', timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
}

/** Everything the store holds that deletion must remove, for before/after comparisons. */
export async function snapshotStore(eng: EngineProcess): Promise<{ states: string[]; instances: string[]; stateDirs: string[]; instanceDirs: string[]; containers: string[]; mounts: string[] }> {
  return {
    states: (await states(eng)).map((s) => s.state_id).sort(),
    instances: (await instances(eng)).map((i) => i.instance_id).sort(),
    stateDirs: entries(eng.store, 'states').filter((d) => !d.startsWith('.')).sort(),
    instanceDirs: entries(eng.store, 'instances').sort(),
    containers: storeContainers(eng.store).sort(),
    mounts: mountsUnder(eng.store).sort(),
  };
}

/** Polls `fn` until it returns true (at most `timeoutMs`). */
export async function until(fn: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Lines of the engine log that contain `needle`, in order. */
export function logLines(eng: EngineProcess, needle: string): string[] {
  const p = eng.logPath;
  if (!existsSync(p)) return [];
  return readFileSync(p, 'utf8').split('\n').filter((l) => l.includes(needle));
}

/** The engine log's JSON lines (`{level, time, c?, msg, …fields}`) whose `msg` is `msg`, in order. */
export function logRecords(eng: EngineProcess, msg: string | RegExp): Record<string, unknown>[] {
  const p = eng.logPath;
  if (!existsSync(p)) return [];
  return readFileSync(p, 'utf8').split('\n').filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => (typeof msg === 'string' ? r['msg'] === msg : msg.test(String(r['msg']))));
}

/** `<store>/states/<id>` exists. */
export function stateDirExists(eng: EngineProcess, id: string): boolean {
  return existsSync(join(eng.store, 'states', id));
}
