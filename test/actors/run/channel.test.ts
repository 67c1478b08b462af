import t from 'tap';
import { RunChannel, RunChannels, splitOutput, MAX_EVENT_DATA_BYTES, MAX_EVENT_JSON_BYTES, type RunEvent } from '../../../src/actors/run/channel.js';

const input = { instanceId: 'i1', steps: [] };
const bytes = (s: string): number => Buffer.byteLength(s);
const dataOf = (e: RunEvent): string => ('data' in e ? e.data : '');

t.test('split output keeps small chunks whole and drops empty ones', async (t) => {
  t.same(splitOutput('hello\n'), ['hello\n']);
  t.same(splitOutput(''), []);
});

t.test('split output cuts at line ends within 16 KiB and loses nothing', async (t) => {
  const line = `${'y'.repeat(99)}\n`;
  const text = line.repeat(400); // 40 000 bytes
  const parts = splitOutput(text);
  t.equal(parts.join(''), text);
  t.ok(parts.every((p) => bytes(p) <= MAX_EVENT_DATA_BYTES));
  t.ok(parts.slice(0, -1).every((p) => p.endsWith('\n')), 'every cut is at a line end');
  t.equal(parts.length, 3);
});

t.test('split output cuts long lines at the byte limit without splitting characters', async (t) => {
  const long = 'z'.repeat(40_000);
  const parts = splitOutput(long);
  t.same(parts.map(bytes), [16384, 16384, 40_000 - 2 * 16384]);
  const wide = 'é😀'.repeat(9000); // 2 + 4 bytes each
  const wp = splitOutput(wide);
  t.equal(wp.join(''), wide);
  for (const p of wp) {
    t.ok(bytes(p) <= MAX_EVENT_DATA_BYTES, `${bytes(p)} bytes`);
    t.equal(Buffer.from(p, 'utf8').toString('utf8'), p, 'well-formed (no lone surrogate)');
  }
});

t.test('split output bounds the JSON-escaped size of control characters', async (t) => {
  const ctl = '\u0001'.repeat(20_000);
  const parts = splitOutput(ctl);
  t.equal(parts.join(''), ctl);
  for (const p of parts) t.ok(JSON.stringify(p).length - 2 <= MAX_EVENT_JSON_BYTES, `${JSON.stringify(p).length} escaped bytes`);
});

t.test('run channel delivers events in order and ends after the terminal event', async (t) => {
  const ch = new RunChannel('r', input);
  ch.push({ type: 'log', ts: 't', data: 'a' });
  ch.push({ type: 'start', ts: 't', instance_id: 'i1' });
  t.equal(ch.output('stdout', 'out'), undefined);
  ch.output('stderr', 'err');
  ch.finish({ type: 'exit', ts: 't', exit_code: 3 });
  ch.output('stdout', 'late');
  ch.push({ type: 'log', ts: 't', data: 'late' });
  const got = await ch.take();
  t.same(got.map((e) => e.type), ['log', 'start', 'stdout', 'stderr', 'exit']);
  t.ok(ch.finished);
  t.same(await ch.take(), []);
});

t.test('run channel take waits for the next event', async (t) => {
  const ch = new RunChannel('r', input);
  const p = ch.take();
  ch.output('stdout', 'x');
  t.same((await p).map((e) => dataOf(e)), ['x']);
});

t.test('run channel makes producers wait above the high-water mark until the consumer drains', async (t) => {
  const ch = new RunChannel('r', input, { highWaterChars: 1000 });
  t.equal(ch.output('stdout', 'a'.repeat(500)), undefined);
  const wait = ch.output('stdout', 'b'.repeat(600));
  t.ok(wait instanceof Promise, 'asked to wait');
  let released = false;
  void wait?.then(() => { released = true; });
  await new Promise((r) => setImmediate(r));
  t.notOk(released);
  await ch.take(100); // takes only the first event: still above half the mark
  await new Promise((r) => setImmediate(r));
  t.notOk(released);
  await ch.take();
  await wait;
  t.ok(released);
  t.equal(ch.size, 0);
});

t.test('run channel cancel drops the buffer, releases producers and aborts its signal', async (t) => {
  const ch = new RunChannel('r', input, { highWaterChars: 10 });
  const wait = ch.output('stdout', 'x'.repeat(100));
  const taking = new RunChannel('r2', input);
  const pending = taking.take();
  ch.cancel();
  taking.cancel();
  await wait;
  t.ok(ch.signal.aborted);
  t.same(await ch.take(), []);
  t.same(await pending, []);
  t.equal(ch.output('stdout', 'more'), undefined);
  ch.cancel();
});

t.test('run channel refuses output past its hard limit and reports the overflow once', async (t) => {
  const ch = new RunChannel('r', input, { highWaterChars: 10, maxChars: 100 });
  let overflows = 0;
  ch.onOverflow = () => { overflows++; };
  void ch.output('stdout', 'x'.repeat(50));
  ch.output('stdout', 'y'.repeat(60));
  ch.output('stdout', 'z');
  t.equal(overflows, 1);
  t.ok(ch.overflowed);
  const got = await ch.take();
  t.same(got.map((e) => dataOf(e)), ['x'.repeat(50)]);
});

t.test('run channels track open runs per instance and cancel unfinished ones on close', async (t) => {
  const chs = new RunChannels();
  const a = chs.open('a', { instanceId: 'i1', steps: [] });
  const b = chs.open('b', { instanceId: 'i1', steps: [] });
  chs.open('c', { instanceId: 'i2', steps: [] });
  t.equal(chs.size, 3);
  t.equal(chs.activeOn('i1'), 2);
  t.equal(chs.get('a'), a);
  b.finish({ type: 'exit', ts: 't', exit_code: 0 });
  chs.close('b');
  t.notOk(b.cancelled, 'a finished run is not cancelled');
  chs.close('a');
  t.ok(a.cancelled);
  t.equal(chs.get('a'), undefined);
  chs.close('a');
  chs.closeAll();
  t.equal(chs.size, 0);
});
