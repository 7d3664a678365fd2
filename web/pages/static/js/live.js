// LiveChannel keeps one websocket to /ws/{sid}: it reconnects with backoff, resumes
// from the last seq it applied (?since=, with that event's ts as since_ts: a server
// whose log restarted since answers a snapshot, not another log's events), notices
// gaps and stalls, and hands each event to the page's handler for its type.

export class LiveChannel {
  // handlers: { [type]: fn(event) }, plus onStatus(status, detail) where status is
  // 'connecting' | 'open' | 'reconnecting' | 'ended'.
  constructor(sid, token, handlers) {
    this.sid = sid;
    this.token = token || '';
    this.handlers = handlers;
    this.seq = 0;
    this.seqTs = ''; // the ts of the event at seq (a snapshot's seq_ts)
    this.ws = null;
    this.attempt = 0;
    this.ended = false;
    this.closed = false;
    this.lastFrame = 0;
    this.pingSentAt = 0; // our ping not answered yet (no frame since)
    this.timer = null;
    this.keepalive = null;
  }

  start() {
    this.closed = false;
    this.connect();
    this.keepalive = setInterval(() => this.checkAlive(), 2000);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && !this.isOpen()) this.reconnectNow();
    });
    window.addEventListener('online', () => this.reconnectNow());
    // A device that says it lost its network: what is shown may be out of date from
    // now, not only once the socket notices (a silent one: up to 35 s).
    window.addEventListener('offline', () => this.reconnectNow());
  }

  stop() {
    this.closed = true;
    clearInterval(this.keepalive);
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
  }

  setToken(token) {
    this.token = token || '';
    this.reconnectNow();
  }

  isOpen() { return this.ws && this.ws.readyState === WebSocket.OPEN; }

  url() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = new URLSearchParams();
    if (this.token) q.set('token', this.token);
    // The server sends a heartbeat on a silent stream (every ~5 s), so a live
    // connection is never silent for the 7 s that make us ping: a ping costs the
    // server far more than its share of a heartbeat (docs/BENCHMARKS.md, Pages).
    q.set('heartbeat', '1');
    if (this.seq > 0) {
      q.set('since', String(this.seq));
      q.set('since_ts', this.seqTs);
    }
    const qs = q.toString();
    return `${proto}//${location.host}/ws/${encodeURIComponent(this.sid)}${qs ? '?' + qs : ''}`;
  }

  status(s, detail) {
    if (this.handlers.onStatus) this.handlers.onStatus(s, detail);
  }

  connect() {
    if (this.closed || this.ended) return;
    if (navigator.onLine === false) {
      this.scheduleReconnect(); // the online event comes sooner
      return;
    }
    this.status(this.attempt === 0 && this.seq === 0 ? 'connecting' : 'reconnecting');
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.connectStartedAt = Date.now();
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.lastFrame = Date.now();
      this.pingSentAt = 0;
      // A resume with nothing missed sends no frame: being open is enough.
      this.attempt = 0;
      this.status('open');
    };
    ws.onmessage = (m) => {
      if (this.ws !== ws) return;
      this.lastFrame = Date.now();
      this.pingSentAt = 0;
      let ev;
      try { ev = JSON.parse(m.data); } catch { return; }
      this.receive(ev);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closed || this.ended) return;
      this.scheduleReconnect(e.code);
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  receive(ev) {
    if (typeof ev.seq === 'number' && ev.type !== 'snapshot') {
      if (ev.seq <= this.seq) return; // already applied (resume overlap)
      if (this.seq > 0 && ev.seq !== this.seq + 1) {
        // A gap: resume from what we have; the server replays or snapshots.
        this.reconnectNow();
        return;
      }
    }
    if (ev.type === 'snapshot' || typeof ev.seq === 'number') {
      this.seq = typeof ev.seq === 'number' ? ev.seq : this.seq;
      this.seqTs = (ev.type === 'snapshot' ? ev.seq_ts : ev.ts) || '';
    }
    const fn = this.handlers[ev.type];
    if (fn) {
      try { fn(ev); } catch (err) { console.error('event', ev.type, err); }
    }
    const streamEnded = (ev.type === 'stream' || ev.type === 'snapshot') && ev.stream && ev.stream.status === 'ended';
    if (streamEnded) {
      this.ended = true;
      this.status('ended');
    }
  }

  scheduleReconnect(code) {
    clearTimeout(this.timer);
    this.attempt++;
    // 0.25 s, 0.5 s, 1 s, 2 s … capped at 8 s, with jitter so a crowd does not stampede.
    const base = Math.min(8000, 250 * 2 ** Math.min(this.attempt - 1, 5));
    const delay = base / 2 + Math.random() * base / 2;
    this.status('reconnecting', { code, delay });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.closed || this.ended) return;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try { ws.close(4000); } catch { /* already closed */ }
    }
    this.attempt++;
    this.status('reconnecting');
    this.connect();
  }

  // checkAlive pings a connection silent for 7 s and replaces it when nothing answers
  // within 4 s (or a handshake unanswered for 10 s): a connection whose route is gone
  // can stay open, silent, for minutes, while the page shows its numbers as current.
  // A live one is not silent that long (events, or the server's heartbeats), so only
  // a server that stopped heartbeats (an older one) or a dead route gets pinged.
  checkAlive() {
    const now = Date.now();
    if (this.ws && this.ws.readyState === WebSocket.CONNECTING && now - this.connectStartedAt > 10000) {
      this.reconnectNow(); // a handshake lost on the way answers never
      return;
    }
    if (!this.isOpen()) return;
    if (this.pingSentAt) {
      if (now - this.pingSentAt > 4000) this.reconnectNow();
    } else if (now - this.lastFrame > 7000) {
      if (this.send({ type: 'ping' })) this.pingSentAt = now;
    }
  }

  send(obj) {
    if (!this.isOpen()) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }
}
