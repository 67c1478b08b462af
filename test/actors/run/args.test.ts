import t from 'tap';
import {
  execArgv, pgbenchConnectionConflict, pgbenchHasPositional, psqlConnectionConflict, resolveInstance, validateRunRequest,
  PSQL_DSN, type InstanceLookup, type RunInstance, type RunRequestInput,
} from '../../../src/actors/run/args.js';
import { EngineError } from '../../../src/errors.js';
import { asInstanceId } from '../../../src/ids.js';

const ID = asInstanceId('a'.repeat(32));
const rows = new Map<string, RunInstance>([
  [ID, { instance_id: ID, runtime_id: 'c1', deleting: 0 }],
  ['b'.repeat(32), { instance_id: asInstanceId('b'.repeat(32)), runtime_id: null, deleting: 0 }],
  ['c'.repeat(32), { instance_id: asInstanceId('c'.repeat(32)), runtime_id: 'c3', deleting: 1 }],
]);
const names = new Map([['dev', ID], ['dangling', 'f'.repeat(32)]]);
const lookup: InstanceLookup = { byId: (id) => rows.get(id), idOfName: (n) => names.get(n) };

function err(body: RunRequestInput): { code: string; message: string } | undefined {
  try {
    validateRunRequest(body, lookup);
    return undefined;
  } catch (e) {
    if (!(e instanceof EngineError)) throw e;
    return { code: e.code, message: e.message };
  }
}

t.test('psql connection conflict covers flags, glued and long forms and URIs in non-flag args', async (t) => {
  for (const args of [['-h', 'x'], ['-p5432'], ['-Ufoo'], ['-d'], ['--host'], ['--port=1'], ['--username=x'], ['--dbname=x'], ['--database'],
    ['postgres://u@h/db'], ['-c', "select 'http://x'"], ['  -h  ']]) {
    t.ok(psqlConnectionConflict(args), JSON.stringify(args));
  }
  for (const args of [[], ['-c', 'select 1'], ['-At'], ['-v', 'ON_ERROR_STOP=1'], ['--set=x://y'], ['', '  '], ['-X', '-f', '-']]) {
    t.notOk(psqlConnectionConflict(args), JSON.stringify(args));
  }
});

t.test('pgbench connection conflict covers -h -p -U -d exact or glued but not long forms', async (t) => {
  for (const args of [['-h'], ['-p', '1'], ['-U', 'x'], ['-d'], ['-hlocalhost'], ['-dfoo'], [' -U ']]) t.ok(pgbenchConnectionConflict(args), JSON.stringify(args));
  for (const args of [[], ['-i'], ['-T', '5'], ['--host=x'], ['--username', 'x'], ['-P', '1']]) t.notOk(pgbenchConnectionConflict(args), JSON.stringify(args));
});

t.test('pgbench positional detection reads options like getopt_long', async (t) => {
  const cases: [string[], boolean][] = [
    [[], false], [['-i'], false], [['-T', '5'], false], [['-T5'], false], [['-c', '10', '-j', '2', '-P', '1'], false],
    [['-nc10'], false], [['-nc', '10'], false], [['--time', '5'], false], [['--time=5'], false], [['--ti', '5'], false],
    [['-S', '-i'], false], [['--'], false], [['-i', '--'], false],
    [['mydb'], true], [['-c', '10', 'mydb'], true], [['mydb', '-T', '5'], true], [['-i', '--', 'db'], true], [['-S', 'db'], true],
    [['--progress-timestamp', 'db'], true], [['-'], true],
  ];
  for (const [args, want] of cases) t.equal(pgbenchHasPositional(args), want, JSON.stringify(args));
});

t.test('exec argv appends the DSN for psql and local connection flags plus a database for pgbench', async (t) => {
  t.same(execArgv('psql', 'psql', ['-c', 'select 1']), ['psql', '-c', 'select 1', PSQL_DSN]);
  t.equal(PSQL_DSN, 'postgres://sqlrs@127.0.0.1:5432/postgres');
  t.same(execArgv('pgbench', 'pgbench', ['-T', '5']), ['pgbench', '-h', '127.0.0.1', '-p', '5432', '-U', 'sqlrs', '-T', '5', 'postgres']);
  t.same(execArgv('pgbench', '/usr/bin/pgbench', ['-i', 'other']), ['/usr/bin/pgbench', '-h', '127.0.0.1', '-p', '5432', '-U', 'sqlrs', '-i', 'other'],
    'a database the user names is kept and none is added');
});

