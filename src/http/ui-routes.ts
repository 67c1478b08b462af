/**
 * The live page at `/ui`: static HTML, CSS and browser JavaScript (ES modules, no build step, no
 * CDN) from the `ui/` folder beside this module — `src/http/ui/` when run from the sources,
 * `dist/http/ui/` after `npm run build`, which copies it there. The page itself needs no token:
 * it holds no data. It reads the token from the URL fragment (never sent to the server) or asks
 * for it, and calls the `/v1` API with `Authorization: Bearer` like any other client.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exact, pattern, type Handler, type Route } from './server.js';

/** Content types of the page's files, by extension; files of any other kind are not served. */
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/**
 * Headers of every page file. The policy allows only the engine's own scripts, styles and
 * connections (`'self'` covers the same-origin WebSocket), so a value shown on the page can never
 * run as code; the page may not be framed, and it sends no referrer.
 */
const HEADERS: Readonly<Record<string, string>> = {
  'Cache-Control': 'no-cache',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/** One page file, read once. */
interface Asset { body: Buffer; type: string }

/**
 * Where the page's files are: `ui/` beside this module, else the sources' `src/http/ui/` (a plain
 * `tsc` run without the build script's copy step); undefined when neither exists.
 */
export function uiDir(moduleUrl: string = import.meta.url): string | undefined {
  const candidates = [fileURLToPath(new URL('./ui/', moduleUrl)), fileURLToPath(new URL('../../src/http/ui/', moduleUrl))];
  return candidates.find((d) => existsSync(join(d, 'index.html')));
}

/** Reads every servable file of `dir` (flat, by name) into memory. */
function loadAssets(dir: string | undefined): Map<string, Asset> {
  const out = new Map<string, Asset>();
  if (dir === undefined) return out;
  for (const name of readdirSync(dir)) {
    const type = CONTENT_TYPES[extname(name)];
    if (type !== undefined && /^[a-z0-9][a-z0-9._-]*$/.test(name)) out.set(name, { body: readFileSync(join(dir, name)), type });
  }
  return out;
}

/**
 * The routes of the page: `GET /ui` and `/ui/` (the page), `GET /ui/<file>` (its scripts and
 * styles). No token needed; unknown files answer the API's plain-text 404.
 * @param dir the folder of the page's files. @default {@link uiDir}()
 */
export function uiRoutes(dir: string | undefined = uiDir()): Route[] {
  const assets = loadAssets(dir);
  const serve = (name: string): Handler => ({ reply }) => {
    const a = assets.get(name);
    if (!a) { reply.notFoundText(); return; }
    reply.send(200, a.body, { 'Content-Type': a.type, ...HEADERS });
  };
  const page = serve('index.html');
  return [
    exact('/ui', false, { GET: page }),
    exact('/ui/', false, { GET: page }),
    pattern(/^\/ui\/([^/]+)$/, false, { GET: (ctx) => serve(ctx.params[0] ?? '')(ctx) }),
  ];
}
