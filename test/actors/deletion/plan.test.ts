import t from 'tap';
import { planInstanceDeletion, planStateDeletion, type PlanOptions, type PlanReader } from '../../../src/actors/deletion/plan.js';
import type { InstanceRow, StateRow } from '../../../src/mailbox/store.js';
import { statesInUse, deletionWorkStates } from '../../../src/actors/deletion/in-use.js';
import { prepareWorkStates } from '../../../src/actors/prepare/service.js';
import { asInstanceId, asStateId, type ActorId, type InstanceId, type StateId } from '../../../src/ids.js';

const sid = (c: string): StateId => asStateId(c.repeat(64));
const iid = (c: string): InstanceId => asInstanceId(c.repeat(32));

function state(id: StateId, parent: StateId | null): StateRow {
  return {
    state_id: id, parent_state_id: parent, image_id: 'img', prepare_kind: 'psql', prepare_args_normalized: '-f /a.sql',
    created_at: '2026-01-01T00:00:00Z', created_ms: 0, size_bytes: 10, last_used_at: null, last_used_ms: null, use_count: 0,
    min_retention_until: null, backend: 'copy', dir: `/store/states/${id}`,
  };
}
function instance(id: InstanceId, stateId: StateId, runtime: string | null = `c-${id.slice(0, 4)}`): InstanceRow {
  return {
    instance_id: id, state_id: stateId, image_id: 'img', created_at: '2026-01-01T00:00:00Z', expires_at: null,
    runtime_id: runtime, runtime_dir: `/store/instances/${id}`, host_port: 5432, job_id: null, deleting: 0,
  };
}

// Tree: A → [iA1, iA2, B → [iB1, C], D]
const A = state(sid('a'), null);
const B = state(sid('b'), A.state_id);
const C = state(sid('c'), B.state_id);
const D = state(sid('d'), A.state_id);
const iA1 = instance(iid('1'), A.state_id);
const iA2 = instance(iid('2'), A.state_id, null);
const iB1 = instance(iid('3'), B.state_id);
const states = [A, B, C, D];
const instances = [iA1, iA2, iB1];
const reader: PlanReader = {
  instancesOfState: (id) => instances.filter((i) => i.state_id === id),
  childStates: (id) => states.filter((s) => s.parent_state_id === id),
};

function opts(conns: Record<string, number> = {}, extra: Partial<PlanOptions> = {}): PlanOptions {
  return { force: false, dryRun: false, countConnections: async (r) => conns[r.instance_id] ?? 0, instanceDir: (id) => `/store/instances/${id}`, ...extra };
}

t.test('instance deletion plan deletes an idle instance', async (t) => {
  const p = await planInstanceDeletion(iA1, opts());
  t.same(p.result, { dry_run: false, outcome: 'deleted', root: { kind: 'instance', id: iA1.instance_id, connections: 0, runtime_id: iA1.runtime_id } });
  t.same(p.ops, [{ kind: 'instance', id: iA1.instance_id, containerId: iA1.runtime_id, dir: iA1.runtime_dir }]);
  t.notOk(p.blocked);
});

t.test('instance deletion plan is blocked by connections unless forced', async (t) => {
  const p = await planInstanceDeletion(iA1, opts({ [iA1.instance_id]: 2 }));
  t.equal(p.result.outcome, 'blocked');
  t.same(p.result.root, { kind: 'instance', id: iA1.instance_id, connections: 2, runtime_id: iA1.runtime_id, blocked: 'active_connections' });
  t.same(p.ops, [], 'a blocked plan removes nothing');
  const f = await planInstanceDeletion(iA1, opts({ [iA1.instance_id]: 2 }, { force: true }));
  t.equal(f.result.outcome, 'deleted');
  t.equal(f.result.root.connections, 2);
  t.notOk(f.result.root.blocked);
  t.equal(f.ops.length, 1);
});

t.test('instance deletion plan dry run removes nothing and omits an unknown runtime id', async (t) => {
  const p = await planInstanceDeletion(iA2, opts({}, { dryRun: true }));
  t.same(p.result, { dry_run: true, outcome: 'would_delete', root: { kind: 'instance', id: iA2.instance_id, connections: 0 } });
  t.same(p.ops, []);
  const b = await planInstanceDeletion(iA2, opts({ [iA2.instance_id]: 1 }, { dryRun: true }));
  t.equal(b.result.outcome, 'blocked');
  t.ok(b.blocked);
});

t.test('state deletion plan without recurse is blocked by descendants', async (t) => {
  const p = await planStateDeletion(A, false, reader, opts());
  t.same(p.result, { dry_run: false, outcome: 'blocked', root: { kind: 'state', id: A.state_id, blocked: 'has_descendants' } });
  const leaf = await planStateDeletion(C, false, reader, opts());
  t.same(leaf.result, { dry_run: false, outcome: 'deleted', root: { kind: 'state', id: C.state_id } });
  t.same(leaf.ops, [{ kind: 'state', id: C.state_id, dir: C.dir }]);
  const withInstanceOnly = await planStateDeletion(D, false, { ...reader, instancesOfState: () => [iA1] }, opts());
  t.equal(withInstanceOnly.result.root.blocked, 'has_descendants');
  const forced = await planStateDeletion(A, false, reader, opts({}, { force: true }));
  t.equal(forced.result.root.blocked, 'has_descendants', 'force never implies recurse');
});

