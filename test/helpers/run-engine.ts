/**
 * Test helper for run-session suites: a real engine child process (through `./engine.js`) on a
 * private state store, streamed `POST` requests with the arrival time of every NDJSON line,
 * instance preparation, direct access to the store database, and a teardown that deletes the
 * engine's instances, stops it, removes its containers and overlay mounts, then its directory.
 *
 * Requires `npm run build` after changing `src/` (the engine runs from `dist/`).
 */
import { mkdtempSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import Docker from 'dockerode';
import { dockerProblem as sharedDockerProblem, socketPath } from './docker.js';
import { IMAGE, wipe } from './prepare.js';
import { startEngine, type EngineProcess, type StartOptions } from './engine.js';

export { IMAGE };
export const REQUIRE_DOCKER = process.env['SQLRS_REQUIRE_DOCKER'] === '1';

const docker = new Docker({ socketPath });

/** Why real-Docker tests cannot run here, or undefined when they can. */
export function dockerProblem(): Promise<string | undefined> {
  return sharedDockerProblem(docker);
}

export { docker };

/** One NDJSON event and when it arrived (ms since the request was sent). */
export interface TimedEvent {
  at: number;
  event: { type: string; [k: string]: unknown };
}

export interface PostStream {
  status: number;
  headers: IncomingHttpHeaders;
  /** Events (non-empty lines of an NDJSON response) as they arrive. */
  events(): AsyncIterableIterator<TimedEvent>;
  /** Resolves with the whole body once the response ends. */
  ended: Promise<string>;
  /** Closes the connection from the client side. */
  close(): void;
  /** Stops / resumes reading the response (a slow client). */
  pause(): void;
  resume(): void;
}

/** Sends a POST with a JSON body and resolves once the response headers arrive. */
export function postStream(eng: EngineProcess, path: string, body: unknown, headers: Record<string, string> = {}): Promise<PostStream> {
  return new Promise((res, rej) => {
    const url = new URL(path, eng.baseUrl);
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const t0 = Date.now();
    const req = httpRequest(url, {
      method: 'POST',
      agent: false,
      headers: { Connection: 'close', Authorization: `Bearer ${eng.token}`, 'Content-Length': String(Buffer.byteLength(text)), ...headers },
    }, (r: IncomingMessage) => {
      r.setEncoding('utf8');
      let buffered = '';
      let all = '';
      let done = false;
      const queue: TimedEvent[] = [];
      const waiters: (() => void)[] = [];
      const wake = (): void => { for (const w of waiters.splice(0)) w(); };
      let resolveEnded!: (s: string) => void;
      const ended = new Promise<string>((r2) => { resolveEnded = r2; });
      r.on('data', (d: string) => {
        all += d;
        buffered += d;
        const at = Date.now() - t0;
        for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line.trim() === '') continue;
          try {
            queue.push({ at, event: JSON.parse(line) as TimedEvent['event'] });
          } catch {
            queue.push({ at, event: { type: '<unparsable>', line } });
          }
        }
        wake();
      });
      const finish = (): void => { if (done) return; done = true; wake(); resolveEnded(all); };
      r.on('end', finish);
      r.on('close', finish);
      r.on('error', finish);
      async function* events(): AsyncIterableIterator<TimedEvent> {
        for (;;) {
          const e = queue.shift();
          if (e) { yield e; continue; }
          if (done) return;
          await new Promise<void>((w) => waiters.push(w));
        }
      }
      res({
        status: r.statusCode ?? 0, headers: r.headers, events, ended,
        close: () => { req.destroy(); finish(); },
        pause: () => { r.pause(); },
        resume: () => { r.resume(); },
      });
    });
    req.setTimeout(600_000);
    req.on('error', rej);
    req.end(text);
  });
}

export interface RunResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  events: TimedEvent[];
}

/** `POST /v1/runs` read to the end. */
export async function run(eng: EngineProcess, body: unknown): Promise<RunResult> {
  const s = await postStream(eng, '/v1/runs', body);
  const events: TimedEvent[] = [];
  for await (const e of s.events()) events.push(e);
  return { status: s.status, headers: s.headers, body: await s.ended, events };
}

/** Concatenated `data` of the events of one type. */
export function dataOf(r: RunResult, type: 'stdout' | 'stderr' | 'log'): string {
  return r.events.filter((e) => e.event.type === type).map((e) => String(e.event['data'])).join('');
}

/** The `exit_code` of the run's `exit` event (undefined without one). */
export function exitCodeOf(r: RunResult): number | undefined {
  const e = r.events.find((x) => x.event.type === 'exit');
  return e === undefined ? undefined : Number(e.event['exit_code']);
}

/** Prepares an instance (`psql_args`) and returns its id once the job's `result` event arrived. */
export async function prepareInstance(eng: EngineProcess, psqlArgs: string[]): Promise<string> {
  const sub = await eng.fetch('/v1/prepare-jobs', { method: 'POST', body: { prepare_kind: 'psql', image_id: IMAGE, psql_args: psqlArgs } });
  if (sub.status !== 201 && sub.status !== 202) throw new Error(`prepare submit: ${sub.status} ${sub.body}`);
  const { events_url: eventsUrl } = sub.json<{ events_url: string }>();
  const stream = await eng.stream(eventsUrl, { timeoutMs: 600_000 });
  for await (const line of stream.lines()) {
    const e = JSON.parse(line) as { type: string; result?: { instance_id: string }; error?: unknown };
    if (e.type === 'result' && e.result) { stream.close(); return e.result.instance_id; }
    if (e.type === 'error') { stream.close(); throw new Error(`prepare failed: ${JSON.stringify(e.error)}`); }
  }
  throw new Error('prepare events ended without a result');
}

/** Opens the engine's store database (WAL; short writes coexist with the engine). */
export function openStoreDb(eng: EngineProcess): Database.Database {
  const db = new Database(join(eng.store, 'state.db'));
  db.pragma('busy_timeout = 5000');
  return db;
}

/** Removes the containers labelled with a store, the mounts below `dir`, and `dir`. */
export async function scrub(dir: string, store: string): Promise<void> {
  wipe(dir, store);
}

/**
 * Starts an engine on a fresh temp directory (or `opts.dir` for a restart). At teardown of `t`:
 * deletes every instance through the API (when the engine still runs), stops the engine, then
 * removes the store's containers, mounts and the directory.
 */
export async function startRunEngine(t: { teardown(fn: () => void | Promise<void>): void }, opts: StartOptions & { keepDir?: boolean } = {}): Promise<EngineProcess> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'sqlrs-run-test-'));
  // The CLI's idle timeout (2m0s) stays on, so an engine orphaned by a killed test process ends itself.
  const eng = await startEngine(undefined, { ...opts, dir, startTimeoutMs: opts.startTimeoutMs ?? 60_000 });
  t.teardown(async () => {
    if (eng.proc.exitCode === null && eng.proc.signalCode === null) {
      try {
        const list = await eng.fetch('/v1/instances', { timeoutMs: 10_000 });
        if (list.status === 200) {
          for (const i of list.json<{ instance_id: string }[]>()) {
            await eng.fetch(`/v1/instances/${i.instance_id}?force=true`, { method: 'DELETE', timeoutMs: 60_000 }).catch(() => undefined);
          }
        }
      } catch { /* best effort */ }
      await eng.stop();
    }
    if (!opts.keepDir) await scrub(dir, eng.store);
  });
  return eng;
}
