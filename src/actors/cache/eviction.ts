/**
 * Cache capacity (`behaviour.md` §11, with the reserve default of `decisions.md`): usage, watermarks,
 * pressure, eviction of unreferenced leaf states, `GET /v1/cache/status` and the in-memory summary
 * of the last eviction.
 *
 * - usage = the sum of the states' sizes: the recorded `size_bytes`, else a measurement of the
 *   state directory in the filesystem pool (remembered per state: states are immutable);
 * - total/free = `statfs` of the filesystem holding the store (free = available to the user);
 * - reserve = `cache.capacity.reserveBytes`, else `min(10 GiB, 10 % of total)` (10 GiB if unknown);
 * - effective max = `max(0, total − reserve)`, capped by `maxBytes` when that is > 0;
 * - pressure: usage > ⌊effective max × high⌋ (`usage_above_high_watermark`) or free < reserve
 *   (`physical_free_below_reserve`).
 *
 * Eviction removes candidates — states with no instances and no child states, past
 * `min_retention_until`, at least `minStateAge` old, not protected — oldest use first, then largest,
 * then by id, until usage ≤ ⌊effective max × low⌋ and free ≥ reserve. Protected are the state a
 * caller names and every state that running work reads or writes (inputs and outputs of builds,
 * sources of instances, states being deleted). An eviction goes through the deletion actor, like
 * `DELETE /v1/states/{id}`: files first, then the row, resumed after a crash.
 */
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../../log.js';
import type { Store, StateRow } from '../../mailbox/store.js';
import type { FsPool } from '../../workers/pool.js';
import type { EffectiveCacheConfig } from '../../config/index.js';
import { formatGoDuration } from '../../config/index.js';
import { errorText, type EngineError } from '../../errors.js';
import { rfc3339Nano } from '../../clock.js';
import { capacityError, type CapacityGuard, type CacheTrigger } from './capacity.js';

/** 10 GiB. */
export const RESERVE_CAP_BYTES = 10 * 1024 * 1024 * 1024;

export type PressureReason = 'usage_above_high_watermark' | 'physical_free_below_reserve';

/** Capacity settings resolved against the filesystem. */
export interface CapacitySettings {
  maxBytes: number;
  reserveBytes: number;
  highWatermark: number;
  lowWatermark: number;
  minStateAgeMs: number;
  effectiveMax: number;
}

export interface FsStats { total: number; free: number }

/** `last_eviction` of `GET /v1/cache/status`. */
export interface LastEviction {
  completed_at: string;
  trigger: CacheTrigger;
  evicted_count: number;
  freed_bytes: number;
  blocked_count: number;
  reclaimable_bytes: number;
  usage_bytes_before: number;
  usage_bytes_after: number;
  free_bytes_before: number;
  free_bytes_after: number;
}

/** `GET /v1/cache/status` body (`api.md` §3.15). */
export interface CacheStatus {
  usage_bytes: number;
  configured_max_bytes?: number;
  effective_max_bytes: number;
  reserve_bytes: number;
  high_watermark: number;
  low_watermark: number;
  min_state_age: string;
  store_total_bytes: number;
  store_free_bytes: number;
  state_count: number;
  reclaimable_bytes: number;
  blocked_count: number;
  pressure_reasons: PressureReason[];
  last_eviction?: LastEviction;
}

export interface Candidate { row: StateRow; size: number; lastUsedMs: number }

export interface CandidateList { candidates: Candidate[]; blocked: number; reclaimable: number }

export interface CacheDeps {
  root: string;
  store: Pick<Store, 'allStates' | 'getState' | 'childStates' | 'refcount'>;
  fs: Pick<FsPool, 'run'>;
  log: Logger;
  /** Current cache settings (`config.effective().cache`). */
  config(): EffectiveCacheConfig;
  /** State ids that running work uses (never evicted). */
  inUse(): Set<string>;
  /** Directory of a state that has no row yet. */
  stateDir(stateId: string): string;
  /** Deletes a state: files, then row (the deletion path). */
  evict(row: StateRow): Promise<void>;
  /** Filesystem statistics (injectable for tests). @default statfs of the store */
  statfs?(root: string): Promise<FsStats>;
  /** The injected clock's time. */
  now(): number;
}

/** Default reserve: `min(10 GiB, 10 % of total)`; 10 GiB when the total is unknown. */
export function defaultReserve(total: number): number {
  if (!(total > 0)) return RESERVE_CAP_BYTES;
  return Math.min(RESERVE_CAP_BYTES, Math.floor(total * 0.1));
}

