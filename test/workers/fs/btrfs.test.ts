/** The btrfs backend (`fs/btrfs.ts`) beyond the shared contract of `states.test.ts`. */
import { join } from 'node:path';
import t from 'tap';
import { prepareBase } from '../../../src/workers/fs/states.js';
import { UID, GID, scratch } from '../../helpers/fs.js';

t.test('prepareBase on btrfs refuses a non-btrfs directory', async (t) => {
  const root = await scratch(t);
  await t.rejects(prepareBase({ backend: 'btrfs', baseDir: join(root, 'base'), uid: UID, gid: GID }), {
    code: 'ENGINE_SNAPSHOT',
    message: /not mounted as btrfs/,
  });
});
