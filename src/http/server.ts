/**
 * The HTTP + WebSocket front on uWebSockets.js: routing, bearer auth, the API error shape,
 * request logging and activity tracking (for idle shutdown). Handlers never run business logic:
 * they validate input and read the store or message an actor.
 */
import uWS from 'uWebSockets.js';
import type { HttpResponse, TemplatedApp, us_listen_socket, WebSocketBehavior } from 'uWebSockets.js';
import { EngineError, InvalidArgumentError, errorText, httpErrorOf } from '../errors.js';
import type { Logger } from '../log.js';
import { Reply, readBody, readReq, type Req } from './reply.js';
import * as v from 'valibot';

export interface Ctx {
  req: Req;
  reply: Reply;
  /** Path parameters captured by the route pattern. */
  params: string[];
  /** Raw request body (limited). */
  bodyBytes(): Promise<Buffer>;
  /** Body decoded as JSON; malformed → 400 `invalid json payload`. */
  json(): Promise<unknown>;
}

export type Handler = (ctx: Ctx) => void | Promise<void>;

/**
 * Reads the JSON body and checks its shape with a valibot schema. Shape errors are answered like
 * the CLI's reference decoder: 400 `invalid json payload`, the first issue (with its path) in details.
 */
export async function readJsonBody<S extends v.GenericSchema>(ctx: Ctx, schema: S): Promise<v.InferOutput<S>> {
  const r = v.safeParse(schema, await ctx.json());
  if (r.success) return r.output;
  const issue = r.issues[0];
  const where = issue?.path?.map((p) => String(p.key)).join('.') ?? '';
  throw new InvalidArgumentError('invalid json payload', { details: `${where ? `${where}: ` : ''}${issue?.message ?? 'invalid body'}` });
}

export interface Route {
  /** Returns captured params when the path matches. */
  match(path: string): string[] | undefined;
  auth: boolean;
  methods: Partial<Record<string, Handler>>;
}

/** Exact path. */
export function exact(path: string, auth: boolean, methods: Route['methods']): Route {
  return { match: (p) => (p === path ? [] : undefined), auth, methods };
}
/** Regex path; capture groups become params (URL-decoded). */
export function pattern(re: RegExp, auth: boolean, methods: Route['methods']): Route {
  return {
    match: (p) => {
      const m = re.exec(p);
      if (!m) return undefined;
      try { return m.slice(1).map((s) => decodeURIComponent(s ?? '')); } catch { return undefined; }
    },
    auth,
    methods,
  };
}

export interface HttpServerOptions {
  token: string;
  logger: Logger;
  routes: Route[];
  /** Max request body in bytes. @default 8 MiB */
  bodyLimit?: number;
  /** WebSocket endpoints by path. */
  websockets?: Record<string, WebSocketBehavior<never>>;
}

/** Sends an error in the API's shape with the status its code implies (`HTTP_STATUS` in errors.ts). */
export function sendError(reply: Reply, e: unknown, fallbackMessage = 'internal error'): void {
  const { status, body } = httpErrorOf(e, fallbackMessage);
  reply.json(status, body);
}

export class HttpServer {
  private readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | undefined;
  private inFlightCount = 0;
  private last = Date.now();
  private readonly bodyLimit: number;
  private readonly expected: string;
  /** Open long-lived connections (WebSockets) counted as activity. */
  openSockets = 0;

  constructor(private readonly opts: HttpServerOptions) {
    this.bodyLimit = opts.bodyLimit ?? 8 * 1024 * 1024;
    this.expected = `Bearer ${opts.token}`;
    this.app = uWS.App();
    for (const [path, b] of Object.entries(opts.websockets ?? {})) this.app.ws(path, b);
    this.app.any('/*', (res, req) => this.handle(res, req));
  }

  /** Requests (including open streams) currently being served. */
  get inFlight(): number { return this.inFlightCount + this.openSockets; }
  /** Time the last request finished (ms epoch). */
  get lastActivity(): number { return this.last; }

