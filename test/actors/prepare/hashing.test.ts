import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { EngineError, InvalidArgumentError } from '../../../src/errors.js';
import {
  HASH_SCHEMA, MAX_LINE_BYTES, hashPsqlPrepared, keyedHash, psqlContentDigest, psqlJobSignature, psqlTaskHash, stateId,
} from '../../../src/actors/prepare/hashing.js';
import { validatePsqlRequest, type PsqlInput } from '../../../src/actors/postgres/psql-args.js';

const sha = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');
const IN = '\n-- sqlrs: input-boundary\n';
const INC = '\n-- sqlrs: include-boundary\n';
const cmd = (sql: string): PsqlInput => ({ kind: 'command', sql });
const file = (path: string): PsqlInput => ({ kind: 'file', path });

/** Awaits `p`, expecting `cannot compute psql content hash` with `details` matching `details`. */
async function expectHashError(t: Test, p: Promise<unknown>, details: string | RegExp): Promise<void> {
  try {
    await p;
    t.fail('expected a hashing failure');
  } catch (e) {
    t.ok(e instanceof InvalidArgumentError, 'is an InvalidArgumentError');
    const err = e as EngineError;
    t.equal(err.code, 'invalid_argument');
    t.equal(err.message, 'cannot compute psql content hash');
    if (typeof details === 'string') t.equal(err.details, details);
    else t.match(err.details, details);
  }
}

t.test('keyedHash frames each field as key=<byte length>:value and newline', async (t) => {
  t.equal(keyedHash([['a', 'x'], ['bb', 'héllo']]), sha('a=1:x\nbb=6:héllo\n'));
  t.equal(keyedHash([]), sha(''));
  t.equal(keyedHash([['k', '']]), sha('k=0:\n'));
  t.not(keyedHash([['a', 'b\nc=1:d']]), keyedHash([['a', 'b'], ['c', 'd']]), 'framing is unambiguous');
  t.match(keyedHash([['a', 'b']]), /^[0-9a-f]{64}$/);
});

t.test('psqlTaskHash hashes kind, content digest and the hash-schema tag', async (t) => {
  t.equal(HASH_SCHEMA, 'sqlrs-psql-v1');
  const d = sha('select 1\n');
  t.equal(psqlTaskHash(d), sha(`prepare_kind=4:psql\ncontent_hash=64:${d}\nhash_schema=13:sqlrs-psql-v1\n`));
});

t.test('stateId hashes input kind, input id and task hash', async (t) => {
  const h = 'a'.repeat(64);
  t.equal(stateId('image', 'postgres@sha256:x', h), sha(`input_kind=5:image\ninput_id=17:postgres@sha256:x\ntask_hash=64:${h}\n`));
  t.not(stateId('state', 'postgres@sha256:x', h), stateId('image', 'postgres@sha256:x', h));
  t.not(stateId('image', 'postgres:17@sha256:x', h), stateId('image', 'postgres@sha256:x', h), 'spellings differ');
});

t.test('psqlJobSignature hashes task hash, image and plan_only', async (t) => {
  const h = 'b'.repeat(64);
  t.equal(psqlJobSignature(h, 'img', true), sha(`task_hash=64:${h}\nimage_id=3:img\nplan_only=4:true\n`));
  t.equal(psqlJobSignature(h, 'img', false), sha(`task_hash=64:${h}\nimage_id=3:img\nplan_only=5:false\n`));
});

t.test('psqlContentDigest hashes commands with input boundaries', async (t) => {
  t.equal((await psqlContentDigest([cmd('select 1')], { workDir: '/' })).digest, sha('select 1\n'));
  t.equal(
    (await psqlContentDigest([cmd('select 1'), cmd('select 2;\n')], { workDir: '/' })).digest,
    sha(`select 1\n${IN}select 2;\n`),
  );
  t.equal((await psqlContentDigest([], { workDir: '/' })).digest, sha(''), 'no input hashes nothing');
  t.equal((await psqlContentDigest([cmd('')], { workDir: '/' })).digest, sha(''), 'empty text has no line');
  t.same((await psqlContentDigest([cmd('x')], { workDir: '/' })).files, []);
});

