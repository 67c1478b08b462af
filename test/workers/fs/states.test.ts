/**
 * The snapshot backend contract (`fs/states.ts` over `fs/copy.ts`, `fs/overlay.ts`, `fs/btrfs.ts`):
 * clone, snapshot, verify and remove behave the same on every backend and filesystem.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { join, relative } from 'node:path';
import t from 'tap';
import type { SnapshotBackendKind } from '../../../src/workers/protocol.js';
import { readStateMarker, verifyState } from '../../../src/workers/fs/markers.js';
import { listMounts } from '../../../src/workers/fs/mounts.js';
import { clone, prepareBase, removeRuntime, removeState, snapshot } from '../../../src/workers/fs/states.js';
import { isSubvolume } from '../../../src/workers/fs/subvolumes.js';
import { measure } from '../../../src/workers/fs/tree.js';
import { type Test, UID, GID, mountsUnder, scratch, loopBtrfs, put, dir, link, populate, view } from '../../helpers/fs.js';

// ---------------------------------------------------------------------------------------------
// Fixtures (independent of the code under test)

interface Store {
  root: string;
  baseDir: string;
  statesDir: string;
  state(name: string): string;
  runtime(name: string): string;
}

async function store(parent: string): Promise<Store> {
  const root = await fs.mkdtemp(join(parent, 'store-'));
  const statesDir = join(root, 'engines', 'postgres', '17', 'states');
  return {
    root,
    baseDir: join(root, 'engines', 'postgres', '17', 'base'),
    statesDir,
    state: (name) => join(statesDir, createHash('sha256').update(name).digest('hex')),
    runtime: (name) => join(root, 'jobs', name, 'runtime'),
  };
}

/** First round of changes: add, change, chmod, chown, delete a file and a directory, recreate a directory, relink. */
async function mutate1(m: string): Promise<void> {
  await put(join(m, 'pgdata', 'base', '1', '16384'), 'new relation', 0o600);
  await fs.writeFile(join(m, 'pgdata', 'postgresql.conf'), 'fsync = off\n');
  await fs.chmod(join(m, 'scripts', 'run.sh'), 0o700);
  await fs.chown(join(m, 'pgdata', 'base', '1', '1249'), 1000, 1001);
  await fs.rm(join(m, 'readme.txt'));
  await fs.rm(join(m, 'pgdata', 'old'), { recursive: true });
  await fs.rm(join(m, 'pgdata', 'redo'), { recursive: true });
  await dir(join(m, 'pgdata', 'redo'), 0o750);
  await put(join(m, 'pgdata', 'redo', 'c'), 'c', 0o600);
  await fs.unlink(join(m, 'link'));
  await link('scripts/run.sh', join(m, 'link'));
  await dir(join(m, 'pgdata', 'newdir'), 0o750);
}

/** Second round: delete a file and a dir made by the first round, patch a file in place, add one, drop a symlink. */
async function mutate2(m: string): Promise<void> {
  await fs.rm(join(m, 'pgdata', 'base', '1', '16384'));
  const fh = await fs.open(join(m, 'pgdata', 'base', '1', '1259'), 'r+');
  await fh.write(Buffer.from('patched'), 0, 7, 100);
  await fh.close();
  await put(join(m, 'pgdata', 'pg_wal', '000000010000000000000002'), Buffer.alloc(4096, 2), 0o600);
  await fs.rm(join(m, 'pgdata', 'newdir'), { recursive: true });
  await fs.unlink(join(m, 'abslink'));
}

async function tmpLeftovers(statesDir: string): Promise<string[]> {
  return (await fs.readdir(statesDir).catch(() => [] as string[])).filter((n) => n.startsWith('.tmp-'));
}

// ---------------------------------------------------------------------------------------------
// The contract every backend satisfies

interface Target {
  name: string;
  backend: SnapshotBackendKind;
  /** Returns the parent dir for stores of this target (sets up/tears down any filesystem). */
  parent(t: Test): Promise<string>;
}

const targets: Target[] = [
  { name: 'copy backend on /tmp', backend: 'copy', parent: (t) => scratch(t) },
  { name: 'overlay backend on /tmp', backend: 'overlay', parent: (t) => scratch(t) },
  { name: 'btrfs backend on a loop btrfs', backend: 'btrfs', parent: (t) => loopBtrfs(t) },
  { name: 'copy backend on a loop btrfs', backend: 'copy', parent: (t) => loopBtrfs(t) },
  { name: 'overlay backend on a loop btrfs', backend: 'overlay', parent: (t) => loopBtrfs(t) },
];

