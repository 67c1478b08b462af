/**
 * `DELETE /v1/instances/{id}`, `DELETE /v1/states/{id}` and `DELETE /v1/prepare-jobs/{id}`: parse
 * the flags and answer with the deletion service's tree (`api.md` §2.12–§2.14).
 */
import type { Handler } from './server.js';
import { parseBoolParam } from './reply.js';
import type { DeletionService } from '../actors/deletion/service.js';

export function deletionHandlers(api: DeletionService): { deleteInstance: Handler; deleteState: Handler; deleteJob: Handler } {
  const flags = (q: URLSearchParams): { force: boolean; dryRun: boolean } => ({ force: parseBoolParam(q, 'force'), dryRun: parseBoolParam(q, 'dry_run') });
  return {
    deleteInstance: async ({ params, req, reply }) => {
      const a = await api.deleteInstance(params[0] ?? '', flags(req.query));
      reply.json(a.status, a.body);
    },
    deleteState: async ({ params, req, reply }) => {
      const a = await api.deleteState(params[0] ?? '', parseBoolParam(req.query, 'recurse'), flags(req.query));
      reply.json(a.status, a.body);
    },
    deleteJob: async ({ params, req, reply }) => {
      const a = await api.deleteJob(params[0] ?? '', flags(req.query));
      reply.json(a.status, a.body);
    },
  };
}
