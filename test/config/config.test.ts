import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  ConfigManager,
  type ConfigChange,
  compileEffectiveConfig,
} from '../../src/config/config.js';
import { configSchema, defaultConfig } from '../../src/config/schema.js';
import type { JsonObject } from '../../src/config/tree.js';
import { createLogger } from '../../src/log.js';

const DEFAULTS = {
  log: { level: 'debug' },
  cache: { capacity: { maxBytes: 0, reserveBytes: null, highWatermark: 0.9, lowWatermark: 0.8, minStateAge: '10m' } },
  container: { runtime: 'auto' },
  snapshot: { backend: 'auto' },
  orchestrator: { jobs: { maxIdentical: 2 } },
};

const DEFAULT_EFFECTIVE = {
  logLevel: 'debug',
  cache: {
    maxBytes: 0,
    reserveBytes: null,
    highWatermark: 0.9,
    lowWatermark: 0.8,
    minStateAgeMs: 600_000,
    invalidReason: null,
  },
  containerRuntime: 'auto',
  snapshotBackend: 'auto',
  maxIdenticalJobs: 2,
};

/** A manager over a fresh test directory, optionally with an initial `config.json`. */
async function fresh(t: Test, content?: string): Promise<{ dir: string; cfg: ConfigManager }> {
  const dir = t.testdir(content === undefined ? {} : { 'config.json': content });
  return { dir, cfg: await ConfigManager.open(dir) };
}

function fileJson(dir: string): unknown {
  return JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
}

const errorShape = (code: string, message: string, details?: string) =>
  details === undefined ? { code, message } : { code, message, details };

const INVALID_PATH_GET = errorShape('invalid_argument', 'invalid path', 'config path is invalid');
const INVALID_PATH_SET = errorShape('invalid_argument', 'invalid config value', 'config path is invalid');
const INVALID_VALUE = errorShape('invalid_argument', 'invalid config value', 'config value is invalid');
const NOT_FOUND = errorShape('not_found', 'path not found', 'config path not found');
const PATH_REQUIRED = { code: 'invalid_argument', message: 'path is required', details: undefined };

t.test('ConfigManager.open treats a missing file as no overrides', async (t) => {
  const { dir, cfg } = await fresh(t);
  t.same(cfg.get('', false), {});
  t.same(cfg.get('', true), DEFAULTS);
  t.equal(cfg.file, join(dir, 'config.json'));
  t.same(readdirSync(dir), []);
});

t.test('ConfigManager.open loads overrides from config.json', async (t) => {
  const { cfg } = await fresh(t, JSON.stringify({ log: { level: 'info' }, custom: [1, 2] }));
  t.same(cfg.get('', false), { log: { level: 'info' }, custom: [1, 2] });
  t.equal(cfg.get('log.level', true), 'info');
  t.equal(cfg.effective().logLevel, 'info');
});

t.test('ConfigManager.open rejects a file that is not a JSON object', async (t) => {
  for (const content of ['[]', '"x"', '42', 'null', 'true']) {
    const dir = t.testdir({ 'config.json': content });
    await t.rejects(ConfigManager.open(dir), { code: 'internal_error', message: 'config file must contain a JSON object' }, content);
  }
});

t.test('ConfigManager.open rejects a file that is not valid JSON', async (t) => {
  for (const content of ['', '{', '{"a":}', 'nope', '{"a":1e400}']) {
    const dir = t.testdir({ 'config.json': content });
    await t.rejects(ConfigManager.open(dir), { code: 'internal_error', message: 'config file is not valid JSON' }, content);
  }
});

t.test('ConfigManager.open reports an unreadable file', async (t) => {
  const dir = t.testdir({ 'config.json': {} });
  await t.rejects(ConfigManager.open(dir), { code: 'internal_error', message: 'cannot read config' });
});

