/**
 * The WebSocket endpoint /v1/ws against a real engine child process: the handshake (token by
 * header, query or subprotocol; wrong tokens and versions refused), job subscriptions with the
 * NDJSON events as `data`, resume by global `seq`, catch-up joining the live stream without a gap
 * or a duplicate while jobs run, the per-socket limits, coded errors, lifecycle `job.terminal`
 * frames and `GET /v1/runs`. The jobs use an image that does not exist, so they fail fast at image
 * resolution (no Docker needed).
 */
import net from 'node:net';
import t from 'tap';
import { startEngine, type EngineProcess } from '../../helpers/engine.js';
import { connectWs } from '../../helpers/ws-client.js';

async function submitFailing(eng: EngineProcess): Promise<string> {
  const r = await eng.fetch('/v1/prepare-jobs', { method: 'POST', body: { prepare_kind: 'psql', image_id: 'sqlrs-test/does-not-exist:1', psql_args: ['-c', 'select 1'] } });
  return r.json<{ job_id: string }>().job_id;
}

async function failedJob(eng: EngineProcess): Promise<string> {
  const id = await submitFailing(eng);
  await (await eng.stream(`/v1/prepare-jobs/${id}/events`)).ended;
  return id;
}

async function ndjson(eng: EngineProcess, job: string): Promise<unknown[]> {
  return (await eng.fetch(`/v1/prepare-jobs/${job}/events`)).body.split('\n').filter(Boolean).map((l) => JSON.parse(l) as unknown);
}

/** The status line a raw upgrade request gets. */
function rawUpgrade(eng: EngineProcess, headers: Record<string, string>): Promise<string> {
  const [host, port] = eng.endpoint.split(':');
  return new Promise((resolve, reject) => {
    const c = net.connect(Number(port), host ?? '127.0.0.1', () => {
      const lines = Object.entries({ Host: 'x', Upgrade: 'websocket', Connection: 'Upgrade', ...headers }).map(([k, v]) => `${k}: ${v}`);
      c.write(`GET /v1/ws HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`);
    });
    let text = '';
    c.on('data', (d) => { text += String(d); if (text.includes('\r\n')) { c.destroy(); resolve(text.split('\r\n')[0] ?? ''); } });
    c.on('error', reject);
    c.on('close', () => resolve(text));
  });
}