t.test('state deletion plan with recurse lists instances then child states and deletes bottom-up', async (t) => {
  const p = await planStateDeletion(A, true, reader, opts());
  t.same(p.result.root, {
    kind: 'state', id: A.state_id, children: [
      { kind: 'instance', id: iA1.instance_id, connections: 0, runtime_id: iA1.runtime_id },
      { kind: 'instance', id: iA2.instance_id, connections: 0 },
      { kind: 'state', id: B.state_id, children: [
        { kind: 'instance', id: iB1.instance_id, connections: 0, runtime_id: iB1.runtime_id },
        { kind: 'state', id: C.state_id },
      ] },
      { kind: 'state', id: D.state_id },
    ],
  });
  t.same(p.ops.map((o) => o.id), [iA1.instance_id, iA2.instance_id, iB1.instance_id, C.state_id, B.state_id, D.state_id, A.state_id]);
  // every node comes after all of its descendants
  const pos = new Map(p.ops.map((o, i) => [o.id, i]));
  for (const s of states) {
    for (const c of reader.childStates(s.state_id)) t.ok((pos.get(c.state_id) ?? 99) < (pos.get(s.state_id) ?? -1));
    for (const i of reader.instancesOfState(s.state_id)) t.ok((pos.get(i.instance_id) ?? 99) < (pos.get(s.state_id) ?? -1));
  }
  t.equal(p.result.outcome, 'deleted');
});

t.test('state deletion plan marks every ancestor of a blocked instance', async (t) => {
  const p = await planStateDeletion(A, true, reader, opts({ [iB1.instance_id]: 1 }));
  t.equal(p.result.outcome, 'blocked');
  t.same(p.ops, []);
  const root = p.result.root;
  t.equal(root.blocked, 'blocked_by_descendant');
  const b = root.children?.find((c) => c.id === B.state_id);
  t.equal(b?.blocked, 'blocked_by_descendant');
  t.equal(b?.children?.[0]?.blocked, 'active_connections');
  t.equal(b?.children?.[0]?.connections, 1);
  t.notOk(root.children?.find((c) => c.id === D.state_id)?.blocked, 'siblings are not blocked');
  const forced = await planStateDeletion(A, true, reader, opts({ [iB1.instance_id]: 1 }, { force: true }));
  t.equal(forced.result.outcome, 'deleted');
  t.equal(forced.ops.length, 7);
  const dry = await planStateDeletion(A, true, reader, opts({}, { dryRun: true }));
  t.equal(dry.result.outcome, 'would_delete');
  t.equal(dry.result.dry_run, true);
  t.same(dry.ops, []);
});

t.test('state deletion plan blocks states that running work uses', async (t) => {
  const busy = new Set<string>([C.state_id]);
  const r = { ...reader, inUse: (id: string) => busy.has(id) };
  const leaf = await planStateDeletion(C, false, r, opts());
  t.same(leaf.result.root, { kind: 'state', id: C.state_id, blocked: 'has_descendants' });
  t.same(leaf.ops, []);
  const tree = await planStateDeletion(A, true, r, opts({}, { force: true }));
  t.equal(tree.result.outcome, 'blocked', 'force does not override work in progress');
  const b = tree.result.root.children?.find((c) => c.id === B.state_id);
  t.equal(b?.blocked, 'blocked_by_descendant');
  t.equal(b?.children?.find((c) => c.id === C.state_id)?.blocked, 'has_descendants');
  t.equal(tree.result.root.blocked, 'blocked_by_descendant');
});

t.test('states in use are read from the work outbox', async (t) => {
  const step = { kind: 'step', jobId: 'j', index: 1, input: { kind: 'state', id: A.state_id }, outputStateId: B.state_id };
  const base = { kind: 'step', jobId: 'k', index: 0, input: { kind: 'image', id: 'img' }, outputStateId: C.state_id };
  const inst = { kind: 'instance', jobId: 'l', stateId: D.state_id };
  const deletion = { deletionId: 'd', op: { kind: 'state', id: 'e'.repeat(64), dir: '/x' }, attempt: 1 };
  const work = [
    { workId: '1', actorId: 'prepare:j' as ActorId, spec: step },
    { workId: '2', actorId: 'prepare:k' as ActorId, spec: base },
    { workId: '3', actorId: 'prepare:l' as ActorId, spec: inst },
    { workId: '4', actorId: 'delete:d' as ActorId, spec: deletion },
    { workId: '5', actorId: 'run:r' as ActorId, spec: { kind: 'step', outputStateId: 'z' } },
  ];
  t.same([...statesInUse(work, new Map([['prepare', prepareWorkStates]]))].sort(), [A.state_id, B.state_id, C.state_id, D.state_id].sort());
  t.ok(statesInUse(work, new Map([['prepare', prepareWorkStates], ['delete', deletionWorkStates]])).has('e'.repeat(64)));
  t.notOk(statesInUse(work, new Map([['prepare', prepareWorkStates], ['delete', deletionWorkStates]])).has('z'), 'other actors are ignored');
});
