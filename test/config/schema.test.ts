import t from 'tap';
import {
  KNOWN_CONFIG_KEYS,
  configSchema,
  defaultConfig,
  isNonNegativeInteger,
  isWatermark,
  toLogLevel,
  toMinStateAgeNs,
} from '../../src/config/schema.js';
import type { JsonObject, JsonValue } from '../../src/config/tree.js';

t.test('defaultConfig returns the documented defaults as a fresh copy', async (t) => {
  t.strictSame(defaultConfig(), {
    log: { level: 'debug' },
    cache: { capacity: { maxBytes: 0, reserveBytes: null, highWatermark: 0.9, lowWatermark: 0.8, minStateAge: '10m' } },
    container: { runtime: 'auto' },
    snapshot: { backend: 'auto' },
    orchestrator: { jobs: { maxIdentical: 2 } },
  });
  const a = defaultConfig();
  (a.log as JsonObject).level = 'error';
  t.equal((defaultConfig().log as JsonObject).level, 'debug');
});

t.test('configSchema describes every known key, allowing null and additional properties', async (t) => {
  const nullable = (type: string) => [type, 'null'];
  t.strictSame(configSchema(), {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    type: 'object',
    properties: {
      log: {
        type: 'object',
        properties: { level: { type: nullable('string'), enum: ['debug', 'info', 'warn', 'error', null] } },
        additionalProperties: true,
      },
      cache: {
        type: 'object',
        properties: {
          capacity: {
            type: 'object',
            properties: {
              maxBytes: { type: nullable('integer'), minimum: 0 },
              reserveBytes: { type: nullable('integer'), minimum: 0 },
              highWatermark: { type: nullable('number'), minimum: 0, maximum: 1 },
              lowWatermark: { type: nullable('number'), minimum: 0, maximum: 1 },
              minStateAge: { type: nullable('string') },
            },
            additionalProperties: true,
          },
        },
        additionalProperties: true,
      },
      container: {
        type: 'object',
        properties: { runtime: { type: nullable('string'), enum: ['auto', 'docker', 'podman', null] } },
        additionalProperties: true,
      },
      snapshot: {
        type: 'object',
        properties: { backend: { type: nullable('string'), enum: ['auto', 'overlay', 'btrfs', 'copy', null] } },
        additionalProperties: true,
      },
      orchestrator: {
        type: 'object',
        properties: {
          jobs: {
            type: 'object',
            properties: { maxIdentical: { type: nullable('integer'), minimum: 0 } },
            additionalProperties: true,
          },
        },
        additionalProperties: true,
      },
    },
    additionalProperties: true,
  });
  t.not(configSchema(), configSchema());
});

t.test('configSchema covers exactly the known keys', async (t) => {
  const leaves: string[] = [];
  const walk = (node: JsonObject, prefix: string[]): void => {
    const props = node.properties as JsonObject | undefined;
    if (props === undefined) {
      leaves.push(prefix.join('.'));
      return;
    }
    for (const [k, v] of Object.entries(props)) walk(v as JsonObject, [...prefix, k]);
  };
  walk(configSchema(), []);
  t.same(leaves.sort(), KNOWN_CONFIG_KEYS.map((k) => k.path.join('.')).sort());
});

t.test('isNonNegativeInteger accepts safe integers from zero up', async (t) => {
  for (const v of [0, 1, 2, Number.MAX_SAFE_INTEGER]) t.equal(isNonNegativeInteger(v), true, String(v));
  for (const v of [-1, 1.5, Number.MAX_SAFE_INTEGER + 1, '1', null, true, [1]] as JsonValue[]) {
    t.equal(isNonNegativeInteger(v), false, JSON.stringify(v));
  }
});

t.test('isWatermark accepts numbers in (0, 1]', async (t) => {
  for (const v of [0.0001, 0.5, 1]) t.equal(isWatermark(v), true, String(v));
  for (const v of [0, -0.1, 1.0001, '0.5', null] as JsonValue[]) t.equal(isWatermark(v), false, JSON.stringify(v));
});

t.test('toLogLevel normalises case and surrounding space', async (t) => {
  t.equal(toLogLevel('INFO'), 'info');
  t.equal(toLogLevel(' Warn '), 'warn');
  t.equal(toLogLevel('debug'), 'debug');
  t.equal(toLogLevel('error'), 'error');
  t.equal(toLogLevel('trace'), undefined);
  t.equal(toLogLevel(1), undefined);
});

t.test('toMinStateAgeNs accepts non-negative duration strings only', async (t) => {
  t.equal(toMinStateAgeNs('10m'), 600_000_000_000n);
  t.equal(toMinStateAgeNs('0s'), 0n);
  t.equal(toMinStateAgeNs('0'), 0n);
  t.equal(toMinStateAgeNs('-0s'), 0n);
  t.equal(toMinStateAgeNs('-1s'), undefined);
  t.equal(toMinStateAgeNs('10'), undefined);
  t.equal(toMinStateAgeNs(600), undefined);
});

t.test('KNOWN_CONFIG_KEYS rules match the documented value sets', async (t) => {
  const rule = (path: string) => {
    const k = KNOWN_CONFIG_KEYS.find((x) => x.path.join('.') === path);
    if (k === undefined) throw new Error(`no rule for ${path}`);
    return k.accepts;
  };
  for (const v of ['auto', 'docker', 'podman']) t.equal(rule('container.runtime')(v), true, v);
  for (const v of ['Docker', 'lxc', 1] as JsonValue[]) t.equal(rule('container.runtime')(v), false, String(v));
  for (const v of ['auto', 'overlay', 'btrfs', 'copy']) t.equal(rule('snapshot.backend')(v), true, v);
  for (const v of ['zfs', 'AUTO', true] as JsonValue[]) t.equal(rule('snapshot.backend')(v), false, String(v));
  t.equal(rule('log.level')('Info'), true);
  t.equal(rule('cache.capacity.minStateAge')('1h30m'), true);
  t.equal(rule('cache.capacity.minStateAge')('soon'), false);
});