t.test('ConfigManager.open keeps __proto__ keys as data', async (t) => {
  const { cfg } = await fresh(t, '{"__proto__":{"polluted":true}}');
  t.same(cfg.get('__proto__', false), { polluted: true });
  t.equal(({} as Record<string, unknown>).polluted, undefined);
  t.same(cfg.effective(), DEFAULT_EFFECTIVE);
});

t.test('ConfigManager.get returns values by path', async (t) => {
  const { cfg } = await fresh(t, JSON.stringify({ a: { b: [1, { c: 'x' }] }, log: { level: 'warn' } }));
  t.equal(cfg.get('a.b[1].c', false), 'x');
  t.equal(cfg.get('a.b[0]', false), 1);
  t.same(cfg.get('a', false), { b: [1, { c: 'x' }] });
  t.equal(cfg.get('log.level', false), 'warn');
  t.equal(cfg.get('log.level', true), 'warn');
  t.equal(cfg.get('orchestrator.jobs.maxIdentical', true), 2);
  t.same(cfg.get('cache', true), DEFAULTS.cache);
  t.equal(cfg.get('cache.capacity.reserveBytes', true), null);
  t.equal(cfg.get(' a.b[0] ', false), 1);
});

t.test('ConfigManager.get without effective treats defaults as missing', async (t) => {
  const { cfg } = await fresh(t);
  t.throws(() => cfg.get('log.level', false), NOT_FOUND);
  t.throws(() => cfg.get('orchestrator', false), NOT_FOUND);
});

t.test('ConfigManager.get reports missing paths as not found', async (t) => {
  const { cfg } = await fresh(t, JSON.stringify({ a: [1] }));
  for (const p of ['nope', 'a[1]', 'a.b', 'log.level.x', 'Log.level', '[0]', 'constructor', 'toString']) {
    t.throws(() => cfg.get(p, true), NOT_FOUND, p);
  }
});

t.test('ConfigManager.get rejects malformed paths', async (t) => {
  const { cfg } = await fresh(t);
  for (const p of ['.a', 'a..b', 'a.', 'a[x]', 'a[', 'a]', 'a[-1]']) {
    t.throws(() => cfg.get(p, false), INVALID_PATH_GET, p);
    t.throws(() => cfg.get(p, true), INVALID_PATH_GET, p);
  }
});

t.test('ConfigManager.get returns copies', async (t) => {
  const { cfg } = await fresh(t, JSON.stringify({ a: { b: 1 } }));
  const whole = cfg.get('', false) as JsonObject;
  (whole.a as JsonObject).b = 2;
  const part = cfg.get('a', false) as JsonObject;
  part.b = 3;
  const eff = cfg.get('', true) as JsonObject;
  (eff.log as JsonObject).level = 'error';
  t.same(cfg.get('', false), { a: { b: 1 } });
  t.equal(cfg.get('log.level', true), 'debug');
});

t.test('ConfigManager.set stores a value, persists it and returns it', async (t) => {
  const { dir, cfg } = await fresh(t);
  t.equal(await cfg.set('log.level', 'info'), 'info');
  t.equal(cfg.get('log.level', false), 'info');
  t.same(fileJson(dir), { log: { level: 'info' } });
  const text = readFileSync(join(dir, 'config.json'), 'utf8');
  t.equal(text, '{\n  "log": {\n    "level": "info"\n  }\n}\n');
  t.equal(statSync(join(dir, 'config.json')).mode & 0o777, 0o600);
  t.same(readdirSync(dir), ['config.json']);
});

t.test('ConfigManager.set persists across re-open', async (t) => {
  const { dir, cfg } = await fresh(t);
  await cfg.set('orchestrator.jobs.maxIdentical', 5);
  await cfg.set('custom.list[2].name', 'x');
  await cfg.set('cache.capacity.minStateAge', '1h30m');
  const again = await ConfigManager.open(dir);
  t.same(again.get('', false), {
    orchestrator: { jobs: { maxIdentical: 5 } },
    custom: { list: [null, null, { name: 'x' }] },
    cache: { capacity: { minStateAge: '1h30m' } },
  });
  t.equal(again.effective().maxIdenticalJobs, 5);
  t.equal(again.effective().cache.minStateAgeMs, 5_400_000);
});

