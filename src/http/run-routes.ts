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
import * as v from 'valibot';
import { readJsonBody, type Ctx, type Handler } from './server.js';
import type { Reply } from './reply.js';
import type { ApiError } from '../errors.js';
import { rfc3339Nano } from '../clock.js';
import { validateRunRequest, type InstanceLookup, type RunRequestInput, type ValidRun } from '../actors/run-args.js';
import type { RunChannel, RunEvent } from '../actors/run-channel.js';

/** What the run handler needs from the engine. */
export interface RunApi {
  lookup: InstanceLookup;
  /** Starts a validated run; returns its channel. @throws ClosedError / MailboxFullError */
  start(run: ValidRun): RunChannel;
  /** The client went away before the run ended. */
  cancel(runId: string): void;
  /** The response is over; the run's channel is no longer read. */
  release(runId: string): void;
}

/** A string where the reference decoder accepts `null` (it becomes ""). */
const Str = v.pipe(v.nullable(v.string()), v.transform((s) => s ?? ''));

export const RunBodySchema = v.nullable(v.object({
  instance_ref: v.optional(v.nullable(v.string())),
  kind: v.optional(v.nullable(v.string())),
  command: v.optional(v.nullable(v.string())),
  args: v.optional(v.nullable(v.array(Str))),
  stdin: v.optional(v.nullable(v.string())),
  steps: v.optional(v.nullable(v.array(v.nullable(v.object({
    args: v.optional(v.nullable(v.array(Str))),
    stdin: v.optional(v.nullable(v.string())),
  }))))),
}));

/** Decodes a run request body; type errors are `invalid json payload` like the reference decoder. */
export async function readRunBody(ctx: Ctx): Promise<RunRequestInput> {
  const body = await readJsonBody(ctx, RunBodySchema);
  const { steps, ...rest } = body ?? {};
  // A `null` step decodes as an empty one, like the reference decoder.
  return steps === undefined || steps === null ? rest : { ...rest, steps: steps.map((s) => s ?? {}) };
}

const STATUS_OF: Record<string, number> = { invalid_argument: 400, not_found: 404, conflict: 409 };

/** A failure before the stream started: the API error with its status. */
function sendRunError(reply: Reply, error: ApiError): void {
  reply.json(STATUS_OF[error.code] ?? 500, error);
}

const NO_RESULT: ApiError = { code: 'internal_error', message: 'run failed', details: 'the run ended without a result' };

function line(e: RunEvent): string {
  return `${JSON.stringify(e)}\n`;
}

export function runHandlers(api: RunApi): { runs: Handler } {
  return {
    runs: async (ctx) => {
      const body = await readRunBody(ctx);
      const run = validateRunRequest(body, api.lookup);
      const { reply } = ctx;
      if (reply.aborted) return;
      const ch = api.start(run);
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
