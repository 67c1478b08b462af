/**
 * Small DOM and formatting helpers for the live page. Elements are built with `h()`, which sets
 * text with `textContent` only, so nothing the engine returns can ever be parsed as HTML.
 */

/**
 * Creates an element. `attrs`: `class`, `data-*`, `title`, `hidden`, `open`, … (false/undefined
 * values are skipped; `on<event>` values are listeners). Children: nodes, strings, numbers, arrays;
 * null/undefined/false are skipped.
 * @param {string} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {...unknown} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** The first 12 characters of an id, as the sqlrs CLI prints them. */
export function short(id) {
  return typeof id === 'string' ? id.slice(0, 12) : '';
}

/** Bytes in binary units: `1.5 GiB`. */
export function bytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

/** A timestamp as local time of day (with the date when it is not today); '' when absent. */
export function when(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

/** Elapsed time between two timestamps (or until now), as `4.2 s` / `3 min 5 s`. */
export function elapsed(from, to) {
  if (!from) return '';
  const ms = (to ? Date.parse(to) : Date.now()) - Date.parse(from);
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** A status badge: `<span class="badge st-<status>" data-status>`. */
export function badge(status) {
  return h('span', { class: `badge st-${status}`, 'data-status': status }, status);
}

/** A progress bar of `done` out of `total` (a `<progress>`-like element with a label). */
export function bar(done, total, label, extraClass = '') {
  const pct = total > 0 ? Math.min(100, Math.round((done / total) * 100)) : 0;
  const fillEl = h('span', { class: 'bar-fill' });
  fillEl.style.width = `${pct}%`;
  return h('span', { class: `bar ${extraClass}`.trim(), role: 'progressbar', 'aria-valuenow': pct, 'aria-valuemin': 0, 'aria-valuemax': 100 },
    fillEl, h('span', { class: 'bar-label' }, label ?? `${done}/${total}`));
}

/**
 * Copies text to the clipboard: the async Clipboard API where the page may use it, else a
 * selected hidden text area and `execCommand('copy')` (older or restricted browsers).
 * @returns {Promise<boolean>} whether the copy went through
 */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch { /* permission refused: try the old way */ }
  const ta = h('textarea', { readonly: true, class: 'offscreen' });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch { ok = false; }
  ta.remove();
  return ok;
}
