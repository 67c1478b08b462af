/**
 * WebSocket event streaming at `/v1/ws`.
 *
 * Auth: `Authorization: Bearer <token>` on the upgrade request, or `?token=<token>` (browsers cannot
 * set headers). Client → server text frames:
 *   `{"op":"subscribe","job":"<job_id>"|"*","after":<seq>}`  (after defaults to 0 = from the start)
 *   `{"op":"unsubscribe","job":"<job_id>"|"*"}`
 * Server → client frames, one JSON object each:
 *   `{"seq":<n>,"ts":"…","type":"job.event","actorId":"prepare:<job_id>","data":<prepare-job event>}`
 *   `{"seq":0,"ts":"…","type":"ws.error","data":{"code":"invalid_argument","message":"…"}}`
 * `seq` is the event's global, monotonic sequence: reconnect with `after` = last seq seen to get
 * exactly the missed tail. Pushes respect backpressure: while the socket's buffered amount is over
 * a bound, nothing more is read; the `drain` handler resumes.
 */
import type { WebSocket, WebSocketBehavior } from 'uWebSockets.js';
import * as v from 'valibot';
import type { Store } from '../mailbox/store.js';
import type { Logger } from '../log.js';
import { rfc3339Nano } from '../clock.js';

interface Sub { job: string | undefined; after: number }
interface WsData { subs: Map<string, Sub>; closed: boolean; pumping: boolean }

const MAX_BUFFERED = 1024 * 1024;
const BATCH = 256;

const ClientMsg = v.variant('op', [
  v.object({ op: v.literal('subscribe'), job: v.pipe(v.string(), v.minLength(1)), after: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))) }),
  v.object({ op: v.literal('unsubscribe'), job: v.pipe(v.string(), v.minLength(1)) }),
]);

export interface WsOptions {
  store: Store;
  /** Calls `f` after every committed job event; returns an unsubscribe function (the prepare service's `onEvents`). */
  onEvents(f: (jobId: string) => void): () => void;
  log: Logger;
  authorized(header: string): boolean;
  token: string;
  opened(): void;
  closed(): void;
}

export function eventsWebSocket(o: WsOptions): WebSocketBehavior<WsData> {
  const sockets = new Set<WebSocket<WsData>>();
  const send = (ws: WebSocket<WsData>, frame: unknown): boolean => {
    const d = ws.getUserData();
    if (d.closed) return false;
    ws.send(JSON.stringify(frame), false);
    return ws.getBufferedAmount() < MAX_BUFFERED;
  };
  const pump = (ws: WebSocket<WsData>): void => {
    const d = ws.getUserData();
    if (d.closed || d.pumping) return;
    d.pumping = true;
    try {
      for (const [key, sub] of d.subs) {
        for (;;) {
          if (ws.getBufferedAmount() >= MAX_BUFFERED) return; // resumed by drain
          const rows = o.store.eventsAfterSeq(sub.job, sub.after, BATCH);
          for (const r of rows) {
            sub.after = r.seq;
            const ok = send(ws, { seq: r.seq, ts: rfc3339Nano(), type: 'job.event', actorId: `prepare:${r.job_id}`, data: JSON.parse(r.event_json) as unknown });
            if (!ok) return;
          }
          if (rows.length < BATCH || !d.subs.has(key)) break;
        }
      }
    } finally {
      d.pumping = false;
    }
  };
  const unsubscribeHub = o.onEvents(() => { for (const ws of sockets) pump(ws); });
  void unsubscribeHub; // lives as long as the server
  return {
    maxPayloadLength: 64 * 1024,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const auth = req.getHeader('authorization');
      const q = new URLSearchParams(req.getQuery() ?? '');
      const ok = o.authorized(auth) || (q.get('token') ?? '') === o.token;
      const key = req.getHeader('sec-websocket-key');
      const proto = req.getHeader('sec-websocket-protocol');
      const ext = req.getHeader('sec-websocket-extensions');
      if (!ok) {
        res.cork(() => res.writeStatus('401 Unauthorized').end());
        return;
      }
      res.upgrade<WsData>({ subs: new Map(), closed: false, pumping: false }, key, proto, ext, context);
    },
    open: (ws) => { sockets.add(ws); o.opened(); },
    message: (ws, message) => {
      let parsed: unknown;
      try { parsed = JSON.parse(Buffer.from(message).toString('utf8')); } catch { parsed = undefined; }
      const r = v.safeParse(ClientMsg, parsed);
      if (!r.success) {
        send(ws, { seq: 0, ts: rfc3339Nano(), type: 'ws.error', data: { code: 'invalid_argument', message: 'invalid message', details: r.issues[0]?.message ?? 'not JSON' } });
        return;
      }
      const d = ws.getUserData();
      const m = r.output;
      if (m.op === 'unsubscribe') { d.subs.delete(m.job); return; }
      if (m.job !== '*' && !o.store.getJob(m.job)) {
        send(ws, { seq: 0, ts: rfc3339Nano(), type: 'ws.error', data: { code: 'not_found', message: 'job not found', details: m.job } });
        return;
      }
      d.subs.set(m.job, { job: m.job === '*' ? undefined : m.job, after: m.after ?? 0 });
      pump(ws);
    },
    drain: (ws) => pump(ws),
    close: (ws) => {
      ws.getUserData().closed = true;
      sockets.delete(ws);
      o.closed();
    },
  };
}
