/**
 * The actor runtime shared by every actor kind (prepare jobs, run sessions, deletions).
 *
 * - Each actor reads its persistent mailbox one message at a time.
 * - A behaviour's `transition(state, message)` is pure: it returns the new state plus effects.
 *   The runtime commits, in ONE SQLite transaction: the message ack, the actor's new state, the
 *   actor's domain effects (projections such as job rows and events), the work it asked for
 *   (outbox rows) and the messages it sends. A crash before the commit redelivers the message;
 *   after it, nothing is lost and nothing is applied twice.
 * - Work (slow, async: containers, snapshots) runs outside transactions. Its result comes back to
 *   the actor as a `$work` message committed together with removal of the outbox row. On restart
 *   every outbox row is dispatched again; work must therefore be idempotent (redone or found done).
 * - A supervisor retries a message whose handler throws (with backoff through the injected clock)
 *   and, after `maxAttempts`, moves the actor to `failed`, recording why, via `onFailure`.
 *
 * Lifecycle (see {@link SystemStatus}): `created → running → draining → stopped`.
 * - `created`: logics may be registered; `send` enqueues (persisted) but nothing is processed.
 * - `running`: messages are processed and work runs.
 * - `draining` (`close(graceMs)`): no new messages are accepted; running work may finish within
 *   the grace period, then it is aborted. Its outbox rows stay, so it is redone after a restart.
 * - `stopped`: nothing runs; `send` throws `ENGINE_CLOSED`. `destroy()` reaches it at once,
 *   aborting all running work without a grace period.
 * Time (retries, sweeps, timers, the drain slice, the grace period) comes only from the injected
 * clock.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../../clock.js';
import type { Logger } from '../../log.js';
import type { ActorId, MessageId } from '../../ids.js';
import type { ActorLogic, SystemMessage, Transition, TransitionContext } from './logic.js';
import type { Mailbox, Envelope } from '../../mailbox/mailbox.js';
import { CancelledError, ClosedError, IllegalStateError, errorText, serializeError } from '../../errors.js';

// The registry holds behaviours of different type parameters; they are only ever called with
// values of their own kind, which the actor id prefix guarantees.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyBehavior = ActorLogic<any, any, any, any>;

/** The actor system's lifecycle states, in order. */
export type SystemStatus = 'created' | 'running' | 'draining' | 'stopped';

/** Longest stretch of message handling before the runtime yields to the event loop. */
const DRAIN_SLICE_MS = 20;

export interface SystemOptions {
  /** Attempts per message before the actor is failed. @default 3 */
  maxAttempts?: number;
  /** First retry delay, doubled per attempt. @default 100 */
  retryBaseMs?: number;
  /** Lease sweep interval. @default 10000 */
  sweepMs?: number;
  /**
   * Work items executing at once; more wait in FIFO order (their outbox rows are persisted, so
   * waiting work survives a crash). Bounds container and snapshot load under bursts of jobs.
   * @default 16
   */
  maxConcurrentWork?: number;
}

export class ActorSystem {
  private status: SystemStatus = 'created';
  private readonly behaviors = new Map<string, AnyBehavior>();
  private readonly ready = new Set<ActorId>();
  private draining = false;
  private scheduled = false;
  private readonly running = new Map<string, { ctrl: AbortController; done: Promise<void>; actorId: ActorId }>();
  private readonly retryTimers = new Map<ActorId, unknown>();
  private sweepTimer: unknown;
  private readonly maxAttempts: number;
  private readonly retryBaseMs: number;
  private readonly sweepMs: number;
  private idleWaiters: (() => void)[] = [];
  private readonly maxWork: number;
  private activeWorkSlots = 0;
  private slotWaiters: (() => void)[] = [];

