// Over 400 lines on purpose: one real-daemon suite of DockerRuntime whose tests share one initdb'd base and container fixtures.
/**
 * DockerRuntime against the real daemon and the real image `sqlrs-local/postgres:15`
 * (built by `scripts/test-env.sh`). Without a daemon the Docker-backed tests skip, unless
 * SQLRS_REQUIRE_DOCKER=1, where they fail.
 */
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Docker from 'dockerode';
import { dockerTestOptions, socketPath, TEST_IMAGE } from '../helpers/docker.js';
import { DockerRuntime, daemonAddress } from '../../src/workers/containers.js';
import { LABEL_ENGINE, LABEL_ROLE, PGDATA, type OutputStream } from '../../src/workers/protocol.js';
import { createLogger } from '../../src/log.js';
import type { Test } from 'tap';

const IMAGE = TEST_IMAGE;
const RUN = randomBytes(4).toString('hex');
const LABELS = { [LABEL_ENGINE]: `test-${RUN}` };

const docker = new Docker({ socketPath });

const needsDocker = await dockerTestOptions(docker, t);

const lines: string[] = [];
const logger = createLogger((l) => lines.push(l), 'debug');
const rt = new DockerRuntime({ logger });

t.teardown(async () => {
  if (needsDocker.skip === undefined) {
    const left = await docker.listContainers({ all: true, filters: JSON.stringify({ label: [`${LABEL_ENGINE}=test-${RUN}`] }) });
    await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined)));
  }
  await rt.close();
});

const name = (what: string): string => `sqlrs-test-${what}-${RUN}-${randomBytes(3).toString('hex')}`;

/** A fresh temporary directory, removed when `t` ends. */
function tempDir(t: Test, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'sqlrs-containers-test-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [f, content] of Object.entries(files)) writeFileSync(join(dir, f), content);
  return dir;
}

/** A data dir owned by the image's postgres user. */
function dataDir(t: Test, uid: number, gid: number): string {
  const dir = tempDir(t);
  chownSync(dir, uid, gid);
  return dir;
}

const HOST_PSQL = existsSync('/usr/lib/postgresql/15/bin/psql') ? '/usr/lib/postgresql/15/bin/psql' : 'psql';

/** Runs the host's psql against the published port. */
function hostPsql(port: number, sql: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      HOST_PSQL,
      ['-h', '127.0.0.1', '-p', String(port), '-U', 'sqlrs', '-d', 'postgres', '-At', '-c', sql],
      { env: { ...process.env, PGCONNECT_TIMEOUT: '5' }, timeout: 20_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, out: `${stdout}${stderr}` });
      },
    );
  });
}

function tcpConnects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

interface Collected { stdout: string; stderr: string; chunks: { stream: OutputStream; chunk: string; at: number }[] }
function collector(): Collected & { sink: (s: OutputStream, c: string) => void } {
  const c: Collected = { stdout: '', stderr: '', chunks: [] };
  return Object.assign(c, {
    sink: (stream: OutputStream, chunk: string) => {
      c[stream] += chunk;
      c.chunks.push({ stream, chunk, at: Date.now() });
    },
  });
}

// --- tests that need no daemon --------------------------------------------------------------

t.test('daemonAddress prefers an explicit socket, then a unix DOCKER_HOST, then the default socket', async (t) => {
  t.same(daemonAddress('/x.sock', {}), { socketPath: '/x.sock', daemon: 'unix:///x.sock' });
  t.same(daemonAddress(undefined, { DOCKER_HOST: 'unix:///run/podman/podman.sock' }), {
    socketPath: '/run/podman/podman.sock',
    daemon: 'unix:///run/podman/podman.sock',
  });
  t.same(daemonAddress(undefined, { DOCKER_HOST: 'tcp://10.0.0.1:2375' }), { daemon: 'tcp://10.0.0.1:2375' });
  t.same(daemonAddress(undefined, {}), { socketPath: '/var/run/docker.sock', daemon: 'unix:///var/run/docker.sock' });
});

