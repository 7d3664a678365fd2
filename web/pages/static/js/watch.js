// The viewer's page: WHEP video, pinned products, flash sales with one-tap Buy now,
// cart with hold timers, chat and the viewer count, all kept current by the live
// channel and marked stale while it reconnects.
import { Api, describeBuyError } from './api.js';
import { Chat } from './chat.js';
import { LiveChannel } from './live.js';
import { WhepPlayer } from './media.js';
import { Session, signInPrompt } from './session.js';
import { $, bdi, Clock, duration, h, imageSrc, isolate, money, newestOnly, setParts, setText, shortId, sidFromPath, throttle, timeOfDay } from './util.js';

const sid = sidFromPath();
const session = new Session();
const api = new Api(session.token);
const clock = new Clock();

const state = {
  stream: null,
  products: new Map(), // id → Product
  pinned: [], // product ids, in pin order
  sales: new Map(), // id → Sale
  viewers: 0,
  media: { audio_muted: false, video_muted: false },
  player: 'connecting',
  cart: [], // the signed-in user's holds on this stream, live and expired
  bought: new Map(), // sale id → units the user has ordered from it (their orders)
  limitHit: new Set(), // sale ids the server refused for the limit since the last count
  unlisted: new Set(), // product ids of sales the last product list lacked (hidden)
};

const ui = {
  title: $('#title'),
  status: $('#status'),
  viewers: $('#viewers'),
  who: $('#who'),
  conn: $('#conn'),
  main: $('#main'),
  player: $('#player'),
  video: $('#video'),
  overlay: $('#overlay'),
  unmute: $('#unmute'),
  play: $('#play'),
  salesPanel: $('#sales-panel'),
  sales: $('#sales'),
  pinned: $('#pinned'),
  pinnedEmpty: $('#pinned-empty'),
  announce: $('#announce'),
  announcement: $('#announcement'),
  cartBody: $('#cart-body'),
};

// ---- stream header and player overlay ----

function renderStream() {
  const st = state.stream;
  if (!st) return;
  setText(ui.title, st.title);
  document.title = `${isolate(st.title)} · livecart`;
  const label = { live: 'LIVE', idle: 'Starting soon', ended: 'Ended' }[st.status] || st.status;
  setText(ui.status, label);
  ui.status.className = `badge ${st.status === 'live' ? 'live' : st.status === 'ended' ? 'ended' : ''}`;
  player.setExpectVideo(st.status === 'live' && !state.media.video_muted);
  renderOverlay();
}

function renderViewers() {
  setText(ui.viewers, `${state.viewers} watching`);
}

function overlayText() {
  const st = state.stream;
  if (st && st.status === 'ended') return 'This stream has ended. Thanks for watching!';
  if (state.media.video_muted) return 'The video is paused for a moment.';
  if (state.player === 'playing') return '';
  if (state.player === 'blocked') return 'Your browser is waiting for a tap to start the video.';
  if (st && st.status === 'idle') return 'The host will be live soon — stay here, the video starts by itself.';
  if (state.player === 'retrying') return 'Reconnecting video…';
  return 'Connecting…';
}

function renderOverlay() {
  const text = overlayText();
  ui.overlay.hidden = text === '';
  setText(ui.overlay, text);
  ui.unmute.hidden = !(state.player === 'playing' && ui.video.muted && !state.media.audio_muted);
  ui.play.hidden = !(state.player === 'blocked' && !(state.stream && state.stream.status === 'ended'));
}

const player = new WhepPlayer(ui.video, `/whep/${encodeURIComponent(sid)}`, {
  onState: (s) => {
    state.player = s;
    renderOverlay();
  },
});

ui.unmute.addEventListener('click', () => {
  ui.video.muted = false;
  ui.video.play().catch(() => {});
  renderOverlay();
});
// A browser that refused to start the video by itself starts it from a tap or a key.
ui.play.addEventListener('click', () => player.resume());
ui.overlay.addEventListener('click', () => {
  if (state.player === 'blocked') player.resume();
});
ui.video.addEventListener('loadedmetadata', () => {
  ui.player.classList.toggle('landscape', ui.video.videoWidth > ui.video.videoHeight);
});
ui.video.addEventListener('resize', () => {
  ui.player.classList.toggle('landscape', ui.video.videoWidth > ui.video.videoHeight);
});

// ---- products and pins ----

