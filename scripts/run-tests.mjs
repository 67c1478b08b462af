#!/usr/bin/env node
/**
 * `npm test` after the build: runs every tap suite with coverage, including the code that runs in
 * worker threads (the fs pool's threads and the container worker).
 *
 * tap measures coverage per process (the test processes and the engine processes they start), but
 * not inside worker threads. Node writes the coverage of every thread when NODE_V8_COVERAGE is set,
 * so the suites run with it pointing at a scratch directory; afterwards the worker threads' files
 * (`coverage-<pid>-<time>-<threadId>.json` with a threadId other than 0), limited to this
 * project's `src/` and `dist/`, join tap's own coverage data and `tap report` checks the whole
 * against the thresholds in `.taprc`. The exit code is non-zero when a test failed or coverage is
 * below the thresholds.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ours = [pathToFileURL(join(root, 'src')).href + '/', pathToFileURL(join(root, 'dist')).href + '/'];
const scratch = mkdtempSync(join(tmpdir(), 'sqlrs-v8cov-'));
const tapBin = join(root, 'node_modules', '.bin', 'tap');

function run(args, env) {
  const r = spawnSync(tapBin, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

let code = 1;
try {
  // The suites, with tap's own coverage check deferred to the report below.
  code = run([...process.argv.slice(2), '--allow-incomplete-coverage', '--coverage-report=none'], { NODE_V8_COVERAGE: scratch });
  const out = join(root, '.tap', 'coverage');
  mkdirSync(out, { recursive: true });
  let threads = 0;
  for (const name of readdirSync(scratch)) {
    const m = /^coverage-\d+-\d+-(\d+)\.json$/.exec(name);
    if (!m || m[1] === '0') continue; // main threads: tap has measured them already
    const data = JSON.parse(readFileSync(join(scratch, name), 'utf8'));
    const result = (data.result ?? []).filter((s) => ours.some((p) => String(s.url).startsWith(p)));
    if (result.length === 0) continue;
    const maps = {};
    for (const s of result) if (data['source-map-cache']?.[s.url]) maps[s.url] = data['source-map-cache'][s.url];
    writeFileSync(join(out, `thread-${name}`), JSON.stringify({ result, 'source-map-cache': maps }));
    threads++;
  }
  console.log(`# coverage: ${threads} worker-thread coverage files merged`);
  const report = run(['report', 'text']);
  if (code === 0) code = report;
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
process.exit(code);
