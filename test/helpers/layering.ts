/**
 * The architecture's dependency rules as pure functions over data, so that `test/layering.test.ts`
 * can run them on the real `src/` and prove, on planted violations, that they fail.
 *
 * - {@link parseImports} reads the imports of one source text (with the TypeScript parser, so that
 *   comments, strings and multi-line import lists cannot fool it);
 * - {@link scanImports} / {@link readSources} read a real source tree;
 * - {@link violations} judges imports against the dependency table of
 *   `/work/shared/guides/architecture.md` (see {@link ROWS} and {@link GLOBAL_RULES});
 * - {@link cycles} finds import cycles; {@link oversized} applies the file-size rule.
 *
 * Paths are relative to `src/`, with `/` separators. Import targets are a `src`-relative `.ts` path,
 * `pkg:<npm package name>` or `node:<builtin>`.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { join, posix, relative, sep } from 'node:path';
import ts from 'typescript';

/** One import, export-from, side-effect import, dynamic `import()` or type query of a source file. */
export interface Import {
  /** The importing file, relative to `src/`. */
  from: string;
  /** The module specifier as written. */
  specifier: string;
  /** `src`-relative `.ts` path for relative specifiers, `pkg:<name>` for npm packages, `node:<name>` for builtins. */
  target: string;
  /**
   * True when the import disappears from the emitted JavaScript: `import type`, `export type`, an
   * import whose every named binding is an inline `type`, or an `import('…').T` type query.
   */
  typeOnly: boolean;
  kind: 'import' | 'export' | 'side-effect' | 'dynamic' | 'type-query' | 'require';
  /** 1-based line of the import in the importing file. */
  line: number;
}

/** A broken rule. `import` is absent for rules about a file itself (unplaced file). */
export interface Violation {
  file: string;
  /** Stable id of the rule, e.g. `layer`, `cross-wing`, `http-only-from-engine`. */
  rule: RuleId;
  /** Why it is wrong, in words. */
  reason: string;
  import?: Pick<Import, 'specifier' | 'target' | 'typeOnly' | 'line'>;
}

export type RuleId =
  | 'unplaced-file'
  | 'unresolved-import'
  | 'layer'
  | 'type-only-required'
  | 'cross-wing'
  | 'no-import-of-main'
  | 'engine-only-from-main'
  | 'http-only-from-engine'
  | 'sqlite-only-in-mailbox'
  | 'thread-side-private'
  | 'thread-entry-value-import'
  | 'logging-only-from-root';

/** Size facts of one source file, for {@link oversized}. */
export interface SourceFile {
  /** Relative to `src/`. */
  path: string;
  /** Number of lines (as `wc -l` counts them, plus a last line without newline). */
  lines: number;
  /** The first non-empty line and, when that opens a block comment, the comment's first text line. */
  head: string[];
}

/** A file over the size limit without a `long-file:` reason. */
export interface Oversized { file: string; lines: number; limit: number }

// ---- scanning ----------------------------------------------------------------------------------

/** Every `.ts` file under `dir`, relative to it with `/` separators, sorted as strings. */
export function listSources(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (n.endsWith('.ts')) out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

/** Resolves a specifier written in `from` (both `src`-relative) to an {@link Import} target. */
export function resolveTarget(from: string, specifier: string): string {
  if (specifier.startsWith('./') || specifier.startsWith('../') || specifier === '.' || specifier === '..') {
    const joined = posix.normalize(posix.join(posix.dirname(from), specifier));
    return joined.replace(/\.js$/, '.ts');
  }
  if (specifier.startsWith('node:') || isBuiltin(specifier)) return `node:${specifier.replace(/^node:/, '')}`;
  const parts = specifier.split('/');
  const name = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? specifier);
  return `pkg:${name}`;
}

/** True for a target that is a file of ours (not a package or builtin). */
export function isLocal(target: string): boolean {
  return !target.startsWith('pkg:') && !target.startsWith('node:');
}

function literalText(n: ts.Node | undefined): string | undefined {
  return n !== undefined && (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) ? n.text : undefined;
}

/**
 * The imports of one source text. Recognises `import … from`, `export … from`, side-effect
 * `import '…'`, `import x = require('…')`, dynamic `import('…')` and `import('…').T` type queries,
 * with string-literal specifiers; a dynamic import with a computed specifier cannot be judged and is
 * not reported.
 */
