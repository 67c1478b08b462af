/**
 * Content addressing for prepare jobs (`behaviour.md` §3.4, with the hash-schema change of
 * `decisions.md`): the keyed hasher, the psql content digest with `\i` expansion, psql task hashes,
 * state ids and the psql job signature.
 *
 * Only content is hashed, never file paths: moving an unchanged script keeps its states.
 */
import { createHash, type Hash } from 'node:crypto';
import { readFile as fsReadFile, realpath } from 'node:fs/promises';
import { InvalidArgumentError, errorText } from '../../errors.js';
import type { StateId } from '../../ids.js';
import { cleanPath, dirPath, goTrimSpace, type PsqlInput, type PsqlPrepared } from '../postgres/psql-args.js';

/**
 * Tag of the psql hashing recipe, hashed into every psql task hash in place of an engine version so
 * that upgrades keep the cache. Bump it only when the recipe (this file) changes what it hashes.
 */
export const HASH_SCHEMA = 'sqlrs-psql-v1';

/**
 * SHA-256 over `<key>=<byte length of value>:<value>\n` for each field in order; lowercase hex.
 * The length prefix makes the framing unambiguous whatever the values contain.
 */
export function keyedHash(fields: ReadonlyArray<readonly [key: string, value: string]>): string {
  const h = createHash('sha256');
  for (const [key, value] of fields) {
    h.update(`${key}=${Buffer.byteLength(value, 'utf8')}:${value}\n`, 'utf8');
  }
  return h.digest('hex');
}

/** Task hash of one psql step (or of a whole request) from its content digest. */
export function psqlTaskHash(contentDigest: string): string {
  return keyedHash([['prepare_kind', 'psql'], ['content_hash', contentDigest], ['hash_schema', HASH_SCHEMA]]);
}

/**
 * Id of the state produced by applying a task to an input (an image or a parent state).
 * @param inputId the effective image id (resolved digest ref if known) or the parent state id.
 */
export function stateId(inputKind: 'image' | 'state', inputId: string, taskHash: string): StateId {
  // A 64-hex SHA-256 digest is by construction a valid state id; this is its factory.
  return keyedHash([['input_kind', inputKind], ['input_id', inputId], ['task_hash', taskHash]]) as StateId;
}

/**
 * Retention / drift signature of a psql job.
 * @param allInputsTaskHash {@link psqlTaskHash} of the digest over *all* inputs of the request as one
 *   digest (input boundaries included).
 * @param imageId the effective image id.
 */
export function psqlJobSignature(allInputsTaskHash: string, imageId: string, planOnly: boolean): string {
  return keyedHash([['task_hash', allInputsTaskHash], ['image_id', imageId], ['plan_only', planOnly ? 'true' : 'false']]);
}

/** Options of {@link psqlContentDigest}. */
export interface PsqlDigestOptions {
  /** Base for relative `\i` (and `\ir` outside a file). */
  workDir: string;
  /** Text of the `-f -` input. Required when an input is `stdin`. */
  stdin?: string | undefined;
  /**
   * Reads a file's bytes.
   * @default `fs.promises.readFile`
   */
  readFile?: ((path: string) => Promise<Uint8Array>) | undefined;
  /**
   * File contents already read for the same request, keyed by cleaned path; filled as files are
   * read. Share one map across the digests of one request so that every digest sees the same bytes
   * even if a file changes meanwhile.
   */
  contentCache?: Map<string, Uint8Array> | undefined;
}

/** Result of {@link psqlContentDigest}. */
export interface PsqlContentDigest {
  /** Lowercase hex SHA-256 of the expanded content. */
  digest: string;
  /** Every file read (inputs and includes), cleaned, each once, in first-read order. */
  files: string[];
}

const INPUT_BOUNDARY = Buffer.from('\n-- sqlrs: input-boundary\n', 'utf8');
const INCLUDE_BOUNDARY = Buffer.from('\n-- sqlrs: include-boundary\n', 'utf8');
const NEWLINE = Buffer.from('\n', 'utf8');
/** Lines of this many bytes or more (before the `\n`) make hashing fail. */
export const MAX_LINE_BYTES = 64 * 1024;
const LF = 0x0a;
const CR = 0x0d;
const BACKSLASH = 0x5c;
const INCLUDE_COMMANDS = new Set(['\\i', '\\ir', '\\include', '\\include_relative']);
const RELATIVE_COMMANDS = new Set(['\\ir', '\\include_relative']);

/** A failure inside expansion; its message becomes the `details` of the API error. */
class DigestFailure extends Error {}

