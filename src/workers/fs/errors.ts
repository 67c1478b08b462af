/**
 * The one errno → {@link SnapshotError} mapping of the filesystem thread: every fs task runs in
 * {@link guard}, so whatever a task throws reaches the main side as an engine error naming the
 * operation, with the errno (if any) as `details`.
 */
import { CancelledError, EngineError, SnapshotError } from '../../errors.js';

/** The `code` of a Node system error (`ENOENT`, …), or undefined. */
export function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Engine errors pass through; an `AbortError` becomes `cancelled`; anything else a {@link SnapshotError} naming `op`. */
export function toSnapshotError(op: string, e: unknown): EngineError {
  if (e instanceof EngineError) return e;
  if (e instanceof Error && e.name === 'AbortError') return new CancelledError(`${op} cancelled`, { cause: e });
  const msg = e instanceof Error ? e.message : String(e);
  return new SnapshotError(`${op} failed: ${msg}`, { details: errnoOf(e), cause: e });
}

/** Runs `fn`, turning anything it throws into an engine error naming `op` ({@link toSnapshotError}). */
export async function guard<T>(op: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toSnapshotError(op, e);
  }
}