function productImage(p) {
  const src = imageSrc(p.image_url);
  if (src) return h('img', { src, alt: '', loading: 'lazy' });
  return h('div', { class: 'noimg', 'aria-hidden': 'true', text: (p.title || '?').trim().charAt(0).toUpperCase() });
}

// Product cards are updated in place, never rebuilt: a buy's outcome (and a buy in
// flight) stays on its card while the stock moves.
const productCards = new Map(); // product id → {el, parts, imageUrl (its imageSrc)}

function productCard(p) {
  const parts = {
    img: productImage(p),
    title: h('div', { class: 'title' }),
    note: h('div', { class: 'note' }),
    price: h('div', { class: 'price' }),
    stock: h('div', { class: 'stock' }),
    buy: h('button', { class: 'primary', type: 'button' }),
    add: h('button', { type: 'button', text: 'Add to cart' }),
    out: h('p', { class: 'outcome', role: 'status', 'aria-live': 'assertive' }),
  };
  parts.buy.addEventListener('click', () => buyNow(parts.buy, parts.out, { productId: p.id }));
  parts.add.addEventListener('click', () => addToCart(parts.add, parts.out, state.products.get(p.id) || p));
  const el = h('article', { class: 'card product', dataset: { id: p.id } },
    parts.img,
    h('div', {}, parts.title, parts.note, parts.price, parts.stock, h('div', { class: 'buy row' }, parts.buy, parts.add), parts.out));
  return { el, parts, imageUrl: imageSrc(p.image_url) };
}

function updateProductCard(entry, p) {
  const { el, parts } = entry;
  const src = imageSrc(p.image_url);
  if (src !== entry.imageUrl) {
    const img = productImage(p);
    parts.img.replaceWith(img);
    parts.img = img;
    entry.imageUrl = src;
  } else if (!src) {
    setText(parts.img, (p.title || '?').trim().charAt(0).toUpperCase());
  }
  el.setAttribute('aria-label', p.title);
  setText(parts.title, p.title);
  setText(parts.note, p.description || '');
  parts.note.hidden = !p.description;
  const price = money(p.price_cents, p.currency);
  setText(parts.price, price);
  const soldOut = p.stock <= 0;
  setText(parts.stock, soldOut ? 'Sold out' : p.stock <= 5 ? `Only ${p.stock} left` : `${p.stock} in stock`);
  parts.stock.className = `stock ${soldOut ? 'out' : p.stock <= 5 ? 'low' : ''}`;
  parts.buy.setAttribute('aria-label', soldOut ? `${p.title}: Sold out` : `Buy ${p.title} now for ${price}`);
  parts.add.setAttribute('aria-label', `Add ${p.title} to cart`);
  if (!parts.buy.dataset.busy) {
    setText(parts.buy, soldOut ? 'Sold out' : 'Buy now');
    parts.buy.disabled = soldOut;
  }
  if (!parts.add.dataset.busy) parts.add.disabled = soldOut;
}

function renderPinned() {
  const want = state.pinned.filter((id) => state.products.has(id));
  for (const [id, entry] of productCards) {
    if (!want.includes(id)) {
      entry.el.remove();
      productCards.delete(id);
    }
  }
  const nodes = want.map((id) => {
    const p = state.products.get(id);
    let entry = productCards.get(id);
    if (!entry) {
      entry = productCard(p);
      productCards.set(id, entry);
    }
    updateProductCard(entry, p);
    return entry.el;
  });
  if (nodes.length !== ui.pinned.children.length || nodes.some((el, i) => ui.pinned.children[i] !== el)) {
    ui.pinned.replaceChildren(...nodes);
  }
  ui.pinnedEmpty.hidden = nodes.length > 0;
}

// ---- flash sales ----

const saleCards = new Map(); // sale id → {el, parts}
const endedShownMs = 15000;

