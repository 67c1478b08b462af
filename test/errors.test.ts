/**
 * The error hierarchy and the one error-code → HTTP table of `src/errors.ts`, table-driven: every
 * code of `HTTP_STATUS` answers with its status and the body its rule names, every dedicated class
 * has its name, code and message, errors survive serialisation with their code, message and details,
 * and internal codes never reach the wire as-is. A code added to `ErrorCode` without a table row does
 * not compile (the table is a `Record<ErrorCode, …>`); one added or removed without updating
 * {@link CODES} below fails here.
 */
import t from 'tap';
import {
  CancelledError, ClosedError, ConflictError, ContainerError, EngineError, HTTP_STATUS, IllegalStateError, InternalError,
  InvalidArgumentError, LeaseLostError, MailboxFullError, NotFoundError, QueueFullError, SchemaTooNewError, SnapshotError,
  StoreLockedError, UsageError, WorkerError, assertNever, deserializeError, errorText, hasCode, httpErrorOf, serializeError,
  toApiCode, type ApiError, type ApiErrorCode, type ErrorCode, type SerializedError,
} from '../src/errors.js';

const API_CODES = [
  'invalid_argument', 'not_found', 'conflict', 'internal_error', 'cancelled',
  'cache_enforcement_unavailable', 'cache_limit_too_small', 'cache_full_unreclaimable',
] as const satisfies readonly ApiErrorCode[];
const INTERNAL_CODES = [
  'ENGINE_ILLEGAL_STATE', 'ENGINE_CLOSED', 'ENGINE_MAILBOX_FULL', 'ENGINE_LEASE_LOST', 'ENGINE_SCHEMA_TOO_NEW',
  'ENGINE_STORE_LOCKED', 'ENGINE_USAGE', 'ENGINE_QUEUE_FULL', 'ENGINE_CONTAINER', 'ENGINE_SNAPSHOT', 'ENGINE_WORKER',
] as const satisfies readonly ErrorCode[];
/** Every code, written out here so that a code removed from (or added to) the table is noticed. */
const CODES: readonly ErrorCode[] = [...API_CODES, ...INTERNAL_CODES];
// Compile-time: CODES names every member of ErrorCode (tsc rejects this line otherwise).
const everyCodeListed: [Exclude<ErrorCode, (typeof API_CODES)[number] | (typeof INTERNAL_CODES)[number]>] extends [never] ? true : false = true;

/** The dedicated class of a code, built with the arguments its constructor takes. */
interface Dedicated { make: () => EngineError; name: string; message: string; details?: string }
const CLASSES: Partial<Record<ErrorCode, Dedicated>> = {
  invalid_argument: { make: () => new InvalidArgumentError('bad input', { details: 'd' }), name: 'InvalidArgumentError', message: 'bad input', details: 'd' },
  not_found: { make: () => new NotFoundError('no such job', { details: 'd' }), name: 'NotFoundError', message: 'no such job', details: 'd' },
  conflict: { make: () => new ConflictError('busy', { details: 'd' }), name: 'ConflictError', message: 'busy', details: 'd' },
  internal_error: { make: () => new InternalError('broke', { details: 'd' }), name: 'InternalError', message: 'broke', details: 'd' },
  cancelled: { make: () => new CancelledError(), name: 'CancelledError', message: 'job cancelled' },
  ENGINE_ILLEGAL_STATE: { make: () => new IllegalStateError('not running', { details: 'd' }), name: 'IllegalStateError', message: 'not running', details: 'd' },
  ENGINE_CLOSED: { make: () => new ClosedError('pool'), name: 'ClosedError', message: 'pool is closed' },
  ENGINE_MAILBOX_FULL: { make: () => new MailboxFullError('prepare:j1', 5), name: 'MailboxFullError', message: 'mailbox of prepare:j1 is full (5 messages)' },
  ENGINE_QUEUE_FULL: { make: () => new QueueFullError('fs', 3), name: 'QueueFullError', message: 'fs queue is full (3 tasks)' },
  ENGINE_LEASE_LOST: { make: () => new LeaseLostError(7), name: 'LeaseLostError', message: 'lease on message 7 was lost' },
  ENGINE_SCHEMA_TOO_NEW: { make: () => new SchemaTooNewError(3, 1), name: 'SchemaTooNewError', message: 'state store schema version 3 is newer than this engine supports (1)' },
  ENGINE_STORE_LOCKED: { make: () => new StoreLockedError('/s', 'pid 9'), name: 'StoreLockedError', message: 'state store /s is in use by another engine (pid 9)' },
  ENGINE_USAGE: { make: () => new UsageError('unknown flag --x'), name: 'UsageError', message: 'unknown flag --x' },
  ENGINE_CONTAINER: { make: () => new ContainerError('no daemon', { details: 'd' }), name: 'ContainerError', message: 'no daemon', details: 'd' },
  ENGINE_SNAPSHOT: { make: () => new SnapshotError('no space', { details: 'd' }), name: 'SnapshotError', message: 'no space', details: 'd' },
  ENGINE_WORKER: { make: () => new WorkerError('thread died', { details: 'd' }), name: 'WorkerError', message: 'thread died', details: 'd' },
};