export function parseImports(from: string, text: string): Import[] {
  const sf = ts.createSourceFile(from, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: Import[] = [];
  const add = (node: ts.Node, specifier: string, typeOnly: boolean, kind: Import['kind']): void => {
    const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
    out.push({ from, specifier, target: resolveTarget(from, specifier), typeOnly, kind, line });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const spec = literalText(node.moduleSpecifier);
      if (spec !== undefined) {
        const c = node.importClause;
        if (c === undefined) add(node, spec, false, 'side-effect');
        else {
          const named = c.namedBindings !== undefined && ts.isNamedImports(c.namedBindings) ? c.namedBindings : undefined;
          const allInlineTypes = c.name === undefined && named !== undefined && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly);
          add(node, spec, c.isTypeOnly || allInlineTypes, 'import');
        }
      }
      return;
    }
    if (ts.isExportDeclaration(node)) {
      const spec = literalText(node.moduleSpecifier);
      if (spec !== undefined) {
        const named = node.exportClause !== undefined && ts.isNamedExports(node.exportClause) ? node.exportClause : undefined;
        const allInlineTypes = named !== undefined && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly);
        add(node, spec, node.isTypeOnly || allInlineTypes, 'export');
      }
      return;
    }
    if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const spec = literalText(node.moduleReference.expression);
      if (spec !== undefined) add(node, spec, node.isTypeOnly, 'require');
      return;
    }
    if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      const spec = literalText(node.argument.literal);
      if (spec !== undefined) add(node, spec, true, 'type-query');
    }
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const spec = literalText(node.arguments[0]);
      if (spec !== undefined) add(node, spec, false, 'dynamic');
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** The imports of every `.ts` file under `srcDir`. */
export function scanImports(srcDir: string): Import[] {
  return listSources(srcDir).flatMap((f) => parseImports(f, readFileSync(join(srcDir, f), 'utf8')));
}

/** Size facts of one source text. */
export function describeSource(path: string, text: string): SourceFile {
  const all = text.split('\n');
  const lines = text.endsWith('\n') ? all.length - 1 : all.length;
  const i = all.findIndex((l) => l.trim() !== '');
  const head: string[] = [];
  if (i >= 0) {
    const first = all[i] ?? '';
    head.push(first);
    // `/**` alone on its line: the comment's first line of text is the next non-empty one.
    if (/^\s*\/\*\*?\s*$/.test(first)) {
      const next = all.slice(i + 1).find((l) => l.trim() !== '');
      if (next !== undefined) head.push(next);
    }
  }
  return { path, lines, head };
}

/** Size facts of every `.ts` file under `srcDir`. */
export function readSources(srcDir: string): SourceFile[] {
  return listSources(srcDir).map((f) => describeSource(f, readFileSync(join(srcDir, f), 'utf8')));
}

// ---- the dependency table ------------------------------------------------------------------------

/** The kernel: imports node builtins and other kernel files only. */
export const KERNEL: ReadonlySet<string> = new Set(['errors.ts', 'ids.ts', 'log.ts', 'clock.ts', 'abort.ts', 'telemetry.ts']);
const FS_ENTRY = 'workers/fs-worker.ts';
const DOCKER_ENTRY = 'workers/container-worker.ts';
const THREAD_ENTRIES: ReadonlySet<string> = new Set([FS_ENTRY, DOCKER_ENTRY]);
const NOT_WINGS: ReadonlySet<string> = new Set(['system', 'postgres']);

const isKernel = (p: string): boolean => KERNEL.has(p);
const under = (dir: string) => (p: string): boolean => p.startsWith(dir);
const isConfig = under('config/');
const isMailbox = under('mailbox/');
const isHttp = under('http/');
const isSystem = under('actors/system/');
const isPostgres = under('actors/postgres/');
const isFsThread = under('workers/fs/');
const isDockerThread = under('workers/docker/');
const isProtocol = (p: string): boolean => p === 'workers/protocol.ts';
const isMainClient = (p: string): boolean => p === 'workers/pool.ts' || p === 'workers/containers.ts' || p === 'workers/daemon.ts';
const isLayout = (p: string): boolean => p === 'actors/layout.ts';
const isPkg = (p: string): boolean => p.startsWith('pkg:');
const isNode = (p: string): boolean => p.startsWith('node:');

/** The wing of a file under `actors/<wing>/` (any folder but `system` and `postgres`), if any. */
export function wingOf(p: string): string | undefined {
  const m = /^actors\/([^/]+)\/./.exec(p);
  return m?.[1] !== undefined && !NOT_WINGS.has(m[1]) ? m[1] : undefined;
}
const isService = (p: string): boolean => { const w = wingOf(p); return w !== undefined && p === `actors/${w}/service.ts`; };
const isCapacity = (p: string): boolean => p === 'actors/cache/capacity.ts';