  /** True when the Authorization header carries the engine token. */
  authorized(header: string): boolean {
    return this.opts.token === '' || header.trim() === this.expected;
  }

  private handle(res: HttpResponse, rawReq: uWS.HttpRequest): void {
    const reply = new Reply(res);
    const req = readReq(rawReq, res);
    const started = process.hrtime.bigint();
    this.inFlightCount++;
    const finish = (): void => {
      this.inFlightCount--;
      this.last = Date.now();
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      this.opts.logger.info('http request', { method: req.method, path: req.path, status: reply.aborted && reply.status === 0 ? 'aborted' : reply.status, bytes: reply.bytes, dur: `${ms.toFixed(1)}ms`, remote: req.remote });
    };
    let matched: { route: Route; params: string[] } | undefined;
    for (const route of this.opts.routes) {
      const params = route.match(req.path);
      if (params) { matched = { route, params }; break; }
    }
    if (!matched) { reply.notFoundText(); finish(); return; }
    const { route, params } = matched;
    if (route.auth && !this.authorized(req.authorization)) { reply.empty(401); finish(); return; }
    const handler = route.methods[req.method];
    if (!handler) { reply.empty(405); finish(); return; }
    let bodyPromise: Promise<Buffer> | undefined;
    // The body must be attached synchronously, before any await.
    if (req.method === 'POST' || req.method === 'PATCH' || req.method === 'PUT' || req.method === 'DELETE') {
      bodyPromise = readBody(res, reply, this.bodyLimit);
      bodyPromise.catch(() => {}); // observed by json()/bodyBytes() when used
    }
    const ctx: Ctx = {
      req, reply, params,
      bodyBytes: () => bodyPromise ?? Promise.resolve(Buffer.alloc(0)),
      json: async () => {
        const buf = await ctx.bodyBytes();
        const text = buf.toString('utf8');
        if (text.trim() === '') throw new InvalidArgumentError('invalid json payload', { details: 'EOF' });
        try {
          return JSON.parse(text) as unknown;
        } catch (e) {
          throw new InvalidArgumentError('invalid json payload', { details: (e as Error).message });
        }
      },
    };
    let p: void | Promise<void>;
    try {
      p = handler(ctx);
    } catch (e) {
      this.fail(reply, req, e);
      finish();
      return;
    }
    if (p instanceof Promise) {
      p.catch((e: unknown) => this.fail(reply, req, e)).finally(() => {
        if (!reply.done) reply.json(500, { code: 'internal_error', message: 'internal error', details: 'no response' });
        finish();
      });
    } else {
      if (!reply.done) reply.json(500, { code: 'internal_error', message: 'internal error', details: 'no response' });
      finish();
    }
  }

  private fail(reply: Reply, req: Req, e: unknown): void {
    if (!(e instanceof EngineError) || e.code === 'internal_error' || e.code.startsWith('ENGINE_')) {
      this.opts.logger.error('request failed', { method: req.method, path: req.path, error: errorText(e) });
    }
    if (reply.done) return;
    if (reply.status !== 0) { reply.endStream(); return; } // a stream already started
    sendError(reply, e);
  }

  /** Binds the listener; returns the bound port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.app.listen(host, port, (ls) => {
        if (!ls) { reject(new Error(`cannot listen on ${host}:${port}`)); return; }
        this.listenSocket = ls;
        resolve(uWS.getSocketPort(ls));
      });
    });
  }

  /** Stops accepting connections. */
  stopListening(): void {
    if (this.listenSocket) { uWS.closeSocket(this.listenSocket); this.listenSocket = undefined; }
  }

  /** Closes the listener and every open connection. */
  close(): void {
    this.stopListening();
    // `close` exists at runtime on this uWS build but is missing from its type declarations.
    (this.app as unknown as { close?: () => void }).close?.();
  }
}
