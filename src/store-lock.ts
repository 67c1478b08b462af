/**
 * One engine per state store: an exclusive lock file `<root>/engine.lock` holding the owner's pid
 * and process start time. Creation is atomic (hard link of a fully written file); a lock whose
 * owner is gone (or whose pid now belongs to a different process) is stale and taken over, so a
 * crash never blocks the next start.
 */
import { closeSync, linkSync, openSync, readFileSync, unlinkSync, writeSync, fsyncSync } from 'node:fs';
import { join } from 'node:path';
import { StoreLockedError } from './errors.js';

function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime) comes after the parenthesised command name, which may contain spaces.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19];
  } catch {
    return undefined;
  }
}

export interface StoreLock { path: string; release(): void }

/**
 * Takes the store lock.
 * @throws StoreLockedError when a live engine holds it.
 */
export function lockStore(root: string): StoreLock {
  const path = join(root, 'engine.lock');
  const me = `${process.pid} ${processStartTime(process.pid) ?? '0'}\n`;
  // The lock appears with its content in one step (written to a private file, then hard-linked
  // into place; `link` fails if the lock exists), so another starter never reads it half-written
  // and mistakes it for a stale lock.
  const mine = `${path}.${process.pid}`;
  const fd = openSync(mine, 'w', 0o600);
  try { writeSync(fd, me); fsyncSync(fd); } finally { closeSync(fd); }
  try {
    return take(path, mine, me, root);
  } finally {
    try { unlinkSync(mine); } catch { /* already gone */ }
  }
}

function take(path: string, mine: string, me: string, root: string): StoreLock {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      linkSync(mine, path);
      let released = false;
      return {
        path,
        release: () => {
          if (released) return;
          released = true;
          try { if (readFileSync(path, 'utf8') === me) unlinkSync(path); } catch { /* already gone */ }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let content = '';
    try { content = readFileSync(path, 'utf8'); } catch { continue; }
    const [pidText, start] = content.trim().split(' ');
    const pid = Number(pidText);
    const alive = Number.isInteger(pid) && pid > 0 && processStartTime(pid) !== undefined && processStartTime(pid) === start;
    if (alive) throw new StoreLockedError(root, `pid ${pid}`);
    try { unlinkSync(path); } catch { /* raced with another starter */ }
  }
  throw new StoreLockedError(root, 'lock contention');
}