/** A row's answer for one import: allowed, allowed only as `import type`, or not allowed. */
type Verdict = 'ok' | 'type-only' | 'cross-wing' | 'no';

/** One row of the dependency table: which files it covers and what they may import. */
export interface Row {
  /** The row's "from" column, as the architecture writes it. */
  name: string;
  /** The row's "may import" column, for messages. */
  allows: string;
  covers(file: string): boolean;
  judge(from: string, target: string): Verdict;
}

const anyOf = (...ps: ((p: string) => boolean)[]) => (_from: string, t: string): Verdict => (ps.some((p) => p(t)) ? 'ok' : 'no');

/**
 * The dependency table, first matching row wins. Node builtins are allowed to every row (the
 * kernel row is the one that says so explicitly; the table's other rows need them for I/O).
 */
export const ROWS: readonly Row[] = [
  { name: 'kernel (errors, ids, log, clock, abort, telemetry)', allows: 'node builtins and other kernel files', covers: isKernel, judge: anyOf(isNode, isKernel) },
  {
    name: 'flags.ts, discovery.ts, store-lock.ts', allows: 'node builtins, kernel, config/',
    covers: (f) => f === 'flags.ts' || f === 'discovery.ts' || f === 'store-lock.ts', judge: anyOf(isNode, isKernel, isConfig),
  },
  { name: 'config/**', allows: 'kernel, config/**, packages', covers: isConfig, judge: anyOf(isNode, isKernel, isConfig, isPkg) },
  { name: 'mailbox/**', allows: 'kernel, mailbox/**, packages', covers: isMailbox, judge: anyOf(isNode, isKernel, isMailbox, isPkg) },
  { name: 'workers/protocol.ts', allows: 'kernel', covers: isProtocol, judge: anyOf(isNode, isKernel) },
  {
    name: 'workers/pool.ts, workers/containers.ts, workers/daemon.ts (main side)', allows: 'kernel, workers/protocol.ts, packages',
    covers: isMainClient, judge: anyOf(isNode, isKernel, isProtocol, isPkg),
  },
  {
    name: 'workers/fs-worker.ts', allows: 'kernel, workers/protocol.ts, workers/fs/**, packages',
    covers: (f) => f === FS_ENTRY, judge: anyOf(isNode, isKernel, isProtocol, isFsThread, isPkg),
  },
  {
    name: 'workers/container-worker.ts', allows: 'kernel, workers/protocol.ts, workers/docker/**, packages',
    covers: (f) => f === DOCKER_ENTRY, judge: anyOf(isNode, isKernel, isProtocol, isDockerThread, isPkg),
  },
  {
    name: 'workers/fs/**', allows: 'kernel, workers/protocol.ts, workers/fs/**, packages',
    covers: isFsThread, judge: anyOf(isNode, isKernel, isProtocol, isFsThread, isPkg),
  },
  {
    name: 'workers/docker/**', allows: 'kernel, workers/protocol.ts, workers/docker/**, packages',
    covers: isDockerThread, judge: anyOf(isNode, isKernel, isProtocol, isDockerThread, isPkg),
  },
  {
    name: 'actors/system/**', allows: 'kernel, mailbox/**, actors/system/**, packages',
    covers: isSystem, judge: anyOf(isNode, isKernel, isMailbox, isSystem, isPkg),
  },
  {
    name: 'actors/<wing>/transition.ts',
    allows: 'kernel, actors/system/** and mailbox/** (type-only), files of its own wing, actors/postgres/**, packages',
    covers: (f) => { const w = wingOf(f); return w !== undefined && f === `actors/${w}/transition.ts`; },
    judge: (from, t) => {
      if (isNode(t) || isKernel(t) || isPostgres(t) || isPkg(t)) return 'ok';
      if (wingOf(t) !== undefined && wingOf(t) === wingOf(from)) return 'ok';
      if (isSystem(t) || isMailbox(t)) return 'type-only';
      return wingOf(t) !== undefined ? 'cross-wing' : 'no';
    },
  },
  {
    name: 'actors/<wing>/*, actors/layout.ts, actors/recovery.ts, actors/postgres/**',
    allows: 'kernel, mailbox/**, actors/system/**, workers/pool.ts, workers/containers.ts, workers/daemon.ts, workers/protocol.ts, config/**, '
      + 'actors/layout.ts, actors/postgres/**, files of its own wing, packages; of another wing only its service.ts or actors/cache/capacity.ts',
    covers: (f) => wingOf(f) !== undefined || isLayout(f) || f === 'actors/recovery.ts' || isPostgres(f),
    judge: (from, t) => {
      if (isNode(t) || isKernel(t) || isMailbox(t) || isSystem(t) || isMainClient(t) || isProtocol(t) || isConfig(t)
        || isLayout(t) || isPostgres(t) || isPkg(t)) return 'ok';
      const w = wingOf(t);
      if (w === undefined) return 'no';
      if (w === wingOf(from) || isService(t) || isCapacity(t)) return 'ok';
      return 'cross-wing';
    },
  },
  {
    name: 'http/**', allows: 'kernel, http/**, mailbox/**, config/**, actors/<wing>/service.ts, packages',
    covers: isHttp, judge: anyOf(isNode, isKernel, isHttp, isMailbox, isConfig, isService, isPkg),
  },
  { name: 'engine.ts', allows: 'anything', covers: (f) => f === 'engine.ts', judge: () => 'ok' },
  { name: 'main.ts', allows: 'anything except http/', covers: (f) => f === 'main.ts', judge: (_f, t) => (isHttp(t) ? 'no' : 'ok') },
  { name: 'logging.ts', allows: 'kernel, packages', covers: (f) => f === 'logging.ts', judge: anyOf(isNode, isKernel, isPkg) },
];

