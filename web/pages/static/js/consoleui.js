// Pieces the studio and the moderation console share: the header, the connection
// banner, the sales table, the moderating chat and the gate for the wrong token.
import { Chat } from './chat.js';
import { $, bdi, duration, h, money, setParts, setText, shortId } from './util.js';

export function bindHeader(model, session) {
  const title = $('#title');
  const status = $('#status');
  const conn = $('#conn');
  const main = $('#main');
  setParts($('#who'), session.label());
  model.on('stream', () => {
    const st = model.stream;
    setText(title, st.title);
    const label = { live: 'LIVE', idle: 'Idle', ended: 'Ended' }[st.status] || st.status;
    setText(status, label);
    status.className = `badge ${st.status === 'live' ? 'live' : st.status === 'ended' ? 'ended' : ''}`;
  });
  model.on('conn', () => {
    conn.hidden = model.conn !== 'reconnecting';
    main.classList.toggle('stale', model.conn === 'reconnecting');
  });
}

// gate shows why the page cannot be used and hides the console.
export function gate(text) {
  const el = $('#gate');
  el.textContent = text;
  el.hidden = false;
  $('#main').hidden = true;
}

function saleStatus(model, s) {
  if (s.status === 'scheduled') return `starts in ${duration(model.clock.until(s.starts_at))}`;
  if (s.status === 'active') {
    if (s.remaining === 0) return `sold out · ${duration(model.clock.until(s.ends_at))}`;
    return `active · ${duration(model.clock.until(s.ends_at))}`;
  }
  return 'ended';
}

// renderSales fills a tbody with the stream's sales, newest first; `stop` gets a sale.
export function renderSales(model, tbody, empty, stop) {
  const list = [...model.sales.values()].sort((a, b) => Date.parse(b.starts_at) - Date.parse(a.starts_at));
  const cur = model.currency();
  tbody.replaceChildren(...list.map((s) => {
    const p = model.products.get(s.product_id);
    const name = p ? p.title : shortId(s.product_id); // alone in its cell: a paragraph of its own
    const btn = s.status === 'ended' ? null : h('button', {
      class: 'small danger', type: 'button', text: 'Stop', 'aria-label': `Stop sale of ${name}`,
      onclick: () => stop(s, btn),
    });
    return h('tr', { dataset: { id: s.id, remaining: String(s.remaining), status: s.status } },
      h('td', { text: name }),
      h('td', { class: 'num', text: money(s.price_cents, cur) }),
      h('td', { class: 'num stock', text: `${s.remaining}/${s.quantity}` }),
      h('td', { class: 'num opt', text: String(s.held) }),
      h('td', { class: 'num', text: String(s.sold) }),
      h('td', { class: 'sale-status', text: saleStatus(model, s) }),
      h('td', {}, btn));
  }));
  empty.hidden = list.length > 0;
}

// tickSales refreshes the countdowns without rebuilding the table (keeps focus).
export function tickSales(model, tbody) {
  for (const tr of tbody.children) {
    const s = model.sales.get(tr.dataset.id);
    if (s) setText(tr.querySelector('.sale-status'), saleStatus(model, s));
  }
}

// moderatingChat is the chat panel with mute and delete on each message.
export function moderatingChat(root, { session, api, sid, live, out }) {
  const report = (...parts) => chat.notice(...parts);
  const chat = new Chat(root, {
    me: () => session.me(),
    send: (text) => live().send({ type: 'chat', text }),
    moderate: {
      // The notices name people by their display name (ids are for machines), each in
      // a <bdi>: a bidi control in a name reorders nothing of the sentence.
      async mute(userId, seconds, name = chat.nameOf(userId)) {
        try {
          const res = await api.post(`/api/streams/${sid}/mutes`, { user_id: userId, duration_s: seconds });
          report('Muted ', bdi(name), ` until ${new Date(res.until).toLocaleTimeString()}.`);
        } catch (err) {
          report('Could not mute ', bdi(name), `: ${err.message}`);
        }
      },
      async remove(id, name) {
        try {
          await api.del(`/api/streams/${sid}/chat/${id}`);
          chat.remove(id);
          report(...(name ? ['Deleted a message from ', bdi(name), '.'] : ['Message deleted.']));
        } catch (err) {
          report(...(name ? ['Could not delete ', bdi(name), "'s message"] : ['Could not delete']), `: ${err.message}`);
        }
      },
    },
  });
  if (out) out(report);
  return chat;
}