for (const target of targets) {
  const { backend } = target;

  t.test(`${target.name}`, async (t) => {
    const parent = await target.parent(t);

    async function baseWithData(s: Store, bigBytes = 0): Promise<string> {
      const { dataDir } = await prepareBase({ backend, baseDir: s.baseDir, uid: UID, gid: GID });
      await populate(dataDir, bigBytes);
      return dataDir;
    }
    const cloneBase = (s: Store, name: string) =>
      clone({ backend, root: s.root, source: { kind: 'base', baseDir: s.baseDir }, runtimeDir: s.runtime(name), uid: UID, gid: GID });
    const cloneState = (s: Store, stateDir: string, name: string) =>
      clone({ backend, root: s.root, source: { kind: 'state', stateDir }, runtimeDir: s.runtime(name), uid: UID, gid: GID });
    const snap = (s: Store, runtime: string, stateDir: string, maxDepth = 16) =>
      snapshot({ backend, root: s.root, runtimeDir: s.runtime(runtime), stateDir, maxDepth });

    t.test('clone and snapshot chain reproduce the runtime view exactly', async (t) => {
      const s = await store(parent);
      const baseData = await baseWithData(s);
      const baseView = await view(baseData);

      const a = await cloneBase(s, 'a');
      t.same(await view(a.mountDir), baseView, 'a clone of the base shows the base');
      await mutate1(a.mountDir);
      const viewA = await view(a.mountDir);
      t.notOk(viewA['readme.txt'], 'deleted file is gone from the runtime');

      const s1 = s.state('s1');
      const r1 = await snap(s, 'a', s1);
      t.equal(r1.sizeBytes, (await measure({ path: join(s1, 'data') })).bytes, 'size is the apparent size of the state layer');
      t.same(await verifyState({ root: s.root, stateDir: s1 }), { ok: true });

      const b = await cloneState(s, s1, 'b');
      t.same(await view(b.mountDir), viewA, 'a clone of S1 equals the snapshotted runtime');
      t.notOk((await view(b.mountDir))['pgdata/old/x'], 'deleted directory stays deleted');
      t.notOk((await view(b.mountDir))['pgdata/redo/a'], 'a recreated directory does not show old entries');

      // Changes after the snapshot, in the source runtime and in a clone, do not reach S1.
      await fs.writeFile(join(a.mountDir, 'pgdata', 'postgresql.conf'), 'changed after snapshot\n');
      await fs.rm(join(a.mountDir, 'pgdata', 'PG_VERSION'));
      await mutate2(b.mountDir);
      const viewB = await view(b.mountDir);

      const s2 = s.state('s2');
      await snap(s, 'b', s2);
      t.same(await verifyState({ root: s.root, stateDir: s2 }), { ok: true });
      const c = await cloneState(s, s2, 'c');
      t.same(await view(c.mountDir), viewB, 'a clone of S2 (a chain) equals its runtime');
      const d = await cloneState(s, s1, 'd');
      t.same(await view(d.mountDir), viewA, 'S1 is unaffected by later changes to its runtime and clones');
      t.same(await view(baseData), baseView, 'the base is unaffected');

      const m1 = await readStateMarker(s1);
      const m2 = await readStateMarker(s2);
      t.equal(m2?.backend, backend);
      if (backend === 'overlay') {
        const baseRel = relative(s.root, baseData);
        t.same(m1?.lowers, [baseRel]);
        t.same(m2?.lowers, [relative(s.root, join(s1, 'data')), baseRel]);
      } else {
        t.same(m1?.lowers, []);
        t.same(m2?.lowers, []);
      }
      if (backend === 'btrfs') {
        t.ok(await isSubvolume(join(s1, 'data')), 'state data is a subvolume');
        t.match(execFileSync('btrfs', ['property', 'get', '-ts', join(s1, 'data'), 'ro'], { encoding: 'utf8' }), /ro=true/);
        t.ok(await isSubvolume(b.mountDir), 'runtime data is a subvolume');
        t.match(execFileSync('btrfs', ['property', 'get', '-ts', b.mountDir, 'ro'], { encoding: 'utf8' }), /ro=false/);
      }

      // Redoing a snapshot into a complete state is a no-op that returns the recorded size.
      await fs.writeFile(join(c.mountDir, 'extra'), 'not part of S1');
      t.same(await snap(s, 'c', s1), { sizeBytes: r1.sizeBytes });
      const e = await cloneState(s, s1, 'e');
      t.same(await view(e.mountDir), viewA, 'S1 is unchanged by the redo');
      t.same(await tmpLeftovers(s.statesDir), [], 'no .tmp-* directory is left behind');
    });

    t.test('verify-state detects dirty, incomplete and broken states', async (t) => {
      const s = await store(parent);
      await baseWithData(s);
      const a = await cloneBase(s, 'a');
      await fs.writeFile(join(a.mountDir, 'pgdata', 'marker'), 'a');
      const s1 = s.state('s1');
      await snap(s, 'a', s1);

      const b = await cloneState(s, s1, 'b');
      await put(join(b.mountDir, 'pgdata', 'postmaster.pid'), '42\n', 0o600);
      const dirty = s.state('dirty');
      await snap(s, 'b', dirty);
      t.same(await verifyState({ root: s.root, stateDir: dirty }), { ok: false, reason: 'dirty snapshot (postmaster.pid present)' });

      await fs.rm(join(b.mountDir, 'pgdata', 'postmaster.pid'));
      await fs.rm(join(b.mountDir, 'pgdata', 'PG_VERSION'));
      const noVersion = s.state('no-version');
      await snap(s, 'b', noVersion);
      t.same(await verifyState({ root: s.root, stateDir: noVersion }), { ok: false, reason: 'missing PG_VERSION' });

      // A state whose recorded lower is gone.
      const orphan = s.state('orphan');
      await snap(s, 'a', orphan);
      const lowerRel = relative(s.root, join(s1, 'data'));
      if (backend === 'overlay') {
        const b2 = await cloneState(s, s1, 'b2');
        const child = s.state('child');
        await snap(s, 'b2', child);
        await fs.rename(s1, `${s1}.moved`);
        t.same(await verifyState({ root: s.root, stateDir: child }), { ok: false, reason: `lower layer missing: ${lowerRel}` });
        await t.rejects(cloneState(s, child, 'b3'), { code: 'ENGINE_SNAPSHOT', message: /lower layer missing/ });
        t.same(mountsUnder(s.runtime('b3')), [], 'a failed clone leaves no mount');
        await fs.rename(`${s1}.moved`, s1);
        t.same(await verifyState({ root: s.root, stateDir: child }), { ok: true }, 'restoring the lower makes it valid again');
        t.ok(b2.mountDir);
      } else {
        const markerPath = join(orphan, 'state.json');
        const marker = JSON.parse(await fs.readFile(markerPath, 'utf8')) as Record<string, unknown>;
        await fs.writeFile(markerPath, JSON.stringify({ ...marker, lowers: ['engines/postgres/17/states/gone/data'] }));
        t.same(await verifyState({ root: s.root, stateDir: orphan }), { ok: false, reason: 'lower layer missing: engines/postgres/17/states/gone/data' });
      }

      await fs.rm(join(orphan, 'state.json'));
      t.same(await verifyState({ root: s.root, stateDir: orphan }), { ok: false, reason: 'missing state.json' });
      await t.rejects(cloneState(s, orphan, 'from-incomplete'), { code: 'ENGINE_SNAPSHOT', message: /not complete/ });
      await t.rejects(snap(s, 'a', orphan), { code: 'ENGINE_SNAPSHOT', message: /incomplete/ }, 'an incomplete non-empty state dir is not overwritten');
      await fs.writeFile(join(s1, 'state.json'), '{"v":1');
      t.match(await verifyState({ root: s.root, stateDir: s1 }), { ok: false, reason: /^invalid state\.json/ });
      t.same(await verifyState({ root: s.root, stateDir: s.state('never-built') }), { ok: false, reason: 'missing state.json' });
    });

    t.test('removing runtimes and states leaves no mounts and no directories', async (t) => {
      const s = await store(parent);
      await baseWithData(s);
      const a = await cloneBase(s, 'a');
      await mutate1(a.mountDir);
      const s1 = s.state('s1');
      await snap(s, 'a', s1);
      const b = await cloneState(s, s1, 'b');
      await mutate2(b.mountDir);
      const s2 = s.state('s2');
      await snap(s, 'b', s2);
      await cloneState(s, s2, 'c');
      if (backend === 'overlay') t.equal(mountsUnder(join(s.root, 'jobs')).length, 3, 'each overlay runtime is a mount');
      else t.same(mountsUnder(s.root), []);

      for (const name of ['a', 'b', 'c']) {
        t.same(await removeRuntime({ backend, runtimeDir: s.runtime(name) }), { removed: true });
        t.equal(await fs.stat(s.runtime(name)).catch(() => undefined), undefined, `runtime ${name} is gone`);
      }
      t.same(await removeRuntime({ backend, runtimeDir: s.runtime('a') }), { removed: false }, 'removing twice is harmless');
      for (const st of [s2, s1]) t.same(await removeState({ backend, stateDir: st }), { removed: true });
      t.same(mountsUnder(s.root), [], 'no mounts remain (mountinfo)');
      t.same((await listMounts({ under: s.root })).mounts, []);
      t.same(await fs.readdir(s.statesDir), [], 'no state or .tmp-* dirs remain');
      t.same(await fs.readdir(join(s.root, 'jobs', 'a')), [], 'runtime dirs are gone');
    });

    t.test('an aborted snapshot leaves neither the state nor a temp dir', async (t) => {
      const s = await store(parent);
      await baseWithData(s);
      await cloneBase(s, 'a');
      const s1 = s.state('s1');
      const ac = new AbortController();
      ac.abort();
      await t.rejects(snapshot({ backend, root: s.root, runtimeDir: s.runtime('a'), stateDir: s1, maxDepth: 16 }, { signal: ac.signal }), {
        code: 'cancelled',
      });
      t.equal(await fs.stat(s1).catch(() => undefined), undefined);
      t.same(await tmpLeftovers(s.statesDir), []);
      // A leftover temp dir of a crashed build does not get in the way.
      await fs.mkdir(join(s.statesDir, `.tmp-${s1.slice(-64)}-deadbeef`), { recursive: true });
      await snap(s, 'a', s1);
      t.same(await verifyState({ root: s.root, stateDir: s1 }), { ok: true });
    });

    if (backend === 'overlay') {
      t.test('overlay states hold only the changed files', async (t) => {
        const s = await store(parent);
        const big = 8 * 1024 * 1024;
        const baseData = await baseWithData(s, big);
        const baseSize = (await measure({ path: baseData })).bytes;
        const a = await cloneBase(s, 'a');
        await put(join(a.mountDir, 'pgdata', 'base', '1', '16384'), 'small change', 0o600);
        await fs.rm(join(a.mountDir, 'pgdata', 'base', '1', '1259'));
        const s1 = s.state('s1');
        const { sizeBytes } = await snap(s, 'a', s1);
        t.ok(baseSize > big, 'base is big');
        t.ok(sizeBytes < 4096, `state layer is small (${sizeBytes} bytes)`);
        const wh = await fs.lstat(join(s1, 'data', 'pgdata', 'base', '1', '1259'));
        t.ok(wh.isCharacterDevice() && wh.rdev === 0, 'a deletion is kept as a whiteout');
        t.equal(await fs.stat(join(s1, 'data', 'pgdata', 'base', '1', 'big')).catch(() => undefined), undefined, 'unchanged big file is not copied');
        const b = await cloneState(s, s1, 'b');
        t.same(await view(b.mountDir), await view(a.mountDir));
      });

      t.test('overlay chains deeper than maxDepth are flattened', async (t) => {
        const s = await store(parent);
        await baseWithData(s);
        const a = await cloneBase(s, 'a');
        await put(join(a.mountDir, 'one'), '1', 0o600);
        const s1 = s.state('s1');
        await snap(s, 'a', s1, 2);
        const b = await cloneState(s, s1, 'b');
        await put(join(b.mountDir, 'two'), '2', 0o600);
        await fs.rm(join(b.mountDir, 'pgdata', 'old'), { recursive: true });
        const viewB = await view(b.mountDir);
        const s2 = s.state('s2');
        await snap(s, 'b', s2, 2);
        const c = await cloneState(s, s2, 'c');
        await put(join(c.mountDir, 'three'), '3', 0o600);
        const s3 = s.state('s3');
        await snap(s, 'c', s3, 2);

        t.same((await readStateMarker(s1))?.lowers, [relative(s.root, join(s.baseDir, 'data'))], 'depth 2 is kept as layers');
        t.same((await readStateMarker(s2))?.lowers, [], 'depth 3 is flattened');
        t.same(await view(join(s2, 'data')), viewB, 'the flattened layer holds the full view');
        t.same((await readStateMarker(s3))?.lowers, [relative(s.root, join(s2, 'data'))], 'a child of a flat state stacks again');
        const d = await cloneState(s, s3, 'd');
        t.same(await view(d.mountDir), await view(c.mountDir));
        t.same(await verifyState({ root: s.root, stateDir: s3 }), { ok: true });
      });
    }
  });
}
