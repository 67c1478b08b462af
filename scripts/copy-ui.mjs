#!/usr/bin/env node
/**
 * Build step after `tsc`: copies the live page's static files (`src/http/ui/`: HTML, CSS and
 * browser JavaScript, which tsc does not emit) to `dist/http/ui/`, where the compiled
 * `dist/http/ui-routes.js` serves them from. The old copy is replaced, so a removed file goes too.
 */
import { cpSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'src', 'http', 'ui');
const to = join(root, 'dist', 'http', 'ui');
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
