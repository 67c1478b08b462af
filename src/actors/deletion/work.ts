/**
 * The deletion actor's work: removing one instance (container, then data directory) or one state
 * directory. Removals are idempotent, so a redelivered op after a crash finds less to remove.
 * Rows are removed by the effects, in the actor's commit.
 */
import { resolve } from 'node:path';
import type { Logger } from '../../log.js';
import { InternalError, errorText } from '../../errors.js';
import type { FsPool } from '../../workers/pool.js';
import type { ContainerRuntime, SnapshotBackendKind } from '../../workers/protocol.js';
import { isAtOrBelow, type StoreLayout } from '../layout.js';
import type { DeleteWork } from './transition.js';

export interface DeletionWorkDeps {
  fs: FsPool;
  containers: ContainerRuntime;
  layout: StoreLayout;
  backend: SnapshotBackendKind;
  log: Logger;
}

export class DeletionWorker {
  constructor(private readonly d: DeletionWorkDeps) {}

  /** Refuses to remove anything outside the store's instance and state directories. */
  private checkDir(dir: string, area: string): string {
    const abs = resolve(dir);
    if (!isAtOrBelow(abs, area) || abs === area) throw new InternalError('refusing to remove a directory outside the state store', { details: abs });
    return abs;
  }

  async perform(spec: DeleteWork, signal: AbortSignal): Promise<unknown> {
    const op = spec.op;
    if (op.kind === 'job') return { removed: op.id }; // rows only: removed in the commit
    if (op.kind === 'instance') {
      const dir = this.checkDir(op.dir, this.d.layout.instancesDir);
      if (op.containerId) {
        try {
          await this.d.containers.remove(op.containerId);
        } catch (e) {
          // Tolerated like the reference: start-up recovery reaps a container whose row is gone.
          this.d.log.warn('cannot remove instance container', { instance: op.id, container: op.containerId, error: errorText(e) });
        }
      }
      await this.d.fs.run({ type: 'remove-runtime', backend: this.d.backend, runtimeDir: dir }, signal);
      return { removed: op.id };
    }
    const dir = this.checkDir(op.dir, this.d.layout.statesDir);
    await this.d.fs.run({ type: 'remove-state', backend: this.d.backend, stateDir: dir }, signal);
    return { removed: op.id };
  }
}