/**
 * Splits a psql meta-command line into tokens: space/tab separated; `'…'` and `"…"` group text and
 * the quote characters are removed; an empty token is never produced.
 */
function splitMetaCommand(line: string): string[] {
  const out: string[] = [];
  let buf = '';
  let quote = '';
  for (const ch of line) {
    if (quote !== '') {
      if (ch === quote) quote = '';
      else buf += ch;
      continue;
    }
    if (ch === '\'' || ch === '"') quote = ch;
    else if (ch === ' ' || ch === '\t') {
      if (buf !== '') out.push(buf);
      buf = '';
    } else buf += ch;
  }
  if (buf !== '') out.push(buf);
  return out;
}

/** `[command, path argument]` when the line is an include meta-command. */
function parseInclude(line: Buffer): [string, string] | undefined {
  if (!line.includes(BACKSLASH)) return undefined;
  const trimmed = goTrimSpace(line.toString('utf8'));
  if (!trimmed.startsWith('\\')) return undefined;
  const parts = splitMetaCommand(trimmed);
  const [cmd, arg] = parts;
  if (cmd === undefined || arg === undefined || !INCLUDE_COMMANDS.has(cmd)) return undefined;
  return [cmd, arg];
}

/** Text of a file-system error in the form `<op> <path>: <reason>`. */
function fsErrorText(e: unknown, fallbackPath: string): string {
  if (e instanceof Error) {
    const { syscall, path } = e as NodeJS.ErrnoException;
    // Node's messages read "ENOENT: no such file or directory, open '/x'"; keep the reason only.
    const reason = e.message.replace(/^[A-Z0-9_]+: /, '').replace(/, \w+( '.*')?$/s, '');
    if (syscall !== undefined) return `${syscall} ${path ?? fallbackPath}: ${reason}`;
    return e.message;
  }
  return String(e);
}

/** One digest computation: the running hash, the include stack and the files read. */
class Expander {
  readonly hash: Hash = createHash('sha256');
  private readonly stack = new Set<string>();
  private readonly realStack = new Set<string>();
  private readonly files = new Set<string>();
  private readonly read: (path: string) => Promise<Uint8Array>;
  private readonly cache: Map<string, Uint8Array>;

  constructor(private readonly workDir: string, opts: PsqlDigestOptions) {
    this.read = opts.readFile ?? fsReadFile;
    this.cache = opts.contentCache ?? new Map();
  }

  filesRead(): string[] {
    return [...this.files];
  }

  async expandFile(rawPath: string): Promise<void> {
    if (goTrimSpace(rawPath) === '') throw new DigestFailure('empty include path');
    const path = cleanPath(rawPath);
    if (this.stack.has(path)) throw new DigestFailure(`recursive include: ${path}`);
    const content = await this.load(path);
    // The lexical check above is the reference's; the resolved path also catches loops through
    // symlinks, which would otherwise recurse until the path is too long to open.
    const real = await realpath(path).catch(() => path);
    if (this.realStack.has(real)) throw new DigestFailure(`recursive include: ${path}`);
    this.stack.add(path);
    this.realStack.add(real);
    try {
      await this.expandContent(Buffer.from(content.buffer, content.byteOffset, content.byteLength), path);
    } finally {
      this.stack.delete(path);
      this.realStack.delete(real);
    }
  }

  /**
   * Hashes `content` line by line, replacing include lines by the included content between include
   * boundaries. Lines are split at `\n`; one trailing `\r` per line is dropped; a final line without
   * `\n` still counts; an empty tail after the last `\n` is not a line.
   */
  async expandContent(content: Buffer, currentFile: string | undefined): Promise<void> {
    let start = 0;
    while (start < content.length) {
      const nl = content.indexOf(LF, start);
      const end = nl < 0 ? content.length : nl;
      if (end - start >= MAX_LINE_BYTES) {
        throw new DigestFailure(`line too long (${MAX_LINE_BYTES} bytes or more)${currentFile === undefined ? '' : ` in ${currentFile}`}`);
      }
      let lineEnd = end;
      if (lineEnd > start && content[lineEnd - 1] === CR) lineEnd--;
      const line = content.subarray(start, lineEnd);
      start = nl < 0 ? content.length : nl + 1;

      const include = parseInclude(line);
      if (include === undefined) {
        this.hash.update(line);
        this.hash.update(NEWLINE);
        continue;
      }
      const target = this.resolveInclude(include[0], include[1], currentFile);
      this.hash.update(INCLUDE_BOUNDARY);
      await this.expandFile(target);
      this.hash.update(INCLUDE_BOUNDARY);
    }
  }