function saleCard(sale) {
  const parts = {
    price: h('span', { class: 'price' }),
    was: h('span', { class: 'was' }),
    title: h('div', { class: 'title' }),
    countdown: h('span', { class: 'countdown' }),
    when: h('span', { class: 'note' }),
    bar: h('span'),
    stock: h('div', { class: 'stock' }),
    cap: h('div', { class: 'note' }),
    buy: h('button', { class: 'primary', type: 'button', text: 'Buy now' }),
    out: h('p', { class: 'outcome', role: 'status', 'aria-live': 'assertive' }),
    img: h('div', { class: 'noimg', 'aria-hidden': 'true' }),
  };
  parts.buy.addEventListener('click', () => {
    const s = state.sales.get(sale.id);
    buyNow(parts.buy, parts.out, { saleId: sale.id, perUserLimit: s && s.per_user_limit });
  });
  const el = h('article', { class: 'card sale', dataset: { id: sale.id }, 'aria-label': 'Flash sale' },
    parts.img,
    h('div', {},
      parts.title,
      h('div', {}, parts.price, parts.was),
      h('div', {}, parts.when, ' ', parts.countdown),
      h('div', { class: 'stockbar', 'aria-hidden': 'true' }, parts.bar),
      parts.stock, parts.cap,
      h('div', { class: 'buy' }, parts.buy),
      parts.out));
  return { el, parts, lastLevel: '' };
}

// saleOver: the sale has ended, by its event or by the clock: past its end time an
// active sale can no longer be bought, even while the event saying so has not come (the
// live channel down).
function saleOver(sale) {
  return sale.status === 'ended' || (sale.status === 'active' && clock.until(sale.ends_at) <= 0);
}

function saleLevel(sale) {
  if (saleOver(sale)) return 'ended';
  if (sale.status === 'scheduled') return 'scheduled';
  if (sale.remaining <= 0) return 'out';
  if (sale.remaining <= Math.max(5, Math.ceil(sale.quantity * 0.1))) return 'low';
  return 'ok';
}

function updateSaleCard(entry, sale) {
  const { parts, el } = entry;
  const p = state.products.get(sale.product_id);
  setText(parts.title, p ? p.title : 'Flash sale');
  const cur = p ? p.currency : '';
  setText(parts.price, money(sale.price_cents, cur));
  setText(parts.was, p && p.price_cents > sale.price_cents ? money(p.price_cents, cur) : '');
  if (p && imageSrc(p.image_url) && parts.img.tagName !== 'IMG') {
    const img = productImage(p);
    parts.img.replaceWith(img);
    parts.img = img;
  } else if (p && parts.img.tagName !== 'IMG') {
    setText(parts.img, (p.title || '?').trim().charAt(0).toUpperCase());
  }
  const level = saleLevel(sale);
  const pct = sale.quantity > 0 ? Math.round((100 * sale.remaining) / sale.quantity) : 0;
  parts.bar.style.setProperty('--pct', `${pct}%`);
  const words = {
    ended: sale.sold >= sale.quantity ? 'Sold out — sale over' : 'Sale over',
    scheduled: `${sale.quantity} units at this price`,
    out: 'Sold out',
    low: `Only ${sale.remaining} left!`,
    ok: `${sale.remaining} of ${sale.quantity} left`,
  };
  setText(parts.stock, words[level]);
  parts.stock.className = `stock ${level === 'out' || level === 'ended' ? 'out' : level === 'low' ? 'low' : ''}`;
  const used = unitsOfSale(sale.id);
  const reached = limitReached(sale);
  let cap = sale.per_user_limit ? `Limit ${sale.per_user_limit} per person` : '';
  if (cap && used > 0) cap += ` · you have ${used}`;
  setText(parts.cap, cap);
  // At the limit, Buy now can only check out a unit held already (a refused checkout's).
  const limited = reached && !heldOfSale(sale.id);
  parts.buy.disabled = (level !== 'ok' && level !== 'low') || limited;
  el.classList.toggle('limited', limited && (level === 'ok' || level === 'low'));
  const label = level === 'out' ? 'Sold out' : level === 'ended' ? 'Sale over' : level === 'scheduled' ? 'Starts soon'
    : limited ? 'Limit reached' : 'Buy now';
  const title = p ? p.title : 'the flash sale';
  // Its name says what it buys (the pinned products' Buy now are beside it).
  parts.buy.setAttribute('aria-label', parts.buy.disabled ? `${title}: ${label}` : `Buy ${title} now for ${money(sale.price_cents, cur)}`);
  if (!parts.buy.dataset.busy) setText(parts.buy, label);
  el.dataset.remaining = String(sale.remaining);
  el.dataset.status = sale.status;
  el.classList.toggle('soldout', level === 'out');
  if (entry.lastLevel !== level && (level === 'low' || level === 'out')) {
    setParts(ui.announce, p ? bdi(p.title) : 'Flash sale', `: ${words[level]}`);
  }
  entry.lastLevel = level;
  tickSale(entry, sale);
}

