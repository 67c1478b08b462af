import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needDocker } from '../../helpers/prepare.js';
import { prepareSuite } from '../../helpers/prepare-suite.js';

/** A loop-mounted btrfs filesystem for the state store, removed when the file's tests end. */
function btrfsLoop(): string {
  const base = mkdtempSync(join(tmpdir(), 'sqlrs-btrfs-'));
  const img = join(base, 'fs.img');
  const mnt = join(base, 'mnt');
  mkdirSync(mnt);
  execFileSync('truncate', ['-s', '3G', img]);
  execFileSync('mkfs.btrfs', ['-q', img]);
  execFileSync('mount', ['-o', 'loop', img, mnt]);
  process.on('exit', () => {
    try { execFileSync('umount', ['-l', mnt]); } catch { /* already gone */ }
    rmSync(base, { recursive: true, force: true });
  });
  return mnt;
}

if (needDocker(t)) {
  const mnt = btrfsLoop();
  prepareSuite(t, { backend: 'btrfs', dir: join(mnt, 'engine') });
}
