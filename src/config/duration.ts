/**
 * Duration text in the syntax the `sqlrs` CLI and the reference engine use: `30s`, `1h30m`, `1.5h`,
 * `300ms`, `0`. Parsing and formatting are exact to the nanosecond (BigInt internally), so a value
 * read from a flag or from `config.json` round-trips to the same text the reference would print
 * (`10m` → `10m0s`).
 */

const NS_PER_MS = 1_000_000n;
/** Largest magnitude a duration may have: durations are signed 64-bit nanosecond counts. */
const INT64_MAX = (1n << 63n) - 1n;
const LIMIT = 1n << 63n;

/** Nanoseconds per unit. `µs` is U+00B5 (micro sign), `μs` is U+03BC (Greek small mu). */
const UNITS: ReadonlyMap<string, bigint> = new Map([
  ['ns', 1n],
  ['us', 1_000n],
  ['\u00b5s', 1_000n],
  ['\u03bcs', 1_000n],
  ['ms', 1_000_000n],
  ['s', 1_000_000_000n],
  ['m', 60_000_000_000n],
  ['h', 3_600_000_000_000n],
]);

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

/**
 * Parses a duration into nanoseconds.
 *
 * Grammar: `[-+]?([0-9]*(\.[0-9]*)?unit)+` where each number has at least one digit before or after
 * the point and `unit` is one of `ns us µs μs ms s m h`; the text `0` (optionally signed) alone is
 * also zero. Magnitudes beyond the signed 64-bit nanosecond range are rejected.
 *
 * @returns the duration in nanoseconds, or `undefined` when the text is not a valid duration.
 */
export function parseGoDurationNs(text: string): bigint | undefined {
  let s = text;
  let neg = false;
  const first = s[0];
  if (first === '-' || first === '+') {
    neg = first === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0n;
  if (s === '') return undefined;
  let total = 0n;
  let i = 0;
  while (i < s.length) {
    if (!(s[i] === '.' || isDigit(s[i]))) return undefined;
    // Integer part: exact, but it must fit in 63 bits on its own.
    const intStart = i;
    let whole = 0n;
    while (isDigit(s[i])) {
      whole = whole * 10n + BigInt(s.charCodeAt(i) - 48);
      if (whole > LIMIT) return undefined;
      i++;
    }
    const pre = i > intStart;
    // Fraction: digits past 63 bits of precision are consumed but ignored.
    let frac = 0n;
    let scale = 1;
    let post = false;
    if (s[i] === '.') {
      i++;
      const fracStart = i;
      let overflow = false;
      while (isDigit(s[i])) {
        if (!overflow) {
          const next = frac * 10n + BigInt(s.charCodeAt(i) - 48);
          if (frac > INT64_MAX / 10n || next > LIMIT) {
            overflow = true;
          } else {
            frac = next;
            scale *= 10;
          }
        }
        i++;
      }
      post = i > fracStart;
    }
    if (!pre && !post) return undefined;
    const unitStart = i;
    while (i < s.length && s[i] !== '.' && !isDigit(s[i])) i++;
    if (i === unitStart) return undefined;
    const unit = UNITS.get(s.slice(unitStart, i));
    if (unit === undefined) return undefined;
    if (whole > LIMIT / unit) return undefined;
    let v = whole * unit;
    if (frac > 0n) {
      // Same floating-point step as the reference so that fractions of hours round identically.
      v += BigInt(Math.trunc(Number(frac) * (Number(unit) / scale)));
      if (v > LIMIT) return undefined;
    }
    total += v;
    if (total > LIMIT) return undefined;
  }
  if (neg) return -total;
  if (total > INT64_MAX) return undefined;
  return total;
}

/**
 * Parses a duration (`10m`, `1h30m`, `1.5s`, `-1s`, `0`) into milliseconds.
 *
 * Sub-millisecond parts are kept as a fraction (`500us` → `0.5`).
 *
 * @returns milliseconds, or `undefined` for empty or malformed text (`''`, `1`, `1x`, `.s`).
 */
export function parseGoDuration(text: string): number | undefined {
  const ns = parseGoDurationNs(text);
  if (ns === undefined) return undefined;
  const whole = ns / NS_PER_MS;
  return Number(whole) + Number(ns - whole * NS_PER_MS) / 1e6;
}

/** Writes `v / 10^prec` as `.ddd` without trailing zeros (nothing when the fraction is zero). */
function fracDigits(v: bigint, prec: number): { text: string; rest: bigint } {
  let digits = '';
  let printed = false;
  for (let k = 0; k < prec; k++) {
    const d = v % 10n;
    printed = printed || d !== 0n;
    if (printed) digits = d.toString() + digits;
    v /= 10n;
  }
  return { text: printed ? `.${digits}` : '', rest: v };
}

/**
 * Formats nanoseconds the way the reference prints durations: `0s`, `1.5s`, `10m0s`, `2h0m0s`,
 * `500µs`, `-1s`. Values under one second use the largest of `ns`, `µs`, `ms` that keeps the
 * integer part non-zero.
 */
export function formatGoDurationNs(ns: bigint): string {
  const neg = ns < 0n;
  let u = neg ? -ns : ns;
  let out: string;
  if (u === 0n) return '0s';
  if (u < 1_000_000_000n) {
    let prec: number;
    let unit: string;
    if (u < 1_000n) {
      prec = 0;
      unit = 'ns';
    } else if (u < 1_000_000n) {
      prec = 3;
      unit = '\u00b5s';
    } else {
      prec = 6;
      unit = 'ms';
    }
    const f = fracDigits(u, prec);
    out = `${f.rest}${f.text}${unit}`;
  } else {
    const f = fracDigits(u, 9);
    u = f.rest;
    out = `${u % 60n}${f.text}s`;
    u /= 60n;
    if (u > 0n) {
      out = `${u % 60n}m${out}`;
      u /= 60n;
      if (u > 0n) out = `${u}h${out}`;
    }
  }
  return neg ? `-${out}` : out;
}

/**
 * Formats milliseconds as reference duration text (`600000` → `10m0s`, `0.5` → `500µs`).
 *
 * The value is rounded to whole nanoseconds and clamped to the signed 64-bit nanosecond range;
 * `NaN` formats as `0s`. Never throws, so it is safe in response encoders.
 */
export function formatGoDuration(ms: number): string {
  if (Number.isNaN(ms)) return '0s';
  const whole = Math.trunc(ms);
  let ns: bigint;
  if (!Number.isFinite(whole) || Math.abs(whole) > 1e13) {
    ns = ms > 0 ? INT64_MAX : -LIMIT;
  } else {
    ns = BigInt(whole) * NS_PER_MS + BigInt(Math.round((ms - whole) * 1e6));
  }
  if (ns > INT64_MAX) ns = INT64_MAX;
  if (ns < -LIMIT) ns = -LIMIT;
  return formatGoDurationNs(ns);
}
