// Chat panel shared by the watch, studio and moderation pages. Messages arrive as
// `chat` events and leave on `chat_delete`; sending goes over the live channel.
import { h, setParts, timeOfDay } from './util.js';

const maxMessages = 200;
const maxNames = 5000;

export const muteChoices = [
  [10, '10 seconds'], [60, '1 minute'], [300, '5 minutes'], [600, '10 minutes'],
  [3600, '1 hour'], [86400, '24 hours'],
];

export class Chat {
  // opts: { send(text) → bool, me: () => claims|null, moderate?: {mute(userId, seconds), remove(id)},
  //         signIn?: Node shown instead of the form when signed out }
  constructor(root, opts) {
    this.root = root;
    this.opts = opts;
    this.messages = new Map();
    this.names = new Map(); // user id → display name, from their chat lines
    this.mutedUntil = 0;
    this.snapshots = 0;
    this.pending = []; // texts sent and not yet back as chat events, oldest first
    this.build();
    this.refreshForm();
  }

  build() {
    this.list = h('ol', { role: 'log', 'aria-live': 'polite', 'aria-label': 'Chat messages', tabindex: '0' });
    this.empty = h('p', { class: 'empty', text: 'No messages yet.' });
    this.noticeEl = h('p', { class: 'notice', role: 'status' });
    this.input = h('input', { id: this.root.id + '-text', name: 'text', maxlength: '500', autocomplete: 'off', placeholder: 'Say something…' });
    this.sendBtn = h('button', { type: 'submit', text: 'Send' });
    this.form = h('form', { class: 'row', onsubmit: (e) => this.submit(e) },
      h('label', { class: 'sr-only', for: this.input.id, text: 'Chat message' }), this.input, this.sendBtn);
    const header = [h('h2', { text: 'Chat' })];
    if (this.opts.moderate) {
      this.muteFor = h('select', { id: this.root.id + '-mute-for' },
        muteChoices.map(([s, label]) => h('option', { value: String(s), text: label })));
      this.muteFor.value = '300';
      header.push(h('div', { class: 'row' },
        h('label', { for: this.muteFor.id, text: 'Mute for' }), this.muteFor));
    }
    this.signInSlot = h('div');
    this.root.replaceChildren(...header, this.list, this.empty, this.noticeEl, this.form, this.signInSlot);
  }

  // refreshForm shows the form to signed-in users and the sign-in prompt otherwise.
  refreshForm() {
    const me = this.opts.me();
    this.form.hidden = !me;
    this.signInSlot.hidden = !!me;
    if (!me && this.opts.signIn) this.signInSlot.replaceChildren(this.opts.signIn);
  }

  submit(e) {
    e.preventDefault();
    const text = this.input.value.trim();
    if (!text) return;
    if (this.mutedUntil > Date.now()) {
      this.notice(`You are muted until ${new Date(this.mutedUntil).toLocaleTimeString()}.`);
      return;
    }
    if (!this.opts.send(text)) {
      this.notice('Not connected — your message was not sent. Reconnecting…');
      return;
    }
    this.pending.push(text);
    if (this.pending.length > 20) this.pending.shift();
    this.input.value = '';
    this.notice('');
  }

  // notice shows a sentence: strings and nodes, a person's name in a bdi() (util.js).
  notice(...parts) { setParts(this.noticeEl, ...parts); }

  // nameOf is the display name the chat has seen for a user id (their own for the
  // signed-in user), or the id itself when none was seen.
  nameOf(userId) {
    const me = this.opts.me();
    if (me && me.sub === userId && me.name) return me.name;
    return this.names.get(userId) || userId;
  }

  learnName(userId, name) {
    if (!name || !userId) return;
    this.names.delete(userId); // newest last: the oldest are forgotten first
    this.names.set(userId, name);
    if (this.names.size > maxNames) this.names.delete(this.names.keys().next().value);
  }

