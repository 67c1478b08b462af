/**
 * The fs worker entry (`fs-worker.ts`). Its dispatch and cooperative abort run through `FsPool`
 * in `pool.test.ts`, in real worker threads.
 */
import t from 'tap';

t.test('fs worker refuses to load on the main thread', async (t) => {
  await t.rejects(import('../../src/workers/fs-worker.js'), { code: 'ENGINE_ILLEGAL_STATE' });
});
