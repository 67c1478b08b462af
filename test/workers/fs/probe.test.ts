/** Backend probing (`fs/probe.ts`) on a real btrfs and on /tmp. */
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { probe } from '../../../src/workers/fs/probe.js';
import { mountsUnder, scratch, loopBtrfs } from '../../helpers/fs.js';

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
