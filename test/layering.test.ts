/**
 * The architecture's dependency table (`/work/shared/guides/architecture.md`), checked on every file
 * under `src/` with no exemptions, plus a cycle check and the 400-line file-size rule. The checker
 * lives in `test/helpers/layering.ts` as pure functions; this file runs it on the real sources and
 * proves, on synthetic import lists and on a small fake tree, that each kind of violation is caught.
 * A failure names the file, the import and the rule.
 */
import { readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import {
  cycles, describeSource, formatCycle, formatViolation, isLocal, listSources, oversized, parseImports,
  readSources, rowOf, scanImports, violations, type Import, type RuleId,
} from './helpers/layering.js';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src');

// ---- the real sources ----------------------------------------------------------------------------

t.test('src: every import follows the dependency table and every file has a row', async (t) => {
  const found = violations(scanImports(SRC), listSources(SRC));
  for (const v of found) t.fail(formatViolation(v));
  if (found.length === 0) t.pass('no layering violations');
});

t.test('src: no import cycles, type-only imports included', async (t) => {
  const found = cycles(scanImports(SRC));
  for (const c of found) t.fail(`import cycle: ${formatCycle(c)}`);
  if (found.length === 0) t.pass('no cycles');
});

t.test('src: no file is longer than 400 lines without a long-file reason', async (t) => {
  const found = oversized(readSources(SRC));
  for (const o of found) {
    t.fail(`src/${o.file} has ${o.lines} lines (limit ${o.limit}); split it or start it with "// long-file: <reason>"`);
  }
  if (found.length === 0) t.pass('every file is within the limit or says why not');
});

t.test('src: the scanner sees the files and imports it judges', async (t) => {
  const files = listSources(SRC);
  const imports = scanImports(SRC);
  const onDisk = (readdirSync(SRC, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).map((f) => f.split('\\').join('/')).sort();
  t.same([...files].sort(), onDisk, 'every .ts file under src, nested folders included');
  t.ok(imports.some((i) => i.from === 'engine.ts' && i.target.startsWith('http/') && !i.typeOnly), 'engine.ts imports a module under http/');
  t.ok(imports.some((i) => i.from === 'mailbox/db.ts' && i.target === 'pkg:better-sqlite3' && !i.typeOnly), 'mailbox/db.ts imports better-sqlite3 as a value');
  t.ok(imports.some((i) => i.typeOnly && isLocal(i.target)), 'a type-only import of our own files is recognised');
  t.ok(imports.some((i) => i.target.startsWith('node:')), 'node builtins are recognised');
  t.ok(imports.filter((i) => isLocal(i.target)).every((i) => i.target.endsWith('.ts')), 'relative .js specifiers resolve to .ts files');
});

// ---- the parser -----------------------------------------------------------------------------------

t.test('parseImports recognises every import form, its target and whether it is type-only', async (t) => {
  const text = [
    "// import fake from './commented.js';", //                  1: a comment is not an import
    "import def from './a.js';", //                               2
    'import { x,', //                                             3: multi-line named import
    "  y } from '../b.js';",
    "import type { T } from './c.js';", //                        5
    "import { type U, type V } from './d.js';", //                6: every binding inline type
    "import { type W, w } from './e.js';", //                     7: mixed: a value import
    "import * as ns from 'valibot';", //                          8
    "import '@scope/pkg/sub/path.js';", //                        9: side effect, scoped package
    "import fs from 'fs';", //                                   10: bare builtin
    "export { z } from './f.js';", //                            11
    "export type { Z } from './g.js';", //                       12
    "export * from './h.js';", //                                13
    'const s = "import nope from \'./string.js\'";', //          14: a string is not an import
    "const m = await import('./i.js');", //                      15
    "type Q = import('./j.js').Q;", //                           16: a type query
    "import cjs = require('./k.js');", //                        17
    'const dyn = import(someVar);', //                           18: computed specifier: not judged
    "export { type P } from 'node:path';", //                    19
  ].join('\n');
  const got = parseImports('actors/prepare/x.ts', text).map((i) => [i.line, i.kind, i.specifier, i.target, i.typeOnly]);
  t.same(got, [
    [2, 'import', './a.js', 'actors/prepare/a.ts', false],
    [3, 'import', '../b.js', 'actors/b.ts', false],
    [5, 'import', './c.js', 'actors/prepare/c.ts', true],
    [6, 'import', './d.js', 'actors/prepare/d.ts', true],
    [7, 'import', './e.js', 'actors/prepare/e.ts', false],
    [8, 'import', 'valibot', 'pkg:valibot', false],
    [9, 'side-effect', '@scope/pkg/sub/path.js', 'pkg:@scope/pkg', false],
    [10, 'import', 'fs', 'node:fs', false],
    [11, 'export', './f.js', 'actors/prepare/f.ts', false],
    [12, 'export', './g.js', 'actors/prepare/g.ts', true],
    [13, 'export', './h.js', 'actors/prepare/h.ts', false],
    [15, 'dynamic', './i.js', 'actors/prepare/i.ts', false],
    [16, 'type-query', './j.js', 'actors/prepare/j.ts', true],
    [17, 'require', './k.js', 'actors/prepare/k.ts', false],
    [19, 'export', 'node:path', 'node:path', true],
  ]);
});

// ---- the rules, on synthetic import lists ------------------------------------------------------------

/** A tree laid out as the architecture wants it. */
const FILES = [
  'errors.ts', 'ids.ts', 'log.ts', 'clock.ts', 'abort.ts', 'flags.ts', 'discovery.ts', 'store-lock.ts',
  'config/index.ts', 'config/schema.ts', 'mailbox/db.ts', 'mailbox/store.ts',
  'workers/protocol.ts', 'workers/pool.ts', 'workers/containers.ts', 'workers/fs-worker.ts', 'workers/container-worker.ts',
  'workers/fs/copy.ts', 'workers/fs/overlay.ts', 'workers/docker/exec.ts', 'workers/docker/client.ts',
  'actors/system/system.ts', 'actors/system/logic.ts', 'actors/layout.ts', 'actors/recovery.ts', 'actors/postgres/psql-args.ts',
  'actors/prepare/transition.ts', 'actors/prepare/effects.ts', 'actors/prepare/work.ts', 'actors/prepare/service.ts', 'actors/prepare/plan.ts',
  'actors/run/transition.ts', 'actors/run/effects.ts', 'actors/run/work.ts', 'actors/run/service.ts',
  'actors/cache/capacity.ts', 'actors/cache/eviction.ts',
  'http/server.ts', 'http/routes.ts', 'http/ws.ts', 'engine.ts', 'main.ts',
];

function imp(from: string, target: string, typeOnly = false): Import {
  const specifier = isLocal(target) ? posix.relative(posix.dirname(from), target).replace(/^(?!\.)/, './').replace(/\.ts$/, '.js') : target.replace(/^pkg:/, '');
  return { from, specifier, target, typeOnly, kind: 'import', line: 1 };
}

/** One allowed import per permission of the table. */
const CLEAN: Import[] = [
  imp('abort.ts', 'errors.ts'), imp('ids.ts', 'node:crypto'),
  imp('flags.ts', 'errors.ts'), imp('flags.ts', 'config/index.ts'), imp('store-lock.ts', 'node:fs'), imp('discovery.ts', 'log.ts', true),
  imp('config/index.ts', 'config/schema.ts'), imp('config/index.ts', 'pkg:valibot'), imp('config/schema.ts', 'errors.ts'),
  imp('mailbox/db.ts', 'pkg:better-sqlite3'), imp('mailbox/db.ts', 'errors.ts'), imp('mailbox/store.ts', 'mailbox/db.ts', true),
  imp('mailbox/store.ts', 'pkg:better-sqlite3', true),
  imp('workers/protocol.ts', 'errors.ts', true),
  imp('workers/pool.ts', 'workers/protocol.ts'), imp('workers/pool.ts', 'pkg:piscina'), imp('workers/pool.ts', 'log.ts', true),
  imp('workers/containers.ts', 'workers/protocol.ts', true), imp('workers/containers.ts', 'pkg:comlink'),
  imp('workers/fs-worker.ts', 'workers/fs/copy.ts'), imp('workers/fs-worker.ts', 'workers/protocol.ts', true),
  imp('workers/fs/copy.ts', 'workers/fs/overlay.ts'), imp('workers/fs/overlay.ts', 'node:child_process'), imp('workers/fs/overlay.ts', 'workers/protocol.ts', true),
  imp('workers/container-worker.ts', 'workers/docker/exec.ts'), imp('workers/container-worker.ts', 'pkg:dockerode'),
  imp('workers/docker/exec.ts', 'workers/docker/client.ts'), imp('workers/docker/exec.ts', 'workers/protocol.ts'),
  imp('actors/system/system.ts', 'mailbox/store.ts'), imp('actors/system/system.ts', 'actors/system/logic.ts'), imp('actors/system/logic.ts', 'clock.ts'),
  imp('actors/prepare/transition.ts', 'actors/system/logic.ts', true), imp('actors/prepare/transition.ts', 'mailbox/store.ts', true),
  imp('actors/prepare/transition.ts', 'actors/prepare/plan.ts'), imp('actors/prepare/transition.ts', 'actors/postgres/psql-args.ts'),
  imp('actors/prepare/transition.ts', 'pkg:valibot'), imp('actors/prepare/transition.ts', 'errors.ts'),
  imp('actors/prepare/effects.ts', 'mailbox/store.ts'), imp('actors/prepare/effects.ts', 'actors/prepare/transition.ts', true),
  imp('actors/prepare/work.ts', 'workers/pool.ts'), imp('actors/prepare/work.ts', 'workers/containers.ts'), imp('actors/prepare/work.ts', 'workers/protocol.ts', true),
  imp('actors/prepare/work.ts', 'actors/layout.ts'), imp('actors/prepare/work.ts', 'actors/cache/capacity.ts'), imp('actors/prepare/work.ts', 'config/index.ts', true),
  imp('actors/prepare/service.ts', 'actors/system/system.ts'), imp('actors/prepare/service.ts', 'mailbox/store.ts'),
  imp('actors/run/transition.ts', 'errors.ts'), imp('actors/run/effects.ts', 'actors/run/transition.ts', true),
  imp('actors/run/work.ts', 'actors/prepare/service.ts'), imp('actors/run/work.ts', 'actors/postgres/psql-args.ts'),
  imp('actors/run/service.ts', 'actors/run/transition.ts', true),
  imp('actors/cache/eviction.ts', 'actors/cache/capacity.ts'), imp('actors/cache/eviction.ts', 'actors/system/system.ts'),
  imp('actors/cache/capacity.ts', 'mailbox/store.ts', true),
  imp('actors/recovery.ts', 'actors/prepare/service.ts'), imp('actors/recovery.ts', 'actors/run/service.ts'),
  imp('actors/recovery.ts', 'actors/layout.ts'), imp('actors/recovery.ts', 'workers/containers.ts'),
  imp('actors/layout.ts', 'node:path'), imp('actors/layout.ts', 'config/index.ts'),
  imp('actors/postgres/psql-args.ts', 'errors.ts'), imp('actors/postgres/psql-args.ts', 'workers/protocol.ts', true),
  imp('http/routes.ts', 'actors/prepare/service.ts'), imp('http/routes.ts', 'actors/run/service.ts', true), imp('http/routes.ts', 'mailbox/store.ts', true),
  imp('http/routes.ts', 'config/index.ts'), imp('http/routes.ts', 'http/server.ts'), imp('http/ws.ts', 'log.ts'),
  imp('http/server.ts', 'pkg:uWebSockets.js'), imp('http/server.ts', 'log.ts'),
  imp('engine.ts', 'http/server.ts'), imp('engine.ts', 'http/routes.ts'), imp('engine.ts', 'actors/recovery.ts'), imp('engine.ts', 'mailbox/db.ts'),
  imp('engine.ts', 'workers/pool.ts'), imp('engine.ts', 'workers/fs-worker.ts', true), imp('engine.ts', 'store-lock.ts'), imp('engine.ts', 'discovery.ts'),
  imp('main.ts', 'engine.ts'), imp('main.ts', 'flags.ts'), imp('main.ts', 'errors.ts'),
];

const brief = (imports: Import[], files: string[]): { file: string; rule: RuleId; target?: string }[] =>
  violations(imports, files).map((v) => (v.import ? { file: v.file, rule: v.rule, target: v.import.target } : { file: v.file, rule: v.rule }));

t.test('rules: a tree laid out as the architecture wants passes, and every file has a row', async (t) => {
  t.same(brief(CLEAN, FILES), []);
  t.same(FILES.filter((f) => rowOf(f) === undefined), []);
  t.same(cycles(CLEAN), []);
});

const PLANTED: { name: string; add: Import[]; files?: string[]; expect: { file: string; rule: RuleId; target?: string }[] }[] = [
  { name: 'an upward import (mailbox → actors) is a layer violation', add: [imp('mailbox/store.ts', 'actors/prepare/service.ts', true)],
    expect: [{ file: 'mailbox/store.ts', rule: 'layer', target: 'actors/prepare/service.ts' }] },
  { name: 'the kernel importing config is a layer violation', add: [imp('errors.ts', 'config/index.ts')],
    expect: [{ file: 'errors.ts', rule: 'layer', target: 'config/index.ts' }] },
  { name: 'the kernel importing an npm package is a layer violation', add: [imp('log.ts', 'pkg:valibot')],
    expect: [{ file: 'log.ts', rule: 'layer', target: 'pkg:valibot' }] },
  { name: 'config importing the mailbox is a layer violation', add: [imp('config/index.ts', 'mailbox/store.ts', true)],
    expect: [{ file: 'config/index.ts', rule: 'layer', target: 'mailbox/store.ts' }] },
  { name: 'flags.ts importing an npm package is a layer violation', add: [imp('flags.ts', 'pkg:valibot')],
    expect: [{ file: 'flags.ts', rule: 'layer', target: 'pkg:valibot' }] },
  { name: 'the worker protocol importing a package is a layer violation', add: [imp('workers/protocol.ts', 'pkg:dockerode', true)],
    expect: [{ file: 'workers/protocol.ts', rule: 'layer', target: 'pkg:dockerode' }] },
  { name: 'the actor system importing a wing is a layer violation', add: [imp('actors/system/system.ts', 'actors/prepare/service.ts')],
    expect: [{ file: 'actors/system/system.ts', rule: 'layer', target: 'actors/prepare/service.ts' }] },
  { name: 'a wing importing another wing\'s inner file is cross-wing', add: [imp('actors/run/work.ts', 'actors/prepare/plan.ts')],
    expect: [{ file: 'actors/run/work.ts', rule: 'cross-wing', target: 'actors/prepare/plan.ts' }] },
  { name: 'a type-only import of another wing\'s transition is still cross-wing', add: [imp('actors/run/service.ts', 'actors/prepare/transition.ts', true)],
    expect: [{ file: 'actors/run/service.ts', rule: 'cross-wing', target: 'actors/prepare/transition.ts' }] },
  { name: 'a transition importing another wing\'s service is cross-wing', add: [imp('actors/run/transition.ts', 'actors/prepare/service.ts')],
    expect: [{ file: 'actors/run/transition.ts', rule: 'cross-wing', target: 'actors/prepare/service.ts' }] },
  { name: 'a transition value-importing the actor system must use import type', add: [imp('actors/prepare/transition.ts', 'actors/system/system.ts')],
    expect: [{ file: 'actors/prepare/transition.ts', rule: 'type-only-required', target: 'actors/system/system.ts' }] },
  { name: 'a transition value-importing the mailbox must use import type', add: [imp('actors/run/transition.ts', 'mailbox/store.ts')],
    expect: [{ file: 'actors/run/transition.ts', rule: 'type-only-required', target: 'mailbox/store.ts' }] },
  { name: 'a transition importing a worker client is a layer violation', add: [imp('actors/prepare/transition.ts', 'workers/pool.ts', true)],
    expect: [{ file: 'actors/prepare/transition.ts', rule: 'layer', target: 'workers/pool.ts' }] },
  { name: 'an actor importing http is refused: only engine.ts imports http', add: [imp('actors/prepare/service.ts', 'http/routes.ts', true)],
    expect: [{ file: 'actors/prepare/service.ts', rule: 'http-only-from-engine', target: 'http/routes.ts' }] },
  { name: 'main.ts importing http is refused', add: [imp('main.ts', 'http/server.ts')],
    expect: [{ file: 'main.ts', rule: 'http-only-from-engine', target: 'http/server.ts' }] },
  { name: 'http importing an actor file other than a service is a layer violation', add: [imp('http/routes.ts', 'actors/prepare/plan.ts', true)],
    expect: [{ file: 'http/routes.ts', rule: 'layer', target: 'actors/prepare/plan.ts' }] },
  { name: 'the main-side pool importing a thread-side fs file is refused', add: [imp('workers/pool.ts', 'workers/fs/copy.ts')],
    expect: [{ file: 'workers/pool.ts', rule: 'thread-side-private', target: 'workers/fs/copy.ts' }] },
  { name: 'engine.ts importing a thread-side docker file is refused, type-only too', add: [imp('engine.ts', 'workers/docker/exec.ts', true)],
    expect: [{ file: 'engine.ts', rule: 'thread-side-private', target: 'workers/docker/exec.ts' }] },
  { name: 'the fs thread entry importing docker thread code is refused', add: [imp('workers/fs-worker.ts', 'workers/docker/client.ts')],
    expect: [{ file: 'workers/fs-worker.ts', rule: 'thread-side-private', target: 'workers/docker/client.ts' }] },
  { name: 'a value import of a thread entry on the main side is refused', add: [imp('engine.ts', 'workers/container-worker.ts')],
    expect: [{ file: 'engine.ts', rule: 'thread-entry-value-import', target: 'workers/container-worker.ts' }] },
  { name: 'the main-side container client taking types from its thread entry is a layer violation', add: [imp('workers/containers.ts', 'workers/container-worker.ts', true)],
    expect: [{ file: 'workers/containers.ts', rule: 'layer', target: 'workers/container-worker.ts' }] },
  { name: 'a thread entry importing the main-side pool is a layer violation', add: [imp('workers/fs-worker.ts', 'workers/pool.ts', true)],
    expect: [{ file: 'workers/fs-worker.ts', rule: 'layer', target: 'workers/pool.ts' }] },
  { name: 'better-sqlite3 outside mailbox is refused, as a type too', add: [imp('actors/prepare/effects.ts', 'pkg:better-sqlite3', true)],
    expect: [{ file: 'actors/prepare/effects.ts', rule: 'sqlite-only-in-mailbox', target: 'pkg:better-sqlite3' }] },
  { name: 'better-sqlite3 in engine.ts is refused although engine may import anything else', add: [imp('engine.ts', 'pkg:better-sqlite3')],
    expect: [{ file: 'engine.ts', rule: 'sqlite-only-in-mailbox', target: 'pkg:better-sqlite3' }] },
  { name: 'importing main.ts is refused', add: [imp('engine.ts', 'main.ts', true)],
    expect: [{ file: 'engine.ts', rule: 'no-import-of-main', target: 'main.ts' }] },
  { name: 'importing engine.ts from anything but main.ts is refused', add: [imp('http/server.ts', 'engine.ts', true)],
    expect: [{ file: 'http/server.ts', rule: 'engine-only-from-main', target: 'engine.ts' }] },
  { name: 'a component importing the pino-based logging.ts is refused, type-only too: it receives a Logger', files: ['logging.ts'],
    add: [imp('actors/prepare/service.ts', 'logging.ts', true)],
    expect: [{ file: 'actors/prepare/service.ts', rule: 'logging-only-from-root', target: 'logging.ts' }] },
  { name: 'logging.ts importing config is a layer violation', files: ['logging.ts'], add: [imp('logging.ts', 'config/index.ts')],
    expect: [{ file: 'logging.ts', rule: 'layer', target: 'config/index.ts' }] },
  { name: 'files that match no row are unplaced', files: ['capabilities.ts', 'actors/plan.ts', 'workers/snapshot.ts'], add: [],
    expect: [{ file: 'capabilities.ts', rule: 'unplaced-file' }, { file: 'actors/plan.ts', rule: 'unplaced-file' }, { file: 'workers/snapshot.ts', rule: 'unplaced-file' }] },
  { name: 'a specifier naming a directory (or any missing file) is unresolved', add: [imp('actors/prepare/work.ts', 'actors/cache')],
    expect: [{ file: 'actors/prepare/work.ts', rule: 'unresolved-import', target: 'actors/cache' }] },
];

for (const p of PLANTED) {
  t.test(`rules: ${p.name}`, async (t) => {
    t.same(brief([...CLEAN, ...p.add], [...FILES, ...(p.files ?? [])]), p.expect);
  });
}

t.test('rules: logging.ts has a row (kernel, packages) and engine.ts and main.ts may import it', async (t) => {
  const allowed = [
    imp('logging.ts', 'log.ts'), imp('logging.ts', 'errors.ts'), imp('logging.ts', 'pkg:pino'), imp('logging.ts', 'node:fs'),
    imp('engine.ts', 'logging.ts'), imp('main.ts', 'logging.ts'),
  ];
  t.same(brief([...CLEAN, ...allowed], [...FILES, 'logging.ts']), []);
});

t.test('rules: a violation message names the file, the line, the import and the rule', async (t) => {
  const [v] = violations([{ ...imp('actors/prepare/service.ts', 'http/routes.ts'), line: 12 }], FILES);
  t.ok(v);
  if (v) t.equal(formatViolation(v), "src/actors/prepare/service.ts:12 imports '../../http/routes.js' (http/routes.ts): [http-only-from-engine] only engine.ts (and http/ itself) imports http/");
  t.equal(formatViolation({ file: 'x.ts', rule: 'unplaced-file', reason: 'no row of the dependency table covers this file' }),
    'src/x.ts: [unplaced-file] no row of the dependency table covers this file');
});

t.test('cycles: each cycle is reported as its files, type-only edges included', async (t) => {
  const found = cycles([
    ...CLEAN,
    imp('actors/prepare/plan.ts', 'actors/prepare/transition.ts', true), //   transition → plan → transition
    imp('http/server.ts', 'http/ws.ts', true), imp('http/ws.ts', 'http/routes.ts'), // routes → server → ws → routes
    imp('config/schema.ts', 'config/schema.ts'), //                                   a file importing itself
  ]);
  t.same(found, [
    ['actors/prepare/plan.ts', 'actors/prepare/transition.ts'],
    ['config/schema.ts'],
    ['http/routes.ts', 'http/server.ts', 'http/ws.ts'],
  ]);
  t.equal(formatCycle(found[2] ?? []), 'src/http/routes.ts → src/http/server.ts → src/http/ws.ts → src/http/routes.ts');
  t.same(brief([...CLEAN, imp('actors/prepare/plan.ts', 'actors/prepare/transition.ts', true)], FILES), [], 'a cycle can be legal layer-wise: only the cycle rule sees it');
});

t.test('cycles: every file of a component is on a reported cycle', async (t) => {
  // a → b → a and b → c → b share b: one component, two shortest cycles.
  const found = cycles([imp('a.ts', 'b.ts'), imp('b.ts', 'a.ts'), imp('b.ts', 'c.ts'), imp('c.ts', 'b.ts'), imp('c.ts', 'pkg:x')]);
  t.same(found, [['a.ts', 'b.ts'], ['b.ts', 'c.ts']]);
});

// ---- the size rule ----------------------------------------------------------------------------------

const body = (n: number): string => Array.from({ length: n }, (_, i) => `export const v${i} = ${i};`).join('\n') + '\n';

t.test('size: a file over 400 lines needs a long-file reason on its first line or in its leading comment', async (t) => {
  const files = [
    describeSource('plain-400.ts', body(400)),
    describeSource('plain-401.ts', body(401)),
    describeSource('no-final-newline.ts', body(401).trimEnd()),
    describeSource('line-comment.ts', '// long-file: one state machine, splitting it would scatter the transitions\n' + body(450)),
    describeSource('block-comment.ts', '\n/**\n * long-file: the backends share one walk\n */\n' + body(450)),
    describeSource('inline-block.ts', '/* long-file: generated table */\n' + body(450)),
    describeSource('marker-without-reason.ts', '// long-file:\n' + body(450)),
    describeSource('marker-too-late.ts', '/**\n * The module.\n * long-file: said too late\n */\n' + body(450)),
    describeSource('marker-in-code.ts', body(10) + '// long-file: not at the top\n' + body(440)),
  ];
  t.equal(files[0]?.lines, 400, 'lines are counted like wc -l');
  t.equal(files[2]?.lines, 401, 'a last line without newline counts');
  t.same(files[4]?.head, ['/**', ' * long-file: the backends share one walk'], 'the head is the first line and the comment\'s first text line');
  t.same(oversized(files), [
    { file: 'plain-401.ts', lines: 401, limit: 400 },
    { file: 'no-final-newline.ts', lines: 401, limit: 400 },
    { file: 'marker-without-reason.ts', lines: 451, limit: 400 },
    { file: 'marker-too-late.ts', lines: 454, limit: 400 },
    { file: 'marker-in-code.ts', lines: 451, limit: 400 },
  ]);
});

// ---- end to end, on a fake tree ---------------------------------------------------------------------

t.test('a fake src tree with planted violations is reported by scan, rules, cycles and size', async (t) => {
  const dir = t.testdir();
  const put = (path: string, text: string): void => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  };
  put('errors.ts', "import { randomBytes } from 'node:crypto';\nexport const E = randomBytes;\n");
  put('mailbox/store.ts', "import type Database from 'better-sqlite3';\nimport type { Svc } from '../actors/prepare/service.js';\nexport type S = Database.Database | Svc;\n");
  put('actors/prepare/plan.ts', 'export const plan = 1;\n');
  put('actors/prepare/service.ts', "import { plan } from './plan.js';\nimport {\n  routes,\n} from '../../http/routes.js';\nexport type Svc = typeof plan | typeof routes;\n");
  put('actors/run/work.ts', "// a comment: import { x } from '../prepare/service.js';\nexport const w = import('../prepare/plan.js');\n");
  put('workers/pool.ts', "import { Piscina } from 'piscina';\nimport { copy } from './fs/copy.js';\nexport const p = [Piscina, copy];\n");
  put('workers/fs/copy.ts', '/**\n * Tree copy.\n */\n' + body(398));
  put('workers/fs/overlay.ts', '// long-file: one walk for all layers\n' + body(450));
  put('http/routes.ts', "import { s } from './server.js';\nexport const routes = s;\n");
  put('http/server.ts', "import type { routes } from './routes.js';\nexport const s = 1; export type R = typeof routes;\n");
  put('capabilities.ts', "export * from './errors.js';\n");
  put('notes.md', "import x from './nowhere.js'\n");

  const files = listSources(dir);
  const imports = scanImports(dir);
  t.notOk(files.includes('notes.md'), 'only .ts files are sources');
  t.same(violations(imports, files).map(formatViolation), [
    'src/capabilities.ts: [unplaced-file] no row of the dependency table covers this file',
    "src/actors/prepare/service.ts:2 imports '../../http/routes.js' (http/routes.ts): [http-only-from-engine] only engine.ts (and http/ itself) imports http/",
    "src/actors/run/work.ts:2 imports '../prepare/plan.js' (actors/prepare/plan.ts): [cross-wing] actors/<wing>/*, actors/layout.ts, actors/recovery.ts, actors/postgres/** may use another wing only through its service.ts or actors/cache/capacity.ts",
    "src/mailbox/store.ts:2 imports '../actors/prepare/service.js' (actors/prepare/service.ts, type-only): [layer] mailbox/** may import only kernel, mailbox/**, packages",
    "src/workers/pool.ts:2 imports './fs/copy.js' (workers/fs/copy.ts): [thread-side-private] workers/fs/** is imported only by workers/fs-worker.ts and workers/fs/**",
  ]);
  t.same(cycles(imports), [['http/routes.ts', 'http/server.ts']]);
  t.same(oversized(readSources(dir)), [{ file: 'workers/fs/copy.ts', lines: 401, limit: 400 }]);
});
