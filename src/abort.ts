/**
 * AbortSignal helpers used everywhere work can be cancelled: one way to check a signal and one
 * way to race a promise against it. Aborts always surface as `CancelledError` (code `cancelled`),
 * the engine's one cancellation code.
 */
import { CancelledError } from './errors.js';
import type { Clock } from './clock.js';

/** The error an aborted signal stands for: its reason when that is an engine error, else `cancelled`. */
export function abortError(signal: AbortSignal | undefined, what = 'operation'): Error {
  const r: unknown = signal?.reason;
  if (r instanceof Error && typeof (r as { code?: unknown }).code === 'string') return r;
  return new CancelledError(`${what} cancelled`, r === undefined ? {} : { cause: r });
}

/** Throws {@link abortError} when `signal` has aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, what = 'operation'): void {
  if (signal?.aborted) throw abortError(signal, what);
}

/** Settles like `p`, or rejects with {@link abortError} when `signal` aborts first. */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined, what = 'operation'): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(abortError(signal, what));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal, what));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Settles like `p`, or rejects with `onTimeout()` after `ms` (the timer is always cleared).
 * For a wait that must not hang forever, e.g. a daemon call without a signal of its own.
 */
export function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves after `ms`, or rejects with {@link abortError} when `signal` aborts first. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return raceAbort(new Promise<void>((resolve) => { setTimeout(resolve, ms).unref(); }), signal, 'wait');
}

/**
 * A signal that aborts with `onTimeout()` after `ms` on the given clock (actors keep all time on
 * their injected clock). Call `clear()` when the guarded work is done.
 */
export function timeoutSignal(clock: Clock, ms: number, onTimeout: () => Error): { signal: AbortSignal; clear(): void } {
  const ctrl = new AbortController();
  const handle = clock.setTimeout(() => ctrl.abort(onTimeout()), ms);
  return { signal: ctrl.signal, clear: () => clock.clearTimeout(handle) };
}
