/**
 * Plain-JSON trees and the path operations the config manager needs: read, write (creating
 * objects and null-padded arrays on the way), remove, deep merge and deep copy.
 *
 * Every object this module builds gets its keys as own data properties, so keys such as
 * `__proto__` or `constructor` are ordinary keys and never reach a prototype.
 */
import type { ConfigPathSegment } from './path.js';

/** Any JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
/** A JSON object. */
export interface JsonObject {
  [key: string]: JsonValue;
}

/** True for a JSON object (not an array, not null). */
export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Sets an own enumerable property, bypassing any `__proto__` setter. */
export function putOwn(obj: JsonObject, key: string, value: JsonValue): void {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

/** The own property `key` of `obj`, or `undefined`. */
export function getOwn(obj: JsonObject, key: string): JsonValue | undefined {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

/**
 * Deep-copies `v` when it is plain JSON data (null, booleans, finite numbers, strings, arrays and
 * plain objects, without cycles).
 *
 * @returns the copy, or `undefined` when `v` is not plain JSON data.
 */
export function toJson(v: unknown): JsonValue | undefined {
  const seen = new Set<object>();
  const walk = (x: unknown): JsonValue | undefined => {
    if (x === null || typeof x === 'boolean' || typeof x === 'string') return x;
    if (typeof x === 'number') return Number.isFinite(x) ? x : undefined;
    if (typeof x !== 'object') return undefined;
    if (seen.has(x)) return undefined;
    seen.add(x);
    let out: JsonValue | undefined;
    if (Array.isArray(x)) {
      const arr: JsonValue[] = [];
      for (let i = 0; i < x.length; i++) {
        const e = walk(x[i] as unknown);
        if (e === undefined) return undefined;
        arr.push(e);
      }
      out = arr;
    } else {
      const proto = Object.getPrototypeOf(x) as unknown;
      if (proto !== Object.prototype && proto !== null) return undefined;
      const obj: JsonObject = {};
      for (const key of Object.keys(x)) {
        const e = walk((x as Record<string, unknown>)[key]);
        if (e === undefined) return undefined;
        putOwn(obj, key, e);
      }
      out = obj;
    }
    seen.delete(x);
    return out;
  };
  return walk(v);
}

/** Deep copy of a JSON value. */
export function cloneJson<T extends JsonValue>(v: T): T {
  if (Array.isArray(v)) return v.map((e) => cloneJson(e)) as T;
  if (isJsonObject(v)) {
    const out: JsonObject = {};
    for (const key of Object.keys(v)) putOwn(out, key, cloneJson(v[key] as JsonValue));
    return out as T;
  }
  return v;
}

/**
 * Deep merge: objects are merged key by key, recursively; any other override value (arrays
 * included) replaces the base value. Neither input is modified.
 */
export function deepMerge(base: JsonObject, override: JsonObject): JsonObject {
  const out = cloneJson(base);
  for (const key of Object.keys(override)) {
    const o = override[key] as JsonValue;
    const b = getOwn(out, key);
    putOwn(out, key, isJsonObject(o) && b !== undefined && isJsonObject(b) ? deepMerge(b, o) : cloneJson(o));
  }
  return out;
}

/**
 * The value at `segments` inside `root` (the live value, not a copy).
 *
 * @returns the value, or `undefined` when some step does not exist (a missing key, an index past
 *   the end, or a step into a value of the wrong kind).
 */
export function getAt(root: JsonValue, segments: readonly ConfigPathSegment[]): JsonValue | undefined {
  let cur: JsonValue = root;
  for (const seg of segments) {
    let next: JsonValue | undefined;
    if (seg.type === 'index') next = Array.isArray(cur) ? cur[seg.index] : undefined;
    else next = isJsonObject(cur) ? getOwn(cur, seg.key) : undefined;
    if (next === undefined) return undefined;
    cur = next;
  }
  return cur;
}

/**
 * Writes `value` at `segments` (non-empty), replacing whatever is in the way: a missing or
 * non-object step under a key becomes `{}`, a missing or non-array step under an index becomes
 * `[]`, and arrays are padded with `null` up to the index. Mutates and returns `root`'s
 * replacement (the same object unless the first step changed its kind).
 */
export function setAt(root: JsonValue, segments: readonly ConfigPathSegment[], value: JsonValue): JsonValue {
  const [seg, ...rest] = segments;
  if (seg === undefined) return value;
  if (seg.type === 'index') {
    const arr: JsonValue[] = Array.isArray(root) ? root : [];
    while (arr.length <= seg.index) arr.push(null);
    arr[seg.index] = setAt(arr[seg.index] as JsonValue, rest, value);
    return arr;
  }
  const obj: JsonObject = isJsonObject(root) ? root : {};
  putOwn(obj, seg.key, setAt(getOwn(obj, seg.key) ?? null, rest, value));
  return obj;
}

/**
 * Removes the value at `segments` (non-empty) in place: an object key is deleted, an array element
 * is spliced out (later elements move down).
 *
 * @returns whether something was removed.
 */
export function removeAt(root: JsonValue, segments: readonly ConfigPathSegment[]): boolean {
  const parent = getAt(root, segments.slice(0, -1));
  const last = segments[segments.length - 1];
  if (parent === undefined || last === undefined) return false;
  if (last.type === 'index') {
    if (!Array.isArray(parent) || last.index >= parent.length) return false;
    parent.splice(last.index, 1);
    return true;
  }
  if (!isJsonObject(parent) || !Object.hasOwn(parent, last.key)) return false;
  delete parent[last.key];
  return true;
}