t.test('ConfigManager.set creates objects and null-padded arrays through missing nodes', async (t) => {
  const { cfg } = await fresh(t);
  await cfg.set('a.b[2].c', 1);
  t.same(cfg.get('a', false), { b: [null, null, { c: 1 }] });
  await cfg.set('a.b[0]', 'first');
  t.same(cfg.get('a.b', false), ['first', null, { c: 1 }]);
  await cfg.set('m[1][1]', true);
  t.same(cfg.get('m', false), [null, [null, true]]);
});

t.test('ConfigManager.set keeps values of unknown keys as given', async (t) => {
  const { cfg } = await fresh(t);
  for (const v of [null, 1.5, -3, 'text', true, [1, 'a'], { deep: { x: [null] } }]) {
    t.same(await cfg.set('unknown.key', v), v);
    t.same(cfg.get('unknown.key', false), v);
  }
  t.equal(await cfg.set('Log.Level', 'whatever'), 'whatever');
  t.equal(cfg.effective().logLevel, 'debug');
});

t.test('ConfigManager.set stores undefined as null', async (t) => {
  const { cfg } = await fresh(t);
  t.equal(await cfg.set('x', undefined), null);
  t.equal(cfg.get('x', false), null);
});

t.test('ConfigManager.set returns and stores copies', async (t) => {
  const { cfg } = await fresh(t);
  const v = { a: [1] };
  const out = (await cfg.set('obj', v)) as JsonObject;
  v.a.push(2);
  (out.a as number[]).push(3);
  t.same(cfg.get('obj', false), { a: [1] });
});

t.test('ConfigManager.set requires a path', async (t) => {
  const { cfg } = await fresh(t);
  await t.rejects(cfg.set('', 1), PATH_REQUIRED);
  await t.rejects(cfg.set('   ', 1), PATH_REQUIRED);
});

t.test('ConfigManager.set rejects malformed paths', async (t) => {
  const { cfg } = await fresh(t);
  for (const p of ['.a', 'a..b', 'a.', 'a[x]', 'a[', 'a]', 'a[-1]', '[0]', '[0].a']) {
    await t.rejects(cfg.set(p, 1), INVALID_PATH_SET, p);
  }
  t.same(cfg.get('', false), {});
});

t.test('ConfigManager.set rejects values that are not JSON data', async (t) => {
  const { cfg } = await fresh(t);
  for (const v of [Number.NaN, Number.POSITIVE_INFINITY, () => 1, new Date(0), { a: undefined }, 1n]) {
    await t.rejects(cfg.set('x', v), INVALID_VALUE, String(v));
  }
});

t.test('ConfigManager.set accepts null for every known key', async (t) => {
  const { dir, cfg } = await fresh(t);
  const keys = [
    'log.level', 'cache.capacity.maxBytes', 'cache.capacity.reserveBytes', 'cache.capacity.highWatermark',
    'cache.capacity.lowWatermark', 'cache.capacity.minStateAge', 'container.runtime', 'snapshot.backend',
    'orchestrator.jobs.maxIdentical',
  ];
  for (const k of keys) t.equal(await cfg.set(k, null), null, k);
  t.same(cfg.effective(), DEFAULT_EFFECTIVE);
  t.equal(cfg.get('log.level', true), null);
  t.same(fileJson(dir), {
    log: { level: null },
    cache: { capacity: { maxBytes: null, reserveBytes: null, highWatermark: null, lowWatermark: null, minStateAge: null } },
    container: { runtime: null },
    snapshot: { backend: null },
    orchestrator: { jobs: { maxIdentical: null } },
  });
});

