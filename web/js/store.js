// The client's state: per conversation a cursor and the messages handed to
// the app, plus the outbox of sends not yet confirmed. It implements the
// merge rule of docs/protocol.md §8 (the same as client/stream.go): live
// events and history pages are two sources of one log; a message is applied
// once, after every lower seq; messages above a gap are held until catch-up
// fills it. The store does no I/O: sync.js talks to the server, persist.js
// saves snapshots, the UI listens to its events.
//
// Events (CustomEvent, detail in parentheses):
//   "conv"   ({id, appended, prepended, changed, meta}) a conversation changed
//   "list"   ()  conversations were added or their order may have changed
//   "outbox" ({id}) the outbox of conversation id changed

import { Kind, kindFromId } from './protocol.js';

// How many messages per conversation a snapshot keeps.
export const KEEP_PER_CONVERSATION = 200;

export class Store extends EventTarget {
  constructor(me) {
    super();
    this.me = me;
    this.convs = new Map();
    this.outbox = [];
  }

  get(id) {
    return this.convs.get(id);
  }

  // ensure returns the conversation id, creating it with cursor 0.
  ensure(id, { kind, title } = {}) {
    let c = this.convs.get(id);
    if (!c) {
      c = newConv(id, kind || kindFromId(id), title || '');
      this.convs.set(id, c);
      this.emit('list');
    } else if (kind && c.kind !== kind) {
      c.kind = kind;
    }
    return c;
  }

  // setInfo records a conversationInfo/createGroup/openDirect reply.
  setInfo(info) {
    const c = this.ensure(info.id, { kind: info.kind });
    if (info.title || c.kind === 'CONVERSATION_KIND_GROUP') c.title = info.title || c.title;
    if (info.members.length) c.members = info.members;
    if (info.subgroups?.length) c.subgroups = info.subgroups;
    c.lastSeq = Math.max(c.lastSeq, info.lastSeq);
    c.readSeq = Math.max(c.readSeq, info.readSeq);
    c.left = false;
    this.emit('conv', { id: c.id, meta: true });
    this.emit('list');
  }

  // setBase starts a never-seen conversation at seq base instead of 1, so a
  // new device does not download a long log; older pages load on scroll.
  setBase(id, base) {
    const c = this.convs.get(id);
    if (!c || c.cursor !== 0 || c.msgs.size || base <= 0) return;
    c.cursor = base;
    c.low = base + 1;
    for (const seq of c.held.keys()) if (seq <= base) c.held.delete(seq);
    const appended = [];
    const changed = [];
    this.drainHeld(c, appended, changed);
    this.flush(c, appended, changed);
  }

  // deliver merges one message (live or from a page). It returns true when
  // messages are held above a gap, i.e. the caller must catch up.
  deliver(m) {
    const c = this.ensure(m.conversationId);
    const appended = [];
    const changed = [];
    this.accept(c, m, appended, changed);
    this.flush(c, appended, changed);
    return c.held.size > 0;
  }

  // deliverPage merges a history page after the cursor.
  deliverPage(id, msgs) {
    const c = this.ensure(id);
    const appended = [];
    const changed = [];
    for (const m of msgs) this.accept(c, m, appended, changed);
    this.flush(c, appended, changed);
    return c.held.size > 0;
  }

  accept(c, m, appended, changed) {
    if (m.seq <= c.cursor) return; // duplicate
    if (m.seq > c.cursor + 1) {
      c.held.set(m.seq, m); // above a gap
      return;
    }
    this.apply(c, m, appended, changed);
    this.drainHeld(c, appended, changed);
  }

  drainHeld(c, appended, changed = []) {
    for (let next = c.held.get(c.cursor + 1); next; next = c.held.get(c.cursor + 1)) {
      c.held.delete(next.seq);
      this.apply(c, next, appended, changed);
    }
    for (const seq of c.held.keys()) if (seq <= c.cursor) c.held.delete(seq);
  }