/**
 * Resolves settings against the filesystem size.
 * @throws Error naming the invalid setting
 */
export function resolveSettings(c: EffectiveCacheConfig, total: number): CapacitySettings {
  if (c.invalidReason !== null) throw new Error(c.invalidReason);
  if (!(c.maxBytes >= 0)) throw new Error('cache.capacity.maxBytes is invalid');
  if (c.reserveBytes !== null && !(c.reserveBytes >= 0)) throw new Error('cache.capacity.reserveBytes is invalid');
  if (!(c.highWatermark > 0 && c.highWatermark <= 1)) throw new Error('cache.capacity.highWatermark is invalid');
  if (!(c.lowWatermark > 0 && c.lowWatermark < c.highWatermark)) throw new Error('cache.capacity.lowWatermark is invalid');
  if (!(c.minStateAgeMs >= 0)) throw new Error('cache.capacity.minStateAge is invalid');
  const t = Math.max(0, total);
  const reserve = Math.max(0, c.reserveBytes ?? defaultReserve(t));
  let effectiveMax = Math.max(0, t - reserve);
  if (c.maxBytes > 0 && c.maxBytes < effectiveMax) effectiveMax = c.maxBytes;
  return {
    maxBytes: c.maxBytes, reserveBytes: reserve, highWatermark: c.highWatermark, lowWatermark: c.lowWatermark,
    minStateAgeMs: c.minStateAgeMs, effectiveMax,
  };
}

export function highBytes(s: CapacitySettings): number { return Math.floor(s.effectiveMax * s.highWatermark); }
export function lowBytes(s: CapacitySettings): number { return Math.floor(s.effectiveMax * s.lowWatermark); }

export function pressureReasons(usage: number, free: number, s: CapacitySettings): PressureReason[] {
  const out: PressureReason[] = [];
  if (usage > highBytes(s)) out.push('usage_above_high_watermark');
  if (free < s.reserveBytes) out.push('physical_free_below_reserve');
  return out;
}

/** Eviction order: least recently used first, then largest, then by id. */
export function compareCandidates(a: Candidate, b: Candidate): number {
  if (a.lastUsedMs !== b.lastUsedMs) return a.lastUsedMs - b.lastUsedMs;
  if (a.size !== b.size) return b.size - a.size;
  return a.row.state_id < b.row.state_id ? -1 : a.row.state_id > b.row.state_id ? 1 : 0;
}

/** `statfs` of the nearest existing ancestor of `root`. */
export async function statfsOf(root: string): Promise<FsStats> {
  let p = root;
  for (;;) {
    try {
      const s = await fsp.statfs(p);
      return { total: s.blocks * s.bsize, free: s.bavail * s.bsize };
    } catch (e) {
      const parent = dirname(p);
      if ((e as { code?: string }).code !== 'ENOENT' || parent === p) throw e;
      p = parent;
    }
  }
}

interface EvictionSummary { evicted: number; freed: number; blocked: number; reclaimable: number }

export class CacheManager implements CapacityGuard {
  /** Summary of the last eviction run in this process. */
  lastEviction: LastEviction | undefined;
  private readonly measured = new Map<string, number>();
  private lock: Promise<void> = Promise.resolve();
  private running = 0;

  constructor(private readonly d: CacheDeps) {}

  /** True while an enforcement pass is in progress. */
  get busy(): boolean { return this.running > 0; }

  fsStats(): Promise<FsStats> { return (this.d.statfs ?? statfsOf)(this.d.root); }

  /** Settings for the current config and filesystem. @throws Error when the config is invalid */
  settings(total: number): CapacitySettings { return resolveSettings(this.d.config(), total); }

  /** Forgets a remembered measurement (the state is gone). */
  forget(stateId: string): void { this.measured.delete(stateId); }

  /** Size of a state: the recorded size, else a (remembered) measurement of its directory. */
  async stateSize(row: Pick<StateRow, 'state_id' | 'size_bytes' | 'dir'>): Promise<number> {
    if (row.size_bytes !== null && row.size_bytes > 0) return row.size_bytes;
    return this.measure(row.state_id, row.dir);
  }

  private async measure(stateId: string, dir: string): Promise<number> {
    const known = this.measured.get(stateId);
    if (known !== undefined) return known;
    try {
      const { bytes } = await this.d.fs.run({ type: 'measure', path: dir });
      this.measured.set(stateId, bytes);
      return bytes;
    } catch (e) {
      // A row whose files are gone (a deletion in progress) occupies nothing.
      if (/ENOENT|no such file/i.test(errorText(e))) return 0;
      throw e;
    }
  }

