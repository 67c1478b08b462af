/**
 * The contract between the actor system and each actor kind's logic: the messages the system
 * itself delivers, the context of a transition, what a transition returns, and the logic an actor
 * kind registers. Types only.
 */
import type { ActorId, MessageId } from '../../ids.js';
import type { SerializedError } from '../../errors.js';

/** A message produced by the runtime itself. */
export type SystemMessage =
  | { type: '$work'; workId: string; ok: true; result: unknown }
  | { type: '$work'; workId: string; ok: false; error: SerializedError }
  | { type: '$timer'; name: string };

export interface TransitionContext {
  now: number;
  messageId: MessageId;
  actorId: ActorId;
  /** Fresh random id (work ids etc.). */
  newId(): string;
}

/** What a transition asks the runtime to do. */
export interface Transition<S, W, D> {
  state: S;
  /** Domain effects applied inside the commit transaction by the behaviour's `apply`. */
  domain?: D[];
  /** Work to start after commit (recorded in the outbox first). */
  work?: { workId: string; spec: W }[];
  /** Running work to abort after commit. */
  abort?: string[];
  /** Messages for other actors (or this one), committed atomically. */
  send?: { to: ActorId; msg: unknown }[];
  /** Timers (not persisted) delivering `$timer` messages. */
  timers?: { name: string; ms: number }[];
}

export interface ActorLogic<S, M, W, D> {
  readonly kind: string;
  /** Rebuilds state from its persisted JSON (validated). */
  restore(json: unknown): S;
  /** Plain-JSON persisted form of the state. */
  persist(state: S): unknown;
  /** Pure transition. `state` is undefined for an actor's first message. */
  transition(state: S | undefined, msg: M | SystemMessage, ctx: TransitionContext): Transition<S, W, D>;
  /** True once the actor needs no more messages. */
  isTerminal(state: S): boolean;
  /** Applies one domain effect inside the commit transaction. */
  apply(effect: D, ctx: TransitionContext): void;
  /** Called after a successful commit with the applied domain effects (notifications). */
  committed?(actorId: ActorId, effects: D[]): void;
  /** Executes work outside transactions; its return value is delivered as a `$work` message. */
  perform(spec: W, signal: AbortSignal, actorId: ActorId): Promise<unknown>;
  /** Transition used when the supervisor gives up on a message. */
  onFailure(state: S | undefined, error: unknown, ctx: TransitionContext): Transition<S, W, D>;
}


/** The pure half of an actor kind's logic, as its `transition.ts` exports it. */
export type ActorTransitions<S, M, W, D> = Pick<ActorLogic<S, M, W, D>, 'restore' | 'persist' | 'transition' | 'isTerminal' | 'onFailure'>;
