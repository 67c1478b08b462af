/**
 * States that running work reads or writes, read from the work outbox (which holds exactly the
 * work in progress): inputs and outputs of state builds, sources of instances being created and,
 * optionally, states being deleted. Such states are neither evicted nor deleted by request.
 * Each wing says which states its own work specs use; the composition root passes them in.
 */
import type { WorkRow } from '../../mailbox/mailbox.js';
import type { DeleteWork } from './transition.js';

/** The state ids one work spec of an actor kind uses. */
export type WorkStates = (spec: unknown) => readonly string[];

/** States used by the outstanding work of the actor kinds in `byKind` (other kinds are ignored). */
export function statesInUse(work: readonly WorkRow[], byKind: ReadonlyMap<string, WorkStates>): Set<string> {
  const out = new Set<string>();
  for (const w of work) {
    const kind = w.actorId.slice(0, w.actorId.indexOf(':'));
    const f = byKind.get(kind);
    if (f) for (const id of f(w.spec)) out.add(id);
  }
  return out;
}

/** The state a deletion's work removes. */
export function deletionWorkStates(spec: unknown): readonly string[] {
  const op = (spec as Partial<DeleteWork> | null)?.op;
  return op?.kind === 'state' ? [op.id] : [];
}
