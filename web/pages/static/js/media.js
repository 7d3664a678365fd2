// WebRTC in the browser: a WHEP player that keeps itself playing (retries on failure,
// replaces a stalled session) and a WHIP publisher for the studio.

const iceWaitMs = 1000;

// waitForIce resolves when ICE gathering completes or after ms, whichever comes first:
// the server takes the offer with the candidates gathered so far.
function waitForIce(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const t = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

export class HttpError extends Error {
  constructor(status, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
  }
}

// exchange makes the local offer, POSTs it and applies the answer; returns the
// resource URL.
async function exchange(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc, iceWaitMs);
  return post(pc, url, token);
}

// post sends the (gathered) local offer and applies the answer.
async function post(pc, url, token) {
  const headers = { 'Content-Type': 'application/sdp' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(url, { method: 'POST', headers, body: pc.localDescription.sdp });
  const text = await res.text();
  if (res.status !== 201) {
    let msg = '';
    try { msg = JSON.parse(text).error.message; } catch { msg = text.slice(0, 200); }
    throw new HttpError(res.status, msg);
  }
  const loc = res.headers.get('Location');
  await pc.setRemoteDescription({ type: 'answer', sdp: text });
  return loc ? new URL(loc, location.href).href : '';
}

function deleteResource(url, token) {
  if (!url) return;
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  fetch(url, { method: 'DELETE', headers, keepalive: true }).catch(() => {});
}

// WhepPlayer plays /whep/{sid} into a <video>. States reported through onState:
// 'connecting', 'playing', 'waiting' (connected, no picture yet), 'retrying', 'ended'.
export class WhepPlayer {
  constructor(video, url, { onState } = {}) {
    this.video = video;
    this.url = url;
    this.onState = onState || (() => {});
    this.pc = null;
    this.resource = '';
    this.stopped = true;
    this.attempt = 0;
    this.retryTimer = null;
    this.watchTimer = null;
    this.expectVideo = false;
    this.lastTime = -1;
    this.stalledFor = 0;
    this.blocked = false; // the browser refused to play without a user's gesture
  }

  start() {
    this.stopped = false;
    this.connect();
    this.watchTimer = setInterval(() => this.watch(), 1000);
    window.addEventListener('pagehide', () => this.stop());
  }

  stop(state = 'stopped') {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.watchTimer);
    this.teardown();
    this.onState(state);
  }

  // setExpectVideo tells the player whether a picture should be flowing (stream live
  // and video not muted); only then does a stall trigger a new session.
  setExpectVideo(v) {
    this.expectVideo = v;
    this.stalledFor = 0;
  }

  teardown() {
    if (this.pc) {
      this.pc.onconnectionstatechange = null;
      this.pc.ontrack = null;
      this.pc.close();
      this.pc = null;
    }
    deleteResource(this.resource);
    this.resource = '';
  }

  async connect() {
    if (this.stopped) return;
    this.teardown();
    this.onState(this.attempt === 0 ? 'connecting' : 'retrying');
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    this.pc = pc;
    const media = new MediaStream();
    pc.addTransceiver('video', { direction: 'recvonly', streams: [media] });
    pc.addTransceiver('audio', { direction: 'recvonly', streams: [media] });
    pc.ontrack = (e) => {
      if (!media.getTracks().includes(e.track)) media.addTrack(e.track);
      if (this.video.srcObject !== media) this.video.srcObject = media;
      this.video.play().catch(() => {
        if (this.pc !== pc || this.stopped) return;
        this.blocked = true;
        this.onState('blocked');
      });
      if (e.track.kind === 'video') this.awaitFirstFrame(pc);
    };
    pc.onconnectionstatechange = () => this.onConnectionState(pc);
    try {
      this.resource = await exchange(pc, this.url, '');
      if (this.pc !== pc) {
        deleteResource(this.resource);
        return;
      }
      this.onState(this.blocked ? 'blocked' : 'waiting');
    } catch (err) {
      if (this.pc !== pc) return;
      if (err instanceof HttpError && (err.status === 409 || err.status === 404)) {
        this.stop('ended');
        return;
      }
      this.retry();
    }
  }

  onConnectionState(pc) {
    if (this.pc !== pc || this.stopped) return;
    const s = pc.connectionState;
    if (s === 'failed') this.retry();
    if (s === 'disconnected') {
      setTimeout(() => {
        if (this.pc === pc && pc.connectionState === 'disconnected') this.retry();
      }, 3000);
    }
  }

  retry() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.attempt++;
    const delay = Math.min(5000, 300 * 2 ** Math.min(this.attempt - 1, 4));
    this.onState('retrying');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  // awaitFirstFrame reports playing when the session's first frame is shown: the
  // once-a-second watch alone left the overlay up to a second over a moving picture.
  awaitFirstFrame(pc) {
    const v = this.video;
    const shown = () => {
      if (this.pc === pc && !this.stopped && v.videoWidth > 0) this.markPlaying();
    };
    if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(shown);
    else v.addEventListener('playing', shown, { once: true });
  }

  markPlaying() {
    if (this.stalledFor !== 0 || this.attempt !== 0 || !this.playing) this.onState('playing');
    this.playing = true;
    this.attempt = 0;
    this.stalledFor = 0;
  }

  // resume plays after a refusal, from a user's gesture (a tap or a key on a button).
  resume() {
    return this.video.play().then(() => {
      this.blocked = false;
      this.onState('waiting');
    }).catch(() => {});
  }

  // watch reports playing once frames advance and starts over after a long stall (a
  // video the browser refused to play is not stalled: it waits for resume).
  watch() {
    if (this.stopped || !this.pc || this.blocked) return;
    const t = this.video.currentTime;
    const moving = this.video.videoWidth > 0 && t !== this.lastTime;
    this.lastTime = t;
    if (moving) {
      this.markPlaying();
      return;
    }
    this.playing = false;
    // A background tab may not decode: only a visible page judges a stall.
    if (!this.expectVideo || document.hidden) return;
    if (this.pc.connectionState === 'connecting' || this.pc.connectionState === 'new') return;
    this.stalledFor++;
    if (this.stalledFor >= 8) {
      this.stalledFor = 0;
      this.retry();
    }
  }
}

