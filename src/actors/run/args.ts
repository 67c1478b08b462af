/**
 * Rules of a run request (`POST /v1/runs`, `api.md` §3.12): validation in the reference's exact
 * order and messages, connection-argument guards, and the command line each step executes.
 *
 * Validation order (the first failure wins):
 * 1. empty `instance_ref` → 400 `instance_ref is required`;
 * 2. `kind` (trimmed, lower-cased) not `psql`/`pgbench` → 400 `unknown run kind`;
 * 3. the instance (exact id when the ref is 32 hex, else or on miss a name) → 404 `instance not found`;
 * 4. no runtime id → 409 `instance runtime id is missing`;
 * 5. connection arguments in `args` → 409 `conflicting psql connection arguments` /
 *    `conflicting pgbench connection arguments`;
 * 6. `steps`: not psql → 400 `steps are only supported for run:psql`; with `args` → 400
 *    `steps cannot be combined with args`; with `stdin` → 400 `steps cannot be combined with stdin`;
 *    connection arguments in any step → 409 (every step is checked before anything runs);
 * 7. (this engine) the instance is being deleted → 409 `instance is being deleted`.
 *
 * Command lines (run as user `postgres` inside the instance's container):
 * - psql: `<command> <args…> postgres://sqlrs@127.0.0.1:5432/postgres` (DSN appended last);
 * - pgbench: `<command> -h 127.0.0.1 -p 5432 -U sqlrs <args…> postgres`. The reference passes
 *   `-d postgres`, but `-d` is pgbench's `--debug` switch; this engine passes the database as the
 *   final positional instead, and only when the arguments do not already name one.
 */
import { ConflictError, InvalidArgumentError, NotFoundError } from '../../errors.js';
import { looksLikeInstanceId, type InstanceId } from '../../ids.js';
import { goTrimSpace, isConnectionFlag } from '../postgres/psql-args.js';

export type RunKind = 'psql' | 'pgbench';

/** The DSN appended to psql command lines (container-internal address). */
export const PSQL_DSN = 'postgres://sqlrs@127.0.0.1:5432/postgres';
/** Connection flags of the container-local server (put in front of pgbench arguments). */
export const LOCAL_CONNECTION_FLAGS = ['-h', '127.0.0.1', '-p', '5432', '-U', 'sqlrs'] as const;
/** Database pgbench connects to when the arguments name none. */
export const PGBENCH_DATABASE = 'postgres';

/** A decoded run request body (`null` and absent mean the same). */
export interface RunRequestInput {
  instance_ref?: string | null | undefined;
  kind?: string | null | undefined;
  command?: string | null | undefined;
  args?: readonly string[] | null | undefined;
  stdin?: string | null | undefined;
  steps?: readonly { args?: readonly string[] | null | undefined; stdin?: string | null | undefined }[] | null | undefined;
}

/** The instance facts validation needs. */
export interface RunInstance {
  instance_id: InstanceId;
  runtime_id: string | null;
  deleting: number;
}

/** Finds an instance by exact id; and the instance id a name points at. */
export interface InstanceLookup {
  byId(id: string): RunInstance | undefined;
  idOfName(name: string): string | undefined;
}

/** One executed command: the full argv and the text fed to its stdin (absent: no stdin). */
export interface ExecStep {
  cmd: string[];
  stdin?: string;
}

/** A validated run: what to execute, in order, and where. */
export interface ValidRun {
  instanceId: InstanceId;
  runtimeId: string;
  kind: RunKind;
  steps: ExecStep[];
}

/** Resolves `ref` like `GET /v1/instances/{ref}` (no redirect): exact id if 32 hex, else (or on miss) a name. */
export function resolveInstance(ref: string, lookup: InstanceLookup): RunInstance | undefined {
  if (looksLikeInstanceId(ref)) {
    const r = lookup.byId(ref);
    if (r) return r;
  }
  const id = lookup.idOfName(ref);
  return id === undefined ? undefined : lookup.byId(id);
}

/**
 * True when psql arguments carry their own connection target: a psql connection flag (as in
 * prepare) or any argument not starting with `-` that contains `://`. Arguments are trimmed first;
 * empty ones are skipped.
 */
export function psqlConnectionConflict(args: readonly string[]): boolean {
  for (const raw of args) {
    const arg = goTrimSpace(raw);
    if (arg === '') continue;
    if (isConnectionFlag(arg)) return true;
    if (arg.startsWith('-')) continue;
    if (arg.includes('://')) return true;
  }
  return false;
}

/** True when pgbench arguments contain `-h -p -U -d`, exact or with a glued value (long forms are not checked). */
export function pgbenchConnectionConflict(args: readonly string[]): boolean {
  for (const raw of args) {
    const arg = goTrimSpace(raw);
    if (arg === '') continue;
    for (const f of ['-h', '-p', '-U', '-d']) {
      if (arg === f || (arg.length > 2 && arg.startsWith(f))) return true;
    }
  }
  return false;
}

