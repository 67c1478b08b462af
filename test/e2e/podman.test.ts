/**
 * The container suites again, on real Podman, in the same tap run: every file below is spawned as
 * a child tap test with an environment in which both the engine and the test's own checks use
 * Podman's Docker-compatible API (the service `scripts/test-env.sh` starts on
 * `SQLRS_TEST_PODMAN_SOCKET`, default `/run/sqlrs-test/podman.sock`). The suites are unchanged:
 * same assertions, same helpers (which look at `SQLRS_TEST_CONTAINER_HOST`, see
 * `test/helpers/docker.ts`).
 *
 * Two ways of reaching Podman, each for half of the files:
 * - `podman`: `SQLRS_CONTAINER_RUNTIME=podman`, `CONTAINER_HOST` and `DOCKER_HOST` both at the
 *   Podman socket;
 * - `auto, no Docker daemon`: `SQLRS_CONTAINER_RUNTIME=auto`, `DOCKER_HOST` at a socket where
 *   nothing listens, `CONTAINER_HOST` at the Podman socket — the engine must fall through to Podman.
 * Before the suites, one engine per mode shows (`container_runtime` of `GET /v1/cache/status`) that
 * the engine really chose that socket, so a pass cannot silently have run on Docker.
 *
 * Under `SQLRS_REQUIRE_DOCKER=1` (CI) a Podman API that does not answer, is not Podman, or lacks the
 * test image fails this file; elsewhere the file is skipped with the reason. The pass takes a few
 * minutes; suites that add little on Podman (no containers, or runtime-independent logic) are left out.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startEngine } from '../helpers/engine.js';
import { TEST_IMAGE } from '../helpers/docker.js';

const SOCKET = process.env['SQLRS_TEST_PODMAN_SOCKET'] ?? '/run/sqlrs-test/podman.sock';
const REQUIRE = process.env['SQLRS_REQUIRE_DOCKER'] === '1';

/** The engine suites, run in both modes: prepare on every backend, runs, deletion, WebSocket. */
const ENGINE_FILES = [
  'test/e2e/prepare/copy.test.ts',
  'test/e2e/prepare/overlay.test.ts',
  'test/e2e/prepare/btrfs.test.ts',
  'test/e2e/http/runs.test.ts',
  'test/e2e/http/runs-restart.test.ts',
  'test/e2e/http/ws.test.ts',
  'test/e2e/deletion/instances.test.ts',
  'test/e2e/deletion/tree.test.ts',
  'test/e2e/deletion/eviction.test.ts',
  'test/e2e/deletion/hygiene.test.ts',
  'test/e2e/deletion/crash.test.ts',
];
/** Spawned with `SQLRS_CONTAINER_RUNTIME=podman`; the worker suites use the API directly (`DOCKER_HOST`). */
const PODMAN_FILES = [...ENGINE_FILES, 'test/workers/containers.test.ts', 'test/workers/docker-smoke.test.ts'];
/** Spawned with `SQLRS_CONTAINER_RUNTIME=auto` and no Docker daemon. */
const AUTO_FILES = ENGINE_FILES;

t.setTimeout(40 * 60_000);

/** One request to the API on the socket; never rejects. */
function api(path: string, timeoutMs = 5000): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = request({ socketPath: SOCKET, path, method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e) => resolve({ error: e.message }));
    req.end();
  });
}

/** Why the Podman pass cannot run, or undefined. */
async function podmanProblem(): Promise<string | undefined> {
  const fix = 'run: bash scripts/test-env.sh';
  const ping = await api('/_ping');
  if ('error' in ping || ping.status !== 200) {
    return `the Podman API does not answer at ${SOCKET} (${'error' in ping ? ping.error : `HTTP ${ping.status}`}); ${fix}`;
  }
  const version = await api('/version');
  if ('error' in version || !/"Podman Engine"/.test(version.body)) {
    return `the API at ${SOCKET} is not Podman's (GET /version: ${'error' in version ? version.error : version.body.slice(0, 200)})`;
  }
  const image = await api(`/images/${TEST_IMAGE}/json`);
  if ('error' in image || image.status !== 200) {
    return `the image ${TEST_IMAGE} does not resolve through the Podman API at ${SOCKET} (${'error' in image ? image.error : `HTTP ${image.status}`}); ${fix}`;
  }
  return undefined;
}

interface Mode { name: string; files: string[]; env: Record<string, string> }

const problem = await podmanProblem();
if (problem !== undefined) {
  if (REQUIRE) t.fail(`SQLRS_REQUIRE_DOCKER=1 but ${problem}`);
  else t.plan(0, problem);
} else {
  // A socket path in a fresh directory: certainly nothing listens there.
  const noDockerDir = mkdtempSync(join(tmpdir(), 'sqlrs-no-docker-'));
  t.teardown(() => rmSync(noDockerDir, { recursive: true, force: true }));
  const podman = `unix://${SOCKET}`;
  const modes: Mode[] = [
    {
      name: 'podman',
      files: PODMAN_FILES,
      env: { SQLRS_CONTAINER_RUNTIME: 'podman', CONTAINER_HOST: podman, DOCKER_HOST: podman, SQLRS_TEST_CONTAINER_HOST: podman },
    },
    {
      name: 'auto, no Docker daemon',
      files: AUTO_FILES,
      env: { SQLRS_CONTAINER_RUNTIME: 'auto', CONTAINER_HOST: podman, DOCKER_HOST: `unix://${join(noDockerDir, 'no-docker.sock')}`, SQLRS_TEST_CONTAINER_HOST: podman },
    },
  ];

  for (const mode of modes) {
    t.test(`${mode.name}: the engine chooses the Podman socket`, async (t) => {
      const eng = await startEngine(t, { env: mode.env });
      let rt: { kind?: string; socket?: string; source?: string; error?: string } = {};
      for (let i = 0; i < 300; i++) {
        rt = (await eng.fetch('/v1/cache/status')).json<{ container_runtime?: typeof rt }>().container_runtime ?? {};
        if (rt.kind !== 'detecting') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      t.same(rt, { kind: 'podman', socket: SOCKET, source: 'CONTAINER_HOST' }, `container_runtime ${JSON.stringify(rt)}`);
    });
  }

  for (const mode of modes) {
    for (const file of mode.files) {
      // tap runs these one after another and reports each one's time.
      void t.spawn(process.execPath, [...process.execArgv, join(REPO_ROOT, file)], {
        cwd: REPO_ROOT,
        env: { ...process.env, ...mode.env },
      }, `${mode.name} (SQLRS_CONTAINER_RUNTIME=${mode.env['SQLRS_CONTAINER_RUNTIME']}): ${file}`);
    }
  }
}