t.test('DockerRuntime reports docker is not running when the socket does not exist', async (t) => {
  const dead = new DockerRuntime({ socketPath: join(tempDir(t), 'missing.sock'), logger });
  t.teardown(() => dead.close());
  await t.rejects(dead.ping(), { code: 'ENGINE_CONTAINER', message: 'docker is not running', details: /start the Docker daemon/ });
  await t.rejects(dead.list({}), { code: 'ENGINE_CONTAINER', message: 'docker is not running' });
});

t.test('DockerRuntime rejects an already-aborted signal and calls after close', async (t) => {
  const other = new DockerRuntime({ socketPath: join(tempDir(t), 'missing.sock'), logger });
  await t.rejects(other.exec({ containerId: 'x', cmd: ['true'], user: 'postgres' }, () => undefined, AbortSignal.abort()), {
    code: 'cancelled',
  });
  await other.close();
  await t.rejects(other.ping(), { code: 'ENGINE_CLOSED' });
  await t.rejects(other.remove('x'), { code: 'ENGINE_CLOSED' });
});

// --- tests against the daemon ---------------------------------------------------------------

t.test('ping returns the daemon version', needsDocker, async (t) => {
  const v = await rt.ping();
  t.match(v, { version: /\S/, apiVersion: /^\d+\.\d+$/ });
});

t.test('resolveImage gives the image id of a local-only image without pulling', needsDocker, async (t) => {
  const info = await docker.getImage(IMAGE).inspect();
  const digests = info.RepoDigests ?? [];
  const before = lines.length;
  const r = await rt.resolveImage(IMAGE);
  // Docker: an imported image has no repo digest. Podman gives it a `localhost/…@sha256:…` digest of
  // its own manifest, which is no registry digest. Either way the image id identifies it.
  t.ok(digests.every((d) => d.startsWith('localhost/')), `only local digests: ${digests.join(', ')}`);
  t.equal(r.resolvedId, info.Id);
  t.match(r.resolvedId, /^sha256:[0-9a-f]{64}$/);
  t.equal(r.uid, 999);
  t.equal(r.gid, 999);
  t.notOk(lines.slice(before).some((l) => l.includes('pulling image')), 'no pull was attempted');
});

t.test('resolveImage of an image that is missing and cannot be pulled fails with cannot resolve image', needsDocker, async (t) => {
  await t.rejects(rt.resolveImage(`sqlrs-local/missing-${RUN}:1`), {
    code: 'ENGINE_CONTAINER',
    message: 'cannot resolve image',
    details: /missing-/,
  });
});

let baseDir: string | undefined;
/** An initialised base data dir shared by the tests below (initBase runs once). */
async function base(): Promise<string> {
  if (baseDir !== undefined) return baseDir;
  const { uid, gid } = await rt.resolveImage(IMAGE);
  const dir = dataDir(t, uid, gid); // the file-level test dir outlives every subtest
  await rt.initBase(IMAGE, dir, { ...LABELS, [LABEL_ROLE]: 'initdb' });
  baseDir = dir;
  return dir;
}

/** A private copy of the base data dir. */
async function dataCopy(t: Test): Promise<string> {
  const src = await base();
  const dir = tempDir(t);
  execFileSync('cp', ['-a', `${src}/.`, dir]);
  return dir;
}

async function started(t: Test, what: string, extra: Record<string, string> = {}): Promise<{ id: string; port: number; name: string }> {
  const dir = await dataCopy(t);
  const n = name(what);
  const c = await rt.start({ image: IMAGE, name: n, labels: { ...LABELS, ...extra }, dataDir: dir, extraMounts: [] });
  t.teardown(() => rt.remove(c.id));
  return { id: c.id, port: c.port, name: n };
}