/** The row that covers a file, if any. */
export function rowOf(file: string): Row | undefined {
  return ROWS.find((r) => r.covers(file));
}

/** Rules that hold for every file, whatever its row allows. Checked before the row. */
export const GLOBAL_RULES: readonly { rule: RuleId; reason: string; breaks(i: Import): boolean }[] = [
  { rule: 'no-import-of-main', reason: 'nothing imports main.ts', breaks: (i) => i.target === 'main.ts' },
  {
    // Everything else receives a Logger (log.ts); the pino-based implementation is the root's choice.
    rule: 'logging-only-from-root', reason: 'only engine.ts and main.ts import logging.ts',
    breaks: (i) => i.target === 'logging.ts' && i.from !== 'engine.ts' && i.from !== 'main.ts',
  },
  { rule: 'engine-only-from-main', reason: 'only main.ts imports engine.ts', breaks: (i) => i.target === 'engine.ts' && i.from !== 'main.ts' },
  { rule: 'http-only-from-engine', reason: 'only engine.ts (and http/ itself) imports http/', breaks: (i) => isHttp(i.target) && !isHttp(i.from) && i.from !== 'engine.ts' },
  { rule: 'sqlite-only-in-mailbox', reason: 'only mailbox/ imports better-sqlite3', breaks: (i) => i.target === 'pkg:better-sqlite3' && !isMailbox(i.from) },
  {
    rule: 'thread-side-private', reason: 'workers/fs/** is imported only by workers/fs-worker.ts and workers/fs/**',
    breaks: (i) => isFsThread(i.target) && i.from !== FS_ENTRY && !isFsThread(i.from),
  },
  {
    rule: 'thread-side-private', reason: 'workers/docker/** is imported only by workers/container-worker.ts and workers/docker/**',
    breaks: (i) => isDockerThread(i.target) && i.from !== DOCKER_ENTRY && !isDockerThread(i.from),
  },
  {
    // A value import would run a thread entry on the main thread; they are loaded by URL as workers.
    rule: 'thread-entry-value-import', reason: 'a thread entry (workers/fs-worker.ts, workers/container-worker.ts) is never imported as a value',
    breaks: (i) => THREAD_ENTRIES.has(i.target) && !i.typeOnly,
  },
];

function importFacts(i: Import): NonNullable<Violation['import']> {
  return { specifier: i.specifier, target: i.target, typeOnly: i.typeOnly, line: i.line };
}

/**
 * Every broken rule: each file of `files` (all `src`-relative `.ts` paths) must be covered by a row
 * of {@link ROWS}; each relative import must name one of `files`; each import must pass
 * {@link GLOBAL_RULES} and then its file's row.
 */
