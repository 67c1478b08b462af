/**
 * Plain-data protocol between the main thread and the filesystem worker pool (piscina).
 * Every request is a discriminated union on `type`; every response is plain data. Nothing here
 * may hold class instances or closures: values cross a structured-clone boundary.
 */
import type { SerializedError } from '../errors.js';

/** Snapshot backend kinds (config `snapshot.backend` minus `auto`). */
export type SnapshotBackendKind = 'copy' | 'overlay' | 'btrfs';

/** Result of probing what the state-store filesystem supports. */
export interface ProbeResult {
  btrfs: boolean;
  overlay: boolean;
  /** Human-readable reasons for unsupported backends. */
  notes: string[];
}

/** The marker file written inside every complete state directory. */
export interface StateMarker {
  v: 1;
  backend: SnapshotBackendKind;
  /** Overlay only: lower layer directories below this state's own layer, top first, relative to the store root. */
  lowers: string[];
  sizeBytes: number;
  createdAt: string;
}

/**
 * Filesystem tasks run in the piscina pool. Paths are absolute. `root` is the state-store root
 * (overlay layer chains are recorded relative to it).
 *
 * On-disk contract (see README "On-disk layout"):
 * - A *base* dir `<base>/` holds `data/` (an initdb'd mount dir: `data/pgdata/PG_VERSION` …).
 *   For btrfs, `data` is a subvolume. Bases are writable only while being initialised.
 * - A *state* dir `<states>/<state_id>/` holds `state.json` ({@link StateMarker}) and `data/`:
 *   copy: a full copy of the runtime's mount dir; btrfs: a read-only subvolume snapshot;
 *   overlay: the runtime's upper layer (only what changed since the runtime's lower stack), whose
 *   lowers are listed in `state.json`. A state dir without `state.json` is incomplete.
 *   States are built in `<states>/.tmp-<state_id>-<rand>/` and renamed into place, so a crash
 *   never leaves a half-written `<states>/<state_id>`.
 * - A *runtime* dir `<runtime>/` is a writable clone: copy/btrfs: `<runtime>/data` is the mount dir;
 *   overlay: `<runtime>/upper`, `<runtime>/work`, `<runtime>/merged` (mount dir = merged), plus
 *   `<runtime>/lowers.json` recording the lower stack used, so a later snapshot knows it.
 */
export type FsTask =
  | { type: 'probe'; root: string }
  | { type: 'prepare-base'; backend: SnapshotBackendKind; baseDir: string; uid: number; gid: number }
  | { type: 'clone'; backend: SnapshotBackendKind; root: string; source: CloneSource; runtimeDir: string; uid: number; gid: number }
  | { type: 'snapshot'; backend: SnapshotBackendKind; root: string; runtimeDir: string; stateDir: string; maxDepth: number }
  | { type: 'remove-runtime'; backend: SnapshotBackendKind; runtimeDir: string }
  | { type: 'remove-state'; backend: SnapshotBackendKind; stateDir: string }
  | { type: 'verify-state'; root: string; stateDir: string }
  | { type: 'copy-tree'; src: string; dest: string }
  | { type: 'measure'; path: string }
  | { type: 'remove-tree'; path: string }
  | { type: 'list-mounts'; under: string }
  | { type: 'remount-runtime'; root: string; runtimeDir: string }
  | { type: 'unmount'; path: string };

/** What a runtime is cloned from. */
export type CloneSource = { kind: 'base'; baseDir: string } | { kind: 'state'; stateDir: string };

/** Output per task type. */
export interface FsTaskOutput {
  probe: ProbeResult;
  'prepare-base': { dataDir: string };
  clone: { mountDir: string };
  snapshot: { sizeBytes: number };
  'remove-runtime': { removed: boolean };
  'remove-state': { removed: boolean };
  'verify-state': { ok: boolean; reason?: string };
  'copy-tree': { bytes: number; files: number };
  measure: { bytes: number; files: number };
  'remove-tree': { removed: boolean };
  'list-mounts': { mounts: string[] };
  /** `remounted`: an overlay runtime's `merged` was not mounted and has been mounted again. */
  'remount-runtime': { mountDir: string; remounted: boolean };
  /** How many mounts were found at or below `path` (all are unmounted). */
  unmount: { unmounted: number };
}

/** Envelope returned by the worker: errors travel as data, never as thrown class instances. */
export type FsResponse<T extends FsTask['type'] = FsTask['type']> =
  | { type: 'ok'; output: FsTaskOutput[T] }
  | { type: 'error'; error: SerializedError };
