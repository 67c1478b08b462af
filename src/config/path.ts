/**
 * Config path syntax: dot-separated keys with `[n]` array indices (`a.b[0].c`, `a[1][2]`).
 * Keys are case-sensitive and may contain any character except `.`, `[` and `]`; surrounding
 * whitespace of the whole path is ignored; the empty path is the root.
 */

/** One step of a parsed config path. */
export type ConfigPathSegment =
  | { readonly type: 'key'; readonly key: string }
  | { readonly type: 'index'; readonly index: number };

/**
 * Largest array index a path may name. Setting through an index pads the array with nulls, so an
 * unbounded index would let one request allocate without limit.
 */
export const MAX_CONFIG_INDEX = 65_535;

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

/**
 * Parses a config path.
 *
 * Invalid: a `.` at the start, at the end or after another `.`; an empty or non-numeric `[…]`
 * (`[x]`, `[-1]`, `[]`); an unclosed `[`; a `]` without `[`; anything but `.`, `[` or the end
 * after `]`; an index above {@link MAX_CONFIG_INDEX}.
 *
 * @returns the segments (empty for the root), or `undefined` when the path is malformed.
 */
export function parseConfigPath(path: string): ConfigPathSegment[] | undefined {
  const s = path.trim();
  const out: ConfigPathSegment[] = [];
  let i = 0;
  // `true` when the next character must start a key (after a `.`).
  let needKey = false;
  while (i < s.length) {
    const c = s[i];
    if (c === '[') {
      if (needKey) return undefined;
      let j = i + 1;
      while (isDigit(s.charCodeAt(j))) j++;
      if (j === i + 1 || s[j] !== ']') return undefined;
      const index = Number(s.slice(i + 1, j));
      if (index > MAX_CONFIG_INDEX) return undefined;
      out.push({ type: 'index', index });
      i = j + 1;
      const next = s[i];
      if (next !== undefined && next !== '.' && next !== '[') return undefined;
    } else if (c === '.') {
      if (needKey || out.length === 0) return undefined;
      needKey = true;
      i++;
    } else if (c === ']') {
      return undefined;
    } else {
      let j = i;
      while (j < s.length && s[j] !== '.' && s[j] !== '[' && s[j] !== ']') j++;
      out.push({ type: 'key', key: s.slice(i, j) });
      needKey = false;
      i = j;
    }
  }
  if (needKey) return undefined;
  return out;
}

/** Renders segments back to path text (`a.b[0].c`). */
export function formatConfigPath(segments: readonly ConfigPathSegment[]): string {
  let out = '';
  for (const seg of segments) {
    if (seg.type === 'index') out += `[${seg.index}]`;
    else out += out === '' ? seg.key : `.${seg.key}`;
  }
  return out;
}
