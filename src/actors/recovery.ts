/**
 * Start-up hygiene, one ordered pass run after the listener is up and before the actor system
 * resumes (requests arriving meanwhile only enqueue persistent messages). Runtimes are never
 * reused across restarts, so everything that no record owns is removed, and logged:
 * 1. containers carrying this store's label that no instance owns, and abandoned probe containers;
 * 2. instance directories without a row; partial `.tmp-*` snapshots; state directories without a
 *    row or pending work; invalidated `.invalid-*` states once no overlay instance can use them;
 *    unfinished bases;
 * 3. mounts under the instance, state and base directories that no instance owns.
 */
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from '../log.js';
import type { Clock } from '../clock.js';
import { errorText } from '../errors.js';
import type { Mailbox } from '../mailbox/mailbox.js';
import type { Store } from '../mailbox/store.js';
import type { FsPool } from '../workers/pool.js';
import { LABEL_INSTANCE, LABEL_ROLE, LABEL_STORE, type ContainerRuntime, type SnapshotBackendKind } from '../workers/protocol.js';
import { isAtOrBelow, type StoreLayout } from './layout.js';

/** An exited probe container older than this was left by an engine that died mid-probe. */
const PROBE_ABANDONED_MS = 10 * 60 * 1000;

export interface RecoveryDeps {
  store: Store;
  mailbox: Mailbox;
  fs: FsPool;
  containers: ContainerRuntime;
  layout: StoreLayout;
  backend: SnapshotBackendKind;
  log: Logger;
  clock: Clock;
}

function canonical(p: string): string {
  try { return realpathSync(p); } catch { return resolve(p); }
}

/** Runs the whole pass; a step that cannot run is logged and the next one still runs. */
export async function recover(d: RecoveryDeps): Promise<void> {
  await containers(d);
  await directories(d);
  await mounts(d);
}

async function containers(d: RecoveryDeps): Promise<void> {
  try {
    for (const c of await d.containers.list({ [LABEL_STORE]: d.layout.label })) {
      const inst = c.labels[LABEL_INSTANCE];
      const row = inst ? d.store.getInstance(inst) : undefined;
      if (!row || row.runtime_id !== c.id) {
        d.log.warn('removing orphaned container', { id: c.id, name: c.name });
        await d.containers.remove(c.id);
      }
    }
    // One-shot probe containers carry no store label, so they may belong to another engine that
    // is reading one right now: only an exited probe left for long (one lives about a second)
    // is abandoned.
    for (const c of await d.containers.list({ [LABEL_ROLE]: 'probe' })) {
      if (!c.running && d.clock.now() - c.createdMs > PROBE_ABANDONED_MS) {
        d.log.warn('removing leftover probe container', { id: c.id });
        await d.containers.remove(c.id);
      }
    }
  } catch (err) {
    d.log.error('cannot list containers for cleanup', { error: errorText(err) });
  }
}

async function directories(d: RecoveryDeps): Promise<void> {
  const L = d.layout;
  const pendingStates = new Set<string>();
  for (const w of d.mailbox.pendingWork()) {
    const spec = w.spec as Partial<{ outputStateId: string }> | null;
    if (spec?.outputStateId) pendingStates.add(spec.outputStateId);
  }
  const list = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir) : []);
  for (const name of list(L.instancesDir)) {
    if (d.store.getInstance(name)) continue;
    d.log.warn('removing orphaned runtime directory', { dir: name });
    await d.fs.run({ type: 'remove-runtime', backend: d.backend, runtimeDir: join(L.instancesDir, name) });
  }
  for (const name of list(L.statesDir)) {
    const dir = join(L.statesDir, name);
    if (name.startsWith('.invalid-')) {
      // Invalidated states may still be a lower layer of overlay instances; reap them only when
      // no instance can depend on them.
      if (d.backend !== 'overlay' || d.store.allInstances().length === 0) {
        d.log.warn('removing invalidated state directory', { dir: name });
        await d.fs.run({ type: 'remove-tree', path: dir });
      }
    } else if (name.startsWith('.tmp-')) {
      d.log.warn('removing partial state build', { dir: name });
      await d.fs.run({ type: 'remove-tree', path: dir });
    } else if (!d.store.hasState(name) && !pendingStates.has(name)) {
      d.log.warn('removing state directory without a record', { dir: name });
      await d.fs.run({ type: 'remove-state', backend: d.backend, stateDir: dir });
    }
  }
  const bases = new Set(d.store.allBases().map((b) => b.dir));
  for (const name of list(L.basesDir)) {
    const dir = join(L.basesDir, name);
    if (!bases.has(dir)) {
      d.log.warn('removing unfinished base directory', { dir: name });
      await d.fs.run({ type: 'remove-tree', path: dir });
    }
  }
}

/** Unmounts mounts that no instance owns (an instance owns what is at or below its directory). */
async function mounts(d: RecoveryDeps): Promise<void> {
  const L = d.layout;
  const owned = d.store.allInstances().map((r) => canonical(r.runtime_dir ?? L.instanceDir(r.instance_id)));
  let found = 0;
  let unmounted = 0;
  for (const area of [L.instancesDir, L.statesDir, L.basesDir]) {
    const top = canonical(area);
    let list: string[];
    try {
      ({ mounts: list } = await d.fs.run({ type: 'list-mounts', under: area }));
    } catch (err) {
      d.log.error('cannot list mounts for cleanup', { dir: area, error: errorText(err) });
      continue;
    }
    for (const mp of list) {
      if (mp === top) continue; // the area itself is a mount point: not ours to judge
      found++;
      if (owned.some((dir) => isAtOrBelow(mp, dir))) continue;
      d.log.warn('unmounting a mount that no instance owns', { mount: mp });
      try {
        await d.fs.run({ type: 'unmount', path: mp });
        unmounted++;
      } catch (err) {
        d.log.error('cannot unmount', { mount: mp, error: errorText(err) });
      }
    }
  }
  d.log.info('start-up hygiene: mounts checked', { mounts: found, unmounted });
}
