/**
 * `/v1/ws` on a real uWebSockets.js server in this process (the engine's own `HttpServer`), a real
 * SQLite store, the real lifecycle writer and run watch, and real clients (the `ws` package and raw
 * TCP for malformed handshakes): the handshake's version, key, subprotocol and token rules, and a
 * client that stops reading while thousands of events are committed — the server's buffer stays
 * bounded and the client, once it reads again, gets every event exactly once, in order.
 */
import { join } from 'node:path';
import net from 'node:net';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import type { WebSocketBehavior } from 'uWebSockets.js';
import { openDatabase } from '../../src/mailbox/db.js';
import { Store } from '../../src/mailbox/store.js';
import { LifecycleStore } from '../../src/mailbox/lifecycle.js';
import { LifecycleLog } from '../../src/actors/lifecycle/service.js';
import { EventHub, JobEventLog } from '../../src/actors/prepare/events.js';
import { RunWatch } from '../../src/actors/run/watch.js';
import { systemClock } from '../../src/clock.js';
import { createLogger } from '../../src/log.js';
import { asJobId } from '../../src/ids.js';
import { HttpServer } from '../../src/http/server.js';
import { eventsWebSocket, type EventsWebSocket } from '../../src/http/ws.js';

const TOKEN = 'a'.repeat(64);
const MAX_BUFFERED = 64 * 1024;

async function serve(t: Test) {
  const db = openDatabase(join(t.testdir(), 'state.db'));
  const store = new Store(db);
  const hub = new EventHub(systemClock);
  const events = new JobEventLog(store, hub, systemClock);
  const lifecycle = new LifecycleLog(new LifecycleStore(db), systemClock);
  const runs = new RunWatch();
  let open = 0;
  const log = createLogger(() => undefined, 'error');
  const ws: EventsWebSocket = eventsWebSocket({
    store, onEvents: (f) => hub.subscribe(f), lifecycle, runs, log, token: TOKEN,
    authorized: (h) => h === `Bearer ${TOKEN}`, opened: () => { open++; }, closed: () => { open--; },
    hub: { maxBuffered: MAX_BUFFERED },
  });
  const http = new HttpServer({ token: TOKEN, logger: log, routes: [], websockets: { '/v1/ws': ws as unknown as WebSocketBehavior<never> } });
  const port = await http.listen('127.0.0.1', 0);
  t.teardown(() => { http.close(); db.close(); });
  return { store, events, ws, port, open: () => open };
}

/** Status line (and headers) the server answers to a raw upgrade request. */
function rawUpgrade(port: number, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1', () => {
      const lines = Object.entries({ Host: 'x', Upgrade: 'websocket', Connection: 'Upgrade', ...headers }).map(([k, v]) => `${k}: ${v}`);
      c.write(`GET /v1/ws HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`);
    });
    let text = '';
    c.on('data', (d) => { text += String(d); if (text.includes('\r\n\r\n')) { c.destroy(); resolve(text); } });
    c.on('error', reject);
    c.on('close', () => resolve(text));
  });
}

