/**
 * Cache eviction against a real engine, Docker and PostgreSQL: with `cache.capacity.maxBytes` below
 * the current usage and `minStateAge` 0s, the next prepare evicts the least recently used
 * unreferenced leaf states (files and rows) and `/v1/cache/status` reports `last_eviction`.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needDocker, startPrepEngine, prepare, storeContainers, mountsUnder, type JobOutcome } from '../../helpers/prepare.js';
import { del, states, instances, logRecords, stateDirExists } from '../../helpers/del-engine.js';

t.setTimeout(600_000);

function result(o: JobOutcome): Record<string, string> {
  if (o.status !== 'succeeded') throw new Error(`job ${o.jobId} failed: ${JSON.stringify(o.error)}`);
  return o.result ?? {};
}

interface Status { usage_bytes: number; reclaimable_bytes: number; blocked_count: number; pressure_reasons: string[]; configured_max_bytes?: number; last_eviction?: Record<string, unknown> }

if (needDocker(t)) {
  t.test('the next prepare evicts the oldest unused leaf states when usage exceeds maxBytes', async (t) => {
    const eng = await startPrepEngine(t);
    const files = ['a', 'b', 'c'].map((n) => {
      const p = join(eng.scripts, `${n}.sql`);
      writeFileSync(p, `create table t_${n}(id int primary key);\n`);
      return p;
    });
    const status = async (): Promise<Status> => {
      const r = await eng.fetch('/v1/cache/status');
      if (r.status !== 200) throw new Error(`cache status answered ${r.status}`);
      return r.json<Status>();
    };

    // Two unreferenced leaf states: sA (used first), then sB.
    const ra = result(await prepare(eng, { psql_args: ['-f', files[0] ?? ''] }));
    t.equal((await del(eng, `/v1/instances/${ra['instance_id'] ?? ''}`)).status, 200);
    const rb = result(await prepare(eng, { psql_args: ['-f', files[1] ?? ''] }));
    t.equal((await del(eng, `/v1/instances/${rb['instance_id'] ?? ''}`)).status, 200);
    const sA = ra['state_id'] ?? '';
    const sB = rb['state_id'] ?? '';

    const before = await status();
    t.notOk(before.last_eviction, 'no eviction yet');
    t.equal(before.blocked_count, 2, 'young states are blocked by minStateAge');

    // maxBytes = usage: above the high watermark (90 %), and evicting the oldest state gets below
    // the low watermark (80 %).
    const usage = before.usage_bytes;
    t.ok(usage > 0);
    for (const [path, value] of [['cache.capacity.minStateAge', '0s'], ['cache.capacity.maxBytes', usage]] as const) {
      const r = await eng.fetch('/v1/config', { method: 'PATCH', body: { path, value } });
      t.equal(r.status, 200, `${path} set`);
    }
    const pressured = await status();
    t.same(pressured.pressure_reasons, ['usage_above_high_watermark']);
    t.equal(pressured.configured_max_bytes, usage);
    t.equal(pressured.blocked_count, 0);
    t.equal(pressured.reclaimable_bytes, usage);
    t.same((await states(eng)).map((s) => s.state_id).sort(), [sA, sB].sort(), 'nothing is evicted by reading the status');

    const rc = result(await prepare(eng, { psql_args: ['-f', files[2] ?? ''] }));
    const sC = rc['state_id'] ?? '';
    const left = (await states(eng)).map((s) => s.state_id);
    t.notOk(left.includes(sA), 'the least recently used state was evicted');
    t.notOk(stateDirExists(eng, sA), 'its directory is gone');
    t.ok(left.includes(sC), 'the new state is kept');
    t.ok(stateDirExists(eng, sC));

    const evicted = logRecords(eng, 'evicted state').map((r) => String(r['state']));
    t.equal(evicted[0], sA, 'the oldest state went first');
    if (evicted.includes(sB)) t.ok(evicted.indexOf(sB) > evicted.indexOf(sA), 'the newer state only after the older one');
    t.same(evicted.filter((id) => ![sA, sB].includes(id)), [], 'only unused leaf states were evicted');

    const after = await status();
    const le = after.last_eviction;
    t.ok(le, 'last_eviction is reported');
    for (const k of ['completed_at', 'trigger', 'evicted_count', 'freed_bytes', 'blocked_count', 'reclaimable_bytes',
      'usage_bytes_before', 'usage_bytes_after', 'free_bytes_before', 'free_bytes_after']) {
      t.ok(le && k in le, `last_eviction.${k}`);
    }
    t.ok(['prepare_step', 'snapshot', 'metadata_commit'].includes(String(le?.['trigger'])), `trigger ${String(le?.['trigger'])}`);
    t.ok(Number(le?.['evicted_count']) >= 1);
    t.ok(Number(le?.['freed_bytes']) > 0);
    t.ok(Number(le?.['usage_bytes_after']) < Number(le?.['usage_bytes_before']));
    const finished = logRecords(eng, 'cache eviction finished');
    t.ok(finished.length >= 1);
    t.match(finished[0], { trigger: 'prepare_step' }, 'the first eviction ran at the prepare_step check');

    // The surviving instance still works; no leftovers of evicted states.
    t.equal((await instances(eng)).length, 1);
    t.equal(storeContainers(eng.store).length, 1);
    t.ok(mountsUnder(join(eng.store, 'states')).length === 0, 'no mount under states');
  });
}
