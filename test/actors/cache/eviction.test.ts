import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CacheManager, defaultReserve, resolveSettings, pressureReasons, RESERVE_CAP_BYTES,
  type CacheDeps, type FsStats,
} from '../../../src/actors/cache/eviction.js';
import { outOfSpaceError } from '../../../src/actors/cache/capacity.js';
import type { StateRow } from '../../../src/mailbox/store.js';
import type { EffectiveCacheConfig } from '../../../src/config/index.js';
import { nullLogger } from '../../../src/log.js';
import type { EngineError } from '../../../src/errors.js';
import { asStateId } from '../../../src/ids.js';

const NOW = 1_800_000_000_000;
const MIN = 60_000;

function row(id: string, o: Partial<StateRow> = {}): StateRow {
  return {
    state_id: asStateId(id.repeat(64).slice(0, 64)), parent_state_id: null, image_id: 'img', prepare_kind: 'psql', prepare_args_normalized: '',
    created_at: new Date(NOW - 60 * MIN).toISOString(), created_ms: NOW - 60 * MIN, size_bytes: 100, last_used_at: null, last_used_ms: null,
    use_count: 0, min_retention_until: null, backend: 'copy', dir: `/s/${id}`, ...o,
  };
}

const baseCfg: EffectiveCacheConfig = { maxBytes: 0, reserveBytes: 0, highWatermark: 0.9, lowWatermark: 0.8, minStateAgeMs: 0, invalidReason: null };

interface World {
  states: StateRow[];
  refs: Map<string, number>;
  inUse: Set<string>;
  evicted: string[];
  free: number;
  total: number;
  measured: string[];
}

