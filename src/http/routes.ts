/**
 * The `/v1` route table, explicit: every route and method is listed here, over the wings'
 * services. Handlers validate input and then read the store or call a service; they hold no
 * business logic. The wings' own handlers are in `<wing>-routes.ts`.
 */
import { exact, pattern, type Route, type Ctx } from './server.js';
import { parseBoolParam, parseIdPrefix, sendList, strParam } from './reply.js';
import type { Store } from '../mailbox/store.js';
import { looksLikeInstanceId } from '../ids.js';
import type { PrepareService } from '../actors/prepare/service.js';
import type { RunService } from '../actors/run/service.js';
import type { DeletionService } from '../actors/deletion/service.js';
import type { CacheService } from '../actors/cache/service.js';
import { prepareHandlers, readPrepareBody } from './prepare-routes.js';
import { runHandlers } from './run-routes.js';
import { deletionHandlers } from './deletion-routes.js';
import { cacheHandlers } from './cache-routes.js';
import { metaRoutes, type MetricsApi } from './meta-routes.js';
import { ConfigPatchBodySchema } from './schemas.js';
import * as v from 'valibot';
import { uiRoutes } from './ui-routes.js';

/** The config surface the routes need (implemented by the config manager). */
export interface ConfigApi {
  get(path: string, effective: boolean): unknown;
  set(path: string, value: unknown): Promise<unknown>;
  remove(path: string): Promise<unknown>;
  schema(): object;
}

/** Which container API the engine uses (`container_runtime` of `GET /v1/cache/status`). */
export type ContainerRuntimeInfo =
  | { kind: 'docker' | 'podman'; socket: string; source: string }
  | { kind: 'none'; error: string }
  | { kind: 'detecting' | 'custom' };

/** Engine services behind the routes. */
export interface RouteServices {
  version: string;
  instanceId: string;
  pid: number;
  store: Store;
  config: ConfigApi;
  prepare: PrepareService;
  runs: RunService;
  deletion: DeletionService;
  cache: CacheService;
  containerRuntime(): ContainerRuntimeInfo;
  /** `GET /metrics`. */
  metrics: MetricsApi;
}

function health(s: RouteServices): Route {
  return exact('/v1/health', false, {
    GET: ({ reply }) => reply.json(200, { ok: true, version: s.version, instanceId: s.instanceId, pid: s.pid }),
  });
}

function config(s: RouteServices): Route[] {
  return [
    exact('/v1/config', true, {
      GET: ({ req, reply }) => {
        const effective = parseBoolParam(req.query, 'effective');
        const path = (req.query.get('path') ?? '').trim();
        const value = s.config.get(path, effective);
        reply.json(200, path === '' ? value : { path, value });
      },
      PATCH: async (ctx: Ctx) => {
        // A body of another shape reads as one without a path (`path is required`), like the reference decoder.
        const r = v.safeParse(ConfigPatchBodySchema, await ctx.json());
        const path = r.success ? (r.output.path ?? '').trim() : '';
        const value = await s.config.set(path, r.success && r.output.value !== undefined ? r.output.value : null);
        ctx.reply.json(200, { path, value });
      },
      DELETE: async ({ req, reply }) => {
        const path = (req.query.get('path') ?? '').trim();
        const value = await s.config.remove(path);
        reply.json(200, { path, value: value === undefined ? null : value });
      },
    }),
    exact('/v1/config/schema', true, { GET: ({ reply }) => reply.json(200, s.config.schema()) }),
  ];
}

