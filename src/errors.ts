/**
 * The engine's single error hierarchy. Every failure the engine reports carries a stable string
 * `code`; callers branch on `code`, never on `instanceof` or message text. Errors cross worker
 * threads and the HTTP boundary as {@link SerializedError} and are rebuilt with {@link deserializeError}.
 */

/** Wire-level error codes (the `code` of the API's error shape, `api.md` §4). */
export type ApiErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'conflict'
  | 'internal_error'
  | 'cancelled'
  | 'cache_enforcement_unavailable'
  | 'cache_limit_too_small'
  | 'cache_full_unreclaimable';

/** Internal codes for engine failures that never reach the wire as-is. */
export type InternalErrorCode =
  | 'ENGINE_ILLEGAL_STATE'
  | 'ENGINE_CLOSED'
  | 'ENGINE_MAILBOX_FULL'
  | 'ENGINE_LEASE_LOST'
  | 'ENGINE_SCHEMA_TOO_NEW'
  | 'ENGINE_STORE_LOCKED'
  | 'ENGINE_USAGE'
  | 'ENGINE_QUEUE_FULL'
  | 'ENGINE_CONTAINER'
  | 'ENGINE_SNAPSHOT'
  | 'ENGINE_WORKER';

export type ErrorCode = ApiErrorCode | InternalErrorCode;

/** Plain-data form of an error, safe for structured clone, JSON and HTTP. */
export interface SerializedError {
  name: string;
  code: ErrorCode;
  message: string;
  details?: string;
  stack?: string;
}

/** Options accepted by every engine error. */
export interface EngineErrorOptions {
  /** Extra text for the API's `details` field. */
  details?: string | undefined;
  cause?: unknown;
}

/** Base class of every error the engine raises on purpose. */
export class EngineError extends Error {
  readonly code: ErrorCode;
  readonly details: string | undefined;
  constructor(code: ErrorCode, message: string, opts: EngineErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = opts.details;
  }
  /** The API error body `{code, message, details?}`. */
  toApi(): ApiError {
    const out: ApiError = { code: toApiCode(this.code), message: this.message };
    if (this.details !== undefined && this.details !== '') out.details = this.details;
    return out;
  }
}

/** `{code,message,details?}` as served over HTTP and stored in job errors. */
export interface ApiError {
  code: string;
  message: string;
  details?: string;
}

/** A user mistake: HTTP 400. */
export class InvalidArgumentError extends EngineError {
  constructor(message: string, opts: EngineErrorOptions = {}) {
    super('invalid_argument', message, opts);
  }
}
/** A missing resource: HTTP 404 with the JSON error shape. */
export class NotFoundError extends EngineError {
  constructor(message: string, opts: EngineErrorOptions = {}) {
    super('not_found', message, opts);
  }
}
/** A request that conflicts with the resource's state: HTTP 409. */
export class ConflictError extends EngineError {
  constructor(message: string, opts: EngineErrorOptions = {}) {
    super('conflict', message, opts);
  }
}
/** An unexpected failure: HTTP 500 / job error `internal_error`. */
export class InternalError extends EngineError {
  constructor(message: string, opts: EngineErrorOptions = {}) {
    super('internal_error', message, opts);
  }
}
/**
 * Work stopped because it was cancelled: a job cancel, a client gone, or an operation aborted
 * through its AbortSignal. The engine's one cancellation code.
 */
export class CancelledError extends EngineError {
  constructor(message = 'job cancelled', opts: EngineErrorOptions = {}) {
    super('cancelled', message, opts);
  }
}
/** An operation called in a lifecycle state that does not allow it. */
export class IllegalStateError extends EngineError {
  constructor(message: string, opts: EngineErrorOptions = {}) {
    super('ENGINE_ILLEGAL_STATE', message, opts);
  }
}
/** A call made after `close()` / `destroy()`. */
export class ClosedError extends EngineError {
  constructor(what: string) {
    super('ENGINE_CLOSED', `${what} is closed`);
  }
}
/** A bounded mailbox refused a message. */
export class MailboxFullError extends EngineError {
  constructor(actorId: string, limit: number) {
    super('ENGINE_MAILBOX_FULL', `mailbox of ${actorId} is full (${limit} messages)`);
  }
}
/** A bounded work queue refused a task. */
export class QueueFullError extends EngineError {
  constructor(what: string, limit: number) {
    super('ENGINE_QUEUE_FULL', `${what} queue is full (${limit} tasks)`);
  }
}
/** An ack/nack presented a lease token that no longer holds the message. */
export class LeaseLostError extends EngineError {
  constructor(messageId: number) {
    super('ENGINE_LEASE_LOST', `lease on message ${messageId} was lost`);
  }
}
/** The database was written by a newer engine. */
export class SchemaTooNewError extends EngineError {
  constructor(found: number, supported: number) {
    super('ENGINE_SCHEMA_TOO_NEW', `state store schema version ${found} is newer than this engine supports (${supported})`);
  }
}
/** Another engine holds the state store. */
export class StoreLockedError extends EngineError {
  constructor(root: string, holder: string) {
    super('ENGINE_STORE_LOCKED', `state store ${root} is in use by another engine (${holder})`);
  }
}
/** Bad command-line usage (exit code 2). */
export class UsageError extends EngineError {
  constructor(message: string) {
    super('ENGINE_USAGE', message);
  }
}
/** A container runtime failure (Docker/Podman API). */
export class ContainerError extends EngineError {
  constructor(message: string, opts: EngineErrorOptions = {}) {
    super('ENGINE_CONTAINER', message, opts);
  }
}
/** A snapshot backend failure. */
export class SnapshotError extends EngineError {
  constructor(message: string, opts: EngineErrorOptions = {}) {
    super('ENGINE_SNAPSHOT', message, opts);
  }
}
/** A worker thread failure that is not one of the above. */
export class WorkerError extends EngineError {
  constructor(message: string, opts: EngineErrorOptions = {}) {
    super('ENGINE_WORKER', message, opts);
  }
}

