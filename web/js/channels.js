// Channels (docs/protocol.md §16) and channel imports with their
// invitations (§17): the client's state and the commands of the screens.
//
// A channel is an online-only room. Its messages reach the links present
// when they are sent and are never stored, so this module keeps them in
// memory only, for as long as the page is open; nothing here is caught up
// or replayed. Presence is per link and ends with the link, so after every
// reconnect the channels the user wants to be in are joined again.
//
// The list of channels comes from the server: listChannels on every
// authenticated link (a new device starts from it), kept current by the
// session events channelAdded (added, or our level changed) and
// channelRemoved (§9, §16.8). A copy is kept per user in localStorage (ids
// and titles only) so the list shows before the link is up; a channel
// opened by id (someone shares it) is added too.
//
// Events (CustomEvent, detail in parentheses):
//   "list"        ()   channels were added, removed or renamed
//   "channel"     ({id}) a channel's members, presence, level or log changed
//   "invitations" ()   the pending invitations changed

import { ProtocolError, newClientId, num } from './protocol.js';

export const Level = Object.freeze({ MEMBER: 'CHANNEL_LEVEL_MEMBER', ADMIN: 'CHANNEL_LEVEL_ADMIN' });
export const ChannelEvent = Object.freeze({
  PRESENT: 'CHANNEL_EVENT_KIND_PRESENT',
  ABSENT: 'CHANNEL_EVENT_KIND_ABSENT',
  REMOVED: 'CHANNEL_EVENT_KIND_REMOVED',
  MEMBER: 'CHANNEL_EVENT_KIND_MEMBER',
});
export const ImportMode = Object.freeze({ DIRECT: 'IMPORT_MODE_DIRECT', INVITE: 'IMPORT_MODE_INVITE' });
export const InvitationState = Object.freeze({
  PENDING: 'INVITATION_STATE_PENDING',
  ACCEPTED: 'INVITATION_STATE_ACCEPTED',
  DECLINED: 'INVITATION_STATE_DECLINED',
  EXPIRED: 'INVITATION_STATE_EXPIRED',
});

// CHANNEL_ID matches a channel id as the server makes them ("c" + hex);
// anything else the user types is refused before asking the server.
export const CHANNEL_ID = /^c[0-9a-f]{8,64}$/;
// How many channel messages a channel keeps on the page.
export const KEEP_LOG = 500;
const SEND_ATTEMPTS = 3;
const TRANSIENT = new Set(['unavailable', 'timeout', 'too_many_in_flight', 'rate_limited']);

const KEY = 'parley.v1.channels.';

export function loadChannelList(me) {
  try {
    const v = JSON.parse(localStorage.getItem(KEY + me) || 'null');
    return Array.isArray(v) ? v.filter((c) => c && typeof c.id === 'string') : [];
  } catch {
    return [];
  }
}

function saveChannelList(me, list) {
  try {
    localStorage.setItem(KEY + me, JSON.stringify(list));
  } catch {
    // storage full or disabled: the list lives for this page only
  }
}

export function clearChannelList(me) {
  try {
    localStorage.removeItem(KEY + me);
  } catch {
    // nothing stored
  }
}

// normalizeChannel reads a Channel reply. Brief replies (join, leave) have
// no members: members is then null and the caller keeps what it knows.
export function normalizeChannel(ch) {
  const present = new Set(ch.present || []);
  return {
    id: ch.id || '',
    title: ch.title || '',
    level: ch.level || Level.MEMBER,
    members: ch.members ? ch.members.map((m) => ({ userId: m.userId, level: m.level || Level.MEMBER, present: !!m.present || present.has(m.userId) })) : null,
  };
}

export function normalizeInvitation(i) {
  return {
    id: i.id || '',
    groupId: i.groupId || '',
    groupTitle: i.groupTitle || '',
    channelId: i.channelId || '',
    inviter: i.inviter || '',
    subgroup: i.subgroup || '',
    channelLevel: i.channelLevel || Level.MEMBER,
    expiresAtMs: num(i.expiresAtMs),
    state: i.state || InvitationState.PENDING,
  };
}

function newChannel(id, title = '') {
  return {
    id,
    title,
    level: Level.MEMBER,
    members: new Map(), // userId -> {userId, level, present}
    loaded: false, // a full channelInfo arrived
    removed: false, // no longer a member (removed, left, declined, not found)
    present: false, // this link joined and the server confirmed it
    want: false, // the user wants to be present: joined again after reconnects
    joining: false,
    log: [], // in memory only: {key, kind: 'msg'|'note', ...}
  };
}