  apply(c, m, appended, changed) {
    c.cursor = m.seq;
    c.lastSeq = Math.max(c.lastSeq, m.seq);
    c.msgs.set(m.seq, m);
    if (m.timeMs) c.lastTime = Math.max(c.lastTime, m.timeMs);
    appended.push(m);
    switch (m.kind) {
      case Kind.DELETE: {
        c.deleted.add(m.targetSeq);
        const t = c.msgs.get(m.targetSeq);
        if (t && (t.kind === Kind.TEXT || t.kind === Kind.FILE)) {
          c.msgs.set(t.seq, tombstone(t));
          changed.push(t.seq);
        }
        break;
      }
      case Kind.CREATED:
        if (c.kind === 'CONVERSATION_KIND_GROUP' && !c.title) c.title = m.text;
        break;
      case Kind.RENAMED:
        c.title = m.text;
        break;
      case Kind.MEMBER_REMOVED:
        if (m.users.includes(this.me)) c.left = true;
        break;
      case Kind.MEMBER_ADDED:
        if (m.users.includes(this.me)) c.left = false;
        break;
      case Kind.TEXT:
        if (m.sender === this.me && m.clientId) this.outboxDelivered(c.id, m.clientId);
        break;
    }
  }

  flush(c, appended, changed) {
    if (!appended.length && !changed.length) return;
    const meta = appended.some((m) => m.kind !== Kind.TEXT);
    this.emit('conv', { id: c.id, appended, changed, meta });
    this.emit('list');
  }

  // prepend adds an older page (seqs below low), for scroll-back.
  prepend(id, msgs) {
    const c = this.convs.get(id);
    if (!c) return;
    const older = msgs.filter((m) => m.seq < c.low).sort((a, b) => a.seq - b.seq);
    if (!older.length) return;
    // Older entries must end right below low, or the window would have a hole.
    if (older[older.length - 1].seq !== c.low - 1) return;
    for (let i = 0; i < older.length; i++) {
      let m = older[i];
      if ((m.kind === Kind.TEXT || m.kind === Kind.FILE) && c.deleted.has(m.seq)) m = older[i] = tombstone(m);
      c.msgs.set(m.seq, m);
    }
    c.low = older[0].seq;
    this.emit('conv', { id, prepended: older });
  }

  // cursors lists the conversations to name in a hello (§10.5): those with
  // messages held, newest first, at most max (the hello must fit a frame).
  // A conversation at cursor 0 is left out: cursor 0 would replay its whole
  // log, while history starts a new one near its end.
  cursors(max = 400) {
    return [...this.convs.values()]
      .filter((c) => !c.left && c.cursor > 0)
      .sort((a, b) => b.lastTime - a.lastTime)
      .slice(0, max)
      .map((c) => ({ conversationId: c.id, seq: String(c.cursor) }));
  }

  // messages returns the loaded window, ascending.
  messages(id) {
    const c = this.convs.get(id);
    if (!c) return [];
    return [...c.msgs.values()].sort((a, b) => a.seq - b.seq);
  }

  markLeft(id) {
    const c = this.convs.get(id);
    if (!c || c.left) return;
    c.left = true;
    this.emit('conv', { id, meta: true });
    this.emit('list');
  }

  // markRead moves the local read marker; it returns true if it moved.
  markRead(id, seq) {
    const c = this.convs.get(id);
    if (!c || seq <= c.readSeq) return false;
    c.readSeq = seq;
    this.emit('list');
    return true;
  }

  // unread counts text messages from others above the read marker; for
  // the part of the log not loaded yet it counts every entry.
  unread(id) {
    const c = this.convs.get(id);
    if (!c) return 0;
    let n = 0;
    for (const m of c.msgs.values()) {
      if (m.seq > c.readSeq && (m.kind === Kind.TEXT || m.kind === Kind.FILE) && m.sender !== this.me) n++;
    }
    if (c.readSeq < c.low - 1) n += c.low - 1 - c.readSeq;
    return n;
  }

  // lastText is the newest text message or tombstone, for the list preview.
  lastText(id) {
    const c = this.convs.get(id);
    if (!c) return null;
    for (let seq = c.cursor; seq >= c.low; seq--) {
      const m = c.msgs.get(seq);
      if (m && (m.kind === Kind.TEXT || m.kind === Kind.FILE || m.kind === Kind.DELETED || m.kind === Kind.CREATED)) return m;
    }
    return null;
  }

  // --- outbox ---

  outboxFor(id) {
    return this.outbox.filter((e) => e.conversationId === id);
  }

  outboxAdd(entry) {
    this.outbox.push(entry);
    this.emit('outbox', { id: entry.conversationId, persist: true });
  }

