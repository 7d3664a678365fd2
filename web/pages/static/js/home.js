// The front page: streams that are live or about to start, refreshed every few seconds.
import { Api } from './api.js';
import { Session } from './session.js';
import { $, h, setParts, setText, timeOfDay } from './util.js';

const session = new Session();
const api = new Api(session.token);

function card(st) {
  const live = st.status === 'live';
  return h('li', { dataset: { id: st.id } },
    h('a', { href: `/watch/${encodeURIComponent(st.id)}` },
      h('article', { class: 'panel' },
        h('div', { class: 'row' },
          h('span', { class: `badge ${live ? 'live' : ''}`, text: live ? 'LIVE' : 'Starting soon' }),
          h('span', { class: 'badge', text: `${st.viewers || 0} watching` })),
        h('h3', { text: st.title }),
        h('p', { class: 'note', text: live && st.started_at ? `Live since ${timeOfDay(st.started_at)}` : `Created ${timeOfDay(st.created_at)}` }))));
}

async function load() {
  try {
    const list = await api.get('/api/streams');
    // Live first, then upcoming, newest first within each.
    list.sort((a, b) => (a.status === 'live' ? 0 : 1) - (b.status === 'live' ? 0 : 1) || Date.parse(b.created_at) - Date.parse(a.created_at));
    $('#streams').replaceChildren(...list.map(card));
    setText($('#state'), list.length ? '' : 'No streams right now — check back soon.');
  } catch (err) {
    setText($('#state'), `Could not load streams (${err.message}); retrying…`);
  }
}

setParts($('#who'), session.me() ? session.label() : []);
load();
setInterval(load, 5000);
