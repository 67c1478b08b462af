/**
 * Smoke test of the local Postgres image (`sqlrs-local/postgres:15`, built by `scripts/test-env.sh`)
 * straight through dockerode: its own entrypoint, tools, user and port publishing. Without a daemon
 * it skips, unless SQLRS_REQUIRE_DOCKER=1, where it fails.
 */
import t from 'tap';
import { PassThrough } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import Docker from 'dockerode';
import { dockerTestOptions, socketPath, TEST_IMAGE } from '../helpers/docker.js';

const IMAGE = TEST_IMAGE;
const docker = new Docker({ socketPath });

const needsDocker = await dockerTestOptions(docker, t);

async function execIn(c: Docker.Container, cmd: string[], user = 'postgres'): Promise<{ code: number; stdout: string; stderr: string }> {
  const exec = await c.exec({ Cmd: cmd, User: user, AttachStdout: true, AttachStderr: true, Tty: false });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (b: Buffer) => (stdout += b.toString()));
  err.on('data', (b: Buffer) => (stderr += b.toString()));
  docker.modem.demuxStream(stream, out, err);
  await new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
  });
  for (let i = 0; i < 100; i++) {
    const info = await exec.inspect();
    if (!info.Running) return { code: info.ExitCode ?? -1, stdout, stderr };
    await delay(10);
  }
  throw new Error(`exec ${cmd.join(' ')} did not finish`);
}

t.test('image runs postgres from its own entrypoint, published on 127.0.0.1 only', needsDocker, async (t) => {
  const name = `sqlrs-smoke-${randomBytes(4).toString('hex')}`;
  const c = await docker.createContainer({
    name,
    Image: IMAGE,
    Env: ['POSTGRES_HOST_AUTH_METHOD=trust'],
    Labels: { 'dev.sqlrs.role': 'smoke-test' },
    StopSignal: 'SIGINT',
    ExposedPorts: { '5432/tcp': {} },
    HostConfig: { PortBindings: { '5432/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
  });
  t.teardown(() => c.remove({ force: true, v: true }).catch(() => undefined));
  await c.start();

  const deadline = Date.now() + 30_000;
  let ready = await execIn(c, ['pg_isready', '-h', '127.0.0.1', '-q']);
  while (ready.code !== 0 && Date.now() < deadline) {
    await delay(100);
    ready = await execIn(c, ['pg_isready', '-h', '127.0.0.1', '-q']);
  }
  t.equal(ready.code, 0, 'postgres accepts TCP connections');

  const q = await execIn(c, ['psql', '-U', 'postgres', '-At', '-c', 'select 1']);
  t.equal(q.code, 0, q.stderr);
  t.equal(q.stdout, '1\n');

  const info = await c.inspect();
  const bindings = info.NetworkSettings.Ports['5432/tcp'] ?? [];
  t.ok(bindings.length > 0, 'port 5432 is published');
  t.ok(bindings.every((b) => b.HostIp === '127.0.0.1'), JSON.stringify(bindings));
  t.same(info.Mounts, [], 'no anonymous volume is created');
});

t.test('image has the postgres user 999:999 and the tools the engine runs', needsDocker, async (t) => {
  const c = await docker.createContainer({
    Image: IMAGE,
    Entrypoint: ['sleep'],
    Cmd: ['infinity'],
    Labels: { 'dev.sqlrs.role': 'smoke-test' },
  });
  t.teardown(() => c.remove({ force: true, v: true }).catch(() => undefined));
  await c.start();
  const ids = await execIn(c, ['sh', '-c', 'id -u postgres; id -g postgres'], '0');
  t.equal(ids.stdout, '999\n999\n');
  const tools = ['pg_ctl', 'initdb', 'postgres', 'psql', 'pg_isready', 'pgbench', 'sleep', 'sh', 'id', 'kill', 'chmod', 'mkdir', 'test', 'cat', 'grep', 'tail', 'ps'];
  const found = await execIn(c, ['sh', '-c', 'for b in "$@"; do command -v "$b" >/dev/null || echo "missing $b"; done', 'sh', ...tools]);
  t.equal(found.stdout, '', 'every tool is on PATH');
  const sock = await execIn(c, ['sh', '-c', 'test -d /var/run/postgresql && test -w /var/run/postgresql && echo ok']);
  t.equal(sock.stdout, 'ok\n', 'the socket directory is writable by postgres');
});
