/**
 * The WebSocket job-event stream at /v1/ws against a real engine: auth on upgrade, per-job and
 * all-jobs subscriptions with the NDJSON events as `data`, resume by global `seq`, coded errors.
 * The jobs use an image that does not exist, so they fail fast at image resolution.
 */
import t from 'tap';
import WebSocket from 'ws';
import { startEngine, type EngineProcess } from '../../helpers/engine.js';

interface Frame { seq: number; ts: string; type: string; actorId?: string; data: { type?: string; status?: string; code?: string; message?: string } }

function open(eng: EngineProcess, headers: Record<string, string> = { Authorization: `Bearer ${eng.token}` }): Promise<{ ws: WebSocket; frames: Frame[]; next(n: number): Promise<Frame[]> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${eng.endpoint}/v1/ws`, { headers });
    const frames: Frame[] = [];
    let waiter: (() => void) | undefined;
    ws.on('message', (m) => { frames.push(JSON.parse(String(m)) as Frame); waiter?.(); });
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade answered ${res.statusCode}`)));
    ws.once('error', reject);
    ws.once('open', () => resolve({
      ws, frames,
      next: (n) => new Promise((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`only ${frames.length} of ${n} frames`)), 20_000);
        const check = (): void => { if (frames.length >= n) { clearTimeout(timer); waiter = undefined; res(frames.slice(0, n)); } };
        waiter = check;
        check();
      }),
    }));
  });
}

async function failedJob(eng: EngineProcess): Promise<string> {
  const r = await eng.fetch('/v1/prepare-jobs', { method: 'POST', body: { prepare_kind: 'psql', image_id: 'sqlrs-test/does-not-exist:1', psql_args: ['-c', 'select 1'] } });
  const id = r.json<{ job_id: string }>().job_id;
  const s = await eng.stream(`/v1/prepare-jobs/${id}/events`);
  await s.ended;
  return id;
}

t.test('websocket job events', async (t) => {
  const eng = await startEngine(t);
  const job1 = await failedJob(eng);
  const ndjson = (await eng.fetch(`/v1/prepare-jobs/${job1}/events`)).body.split('\n').filter(Boolean).map((l) => JSON.parse(l) as unknown);

  t.test('an upgrade without the token is refused with 401', async (t) => {
    await t.rejects(open(eng, {}), /401/);
    await t.rejects(open(eng, { Authorization: 'Bearer nope' }), /401/);
  });

  t.test('a job subscription replays the job events in order with increasing seq', async (t) => {
    const c = await open(eng);
    c.ws.send(JSON.stringify({ op: 'subscribe', job: job1 }));
    const frames = await c.next(ndjson.length);
    t.same(frames.map((f) => f.data), ndjson, 'data is exactly the NDJSON event stream');
    t.ok(frames.every((f) => f.type === 'job.event' && f.actorId === `prepare:${job1}`));
    t.ok(frames.every((f, i) => i === 0 || f.seq > (frames[i - 1]?.seq ?? 0)), 'seq increases');
    c.ws.close();
  });

  t.test('an all-jobs subscription resumed after a seq gets exactly the missed tail, then live events', async (t) => {
    const c = await open(eng);
    c.ws.send(JSON.stringify({ op: 'subscribe', job: job1 }));
    const first = await c.next(ndjson.length);
    const last = first[first.length - 1]?.seq ?? 0;
    c.ws.close();
    const d = await open(eng);
    d.ws.send(JSON.stringify({ op: 'subscribe', job: '*', after: last }));
    const job2 = await failedJob(eng);
    const n2 = (await eng.fetch(`/v1/prepare-jobs/${job2}/events`)).body.split('\n').filter(Boolean).length;
    const frames = await d.next(n2);
    t.ok(frames.every((f) => f.actorId === `prepare:${job2}` && f.seq > last), 'nothing before `after`, only the new job');
    t.equal(frames[frames.length - 1]?.data.type, 'error');
    d.ws.close();
  });

  t.test('bad messages and unknown jobs get coded ws.error frames', async (t) => {
    const c = await open(eng);
    c.ws.send('not json');
    c.ws.send(JSON.stringify({ op: 'subscribe', job: 'f'.repeat(32) }));
    const frames = await c.next(2);
    t.same(frames.map((f) => [f.type, f.data.code]), [['ws.error', 'invalid_argument'], ['ws.error', 'not_found']]);
    c.ws.close();
  });
});
