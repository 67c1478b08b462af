/**
 * Test helper: runs the REAL engine (`bin/sqlrs-engine.js` → compiled `dist/`) as a child process,
 * the way the sqlrs CLI starts it, and talks to it over HTTP.
 *
 * `npm test` builds before running tap, so `dist/` is assumed to exist; when running a single file
 * by hand (`npx tap test/process.test.ts`) run `npm run build` first after changing `src/`.
 *
 * Usage:
 * ```ts
 * import t from 'tap';
 * import { startEngine } from '../helpers/engine.js';
 *
 * t.test('prepare-jobs list is empty at first', async (t) => {
 *   const eng = await startEngine(t);                  // stopped (SIGTERM) and its dir removed at teardown
 *   const res = await eng.fetch('/v1/prepare-jobs');   // bearer token added
 *   t.equal(res.status, 200);
 *   t.same(res.json(), []);
 * });
 * ```
 *
 * Every request uses a fresh connection (`agent: false`, `Connection: close`), so no keep-alive
 * socket can keep a test process alive.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { EngineJson } from '../../src/discovery.js';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file lives in `<root>/test/helpers`). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The engine's executable script. */
export const ENGINE_BIN = join(REPO_ROOT, 'bin', 'sqlrs-engine.js');

/** The part of a tap `Test` the helper needs (teardown registration). */
export interface TeardownHost { teardown(fn: () => void | Promise<void>): void }

/** `engine.json` as written by the engine. */
/** The parsed `engine.json` (the engine's own type). */
export type EngineJsonFile = EngineJson;

/** How a child process ended. */
export interface ExitInfo { code: number | null; signal: NodeJS.Signals | null }

/** A complete HTTP response. Header names are lower-case. */
export interface HttpResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** `JSON.parse(body)`; throws if the body is not JSON. */
  json<T = unknown>(): T;
}

export interface RequestInit {
  method?: string;
  headers?: Record<string, string>;
  /** A string/Buffer is sent as is; any other value is JSON-encoded. */
  body?: unknown;
  /** Give up after this many ms. @default 30000 */
  timeoutMs?: number;
}

/** An open streaming response (e.g. the NDJSON events of a job). */
export interface HttpStream {
  status: number;
  headers: IncomingHttpHeaders;
  /** Non-empty lines as they arrive; ends when the server ends the response. Call once: iterators share one buffer. */
  lines(): AsyncIterableIterator<string>;
  /** Resolves with the whole remaining body when the server ends the response. */
  ended: Promise<string>;
  /** Closes the connection from the client side. */
  close(): void;
}

export interface StartOptions {
  /**
   * Directory holding `engine.json`, `logs/`, `run/` and (by default) `state-store/`.
   * Pass the `dir` of a previous engine to restart on the same store. Default: a fresh temp dir,
   * removed at teardown.
   */
  dir?: string;
  /** `SQLRS_STATE_STORE`. @default `<dir>/state-store` */
  store?: string;
  /** `--idle-timeout`. @default '2m0s' (what the CLI passes) */
  idleTimeout?: string;
  /** `--version`; omitted when undefined (engine default `dev`). */
  version?: string;
  /** Extra command-line arguments, appended. */
  args?: string[];
  /** Extra environment (undefined values remove a variable). */
  env?: Record<string, string | undefined>;
  /** Max wait for `engine.json` + a healthy `/v1/health`. @default 15000 */
  startTimeoutMs?: number;
}

/** A running engine child process. */
export interface EngineProcess {
  /** `host:port` from engine.json (no scheme). */
  endpoint: string;
  /** `http://host:port`. */
  baseUrl: string;
  token: string;
  pid: number;
  instanceId: string;
  /** The parsed engine.json as first read. */
  engineJson: EngineJsonFile;
  /** Directory of engine.json. */
  dir: string;
  engineJsonPath: string;
  /** State store root (`SQLRS_STATE_STORE`). */
  store: string;
  /** `<dir>/logs/engine.log`. */
  logPath: string;
  proc: ChildProcess;
  /** Resolves once the process has exited. */
  exited: Promise<ExitInfo>;
  /** Everything the process wrote so far. */
  stdout(): string;
  stderr(): string;
  /** Request with `Authorization: Bearer <token>` (an explicit `authorization` header wins). */
  fetch(path: string, init?: RequestInit): Promise<HttpResult>;
  /** Request without any Authorization header. */
  fetchRaw(path: string, init?: RequestInit): Promise<HttpResult>;
  /** Opens a streaming GET (token added) and resolves once the response headers arrive. */
  stream(path: string, init?: RequestInit): Promise<HttpStream>;
  /** SIGTERM, then waits for exit (SIGKILL after 15 s). */
  stop(): Promise<ExitInfo>;
  /** SIGKILL, then waits for exit. */
  kill(): Promise<ExitInfo>;
}