// ChannelModel is the pure part: channel records and how events change
// them. No I/O, unit-tested under Node (test/channels.test.mjs).
export class ChannelModel extends EventTarget {
  constructor(me) {
    super();
    this.me = me;
    this.channels = new Map();
    this.invitations = new Map(); // pending only, by id
    this.seq = 0; // local keys of log entries
  }

  get(id) {
    return this.channels.get(id);
  }

  ensure(id, title = '') {
    let c = this.channels.get(id);
    if (!c) {
      c = newChannel(id, title);
      this.channels.set(id, c);
      this.emit('list');
    } else if (title && !c.title) {
      c.title = title;
      this.emit('list');
    }
    return c;
  }

  // forget drops a channel from the list (the user chose to).
  forget(id) {
    if (this.channels.delete(id)) this.emit('list');
  }

  list() {
    return [...this.channels.values()].sort((a, b) => Number(a.removed) - Number(b.removed) || (a.title || a.id).localeCompare(b.title || b.id));
  }

  // apply records a Channel reply.
  apply(reply) {
    const ch = normalizeChannel(reply);
    if (!ch.id) return null;
    const c = this.ensure(ch.id);
    const renamed = ch.title && ch.title !== c.title;
    if (ch.title) c.title = ch.title;
    c.level = ch.level;
    c.removed = false;
    if (ch.members) {
      c.members = new Map(ch.members.map((m) => [m.userId, m]));
      c.loaded = true;
      // The server's view of presence is per user; ours is per link.
      if (c.present && !c.members.get(this.me)?.present) c.present = false;
    }
    const mine = c.members.get(this.me);
    if (mine) mine.level = c.level;
    if (renamed) this.emit('list');
    this.emit('channel', { id: c.id });
    return c;
  }

  // applyEntry records a channel of listChannels or of a channelAdded
  // event: id, title and our level (no members).
  applyEntry(entry) {
    const ch = normalizeChannel(entry || {});
    if (!ch.id) return null;
    const known = this.channels.has(ch.id);
    const c = this.ensure(ch.id, ch.title);
    const changed = !known || c.removed || (ch.title && ch.title !== c.title) || c.level !== ch.level;
    if (ch.title) c.title = ch.title;
    c.level = ch.level;
    c.removed = false;
    const mine = c.members.get(this.me);
    if (mine) mine.level = c.level;
    if (changed) {
      this.emit('channel', { id: c.id });
      this.emit('list');
    }
    return c;
  }

  // setList records the reply of listChannels. Known channels missing
  // from it are left to the caller (the list may lag a change by a
  // moment; channelInfo decides).
  setList(list) {
    const ids = new Set();
    for (const e of list || []) {
      const c = this.applyEntry(e);
      if (c) ids.add(c.id);
    }
    return ids;
  }

  // onSessionEvent applies channelAdded and channelRemoved.
  onSessionEvent(ev) {
    if (ev.channelAdded) this.applyEntry(ev.channelAdded.channel);
    else if (ev.channelRemoved?.channelId) this.markRemoved(ev.channelRemoved.channelId);
  }

  // setPresent records our own join or leave (the command's reply).
  setPresent(id, present) {
    const c = this.channels.get(id);
    if (!c || c.present === present) return;
    c.present = present;
    const mine = c.members.get(this.me);
    if (mine) mine.present = present;
    else if (present) c.members.set(this.me, { userId: this.me, level: c.level, present: true });
    this.note(c, present ? 'joined' : 'left');
    this.emit('channel', { id });
    this.emit('list');
  }

  // linkLost: presence ended with the link (§16.1).
  linkLost() {
    for (const c of this.channels.values()) {
      if (!c.present) continue;
      c.present = false;
      for (const m of c.members.values()) m.present = false;
      this.note(c, 'lost');
      this.emit('channel', { id: c.id });
    }
    this.emit('list');
  }

  // markRemoved: we are no longer a member.
  markRemoved(id) {
    const c = this.channels.get(id);
    if (!c || c.removed) return;
    c.removed = true;
    c.present = false;
    c.want = false;
    c.members.delete(this.me);
    this.note(c, 'removed');
    this.emit('channel', { id });
    this.emit('list');
  }

