/**
 * Choosing the container runtime, against the real Docker daemon and real Podman:
 * - with both answering, `auto` uses Docker;
 * - with no Docker and Podman installed but no API socket answering, `auto` starts
 *   `podman system service` itself, prepares on it, and stops it when the engine stops;
 * - with neither, the engine still starts, names the problem in `GET /v1/cache/status` and its
 *   log, and a prepare fails at once with an error that says what to run — never a hang.
 *
 * Podman needs the ulimit fix of `scripts/test-env.sh` (`/etc/sqlrs-test/containers.conf`) and the
 * test image in its store; both are made by `scripts/test-env.sh`.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startPrepEngine, prepare, psqlAt, needDocker, wipe, IMAGE } from '../helpers/prepare.js';
import { storeLabel } from '../../src/actors/layout.js';

t.setTimeout(600_000);

const PODMAN_SOCKET = process.env['SQLRS_TEST_PODMAN_SOCKET'] ?? '/run/sqlrs-test/podman.sock';
const CONTAINERS_CONF = '/etc/sqlrs-test/containers.conf';
const NO_DOCKER = 'unix:///run/sqlrs-test/no-docker.sock';

interface RuntimeInfo { kind: string; socket?: string; source?: string; error?: string }

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: 60_000 }).trim();
}

/** Why real Podman cannot be used here (installed, with the test image), or undefined. */
function podmanProblem(): string | undefined {
  try { sh('podman', ['--version']); } catch { return 'podman is not installed (run scripts/test-env.sh)'; }
  try { sh('podman', ['image', 'exists', IMAGE]); } catch { return `the image ${IMAGE} is not in Podman's store (run scripts/test-env.sh)`; }
  if (!existsSync(CONTAINERS_CONF)) return `${CONTAINERS_CONF} is missing (run scripts/test-env.sh)`;
  return undefined;
}

function curlPing(socket: string): boolean {
  try { return sh('curl', ['-s', '--max-time', '2', '--unix-socket', socket, 'http://d/_ping']) === 'OK'; } catch { return false; }
}

/** Removes a store's containers from Podman's side (the test's own Docker checks do not see them). */
function wipePodman(store: string): void {
  const ids = sh('podman', ['ps', '-aq', '--filter', `label=dev.sqlrs.store=${storeLabel(resolve(store))}`]).split('\n').filter(Boolean);
  if (ids.length > 0) execFileSync('podman', ['rm', '-f', ...ids], { stdio: 'ignore', timeout: 60_000 });
}

/** Pids of `podman system service` processes serving `socket`. */
function serviceProcesses(socket: string): string[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      return argv.includes('service') && argv.includes(`unix://${socket}`);
    } catch {
      return false;
    }
  });
}

