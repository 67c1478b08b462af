/**
 * Connection tracking: counts the client sessions of an instance from `pg_stat_activity`, run
 * inside the instance's container. The counting session itself and background processes are
 * excluded. A stopped or missing container has no sessions.
 */
import type { ContainerRuntime } from '../../workers/protocol.js';
import type { Logger } from '../../log.js';
import type { Clock } from '../../clock.js';
import { ContainerError, errorText } from '../../errors.js';
import { raceAbort, timeoutSignal } from '../../abort.js';

export const CONNECTIONS_SQL =
  "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()";

/** How long one count may take before it is abandoned. */
const COUNT_TIMEOUT_MS = 30_000;

/**
 * Number of client sessions connected to the instance's Postgres.
 * Failures to reach Postgres count as no sessions, except a server refusing new clients because it
 * has too many, which counts as (at least) one.
 */
export async function countConnections(containers: ContainerRuntime, containerId: string | null, log: Logger, clock: Clock): Promise<number> {
  if (!containerId) return 0;
  const limit = timeoutSignal(clock, COUNT_TIMEOUT_MS, () => new ContainerError(`connection count timed out after ${COUNT_TIMEOUT_MS} ms`));
  try {
    return await count(containers, containerId, log, limit.signal);
  } finally {
    limit.clear();
  }
}

async function count(containers: ContainerRuntime, containerId: string, log: Logger, signal: AbortSignal): Promise<number> {
  try {
    if (!(await raceAbort(containers.isRunning(containerId), signal, 'container inspect'))) return 0;
  } catch (e) {
    log.warn('cannot inspect instance container; counting no connections', { container: containerId, error: errorText(e) });
    return 0;
  }
  let stdout = '';
  let stderr = '';
  try {
    const r = await containers.exec(
      { containerId, user: 'postgres', cmd: ['psql', '-X', '-h', '127.0.0.1', '-U', 'sqlrs', '-d', 'postgres', '-Atc', CONNECTIONS_SQL] },
      (stream, chunk) => { if (stream === 'stdout') stdout += chunk; else stderr += chunk; },
      signal,
    );
    if (r.exitCode !== 0) {
      if (/too many (clients|connections)/i.test(stderr)) return 1;
      log.warn('cannot count instance connections; counting none', { container: containerId, exit: r.exitCode, stderr: stderr.trim().slice(0, 500) });
      return 0;
    }
  } catch (e) {
    log.warn('cannot count instance connections; counting none', { container: containerId, error: errorText(e) });
    return 0;
  }
  const n = Number.parseInt(stdout.trim().split('\n').pop() ?? '', 10);
  return Number.isFinite(n) && n > 0 ? n : 0;
}
