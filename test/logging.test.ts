/**
 * The engine's logger (pino + rotating-file-stream + pino-pretty) on real files: JSON lines, child
 * bindings, live level, the size bound, flush on close, the terminal format, and the env knobs.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { DEFAULT_LOG_ROTATION, logRotationFromEnv, openEngineLog, type EngineLog } from '../src/logging.js';

type Line = Record<string, unknown> & { level: string; time: string; msg: string };

const records = (file: string): Line[] =>
  readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line);

function open(t: Test, opts: Partial<Parameters<typeof openEngineLog>[0]> = {}): EngineLog {
  const file = join(t.testdir(), 'logs', 'engine.log');
  const log = openEngineLog({ file, ...opts });
  t.teardown(() => log.close());
  return log;
}

t.test('engine log writes JSON lines with level, time, msg and child bindings', async (t) => {
  const log = open(t);
  const http = log.logger.child({ c: 'http' });
  http.info('http request', { method: 'GET', status: 200, skipped: undefined });
  http.child({ req: 7 }).warn('slow', { ms: 12.5 });
  const boom = Object.assign(new Error('boom'), { code: 'E_BOOM' });
  log.logger.error('engine start failed', { error: 'no such thing', cause: boom });
  await log.flush();
  const lines = readFileSync(log.file, 'utf8').split('\n');
  t.equal(lines.pop(), '', 'every line ends in a newline');
  t.match(lines[0], /^\{"level":"info","time":"[^"]+","c":"http","msg":"http request","method":"GET","status":200\}$/,
    'level, time, child bindings, then the message before the call\'s own fields; undefined fields are left out');
  const [a, b, c] = records(log.file);
  t.ok(a && !Number.isNaN(Date.parse(a.time)) && a.time.endsWith('Z'), 'time is ISO 8601 UTC');
  t.match(b, { level: 'warn', c: 'http', req: 7, msg: 'slow', ms: 12.5 }, 'a child of a child keeps both bindings');
  t.match(c, { level: 'error', msg: 'engine start failed', error: 'no such thing', cause: { type: 'Error', message: 'boom', code: 'E_BOOM', stack: /Error: boom/ } },
    'an Error value is written as plain data');
  t.notOk('c' in (c ?? {}), 'the root logger has no bindings');
  t.equal(statSync(log.file).mode & 0o777, 0o600, 'the file is 0600');
  t.equal(statSync(join(log.file, '..')).mode & 0o777, 0o700, 'its directory is 0700');
});

t.test('engine log level changes apply at once, to children made before the change too', async (t) => {
  const log = open(t, { level: 'info' });
  const early = log.logger.child({ c: 'early' });
  early.debug('d1');
  early.info('i1');
  log.logger.setLevel('debug');
  early.debug('d2');
  early.trace('t1');
  log.logger.setLevel('warn');
  early.info('i2');
  log.logger.child({ c: 'late' }).info('i3');
  early.warn('w1');
  log.logger.setLevel('trace');
  log.logger.trace('t2');
  log.logger.setLevel('error');
  early.warn('w2');
  early.error('e1');
  await log.flush();
  t.same(records(log.file).map((r) => `${r.level}:${r.msg}`), ['info:i1', 'debug:d2', 'warn:w1', 'trace:t2', 'error:e1']);
});

t.test('engine log stays under its bound while far more than the bound is written', async (t) => {
  const maxBytes = 16 * 1024;
  const files = 3;
  const log = open(t, { rotation: { maxBytes, files } });
  const dir = join(log.file, '..');
  const filler = 'x'.repeat(150);
  const n = 8000; // ≈ 1.6 MB, about 33 times the bound
  let written = 0;
  let longest = 0;
  for (let i = 0; i < n; i++) log.logger.info('line', { i, filler });
  await log.flush();
  for (const f of readdirSync(dir)) written += statSync(join(dir, f)).size;
  const kept = ['engine.log.2', 'engine.log.1', 'engine.log'];
  t.same(readdirSync(dir).sort(), [...kept].sort(), 'engine.log and files − 1 rotated copies, nothing else');
  const seq: number[] = [];
  for (const f of kept) {
    const text = readFileSync(join(dir, f), 'utf8');
    t.ok(text.endsWith('\n'), `${f} holds whole lines`);
    for (const l of text.split('\n').filter((x) => x !== '')) {
      longest = Math.max(longest, Buffer.byteLength(l) + 1);
      seq.push(Number((JSON.parse(l) as { i: number }).i));
    }
  }
  t.ok(written <= files * (maxBytes + longest), `${written} bytes on disk ≤ ${files} × (${maxBytes} + one ${longest}-byte line)`);
  t.ok(written >= (files - 1) * maxBytes, `the rotated files are full (${written} bytes)`);
  t.equal(seq.at(-1), n - 1, 'the newest line is the last line of engine.log');
  t.ok(seq.every((v, k) => k === 0 || v === (seq[k - 1] ?? -2) + 1), `the kept lines are consecutive (${seq.length} of ${n}): nothing lost or reordered within the bound`);
});

t.test('engine log opened on a file already over its bound rotates it first', async (t) => {
  const dir = join(t.testdir(), 'logs');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'engine.log');
  writeFileSync(file, `${'{"old":true}\n'.repeat(200)}`); // 2600 bytes
  const log = openEngineLog({ file, rotation: { maxBytes: 1024, files: 2 } });
  log.logger.info('fresh');
  await log.close();
  t.same(records(file).map((r) => r.msg), ['fresh'], 'engine.log starts afresh');
  t.ok(readFileSync(join(dir, 'engine.log.1'), 'utf8').startsWith('{"old":true}'), 'the old content is the rotated copy');
});

t.test('engine log close writes the last line, and lines logged while or after closing, in order', async (t) => {
  const log = open(t);
  for (let i = 0; i < 2000; i++) log.logger.debug('busy', { i });
  log.logger.info('engine status', { from: 'stopping', to: 'stopped' });
  const closing = log.close();
  log.logger.warn('while closing');
  t.equal(log.close(), closing, 'close is memoised');
  await closing;
  log.logger.error('after close');
  const msgs = records(log.file).map((r) => r.msg);
  t.equal(msgs.length, 2003, 'no line is lost');
  t.same(msgs.slice(-3), ['engine status', 'while closing', 'after close'], 'the last lines are there, in order');
  t.match(records(log.file).at(-3), { to: 'stopped' });
  await log.flush(); // after close: resolves at once
});

t.test('engine log bounds the lines waiting for the disk: it drops and counts the excess, then says so', async (t) => {
  const log = open(t, { maxPendingBytes: 4096 });
  // One synchronous burst: nothing reaches the disk before it ends, so the queue fills up.
  for (let i = 0; i < 1000; i++) log.logger.info('burst', { i, filler: 'y'.repeat(60) });
  await log.flush();
  log.logger.info('after');
  await log.flush();
  const lines = records(log.file);
  const kept = lines.filter((r) => r.msg === 'burst');
  const notice = lines.find((r) => r.msg === 'log lines dropped: the disk is slower than the engine logs');
  t.ok(kept.length > 0 && kept.length < 1000, `${kept.length} of 1000 burst lines kept`);
  t.same(kept.map((r) => r['i']), kept.map((_r, k) => k), 'the kept lines are the first ones, in order');
  t.match(notice, { level: 'warn', dropped: 1000 - kept.length }, 'the dropped lines are counted');
  t.same(lines.slice(-2).map((r) => r.msg), [notice?.msg, 'after'], 'the notice comes before the next line written');
});

t.test('engine log prints human-readable lines when asked (a terminal), and still writes JSON to the file', async (t) => {
  const out: string[] = [];
  const log = open(t, { pretty: { write: (s: string) => out.push(s) } });
  log.logger.child({ c: 'http' }).info('http request', { method: 'GET', status: 200 });
  log.logger.error('engine start failed', { error: 'state store is in use' });
  t.match(out[0], /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: http: http request \{"method":"GET","status":200\}\n$/, 'time, level, component, message, fields on one line');
  t.match(out[1], /^\[\d\d:\d\d:\d\d\.\d{3}\] ERROR: engine start failed \{"error":"state store is in use"\}\n$/, 'an error text stays on its line');
  t.notMatch(out.join(''), /\x1b\[/, 'no colours when the output is not a terminal');
  await log.flush();
  t.equal(records(log.file).length, 2, 'the file gets the JSON lines');

  const tty: string[] = [];
  const coloured = open(t, { pretty: { write: (s: string) => tty.push(s), isTTY: true } });
  coloured.logger.warn('careful');
  t.match(tty[0], /\x1b\[\d+m/, 'colours on a terminal');
});

t.test('engine log rotation bound comes from SQLRS_LOG_MAX_BYTES and SQLRS_LOG_FILES', async (t) => {
  t.same(logRotationFromEnv({}), { maxBytes: 10 * 1024 * 1024, files: 5 }, 'default 10 MiB × 5 files');
  t.same(DEFAULT_LOG_ROTATION, { maxBytes: 10485760, files: 5 });
  t.same(logRotationFromEnv({ SQLRS_LOG_MAX_BYTES: ' ', SQLRS_LOG_FILES: '' }), DEFAULT_LOG_ROTATION, 'empty values keep the defaults');
  t.same(logRotationFromEnv({ SQLRS_LOG_MAX_BYTES: '65536', SQLRS_LOG_FILES: '2' }), { maxBytes: 65536, files: 2 });
  t.same(logRotationFromEnv({ SQLRS_LOG_MAX_BYTES: '512K' }).maxBytes, 512 * 1024);
  t.same(logRotationFromEnv({ SQLRS_LOG_MAX_BYTES: '20MiB' }).maxBytes, 20 * 1024 * 1024);
  t.same(logRotationFromEnv({ SQLRS_LOG_MAX_BYTES: '1g' }).maxBytes, 1024 ** 3);
  for (const v of ['10', '1023', 'ten', '-5M', '1.5M', '10T']) {
    t.throws(() => logRotationFromEnv({ SQLRS_LOG_MAX_BYTES: v }), { code: 'invalid_argument', message: /^SQLRS_LOG_MAX_BYTES must be a size of at least 1K/ }, `SQLRS_LOG_MAX_BYTES=${v} is refused`);
  }
  for (const v of ['1', '0', '101', 'x', '2.5']) {
    t.throws(() => logRotationFromEnv({ SQLRS_LOG_FILES: v }), { code: 'invalid_argument', message: /^SQLRS_LOG_FILES must be a whole number from 2 to 100/ }, `SQLRS_LOG_FILES=${v} is refused`);
  }
});

t.test('engine log that can no longer write its file says so once on stderr and keeps the process alive', async (t) => {
  const log = open(t, { rotation: { maxBytes: 1024, files: 2 } });
  const dir = join(log.file, '..');
  log.logger.info('first');
  await log.flush();
  // The directory is replaced by a file: the next rotation can neither rename nor reopen.
  rmSync(dir, { recursive: true, force: true });
  writeFileSync(dir, 'not a directory');
  const said: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string | Uint8Array): boolean => { said.push(String(s)); return true; }) as typeof process.stderr.write;
  t.teardown(() => { process.stderr.write = write; });
  for (let i = 0; i < 50; i++) log.logger.info('line', { i, filler: 'x'.repeat(100) });
  await log.flush();
  await new Promise((r) => setImmediate(r));
  for (let i = 0; i < 5; i++) log.logger.info('more');
  await log.flush();
  await log.close();
  process.stderr.write = write;
  t.equal(said.length, 1, 'one line on stderr');
  t.match(said[0], new RegExp(`^sqlrs-engine: log file ${log.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .+; file logging stopped\\n$`));
});

t.test('engine log refuses a directory it cannot create', async (t) => {
  const dir = t.testdir({ 'a-file': 'x' });
  t.throws(() => openEngineLog({ file: join(dir, 'a-file', 'logs', 'engine.log') }), { code: 'ENOTDIR' });
  t.notOk(existsSync(join(dir, 'logs')));
});
