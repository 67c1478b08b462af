/**
 * The contract the prepare wing calls to keep the state cache within its capacity
 * (`behaviour.md` §11.2), and the capacity errors it raises. The cache wing implements it
 * (`eviction.ts`); this file is the only part of the cache wing other wings import.
 */
import { EngineError, errorText, type ApiErrorCode } from '../../errors.js';

/** When a capacity check runs. */
export type CacheTrigger = 'startup_recovery' | BuildPhase;
/** The build phases that check capacity, in order. */
export type BuildPhase = 'prepare_step' | 'snapshot' | 'metadata_commit';

/** Cache capacity enforcement, called at the documented points of a build. */
export interface CapacityGuard {
  /**
   * Evicts what it may and throws the job error (`cache_limit_too_small`, `cache_full_unreclaimable`,
   * `cache_enforcement_unavailable`) when the cache cannot make room.
   * @param protect a state id that must not be evicted (the one just committed).
   */
  ensure(trigger: BuildPhase, protect?: string): Promise<void>;
}

/** A capacity error with its JSON details (`behaviour.md` §11.2). */
export function capacityError(code: Extract<ApiErrorCode, `cache_${string}`>, message: string, details: Record<string, unknown>): EngineError {
  return new EngineError(code, message, { details: JSON.stringify(details) });
}

const ENOSPC = /ENOSPC|no space left on device|not enough space on the disk/i;

/**
 * Maps an out-of-space failure in a build phase to `cache_limit_too_small` with the phase;
 * returns undefined for any other error.
 */
export function outOfSpaceError(e: unknown, phase: BuildPhase): EngineError | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  const text = errorText(e);
  if (code !== 'ENOSPC' && !ENOSPC.test(text)) return undefined;
  return capacityError('cache_limit_too_small', 'effective cache limit is too small', { phase, reasons: ['physical_free_below_reserve'], error: text });
}