function tickSale(entry, sale) {
  const { parts } = entry;
  if (saleLevel(sale) !== entry.lastLevel) {
    updateSaleCard(entry, sale); // its end time passed: over (and ticked again)
    return;
  }
  if (sale.status === 'scheduled') {
    setText(parts.when, 'Starts in');
    setText(parts.countdown, duration(clock.until(sale.starts_at)));
  } else if (sale.status === 'active' && !saleOver(sale)) {
    setText(parts.when, 'Ends in');
    setText(parts.countdown, duration(clock.until(sale.ends_at)));
  } else {
    setText(parts.when, '');
    setText(parts.countdown, '');
  }
}

// saleProductHidden: the sale's product is hidden (a moderator hid it: its sale cannot
// be bought until it is shown, which a product event tells), or not known yet: the last
// product list lacked it (hidden before this page loaded it), or the list is on its way.
function saleProductHidden(s) {
  const p = state.products.get(s.product_id);
  return p ? p.hidden : true;
}

// recentSales are the sales to show (their product allowing): not over, or over lately.
function recentSales() {
  const now = clock.now();
  return [...state.sales.values()].filter((s) => !saleOver(s) || now - Date.parse(s.ends_at) < endedShownMs);
}

function visibleSales(recent) {
  return recent.filter((s) => !saleProductHidden(s))
    .sort((a, b) => Date.parse(a.starts_at) - Date.parse(b.starts_at));
}

function renderSales() {
  const recent = recentSales();
  const list = visibleSales(recent);
  for (const [id, entry] of saleCards) {
    if (!list.some((s) => s.id === id)) {
      entry.el.remove();
      saleCards.delete(id);
    }
  }
  for (const sale of list) {
    let entry = saleCards.get(sale.id);
    if (!entry) {
      entry = saleCard(sale);
      saleCards.set(sale.id, entry);
    }
    updateSaleCard(entry, sale);
  }
  const order = list.map((s) => saleCards.get(s.id).el);
  if (order.some((el, i) => ui.sales.children[i] !== el)) ui.sales.replaceChildren(...order);
  ui.salesPanel.hidden = list.length === 0;
  if (recent.some((s) => !state.products.has(s.product_id) && !state.unlisted.has(s.product_id))) refreshProducts();
}

// Products changed by an event while a product list was on its way keep the event's
// state: the list may be older (a hide, a stock change).
let productEvents = 0;
const productEventAt = new Map(); // product id → productEvents at its last event
let resyncedAt = 0; // productEvents at the last fresh snapshot after the first

function setProductFromEvent(p) {
  state.products.set(p.id, p);
  productEventAt.set(p.id, ++productEvents);
}

const refreshProducts = throttle(async () => {
  try {
    const asked = productEvents;
    const list = await api.products(sid);
    if (asked < resyncedAt) {
      refreshProducts(); // asked before a fresh snapshot: older than what it forgot
      return;
    }
    for (const p of list) {
      if ((productEventAt.get(p.id) || 0) <= asked) state.products.set(p.id, p);
    }
    // Sales whose product the list lacks are of a hidden product: not shown, and not
    // asked for again (a product event shows it; a snapshot forgets this).
    const listed = new Set(list.map((p) => p.id));
    for (const s of state.sales.values()) {
      if (!listed.has(s.product_id) && !state.products.has(s.product_id)) state.unlisted.add(s.product_id);
    }
    renderPinned();
    renderSales();
  } catch { /* next event retries */ }
}, 2000);

// ---- buying ----

// A sale's per-person limit counts the buyer's held and bought units of it (API.md):
// the page knows both (its cart and its orders), so Buy now shows the limit reached
// before the tap instead of after a refused hold.
function liveSaleHolds(saleId) {
  return state.cart.filter((it) => it.sale_id === saleId && !it.expired && clock.until(it.expires_at) > 0);
}

function unitsOfSale(saleId) {
  return liveSaleHolds(saleId).reduce((n, it) => n + it.quantity, 0) + (state.bought.get(saleId) || 0);
}

function limitReached(sale) {
  if (!sale.per_user_limit || !session.me()) return false;
  return state.limitHit.has(sale.id) || unitsOfSale(sale.id) >= sale.per_user_limit;
}