  /**
   * Bytes used by the cache. `pending` names a state already written to disk whose row is not
   * committed yet (the metadata-commit check): it is counted too.
   */
  async usage(pending?: string): Promise<number> {
    let total = 0;
    let pendingCounted = pending === undefined;
    for (const row of this.d.store.allStates()) {
      total += await this.stateSize(row);
      if (row.state_id === pending) pendingCounted = true;
    }
    if (!pendingCounted && pending !== undefined) total += await this.measure(pending, this.d.stateDir(pending));
    return total;
  }

  /** Eviction candidates in order, with the number of blocked states and the reclaimable bytes. */
  async candidates(s: CapacitySettings, protect: ReadonlySet<string>): Promise<CandidateList> {
    const now = this.d.now();
    const out: Candidate[] = [];
    let blocked = 0;
    let reclaimable = 0;
    for (const row of this.d.store.allStates()) {
      const retention = row.min_retention_until ? Date.parse(row.min_retention_until) : Number.NaN;
      const created = Number.isFinite(row.created_ms) ? row.created_ms : now;
      if (
        protect.has(row.state_id)
        || this.d.store.refcount(row.state_id) > 0
        || this.d.store.childStates(row.state_id).length > 0
        || (Number.isFinite(retention) && retention > now)
        || (s.minStateAgeMs > 0 && now - created < s.minStateAgeMs)
      ) {
        blocked++;
        continue;
      }
      const size = Math.max(0, await this.stateSize(row));
      reclaimable += size;
      out.push({ row, size, lastUsedMs: row.last_used_ms ?? created });
    }
    out.sort(compareCandidates);
    return { candidates: out, blocked, reclaimable };
  }

  private protectedSet(protect?: string): Set<string> {
    const set = this.d.inUse();
    if (protect) set.add(protect);
    return set;
  }

  /** `GET /v1/cache/status`. @throws on invalid settings or unreadable filesystem/usage */
  async status(): Promise<CacheStatus> {
    await fsp.mkdir(this.d.root, { recursive: true, mode: 0o700 });
    const stats = await this.fsStats();
    const s = this.settings(stats.total);
    const usage = await this.usage();
    const { blocked, reclaimable } = await this.candidates(s, this.protectedSet());
    const out: CacheStatus = {
      usage_bytes: usage,
      ...(s.maxBytes > 0 ? { configured_max_bytes: s.maxBytes } : {}),
      effective_max_bytes: s.effectiveMax,
      reserve_bytes: s.reserveBytes,
      high_watermark: s.highWatermark,
      low_watermark: s.lowWatermark,
      min_state_age: formatGoDuration(s.minStateAgeMs),
      store_total_bytes: stats.total,
      store_free_bytes: stats.free,
      state_count: this.d.store.allStates().length,
      reclaimable_bytes: reclaimable,
      blocked_count: blocked,
      pressure_reasons: pressureReasons(usage, stats.free, s),
    };
    if (this.lastEviction) out.last_eviction = { ...this.lastEviction };
    return out;
  }

