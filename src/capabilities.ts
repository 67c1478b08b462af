/** Installs every capability (prepare jobs, runs, deletion, cache) into an engine. */
import type { Engine } from './engine.js';

export function installCapabilities(_engine: Engine): void {
  // Capabilities are added here as they land.
}
