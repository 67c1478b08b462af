/**
 * The step-kind interface: what one prepare kind (psql today; Liquibase is the next) supplies to
 * the shared prepare pipeline. The pipeline (work.ts) owns images, bases, runtimes, snapshots,
 * cache capacity and build coordination; a step kind only plans a request and runs one step's
 * inputs against a runtime that is already up.
 */
import type { Store } from '../../mailbox/store.js';
import type { BindMount } from '../../workers/protocol.js';
import type { PlanResult, PrepareRequest, PrepareWork } from './transition.js';
import type { RuntimeHandle } from './runtimes.js';

export type StepSpec = Extract<PrepareWork, { kind: 'step' }>;
export type LogFn = (message: string) => void;

/** What a step needs from the host before its runtime starts. */
export interface StepInputs {
  /** Read-only bind mounts the step's container must have. */
  mounts: BindMount[];
  /** Kind-specific data handed to {@link StepKind.execute}. */
  data: unknown;
}

export interface StepKind {
  readonly kind: string;
  /**
   * Plans a request on a resolved image: one step per input, chained state ids, cached flags.
   * @throws InvalidArgumentError when the inputs cannot be read or hashed
   */
  plan(store: Pick<Store, 'hasState'>, request: PrepareRequest, resolvedImage: string): Promise<PlanResult>;
  /**
   * Checks that the step's inputs still produce its planned state id and says what the container
   * must see. @throws InvalidArgumentError when they changed since planning
   */
  inputs(spec: StepSpec): Promise<StepInputs>;
  /** Runs the step against a running runtime. @throws InternalError `<kind> execution failed` */
  execute(rt: RuntimeHandle, inputs: StepInputs, spec: StepSpec, log: LogFn, signal: AbortSignal): Promise<void>;
}
