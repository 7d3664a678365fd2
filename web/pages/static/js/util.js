// Small helpers shared by every page: DOM building without innerHTML, money and time
// formatting, the page's token, and a clock corrected by the server's event times.

// h builds an element. attrs: plain attributes, plus `on*` functions as listeners,
// `class`, `text` (textContent) and `dataset`. Children may be nodes, strings or null.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (k === 'text') {
      el.textContent = v;
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

// sidFromPath returns the stream id of /watch/{sid}, /studio/{sid} or /moderate/{sid},
// in lowercase as the API spells ids (it takes a UUID in capitals as the same id, and
// the pages compare the id with those in its answers).
export function sidFromPath() {
  const parts = location.pathname.split('/').filter(Boolean);
  return parts.length >= 2 ? decodeURIComponent(parts[1]).toLowerCase() : '';
}

// money formats minor units in a currency; falls back to "12.34 XYZ" for unknown codes.
// Formatters are cached: building one costs milliseconds (the first, far more).
const moneyFormats = new Map();
export function money(cents, currency) {
  const c = (currency || 'USD').toUpperCase();
  let f = moneyFormats.get(c);
  if (f === undefined) {
    try {
      f = new Intl.NumberFormat(undefined, { style: 'currency', currency: c });
    } catch {
      f = null;
    }
    moneyFormats.set(c, f);
  }
  if (!f) return `${(Number(cents) / 100).toFixed(2)} ${c}`;
  return f.format(Number(cents) / 10 ** f.resolvedOptions().maximumFractionDigits);
}

// parseMoney turns "12.50" into 1250 minor units (two decimals assumed).
export function parseMoney(text) {
  const s = String(text).trim().replace(',', '.');
  if (!/^\d+(\.\d{0,2})?$/.test(s)) return NaN;
  const [whole, frac = ''] = s.split('.');
  return Number(whole) * 100 + Number((frac + '00').slice(0, 2));
}

// duration formats milliseconds as m:ss or h:mm:ss.
export function duration(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hh = Math.floor(total / 3600);
  const mm = Math.floor((total % 3600) / 60);
  const ss = String(total % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

// shortId names an id in eight hex digits: its last ones, because livecart's ids are
// UUIDv7, whose first digits are a timestamp shared by ids made in the same moment.
export function shortId(id) {
  return String(id || '').replace(/-/g, '').slice(-8).toUpperCase();
}

const uuidRE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// shortTarget is shortId for a UUID and the text itself (cut to 16 characters) for
// anything else, such as a muted user's id.
export function shortTarget(t) {
  const s = String(t || '');
  if (uuidRE.test(s)) return shortId(s);
  return s.length > 16 ? `${s.slice(0, 15)}…` : s;
}

// imageSrc is the address a page may load a product's image from, or '' for none: an
// absolute https URL as it is, an http one upgraded to https (as a browser upgrades an
// image on a secure page; the pages' Content-Security-Policy loads images over https
// only). Anything else — a relative reference (the server keeps one as given), or a
// javascript: or data: URL (refused now, but a product stored before may hold one) — is
// never put in a page.
export function imageSrc(url) {
  if (typeof url !== 'string' || url === '') return '';
  let u;
  try {
    u = new URL(url); // no base: a relative path throws
  } catch {
    return '';
  }
  if (u.protocol === 'http:') u.protocol = 'https:';
  return u.protocol === 'https:' && u.hostname !== '' ? u.href : '';
}

export function timeOfDay(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString();
}

// Clock tracks the offset between the server's clock (from event `ts`) and ours, so
// countdowns agree with the server even when the device clock is off.
export class Clock {
  constructor() { this.offset = 0; this.samples = 0; }
  observe(ts) {
    const t = Date.parse(ts);
    if (Number.isNaN(t)) return;
    const off = t - Date.now();
    // Network delay only makes the server look behind; keep the largest offset seen
    // recently, moving slowly so one late frame does not jump countdowns.
    if (this.samples === 0 || off > this.offset) this.offset = off;
    else this.offset = this.offset * 0.9 + off * 0.1;
    this.samples++;
  }
  now() { return Date.now() + this.offset; }
  until(ts) { return Date.parse(ts) - this.now(); }
}

const tokenKey = 'livecart.token';

// takeToken moves ?token= from the address bar into sessionStorage and returns the
// token to use (the new one, else the stored one, else '').
export function takeToken() {
  const url = new URL(location.href);
  const fromURL = url.searchParams.get('token');
  if (fromURL) {
    try { sessionStorage.setItem(tokenKey, fromURL); } catch { /* storage off */ }
    url.searchParams.delete('token');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
    return fromURL;
  }
  try { return sessionStorage.getItem(tokenKey) || ''; } catch { return ''; }
}

export function storeToken(token) {
  try { sessionStorage.setItem(tokenKey, token); } catch { /* storage off */ }
}

export function forgetToken() {
  try { sessionStorage.removeItem(tokenKey); } catch { /* storage off */ }
}

// claims decodes (does not verify) a JWT's payload for display: {sub, name, role, exp},
// its name as the server shows it (shownName; the user id's when it has none).
export function claims(token) {
  if (!token) return null;
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(part + '='.repeat((4 - (part.length % 4)) % 4));
    const bytes = Uint8Array.from(json, (ch) => ch.charCodeAt(0));
    const c = JSON.parse(new TextDecoder().decode(bytes));
    if (c.exp && c.exp * 1000 < Date.now()) return null;
    c.name = shownName(c.name) || shownName(c.sub) || String(c.sub ?? ''); // as the server shows it
    return c;
  } catch {
    return null;
  }
}

// throttle runs fn at most once per ms; calls in between collapse into one trailing
// call with the newest arguments.
export function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  let pending = null;
  return (...args) => {
    pending = args;
    if (timer) return;
    const wait = last + ms - Date.now();
    const run = () => { timer = null; last = Date.now(); const a = pending; pending = null; fn(...a); };
    if (wait <= 0) run();
    else timer = setTimeout(run, wait);
  };
}