  /** Runs `fn` under the in-process eviction lock. */
  private async locked<R>(fn: () => Promise<R>): Promise<R> {
    const prev = this.lock;
    let release!: () => void;
    this.lock = new Promise<void>((r) => { release = r; });
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /**
   * Enforces capacity at a trigger point (`behaviour.md` §11.2).
   * @throws EngineError `cache_enforcement_unavailable` | `cache_limit_too_small` | `cache_full_unreclaimable`
   */
  async ensure(trigger: CacheTrigger, protect?: string): Promise<void> {
    this.running++;
    try {
      await this.enforce(trigger, protect);
    } finally {
      this.running--;
    }
  }

  private async enforce(phase: CacheTrigger, protect?: string): Promise<void> {
    const unavailable = (message: string, e: unknown): EngineError =>
      capacityError('cache_enforcement_unavailable', message, { phase, error: errorText(e) });
    let stats: FsStats;
    try { stats = await this.fsStats(); } catch (e) { throw unavailable('cannot measure state store filesystem', e); }
    let s: CapacitySettings;
    try { s = this.settings(stats.total); } catch (e) { throw unavailable('cannot load cache capacity settings', e); }
    if (s.effectiveMax <= 0) {
      throw capacityError('cache_limit_too_small', 'effective cache limit is too small', {
        phase, effective_max_bytes: s.effectiveMax, store_total_bytes: stats.total, reserve_bytes: s.reserveBytes,
      });
    }
    const pending = phase === 'metadata_commit' ? protect : undefined;
    let usage: number;
    try { usage = await this.usage(pending); } catch (e) { throw unavailable('cannot measure cache usage', e); }
    if (pressureReasons(usage, stats.free, s).length === 0) return;

    let summary: EvictionSummary = { evicted: 0, freed: 0, blocked: 0, reclaimable: 0 };
    let usageAfter = usage;
    let freeAfter = stats.free;
    await this.locked(async () => {
      // Another pass may have made room while this one waited for the lock.
      let usageNow: number;
      let freeNow: number;
      try {
        usageNow = await this.usage(pending);
        freeNow = (await this.fsStats()).free;
      } catch (e) { throw unavailable('cannot measure cache usage', e); }
      if (pressureReasons(usageNow, freeNow, s).length === 0) { usageAfter = usageNow; freeAfter = freeNow; return; }
      try {
        ({ summary, usage: usageAfter, free: freeAfter } = await this.evictDown(s, usageNow, freeNow, this.protectedSet(protect), pending));
      } catch (e) { throw unavailable('cannot measure cache usage after eviction', e); }
      this.lastEviction = {
        completed_at: rfc3339Nano(this.d.now()), trigger: phase, evicted_count: summary.evicted, freed_bytes: summary.freed,
        blocked_count: summary.blocked, reclaimable_bytes: summary.reclaimable,
        usage_bytes_before: usageNow, usage_bytes_after: usageAfter, free_bytes_before: freeNow, free_bytes_after: freeAfter,
      };
      this.d.log.info('cache eviction finished', { ...this.lastEviction });
    });

    const reasons = pressureReasons(usageAfter, freeAfter, s);
    if (reasons.length === 0) return;
    const observed = this.observedMinStateBytes();
    if (observed > 0 && s.effectiveMax < observed) {
      throw capacityError('cache_limit_too_small', 'effective cache limit is below observed minimum state size', {
        phase, effective_max_bytes: s.effectiveMax, observed_required_bytes: observed, recommended_min_bytes: observed, reasons,
      });
    }
    if (summary.reclaimable === 0 && summary.blocked === 0) {
      throw capacityError('cache_limit_too_small', 'effective cache limit is too small to materialize a state', {
        phase, effective_max_bytes: s.effectiveMax, observed_required_bytes: observed,
        recommended_min_bytes: Math.max(observed, s.effectiveMax + 1), reasons,
      });
    }
    throw capacityError('cache_full_unreclaimable', 'cache cannot be reclaimed to required thresholds', {
      phase, reasons, usage_bytes: usageAfter, free_bytes: freeAfter, effective_max_bytes: s.effectiveMax,
      reserve_bytes: s.reserveBytes, high_watermark: s.highWatermark, low_watermark: s.lowWatermark,
      evicted_count: summary.evicted, freed_bytes: summary.freed, blocked_count: summary.blocked, reclaimable_bytes: summary.reclaimable,
    });
  }

  private async evictDown(s: CapacitySettings, usage: number, free: number, protect: Set<string>, pending: string | undefined):
    Promise<{ summary: EvictionSummary; usage: number; free: number }> {
    const { candidates, blocked, reclaimable } = await this.candidates(s, protect);
    const summary: EvictionSummary = { evicted: 0, freed: 0, blocked, reclaimable };
    const low = lowBytes(s);
    for (const c of candidates) {
      if (usage <= low && free >= s.reserveBytes) break;
      // Re-check right before removal: an instance or child may have appeared since listing.
      const id = c.row.state_id;
      if (!this.d.store.getState(id) || this.d.store.refcount(id) > 0 || this.d.store.childStates(id).length > 0 || this.d.inUse().has(id)) continue;
      try {
        await this.d.evict(c.row);
      } catch (e) {
        this.d.log.warn('cannot evict state; skipping it', { state: id, error: errorText(e) });
        continue;
      }
      this.forget(id);
      summary.evicted++;
      summary.freed += c.size;
      this.d.log.info('evicted state', { state: id, bytes: c.size });
      usage = await this.usage(pending);
      free = (await this.fsStats()).free;
    }
    return { summary, usage, free };
  }

  private observedMinStateBytes(): number {
    let min = 0;
    for (const r of this.d.store.allStates()) {
      if (r.size_bytes === null || r.size_bytes <= 0) continue;
      if (min === 0 || r.size_bytes < min) min = r.size_bytes;
    }
    return min;
  }
}