  constructor(
    private readonly mailbox: Mailbox,
    private readonly clock: Clock,
    private readonly log: Logger,
    opts: SystemOptions = {},
  ) {
    this.maxAttempts = opts.maxAttempts ?? 3;
    this.retryBaseMs = opts.retryBaseMs ?? 100;
    this.sweepMs = opts.sweepMs ?? 10_000;
    this.maxWork = opts.maxConcurrentWork ?? 16;
  }

  /** Waits for a work slot; rejects if `signal` aborts first. */
  private acquireSlot(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason instanceof Error ? signal.reason : new CancelledError('task cancelled'));
    if (this.activeWorkSlots < this.maxWork) { this.activeWorkSlots++; return Promise.resolve(); }
    return new Promise((resolve, reject) => {
      const granted = (): void => { signal.removeEventListener('abort', onAbort); resolve(); };
      const onAbort = (): void => {
        this.slotWaiters = this.slotWaiters.filter((f) => f !== granted);
        reject(signal.reason instanceof Error ? signal.reason : new CancelledError('task cancelled'));
      };
      this.slotWaiters.push(granted);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Hands the slot to the next waiter, or frees it. */
  private releaseSlot(): void {
    const next = this.slotWaiters.shift();
    if (next) next(); else this.activeWorkSlots--;
  }

  get state(): SystemStatus { return this.status; }

  private setStatus(s: SystemStatus): void {
    this.log.debug('actor runtime status', { from: this.status, to: s });
    this.status = s;
  }

  /** Registers an actor kind. Must happen before {@link start}. */
  register(b: AnyBehavior): void {
    if (this.status !== 'created') throw new IllegalStateError('register after start');
    this.behaviors.set(b.kind, b);
  }

  /**
   * Starts processing: releases stale leases, redispatches outbox work, schedules actors with mail.
   */
  start(): void {
    if (this.status !== 'created') throw new IllegalStateError(`start in status ${this.status}`);
    this.setStatus('running');
    const released = this.mailbox.releaseAllLeases();
    if (released > 0) this.log.info('released message leases from a previous run', { count: released });
    for (const w of this.mailbox.pendingWork()) {
      this.log.info('redispatching work from a previous run', { actor: w.actorId, work: w.workId });
      this.dispatch(w.actorId, w.workId, w.spec);
    }
    for (const a of this.mailbox.actorsWithMail()) this.schedule(a);
    this.armSweep();
  }

  private armSweep(): void {
    this.sweepTimer = this.clock.setTimeout(() => {
      if (this.status !== 'running') return;
      const n = this.mailbox.sweep();
      if (n > 0) {
        this.log.warn('returned expired message leases', { count: n });
        for (const a of this.mailbox.actorsWithMail()) this.schedule(a);
      }
      this.armSweep();
    }, this.sweepMs);
  }

  /**
   * Sends a message (committed immediately). Call inside `mailbox.tx` to make it atomic with
   * other writes; the actor is scheduled either way.
   * @throws MailboxFullError, ClosedError
   */
  send(to: ActorId, msg: unknown): MessageId {
    if (this.status === 'stopped' || this.status === 'draining') throw new ClosedError('actor runtime');
    const id = this.mailbox.enqueue(to, msg);
    this.schedule(to);
    return id;
  }

  /** Number of work items currently executing. */
  get activeWork(): number { return this.running.size; }

  /** True when the actor has running work. */
  hasRunningWork(actorId: ActorId): boolean {
    for (const r of this.running.values()) if (r.actorId === actorId) return true;
    return false;
  }

  schedule(actorId: ActorId): void {
    if (this.status !== 'running') return;
    this.ready.add(actorId);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => { this.scheduled = false; this.drain(); });
    }
  }

