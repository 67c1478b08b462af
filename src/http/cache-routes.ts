/**
 * `GET /v1/cache/status` (`api.md` §3.15, plus `container_runtime`: the container API in use) and
 * `POST /v1/cache/explain/prepare` (§3.16).
 */
import type { Ctx, Handler } from './server.js';
import type { CacheService } from '../actors/cache/service.js';
import type { PrepareBody, PrepareService } from '../actors/prepare/service.js';

export function cacheHandlers(cache: CacheService, prepare: PrepareService, readBody: (ctx: Ctx) => Promise<PrepareBody>, runtime: () => unknown): { cacheStatus: Handler; cacheExplain: Handler } {
  return {
    cacheStatus: async ({ reply }) => {
      // A store that cannot be measured answers an empty 500, like the reference.
      let body;
      try {
        body = await cache.status();
      } catch {
        reply.empty(500);
        return;
      }
      // Diagnostics beside the cache figures: which container API the engine uses.
      reply.json(200, { ...body, container_runtime: runtime() });
    },
    cacheExplain: async (ctx) => {
      ctx.reply.json(200, await prepare.explain(await readBody(ctx)));
    },
  };
}
