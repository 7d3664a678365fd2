// The creator's studio: camera preview with device choice, Go live / Stop over WHIP,
// products, pins, flash sales, live figures, chat and the OBS settings.
import { Api } from './api.js';
import { bindHeader, gate, moderatingChat, renderSales, tickSales } from './consoleui.js';
import { LiveChannel } from './live.js';
import { WhipPublisher } from './media.js';
import { StreamModel } from './model.js';
import { Session } from './session.js';
import { $, bdi, copyText, h, isolate, money, parseMoney, setText, sidFromPath } from './util.js';

const sid = sidFromPath();
const session = new Session();
const api = new Api(session.token);
const model = new StreamModel(sid, api);
let live = null;

// ---- camera and broadcast ----

const cam = {
  video: $('#preview'),
  camera: $('#camera'),
  mic: $('#mic'),
  golive: $('#golive'),
  stop: $('#stop'),
  state: $('#live-state'),
  stream: null,
  publisher: null,
  wantLive: false,
  retryTimer: null,
  next: null, // a prepared WhipPublisher, ready for the next Go live
};

// say shows a sentence (a string, or strings and nodes: a title in a bdi()).
function say(el, text, kind = '') {
  el.className = `outcome ${kind}`;
  el.replaceChildren(...[text].flat());
}

async function openCamera() {
  const constraints = {
    video: cam.camera.value ? { deviceId: { exact: cam.camera.value } } : { width: { ideal: 1280 }, height: { ideal: 720 } },
    audio: cam.mic.value ? { deviceId: { exact: cam.mic.value } } : true,
  };
  const next = await navigator.mediaDevices.getUserMedia(constraints);
  const old = cam.stream;
  cam.stream = next;
  cam.video.srcObject = next;
  if (cam.publisher) {
    for (const t of next.getTracks()) await cam.publisher.replaceTrack(t);
  }
  if (old) old.getTracks().forEach((t) => t.stop());
  if (!cam.publisher) prepareNext();
  await listDevices();
}

// prepareNext readies the next broadcast (connection built, ICE gathered) so that the
// Go live click only has to send the offer.
function prepareNext() {
  if (cam.next) cam.next.discard();
  cam.next = null;
  if (!cam.stream || (model.stream && model.stream.status === 'ended')) return;
  cam.next = new WhipPublisher(`/whip/${encodeURIComponent(sid)}`, session.token, { onState: publisherState });
  cam.next.prepare(cam.stream).catch(() => { cam.next = null; });
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const fill = (select, kind, fallback) => {
    const current = select.value || (cam.stream && cam.stream.getTracks().find((t) => t.kind === kind.slice(0, 5))?.getSettings().deviceId) || '';
    const opts = devices.filter((d) => d.kind === kind)
      .map((d, i) => h('option', { value: d.deviceId, text: d.label || `${fallback} ${i + 1}` }));
    select.replaceChildren(...opts);
    if (current && opts.some((o) => o.value === current)) select.value = current;
  };
  fill(cam.camera, 'videoinput', 'Camera');
  fill(cam.mic, 'audioinput', 'Microphone');
}

function publisherState(s) {
  const words = {
    connecting: ['Connecting…', ''],
    live: ['You are live.', 'ok'],
    disconnected: ['Connection unstable — retrying…', 'warn'],
    failed: ['Connection lost — reconnecting…', 'bad'],
    stopped: ['Broadcast stopped. Viewers wait for you to come back.', ''],
  };
  const [text, kind] = words[s] || [s, ''];
  say(cam.state, text, kind);
  cam.state.dataset.state = s;
  if ((s === 'failed' || s === 'disconnected') && cam.wantLive) scheduleRepublish(s === 'failed' ? 500 : 5000);
}

function scheduleRepublish(ms) {
  clearTimeout(cam.retryTimer);
  cam.retryTimer = setTimeout(async () => {
    if (!cam.wantLive || !cam.publisher) return;
    const pc = cam.publisher.pc;
    if (pc && pc.connectionState === 'connected') return;
    await cam.publisher.stop();
    cam.publisher = null;
    prepareNext();
    goLive();
  }, ms);
}

async function goLive() {
  if (!cam.stream) {
    say(cam.state, 'No camera: allow camera access first.', 'bad');
    return;
  }
  cam.wantLive = true;
  cam.golive.disabled = true;
  const pub = cam.next || new WhipPublisher(`/whip/${encodeURIComponent(sid)}`, session.token, { onState: publisherState });
  cam.next = null;
  try {
    cam.publisher = await pub.publish(cam.stream);
    cam.golive.hidden = true;
    cam.stop.hidden = false;
  } catch (err) {
    cam.wantLive = false;
    const words = {
      409: 'Cannot go live: another encoder is already live on this stream, or the stream has ended.',
      401: 'Your studio link has expired — open a fresh one.',
      403: 'This token may not publish this stream.',
    };
    say(cam.state, words[err.status] || `Could not go live: ${err.message}`, 'bad');
    prepareNext();
  } finally {
    cam.golive.disabled = false;
  }
}

