/**
 * Request and response wrappers over uWebSockets.js. uWS request objects are only valid
 * synchronously inside the handler, so everything needed is copied out at once; responses are
 * written under `cork` and streams respect backpressure (`write` → `onWritable`).
 */
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { InvalidArgumentError } from '../errors.js';

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 206: 'Partial Content', 307: 'Temporary Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict',
  413: 'Payload Too Large', 416: 'Range Not Satisfiable', 500: 'Internal Server Error', 503: 'Service Unavailable',
};

export function statusLine(code: number): string {
  return `${code} ${STATUS_TEXT[code] ?? 'Status'}`;
}

/** The parts of a request the engine uses, copied out of uWS. */
export interface Req {
  method: string;
  path: string;
  query: URLSearchParams;
  authorization: string;
  accept: string;
  range: string;
  remote: string;
}

export function readReq(req: HttpRequest, res: HttpResponse): Req {
  let remote = '';
  try { remote = Buffer.from(res.getRemoteAddressAsText()).toString(); } catch { /* closed socket */ }
  return {
    method: req.getMethod().toUpperCase(),
    path: req.getUrl(),
    query: new URLSearchParams(req.getQuery() ?? ''),
    authorization: req.getHeader('authorization'),
    accept: req.getHeader('accept'),
    range: req.getHeader('range'),
    remote,
  };
}

/** Response wrapper that remembers whether the client went away and what was sent. */
export class Reply {
  aborted = false;
  done = false;
  status = 0;
  bytes = 0;
  private abortListeners: (() => void)[] = [];
  private writableWaiter: (() => void) | undefined;

  constructor(readonly res: HttpResponse) {
    res.onAborted(() => {
      this.aborted = true;
      this.done = true;
      this.writableWaiter?.();
      for (const f of this.abortListeners) f();
    });
  }

  /** Registers a callback for client disconnect; returns an unsubscribe function. */
  onAbort(f: () => void): () => void {
    if (this.aborted) { f(); return () => {}; }
    this.abortListeners.push(f);
    return () => { this.abortListeners = this.abortListeners.filter((x) => x !== f); };
  }

  /** Sends a complete response. */
  send(code: number, body: string | Buffer, headers: Record<string, string> = {}): void {
    if (this.done) return;
    this.done = true;
    this.status = code;
    this.bytes = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
    this.res.cork(() => {
      this.res.writeStatus(statusLine(code));
      for (const [k, v] of Object.entries(headers)) this.res.writeHeader(k, v);
      this.res.end(body);
    });
  }

  json(code: number, value: unknown, headers: Record<string, string> = {}): void {
    this.send(code, JSON.stringify(value) + '\n', { 'Content-Type': 'application/json', ...headers });
  }
  empty(code: number, headers: Record<string, string> = {}): void { this.send(code, '', headers); }
  notFoundText(): void { this.send(404, '404 page not found\n', { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' }); }

  /** Starts a chunked streaming response. */
  startStream(code: number, headers: Record<string, string>): void {
    if (this.done) return;
    this.status = code;
    this.res.cork(() => {
      this.res.writeStatus(statusLine(code));
      for (const [k, v] of Object.entries(headers)) this.res.writeHeader(k, v);
    });
  }

  /** Writes a chunk; resolves when the socket can take more (backpressure). */
  async write(chunk: string): Promise<void> {
    if (this.done) return;
    let ok = true;
    this.bytes += Buffer.byteLength(chunk);
    this.res.cork(() => { ok = this.res.write(chunk); });
    if (ok || this.done) return;
    await new Promise<void>((resolve) => {
      this.writableWaiter = resolve;
      this.res.onWritable(() => { this.writableWaiter = undefined; resolve(); return true; });
    });
  }

  endStream(): void {
    if (this.done) return;
    this.done = true;
    this.res.cork(() => this.res.end());
  }
}

/**
 * Reads the whole request body, refusing more than `limit` bytes.
 * @throws InvalidArgumentError `request body too large`
 */
export function readBody(res: HttpResponse, reply: Reply, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    let failed = false;
    reply.onAbort(() => reject(new InvalidArgumentError('client closed the connection')));
    res.onData((ab, isLast) => {
      if (failed) return;
      size += ab.byteLength;
      if (size > limit) {
        failed = true;
        reject(new InvalidArgumentError('request body too large', { details: `limit is ${limit} bytes` }));
        return;
      }
      parts.push(Buffer.from(ab.slice(0))); // uWS reuses the ArrayBuffer: copy it
      if (isLast) resolve(Buffer.concat(parts));
    });
  });
}

/** Go `strconv.ParseBool` on a trimmed query value; absent/empty = false. */
export function parseBoolParam(q: URLSearchParams, name: string): boolean {
  const raw = (q.get(name) ?? '').trim();
  if (raw === '') return false;
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(raw)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(raw)) return false;
  throw new InvalidArgumentError(`invalid ${name}`, { details: `strconv.ParseBool: parsing ${JSON.stringify(raw)}: invalid syntax` });
}

/** `id_prefix` rule of `api.md` §5: trimmed, ≥ 8 hex chars, lower-cased; empty = unset. */
export function parseIdPrefix(q: URLSearchParams): string | undefined {
  const raw = (q.get('id_prefix') ?? '').trim();
  if (raw === '') return undefined;
  if (raw.length < 8) throw new InvalidArgumentError('invalid id_prefix', { details: 'id_prefix must be at least 8 hex characters' });
  if (!/^[0-9a-fA-F]+$/.test(raw)) throw new InvalidArgumentError('invalid id_prefix', { details: 'id_prefix must be hex' });
  return raw.toLowerCase();
}

/** Trimmed string query parameter; empty = unset. */
export function strParam(q: URLSearchParams, name: string): string | undefined {
  const v = (q.get(name) ?? '').trim();
  return v === '' ? undefined : v;
}

/** Writes a list as a JSON array or NDJSON depending on `Accept`. */
export function sendList(reply: Reply, accept: string, items: unknown[]): void {
  if (accept.toLowerCase().includes('application/x-ndjson')) {
    reply.send(200, items.map((i) => JSON.stringify(i) + '\n').join(''), { 'Content-Type': 'application/x-ndjson' });
  } else {
    reply.json(200, items);
  }
}
