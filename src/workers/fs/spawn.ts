/**
 * Running the system programs the snapshot backends need (`mount`, `umount`, `btrfs`, `cp`,
 * `sync`): found on PATH or the usual sbin dirs, output kept as a capped tail, killed on abort.
 */
import { spawn } from 'node:child_process';
import { addAbortListener } from 'node:events';
import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { abortError, throwIfAborted } from '../../abort.js';
import { SnapshotError } from '../../errors.js';
import { appendTail } from '../protocol.js';
import type { OpOptions } from './backend.js';

const binCache = new Map<string, string | undefined>();

/** Absolute path of an executable on PATH (plus the usual sbin dirs), or undefined. */
export async function findBinary(name: string): Promise<string | undefined> {
  if (binCache.has(name)) return binCache.get(name);
  const dirs = [...(process.env['PATH'] ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  let found: string | undefined;
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    try {
      await fsp.access(candidate, fsc.X_OK);
      const st = await fsp.stat(candidate);
      if (st.isFile()) {
        found = candidate;
        break;
      }
    } catch {
      // not here
    }
  }
  binCache.set(name, found);
  return found;
}

/** Options of {@link runProgram}. */
export interface RunOptions extends OpOptions {
  cwd?: string | undefined;
}

/**
 * Spawns a program, resolving with (the capped tail of) its stdout.
 * @throws SnapshotError when the program is missing, cannot start, or exits non-zero (its stderr,
 *   else stdout, in the message and `details`)
 * @throws CancelledError when `signal` aborts (the process is killed)
 */
export async function runProgram(name: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  throwIfAborted(opts.signal, name);
  const file = await findBinary(name);
  if (file === undefined) throw new SnapshotError(`required program not found: ${name}`);
  const cmdline = [name, ...args].join(' ');
  let disposer: Disposable | undefined;
  try {
    return await new Promise<string>((resolve, reject) => {
      const child = spawn(file, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out = appendTail(out, d);
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        err = appendTail(err, d);
      });
      if (opts.signal !== undefined) {
        const signal = opts.signal;
        disposer = addAbortListener(signal, () => {
          child.kill('SIGKILL');
          reject(abortError(signal, cmdline));
        });
      }
      child.once('error', (e) => reject(new SnapshotError(`cannot run ${name}: ${e.message}`, { cause: e })));
      child.once('close', (code, sig) => {
        if (code === 0) {
          resolve(out);
          return;
        }
        const text = err.trim() || out.trim();
        reject(new SnapshotError(`${cmdline} failed (${code ?? sig})${text ? `: ${text}` : ''}`, { details: text || undefined }));
      });
    });
  } finally {
    disposer?.[Symbol.dispose]();
  }
}
