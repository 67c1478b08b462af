/**
 * Pure planning: turns hashed steps into the task list of a prepare job (`api.md` §3.5,
 * `behaviour.md` §3.6). The types here are the wire shape of `PreparePlanTask`: snake_case fields,
 * optional fields absent (never `undefined`) when they do not apply.
 */
import { IllegalStateError } from '../../errors.js';
import type { StateId } from '../../ids.js';
import { stateId } from './hashing.js';

/** Prepare kind that produced a plan. */
export type PlannerKind = 'psql' | 'lb';

/** Wire `type` of a plan task. */
export type PlanTaskType = 'plan' | 'resolve_image' | 'state_execute' | 'prepare_instance';

/** What a task starts from: the (effective) base image or a previous state. */
export type PlanTaskInput = { kind: 'image'; id: string } | { kind: 'state'; id: StateId };

/** Task `plan`: always first. */
export interface PlanStepTask {
  task_id: 'plan';
  type: 'plan';
  planner_kind: PlannerKind;
}

/** Task `resolve-image`: only when the requested image ref had no `@digest`. */
export interface ResolveImageTask {
  task_id: 'resolve-image';
  type: 'resolve_image';
  /** The requested ref. */
  image_id: string;
  resolved_image_id: string;
}

/** Task `execute-<n>`: builds (or reuses) one state. */
export interface StateExecuteTask {
  task_id: `execute-${number}`;
  type: 'state_execute';
  input: PlanTaskInput;
  task_hash: string;
  output_state_id: StateId;
  /** Whether the output state existed when the plan was made. Always present, `false` included. */
  cached: boolean;
  /** Liquibase only, each present only when non-empty. */
  changeset_id?: string;
  changeset_author?: string;
  changeset_path?: string;
}

/** Task `prepare-instance`: always last. */
export interface PrepareInstanceTask {
  task_id: 'prepare-instance';
  type: 'prepare_instance';
  input: { kind: 'state'; id: StateId };
  instance_mode: 'ephemeral';
}

/** One task of a prepare plan, exactly as it appears in `PrepareJobStatus.tasks`. */
export type PlanTask = PlanStepTask | ResolveImageTask | StateExecuteTask | PrepareInstanceTask;

/**
 * True when the image ref carries a digest: its last `@` is followed by at least one character.
 * Such refs are their own resolved id and get no `resolve-image` task.
 */
export function imageHasDigest(ref: string): boolean {
  const at = ref.lastIndexOf('@');
  return at >= 0 && at + 1 < ref.length;
}

/** Liquibase changeset identity carried by an execute task. */
export interface ChangesetRef {
  id: string;
  author: string;
  path: string;
}

/** One step to plan. */
export interface ExecuteStepSpec {
  /**
   * The step's task hash, or how to compute it from the step's input (Liquibase hashes include the
   * previous state id, which only planning knows).
   */
  taskHash: string | ((input: PlanTaskInput) => string);
  changeset?: ChangesetRef;
}

/** Options of {@link buildStatePlan}. */
export interface StatePlanOptions {
  plannerKind: PlannerKind;
  /** Image ref as requested (trimmed). */
  requestedImage: string;
  /** Effective image id: the resolved digest ref, or the requested ref when it had a digest. */
  resolvedImage: string;
  /** Whether the requested ref had a digest ({@link imageHasDigest}). */
  imageHadDigest: boolean;
  steps: readonly ExecuteStepSpec[];
  /** Whether a state row with this id exists now (sets `cached`). */
  stateExists: (id: StateId) => boolean;
}

/**
 * Builds `plan`, [`resolve-image`], `execute-0…n-1`, `prepare-instance`. `execute-0` starts from the
 * resolved image, each later step from the previous step's output, and `prepare-instance` from the
 * last output.
 * @throws IllegalStateError when `steps` is empty (every prepare has at least one step).
 */
export function buildStatePlan(opts: StatePlanOptions): PlanTask[] {
  const executes: StateExecuteTask[] = [];
  let input: PlanTaskInput = { kind: 'image', id: opts.resolvedImage };
  for (const [n, step] of opts.steps.entries()) {
    const taskHash = typeof step.taskHash === 'string' ? step.taskHash : step.taskHash(input);
    const output = stateId(input.kind, input.id, taskHash);
    const task: StateExecuteTask = {
      task_id: `execute-${n}`, type: 'state_execute', input,
      task_hash: taskHash, output_state_id: output, cached: opts.stateExists(output),
    };
    if (step.changeset !== undefined) {
      if (step.changeset.id !== '') task.changeset_id = step.changeset.id;
      if (step.changeset.author !== '') task.changeset_author = step.changeset.author;
      if (step.changeset.path !== '') task.changeset_path = step.changeset.path;
    }
    executes.push(task);
    input = { kind: 'state', id: output };
  }
  const final = executes.at(-1);
  if (final === undefined) throw new IllegalStateError('a prepare plan needs at least one step');

  const tasks: PlanTask[] = [{ task_id: 'plan', type: 'plan', planner_kind: opts.plannerKind }];
  if (!opts.imageHadDigest) {
    tasks.push({
      task_id: 'resolve-image', type: 'resolve_image',
      image_id: opts.requestedImage, resolved_image_id: opts.resolvedImage,
    });
  }
  tasks.push(...executes, {
    task_id: 'prepare-instance', type: 'prepare_instance',
    input: { kind: 'state', id: final.output_state_id }, instance_mode: 'ephemeral',
  });
  return tasks;
}

/** Options of {@link buildPsqlPlan}. */
export interface PsqlPlanOptions {
  requestedImage: string;
  resolvedImage: string;
  imageHadDigest: boolean;
  /** One entry per psql step, in step order. */
  steps: ReadonlyArray<{ taskHash: string }>;
  stateExists: (id: StateId) => boolean;
}

/** The plan of a psql prepare job: one `execute-<n>` per psql step. */
export function buildPsqlPlan(opts: PsqlPlanOptions): PlanTask[] {
  return buildStatePlan({
    plannerKind: 'psql',
    requestedImage: opts.requestedImage,
    resolvedImage: opts.resolvedImage,
    imageHadDigest: opts.imageHadDigest,
    steps: opts.steps.map((s) => ({ taskHash: s.taskHash })),
    stateExists: opts.stateExists,
  });
}
