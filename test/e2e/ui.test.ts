/**
 * The live page at /ui in a real headless Chromium (Debian's `chromium`, driven by playwright-core)
 * against a real engine, the real Docker daemon and the real PostgreSQL image: the page's files are
 * served without a token with their content types; the page takes the token from the URL fragment
 * (and drops it from the address bar) or asks for it; a prepare started through the API appears on
 * the page and reaches `succeeded` without a reload, its instance appears with its DSN (copyable)
 * and its state in the tree, and a deleted instance leaves the page; the token never reaches the
 * engine's log. A screenshot is written to `test/artifacts/ui.png`.
 *
 * Chromium is installed by `scripts/test-env.sh`; without it this file fails under
 * `SQLRS_REQUIRE_DOCKER=1` (CI) and is skipped elsewhere. `SQLRS_CHROMIUM` names another binary.
 */
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { needDocker, startPrepEngine, submit, waitJob, type PrepEngine } from '../helpers/prepare.js';
import { REPO_ROOT } from '../helpers/engine.js';

t.setTimeout(600_000);

const CHROMIUM = process.env['SQLRS_CHROMIUM'] ?? '/usr/bin/chromium';
/** The screenshot artefact (git-ignored). */
const SCREENSHOT = join(REPO_ROOT, 'test', 'artifacts', 'ui.png');
/** Longest wait for a page signal (a cold prepare on a loaded machine included). */
const PAGE_WAIT_MS = 180_000;

function needChromium(): boolean {
  if (existsSync(CHROMIUM)) return true;
  const why = `no Chromium at ${CHROMIUM} (scripts/test-env.sh installs Debian's chromium)`;
  if (process.env['SQLRS_REQUIRE_DOCKER'] === '1') t.fail(`SQLRS_REQUIRE_DOCKER=1 but ${why}`);
  else t.plan(0, why);
  return false;
}

/** Short random suffix for names this test creates. */
const uniq = (): string => Math.random().toString(36).slice(2, 10);