/** Environment for engine children: the test runner's loader hooks are not passed on. */
function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['NODE_OPTIONS'];
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k]; else env[k] = v;
  }
  return env;
}

function watchExit(proc: ChildProcess): Promise<ExitInfo> {
  return new Promise((res) => {
    if (proc.exitCode !== null || proc.signalCode !== null) { res({ code: proc.exitCode, signal: proc.signalCode }); return; }
    proc.once('exit', (code, signal) => res({ code, signal }));
  });
}

/**
 * Spawns `node bin/sqlrs-engine.js <args>` without waiting for anything (usage-error tests etc.).
 * stdout/stderr are collected.
 */
export function spawnEngine(args: string[], env: Record<string, string | undefined> = {}): {
  proc: ChildProcess; exited: Promise<ExitInfo>; stdout(): string; stderr(): string;
} {
  const proc = spawn(process.execPath, [ENGINE_BIN, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d; });
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d; });
  return { proc, exited: watchExit(proc), stdout: () => out, stderr: () => err };
}

/** Runs the engine with `args` until it exits (at most `timeoutMs`, then SIGKILL). */
export async function runEngineToExit(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 15_000): Promise<ExitInfo & { stdout: string; stderr: string }> {
  const c = spawnEngine(args, env);
  const timer = setTimeout(() => c.proc.kill('SIGKILL'), timeoutMs);
  const r = await c.exited;
  clearTimeout(timer);
  await new Promise((res) => setImmediate(res)); // let the last output chunks arrive
  return { ...r, stdout: c.stdout(), stderr: c.stderr() };
}

/** Parses engine.json, or undefined when missing / partial. */
export function readEngineJson(path: string): EngineJsonFile | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as EngineJsonFile;
  } catch {
    return undefined;
  }
}

function sleep(ms: number): Promise<void> { return new Promise((r) => setTimeout(r, ms)); }

/**
 * One HTTP/1.1 request on its own connection. `baseUrl` is `http://host:port`.
 * Never rejects on HTTP status; rejects on connection errors and timeouts.
 */
export function httpFetch(baseUrl: string, path: string, init: RequestInit = {}): Promise<HttpResult> {
  return new Promise((res, rej) => {
    const url = new URL(path, baseUrl);
    const body = init.body === undefined ? undefined
      : typeof init.body === 'string' || Buffer.isBuffer(init.body) ? init.body : JSON.stringify(init.body);
    const headers: Record<string, string> = { Connection: 'close', ...init.headers };
    if (body !== undefined && !Object.keys(headers).some((k) => k.toLowerCase() === 'content-length')) {
      headers['Content-Length'] = String(Buffer.byteLength(body));
    }
    let settled = false;
    const req = httpRequest(url, { method: init.method ?? 'GET', headers, agent: false }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('error', (e) => { if (!settled) { settled = true; rej(e); } });
      r.on('end', () => {
        if (settled) return;
        settled = true;
        const text = Buffer.concat(chunks).toString('utf8');
        res({ status: r.statusCode ?? 0, headers: r.headers, body: text, json: <T>() => JSON.parse(text) as T });
      });
    });
    req.setTimeout(init.timeoutMs ?? 30_000, () => req.destroy(new Error(`request ${init.method ?? 'GET'} ${path} timed out`)));
    // A server may answer (e.g. "body too large") and close before the whole body is sent: the
    // response still arrives, so write errors are only reported if no response came.
    req.on('error', (e) => { setTimeout(() => { if (!settled) { settled = true; rej(e); } }, 200); });
    if (body !== undefined) req.end(body); else req.end();
  });
}

/** Opens a streaming request; resolves when the response headers arrive. */
export function httpStream(baseUrl: string, path: string, init: RequestInit = {}): Promise<HttpStream> {
  return new Promise((res, rej) => {
    const url = new URL(path, baseUrl);
    const headers: Record<string, string> = { Connection: 'close', ...init.headers };
    const req = httpRequest(url, { method: init.method ?? 'GET', headers, agent: false }, (r: IncomingMessage) => {
      r.setEncoding('utf8');
      let buffered = '';
      let all = '';
      let done = false;
      const waiters: (() => void)[] = [];
      const wake = (): void => { for (const w of waiters.splice(0)) w(); };
      let resolveEnded!: (s: string) => void;
      const ended = new Promise<string>((r2) => { resolveEnded = r2; });
      r.on('data', (d: string) => { buffered += d; all += d; wake(); });
      const finish = (): void => { if (done) return; done = true; wake(); resolveEnded(all); };
      r.on('end', finish);
      r.on('close', finish);
      r.on('error', finish);
      async function* lines(): AsyncIterableIterator<string> {
        for (;;) {
          const nl = buffered.indexOf('\n');
          if (nl >= 0) {
            const line = buffered.slice(0, nl);
            buffered = buffered.slice(nl + 1);
            if (line.trim() !== '') yield line;
            continue;
          }
          if (done) {
            if (buffered.trim() !== '') { const last = buffered; buffered = ''; yield last; }
            return;
          }
          await new Promise<void>((w) => waiters.push(w));
        }
      }
      res({ status: r.statusCode ?? 0, headers: r.headers, lines, ended, close: () => { req.destroy(); finish(); } });
    });
    req.on('error', rej);
    req.end();
  });
}

