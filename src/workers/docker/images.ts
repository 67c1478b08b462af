/**
 * Images: inspect, pull (only when missing locally), resolve a ref to the id the engine records,
 * learn the image's postgres uid/gid, and run one-shot containers (the uid probe and initdb).
 */
import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { abortError, throwIfAborted } from '../../abort.js';
import { ContainerError, hasCode } from '../../errors.js';
import { appendTail, DATA_MOUNT, LABEL_ROLE, PGDATA, type ImageResolution } from '../protocol.js';
import { client, isNotFound, logSafe, messageOf, toContainerError } from './client.js';
import { demuxBuffer, type RunExecResult } from './exec.js';

const INITDB_SCRIPT = [
  'set -e',
  `initdb --username=sqlrs --auth=trust --auth-host=trust --auth-local=trust --no-sync -D ${PGDATA}`,
  `hba=${PGDATA}/pg_hba.conf`,
  `grep -q '0\\.0\\.0\\.0/0' "$hba" || printf 'host all all 0.0.0.0/0 trust\\n' >> "$hba"`,
  `grep -q '::/0' "$hba" || printf 'host all all ::/0 trust\\n' >> "$hba"`,
  `printf "listen_addresses = '*'\\n" >> ${PGDATA}/postgresql.conf`,
].join('\n');

/** postgres uid/gid per image id, learnt once per worker. */
const idCache = new Map<string, { uid: number; gid: number }>();

/** A command run in a fresh container that is removed afterwards. */
interface OneShot {
  image: string;
  cmd: string[];
  labels: Record<string, string>;
  user?: string;
  binds?: string[];
  signal: AbortSignal;
}

/** Runs a one-shot container to its end (abort kills it); the container is always removed. */
async function runOneShot(spec: OneShot): Promise<RunExecResult> {
  throwIfAborted(spec.signal, 'container');
  const container = await client().createContainer({
    Image: spec.image,
    Entrypoint: ['sh', '-c'],
    Cmd: spec.cmd,
    Labels: spec.labels,
    ...(spec.user !== undefined ? { User: spec.user } : {}),
    Tty: false,
    HostConfig: { Binds: spec.binds ?? [], NetworkMode: 'none' },
  });
  const onAbort = (): void => {
    container.kill().catch(() => undefined);
  };
  spec.signal.addEventListener('abort', onAbort, { once: true });
  try {
    await container.start();
    if (spec.signal.aborted) onAbort();
    const res = (await container.wait()) as { StatusCode?: unknown };
    throwIfAborted(spec.signal, 'container');
    const logs = await container.logs({ stdout: true, stderr: true, follow: false });
    const output = demuxBuffer(Buffer.isBuffer(logs) ? logs : Buffer.from(String(logs)));
    return { exitCode: typeof res.StatusCode === 'number' ? res.StatusCode : -1, output: appendTail('', output) };
  } finally {
    spec.signal.removeEventListener('abort', onAbort);
    await container.remove({ force: true, v: true }).catch((e: unknown) => {
      if (!isNotFound(e)) logSafe('warn', 'removing a one-shot container failed', { id: container.id, error: messageOf(e) });
    });
  }
}

