/**
 * Finding the container API (`src/workers/daemon.ts`): the wanted kind from env and config, the
 * probing order, `/_ping` against real unix-socket servers, Podman's default connection, the
 * Podman service the engine starts itself, and the advice when nothing answers.
 *
 * The sockets are real HTTP servers on unix sockets; the `podman` binary is a small script in a
 * private PATH (real Podman is exercised by `test/e2e/runtime.test.ts` and the Podman pass).
 */
import t from 'tap';
import { createServer } from 'node:http';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { candidates, findDaemon, ownSocket, ping, podmanDefaultConnection, wantedMode } from '../../src/workers/daemon.js';
import { nullLogger } from '../../src/log.js';

interface Teardown { teardown(fn: () => void | Promise<void>): void }

function scratch(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'daemon-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An HTTP server on a unix socket answering `/_ping` with `status`. */
async function pingServer(t: Teardown, path: string, status = 200): Promise<void> {
  const srv = createServer((req, res) => {
    res.statusCode = req.url === '/_ping' ? status : 404;
    res.end('OK');
  });
  await new Promise<void>((resolve) => srv.listen(path, resolve));
  t.teardown(() => new Promise<void>((resolve) => srv.close(() => resolve())));
}

/** A fake `podman` in its own PATH dir: `system connection list` prints `connections`; `system service` serves `/_ping` on its socket. */
function fakePodman(dir: string, connections: string): string {
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const server = join(dir, 'serve.mjs');
  writeFileSync(server, [
    "import { createServer } from 'node:http';",
    "const path = process.argv[2].replace('unix://', '');",
    "const srv = createServer((req, res) => { res.statusCode = req.url === '/_ping' ? 200 : 404; res.end('OK'); });",
    'srv.listen(path);',
    "process.on('SIGTERM', () => srv.close(() => process.exit(0)));",
  ].join('\n'));
  const script = join(bin, 'podman');
  writeFileSync(script, [
    '#!/bin/sh',
    'if [ "$1 $2 $3" = "system connection list" ]; then',
    `  printf '%s\\n' '${connections}'`,
    '  exit 0',
    'fi',
    'if [ "$1 $2" = "system service" ]; then',
    `  exec ${process.execPath} ${server} "$4"`,
    'fi',
    'exit 2',
  ].join('\n'));
  chmodSync(script, 0o755);
  return bin;
}

t.test('the wanted runtime: env wins over config; binary names and paths select their kind; anything else is refused', async (t) => {
  t.equal(wantedMode('auto', {}), 'auto');
  t.equal(wantedMode('podman', {}), 'podman');
  t.equal(wantedMode('docker', { SQLRS_CONTAINER_RUNTIME: ' podman ' }), 'podman', 'env wins');
  t.equal(wantedMode('podman', { SQLRS_CONTAINER_RUNTIME: 'auto' }), 'auto');
  t.equal(wantedMode('auto', { SQLRS_CONTAINER_RUNTIME: '/usr/bin/podman' }), 'podman', 'a binary path');
  t.equal(wantedMode('auto', { SQLRS_CONTAINER_RUNTIME: 'Docker' }), 'docker', 'case-insensitive');
  t.equal(wantedMode('auto', { SQLRS_CONTAINER_RUNTIME: '   ' }), 'auto', 'blank env means config');
  t.throws(() => wantedMode('auto', { SQLRS_CONTAINER_RUNTIME: 'nerdctl' }), { code: 'ENGINE_CONTAINER', message: /unsupported container runtime "nerdctl"/, details: /SQLRS_CONTAINER_RUNTIME must be auto, docker or podman/ });
});

t.test('candidates: Docker first in auto; DOCKER_HOST and CONTAINER_HOST replace or lead the defaults; rootless under XDG_RUNTIME_DIR', async (t) => {
  const env = { DOCKER_HOST: 'unix:///d.sock', CONTAINER_HOST: 'unix:///p.sock', XDG_RUNTIME_DIR: '/run/user/1000' };
  t.same(candidates('auto', env).map((c) => [c.kind, c.socketPath, c.source]), [
    ['docker', '/d.sock', 'DOCKER_HOST'],
    ['podman', '/p.sock', 'CONTAINER_HOST'],
    ['podman', '/run/podman/podman.sock', 'rootful Podman socket'],
    ['podman', '/run/user/1000/podman/podman.sock', 'rootless Podman socket'],
  ]);
  t.same(candidates('docker', {}).map((c) => c.socketPath), ['/var/run/docker.sock']);
  t.same(candidates('podman', {}).map((c) => c.socketPath), ['/run/podman/podman.sock']);
  t.same(candidates('docker', { DOCKER_HOST: 'tcp://1.2.3.4:2375' }).map((c) => c.socketPath), ['/var/run/docker.sock'], 'a non-unix DOCKER_HOST is not a socket candidate');
});

t.test('ping is true only for a 2xx /_ping; a missing socket or an error status is false', async (t) => {
  const dir = scratch(t);
  await pingServer(t, join(dir, 'ok.sock'));
  await pingServer(t, join(dir, 'err.sock'), 500);
  t.equal(await ping(join(dir, 'ok.sock')), true);
  t.equal(await ping(join(dir, 'err.sock')), false);
  t.equal(await ping(join(dir, 'none.sock')), false);
  writeFileSync(join(dir, 'file.sock'), 'not a socket');
  t.equal(await ping(join(dir, 'file.sock')), false, 'a plain file is not an API');
});

t.test('auto picks Docker when both answer, and Podman when only Podman answers', async (t) => {
  const dir = scratch(t);
  await pingServer(t, join(dir, 'docker.sock'));
  await pingServer(t, join(dir, 'podman.sock'));
  const both = { DOCKER_HOST: `unix://${join(dir, 'docker.sock')}`, CONTAINER_HOST: `unix://${join(dir, 'podman.sock')}`, PATH: '' };
  const a = await findDaemon({ configMode: 'auto', ownDir: dir, log: nullLogger, env: both });
  t.match(a, { kind: 'docker', socketPath: join(dir, 'docker.sock'), source: 'DOCKER_HOST' });
  const onlyPodman = { ...both, DOCKER_HOST: `unix://${join(dir, 'gone.sock')}` };
  const b = await findDaemon({ configMode: 'auto', ownDir: dir, log: nullLogger, env: onlyPodman });
  t.match(b, { kind: 'podman', socketPath: join(dir, 'podman.sock'), source: 'CONTAINER_HOST' });
  const c = await findDaemon({ configMode: 'docker', ownDir: dir, log: nullLogger, env: { ...both, SQLRS_CONTAINER_RUNTIME: 'podman' } });
  t.equal(c.kind, 'podman', 'SQLRS_CONTAINER_RUNTIME=podman skips Docker even when it answers');
});

t.test('nothing answering: a clear error naming every socket tried and what to run', async (t) => {
  const dir = scratch(t);
  const env = { DOCKER_HOST: `unix://${join(dir, 'd.sock')}`, CONTAINER_HOST: `unix://${join(dir, 'p.sock')}`, PATH: '' };
  await t.rejects(findDaemon({ configMode: 'auto', ownDir: dir, log: nullLogger, env }), {
    code: 'ENGINE_CONTAINER', message: 'no container runtime',
    details: new RegExp(`${join(dir, 'd.sock')} \\(DOCKER_HOST\\).*${join(dir, 'p.sock')} \\(CONTAINER_HOST\\).*start Docker.*podman system service`),
  });
  await t.rejects(findDaemon({ configMode: 'docker', ownDir: dir, log: nullLogger, env }), { code: 'ENGINE_CONTAINER', details: /start Docker \(e\.g\. `dockerd`/ });
  await t.rejects(findDaemon({ configMode: 'podman', ownDir: dir, log: nullLogger, env }), { code: 'ENGINE_CONTAINER', details: /install Podman/ });
});

t.test('the default podman connection is used when it answers', async (t) => {
  const dir = scratch(t);
  const sock = join(dir, 'conn.sock');
  await pingServer(t, sock);
  const bin = fakePodman(dir, JSON.stringify([{ Name: 'other', URI: 'ssh://x/run/podman.sock', Default: false }, { Name: 'mine', URI: `unix://${sock}`, Default: true }]));
  const env = { PATH: bin, DOCKER_HOST: `unix://${join(dir, 'none.sock')}` };
  t.equal(await podmanDefaultConnection(join(bin, 'podman'), env), sock);
  const d = await findDaemon({ configMode: 'auto', ownDir: dir, log: nullLogger, env });
  t.match(d, { kind: 'podman', socketPath: sock, source: 'default podman connection' });
  t.equal(d.service, undefined, 'no service was started');
});

t.test('with podman installed and no socket answering, the engine starts podman system service and stops it', async (t) => {
  const dir = scratch(t);
  const bin = fakePodman(dir, '[]');
  const env = { PATH: bin, DOCKER_HOST: `unix://${join(dir, 'none.sock')}` };
  const d = await findDaemon({ configMode: 'podman', ownDir: dir, log: nullLogger, env });
  t.match(d, { kind: 'podman', socketPath: join(dir, 'podman.sock'), source: 'podman system service started by the engine' });
  t.ok(d.service, 'the engine owns the service');
  t.equal(await ping(d.socketPath), true, 'the started service answers');
  await d.service?.stop();
  t.equal(await ping(d.socketPath), false, 'stopped with the engine');
  await d.service?.stop(); // idempotent
});

t.test('a podman service that never answers is a clear error, and is not left running', async (t) => {
  const dir = scratch(t);
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'podman'), '#!/bin/sh\n[ "$1 $2" = "system service" ] && { echo "cannot bind: permission denied" >&2; exit 125; }\necho "[]"\n');
  chmodSync(join(bin, 'podman'), 0o755);
  await t.rejects(findDaemon({ configMode: 'podman', ownDir: dir, log: nullLogger, env: { PATH: bin } }), {
    code: 'ENGINE_CONTAINER', message: 'cannot start podman system service', details: /exited \(code 125\).*cannot bind: permission denied/,
  });
});

t.test('the engine-owned socket stays within the unix socket path limit', async (t) => {
  t.equal(ownSocket('/run/x'), '/run/x/podman.sock');
  const long = `/${'d'.repeat(120)}`;
  const s = ownSocket(long);
  t.ok(Buffer.byteLength(s) <= 100, s);
  t.equal(ownSocket(long), s, 'stable for the same directory');
  t.notOk(existsSync(s));
});