  // onEvent applies a channelEvent; it returns true when the member was
  // unknown (the caller refreshes the member list). MEMBER events name
  // added members and changed levels, so they never need it.
  onEvent(ev) {
    const c = this.channels.get(ev.channelId);
    if (!c) return false;
    const u = ev.userId;
    let unknown = false;
    if (ev.kind === ChannelEvent.REMOVED) {
      if (u === this.me) {
        this.markRemoved(c.id);
        return false;
      }
      c.members.delete(u);
      this.note(c, 'member-removed', u);
    } else if (ev.kind === ChannelEvent.MEMBER) {
      const level = ev.level || Level.MEMBER;
      const m = c.members.get(u);
      if (!m) {
        c.members.set(u, { userId: u, level, present: false });
        this.note(c, 'member-added', u);
      } else {
        m.level = level;
      }
      if (u === this.me && c.level !== level) {
        c.level = level;
        this.emit('list');
      }
    } else if (ev.kind === ChannelEvent.PRESENT || ev.kind === ChannelEvent.ABSENT) {
      const present = ev.kind === ChannelEvent.PRESENT;
      let m = c.members.get(u);
      if (!m) {
        unknown = true;
        m = { userId: u, level: Level.MEMBER, present: false };
        c.members.set(u, m);
      }
      if (m.present !== present && u !== this.me) this.note(c, present ? 'member-joined' : 'member-left', u);
      m.present = present;
      if (u === this.me && !present) c.present = false;
    } else {
      return false;
    }
    this.emit('channel', { id: c.id });
    return unknown;
  }

  // onMessage appends a channelMessage; our own replaces its pending entry.
  onMessage(msg, myDevice) {
    const c = this.channels.get(msg.channelId);
    if (!c) return;
    const m = { kind: 'msg', sender: msg.sender || '', clientId: msg.clientId || '', timeMs: num(msg.timeMs), text: msg.text || '', state: 'sent' };
    if (m.sender === this.me && m.clientId && msg.senderDevice === myDevice) {
      const mine = c.log.find((e) => e.kind === 'msg' && e.clientId === m.clientId && e.sender === this.me);
      if (mine) {
        Object.assign(mine, { timeMs: m.timeMs, state: 'sent' });
        this.emit('channel', { id: c.id });
        return;
      }
    }
    this.push(c, m);
  }

  // pending adds our own message before the server confirms it.
  pending(id, clientId, text) {
    const c = this.channels.get(id);
    if (!c) return null;
    return this.push(c, { kind: 'msg', sender: this.me, clientId, timeMs: Date.now(), text, state: 'sending' });
  }

  sendResult(id, clientId, { recipients, error }) {
    const c = this.channels.get(id);
    const e = c?.log.find((x) => x.kind === 'msg' && x.clientId === clientId && x.sender === this.me);
    if (!e) return;
    if (error) {
      e.state = 'failed';
      e.error = error;
    } else {
      e.recipients = recipients;
      if (e.state === 'sending') e.state = 'sent';
    }
    this.emit('channel', { id });
  }

  note(c, what, userId = '') {
    this.push(c, { kind: 'note', what, userId, timeMs: Date.now() });
  }

  push(c, entry) {
    entry.key = `e${++this.seq}`;
    c.log.push(entry);
    if (c.log.length > KEEP_LOG) c.log.splice(0, c.log.length - KEEP_LOG);
    this.emit('channel', { id: c.id });
    return entry;
  }

  // --- invitations ---

  setInvitations(list) {
    this.invitations = new Map(list.map(normalizeInvitation).filter((i) => i.state === InvitationState.PENDING).map((i) => [i.id, i]));
    this.emit('invitations');
  }

  addInvitation(inv) {
    const i = normalizeInvitation(inv);
    if (!i.id || i.state !== InvitationState.PENDING) return;
    this.invitations.set(i.id, i);
    this.emit('invitations');
  }

  dropInvitation(id) {
    if (this.invitations.delete(id)) this.emit('invitations');
  }

  // serial is what persists: ids and titles.
  serial() {
    return [...this.channels.values()].map((c) => ({ id: c.id, title: c.title, removed: c.removed || undefined }));
  }