// newestOnly wraps an async load so that only the newest call's answer is kept: loads
// overlap (events come faster than an answer) and answers can arrive out of order, so
// an older answer must not replace a newer one. The wrapper resolves to the answer, or
// to undefined when a newer call has already been answered; errors pass through.
export function newestOnly(load) {
  let asked = 0;
  let answered = 0;
  return async (...args) => {
    const n = ++asked;
    try {
      const v = await load(...args);
      if (n < answered) return undefined;
      answered = n;
      return v;
    } catch (err) {
      if (n < answered) return undefined;
      throw err;
    }
  };
}

// setText updates an element's text only when it changed (keeps aria-live quiet).
export function setText(el, text) {
  if (el && el.textContent !== String(text)) el.textContent = String(text);
}

// bdi is user text (a name, a product's title) as a part of a sentence: a <bdi>, its
// direction from its own first strong letter and bidi-isolated, so a bidi control in it
// (an unclosed U+202E) reorders nothing of the sentence around it ("Muted <name> until
// 12:00." stays in that order), and a right-to-left name reads right to left. The
// sentence's text (textContent) is the same as without it.
export function bdi(text) {
  return h('bdi', { text: String(text ?? '') });
}

// isolate is user text for a place that takes no element (an <option>, a title
// attribute, the document's title): between U+2068 FIRST STRONG ISOLATE and U+2069 POP
// DIRECTIONAL ISOLATE, which isolate it as <bdi> does.
export function isolate(text) {
  return `\u2068${String(text ?? '')}\u2069`;
}

// setParts is setText for a sentence of strings and nodes (user text in bdi()): the
// element's content is replaced only when its text changed.
export function setParts(el, ...parts) {
  if (!el) return;
  const list = parts.flat().filter((p) => p !== null && p !== undefined && p !== false && p !== '');
  const text = list.map((p) => (p instanceof Node ? p.textContent : String(p))).join('');
  if (el.textContent === text && el.childNodes.length === list.length) return;
  el.replaceChildren(...list.map((p) => (p instanceof Node ? p : String(p))));
}

// maxName is the server's bound on a name it shows (API.md: 64 characters).
const maxName = 64;

// shownName is a token's name as the server shows it (API.md): a line break or tab a
// space, other control characters left out, blank → '' (the caller shows the user id),
// and over 64 characters cut between graphemes and ended with "…". The page shows its
// own user's name from the token's claims, as the server shows it to everyone else.
export function shownName(name) {
  const t = String(name ?? '').replace(/[\n\r\t]/g, ' ').replace(/[\x00-\x1f\x7f-\x9f]/g, '');
  if (t.trim() === '') return '';
  let n = 0;
  for (const ch of t) if (ch && ++n > maxName) break; // code points, up to one over
  if (n <= maxName) return t;
  const graphemes = typeof Intl.Segmenter === 'function'
    ? (function* () { for (const g of new Intl.Segmenter(undefined, { granularity: 'grapheme' }).segment(t)) yield g.segment; })()
    : t;
  let out = '';
  n = 0;
  for (const g of graphemes) {
    const len = [...g].length;
    if (n + len > maxName - 1) break;
    out += g;
    n += len;
  }
  if (out === '') out = [...t.slice(0, 2 * maxName)].slice(0, maxName - 1).join(''); // one long grapheme
  return `${out.trimEnd()}…`;
}

export function metaContent(name) {
  const m = document.querySelector(`meta[name="${name}"]`);
  return m ? m.getAttribute('content') : '';
}

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// copyText copies to the clipboard, falling back to a selected hidden field.
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = h('textarea', { class: 'sr-only', readonly: true });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
    return ok;
  }
}