  /** Resolves when no actor has a deliverable message (tests, shutdown). */
  whenIdle(): Promise<void> {
    if (this.ready.size === 0 && !this.scheduled) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    // Handle messages for at most one slice, then yield to the event loop (HTTP, timers, work
    // results) and continue in a later turn: a long backlog must not starve everything else.
    const sliceEnd = this.clock.now() + DRAIN_SLICE_MS;
    try {
      // Round-robin one message per actor per pass, for fairness.
      while (this.ready.size > 0 && this.status === 'running') {
        if (this.clock.now() >= sliceEnd) {
          if (!this.scheduled) {
            this.scheduled = true;
            setImmediate(() => { this.scheduled = false; this.drain(); });
          }
          return;
        }
        for (const actorId of [...this.ready]) {
          const env = this.mailbox.claimNext(actorId);
          if (!env) {
            this.ready.delete(actorId);
            const delay = this.mailbox.headDelay(actorId);
            if (delay !== undefined && delay > 0) this.retryLater(actorId, delay);
            continue;
          }
          this.process(env);
        }
      }
    } finally {
      this.draining = false;
    }
    if (this.ready.size === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }

  private retryLater(actorId: ActorId, ms: number): void {
    if (this.retryTimers.has(actorId)) return;
    this.retryTimers.set(actorId, this.clock.setTimeout(() => {
      this.retryTimers.delete(actorId);
      this.schedule(actorId);
    }, ms));
  }

  private behaviorFor(actorId: ActorId): AnyBehavior | undefined {
    const kind = actorId.slice(0, actorId.indexOf(':'));
    return this.behaviors.get(kind);
  }

  private ctxFor(env: Envelope): TransitionContext {
    return { now: this.clock.now(), messageId: env.id, actorId: env.actorId, newId: () => randomBytes(8).toString('hex') };
  }

  private process(env: Envelope): void {
    const b = this.behaviorFor(env.actorId);
    if (!b) {
      this.log.error('message for unknown actor kind', { actor: env.actorId });
      this.mailbox.deadLetter(env, 'unknown actor kind');
      return;
    }
    const row = this.mailbox.getActor(env.actorId);
    if (row?.status === 'failed') {
      this.mailbox.deadLetter(env, `actor failed: ${row.failure ?? ''}`);
      return;
    }
    const ctx = this.ctxFor(env);
    let state: unknown;
    try {
      state = row ? b.restore(row.state) : undefined;
      const tr = b.transition(state, env.payload, ctx);
      this.commit(b, env, tr, ctx, 'active');
    } catch (e) {
      this.supervise(b, env, state, e, ctx);
    }
  }

  private commit(b: AnyBehavior, env: Envelope | undefined, tr: Transition<unknown, unknown, unknown>, ctx: TransitionContext, forced: 'active' | 'failed', failure?: string): void {
    const domain = tr.domain ?? [];
    this.mailbox.tx(() => {
      if (env) this.mailbox.ack(env);
      for (const d of domain) b.apply(d, ctx);
      const status = forced === 'failed' ? 'failed' : b.isTerminal(tr.state) ? 'done' : 'active';
      this.mailbox.putActor({ actorId: ctx.actorId, kind: b.kind, status, state: b.persist(tr.state), failure: failure ?? null });
      for (const w of tr.work ?? []) this.mailbox.addWork({ workId: w.workId, actorId: ctx.actorId, spec: w.spec });
      for (const s of tr.send ?? []) this.mailbox.enqueue(s.to, s.msg);
    });
    // After commit: notify, start work, abort work, schedule recipients, arm timers.
    try { b.committed?.(ctx.actorId, domain); } catch (e) { this.log.error('commit listener failed', { error: errorText(e) }); }
    for (const w of tr.work ?? []) this.dispatch(ctx.actorId, w.workId, w.spec);
    for (const id of tr.abort ?? []) this.running.get(id)?.ctrl.abort(new CancelledError('task cancelled'));
    for (const s of tr.send ?? []) this.schedule(s.to);
    for (const t of tr.timers ?? []) {
      this.clock.setTimeout(() => {
        if (this.status !== 'running') return;
        try { this.send(ctx.actorId, { type: '$timer', name: t.name }); } catch (e) { this.log.warn('timer delivery failed', { error: errorText(e) }); }
      }, t.ms);
    }
  }

  private supervise(b: AnyBehavior, env: Envelope, state: unknown, e: unknown, ctx: TransitionContext): void {
    const text = errorText(e);
    if (env.attempts < this.maxAttempts) {
      const delay = this.retryBaseMs * 2 ** (env.attempts - 1);
      this.log.warn('actor handler failed; retrying', { actor: env.actorId, message: env.id, attempt: env.attempts, error: text });
      this.mailbox.nack(env, delay);
      this.retryLater(env.actorId, delay);
      return;
    }
    this.log.error('actor handler failed; failing actor', { actor: env.actorId, message: env.id, error: text });
    try {
      const tr = b.onFailure(state, e, ctx);
      this.commit(b, env, tr, ctx, 'failed', text);
    } catch (e2) {
      this.log.error('actor failure handler failed', { actor: env.actorId, error: errorText(e2) });
      this.mailbox.tx(() => {
        this.mailbox.deadLetter(env, text);
        this.mailbox.putActor({ actorId: env.actorId, kind: b.kind, status: 'failed', state: state ?? null, failure: `${text}; ${errorText(e2)}` });
      });
    }
  }

  private dispatch(actorId: ActorId, workId: string, spec: unknown): void {
    const b = this.behaviorFor(actorId);
    if (!b || this.running.has(workId)) return;
    const ctrl = new AbortController();
    const done = (async () => {
      let msg: SystemMessage;
      try {
        await this.acquireSlot(ctrl.signal);
        let result: unknown;
        try {
          result = await b.perform(spec, ctrl.signal, actorId);
        } finally {
          this.releaseSlot();
        }
        msg = { type: '$work', workId, ok: true, result };
      } catch (e) {
        msg = { type: '$work', workId, ok: false, error: serializeError(e) };
      }
      if (this.status === 'stopped') return; // outbox row stays: redone after restart
      try {
        this.mailbox.tx(() => {
          this.mailbox.enqueue(actorId, msg);
          this.mailbox.completeWork(workId);
        });
        this.schedule(actorId);
      } catch (e) {
        this.log.error('cannot deliver work result; it will be redone after restart', { actor: actorId, work: workId, error: errorText(e) });
      }
    })().finally(() => this.running.delete(workId));
    this.running.set(workId, { ctrl, done, actorId });
  }

  /**
   * Stops accepting messages, aborts running work after `graceMs`, waits for it to settle.
   * Outbox rows of aborted work stay, so the work is redone after restart. Idempotent.
   */
  async close(graceMs = 5000): Promise<void> {
    if (this.status === 'stopped' || this.status === 'draining') return this.stoppedPromise();
    this.setStatus('draining');
    this.stopTimers();
    if (graceMs > 0 && this.running.size > 0) {
      const all = Promise.allSettled([...this.running.values()].map((r) => r.done));
      let timer: unknown;
      const grace = new Promise<void>((r) => { timer = this.clock.setTimeout(r, graceMs, { keepAlive: true }); });
      await Promise.race([all, grace]);
      this.clock.clearTimeout(timer);
    }
    await this.destroy();
  }

  /**
   * Stops at once: no more messages, running work aborted with `ENGINE_CLOSED` (its outbox rows
   * stay). Resolves when the aborted work has settled. Idempotent.
   */
  async destroy(): Promise<void> {
    if (this.status !== 'stopped') {
      this.stopTimers();
      this.setStatus('stopped');
      for (const r of this.running.values()) r.ctrl.abort(new ClosedError('actor system'));
    }
    await this.stoppedPromise();
  }

  private stoppedPromise(): Promise<void> {
    return Promise.allSettled([...this.running.values()].map((r) => r.done)).then(() => undefined);
  }

  private stopTimers(): void {
    this.clock.clearTimeout(this.sweepTimer);
    for (const t of this.retryTimers.values()) this.clock.clearTimeout(t);
    this.retryTimers.clear();
  }
}