t.test('initBase creates an initialised pgdata with trust rules for TCP clients', needsDocker, async (t) => {
  const { uid, gid } = await rt.resolveImage(IMAGE);
  const dir = dataDir(t, uid, gid);
  await rt.initBase(IMAGE, dir, { ...LABELS, [LABEL_ROLE]: 'initdb' });
  t.equal(readFileSync(join(dir, 'pgdata', 'PG_VERSION'), 'utf8').trim(), '15');
  const hba = readFileSync(join(dir, 'pgdata', 'pg_hba.conf'), 'utf8');
  t.match(hba, /^host\s+all\s+all\s+0\.0\.0\.0\/0\s+trust$/m);
  t.match(hba, /^host\s+all\s+all\s+::\/0\s+trust$/m);
  t.match(readFileSync(join(dir, 'pgdata', 'postgresql.conf'), 'utf8'), /^listen_addresses = '\*'$/m);
  t.same(await rt.list({ ...LABELS, [LABEL_ROLE]: 'initdb' }), [], 'the one-shot container is gone');
});

t.test('initBase into an already initialised dir fails with the initdb output', needsDocker, async (t) => {
  const dir = await dataCopy(t);
  await t.rejects(rt.initBase(IMAGE, dir, LABELS), { code: 'ENGINE_CONTAINER', message: 'initdb failed', details: /exists/ });
});

t.test('start publishes postgres on 127.0.0.1 only and a host TCP client can query it', needsDocker, async (t) => {
  const c = await started(t, 'start', { [LABEL_ROLE]: 'start-test' });
  t.ok(c.port > 0);
  const q = await hostPsql(c.port, 'select 1');
  t.equal(q.code, 0, q.out);
  t.equal(q.out.trim(), '1');
  const info = await docker.getContainer(c.id).inspect();
  const bindings = info.NetworkSettings.Ports['5432/tcp'] ?? [];
  t.ok(bindings.length > 0);
  t.ok(bindings.every((b) => b.HostIp === '127.0.0.1'), JSON.stringify(bindings));
  t.equal(info.Config.Labels[LABEL_ROLE], 'start-test');
  t.equal(info.Config.Labels[LABEL_ENGINE], `test-${RUN}`);
  t.equal(info.Name, `/${c.name}`);
  t.equal(await rt.isRunning(c.id), true);
  const listed = await rt.list({ ...LABELS, [LABEL_ROLE]: 'start-test' });
  t.same(listed.map((x) => ({ id: x.id, name: x.name, running: x.running })), [{ id: c.id, name: c.name, running: true }]);
  t.equal(listed[0]?.labels[LABEL_ROLE], 'start-test');
});

t.test('start on a data dir without a cluster fails and leaves no container behind', needsDocker, async (t) => {
  const { uid, gid } = await rt.resolveImage(IMAGE);
  const dir = dataDir(t, uid, gid);
  const labels = { ...LABELS, [LABEL_ROLE]: 'broken' };
  await t.rejects(rt.start({ image: IMAGE, name: name('broken'), labels, dataDir: dir, extraMounts: [] }), {
    code: 'ENGINE_CONTAINER',
    message: 'postgres start failed',
    details: /pg_ctl/,
  });
  t.same(await rt.list(labels), []);
});

t.test('start mounts extra binds, read-only when asked', needsDocker, async (t) => {
  const dir = await dataCopy(t);
  const extra = tempDir(t, { 'hello.sql': 'select 42;\n' });
  const c = await rt.start({
    image: IMAGE,
    name: name('mounts'),
    labels: LABELS,
    dataDir: dir,
    extraMounts: [{ host: extra, container: '/work', readOnly: true }],
  });
  t.teardown(() => rt.remove(c.id));
  const out = collector();
  const r = await rt.exec(
    { containerId: c.id, cmd: ['psql', '-h', '127.0.0.1', '-U', 'sqlrs', '-d', 'postgres', '-At', '-f', '/work/hello.sql'], user: 'postgres' },
    out.sink,
  );
  t.equal(r.exitCode, 0, out.stderr);
  t.equal(out.stdout.trim(), '42');
  const w = collector();
  const wr = await rt.exec({ containerId: c.id, cmd: ['touch', '/work/x'], user: '0' }, w.sink);
  t.not(wr.exitCode, 0);
  t.match(w.stderr, /Read-only file system/);
});