/** The class `deserializeError` must pick for a code; any other code comes back as a plain EngineError. */
const REBUILT: Partial<Record<ErrorCode, string>> = {
  invalid_argument: 'InvalidArgumentError', not_found: 'NotFoundError', conflict: 'ConflictError', internal_error: 'InternalError',
  cancelled: 'CancelledError', ENGINE_CONTAINER: 'ContainerError', ENGINE_SNAPSHOT: 'SnapshotError',
};

/** Every error to judge for a code: the generic form, and the dedicated class where there is one. */
function errorsOf(code: ErrorCode): EngineError[] {
  const dedicated = CLASSES[code];
  return [new EngineError(code, 'msg', { details: 'd' }), ...(dedicated ? [dedicated.make()] : [])];
}

/** The body {@link httpErrorOf} must give, by the table's rule for the error's code. */
function expectedBody(e: EngineError, fallbackMessage: string): ApiError {
  const rule = HTTP_STATUS[e.code].body;
  const withDetails = e.details === undefined || e.details === '' ? e.message : `${e.message}: ${e.details}`;
  if (rule === 'own') {
    const own: ApiError = { code: e.code, message: e.message };
    if (e.details !== undefined && e.details !== '') own.details = e.details;
    return own;
  }
  if (rule === 'fallback') return { code: 'internal_error', message: fallbackMessage, details: withDetails };
  return { code: rule.code, message: rule.message, details: e.message };
}

t.test('HTTP_STATUS has a row for exactly the codes this test lists', async (t) => {
  t.equal(everyCodeListed, true);
  t.strictSame(Object.keys(HTTP_STATUS).sort(), [...CODES].sort());
  t.equal(new Set(CODES).size, CODES.length, 'no code listed twice');
});

t.test('HTTP_STATUS answers user errors with their own status and everything else with 5xx', async (t) => {
  t.strictSame(HTTP_STATUS.invalid_argument, { status: 400, body: 'own' });
  t.strictSame(HTTP_STATUS.not_found, { status: 404, body: 'own' });
  t.strictSame(HTTP_STATUS.conflict, { status: 409, body: 'own' });
  t.strictSame(HTTP_STATUS.internal_error, { status: 500, body: 'own' });
  for (const code of ['ENGINE_CLOSED', 'ENGINE_MAILBOX_FULL', 'ENGINE_QUEUE_FULL'] as const) {
    t.strictSame(HTTP_STATUS[code], { status: 503, body: { code: 'internal_error', message: 'engine is busy' } }, `${code} is 503 engine is busy`);
  }
  for (const code of CODES) {
    const row = HTTP_STATUS[code];
    t.ok(row.status >= 400 && row.status < 600, `${code} maps to an error status`);
    if (row.body === 'own') t.ok((API_CODES as readonly string[]).includes(code), `${code} keeps its own body only because it is a wire code`);
    if (typeof row.body === 'object') t.ok((API_CODES as readonly string[]).includes(row.body.code), `${code} is rewritten to a wire code`);
  }
});

for (const code of CODES) {
  t.test(`httpErrorOf answers a ${code} error with the table's status and body`, async (t) => {
    const row = HTTP_STATUS[code];
    for (const e of errorsOf(code)) {
      t.equal(e.code, code, `${e.name} carries ${code}`);
      const got = httpErrorOf(e, 'could not do it');
      t.equal(got.status, row.status, `${e.name}: status ${row.status}`);
      t.strictSame(got.body, expectedBody(e, 'could not do it'), `${e.name}: body by rule ${JSON.stringify(row.body)}`);
      t.strictSame(httpErrorOf(e).body, expectedBody(e, 'internal error'), `${e.name}: default fallback message`);
      t.notOk((INTERNAL_CODES as readonly string[]).includes(got.body.code), `${e.name}: no internal code on the wire`);
    }
  });
}

