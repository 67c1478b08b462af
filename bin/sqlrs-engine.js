#!/usr/bin/env node
import('../dist/main.js').then((m) => m.cli(process.argv.slice(2)));
