/**
 * Start-up hygiene for mounts: a mount under the store that no instance owns is unmounted (files
 * below the mount point stay) and logged; mounts inside an instance's directory are left alone.
 * Needs root (mount); no Docker.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { startEngine } from '../../helpers/engine.js';
import { mountsUnder } from '../../helpers/prepare.js';
import { logLines, logRecords } from '../../helpers/del-engine.js';

t.setTimeout(300_000);

const isRoot = process.getuid?.() === 0;

t.test('start-up hygiene unmounts mounts that no instance owns', { skip: isRoot ? false : 'needs root to mount' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sqlrs-del-hygiene-'));
  const store = join(dir, 'state-store');
  t.teardown(() => {
    for (const m of mountsUnder(dir)) {
      try { execFileSync('umount', [m]); } catch { execFileSync('umount', ['-l', m]); }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  // A first start creates the database.
  const first = await startEngine(undefined, { dir, store, idleTimeout: '0' });
  await first.stop();

  // A base with a record (kept by the directory hygiene) holding a stray mount, and an instance
  // with a record whose own mount must stay.
  const base = join(store, 'bases', 'b1');
  const stray = join(base, 'data', 'stray');
  mkdirSync(stray, { recursive: true });
  writeFileSync(join(stray, 'underneath.txt'), 'kept\n');
  const instanceId = 'f'.repeat(32);
  const owned = join(store, 'instances', instanceId, 'merged');
  mkdirSync(owned, { recursive: true });
  const db = new Database(join(store, 'state.db'));
  db.prepare('INSERT INTO bases (image_id, dir, backend, created_at) VALUES (?, ?, ?, ?)').run('img', base, 'copy', '2026-01-01T00:00:00Z');
  db.prepare(`INSERT INTO instances (instance_id, state_id, image_id, created_at, runtime_id, runtime_dir, host_port, job_id)
    VALUES (?, ?, ?, ?, NULL, ?, NULL, NULL)`).run(instanceId, '0'.repeat(64), 'img', '2026-01-01T00:00:00Z', join(store, 'instances', instanceId));
  db.close();
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'sqlrs-test', stray]);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'sqlrs-test', owned]);
  t.same(mountsUnder(store).sort(), [owned, stray].sort(), 'both mounts are in place');

  const checked = (): string[] => logLines(first, 'start-up hygiene: mounts checked');
  const before = checked().length;
  const eng = await startEngine(undefined, { dir, store, idleTimeout: '0' });
  t.teardown(() => eng.stop().then(() => undefined));
  const deadline = Date.now() + 30_000;
  while (checked().length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.same(mountsUnder(store), [owned], 'only the instance mount is left');
  t.ok(existsSync(join(stray, 'underneath.txt')), 'files below the mount point stay');
  t.ok(logLines(eng, 'unmounting a mount that no instance owns').some((l) => l.includes(stray)), 'the unmount is logged');
  t.match(logRecords(eng, 'start-up hygiene: mounts checked')[before], { mounts: 2, unmounted: 1 });
});
