/**
 * Persistent actor mailboxes, actor state rows and the work outbox, all in SQLite.
 *
 * Delivery is at-least-once: {@link Mailbox.claimNext} leases the oldest message of an actor
 * (token + expiry); {@link Mailbox.ack} must present the token and is meant to run inside the same
 * transaction that commits the actor's new state, so a crash either keeps the message (redelivered
 * on restart) or commits both. Expired leases return to the queue through {@link Mailbox.sweep}.
 *
 * The work outbox records slow work an actor asked for (in the same transaction as its state);
 * on restart every row still in it is dispatched again, and work is written to be idempotent.
 */
import { randomBytes } from 'node:crypto';
import type { Db } from './db.js';
import type { ActorId, MessageId } from '../ids.js';
import { LeaseLostError, MailboxFullError } from '../errors.js';
import type { Clock } from '../clock.js';

export interface Envelope {
  id: MessageId;
  actorId: ActorId;
  payload: unknown;
  attempts: number;
  leaseToken: string;
}

export type ActorStatus = 'active' | 'done' | 'failed';

export interface ActorRow {
  actorId: ActorId;
  kind: string;
  status: ActorStatus;
  state: unknown;
  failure: string | null;
}

export interface WorkRow { workId: string; actorId: ActorId; spec: unknown }

export interface MailboxOptions {
  /** Max undelivered messages per actor. @default 1024 */
  maxPerActor?: number;
  /** Lease length for a claimed message. @default 30000 */
  leaseMs?: number;
}

export class Mailbox {
  readonly maxPerActor: number;
  readonly leaseMs: number;
  private readonly s;
  constructor(private readonly db: Db, private readonly clock: Clock, opts: MailboxOptions = {}) {
    this.maxPerActor = opts.maxPerActor ?? 1024;
    this.leaseMs = opts.leaseMs ?? 30_000;
    this.s = {
      count: db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM mailbox WHERE actor_id = ?'),
      insert: db.prepare('INSERT INTO mailbox (actor_id, payload, enqueued_ms) VALUES (?, ?, ?)'),
      head: db.prepare<[string], { id: number; payload: string; attempts: number; lease_until: number | null }>(
        'SELECT id, payload, attempts, lease_until FROM mailbox WHERE actor_id = ? ORDER BY id LIMIT 1'),
      lease: db.prepare('UPDATE mailbox SET lease_token = ?, lease_until = ?, attempts = attempts + 1 WHERE id = ?'),
      ack: db.prepare('DELETE FROM mailbox WHERE id = ? AND lease_token = ?'),
      nack: db.prepare('UPDATE mailbox SET lease_token = NULL, lease_until = ? WHERE id = ? AND lease_token = ?'),
      sweep: db.prepare('UPDATE mailbox SET lease_token = NULL, lease_until = NULL WHERE lease_token IS NOT NULL AND lease_until < ?'),
      releaseAll: db.prepare('UPDATE mailbox SET lease_token = NULL, lease_until = NULL WHERE lease_token IS NOT NULL OR lease_until IS NOT NULL'),
      pendingActors: db.prepare<[], { actor_id: string }>('SELECT DISTINCT actor_id FROM mailbox'),
      depthByKind: db.prepare<[], { kind: string; n: number }>("SELECT substr(actor_id, 1, instr(actor_id, ':') - 1) AS kind, COUNT(*) AS n FROM mailbox GROUP BY 1"),
      deadLetter: db.prepare('INSERT INTO dead_letters (id, actor_id, payload, error, failed_ms) SELECT id, actor_id, payload, ?, ? FROM mailbox WHERE id = ?'),
      drop: db.prepare('DELETE FROM mailbox WHERE id = ?'),
      getActor: db.prepare<[string], { actor_id: string; kind: string; status: string; state_json: string; failure: string | null }>(
        'SELECT actor_id, kind, status, state_json, failure FROM actors WHERE actor_id = ?'),
      putActor: db.prepare(`INSERT INTO actors (actor_id, kind, status, state_json, failure, updated_ms) VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT(actor_id) DO UPDATE SET status = excluded.status, state_json = excluded.state_json, failure = excluded.failure, updated_ms = excluded.updated_ms`),
      activeActors: db.prepare<[], { actor_id: string; kind: string; status: string; state_json: string; failure: string | null }>(
        "SELECT actor_id, kind, status, state_json, failure FROM actors WHERE status = 'active'"),
      deleteActor: db.prepare('DELETE FROM actors WHERE actor_id = ?'),
      deleteActorMail: db.prepare('DELETE FROM mailbox WHERE actor_id = ?'),
      finishedMail: db.prepare("DELETE FROM mailbox WHERE actor_id IN (SELECT actor_id FROM actors WHERE kind = ? AND status != 'active' AND updated_ms < ?)"),
      finishedActors: db.prepare("DELETE FROM actors WHERE kind = ? AND status != 'active' AND updated_ms < ?"),
      addWork: db.prepare('INSERT OR IGNORE INTO work (work_id, actor_id, spec_json, created_ms) VALUES (?, ?, ?, ?)'),
      delWork: db.prepare('DELETE FROM work WHERE work_id = ?'),
      allWork: db.prepare<[], { work_id: string; actor_id: string; spec_json: string }>('SELECT work_id, actor_id, spec_json FROM work ORDER BY created_ms'),
      hasWork: db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM work WHERE work_id = ?'),
      logEffect: db.prepare('INSERT INTO effects_log (actor_id, message_id, effect) VALUES (?, ?, ?)'),
    };
  }

