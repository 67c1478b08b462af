/** Mount points below a path (`fs/mounts.ts`), and removing a tree that has mounts in it. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { listMounts } from '../../../src/workers/fs/mounts.js';
import { removeTree } from '../../../src/workers/fs/tree.js';
import { mountsUnder, scratch } from '../../helpers/fs.js';

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
