import t from 'tap';
import { IllegalStateError } from '../../../src/errors.js';
import type { StateId } from '../../../src/ids.js';
import { stateId } from '../../../src/actors/prepare/hashing.js';
import { buildPsqlPlan, buildStatePlan, imageHasDigest, type PlanTask, type PlanTaskInput } from '../../../src/actors/prepare/plan.js';

const H0 = '0'.repeat(64);
const H1 = '1'.repeat(64);
const H2 = '2'.repeat(64);
const never = (): boolean => false;

t.test('imageHasDigest looks for a non-empty text after the last @', async (t) => {
  const cases: Array<[string, boolean]> = [
    ['postgres:17', false],
    ['postgres@sha256:abc', true],
    ['postgres:17@sha256:abc', true],
    ['postgres@', false],
    ['a@b@', false],
    ['a@@b', true],
    ['@x', true],
    ['', false],
  ];
  for (const [ref, want] of cases) t.equal(imageHasDigest(ref), want, ref);
});

t.test('buildPsqlPlan plans a tag image with a resolve-image task and chains the steps', async (t) => {
  const resolved = 'postgres@sha256:' + 'f'.repeat(64);
  const s0 = stateId('image', resolved, H0);
  const s1 = stateId('state', s0, H1);
  const s2 = stateId('state', s1, H2);
  const plan = buildPsqlPlan({
    requestedImage: 'postgres:17', resolvedImage: resolved, imageHadDigest: false,
    steps: [{ taskHash: H0 }, { taskHash: H1 }, { taskHash: H2 }],
    stateExists: (id) => id === s0,
  });
  const want: PlanTask[] = [
    { task_id: 'plan', type: 'plan', planner_kind: 'psql' },
    { task_id: 'resolve-image', type: 'resolve_image', image_id: 'postgres:17', resolved_image_id: resolved },
    { task_id: 'execute-0', type: 'state_execute', input: { kind: 'image', id: resolved }, task_hash: H0, output_state_id: s0, cached: true },
    { task_id: 'execute-1', type: 'state_execute', input: { kind: 'state', id: s0 }, task_hash: H1, output_state_id: s1, cached: false },
    { task_id: 'execute-2', type: 'state_execute', input: { kind: 'state', id: s1 }, task_hash: H2, output_state_id: s2, cached: false },
    { task_id: 'prepare-instance', type: 'prepare_instance', input: { kind: 'state', id: s2 }, instance_mode: 'ephemeral' },
  ];
  t.strictSame(plan, want);
  t.equal(JSON.stringify(plan[3]), JSON.stringify(want[3]), 'cached:false is on the wire, field order as declared');
});

t.test('buildPsqlPlan plans a digest image without resolve-image', async (t) => {
  const ref = 'postgres:17@sha256:' + 'e'.repeat(64);
  const s0 = stateId('image', ref, H0);
  const plan = buildPsqlPlan({
    requestedImage: ref, resolvedImage: ref, imageHadDigest: true,
    steps: [{ taskHash: H0 }], stateExists: never,
  });
  t.strictSame(plan, [
    { task_id: 'plan', type: 'plan', planner_kind: 'psql' },
    { task_id: 'execute-0', type: 'state_execute', input: { kind: 'image', id: ref }, task_hash: H0, output_state_id: s0, cached: false },
    { task_id: 'prepare-instance', type: 'prepare_instance', input: { kind: 'state', id: s0 }, instance_mode: 'ephemeral' },
  ]);
  for (const task of plan) {
    t.notOk(Object.values(task).includes(undefined), `${task.task_id} has no undefined fields`);
  }
});

t.test('buildPsqlPlan marks every existing state as cached', async (t) => {
  const seen: StateId[] = [];
  const plan = buildPsqlPlan({
    requestedImage: 'img@sha256:1', resolvedImage: 'img@sha256:1', imageHadDigest: true,
    steps: [{ taskHash: H0 }, { taskHash: H0 }], stateExists: (id) => { seen.push(id); return true; },
  });
  const executes = plan.filter((p) => p.type === 'state_execute');
  t.same(executes.map((e) => e.cached), [true, true]);
  t.equal(seen.length, 2);
  t.not(seen[0], seen[1], 'the same task hash on another input is another state');
});

t.test('buildStatePlan computes task hashes from the step input and carries changesets', async (t) => {
  const inputs: PlanTaskInput[] = [];
  const plan = buildStatePlan({
    plannerKind: 'lb', requestedImage: 'img@sha256:1', resolvedImage: 'img@sha256:1', imageHadDigest: true,
    steps: [
      { taskHash: (input) => { inputs.push(input); return H0; }, changeset: { id: '1', author: 'me', path: 'a.xml' } },
      { taskHash: (input) => { inputs.push(input); return H1; }, changeset: { id: '2', author: '', path: '' } },
    ],
    stateExists: never,
  });
  const s0 = stateId('image', 'img@sha256:1', H0);
  t.same(inputs, [{ kind: 'image', id: 'img@sha256:1' }, { kind: 'state', id: s0 }]);
  t.strictSame(plan[0], { task_id: 'plan', type: 'plan', planner_kind: 'lb' });
  t.strictSame(plan[1], {
    task_id: 'execute-0', type: 'state_execute', input: { kind: 'image', id: 'img@sha256:1' }, task_hash: H0,
    output_state_id: s0, cached: false, changeset_id: '1', changeset_author: 'me', changeset_path: 'a.xml',
  });
  t.strictSame(plan[2], {
    task_id: 'execute-1', type: 'state_execute', input: { kind: 'state', id: s0 }, task_hash: H1,
    output_state_id: stateId('state', s0, H1), cached: false, changeset_id: '2',
  });
});

t.test('buildStatePlan refuses a plan without steps', async (t) => {
  t.throws(() => buildPsqlPlan({ requestedImage: 'x', resolvedImage: 'x', imageHadDigest: true, steps: [], stateExists: never }), IllegalStateError);
});