/** pgbench short options that take a value (`getopt` string of PostgreSQL 15–17). */
const PGBENCH_SHORT_WITH_VALUE = new Set(['b', 'c', 'D', 'f', 'F', 'h', 'I', 'j', 'L', 'M', 'p', 'P', 'R', 's', 't', 'T', 'U']);
/** pgbench long options, and whether each takes a value. */
const PGBENCH_LONG: ReadonlyMap<string, boolean> = new Map([
  ['builtin', true], ['client', true], ['connect', false], ['debug', false], ['define', true], ['file', true],
  ['fillfactor', true], ['host', true], ['initialize', false], ['init-steps', true], ['jobs', true], ['log', false],
  ['latency-limit', true], ['no-vacuum', false], ['port', true], ['progress', true], ['protocol', true], ['quiet', false],
  ['report-per-command', false], ['report-latencies', false], ['rate', true], ['scale', true], ['select-only', false],
  ['skip-some-updates', false], ['time', true], ['transactions', true], ['username', true], ['vacuum-all', false],
  ['unlogged-tables', false], ['tablespace', true], ['index-tablespace', true], ['sampling-rate', true],
  ['aggregate-interval', true], ['progress-timestamp', false], ['log-prefix', true], ['foreign-keys', false],
  ['random-seed', true], ['show-script', true], ['partitions', true], ['partition-method', true],
  ['failures-detailed', false], ['max-tries', true], ['verbose-errors', false], ['exit-on-abort', false],
  ['help', false], ['version', false],
]);

/** Whether `--name` (no `=`) consumes the next argument; unique prefixes count, as in `getopt_long`. */
function longTakesValue(name: string): boolean {
  const exact = PGBENCH_LONG.get(name);
  if (exact !== undefined) return exact;
  const matches = [...PGBENCH_LONG.entries()].filter(([k]) => k.startsWith(name));
  return matches.length === 1 && (matches[0]?.[1] ?? false);
}

/**
 * True when pgbench arguments already contain a positional argument (the database name), reading
 * them the way pgbench's `getopt_long` does: option values (separate or glued, short clusters such as
 * `-nc10`) are skipped, and everything after `--` is positional.
 */
export function pgbenchHasPositional(args: readonly string[]): boolean {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--') return i + 1 < args.length;
    if (a.startsWith('--')) {
      if (!a.includes('=') && longTakesValue(a.slice(2))) i++;
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        if (PGBENCH_SHORT_WITH_VALUE.has(a.charAt(j))) {
          if (j === a.length - 1) i++; // the value is the next argument
          break;
        }
      }
      continue;
    }
    return true;
  }
  return false;
}

/** The argv one step executes (see the module comment). */
export function execArgv(kind: RunKind, command: string, args: readonly string[]): string[] {
  if (kind === 'psql') return [command, ...args, PSQL_DSN];
  return [command, ...LOCAL_CONNECTION_FLAGS, ...args, ...(pgbenchHasPositional(args) ? [] : [PGBENCH_DATABASE])];
}

function connectionConflict(kind: RunKind, args: readonly string[]): ConflictError | undefined {
  if (kind === 'psql') return psqlConnectionConflict(args) ? new ConflictError('conflicting psql connection arguments') : undefined;
  return pgbenchConnectionConflict(args) ? new ConflictError('conflicting pgbench connection arguments') : undefined;
}

/**
 * Validates a run request in the documented order and builds its steps.
 * @throws InvalidArgumentError, NotFoundError, ConflictError with the exact messages of `api.md` §3.12.
 */
export function validateRunRequest(body: RunRequestInput, lookup: InstanceLookup): ValidRun {
  const ref = body.instance_ref ?? '';
  if (goTrimSpace(ref) === '') throw new InvalidArgumentError('instance_ref is required');
  const kindText = goTrimSpace(body.kind ?? '').toLowerCase();
  if (kindText !== 'psql' && kindText !== 'pgbench') throw new InvalidArgumentError('unknown run kind');
  const kind: RunKind = kindText;
  const inst = resolveInstance(ref, lookup);
  if (!inst) throw new NotFoundError('instance not found');
  const runtimeId = goTrimSpace(inst.runtime_id ?? '');
  if (runtimeId === '') throw new ConflictError('instance runtime id is missing');
  const args = [...(body.args ?? [])];
  const conflict = connectionConflict(kind, args);
  if (conflict) throw conflict;
  const command = goTrimSpace(body.command ?? '') || kind;
  const stdin = body.stdin ?? undefined;

  let steps: ExecStep[];
  const reqSteps = body.steps ?? [];
  if (reqSteps.length > 0) {
    if (kind !== 'psql') throw new InvalidArgumentError('steps are only supported for run:psql');
    if (args.length > 0) throw new InvalidArgumentError('steps cannot be combined with args');
    if (stdin !== undefined) throw new InvalidArgumentError('steps cannot be combined with stdin');
    steps = reqSteps.map((s) => {
      const stepArgs = [...(s.args ?? [])];
      const c = connectionConflict(kind, stepArgs);
      if (c) throw c;
      const step: ExecStep = { cmd: execArgv(kind, command, stepArgs) };
      if (s.stdin !== undefined && s.stdin !== null) step.stdin = s.stdin;
      return step;
    });
  } else {
    const step: ExecStep = { cmd: execArgv(kind, command, args) };
    if (stdin !== undefined) step.stdin = stdin;
    steps = [step];
  }
  if (inst.deleting !== 0) throw new ConflictError('instance is being deleted');
  return { instanceId: inst.instance_id, runtimeId, kind, steps };
}
