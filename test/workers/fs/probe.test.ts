/** Backend probing (`fs/probe.ts`) on a real btrfs and on /tmp. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { probe } from '../../../src/workers/fs/probe.js';

/** What the fixtures need from a test: a place to register cleanup. */
interface Test {
  teardown(fn: () => void | Promise<void>): void;
}

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

t.test('probe reports btrfs on a loop btrfs root', async (t) => {
  const mnt = await loopBtrfs(t);
  const root = join(mnt, 'store');
  const r = await probe({ root });
  t.equal(r.btrfs, true);
  t.equal(r.overlay, true);
  t.same(r.notes, []);
  t.same((await fs.readdir(root)).filter((n) => n.includes('probe')), [], 'probe leaves nothing behind');
});

t.test('probe reports no btrfs but overlay on /tmp', async (t) => {
  const root = await scratch(t);
  const r = await probe({ root });
  t.equal(r.btrfs, false);
  t.equal(r.overlay, true);
  t.match(r.notes, [/^btrfs: .* not on a btrfs filesystem/]);
  t.same(await fs.readdir(root), [], 'probe leaves nothing behind');
  t.same(mountsUnder(root), []);
});
