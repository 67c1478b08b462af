/**
 * The engine's logger: pino behind the kernel's {@link Logger} contract, writing JSON lines to a
 * size-bounded, rotating `logs/engine.log`, and human-readable lines to a terminal when asked.
 * Only the composition root (`engine.ts`) and `main.ts` import this file; everything else receives
 * a {@link Logger}.
 *
 * - **Lines**: `{"level":"info","time":"<ISO 8601>",<child bindings>,"msg":"…",<the call's fields>}`.
 *   The message is put before the call's own fields (pino would append it last) so that a line
 *   reads, and greps, in the order it was written. Error values become `{type,message,stack,code?}`.
 * - **Asynchronous**: pino serialises on the calling thread and hands each line to a
 *   rotating-file-stream, which writes it through a `FileHandle` off the event loop, in order.
 *   The lines waiting for the disk are bounded (`maxPendingBytes`): past it lines are dropped and
 *   counted, and a `warn` line says how many once there is room again.
 *   {@link EngineLog.flush} resolves when everything logged so far is in the file;
 *   {@link EngineLog.close} flushes and closes the file. Lines logged while closing are kept and
 *   appended (synchronously) once the stream has finished, so nothing is lost or reordered.
 * - **Bounded**: when `engine.log` reaches `maxBytes` it is renamed `engine.log.1` (`.1` → `.2` …,
 *   the oldest dropped), so at most `files` files exist and the total stays under
 *   `files × maxBytes` plus one line per file (a line is never split between files).
 * - **Live level**: pino itself runs at `trace`; one threshold shared by the root logger and every
 *   child filters the calls, so `setLevel` applies at once to children made earlier too (pino's
 *   own level is copied into each child when it is made).
 * - **Terminal**: with `pretty`, every line is also formatted by pino-pretty —
 *   `[HH:MM:ss.l] LEVEL: <c>: msg {fields}` — and written there synchronously.
 */
import { appendFileSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname } from 'node:path';
import { finished } from 'node:stream/promises';
import { pino, type Logger as PinoLogger } from 'pino';
import type { prettyFactory } from 'pino-pretty';
import { createStream, type RotatingFileStream } from 'rotating-file-stream';
import { InvalidArgumentError, errorText } from './errors.js';
import { LOG_LEVELS, type Logger, type LogLevel, type LogMeta } from './log.js';

/** pino-pretty, loaded only when a terminal wants it (it would add ~25 ms to every engine start). */
function loadPrettyFactory(): typeof prettyFactory {
  return (createRequire(import.meta.url)('pino-pretty') as { prettyFactory: typeof prettyFactory }).prettyFactory;
}

/** How big `engine.log` may grow and how many files (it and its rotated copies) are kept. */
export interface LogRotation {
  /** `engine.log` is rotated when it reaches this size. */
  maxBytes: number;
  /** Files kept, `engine.log` included (at least 2): `engine.log`, `engine.log.1` … `engine.log.<files-1>`. */
  files: number;
}

/** 10 MiB × 5 files: at most about 50 MiB of logs. */
export const DEFAULT_LOG_ROTATION: Readonly<LogRotation> = { maxBytes: 10 * 1024 * 1024, files: 5 };

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/**
 * The rotation bound from `SQLRS_LOG_MAX_BYTES` (bytes, or with a binary suffix `K`, `M`, `G`;
 * at least 1K) and `SQLRS_LOG_FILES` (2 to 100); an unset or empty variable keeps its default.
 * @throws InvalidArgumentError naming the variable when a value is not one of those.
 */
export function logRotationFromEnv(env: NodeJS.ProcessEnv, defaults: Readonly<LogRotation> = DEFAULT_LOG_ROTATION): LogRotation {
  const out: LogRotation = { ...defaults };
  const rawBytes = (env['SQLRS_LOG_MAX_BYTES'] ?? '').trim();
  if (rawBytes !== '') {
    const m = /^(\d+)\s*([KMG]?)(?:i?B)?$/i.exec(rawBytes);
    const n = m ? Number(m[1]) * (UNITS[(m[2] ?? '').toUpperCase()] ?? 1) : NaN;
    if (!Number.isSafeInteger(n) || n < 1024) {
      throw new InvalidArgumentError(`SQLRS_LOG_MAX_BYTES must be a size of at least 1K (e.g. 10M, 512K, 1048576), not ${JSON.stringify(rawBytes)}`);
    }
    out.maxBytes = n;
  }
  const rawFiles = (env['SQLRS_LOG_FILES'] ?? '').trim();
  if (rawFiles !== '') {
    const n = /^\d+$/.test(rawFiles) ? Number(rawFiles) : NaN;
    if (!(n >= 2 && n <= 100)) throw new InvalidArgumentError(`SQLRS_LOG_FILES must be a whole number from 2 to 100, not ${JSON.stringify(rawFiles)}`);
    out.files = n;
  }
  return out;
}

/** Somewhere human-readable lines can go (`process.stderr`, or a test's collector). */
export interface TextOutput {
  write(s: string): unknown;
  isTTY?: boolean;
}

