/**
 * Routes about the engine itself: `GET /v1/openapi.json` (the API description, public like
 * `/v1/health`: it holds no data) and `GET /metrics` (Prometheus text format, behind the token).
 */
import { exact, type Route } from './server.js';
import { buildOpenApi } from './openapi.js';

/** What `GET /metrics` needs: one rendering of every metric. */
export interface MetricsApi {
  scrape(): Promise<{ contentType: string; body: string }>;
}

export function metaRoutes(s: { version: string; configSchema(): object; metrics: MetricsApi }): Route[] {
  // Built on first use (the schemas do not change while the engine runs), then served as is.
  let document: string | undefined;
  return [
    exact('/v1/openapi.json', false, {
      GET: ({ reply }) => {
        document ??= JSON.stringify(buildOpenApi({ version: s.version, configSchema: s.configSchema() })) + '\n';
        reply.send(200, document, { 'Content-Type': 'application/json' });
      },
    }),
    exact('/metrics', true, {
      GET: async ({ reply }) => {
        const m = await s.metrics.scrape();
        reply.send(200, m.body, { 'Content-Type': m.contentType });
      },
    }),
  ];
}