t.test('instance refs resolve by exact id, then by name', async (t) => {
  t.equal(resolveInstance(ID, lookup)?.instance_id, ID);
  t.equal(resolveInstance('dev', lookup)?.instance_id, ID);
  t.equal(resolveInstance('dangling', lookup), undefined);
  t.equal(resolveInstance('A'.repeat(32), lookup), undefined, 'ids are exact');
});

t.test('run validation reports the first failing rule in the reference order', async (t) => {
  const cases: [RunRequestInput, { code: string; message: string }][] = [
    [{}, { code: 'invalid_argument', message: 'instance_ref is required' }],
    [{ instance_ref: ' \t', kind: 'bogus' }, { code: 'invalid_argument', message: 'instance_ref is required' }],
    [{ instance_ref: 'nope', kind: 'bogus' }, { code: 'invalid_argument', message: 'unknown run kind' }],
    [{ instance_ref: 'nope', kind: 'psql', args: ['-h', 'x'] }, { code: 'not_found', message: 'instance not found' }],
    [{ instance_ref: 'b'.repeat(32), kind: 'psql', args: ['-h', 'x'] }, { code: 'conflict', message: 'instance runtime id is missing' }],
    [{ instance_ref: ID, kind: 'psql', args: ['-h', 'x'], steps: [{}] }, { code: 'conflict', message: 'conflicting psql connection arguments' }],
    [{ instance_ref: ID, kind: 'pgbench', args: ['-p1'] }, { code: 'conflict', message: 'conflicting pgbench connection arguments' }],
    [{ instance_ref: ID, kind: 'pgbench', steps: [{ args: [] }] }, { code: 'invalid_argument', message: 'steps are only supported for run:psql' }],
    [{ instance_ref: ID, kind: 'psql', args: ['-At'], stdin: 'x', steps: [{ args: [] }] }, { code: 'invalid_argument', message: 'steps cannot be combined with args' }],
    [{ instance_ref: ID, kind: 'psql', stdin: '', steps: [{ args: [] }] }, { code: 'invalid_argument', message: 'steps cannot be combined with stdin' }],
    [{ instance_ref: ID, kind: 'psql', steps: [{ args: ['-c', 'x'] }, { args: ['postgres://x'] }] }, { code: 'conflict', message: 'conflicting psql connection arguments' }],
    [{ instance_ref: 'c'.repeat(32), kind: 'psql' }, { code: 'conflict', message: 'instance is being deleted' }],
  ];
  for (const [body, want] of cases) t.same(err(body), want, JSON.stringify(body));
});

t.test('run validation builds one step per request step, or one for args and stdin', async (t) => {
  const single = validateRunRequest({ instance_ref: 'dev', kind: ' PgBench ', command: '  ', args: ['-i'], stdin: null }, lookup);
  t.same(single, { instanceId: ID, runtimeId: 'c1', kind: 'pgbench', steps: [{ cmd: ['pgbench', '-h', '127.0.0.1', '-p', '5432', '-U', 'sqlrs', '-i', 'postgres'] }] });
  const withStdin = validateRunRequest({ instance_ref: ID, kind: 'psql', command: 'psql15', args: ['-f', '-'], stdin: '' }, lookup);
  t.same(withStdin.steps, [{ cmd: ['psql15', '-f', '-', PSQL_DSN], stdin: '' }], 'an empty stdin is still fed');
  const steps = validateRunRequest({ instance_ref: ID, kind: 'psql', args: [], steps: [{ args: ['-c', 'a'] }, { args: ['-f', '-'], stdin: 'b' }, {}] }, lookup);
  t.same(steps.steps, [
    { cmd: ['psql', '-c', 'a', PSQL_DSN] },
    { cmd: ['psql', '-f', '-', PSQL_DSN], stdin: 'b' },
    { cmd: ['psql', PSQL_DSN] },
  ]);
});
