/**
 * Whole-tree operations of the fs thread (`fs/tree.ts`): copyTree, measure, and removeTree of
 * btrfs subvolumes.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { isSubvolume } from '../../../src/workers/fs/subvolumes.js';
import { copyTree, measure, removeTree } from '../../../src/workers/fs/tree.js';
import { scratch, loopBtrfs, dir, populate, view } from '../../helpers/fs.js';

t.test('copyTree preserves content, modes, owners and symlinks and counts files', async (t) => {
  const root = await scratch(t);
  const src = join(root, 'src');
  await dir(src, 0o750);
  await populate(src);
  await fs.chmod(join(src, 'scripts', 'run.sh'), 0o4755);
  const r = await copyTree({ src, dest: join(root, 'out', 'dest') });
  t.same(await view(join(root, 'out', 'dest')), await view(src));
  t.same(r, await measure({ path: src }));
  t.equal(r.files, 12);
});

t.test('copyTree refuses a destination inside the source or not empty', async (t) => {
  const root = await scratch(t);
  const src = join(root, 'src');
  await fs.mkdir(join(src, 'sub'), { recursive: true });
  await t.rejects(copyTree({ src, dest: join(src, 'sub', 'copy') }), { code: 'ENGINE_SNAPSHOT', message: /destination must not be inside source/ });
  await t.rejects(copyTree({ src, dest: src }), { code: 'ENGINE_SNAPSHOT', message: /destination must not be inside source/ });
  await fs.symlink(src, join(root, 'alias'));
  await t.rejects(copyTree({ src: join(root, 'alias'), dest: join(src, 'x') }), { code: 'ENGINE_SNAPSHOT' }, 'symlinked source is resolved');
  await fs.writeFile(join(root, 'busy'), 'x');
  await t.rejects(copyTree({ src, dest: join(root, 'busy') }), { code: 'ENGINE_SNAPSHOT', message: /not an empty directory/ });
  await t.rejects(copyTree({ src: join(root, 'missing'), dest: join(root, 'd') }), { code: 'ENGINE_SNAPSHOT', message: /source must be a directory/ });
  await fs.mkdir(join(root, 'empty'));
  t.same(await copyTree({ src, dest: join(root, 'empty') }), { bytes: 0, files: 0 }, 'an empty directory is an acceptable destination');
});

t.test('copyTree stops when aborted', async (t) => {
  const root = await scratch(t);
  await fs.mkdir(join(root, 'src'));
  await fs.writeFile(join(root, 'src', 'f'), 'x');
  await t.rejects(copyTree({ src: join(root, 'src'), dest: join(root, 'd') }, { signal: AbortSignal.abort() }), { code: 'cancelled' });
});

t.test('measure sums regular files and rejects a missing path', async (t) => {
  const root = await scratch(t);
  await fs.mkdir(join(root, 'a', 'b'), { recursive: true });
  await fs.writeFile(join(root, 'a', 'x'), Buffer.alloc(1000));
  await fs.writeFile(join(root, 'a', 'b', 'y'), Buffer.alloc(24));
  await fs.symlink('/etc/passwd', join(root, 'a', 'l'));
  t.same(await measure({ path: join(root, 'a') }), { bytes: 1024, files: 2 });
  await t.rejects(measure({ path: join(root, 'nope') }), { code: 'ENGINE_SNAPSHOT' });
});

t.test('removeTree deletes read-only btrfs subvolumes below a path', async (t) => {
  const mnt = await loopBtrfs(t);
  const top = join(mnt, 'tree');
  await fs.mkdir(join(top, 'states'), { recursive: true });
  execFileSync('btrfs', ['subvolume', 'create', join(top, 'sv')], { stdio: 'ignore' });
  await fs.writeFile(join(top, 'sv', 'f'), 'x');
  execFileSync('btrfs', ['subvolume', 'snapshot', '-r', join(top, 'sv'), join(top, 'states', 'ro')], { stdio: 'ignore' });
  t.ok(await isSubvolume(join(top, 'states', 'ro')));
  t.same(await removeTree({ path: top }), { removed: true });
  t.same(await fs.readdir(mnt), []);
});
