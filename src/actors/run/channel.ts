/**
 * Live output of run sessions. Each run has one in-process channel, keyed by run id, from the run's
 * work and actor (producers) to its HTTP response (the consumer). Nothing here is persisted: a run's
 * output exists only while its client reads it, and a run without a channel (e.g. after an engine
 * restart) has no client and must not execute anything.
 *
 * The channel is bounded. Output beyond the high-water mark makes {@link RunChannel.output} return a
 * promise that settles once the consumer has drained the buffer below half of the mark; the container
 * runtime stops reading the process's output meanwhile, so a slow client slows the command down
 * instead of growing memory. A producer that ignores this and pushes past the hard limit is cut off
 * ({@link RunChannel.overflowed}, `onOverflow`). When the consumer goes away ({@link RunChannel.cancel})
 * the buffer is dropped, waiting producers are released and {@link RunChannel.signal} aborts.
 */
import type { ApiError } from '../../errors.js';
import { rfc3339Nano } from '../../clock.js';
import type { OutputStream } from '../../workers/protocol.js';
import type { ExecStep } from './args.js';

/** A run stream event (`api.md` §3.12 `RunEvent`, as this engine streams it). */
export type RunEvent =
  | { type: 'log'; ts: string; data: string }
  | { type: 'start'; ts: string; instance_id: string }
  | { type: 'stdout' | 'stderr'; ts: string; data: string }
  | { type: 'exit'; ts: string; exit_code: number }
  | { type: 'error'; ts: string; error: ApiError };

/** Largest `data` of one output event, in UTF-8 bytes. */
export const MAX_EVENT_DATA_BYTES = 16 * 1024;
/**
 * Largest JSON-escaped `data` of one output event, in bytes: control characters escape to six
 * bytes, and clients read lines of at most 64 KiB.
 */
export const MAX_EVENT_JSON_BYTES = 48 * 1024;

/**
 * Splits output into pieces of at most `maxBytes` UTF-8 bytes (and {@link MAX_EVENT_JSON_BYTES}
 * once JSON-escaped), cutting after the last line end inside a piece when there is one and never
 * inside a surrogate pair. Joining the pieces gives `text` back.
 */
export function splitOutput(text: string, maxBytes: number = MAX_EVENT_DATA_BYTES): string[] {
  if (text.length * 3 <= maxBytes && text.length * 6 <= MAX_EVENT_JSON_BYTES) return text === '' ? [] : [text];
  const out: string[] = [];
  let start = 0;
  while (start < text.length) {
    let bytes = 0;
    let json = 0;
    let i = start;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      let units = 1;
      let b: number;
      let j: number;
      if (c < 0x80) {
        b = 1;
        j = c === 0x22 || c === 0x5c || c === 0x0a || c === 0x0d || c === 0x09 || c === 0x08 || c === 0x0c ? 2 : c < 0x20 ? 6 : 1;
      } else if (c < 0x800) {
        b = 2; j = 2;
      } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
        b = 4; j = 4; units = 2;
      } else if (c >= 0xd800 && c <= 0xdfff) {
        b = 3; j = 6; // a lone surrogate: U+FFFD in UTF-8, `\uXXXX` in JSON
      } else {
        b = 3; j = 3;
      }
      if ((bytes + b > maxBytes || json + j > MAX_EVENT_JSON_BYTES) && i > start) break;
      bytes += b;
      json += j;
      i += units;
    }
    let cut = i;
    if (i < text.length) {
      const nl = text.lastIndexOf('\n', i - 1);
      if (nl >= start) cut = nl + 1;
    }
    out.push(text.slice(start, cut));
    start = cut;
  }
  return out;
}

/** What a run executes, kept in memory only (stdin texts can be large and are never persisted). */
export interface RunInput {
  instanceId: string;
  steps: ExecStep[];
}

export interface RunChannelOptions {
  /** Buffered characters above which producers are asked to wait. @default 1 MiB */
  highWaterChars?: number;
  /** Buffered characters beyond which output is refused and the run is cut off. @default 16 MiB */
  maxChars?: number;
}

function sizeOf(e: RunEvent): number {
  return 'data' in e ? e.data.length + 64 : 128;
}

/** One run's bounded event queue (single consumer). */
export class RunChannel {
  /** Called once when a producer pushed past the hard limit. */
  onOverflow: (() => void) | undefined;
  /** Called with every event the channel accepts (the run's watchers; see `watch.ts`). */
  onEvent: ((e: RunEvent) => void) | undefined;
  private readonly queue: RunEvent[] = [];
  private head = 0;
  private buffered = 0;
  private ended = false;
  private over = false;
  private consumerWaiter: (() => void) | undefined;
  private producerWaiters: (() => void)[] = [];
  private readonly ac = new AbortController();
  private readonly highWater: number;
  private readonly maxChars: number;