function reads(s: RouteServices): Route[] {
  const st = s.store;
  return [
    exact('/v1/tasks', true, {
      GET: ({ req, reply }) => sendList(reply, req.accept, st.listTaskEntries(strParam(req.query, 'job'))),
    }),
    exact('/v1/names', true, {
      GET: ({ req, reply }) => {
        const f: { instance?: string; state?: string; image?: string } = {};
        const i = strParam(req.query, 'instance'); if (i) f.instance = i;
        const sid = strParam(req.query, 'state'); if (sid) f.state = sid;
        const im = strParam(req.query, 'image'); if (im) f.image = im;
        sendList(reply, req.accept, st.listNameEntries(f));
      },
    }),
    pattern(/^\/v1\/names\/(.*)$/, true, {
      GET: ({ params, reply }) => {
        const name = (params[0] ?? '').trim();
        const e = name === '' ? undefined : st.getNameEntry(name);
        if (!e) { reply.notFoundText(); return; }
        reply.json(200, e);
      },
    }),
    exact('/v1/instances', true, {
      GET: ({ req, reply }) => {
        const f: { idPrefix?: string; state?: string; image?: string } = {};
        const p = parseIdPrefix(req.query); if (p) f.idPrefix = p;
        const sid = strParam(req.query, 'state'); if (sid) f.state = sid;
        const im = strParam(req.query, 'image'); if (im) f.image = im;
        sendList(reply, req.accept, st.listInstanceEntries(f));
      },
    }),
    exact('/v1/states', true, {
      GET: ({ req, reply }) => {
        const f: { idPrefix?: string; kind?: string; image?: string } = {};
        const p = parseIdPrefix(req.query); if (p) f.idPrefix = p;
        const k = strParam(req.query, 'kind'); if (k) f.kind = k;
        const im = strParam(req.query, 'image'); if (im) f.image = im;
        sendList(reply, req.accept, st.listStateEntries(f));
      },
    }),
  ];
}

/** Builds the whole route table. */
export function buildRoutes(s: RouteServices): Route[] {
  const st = s.store;
  const jobs = prepareHandlers(st, s.prepare);
  const del = deletionHandlers(s.deletion);
  const cache = cacheHandlers(s.cache, s.prepare, readPrepareBody, s.containerRuntime);
  return [
    health(s),
    ...metaRoutes({ version: s.version, configSchema: () => s.config.schema(), metrics: s.metrics }),
    ...config(s),
    exact('/v1/prepare-jobs', true, ({
      GET: ({ req, reply }) => {
        const job = req.query.get('job') ?? '';
        sendList(reply, req.accept, st.listJobEntries(job.trim() || undefined));
      },
      POST: jobs.submitJob,
    })),
    pattern(/^\/v1\/prepare-jobs\/([^/]+)\/cancel$/, true, ({ POST: jobs.cancelJob })),
    pattern(/^\/v1\/prepare-jobs\/([^/]+)\/events$/, true, ({ GET: jobs.jobEvents })),
    pattern(/^\/v1\/prepare-jobs\/([^/]+)$/, true, ({
      GET: ({ params, reply }) => {
        const body = st.jobStatus(params[0] ?? '');
        if (!body) { reply.notFoundText(); return; }
        reply.json(200, body);
      },
      DELETE: del.deleteJob,
    })),
    pattern(/^\/v1\/instances\/([^/]+)$/, true, ({
      GET: ({ params, reply }) => {
        const ref = (params[0] ?? '').trim();
        if (ref === '') { reply.notFoundText(); return; }
        if (looksLikeInstanceId(ref)) {
          const r = st.getInstance(ref);
          if (r) { reply.json(200, st.instanceEntry(r)); return; }
        }
        const id = st.instanceIdOfName(ref);
        if (id && st.getInstance(id)) { reply.empty(307, { Location: `/v1/instances/${id}` }); return; }
        reply.notFoundText();
      },
      DELETE: del.deleteInstance,
    })),
    pattern(/^\/v1\/states\/([^/]+)$/, true, ({
      GET: ({ params, reply }) => {
        const r = st.getState(params[0] ?? '');
        if (!r) { reply.notFoundText(); return; }
        reply.json(200, st.stateEntry(r));
      },
      DELETE: del.deleteState,
    })),
    // GET is an engine extension: the runs in progress (`[{run_id, instance_id, kind, started_at}]`).
    exact('/v1/runs', true, ({ POST: runHandlers(s.runs).runs, GET: ({ req, reply }) => sendList(reply, req.accept, s.runs.listRuns()) })),
    exact('/v1/cache/status', true, ({ GET: cache.cacheStatus })),
    exact('/v1/cache/explain/prepare', true, ({ POST: cache.cacheExplain })),
    ...reads(s),
    ...uiRoutes(),
  ];
}
