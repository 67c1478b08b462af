/** `GET /v1/cache/status` and `POST /v1/cache/explain/prepare` (`api.md` §3.15, §3.16). */
import type { Ctx, Handler } from './server.js';
import type { CacheService } from '../actors/cache/service.js';
import type { PrepareBody, PrepareService } from '../actors/prepare/service.js';

export function cacheHandlers(cache: CacheService, prepare: PrepareService, readBody: (ctx: Ctx) => Promise<PrepareBody>): { cacheStatus: Handler; cacheExplain: Handler } {
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
      reply.json(200, body);
    },
    cacheExplain: async (ctx) => {
      ctx.reply.json(200, await prepare.explain(await readBody(ctx)));
    },
  };
}
