/**
 * The architecture's dependency direction, checked on the sources: http → actors → (mailbox,
 * workers client); nothing below imports http; src/mailbox is the only SQLite user; workers depend
 * only on their protocol and the shared errors/log modules; worker thread entries never import the
 * main-side clients. A violating import fails this test with the file and the specifier.
 */
import t from 'tap';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

interface Import { from: string; target: string; typeOnly: boolean }

/** Relative imports of a file, resolved to `src`-relative paths (`.js` → `.ts`). */
function importsOf(file: string): Import[] {
  const text = readFileSync(file, 'utf8');
  const out: Import[] = [];
  for (const m of text.matchAll(/^\s*(import|export)\s+(type\s+)?[^;]*?\sfrom\s+'([^']+)'/gms)) {
    const spec = m[3] ?? '';
    if (!spec.startsWith('.')) {
      out.push({ from: relative(SRC, file), target: `pkg:${spec}`, typeOnly: m[2] !== undefined });
      continue;
    }
    out.push({ from: relative(SRC, file), target: relative(SRC, resolve(dirname(file), spec.replace(/\.js$/, '.ts'))), typeOnly: m[2] !== undefined });
  }
  return out;
}

const all = files(SRC).flatMap(importsOf);
const area = (p: string): string => (p.includes('/') ? p.slice(0, p.indexOf('/')) : '(root)');
const shared = new Set(['errors.ts', 'log.ts', 'clock.ts', 'ids.ts']);

t.test('layering: only the composition root imports src/http', async (t) => {
  const bad = all.filter((i) => i.target.startsWith('http/') && area(i.from) !== 'http' && area(i.from) !== '(root)');
  t.same(bad, []);
});

t.test('layering: actors never import http; mailbox imports only shared modules and itself', async (t) => {
  t.same(all.filter((i) => area(i.from) === 'actors' && i.target.startsWith('http/')), []);
  t.same(all.filter((i) => area(i.from) === 'mailbox' && !i.target.startsWith('pkg:') && !i.target.startsWith('mailbox/') && !shared.has(i.target)), []);
});

t.test('layering: only src/mailbox talks to SQLite', async (t) => {
  t.same(all.filter((i) => i.target === 'pkg:better-sqlite3' && area(i.from) !== 'mailbox'), []);
});

t.test('layering: workers depend only on their own modules and the shared errors and log', async (t) => {
  t.same(all.filter((i) => area(i.from) === 'workers' && !i.target.startsWith('pkg:') && !i.target.startsWith('workers/') && !shared.has(i.target)), []);
});

t.test('layering: worker thread entries never import the main-side clients', async (t) => {
  const entries = new Set(['workers/fs-worker.ts', 'workers/container-worker.ts']);
  const clients = new Set(['workers/pool.ts', 'workers/containers.ts']);
  t.same(all.filter((i) => entries.has(i.from) && clients.has(i.target)), []);
  // The main side may only take types from a thread entry (a value import would load it here).
  t.same(all.filter((i) => entries.has(i.target) && !i.typeOnly && !entries.has(i.from)), []);
});

t.test('layering: nothing imports the CLI entry', async (t) => {
  t.same(all.filter((i) => i.target === 'main.ts'), []);
});

t.test('layering: the scan sees the imports it judges', async (t) => {
  t.ok(all.some((i) => i.from === 'engine.ts' && i.target === 'http/server.ts'), 'engine.ts imports the http server');
  t.ok(all.some((i) => i.from === 'workers/containers.ts' && i.target === 'workers/container-worker.ts' && i.typeOnly), 'type-only imports are recognised');
});
