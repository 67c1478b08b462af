/**
 * The container API the tests themselves inspect (to check what the engine did), and its
 * availability for the container-backed suites: the API answers and the test image exists. Under
 * `SQLRS_REQUIRE_DOCKER=1` (CI) a problem fails the file; elsewhere it skips.
 *
 * The tests look at `SQLRS_TEST_CONTAINER_HOST` (a `unix://` URI), else `DOCKER_HOST` (`unix://`),
 * else `/var/run/docker.sock` — never at the engine's own choice, so that they check it
 * independently. `test/e2e/podman.test.ts` points it at Podman's socket while `DOCKER_HOST` may
 * point at a socket where nothing listens ("auto with no Docker daemon"). The `docker` CLI calls of
 * the helpers go through {@link dockerCli}, which talks to the same API.
 */
import { execFileSync, type ExecFileSyncOptions } from 'node:child_process';
import Docker from 'dockerode';

export const TEST_IMAGE = process.env['SQLRS_TEST_IMAGE'] ?? 'sqlrs-local/postgres:15';

function unixHost(v: string | undefined): string | undefined {
  const s = v?.trim();
  return s && s.startsWith('unix://') ? s : undefined;
}

/** `unix://` URI of the container API the tests inspect. */
export const containerHost = unixHost(process.env['SQLRS_TEST_CONTAINER_HOST']) ?? unixHost(process.env['DOCKER_HOST']) ?? 'unix:///var/run/docker.sock';
/** Its socket path (for dockerode). */
export const socketPath = containerHost.slice('unix://'.length);

/** Runs the `docker` CLI against {@link containerHost} (Docker's, or Podman's Docker-compatible API). */
export function dockerCli(args: string[], opts: ExecFileSyncOptions = {}): string {
  const out = execFileSync('docker', args, { timeout: 60_000, ...opts, env: { ...process.env, ...opts.env, DOCKER_HOST: containerHost } });
  return out === null ? '' : out.toString();
}

/** Why the daemon or the image cannot be used, or undefined. */
export async function dockerProblem(docker: Docker): Promise<string | undefined> {
  try {
    await docker.ping();
  } catch (e) {
    return `docker daemon unreachable at ${socketPath}: ${(e as Error).message}`;
  }
  try {
    await docker.getImage(TEST_IMAGE).inspect();
  } catch {
    return `image ${TEST_IMAGE} is missing at ${socketPath} (run: bash scripts/test-env.sh)`;
  }
  return undefined;
}

/** Options for `t.test`: empty when Docker is usable, else `{skip}`; fails the file under CI. */
export async function dockerTestOptions(docker: Docker, t: { fail(m: string): void }): Promise<{ skip?: string }> {
  const problem = await dockerProblem(docker);
  if (problem !== undefined && process.env['SQLRS_REQUIRE_DOCKER'] === '1') t.fail(`SQLRS_REQUIRE_DOCKER=1 but ${problem}`);
  return problem === undefined ? {} : { skip: problem };
}
