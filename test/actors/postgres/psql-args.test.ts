import t, { type Test } from 'tap';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { InvalidArgumentError } from '../../../src/errors.js';
import {
  argsSummary, cleanPath, dirPath, goTrimSpace, inputArgs, validatePsqlRequest, type PsqlInput,
} from '../../../src/actors/postgres/psql-args.js';

const exists = (): boolean => true;
const D = ['-X', '-v', 'ON_ERROR_STOP=1'];

/** Runs `fn`, expecting an InvalidArgumentError with exactly `message` and `details`. */
function expectInvalid(t: Test, fn: () => unknown, message: string, details?: string): void {
  try {
    fn();
    t.fail(`expected "${message}"`);
  } catch (e) {
    t.ok(e instanceof InvalidArgumentError, 'is an InvalidArgumentError');
    const err = e as InvalidArgumentError;
    t.equal(err.code, 'invalid_argument');
    t.equal(err.message, message);
    t.equal(err.details, details);
  }
}

t.test('validatePsqlRequest rejects every invalid argument with the documented message', async (t) => {
  const cases: Array<{ name: string; args: string[]; stdin?: string; message: string; details?: string }> = [
    { name: '-- followed by an arg', args: ['--', 'db'], message: 'positional arguments are not allowed' },
    { name: '-- followed by an empty string', args: ['--', ''], message: 'positional arguments are not allowed' },
    { name: '-h', args: ['-h'], message: 'connection flags are not allowed', details: '-h' },
    { name: '-p', args: ['-p'], message: 'connection flags are not allowed', details: '-p' },
    { name: '-U', args: ['-U'], message: 'connection flags are not allowed', details: '-U' },
    { name: '-d', args: ['-d'], message: 'connection flags are not allowed', details: '-d' },
    { name: '--host', args: ['--host'], message: 'connection flags are not allowed', details: '--host' },
    { name: '--port', args: ['--port'], message: 'connection flags are not allowed', details: '--port' },
    { name: '--username', args: ['--username'], message: 'connection flags are not allowed', details: '--username' },
    { name: '--dbname', args: ['--dbname'], message: 'connection flags are not allowed', details: '--dbname' },
    { name: '--database', args: ['--database'], message: 'connection flags are not allowed', details: '--database' },
    { name: '--host=', args: ['--host=db'], message: 'connection flags are not allowed', details: '--host=db' },
    { name: '--port=', args: ['--port=5432'], message: 'connection flags are not allowed', details: '--port=5432' },
    { name: '--username=', args: ['--username=u'], message: 'connection flags are not allowed', details: '--username=u' },
    { name: '--dbname=', args: ['--dbname=x'], message: 'connection flags are not allowed', details: '--dbname=x' },
    { name: '--database=', args: ['--database='], message: 'connection flags are not allowed', details: '--database=' },
    { name: 'glued -h', args: ['-hfoo'], message: 'connection flags are not allowed', details: '-hfoo' },
    { name: 'glued -p', args: ['-p5432'], message: 'connection flags are not allowed', details: '-p5432' },
    { name: 'glued -U', args: ['-Ufoo'], message: 'connection flags are not allowed', details: '-Ufoo' },
    { name: 'glued -d', args: ['-dfoo'], message: 'connection flags are not allowed', details: '-dfoo' },
    { name: 'connection flag after a valid one', args: ['-X', '-c', 'select 1', '-h', 'x'], message: 'connection flags are not allowed', details: '-h' },
    { name: '-v without value', args: ['-v'], message: 'missing value for variable flag', details: '-v' },
    { name: '--set without value', args: ['--set'], message: 'missing value for variable flag', details: '--set' },
    { name: '--variable without value', args: ['--variable'], message: 'missing value for variable flag', details: '--variable' },
    { name: 'ON_ERROR_STOP=0', args: ['-v', 'ON_ERROR_STOP=0'], message: 'ON_ERROR_STOP must be set to 1', details: 'ON_ERROR_STOP=0' },
    { name: '--set=ON_ERROR_STOP=0', args: ['--set=ON_ERROR_STOP=0'], message: 'ON_ERROR_STOP must be set to 1', details: 'ON_ERROR_STOP=0' },
    { name: '--variable=ON_ERROR_STOP=on', args: ['--variable=ON_ERROR_STOP=on'], message: 'ON_ERROR_STOP must be set to 1', details: 'ON_ERROR_STOP=on' },
    { name: 'glued -von_error_stop=true', args: ['-von_error_stop=true'], message: 'ON_ERROR_STOP must be set to 1', details: 'on_error_stop=true' },
    { name: '--set ON_ERROR_STOP= (empty)', args: ['--set', 'ON_ERROR_STOP='], message: 'ON_ERROR_STOP must be set to 1', details: 'ON_ERROR_STOP=' },
    { name: 'ON_ERROR_STOP=11', args: ['-v', 'ON_ERROR_STOP=11'], message: 'ON_ERROR_STOP must be set to 1', details: 'ON_ERROR_STOP=11' },
    { name: 'bare ON_ERROR_STOP', args: ['-v', 'ON_ERROR_STOP'], message: 'ON_ERROR_STOP must be set to 1' },
    { name: 'bare lower-case on_error_stop', args: ['--variable', ' on_error_stop '], message: 'ON_ERROR_STOP must be set to 1' },
    { name: '-f without value', args: ['-f'], message: 'missing value for file flag', details: '-f' },
    { name: '--file without value', args: ['--file'], message: 'missing value for file flag', details: '--file' },
    { name: '--file= empty', args: ['--file='], message: 'missing value for file flag', details: '--file=' },
    { name: '-f with empty path', args: ['-f', ''], message: 'file path is empty' },
    { name: '--file with empty path', args: ['--file', ''], message: 'file path is empty' },
    { name: '-f relative', args: ['-f', 'init.sql'], message: 'file path must be absolute', details: 'init.sql' },
    { name: 'glued -f relative', args: ['-frelative.sql'], message: 'file path must be absolute', details: 'relative.sql' },
    { name: '--file= relative', args: ['--file=./a.sql'], message: 'file path must be absolute', details: './a.sql' },
    { name: '-f blank', args: ['-f', '   '], message: 'file path must be absolute', details: '   ' },
    { name: '-c without value', args: ['-c'], message: 'missing value for command flag', details: '-c' },
    { name: '--command without value', args: ['--command'], message: 'missing value for command flag', details: '--command' },
    { name: 'bare positional', args: ['postgres'], message: 'positional database arguments are not allowed', details: 'postgres' },
    { name: 'separate value of a pass-through flag', args: ['-P', 'pager=off'], message: 'positional database arguments are not allowed', details: 'pager=off' },
    { name: 'value consumed by -v is not re-read', args: ['-v', '-c', 'select 1'], message: 'positional database arguments are not allowed', details: 'select 1' },
    { name: '-f - without stdin', args: ['-f', '-'], message: 'stdin is required when using -f -' },
    { name: 'glued -f- without stdin', args: ['-f-'], message: 'stdin is required when using -f -' },
    { name: '-f - without stdin fails at its position', args: ['-f', '-', 'db'], message: 'stdin is required when using -f -' },
    { name: 'stdin without -f -', args: ['-c', 'select 1'], stdin: 'select 2', message: 'stdin is only valid with -f -' },
    { name: 'empty stdin without -f -', args: [], stdin: '', message: 'stdin is only valid with -f -' },
    { name: 'first error wins', args: ['db', '-h'], message: 'positional database arguments are not allowed', details: 'db' },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      expectInvalid(t, () => validatePsqlRequest(c.args, c.stdin, exists), c.message, c.details);
    });
  }
});

