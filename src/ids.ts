/** Branded ids: only the parsers and factories here can make them. */
import { randomBytes } from 'node:crypto';

declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

export type JobId = Brand<string, 'JobId'>;
export type InstanceId = Brand<string, 'InstanceId'>;
export type StateId = Brand<string, 'StateId'>;
export type ActorId = Brand<string, 'ActorId'>;
export type MessageId = Brand<number, 'MessageId'>;
export type EventSeq = Brand<number, 'EventSeq'>;

const HEX32 = /^[0-9a-f]{32}$/;
const HEX64 = /^[0-9a-f]{64}$/;

export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}
export const newJobId = (): JobId => randomHex(16) as JobId;
export const newInstanceId = (): InstanceId => randomHex(16) as InstanceId;
export function isJobId(s: string): s is JobId { return HEX32.test(s); }
export function isInstanceId(s: string): s is InstanceId { return HEX32.test(s); }
export function isStateId(s: string): s is StateId { return HEX64.test(s); }
/** "Looks like an instance id": exactly 32 hex chars, either case. */
export function looksLikeInstanceId(s: string): boolean { return /^[0-9a-fA-F]{32}$/.test(s); }
/** Use only for values read back from the engine's own store. */
export function asStateId(s: string): StateId { return s as StateId; }
export function asJobId(s: string): JobId { return s as JobId; }
export function asInstanceId(s: string): InstanceId { return s as InstanceId; }
export function actorId(kind: string, key: string): ActorId { return `${kind}:${key}` as ActorId; }
