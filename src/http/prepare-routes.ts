/**
 * HTTP handlers for prepare jobs: submit, cancel, delete, and the NDJSON events stream
 * (full replay then live; `Range: events=N-` → 206; a blank line every 5 s while quiet).
 */
import { readJsonBody, type Ctx, type Handler } from './server.js';
import { NotFoundError } from '../errors.js';
import type { Store } from '../mailbox/store.js';
import { PrepareBodySchema, type PrepareBody, type PrepareService } from '../actors/prepare/service.js';

/** Heartbeat interval for quiet event streams. */
const HEARTBEAT_MS = 5000;

/** Decodes a prepare request body; type errors are `invalid json payload` like the reference decoder. */
export function readPrepareBody(ctx: Ctx): Promise<PrepareBody> {
  return readJsonBody(ctx, PrepareBodySchema);
}

function isTerminal(status: string): boolean { return status === 'succeeded' || status === 'failed'; }

export function prepareHandlers(st: Store, api: PrepareService): { submitJob: Handler; cancelJob: Handler; jobEvents: Handler } {
  const heartbeatMs = HEARTBEAT_MS;
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
          const r = await api.waitForEvents(id, heartbeatMs, ac.signal);
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
