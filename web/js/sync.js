// Sync drives the store from the connection: on every (re)connect it
// reconciles the conversation list, catches every conversation up from its
// cursor with history pages and resends the outbox with the original client
// ids (docs/protocol.md §8, "On every connect or reconnect"). Live messages
// go through the store's merge rule the whole time.

import { HISTORY_MAX, ProtocolError, TRANSIENT, normalizeConversation, normalizeMessage, num } from './protocol.js';

// A conversation never seen on this device starts this many entries before
// its end; older ones load when the user scrolls up.
export const INITIAL_WINDOW = 150;
// Page size when scrolling back.
export const OLDER_PAGE = 50;
const SEND_ATTEMPTS = 5;

export class Sync {
  constructor(conn, store, { onError = () => {} } = {}) {
    this.conn = conn;
    this.store = store;
    this.onError = onError;
    this.visible = null; // the conversation on screen (read markers follow it)
    this.readTimer = 0;
    this.readDirty = new Set(); // conversations whose marker the server lacks
    this.handlers = {
      session: (e) => this.onSession(e.detail),
      message: (e) => this.onLive(normalizeMessage(e.detail)),
      'session-event': (e) => this.onSessionEvent(e.detail),
    };
    for (const [type, fn] of Object.entries(this.handlers)) conn.addEventListener(type, fn);
    this.onConv = (e) => {
      if (e.detail.id === this.visible && e.detail.appended?.length) this.readLater();
    };
    store.addEventListener('conv', this.onConv);
  }

  detach() {
    for (const [type, fn] of Object.entries(this.handlers)) this.conn.removeEventListener(type, fn);
    this.store.removeEventListener('conv', this.onConv);
    clearTimeout(this.readTimer);
  }

  get ready() {
    return this.conn.state === 'ready';
  }

  // onSession runs after every hello/login: reconcile, resend, catch up.
  onSession(session) {
    const listed = new Map((session.conversations || []).map((c) => [c.id, normalizeConversation(c)]));
    for (const c of this.store.convs.values()) {
      if (!listed.has(c.id)) this.store.markLeft(c.id); // left or removed while away
    }
    for (const info of listed.values()) {
      const c = this.store.ensure(info.id, { kind: info.kind, title: info.title });
      if (!c.title && info.title) c.title = info.title;
      c.left = false;
    }
    this.store.emit('list');
    this.resendOutbox();
    this.flushRead();
    // Conversations named in the hello's cursors are replayed by the
    // server after the reply (§10.5): no history needed unless a gap shows.
    const named = session.cursorIds || new Set();
    for (const id of listed.keys()) this.refresh(id, named.has(id));
  }

  // refresh reads a conversation's info (title, members, read marker, last
  // seq) and catches it up. A conversation new to this device starts near
  // its end; live messages wait in the held buffer meanwhile.
  async refresh(id, replayed = false) {
    const c = this.store.ensure(id);
    const fresh = c.cursor === 0 && c.msgs.size === 0;
    if (fresh) c.infoPending = true;
    try {
      const info = normalizeConversation(await this.conn.call('conversationInfo', { conversationId: id }));
      this.store.setInfo(info);
      if (fresh && info.lastSeq > INITIAL_WINDOW) this.store.setBase(id, info.lastSeq - INITIAL_WINDOW);
    } catch (e) {
      if (this.gone(id, e)) return;
    } finally {
      c.infoPending = false;
    }
    if (!replayed || c.held.size) {
      this.catchUp(id);
      return;
    }
    // A replay that stopped early leaves a gap only history fills: check
    // once the replay had time to arrive.
    const gen = this.conn.gen;
    setTimeout(() => gen === this.conn.gen && c.cursor < c.lastSeq && this.catchUp(id), 3000);
  }

  // catchUp pulls history after the cursor until the page is empty or
  // reaches the page's lastSeq. One runs per conversation; a request
  // during a run makes it go round again.
  async catchUp(id) {
    const c = this.store.get(id);
    if (!c || c.left || c.infoPending) return;
    if (c.syncing) {
      c.again = true;
      return;
    }
    c.syncing = true;
    c.again = false;
    const gen = this.conn.gen;
    let empty = 0;
    try {
      for (;;) {
        const page = await this.conn.call('history', { conversationId: id, afterSeq: c.cursor, limit: HISTORY_MAX });
        const msgs = (page.messages || []).map(normalizeMessage);
        this.store.deliverPage(id, msgs);
        c.lastSeq = Math.max(c.lastSeq, num(page.lastSeq));
        if (msgs.length && c.cursor < num(page.lastSeq)) continue;
        if (c.again || c.held.size) {
          // Live messages raced ahead of the page: go round again.
          c.again = false;
          empty = msgs.length ? 0 : empty + 1;
          if (empty < 5) continue;
        }
        break;
      }
    } catch (e) {
      if (!this.gone(id, e) && e.code !== 'closed' && gen === this.conn.gen) {
        // unavailable, timeout, rate limited: try again shortly.
        setTimeout(() => gen === this.conn.gen && this.catchUp(id), Math.max(1000, e.retryAfterMs || 0));
      }
    } finally {
      c.syncing = false;
    }
  }

  // gone marks a conversation left when the server says we are not in it.
  gone(id, e) {
    if (e.code === 'not_member' || e.code === 'not_found') {
      this.store.markLeft(id);
      return true;
    }
    return false;
  }

