/** Injected time source so that timer-driven logic can be tested without sleeping. */
export interface Clock {
  now(): number;
  /**
   * Calls `fn` after `ms`. Real timers never keep the process alive on their own, unless
   * `keepAlive` is set (a wait the process must not exit during, such as a shutdown grace period).
   */
  setTimeout(fn: () => void, ms: number, opts?: { keepAlive?: boolean }): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms, opts) => {
    const t = setTimeout(fn, ms);
    if (opts?.keepAlive !== true) t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** A manually advanced clock for tests. */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  constructor(start = 0) { this.t = start; }
  now(): number { return this.t; }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void { this.timers.delete(h as number); }
  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

/**
 * RFC 3339 UTC timestamp with nanosecond precision and trailing zeros trimmed (Go `time.RFC3339Nano`).
 * Millisecond clocks are extended with a per-process monotonic sub-millisecond counter so that
 * timestamps taken in the same millisecond still sort.
 */
let lastMs = 0;
let subNs = 0;
export function rfc3339Nano(ms: number = Date.now()): string {
  if (ms === lastMs) subNs = (subNs + 1) % 1_000_000; else { lastMs = ms; subNs = 0; }
  const iso = new Date(ms).toISOString(); // 2026-03-09T12:00:00.123Z
  const base = iso.slice(0, 19);
  const frac = (iso.slice(20, 23) + String(subNs).padStart(6, '0')).replace(/0+$/, '');
  return frac ? `${base}.${frac}Z` : `${base}Z`;
}
