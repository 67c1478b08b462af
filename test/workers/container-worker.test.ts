/**
 * The container worker entry (`container-worker.ts`). Its operations run through `DockerRuntime`
 * in `containers.test.ts`, against the real daemon.
 */
import t from 'tap';

t.test('container worker refuses to load on the main thread', async (t) => {
  await t.rejects(import('../../src/workers/container-worker.js'), { code: 'ENGINE_WORKER' });
});
