/** The `engine.json` discovery file the sqlrs CLI reads (`api.md` §1.4). */
import { mkdirSync, renameSync, unlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface EngineJson {
  endpoint: string;
  pid: number;
  startedAt: string;
  authToken: string;
  version: string;
  instanceId: string;
}

/** Writes `<path>.tmp` (mode 0600, 2-space indent) and renames it over `path`. */
export function writeEngineJson(path: string, info: EngineJson): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(info, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, path);
}

/** Removes the file if it still describes this process. */
export function removeEngineJson(path: string, instanceId: string): void {
  try {
    const cur = JSON.parse(readFileSync(path, 'utf8')) as Partial<EngineJson>;
    if (cur.instanceId === instanceId) unlinkSync(path);
  } catch { /* missing or unreadable: nothing to remove */ }
}
