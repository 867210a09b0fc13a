// One WebSocket link at a time to /ws: hello (with the stored token, or
// followed by login), commands matched to replies by id, a ping every 20 s,
// and reconnects with exponential backoff plus jitter. A link is treated as
// dead when the browser reports it offline or a ping goes unanswered; it is
// then dropped at once (a new link and catch-up lose nothing).
//
// Session rebuild (docs/protocol.md §10): hello and login ask for
// rebuild: true; a reconnect sends hello with resume {sessionId,
// rebuildToken, lastSessionSeq} and the cursors of every known
// conversation. A refused rebuild falls back to a plain hello (token +
// cursors) on the same link. Session events are deduped by seq and acked
// here, cumulatively.
//
// Events (CustomEvent):
//   "state"         ({state, code, retryAt}) idle, connecting, unauthenticated,
//                   ready, waiting, offline, stopped
//   "session"       (SessionInfo + cursorIds: Set of conversations named in
//                   cursors, whose missed messages the server replays)
//   "resume-state"  ({sessionId, rebuildToken, lastSessionSeq} or null) to persist
//   "message"       (Message) a live conversation message
//   "session-event" (SessionEvent)
//   "channel"       (the frame) a live channelMessage or channelEvent (§16)
//   "auth-failed"   ({code}) the stored token was refused
//   "stopped"       ({code}) closed with 4004/4005/4006: no auto-reconnect

import { NO_RECONNECT, PROTOCOL_VERSION, ProtocolError, REBUILD_REFUSED, num } from './protocol.js';

const UNAUTH_OK = new Set(['hello', 'register', 'login', 'ping']);
// The server allows 256 commands awaiting replies per link; stay below.
const MAX_IN_FLIGHT = 200;
// A local close code for links the client abandons (never sent by servers).
const CLOSE_CLIENT_DROP = 4000;

export class Connection extends EventTarget {
  constructor({ url, deviceId, pingMs = 20000, pongTimeoutMs = 10000, callTimeoutMs = 15000 }) {
    super();
    this.url = url;
    this.device = { id: deviceId, type: 'DEVICE_TYPE_WEB' };
    this.pingMs = pingMs;
    this.pongTimeoutMs = pongTimeoutMs;
    this.callTimeoutMs = callTimeoutMs;
    this.token = '';
    this.wanted = false; // keep a link up (we have a token)
    this.state = 'idle';
    this.ws = null;
    this.gen = 0; // link generation: events of older links are ignored
    this.nextId = 0;
    this.pending = new Map();
    this.queue = [];
    this.attempt = 0;
    this.retryTimer = 0;
    this.pingTimer = 0;
    this.opening = null;
    this.helloAt = 0;
    this.cursors = () => []; // [{conversationId, seq}] for hello, set by the app
    this.session = null; // {sessionId, rebuildToken} of a rebuildable session
    this.lastSessionSeq = 0; // highest session event seq received
    this.ackTimer = 0;
    // For tests and debugging: how the last link was authenticated.
    this.debug = { sessionId: '', rebuilt: false, fresh: 0, rebuilds: 0, refusals: [] };
    addEventListener('online', () => this.onOnline());
    addEventListener('offline', () => this.onOffline());
  }

  // start keeps an authenticated link up with token.
  start(token) {
    this.token = token;
    this.wanted = true;
    this.attempt = 0;
    this.connectNow();
  }

  // stop closes the link and stops reconnecting.
  stop() {
    this.wanted = false;
    this.token = '';
    clearTimeout(this.retryTimer);
    this.drop(1000, 'idle');
  }

  connectNow() {
    clearTimeout(this.retryTimer);
    if (!this.wanted || this.ws) return;
    if (!navigator.onLine) {
      this.setState('offline');
      return;
    }
    this.connectWithToken();
  }

  // restoreSession sets the stored rebuildable session (or null).
  restoreSession(s) {
    if (s && typeof s.sessionId === 'string' && typeof s.rebuildToken === 'string') {
      this.session = { sessionId: s.sessionId, rebuildToken: s.rebuildToken };
      this.lastSessionSeq = num(s.lastSessionSeq);
    } else {
      this.session = null;
      this.lastSessionSeq = 0;
    }
  }

  resumeState() {
    return this.session ? { ...this.session, lastSessionSeq: this.lastSessionSeq } : null;
  }

  // freshSession forgets the old session before a hello or login that opens
  // a new one: its events may arrive before the reply (§10.4).
  freshSession() {
    this.session = null;
    this.lastSessionSeq = 0;
    this.emit('resume-state', null);
  }