t.test('validatePsqlRequest reports a file that is not on the engine host', async (t) => {
  const dir = t.testdir({ 'a.sql': 'select 1;' });
  expectInvalid(t, () => validatePsqlRequest(['-f', join(dir, 'missing.sql')], undefined), 'cannot read file', join(dir, 'missing.sql'));
  const ok = validatePsqlRequest(['-f', join(dir, 'a.sql')], undefined);
  t.same(ok.inputs, [{ kind: 'file', path: join(dir, 'a.sql') }]);
  t.equal(ok.workDir, dir);
  const seen: string[] = [];
  expectInvalid(t, () => validatePsqlRequest(['-f/x/y.sql'], undefined, (p) => { seen.push(p); return false; }), 'cannot read file', '/x/y.sql');
  t.same(seen, ['/x/y.sql'], 'the check receives the path as given');
});

t.test('validatePsqlRequest normalizes by appending the missing defaults', async (t) => {
  const cases: Array<{ name: string; args: string[]; stdin?: string; normalized: string[] }> = [
    { name: 'nothing given', args: [], normalized: D },
    { name: 'file only', args: ['-f', '/abs/init.sql'], normalized: ['-f', '/abs/init.sql', ...D] },
    { name: '-X given', args: ['-X', '-c', 'select 1'], normalized: ['-X', '-c', 'select 1', '-v', 'ON_ERROR_STOP=1'] },
    { name: '--no-psqlrc given', args: ['--no-psqlrc'], normalized: ['--no-psqlrc', '-v', 'ON_ERROR_STOP=1'] },
    { name: 'ON_ERROR_STOP given', args: ['-v', 'ON_ERROR_STOP=1'], normalized: ['-v', 'ON_ERROR_STOP=1', '-X'] },
    { name: 'lower-case on_error_stop accepted', args: ['-v', 'on_error_stop=1'], normalized: ['-v', 'on_error_stop=1', '-X'] },
    { name: 'value trimmed', args: ['--set', ' ON_ERROR_STOP = 1 '], normalized: ['--set', ' ON_ERROR_STOP = 1 ', '-X'] },
    { name: '--set= form', args: ['--set=ON_ERROR_STOP=1', '-X'], normalized: ['--set=ON_ERROR_STOP=1', '-X'] },
    { name: '--variable= form', args: ['--variable=ON_ERROR_STOP=1'], normalized: ['--variable=ON_ERROR_STOP=1', '-X'] },
    { name: 'glued -v form', args: ['-vON_ERROR_STOP=1'], normalized: ['-vON_ERROR_STOP=1', '-X'] },
    { name: 'other variables do not count', args: ['-v', 'FOO=bar', '-vBAZ', '--set=X=1'], normalized: ['-v', 'FOO=bar', '-vBAZ', '--set=X=1', ...D] },
    { name: 'empty strings kept', args: ['', '-c', 'select 1', ''], normalized: ['', '-c', 'select 1', '', ...D] },
    { name: 'empty value of -v accepted', args: ['-v', ''], normalized: ['-v', '', ...D] },
    { name: 'trailing -- kept', args: ['-c', 'select 1', '--'], normalized: ['-c', 'select 1', '--', ...D] },
    { name: 'pass-through flags kept', args: ['-q', '--echo-all', '-1', '-Pformat=unaligned', '-'], normalized: ['-q', '--echo-all', '-1', '-Pformat=unaligned', '-', ...D] },
    { name: 'glued and long forms kept', args: ['-cselect 1', '--command=select 2', '--file=/a.sql', '-f/b.sql'], normalized: ['-cselect 1', '--command=select 2', '--file=/a.sql', '-f/b.sql', ...D] },
    { name: 'stdin', args: ['-f', '-'], stdin: 'select 1;', normalized: ['-f', '-', ...D] },
    { name: 'empty stdin counts as given', args: ['-f-'], stdin: '', normalized: ['-f-', ...D] },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const out = validatePsqlRequest(c.args, c.stdin, exists);
      t.same(out.normalized, c.normalized);
      t.equal(out.argsNormalized, c.normalized.join(' '));
    });
  }
});