t.test('ConfigManager.set checks integer keys', async (t) => {
  const { cfg } = await fresh(t);
  for (const k of ['orchestrator.jobs.maxIdentical', 'cache.capacity.maxBytes', 'cache.capacity.reserveBytes']) {
    for (const v of [0, 1, 10_737_418_240, Number.MAX_SAFE_INTEGER]) t.equal(await cfg.set(k, v), v, `${k}=${v}`);
    for (const v of [-1, 1.5, '3', true, [], {}, Number.MAX_SAFE_INTEGER + 1]) {
      await t.rejects(cfg.set(k, v), INVALID_VALUE, `${k}=${JSON.stringify(v)}`);
    }
  }
});

t.test('ConfigManager.set checks watermark ranges', async (t) => {
  const { cfg } = await fresh(t);
  await t.rejects(cfg.set('cache.capacity.highWatermark', 0), INVALID_VALUE);
  await t.rejects(cfg.set('cache.capacity.highWatermark', 1.01), INVALID_VALUE);
  await t.rejects(cfg.set('cache.capacity.highWatermark', '0.9'), INVALID_VALUE);
  await t.rejects(cfg.set('cache.capacity.lowWatermark', 0), INVALID_VALUE);
  await t.rejects(cfg.set('cache.capacity.lowWatermark', -0.5), INVALID_VALUE);
  t.equal(await cfg.set('cache.capacity.highWatermark', 1), 1);
  t.equal(await cfg.set('cache.capacity.lowWatermark', 0.05), 0.05);
});

t.test('ConfigManager.set requires the effective low watermark below the high one', async (t) => {
  const { cfg } = await fresh(t);
  // Against the default high watermark 0.9.
  await t.rejects(cfg.set('cache.capacity.lowWatermark', 0.9), INVALID_VALUE);
  await t.rejects(cfg.set('cache.capacity.lowWatermark', 0.95), INVALID_VALUE);
  // Against the default low watermark 0.8.
  await t.rejects(cfg.set('cache.capacity.highWatermark', 0.8), INVALID_VALUE);
  await t.rejects(cfg.set('cache.capacity.highWatermark', 0.5), INVALID_VALUE);
  t.equal(await cfg.set('cache.capacity.highWatermark', 0.85), 0.85);
  await t.rejects(cfg.set('cache.capacity.lowWatermark', 0.85), INVALID_VALUE);
  t.equal(await cfg.set('cache.capacity.lowWatermark', 0.3), 0.3);
  t.equal(await cfg.set('cache.capacity.highWatermark', 0.4), 0.4);
  await t.rejects(cfg.set('cache.capacity.highWatermark', 0.3), INVALID_VALUE);
  // Null falls back to the default (0.9), which is above 0.3.
  t.equal(await cfg.set('cache.capacity.highWatermark', null), null);
  // Setting the whole section is checked the same way.
  await t.rejects(cfg.set('cache.capacity', { highWatermark: 0.5, lowWatermark: 0.6 }), INVALID_VALUE);
  await t.rejects(cfg.set('cache', { capacity: { lowWatermark: 0.95 } }), INVALID_VALUE);
  t.same(await cfg.set('cache.capacity', { highWatermark: 0.6, lowWatermark: 0.5 }), { highWatermark: 0.6, lowWatermark: 0.5 });
  t.equal(cfg.effective().cache.highWatermark, 0.6);
  t.equal(cfg.effective().cache.lowWatermark, 0.5);
});

t.test('ConfigManager.set checks minStateAge as a non-negative duration', async (t) => {
  const { cfg } = await fresh(t);
  for (const v of ['10m', '1h30m', '0s', '0', '1.5h', '300ms']) t.equal(await cfg.set('cache.capacity.minStateAge', v), v);
  for (const v of ['', '10', '1x', '-1s', 600, true]) {
    await t.rejects(cfg.set('cache.capacity.minStateAge', v), INVALID_VALUE, JSON.stringify(v));
  }
});

