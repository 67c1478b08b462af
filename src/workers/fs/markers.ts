/**
 * The small JSON files that give directories their meaning: a state's `state.json`
 * ({@link StateMarker}, written last, so a state without it is incomplete) and an overlay
 * runtime's `lowers.json` (the lower stack it was mounted with). Plus {@link verifyState}, which
 * decides from them whether a state can be cloned.
 */
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { throwIfAborted } from '../../abort.js';
import { SnapshotError } from '../../errors.js';
import type { FsArgs, FsTaskOutput, SnapshotBackendKind, StateMarker } from '../protocol.js';
import type { OpOptions } from './backend.js';
import { errnoOf, guard } from './errors.js';
import { isDirectory, lstatOrUndefined, writeFileDurably } from './files.js';

/** Name of the marker file of a complete state. */
export const STATE_MARKER = 'state.json';
/** Name of the file recording an overlay runtime's lower stack. */
export const RUNTIME_LOWERS = 'lowers.json';

const BACKENDS: readonly SnapshotBackendKind[] = ['copy', 'overlay', 'btrfs'];

/** A state's marker, or why there is no valid one. */
export type MarkerLoad = { ok: true; marker: StateMarker } | { ok: false; reason: string };

function parseMarker(text: string): StateMarker | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null) return 'not an object';
  const o = v as Record<string, unknown>;
  if (o['v'] !== 1) return 'unknown version';
  if (typeof o['backend'] !== 'string' || !BACKENDS.includes(o['backend'] as SnapshotBackendKind)) return 'bad backend';
  const lowers = o['lowers'];
  if (!Array.isArray(lowers) || !lowers.every((l) => typeof l === 'string' && l !== '' && !path.isAbsolute(l))) {
    return 'bad lowers';
  }
  const size = o['sizeBytes'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return 'bad sizeBytes';
  if (typeof o['createdAt'] !== 'string') return 'bad createdAt';
  return {
    v: 1,
    backend: o['backend'] as SnapshotBackendKind,
    lowers: lowers as string[],
    sizeBytes: size,
    createdAt: o['createdAt'],
  };
}

/** Reads and validates `<stateDir>/state.json`. */
export async function loadMarker(stateDir: string): Promise<MarkerLoad> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(stateDir, STATE_MARKER), 'utf8');
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') return { ok: false, reason: `missing ${STATE_MARKER}` };
    throw e;
  }
  const m = parseMarker(text);
  return typeof m === 'string' ? { ok: false, reason: `invalid ${STATE_MARKER} (${m})` } : { ok: true, marker: m };
}

/** The marker of a complete state, or undefined when the state is missing or incomplete. */
export async function readStateMarker(stateDir: string): Promise<StateMarker | undefined> {
  return guard('read state marker', async () => {
    const m = await loadMarker(stateDir);
    return m.ok ? m.marker : undefined;
  });
}

/**
 * The marker of a complete state.
 * @throws SnapshotError naming why the state is not complete
 */
export async function requireMarker(stateDir: string): Promise<StateMarker> {
  const m = await loadMarker(stateDir);
  if (!m.ok) throw new SnapshotError(`state is not complete (${m.reason}): ${stateDir}`);
  return m.marker;
}

/** Writes `<dir>/state.json` durably (the file must not exist yet). */
export async function writeStateMarker(dir: string, marker: StateMarker): Promise<void> {
  await writeFileDurably(path.join(dir, STATE_MARKER), `${JSON.stringify(marker)}\n`);
}

/** True when `runtimeDir` records an overlay lower stack (it is an overlay runtime). */
export async function hasRuntimeLowers(runtimeDir: string): Promise<boolean> {
  return (await lstatOrUndefined(path.join(runtimeDir, RUNTIME_LOWERS))) !== undefined;
}

/** Writes `<runtimeDir>/lowers.json` durably. */
export async function writeRuntimeLowers(runtimeDir: string, lowers: readonly string[]): Promise<void> {
  await writeFileDurably(path.join(runtimeDir, RUNTIME_LOWERS), `${JSON.stringify({ v: 1, lowers })}\n`);
}

/**
 * The lower stack an overlay runtime was mounted with (relative to the store root, top first).
 * @throws SnapshotError when `lowers.json` is missing or invalid
 */
export async function readRuntimeLowers(runtimeDir: string): Promise<string[]> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(runtimeDir, RUNTIME_LOWERS), 'utf8');
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') throw new SnapshotError(`not an overlay runtime (no ${RUNTIME_LOWERS}): ${runtimeDir}`);
    throw e;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    v = undefined;
  }
  const lowers = (v as { lowers?: unknown } | undefined)?.lowers;
  if (!Array.isArray(lowers) || lowers.length === 0 || !lowers.every((l) => typeof l === 'string' && l !== '')) {
    throw new SnapshotError(`invalid ${RUNTIME_LOWERS} in ${runtimeDir}`);
  }
  return lowers as string[];
}

/** Looks `rel` up through overlay layers (top first), honouring whiteouts (opaque directories are not considered). */
async function existsInLayers(layers: readonly string[], rel: string): Promise<boolean> {
  const parts = rel.split('/');
  for (const layer of layers) {
    let cur = layer;
    for (let i = 0; i < parts.length; i++) {
      cur = path.join(cur, parts[i] as string);
      const st = await lstatOrUndefined(cur);
      if (st === undefined) break; // not in this layer: look further down
      if (i === parts.length - 1) return st.isFile();
      if (!st.isDirectory()) return false; // a whiteout or a file hides everything below
    }
  }
  return false;
}

/** Checks that a state can be cloned: complete marker, data present, all lowers present, clean cluster. */
export async function verifyState(args: FsArgs<'verify-state'>, opts: OpOptions = {}): Promise<FsTaskOutput['verify-state']> {
  return guard(`verify state ${args.stateDir}`, async () => {
    throwIfAborted(opts.signal, 'verify state');
    const m = await loadMarker(args.stateDir);
    if (!m.ok) return { ok: false, reason: m.reason };
    const data = path.join(args.stateDir, 'data');
    if (!(await isDirectory(data))) return { ok: false, reason: 'missing data directory' };
    for (const lower of m.marker.lowers) {
      if (!(await isDirectory(path.resolve(args.root, lower)))) return { ok: false, reason: `lower layer missing: ${lower}` };
    }
    for (const rel of ['pgdata/postmaster.pid', 'postmaster.pid']) {
      if ((await lstatOrUndefined(path.join(data, rel)))?.isFile()) return { ok: false, reason: 'dirty snapshot (postmaster.pid present)' };
    }
    const layers = [data, ...m.marker.lowers.map((l) => path.resolve(args.root, l))];
    let hasVersion = false;
    for (const rel of ['pgdata/PG_VERSION', 'PG_VERSION']) {
      if (await existsInLayers(layers, rel)) {
        hasVersion = true;
        break;
      }
    }
    if (!hasVersion) return { ok: false, reason: 'missing PG_VERSION' };
    return { ok: true };
  });
}
