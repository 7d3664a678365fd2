// The moderation console: chat with mute and delete, pinned products with unpin and
// hide, media mute per kind, stop sale, end stream, and the audit log kept live.
import { Api } from './api.js';
import { bindHeader, gate, moderatingChat, renderSales, tickSales } from './consoleui.js';
import { LiveChannel } from './live.js';
import { StreamModel } from './model.js';
import { Session } from './session.js';
import { $, bdi, h, imageSrc, isolate, money, newestOnly, setText, shortTarget, sidFromPath, throttle, timeOfDay } from './util.js';

const sid = sidFromPath();
const session = new Session();
const api = new Api(session.token);
const model = new StreamModel(sid, api);
let live = null;
let chat = null;
// nameOf names a user id for people: the display name the chat has seen for it.
const nameOf = (userId) => (chat ? chat.nameOf(userId) : userId);
const out = $('#controls-out');

// say shows a sentence (a string, or strings and nodes: a name or a title in a bdi()).
function say(text, kind = '') {
  out.className = `outcome ${kind}`;
  out.replaceChildren(...[text].flat());
}

// ---- pins and products ----

async function unpin(p, btn) {
  btn.disabled = true;
  try {
    const res = await api.del(`/api/streams/${sid}/pins/${p.id}`);
    model.pinned = res.pinned.map((x) => x.id);
    model.emit('pins');
    say(['Unpinned ', bdi(p.title), '.'], 'ok');
  } catch (err) {
    btn.disabled = false;
    say(`Could not unpin: ${err.message}`, 'bad');
  }
}

async function setHidden(p, hidden, btn) {
  btn.disabled = true;
  try {
    const np = await api.patch(`/api/products/${p.id}`, { hidden });
    model.products.set(np.id, np);
    if (hidden) model.pinned = model.pinned.filter((id) => id !== np.id);
    model.emit('products');
    model.emit('pins');
    say([hidden ? 'Hid ' : 'Showed ', bdi(p.title), '.'], 'ok');
  } catch (err) {
    btn.disabled = false;
    say(`Could not change: ${err.message}`, 'bad');
  }
}

function renderPins() {
  const list = model.pinned.map((id) => model.products.get(id)).filter(Boolean);
  $('#pins').replaceChildren(...list.map((p) => {
    const un = h('button', { class: 'small', type: 'button', text: 'Unpin', 'aria-label': `Unpin ${p.title}`, onclick: () => unpin(p, un) });
    const hide = h('button', { class: 'small danger', type: 'button', text: 'Hide', 'aria-label': `Hide ${p.title}`, onclick: () => setHidden(p, true, hide) });
    return h('li', { class: 'card', dataset: { id: p.id } },
      imageSrc(p.image_url) ? h('img', { src: imageSrc(p.image_url), alt: '' }) : h('div', { class: 'noimg', 'aria-hidden': 'true', text: p.title.charAt(0).toUpperCase() }),
      h('div', {},
        h('div', { class: 'title', text: p.title }),
        h('div', { class: 'note', text: `${money(p.price_cents, p.currency)} · ${p.stock} in stock` }),
        h('div', { class: 'row' }, un, hide)));
  }));
  $('#pins-empty').hidden = list.length > 0;
}

function renderProducts() {
  const list = [...model.products.values()];
  $('#products').replaceChildren(...list.map((p) => {
    const btn = h('button', {
      class: `small ${p.hidden ? '' : 'danger'}`, type: 'button', text: p.hidden ? 'Show' : 'Hide',
      'aria-label': `${p.hidden ? 'Show' : 'Hide'} ${p.title}`,
      onclick: () => setHidden(p, !p.hidden, btn),
    });
    return h('tr', { dataset: { id: p.id } },
      h('td', { text: p.title }),
      h('td', { class: 'num', text: String(p.stock) }),
      h('td', {}, p.hidden ? h('span', { class: 'badge warn', text: 'hidden' }) : null, ' ', btn));
  }));
}

// ---- sales, media, end ----

async function stopSale(s, btn) {
  if (btn) btn.disabled = true;
  try {
    const sale = await api.post(`/api/sales/${s.id}/stop`, {});
    model.sales.set(sale.id, sale);
    model.emit('sales');
    say('Sale stopped.', 'ok');
  } catch (err) {
    if (btn) btn.disabled = false;
    say(`Could not stop the sale: ${err.message}`, 'bad');
  }
}

function renderMedia() {
  const a = $('#mute-audio');
  const v = $('#mute-video');
  a.textContent = model.media.audio_muted ? 'Unmute audio' : 'Mute audio';
  a.setAttribute('aria-pressed', String(model.media.audio_muted));
  v.textContent = model.media.video_muted ? 'Show video' : 'Hide video';
  v.setAttribute('aria-pressed', String(model.media.video_muted));
}

async function toggleMedia(kind) {
  const key = `${kind}_muted`;
  try {
    model.media = await api.post(`/api/streams/${sid}/media`, { [key]: !model.media[key] });
    model.emit('media');
  } catch (err) {
    say(`Could not change ${kind}: ${err.message}`, 'bad');
  }
}

let endArmed = null;
async function endStream() {
  const btn = $('#end');
  if (!endArmed) {
    btn.textContent = 'Click again to end the stream for everyone';
    endArmed = setTimeout(() => { endArmed = null; btn.textContent = 'End stream'; }, 5000);
    return;
  }
  clearTimeout(endArmed);
  endArmed = null;
  btn.textContent = 'End stream';
  try {
    model.stream = await api.post(`/api/streams/${sid}/end`, {});
    model.emit('stream');
    say('Stream ended.', 'ok');
  } catch (err) {
    say(`Could not end: ${err.message}`, 'bad');
  }
}