t.test('ConfigManager.set checks enum keys', async (t) => {
  const { cfg } = await fresh(t);
  for (const v of ['auto', 'overlay', 'btrfs', 'copy']) t.equal(await cfg.set('snapshot.backend', v), v);
  for (const v of ['zfs', 'Overlay', '', 1]) await t.rejects(cfg.set('snapshot.backend', v), INVALID_VALUE);
  for (const v of ['auto', 'docker', 'podman']) t.equal(await cfg.set('container.runtime', v), v);
  for (const v of ['Docker', 'lxc', false]) await t.rejects(cfg.set('container.runtime', v), INVALID_VALUE);
  for (const v of ['debug', 'info', 'warn', 'error', 'INFO', 'Warn', ' error ']) t.equal(await cfg.set('log.level', v), v);
  for (const v of ['trace', 'warning', '', 3]) await t.rejects(cfg.set('log.level', v), INVALID_VALUE);
  t.equal(cfg.get('log.level', false), ' error ');
  t.equal(cfg.effective().logLevel, 'error');
});

t.test('ConfigManager.set checks known keys inside a value set on a parent', async (t) => {
  const { cfg } = await fresh(t);
  await t.rejects(cfg.set('orchestrator', { jobs: { maxIdentical: -1 } }), INVALID_VALUE);
  await t.rejects(cfg.set('log', { level: 'loud' }), INVALID_VALUE);
  t.same(await cfg.set('log', { level: 'info', extra: 1 }), { level: 'info', extra: 1 });
  t.same(await cfg.set('orchestrator.jobs', { maxIdentical: 0, other: 'x' }), { maxIdentical: 0, other: 'x' });
  t.equal(cfg.effective().maxIdenticalJobs, 0);
});

t.test('ConfigManager.set keeps known sections objects and known leaves scalar', async (t) => {
  const { cfg } = await fresh(t);
  for (const [p, v] of [
    ['log', 'debug'], ['cache', null], ['cache.capacity', 5], ['orchestrator.jobs', [1]], ['container', null],
    ['log.level.sub', 'x'], ['log[0]', 1], ['cache.capacity.maxBytes[0]', 1],
  ] as const) {
    await t.rejects(cfg.set(p, v), INVALID_VALUE, p);
  }
  t.same(cfg.get('', false), {});
  t.equal(await cfg.set('log.custom', 'ok'), 'ok');
});

t.test('ConfigManager.set leaves memory and file unchanged when the write fails', async (t) => {
  const { dir, cfg } = await fresh(t);
  await cfg.set('a', 1);
  const file = join(dir, 'config.json');
  rmSync(file);
  mkdirSync(file);
  await t.rejects(cfg.set('a', 2), { code: 'internal_error', message: 'cannot update config' });
  t.equal(cfg.get('a', false), 1);
  t.same(readdirSync(dir), ['config.json']);
  await t.rejects(cfg.remove('a'), { code: 'internal_error', message: 'cannot update config' });
  t.equal(cfg.get('a', false), 1);
  t.same(readdirSync(dir), ['config.json']);
  rmSync(file, { recursive: true });
  t.equal(await cfg.set('b', 2), 2);
  t.same(fileJson(dir), { a: 1, b: 2 });
});

t.test('ConfigManager.set error details carry the filesystem reason', async (t) => {
  const { dir, cfg } = await fresh(t);
  mkdirSync(join(dir, 'config.json'));
  const err = await cfg.set('a', 1).then(
    () => undefined,
    (e: unknown) => e as { details?: string },
  );
  t.match(err?.details, /\S/);
});