export function violations(imports: readonly Import[], files: readonly string[]): Violation[] {
  const out: Violation[] = [];
  const known = new Set(files);
  for (const f of files) {
    if (rowOf(f) === undefined) out.push({ file: f, rule: 'unplaced-file', reason: 'no row of the dependency table covers this file' });
  }
  for (const i of imports) {
    if (isLocal(i.target) && !known.has(i.target)) {
      out.push({ file: i.from, rule: 'unresolved-import', reason: 'the specifier names no .ts file under src (directory indexes are not used)', import: importFacts(i) });
      continue;
    }
    const global = GLOBAL_RULES.filter((g) => g.breaks(i));
    for (const g of global) out.push({ file: i.from, rule: g.rule, reason: g.reason, import: importFacts(i) });
    if (global.length > 0) continue;
    const row = rowOf(i.from);
    if (row === undefined) continue; // reported once as unplaced-file
    const verdict = row.judge(i.from, i.target);
    if (verdict === 'ok' || (verdict === 'type-only' && i.typeOnly)) continue;
    if (verdict === 'type-only') {
      out.push({ file: i.from, rule: 'type-only-required', reason: `${row.name} may import ${i.target} only with \`import type\``, import: importFacts(i) });
    } else if (verdict === 'cross-wing') {
      out.push({ file: i.from, rule: 'cross-wing', reason: `${row.name} may use another wing only through its service.ts or actors/cache/capacity.ts`, import: importFacts(i) });
    } else {
      out.push({ file: i.from, rule: 'layer', reason: `${row.name} may import only ${row.allows}`, import: importFacts(i) });
    }
  }
  return out;
}

/** One line naming the file, the import and the rule. */
export function formatViolation(v: Violation): string {
  if (v.import === undefined) return `src/${v.file}: [${v.rule}] ${v.reason}`;
  const i = v.import;
  return `src/${v.file}:${i.line} imports '${i.specifier}' (${i.target}${i.typeOnly ? ', type-only' : ''}): [${v.rule}] ${v.reason}`;
}

// ---- cycles ---------------------------------------------------------------------------------------

/**
 * Import cycles among our files (type-only imports included). For each strongly connected
 * component, the shortest cycle through each of its files, each written from its smallest file
 * (`[a, b, c]` means a → b → c → a), without repeats, sorted.
 */
export function cycles(imports: readonly Import[]): string[][] {
  const graph = new Map<string, Set<string>>();
  const node = (n: string): Set<string> => { let s = graph.get(n); if (!s) { s = new Set(); graph.set(n, s); } return s; };
  for (const i of imports) {
    if (!isLocal(i.target)) continue;
    node(i.from).add(i.target);
    node(i.target);
  }
  // Tarjan's strongly connected components.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const comps: string[][] = [];
  let next = 0;
  const strong = (v: string): void => {
    index.set(v, next); low.set(v, next); next++;
    stack.push(v); onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) { strong(w); low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0)); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v) ?? 0, index.get(w) ?? 0));
    }
    if (low.get(v) === index.get(v)) {
      const comp: string[] = [];
      let w: string | undefined;
      do { w = stack.pop(); if (w !== undefined) { onStack.delete(w); comp.push(w); } } while (w !== undefined && w !== v);
      comps.push(comp);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) strong(v);

  const found = new Map<string, string[]>();
  for (const comp of comps) {
    const members = new Set(comp);
    for (const start of [...comp].sort()) {
      const path = shortestCycle(graph, members, start);
      if (path === undefined) continue;
      const smallest = path.indexOf([...path].sort()[0] ?? start);
      const rotated = [...path.slice(smallest), ...path.slice(0, smallest)];
      found.set(rotated.join(' → '), rotated);
    }
  }
  return [...found.keys()].sort().map((k) => found.get(k) ?? []);
}

/** Breadth-first: the shortest path start → … → start inside one component. */
function shortestCycle(graph: Map<string, Set<string>>, members: Set<string>, start: string): string[] | undefined {
  const prev = new Map<string, string>();
  const queue = [start];
  const seen = new Set<string>();
  while (queue.length > 0) {
    const v = queue.shift() as string;
    for (const w of [...(graph.get(v) ?? [])].sort()) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [v];
        while (path[0] !== start) path.unshift(prev.get(path[0] as string) as string);
        return path;
      }
      if (seen.has(w)) continue;
      seen.add(w); prev.set(w, v); queue.push(w);
    }
  }
  return undefined;
}

/** `a → b → a`, for messages. */
export function formatCycle(c: readonly string[]): string {
  return [...c, c[0]].map((f) => `src/${f ?? ''}`).join(' → ');
}

// ---- size -----------------------------------------------------------------------------------------

/** The most lines a source file has without a stated reason. */
export const MAX_LINES = 400;
/** `long-file:` followed by a reason. */
export const LONG_FILE_MARKER = /long-file:\s*\S/;

/**
 * Files longer than `limit` lines whose first non-empty line, or the first line of their leading
 * comment, carries no `long-file: <reason>` marker.
 */
export function oversized(files: readonly SourceFile[], limit = MAX_LINES): Oversized[] {
  return files
    .filter((f) => f.lines > limit && !f.head.some((l) => LONG_FILE_MARKER.test(l)))
    .map((f) => ({ file: f.path, lines: f.lines, limit }));
}
