/**
 * Crash-safe file replacement: readers see either the old content or the new one, never a torn
 * file, and once the promise resolves the new content survives a power loss.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';

/** Options of {@link writeFileAtomic}. */
export interface AtomicWriteOptions {
  /**
   * Permission bits of the file.
   * @default 0o600
   */
  mode?: number;
}

/**
 * Replaces `file` with `data` atomically: writes a temp file `<name>-<random><ext>` in the same
 * directory (created with mode 0700 when missing), fsyncs and closes it, renames it over `file`,
 * then fsyncs the directory so the rename itself is durable. A failed directory fsync is ignored
 * (some filesystems refuse it); any other failure removes the temp file and rejects.
 *
 * @throws the underlying filesystem error.
 */
export async function writeFileAtomic(file: string, data: string, opts: AtomicWriteOptions = {}): Promise<void> {
  const mode = opts.mode ?? 0o600;
  const dir = dirname(file);
  const ext = extname(file);
  const tmp = join(dir, `${basename(file, ext)}-${randomBytes(8).toString('hex')}${ext}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const fh = await open(tmp, 'wx', mode);
  try {
    try {
      // The umask may have narrowed the mode given to open(); the file must end up exactly `mode`.
      await fh.chmod(mode);
      await fh.writeFile(data, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  /* c8 ignore start -- the failure branch needs a platform or filesystem that refuses a directory fsync */
  try {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // Directory fsync is unsupported on some platforms and filesystems; the rename already happened.
  }
  /* c8 ignore stop */
}
