/**
 * Filesystem fixtures for the fs worker suites: scratch directories that are unmounted and removed
 * on teardown, a loop-mounted btrfs, mountinfo reads independent of the code under test, and a
 * fake initdb'd data directory with files of every kind, owner and mode.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** What the fixtures need from a test: a place to register cleanup. */
export interface Test {
  teardown(fn: () => void | Promise<void>): void;
}

export const UID = 999;

export const GID = 999;

/** Mount points at or below `dir`, straight from mountinfo, deepest first. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((mp): mp is string => mp !== undefined && (mp === dir || mp.startsWith(`${dir}/`)))
    .map((mp) => mp.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .sort((a, b) => b.length - a.length);
}

export function forceUnmountUnder(dir: string): void {
  for (const mp of mountsUnder(dir)) {
    try {
      execFileSync('umount', ['-l', mp], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}

/** A fresh directory under `parent`, unmounted and deleted on teardown. */
export async function scratch(t: Test, parent = tmpdir(), prefix = 'snapshot-test-'): Promise<string> {
  const dir = await fs.mkdtemp(join(parent, prefix));
  t.teardown(async () => {
    forceUnmountUnder(dir);
    await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  });
  return dir;
}

/** A loop-mounted btrfs filesystem, unmounted (and its image deleted) on teardown. */
export async function loopBtrfs(t: Test): Promise<string> {
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

export async function put(p: string, content: string | Buffer, mode: number, uid = UID, gid = GID): Promise<void> {
  await fs.writeFile(p, content);
  await fs.chown(p, uid, gid);
  await fs.chmod(p, mode);
}

export async function dir(p: string, mode = 0o700, uid = UID, gid = GID): Promise<void> {
  await fs.mkdir(p);
  await fs.chown(p, uid, gid);
  await fs.chmod(p, mode);
}

export async function link(target: string, p: string, uid = UID, gid = GID): Promise<void> {
  await fs.symlink(target, p);
  await fs.lchown(p, uid, gid);
}

/** A fake initdb'd mount dir. */
export async function populate(data: string, bigBytes = 0): Promise<void> {
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
export async function view(root: string): Promise<Record<string, string>> {
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