t.test('exec', needsDocker, async (t) => {
  const c = await started(t, 'exec');

  t.test('exec streams output chunks before the command ends', async (t) => {
    const out = collector();
    const p = rt.exec({ containerId: c.id, cmd: ['sh', '-c', 'echo a; sleep 1; echo b'], user: 'postgres' }, out.sink);
    const r = await p;
    const done = Date.now();
    t.equal(r.exitCode, 0);
    t.equal(out.stdout, 'a\nb\n');
    t.ok(out.chunks.length >= 2, `chunks: ${JSON.stringify(out.chunks)}`);
    const first = out.chunks[0];
    t.equal(first?.chunk, 'a\n');
    t.ok(first !== undefined && done - first.at >= 700, `first chunk ${first ? done - first.at : '?'} ms before the end`);
  });

  t.test('exec keeps stderr apart from stdout and propagates the exit code', async (t) => {
    const out = collector();
    const r = await rt.exec({ containerId: c.id, cmd: ['sh', '-c', 'echo out; echo err >&2; exit 3'], user: 'postgres' }, out.sink);
    t.equal(r.exitCode, 3);
    t.equal(out.stdout, 'out\n');
    t.equal(out.stderr, 'err\n');
  });

  t.test('exec passes stdin, env, user and workdir', async (t) => {
    const out = collector();
    const r = await rt.exec(
      {
        containerId: c.id,
        cmd: ['sh', '-c', 'cat; echo "$FOO $(id -un) $(pwd)"'],
        user: 'postgres',
        env: ['FOO=bar'],
        workdir: '/tmp',
        stdin: 'hello\nworld\n',
      },
      out.sink,
    );
    t.equal(r.exitCode, 0);
    t.equal(out.stdout, 'hello\nworld\nbar postgres /tmp\n');
  });

  t.test('exec feeds SQL on stdin to psql', async (t) => {
    const out = collector();
    const r = await rt.exec(
      { containerId: c.id, cmd: ['psql', '-h', '127.0.0.1', '-U', 'sqlrs', '-d', 'postgres', '-At', '-v', 'ON_ERROR_STOP=1'], user: 'postgres', stdin: 'select 40 + 2;\n' },
      out.sink,
    );
    t.equal(r.exitCode, 0, out.stderr);
    t.equal(out.stdout, '42\n');
  });

  t.test('exec keeps multi-byte characters intact across chunks', async (t) => {
    const out = collector();
    const r = await rt.exec({ containerId: c.id, cmd: ['sh', '-c', "printf '\\303'; sleep 0.2; printf '\\251\\n'"], user: 'postgres' }, out.sink);
    t.equal(r.exitCode, 0);
    t.equal(out.stdout, 'é\n');
  });

  t.test('exec of a missing command reports a non-zero exit or an error', async (t) => {
    const out = collector();
    try {
      const r = await rt.exec({ containerId: c.id, cmd: ['no-such-command-x'], user: 'postgres' }, out.sink);
      t.not(r.exitCode, 0);
    } catch (e) {
      t.match(e, { code: 'ENGINE_CONTAINER' });
    }
  });

  t.test('aborting a long exec rejects quickly and kills the process and its children', async (t) => {
    const ac = new AbortController();
    const t0 = Date.now();
    let abortedAt = 0;
    const p = rt.exec(
      { containerId: c.id, cmd: ['sh', '-c', 'sleep 31 & echo started; sleep 30; wait'], user: 'postgres' },
      () => {
        abortedAt = Date.now();
        setTimeout(() => ac.abort(), 100);
      },
      ac.signal,
    );
    await t.rejects(p, { code: 'cancelled' });
    t.ok(abortedAt > 0, 'the command had started');
    t.ok(Date.now() - t0 < 3000, `rejected after ${Date.now() - t0} ms`);
    const ps = collector();
    await rt.exec({ containerId: c.id, cmd: ['ps', '-eo', 'args'], user: '0' }, ps.sink);
    t.notMatch(ps.stdout, /sleep 30/);
    t.notMatch(ps.stdout, /sleep 31/);
  });

  t.test('aborting a plain exec of sleep removes the process', async (t) => {
    const ac = new AbortController();
    const t0 = Date.now();
    const p = rt.exec({ containerId: c.id, cmd: ['sleep', '30'], user: 'postgres' }, () => undefined, ac.signal);
    setTimeout(() => ac.abort(), 200);
    await t.rejects(p, { code: 'cancelled' });
    t.ok(Date.now() - t0 < 3000, `rejected after ${Date.now() - t0} ms`);
    const ps = collector();
    await rt.exec({ containerId: c.id, cmd: ['ps', '-eo', 'args'], user: '0' }, ps.sink);
    t.notMatch(ps.stdout, /sleep 30/);
  });

  t.test('aborting an exec kills its processes from inside the container when host kill is off', async (t) => {
    const inner = new DockerRuntime({ socketPath, logger, hostKill: false });
    t.teardown(() => inner.close());
    const ac = new AbortController();
    let abortedAt = 0;
    const p = inner.exec(
      { containerId: c.id, cmd: ['sh', '-c', 'sleep 33 & echo started; sleep 32; wait'], user: 'postgres' },
      () => {
        abortedAt = Date.now();
        ac.abort(); // abort once the command is surely running
      },
      ac.signal,
    );
    await t.rejects(p, { code: 'cancelled' });
    t.ok(abortedAt > 0, 'the command had started');
    t.ok(Date.now() - abortedAt < 3000, `rejected ${Date.now() - abortedAt} ms after the abort`);
    const ps = collector();
    await rt.exec({ containerId: c.id, cmd: ['ps', '-eo', 'args'], user: '0' }, ps.sink);
    t.notMatch(ps.stdout, /sleep 3[23]/);
  });

  t.test('exec in a missing container fails with a container error', async (t) => {
    await t.rejects(rt.exec({ containerId: `missing-${RUN}`, cmd: ['true'], user: 'postgres' }, () => undefined), {
      code: 'ENGINE_CONTAINER',
      details: /no such container/i,
    });
  });
});