async function runtimeOf(eng: { fetch(p: string): Promise<{ status: number; json<T>(): T }> }): Promise<RuntimeInfo> {
  // Detection runs in the background: wait until it has decided.
  for (let i = 0; i < 300; i++) {
    const r = await eng.fetch('/v1/cache/status');
    const rt = r.json<{ container_runtime: RuntimeInfo }>().container_runtime;
    if (rt.kind !== 'detecting') return rt;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('container runtime detection did not finish in 30 s');
}

t.test('runtime selection on real daemons', async (t) => {
  if (!needDocker(t)) return;
  const problem = podmanProblem();
  if (problem !== undefined) {
    if (process.env['SQLRS_REQUIRE_DOCKER'] === '1') t.fail(`SQLRS_REQUIRE_DOCKER=1 but ${problem}`);
    else t.plan(0, problem);
    return;
  }

  t.test('auto with Docker and Podman both answering uses Docker', async (t) => {
    if (!curlPing(PODMAN_SOCKET)) { t.fail(`the Podman API at ${PODMAN_SOCKET} does not answer (run scripts/test-env.sh)`); return; }
    const eng = await startPrepEngine(t, { env: { SQLRS_CONTAINER_RUNTIME: 'auto', DOCKER_HOST: undefined, CONTAINER_HOST: `unix://${PODMAN_SOCKET}` } });
    t.match(await runtimeOf(eng), { kind: 'docker', socket: '/var/run/docker.sock', source: 'default Docker socket' });
  });

  t.test('auto with no Docker and no Podman socket starts podman system service, prepares on it, and stops it with the engine', async (t) => {
    if (curlPing('/run/podman/podman.sock')) { t.fail('a rootful Podman socket answers at /run/podman/podman.sock: this test needs none'); return; }
    const eng = await startPrepEngine(t, {
      keep: true,
      env: { SQLRS_CONTAINER_RUNTIME: 'auto', DOCKER_HOST: NO_DOCKER, CONTAINER_HOST: undefined, XDG_RUNTIME_DIR: undefined, CONTAINERS_CONF },
    });
    t.teardown(async () => {
      await eng.stop().catch(() => undefined);
      wipePodman(eng.store);
      wipe(eng.dir, eng.store);
    });
    const rt = await runtimeOf(eng);
    const socket = join(eng.dir, 'run', 'podman.sock');
    t.match(rt, { kind: 'podman', socket, source: 'podman system service started by the engine' });
    t.ok(curlPing(socket), 'the engine-started service answers');
    const o = await prepare(eng, { psql_args: ['-c', 'create table t(x int); insert into t values (41), (1)'] });
    t.equal(o.status, 'succeeded', JSON.stringify(o.error ?? {}));
    const dsn = o.result?.['dsn'] ?? '';
    t.equal(psqlAt(dsn, 'select sum(x) from t'), '42', 'the instance answers on its published loopback port');
    const imageId = sh('podman', ['image', 'inspect', IMAGE, '--format', '{{.Id}}']);
    t.equal(o.result?.['image_id'], `sha256:${imageId.replace(/^sha256:/, '')}`, 'a local-only image resolves to its image id on Podman, as on Docker');
    const inst = o.result?.['instance_id'] ?? '';
    const labels = sh('podman', ['ps', '--filter', `label=dev.sqlrs.instance=${inst}`, '--format', '{{.Names}}']);
    t.equal(labels, `sqlrs-${inst}`, 'the instance runs in Podman, named and labelled like on Docker');
    const exit = await eng.stop();
    t.equal(exit.code, 0, 'the engine stopped cleanly');
    t.notOk(curlPing(socket), 'the service is gone with the engine');
    t.same(serviceProcesses(socket), [], 'no podman service process is left');
    t.match(readFileSync(eng.logPath, 'utf8'), /podman system service stopped/);
  });

  t.test('neither runtime: the engine starts, says what to run, and a prepare fails at once', async (t) => {
    // A PATH without podman (and without docker): only what the engine's fs workers need.
    const bin = mkdtempSync(join(tmpdir(), 'sqlrs-nopodman-'));
    for (const b of ['mount', 'umount', 'cp', 'rm', 'btrfs', 'tar', 'sync']) {
      for (const d of ['/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
        if (existsSync(join(d, b)) && !existsSync(join(bin, b))) symlinkSync(join(d, b), join(bin, b));
      }
    }
    mkdirSync(join(bin, 'empty'), { recursive: true });
    t.teardown(() => execFileSync('rm', ['-rf', bin]));
    const eng = await startPrepEngine(t, { env: { SQLRS_CONTAINER_RUNTIME: 'auto', DOCKER_HOST: NO_DOCKER, CONTAINER_HOST: undefined, XDG_RUNTIME_DIR: undefined, PATH: bin } });
    const rt = await runtimeOf(eng);
    t.equal(rt.kind, 'none');
    t.match(rt.error, /no container runtime: no container API answered at \/run\/sqlrs-test\/no-docker\.sock \(DOCKER_HOST\).*start Docker.*podman system service/);
    const started = Date.now();
    const o = await prepare(eng, { psql_args: ['-c', 'select 1'] });
    t.equal(o.status, 'failed');
    t.match(o.error, { code: 'internal_error', message: 'cannot resolve image', details: /no container runtime/ });
    t.ok(Date.now() - started < 30_000, `failed in ${Date.now() - started} ms, not after a hang`);
    t.match(readFileSync(eng.logPath, 'utf8'), /no container runtime/);
  });
});