t.test('ConfigManager.set and remove run one at a time in call order', async (t) => {
  const { dir, cfg } = await fresh(t);
  const ops: Promise<unknown>[] = [];
  for (let n = 0; n < 20; n++) ops.push(cfg.set(`k${n % 3}`, n));
  ops.push(cfg.remove('k0'));
  ops.push(cfg.set('log.level', 'nope').catch((e: unknown) => e));
  ops.push(cfg.set('last', true));
  const results = await Promise.all(ops);
  t.equal(results[19], 19);
  t.equal(results[20], null);
  t.match(results[21], INVALID_VALUE);
  t.equal(results[22], true);
  await cfg.settled();
  t.same(cfg.get('', false), { k1: 19, k2: 17, last: true });
  t.same(fileJson(dir), cfg.get('', false));
  t.same(readdirSync(dir), ['config.json']);
});

t.test('ConfigManager.remove deletes an override and returns the effective value', async (t) => {
  const { dir, cfg } = await fresh(t);
  await cfg.set('log.level', 'error');
  await cfg.set('custom', 'x');
  t.equal(await cfg.remove('log.level'), 'debug');
  t.equal(await cfg.remove('custom'), null);
  t.same(cfg.get('', false), { log: {} });
  t.same(fileJson(dir), { log: {} });
  t.equal(cfg.effective().logLevel, 'debug');
  t.same(await cfg.remove('log'), { level: 'debug' });
  t.same(cfg.get('', false), {});
});

t.test('ConfigManager.remove splices array elements', async (t) => {
  const { cfg } = await fresh(t);
  await cfg.set('list', ['a', 'b', 'c']);
  t.equal(await cfg.remove('list[0]'), 'b');
  t.same(cfg.get('list', false), ['b', 'c']);
  t.equal(await cfg.remove('list[1]'), null);
  t.same(cfg.get('list', false), ['b']);
});

t.test('ConfigManager.remove reports a missing override as not found', async (t) => {
  const { cfg } = await fresh(t);
  await cfg.set('list', [1]);
  for (const p of ['log.level', 'orchestrator', 'list[1]', 'list.x', 'nope.deep', '[0]', 'constructor']) {
    await t.rejects(cfg.remove(p), NOT_FOUND, p);
  }
});

t.test('ConfigManager.remove validates the path', async (t) => {
  const { cfg } = await fresh(t);
  await t.rejects(cfg.remove(''), PATH_REQUIRED);
  await t.rejects(cfg.remove('  '), PATH_REQUIRED);
  for (const p of ['.a', 'a..b', 'a.', 'a[x]', 'a[', 'a]']) await t.rejects(cfg.remove(p), INVALID_PATH_GET, p);
});

t.test('ConfigManager.effective applies defaults and typed values', async (t) => {
  const { cfg } = await fresh(t);
  t.same(cfg.effective(), DEFAULT_EFFECTIVE);
  t.ok(Object.isFrozen(cfg.effective()));
  t.equal(cfg.effective(), cfg.effective());
  await cfg.set('log.level', 'WARN');
  await cfg.set('cache.capacity', {
    maxBytes: 1000, reserveBytes: 10, highWatermark: 0.7, lowWatermark: 0.6, minStateAge: '1.5s',
  });
  await cfg.set('container.runtime', 'podman');
  await cfg.set('snapshot.backend', 'btrfs');
  await cfg.set('orchestrator.jobs.maxIdentical', 0);
  t.same(cfg.effective(), {
    logLevel: 'warn',
    cache: { maxBytes: 1000, reserveBytes: 10, highWatermark: 0.7, lowWatermark: 0.6, minStateAgeMs: 1500, invalidReason: null },
    containerRuntime: 'podman',
    snapshotBackend: 'btrfs',
    maxIdenticalJobs: 0,
  });
});

