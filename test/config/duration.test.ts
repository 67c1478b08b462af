import t from 'tap';
import {
  formatGoDuration,
  formatGoDurationNs,
  parseGoDuration,
  parseGoDurationNs,
} from '../../src/config/duration.js';

const MAX = (1n << 63n) - 1n;
const MIN = -(1n << 63n);

t.test('parseGoDuration reads valid durations as milliseconds', async (t) => {
  const cases: [string, number][] = [
    ['0', 0],
    ['-0', 0],
    ['+0', 0],
    ['0s', 0],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
    ['-1s', -1000],
    ['+1s', 1000],
    ['300ms', 300],
    ['2m0s', 120_000],
    ['10m', 600_000],
    ['10m0s', 600_000],
    ['30s', 30_000],
    ['.5s', 500],
    ['1.s', 1000],
    ['1.5s', 1500],
    ['1h1h', 7_200_000],
    ['1h2m3s4ms5us6ns', 3_723_004.005006],
    ['500us', 0.5],
    ['500\u00b5s', 0.5],
    ['500\u03bcs', 0.5],
    ['1ns', 0.000001],
    ['-1.5h', -5_400_000],
    ['0.0s', 0],
    ['00s', 0],
  ];
  for (const [text, ms] of cases) t.equal(parseGoDuration(text), ms, text);
});

t.test('parseGoDuration rejects malformed text', async (t) => {
  for (const text of ['', '1', '1x', '.s', '-.s', '.', '-', '+', '00', 's', '1S', '1sec', ' 1s', '1s ', '1.2.3s', '1h-1m', '--1s', 'h1', '1e3s']) {
    t.equal(parseGoDuration(text), undefined, JSON.stringify(text));
  }
});

t.test('parseGoDurationNs is exact across the signed 64-bit range', async (t) => {
  t.equal(parseGoDurationNs('9223372036854775807ns'), MAX);
  t.equal(parseGoDurationNs('9223372036854775808ns'), undefined);
  t.equal(parseGoDurationNs('-9223372036854775808ns'), MIN);
  t.equal(parseGoDurationNs('-9223372036854775809ns'), undefined);
  t.equal(parseGoDurationNs('9223372036854775.807us'), MAX);
  t.equal(parseGoDurationNs('9223372036.854775807s'), MAX);
  t.equal(parseGoDurationNs('9223372036.854775808s'), undefined);
  t.equal(parseGoDurationNs('9223372036.854775809s'), undefined);
  t.equal(parseGoDurationNs('-9223372036.854775808s'), MIN);
  t.equal(parseGoDurationNs('2562047h'), 2_562_047n * 3_600_000_000_000n);
  t.equal(parseGoDurationNs('2562048h'), undefined);
  t.equal(parseGoDurationNs('99999999999999999999s'), undefined);
  t.equal(parseGoDurationNs('9007199254740993ns'), 9_007_199_254_740_993n);
  t.equal(parseGoDurationNs('5000000000000000000ns5000000000000000000ns'), undefined);
  t.equal(parseGoDurationNs('9223372036854775807ns1ns'), undefined);
  t.equal(parseGoDurationNs('0.3333333333333333333h'), 20n * 60_000_000_000n);
  t.equal(parseGoDurationNs('0.100000000000000000000h'), 6n * 60_000_000_000n);
  t.equal(
    parseGoDurationNs('0.830103483285477580700h'),
    49n * 60_000_000_000n + 48n * 1_000_000_000n + 372_539_827n,
  );
  // Fraction digits beyond 63 bits of precision are consumed and ignored.
  t.equal(parseGoDurationNs('1.00000000000000000000000000001s'), 1_000_000_000n);
  // …and the kept digits go through the same float64 step as the reference, which rounds up here.
  t.equal(parseGoDurationNs('1.99999999999999999999999999999s'), 2_000_000_000n);
});

t.test('formatGoDurationNs prints durations like the reference', async (t) => {
  const cases: [bigint, string][] = [
    [0n, '0s'],
    [1n, '1ns'],
    [1_100n, '1.1\u00b5s'],
    [2_200_000n, '2.2ms'],
    [3_300_000_000n, '3.3s'],
    [245_000_000_000n, '4m5s'],
    [245_001_000_000n, '4m5.001s'],
    [18_367_001_000_000n, '5h6m7.001s'],
    [480_000_000_001n, '8m0.000000001s'],
    [MAX, '2562047h47m16.854775807s'],
    [MIN, '-2562047h47m16.854775808s'],
    [-1_000_000_000n, '-1s'],
    [999n, '999ns'],
    [1_000n, '1\u00b5s'],
    [1_000_000n, '1ms'],
    [1_000_000_000n, '1s'],
  ];
  for (const [ns, text] of cases) t.equal(formatGoDurationNs(ns), text, text);
});

t.test('formatGoDuration prints milliseconds like the reference', async (t) => {
  t.equal(formatGoDuration(600_000), '10m0s');
  t.equal(formatGoDuration(7_200_000), '2h0m0s');
  t.equal(formatGoDuration(5_400_000), '1h30m0s');
  t.equal(formatGoDuration(1500), '1.5s');
  t.equal(formatGoDuration(0), '0s');
  t.equal(formatGoDuration(-0), '0s');
  t.equal(formatGoDuration(0.5), '500\u00b5s');
  t.equal(formatGoDuration(300), '300ms');
  t.equal(formatGoDuration(-1000), '-1s');
  t.equal(formatGoDuration(0.000001), '1ns');
  t.equal(formatGoDuration(1.0000004), '1ms');
  t.equal(formatGoDuration(Number.NaN), '0s');
  t.equal(formatGoDuration(Number.POSITIVE_INFINITY), '2562047h47m16.854775807s');
  t.equal(formatGoDuration(Number.NEGATIVE_INFINITY), '-2562047h47m16.854775808s');
  t.equal(formatGoDuration(9.3e12), '2562047h47m16.854775807s');
  t.equal(formatGoDuration(-9.3e12), '-2562047h47m16.854775808s');
});

t.test('parseGoDuration and formatGoDuration round-trip', async (t) => {
  for (const text of ['10m0s', '1h30m0s', '1.5s', '300ms', '500\u00b5s', '-1s', '0s', '2562047h47m16.854775807s']) {
    t.equal(formatGoDurationNs(parseGoDurationNs(text) ?? 0n), text, text);
  }
  t.equal(formatGoDuration(parseGoDuration('10m') ?? -1), '10m0s');
});