// heldOfSale: a hold of the sale Buy now can check out (one unit, not about to expire).
function heldOfSale(saleId) {
  return liveSaleHolds(saleId).find((it) => it.quantity === 1 && clock.until(it.expires_at) > 1000);
}

function requireSignIn(out) {
  if (session.me()) return false;
  out.className = 'outcome warn';
  out.replaceChildren(signInPrompt(session, api, 'buy'));
  return true;
}

// A Buy now whose hold was taken but whose checkout was refused (rate limited, the shop
// unavailable …) left the unit held in the cart: the next Buy now of the same sale or
// product checks out that hold instead of taking another (which the sale's per-person
// limit would refuse, to a buyer who has bought nothing).
const heldByBuyNow = new Map(); // sale or product id → hold id

function liveHold(id) {
  return state.cart.find((it) => it.id === id && !it.expired && clock.until(it.expires_at) > 1000);
}

async function buyNow(btn, out, { saleId, productId, perUserLimit }) {
  if (requireSignIn(out)) return;
  btn.disabled = true;
  btn.dataset.busy = '1';
  const label = btn.textContent;
  btn.textContent = 'Buying…';
  out.className = 'outcome';
  out.textContent = '';
  delete out.dataset.code;
  const key = saleId || productId;
  const sale = saleId && state.sales.get(saleId);
  const held = liveHold(heldByBuyNow.get(key)) || (sale && limitReached(sale) ? heldOfSale(saleId) : undefined);
  try {
    const { order } = await api.buy({ saleId, productId, held });
    heldByBuyNow.delete(key);
    countOrder(order);
    if (held) state.cart = state.cart.filter((it) => it.id !== held.id);
    out.className = 'outcome ok';
    out.textContent = `Done! Order #${shortId(order.id)} — ${money(order.total_cents, order.currency)}.`;
    out.dataset.order = order.id;
  } catch (err) {
    const hold = err.hold || held;
    if (hold && err.code !== 'hold_expired' && err.code !== 'not_found') {
      heldByBuyNow.set(key, hold.id);
      out.className = 'outcome warn';
      out.textContent = `${describeBuyError(err, perUserLimit)} Your unit is held for you in your cart until ${timeOfDay(hold.expires_at)}: tap Buy now again, or check out in the cart.`;
    } else {
      heldByBuyNow.delete(key);
      if (err.code === 'limit_exceeded' && saleId) state.limitHit.add(saleId);
      out.className = `outcome ${err.code === 'sold_out' || err.code === 'hold_expired' ? 'bad' : 'warn'}`;
      out.textContent = describeBuyError(err, perUserLimit);
    }
    out.dataset.code = err.code;
  } finally {
    delete btn.dataset.busy;
    btn.textContent = label;
    btn.disabled = false;
    renderSales();
    renderPinned();
    loadCart();
  }
}

async function addToCart(btn, out, p) {
  if (requireSignIn(out)) return;
  btn.disabled = true;
  btn.dataset.busy = '1';
  try {
    await api.post('/api/cart/items', { product_id: p.id, quantity: 1 });
    out.className = 'outcome ok';
    out.textContent = 'Added — it is held for you for a few minutes.';
  } catch (err) {
    out.className = 'outcome warn';
    out.textContent = describeBuyError(err);
  } finally {
    delete btn.dataset.busy;
    btn.disabled = false;
    renderPinned();
    loadCart();
  }
}

// ---- cart ----

const cartOut = h('p', { class: 'outcome', role: 'status', 'aria-live': 'polite' });

// cartPrompt shows the sign-in prompt in the cart once (keeping what a visitor typed).
function cartPrompt() {
  if (!ui.cartBody.dataset.prompt) {
    ui.cartBody.replaceChildren(signInPrompt(session, api, 'buy'));
    ui.cartBody.dataset.prompt = '1';
  }
}

// loadCart reads the cart, and the user's orders (for the sales' per-person limits)
// unless withOrders is false.
async function loadCart(withOrders = true) {
  if (!session.me()) {
    cartPrompt();
    return;
  }
  delete ui.cartBody.dataset.prompt;
  const orders = withOrders ? loadOrders() : null;
  try {
    const cart = await fetchCart();
    if (cart) {
      state.cart = cart.items.filter((it) => it.stream_id === sid);
      renderCart();
    }
  } catch (err) {
    if (err.status === 401) cartPrompt();
  }
  await orders;
}