// A new connection starts with a low bandwidth estimate (~300 kbit/s): an encoder fed
// 720p then drops its first frames and scales down, which delays the first picture by
// up to a second or more. So the broadcast starts at 360p (shorter side) and goes to
// full resolution a few seconds later.
const startShortSide = 360;
const fullResolutionAfterMs = 3000;

function startScale(track) {
  const s = track.getSettings ? track.getSettings() : {};
  const short = Math.min(s.width || 0, s.height || 0);
  return short > startShortSide ? short / startShortSide : 1;
}

// WhipPublisher sends a local MediaStream to /whip/{sid}. prepare() builds the
// connection and gathers ICE ahead of time, so that publish() — the Go live click — only
// has to POST the offer. onState reports 'connecting', 'live', 'disconnected', 'failed',
// 'stopped'.
export class WhipPublisher {
  constructor(url, token, { onState } = {}) {
    this.url = url;
    this.token = token;
    this.onState = onState || (() => {});
    this.pc = null;
    this.resource = '';
    this.senders = {};
    this.prepared = null; // promise of a gathered offer
  }

  prepare(stream) {
    if (this.prepared) return this.prepared;
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    this.pc = pc;
    for (const track of stream.getTracks()) {
      const init = { direction: 'sendonly', streams: [stream] };
      const scale = track.kind === 'video' ? startScale(track) : 1;
      if (scale > 1) init.sendEncodings = [{ scaleResolutionDownBy: scale }];
      const tr = pc.addTransceiver(track, init);
      this.senders[track.kind] = tr.sender;
    }
    pc.onconnectionstatechange = () => {
      if (this.pc !== pc) return;
      const s = pc.connectionState;
      if (s === 'connected') {
        this.onState('live');
        setTimeout(() => this.fullResolution(), fullResolutionAfterMs);
      }
      if (s === 'failed') this.onState('failed');
      if (s === 'disconnected') this.onState('disconnected');
    };
    this.prepared = (async () => {
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIce(pc, iceWaitMs);
    })();
    return this.prepared;
  }

  async publish(stream) {
    await this.prepare(stream);
    const pc = this.pc;
    this.onState('connecting');
    try {
      this.resource = await post(pc, this.url, this.token);
    } catch (err) {
      pc.close();
      this.pc = null;
      throw err;
    }
    return this;
  }

  // replaceTrack swaps the camera or microphone without a new session.
  async replaceTrack(track) {
    const sender = this.senders[track.kind];
    if (sender) await sender.replaceTrack(track);
  }

  // fullResolution lifts the start-up downscale once the bandwidth estimate has grown.
  async fullResolution() {
    const sender = this.senders.video;
    if (!sender || !this.pc) return;
    const params = sender.getParameters();
    if (!params.encodings || !params.encodings.length || (params.encodings[0].scaleResolutionDownBy || 1) === 1) return;
    params.encodings[0].scaleResolutionDownBy = 1;
    try { await sender.setParameters(params); } catch { /* keep the lower resolution */ }
  }

  // discard drops a prepared connection that was never published.
  discard() {
    if (this.pc && !this.resource) {
      this.pc.close();
      this.pc = null;
    }
  }

  stop() {
    const pc = this.pc;
    this.pc = null;
    if (pc) pc.close();
    const res = this.resource;
    this.resource = '';
    if (!res) return Promise.resolve();
    return fetch(res, { method: 'DELETE', headers: { Authorization: `Bearer ${this.token}` }, keepalive: true })
      .catch(() => {})
      .finally(() => this.onState('stopped'));
  }
}
