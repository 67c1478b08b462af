/**
 * The engine's log as the engine process writes it: `log.level` applied live through the config API,
 * the size bound from the environment, the last lines of a failed start, and human-readable lines
 * when stderr is a terminal (a real pseudo-terminal, through util-linux `script`).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ENGINE_BIN, runEngineToExit, startEngine } from '../helpers/engine.js';

type Line = Record<string, unknown>;
const records = (file: string): Line[] =>
  readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line);

function scratch(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'sqlrs-log-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('engine applies log.level set through /v1/config at once', async (t) => {
  const eng = await startEngine(t);
  const set = async (level: string): Promise<void> => {
    const r = await eng.fetch('/v1/config', { method: 'PATCH', body: JSON.stringify({ path: 'log.level', value: level }) });
    t.equal(r.status, 200, `log.level=${level} accepted`);
  };
  await set('warn');
  await eng.fetch('/v1/instances');
  await set('info');
  await eng.fetch('/v1/states');
  t.equal((await eng.stop()).code, 0);
  const paths = records(eng.logPath).filter((r) => r['msg'] === 'http request').map((r) => r['path']);
  t.notOk(paths.includes('/v1/instances'), 'an info line is dropped while the level is warn (in a child logger made at start-up)');
  t.ok(paths.includes('/v1/states'), 'and written again once the level is info');
});

t.test('engine keeps logs/engine.log under SQLRS_LOG_MAX_BYTES × SQLRS_LOG_FILES', async (t) => {
  const maxBytes = 4096;
  const eng = await startEngine(t, { env: { SQLRS_LOG_MAX_BYTES: '4K', SQLRS_LOG_FILES: '2' } });
  for (let i = 0; i < 200; i++) await eng.fetchRaw(`/v1/health?i=${i}`); // ≈ 40 KiB of request lines
  t.equal((await eng.stop()).code, 0);
  const dir = join(eng.dir, 'logs');
  t.same(readdirSync(dir).sort(), ['engine.log', 'engine.log.1'], 'the log and one rotated copy');
  let total = 0;
  let longest = 0;
  for (const f of readdirSync(dir)) {
    total += statSync(join(dir, f)).size;
    for (const l of readFileSync(join(dir, f), 'utf8').split('\n')) longest = Math.max(longest, Buffer.byteLength(l) + 1);
  }
  t.ok(total <= 2 * (maxBytes + longest), `${total} bytes ≤ 2 × (${maxBytes} + one ${longest}-byte line)`);
  t.match(records(join(dir, 'engine.log')).at(-1), { msg: 'engine status', to: 'stopped' }, 'the shutdown line is the last line of engine.log');
});

t.test('engine that fails to start has its last lines in the log before it exits', async (t) => {
  const busy = await startEngine(t);
  const dir = scratch(t);
  const r = await runEngineToExit(['--listen', busy.endpoint, '--write-engine-json', join(dir, 'engine.json')], { SQLRS_STATE_STORE: join(dir, 'store') });
  t.equal(r.code, 1, 'exit code 1');
  const lines = records(join(dir, 'logs', 'engine.log'));
  t.match(lines.find((l) => l['msg'] === 'engine start failed'), { level: 'error', error: /cannot listen/ }, 'the reason is logged');
  t.match(lines.at(-1), { msg: 'engine status', to: 'failed' }, 'the very last line is in the file although the process exits at once');
});

t.test('engine refuses a bad log bound with exit code 1 and a reason', async (t) => {
  const dir = scratch(t);
  const args = ['--listen', '127.0.0.1:0', '--write-engine-json', join(dir, 'engine.json')];
  const files = await runEngineToExit(args, { SQLRS_STATE_STORE: join(dir, 'store'), SQLRS_LOG_FILES: '1' });
  t.equal(files.code, 1);
  t.match(files.stderr, /^sqlrs-engine: SQLRS_LOG_FILES must be a whole number from 2 to 100, not "1"\n$/);
  const bytes = await runEngineToExit(args, { SQLRS_STATE_STORE: join(dir, 'store'), SQLRS_LOG_MAX_BYTES: '10 parsecs' });
  t.equal(bytes.code, 1);
  t.match(bytes.stderr, /SQLRS_LOG_MAX_BYTES must be a size of at least 1K/);
});

t.test('engine run in a terminal prints human-readable lines on stderr and JSON lines to the file', async (t) => {
  const dir = scratch(t);
  const cmd = [process.execPath, ENGINE_BIN, '--listen', '127.0.0.1:0', '--write-engine-json', join(dir, 'engine.json'), '--idle-timeout', '1s', '--version', 'tty-test']
    .map((a) => `'${a}'`).join(' ');
  const env: NodeJS.ProcessEnv = { ...process.env, SQLRS_STATE_STORE: join(dir, 'store'), TERM: 'xterm' };
  delete env['NODE_OPTIONS'];
  // `script` gives the engine a pseudo-terminal as stdin, stdout and stderr; the engine idles out after 1 s.
  const proc = spawn('script', ['-qefc', cmd, '/dev/null'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
  const code = await new Promise<number | null>((res) => proc.once('exit', (c) => res(c)));
  clearTimeout(timer);
  t.equal(code, 0, 'the engine exited by itself');
  // eslint-disable-next-line no-control-regex
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '').replace(/\r/g, '');
  t.match(out, /\x1b\[\d+m/, 'in colour');
  t.match(plain, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(\d+\): sqlrs-engine version=tty-test \{"root":"[^"]+"\}$/m, 'time, level (with the pid), message and fields on one line');
  t.match(plain, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: engine status \{"from":"stopping","to":"stopped"\}$/m, 'down to the last line');
  t.notMatch(plain, /^\{"level"/m, 'no JSON on the terminal');
  t.match(records(join(dir, 'logs', 'engine.log')).at(-1), { level: 'info', msg: 'engine status', to: 'stopped' }, 'the file has JSON lines');
});