  outboxFind(clientId) {
    return this.outbox.find((e) => e.clientId === clientId);
  }

  // outboxSent records the server's "sent" reply. The entry stays (shown as
  // sent) until the message itself reaches the log.
  outboxSent(clientId, seq) {
    const e = this.outboxFind(clientId);
    if (!e) return;
    const c = this.convs.get(e.conversationId);
    if (c && c.cursor >= seq) {
      this.outboxRemove(clientId);
      return;
    }
    e.state = 'sent';
    e.seq = seq;
    e.error = '';
    this.emit('outbox', { id: e.conversationId, persist: true });
  }

  outboxFailed(clientId, code) {
    const e = this.outboxFind(clientId);
    if (!e) return;
    e.state = 'failed';
    e.error = code;
    this.emit('outbox', { id: e.conversationId, persist: true });
  }

  outboxRetry(clientId) {
    const e = this.outboxFind(clientId);
    if (!e) return null;
    e.state = 'pending';
    e.error = '';
    e.attempts = 0;
    this.emit('outbox', { id: e.conversationId, persist: true });
    return e;
  }

  outboxRemove(clientId) {
    const i = this.outbox.findIndex((e) => e.clientId === clientId);
    if (i < 0) return;
    const [e] = this.outbox.splice(i, 1);
    this.emit('outbox', { id: e.conversationId, persist: true });
  }

  outboxDelivered(id, clientId) {
    const e = this.outboxFind(clientId);
    if (e && e.conversationId === id) this.outboxRemove(clientId);
  }

  // --- snapshots ---

  // snapshot is what persist.js saves: cursors with the messages below
  // them (at most KEEP_PER_CONVERSATION each), read markers, the outbox.
  snapshot() {
    const convs = [];
    for (const c of this.convs.values()) {
      const msgs = [];
      const from = Math.max(c.low, c.cursor - KEEP_PER_CONVERSATION + 1);
      for (let seq = from; seq <= c.cursor; seq++) {
        const m = c.msgs.get(seq);
        if (m) msgs.push(m);
      }
      convs.push({ id: c.id, kind: c.kind, title: c.title, cursor: c.cursor, readSeq: c.readSeq, left: c.left, lastTime: c.lastTime, msgs });
    }
    const outbox = this.outbox.map(({ clientId, conversationId, text, time, state, seq, error, subgroup }) => ({ clientId, conversationId, text, time, state, seq, error, subgroup }));
    return { v: 1, me: this.me, convs, outbox };
  }

  restore(snap) {
    if (!snap || snap.v !== 1 || snap.me !== this.me) return;
    for (const s of snap.convs || []) {
      const c = newConv(s.id, s.kind, s.title);
      c.readSeq = s.readSeq || 0;
      c.left = !!s.left;
      c.lastTime = s.lastTime || 0;
      const msgs = (s.msgs || []).filter((m) => m.seq <= s.cursor).sort((a, b) => a.seq - b.seq);
      // Keep the stored cursor only with a contiguous run of messages
      // ending at it; anything else starts over from 0.
      const contiguous = msgs.every((m, i) => i === 0 || m.seq === msgs[i - 1].seq + 1);
      if (msgs.length && contiguous && msgs[msgs.length - 1].seq === s.cursor) {
        for (const m of msgs) c.msgs.set(m.seq, m);
        c.cursor = s.cursor;
        c.low = msgs[0].seq;
        c.lastSeq = s.cursor;
      }
      this.convs.set(c.id, c);
    }
    this.outbox = (snap.outbox || []).map((e) => ({ ...e, state: e.state === 'failed' ? 'failed' : e.state === 'sent' ? 'sent' : 'pending', attempts: 0 }));
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function newConv(id, kind, title) {
  return {
    id,
    kind,
    title,
    cursor: 0, // highest seq applied; every seq in [low, cursor] is in msgs
    low: 1,
    msgs: new Map(),
    held: new Map(), // live messages above a gap
    deleted: new Set(), // targets of DELETE notices (for older pages)
    syncing: false,
    again: false,
    infoPending: false,
    readSeq: 0,
    sentReadSeq: 0,
    lastSeq: 0,
    lastTime: 0,
    left: false,
    members: [],
    subgroups: [],
  };
}

function tombstone(m) {
  return { ...m, kind: Kind.DELETED, text: '', clientId: '', replyTo: 0, file: null };
}
