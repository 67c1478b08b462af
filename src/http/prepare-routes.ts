/**
 * HTTP handlers for prepare jobs: submit, cancel, delete, and the NDJSON events stream
 * (full replay then live; `Range: events=N-` → 206; a blank line every 5 s while quiet).
 */
import * as v from 'valibot';
import { readJsonBody, type Ctx, type Handler } from './server.js';
import { NotFoundError } from '../errors.js';
import type { Store } from '../mailbox/store.js';
import type { EventHub } from '../actors/events-hub.js';

/** What the prepare handlers need from the engine. */
export interface PrepareApi {
  store: Store;
  hub: EventHub;
  /** Validates and creates a job; returns its id. @throws InvalidArgumentError */
  submit(body: PrepareBody): string;
  /** Asks a job to cancel. */
  cancel(jobId: string): void;
  /** Open streams (activity for idle shutdown). */
  streamOpened(): void;
  streamClosed(): void;
  /** Heartbeat interval for quiet streams. @default 5000 */
  heartbeatMs?: number;
}

export const PrepareBodySchema = v.object({
  prepare_kind: v.optional(v.nullable(v.string())),
  image_id: v.optional(v.nullable(v.string())),
  psql_args: v.optional(v.nullable(v.array(v.string()))),
  stdin: v.optional(v.nullable(v.string())),
  liquibase_args: v.optional(v.nullable(v.array(v.string()))),
  liquibase_exec: v.optional(v.nullable(v.string())),
  liquibase_exec_mode: v.optional(v.nullable(v.string())),
  liquibase_env: v.optional(v.nullable(v.record(v.string(), v.string()))),
  work_dir: v.optional(v.nullable(v.string())),
  plan_only: v.optional(v.nullable(v.boolean())),
});
export type PrepareBody = v.InferOutput<typeof PrepareBodySchema>;

/** Decodes a prepare request body; type errors are `invalid json payload` like the reference decoder. */
export function readPrepareBody(ctx: Ctx): Promise<PrepareBody> {
  return readJsonBody(ctx, PrepareBodySchema);
}

function isTerminal(status: string): boolean { return status === 'succeeded' || status === 'failed'; }

export function prepareHandlers(api: PrepareApi): { submitJob: Handler; cancelJob: Handler; jobEvents: Handler } {
  const st = api.store;
  const heartbeatMs = api.heartbeatMs ?? 5000;
  return {
    submitJob: async (ctx) => {
      const body = await readPrepareBody(ctx);
      const id = api.submit(body);
      const url = `/v1/prepare-jobs/${id}`;
      ctx.reply.json(201, { job_id: id, status_url: url, events_url: `${url}/events`, status: 'queued' }, { Location: url });
    },

    cancelJob: ({ params, reply }) => {
      const id = params[0] ?? '';
      const job = st.getJob(id);
      if (!job) throw new NotFoundError('job not found');
      if (isTerminal(job.status)) { reply.json(200, st.jobStatus(id)); return; }
      api.cancel(id);
      reply.json(202, st.jobStatus(id));
    },

    jobEvents: async ({ params, req, reply }) => {
      const id = params[0] ?? '';
      if (!st.getJob(id)) { reply.notFoundText(); return; }
      const total = st.eventCount(id);
      let cursor = 0;
      const headers: Record<string, string> = { 'Content-Type': 'application/x-ndjson', 'Cache-Control': 'no-store', 'Accept-Ranges': 'events' };
      let code = 200;
      const m = /^\s*events=(\d+)-\s*$/.exec(req.range);
      if (m) {
        const start = Number(m[1]);
        if (start > total) {
          reply.send(416, '', { 'Content-Range': `events */${total}`, 'Accept-Ranges': 'events' });
          return;
        }
        cursor = start;
        code = 206;
        headers['Content-Range'] = `events ${start}-*/${total}`;
      }
      const ac = new AbortController();
      const off = reply.onAbort(() => ac.abort());
      api.streamOpened();
      try {
        reply.startStream(code, headers);
        for (;;) {
          const job = st.getJob(id);
          if (!job) break; // deleted mid-stream: end quietly
          const terminal = isTerminal(job.status);
          const lines = st.eventsFrom(id, cursor);
          for (const line of lines) {
            if (ac.signal.aborted) break;
            await reply.write(line + '\n');
            cursor++;
          }
          if (ac.signal.aborted) break;
          // Terminal events are committed with the terminal status: once terminal, we have them all.
          if (terminal && lines.length === 0) break;
          if (terminal) continue;
          const r = await api.hub.wait(id, heartbeatMs, ac.signal);
          if (r === 'aborted') break;
          if (r === 'timeout') await reply.write('\n');
        }
      } finally {
        off();
        api.streamClosed();
        reply.endStream();
      }
    },
  };
}