  /** Runs `fn` in one SQLite transaction (nested calls join the outer one). */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /**
   * Appends a message to an actor's mailbox.
   * @throws MailboxFullError when the actor already holds `maxPerActor` undelivered messages.
   */
  enqueue(actorId: ActorId, payload: unknown): MessageId {
    const n = this.s.count.get(actorId)?.n ?? 0;
    if (n >= this.maxPerActor) throw new MailboxFullError(actorId, this.maxPerActor);
    const r = this.s.insert.run(actorId, JSON.stringify(payload), this.clock.now());
    return Number(r.lastInsertRowid) as MessageId;
  }

  /** Number of undelivered messages of an actor. */
  depth(actorId: ActorId): number {
    return this.s.count.get(actorId)?.n ?? 0;
  }

  /** Undelivered messages per actor kind (the part of the actor id before `:`); kinds without any are absent. */
  depthByKind(): Record<string, number> {
    return Object.fromEntries(this.s.depthByKind.all().map((r) => [r.kind, r.n]));
  }

  /** Leases the oldest message of an actor, or returns undefined (none, or the head is leased/delayed). */
  claimNext(actorId: ActorId): Envelope | undefined {
    const now = this.clock.now();
    return this.tx(() => {
      const head = this.s.head.get(actorId);
      if (!head) return undefined;
      if (head.lease_until !== null && head.lease_until > now) return undefined;
      const token = randomBytes(8).toString('hex');
      this.s.lease.run(token, now + this.leaseMs, head.id);
      return {
        id: head.id as MessageId,
        actorId,
        payload: JSON.parse(head.payload) as unknown,
        attempts: head.attempts + 1,
        leaseToken: token,
      };
    });
  }

  /** Time until the head message of an actor becomes claimable (0 = now, undefined = empty). */
  headDelay(actorId: ActorId): number | undefined {
    const head = this.s.head.get(actorId);
    if (!head) return undefined;
    return head.lease_until === null ? 0 : Math.max(0, head.lease_until - this.clock.now());
  }

  /** Removes a delivered message. @throws LeaseLostError if the token no longer holds it. */
  ack(env: Envelope): void {
    const r = this.s.ack.run(env.id, env.leaseToken);
    if (r.changes !== 1) throw new LeaseLostError(env.id);
  }

  /** Returns a message to the queue, claimable again after `delayMs`. */
  nack(env: Envelope, delayMs = 0): void {
    const r = this.s.nack.run(delayMs > 0 ? this.clock.now() + delayMs : null, env.id, env.leaseToken);
    if (r.changes !== 1) throw new LeaseLostError(env.id);
  }

  /** Moves a message that cannot be handled to the dead-letter table. */
  deadLetter(env: Envelope, error: string): void {
    this.tx(() => {
      this.s.deadLetter.run(error, this.clock.now(), env.id);
      this.s.drop.run(env.id);
    });
  }

  /** Returns expired leases to the queue; returns how many. */
  sweep(): number {
    return this.s.sweep.run(this.clock.now()).changes;
  }

  /** At start-up no message can be in flight: release every lease. */
  releaseAllLeases(): number {
    return this.s.releaseAll.run().changes;
  }

  /** Actors that have undelivered messages. */
  actorsWithMail(): ActorId[] {
    return this.s.pendingActors.all().map((r) => r.actor_id as ActorId);
  }

  getActor(actorId: ActorId): ActorRow | undefined {
    const r = this.s.getActor.get(actorId);
    return r ? rowToActor(r) : undefined;
  }

  putActor(row: ActorRow): void {
    this.s.putActor.run(row.actorId, row.kind, row.status, JSON.stringify(row.state), row.failure, this.clock.now());
  }

  activeActors(): ActorRow[] {
    return this.s.activeActors.all().map(rowToActor);
  }

  /** Removes an actor row and its undelivered messages. */
  forgetActor(actorId: ActorId): void {
    this.s.deleteActor.run(actorId);
    this.s.deleteActorMail.run(actorId);
  }

  /** Removes finished (done or failed) actors of `kind` last updated before `beforeMs`; returns how many. */
  forgetFinished(kind: string, beforeMs: number): number {
    return this.tx(() => {
      this.s.finishedMail.run(kind, beforeMs);
      return this.s.finishedActors.run(kind, beforeMs).changes;
    });
  }

  addWork(w: WorkRow): void {
    this.s.addWork.run(w.workId, w.actorId, JSON.stringify(w.spec), this.clock.now());
  }
  hasWork(workId: string): boolean {
    return (this.s.hasWork.get(workId)?.n ?? 0) > 0;
  }
  completeWork(workId: string): void {
    this.s.delWork.run(workId);
  }
  pendingWork(): WorkRow[] {
    return this.s.allWork.all().map((r) => ({ workId: r.work_id, actorId: r.actor_id as ActorId, spec: JSON.parse(r.spec_json) as unknown }));
  }

  /**
   * Records that an effect keyed by (actor, message) was applied. Returns false if it already was:
   * callers use this to make side effects idempotent under redelivery.
   */
  markEffect(actorId: ActorId, messageId: MessageId, effect: string): boolean {
    try {
      this.s.logEffect.run(actorId, messageId, effect);
      return true;
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return false;
      throw e;
    }
  }
}

function rowToActor(r: { actor_id: string; kind: string; status: string; state_json: string; failure: string | null }): ActorRow {
  return {
    actorId: r.actor_id as ActorId,
    kind: r.kind,
    status: r.status as ActorStatus,
    state: JSON.parse(r.state_json) as unknown,
    failure: r.failure,
  };
}
