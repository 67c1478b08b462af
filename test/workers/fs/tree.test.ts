/**
 * Whole-tree operations of the fs thread (`fs/tree.ts`): copyTree, measure, and removeTree of
 * btrfs subvolumes.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { isSubvolume } from '../../../src/workers/fs/subvolumes.js';
import { copyTree, measure, removeTree } from '../../../src/workers/fs/tree.js';

/** What the fixtures need from a test: a place to register cleanup. */
interface Test {
  teardown(fn: () => void | Promise<void>): void;
}

const UID = 999;
const GID = 999;

/** Mount points at or below `dir`, straight from mountinfo, deepest first. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((mp): mp is string => mp !== undefined && (mp === dir || mp.startsWith(`${dir}/`)))
    .map((mp) => mp.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .sort((a, b) => b.length - a.length);
}

function forceUnmountUnder(dir: string): void {
  for (const mp of mountsUnder(dir)) {
    try {
      execFileSync('umount', ['-l', mp], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}

/** A fresh directory under `parent`, unmounted and deleted on teardown. */
async function scratch(t: Test, parent = tmpdir(), prefix = 'snapshot-test-'): Promise<string> {
  const dir = await fs.mkdtemp(join(parent, prefix));
  t.teardown(async () => {
    forceUnmountUnder(dir);
    await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  });
  return dir;
}

/** A loop-mounted btrfs filesystem, unmounted (and its image deleted) on teardown. */
async function loopBtrfs(t: Test): Promise<string> {
  const dir = await fs.mkdtemp(join(tmpdir(), 'snapshot-btrfs-'));
  const img = join(dir, 'fs.img');
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  execFileSync('truncate', ['-s', '1G', img]);
  execFileSync('mkfs.btrfs', ['-q', img], { stdio: 'ignore' });
  execFileSync('mount', ['-o', 'loop', img, mnt]);
  t.teardown(async () => {
    forceUnmountUnder(mnt);
    await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  });
  return mnt;
}

async function put(p: string, content: string | Buffer, mode: number, uid = UID, gid = GID): Promise<void> {
  await fs.writeFile(p, content);
  await fs.chown(p, uid, gid);
  await fs.chmod(p, mode);
}

async function dir(p: string, mode = 0o700, uid = UID, gid = GID): Promise<void> {
  await fs.mkdir(p);
  await fs.chown(p, uid, gid);
  await fs.chmod(p, mode);
}

async function link(target: string, p: string, uid = UID, gid = GID): Promise<void> {
  await fs.symlink(target, p);
  await fs.lchown(p, uid, gid);
}

/** A fake initdb'd mount dir. */
async function populate(data: string, bigBytes = 0): Promise<void> {
  await dir(join(data, 'pgdata'));
  await put(join(data, 'pgdata', 'PG_VERSION'), '17\n', 0o600);
  await put(join(data, 'pgdata', 'postgresql.conf'), 'fsync = on\n', 0o600);
  await dir(join(data, 'pgdata', 'base'));
  await dir(join(data, 'pgdata', 'base', '1'));
  await put(join(data, 'pgdata', 'base', '1', '1259'), Buffer.alloc(8192, 7), 0o600);
  await put(join(data, 'pgdata', 'base', '1', '1249'), Buffer.alloc(8192, 3), 0o600);
  await dir(join(data, 'pgdata', 'global'));
  await put(join(data, 'pgdata', 'global', 'pg_control'), Buffer.alloc(512, 1), 0o600);
  await dir(join(data, 'pgdata', 'pg_wal'));
  await put(join(data, 'pgdata', 'pg_wal', '000000010000000000000001'), Buffer.alloc(65536, 9), 0o600);
  await dir(join(data, 'pgdata', 'old'), 0o750);
  await put(join(data, 'pgdata', 'old', 'x'), 'x', 0o640);
  await put(join(data, 'pgdata', 'old', 'y'), 'y', 0o640);
  await dir(join(data, 'pgdata', 'redo'));
  await put(join(data, 'pgdata', 'redo', 'a'), 'a', 0o600);
  await put(join(data, 'pgdata', 'redo', 'b'), 'b', 0o600);
  await dir(join(data, 'scripts'), 0o755);
  await put(join(data, 'scripts', 'run.sh'), '#!/bin/sh\necho hi\n', 0o755);
  await put(join(data, 'readme.txt'), 'root owned\n', 0o644, 0, 0);
  await link('pgdata/PG_VERSION', join(data, 'link'));
  await link('/nonexistent/target', join(data, 'abslink'));
  if (bigBytes > 0) await put(join(data, 'pgdata', 'base', '1', 'big'), Buffer.alloc(bigBytes, 5), 0o600);
}

/** Everything observable about a tree except timestamps. */
async function view(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (abs: string, rel: string): Promise<void> => {
    const st = await fs.lstat(abs);
    const meta = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
    if (st.isDirectory()) {
      out[rel] = `dir ${meta}`;
      for (const n of (await fs.readdir(abs)).sort()) await walk(join(abs, n), rel === '.' ? n : `${rel}/${n}`);
    } else if (st.isFile()) {
      out[rel] = `file ${meta} ${createHash('sha1').update(await fs.readFile(abs)).digest('hex')}`;
    } else if (st.isSymbolicLink()) {
      out[rel] = `link ${st.uid}:${st.gid} -> ${await fs.readlink(abs)}`;
    } else {
      out[rel] = `other ${st.mode.toString(8)}`;
    }
  };
  await walk(root, '.');
  return out;
}

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