const fetchCart = newestOnly(() => api.get('/api/cart'));
const fetchOrders = newestOnly(() => api.get('/api/orders'));

// loadOrders counts the units the user bought from each sale of this stream.
async function loadOrders() {
  let list;
  try {
    list = await fetchOrders();
  } catch { return; /* the counts so far stay; the server still says limit_exceeded */ }
  if (!list) return; // a newer load has answered
  state.bought = new Map();
  state.limitHit.clear();
  for (const o of list) if (o.stream_id === sid) countOrder(o);
  renderSales();
}

function countOrder(order) {
  for (const it of order.items) {
    if (it.sale_id) state.bought.set(it.sale_id, (state.bought.get(it.sale_id) || 0) + it.quantity);
  }
}

function holdTitle(it) {
  const p = state.products.get(it.product_id);
  return (p ? p.title : 'Item') + (it.sale_id ? ' (flash sale)' : '');
}

// holdTitleParts is holdTitle for a sentence: the product's title in a <bdi>.
function holdTitleParts(it) {
  const p = state.products.get(it.product_id);
  return [p ? bdi(p.title) : 'Item', it.sale_id ? ' (flash sale)' : ''];
}

function renderCart() {
  const items = state.cart;
  renderSales(); // the sales' limits count the live holds
  if (items.length === 0) {
    cartLive = [];
    ui.cartBody.replaceChildren(h('p', { class: 'empty', text: 'Your cart is empty.' }), cartOut);
    return;
  }
  const live = items.filter((it) => !it.expired && clock.until(it.expires_at) > 0);
  cartLive = live;
  const total = live.reduce((n, it) => n + it.unit_price_cents * it.quantity, 0);
  const currency = items[0].currency;
  const rows = items.map((it) => h('li', { dataset: { id: it.id } },
    h('span', {}, `${it.quantity} × `, holdTitleParts(it), ' ', h('b', { text: money(it.unit_price_cents, it.currency) })),
    h('span', { class: 'timer', dataset: { expires: it.expires_at }, 'aria-label': 'Held for' }),
    h('button', {
      class: 'small', type: 'button', text: 'Remove', 'aria-label': `Remove ${holdTitle(it)}`,
      onclick: async () => {
        try { await api.del(`/api/cart/items/${it.id}`); } catch { /* listed again below */ }
        loadCart();
      },
    })));
  const checkout = h('button', {
    class: 'primary', type: 'button', text: `Check out ${money(total, currency)}`, disabled: live.length === 0,
    onclick: () => checkoutCart(checkout),
  });
  ui.cartBody.replaceChildren(h('ul', {}, rows), h('div', { class: 'actions' }, checkout), cartOut);
  tickCart();
}

async function checkoutCart(btn) {
  btn.disabled = true;
  try {
    const order = await api.post('/api/checkout', { stream_id: sid }, { 'Idempotency-Key': crypto.randomUUID() });
    cartOut.className = 'outcome ok';
    const dropped = order.expired_hold_ids.length ? ` (${order.expired_hold_ids.length} expired item(s) left out)` : '';
    cartOut.textContent = `Done! Order #${shortId(order.id)} — ${money(order.total_cents, order.currency)}${dropped}.`;
  } catch (err) {
    cartOut.className = 'outcome bad';
    cartOut.textContent = err.code === 'conflict' ? 'Your cart is empty.' : describeBuyError(err);
  } finally {
    loadCart();
  }
}

// cartLive: the holds the cart drew as live; one expiring redraws the cart, so its
// total and Check out leave the expired hold out at once.
let cartLive = [];

function tickCart() {
  if (cartLive.some((it) => clock.until(it.expires_at) <= 0)) {
    renderCart(); // ticks again, with the expired hold left out
    return;
  }
  for (const el of ui.cartBody.querySelectorAll('.timer')) {
    const left = clock.until(el.dataset.expires);
    if (left > 0) {
      setText(el, `held ${duration(left)}`);
      el.classList.remove('expired');
    } else {
      setText(el, 'expired');
      el.classList.add('expired');
    }
  }
}

// ---- live channel ----

const chat = new Chat($('#chat'), {
  me: () => session.me(),
  send: (text) => live.send({ type: 'chat', text }),
  signIn: null,
});

function setSignInPrompts() {
  chat.opts.signIn = signInPrompt(session, api, 'chat');
  chat.refreshForm();
  setParts(ui.who, session.label());
}