  async connectWithToken() {
    try {
      await this.open();
      const cursors = this.cursors();
      const hello = { versions: [PROTOCOL_VERSION], token: this.token, device: this.device, cursors };
      let ok = null;
      if (this.session) {
        const resume = { ...this.session, lastSessionSeq: String(this.lastSessionSeq) };
        try {
          ok = await this.call('hello', { ...hello, resume });
        } catch (e) {
          if (!REBUILD_REFUSED.has(e.code)) throw e;
          this.debug.refusals.push(e.code); // the link still waits for hello
        }
      }
      if (!ok) {
        this.freshSession();
        ok = await this.call('hello', { ...hello, rebuild: true });
      }
      if (!ok.session) throw new ProtocolError('bad_token', 'no session');
      this.authenticated(ok.session, cursors);
    } catch (e) {
      if (e.code === 'closed') return; // closed() has scheduled the reconnect
      if (e.code === 'timeout' || e.code === 'unavailable' || e.code === 'storage' || e.code === 'rate_limited') {
        this.drop(CLOSE_CLIENT_DROP, 'waiting'); // hello unanswered: try again
        return;
      }
      // bad_token (unknown, revoked, expired) or a refused device: log in again.
      this.wanted = false;
      this.token = '';
      this.drop(1000, 'idle');
      this.emit('auth-failed', { code: e.code });
    }
  }

  // register creates an account on an unauthenticated link.
  async register(username, password, displayName) {
    await this.ensureHello();
    return this.call('register', { username, password, displayName });
  }

  // login authenticates the link; afterwards the link is kept up.
  async login(username, password) {
    await this.ensureHello();
    this.freshSession();
    const li = await this.call('login', { username, password, device: this.device, rebuild: true });
    this.token = li.token;
    this.wanted = true;
    this.authenticated(li.session, []);
    return li;
  }

  // logout revokes the token (the server closes with 4005).
  async logout() {
    this.wanted = false;
    try {
      if (this.state === 'ready') await this.call('logout', {}, 5000);
    } catch {
      // The token dies with the close anyway, or at expiry.
    }
    this.token = '';
    this.restoreSession(null);
    this.drop(1000, 'idle');
  }

  // ensureHello opens an unauthenticated link, or reuses one young enough
  // to finish login before the server's auth deadline (10 s).
  async ensureHello() {
    if (this.ws && this.state === 'unauthenticated' && Date.now() - this.helloAt < 6000) return;
    this.drop(1000, 'idle');
    if (!navigator.onLine) throw new ProtocolError('closed', 'offline');
    await this.open();
    this.helloAt = Date.now();
    await this.call('hello', { versions: [PROTOCOL_VERSION] });
    this.setState('unauthenticated');
  }

  // open starts a new link and resolves when the socket is open.
  open() {
    const gen = ++this.gen;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.setState('connecting');
    return new Promise((resolve, reject) => {
      this.opening = { resolve, reject, gen };
      ws.onopen = () => {
        if (gen !== this.gen) return;
        this.opening = null;
        this.startPing(gen);
        resolve();
      };
      ws.onmessage = (ev) => this.onFrame(gen, ev.data);
      ws.onclose = (ev) => this.onClose(gen, ev.code);
      ws.onerror = () => {}; // a close event follows
    });
  }

  authenticated(session, cursors) {
    this.attempt = 0;
    const rebuilt = !!session.rebuilt;
    if (!rebuilt) {
      this.session = session.rebuild && session.rebuildToken ? { sessionId: session.sessionId, rebuildToken: session.rebuildToken } : null;
    }
    Object.assign(this.debug, { sessionId: session.sessionId || '', rebuilt });
    if (rebuilt) this.debug.rebuilds++;
    else this.debug.fresh++;
    this.emit('resume-state', this.resumeState());
    this.setState('ready');
    this.emit('session', { ...session, cursorIds: new Set(cursors.map((c) => c.conversationId)) });
    if (this.lastSessionSeq) this.ackLater();
  }

  // onSessionEvent drops events already received (§10.9), records the seq
  // for the next resume and acks cumulatively.
  onSessionEvent(ev) {
    const seq = num(ev.seq);
    if (seq && seq <= this.lastSessionSeq) return;
    if (seq) this.lastSessionSeq = seq;
    if (this.session) this.emit('resume-state', this.resumeState());
    this.emit('session-event', ev);
    this.ackLater();
  }