t.test('websocket job events', async (t) => {
  const eng = await startEngine(t);
  const job1 = await failedJob(eng);
  const events1 = await ndjson(eng, job1);

  t.test('an upgrade without the right token, or with the wrong version, is refused', async (t) => {
    await t.rejects(connectWs(eng, {}), /401/);
    await t.rejects(connectWs(eng, { headers: { Authorization: 'Bearer nope' } }), /401/);
    await t.rejects(connectWs(eng, { protocols: ['sqlrs', 'bearer.nope'] }), /401/);
    await t.rejects(connectWs(eng, { query: '?token=nope' }), /401/);
    t.equal(await rawUpgrade(eng, { 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version': '8', Authorization: `Bearer ${eng.token}` }),
      'HTTP/1.1 426 Upgrade Required');
  });

  t.test('a browser authenticates with the subprotocol `bearer.<token>` and gets `sqlrs` back', async (t) => {
    const c = await connectWs(eng, { protocols: ['sqlrs', `bearer.${eng.token}`] });
    t.equal(c.ws.protocol, 'sqlrs');
    c.send({ op: 'subscribe', job: job1 });
    t.same((await c.next(events1.length)).map((f) => f.data), events1);
    await c.close();
    const q = await connectWs(eng, { query: `?token=${eng.token}` });
    await q.close();
  });

  t.test('a job subscription replays the job events in order with increasing seq', async (t) => {
    const c = await connectWs(eng);
    c.send({ op: 'subscribe', job: job1 });
    const frames = await c.next(events1.length);
    t.same(frames.map((f) => f.data), events1, 'data is exactly the NDJSON event stream');
    t.ok(frames.every((f) => f.type === 'job.event' && f.actorId === `prepare:${job1}`));
    t.ok(frames.every((f, i) => i === 0 || f.seq > (frames[i - 1]?.seq ?? 0)), 'seq increases');
    t.same(frames.map((f) => f.ts), events1.map((e) => (e as { ts: string }).ts), 'a frame\'s ts is its event\'s commit time');
    await c.close();
  });

  t.test('an all-jobs subscription resumed after a seq gets exactly the missed tail, then live events', async (t) => {
    const c = await connectWs(eng);
    c.send({ op: 'subscribe', job: job1 });
    const first = await c.next(events1.length);
    const last = first[first.length - 1]?.seq ?? 0;
    await c.close();
    const d = await connectWs(eng);
    d.send({ op: 'subscribe', job: '*', after: last });
    const job2 = await failedJob(eng);
    const n2 = (await ndjson(eng, job2)).length;
    const frames = await d.next(n2);
    t.ok(frames.every((f) => f.actorId === `prepare:${job2}` && f.seq > last), 'nothing before `after`, only the new job');
    t.equal(frames[frames.length - 1]?.data.type, 'error');
    await d.close();
  });

  t.test('catch-up joins the live stream without a gap or a duplicate while jobs keep committing events', async (t) => {
    for (let i = 0; i < 10; i++) await submitFailing(eng); // a backlog, still being written
    const c = await connectWs(eng);
    c.send({ op: 'subscribe', job: '*' });
    const more = await Promise.all(Array.from({ length: 10 }, () => submitFailing(eng)));
    for (const id of more) await (await eng.stream(`/v1/prepare-jobs/${id}/events`)).ended;
    const jobs = (await eng.fetch('/v1/prepare-jobs')).json<{ job_id: string; status: string }[]>();
    t.ok(jobs.every((j) => j.status === 'failed'), 'every job has ended');
    const expected = new Map<string, unknown[]>();
    for (const j of jobs) expected.set(j.job_id, await ndjson(eng, j.job_id));
    const total = [...expected.values()].reduce((n, e) => n + e.length, 0);
    const frames = await c.next(total);
    t.ok(frames.every((f, i) => i === 0 || f.seq > (frames[i - 1]?.seq ?? 0)), 'strictly increasing seq: no duplicate');
    for (const [id, events] of expected) {
      t.same(frames.filter((f) => f.actorId === `prepare:${id}`).map((f) => f.data), events, `job ${id.slice(0, 8)}: every event, in order`);
    }
    const extra = await connectWs(eng);
    await extra.close(); // a round trip: any stray frame to `c` would have arrived by now
    t.equal(c.frames.length, total, 'nothing else');
    await c.close();
  });

  t.test('a repeated identical subscription does not replay twice', async (t) => {
    const c = await connectWs(eng);
    c.send({ op: 'subscribe', job: job1 });
    c.send({ op: 'subscribe', job: job1, after: 0 });
    c.send({ op: 'subscribe', job: 'f'.repeat(32) }); // answered after both: a marker that they were handled
    const marker = await c.waitFor((f) => f.type === 'ws.error', 'the marker');
    t.equal(marker.data.code, 'not_found');
    t.same(c.frames.filter((f) => f.type === 'job.event').map((f) => f.data), events1, 'the events once');
    await c.close();
  });

  t.test('a socket holds at most 64 subscriptions; past that invalid_argument', async (t) => {
    const c = await connectWs(eng);
    const jobs = (await eng.fetch('/v1/prepare-jobs')).json<{ job_id: string }[]>().map((j) => j.job_id);
    const missing = 64 - 1 - jobs.length; // 63 jobs and the lifecycle topic fill the socket
    for (let i = 0; i < missing; i++) jobs.push(await failedJob(eng));
    for (const j of jobs) c.send({ op: 'subscribe', job: j });
    c.send({ op: 'subscribe', topic: 'lifecycle' });
    c.send({ op: 'subscribe', job: '*' });
    const err = await c.waitFor((f) => f.type === 'ws.error', 'the refusal');
    t.same([err.data.code, err.data.message, err.data['job']], ['invalid_argument', 'too many subscriptions', '*']);
    c.send({ op: 'unsubscribe', topic: 'lifecycle' });
    c.send({ op: 'subscribe', job: '*', after: 1e12 }); // now there is room; `after` is beyond the newest
    const range = await c.waitFor((f) => f.data.code === 'out_of_range', 'out_of_range');
    t.equal(range.data['job'], '*');
    await c.close();
  });

  t.test('bad messages and unknown jobs and runs get coded ws.error frames', async (t) => {
    const c = await connectWs(eng);
    c.ws.send('not json');
    c.send({ op: 'subscribe', job: 'f'.repeat(32) });
    c.send({ op: 'subscribe', topic: 'jobs' });
    c.send({ op: 'subscribe', run: 'f'.repeat(32) });
    const frames = await c.next(4);
    t.same(frames.map((f) => [f.type, f.data.code]), [['ws.error', 'invalid_argument'], ['ws.error', 'not_found'], ['ws.error', 'invalid_argument'], ['ws.error', 'not_found']]);
    await c.close();
  });

  t.test('lifecycle frames report each failed job as job.terminal with its error code, resumable by seq', async (t) => {
    const c = await connectWs(eng);
    c.send({ op: 'subscribe', topic: 'lifecycle' });
    const jobs = (await eng.fetch('/v1/prepare-jobs')).json<{ job_id: string }[]>();
    const frames = await c.next(jobs.length);
    t.same(new Set(frames.map((f) => f.data.id)), new Set(jobs.map((j) => j.job_id)), 'one per job');
    t.ok(frames.every((f) => f.type === 'lifecycle' && f.data.event === 'job.terminal' && f.data.status === 'failed' && f.data['error_code'] === 'internal_error'));
    t.ok(frames.every((f, i) => f.seq === i + 1), 'numbered from 1');
    const job = await failedJob(eng);
    const live = await c.waitFor((f) => f.data.id === job, 'the new job\'s frame');
    t.same(live.data, { event: 'job.terminal', id: job, status: 'failed', error_code: 'internal_error' });
    const d = await connectWs(eng);
    d.send({ op: 'subscribe', topic: 'lifecycle', after: jobs.length });
    t.same((await d.next(1)).map((f) => f.seq), [live.seq], 'resumed after a seq: exactly the tail');
    await d.close();
    await c.close();
  });

  t.test('GET /v1/runs lists the runs in progress (none here) and needs the token', async (t) => {
    t.same((await eng.fetch('/v1/runs')).json(), []);
    t.equal((await eng.fetchRaw('/v1/runs')).status, 401);
  });
});