export interface EngineLogOptions {
  /** The log file; its directory is created with mode 0700, the file with 0600. */
  file: string;
  /** @default DEFAULT_LOG_ROTATION */
  rotation?: Readonly<LogRotation>;
  /** @default 'debug' */
  level?: LogLevel;
  /** Also write every line, formatted for people, here (the engine passes stderr when it is a terminal). */
  pretty?: TextOutput;
  /** Colour the human-readable lines. @default pretty.isTTY */
  colorize?: boolean;
  /**
   * Most bytes of lines waiting for the disk; beyond it lines are dropped (and counted in a `warn`
   * line once the queue has room again) rather than held in memory without bound.
   * @default 16 MiB
   */
  maxPendingBytes?: number;
}

/** The engine's logger and the file behind it. */
export interface EngineLog {
  readonly logger: Logger;
  /** The log file. */
  readonly file: string;
  /** Resolves when every line logged before the call is written to the file. */
  flush(): Promise<void>;
  /**
   * Flushes and closes the file (idempotent; never rejects). Lines logged afterwards are appended
   * synchronously, so a late line is not lost either.
   */
  close(): Promise<void>;
}

/** An Error as plain data (pino's own serializer works on the `err` key only). */
function errorFields(e: Error): LogMeta {
  const code = (e as { code?: unknown }).code;
  return { type: e.name, message: e.message, ...(code !== undefined ? { code } : {}), stack: e.stack };
}

/** Copies `meta` into `into`, Error values as plain data; `msg` is the message's key and is skipped. */
function addFields(into: LogMeta, meta: LogMeta | undefined): LogMeta {
  if (meta) {
    for (const k of Object.keys(meta)) {
      if (k === 'msg') continue;
      const v = meta[k];
      into[k] = v instanceof Error ? errorFields(v) : v;
    }
  }
  return into;
}

function wrap(p: PinoLogger, threshold: { min: number }): Logger {
  const at = (lvl: LogLevel) => (msg: string, meta?: LogMeta): void => {
    if (LOG_LEVELS[lvl] >= threshold.min) p[lvl](addFields({ msg }, meta));
  };
  return {
    trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'),
    child: (meta) => wrap(p.child(addFields({}, meta)), threshold),
    setLevel: (level) => { threshold.min = LOG_LEVELS[level]; },
  };
}

/**
 * Opens the log file (creating its directory) and returns the logger writing to it.
 * @throws when the directory or file cannot be created (e.g. permissions): the engine cannot start.
 */
export function openEngineLog(opts: EngineLogOptions): EngineLog {
  const path = opts.file;
  const rotation = opts.rotation ?? DEFAULT_LOG_ROTATION;
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  // Created here, synchronously, so that the file exists (0600) as soon as the engine does.
  closeSync(openSync(path, 'a', 0o600));
  const stream: RotatingFileStream = createStream(basename(path), {
    path: dirname(path), size: `${rotation.maxBytes}B`, rotate: rotation.files - 1, mode: 0o600,
  });
  let failed = false;
  stream.on('error', (e: unknown) => {
    // A full disk or a removed directory must not crash the engine: stop writing the file, say so once.
    if (!failed) process.stderr.write(`sqlrs-engine: log file ${path}: ${errorText(e)}; file logging stopped\n`);
    failed = true;
  });
  stream.on('warning', () => { /* e.g. a rotated file vanished meanwhile: nothing to do */ });
  /** `open` → `closing` (lines kept in `late`) → `closed` (lines appended synchronously). */
  let state: 'open' | 'closing' | 'closed' = 'open';
  const late: string[] = [];
  const maxPending = opts.maxPendingBytes ?? 16 * 1024 * 1024;
  let dropped = 0;
  const toFile = (line: string): void => {
    if (stream.writableLength > maxPending) { dropped++; return; }
    if (dropped > 0) {
      stream.write(`${JSON.stringify({ level: 'warn', time: new Date().toISOString(), msg: 'log lines dropped: the disk is slower than the engine logs', dropped })}\n`);
      dropped = 0;
    }
    stream.write(line);
  };
  const appendSync = (s: string): void => {
    try { appendFileSync(path, s, { mode: 0o600 }); } catch { /* as above: never crash on the log */ }
  };
  const prettify = opts.pretty
    ? loadPrettyFactory()({
      colorize: opts.colorize ?? opts.pretty.isTTY === true,
      translateTime: 'SYS:HH:MM:ss.l', singleLine: true, ignore: 'c', messageFormat: '{if c}{c}: {end}{msg}',
      errorLikeObjectKeys: [], // `error` fields are one-line texts here, not stack traces to unfold
    })
    : undefined;
  const destination = {
    write(line: string): void {
      if (state === 'open') { if (!failed) toFile(line); }
      else if (state === 'closing') late.push(line);
      else appendSync(line);
      if (prettify && opts.pretty) opts.pretty.write(prettify(line));
    },
  };
  const root = pino({
    level: 'trace',
    base: null,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    serializers: { err: (v: unknown) => v }, // errors are already plain data (see errorFields)
  }, destination);
  const threshold = { min: LOG_LEVELS[opts.level ?? 'debug'] };
  let closing: Promise<void> | undefined;
  return {
    logger: wrap(root, threshold),
    file: path,
    flush: () => new Promise<void>((resolve) => {
      if (state !== 'open' || failed) { resolve(); return; }
      // A zero-length write is queued behind every earlier line; its callback means they are written.
      stream.write('', () => resolve());
    }),
    close: () => {
      closing ??= (async () => {
        state = 'closing';
        stream.end();
        await finished(stream).catch(() => undefined);
        state = 'closed';
        if (late.length > 0) appendSync(late.splice(0).join(''));
      })();
      return closing;
    },
  };
}
