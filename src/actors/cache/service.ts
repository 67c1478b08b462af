/**
 * The cache wing's face: `GET /v1/cache/status`, the capacity guard the prepare wing calls
 * (through `capacity.ts`), the `startup_recovery` pass, and forgetting measured sizes of deleted
 * states. Evictions go through the deletion wing (a callback wired by the composition root).
 */
import type { Logger } from '../../log.js';
import type { Clock } from '../../clock.js';
import { errorText } from '../../errors.js';
import type { StateRow, Store } from '../../mailbox/store.js';
import type { FsPool } from '../../workers/pool.js';
import type { EffectiveCacheConfig } from '../../config/index.js';
import type { StoreLayout } from '../layout.js';
import type { BuildPhase, CapacityGuard } from './capacity.js';
import { CacheManager, type CacheStatus } from './eviction.js';

export type { CacheStatus } from './eviction.js';

/** Cache usage and limits, without the eviction-candidate scan of {@link CacheService.status}. */
export interface CacheUsage {
  usageBytes: number;
  /** `cache.capacity.maxBytes` (0: no cap). */
  configuredMaxBytes: number;
  effectiveMaxBytes: number;
  reserveBytes: number;
  highWatermark: number;
  lowWatermark: number;
  storeTotalBytes: number;
  storeFreeBytes: number;
}

export interface CacheServiceDeps {
  store: Store;
  fs: FsPool;
  layout: StoreLayout;
  /** Current cache settings (`config.effective().cache`). */
  config(): EffectiveCacheConfig;
  /** State ids that running work uses, deletions included (never evicted). */
  statesInUse(): Set<string>;
  /** Deletes a state through the deletion wing: files, then row. */
  evict(row: StateRow): Promise<void>;
  log: Logger;
  clock: Clock;
}

export class CacheService implements CapacityGuard {
  private readonly manager: CacheManager;

  constructor(private readonly d: CacheServiceDeps) {
    this.manager = new CacheManager({
      root: d.layout.root, store: d.store, fs: d.fs, log: d.log, config: d.config, inUse: d.statesInUse,
      stateDir: (id) => d.layout.stateDir(id), evict: d.evict, now: () => d.clock.now(),
    });
  }

  /** `GET /v1/cache/status`. @throws when the store cannot be measured (logged) */
  async status(): Promise<CacheStatus> {
    try {
      return await this.manager.status();
    } catch (e) {
      this.d.log.error('cache status failed', { error: errorText(e) });
      throw e;
    }
  }

  /**
   * Usage and limits for metrics: sizes recorded at snapshot (a state without one is measured once
   * and remembered) and one `statfs`. @throws when the settings are invalid or the store unreadable
   */
  async usage(): Promise<CacheUsage> {
    const stats = await this.manager.fsStats();
    const s = this.manager.settings(stats.total);
    return {
      usageBytes: await this.manager.usage(), configuredMaxBytes: s.maxBytes, effectiveMaxBytes: s.effectiveMax, reserveBytes: s.reserveBytes,
      highWatermark: s.highWatermark, lowWatermark: s.lowWatermark, storeTotalBytes: stats.total, storeFreeBytes: stats.free,
    };
  }

  ensure(trigger: BuildPhase, protect?: string): Promise<void> { return this.manager.ensure(trigger, protect); }

  /** The start-up pass runs in the background: the engine answers while it evicts. */
  checkAtStartup(): void {
    this.manager.ensure('startup_recovery').catch((err: unknown) => {
      this.d.log.error('cache capacity check at start-up failed', { error: errorText(err) });
    });
  }

  /** A state is gone: its remembered size is dropped. */
  forget(stateId: string): void { this.manager.forget(stateId); }

  busy(): boolean { return this.manager.busy; }
}