  ackLater() {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = 0;
      if (this.state !== 'ready' || !this.lastSessionSeq) return; // acked after the next hello
      this.call('ack', { sessionSeq: String(this.lastSessionSeq) }).catch(() => {});
    }, 50);
  }

  // call sends one command and resolves with its reply body; an error
  // reply rejects with ProtocolError. Commands beyond MAX_IN_FLIGHT wait
  // in order.
  call(name, body, timeoutMs = this.callTimeoutMs) {
    return new Promise((resolve, reject) => {
      const job = { name, body, timeoutMs, resolve, reject, gen: this.gen };
      if (!this.usable(name)) {
        reject(new ProtocolError('closed', 'not connected'));
      } else if (this.queue.length || this.pending.size >= MAX_IN_FLIGHT) {
        this.queue.push(job);
      } else {
        this.transmit(job);
      }
    });
  }

  usable(name) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    return this.state === 'ready' || UNAUTH_OK.has(name);
  }

  transmit(job) {
    if (job.gen !== this.gen || !this.usable(job.name)) {
      job.reject(new ProtocolError('closed', 'not connected'));
      return;
    }
    const id = String(++this.nextId);
    job.timer = setTimeout(() => {
      if (this.pending.get(id) !== job) return;
      this.pending.delete(id);
      job.reject(new ProtocolError('timeout', `${job.name} unanswered`));
      this.pump();
    }, job.timeoutMs);
    this.pending.set(id, job);
    this.ws.send(JSON.stringify({ id, [job.name]: job.body }));
  }

  pump() {
    while (this.queue.length && this.pending.size < MAX_IN_FLIGHT) this.transmit(this.queue.shift());
  }

  onFrame(gen, data) {
    if (gen !== this.gen) return;
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      return;
    }
    if (f.channelMessage || f.channelEvent) {
      this.emit('channel', f); // online-only channel frames (channels.js)
      return;
    }
    if (f.re) {
      const job = this.pending.get(f.re);
      if (!job) return; // timed out earlier
      this.pending.delete(f.re);
      clearTimeout(job.timer);
      if (f.error) job.reject(new ProtocolError(f.error.code, f.error.message, num(f.error.retryAfterMs)));
      else {
        const key = Object.keys(f).find((k) => k !== 're');
        job.resolve((key && f[key]) || {});
      }
      this.pump();
    } else if (f.message) {
      this.emit('message', f.message);
    } else if (f.sessionEvent) {
      this.onSessionEvent(f.sessionEvent);
    } else if (f.error) {
      // The server could not read one of our frames (no "re"): a client bug.
      console.warn('parley: server could not read a frame:', f.error.code);
    }
  }

  onClose(gen, code) {
    if (gen !== this.gen) return;
    this.closed(code);
  }

  // drop abandons the current link at once: the browser may take long to
  // finish a close handshake on a dead network, and nothing of that link
  // matters any more.
  drop(code, nextState) {
    const ws = this.ws;
    if (!ws) {
      if (nextState === 'idle' && this.state !== 'stopped') this.setState('idle');
      return;
    }
    this.gen++;
    try {
      ws.close(code === 1000 ? 1000 : CLOSE_CLIENT_DROP);
    } catch {
      // already closing
    }
    this.closed(code, nextState);
  }

  closed(code, nextState) {
    this.ws = null;
    clearInterval(this.pingTimer);
    if (this.opening) {
      this.opening.reject(new ProtocolError('closed', `closed ${code}`));
      this.opening = null;
    }
    const jobs = [...this.pending.values(), ...this.queue];
    this.pending.clear();
    this.queue = [];
    for (const job of jobs) {
      clearTimeout(job.timer);
      job.reject(new ProtocolError('closed', `closed ${code}`));
    }
    if (NO_RECONNECT.has(code)) {
      this.wanted = false;
      this.setState('stopped', { code });
      this.emit('stopped', { code });
      return;
    }
    if (nextState === 'idle' || !this.wanted) {
      this.setState('idle', { code });
      return;
    }
    this.scheduleReconnect(code);
  }

  scheduleReconnect(code) {
    clearTimeout(this.retryTimer);
    if (!navigator.onLine) {
      this.setState('offline', { code });
      return;
    }
    const ceiling = Math.min(30000, 500 * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 10);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.retryTimer = setTimeout(() => this.connectNow(), delay);
    this.setState('waiting', { code, retryAt: Date.now() + delay });
  }

  startPing(gen) {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (gen !== this.gen) return;
      this.call('ping', {}, this.pongTimeoutMs).catch((e) => {
        if (e.code === 'timeout' && gen === this.gen) this.drop(CLOSE_CLIENT_DROP, 'waiting');
      });
    }, this.pingMs);
  }

  onOffline() {
    // The browser lost the network: the link is as good as dead.
    if (this.ws && this.wanted) this.drop(CLOSE_CLIENT_DROP, 'offline');
    else if (this.wanted) this.setState('offline');
  }

  onOnline() {
    if (!this.wanted) return;
    this.attempt = 0;
    this.connectNow();
  }

  setState(state, extra = {}) {
    this.state = state;
    this.emit('state', { state, ...extra });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
