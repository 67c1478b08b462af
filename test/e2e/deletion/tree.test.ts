/**
 * Recursive state deletion against a real engine, Docker and PostgreSQL: the tree, blocked
 * decisions, dry runs that change nothing, and a bottom-up deletion that leaves no container,
 * mount, directory or row.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needDocker, startPrepEngine, prepare, mountsUnder, storeContainers, entries, type PrepEngine, type JobOutcome } from '../../helpers/prepare.js';
import { holdSession, del, instances, states, snapshotStore, logRecords, type DeleteNode } from '../../helpers/del-engine.js';

t.setTimeout(600_000);

function result(o: JobOutcome): Record<string, string> {
  if (o.status !== 'succeeded') throw new Error(`job ${o.jobId} failed: ${JSON.stringify(o.error)}`);
  return o.result ?? {};
}

if (needDocker(t)) {
  let eng: PrepEngine;
  let sA: string;
  let sB: string;
  let sC: string;
  let i1: string;
  let i2: string;
  let i3: string;
  let dsn2: string;

  t.before(async () => {
    eng = await startPrepEngine(t);
    const a = join(eng.scripts, 'a.sql');
    const b = join(eng.scripts, 'b.sql');
    const c = join(eng.scripts, 'c.sql');
    writeFileSync(a, 'create table item(id int primary key);\n');
    writeFileSync(b, 'insert into item values (1);\n');
    writeFileSync(c, 'insert into item values (2);\n');
    // sA ← sB, sA ← sC; instances i1, i3 of sA, i2 of sB; sC has none.
    const r1 = result(await prepare(eng, { psql_args: ['-f', a] }));
    sA = r1['state_id'] ?? '';
    i1 = r1['instance_id'] ?? '';
    const r2 = result(await prepare(eng, { psql_args: ['-f', a, '-f', b] }));
    sB = r2['state_id'] ?? '';
    i2 = r2['instance_id'] ?? '';
    dsn2 = r2['dsn'] ?? '';
    i3 = result(await prepare(eng, { psql_args: ['-f', a] }))['instance_id'] ?? '';
    const r4 = result(await prepare(eng, { psql_args: ['-f', a, '-f', c] }));
    sC = r4['state_id'] ?? '';
    const gone = await del(eng, `/v1/instances/${r4['instance_id'] ?? ''}`);
    if (gone.status !== 200) throw new Error(`cannot delete instance: ${JSON.stringify(gone.body)}`);
  });

  t.test('state delete without recurse is blocked by descendants and lists no children', async (t) => {
    const before = await snapshotStore(eng);
    const r = await del(eng, `/v1/states/${sA}`);
    t.equal(r.status, 409);
    t.same(r.body, { dry_run: false, outcome: 'blocked', root: { kind: 'state', id: sA, blocked: 'has_descendants' } });
    const f = await del(eng, `/v1/states/${sB}`, { force: 'true' });
    t.equal(f.status, 409, 'force does not imply recurse');
    t.equal(f.body.root.blocked, 'has_descendants');
    const leafDry = await del(eng, `/v1/states/${sC}`, { dry_run: 'true' });
    t.equal(leafDry.status, 200);
    t.same(leafDry.body, { dry_run: true, outcome: 'would_delete', root: { kind: 'state', id: sC } });
    t.same(await snapshotStore(eng), before, 'nothing changed');
  });

  t.test('recursive dry run shows the whole tree and changes nothing', async (t) => {
    const before = await snapshotStore(eng);
    t.equal(before.states.length, 3);
    t.equal(before.instances.length, 3);
    t.equal(before.containers.length, 3);
    const r = await del(eng, `/v1/states/${sA}`, { recurse: 'true', dry_run: 'true' });
    t.equal(r.status, 200);
    t.equal(r.body.outcome, 'would_delete');
    t.equal(r.body.dry_run, true);
    const root = r.body.root;
    t.equal(root.kind, 'state');
    t.equal(root.id, sA);
    t.notOk(root.blocked);
    const kids = root.children ?? [];
    t.same(kids.map((k) => `${k.kind}:${k.id}`), [`instance:${i1}`, `instance:${i3}`, `state:${sB}`, `state:${sC}`], 'instances first, then child states');
    for (const k of kids.filter((x) => x.kind === 'instance')) {
      t.equal(k.connections, 0);
      t.match(k.runtime_id, /^[0-9a-f]{64}$/);
    }
    const b = kids.find((k) => k.id === sB);
    t.same(b?.children?.map((k) => `${k.kind}:${k.id}`), [`instance:${i2}`]);
    t.notOk(kids.find((k) => k.id === sC)?.children, 'children are omitted when empty');
    t.same(await snapshotStore(eng), before, 'nothing changed');
  });

  t.test('recursive delete with a session on a grandchild instance is blocked up the tree', async (t) => {
    const before = await snapshotStore(eng);
    const session = await holdSession(dsn2);
    try {
      for (const dryRun of [false, true]) {
        const r = await del(eng, `/v1/states/${sA}`, dryRun ? { recurse: 'true', dry_run: 'true' } : { recurse: 'true' });
        t.equal(r.status, dryRun ? 200 : 409);
        t.equal(r.body.outcome, 'blocked');
        t.equal(r.body.root.blocked, 'blocked_by_descendant');
        const b = r.body.root.children?.find((k) => k.id === sB);
        t.equal(b?.blocked, 'blocked_by_descendant');
        const inst = b?.children?.[0];
        t.equal(inst?.blocked, 'active_connections');
        t.ok((inst?.connections ?? 0) >= 1);
        t.notOk(r.body.root.children?.find((k) => k.id === i1)?.blocked, 'idle siblings are not blocked');
        t.notOk(r.body.root.children?.find((k) => k.id === sC)?.blocked);
      }
    } finally {
      await session.close();
    }
    t.same(await snapshotStore(eng), before, 'nothing was deleted');
  });

  t.test('recursive delete removes the whole tree bottom-up and leaves nothing behind', async (t) => {
    const before = await instances(eng);
    const containers = before.map((i) => i.runtime_id ?? '');
    const r = await del(eng, `/v1/states/${sA}`, { recurse: 'true' });
    t.equal(r.status, 200, JSON.stringify(r.body));
    t.equal(r.body.outcome, 'deleted');
    t.equal(r.body.dry_run, false);
    const ids = (n: DeleteNode): string[] => [n.id, ...(n.children ?? []).flatMap(ids)];
    t.same(ids(r.body.root).sort(), [sA, sB, sC, i1, i2, i3].sort());

    t.same(await states(eng), [], 'no state row');
    t.same(await instances(eng), [], 'no instance row');
    t.same(entries(eng.store, 'states').filter((d) => !d.startsWith('.')), [], 'no state directory');
    t.same(entries(eng.store, 'instances'), [], 'no instance directory');
    const left = storeContainers(eng.store);
    t.same(left.filter((c) => containers.includes(c)), [], 'no container of the tree');
    t.same(left, [], 'no container of the store');
    t.same(mountsUnder(eng.store), [], 'no mount under the store');

    // Bottom-up: every node is removed after all of its descendants.
    const order = logRecords(eng, /^(instance|state) deleted$/).filter((r) => r['c'] === 'deletion').map((r) => String(r['instance'] ?? r['state']));
    const pos = (id: string): number => order.lastIndexOf(id);
    for (const child of [i1, i3, sB, sC]) t.ok(pos(child) < pos(sA), `${child.slice(0, 8)} before its parent`);
    t.ok(pos(i2) < pos(sB), 'the grandchild instance before its state');
    t.ok(pos(sA) >= 0, 'the root was deleted');

    const again = await del(eng, `/v1/states/${sA}`, { recurse: 'true' });
    t.equal(again.status, 404);
  });
}
