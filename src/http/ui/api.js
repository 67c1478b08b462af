/**
 * The live page's link to the engine: the token (URL fragment → session storage, never in a URL
 * the server sees, except the WebSocket fallback below), REST reads with `Authorization: Bearer`,
 * and the `/v1/ws` connection with its subscriptions, resume cursors and reconnects.
 */

const TOKEN_KEY = 'sqlrs.token';

/**
 * The token: taken from `#token=…` when present (kept in this tab's session storage and removed
 * from the address bar, so it is neither sent nor left in history), else the stored one.
 * @returns {string} '' when there is none
 */
export function takeToken() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    let tok = '';
    try { tok = decodeURIComponent(m[1]).trim(); } catch { tok = ''; }
    if (tok) sessionStorage.setItem(TOKEN_KEY, tok);
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

/** Keeps a token typed into the form. */
export function keepToken(tok) { sessionStorage.setItem(TOKEN_KEY, tok); }
/** Forgets the token (it was refused). */
export function dropToken() { sessionStorage.removeItem(TOKEN_KEY); }

/** The engine refused the token (401/403). */
export class AuthError extends Error {
  constructor(path) { super(`token refused on ${path}`); this.name = 'AuthError'; }
}

/** A non-2xx answer other than an auth failure. */
export class HttpError extends Error {
  constructor(path, status) { super(`${path} answered ${status}`); this.name = 'HttpError'; this.status = status; }
}

/** REST reads of the `/v1` API. */
export class Api {
  constructor(token) { this.token = token; }

  /**
   * GETs a path and decodes its JSON (a `null` list becomes `[]` for list paths).
   * @throws AuthError on 401/403, HttpError on any other non-2xx
   */
  async get(path) {
    const r = await fetch(path, { headers: { Authorization: `Bearer ${this.token}`, Accept: 'application/json' }, cache: 'no-store' });
    if (r.status === 401 || r.status === 403) throw new AuthError(path);
    if (!r.ok) throw new HttpError(path, r.status);
    return r.json();
  }

  /** GETs a list (`[]` for the `null` an older engine may send). */
  async list(path) {
    const v = await this.get(path);
    return Array.isArray(v) ? v : Array.isArray(v?.items) ? v.items : Array.isArray(v?.runs) ? v.runs : [];
  }
}

/**
 * The WebSocket link. Subscribes to every job's events and to lifecycle events, resumes both from
 * the last `seq` seen after a reconnect, and reports what it can:
 * - `onFrame(frame)` for `job.event` and `lifecycle` frames;
 * - `onState({ws, lifecycle, detail})`: `ws` is `connecting|live|reconnecting|failed`,
 *   `lifecycle` is `pending|ok|refused` (an engine without lifecycle events answers the
 *   subscription with a `ws.error`; the page then refreshes its lists periodically).
 *
 * Authentication: the `bearer.<token>` subprotocol (beside `sqlrs`), so the token is in no URL.
 * An engine that does not know the subprotocol refuses that upgrade; the link then falls back to
 * `?token=` (the engine's request log records paths only, never query strings).
 */
export class Live {
  constructor(token, { onFrame, onState, onAllModesFailed }) {
    this.token = token;
    this.onFrame = onFrame;
    this.onState = onState;
    this.onAllModesFailed = onAllModesFailed;
    this.cursors = { job: 0, lifecycle: 0 };
    this.lifecycle = 'pending';
    this.modes = ['subprotocol', 'query'];
    this.mode = undefined; // the auth mode that worked, once one has
    this.tryIndex = 0;
    this.failures = 0;
    this.ws = undefined;
    this.timer = undefined;
    this.stopped = false;
    this.state = 'connecting';
  }

  start() { this.connect(); }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }

  report(ws, detail = '') {
    this.state = ws;
    this.onState({ ws, lifecycle: this.lifecycle, detail, mode: this.mode });
  }

  connect() {
    if (this.stopped) return;
    const mode = this.mode ?? this.modes[this.tryIndex];
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;
    const ws = mode === 'subprotocol'
      ? new WebSocket(url, ['sqlrs', `bearer.${this.token}`])
      : new WebSocket(`${url}?token=${encodeURIComponent(this.token)}`);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.mode = mode;
      this.failures = 0;
      // Lifecycle first: a ws.error before any other answer is its refusal.
      if (this.lifecycle !== 'refused') ws.send(JSON.stringify({ op: 'subscribe', topic: 'lifecycle', after: this.cursors.lifecycle }));
      ws.send(JSON.stringify({ op: 'subscribe', job: '*', after: this.cursors.job }));
      this.report('live');
    };
    ws.onmessage = (e) => {
      let f;
      try { f = JSON.parse(String(e.data)); } catch { return; }
      if (!f || typeof f !== 'object') return;
      if (f.type === 'ws.error') {
        if (this.lifecycle === 'pending') { this.lifecycle = 'refused'; this.report('live', f.data?.message ?? 'lifecycle refused'); }
        else this.report('live', `engine: ${f.data?.code ?? ''} ${f.data?.message ?? ''}`.trim());
        return;
      }
      if (f.type === 'job.event' && typeof f.seq === 'number') this.cursors.job = Math.max(this.cursors.job, f.seq);
      if (f.type === 'lifecycle') {
        if (typeof f.seq === 'number') this.cursors.lifecycle = Math.max(this.cursors.lifecycle, f.seq);
        if (this.lifecycle !== 'ok') { this.lifecycle = 'ok'; this.report('live'); }
      }
      this.onFrame(f);
    };
    ws.onclose = () => {
      if (this.ws !== ws || this.stopped) return;
      this.ws = undefined;
      if (!opened && this.mode === undefined && this.tryIndex < this.modes.length - 1) {
        this.tryIndex++; // this auth mode was refused (or the engine is away): try the next one now
        this.connect();
        return;
      }
      if (!opened && this.mode === undefined) {
        this.tryIndex = 0;
        this.onAllModesFailed?.();
      }
      this.failures++;
      const delay = Math.min(10_000, 500 * 2 ** Math.min(this.failures, 5));
      this.report('reconnecting', `retry in ${Math.round(delay / 1000)} s`);
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }
}
