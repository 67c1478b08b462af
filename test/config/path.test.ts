import t from 'tap';
import { MAX_CONFIG_INDEX, formatConfigPath, parseConfigPath } from '../../src/config/path.js';

const k = (key: string) => ({ type: 'key', key }) as const;
const i = (index: number) => ({ type: 'index', index }) as const;

t.test('parseConfigPath reads keys and indices', async (t) => {
  t.same(parseConfigPath(''), []);
  t.same(parseConfigPath('   '), []);
  t.same(parseConfigPath('a'), [k('a')]);
  t.same(parseConfigPath('a.b[0].c'), [k('a'), k('b'), i(0), k('c')]);
  t.same(parseConfigPath('a[1][2]'), [k('a'), i(1), i(2)]);
  t.same(parseConfigPath('[0]'), [i(0)]);
  t.same(parseConfigPath('[0].a'), [i(0), k('a')]);
  t.same(parseConfigPath('a[01]'), [k('a'), i(1)]);
  t.same(parseConfigPath(' log.level '), [k('log'), k('level')]);
  t.same(parseConfigPath('a b.c-d'), [k('a b'), k('c-d')]);
  t.same(parseConfigPath('__proto__.constructor'), [k('__proto__'), k('constructor')]);
  t.same(parseConfigPath(`a[${MAX_CONFIG_INDEX}]`), [k('a'), i(MAX_CONFIG_INDEX)]);
});

t.test('parseConfigPath keeps keys case-sensitive', async (t) => {
  t.same(parseConfigPath('Log.LEVEL'), [k('Log'), k('LEVEL')]);
});

t.test('parseConfigPath rejects malformed paths', async (t) => {
  const bad = [
    '.a', 'a..b', 'a.', '.', '..', 'a[x]', 'a[]', 'a[-1]', 'a[1', 'a[', '[', 'a]', ']', 'a]b',
    'a[0]b', 'a[0]]', 'a.[0]', 'a[0]..b', 'a[0].', 'a[ 1]', 'a[1.5]', `a[${MAX_CONFIG_INDEX + 1}]`,
    'a[99999999999999999999]',
  ];
  for (const p of bad) t.equal(parseConfigPath(p), undefined, p);
});

t.test('formatConfigPath renders segments as path text', async (t) => {
  t.equal(formatConfigPath([]), '');
  t.equal(formatConfigPath([k('a'), k('b'), i(0), k('c')]), 'a.b[0].c');
  t.equal(formatConfigPath([i(0), i(1), k('x')]), '[0][1].x');
  for (const p of ['a.b[0].c', 'a[1][2]', 'x']) t.equal(formatConfigPath(parseConfigPath(p) ?? []), p);
});
