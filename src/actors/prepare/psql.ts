/**
 * The psql step kind: plans a psql request (content digest of every input with `\i` expansion,
 * chained state ids) and runs one step's inputs with `psql` inside the step's container, the
 * scripts mounted read-only. Arguments are parsed once at submit ({@link psqlOf}); a step only
 * re-hashes its files to catch content that changed since planning.
 */
import { dirname, posix, relative, sep } from 'node:path';
import type { Store } from '../../mailbox/store.js';
import type { ContainerRuntime } from '../../workers/protocol.js';
import { InternalError, InvalidArgumentError } from '../../errors.js';
import { argsSummary, validatePsqlRequest, type PsqlPrepared } from '../postgres/psql-args.js';
import { hashPsqlPrepared, psqlJobSignature, stateId } from './hashing.js';
import { buildPsqlPlan, type StateExecuteTask } from './plan.js';
import type { PlanResult, PrepareRequest } from './transition.js';
import type { RuntimeHandle } from './runtimes.js';
import type { LogFn, StepInputs, StepKind, StepSpec } from './step-kind.js';

/** Where the scripts' directory is mounted in a step's container. */
export const SCRIPTS = '/sqlrs/scripts';
/** The tail of psql's output kept for a failed step's error details. */
const MAX_ERROR_OUTPUT = 16 * 1024;

/**
 * The request's psql arguments as parsed at submit. Jobs persisted by an engine that did not
 * carry them yet are parsed here once more, from the raw arguments they kept.
 */
export function psqlOf(request: PrepareRequest): PsqlPrepared {
  return request.psql ?? validatePsqlRequest(request.psqlArgs, request.stdin);
}

/** Deepest common ancestor directory of absolute paths. */
function commonDir(paths: string[]): string | undefined {
  if (paths.length === 0) return undefined;
  let parts = dirname(paths[0] ?? '/').split(sep);
  for (const p of paths.slice(1)) {
    const q = dirname(p).split(sep);
    let i = 0;
    while (i < parts.length && i < q.length && parts[i] === q[i]) i++;
    parts = parts.slice(0, i);
  }
  const d = parts.join(sep);
  return d === '' ? '/' : d;
}

/**
 * Plans a psql request on a resolved image: hashes every step, chains the state ids
 * (`state_id = H(input, task_hash)`) and marks the steps whose state exists. Used by prepare jobs
 * and by cache explain.
 * @throws InvalidArgumentError `cannot compute psql content hash`
 */
export async function planPsql(store: Pick<Store, 'hasState'>, request: PrepareRequest, resolvedImage: string): Promise<PlanResult> {
  const prepared = psqlOf(request);
  const hashes = await hashPsqlPrepared(prepared);
  // Chaining and cache lookups are the planner's; only its execute tasks matter here.
  const executes = buildPsqlPlan({
    requestedImage: resolvedImage, resolvedImage, imageHadDigest: true, steps: hashes.steps,
    stateExists: (id) => store.hasState(id),
  }).filter((tk): tk is StateExecuteTask => tk.type === 'state_execute');
  const steps: PlanResult['steps'] = executes.map((tk, i) => {
    const input = prepared.steps[i]?.input;
    const step = { taskHash: tk.task_hash, outputStateId: tk.output_state_id, cached: tk.cached };
    return input ? { ...step, argsSummary: argsSummary(input) } : step;
  });
  return { steps, requestTaskHash: hashes.requestTaskHash, signature: psqlJobSignature(hashes.requestTaskHash, resolvedImage, request.planOnly) };
}

interface PsqlStepData { prepared: PsqlPrepared; root: string | undefined }

export class PsqlStepKind implements StepKind {
  readonly kind = 'psql';

  constructor(private readonly containers: Pick<ContainerRuntime, 'exec'>) {}

  plan(store: Pick<Store, 'hasState'>, request: PrepareRequest, resolvedImage: string): Promise<PlanResult> {
    return planPsql(store, request, resolvedImage);
  }

  /**
   * Re-hashes the request (the content may have changed since planning) and derives the read-only
   * script mount: the deepest directory holding every file read, includes too.
   */
  async inputs(spec: StepSpec): Promise<StepInputs> {
    const prepared = psqlOf(spec.request);
    const hashes = await hashPsqlPrepared(prepared);
    const h = hashes.steps[spec.index];
    if (!h || stateId(spec.input.kind, spec.input.id, h.taskHash) !== spec.outputStateId) {
      throw new InvalidArgumentError('psql inputs changed while the job was running', { details: hashes.files.join(', ') || 'inline SQL' });
    }
    const root = commonDir(hashes.files);
    const data: PsqlStepData = { prepared, root };
    return { mounts: root ? [{ host: root, container: SCRIPTS, readOnly: true }] : [], data };
  }

  async execute(rt: RuntimeHandle, inputs: StepInputs, spec: StepSpec, log: LogFn, signal: AbortSignal): Promise<void> {
    const { prepared, root } = inputs.data as PsqlStepData;
    const step = prepared.steps[spec.index];
    if (!step) throw new InternalError('cannot resolve psql step', { details: `step ${spec.index} of ${prepared.steps.length}` });
    const toContainer = (p: string): string => (root ? posix.join(SCRIPTS, relative(root, p).split(sep).join('/')) : p);
    const execArgs: string[] = [];
    let usesStdin = false;
    for (let i = 0; i < step.args.length; i++) {
      const a = step.args[i] ?? '';
      if (a === '-f' && i + 1 < step.args.length) {
        const p = step.args[++i] ?? '';
        if (p === '-') usesStdin = true;
        execArgs.push('-f', p === '-' ? '-' : toContainer(p));
      } else execArgs.push(a);
    }
    const hasFile = prepared.inputs.some((x) => x.kind === 'file');
    const workdir = hasFile && root ? toContainer(prepared.workDir + sep + '.').replace(/\/\.$/, '') : undefined;
    log('psql: start');
    let tail = '';
    const partial: Record<string, string> = { stdout: '', stderr: '' };
    const onOutput = (stream: 'stdout' | 'stderr', chunk: string): void => {
      tail = (tail + chunk).slice(-MAX_ERROR_OUTPUT);
      const text = (partial[stream] ?? '') + chunk;
      const lines = text.split('\n');
      partial[stream] = lines.pop() ?? '';
      for (const l of lines) { const t = l.replace(/\r$/, ''); if (t.trim() !== '') log(`psql: ${t}`); }
    };
    const cmd = ['psql', '-h', '127.0.0.1', '-p', '5432', '-U', 'sqlrs', '-d', 'postgres', ...execArgs];
    const req = { containerId: rt.containerId, cmd, user: 'postgres', ...(workdir ? { workdir } : {}), ...(usesStdin && prepared.stdin !== undefined ? { stdin: prepared.stdin } : {}) };
    const r = await this.containers.exec(req, onOutput, signal);
    for (const s of ['stdout', 'stderr']) { const rest = partial[s] ?? ''; if (rest.trim() !== '') log(`psql: ${rest}`); }
    if (r.exitCode !== 0) {
      throw new InternalError('psql execution failed', { details: tail.trim() || `exit status ${r.exitCode}` });
    }
  }
}
