/**
 * `POST /v1/runs`: validates the request (`api.md` §3.12, in the reference's order and messages),
 * hands it to a run-session actor and streams the run live as NDJSON (`decisions.md`): `log` events
 * of a container recovery, `start`, `stdout`/`stderr` as output arrives, then `exit` with the real
 * exit code — or `error`.
 *
 * The response status is chosen by the first event: a failure before `start` (validation, unknown
 * instance, conflicts, a missing data directory, a failed recovery) is an HTTP error with the API's
 * error shape; once `start` is there the answer is `200` and failures arrive as an `error` event.
 * Recovery `log` events are held back until then, so they never force a `200` on a run that fails.
 * A client that disconnects cancels the run, which kills the process.
 */
import { readJsonBody, type Handler } from './server.js';
import type { Reply } from './reply.js';
import { HTTP_STATUS, type ApiError, type ErrorCode } from '../errors.js';
import { rfc3339Nano } from '../clock.js';
import { RunBodySchema, runInput, type RunChannel, type RunEvent, type RunRequestInput } from '../actors/run/service.js';

/** What the run handler needs from the run wing (its service). */
export interface RunApi {
  /** Validates and starts a run; returns its channel. @throws the API errors of `api.md` §3.12 */
  start(input: RunRequestInput): RunChannel;
  /** The client went away before the run ended. */
  cancel(runId: string): void;
  /** The response is over; the run's channel is no longer read. */
  release(runId: string): void;
}

/** A failure before the stream started: the API error with its status. */
function sendRunError(reply: Reply, error: ApiError): void {
  reply.json((HTTP_STATUS as Record<string, { status: number } | undefined>)[error.code as ErrorCode]?.status ?? 500, error);
}

const NO_RESULT: ApiError = { code: 'internal_error', message: 'run failed', details: 'the run ended without a result' };

function line(e: RunEvent): string {
  return `${JSON.stringify(e)}\n`;
}

export function runHandlers(api: RunApi): { runs: Handler } {
  return {
    runs: async (ctx) => {
      const input = runInput(await readJsonBody(ctx, RunBodySchema));
      const { reply } = ctx;
      if (reply.aborted) return;
      const ch = api.start(input);
      const off = reply.onAbort(() => {
        if (!ch.finished) api.cancel(ch.runId);
        ch.cancel();
      });
      let streaming = false;
      let ended = false;
      const held: RunEvent[] = [];
      try {
        for (;;) {
          const batch = await ch.take();
          if (batch.length === 0 || reply.aborted) break;
          let text = '';
          for (const e of batch) {
            if (!streaming) {
              if (e.type === 'log') { held.push(e); continue; }
              if (e.type === 'error') { sendRunError(reply, e.error); ended = true; break; }
              reply.startStream(200, { 'Content-Type': 'application/x-ndjson', 'Cache-Control': 'no-store' });
              streaming = true;
              for (const h of held) text += line(h);
            }
            text += line(e);
            if (e.type === 'exit' || e.type === 'error') ended = true;
          }
          if (text !== '') await reply.write(text);
          if (ended) break;
        }
        if (!ended && !reply.aborted) {
          if (streaming) await reply.write(line({ type: 'error', ts: rfc3339Nano(), error: NO_RESULT }));
          else sendRunError(reply, NO_RESULT);
        }
      } finally {
        off();
        api.release(ch.runId);
        if (streaming) reply.endStream();
      }
    },
  };
}