  private resolveInclude(cmd: string, rawArg: string, currentFile: string | undefined): string {
    const arg = goTrimSpace(rawArg);
    if (arg === '') throw new DigestFailure('include path is empty');
    if (arg.startsWith('/')) return cleanPath(arg);
    let base = this.workDir;
    if (RELATIVE_COMMANDS.has(cmd) && currentFile !== undefined) base = dirPath(currentFile);
    if (goTrimSpace(base) === '') throw new DigestFailure('include path requires working directory');
    return cleanPath(`${base}/${arg}`);
  }

  private async load(path: string): Promise<Uint8Array> {
    const cached = this.cache.get(path);
    if (cached !== undefined) {
      this.files.add(path);
      return cached;
    }
    let data: Uint8Array;
    try {
      data = await this.read(path);
    } catch (e) {
      throw new DigestFailure(fsErrorText(e, path));
    }
    this.cache.set(path, data);
    this.files.add(path);
    return data;
  }
}

/**
 * The psql content digest (`behaviour.md` §3.4.2): SHA-256 of the inputs' text, with
 * `\n-- sqlrs: input-boundary\n` between inputs and every `\i`/`\ir`/`\include`/`\include_relative`
 * line replaced by the included file's expanded content between `\n-- sqlrs: include-boundary\n`
 * markers. Plain `\i` resolves against `workDir`; `\ir` inside a file resolves against that file's
 * directory. Paths are only used to find content; they are not hashed.
 *
 * Not done here: the reference also takes a shared, non-blocking `flock` on every file it reads and
 * holds it for the task. Node offers no `flock`, so content is instead read once per request (see
 * {@link PsqlDigestOptions.contentCache}) and the caller re-hashes at execution time.
 *
 * @throws InvalidArgumentError `cannot compute psql content hash` (details = the reason: a missing
 *   or unreadable file, `recursive include: <path>`, `include path is empty`, a line of 64 KiB or
 *   more, `stdin is required when using -f -`).
 */
export async function psqlContentDigest(inputs: readonly PsqlInput[], opts: PsqlDigestOptions): Promise<PsqlContentDigest> {
  const ex = new Expander(opts.workDir, opts);
  try {
    let first = true;
    for (const input of inputs) {
      if (!first) ex.hash.update(INPUT_BOUNDARY);
      first = false;
      switch (input.kind) {
        case 'command':
          await ex.expandContent(Buffer.from(input.sql, 'utf8'), undefined);
          break;
        case 'stdin':
          if (opts.stdin === undefined) throw new DigestFailure('stdin is required when using -f -');
          await ex.expandContent(Buffer.from(opts.stdin, 'utf8'), undefined);
          break;
        case 'file':
          await ex.expandFile(input.path);
          break;
      }
    }
  } catch (e) {
    throw new InvalidArgumentError('cannot compute psql content hash', { details: errorText(e), cause: e });
  }
  return { digest: ex.hash.digest('hex'), files: ex.filesRead() };
}

/** Hashes of one psql step. */
export interface PsqlStepHash {
  contentDigest: string;
  taskHash: string;
}

/** Everything a psql job needs hashed, from {@link hashPsqlPrepared}. */
export interface PsqlRequestHashes {
  /** One entry per step of `prepared.steps`, same order. */
  steps: PsqlStepHash[];
  /** {@link psqlTaskHash} over all inputs as one digest: the input of {@link psqlJobSignature}. */
  requestTaskHash: string;
  /** Every file read, each once. */
  files: string[];
}

/**
 * Hashes every step of a validated request and the request as a whole, reading each file once.
 * @throws InvalidArgumentError `cannot compute psql content hash`.
 */
export async function hashPsqlPrepared(
  prepared: Pick<PsqlPrepared, 'steps' | 'inputs' | 'workDir' | 'stdin'>,
  opts: Pick<PsqlDigestOptions, 'readFile'> = {},
): Promise<PsqlRequestHashes> {
  const contentCache = new Map<string, Uint8Array>();
  const base: PsqlDigestOptions = { workDir: prepared.workDir, stdin: prepared.stdin, readFile: opts.readFile, contentCache };
  const files = new Set<string>();
  const steps: PsqlStepHash[] = [];
  for (const step of prepared.steps) {
    const d = await psqlContentDigest(step.input === undefined ? [] : [step.input], base);
    d.files.forEach((f) => files.add(f));
    steps.push({ contentDigest: d.digest, taskHash: psqlTaskHash(d.digest) });
  }
  const all = await psqlContentDigest(prepared.inputs, base);
  all.files.forEach((f) => files.add(f));
  return { steps, requestTaskHash: psqlTaskHash(all.digest), files: [...files] };
}