  add(ev) {
    if (this.messages.has(ev.id)) return;
    this.learnName(ev.user_id, ev.name);
    const me = this.opts.me();
    if (me && me.sub === ev.user_id) {
      const i = this.pending.indexOf(ev.text);
      if (i >= 0) this.pending.splice(i, 1);
    }
    // The name and the text are each a <bdi> (direction from their own first strong
    // letter, bidi-isolated): a bidi control in either (U+202A–U+202E, U+2066–U+2069,
    // unclosed) cannot reorder the other, the line's time or its buttons, and a
    // right-to-left message still reads right to left.
    const li = h('li', { dataset: { id: ev.id, user: ev.user_id } },
      h('bdi', { class: 'name', text: ev.name || ev.user_id, title: ev.user_id }),
      h('bdi', { class: 'text', text: ev.text }),
      h('span', { class: 'sr-only', text: ` at ${timeOfDay(ev.ts)}` }));
    if (this.opts.moderate) {
      const mod = this.opts.moderate;
      const label = ev.name || ev.user_id;
      li.append(h('span', { class: 'tools' },
        h('button', {
          class: 'small', type: 'button', text: 'Mute', 'aria-label': `Mute ${label}`,
          onclick: () => mod.mute(ev.user_id, Number(this.muteFor.value), label),
        }),
        h('button', {
          class: 'small danger', type: 'button', text: 'Delete', 'aria-label': `Delete message from ${label}`,
          onclick: () => mod.remove(ev.id, label),
        })));
    }
    if (me && me.sub === ev.user_id) li.classList.add('mine');
    const atBottom = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 30;
    this.list.append(li);
    this.messages.set(ev.id, li);
    while (this.messages.size > maxMessages) {
      const [id, el] = this.messages.entries().next().value;
      el.remove();
      this.messages.delete(id);
    }
    this.empty.hidden = true;
    if (atBottom) this.list.scrollTop = this.list.scrollHeight;
  }

  remove(id) {
    const li = this.messages.get(id);
    if (!li) return;
    li.remove();
    this.messages.delete(id);
    this.empty.hidden = this.messages.size > 0;
  }

  // snapshot takes the live channel's snapshot. It carries no chat: after the first (a
  // resume the server's history could not serve) the lines on screen may have been
  // deleted meanwhile, and no chat_delete will come for them, so they are cleared, and
  // the reader told.
  snapshot() {
    if (this.snapshots++ === 0 || this.messages.size === 0) return;
    for (const li of this.messages.values()) li.remove();
    this.messages.clear();
    this.empty.hidden = false;
    this.notice('Reconnected — earlier messages are no longer shown.');
  }

  // muted applies a `mute` event: to this user it explains, to others nothing.
  muted(ev) {
    const me = this.opts.me();
    if (!me || me.sub !== ev.user_id) return;
    this.mutedUntil = Date.parse(ev.until) || 0;
    if (this.mutedUntil > Date.now()) {
      this.notice(`A moderator muted you until ${new Date(this.mutedUntil).toLocaleTimeString()}.`);
    } else {
      this.notice('');
    }
  }

  // error shows an `error` event meant for this client. A refused message is put back
  // in the field (when it is empty): the newest one sent, since refusals (too fast,
  // muted) fall on the latest messages, and an error can overtake the echo of an
  // earlier accepted one. A signed-in user's message refused as unauthorized (its token
  // expired while the page was open) is put back as well, ready to send once signed in again.
  error(ev) {
    const until = /until (\S+)/.exec(ev.message || '');
    const mutedUntil = until && !Number.isNaN(Date.parse(until[1])) ? new Date(until[1]).toLocaleTimeString() : '';
    const words = {
      // Signed in when the page opened: the token has since expired (the channel stays).
      unauthorized: this.opts.me() ? 'Your sign-in has expired: your message was not sent. Sign in again to chat.' : 'Sign in to chat.',
      muted: mutedUntil ? `You are muted until ${mutedUntil}: your message was not sent.` : 'You are muted for now: your message was not sent.',
      rate_limited: 'Slow down: your message was not sent. Try again in a moment.',
      unavailable: 'Chat is busy: your message was not sent. Try again in a moment.',
      bad_request: `Your message was not sent: ${ev.message || 'it could not be read'}.`,
    };
    const refused = ['muted', 'rate_limited', 'unavailable', 'bad_request', 'unauthorized'].includes(ev.code);
    if (refused && this.pending.length > 0) {
      const text = this.pending.pop();
      if (this.input.value === '') this.input.value = text;
    }
    this.notice(words[ev.code] || ev.message || ev.code);
  }
}