async function stopLive() {
  cam.wantLive = false;
  clearTimeout(cam.retryTimer);
  cam.stop.disabled = true;
  const pub = cam.publisher;
  cam.publisher = null;
  if (pub) await pub.stop();
  cam.stop.disabled = false;
  cam.stop.hidden = true;
  cam.golive.hidden = false;
  prepareNext();
}

cam.video.addEventListener('resize', () => {
  cam.video.parentElement.classList.toggle('landscape', cam.video.videoWidth > cam.video.videoHeight);
});
cam.golive.addEventListener('click', goLive);
cam.stop.addEventListener('click', stopLive);
cam.camera.addEventListener('change', () => openCamera().catch((e) => say(cam.state, e.message, 'bad')));
cam.mic.addEventListener('change', () => openCamera().catch((e) => say(cam.state, e.message, 'bad')));

// End for good needs a second click within five seconds.
const endBtn = $('#end');
let endArmed = null;
endBtn.addEventListener('click', async () => {
  if (!endArmed) {
    endBtn.textContent = 'Click again to end the stream for good';
    endArmed = setTimeout(() => { endArmed = null; endBtn.textContent = 'End stream for good'; }, 5000);
    return;
  }
  clearTimeout(endArmed);
  endArmed = null;
  try {
    model.stream = await api.post(`/api/streams/${sid}/end`, {});
    model.emit('stream');
    await stopLive();
  } catch (err) {
    say(cam.state, `Could not end: ${err.message}`, 'bad');
  }
});

// ---- OBS settings ----

function bindObs() {
  const url = $('#whip-url');
  const key = $('#stream-key');
  const out = $('#copy-out');
  model.on('stream', () => {
    const st = model.stream;
    url.value = new URL(st.whip_url || `/whip/${sid}`, location.href).href;
    // Live events carry the public view of the stream: keep the key from the owner's read.
    if (st.stream_key) key.value = st.stream_key;
  });
  $('#copy-url').addEventListener('click', async () => setText(out, (await copyText(url.value)) ? 'WHIP URL copied.' : 'Copy failed — select and copy by hand.'));
  $('#copy-key').addEventListener('click', async () => setText(out, (await copyText(key.value)) ? 'Stream key copied.' : 'Copy failed — select and copy by hand.'));
  const show = $('#show-key');
  show.addEventListener('click', () => {
    const visible = key.type === 'password';
    key.type = visible ? 'text' : 'password';
    show.textContent = visible ? 'Hide key' : 'Show key';
    show.setAttribute('aria-pressed', String(visible));
  });
}

// ---- products and pins ----

function renderProducts() {
  const tbody = $('#products');
  const list = [...model.products.values()];
  tbody.replaceChildren(...list.map((p) => {
    const pinned = model.pinned.includes(p.id);
    const pin = h('button', {
      class: `small ${pinned ? '' : 'primary'}`, type: 'button', text: pinned ? 'Unpin' : 'Pin',
      'aria-label': `${pinned ? 'Unpin' : 'Pin'} ${p.title}`, 'aria-pressed': String(pinned),
      disabled: p.hidden && !pinned,
      onclick: () => togglePin(p, pinned, pin),
    });
    const sale = h('button', {
      class: 'small', type: 'button', text: 'Sale…', 'aria-label': `Start a flash sale of ${p.title}`,
      onclick: () => {
        $('#s-product').value = p.id;
        $('#s-price').focus();
      },
    });
    return h('tr', { dataset: { id: p.id, pinned: String(pinned) } },
      h('td', {}, bdi(p.title), p.hidden ? h('span', { class: 'badge warn', text: ' hidden' }) : null,
        pinned ? h('span', { class: 'badge ok', text: 'pinned' }) : null),
      h('td', { class: 'num', text: money(p.price_cents, p.currency) }),
      h('td', { class: 'num stock', text: String(p.stock) }),
      h('td', { class: 'num opt', text: String(p.held) }),
      h('td', { class: 'num opt', text: String(p.sold) }),
      h('td', {}, h('div', { class: 'row' }, pin, sale)));
  }));
  $('#products-empty').hidden = list.length > 0;
  const select = $('#s-product');
  const chosen = select.value;
  select.replaceChildren(...list.filter((p) => !p.hidden).map((p) => h('option', { value: p.id, text: `${isolate(p.title)} (${p.stock} in stock)` })));
  if (chosen) select.value = chosen;
  const cur = model.currency();
  const curInput = $('#p-currency');
  if (cur) {
    curInput.value = cur;
    curInput.readOnly = true;
  }
}

async function togglePin(p, pinned, btn) {
  btn.disabled = true;
  try {
    const res = pinned
      ? await api.del(`/api/streams/${sid}/pins/${p.id}`)
      : await api.post(`/api/streams/${sid}/pins`, { product_id: p.id });
    model.pinned = res.pinned.map((x) => x.id);
    model.emit('pins');
  } catch (err) {
    say($('#add-product-out'), `Could not ${pinned ? 'unpin' : 'pin'}: ${err.message}`, 'bad');
    btn.disabled = false;
  }
}

