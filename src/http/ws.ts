/**
 * The WebSocket endpoint `/v1/ws` on uWebSockets.js: the handshake (version, subprotocol, token),
 * the per-socket lifecycle, and the wiring of the three streams into the fan-out ({@link WsHub}).
 * The protocol's messages are in `ws-protocol.ts`; README "WebSocket protocol" documents it.
 *
 * Handshake: `Sec-WebSocket-Version` must be 13 (else 426 with `Sec-WebSocket-Version: 13`) and
 * `Sec-WebSocket-Key` well-formed (else 400). The token may come as `Authorization: Bearer <token>`,
 * as `?token=<token>`, or — for browsers, which cannot set headers — as the subprotocol
 * `bearer.<token>` next to `sqlrs` (`Sec-WebSocket-Protocol: sqlrs, bearer.<token>`); the server
 * answers with the subprotocol `sqlrs` only, never the token. Offered subprotocols without `sqlrs`
 * are refused (400); a missing or wrong token is refused (401).
 */
import { timingSafeEqual } from 'node:crypto';
import type { WebSocket, WebSocketBehavior } from 'uWebSockets.js';
import type { Store } from '../mailbox/store.js';
import type { Logger } from '../log.js';
import type { LifecycleLog } from '../actors/lifecycle/service.js';
import type { RunWatch } from '../actors/run/service.js';
import { WsHub, type Client, type HubOptions, type HubStats } from './ws-hub.js';
import { errorFrame, parseClientMessage } from './ws-protocol.js';

/** The subprotocol a client offers (and the server answers) when it speaks this protocol. */
export const SUBPROTOCOL = 'sqlrs';
/** Prefix of the subprotocol that carries the token. */
export const BEARER_PREFIX = 'bearer.';
const KEY = /^[A-Za-z0-9+/]{22}==$/;

interface WsData { client: Client | undefined }

export interface WsOptions {
  store: Store;
  /** Calls `f` after every commit that appended job events; returns an unsubscribe function (the prepare service's `onEvents`). */
  onEvents(f: (jobId: string) => void): () => void;
  lifecycle: Pick<LifecycleLog, 'read' | 'bounds' | 'onAppended'>;
  runs: Pick<RunWatch, 'read' | 'onEvent'>;
  log: Logger;
  /** True when an `Authorization` header value carries the token (or no token is set). */
  authorized(header: string): boolean;
  token: string;
  opened(): void;
  closed(): void;
  hub?: HubOptions;
}

/** The behaviour for `app.ws('/v1/ws', …)`, with the fan-out's counters. */
export type EventsWebSocket = WebSocketBehavior<WsData> & { stats(): HubStats };

function sameToken(given: string | null | undefined, token: string): boolean {
  if (!given || token === '') return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function eventsWebSocket(o: WsOptions): EventsWebSocket {
  const hub = new WsHub({
    jobs: {
      read: (job, after, upTo, limit) => o.store.eventsInRange(job, after, upTo, limit),
      newest: () => o.store.maxEventSeq(),
      exists: (job) => o.store.getJob(job) !== undefined,
      inTransaction: () => o.store.inTransaction(),
    },
    lifecycle: o.lifecycle,
    runs: o.runs,
  }, o.hub);
  // These live as long as the server.
  o.onEvents(() => hub.wake());
  o.lifecycle.onAppended(() => hub.wake());
  o.runs.onEvent((runId, rec) => hub.runRecorded(runId, rec));

  return {
    stats: () => hub.stats(),
    maxPayloadLength: 64 * 1024,
    // Above the hub's bound by more than one frame, so uWS never drops what the hub decided to send.
    maxBackpressure: hub.maxBuffered + 4 * 1024 * 1024,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const key = req.getHeader('sec-websocket-key');
      const version = req.getHeader('sec-websocket-version');
      const offered = req.getHeader('sec-websocket-protocol').split(',').map((p) => p.trim()).filter((p) => p !== '');
      const ext = req.getHeader('sec-websocket-extensions');
      const auth = req.getHeader('authorization');
      const query = new URLSearchParams(req.getQuery() ?? '');
      const refuse = (status: string, headers: Record<string, string> = {}): void => {
        res.cork(() => {
          res.writeStatus(status);
          for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
          res.end();
        });
      };
      if (version !== '13') { refuse('426 Upgrade Required', { 'Sec-WebSocket-Version': '13' }); return; }
      if (!KEY.test(key)) { refuse('400 Bad Request'); return; }
      if (offered.length > 0 && !offered.includes(SUBPROTOCOL)) { refuse('400 Bad Request'); return; }
      const bearer = offered.find((p) => p.startsWith(BEARER_PREFIX))?.slice(BEARER_PREFIX.length);
      if (!(o.authorized(auth) || sameToken(query.get('token'), o.token) || sameToken(bearer, o.token))) { refuse('401 Unauthorized'); return; }
      res.upgrade<WsData>({ client: undefined }, key, offered.length > 0 ? SUBPROTOCOL : '', ext, context);
    },
    open: (ws: WebSocket<WsData>) => {
      ws.getUserData().client = hub.connect({ send: (m) => ws.send(m, false), getBufferedAmount: () => ws.getBufferedAmount(), cork: (fn) => { ws.cork(fn); } });
      o.opened();
    },
    message: (ws, message) => {
      const client = ws.getUserData().client;
      if (!client) return;
      const m = parseClientMessage(Buffer.from(message).toString('utf8'));
      if (typeof m === 'string') { client.peer.send(errorFrame('invalid_argument', 'invalid message', m)); return; }
      hub.handle(client, m);
    },
    drain: (ws) => {
      const client = ws.getUserData().client;
      if (client) hub.drain(client);
    },
    close: (ws) => {
      const client = ws.getUserData().client;
      if (client) hub.disconnect(client);
      ws.getUserData().client = undefined;
      o.closed();
    },
  };
}
