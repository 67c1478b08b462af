/**
 * Where things live under the state store, and the labels that mark this store's containers.
 * Every wing and start-up recovery ask this one object instead of joining paths themselves.
 */
import { createHash } from 'node:crypto';
import { join, sep } from 'node:path';
import { LABEL_ENGINE, LABEL_STORE } from '../workers/protocol.js';

/** True when `p` is `dir` or below it. */
export function isAtOrBelow(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/** A short, stable label value identifying a state store. */
export function storeLabel(root: string): string {
  return createHash('sha256').update(root).digest('hex').slice(0, 16);
}

export class StoreLayout {
  /** Value of the `dev.sqlrs.store` label on every container of this store. */
  readonly label: string;

  constructor(readonly root: string) {
    this.label = storeLabel(root);
  }

  get instancesDir(): string { return join(this.root, 'instances'); }
  get statesDir(): string { return join(this.root, 'states'); }
  get basesDir(): string { return join(this.root, 'bases'); }
  stateDir(stateId: string): string { return join(this.statesDir, stateId); }
  instanceDir(instanceId: string): string { return join(this.instancesDir, instanceId); }
  /** The base directory of a resolved image. */
  baseDir(image: string): string { return join(this.basesDir, createHash('sha256').update(image).digest('hex').slice(0, 32)); }

  /** Labels of every engine container of this store, plus `extra`. */
  labels(extra: Record<string, string>): Record<string, string> {
    return { [LABEL_ENGINE]: 'sqlrs-engine', [LABEL_STORE]: this.label, ...extra };
  }
}