function setup(t: { teardown(f: () => void): void }, states: StateRow[], cfg: Partial<EffectiveCacheConfig> = {}, over: Partial<CacheDeps> = {}): { m: CacheManager; w: World } {
  const root = mkdtempSync(join(tmpdir(), 'sqlrs-cache-unit-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const w: World = { states: [...states], refs: new Map(), inUse: new Set(), evicted: [], free: 1e12, total: 2e12, measured: [] };
  const deps: CacheDeps = {
    root,
    store: {
      allStates: () => [...w.states],
      getState: (id) => w.states.find((s) => s.state_id === id),
      childStates: (id) => w.states.filter((s) => s.parent_state_id === id),
      refcount: (id) => w.refs.get(id) ?? 0,
    },
    fs: {
      run: (async (task: { type: string; path?: string }) => {
        if (task.type !== 'measure') throw new Error('unexpected task');
        w.measured.push(task.path ?? '');
        return { bytes: 7, files: 1 };
      }) as CacheDeps['fs']['run'],
    },
    log: nullLogger,
    config: () => ({ ...baseCfg, ...cfg }),
    inUse: () => new Set(w.inUse),
    stateDir: (id) => `/s/pending-${id.slice(0, 4)}`,
    evict: async (r) => { w.evicted.push(r.state_id); w.states = w.states.filter((s) => s.state_id !== r.state_id); },
    statfs: async (): Promise<FsStats> => ({ total: w.total, free: w.free }),
    now: () => NOW,
    ...over,
  };
  return { m: new CacheManager(deps), w };
}

async function codeOf(p: Promise<unknown>): Promise<{ code: string; message: string; details: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    const err = e as EngineError;
    return { code: err.code, message: err.message, details: JSON.parse(err.details ?? '{}') as Record<string, unknown> };
  }
  throw new Error('expected a capacity error');
}

t.test('cache reserve defaults to the smaller of 10 GiB and 10 percent', async (t) => {
  t.equal(defaultReserve(0), RESERVE_CAP_BYTES);
  t.equal(defaultReserve(20 * 1024 ** 3), 2 * 1024 ** 3);
  t.equal(defaultReserve(1000 * 1024 ** 3), RESERVE_CAP_BYTES);
  const s = resolveSettings({ ...baseCfg, reserveBytes: null }, 20 * 1024 ** 3);
  t.equal(s.reserveBytes, 2 * 1024 ** 3);
  t.equal(s.effectiveMax, 18 * 1024 ** 3);
  t.equal(resolveSettings({ ...baseCfg, maxBytes: 1000 }, 1e9).effectiveMax, 1000, 'maxBytes caps the effective maximum');
  t.equal(resolveSettings({ ...baseCfg, reserveBytes: 5e9 }, 1e9).effectiveMax, 0, 'floored at 0');
  t.throws(() => resolveSettings({ ...baseCfg, invalidReason: 'cache.capacity.maxBytes is invalid' }, 1e9));
  t.throws(() => resolveSettings({ ...baseCfg, lowWatermark: 0.95 }, 1e9));
});

t.test('cache pressure reasons name watermark and reserve', async (t) => {
  const s = resolveSettings({ ...baseCfg, maxBytes: 1000, reserveBytes: 50 }, 1e9);
  t.same(pressureReasons(900, 100, s), []);
  t.same(pressureReasons(901, 100, s), ['usage_above_high_watermark']);
  t.same(pressureReasons(10, 49, s), ['physical_free_below_reserve']);
});

t.test('cache usage sums recorded sizes and measures the rest once', async (t) => {
  const { m, w } = setup(t, [row('a'), row('b', { size_bytes: null }), row('c', { size_bytes: 0 })]);
  t.equal(await m.usage(), 114);
  t.equal(await m.usage(), 114);
  t.same(w.measured, ['/s/b', '/s/c'], 'measurements are remembered');
  t.equal(await m.usage('9'.repeat(64)), 121, 'a pending state without a row is counted');
});

t.test('cache status reports every field, omitting configured max when unset', async (t) => {
  const { m } = setup(t, [row('a'), row('b')], { reserveBytes: null, minStateAgeMs: 600_000 });
  const s = await m.status();
  t.same(Object.keys(s), [
    'usage_bytes', 'effective_max_bytes', 'reserve_bytes', 'high_watermark', 'low_watermark', 'min_state_age',
    'store_total_bytes', 'store_free_bytes', 'state_count', 'reclaimable_bytes', 'blocked_count', 'pressure_reasons',
  ]);
  t.equal(s.min_state_age, '10m0s');
  t.equal(s.reserve_bytes, RESERVE_CAP_BYTES);
  t.equal(s.state_count, 2);
  t.equal(s.reclaimable_bytes, 200);
  t.same(s.pressure_reasons, []);
  const { m: m2 } = setup(t, [], { maxBytes: 5000 });
  const s2 = await m2.status();
  t.equal(s2.configured_max_bytes, 5000);
  t.equal(s2.effective_max_bytes, 5000);
  await t.rejects(setup(t, [], { invalidReason: 'bad' }).m.status(), 'invalid settings fail the status');
});

t.test('cache eviction order is least recently used, then largest, then id', async (t) => {
  const a = row('a', { last_used_ms: NOW - 10 * MIN, size_bytes: 100 });
  const b = row('b', { last_used_ms: NOW - 30 * MIN, size_bytes: 100 });
  const c = row('c', { last_used_ms: NOW - 10 * MIN, size_bytes: 300 });
  const d = row('d', { last_used_ms: NOW - 10 * MIN, size_bytes: 100 });
  const { m, w } = setup(t, [a, b, c, d], { maxBytes: 100, highWatermark: 0.9, lowWatermark: 0.5 });
  await m.ensure('prepare_step');
  t.same(w.evicted, [b.state_id, c.state_id, a.state_id, d.state_id]);
  t.equal(m.lastEviction?.evicted_count, 4);
  t.equal(m.lastEviction?.freed_bytes, 600);
  t.equal(m.lastEviction?.trigger, 'prepare_step');
  t.equal(m.lastEviction?.usage_bytes_before, 600);
  t.equal(m.lastEviction?.usage_bytes_after, 0);
});

t.test('cache eviction stops at the low watermark and spares blocked states', async (t) => {
  const old = row('a', { last_used_ms: NOW - 50 * MIN, size_bytes: 400 });
  const young = row('b', { created_ms: NOW - MIN, last_used_ms: NOW - 60 * MIN, size_bytes: 400 });
  const parent = row('c', { last_used_ms: NOW - 59 * MIN, size_bytes: 100 });
  const child = row('d', { parent_state_id: parent.state_id, last_used_ms: NOW - 40 * MIN, size_bytes: 100 });
  const used = row('e', { last_used_ms: NOW - 58 * MIN, size_bytes: 100 });
  const busy = row('f', { last_used_ms: NOW - 57 * MIN, size_bytes: 100 });
  const retained = row('7', { last_used_ms: NOW - 56 * MIN, size_bytes: 100, min_retention_until: new Date(NOW + MIN).toISOString() });
  const protectedOne = row('8', { last_used_ms: NOW - 55 * MIN, size_bytes: 100 });
  const spare = row('9', { last_used_ms: NOW - 20 * MIN, size_bytes: 100 });
  // usage 1500; max 1600 → high 1440 (pressure), low 1280
  const { m, w } = setup(t, [old, young, parent, child, used, busy, retained, protectedOne, spare], { maxBytes: 1600, minStateAgeMs: 5 * MIN });
  w.refs.set(used.state_id, 1);
  w.inUse.add(busy.state_id);
  await m.ensure('snapshot', protectedOne.state_id);
  t.same(w.evicted, [old.state_id], 'one eviction brings usage below the low watermark');
  t.equal(m.lastEviction?.blocked_count, 6, 'young, parent, in use, busy, retained and protected are blocked');
  t.equal(m.lastEviction?.reclaimable_bytes, 600);
  t.equal(m.lastEviction?.trigger, 'snapshot');
});

t.test('cache without pressure evicts nothing and records nothing', async (t) => {
  const { m, w } = setup(t, [row('a')], { maxBytes: 1000 });
  await m.ensure('prepare_step');
  t.same(w.evicted, []);
  t.equal(m.lastEviction, undefined);
});

t.test('cache that cannot reclaim enough fails with cache_full_unreclaimable', async (t) => {
  const a = row('a', { size_bytes: 100 });
  const b = row('b', { size_bytes: 100 });
  const { m, w } = setup(t, [a, b], { maxBytes: 150 });
  w.refs.set(a.state_id, 1);
  w.refs.set(b.state_id, 1);
  const err = await codeOf(m.ensure('metadata_commit'));
  t.equal(err.code, 'cache_full_unreclaimable');
  t.equal(err.message, 'cache cannot be reclaimed to required thresholds');
  t.same(err.details['reasons'], ['usage_above_high_watermark']);
  t.equal(err.details['phase'], 'metadata_commit');
  t.equal(err.details['blocked_count'], 2);
  t.equal(err.details['usage_bytes'], 200);
});

t.test('cache reserve pressure and tiny limits give cache_limit_too_small', async (t) => {
  const { m, w } = setup(t, [], { reserveBytes: 1000 });
  w.free = 10;
  const err = await codeOf(m.ensure('prepare_step'));
  t.equal(err.code, 'cache_limit_too_small');
  t.equal(err.message, 'effective cache limit is too small to materialize a state');
  t.same(err.details['reasons'], ['physical_free_below_reserve']);
  const { m: m2, w: w2 } = setup(t, [], { reserveBytes: 10 });
  w2.total = 5;
  const e2 = await codeOf(m2.ensure('snapshot'));
  t.equal(e2.code, 'cache_limit_too_small');
  t.equal(e2.message, 'effective cache limit is too small');
});

t.test('cache with invalid settings or an unreadable filesystem is unavailable', async (t) => {
  const e1 = await codeOf(setup(t, [], { invalidReason: 'cache.capacity.minStateAge is invalid' }).m.ensure('prepare_step'));
  t.equal(e1.code, 'cache_enforcement_unavailable');
  t.equal(e1.message, 'cannot load cache capacity settings');
  t.match(e1.details['error'], 'minStateAge');
  const e2 = await codeOf(setup(t, [], {}, { statfs: async () => { throw new Error('EIO'); } }).m.ensure('prepare_step'));
  t.equal(e2.code, 'cache_enforcement_unavailable');
  t.equal(e2.message, 'cannot measure state store filesystem');
});

t.test('cache eviction that fails skips the state', async (t) => {
  const a = row('a', { last_used_ms: NOW - 50 * MIN, size_bytes: 100 });
  const b = row('b', { last_used_ms: NOW - 40 * MIN, size_bytes: 100 });
  const evicted: string[] = [];
  const { m, w } = setup(t, [a, b], { maxBytes: 150 }, {
    evict: async (r) => {
      if (r.state_id === a.state_id) throw new Error('busy');
      evicted.push(r.state_id);
      w.states = w.states.filter((s) => s.state_id !== r.state_id);
    },
  });
  await m.ensure('prepare_step');
  t.same(evicted, [b.state_id]);
  t.equal(m.lastEviction?.evicted_count, 1);
});

t.test('cache maps out-of-space failures to cache_limit_too_small with the phase', async (t) => {
  const e = outOfSpaceError(new Error('write /x: no space left on device'), 'snapshot');
  t.equal(e?.code, 'cache_limit_too_small');
  t.equal((JSON.parse(e?.details ?? '{}') as { phase: string }).phase, 'snapshot');
  t.equal(outOfSpaceError(Object.assign(new Error('x'), { code: 'ENOSPC' }), 'prepare_step')?.code, 'cache_limit_too_small');
  t.equal(outOfSpaceError(new Error('EACCES'), 'snapshot'), undefined);
});
