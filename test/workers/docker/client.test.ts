/**
 * The container worker's daemon error mapping (`docker/client.ts`). End-to-end, a daemon failure
 * arrives through `DockerRuntime` as the same coded error (`containers.test.ts`).
 */
import t from 'tap';
import { ContainerError, IllegalStateError } from '../../../src/errors.js';
import { client, initClient, toContainerError } from '../../../src/workers/docker/client.js';

t.test('client refuses to be used before init', async (t) => {
  t.throws(() => client(), { code: 'ENGINE_WORKER', message: 'container worker used before init' });
});

t.test('toContainerError names an unreachable or forbidden daemon socket', async (t) => {
  initClient({ socketPath: '/nowhere.sock', daemon: 'unix:///nowhere.sock' });
  const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED', syscall: 'connect' });
  t.match(toContainerError('ping', refused), { code: 'ENGINE_CONTAINER', message: 'docker is not running', details: /unix:\/\/\/nowhere\.sock \(ECONNREFUSED\)/ });
  const missing = Object.assign(new Error('connect ENOENT'), { code: 'ENOENT', syscall: 'connect' });
  t.match(toContainerError('ping', missing), { code: 'ENGINE_CONTAINER', message: 'docker is not running' });
  const denied = Object.assign(new Error('connect EACCES'), { code: 'EACCES', syscall: 'connect' });
  t.match(toContainerError('ping', denied), { code: 'ENGINE_CONTAINER', message: 'docker is not accessible', details: /permission denied/ });
});

t.test('toContainerError keeps engine errors and names the operation of daemon errors', async (t) => {
  const own = new IllegalStateError('x');
  t.equal(toContainerError('exec', own), own);
  const http = Object.assign(new Error('no such container'), { statusCode: 404 });
  t.match(toContainerError('exec', http), { code: 'ENGINE_CONTAINER', message: 'exec failed', details: 'no such container (HTTP 404)' });
  t.ok(toContainerError('exec', 'text') instanceof ContainerError);
});