t.test('psqlContentDigest hashes stdin like a command', async (t) => {
  const d = await psqlContentDigest([{ kind: 'stdin' }, cmd('b')], { workDir: '/', stdin: 'a' });
  t.equal(d.digest, sha(`a\n${IN}b\n`));
  await expectHashError(t, psqlContentDigest([{ kind: 'stdin' }], { workDir: '/' }), 'stdin is required when using -f -');
});

t.test('psqlContentDigest splits lines like the reference', async (t) => {
  const d = async (s: string): Promise<string> => (await psqlContentDigest([cmd(s)], { workDir: '/' })).digest;
  t.equal(await d('a\r\nb\r\n'), await d('a\nb\n'), 'CRLF equals LF');
  t.equal(await d('a\nb'), await d('a\nb\n'), 'final line without newline still counts');
  t.equal(await d('a\r'), sha('a\n'), 'trailing CR at the end dropped');
  t.equal(await d('a\r\r\n'), sha('a\r\n'), 'only one CR dropped');
  t.equal(await d('a\rb\n'), sha('a\rb\n'), 'inner CR kept');
  t.equal(await d('a\n\n'), sha('a\n\n'), 'empty line kept');
  t.equal(await d('\n'), sha('\n'));
});

t.test('psqlContentDigest enforces the 64 KiB line limit', async (t) => {
  const ok = 'x'.repeat(MAX_LINE_BYTES - 1);
  t.equal((await psqlContentDigest([cmd(`${ok}\nsel`)], { workDir: '/' })).digest, sha(`${ok}\nsel\n`));
  t.equal((await psqlContentDigest([cmd(ok)], { workDir: '/' })).digest, sha(`${ok}\n`), 'at the end too');
  await expectHashError(t, psqlContentDigest([cmd(`${ok}x`)], { workDir: '/' }), /^line too long/);
  await expectHashError(t, psqlContentDigest([cmd(`${ok}\r\n`)], { workDir: '/' }), /^line too long/);
  await expectHashError(t, psqlContentDigest([cmd(`a\n${'é'.repeat(MAX_LINE_BYTES / 2)}\n`)], { workDir: '/' }), /^line too long/);
  const dir = t.testdir({ 'long.sql': `${ok}x\n` });
  await expectHashError(t, psqlContentDigest([file(join(dir, 'long.sql'))], { workDir: dir }), /^line too long .* in .*long\.sql$/);
});

t.test('psqlContentDigest hashes file content, not file paths', async (t) => {
  const dir = t.testdir({ a: { 'init.sql': 'select 1;\n' }, b: { 'other-name.sql': 'select 1;\n' } });
  const one = await psqlContentDigest([file(join(dir, 'a', 'init.sql'))], { workDir: join(dir, 'a') });
  const moved = await psqlContentDigest([file(join(dir, 'b', 'other-name.sql'))], { workDir: join(dir, 'b') });
  t.equal(one.digest, sha('select 1;\n'));
  t.equal(moved.digest, one.digest, 'moving or renaming a file keeps the digest');
  t.same(one.files, [join(dir, 'a', 'init.sql')]);
  t.equal((await psqlContentDigest([cmd('select 1;')], { workDir: dir })).digest, one.digest, 'a command with the same text too');
});

t.test('psqlContentDigest expands includes between include boundaries', async (t) => {
  const dir = t.testdir({
    'main.sql': 'select 1;\n\\i inc.sql\nselect 3;\n',
    'inc.sql': 'select 2;\n',
  });
  const main = join(dir, 'main.sql');
  const d1 = await psqlContentDigest([file(main)], { workDir: dir });
  t.equal(d1.digest, sha(`select 1;\n${INC}select 2;\n${INC}select 3;\n`));
  t.same(d1.files, [main, join(dir, 'inc.sql')]);
  writeFileSync(join(dir, 'inc.sql'), 'select 22;\n');
  const d2 = await psqlContentDigest([file(main)], { workDir: dir });
  t.not(d2.digest, d1.digest, 'changing an included file changes the digest');
});

