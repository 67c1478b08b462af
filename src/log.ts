/**
 * Logging contract. Every component receives a {@link Logger}; nothing imports a global one and
 * nothing in `src` writes to the console directly.
 *
 * This kernel file holds only the contract and two package-free loggers: {@link nullLogger} and
 * {@link createLogger} (lines to a callback, for tests and child-process fixtures). The engine's
 * own logger — JSON lines, asynchronous writes, rotation, human-readable terminal output — is
 * built from packages in `logging.ts`, which only the composition root imports.
 */

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
  /** Changes the minimum level (shared with children, including those made before the change). */
  setLevel(level: LogLevel): void;
}

/** Levels in increasing severity; a logger at level L drops lines below `LOG_LEVELS[L]`. */
export const LOG_LEVELS: Readonly<Record<LogLevel, number>> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };

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

/**
 * Creates a logger writing `ts LEVEL msg k=v…` lines to `sink`, synchronously. For tests and
 * child-process fixtures that want to look at lines without files or packages; the engine uses
 * `logging.ts`.
 */
export function createLogger(sink: LogSink, level: LogLevel = 'debug', base: LogMeta = {}): Logger {
  const shared = { level: LOG_LEVELS[level] };
  const make = (meta: LogMeta): Logger => {
    const emit = (lvl: LogLevel, msg: string, m?: LogMeta): void => {
      if (LOG_LEVELS[lvl] < shared.level) return;
      sink(`${new Date().toISOString()} ${lvl.toUpperCase()} ${msg}${fmtMeta({ ...meta, ...m })}\n`);
    };
    return {
      trace: (m, x) => emit('trace', m, x),
      debug: (m, x) => emit('debug', m, x),
      info: (m, x) => emit('info', m, x),
      warn: (m, x) => emit('warn', m, x),
      error: (m, x) => emit('error', m, x),
      child: (m) => make({ ...meta, ...m }),
      setLevel: (l) => { shared.level = LOG_LEVELS[l]; },
    };
  };
  return make(base);
}

/** A logger that discards everything (tests). */
export const nullLogger: Logger = createLogger(() => {}, 'error');
