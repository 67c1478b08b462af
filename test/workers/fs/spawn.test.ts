/** Running system programs from the fs thread (`fs/spawn.ts`). */
import t from 'tap';
import { findBinary, runProgram } from '../../../src/workers/fs/spawn.js';

t.test('runProgram resolves with the stdout of a program that exits 0', async (t) => {
  t.equal(await runProgram('sh', ['-c', 'echo hello']), 'hello\n');
  t.equal(await runProgram('pwd', [], { cwd: '/' }), '/\n');
});

t.test('runProgram rejects a non-zero exit with its stderr as a snapshot error', async (t) => {
  await t.rejects(runProgram('sh', ['-c', 'echo out; echo bad >&2; exit 3']), {
    code: 'ENGINE_SNAPSHOT',
    message: /^sh -c .* failed \(3\): bad$/,
    details: 'bad',
  });
});

t.test('runProgram keeps only a capped tail of the output', async (t) => {
  const out = await runProgram('sh', ['-c', 'head -c 200000 /dev/zero | tr "\\0" x; echo END']);
  t.equal(out.length, 64 * 1024 + 1);
  t.ok(out.startsWith('…') && out.endsWith('xEND\n'));
});

t.test('runProgram kills the program and rejects with cancelled when aborted', async (t) => {
  const ac = new AbortController();
  const running = runProgram('sleep', ['30'], { signal: ac.signal });
  ac.abort();
  await t.rejects(running, { code: 'cancelled' });
  await t.rejects(runProgram('true', [], { signal: ac.signal }), { code: 'cancelled' }, 'an aborted signal starts nothing');
});

t.test('runProgram refuses a program that is not installed', async (t) => {
  t.equal(await findBinary('sqlrs-no-such-program'), undefined);
  await t.rejects(runProgram('sqlrs-no-such-program', []), { code: 'ENGINE_SNAPSHOT', message: 'required program not found: sqlrs-no-such-program' });
});
