import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execFileSync } from 'node:child_process';
import { constants as fsc } from 'node:fs';
import t from 'tap';
import { nullLogger } from '../../src/log.js';
import { FsPool, type FsPoolOptions } from '../../src/workers/pool.js';

interface Test {
  teardown(fn: () => void | Promise<void>): void;
}

async function scratch(t: Test): Promise<string> {
  const dir = await fs.mkdtemp(join(tmpdir(), 'pool-test-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

function pool(t: Test, opts: Partial<FsPoolOptions> = {}): FsPool {
  const p = new FsPool({ logger: nullLogger, ...opts });
  t.teardown(() => p.destroy());
  return p;
}

/** A tree big enough that copying it takes a noticeable while. */
async function bigTree(root: string, files = 4000): Promise<string> {
  const src = join(root, 'big');
  const payload = Buffer.alloc(2048, 1);
  for (let d = 0; d < files / 100; d++) {
    const sub = join(src, `d${d}`);
    await fs.mkdir(sub, { recursive: true });
    await Promise.all(Array.from({ length: 100 }, (_, i) => fs.writeFile(join(sub, `f${i}`), payload)));
  }
  return src;
}

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(
    () => true,
    () => false,
  );
}

/** True once the copy into `dest` holds some copied files (it is under way); false if the task settled first. */
async function underWay(dest: string, task: Promise<unknown>): Promise<boolean> {
  const settled = task.then(
    () => 'done',
    () => 'failed',
  );
  const copied = async (): Promise<boolean> => {
    for (const d of await fs.readdir(dest).catch(() => [])) {
      if ((await fs.readdir(join(dest, d)).catch(() => [])).length > 0) return true;
    }
    return false;
  };
  while (!(await copied())) {
    if ((await Promise.race([settled, sleep(2, 'waiting')])) !== 'waiting') return false;
  }
  return true;
}

t.test('FsPool runs copy-tree and measure in worker threads', async (t) => {
  const root = await scratch(t);
  const src = join(root, 'src');
  await fs.mkdir(join(src, 'sub'), { recursive: true });
  await fs.writeFile(join(src, 'a'), 'hello');
  await fs.chmod(join(src, 'a'), 0o640);
  await fs.writeFile(join(src, 'sub', 'b'), Buffer.alloc(1000));
  await fs.chmod(join(src, 'sub'), 0o710);
  await fs.chown(join(src, 'sub', 'b'), 999, 998);
  await fs.symlink('../a', join(src, 'sub', 'link'));
  const p = pool(t);

  const copied = await p.run({ type: 'copy-tree', src, dest: join(root, 'dest') });
  t.same(copied, { bytes: 1005, files: 2 });
  t.equal((await fs.stat(join(root, 'dest', 'a'))).mode & 0o7777, 0o640);
  t.equal((await fs.stat(join(root, 'dest', 'sub'))).mode & 0o7777, 0o710);
  const b = await fs.stat(join(root, 'dest', 'sub', 'b'));
  t.same([b.uid, b.gid], [999, 998]);
  t.equal(await fs.readlink(join(root, 'dest', 'sub', 'link')), '../a');
  t.equal(await fs.readFile(join(root, 'dest', 'sub', 'link'), 'utf8'), 'hello');
  t.same(await p.run({ type: 'measure', path: join(root, 'dest') }), { bytes: 1005, files: 2 });
  t.same(await p.run({ type: 'list-mounts', under: root }), { mounts: [] });
  t.equal(p.pending, 0);
});

t.test('FsPool rejects with the error code raised in the worker', async (t) => {
  const root = await scratch(t);
  const p = pool(t);
  await t.rejects(p.run({ type: 'measure', path: join(root, 'missing') }), { code: 'ENGINE_SNAPSHOT', message: /missing/ });
  await t.rejects(p.run({ type: 'copy-tree', src: root, dest: join(root, 'inside') }), {
    code: 'ENGINE_SNAPSHOT',
    message: /destination must not be inside source/,
  });
  t.same(await p.run({ type: 'verify-state', root, stateDir: join(root, 'nope') }), { ok: false, reason: 'missing state.json' });
});

t.test('FsPool refuses work beyond maxQueue with ENGINE_QUEUE_FULL', async (t) => {
  const root = await scratch(t);
  const src = await bigTree(root, 300);
  const p = pool(t, { maxThreads: 1, maxQueue: 1 });
  const running = p.run({ type: 'copy-tree', src, dest: join(root, 'one') });
  const queued = p.run({ type: 'copy-tree', src, dest: join(root, 'two') });
  t.equal(p.needsDrain, true);
  await t.rejects(p.run({ type: 'measure', path: src }), { code: 'ENGINE_QUEUE_FULL' });
  t.same(await running, { bytes: 300 * 2048, files: 300 });
  t.same(await queued, { bytes: 300 * 2048, files: 300 });
  t.equal(p.needsDrain, false);
  t.same(await p.run({ type: 'measure', path: join(root, 'two') }), { bytes: 300 * 2048, files: 300 }, 'accepts work again once drained');
});

t.test('FsPool drops a queued task whose signal aborts', async (t) => {
  const root = await scratch(t);
  const src = await bigTree(root, 300);
  const p = pool(t, { maxThreads: 1, maxQueue: 4 });
  const running = p.run({ type: 'copy-tree', src, dest: join(root, 'one') });
  const ac = new AbortController();
  const queued = p.run({ type: 'copy-tree', src, dest: join(root, 'two') }, ac.signal);
  ac.abort();
  await t.rejects(queued, { code: 'cancelled' });
  t.same(await running, { bytes: 300 * 2048, files: 300 });
  t.same(await p.run({ type: 'measure', path: join(root, 'one') }), { bytes: 300 * 2048, files: 300 });
  t.equal(await exists(join(root, 'two')), false, 'the aborted task never ran');
  await t.rejects(p.run({ type: 'measure', path: root }, AbortSignal.abort()), { code: 'cancelled' }, 'an already aborted signal is refused');
});

t.test('FsPool aborts a running task and keeps working', async (t) => {
  const root = await scratch(t);
  const src = await bigTree(root, 2000);
  const p = pool(t, { maxThreads: 1 });
  await p.run({ type: 'list-mounts', under: root }); // the worker is up
  const ac = new AbortController();
  const dest = join(root, 'dest');
  const copying = p.run({ type: 'copy-tree', src, dest }, ac.signal);
  const settled = copying.then(
    () => 'done',
    () => 'failed',
  );
  while (!(await exists(dest)) && (await Promise.race([settled, sleep(2, 'waiting')])) === 'waiting') {
    // wait until the copy has started
  }
  t.equal(await exists(dest), true, 'the copy started');
  ac.abort();
  await t.rejects(copying, { code: 'cancelled' });
  const partial = await p.run({ type: 'measure', path: dest });
  t.ok(partial.files < 2000, `the copy stopped early (${partial.files} files)`);
  t.same(await p.run({ type: 'measure', path: src }), { bytes: 2000 * 2048, files: 2000 }, 'the pool keeps working');
});

t.test('FsPool cancels a running task inside its thread, which stays alive for the next task', async (t) => {
  const root = await scratch(t);
  const src = await bigTree(root, 2000);
  // A grace far beyond the test's patience: only the thread itself can answer the abort in time.
  const p = pool(t, { maxThreads: 1, abortGraceMs: 600_000 });
  const before = await p.run({ type: 'thread-info' });
  const ac = new AbortController();
  const dest = join(root, 'dest');
  const copying = p.run({ type: 'copy-tree', src, dest }, ac.signal);
  t.equal(await underWay(dest, copying), true, 'some files are copied: the copy is under way');
  const abortedAt = Date.now();
  ac.abort();
  await t.rejects(copying, { code: 'cancelled' });
  t.ok(Date.now() - abortedAt < 2000, `rejected ${Date.now() - abortedAt} ms after the abort`);
  const partial = await p.run({ type: 'measure', path: dest });
  t.ok(partial.files < 2000, `the copy stopped early (${partial.files} files)`);
  const after = await p.run({ type: 'thread-info' });
  t.equal(after.threadId, before.threadId, 'the same thread runs the next task: it was not terminated');
});

t.test('FsPool terminates a thread whose task does not stop within abortGraceMs', async (t) => {
  const root = await scratch(t);
  const stateDir = join(root, 'state');
  await fs.mkdir(stateDir);
  // A FIFO as state.json: reading it blocks in the kernel, where no signal reaches the thread.
  const fifo = join(stateDir, 'state.json');
  execFileSync('mkfifo', [fifo]);
  const p = pool(t, { maxThreads: 1, abortGraceMs: 100 });
  const before = await p.run({ type: 'thread-info' });
  const ac = new AbortController();
  const verifying = p.run({ type: 'verify-state', root, stateDir }, ac.signal);
  // A non-blocking open for writing succeeds only once the thread is waiting to read the FIFO.
  let writer: fs.FileHandle | undefined;
  while (writer === undefined) {
    writer = await fs.open(fifo, fsc.O_WRONLY | fsc.O_NONBLOCK).catch(() => sleep(2, undefined));
  }
  // Closing the writer ends the read, so the terminated thread can finish exiting.
  t.teardown(() => writer.close());
  ac.abort();
  await t.rejects(verifying, { code: 'cancelled' });
  const after = await p.run({ type: 'thread-info' });
  t.not(after.threadId, before.threadId, 'a new thread replaced the terminated one');
  t.same(await p.run({ type: 'measure', path: root }), { bytes: 0, files: 0 }, 'the pool keeps working');
});

t.test('FsPool close finishes accepted tasks, then refuses work with ENGINE_CLOSED', async (t) => {
  const root = await scratch(t);
  const src = await bigTree(root, 200);
  const p = pool(t);
  const accepted = p.run({ type: 'copy-tree', src, dest: join(root, 'dest') });
  const closing = p.close();
  t.equal(p.close(), closing, 'close is memoised');
  await t.rejects(p.run({ type: 'measure', path: src }), { code: 'ENGINE_CLOSED' });
  t.same(await accepted, { bytes: 200 * 2048, files: 200 }, 'accepted work completes');
  await closing;
  await t.rejects(p.run({ type: 'measure', path: src }), { code: 'ENGINE_CLOSED' });
});

t.test('FsPool destroy rejects unfinished tasks with ENGINE_CLOSED', async (t) => {
  const root = await scratch(t);
  const src = await bigTree(root, 1000);
  const p = pool(t, { maxThreads: 1 });
  const a = t.rejects(p.run({ type: 'copy-tree', src, dest: join(root, 'a') }), { code: 'ENGINE_CLOSED' }, 'the running task');
  const b = t.rejects(p.run({ type: 'copy-tree', src, dest: join(root, 'b') }), { code: 'ENGINE_CLOSED' }, 'the queued task');
  await p.destroy();
  await a;
  await b;
  await t.rejects(p.run({ type: 'measure', path: src }), { code: 'ENGINE_CLOSED' });
});

t.test('FsPool close escalates to destroy after closeTimeoutMs', async (t) => {
  const root = await scratch(t);
  const src = await bigTree(root, 1000);
  const p = pool(t, { maxThreads: 1, closeTimeoutMs: 50 });
  const running = t.rejects(p.run({ type: 'copy-tree', src, dest: join(root, 'a') }), { code: 'ENGINE_CLOSED' });
  const started = Date.now();
  await p.close();
  await running;
  t.ok(Date.now() - started < 1000, 'close did not wait for the copy');
});

t.test('FsPool validates its options', async (t) => {
  t.throws(() => new FsPool({ logger: nullLogger, maxThreads: 0 }), RangeError);
  t.throws(() => new FsPool({ logger: nullLogger, maxQueue: -1 }), RangeError);
});

t.test('FsPool refuses a negative abortGraceMs', async (t) => {
  t.throws(() => new FsPool({ logger: nullLogger, abortGraceMs: -1 }), RangeError);
});