t.test('stopPostgres stops the server and startPostgres brings it back', needsDocker, async (t) => {
  const c = await started(t, 'stopstart');
  await rt.stopPostgres(c.id);
  const status = collector();
  const s = await rt.exec({ containerId: c.id, cmd: ['pg_ctl', '-D', PGDATA, 'status'], user: 'postgres' }, status.sink);
  t.equal(s.exitCode, 3, 'pg_ctl status: not running');
  t.not((await hostPsql(c.port, 'select 1')).code, 0, 'no server behind the port');
  await rt.stopPostgres(c.id); // stopping a stopped server is fine
  t.equal(await rt.isRunning(c.id), true, 'the container keeps running');
  await rt.startPostgres(c.id);
  const q = await hostPsql(c.port, 'select 2');
  t.equal(q.code, 0, q.out);
  t.equal(q.out.trim(), '2');
});

t.test('remove deletes a container and treats a missing one as success', needsDocker, async (t) => {
  const c = await started(t, 'remove', { [LABEL_ROLE]: 'remove-test' });
  await rt.remove(c.id);
  t.equal(await rt.isRunning(c.id), false);
  t.same(await rt.list({ ...LABELS, [LABEL_ROLE]: 'remove-test' }), []);
  t.equal(await tcpConnects(c.port), false, 'the port is closed');
  await t.resolves(rt.remove(c.id));
  await t.resolves(rt.remove(`sqlrs-missing-${RUN}`));
});

t.test('start aborted while starting leaves no container behind', needsDocker, async (t) => {
  const dir = await dataCopy(t);
  const labels = { ...LABELS, [LABEL_ROLE]: 'abort-start' };
  const ac = new AbortController();
  const p = rt.start({ image: IMAGE, name: name('abortstart'), labels, dataDir: dir, extraMounts: [] }, ac.signal);
  setTimeout(() => ac.abort(), 150);
  await t.rejects(p, { code: 'cancelled' });
  t.same(await rt.list(labels), []);
});