function bindProductForm() {
  const form = $('#add-product');
  const out = $('#add-product-out');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const price = parseMoney(f.get('price'));
    if (Number.isNaN(price)) {
      say(out, 'Price: write it like 19.99', 'bad');
      return;
    }
    const body = {
      sku: f.get('sku').trim(),
      title: f.get('title').trim(),
      description: f.get('description').trim(),
      price_cents: price,
      currency: f.get('currency').trim().toUpperCase(),
      stock: Number(f.get('stock')),
    };
    const img = f.get('image_url').trim();
    if (img) body.image_url = img;
    try {
      const p = await api.post(`/api/streams/${sid}/products`, body);
      model.products.set(p.id, p);
      model.emit('products');
      say(out, ['Added ', bdi(p.title), '.'], 'ok');
      form.reset();
      renderProducts();
    } catch (err) {
      say(out, `Could not add: ${err.message}`, 'bad');
    }
  });
}

// ---- sales ----

async function stopSale(s, btn) {
  if (btn) btn.disabled = true;
  try {
    const sale = await api.post(`/api/sales/${s.id}/stop`, {});
    model.sales.set(sale.id, sale);
    model.emit('sales');
  } catch (err) {
    say($('#start-sale-out'), `Could not stop: ${err.message}`, 'bad');
    if (btn) btn.disabled = false;
  }
}

function bindSaleForm() {
  const form = $('#start-sale');
  const out = $('#start-sale-out');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const price = parseMoney(f.get('price'));
    if (Number.isNaN(price)) {
      say(out, 'Sale price: write it like 9.99', 'bad');
      return;
    }
    const body = {
      product_id: f.get('product_id'),
      price_cents: price,
      quantity: Number(f.get('quantity')),
      duration_s: Number(f.get('duration_s')),
    };
    if (f.get('per_user_limit')) body.per_user_limit = Number(f.get('per_user_limit'));
    if (f.get('starts_in_s')) body.starts_in_s = Number(f.get('starts_in_s'));
    try {
      const sale = await api.post(`/api/streams/${sid}/sales`, body);
      model.sales.set(sale.id, sale);
      model.emit('sales');
      model.refreshProducts();
      say(out, sale.status === 'scheduled' ? `Sale scheduled: ${sale.quantity} units.` : `Sale started: ${sale.quantity} units.`, 'ok');
    } catch (err) {
      // A conflict is not always the stock (an ended stream, say): the server says which.
      const words = { not_found: 'That product is hidden or gone.' };
      say(out, words[err.code] || `Could not start: ${err.message}`, 'bad');
    }
  });
}

// ---- figures ----

function renderFigures() {
  const f = model.figures();
  setText($('#f-viewers'), f.viewers);
  setText($('#f-held'), f.held);
  setText($('#f-sold'), f.sold);
  setText($('#f-revenue'), money(f.revenue, model.currency() || 'USD'));
}

// ---- start ----

async function main() {
  if (!sid) return gate('No stream given in the address.');
  if (!session.me()) return gate('Open the studio from your studio link (it carries your sign-in).');
  if (!['creator', 'admin'].includes(session.role())) return gate('This link does not belong to a creator of this stream.');
  bindHeader(model, session);
  bindObs();
  bindProductForm();
  bindSaleForm();
  $('#watch-link').href = `/watch/${sid}`;
  model.on('stream', () => {
    if (model.stream.status !== 'ended') return;
    cam.wantLive = false;
    cam.golive.disabled = true;
    endBtn.disabled = true;
    say(cam.state, 'This stream has ended.', '');
  });
  model.on('products', renderProducts);
  model.on('pins', renderProducts);
  model.on('sales', () => renderSales(model, $('#sales'), $('#sales-empty'), stopSale));
  for (const w of ['products', 'sales', 'viewers']) model.on(w, renderFigures);
  // The camera warms up while the stream loads.
  const camera = openCamera().catch((err) => {
    say(cam.state, `Camera unavailable: ${err.message}. You can still stream from OBS.`, 'warn');
  });
  try {
    await model.load();
  } catch (err) {
    return gate(err.status === 404 ? 'Stream not found.' : `Could not load the stream: ${err.message}`);
  }
  if (model.stream.creator_id !== session.me().sub && session.role() !== 'admin') {
    return gate('This stream belongs to another creator.');
  }
  const chat = moderatingChat($('#chat'), { session, api, sid, live: () => live });
  live = new LiveChannel(sid, session.token, model.handlers({
    snapshot: () => chat.snapshot(),
    chat: (ev) => chat.add(ev),
    chat_delete: (ev) => chat.remove(ev.id),
    mute: (ev) => chat.muted(ev),
    error: (ev) => chat.error(ev),
  }));
  live.start();
  setInterval(() => tickSales(model, $('#sales')), 500);
  setInterval(() => { model.loadProducts(); model.loadSales(); }, 10000);
  await camera;
}

main();
