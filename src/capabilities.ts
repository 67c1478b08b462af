/** Installs every capability (prepare jobs, runs, deletion, cache) into an engine. */
import type { Engine } from './engine.js';
import { PrepareCapability } from './prepare-capability.js';

export function installCapabilities(engine: Engine): void {
  engine.use(new PrepareCapability());
}