  restore(list) {
    for (const s of list) {
      const c = newChannel(s.id, s.title || '');
      c.removed = !!s.removed;
      this.channels.set(c.id, c);
    }
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

// Channels adds the I/O: commands, live frames, rejoining on reconnect.
export class Channels extends ChannelModel {
  constructor(conn, me) {
    super(me);
    this.conn = conn;
    this.restore(loadChannelList(me));
    this.refreshing = new Set();
    this.handlers = {
      channel: (e) => this.onFrame(e.detail),
      'session-event': (e) => {
        if (e.detail.invitationReceived) this.addInvitation(e.detail.invitationReceived);
        else this.onSessionEvent(e.detail);
      },
      state: (e) => e.detail.state !== 'ready' && this.linkLost(),
    };
    for (const [type, fn] of Object.entries(this.handlers)) conn.addEventListener(type, fn);
    this.save = () => saveChannelList(me, this.serial());
    this.addEventListener('list', this.save);
  }

  detach() {
    for (const [type, fn] of Object.entries(this.handlers)) this.conn.removeEventListener(type, fn);
    this.removeEventListener('list', this.save);
  }

  get ready() {
    return this.conn.state === 'ready';
  }

  call(name, body) {
    if (!this.ready) return Promise.reject(new ProtocolError('closed', 'not connected'));
    return this.conn.call(name, body);
  }

  onFrame(f) {
    if (f.channelMessage) this.onMessage(f.channelMessage, this.conn.device.id);
    else if (f.channelEvent && this.onEvent(f.channelEvent)) this.refresh(f.channelEvent.channelId);
  }

  // onSession runs on every authenticated link: pending invitations, the
  // user's channels (listChannels), the current state of every known
  // channel, and joining again the channels the user was in (presence
  // ended with the old link).
  async onSession() {
    this.call('listInvitations', {}).then(
      (r) => this.setInvitations(r.invitations || []),
      () => {},
    );
    try {
      this.setList((await this.call('listChannels', {})).channels);
    } catch {
      // an older server or a dropped link: the local list stands
    }
    for (const c of this.channels.values()) {
      if (c.removed) continue;
      if (c.want) this.join(c.id).catch(() => {});
      else this.refresh(c.id);
    }
  }

  // refresh reads channelInfo; a refusal marks the channel removed.
  async refresh(id) {
    if (this.refreshing.has(id)) return this.get(id);
    this.refreshing.add(id);
    try {
      return this.apply(await this.call('channelInfo', { channelId: id }));
    } catch (e) {
      if (e.code === 'not_member' || e.code === 'not_found') this.markRemoved(id);
      throw e;
    } finally {
      this.refreshing.delete(id);
    }
  }

  async create(title, members) {
    const reply = await this.call('createChannel', { title, members, clientId: newClientId() });
    return this.apply(reply).id;
  }

  // open adds a channel someone shared by id (members only).
  async open(id) {
    const known = this.get(id);
    try {
      const c = await this.refresh(id);
      return c.id;
    } catch (e) {
      if (!known) this.forget(id);
      throw e;
    }
  }

  async join(id) {
    const c = this.ensure(id);
    c.want = true;
    c.joining = true;
    this.emit('channel', { id });
    try {
      const brief = await this.call('joinChannel', { channelId: id });
      this.apply(brief);
      this.setPresent(id, true);
      await this.refresh(id).catch(() => {});
    } catch (e) {
      if (e.code === 'not_member' || e.code === 'not_found') this.markRemoved(id);
      else if (e.code !== 'closed') c.want = false; // a reconnect joins again
      throw e;
    } finally {
      c.joining = false;
      this.emit('channel', { id });
    }
  }

  async leave(id) {
    const c = this.get(id);
    if (!c) return;
    c.want = false;
    await this.call('leaveChannel', { channelId: id });
    this.setPresent(id, false);
    this.refresh(id).catch(() => {});
  }

  // send transmits a channel message; transient errors retry with the same
  // client id (the server dedupes it for 60 s and delivers it once).
  async send(id, text) {
    const clientId = newClientId();
    this.pending(id, clientId, text);
    for (let attempt = 1; ; attempt++) {
      try {
        const sent = await this.call('channelSend', { channelId: id, clientId, text });
        this.sendResult(id, clientId, { recipients: num(sent.recipients) });
        return;
      } catch (e) {
        if (TRANSIENT.has(e.code) && attempt < SEND_ATTEMPTS) {
          await new Promise((r) => setTimeout(r, Math.max(500 * attempt, e.retryAfterMs || 0)));
          continue;
        }
        this.sendResult(id, clientId, { error: e.code || 'failed' });
        if (e.code === 'not_member' || e.code === 'not_found') this.markRemoved(id);
        return;
      }
    }
  }

  async addMembers(id, userIds, level) {
    this.apply(await this.call('addChannelMembers', { channelId: id, userIds, level }));
  }

  async setLevel(id, userId, level) {
    this.apply(await this.call('addChannelMembers', { channelId: id, userIds: [userId], level }));
  }

  async removeMember(id, userId) {
    const reply = await this.call('removeChannelMember', { channelId: id, userId });
    if (userId === this.me) this.markRemoved(id);
    else this.apply(reply);
  }

  // importInto runs importChannel. opId makes a retry safe (§17.1).
  importInto(groupId, channelId, mode, opId) {
    return this.call('importChannel', { groupId, channelId, mode, opId });
  }

  // answer accepts or declines an invitation. Declining also removes the
  // user from the channel (§17.3).
  async answer(inv, accept) {
    let r;
    try {
      r = await this.call('answerInvitation', { invitationId: inv.id, accept });
    } catch (e) {
      if (e.code === 'invitation_expired' || e.code === 'not_found') this.dropInvitation(inv.id);
      throw e;
    }
    this.dropInvitation(inv.id);
    const got = normalizeInvitation(r.invitation || {});
    if (got.state === InvitationState.DECLINED && inv.channelId) this.markRemoved(inv.channelId);
    return got;
  }
}
