/**
 * A WebSocket client for the `/v1/ws` suites: connects to a real engine child process (token by
 * header, query or subprotocol), collects every frame, and waits on frames by predicate.
 */
import WebSocket from 'ws';
import type { EngineProcess } from './engine.js';

export interface Frame {
  seq: number;
  ts: string;
  type: string;
  actorId?: string;
  runId?: string;
  data: Record<string, unknown> & { type?: string; status?: string; code?: string; message?: string; event?: string; id?: string };
}

export interface WsClient {
  ws: WebSocket;
  frames: Frame[];
  send(msg: unknown): void;
  /** Resolves with the first `n` frames once they have arrived. */
  next(n: number, timeoutMs?: number): Promise<Frame[]>;
  /** Resolves once a frame matching `pred` has arrived (returns it). */
  waitFor(pred: (f: Frame) => boolean, what: string, timeoutMs?: number): Promise<Frame>;
  close(): Promise<void>;
}

export interface ConnectOptions {
  headers?: Record<string, string>;
  protocols?: string[];
  query?: string;
}

/** Opens `/v1/ws`; by default authenticated with `Authorization: Bearer <token>`. */
export function connectWs(eng: EngineProcess, o: ConnectOptions = { headers: { Authorization: `Bearer ${eng.token}` } }): Promise<WsClient> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${eng.endpoint}/v1/ws${o.query ?? ''}`, o.protocols ?? [], { headers: o.headers ?? {} });
    const frames: Frame[] = [];
    const waiters = new Set<() => void>();
    ws.on('message', (m) => { frames.push(JSON.parse(String(m)) as Frame); for (const w of [...waiters]) w(); });
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade answered ${res.statusCode}`)));
    ws.once('error', reject);
    const wait = <T>(check: () => T | undefined, what: () => string, timeoutMs: number): Promise<T> => new Promise((res, rej) => {
      const timer = setTimeout(() => { waiters.delete(w); rej(new Error(`timed out waiting for ${what()}`)); }, timeoutMs);
      const w = (): void => {
        const r = check();
        if (r !== undefined) { clearTimeout(timer); waiters.delete(w); res(r); }
      };
      waiters.add(w);
      w();
    });
    ws.once('open', () => resolve({
      ws, frames,
      send: (msg) => ws.send(JSON.stringify(msg)),
      next: (n, timeoutMs = 30_000) => wait(() => (frames.length >= n ? frames.slice(0, n) : undefined), () => `${n} frames (have ${frames.length})`, timeoutMs),
      waitFor: (pred, what, timeoutMs = 120_000) => wait(() => frames.find(pred), () => what, timeoutMs),
      close: () => new Promise((res) => {
        if (ws.readyState === WebSocket.CLOSED) { res(); return; }
        ws.once('close', () => res());
        ws.close();
      }),
    }));
  });
}
