/**
 * SIGKILL while actors are mid-message: a child process (`test/fixtures/crash-child.ts`) runs the
 * actor runtime over a SQLite store with 4 counter actors and N messages, some of which start slow
 * work. The child is SIGKILLed repeatedly — at chosen points inside and around the commit
 * transaction and the work-result delivery, and at random moments — and restarted on the same
 * store without new messages, until it finishes. Then every message must have been applied
 * exactly once: counters equal the sums, one effect row per message and per work result, and
 * nothing left in the mailboxes or the work outbox.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import t from 'tap';
import { ACTORS, KIND, isSlow, valueOf, type CounterState } from '../../fixtures/crash-model.js';

const N = 600;
const CHILD = fileURLToPath(new URL('../../fixtures/crash-child.ts', import.meta.url));
/** The TypeScript loader this test runs under, reused for the child. */
const LOADER = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));

interface RunResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; killedAfterMs?: number }

function runChild(dir: string, args: string[], randomKillMs: number | undefined): Promise<RunResult> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' };
    delete env['NODE_OPTIONS'];
    const child = spawn(process.execPath, [...LOADER, CHILD, dir, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killTimer: NodeJS.Timeout | undefined;
    let killedAfterMs: number | undefined;
    const guard = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      const wasReady = stdout.includes('ready\n');
      stdout += d;
      if (!wasReady && stdout.includes('ready\n') && randomKillMs !== undefined) {
        const readyAt = Date.now();
        killTimer = setTimeout(() => { killedAfterMs = Date.now() - readyAt; child.kill('SIGKILL'); }, randomKillMs);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      if (killTimer) clearTimeout(killTimer);
      const r: RunResult = { code, signal, stdout, stderr };
      if (killedAfterMs !== undefined) r.killedAfterMs = killedAfterMs;
      resolve(r);
    });
  });
}

function lastProgress(stdout: string): string {
  const m = [...stdout.matchAll(/^(?:progress|done) (\d+)$/gm)];
  return m.length > 0 ? (m[m.length - 1]?.[1] ?? '?') : '0';
}

function randInt(lo: number, hi: number): number { return lo + Math.floor(Math.random() * (hi - lo + 1)); }

