/**
 * States that running work reads or writes, read from the work outbox (which holds exactly the
 * work in progress): inputs and outputs of state builds, sources of instances being created and,
 * optionally, states being deleted. Such states are neither evicted nor deleted by request.
 */
import type { WorkRow } from '../mailbox/mailbox.js';
import type { PrepareWork } from './prepare-job.js';
import { PREPARE_KIND } from './prepare-job.js';
import type { DeleteWork } from './deletion.js';
import { DELETE_KIND } from './deletion.js';

export function statesInUse(work: readonly WorkRow[], opts: { includeDeletions: boolean }): Set<string> {
  const out = new Set<string>();
  for (const w of work) {
    if (w.actorId.startsWith(`${DELETE_KIND}:`)) {
      if (!opts.includeDeletions) continue;
      const op = (w.spec as Partial<DeleteWork> | null)?.op;
      if (op?.kind === 'state') out.add(op.id);
      continue;
    }
    if (!w.actorId.startsWith(`${PREPARE_KIND}:`)) continue;
    const spec = w.spec as Partial<PrepareWork> | null;
    if (spec?.kind === 'step') {
      const s = spec as Extract<PrepareWork, { kind: 'step' }>;
      out.add(s.outputStateId);
      if (s.input.kind === 'state') out.add(s.input.id);
    } else if (spec?.kind === 'instance') {
      out.add((spec as Extract<PrepareWork, { kind: 'instance' }>).stateId);
    }
  }
  return out;
}
