/** The shared pieces of the worker protocol: the result envelope and the capped output tail. */
import t from 'tap';
import { CancelledError, SnapshotError } from '../../src/errors.js';
import { appendTail, errorResult, OUTPUT_CAP, unwrapResult } from '../../src/workers/protocol.js';

t.test('unwrapResult returns the output of an ok result', async (t) => {
  t.same(unwrapResult({ type: 'ok', output: { bytes: 1 } }), { bytes: 1 });
});

t.test('errorResult and unwrapResult carry an engine error across as the same code and details', async (t) => {
  const r = errorResult(new SnapshotError('copy failed', { details: 'ENOSPC' }));
  t.equal(r.type, 'error');
  t.same(JSON.parse(JSON.stringify(r)), r, 'the envelope is plain data');
  t.throws(() => unwrapResult(r), { code: 'ENGINE_SNAPSHOT', message: 'copy failed', details: 'ENOSPC' });
  t.throws(() => unwrapResult(errorResult(new CancelledError('fs task copy-tree cancelled'))), { code: 'cancelled' });
  t.throws(() => unwrapResult(errorResult(new Error('boom'))), { code: 'ENGINE_WORKER', message: 'boom' }, 'a plain error becomes ENGINE_WORKER');
});

t.test('appendTail keeps the last cap characters and marks the cut', async (t) => {
  t.equal(appendTail('ab', 'cd', 5), 'abcd');
  t.equal(appendTail('abc', 'def', 4), '…cdef');
  t.equal(appendTail(appendTail('abc', 'def', 4), 'g', 4), '…defg', 'a cut tail stays capped');
  t.equal(appendTail('', 'x'.repeat(OUTPUT_CAP + 10)).length, OUTPUT_CAP + 1, 'the default cap is OUTPUT_CAP');
});
