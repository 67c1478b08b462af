/**
 * The one interface every snapshot backend implements (`copy.ts`, `overlay.ts`, `btrfs.ts`).
 * A backend does only what differs between backends; `states.ts` wraps it with what is common
 * (claiming the runtime dir, temp dir + marker + rename for states, cleanup on failure) and picks
 * it with `backendFor(kind)`. Types only: the backends import this file, never the reverse.
 */
import type { FsTaskOutput, SnapshotBackendKind } from '../protocol.js';

/** Options every thread-side filesystem operation takes. */
export interface OpOptions {
  /** Stops the operation between copied entries and kills spawned processes. */
  signal?: AbortSignal | undefined;
}

/** What {@link SnapshotBackend.clone} gets: an empty, claimed runtime dir and a checked source. */
export interface CloneContext {
  /** State-store root (overlay layer chains are recorded relative to it). */
  root: string;
  /** The runtime dir, existing and empty. */
  runtimeDir: string;
  /** The source's `data` dir (of a base or a state). */
  sourceData: string;
  /** The source state's own lower stack (relative to `root`, top first); empty for a base. */
  sourceLowers: readonly string[];
  /** Owner of the runtime's writable layer (the image's postgres user). */
  uid: number;
  gid: number;
}

/** What {@link SnapshotBackend.snapshot} gets. */
export interface SnapshotContext {
  runtimeDir: string;
  /** The state's `data` dir to create (inside the state's temp dir; does not exist yet). */
  data: string;
  /** Longest overlay lower stack a state may have before it is flattened. */
  maxDepth: number;
}

/** One snapshot backend: how bases, runtimes and states of its kind are made and removed. */
export interface SnapshotBackend {
  readonly kind: SnapshotBackendKind;
  /** True when the backend's states can sit on lower layers (a state with lowers needs such a backend). */
  readonly layered: boolean;
  /** Makes `data` (a base's data dir) of this backend's kind, keeping an existing one of the right kind. */
  prepareBase(data: string, opts: OpOptions): Promise<void>;
  /** Fills the runtime dir with a writable view of the source; returns the mount dir. */
  clone(ctx: CloneContext, opts: OpOptions): Promise<string>;
  /** Writes the state's `data` from a runtime; returns the lower stack to record in `state.json`. */
  snapshot(ctx: SnapshotContext, opts: OpOptions): Promise<string[]>;
  /** Unmounts and deletes a runtime dir. */
  removeRuntime(runtimeDir: string, opts: OpOptions): Promise<FsTaskOutput['remove-runtime']>;
  /** Deletes a state dir. */
  removeState(stateDir: string, opts: OpOptions): Promise<FsTaskOutput['remove-state']>;
  /**
   * Makes an existing runtime's mount dir usable again (e.g. after a reboot). Absent when a
   * runtime needs nothing: its mount dir is `<runtime>/data`.
   */
  remount?(runtimeDir: string, root: string, opts: OpOptions): Promise<FsTaskOutput['remount-runtime']>;
}
