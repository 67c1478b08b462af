/** Mount points below a path (`fs/mounts.ts`), and removing a tree that has mounts in it. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { listMounts } from '../../../src/workers/fs/mounts.js';
import { removeTree } from '../../../src/workers/fs/tree.js';

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

t.test('listMounts and removeTree handle nested mounts below a path', async (t) => {
  const root = await scratch(t);
  const outer = join(root, 'x', 'a');
  await fs.mkdir(outer, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', outer]);
  const inner = join(outer, 'b c');
  await fs.mkdir(inner);
  execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', inner]);
  await fs.writeFile(join(inner, 'f'), 'x');
  t.same((await listMounts({ under: join(root, 'x') })).mounts, [inner, outer], 'deepest first, escaped names decoded');
  t.same((await listMounts({ under: inner })).mounts, [inner], 'the path itself counts');
  t.same((await listMounts({ under: join(root, 'nothing') })).mounts, []);
  t.same(await removeTree({ path: join(root, 'x') }), { removed: true });
  t.same(mountsUnder(root), []);
  t.same(await fs.readdir(root), []);
  t.same(await removeTree({ path: join(root, 'x') }), { removed: false });
});
