/**
 * Test helpers for prepare jobs against a real engine child process and the real Docker daemon
 * (or Podman's API: the helpers inspect the API of `./docker.ts`'s `containerHost`):
 * Docker availability (fail under `SQLRS_REQUIRE_DOCKER=1`, else skip), submitting jobs, reading
 * their event streams, and cleaning a state store completely (containers by store label, mounts,
 * directories).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startEngine, type EngineProcess, type StartOptions, type TeardownHost } from './engine.js';
import { storeLabel } from '../../src/actors/layout.js';
import { containerHost, dockerCli } from './docker.js';

export const IMAGE = process.env['SQLRS_TEST_IMAGE'] ?? 'sqlrs-local/postgres:15';

/** Why Docker (or the test image) cannot be used, or undefined when it can. */
export function dockerProblem(): string | undefined {
  try {
    dockerCli(['image', 'inspect', IMAGE], { stdio: 'ignore', timeout: 20_000 });
    return undefined;
  } catch (e) {
    try { dockerCli(['info'], { stdio: 'ignore', timeout: 20_000 }); } catch { return `the Docker daemon is not reachable at ${containerHost}`; }
    return `the image ${IMAGE} is missing at ${containerHost} (run scripts/test-env.sh): ${(e as Error).message}`;
  }
}

/** Fails (CI) or skips (elsewhere) a whole test file when Docker is unavailable. Returns true to go on. */
export function needDocker(t: { fail(m: string): void; plan(n: number, why?: string): void }): boolean {
  const p = dockerProblem();
  if (p === undefined) return true;
  if (process.env['SQLRS_REQUIRE_DOCKER'] === '1') t.fail(`SQLRS_REQUIRE_DOCKER=1 but ${p}`);
  else t.plan(0, p);
  return false;
}

/** Mount points at or below `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  const root = resolve(dir);
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (!mp) continue;
    const p = mp.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (p === root || p.startsWith(root + '/')) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Containers (ids) the engine created for a store. */
export function storeContainers(store: string): string[] {
  const out = dockerCli(['ps', '-aq', '--no-trunc', '--filter', `label=dev.sqlrs.store=${storeLabel(resolve(store))}`], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean);
}

/** Removes every container, mount and file of a store directory tree. */
export function wipe(dir: string, store: string): void {
  const ids = storeContainers(store);
  if (ids.length > 0) dockerCli(['rm', '-f', '-v', ...ids], { stdio: 'ignore' });
  for (const m of mountsUnder(dir)) {
    try { execFileSync('umount', [m], { stdio: 'ignore' }); } catch { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); }
  }
  if (existsSync(dir)) {
    // btrfs subvolumes (read-only snapshots) must be deleted as subvolumes.
    try { execFileSync('sh', ['-c', `find ${JSON.stringify(dir)} -mindepth 1 -xdev -inum 256 -type d 2>/dev/null | sort -r | xargs -r -I{} btrfs subvolume delete {} >/dev/null 2>&1; true`], { stdio: 'ignore' }); } catch { /* not btrfs */ }
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface PrepEngine extends EngineProcess { scripts: string }

/** Starts an engine on a fresh dir (or `opts.dir`), cleaned completely at teardown. */
export async function startPrepEngine(t: TeardownHost, opts: StartOptions & { backend?: string; keep?: boolean } = {}): Promise<PrepEngine> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'sqlrs-prep-'));
  const store = opts.store ?? join(dir, 'state-store');
  if (opts.backend) {
    execFileSync('mkdir', ['-p', store]);
    execFileSync('sh', ['-c', `printf '%s' '{"snapshot":{"backend":"${opts.backend}"}}' > ${JSON.stringify(join(store, 'config.json'))}`]);
  }
  const eng = await startEngine(undefined, { ...opts, dir, store, idleTimeout: opts.idleTimeout ?? '2m0s' });
  if (!opts.keep) {
    t.teardown(async () => {
      await eng.stop().catch(() => {});
      wipe(dir, store);
    });
  }
  const scripts = join(dir, 'sql');
  execFileSync('mkdir', ['-p', scripts]);
  return Object.assign(eng, { scripts });
}

export interface JobEventLine { type: string; ts: string; status?: string; task_id?: string; message?: string; result?: Record<string, string>; error?: { code: string; message: string; details?: string } }

export interface JobOutcome {
  jobId: string;
  events: JobEventLine[];
  status: string;
  result?: Record<string, string>;
  error?: { code: string; message: string; details?: string };
}

/** Submits a prepare job; returns its id (asserting 201). */
export async function submit(eng: EngineProcess, body: Record<string, unknown>): Promise<string> {
  const r = await eng.fetch('/v1/prepare-jobs', { method: 'POST', body: { prepare_kind: 'psql', image_id: IMAGE, ...body } });
  if (r.status !== 201) throw new Error(`submit answered ${r.status}: ${r.body}`);
  return r.json<{ job_id: string }>().job_id;
}

/** Reads a job's whole event stream (it ends after the terminal events). */
export async function waitJob(eng: EngineProcess, jobId: string, timeoutMs = 180_000): Promise<JobOutcome> {
  const s = await eng.stream(`/v1/prepare-jobs/${jobId}/events`, { timeoutMs });
  const events: JobEventLine[] = [];
  for await (const line of s.lines()) events.push(JSON.parse(line) as JobEventLine);
  const status = [...events].reverse().find((e) => e.type === 'status')?.status ?? 'unknown';
  const out: JobOutcome = { jobId, events, status };
  const r = events.find((e) => e.type === 'result')?.result;
  if (r) out.result = r;
  const er = events.find((e) => e.type === 'error')?.error;
  if (er) out.error = er;
  return out;
}

/** Submit + wait. */
export async function prepare(eng: EngineProcess, body: Record<string, unknown>): Promise<JobOutcome> {
  return waitJob(eng, await submit(eng, body));
}

/** Runs SQL with the host psql against a DSN; returns trimmed stdout. */
export function psqlAt(dsn: string, sql: string): string {
  return execFileSync('psql', [dsn, '-XAtqc', sql], { encoding: 'utf8', timeout: 30_000 }).trim();
}

/** Directory names below `<store>/<sub>`. */
export function entries(store: string, sub: string): string[] {
  const d = join(store, sub);
  return existsSync(d) ? readdirSync(d) : [];
}

/** Task ids with a `running` task event. */
export function ranTasks(o: JobOutcome): string[] {
  return o.events.filter((e) => e.type === 'task' && e.status === 'running').map((e) => e.task_id ?? '');
}