const API_CODES = new Set<string>([
  'invalid_argument', 'not_found', 'conflict', 'internal_error', 'cancelled',
  'cache_enforcement_unavailable', 'cache_limit_too_small', 'cache_full_unreclaimable',
]);

/**
 * The one error-code → HTTP table: the status an error answers with, and the body it gets —
 * `own`: the error's `{code, message, details}`; `fallback`: `internal_error` with the route's
 * fallback message and the error's text as details; or a fixed wire code and message with the
 * error's message as details (internal codes never reach the wire as-is).
 */
export type HttpBodyRule = 'own' | 'fallback' | { code: ApiErrorCode; message: string };
export const HTTP_STATUS: Readonly<Record<ErrorCode, { status: number; body: HttpBodyRule }>> = {
  invalid_argument: { status: 400, body: 'own' },
  not_found: { status: 404, body: 'own' },
  conflict: { status: 409, body: 'own' },
  internal_error: { status: 500, body: 'own' },
  cancelled: { status: 500, body: 'fallback' },
  cache_enforcement_unavailable: { status: 500, body: 'fallback' },
  cache_limit_too_small: { status: 500, body: 'fallback' },
  cache_full_unreclaimable: { status: 500, body: 'fallback' },
  ENGINE_ILLEGAL_STATE: { status: 500, body: 'fallback' },
  ENGINE_CLOSED: { status: 503, body: { code: 'internal_error', message: 'engine is busy' } },
  ENGINE_MAILBOX_FULL: { status: 503, body: { code: 'internal_error', message: 'engine is busy' } },
  ENGINE_QUEUE_FULL: { status: 503, body: { code: 'internal_error', message: 'engine is busy' } },
  ENGINE_LEASE_LOST: { status: 500, body: 'fallback' },
  ENGINE_SCHEMA_TOO_NEW: { status: 500, body: 'fallback' },
  ENGINE_STORE_LOCKED: { status: 500, body: 'fallback' },
  ENGINE_USAGE: { status: 500, body: 'fallback' },
  ENGINE_CONTAINER: { status: 500, body: 'fallback' },
  ENGINE_SNAPSHOT: { status: 500, body: 'fallback' },
  ENGINE_WORKER: { status: 500, body: 'fallback' },
};

/** True for the engine's own error codes (the keys of {@link HTTP_STATUS}). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(HTTP_STATUS, code);
}

/** The HTTP status and API body for any thrown value, by {@link HTTP_STATUS}. */
export function httpErrorOf(e: unknown, fallbackMessage = 'internal error'): { status: number; body: ApiError } {
  const fallback = { code: 'internal_error', message: fallbackMessage, details: errorText(e) };
  if (!(e instanceof EngineError) || !isErrorCode(e.code)) return { status: 500, body: fallback };
  const row = HTTP_STATUS[e.code];
  if (row.body === 'own') return { status: row.status, body: e.toApi() };
  if (row.body === 'fallback') return { status: row.status, body: fallback };
  return { status: row.status, body: { code: row.body.code, message: row.body.message, details: e.message } };
}

/** Maps any code to a wire code; internal codes become `internal_error`. */
export function toApiCode(code: string): ApiErrorCode {
  return (API_CODES.has(code) ? code : 'internal_error') as ApiErrorCode;
}

/** True when `e` is an {@link EngineError} with the given code. */
export function hasCode(e: unknown, code: ErrorCode): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === code;
}

/** Turns any thrown value into plain data. */
export function serializeError(e: unknown): SerializedError {
  if (e instanceof EngineError) {
    const out: SerializedError = { name: e.name, code: e.code, message: e.message };
    if (e.details !== undefined) out.details = e.details;
    if (e.stack !== undefined) out.stack = e.stack;
    return out;
  }
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    const out: SerializedError = {
      name: e.name,
      code: isErrorCode(code) ? code : 'ENGINE_WORKER',
      message: e.message,
    };
    const details = (e as { details?: unknown }).details;
    if (typeof details === 'string') out.details = details;
    if (e.stack !== undefined) out.stack = e.stack;
    return out;
  }
  return { name: 'Error', code: 'ENGINE_WORKER', message: String(e) };
}

/** Rebuilds an {@link EngineError} from its plain-data form (the class is chosen by code). */
export function deserializeError(s: SerializedError): EngineError {
  const opts = { details: s.details };
  let e: EngineError;
  switch (s.code) {
    case 'invalid_argument': e = new InvalidArgumentError(s.message, opts); break;
    case 'not_found': e = new NotFoundError(s.message, opts); break;
    case 'conflict': e = new ConflictError(s.message, opts); break;
    case 'internal_error': e = new InternalError(s.message, opts); break;
    case 'cancelled': e = new CancelledError(s.message, opts); break;
    case 'ENGINE_CONTAINER': e = new ContainerError(s.message, opts); break;
    case 'ENGINE_SNAPSHOT': e = new SnapshotError(s.message, opts); break;
    default: e = new EngineError(s.code, s.message, opts);
  }
  if (s.stack !== undefined) e.stack = s.stack;
  return e;
}

/** Message text of any thrown value. */
export function errorText(e: unknown): string {
  if (e instanceof EngineError && e.details) return `${e.message}: ${e.details}`;
  return e instanceof Error ? e.message : String(e);
}

/** Exhaustiveness guard for `switch` over unions. */
export function assertNever(x: never, what = 'value'): never {
  throw new IllegalStateError(`unexpected ${what}: ${JSON.stringify(x)}`);
}
