/** The exclusive state-store lock: one holder, stale locks taken over, nothing left behind. */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { lockStore } from '../src/store-lock.js';

t.test('store lock admits one holder and is free again after release', async (t) => {
  const root = t.testdir();
  const lock = lockStore(root);
  t.equal(lock.path, join(root, 'engine.lock'));
  t.match(readFileSync(lock.path, 'utf8'), new RegExp(`^${process.pid} \\d+\\n$`), 'holds pid and start time');
  t.throws(() => lockStore(root), { code: 'ENGINE_STORE_LOCKED', message: new RegExp(`in use by another engine \\(pid ${process.pid}\\)`) }, 'a live holder blocks');
  t.same(readdirSync(root), ['engine.lock'], 'no temporary files left');
  lock.release();
  t.notOk(existsSync(lock.path), 'released');
  lock.release();
  const again = lockStore(root);
  t.ok(existsSync(again.path), 'taken again');
  again.release();
});

t.test('store lock takes over a lock whose owner is gone', async (t) => {
  const root = t.testdir();
  const cases = {
    'dead pid': '2147483646 12345\n',
    'reused pid (other start time)': `${process.pid} 1\n`,
    'empty file': '',
    'garbage': 'not a lock',
  };
  for (const [name, content] of Object.entries(cases)) {
    writeFileSync(join(root, 'engine.lock'), content);
    const lock = lockStore(root);
    t.match(readFileSync(lock.path, 'utf8'), new RegExp(`^${process.pid} `), `${name}: taken over`);
    lock.release();
  }
  t.same(readdirSync(root), [], 'nothing left behind');
});

t.test('store lock release leaves a lock that is no longer ours alone', async (t) => {
  const root = t.testdir();
  const lock = lockStore(root);
  writeFileSync(lock.path, '2147483646 1\n'); // someone else's now
  lock.release();
  t.ok(existsSync(lock.path), 'not removed');
});
