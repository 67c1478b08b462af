/**
 * scripts/quickstart.sh as the README's quickstart runs it, minus the machine set-up and the build
 * (done by the suite's own set-up; `npm ci` here would pull node_modules from under the running
 * suites): it starts an engine for its own directory, prepares examples/quickstart, prints the
 * job's progress and a DSN that answers, and leaves the engine running; a second run reuses that
 * engine and the cached states.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { REPO_ROOT, httpFetch } from '../helpers/engine.js';
import { needDocker, psqlAt, wipe } from '../helpers/prepare.js';

interface Run { code: number | null; out: string }

function quickstart(dir: string): Promise<Run> {
  const env: NodeJS.ProcessEnv = {
    ...process.env, SQLRS_QUICKSTART_DIR: dir, SQLRS_QUICKSTART_SETUP: '0', SQLRS_QUICKSTART_BUILD: '0', SQLRS_QUICKSTART_TIMEOUT: '120',
  };
  delete env['NODE_OPTIONS']; // the test runner's loader hooks are not for the engine
  const proc = spawn('bash', [join(REPO_ROOT, 'scripts', 'quickstart.sh')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const timer = setTimeout(() => proc.kill('SIGKILL'), 180_000);
  return new Promise((res) => proc.once('close', (code) => { clearTimeout(timer); res({ code, out }); }));
}

const dsnOf = (out: string): string => /^ {2}dsn: +(\S+)$/m.exec(out)?.[1] ?? '';

t.test('quickstart prepares the example, prints its progress and a DSN that answers, and leaves the engine running', async (t) => {
  if (!needDocker(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'sqlrs-quickstart-'));
  const json = join(dir, 'engine.json');
  t.teardown(async () => {
    if (existsSync(json)) {
      const pid = Number((JSON.parse(readFileSync(json, 'utf8')) as { pid: number }).pid);
      try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
      while (existsSync(`/proc/${pid}`)) await new Promise((r) => setTimeout(r, 100));
    }
    wipe(dir, join(dir, 'state-store'));
  });

  const first = await quickstart(dir);
  t.equal(first.code, 0, first.code === 0 ? 'exit 0' : first.out);
  for (const n of [1, 2, 3, 4, 5]) t.match(first.out, new RegExp(`^quickstart: == ${n}/5 `, 'm'), `step ${n} is announced`);
  for (const line of ['status  queued', 'status  running', 'task    execute-0 running', 'log     psql: CREATE TABLE',
    'log     psql: INSERT 0 6', 'task    prepare-instance succeeded', 'status  succeeded']) {
    t.match(first.out, new RegExp(`^ {2}\\d\\d:\\d\\d:\\d\\d\\.\\d{3} {2}${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), `progress: ${line.replace(/ +/g, ' ')}`);
  }
  t.match(first.out, /^ Italo Calvino +\| +2 \| +1$/m, 'the script\'s own query ran through the DSN');
  const dsn = dsnOf(first.out);
  t.match(dsn, /^postgres:\/\/sqlrs@127\.0\.0\.1:\d+\/postgres$/, 'a DSN is printed');
  t.equal(psqlAt(dsn, 'select count(*) from books'), '6', 'the DSN answers with the example data');
  t.equal(psqlAt(dsn, 'select string_agg(title, \', \' order by title) from books_on_loan'), 'Invisible Cities, The Dispossessed');
  t.match(first.out, /^ {2}stop the engine: kill \d+ /m, 'says how to stop the engine');

  const info = JSON.parse(readFileSync(json, 'utf8')) as { endpoint: string; pid: number };
  t.equal((await httpFetch(`http://${info.endpoint}`, '/v1/health')).status, 200, 'the engine is still running after the script');

  const second = await quickstart(dir);
  t.equal(second.code, 0, second.code === 0 ? 'second run: exit 0' : second.out);
  t.match(second.out, new RegExp(`an engine is already running for .* \\(pid ${info.pid}\\): using it`), 'the second run reuses the engine');
  t.notMatch(second.out, /psql: start/, 'and the cached states: no script runs again');
  const dsn2 = dsnOf(second.out);
  t.not(dsn2, dsn, 'a new instance');
  t.equal(psqlAt(dsn2, 'select count(*) from loans'), '4', 'which answers too');
});
