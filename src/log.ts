/**
 * Logging contract. Every component receives a {@link Logger}; nothing imports a global one and
 * nothing in `src` writes to the console directly.
 */
import { appendFileSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';
export type LogMeta = Record<string, unknown>;

export interface Logger {
  trace(msg: string, meta?: LogMeta): void;
  debug(msg: string, meta?: LogMeta): void;
  info(msg: string, meta?: LogMeta): void;
  warn(msg: string, meta?: LogMeta): void;
  error(msg: string, meta?: LogMeta): void;
  /** A logger that adds `meta` to every line. */
  child(meta: LogMeta): Logger;
  /** Changes the minimum level (shared with children). */
  setLevel(level: LogLevel): void;
}

const ORDER: Record<LogLevel, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };

function fmtMeta(meta: LogMeta): string {
  let s = '';
  for (const [k, v] of Object.entries(meta)) {
    if (v === undefined) continue;
    const t = typeof v === 'string' ? v : v instanceof Error ? v.message : JSON.stringify(v);
    s += ` ${k}=${/[\s"=]/.test(t) ? JSON.stringify(t) : t}`;
  }
  return s;
}

/** A sink receives fully formatted lines. */
export type LogSink = (line: string) => void;

/** Creates a logger writing `ts level msg k=v…` lines to `sink`. */
export function createLogger(sink: LogSink, level: LogLevel = 'debug', base: LogMeta = {}): Logger {
  const shared = { level: ORDER[level] };
  const make = (meta: LogMeta): Logger => {
    const emit = (lvl: LogLevel, msg: string, m?: LogMeta): void => {
      if (ORDER[lvl] < shared.level) return;
      sink(`${new Date().toISOString()} ${lvl.toUpperCase()} ${msg}${fmtMeta({ ...meta, ...m })}\n`);
    };
    return {
      trace: (m, x) => emit('trace', m, x),
      debug: (m, x) => emit('debug', m, x),
      info: (m, x) => emit('info', m, x),
      warn: (m, x) => emit('warn', m, x),
      error: (m, x) => emit('error', m, x),
      child: (m) => make({ ...meta, ...m }),
      setLevel: (l) => { shared.level = ORDER[l]; },
    };
  };
  return make(base);
}

/** A sink appending to a file (dir 0700, file 0600), optionally tee'd to stderr. */
export function fileSink(path: string, teeStderr: boolean): LogSink {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, 'a', 0o600));
  return (line) => {
    try { appendFileSync(path, line); } catch { /* a full disk must not crash the engine */ }
    if (teeStderr) process.stderr.write(line);
  };
}

/** A logger that discards everything (tests). */
export const nullLogger: Logger = createLogger(() => {}, 'error');