t.test('httpErrorOf spells out the three body rules on concrete errors', async (t) => {
  t.strictSame(httpErrorOf(new NotFoundError('job j1 not found', { details: 'gone' })), { status: 404, body: { code: 'not_found', message: 'job j1 not found', details: 'gone' } });
  t.strictSame(httpErrorOf(new ConflictError('busy')), { status: 409, body: { code: 'conflict', message: 'busy' } }, 'own body without details omits the field');
  t.strictSame(httpErrorOf(new InvalidArgumentError('bad', { details: '' })), { status: 400, body: { code: 'invalid_argument', message: 'bad' } }, 'empty details are omitted');
  t.strictSame(httpErrorOf(new CancelledError('stopped', { details: 'by user' }), 'cancel failed'),
    { status: 500, body: { code: 'internal_error', message: 'cancel failed', details: 'stopped: by user' } });
  t.strictSame(httpErrorOf(new MailboxFullError('run:r1', 2)),
    { status: 503, body: { code: 'internal_error', message: 'engine is busy', details: 'mailbox of run:r1 is full (2 messages)' } });
});

t.test('httpErrorOf answers anything that is not an EngineError with the 500 fallback', async (t) => {
  t.strictSame(httpErrorOf(new Error('boom'), 'list failed'), { status: 500, body: { code: 'internal_error', message: 'list failed', details: 'boom' } });
  t.strictSame(httpErrorOf(new TypeError('x is undefined')), { status: 500, body: { code: 'internal_error', message: 'internal error', details: 'x is undefined' } });
  t.strictSame(httpErrorOf('a string'), { status: 500, body: { code: 'internal_error', message: 'internal error', details: 'a string' } });
  t.strictSame(httpErrorOf(undefined), { status: 500, body: { code: 'internal_error', message: 'internal error', details: 'undefined' } });
});

t.test('every dedicated error class has its name, code, message and details', async (t) => {
  for (const code of CODES) {
    const d = CLASSES[code];
    if (!d) continue;
    const e = d.make();
    t.ok(e instanceof EngineError, `${d.name} is an EngineError`);
    t.ok(e instanceof Error, `${d.name} is an Error`);
    t.equal(e.name, d.name, `${d.name}: name`);
    t.equal(e.code, code, `${d.name}: code`);
    t.equal(e.message, d.message, `${d.name}: message`);
    t.equal(e.details, d.details, `${d.name}: details`);
  }
  t.strictSame(Object.keys(CLASSES).filter((c) => !CODES.includes(c as ErrorCode)), [], 'classes only for listed codes');
});

t.test('EngineError keeps its cause and a subclass name', async (t) => {
  const cause = new Error('root');
  const e = new ContainerError('create failed', { cause, details: 'd' });
  t.equal(e.cause, cause);
  t.equal(new EngineError('ENGINE_WORKER', 'x').cause, undefined, 'no cause when none is given');
  t.equal(new EngineError('ENGINE_WORKER', 'x').name, 'EngineError');
  t.strictSame(e.toApi(), { code: 'internal_error', message: 'create failed', details: 'd' }, 'toApi maps an internal code to internal_error');
});

for (const code of CODES) {
  t.test(`serializeError/deserializeError round-trip a ${code} error with its code, message and details`, async (t) => {
    for (const e of errorsOf(code)) {
      const wire = serializeError(e);
      t.strictSame({ name: wire.name, code: wire.code, message: wire.message, details: wire.details },
        { name: e.name, code, message: e.message, details: e.details }, `${e.name}: serialized`);
      t.equal(wire.stack, e.stack, `${e.name}: stack travels`);
      const back = deserializeError(JSON.parse(JSON.stringify(wire)) as SerializedError);
      t.ok(back instanceof EngineError, `${e.name}: rebuilt as an EngineError`);
      t.equal(back.code, code, `${e.name}: code kept`);
      t.equal(back.message, e.message, `${e.name}: message kept`);
      t.equal(back.details, e.details, `${e.name}: details kept`);
      t.equal(back.stack, e.stack, `${e.name}: stack kept`);
      t.equal(back.name, REBUILT[code] ?? 'EngineError', `${e.name}: rebuilt as ${REBUILT[code] ?? 'EngineError'}`);
      t.strictSame(httpErrorOf(back), httpErrorOf(e), `${e.name}: answers the same over HTTP after the trip`);
    }
  });
}