// ---- audit ----

// A time in the details (a mute's until, a sale's ends_at) reads as the time of day.
const isoTime = /^\d{4}-\d\d-\d\dT\d\d:\d\d/;

// describeDetails is an entry's details as words: key=value, each value (a product's
// sku, say) in a <bdi>.
function describeDetails(d) {
  if (!d || typeof d !== 'object') return [];
  const short = (v) => {
    if (typeof v === 'string' && isoTime.test(v) && timeOfDay(v)) return timeOfDay(v);
    const text = typeof v === 'object' ? JSON.stringify(v) : String(v);
    return text.length > 24 ? `${text.slice(0, 23)}…` : text;
  };
  return Object.entries(d).flatMap(([k, v], i) => [`${i > 0 ? ' ' : ''}${k}=`, bdi(short(v))]);
}

// renderMutes lists who is muted now, from the audit log (the latest mute or unmute of
// each user), so every moderator sees the same list.
function renderMutes(entries) {
  const until = new Map();
  for (const e of entries) {
    if (e.action === 'mute') until.set(e.target, Date.parse(e.details && e.details.until));
    if (e.action === 'unmute') until.delete(e.target);
  }
  const now = model.clock.now();
  const active = [...until].filter(([, t]) => t > now);
  $('#mutes').replaceChildren(...active.map(([user, t]) => {
    const name = nameOf(user);
    const btn = h('button', {
      class: 'small', type: 'button', text: 'Unmute', 'aria-label': `Unmute ${name}`,
      onclick: async () => {
        btn.disabled = true;
        try {
          await api.del(`/api/streams/${sid}/mutes/${encodeURIComponent(user)}`);
          say(['Unmuted ', bdi(name), '.'], 'ok');
        } catch (err) {
          say(['Could not unmute ', bdi(name), `: ${err.message}`], 'bad');
        }
        loadAudit();
      },
    });
    return h('li', { dataset: { user } }, h('span', {}, h('b', { title: user }, h('bdi', { text: name })), ` until ${new Date(t).toLocaleTimeString()}`), btn);
  }));
  $('#mutes-empty').hidden = active.length > 0;
}

// auditTarget shows what an entry acted on: a person (mute, unmute) by name, anything
// else by its short id; the whole id in the title.
function auditTarget(e) {
  const id = String(e.target || '');
  if (e.action === 'mute' || e.action === 'unmute') return h('bdi', { text: shortTarget(nameOf(id)), title: `${isolate(nameOf(id))} (${isolate(id)})` });
  return h('code', { text: shortTarget(id), title: id });
}

const fetchAudit = newestOnly(() => api.get(`/api/streams/${sid}/audit`));

async function loadAudit() {
  let list;
  try {
    list = await fetchAudit();
  } catch (err) {
    setText($('#audit-empty'), `Could not load the audit log: ${err.message}`);
    $('#audit-empty').hidden = false;
    return;
  }
  if (!list) return; // a newer load has answered
  renderMutes(list);
  list.reverse();
  $('#audit').replaceChildren(...list.map((e) => h('tr', { dataset: { action: e.action } },
    h('td', { class: 'when', text: timeOfDay(e.at) }),
    h('td', { class: 'who', title: e.actor_id }, h('bdi', { text: nameOf(e.actor_id) }), h('div', { class: 'note', text: e.actor_role })),
    h('td', { class: 'what' }, h('b', { text: e.action }), h('div', { class: 'note' }, describeDetails(e.details))),
    h('td', { class: 'target' }, auditTarget(e)))));
  $('#audit-empty').hidden = list.length > 0;
}

// ---- start ----

async function main() {
  if (!sid) return gate('No stream given in the address.');
  if (!session.me()) return gate('Open this console from your moderator link (it carries your sign-in).');
  if (!['moderator', 'admin', 'creator'].includes(session.role())) return gate('This link does not allow moderation.');
  bindHeader(model, session);
  $('#watch-link').href = `/watch/${sid}`;
  model.on('pins', renderPins);
  model.on('products', () => { renderPins(); renderProducts(); });
  model.on('sales', () => renderSales(model, $('#sales'), $('#sales-empty'), stopSale));
  model.on('media', renderMedia);
  model.on('viewers', () => setText($('#viewers'), `${model.viewers} watching`));
  const refreshAudit = throttle(loadAudit, 500);
  // Chat, viewer counts and stock moves are not audited: skip the reload for those.
  model.on('event', (m) => { if (!['chat', 'viewers', 'stock'].includes(m.lastType)) refreshAudit(); });
  $('#mute-audio').addEventListener('click', () => toggleMedia('audio'));
  $('#mute-video').addEventListener('click', () => toggleMedia('video'));
  $('#end').addEventListener('click', endStream);
  try {
    await model.load();
  } catch (err) {
    return gate(err.status === 404 ? 'Stream not found.' : `Could not load the stream: ${err.message}`);
  }
  chat = moderatingChat($('#chat'), { session, api, sid, live: () => live });
  live = new LiveChannel(sid, session.token, model.handlers({
    snapshot: () => chat.snapshot(),
    chat: (ev) => chat.add(ev),
    chat_delete: (ev) => chat.remove(ev.id),
    mute: (ev) => { chat.muted(ev); },
    error: (ev) => chat.error(ev),
  }));
  live.start();
  loadAudit();
  setInterval(() => tickSales(model, $('#sales')), 500);
}

main();