function connect(port: number, protocols: string[] = [], opts: WebSocket.ClientOptions = {}, query = ''): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws${query}`, protocols, opts);
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade answered ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

async function until(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

t.test('the websocket handshake checks version, key, subprotocol and token', async (t) => {
  const s = await serve(t);
  const key = 'dGhlIHNhbXBsZSBub25jZQ==';
  const good = { 'Sec-WebSocket-Key': key, 'Sec-WebSocket-Version': '13', Authorization: `Bearer ${TOKEN}` };
  t.match(await rawUpgrade(s.port, { ...good, 'Sec-WebSocket-Version': '8' }), /^HTTP\/1\.1 426 Upgrade Required\r\n[\s\S]*Sec-WebSocket-Version: 13\r\n/i, 'a wrong version: 426 naming the one spoken');
  t.match(await rawUpgrade(s.port, { ...good, 'Sec-WebSocket-Key': `${'@'.repeat(22)}==` }), /^HTTP\/1\.1 400 /, 'a malformed key: 400');
  t.match(await rawUpgrade(s.port, { ...good, 'Sec-WebSocket-Protocol': 'chat' }), /^HTTP\/1\.1 400 /, 'subprotocols without sqlrs: 400');
  t.match(await rawUpgrade(s.port, { ...good, Authorization: 'Bearer nope' }), /^HTTP\/1\.1 401 /, 'a wrong token: 401');
  t.match(await rawUpgrade(s.port, good), /^HTTP\/1\.1 101 /, 'the good request upgrades');

  const byProtocol = await connect(s.port, ['sqlrs', `bearer.${TOKEN}`]);
  t.equal(byProtocol.protocol, 'sqlrs', 'the token as a subprotocol; only `sqlrs` is echoed');
  byProtocol.close();
  await t.rejects(connect(s.port, ['sqlrs', 'bearer.nope']), /401/, 'a wrong token as a subprotocol: 401');
  await t.rejects(connect(s.port, ['sqlrs']), /401/, 'sqlrs alone carries no token');
  const byQuery = await connect(s.port, [], {}, `?token=${TOKEN}`);
  t.equal(byQuery.protocol, '', 'no subprotocol offered, none answered');
  byQuery.close();
  await t.rejects(connect(s.port, [], {}, '?token=nope'), /401/);
  const byHeader = await connect(s.port, [], { headers: { Authorization: `Bearer ${TOKEN}` } });
  byHeader.close();
  await until('sockets to close', () => s.open() === 0);
});

t.test('a client that stops reading costs a bounded buffer and, reading again, gets every event once and in order', async (t) => {
  const s = await serve(t);
  const job = asJobId('1'.padStart(32, '0'));
  s.store.insertJob({ job_id: job, prepare_kind: 'psql', image_id: 'img', resolved_image_id: null, plan_only: true, prepare_args_normalized: '', request: {}, created_at: 'now' });
  const line = 'x'.repeat(1000);
  const commit = (n: number): void => { for (let i = 0; i < n; i++) s.events.progress(job, `${i} ${line}`); };
  commit(8000); // a backlog of ~8 MB to catch up on: more than the kernel's socket buffers take

  const c = await connect(s.port, ['sqlrs', `bearer.${TOKEN}`]);
  const seqs: number[] = [];
  c.on('message', (m) => { seqs.push((JSON.parse(String(m)) as { seq: number }).seq); });
  (c as unknown as { _socket: net.Socket })._socket.pause();
  c.send(JSON.stringify({ op: 'subscribe', job: '*' }));
  await until('the server to stop at the bound', () => s.ws.stats().subscriptions === 1 && s.ws.stats().peakBuffered >= MAX_BUFFERED);
  commit(2000); // committed while the client does not read: it cannot go live
  t.equal(s.ws.stats().lagging, 1, 'the subscription waits for the socket instead of buffering');
  (c as unknown as { _socket: net.Socket })._socket.resume();
  await until('every event', () => seqs.length >= 10_000);
  commit(10); // live
  await until('the live events', () => seqs.length >= 10_010);
  const all = s.store.eventsInRange(job, 0, Number.MAX_SAFE_INTEGER, 1e6).map((r) => r.seq);
  t.equal(all.length, 10_010);
  t.same(seqs, all.slice(0, seqs.length), 'in order, nothing missing, nothing twice');
  const st = s.ws.stats();
  t.equal(st.lagging, 0, 'live again');
  t.ok(st.peakBuffered < MAX_BUFFERED + 4096, `server-side buffer stayed bounded (peak ${st.peakBuffered} bytes, bound ${MAX_BUFFERED})`);
  c.close();
});

t.test('a subscription that publishes pending events to other sockets from inside its own message handler delivers them', async (t) => {
  const s = await serve(t);
  const job = asJobId('2'.padStart(32, '0'));
  s.store.insertJob({ job_id: job, prepare_kind: 'psql', image_id: 'img', resolved_image_id: null, plan_only: true, prepare_args_normalized: '', request: {}, created_at: 'now' });
  const first = await connect(s.port, ['sqlrs', `bearer.${TOKEN}`]);
  const got: number[] = [];
  first.on('message', (m) => { got.push((JSON.parse(String(m)) as { seq: number }).seq); });
  first.send(JSON.stringify({ op: 'subscribe', job: '*' }));
  await until('the first subscription', () => s.ws.stats().subscriptions === 1 && s.ws.stats().lagging === 0);
  // Committed without waking the fan-out: the next subscription finds them unpublished.
  for (let i = 0; i < 3; i++) s.store.tx(() => s.store.appendEvent(job, { type: 'log', ts: new Date().toISOString(), message: String(i) }));
  const second = await connect(s.port, ['sqlrs', `bearer.${TOKEN}`]);
  const caught: number[] = [];
  second.on('message', (m) => { caught.push((JSON.parse(String(m)) as { seq: number }).seq); });
  second.send(JSON.stringify({ op: 'subscribe', job }));
  await until('both sockets to get the events', () => got.length === 3 && caught.length === 3);
  const all = s.store.eventsInRange(job, 0, 1e9, 10).map((r) => r.seq);
  t.same(got, all, 'the live socket, corked from inside the other socket\'s handler');
  t.same(caught, all, 'the new socket, by catch-up');
  first.close();
  second.close();
});
