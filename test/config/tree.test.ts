import t from 'tap';
import { parseConfigPath } from '../../src/config/path.js';
import {
  type JsonObject,
  type JsonValue,
  cloneJson,
  deepMerge,
  getAt,
  getOwn,
  isJsonObject,
  putOwn,
  removeAt,
  setAt,
  toJson,
} from '../../src/config/tree.js';

const p = (path: string) => parseConfigPath(path) ?? [];

t.test('isJsonObject accepts objects only', async (t) => {
  t.equal(isJsonObject({}), true);
  t.equal(isJsonObject([]), false);
  t.equal(isJsonObject(null), false);
  t.equal(isJsonObject('x'), false);
});

t.test('putOwn and getOwn treat __proto__ as an ordinary key', async (t) => {
  const o: JsonObject = {};
  putOwn(o, '__proto__', { polluted: true });
  t.equal(Object.getPrototypeOf(o), Object.prototype);
  t.same(getOwn(o, '__proto__'), { polluted: true });
  t.equal(getOwn(o, 'constructor'), undefined);
  t.equal(getOwn(o, 'toString'), undefined);
  t.equal(JSON.stringify(o), '{"__proto__":{"polluted":true}}');
});

t.test('toJson copies plain JSON data and rejects anything else', async (t) => {
  const src = { a: [1, 'x', null, true, { b: 2 }] };
  const copy = toJson(src);
  t.same(copy, src);
  t.not(copy, src);
  t.same(toJson(Object.create(null) as object), {});
  t.equal(toJson(undefined), undefined);
  t.equal(toJson(() => 1), undefined);
  t.equal(toJson(Number.NaN), undefined);
  t.equal(toJson(Number.POSITIVE_INFINITY), undefined);
  t.equal(toJson(1n), undefined);
  t.equal(toJson(new Date()), undefined);
  t.equal(toJson({ a: undefined }), undefined);
  t.equal(toJson([undefined]), undefined);
  const cyc: Record<string, unknown> = {};
  cyc.self = cyc;
  t.equal(toJson(cyc), undefined);
  const shared = { x: 1 };
  t.same(toJson({ a: shared, b: shared }), { a: { x: 1 }, b: { x: 1 } });
  const parsed = JSON.parse('{"__proto__":{"x":1}}') as unknown;
  const safe = toJson(parsed) as JsonObject;
  t.equal(Object.getPrototypeOf(safe), Object.prototype);
  t.same(getOwn(safe, '__proto__'), { x: 1 });
});

t.test('cloneJson makes an independent deep copy', async (t) => {
  const src: JsonObject = { a: { b: [1, { c: 2 }] } };
  const copy = cloneJson(src);
  t.same(copy, src);
  ((copy.a as JsonObject).b as JsonValue[]).push(3);
  t.same(src, { a: { b: [1, { c: 2 }] } });
  t.equal(cloneJson(5), 5);
});

t.test('deepMerge merges objects recursively and replaces other values', async (t) => {
  const base: JsonObject = { a: { x: 1, y: 2 }, arr: [1, 2, 3], s: 'v', o: { k: 1 } };
  const over: JsonObject = { a: { y: 3, z: 4 }, arr: [9], s: { now: 'obj' }, o: null, n: 1 };
  const merged = deepMerge(base, over);
  t.same(merged, { a: { x: 1, y: 3, z: 4 }, arr: [9], s: { now: 'obj' }, o: null, n: 1 });
  t.same(base, { a: { x: 1, y: 2 }, arr: [1, 2, 3], s: 'v', o: { k: 1 } });
  (merged.s as JsonObject).now = 'changed';
  t.same(over.s, { now: 'obj' });
});

t.test('getAt walks keys and indices', async (t) => {
  const root: JsonObject = { a: { b: [10, { c: 'x' }] }, n: null };
  t.equal(getAt(root, p('a.b[0]')), 10);
  t.equal(getAt(root, p('a.b[1].c')), 'x');
  t.equal(getAt(root, p('n')), null);
  t.equal(getAt(root, []), root);
  t.equal(getAt(root, p('a.b[2]')), undefined);
  t.equal(getAt(root, p('a.b.c')), undefined);
  t.equal(getAt(root, p('a[0]')), undefined);
  t.equal(getAt(root, p('n.x')), undefined);
  t.equal(getAt(root, p('missing')), undefined);
  t.equal(getAt(root, p('constructor')), undefined);
});

t.test('setAt creates objects and null-padded arrays on the way', async (t) => {
  const root: JsonObject = {};
  setAt(root, p('a.b[2].c'), 1);
  t.same(root, { a: { b: [null, null, { c: 1 }] } });
  setAt(root, p('a.b[0]'), 'x');
  t.same(root, { a: { b: ['x', null, { c: 1 }] } });
  setAt(root, p('a.b'), 'scalar');
  setAt(root, p('a.b.d'), true);
  t.same(root, { a: { b: { d: true } } });
  setAt(root, p('a.b[1]'), 2);
  t.same(root, { a: { b: [null, 2] } });
  setAt(root, p('m[1][0]'), 'deep');
  t.same(root.m, [null, ['deep']]);
  t.same(setAt(5, [], 'whole'), 'whole');
  t.same(setAt(null, p('[1]'), 'x'), [null, 'x']);
  setAt(root, p('__proto__.polluted'), true);
  t.equal(Object.getPrototypeOf(root), Object.prototype);
  t.equal(({} as Record<string, unknown>).polluted, undefined);
  t.same(getOwn(root, '__proto__'), { polluted: true });
});

t.test('removeAt deletes keys and splices array elements', async (t) => {
  const root: JsonObject = { a: { b: [1, 2, 3], c: 'x' }, __x: null };
  t.equal(removeAt(root, p('a.b[1]')), true);
  t.same(root.a, { b: [1, 3], c: 'x' });
  t.equal(removeAt(root, p('a.c')), true);
  t.same(root.a, { b: [1, 3] });
  t.equal(removeAt(root, p('a.c')), false);
  t.equal(removeAt(root, p('a.b[5]')), false);
  t.equal(removeAt(root, p('a[0]')), false);
  t.equal(removeAt(root, p('a.b.x')), false);
  t.equal(removeAt(root, p('zz.y')), false);
  t.equal(removeAt(root, p('constructor')), false);
  t.equal(removeAt(root, []), false);
  t.equal(removeAt(root, p('__x')), true);
  t.same(root, { a: { b: [1, 3] } });
});