t.test('validatePsqlRequest joins normalized args with single spaces', async (t) => {
  const out = validatePsqlRequest(['-f', '/abs/init.sql'], undefined, exists);
  t.equal(out.argsNormalized, '-f /abs/init.sql -X -v ON_ERROR_STOP=1');
  t.equal(validatePsqlRequest(['', '-q'], undefined, exists).argsNormalized, ' -q -X -v ON_ERROR_STOP=1');
});

t.test('validatePsqlRequest records inputs in argument order', async (t) => {
  const out = validatePsqlRequest(
    ['-c', 'select 1', '--command=select 2', '-cselect 3', '-f', '/s/schema.sql', '--file=/s/seed.sql', '-f-', '--command', ''],
    'select 6;', exists,
  );
  const want: PsqlInput[] = [
    { kind: 'command', sql: 'select 1' },
    { kind: 'command', sql: 'select 2' },
    { kind: 'command', sql: 'select 3' },
    { kind: 'file', path: '/s/schema.sql' },
    { kind: 'file', path: '/s/seed.sql' },
    { kind: 'stdin' },
    { kind: 'command', sql: '' },
  ];
  t.same(out.inputs, want);
  t.equal(out.stdin, 'select 6;');
});

t.test('validatePsqlRequest gives every step the shared flags and the defaults', async (t) => {
  const out = validatePsqlRequest(
    ['-q', '-c', 'select 1', '-v', 'A=1', '--file=/s/a.sql', '-f-', '-1', '--', ],
    'select 2;', exists,
  );
  const shared = ['-q', '-v', 'A=1', '-1', '-X', '-v', 'ON_ERROR_STOP=1'];
  t.same(out.steps, [
    { args: [...shared, '-c', 'select 1'], input: { kind: 'command', sql: 'select 1' } },
    { args: [...shared, '-f', '/s/a.sql'], input: { kind: 'file', path: '/s/a.sql' } },
    { args: [...shared, '-f', '-'], input: { kind: 'stdin' } },
  ]);
});

