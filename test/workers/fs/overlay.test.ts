/**
 * `remountRuntime` (the `remount-runtime` fs task): an instance runtime whose overlay mount went
 * away is mounted again from its recorded layers; copy runtimes need nothing. Overlay cases need
 * root and overlay support and are skipped otherwise.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { probe } from '../../../src/workers/fs/probe.js';
import { clone, prepareBase, remountRuntime, removeRuntime } from '../../../src/workers/fs/states.js';

const uid = process.getuid?.() ?? 0;
const gid = process.getgid?.() ?? 0;

async function baseWithFile(root: string): Promise<string> {
  const baseDir = join(root, 'bases', 'b1');
  const { dataDir } = await prepareBase({ backend: 'copy', baseDir, uid, gid });
  writeFileSync(join(dataDir, 'PG_VERSION'), '15\n');
  return baseDir;
}

t.test('remount of a copy runtime returns its data dir', async (t) => {
  const root = t.testdir();
  const baseDir = await baseWithFile(root);
  const runtimeDir = join(root, 'instances', 'i1');
  const { mountDir } = await clone({ backend: 'copy', root, source: { kind: 'base', baseDir }, runtimeDir, uid, gid });
  t.same(await remountRuntime({ root, runtimeDir }), { mountDir, remounted: false });
});

t.test('remount of a missing runtime dir or data fails with a snapshot error', async (t) => {
  const root = t.testdir({ instances: { empty: {} } });
  await t.rejects(remountRuntime({ root, runtimeDir: join(root, 'instances', 'gone') }), { code: 'ENGINE_SNAPSHOT', message: /runtime dir is missing/ });
  await t.rejects(remountRuntime({ root, runtimeDir: join(root, 'instances', 'empty') }), /no data directory/);
});

const overlayOk = uid === 0 && (await probe({ root: t.testdir() })).overlay;

t.test('remount mounts an unmounted overlay runtime again with its changes', { skip: overlayOk ? false : 'overlay mounts need root and overlay support' }, async (t) => {
  const root = t.testdir();
  const baseDir = await baseWithFile(root);
  const runtimeDir = join(root, 'instances', 'i2');
  const { mountDir } = await clone({ backend: 'overlay', root, source: { kind: 'base', baseDir }, runtimeDir, uid, gid });
  try {
    writeFileSync(join(mountDir, 'changed'), 'yes');
    t.same(await remountRuntime({ root, runtimeDir }), { mountDir, remounted: false }, 'a mounted runtime is left alone');
    execFileSync('umount', [mountDir]);
    t.throws(() => readFileSync(join(mountDir, 'PG_VERSION')), 'unmounted: the lower layer is not visible');
    t.same(await remountRuntime({ root, runtimeDir }), { mountDir, remounted: true });
    t.equal(readFileSync(join(mountDir, 'PG_VERSION'), 'utf8'), '15\n', 'the lower layer is back');
    t.equal(readFileSync(join(mountDir, 'changed'), 'utf8'), 'yes', 'the runtime kept its own changes');
  } finally {
    // Before the fixture dir is removed: a mount inside it would make that fail.
    await removeRuntime({ backend: 'overlay', runtimeDir });
  }
});

t.test('remount refuses an overlay runtime whose lower layer is gone', { skip: overlayOk ? false : 'overlay mounts need root and overlay support' }, async (t) => {
  const root = t.testdir();
  const baseDir = await baseWithFile(root);
  const runtimeDir = join(root, 'instances', 'i3');
  const { mountDir } = await clone({ backend: 'overlay', root, source: { kind: 'base', baseDir }, runtimeDir, uid, gid });
  execFileSync('umount', [mountDir]);
  rmSync(join(baseDir, 'data'), { recursive: true });
  mkdirSync(join(baseDir, 'other'));
  await t.rejects(remountRuntime({ root, runtimeDir }), /lower layer missing/);
});