t.test('psqlContentDigest recognises every include spelling and quoting', async (t) => {
  const dir = t.testdir({ 'my file.sql': 'A\n', 'x.sql': 'X\n' });
  const lines = [
    '\\i x.sql',
    '  \\include x.sql  ',
    '\\ir "x.sql"',
    "\\include_relative 'my file.sql' extra",
    "\t\\i 'my '\"file\".sql",
    `\\i ${join(dir, 'x.sql')}`,
    '\\i  x.sql\r',
  ];
  const want = [`${INC}X\n${INC}`, `${INC}X\n${INC}`, `${INC}X\n${INC}`, `${INC}A\n${INC}`, `${INC}A\n${INC}`, `${INC}X\n${INC}`, `${INC}X\n${INC}`];
  for (const [i, line] of lines.entries()) {
    const d = await psqlContentDigest([cmd(line)], { workDir: dir });
    t.equal(d.digest, sha(want[i] ?? ''), line);
  }
  const notIncludes = ['\\i', "\\i ''", '\\ix.sql', '\\I x.sql', 'select 1; \\i x.sql', '\\echo \\i x.sql', '\ufeff\\i x.sql'];
  for (const line of notIncludes) {
    const d = await psqlContentDigest([cmd(line)], { workDir: dir });
    t.equal(d.digest, sha(`${line}\n`), `not an include: ${JSON.stringify(line)}`);
  }
});

t.test('psqlContentDigest resolves \\ir against the including file and \\i against the work dir', async (t) => {
  const dir = t.testdir({
    'b.sql': 'WORKDIR\n',
    sub: { 'a.sql': '\\ir b.sql\n\\i b.sql\n\\include_relative ../b.sql\n', 'b.sql': 'SUB\n' },
  });
  const d = await psqlContentDigest([file(join(dir, 'sub', 'a.sql'))], { workDir: dir });
  t.equal(d.digest, sha(`${INC}SUB\n${INC}${INC}WORKDIR\n${INC}${INC}WORKDIR\n${INC}`));
  t.same(d.files, [join(dir, 'sub', 'a.sql'), join(dir, 'sub', 'b.sql'), join(dir, 'b.sql')]);
  const fromCommand = await psqlContentDigest([cmd('\\ir b.sql')], { workDir: join(dir, 'sub') });
  t.equal(fromCommand.digest, sha(`${INC}SUB\n${INC}`), 'outside a file \\ir uses the work dir');
});

t.test('psqlContentDigest rejects recursive includes', async (t) => {
  const dir = t.testdir({
    'a.sql': '\\i b.sql\n',
    'b.sql': '\\ir ./a.sql\n',
    'self.sql': '\\ir self.sql\n',
    'loop.sql': '\\ir link/loop.sql\n',
    link: t.fixture('symlink', '.'),
  });
  await expectHashError(t, psqlContentDigest([file(join(dir, 'a.sql'))], { workDir: dir }), `recursive include: ${join(dir, 'a.sql')}`);
  await expectHashError(t, psqlContentDigest([cmd('\\i self.sql')], { workDir: dir }), `recursive include: ${join(dir, 'self.sql')}`);
  await expectHashError(t, psqlContentDigest([file(join(dir, 'loop.sql'))], { workDir: dir }), `recursive include: ${join(dir, 'link', 'loop.sql')}`);
});

t.test('psqlContentDigest allows the same file twice when it is not recursive', async (t) => {
  const dir = t.testdir({ 'a.sql': '\\i b.sql\n\\i b.sql\n', 'b.sql': 'B\n' });
  const d = await psqlContentDigest([file(join(dir, 'a.sql')), file(join(dir, 'a.sql'))], { workDir: dir });
  const a = `${INC}B\n${INC}${INC}B\n${INC}`;
  t.equal(d.digest, sha(`${a}${IN}${a}`));
  t.same(d.files, [join(dir, 'a.sql'), join(dir, 'b.sql')], 'each file listed once');
});

