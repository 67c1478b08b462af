#!/usr/bin/env node
/**
 * Micro bench mirroring `src/mailbox/mailbox.ts`: the cost of one actor message's trip through the
 * SQLite mailbox (enqueue, lease with claimNext, ack in a transaction), over a real WAL database
 * file like the engine's `state.db`, and over `:memory:` for comparison. Runs against the compiled
 * `dist/` (run `npm run build` at the repository root first).
 *
 * Knobs: TIME_MS=1000 (per task), DEPTH=1000 (queue depth for the "deep mailbox" task).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { openDatabase } = await import(join(ROOT, 'dist', 'mailbox', 'db.js'));
const { Mailbox } = await import(join(ROOT, 'dist', 'mailbox', 'mailbox.js'));
const { systemClock } = await import(join(ROOT, 'dist', 'clock.js'));

const TIME_MS = Number(process.env.TIME_MS ?? 1000);
const DEPTH = Number(process.env.DEPTH ?? 1000);
const dir = mkdtempSync(join(tmpdir(), 'sqlrs-mailbox-bench-'));
const payload = { type: '$work', workId: 'w-0123456789abcdef', ok: true, value: { resolvedId: 'sha256:' + 'a'.repeat(64), uid: 999, gid: 999 } };

const dbs = [];
function mailbox(kind) {
  const db = openDatabase(kind === 'file' ? join(dir, `${kind}-${dbs.length}.db`) : ':memory:');
  dbs.push(db);
  return new Mailbox(db, systemClock, { maxPerActor: DEPTH + 16 });
}

const bench = new Bench({ name: 'mailbox', time: TIME_MS, warmup: true });
for (const kind of ['file', 'memory']) {
  const mb = mailbox(kind);
  let n = 0;
  bench.add(`${kind}: enqueue → claimNext → ack (tx)`, () => {
    const actor = `prepare:${n++ % 64}`;
    mb.enqueue(actor, payload);
    const env = mb.claimNext(actor);
    mb.tx(() => mb.ack(env));
  });
  const idle = mailbox(kind);
  bench.add(`${kind}: claimNext on an empty mailbox`, () => { idle.claimNext('prepare:idle'); });
}
// enqueue checks the actor's depth with COUNT(*): its cost grows with the queue it guards
const deep = mailbox('file');
for (let i = 0; i < DEPTH; i++) deep.enqueue('prepare:deep', payload);
bench.add(`file: enqueue + claim + ack with ${DEPTH} queued ahead`, () => {
  deep.enqueue('prepare:deep', payload);
  const env = deep.claimNext('prepare:deep');
  deep.tx(() => deep.ack(env));
});

await bench.run();
console.log(`mailbox micro bench (${TIME_MS} ms per task)`);
console.table(bench.table());
for (const db of dbs) db.close();
rmSync(dir, { recursive: true, force: true });
