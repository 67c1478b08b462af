/** The btrfs backend (`fs/btrfs.ts`) beyond the shared contract of `states.test.ts`. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { prepareBase } from '../../../src/workers/fs/states.js';

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

t.test('prepareBase on btrfs refuses a non-btrfs directory', async (t) => {
  const root = await scratch(t);
  await t.rejects(prepareBase({ backend: 'btrfs', baseDir: join(root, 'base'), uid: UID, gid: GID }), {
    code: 'ENGINE_SNAPSHOT',
    message: /not mounted as btrfs/,
  });
});