let snapshots = 0;

const handlers = {
  onStatus(s) {
    ui.conn.hidden = s !== 'reconnecting';
    ui.main.classList.toggle('stale', s === 'reconnecting');
  },
  snapshot(ev) {
    state.stream = ev.stream;
    if (snapshots++ > 0) {
      // A resume the history could not serve: the events missed are gone, so what the
      // snapshot does not name (products not pinned, hidden meanwhile or not) is read
      // again, and its sales wait for that read.
      state.products.clear();
      resyncedAt = ++productEvents;
      refreshProducts();
    }
    chat.snapshot();
    for (const p of ev.pinned) setProductFromEvent(p);
    state.pinned = ev.pinned.map((p) => p.id);
    state.sales = new Map(ev.sales.map((s) => [s.id, s]));
    state.unlisted.clear(); // the events in between are gone: ask again
    state.viewers = ev.viewers;
    state.media = ev.media || state.media;
    renderStream();
    renderViewers();
    renderPinned();
    renderSales();
  },
  pin(ev) {
    setProductFromEvent(ev.product);
    if (!state.pinned.includes(ev.product.id)) state.pinned.push(ev.product.id);
    renderPinned();
  },
  unpin(ev) {
    state.pinned = state.pinned.filter((id) => id !== ev.product_id);
    renderPinned();
  },
  product(ev) {
    setProductFromEvent(ev.product);
    state.unlisted.delete(ev.product.id);
    if (ev.product.hidden) state.pinned = state.pinned.filter((id) => id !== ev.product.id);
    renderPinned();
    renderSales();
  },
  sale(ev) {
    state.sales.set(ev.sale.id, ev.sale);
    renderSales();
  },
  stock(ev) {
    if (!ev.sale_id) {
      // The product's own stock (units at its regular price).
      const p = state.products.get(ev.product_id);
      if (!p) return;
      setProductFromEvent({ ...p, stock: ev.remaining });
      renderPinned();
      return;
    }
    const s = state.sales.get(ev.sale_id);
    if (!s) return;
    s.remaining = ev.remaining;
    const entry = saleCards.get(s.id);
    if (entry) updateSaleCard(entry, s);
  },
  chat: (ev) => chat.add(ev),
  chat_delete: (ev) => chat.remove(ev.id),
  mute: (ev) => chat.muted(ev),
  viewers(ev) {
    state.viewers = ev.count;
    renderViewers();
  },
  media(ev) {
    state.media = { audio_muted: ev.audio_muted, video_muted: ev.video_muted };
    renderStream();
  },
  stream(ev) {
    state.stream = ev.stream;
    renderStream();
    if (ev.stream.status === 'ended') player.stop('ended');
  },
  error: (ev) => chat.error(ev),
  announce(ev) {
    setText(ui.announcement, ev.text);
    ui.announcement.hidden = !ev.text;
  },
};

// Every frame carries the server's time; countdowns follow it.
const live = new LiveChannel(sid, session.token, new Proxy(handlers, {
  get(target, prop) {
    const fn = target[prop];
    if (typeof fn !== 'function' || prop === 'onStatus') return fn;
    return (ev) => { clock.observe(ev.ts); fn(ev); };
  },
}));

session.onChange(() => {
  api.setToken(session.token);
  live.setToken(session.token);
  setSignInPrompts();
  loadCart();
});

setInterval(() => {
  for (const sale of state.sales.values()) {
    const entry = saleCards.get(sale.id);
    if (entry) tickSale(entry, sale);
  }
  tickCart();
}, 250);
setInterval(renderSales, 5000); // drop ended sales after a while
// Every 30 s the cart, and the orders only while a sale of this stream is not over
// (bought elsewhere counts toward its limit): no order reads between sales.
setInterval(() => loadCart([...state.sales.values()].some((s) => s.status !== 'ended')), 30000);

async function main() {
  if (!sid) {
    setText(ui.title, 'No stream given');
    return;
  }
  setSignInPrompts();
  money(0, 'USD'); // warm up Intl so the first card renders at once
  player.start();
  live.start();
  try {
    state.stream = await api.stream(sid);
    renderStream();
  } catch (err) {
    if (err.status === 404) {
      setText(ui.title, 'Stream not found');
      player.stop('ended');
      live.stop();
      return;
    }
  }
  refreshProducts();
  loadCart();
}

main();
