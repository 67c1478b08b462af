/**
 * Command-line flags, parsed with Go `flag` package semantics (`-x v`, `--x v`, `--x=v`), as the
 * sqlrs CLI passes them. Usage errors exit with code 2.
 */
import { UsageError } from './errors.js';
import { parseGoDuration } from './config/duration.js';

export interface EngineFlags {
  listen: string;
  writeEngineJson: string;
  runDir: string;
  /** Idle shutdown after this many ms without activity; 0 disables. */
  idleTimeoutMs: number;
  version: string;
}

const VALUE_FLAGS = new Set(['listen', 'write-engine-json', 'run-dir', 'idle-timeout', 'version']);

export const USAGE = `Usage of sqlrs-engine:
  -idle-timeout duration
    \tshut down after this long without activity (0 disables) (default 30s)
  -listen string
    \taddress to listen on, host:port (required)
  -run-dir string
    \truntime directory (created if missing)
  -version string
    \tengine version reported by /v1/health (default "dev")
  -write-engine-json string
    \tpath of the engine.json discovery file (required)
`;

export function parseFlags(argv: string[]): EngineFlags | 'help' {
  const vals = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--') break;
    if (!a.startsWith('-') || a === '-') throw new UsageError(`unexpected argument: ${a}`);
    let name = a.replace(/^--?/, '');
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) { value = name.slice(eq + 1); name = name.slice(0, eq); }
    if (name === 'h' || name === 'help') return 'help';
    if (!VALUE_FLAGS.has(name)) throw new UsageError(`flag provided but not defined: -${name}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: -${name}`);
      value = argv[++i] ?? '';
    }
    vals.set(name, value);
  }
  const listen = vals.get('listen') ?? '';
  if (listen === '') throw new UsageError('missing --listen');
  const writeEngineJson = vals.get('write-engine-json') ?? '';
  if (writeEngineJson === '') throw new UsageError('missing --write-engine-json');
  const idleRaw = vals.get('idle-timeout') ?? '30s';
  const idle = parseGoDuration(idleRaw);
  if (idle === undefined) throw new UsageError(`invalid value "${idleRaw}" for flag -idle-timeout: parse error`);
  if (idle < 0) throw new UsageError(`invalid value "${idleRaw}" for flag -idle-timeout: must not be negative`);
  return { listen, writeEngineJson, runDir: vals.get('run-dir') ?? '', idleTimeoutMs: idle, version: vals.get('version') ?? 'dev' };
}

/** Splits `host:port` (IPv6 in brackets allowed); port 0 means "any". */
export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(addr) ?? /^([^:]*):(\d+)$/.exec(addr);
  if (!m) throw new UsageError(`invalid --listen address ${JSON.stringify(addr)}: expected host:port`);
  const port = Number(m[2]);
  if (port > 65535) throw new UsageError(`invalid --listen port ${m[2]}`);
  return { host: m[1] === '' ? '127.0.0.1' : (m[1] ?? '127.0.0.1'), port };
}