t.test('validatePsqlRequest keeps user-placed defaults in place and drops empty strings from steps', async (t) => {
  const out = validatePsqlRequest(['', '-f', '/a.sql', '-v', 'on_error_stop=1', '', '--no-psqlrc', '-cselect 1'], undefined, exists);
  t.same(out.normalized, ['', '-f', '/a.sql', '-v', 'on_error_stop=1', '', '--no-psqlrc', '-cselect 1']);
  t.same(out.steps.map((s) => s.args), [
    ['-v', 'on_error_stop=1', '--no-psqlrc', '-f', '/a.sql'],
    ['-v', 'on_error_stop=1', '--no-psqlrc', '-c', 'select 1'],
  ]);
});

t.test('validatePsqlRequest plans one input-less step when there is no input', async (t) => {
  const out = validatePsqlRequest(['-q', '--'], undefined, exists);
  t.same(out.steps, [{ args: ['-q', '-X', '-v', 'ON_ERROR_STOP=1'] }]);
  t.same(out.inputs, []);
  t.equal(out.steps[0]?.input, undefined);
  t.notOk('input' in (out.steps[0] ?? {}), 'no input key at all');
  t.notOk('stdin' in out, 'no stdin key without -f -');
});

t.test('validatePsqlRequest takes the work dir from the first file', async (t) => {
  t.equal(validatePsqlRequest(['-f-', '-f', '/a/b/../c/x.sql', '-f', '/z/y.sql'], 's', exists).workDir, '/a/c');
  t.equal(validatePsqlRequest(['-f/top.sql'], undefined, exists).workDir, '/');
  t.equal(validatePsqlRequest(['-c', 'select 1'], undefined, exists).workDir, process.cwd());
  t.equal(validatePsqlRequest(['-f-'], 's', exists).workDir, process.cwd());
});

t.test('validatePsqlRequest does not mutate its arguments', async (t) => {
  const args = ['-c', 'select 1'];
  validatePsqlRequest(args, undefined, exists);
  t.same(args, ['-c', 'select 1']);
});

t.test('validatePsqlRequest checks files with stat by default', async (t) => {
  const dir = t.testdir({ sub: { 'x.sql': 'select 1;' } });
  const path = join(dir, 'sub', 'x.sql');
  writeFileSync(path, 'select 2;');
  const out = validatePsqlRequest([`--file=${path}`], undefined);
  t.same(out.steps[0]?.args, ['-X', '-v', 'ON_ERROR_STOP=1', '-f', path]);
  t.equal(out.workDir, join(dir, 'sub'));
});

t.test('argsSummary renders an input like the task list shows it', async (t) => {
  t.equal(argsSummary({ kind: 'file', path: '/abs/a.sql' }), '-f /abs/a.sql');
  t.equal(argsSummary({ kind: 'stdin' }), '-f -');
  t.equal(argsSummary({ kind: 'command', sql: 'select 1' }), '-c select 1');
  t.same(inputArgs({ kind: 'command', sql: 'select 1' }), ['-c', 'select 1']);
});

t.test('cleanPath cleans paths lexically', async (t) => {
  const cases: Array<[string, string]> = [
    ['', '.'], ['/', '/'], ['//a//b/', '/a/b'], ['/a/./b/../c', '/a/c'], ['/../a', '/a'],
    ['a/../..', '..'], ['../../a', '../../a'], ['a/b/../../..', '..'], ['./', '.'],
  ];
  for (const [input, want] of cases) t.equal(cleanPath(input), want, input);
  t.equal(dirPath('/a/b/'), '/a/b');
  t.equal(dirPath('x.sql'), '.');
  t.equal(dirPath('/x.sql'), '/');
});

t.test('goTrimSpace trims white space but keeps a byte-order mark', async (t) => {
  t.equal(goTrimSpace(' \t\r\n\u0085\u00a0x\u3000 '), 'x');
  t.equal(goTrimSpace('\ufeffx'), '\ufeffx');
});