  onLive(m) {
    const known = this.store.get(m.conversationId);
    const gap = this.store.deliver(m);
    if (!known) this.refresh(m.conversationId);
    else if (gap) this.catchUp(m.conversationId);
  }

  onSessionEvent(ev) {
    if (ev.conversationJoined) {
      const info = normalizeConversation(ev.conversationJoined.conversation || {});
      if (info.id) {
        const c = this.store.ensure(info.id, { kind: info.kind, title: info.title });
        c.left = false;
        this.refresh(info.id);
      }
    } else if (ev.conversationLeft) {
      this.store.markLeft(ev.conversationLeft.conversationId);
    }
  }

  // loadOlder fetches the page right below the loaded window.
  async loadOlder(id) {
    const c = this.store.get(id);
    if (!c || c.low <= 1 || c.loadingOlder || !this.ready) return false;
    c.loadingOlder = true;
    try {
      const after = Math.max(0, c.low - 1 - OLDER_PAGE);
      const page = await this.conn.call('history', { conversationId: id, afterSeq: after, limit: c.low - 1 - after });
      this.store.prepend(id, (page.messages || []).map(normalizeMessage));
      return true;
    } catch (e) {
      this.gone(id, e);
      return false;
    } finally {
      c.loadingOlder = false;
    }
  }

  // send queues text in the outbox and transmits it when connected;
  // subgroup, if given, targets one sub-group of a group (§17.4).
  send(conversationId, text, clientId, subgroup = '') {
    const entry = { clientId, conversationId, text, time: Date.now(), state: 'pending', attempts: 0, subgroup: subgroup || undefined };
    this.store.outboxAdd(entry);
    this.transmit(entry);
    return entry;
  }

  retry(clientId) {
    const e = this.store.outboxRetry(clientId);
    if (e) this.transmit(e);
  }

  resendOutbox() {
    for (const e of this.store.outbox) if (e.state === 'pending') this.transmit(e);
  }

  async transmit(entry) {
    if (!this.ready || entry.inflight) return;
    entry.inflight = true;
    try {
      const sent = await this.conn.call('send', { conversationId: entry.conversationId, clientId: entry.clientId, text: entry.text, subgroup: entry.subgroup || undefined });
      entry.attempts = 0;
      this.store.outboxSent(entry.clientId, num(sent.seq));
    } catch (e) {
      if (e.code === 'closed') return; // resent after the reconnect
      if (TRANSIENT.has(e.code) && ++entry.attempts < SEND_ATTEMPTS) {
        const wait = Math.max(e.retryAfterMs || 0, 500 * entry.attempts);
        setTimeout(() => this.store.outboxFind(entry.clientId) === entry && entry.state === 'pending' && this.transmit(entry), wait);
        return;
      }
      this.store.outboxFailed(entry.clientId, e.code);
      if (e.code === 'not_member') this.store.markLeft(entry.conversationId);
    } finally {
      entry.inflight = false;
    }
  }

  // show tells which conversation is on screen; its read marker follows
  // the cursor while the page is visible. Switching away sends the marker
  // of the previous one at once.
  show(id) {
    if (this.visible && this.visible !== id) this.flushRead();
    this.visible = id;
    this.readLater();
  }

  // readLater moves the local read marker of the visible conversation now
  // and tells the server shortly after (one markRead per burst).
  readLater() {
    const id = this.visible;
    const c = id && this.store.get(id);
    if (!c || document.visibilityState !== 'visible') return;
    if (this.store.markRead(id, c.cursor) || c.readSeq > c.sentReadSeq) {
      this.readDirty.add(id);
      clearTimeout(this.readTimer);
      this.readTimer = setTimeout(() => this.flushRead(), 300);
    }
  }

  flushRead() {
    clearTimeout(this.readTimer);
    for (const id of this.readDirty) {
      const c = this.store.get(id);
      if (!c || c.left || c.readSeq <= c.sentReadSeq) continue;
      if (!this.ready) return; // kept dirty: sent after the reconnect
      const seq = c.readSeq;
      this.readDirty.delete(id);
      this.conn.call('markRead', { conversationId: id, seq }).then(
        () => (c.sentReadSeq = Math.max(c.sentReadSeq, seq)),
        () => this.readDirty.add(id),
      );
    }
    this.readDirty.clear();
  }

  // --- commands of the screens ---

  async createGroup(title, members) {
    const conv = normalizeConversation(await this.call('createGroup', { title, members }));
    this.store.setInfo(conv);
    this.refresh(conv.id);
    return conv.id;
  }

  async addMembers(conversationId, userIds) {
    const conv = normalizeConversation(await this.call('addMembers', { conversationId, userIds }));
    this.store.setInfo(conv);
    return this.info(conversationId);
  }

  async openDirect(userId) {
    const conv = normalizeConversation(await this.call('openDirect', { userId }));
    this.store.setInfo(conv);
    this.refresh(conv.id);
    return conv.id;
  }

  async info(conversationId) {
    const conv = normalizeConversation(await this.call('conversationInfo', { conversationId }));
    this.store.setInfo(conv);
    return conv;
  }

  call(name, body) {
    if (!this.ready) return Promise.reject(new ProtocolError('closed', 'not connected'));
    return this.conn.call(name, body);
  }
}
