/**
 * psql argument rules for `prepare_kind: "psql"` requests (`api.md` §3.1, `behaviour.md` §3.2.1).
 *
 * {@link validatePsqlRequest} walks the raw `psql_args` once, left to right, and in that single walk
 * validates every argument, records the inputs (`-f`/`-c` occurrences) and sorts every other argument
 * into the "shared" flags. The walk is the only parser: the step list is derived from what the walk
 * saw, so a value consumed by one flag (e.g. `-v -c`) can never be re-read as a different flag later.
 *
 * Messages and `details` are part of the wire contract and must not change.
 */
import { statSync } from 'node:fs';
import { InvalidArgumentError } from '../../errors.js';

/** One content input of a psql request, in argument order. */
export type PsqlInput =
  | { kind: 'file'; path: string }
  | { kind: 'stdin' }
  | { kind: 'command'; sql: string };

/** One executed psql call: the arguments after the engine's own connection flags. */
export interface PsqlStep {
  /** Shared flags of the whole request followed by this step's `-c <sql>` / `-f <path>`. */
  args: string[];
  /** Absent only for the single step of a request without any `-f`/`-c`. */
  input?: PsqlInput;
}

/** A validated, normalized psql request. */
export interface PsqlPrepared {
  /** `normalized` joined by single spaces: the job's `prepare_args_normalized`. */
  argsNormalized: string;
  /** Raw args (empty strings and a trailing `--` kept) plus the appended defaults. */
  normalized: string[];
  /** One step per input in argument order, or one input-less step when there are none. */
  steps: PsqlStep[];
  /** Every input in argument order. */
  inputs: PsqlInput[];
  /** Base for relative `\i`: directory of the first `-f` file, else the engine's cwd. */
  workDir: string;
  /** SQL text for `-f -`; present exactly when a `-f -` input exists. */
  stdin?: string;
}

/** Flags appended when the request lacks them. */
const NO_PSQLRC = '-X';
const ON_ERROR_STOP_ARGS = ['-v', 'ON_ERROR_STOP=1'] as const;

