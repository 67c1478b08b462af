/**
 * The cache capability: capacity enforcement (the guard prepare builds call at `prepare_step`,
 * `snapshot` and `metadata_commit`, plus a `startup_recovery` pass), eviction through the deletion
 * actor, `GET /v1/cache/status` and `POST /v1/cache/explain/prepare`.
 */
import type { Capability, Engine } from './engine.js';
import type { PrepareCapability } from './prepare-capability.js';
import { validatePrepare } from './prepare-capability.js';
import type { DeletionCapability } from './deletion-capability.js';
import type { Logger } from './log.js';
import { CacheManager } from './actors/cache.js';
import { planPsql } from './actors/prepare-work.js';
import type { PrepareRequest } from './actors/prepare-job.js';
import { statesInUse } from './actors/in-use.js';
import { readPrepareBody } from './http/prepare-routes.js';
import type { CapabilityHandlers } from './http/routes.js';
import { InternalError, errorText, hasCode } from './errors.js';

/** `POST /v1/cache/explain/prepare` body (`api.md` §3.16). */
export interface CacheExplainResponse {
  decision: 'hit' | 'miss';
  reason_code: 'exact_state_match' | 'no_matching_state';
  signature: string;
  resolved_image_id: string;
  matched_state_id?: string;
}

export class CacheCapability implements Capability {
  readonly name = 'cache';
  cache!: CacheManager;
  private engine!: Engine;
  private log!: Logger;

  constructor(private readonly prepare: PrepareCapability, private readonly deletion: DeletionCapability) {}

  init(e: Engine): void {
    this.engine = e;
    this.log = e.log.child({ c: 'cache' });
    const rts = this.prepare.runtimes;
    this.cache = new CacheManager({
      root: e.root,
      store: e.store,
      fs: this.prepare.fs,
      log: this.log,
      config: () => e.config.effective().cache,
      inUse: () => statesInUse(e.mailbox.pendingWork(), { includeDeletions: true }),
      stateDir: (id) => rts.stateDir(id),
      evict: (row) => this.deletion.run(
        [{ kind: 'state', id: row.state_id, dir: row.dir }],
        { dry_run: false, outcome: 'deleted', root: { kind: 'state', id: row.state_id } },
        'eviction',
      ),
    });
    this.deletion.onStateDeleted((id) => this.cache.forget(id));
    this.prepare.worker.setCapacity(this.cache);
  }

  /** The start-up pass runs in the background: the engine answers while it evicts. */
  started(): void {
    this.cache.ensure('startup_recovery').catch((err: unknown) => {
      this.log.error('cache capacity check at start-up failed', { error: errorText(err) });
    });
  }

  busy(): boolean { return this.cache?.busy ?? false; }

  /** Dry cache hit/miss decision for a prepare request: no job, no container, no events. */
  async explain(request: PrepareRequest): Promise<CacheExplainResponse> {
    let resolved: string;
    try {
      resolved = (await this.prepare.containers.resolveImage(request.image, undefined, {}, false)).resolvedId;
    } catch (e) {
      throw new InternalError('internal error', { details: `cannot resolve image: ${errorText(e)}`, cause: e });
    }
    let plan;
    try {
      plan = await planPsql(this.engine.store, request, resolved);
    } catch (e) {
      if (hasCode(e, 'invalid_argument')) throw e;
      throw new InternalError('internal error', { details: errorText(e), cause: e });
    }
    const final = plan.steps[plan.steps.length - 1]?.outputStateId;
    if (final !== undefined && this.engine.store.hasState(final)) {
      return { decision: 'hit', reason_code: 'exact_state_match', signature: plan.signature, resolved_image_id: resolved, matched_state_id: final };
    }
    return { decision: 'miss', reason_code: 'no_matching_state', signature: plan.signature, resolved_image_id: resolved };
  }

  handlers(): CapabilityHandlers {
    return {
      cacheStatus: async ({ reply }) => {
        let body;
        try {
          body = await this.cache.status();
        } catch (e) {
          this.log.error('cache status failed', { error: errorText(e) });
          reply.empty(500);
          return;
        }
        reply.json(200, body);
      },
      cacheExplain: async (ctx) => {
        const body = await readPrepareBody(ctx);
        const p = validatePrepare(body);
        const request: PrepareRequest = { image: p.image, psqlArgs: p.psqlArgs, planOnly: p.planOnly };
        if (p.stdin !== undefined) request.stdin = p.stdin;
        ctx.reply.json(200, await this.explain(request));
      },
    };
  }
}