/**
 * Starts an engine child as the CLI does
 * (`--run-dir <dir>/run --listen 127.0.0.1:0 --write-engine-json <dir>/engine.json --idle-timeout 2m0s`,
 * `SQLRS_STATE_STORE=<dir>/state-store`) and waits until engine.json exists and `/v1/health`
 * answers with its `instanceId`. When `t` is given, the engine is stopped and a temp dir it
 * created removed at teardown.
 * @throws if the engine exits or is not healthy within `startTimeoutMs`.
 */
export async function startEngine(t: TeardownHost | undefined, opts: StartOptions = {}): Promise<EngineProcess> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'sqlrs-engine-test-'));
  const store = opts.store ?? join(dir, 'state-store');
  const engineJsonPath = join(dir, 'engine.json');
  const args = [
    '--run-dir', join(dir, 'run'),
    '--listen', '127.0.0.1:0',
    '--write-engine-json', engineJsonPath,
    '--idle-timeout', opts.idleTimeout ?? '2m0s',
    ...(opts.version === undefined ? [] : ['--version', opts.version]),
    ...(opts.args ?? []),
  ];
  const child = spawnEngine(args, { SQLRS_STATE_STORE: store, ...opts.env });
  const { proc, exited } = child;
  const stop = async (): Promise<ExitInfo> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const r = await exited;
      clearTimeout(timer);
      return r;
    }
    return exited;
  };
  const kill = async (): Promise<ExitInfo> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    return exited;
  };
  // A test process killed by a timeout never runs its teardown: never leave an engine behind.
  const killOnExit = (): void => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL'); };
  process.once('exit', killOnExit);
  void exited.then(() => process.removeListener('exit', killOnExit));
  t?.teardown(async () => {
    await stop();
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  });

  const deadline = Date.now() + (opts.startTimeoutMs ?? 15_000);
  let exitedEarly: ExitInfo | undefined;
  void exited.then((e) => { exitedEarly = e; });
  let found: EngineJsonFile | undefined;
  for (;;) {
    if (exitedEarly) {
      throw new Error(`engine exited during start-up (code ${exitedEarly.code}, signal ${exitedEarly.signal}): ${child.stderr()}`);
    }
    if (Date.now() > deadline) {
      await kill();
      throw new Error(`engine not healthy within ${opts.startTimeoutMs ?? 15_000} ms; stderr: ${child.stderr()}`);
    }
    const cur = existsSync(engineJsonPath) ? readEngineJson(engineJsonPath) : undefined;
    if (cur && cur.pid === proc.pid) {
      try {
        const h = await httpFetch(`http://${cur.endpoint}`, '/v1/health', { timeoutMs: 2000 });
        if (h.status === 200 && h.json<{ instanceId?: string }>().instanceId === cur.instanceId) { found = cur; break; }
      } catch { /* not answering yet */ }
    }
    await sleep(25);
  }
  const info: EngineJsonFile = found;
  const baseUrl = `http://${info.endpoint}`;
  const withAuth = (init: RequestInit): RequestInit => {
    const headers = { ...init.headers };
    if (!Object.keys(headers).some((k) => k.toLowerCase() === 'authorization')) headers['Authorization'] = `Bearer ${info.authToken}`;
    return { ...init, headers };
  };
  return {
    endpoint: info.endpoint,
    baseUrl,
    token: info.authToken,
    pid: info.pid,
    instanceId: info.instanceId,
    engineJson: info,
    dir,
    engineJsonPath,
    store,
    logPath: join(dir, 'logs', 'engine.log'),
    proc,
    exited,
    stdout: child.stdout,
    stderr: child.stderr,
    fetch: (path, init = {}) => httpFetch(baseUrl, path, withAuth(init)),
    fetchRaw: (path, init = {}) => httpFetch(baseUrl, path, init),
    stream: (path, init = {}) => httpStream(baseUrl, path, withAuth(init)),
    stop,
    kill,
  };
}