t.test('actor runtime killed with SIGKILL mid-message loses no message and applies no effect twice', async (t) => {
  t.ok(LOADER.length > 0, 'the TypeScript loader is known (run this file with tap)');
  const dir = t.testdir();

  type Step = { die: string } | { randomKillMs: number };
  const phases = ['transition', 'apply', 'before-ack', 'after-ack', 'committed', 'perform', 'work-result', 'complete-work'];
  const plan: Step[] = [
    { randomKillMs: randInt(50, 400) },
    ...phases.map((p) => ({ die: `${p}:${randInt(1, 10)}` })),
    ...Array.from({ length: 5 }, () => ({ randomKillMs: randInt(50, 400) })),
  ];
  t.comment(`plan: ${plan.map((s) => ('die' in s ? `die ${s.die}` : `kill after ${s.randomKillMs} ms`)).join(', ')}`);

  let finished = false;
  let randomKills = 0;
  const diedAt = new Set<string>();
  for (const [i, step] of plan.entries()) {
    const args = [...(i === 0 ? ['--seed', String(N)] : []), ...('die' in step ? ['--die', step.die] : [])];
    const r = await runChild(dir, args, 'randomKillMs' in step ? step.randomKillMs : undefined);
    const what = 'die' in step ? `die at ${step.die}` : `kill after ${step.randomKillMs} ms`;
    t.comment(`run ${i} (${what}): code=${r.code} signal=${r.signal} applied=${lastProgress(r.stdout)}`);
    if (r.code === 0 && r.stdout.includes('done ')) { finished = true; break; }
    if (r.signal !== 'SIGKILL') { t.fail(`run ${i} ended unexpectedly (code ${r.code}); stderr: ${r.stderr}`); return; }
    if (!r.stdout.includes('ready\n') && i === 0) { t.fail('the seeding run died before it was ready'); return; }
    if ('die' in step) diedAt.add(step.die.split(':')[0] ?? ''); else randomKills++;
  }
  t.same([...diedAt].sort(), [...phases].sort(), 'the child died at every chosen point');
  t.ok(randomKills >= 5, `${randomKills} random kills landed before the work was finished`);

  for (let attempt = 0; !finished && attempt < 3; attempt++) {
    const r = await runChild(dir, [], undefined);
    t.comment(`final run: code=${r.code} signal=${r.signal} applied=${lastProgress(r.stdout)}`);
    if (r.stderr.trim() !== '') t.comment(`stderr: ${r.stderr.trim()}`);
    finished = r.code === 0 && r.stdout.includes('done ');
  }
  t.ok(finished, 'a run finally processed everything');

  const db = new Database(join(dir, 'state.db'), { readonly: true });
  t.teardown(() => db.close());
  const one = <T>(sql: string): T => db.prepare(sql).get() as T;
  const keys = Array.from({ length: N }, (_, k) => k);
  const slow = keys.filter(isSlow);
  const expectedSum = keys.reduce((a, k) => a + valueOf(k), 0);
  const expectedWorkSum = slow.reduce((a, k) => a + valueOf(k), 0);

  const applied = one<{ n: number; keys: number; sum: number }>('SELECT COUNT(*) AS n, COUNT(DISTINCT key) AS keys, COALESCE(SUM(value), 0) AS sum FROM crash_applied');
  t.equal(applied.keys, N, 'every message was applied (no message lost)');
  t.equal(applied.n, N, 'no message was applied twice (one effect row each)');
  t.equal(applied.sum, expectedSum, 'effect rows carry the right values');
  const dup = db.prepare('SELECT key, COUNT(*) AS n FROM crash_applied GROUP BY key HAVING n > 1').all();
  t.same(dup, [], 'no duplicated effect rows');

  const states = (db.prepare('SELECT actor_id, status, state_json, failure FROM actors WHERE kind = ?').all(KIND) as { actor_id: string; status: string; state_json: string; failure: string | null }[]);
  t.equal(states.length, ACTORS, 'every counter actor has a state');
  t.same(states.filter((s) => s.status !== 'active'), [], 'no actor failed');
  const total = states.map((s) => JSON.parse(s.state_json) as CounterState).reduce(
    (a, s) => ({ sum: a.sum + s.sum, count: a.count + s.count, workSum: a.workSum + s.workSum, workCount: a.workCount + s.workCount }),
    { sum: 0, count: 0, workSum: 0, workCount: 0 },
  );
  t.same(total, { sum: expectedSum, count: N, workSum: expectedWorkSum, workCount: slow.length }, 'counter states equal the sums (state and effects agree)');

  const workApplied = one<{ n: number; ids: number }>('SELECT COUNT(*) AS n, COUNT(DISTINCT work_id) AS ids FROM crash_work_applied');
  t.equal(workApplied.ids, slow.length, 'every work result reached its actor');
  t.equal(workApplied.n, slow.length, 'no work result was applied twice');
  const runs = one<{ n: number; ids: number }>('SELECT COUNT(*) AS n, COUNT(DISTINCT work_id) AS ids FROM crash_work_runs');
  t.equal(runs.ids, slow.length, 'every work ran');
  t.comment(`work runs: ${runs.n} for ${slow.length} work items (reruns after kills are expected)`);

  t.equal(one<{ n: number }>('SELECT COUNT(*) AS n FROM mailbox').n, 0, 'no message left in any mailbox');
  t.equal(one<{ n: number }>('SELECT COUNT(*) AS n FROM work').n, 0, 'no work left in the outbox');
  t.equal(one<{ n: number }>('SELECT COUNT(*) AS n FROM dead_letters').n, 0, 'no dead letters');
});