async function inspectImage(ref: string): Promise<Docker.ImageInspectInfo | undefined> {
  try {
    return await client().getImage(ref).inspect();
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

/** `name` → `name:latest` (pulling a bare name would fetch every tag). */
function pullRef(ref: string): string {
  if (ref.includes('@')) return ref;
  const lastSlash = ref.lastIndexOf('/');
  return ref.slice(lastSlash + 1).includes(':') ? ref : `${ref}:latest`;
}

async function pull(ref: string, signal: AbortSignal): Promise<void> {
  const d = client();
  logSafe('info', 'pulling image', { ref });
  try {
    const stream = (await d.pull(pullRef(ref))) as Readable;
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        stream.destroy();
        reject(abortError(signal, 'image pull'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      d.modem.followProgress(stream, (err: Error | null, events: unknown[]) => {
        signal.removeEventListener('abort', onAbort);
        if (err) return reject(err);
        // The daemon reports some pull failures as an error event inside a 200 response.
        const bad = events.find((ev) => typeof ev === 'object' && ev !== null && 'error' in ev) as { error?: unknown } | undefined;
        if (bad) return reject(new Error(String(bad.error)));
        resolve();
      });
    });
  } catch (e) {
    if (hasCode(e, 'cancelled')) throw e;
    const err = toContainerError('pull', e);
    if (err.message === 'docker is not running') throw err;
    throw new ContainerError('cannot resolve image', { details: `${ref}: not present locally and pull failed: ${messageOf(e)}`, cause: e });
  }
}

function repoOf(ref: string): string {
  const at = ref.indexOf('@');
  if (at >= 0) return ref.slice(0, at);
  const lastSlash = ref.lastIndexOf('/');
  const colon = ref.indexOf(':', lastSlash + 1);
  return colon >= 0 ? ref.slice(0, colon) : ref;
}

async function postgresIds(imageId: string, signal: AbortSignal): Promise<{ uid: number; gid: number }> {
  const cached = idCache.get(imageId);
  if (cached) return cached;
  const r = await runOneShot({
    image: imageId,
    cmd: ['id -u postgres && id -g postgres'],
    labels: { [LABEL_ROLE]: 'probe' },
    signal,
  });
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(r.output);
  if (r.exitCode !== 0 || !m) {
    throw new ContainerError('cannot determine the postgres user of the image', {
      details: `${imageId}: \`id -u postgres; id -g postgres\` exited ${r.exitCode}: ${r.output.trim()}`,
    });
  }
  const ids = { uid: Number(m[1]), gid: Number(m[2]) };
  idCache.set(imageId, ids);
  return ids;
}

/**
 * Resolves an image ref (pulling only when it is missing locally) to the id the engine records —
 * the registry digest, or the image id of a local-only image — plus its postgres uid/gid.
 * @throws ContainerError `cannot resolve image` when it is missing and cannot be pulled
 */
export async function resolveImage(
  ref: string,
  knownUsers: Record<string, { uid: number; gid: number }> | undefined,
  probeUser: boolean,
  signal: AbortSignal,
): Promise<ImageResolution> {
  let info = await inspectImage(ref);
  if (info === undefined) {
    throwIfAborted(signal, 'image resolution');
    await pull(ref, signal);
    info = await inspectImage(ref);
    if (info === undefined) throw new ContainerError('cannot resolve image', { details: `${ref}: not found after pull` });
  }
  let resolvedId: string;
  if (ref.includes('@')) {
    resolvedId = ref;
  } else {
    // Podman gives every local image a digest of its own manifest under `localhost/…`: that is no
    // registry digest, so a local-only image resolves to its image id on Podman as on Docker.
    const digests = (info.RepoDigests ?? []).filter((d) => !d.startsWith('localhost/'));
    const repo = repoOf(ref);
    resolvedId = digests.find((d) => repoOf(d) === repo) ?? digests[0] ?? info.Id;
  }
  const ids = knownUsers?.[resolvedId] ?? (probeUser ? await postgresIds(info.Id, signal) : { uid: -1, gid: -1 });
  return { resolvedId, uid: ids.uid, gid: ids.gid };
}

/**
 * Runs initdb (superuser `sqlrs`, trust auth, listening on all addresses) into `dataDir/pgdata`
 * with a one-shot container.
 * @throws ContainerError `initdb failed` with its output
 */
export async function initBase(image: string, dataDir: string, labels: Record<string, string>, signal: AbortSignal): Promise<null> {
  const r = await runOneShot({
    image,
    cmd: [INITDB_SCRIPT],
    labels,
    user: 'postgres',
    binds: [`${dataDir}:${DATA_MOUNT}`],
    signal,
  });
  if (r.exitCode !== 0) {
    throw new ContainerError('initdb failed', { details: `exit code ${r.exitCode}: ${r.output.trim()}` });
  }
  return null;
}
