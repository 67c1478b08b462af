/**
 * The `/v1/ws` protocol's messages: what a client may send (parsed strictly), the topics a
 * subscription names, and the frames the server sends, each serialised by one function here.
 *
 * Client → server (text frames, one JSON object each):
 *   `{"op":"subscribe","job":"<job_id>"|"*","after":<seq>}`      prepare-job events
 *   `{"op":"subscribe","topic":"lifecycle","after":<seq>}`       lifecycle events
 *   `{"op":"subscribe","run":"<run_id>","after":<seq>}`          one run's output
 *   `{"op":"unsubscribe", job | topic | run}`
 * Server → client:
 *   `{"seq","ts","type":"job.event","actorId":"prepare:<job_id>","data":<NDJSON event>}`
 *   `{"seq","ts","type":"lifecycle","data":{"event","id",…}}`
 *   `{"seq","ts","type":"run.event","runId","data":<NDJSON run event>}`
 *   `{"seq":0,"ts","type":"ws.error","data":{"code","message","details"?, job | topic | run}}`
 */
import * as v from 'valibot';
import { rfc3339Nano } from '../clock.js';
import type { SeqEventRow } from '../mailbox/store.js';
import type { LifecycleRow } from '../actors/lifecycle/service.js';
import type { RunRecord } from '../actors/run/service.js';

/** What a subscription follows. */
export type Target = { kind: 'job'; job: string } | { kind: 'lifecycle' } | { kind: 'run'; run: string };

export type ClientMessage =
  | { op: 'subscribe'; target: Target; after: number }
  | { op: 'unsubscribe'; target: Target };

/** Codes of `ws.error` frames. `out_of_range`: the events right after `after` are no longer kept (or `after` is beyond the newest). */
export type WsErrorCode = 'invalid_argument' | 'not_found' | 'out_of_range';

const Id = v.pipe(v.string(), v.minLength(1), v.maxLength(128));
const Message = v.object({
  op: v.picklist(['subscribe', 'unsubscribe'], 'op must be "subscribe" or "unsubscribe"'),
  job: v.optional(Id),
  topic: v.optional(v.picklist(['lifecycle'], 'the only topic is "lifecycle"')),
  run: v.optional(Id),
  after: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER))),
});

/** Parses one client message; a string is the reason it is invalid. */
export function parseClientMessage(text: string): ClientMessage | string {
  let json: unknown;
  try { json = JSON.parse(text); } catch { return 'not JSON'; }
  const r = v.safeParse(Message, json);
  if (!r.success) {
    const issue = r.issues[0];
    const where = issue?.path?.map((p) => String(p.key)).join('.') ?? '';
    return `${where ? `${where}: ` : ''}${issue?.message ?? 'invalid message'}`;
  }
  const m = r.output;
  const targets: Target[] = [];
  if (m.job !== undefined) targets.push({ kind: 'job', job: m.job });
  if (m.topic !== undefined) targets.push({ kind: 'lifecycle' });
  if (m.run !== undefined) targets.push({ kind: 'run', run: m.run });
  const target = targets[0];
  if (target === undefined || targets.length > 1) return 'name exactly one of job, topic or run';
  return m.op === 'subscribe' ? { op: 'subscribe', target, after: m.after ?? 0 } : { op: 'unsubscribe', target };
}

/** The fan-out topic of a target: `job:<id>`, `job:*`, `lifecycle` or `run:<id>`. */
export function topicOf(t: Target): string {
  switch (t.kind) {
    case 'job': return `job:${t.job}`;
    case 'lifecycle': return 'lifecycle';
    case 'run': return `run:${t.run}`;
  }
}

/** The target's own fields, as a client names it (added to `ws.error` frames about it). */
export function targetFields(t: Target): Record<string, string> {
  switch (t.kind) {
    case 'job': return { job: t.job };
    case 'lifecycle': return { topic: 'lifecycle' };
    case 'run': return { run: t.run };
  }
}

/** A job event frame; `ts` is the event's own (commit) time and `data` its stored JSON, verbatim. */
export function jobFrame(r: SeqEventRow): string {
  const ts = (JSON.parse(r.event_json) as { ts?: unknown }).ts;
  return `{"seq":${r.seq},"ts":${JSON.stringify(typeof ts === 'string' ? ts : '')},"type":"job.event","actorId":${JSON.stringify(`prepare:${r.job_id}`)},"data":${r.event_json}}`;
}

/** A lifecycle frame; `ts` is the time of the commit that appended it. */
export function lifecycleFrame(r: LifecycleRow): string {
  return `{"seq":${r.seq},"ts":${JSON.stringify(r.ts)},"type":"lifecycle","data":${r.data_json}}`;
}

/** A run event frame; `seq` numbers the run's events from 1, `ts` is the event's own. */
export function runFrame(runId: string, r: RunRecord): string {
  return JSON.stringify({ seq: r.seq, ts: r.event.ts, type: 'run.event', runId, data: r.event });
}

/** A `ws.error` frame. */
export function errorFrame(code: WsErrorCode, message: string, details?: string, target?: Target): string {
  const data: Record<string, string> = { code, message };
  if (details !== undefined) data['details'] = details;
  return JSON.stringify({ seq: 0, ts: rfc3339Nano(), type: 'ws.error', data: target ? { ...data, ...targetFields(target) } : data });
}