if (needDocker(t) && needChromium()) {
  let eng: PrepEngine;
  let browser: Browser;
  let context: BrowserContext;

  t.before(async () => {
    eng = await startPrepEngine(t);
    // Root cannot use Chromium's sandbox; the page is our own, served on loopback.
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 60_000 });
    t.teardown(() => browser.close());
    context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: eng.baseUrl });
  });

  t.test('the page and its files are served without a token, with their content types', async (t) => {
    const cases: [string, RegExp][] = [
      ['/ui', /^text\/html; charset=utf-8$/], ['/ui/', /^text\/html; charset=utf-8$/],
      ['/ui/app.js', /^text\/javascript/], ['/ui/api.js', /^text\/javascript/], ['/ui/style.css', /^text\/css/],
    ];
    for (const [path, type] of cases) {
      const r = await eng.fetchRaw(path);
      t.equal(r.status, 200, path);
      t.match(r.headers['content-type'], type, `${path} content type`);
      t.match(r.headers['content-security-policy'], /default-src 'none'/, `${path} has a content security policy`);
    }
    t.match((await eng.fetchRaw('/ui')).body, /<script type="module" src="\/ui\/app.js">/);
    for (const path of ['/ui/nope.js', '/ui/..%2F..%2Fpackage.json', '/ui/ui-routes.js', '/ui/x/app.js']) {
      t.equal((await eng.fetchRaw(path)).status, 404, `${path} is not served`);
    }
    t.equal((await eng.fetchRaw('/ui', { method: 'POST', body: '' })).status, 405, 'only GET');
    t.equal((await eng.fetchRaw('/v1/instances')).status, 401, 'the API still needs the token');
  });

  t.test('without a token the page asks for one, refuses a wrong one and takes the right one', async (t) => {
    const page = await context.newPage();
    t.teardown(() => page.close());
    await page.goto(`${eng.baseUrl}/ui`);
    await page.waitForSelector('#login:not([hidden])', { timeout: 30_000 });
    t.equal(await page.isHidden('#app'), true, 'nothing is shown before sign-in');
    await page.fill('#token', 'f'.repeat(64));
    await page.click('#login button[type=submit]');
    await page.waitForSelector('#login-error:not([hidden])', { timeout: 30_000 });
    t.match(await page.textContent('#login-error'), /refused/);
    await page.fill('#token', eng.token);
    await page.click('#login button[type=submit]');
    await page.waitForSelector('body[data-ready="yes"] #app:not([hidden])', { timeout: 30_000 });
    t.equal(await page.evaluate<string | null>("sessionStorage.getItem('sqlrs.token')"), eng.token, 'kept for this tab');
  });

  t.test('a prepare started through the API shows up live, succeeds, and its instance appears with a DSN', async (t) => {
    const page: Page = await context.newPage();
    t.teardown(() => page.close());
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(`${eng.baseUrl}/ui#token=${eng.token}`);
    await page.waitForSelector('body[data-ready="yes"][data-ws="live"]', { timeout: 30_000 });
    t.equal(await page.evaluate<string>('location.hash'), '', 'the token is gone from the address bar');
    t.equal(await page.evaluate<string | null>("sessionStorage.getItem('sqlrs.token')"), eng.token);
    t.comment(`websocket auth: ${await page.evaluate<string>('document.body.dataset.wsAuth')}, lifecycle: ${await page.evaluate<string>('document.body.dataset.lifecycle')}`);
    // Survives only if the page is never reloaded.
    await page.evaluate("window.marker = 'same page'");

    const table = `ui_${uniq()}`;
    const jobId = await submit(eng, { psql_args: ['-c', `create table ${table} (id int); insert into ${table} select generate_series(1, 10)`] });
    const job = `details.job[data-job-id="${jobId}"]`;
    await page.waitForSelector(job, { timeout: 30_000 });
    await page.waitForSelector(`${job}[data-status="succeeded"]`, { timeout: PAGE_WAIT_MS });
    const outcome = await waitJob(eng, jobId);
    t.equal(outcome.status, 'succeeded', JSON.stringify(outcome.error ?? {}));
    const instanceId = outcome.result?.['instance_id'] ?? '';
    const stateId = outcome.result?.['state_id'] ?? '';
    const dsn = outcome.result?.['dsn'] ?? '';
    t.match(dsn, /^postgres:\/\/sqlrs@127\.0\.0\.1:\d+\/postgres$/);

    t.match(await page.textContent(`${job} .bar-label`), /^(\d+)\/\1 tasks$/, 'every task done');
    const row = `tr[data-instance-id="${instanceId}"]`;
    await page.waitForSelector(`${row} code.dsn`, { timeout: 30_000 });
    t.equal(await page.textContent(`${row} code.dsn`), dsn, 'the instance shows its DSN');
    await page.waitForSelector(`#states li[data-state-id="${stateId}"] .users code[title="${instanceId}"]`, { timeout: 30_000 });
    t.pass('the state tree shows the final state used by the instance');
    await page.waitForSelector('#cache .gauge', { timeout: 30_000 });
    t.match(await page.textContent('#cache .stats'), /states\s*[1-9]/, 'the cache counts the states');

    await page.click(`${row} button.copy`);
    await page.waitForSelector(`${row} button.copy[data-copied="yes"]`, { timeout: 10_000 });
    t.equal(await page.evaluate<string>('navigator.clipboard.readText()'), dsn, 'the copy button copies the DSN');

    await page.click(`${job} > summary`);
    await page.waitForSelector(`${job}[open] .events li[data-type="result"]`, { timeout: 30_000 });
    t.match(await page.textContent(`${job} .events`), new RegExp(`result: ${dsn.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`), 'the expanded job lists its events');
    t.ok((await page.$$(`${job} tr[data-task-id][data-status="succeeded"]`)).length >= 2, 'the expanded job lists its tasks as succeeded');

    mkdirSync(join(REPO_ROOT, 'test', 'artifacts'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    const png = readFileSync(SCREENSHOT);
    t.ok(statSync(SCREENSHOT).size > 10_000, 'the screenshot has content');
    t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'the screenshot is a PNG');
    t.comment(`screenshot: ${SCREENSHOT}`);

    const del = await eng.fetch(`/v1/instances/${instanceId}`, { method: 'DELETE' });
    t.equal(del.status, 200, del.body);
    await page.waitForSelector(row, { state: 'detached', timeout: 30_000 });
    t.pass('a deleted instance leaves the page');

    t.equal(await page.evaluate<string | undefined>('window.marker'), 'same page', 'no reload happened');
    t.same(pageErrors, [], 'no script errors on the page');
  });

  t.test('with an engine that sends lifecycle events, the page authenticates by subprotocol and re-reads the list an event names', async (t) => {
    // The socket is answered by the test (as such an engine would), the REST reads by the real engine.
    const page = await context.newPage();
    t.teardown(() => page.close());
    const received: unknown[] = [];
    let push: ((frame: unknown) => void) | undefined;
    let socketUrl = '';
    await page.routeWebSocket(/\/v1\/ws/, (ws) => {
      socketUrl = ws.url();
      ws.onMessage((m) => { received.push(JSON.parse(String(m))); });
      push = (frame) => ws.send(JSON.stringify(frame));
    });
    await page.goto(`${eng.baseUrl}/ui#token=${eng.token}`);
    await page.waitForSelector('body[data-ready="yes"][data-ws="live"][data-ws-auth="subprotocol"]', { timeout: 30_000 });
    t.notMatch(socketUrl, /token/, 'the token is in no URL');
    await page.waitForFunction('document.querySelector("#instances .empty") !== null', undefined, { timeout: 30_000 });

    const table = `ui_${uniq()}`;
    const outcome = await waitJob(eng, await submit(eng, { psql_args: ['-c', `create table ${table} (id int)`] }));
    t.equal(outcome.status, 'succeeded', JSON.stringify(outcome.error ?? {}));
    const instanceId = outcome.result?.['instance_id'] ?? '';
    t.equal(await page.$(`tr[data-instance-id="${instanceId}"]`), null, 'no job events reach this page, so the instance is not shown yet');
    push?.({ seq: 1, ts: new Date().toISOString(), type: 'lifecycle', data: { event: 'instance.created', id: instanceId } });
    await page.waitForSelector(`tr[data-instance-id="${instanceId}"]`, { timeout: 30_000 });
    t.pass('an instance.created event brings the instance');
    t.equal(await page.evaluate<string>('document.body.dataset.lifecycle'), 'ok');
    t.same(received.slice(0, 2), [{ op: 'subscribe', topic: 'lifecycle', after: 0 }, { op: 'subscribe', job: '*', after: 0 }], 'subscribed to lifecycle events and every job');
  });

  t.test('the token never reaches the engine log', async (t) => {
    await eng.stop(); // the log is complete once the engine has stopped
    const log = readFileSync(eng.logPath, 'utf8');
    t.match(log, /\/ui\/app\.js/, 'the page requests are logged');
    t.notOk(log.includes(eng.token), 'no request line carries the token');
  });
}
