// The public HTTP API as the pages use it: JSON in and out, bearer token, errors as
// ApiError carrying the API's error code.

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || (status === 0 ? 'network' : 'http_' + status);
    this.retryAfter = retryAfter;
  }
}

export class Api {
  constructor(token) { this.token = token || ''; }

  setToken(token) { this.token = token || ''; }

  async request(method, path, body, headers = {}) {
    const init = { method, headers: { Accept: 'application/json', ...headers }, cache: 'no-store' };
    if (this.token) init.headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, 'network', 'Network error: the server could not be reached.');
    }
    if (res.status === 204) return null;
    let data = null;
    const text = await res.text();
    if (text) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
    if (!res.ok) {
      const e = (data && data.error) || {};
      throw new ApiError(res.status, e.code, e.message, res.headers.get('Retry-After'));
    }
    return data;
  }

  get(path) { return this.request('GET', path); }
  post(path, body, headers) { return this.request('POST', path, body === undefined ? {} : body, headers); }
  patch(path, body) { return this.request('PATCH', path, body); }
  del(path) { return this.request('DELETE', path); }

  // Stream-level calls used by more than one page.
  stream(sid) { return this.get(`/api/streams/${sid}`); }
  products(sid) { return this.get(`/api/streams/${sid}/products`); }
  sales(sid) { return this.get(`/api/streams/${sid}/sales`); }

  // buy holds one unit (of a sale or a product) and checks out exactly that hold; with
  // `held` (a hold of the buyer's, taken by an earlier try) it checks out that one.
  async buy({ saleId, productId, quantity = 1, idempotencyKey, held }) {
    const item = saleId ? { sale_id: saleId, quantity } : { product_id: productId, quantity };
    const hold = held || await this.post('/api/cart/items', item);
    const key = idempotencyKey || crypto.randomUUID();
    const body = { hold_ids: [hold.id] };
    try {
      return { hold, order: await this.post('/api/checkout', body, { 'Idempotency-Key': key }) };
    } catch (err) {
      // A lost response is retried once with the same key: the server answers with the
      // order it placed, never a second one.
      if (err.code === 'network') {
        return { hold, order: await this.post('/api/checkout', body, { 'Idempotency-Key': key }) };
      }
      err.hold = hold;
      throw err;
    }
  }
}

// describeBuyError turns an API error from a purchase into words for the buyer.
export function describeBuyError(err, perUserLimit) {
  switch (err.code) {
    case 'sold_out': return 'Sold out — every unit is taken.';
    case 'limit_exceeded': return perUserLimit ? `Limit reached: ${perUserLimit} per person.` : 'Limit reached for this sale.';
    case 'sale_not_active': return 'This sale is not running right now.';
    case 'hold_expired': return 'Your hold expired before checkout. Please try again.';
    case 'not_found': return 'This item is no longer available.';
    case 'unauthorized': return 'Please sign in to buy.';
    case 'rate_limited': return 'Too many tries — wait a moment and try again.';
    case 'unavailable': return 'The shop is busy right now — try again in a moment.';
    case 'network': return 'Network problem — check your connection and try again.';
    default: return err.message || 'Something went wrong.';
  }
}