/** Default host check: the path can be `stat`ed on the engine host. */
function statable(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

function invalid(message: string, details?: string): InvalidArgumentError {
  return new InvalidArgumentError(message, details === undefined ? {} : { details });
}

const CONNECTION_EXACT = new Set(['-h', '-p', '-U', '-d', '--host', '--port', '--username', '--dbname', '--database']);
const CONNECTION_LONG_PREFIXES = ['--host=', '--port=', '--username=', '--dbname=', '--database='];
const CONNECTION_SHORT_PREFIXES = ['-h', '-p', '-U', '-d'];

/**
 * True for a psql connection flag: `-h -p -U -d --host --port --username --dbname --database`, their
 * `--x=` forms and glued short forms (`-hfoo`, `-p5432`, …). Also used by run requests.
 */
export function isConnectionFlag(arg: string): boolean {
  if (CONNECTION_EXACT.has(arg)) return true;
  if (CONNECTION_LONG_PREFIXES.some((p) => arg.startsWith(p))) return true;
  return arg.length > 2 && CONNECTION_SHORT_PREFIXES.some((p) => arg.startsWith(p));
}

/** How one flag family is spelled: separate-value forms, the glued short form, `--long=` forms. */
interface FlagFamily {
  separate: readonly string[];
  glued: string;
  long: readonly string[];
  missing: string;
  /** Whether `--long=` with an empty value is a missing value (only `--file=`). */
  emptyLongIsMissing: boolean;
}

const VARIABLE: FlagFamily = {
  separate: ['-v', '--set', '--variable'], glued: '-v', long: ['--set=', '--variable='],
  missing: 'missing value for variable flag', emptyLongIsMissing: false,
};
const FILE: FlagFamily = {
  separate: ['-f', '--file'], glued: '-f', long: ['--file='],
  missing: 'missing value for file flag', emptyLongIsMissing: true,
};
const COMMAND: FlagFamily = {
  separate: ['-c', '--command'], glued: '-c', long: ['--command='],
  missing: 'missing value for command flag', emptyLongIsMissing: false,
};

/** A matched flag: its value and whether the value was the next argument. */
interface FlagMatch {
  value: string;
  separate: boolean;
}

/**
 * Matches `args[i]` against a flag family. Returns `undefined` when the argument is not of the family.
 * @throws InvalidArgumentError with the family's missing-value message (details = the flag).
 */
function matchFlag(args: readonly string[], i: number, arg: string, fam: FlagFamily): FlagMatch | undefined {
  if (fam.separate.includes(arg)) {
    const value = args[i + 1];
    if (value === undefined) throw invalid(fam.missing, arg);
    return { value, separate: true };
  }
  if (arg.length > 2 && arg.startsWith(fam.glued)) return { value: arg.slice(2), separate: false };
  for (const prefix of fam.long) {
    if (!arg.startsWith(prefix)) continue;
    const value = arg.slice(prefix.length);
    if (value === '' && fam.emptyLongIsMissing) throw invalid(fam.missing, arg);
    return { value, separate: false };
  }
  return undefined;
}

/**
 * Checks one variable assignment (`NAME=value` or bare `NAME`) for the `ON_ERROR_STOP` rule.
 * @returns true when the assignment sets `ON_ERROR_STOP` (to `1`).
 * @throws InvalidArgumentError `ON_ERROR_STOP must be set to 1`.
 */
function checkOnErrorStop(assignment: string): boolean {
  const eq = assignment.indexOf('=');
  if (eq < 0) {
    if (goTrimSpace(assignment).toUpperCase() === 'ON_ERROR_STOP') throw invalid('ON_ERROR_STOP must be set to 1');
    return false;
  }
  if (goTrimSpace(assignment.slice(0, eq)).toUpperCase() !== 'ON_ERROR_STOP') return false;
  if (goTrimSpace(assignment.slice(eq + 1)) !== '1') throw invalid('ON_ERROR_STOP must be set to 1', assignment);
  return true;
}

/**
 * Validates and normalizes a psql prepare request and splits it into executed steps.
 *
 * Rules, checked in this order for each argument of a left-to-right walk (the first failure wins):
 * empty string → skipped (kept in `normalized`); `--` → ignored when last, else
 * `positional arguments are not allowed`; connection flags → `connection flags are not allowed`;
 * `-X`/`--no-psqlrc`; variable flags (`ON_ERROR_STOP` must be `1`); file flags; command flags; other
 * `-…` flags pass through; anything else → `positional database arguments are not allowed`.
 * A `-f -` without `stdin` fails at its position in the walk (`stdin is required when using -f -`),
 * as the reference does; `stdin` without any `-f -` fails after the walk.
 *
 * Normalization appends `-X` when absent, then `-v ON_ERROR_STOP=1` when no `ON_ERROR_STOP`
 * variable was given.
 *
 * Step rule: the *shared args* are every argument of the normalized list that is not an input
 * (`-f`/`-c` and their values), not an empty string and not the trailing `--`, in list order — so
 * they always include `-X` and an `ON_ERROR_STOP=1` assignment wherever the user wrote them. Each
 * input becomes one step with args = shared args + `-c <sql>` or `-f <path>` (compact and `--x=`
 * forms re-expanded). With no input at all there is one step with the shared args and no input.
 * (The reference snapshots only the flags seen *before* each input, so its steps usually run
 * without `ON_ERROR_STOP=1`; this engine deliberately does not.)
 *
 * @param args raw `psql_args`, order preserved.
 * @param stdin the request's `stdin`; `undefined` when the field was absent (an empty string counts
 *   as given).
 * @param fsCheck whether a path exists on the engine host.
 * @default fsCheck `fs.statSync` succeeds
 * @throws InvalidArgumentError with the exact messages of `api.md` §3.1.
 */
export function validatePsqlRequest(
  args: readonly string[],
  stdin: string | undefined,
  fsCheck: (path: string) => boolean = statable,
): PsqlPrepared {
  const shared: string[] = [];
  const inputs: PsqlInput[] = [];
  let hasNoPsqlrc = false;
  let hasOnErrorStop = false;
  let usesStdin = false;
  let firstFile: string | undefined;

  // Set when a flag consumed the next argument as its value.
  let consumed = false;
  for (const [i, arg] of args.entries()) {
    if (consumed) {
      consumed = false;
      continue;
    }
    if (arg === '') continue;

    if (arg === '--') {
      if (i + 1 < args.length) throw invalid('positional arguments are not allowed');
      continue;
    }

    if (isConnectionFlag(arg)) throw invalid('connection flags are not allowed', arg);

    if (arg === '-X' || arg === '--no-psqlrc') {
      hasNoPsqlrc = true;
      shared.push(arg);
      continue;
    }

    const variable = matchFlag(args, i, arg, VARIABLE);
    if (variable) {
      if (checkOnErrorStop(variable.value)) hasOnErrorStop = true;
      shared.push(arg);
      if (variable.separate) shared.push(variable.value);
      consumed = variable.separate;
      continue;
    }

    const file = matchFlag(args, i, arg, FILE);
    if (file) {
      const path = file.value;
      if (path === '-') {
        usesStdin = true;
        if (stdin === undefined) throw invalid('stdin is required when using -f -');
        inputs.push({ kind: 'stdin' });
      } else {
        if (path === '') throw invalid('file path is empty');
        if (!path.startsWith('/')) throw invalid('file path must be absolute', path);
        if (!fsCheck(path)) throw invalid('cannot read file', path);
        inputs.push({ kind: 'file', path });
        firstFile ??= path;
      }
      consumed = file.separate;
      continue;
    }

    const command = matchFlag(args, i, arg, COMMAND);
    if (command) {
      inputs.push({ kind: 'command', sql: command.value });
      consumed = command.separate;
      continue;
    }

    if (arg.startsWith('-')) {
      shared.push(arg);
      continue;
    }
    throw invalid('positional database arguments are not allowed', arg);
  }

  if (!usesStdin && stdin !== undefined) throw invalid('stdin is only valid with -f -');

  const defaults: string[] = [];
  if (!hasNoPsqlrc) defaults.push(NO_PSQLRC);
  if (!hasOnErrorStop) defaults.push(...ON_ERROR_STOP_ARGS);
  const normalized = [...args, ...defaults];
  shared.push(...defaults);

  const steps: PsqlStep[] = inputs.length === 0
    ? [{ args: [...shared] }]
    : inputs.map((input) => ({ args: [...shared, ...inputArgs(input)], input }));

  const out: PsqlPrepared = {
    argsNormalized: normalized.join(' '),
    normalized,
    steps,
    inputs,
    workDir: firstFile === undefined ? process.cwd() : dirPath(firstFile),
  };
  if (usesStdin && stdin !== undefined) out.stdin = stdin;
  return out;
}

/** The expanded psql arguments that feed one input. */
export function inputArgs(input: PsqlInput): [string, string] {
  switch (input.kind) {
    case 'file': return ['-f', input.path];
    case 'stdin': return ['-f', '-'];
    case 'command': return ['-c', input.sql];
  }
}

/**
 * The `args_summary` of a psql `state_execute` task in `GET /v1/tasks`:
 * `-f <path>`, `-f -` or `-c <sql>`.
 */
export function argsSummary(input: PsqlInput): string {
  return inputArgs(input).join(' ');
}

// Unicode white space as the reference's trimming understands it: like JavaScript's `\s` but with
// U+0085 and without U+FEFF (a byte-order mark is content, not white space).
const WS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const TRIM_RE = new RegExp(`^[${WS}]+|[${WS}]+$`, 'g');

/**
 * Trims leading and trailing white space with the reference's definition of white space.
 * @internal
 */
export function goTrimSpace(s: string): string {
  return s.replace(TRIM_RE, '');
}

/**
 * Lexically cleans a slash-separated path: collapses `//`, drops `.`, resolves `..` against earlier
 * elements (never above the root), removes a trailing slash; `""` → `.`.
 * @internal
 */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = out.join('/');
  if (rooted) return `/${joined}`;
  return joined === '' ? '.' : joined;
}

/**
 * Directory part of a path (everything before the last `/`), cleaned.
 * @internal
 */
export function dirPath(p: string): string {
  const slash = p.lastIndexOf('/');
  return cleanPath(slash < 0 ? '' : p.slice(0, slash + 1));
}
