/**
 * Commands inside containers: `docker exec` with output demultiplexed and decoded as it arrives,
 * backpressure from the consumer, stdin, and abort that kills the command and everything it
 * started (found by a marker in their environment: from the host's /proc when visible, else by a
 * sweep inside the container).
 */
import { readFile, readdir } from 'node:fs/promises';
import type { Duplex, Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type Docker from 'dockerode';
import { delay, throwIfAborted } from '../../abort.js';
import { CancelledError } from '../../errors.js';
import { appendTail, type ExecRequest, type ExecResult, type OutputSink, type OutputStream } from '../protocol.js';
import { client, hostKillEnabled, logSafe, messageOf } from './client.js';

/** Environment marker put on every exec so an aborted one can be found (with its children). */
const MARKER_ENV = 'SQLRS_EXEC_ID';
/**
 * Output chunks handed to the consumer and not yet acknowledged; at this many the exec's stream is
 * paused (the process then blocks on a full pipe) until the consumer catches up.
 */
const MAX_UNACKED_CHUNKS = 8;

/** Kills (inside the container) every process whose environment holds the marker `$1`. */
const SWEEP_SCRIPT =
  'for p in /proc/[0-9]*; do ' +
  'if grep -qzx "$1" "$p/environ" 2>/dev/null; then kill -KILL "${p#/proc/}" 2>/dev/null || :; fi; ' +
  'done; exit 0';

let execSeq = 0;

/**
 * Splits Docker's multiplexed stream (8-byte header: type, 0, 0, 0, big-endian length) into
 * frames as they arrive. Type 2 is stderr; 0 and 1 are stdout.
 */
export function demux(stream: Readable, onFrame: (s: OutputStream, data: Buffer) => void): void {
  let pending: Buffer = Buffer.alloc(0);
  stream.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 8) {
      const type = pending[0];
      const len = pending.readUInt32BE(4);
      if (pending.length < 8 + len) break;
      const payload = pending.subarray(8, 8 + len);
      pending = pending.subarray(8 + len);
      if (payload.length > 0) onFrame(type === 2 ? 'stderr' : 'stdout', payload);
    }
  });
}

/** Decodes a buffered multiplexed log (container logs without follow). */
export function demuxBuffer(buf: Buffer): string {
  let out = '';
  let i = 0;
  // A TTY-less container's logs are framed; anything else is returned as-is.
  if (buf.length >= 8 && (buf[0] === 1 || buf[0] === 2) && buf[1] === 0 && buf[2] === 0 && buf[3] === 0) {
    while (i + 8 <= buf.length) {
      const len = buf.readUInt32BE(i + 4);
      out += buf.subarray(i + 8, i + 8 + len).toString('utf8');
      i += 8 + len;
    }
    return out;
  }
  return buf.toString('utf8');
}

/** Options of {@link runExec}. */
export interface RunExecOptions {
  user: string;
  env?: string[] | undefined;
  workdir?: string | undefined;
  stdin?: string | undefined;
  signal?: AbortSignal | undefined;
  /** Streams decoded chunks; the returned promise (if any) is awaited before the exec returns. */
  onOutput?: OutputSink | undefined;
  /** Collects the combined output (a capped tail). */
  collect?: boolean;
  /** False for the sweep exec itself (it must not carry the marker it looks for). */
  mark?: boolean;
}

/** Exit code and, when collected, the capped tail of the combined output. */
export interface RunExecResult { exitCode: number; output: string }

/**
 * Runs `cmd` in a container and waits for it to end.
 * @throws CancelledError when `signal` aborts (the command and its children are killed first)
 */