  constructor(readonly runId: string, readonly input: RunInput, opts: RunChannelOptions = {}) {
    this.highWater = opts.highWaterChars ?? 1024 * 1024;
    this.maxChars = opts.maxChars ?? 16 * 1024 * 1024;
  }

  /** Aborted when the consumer has gone away. */
  get signal(): AbortSignal { return this.ac.signal; }
  get cancelled(): boolean { return this.ac.signal.aborted; }
  /** True once the terminal event (`exit` / `error`) has been queued. */
  get finished(): boolean { return this.ended; }
  /** True when a producer pushed past the hard limit. */
  get overflowed(): boolean { return this.over; }
  /** Characters currently buffered. */
  get size(): number { return this.buffered; }

  private enqueue(e: RunEvent): void {
    this.onEvent?.(e);
    this.queue.push(e);
    this.buffered += sizeOf(e);
    const w = this.consumerWaiter;
    this.consumerWaiter = undefined;
    w?.();
  }

  private accepting(): boolean { return !this.ended && !this.cancelled; }

  /** Queues a control event (`log`, `start`). Ignored once finished or cancelled. */
  push(e: RunEvent): void {
    if (this.accepting()) this.enqueue(e);
  }

  /**
   * Queues process output as `stdout`/`stderr` events of at most {@link MAX_EVENT_DATA_BYTES}.
   * Returns a promise while the buffer is above the high-water mark; it settles when the consumer
   * has caught up or gone away.
   */
  output(stream: OutputStream, text: string): void | Promise<void> {
    if (!this.accepting() || this.over || text === '') return undefined;
    if (this.buffered + text.length > this.maxChars) {
      this.over = true;
      this.onOverflow?.();
      return undefined;
    }
    for (const data of splitOutput(text)) this.enqueue({ type: stream, ts: rfc3339Nano(), data });
    if (this.buffered <= this.highWater) return undefined;
    return new Promise<void>((resolve) => this.producerWaiters.push(resolve));
  }

  /** Queues the terminal event; nothing is accepted after it. */
  finish(e: RunEvent): void {
    if (!this.accepting()) return;
    this.enqueue(e);
    this.ended = true;
  }

  private releaseProducers(): void {
    const ws = this.producerWaiters;
    this.producerWaiters = [];
    for (const w of ws) w();
  }

  /**
   * Takes the buffered events (at least one, about `maxChars` at most), waiting for one if needed.
   * Resolves with `[]` once the channel has finished and is drained, or was cancelled.
   */
  async take(maxChars = 256 * 1024): Promise<RunEvent[]> {
    while (this.head >= this.queue.length) {
      if (this.ended || this.cancelled) return [];
      await new Promise<void>((resolve) => { this.consumerWaiter = resolve; });
    }
    const out: RunEvent[] = [];
    let chars = 0;
    while (this.head < this.queue.length && (out.length === 0 || chars < maxChars)) {
      const e = this.queue[this.head++] as RunEvent;
      const n = sizeOf(e);
      chars += n;
      this.buffered -= n;
      out.push(e);
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    if (this.buffered <= this.highWater / 2) this.releaseProducers();
    return out;
  }

  /** The consumer is gone: drops the buffer, releases producers, aborts {@link signal}. Idempotent. */
  cancel(): void {
    if (this.cancelled) return;
    this.queue.length = 0;
    this.head = 0;
    this.buffered = 0;
    this.ac.abort();
    this.releaseProducers();
    const w = this.consumerWaiter;
    this.consumerWaiter = undefined;
    w?.();
  }
}

/** The channels of the runs currently streaming, by run id. */
export class RunChannels {
  private readonly byRun = new Map<string, RunChannel>();

  constructor(private readonly opts: RunChannelOptions = {}) {}

  open(runId: string, input: RunInput): RunChannel {
    const ch = new RunChannel(runId, input, this.opts);
    this.byRun.set(runId, ch);
    return ch;
  }

  get(runId: string): RunChannel | undefined { return this.byRun.get(runId); }

  /** Forgets a channel; one whose run has not finished is cancelled (its client is gone). */
  close(runId: string): void {
    const ch = this.byRun.get(runId);
    if (!ch) return;
    this.byRun.delete(runId);
    if (!ch.finished) ch.cancel();
  }

  /** Open channels. */
  get size(): number { return this.byRun.size; }

  /** Runs currently streaming against an instance. */
  activeOn(instanceId: string): number {
    let n = 0;
    for (const ch of this.byRun.values()) if (ch.input.instanceId === instanceId) n++;
    return n;
  }

  /** Cancels and forgets every channel (engine shutdown). */
  closeAll(): void {
    for (const id of [...this.byRun.keys()]) this.close(id);
  }
}
