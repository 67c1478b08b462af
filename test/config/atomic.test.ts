import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { writeFileAtomic } from '../../src/config/atomic.js';

t.test('writeFileAtomic replaces the file and leaves no temp file', async (t) => {
  const dir = t.testdir({ 'config.json': 'old' });
  const file = join(dir, 'config.json');
  await writeFileAtomic(file, 'new\n');
  t.equal(readFileSync(file, 'utf8'), 'new\n');
  t.same(readdirSync(dir), ['config.json']);
  t.equal(statSync(file).mode & 0o777, 0o600);
});

t.test('writeFileAtomic applies the requested mode regardless of umask', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'x.json');
  const old = process.umask(0o077);
  try {
    await writeFileAtomic(file, '{}', { mode: 0o640 });
  } finally {
    process.umask(old);
  }
  t.equal(statSync(file).mode & 0o777, 0o640);
});

t.test('writeFileAtomic creates a missing directory with mode 0700', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'a', 'b', 'config.json');
  await writeFileAtomic(file, '{}');
  t.equal(readFileSync(file, 'utf8'), '{}');
  t.equal(statSync(join(dir, 'a', 'b')).mode & 0o777, 0o700);
});

t.test('writeFileAtomic removes its temp file when the rename fails', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'config.json');
  mkdirSync(file);
  writeFileSync(join(file, 'keep'), 'x');
  await t.rejects(writeFileAtomic(file, '{}'));
  t.same(readdirSync(dir), ['config.json']);
  t.ok(statSync(file).isDirectory());
});

t.test('writeFileAtomic rejects when the directory cannot be created', async (t) => {
  const dir = t.testdir({ blocker: 'file' });
  await t.rejects(writeFileAtomic(join(dir, 'blocker', 'config.json'), '{}'));
  t.same(readdirSync(dir), ['blocker']);
});