export async function runExec(containerId: string, cmd: string[], opts: RunExecOptions): Promise<RunExecResult> {
  const { signal } = opts;
  throwIfAborted(signal, 'exec');
  const container = client().getContainer(containerId);
  const hasStdin = opts.stdin !== undefined;
  const marker = `${MARKER_ENV}=${process.pid}-${++execSeq}-${Date.now().toString(36)}`;
  const env = [...(opts.env ?? [])];
  if (opts.mark !== false) env.push(marker);
  const exec = await container.exec({
    Cmd: cmd,
    User: opts.user,
    Env: env,
    ...(opts.workdir !== undefined ? { WorkingDir: opts.workdir } : {}),
    AttachStdin: hasStdin,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
  });
  const stream: Duplex = await exec.start({ hijack: true, stdin: hasStdin });

  let collected = '';
  const deliveries = new Set<Promise<unknown>>();
  const decoders: Record<OutputStream, StringDecoder> = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  const emit = (s: OutputStream, text: string): void => {
    if (text === '') return;
    if (opts.collect) collected = appendTail(collected, text);
    if (opts.onOutput) {
      let r: unknown;
      try {
        r = opts.onOutput(s, text);
      } catch {
        return; // a failing consumer must not break the exec
      }
      if (r instanceof Promise) {
        const p: Promise<unknown> = r.catch(() => undefined).finally(() => {
          deliveries.delete(p);
          if (deliveries.size < MAX_UNACKED_CHUNKS && stream.isPaused() && !stream.destroyed) stream.resume();
        });
        deliveries.add(p);
        if (deliveries.size >= MAX_UNACKED_CHUNKS && !stream.isPaused()) stream.pause();
      }
    }
  };

  const ended = new Promise<void>((resolve, reject) => {
    stream.once('end', () => resolve());
    stream.once('close', () => resolve());
    stream.on('error', (e: unknown) => (signal?.aborted ? resolve() : reject(e)));
  });
  demux(stream, (s, data) => emit(s, decoders[s].write(data)));

  let killing: Promise<void> | undefined;
  const onAbort = (): void => {
    killing ??= killExec(containerId, opts.user, marker).finally(() => {
      stream.destroy();
    });
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (signal?.aborted) onAbort();
    if (hasStdin) {
      stream.write(opts.stdin ?? '');
      stream.end();
    }
    await ended;
    emit('stdout', decoders.stdout.end());
    emit('stderr', decoders.stderr.end());
    await Promise.allSettled([...deliveries]);
    if (signal?.aborted) {
      onAbort();
      await killing;
      throw new CancelledError('exec cancelled', { details: cmd.join(' '), cause: signal.reason });
    }
    const exitCode = await exitCodeOf(exec);
    return { exitCode, output: collected };
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!stream.destroyed) stream.destroy();
  }
}

/** Runs an {@link ExecRequest} for the runtime API, streaming its output to `onOutput`. */
export async function execStreaming(req: ExecRequest, onOutput: OutputSink, signal: AbortSignal): Promise<ExecResult> {
  const r = await runExec(req.containerId, req.cmd, {
    user: req.user,
    env: req.env,
    workdir: req.workdir,
    stdin: req.stdin,
    signal,
    onOutput,
  });
  return { exitCode: r.exitCode };
}

/** Exec inspect may still report Running for a moment after the stream ends. */
async function exitCodeOf(exec: Docker.Exec): Promise<number> {
  for (let i = 0; ; i++) {
    const info = await exec.inspect();
    if (!info.Running || i >= 200) return info.ExitCode ?? -1;
    await delay(10);
  }
}

/**
 * Kills an exec'd process and everything it started. Every exec carries a unique marker in its
 * environment, inherited by its children:
 * 1. when the daemon shares our pid namespace (local daemon), the processes carrying the marker
 *    are found in /proc and killed from here — a pid is only ever killed after its environment
 *    proved it is ours;
 * 2. otherwise (remote or rootless daemon) a sweep runs inside the container as the exec's user
 *    (reading another user's environment needs a capability containers do not have).
 */
async function killExec(containerId: string, user: string, marker: string): Promise<void> {
  let killed = 0;
  try {
    // Repeat while something was killed: a process may fork while a pass is under way.
    for (let pass = 0, n = -1; hostKillEnabled() && pass < 3 && n !== 0; pass++) {
      n = await hostSweep(marker);
      killed += n;
    }
  } catch (e) {
    logSafe('debug', 'host-side exec kill failed', { error: messageOf(e) });
  }
  if (killed > 0) return;
  try {
    await runExec(containerId, ['sh', '-c', SWEEP_SCRIPT, 'sh', marker], { user, mark: false });
  } catch (e) {
    logSafe('warn', 'exec kill inside the container failed', { container: containerId, error: messageOf(e) });
  }
}

/** Kills every process visible in /proc whose environment holds `marker`; returns how many. */
async function hostSweep(marker: string): Promise<number> {
  if (process.platform !== 'linux') return 0;
  const needle = Buffer.from(`\0${marker}\0`, 'latin1');
  const head = Buffer.from(`${marker}\0`, 'latin1');
  let killed = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let env: Buffer;
    try {
      env = await readFile(`/proc/${entry}/environ`);
    } catch {
      continue; // gone, or not ours to read
    }
    if (env.indexOf(needle) < 0 && !env.subarray(0, head.length).equals(head)) continue;
    try {
      process.kill(pid, 'SIGKILL');
      killed++;
    } catch {
      /* already gone */
    }
  }
  return killed;
}