t.test('psqlContentDigest reports missing files and bad include paths', async (t) => {
  const dir = t.testdir({ 'a.sql': '\\i nope.sql\n', 'blank.sql': "\\i '   '\n", sub: {} });
  await expectHashError(t, psqlContentDigest([file(join(dir, 'a.sql'))], { workDir: dir }), `open ${join(dir, 'nope.sql')}: no such file or directory`);
  await expectHashError(t, psqlContentDigest([file(join(dir, 'blank.sql'))], { workDir: dir }), 'include path is empty');
  await expectHashError(t, psqlContentDigest([cmd('\\i x.sql')], { workDir: '' }), 'include path requires working directory');
  await expectHashError(t, psqlContentDigest([file('  ')], { workDir: dir }), 'empty include path');
  await expectHashError(t, psqlContentDigest([file(join(dir, 'sub'))], { workDir: dir }), `read ${join(dir, 'sub')}: illegal operation on a directory`);
});

t.test('psqlContentDigest uses an injected reader and content cache', async (t) => {
  const reads: string[] = [];
  const files: Record<string, string> = { '/w/a.sql': '\\i b.sql\n', '/w/b.sql': 'B\n' };
  const readFile = async (p: string): Promise<Uint8Array> => {
    reads.push(p);
    const text = files[p];
    if (text === undefined) throw new Error(`no fixture ${p}`);
    return new TextEncoder().encode(text);
  };
  const contentCache = new Map<string, Uint8Array>();
  const d1 = await psqlContentDigest([file('/w/./a.sql')], { workDir: '/w', readFile, contentCache });
  t.equal(d1.digest, sha(`${INC}B\n${INC}`));
  t.same(reads, ['/w/a.sql', '/w/b.sql']);
  files['/w/b.sql'] = 'changed\n';
  const d2 = await psqlContentDigest([file('/w/a.sql')], { workDir: '/w', readFile, contentCache });
  t.equal(d2.digest, d1.digest, 'cached bytes reused');
  t.same(d2.files, ['/w/a.sql', '/w/b.sql']);
  t.same(reads, ['/w/a.sql', '/w/b.sql'], 'nothing read again');
  await expectHashError(t, psqlContentDigest([file('/w/zzz.sql')], { workDir: '/w', readFile }), 'no fixture /w/zzz.sql');
  const throwsString = async (): Promise<Uint8Array> => { throw 'boom'; };
  await expectHashError(t, psqlContentDigest([file('/w/a.sql')], { workDir: '/w', readFile: throwsString }), 'boom');
});

t.test('hashPsqlPrepared hashes every step and the whole request', async (t) => {
  const dir = t.testdir({ 'a.sql': 'A\n\\i inc.sql\n', 'inc.sql': 'I\n' });
  const prepared = validatePsqlRequest(['-f', join(dir, 'a.sql'), '-c', 'select 1', '-f-'], 'S');
  const out = await hashPsqlPrepared(prepared);
  const stepDigests = [sha(`A\n${INC}I\n${INC}`), sha('select 1\n'), sha('S\n')];
  t.same(out.steps, stepDigests.map((d) => ({ contentDigest: d, taskHash: psqlTaskHash(d) })));
  const all = sha(`A\n${INC}I\n${INC}${IN}select 1\n${IN}S\n`);
  t.equal(out.requestTaskHash, psqlTaskHash(all));
  t.same(out.files, [join(dir, 'a.sql'), join(dir, 'inc.sql')]);

  const none = await hashPsqlPrepared(validatePsqlRequest(['-q'], undefined));
  t.same(none.steps, [{ contentDigest: sha(''), taskHash: psqlTaskHash(sha('')) }]);
  t.equal(none.requestTaskHash, psqlTaskHash(sha('')));
  t.same(none.files, []);

  const reads: string[] = [];
  const viaReader = await hashPsqlPrepared(
    { steps: [{ args: [], input: file('/v/x.sql') }], inputs: [file('/v/x.sql')], workDir: '/v' },
    { readFile: async (p) => { reads.push(p); return Buffer.from('X\n'); } },
  );
  t.equal(viaReader.steps[0]?.contentDigest, sha('X\n'));
  t.same(reads, ['/v/x.sql'], 'a file is read once per request');
});