t.test('ConfigManager.effective falls back to defaults for invalid stored values', async (t) => {
  const { cfg } = await fresh(t, JSON.stringify({
    log: { level: 'loud' },
    cache: { capacity: { maxBytes: -5, reserveBytes: 1.5, highWatermark: 2, lowWatermark: 'x', minStateAge: '-1s' } },
    container: { runtime: 'lxc' },
    snapshot: { backend: 7 },
    orchestrator: { jobs: { maxIdentical: -1 } },
  }));
  const eff = cfg.effective();
  t.same({ ...eff, cache: { ...eff.cache, invalidReason: null } }, DEFAULT_EFFECTIVE);
  t.match(eff.cache.invalidReason, /maxBytes/);
  t.match(eff.cache.invalidReason, /reserveBytes/);
  t.match(eff.cache.invalidReason, /highWatermark/);
  t.match(eff.cache.invalidReason, /lowWatermark/);
  t.match(eff.cache.invalidReason, /minStateAge/);
});

t.test('compileEffectiveConfig flags crossed watermarks and a non-object capacity', async (t) => {
  const merged = (over: JsonObject) => {
    const d = defaultConfig();
    (d.cache as JsonObject).capacity = over;
    return d;
  };
  const crossed = compileEffectiveConfig(merged({ highWatermark: 0.5, lowWatermark: 0.7 }));
  t.equal(crossed.cache.highWatermark, 0.9);
  t.equal(crossed.cache.lowWatermark, 0.8);
  t.match(crossed.cache.invalidReason, /below/);
  const d = defaultConfig();
  (d.cache as JsonObject).capacity = 5;
  const bad = compileEffectiveConfig(d);
  t.match(bad.cache.invalidReason, /must be an object/);
  t.equal(bad.cache.maxBytes, 0);
  t.equal(compileEffectiveConfig({}).cache.invalidReason, null);
  t.equal(compileEffectiveConfig({}).logLevel, 'debug');
});

t.test('ConfigManager.onChange notifies listeners after each committed change', async (t) => {
  const { cfg } = await fresh(t);
  const seen: ConfigChange[] = [];
  const off = cfg.onChange((c) => seen.push(c));
  await cfg.set(' log.level ', 'info');
  await t.rejects(cfg.set('log.level', 'loud'));
  await cfg.remove('log.level');
  t.same(seen.map((c) => [c.op, c.path, c.effective.logLevel]), [
    ['set', 'log.level', 'info'],
    ['remove', 'log.level', 'debug'],
  ]);
  off();
  off();
  await cfg.set('x', 1);
  t.equal(seen.length, 2);
});

t.test('ConfigManager.onChange isolates failing listeners', async (t) => {
  const lines: string[] = [];
  const dir = t.testdir({});
  const cfg = await ConfigManager.open(dir, { logger: createLogger((l) => lines.push(l)) });
  let calls = 0;
  cfg.onChange(() => {
    throw new Error('listener broke');
  });
  cfg.onChange(() => {
    calls++;
  });
  t.equal(await cfg.set('a', 1), 1);
  t.equal(calls, 1);
  t.match(lines.join(''), /config change listener failed.*listener broke/);
  const quiet = await ConfigManager.open(t.testdir({}));
  quiet.onChange(() => {
    throw new Error('nobody hears');
  });
  t.equal(await quiet.set('a', 1), 1);
});

t.test('ConfigManager.schema returns the config JSON Schema', async (t) => {
  const { cfg } = await fresh(t);
  t.same(cfg.schema(), configSchema());
  t.equal(cfg.schema().$schema, 'https://json-schema.org/draft/2020-12/schema');
});

t.test('ConfigManager keeps the file free of temp leftovers after many writes', async (t) => {
  const { dir, cfg } = await fresh(t);
  await Promise.all(Array.from({ length: 10 }, (_, n) => cfg.set(`a.b[${n}]`, n)));
  t.same(readdirSync(dir), ['config.json']);
  t.same(fileJson(dir), { a: { b: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] } });
  writeFileSync(join(dir, 'unrelated'), '');
  t.same(readdirSync(dir).sort(), ['config.json', 'unrelated']);
});
