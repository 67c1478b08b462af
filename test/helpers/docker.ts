/**
 * Docker availability for the dockerode-level suites: the daemon answers and the test image
 * exists. Under `SQLRS_REQUIRE_DOCKER=1` (CI) a problem fails the file; elsewhere it skips.
 */
import Docker from 'dockerode';
import { daemonAddress } from '../../src/workers/containers.js';

export const TEST_IMAGE = process.env['SQLRS_TEST_IMAGE'] ?? 'sqlrs-local/postgres:15';
export const socketPath = daemonAddress().socketPath ?? '/var/run/docker.sock';

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
    return `image ${TEST_IMAGE} is missing (run: bash scripts/test-env.sh)`;
  }
  return undefined;
}

/** Options for `t.test`: empty when Docker is usable, else `{skip}`; fails the file under CI. */
export async function dockerTestOptions(docker: Docker, t: { fail(m: string): void }): Promise<{ skip?: string }> {
  const problem = await dockerProblem(docker);
  if (problem !== undefined && process.env['SQLRS_REQUIRE_DOCKER'] === '1') t.fail(`SQLRS_REQUIRE_DOCKER=1 but ${problem}`);
  return problem === undefined ? {} : { skip: problem };
}