t.test('deserializeError picks the dedicated class for every wire code', async (t) => {
  const classes = {
    invalid_argument: InvalidArgumentError, not_found: NotFoundError, conflict: ConflictError,
    internal_error: InternalError, cancelled: CancelledError,
  } as const;
  for (const [code, cls] of Object.entries(classes)) {
    t.ok(deserializeError({ name: 'Whatever', code: code as ErrorCode, message: 'm' }) instanceof cls, `${code} → ${cls.name}`);
  }
  for (const code of ['cache_enforcement_unavailable', 'cache_limit_too_small', 'cache_full_unreclaimable'] as const) {
    const e = deserializeError({ name: 'EngineError', code, message: '{"phase":"prepare_step"}' });
    t.equal(e.constructor, EngineError, `${code} has no class of its own: a plain EngineError`);
    t.equal(e.code, code);
  }
  t.ok(deserializeError({ name: 'X', code: 'ENGINE_CONTAINER', message: 'm' }) instanceof ContainerError);
  t.ok(deserializeError({ name: 'X', code: 'ENGINE_SNAPSHOT', message: 'm' }) instanceof SnapshotError);
  const noStack = deserializeError({ name: 'X', code: 'conflict', message: 'm' });
  t.match(noStack.stack, /ConflictError: m/, 'without a stack on the wire, the local one stays');
});

t.test('serializeError keeps known codes of foreign errors and turns everything else into ENGINE_WORKER', async (t) => {
  const coded = Object.assign(new Error('missing'), { code: 'not_found', details: 'job j' });
  t.strictSame({ ...serializeError(coded), stack: undefined }, { name: 'Error', code: 'not_found', message: 'missing', details: 'job j', stack: undefined });
  t.equal(serializeError(Object.assign(new Error('x'), { code: 'ENGINE_QUEUE_FULL' })).code, 'ENGINE_QUEUE_FULL');
  const sys = serializeError(Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES', details: 42 }));
  t.equal(sys.code, 'ENGINE_WORKER', 'a system error code is not ours');
  t.equal(sys.details, undefined, 'non-string details are dropped');
  t.type(sys.stack, 'string');
  t.strictSame(serializeError('plain'), { name: 'Error', code: 'ENGINE_WORKER', message: 'plain' });
  t.strictSame(serializeError(null), { name: 'Error', code: 'ENGINE_WORKER', message: 'null' });
  const noDetails = serializeError(new ConflictError('c'));
  t.notOk('details' in noDetails, 'absent details stay absent');
});

t.test('serializeError never lets an unknown ENGINE_ code through to the HTTP table', async (t) => {
  const back = deserializeError(serializeError(Object.assign(new Error('x'), { code: 'ENGINE_BOGUS' })));
  t.doesNotThrow(() => httpErrorOf(back));
});

t.test('toApiCode keeps wire codes and maps internal or unknown codes to internal_error', async (t) => {
  for (const code of API_CODES) t.equal(toApiCode(code), code, `${code} stays`);
  for (const code of INTERNAL_CODES) t.equal(toApiCode(code), 'internal_error', `${code} → internal_error`);
  t.equal(toApiCode('EACCES'), 'internal_error');
  t.equal(toApiCode(''), 'internal_error');
});

t.test('errorText includes details after the message', async (t) => {
  t.equal(errorText(new InvalidArgumentError('bad', { details: 'field x' })), 'bad: field x');
  t.equal(errorText(new EngineError('ENGINE_WORKER', 'w', { details: 'd' })), 'w: d');
  t.equal(errorText(new ConflictError('busy')), 'busy', 'no details: the message');
  t.equal(errorText(new ConflictError('busy', { details: '' })), 'busy', 'empty details: the message');
  t.equal(errorText(new Error('plain')), 'plain');
  t.equal(errorText('text'), 'text');
  t.equal(errorText(42), '42');
});

t.test('hasCode checks the code of any value without instanceof', async (t) => {
  t.equal(hasCode(new NotFoundError('x'), 'not_found'), true);
  t.equal(hasCode(new NotFoundError('x'), 'conflict'), false);
  t.equal(hasCode({ code: 'ENGINE_CLOSED' }, 'ENGINE_CLOSED'), true, 'a plain object from another realm');
  t.equal(hasCode(null, 'not_found'), false);
  t.equal(hasCode('not_found', 'not_found'), false);
  t.equal(hasCode(undefined, 'not_found'), false);
});

t.test('assertNever throws IllegalStateError naming the unexpected value', async (t) => {
  t.throws(() => assertNever('odd' as never, 'message type'), { name: 'IllegalStateError', code: 'ENGINE_ILLEGAL_STATE', message: 'unexpected message type: "odd"' });
  t.throws(() => assertNever({ type: 'x' } as never), { message: 'unexpected value: {"type":"x"}' });
});
