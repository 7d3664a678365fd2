// StreamModel: the state of one stream as the studio and moderation consoles see it,
// loaded over HTTP and kept current by the live channel's events. Views subscribe to
// named changes ('stream', 'products', 'pins', 'sales', 'viewers', 'media', 'conn').
import { Clock, newestOnly, throttle } from './util.js';

export class StreamModel {
  constructor(sid, api) {
    this.sid = sid;
    this.api = api;
    this.clock = new Clock();
    this.stream = null;
    this.products = new Map();
    this.pinned = [];
    this.sales = new Map();
    this.viewers = 0;
    this.media = { audio_muted: false, video_muted: false };
    this.conn = 'connecting';
    this.listeners = new Map();
    // Stock events carry only `remaining`; held and sold come from a fresh read.
    this.refreshSales = throttle(() => this.loadSales(), 500);
    this.refreshProducts = throttle(() => this.loadProducts(), 500);
    this.fetchProducts = newestOnly(() => this.api.products(this.sid));
    this.fetchSales = newestOnly(() => this.api.sales(this.sid));
  }

  on(what, fn) {
    if (!this.listeners.has(what)) this.listeners.set(what, []);
    this.listeners.get(what).push(fn);
  }

  emit(what) {
    for (const fn of this.listeners.get(what) || []) fn(this);
    for (const fn of this.listeners.get('any') || []) fn(this, what);
  }

  async load() {
    this.stream = await this.api.stream(this.sid);
    this.emit('stream');
    await Promise.all([this.loadProducts(), this.loadSales()]);
  }

  async loadProducts() {
    try {
      const list = await this.fetchProducts();
      if (!list) return; // a newer load has answered
      this.products = new Map(list.map((p) => [p.id, p]));
      this.emit('products');
    } catch { /* the next event or poll retries */ }
  }

  async loadSales() {
    try {
      const list = await this.fetchSales();
      if (!list) return; // a newer load has answered
      this.sales = new Map(list.map((s) => [s.id, s]));
      this.emit('sales');
    } catch { /* the next event or poll retries */ }
  }

  currency() {
    for (const p of this.products.values()) return p.currency;
    return '';
  }

  // figures sums what the stream has held and sold, at product and sale prices.
  figures() {
    let held = 0;
    let sold = 0;
    let revenue = 0;
    for (const p of this.products.values()) {
      held += p.held;
      sold += p.sold;
      revenue += p.sold * p.price_cents;
    }
    for (const s of this.sales.values()) {
      held += s.held;
      sold += s.sold;
      revenue += s.sold * s.price_cents;
    }
    return { viewers: this.viewers, held, sold, revenue };
  }

  // handlers returns the live channel's handlers; extra ones (chat …) are merged in.
  handlers(extra = {}) {
    const own = {
      onStatus: (s) => { this.conn = s; this.emit('conn'); },
      snapshot: (ev) => {
        this.stream = ev.stream;
        for (const p of ev.pinned) this.products.set(p.id, p);
        this.pinned = ev.pinned.map((p) => p.id);
        for (const s of ev.sales) this.sales.set(s.id, s);
        this.viewers = ev.viewers;
        this.media = ev.media || this.media;
        ['stream', 'pins', 'sales', 'viewers', 'media'].forEach((w) => this.emit(w));
        this.refreshProducts();
        this.refreshSales();
      },
      pin: (ev) => {
        this.products.set(ev.product.id, ev.product);
        if (!this.pinned.includes(ev.product.id)) this.pinned.push(ev.product.id);
        this.emit('pins');
      },
      unpin: (ev) => {
        this.pinned = this.pinned.filter((id) => id !== ev.product_id);
        this.emit('pins');
      },
      product: (ev) => {
        this.products.set(ev.product.id, ev.product);
        if (ev.product.hidden) this.pinned = this.pinned.filter((id) => id !== ev.product.id);
        this.emit('products');
        this.emit('pins');
      },
      sale: (ev) => {
        this.sales.set(ev.sale.id, ev.sale);
        this.emit('sales');
        this.refreshProducts(); // ended sales give units back to the product
      },
      stock: (ev) => {
        if (!ev.sale_id) {
          const p = this.products.get(ev.product_id);
          if (p) {
            p.stock = ev.remaining;
            this.emit('products');
          }
          this.refreshProducts(); // held and sold
          return;
        }
        const s = this.sales.get(ev.sale_id);
        if (s) {
          s.remaining = ev.remaining;
          this.emit('sales');
        }
        this.refreshSales();
      },
      viewers: (ev) => { this.viewers = ev.count; this.emit('viewers'); },
      media: (ev) => {
        this.media = { audio_muted: ev.audio_muted, video_muted: ev.video_muted };
        this.emit('media');
      },
      stream: (ev) => { this.stream = ev.stream; this.emit('stream'); },
    };
    const all = { ...own, ...extra };
    const wrapped = {};
    for (const [type, fn] of Object.entries(all)) {
      wrapped[type] = type === 'onStatus' ? fn : (ev) => {
        this.clock.observe(ev.ts);
        this.lastType = type;
        if (own[type] && extra[type]) own[type](ev);
        fn(ev);
        this.emit('event');
      };
    }
    if (extra.onStatus) wrapped.onStatus = (s) => { own.onStatus(s); extra.onStatus(s); };
    return wrapped;
  }
}
