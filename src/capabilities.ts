/** Installs every capability (prepare jobs, runs, deletion, cache) into an engine. */
import type { Engine } from './engine.js';
import { PrepareCapability } from './prepare-capability.js';
import { DeletionCapability } from './deletion-capability.js';
import { CacheCapability } from './cache-capability.js';
import { RunCapability } from './run-capability.js';

export function installCapabilities(engine: Engine): void {
  const prepare = new PrepareCapability();
  engine.use(prepare);
  const deletion = new DeletionCapability(prepare);
  engine.use(deletion);
  engine.use(new CacheCapability(prepare, deletion));
  engine.use(new RunCapability(prepare));
}
