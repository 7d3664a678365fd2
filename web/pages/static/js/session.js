// Session: the page's token (from ?token= by link, kept in sessionStorage), who it
// says we are, and the sign-in prompt (a guest name form when the server allows it).
import { bdi, claims, h, metaContent, storeToken, takeToken, forgetToken } from './util.js';

export class Session {
  constructor() {
    this.token = takeToken();
    this.claims = claims(this.token);
    if (this.token && !this.claims) {
      // Expired or unreadable: drop it rather than get 401 on every call.
      forgetToken();
      this.token = '';
    }
    this.listeners = [];
  }

  me() { return this.claims; }

  role() { return this.claims ? this.claims.role : ''; }

  set(token) {
    this.token = token;
    this.claims = claims(token);
    storeToken(token);
    for (const fn of this.listeners) fn(this);
  }

  onChange(fn) { this.listeners.push(fn); }

  // label is who is signed in, for setParts: the name (as the server shows it) in a
  // <bdi>, so a bidi control in it cannot move the role.
  label() {
    if (!this.claims) return ['Not signed in'];
    return [bdi(this.claims.name || this.claims.sub), ` · ${this.claims.role}`];
  }
}

export function guestEnabled() {
  return metaContent('livecart-guest') === 'on';
}

const promptCount = {};

// signInPrompt explains how to sign in; with guest tokens on it offers a name form.
// Each call makes a new node (one per place it is shown).
export function signInPrompt(session, api, what) {
  if (!guestEnabled()) {
    return h('p', { class: 'note' },
      `Sign in to ${what}: open this page from the link your shop gave you.`);
  }
  // The first prompt for a purpose gets a plain id (guest-chat, guest-buy), later ones a
  // numbered one: ids stay unique when several prompts are on the page.
  promptCount[what] = (promptCount[what] || 0) + 1;
  const base = `guest-${what.replace(/\W+/g, '-')}`;
  const id = promptCount[what] === 1 ? base : `${base}-${promptCount[what]}`;
  const input = h('input', { id, name: 'name', maxlength: '40', required: true, autocomplete: 'nickname' });
  const out = h('p', { class: 'outcome bad', role: 'status' });
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      const name = input.value.trim();
      if (!name) return;
      try {
        const res = await api.post('/api/guest', { name });
        api.setToken(res.token);
        session.set(res.token);
      } catch (err) {
        out.textContent = err.message;
      }
    },
  },
  h('label', { for: id, text: `Pick a display name to ${what}` }),
  h('div', { class: 'row' }, input, h('button', { type: 'submit', class: 'primary', text: 'Join' })),
  out);
  return form;
}
