// Calls (docs/protocol.md §19): the device machine (calldevice.js) fed with
// the replies to its requests and the call session events, and the media:
// one RTCPeerConnection with the node's SFU per join. The SFU is always the
// offerer; this side answers every offer (one at a time, in order),
// publishes the microphone on the m-line of the first offer and plays the
// other participants' tracks. ICE candidates trickle both ways over the
// Parley WebSocket (signalCall commands, callSignal session events).
//
// Links come and go: every call request is idempotent, so one that was in
// flight when the link dropped is sent again on the next link while its
// attempt lasts; so are answers and candidates (a duplicate answer is
// refused with call_state, which changes nothing). A session rebuild
// replays the call events. After a fresh session (no rebuild) this
// session's call events are gone (§19.10): the device takes its
// participant over with a new join (enterCall from the new session). After
// a page reload the media is gone: the old join is left and the user may
// rejoin.
//
// Events (CustomEvent "change"): the UI re-renders from the public fields.

import { CallDevice, Op, State } from './calldevice.js';

const COMMAND = {
  [Op.CREATE]: 'createCall',
  [Op.CREATE_ROOM]: 'createRoom',
  [Op.ENTER]: 'enterCall',
  [Op.JOIN]: 'joinRoom',
  [Op.DECLINE]: 'declineCall',
  [Op.CANCEL]: 'cancelCall',
  [Op.LEAVE]: 'leaveCall',
  [Op.MUTE]: 'muteCall',
};
// Worth sending again: the link dropped, the reply never came, or the
// server asked to retry. Every call request is idempotent.
const RETRY = new Set(['closed', 'timeout', 'unavailable', 'rate_limited', 'too_many_in_flight', 'storage']);
const MAX_ATTEMPTS = 40;
const STORE_KEY = 'parley.v1.call';
// Reasons after which the user may want to get back into the call.
export const REJOINABLE = new Set(['link_lost', 'media_failed', 'reload', 'setup_timeout', 'media_error']);

export function newJoinId() {
  return crypto.randomUUID(); // [0-9a-f-], 36 bytes: a valid joinId
}

export class Calls extends EventTarget {
  constructor(conn) {
    super();
    this.conn = conn;
    this.dev = new CallDevice(conn.device.id);
    this.me = '';
    this.current = null; // the active attempt: {call, join, conv, caller, participants, enteredAt, media, rejoining}
    this.ended = null; // the last attempt that ended: {call, conv, reason, at}
    this.invites = new Map(); // call -> {call, conv, caller, expires} (ringing)
    this.media = null; // Media of the active join
    this.early = []; // callSignal events that came before the room
    this.stale = null; // a join left behind by a page reload
    this.micError = '';
    this.debug = { errors: [], offers: 0, answers: 0, candidatesIn: 0, candidatesOut: 0, takeovers: 0 };
    this.linkWaiters = [];
    this.recent = new Map(); // conversation -> the last call seen in it
    this.ongoing = new Map(); // conversation -> {call, at} while callInfo says it lasts
    this.handlers = {
      'session-event': (e) => this.onEvent(e.detail),
      session: (e) => this.onSession(e.detail),
      state: (e) => e.detail.state === 'ready' && this.wakeLink(),
      // Another tab of this browser took the session (4004/4008): it
      // leaves this device's join when it starts; stop the media here.
      stopped: () => this.dev.active() && this.step({ type: 'ended', call: this.dev.call, join: this.dev.join, reason: 'moved' }),
    };
    for (const [type, fn] of Object.entries(this.handlers)) conn.addEventListener(type, fn);
  }

  // bind starts calls for a signed-in user; a join this device still had
  // in a call when the page went away is left on the next session.
  bind(userId) {
    this.me = userId;
    const s = readStored();
    if (s && s.user === userId && s.call && s.join) this.stale = s;
    else writeStored(null);
  }

  // unbind ends everything (sign out, another account).
  unbind() {
    if (!this.me) return;
    if (this.dev.active()) this.step({ type: 'hangup' });
    this.stopMedia();
    this.dev = new CallDevice(this.conn.device.id);
    this.current = this.ended = this.stale = null;
    this.invites.clear();
    this.me = '';
    writeStored(null);
    this.changed();
  }

  get state() {
    return this.dev.state;
  }

  // --- user actions ---

  start(conv) {
    return this.begin({ type: 'start', conv, join: newJoinId() }, { conv, caller: true });
  }

  accept(call) {
    const inv = this.invites.get(call);
    return this.begin({ type: 'accept', call, join: newJoinId() }, { call, conv: inv?.conv || this.ended?.conv || '', caller: false });
  }

  begin(ev, cur) {
    if (this.dev.active()) return { code: 'busy', message: 'You are already in a call.' };
    this.ended = null;
    this.early = [];
    this.current = { call: cur.call || '', join: ev.join, conv: cur.conv, caller: cur.caller, participants: new Map(), enteredAt: 0, connection: 'new' };
    // Ask for the microphone now, within the user's gesture; the media
    // waits for it at the first offer.
    this.mic = getMic().then(
      (s) => {
        this.micError = '';
        return s;
      },
      (e) => {
        this.micError = e.name === 'NotAllowedError' ? 'Microphone blocked: you can listen but not speak.' : 'No microphone: you can listen but not speak.';
        console.warn('parley: microphone:', e.name);
        this.changed();
        return null;
      },
    );
    const err = this.step(ev);
    if (err) {
      this.current = null;
      this.releaseMic();
    }
    return err;
  }

  decline(call) {
    return this.step({ type: 'decline', call });
  }

  hangup() {
    return this.step({ type: 'hangup' });
  }

  setMuted(muted) {
    const err = this.step({ type: 'mute', muted });
    if (!err) this.media?.setMuted(muted);
    return err;
  }

  dismissEnded() {
    this.ended = null;
    this.changed();
  }

  // ongoingIn tells whether the last call seen in conv still lasts with
  // someone in the room (callInfo, cached for a few seconds), so that a
  // member who declined, missed or left it can join. Resolves to the call
  // id or ''.
  async ongoingIn(conv) {
    const call = this.recent.get(conv);
    if (!call || this.conn.state !== 'ready') return '';
    const hit = this.ongoing.get(conv);
    if (hit && hit.call === call && Date.now() - hit.at < 5000) return hit.live ? call : '';
    let live = false;
    try {
      const info = await this.conn.call('callInfo', { callId: call });
      live = !info.ended && (info.participants || []).some((p) => p.state === 'CALL_PARTICIPANT_STATE_IN_ROOM');
      if (info.ended) this.recent.delete(conv);
    } catch {
      // not a member any more, or the link dropped: nothing to join
    }
    this.ongoing.set(conv, { call, at: Date.now(), live });
    return live ? call : '';
  }

  // --- the machine ---

  step(ev) {
    const fx = this.dev.step(ev);
    if (fx.err) return fx.err;
    for (const o of fx.send) this.send(o);
    for (const id of fx.ring) {
      const r = this.dev.ringing.find((x) => x.call === id);
      if (r) this.invites.set(id, r);
      // The server stops the ringing (missed) at expiresAtMs; should that
      // never arrive (no link), stop here a little later.
      if (r?.expires) setTimeout(() => this.dev.isRinging(id) && this.step({ type: 'ringStopped', call: id, reason: 'missed', device: '' }), Math.max(0, r.expires - Date.now()) + 5000);
    }
    for (const id of fx.stopRing) this.invites.delete(id);
    if (fx.startMedia) this.startMedia();
    if (fx.stopMedia) this.stopMedia();
    if (fx.over && this.current) {
      const c = this.current;
      this.ended = { call: c.call, conv: c.conv, reason: fx.over, at: Date.now(), caller: c.caller };
      this.current = null;
      this.early = [];
      this.stopMedia();
      this.releaseMic(); // also when the attempt ended before the room
    }
    this.persist();
    this.changed();
    return null;
  }

  // send issues one request and steps its reply through the machine.
  async send(o) {
    const name = COMMAND[o.op];
    const body = o.op === Op.CREATE ? { conversationId: o.conv, joinId: o.join } : o.op === Op.DECLINE ? { callId: o.call } : { callId: o.call, joinId: o.join };
    if (o.op === Op.MUTE) body.muted = o.muted;
    const setup = o.op === Op.CREATE || o.op === Op.CREATE_ROOM || o.op === Op.ENTER || o.op === Op.JOIN;
    const wanted = () => (setup ? this.dev.join === o.join && this.dev.active() : !!this.me);
    let res;
    try {
      res = await this.request(name, body, wanted);
    } catch (e) {
      if (RETRY.has(e.code)) return; // gave up: no answer to step
      const reply = { op: o.op, call: o.call, join: o.join, err: { code: e.code, message: e.message } };
      this.step({ type: 'answer', reply });
      if (!setup && o.op !== Op.MUTE) console.warn(`parley: ${name}:`, e.code);
      return;
    }
    const reply = { op: o.op, call: o.call, join: o.join, err: null };
    if (res.callId) reply.call = res.callId; // callConfirm, callRoom
    if (this.current && this.current.join === o.join && this.dev.join === o.join) {
      if (o.op === Op.CREATE || o.op === Op.ENTER) {
        this.current.call = res.callId || this.current.call;
        if (res.conversationId) this.current.conv = res.conversationId;
        if (this.current.conv && this.current.call) this.recent.set(this.current.conv, this.current.call);
        this.current.endpoint = res.media || null;
      }
      if (o.op === Op.CREATE_ROOM || o.op === Op.JOIN) {
        for (const p of res.participants || []) {
          if (!this.current.participants.has(p.userId)) this.current.participants.set(p.userId, participant(p));
        }
      }
    }
    this.step({ type: 'answer', reply });
  }

  // request sends a command, again on the next link if the link dropped,
  // while wanted() holds.
  async request(name, body, wanted) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.conn.call(name, body);
      } catch (e) {
        if (!RETRY.has(e.code) || attempt >= MAX_ATTEMPTS || !wanted()) throw e;
        if (e.code === 'closed') await this.linkUp();
        else await sleep(Math.min(200 * attempt, 2000) + Math.random() * 200);
        if (!wanted()) throw e;
      }
    }
  }

  linkUp() {
    if (this.conn.state === 'ready') return sleep(50);
    return new Promise((resolve) => this.linkWaiters.push(resolve));
  }

  wakeLink() {
    const w = this.linkWaiters;
    this.linkWaiters = [];
    for (const f of w) f();
  }

  // --- events from the server ---

  onEvent(ev) {
    if (ev.callInvited) {
      const i = ev.callInvited;
      if (i.conversationId) this.recent.set(i.conversationId, i.callId);
      this.step({ type: 'incoming', call: i.callId, conv: i.conversationId || '', caller: i.caller || '', expires: Number(i.expiresAtMs || 0), now: Date.now() });
    } else if (ev.callRingStopped) {
      const s = ev.callRingStopped;
      this.step({ type: 'ringStopped', call: s.callId, reason: s.reason || '', device: s.deviceId || '' });
    } else if (ev.callEnded) {
      const s = ev.callEnded;
      this.step({ type: 'ended', call: s.callId, join: s.joinId || '', reason: s.reason || 'ended' });
    } else if (ev.callParticipant) {
      const s = ev.callParticipant;
      const c = this.current;
      if (c && s.participant && (c.call === s.callId || (this.dev.call === s.callId && this.dev.active()))) {
        c.participants.set(s.participant.userId, participant(s.participant));
        this.changed();
      }
    } else if (ev.callSignal) {
      const s = ev.callSignal;
      if (!this.dev.active() || this.dev.join !== s.joinId) return; // about a join that is over
      if (this.media) this.media.signal(s);
      else this.early.push(s); // before the room: keep it
    }
  }

  // onSession runs on every authenticated link.
  onSession(session) {
    if (this.stale) {
      // The page went away while in a call: its media is gone. Leave that
      // join (the others see it go at once) and offer to rejoin.
      const s = this.stale;
      this.stale = null;
      if (!this.dev.active()) {
        this.send({ op: s.caller ? Op.CANCEL : Op.LEAVE, call: s.call, join: s.join });
        this.dev.gone(s.call, s.join);
        this.ended = { call: s.call, conv: s.conv, reason: 'reload', at: Date.now(), caller: s.caller };
        writeStored(null);
        this.changed();
      }
      return;
    }
    if (session.rebuilt || !this.dev.active()) return; // events replayed; requests resent
    // A fresh session: this device's call events went with the old one.
    // Take the participant over with a new join (the server ends the old
    // one: callEnded "replaced" to the old session).
    const { call, conv } = this.current || {};
    if (!call) return; // create not confirmed yet: its retransmission names the same call
    this.debug.takeovers++;
    this.step({ type: 'ended', call: this.dev.call, join: this.dev.join, reason: 'link_lost' });
    this.dev.goneCalls = this.dev.goneCalls.filter((x) => x !== call);
    this.begin({ type: 'accept', call, join: newJoinId() }, { call, conv, caller: false });
  }

  // --- media ---

  startMedia() {
    const c = this.current;
    if (!c) return;
    c.enteredAt = Date.now();
    this.media = new Media(this, this.dev.call, this.dev.join, this.mic || Promise.resolve(null));
    const early = this.early;
    this.early = [];
    for (const s of early) this.media.signal(s);
  }

  stopMedia() {
    this.media?.close();
    this.media = null;
  }

  releaseMic() {
    this.mic?.then((s) => s?.getTracks().forEach((t) => t.stop()));
    this.mic = null;
  }

  // signal sends this device's answer or candidate for the join.
  async signal(call, join, body) {
    const wanted = () => this.media?.join === join;
    try {
      await this.request('signalCall', { callId: call, joinId: join, ...body }, wanted);
    } catch (e) {
      if (!wanted() || e.code === 'call_ended' || e.code === 'not_in_call') return;
      // call_state on a resent answer: it was applied before the link dropped.
      if (e.code === 'call_state' && body.answer) return;
      this.debug.errors.push(`${body.answer ? 'answer' : 'candidate'}: ${e.code}`);
      console.warn('parley: signalCall:', e.code, e.message);
    }
  }

  mediaChanged(state) {
    if (this.current) this.current.connection = state;
    if (state === 'failed' && this.dev.active()) {
      // ICE gave up (the SFU is gone or unreachable): end this part.
      this.hangup();
      if (this.ended) this.ended.reason = 'media_error';
    }
    this.changed();
  }

  persist() {
    const c = this.current;
    if (c && c.call && this.dev.join && this.me) writeStored({ user: this.me, call: c.call, join: this.dev.join, caller: c.caller, conv: c.conv });
    else if (!this.dev.active()) writeStored(null);
  }

  // pc is the active peer connection (tests read getStats from it).
  pc() {
    return this.media?.pc || null;
  }

  changed() {
    this.dispatchEvent(new CustomEvent('change'));
  }
}

// Media is one join's media: a peer connection that answers the SFU.
class Media {
  constructor(calls, call, join, mic) {
    this.calls = calls;
    this.call = call;
    this.join = join;
    this.mic = mic;
    this.micTrack = null;
    this.muted = false;
    this.closed = false;
    this.chain = Promise.resolve(); // offers and candidates, one at a time, in order
    this.described = false; // a remote description is set
    this.pendingCandidates = [];
    this.attached = false;
    this.audio = new Map(); // stream id -> <audio>
    this.audioBlocked = false;
    this.pc = new RTCPeerConnection();
    this.pc.onicecandidate = (e) => {
      if (!e.candidate || !e.candidate.candidate || this.closed) return;
      const j = e.candidate.toJSON();
      const cand = { candidate: j.candidate };
      if (j.sdpMid) cand.sdpMid = j.sdpMid;
      if (j.sdpMLineIndex) cand.sdpMLineIndex = j.sdpMLineIndex;
      if (j.usernameFragment) cand.usernameFragment = j.usernameFragment;
      calls.debug.candidatesOut++;
      calls.signal(call, join, { candidate: cand });
    };
    this.pc.ontrack = (e) => this.play(e);
    this.pc.onconnectionstatechange = () => !this.closed && calls.mediaChanged(this.pc.connectionState);
  }

  signal(s) {
    this.chain = this.chain.then(() => this.apply(s)).catch((e) => {
      if (this.closed) return;
      this.calls.debug.errors.push(`${s.offer ? 'offer' : 'candidate'}: ${e.name}: ${e.message}`);
      console.warn('parley: call signal:', e.name, e.message);
    });
  }

  async apply(s) {
    if (this.closed) return;
    if (s.offer) {
      const rev = Number(s.offer.revision || 0);
      this.calls.debug.offers++;
      await this.pc.setRemoteDescription({ type: 'offer', sdp: s.offer.sdp });
      if (!this.attached) {
        // The first offer's one recvonly m-line takes the microphone.
        this.attached = true;
        const tr = this.pc.getTransceivers()[0];
        if (tr) {
          tr.direction = 'sendonly';
          const stream = await this.mic;
          if (this.closed) return;
          this.micTrack = stream?.getAudioTracks()[0] || null;
          if (this.micTrack) {
            this.micTrack.enabled = !this.muted;
            await tr.sender.replaceTrack(this.micTrack);
            tr.sender.setStreams?.(stream);
          }
        }
      }
      const answer = await this.pc.createAnswer();
      if (this.closed) return;
      await this.pc.setLocalDescription(answer);
      this.described = true;
      const early = this.pendingCandidates;
      this.pendingCandidates = [];
      for (const c of early) await this.addCandidate(c);
      this.calls.debug.answers++;
      this.calls.signal(this.call, this.join, { answer: { type: 'answer', sdp: this.pc.localDescription.sdp, revision: rev } });
    } else if (s.candidate && s.candidate.candidate) {
      this.calls.debug.candidatesIn++;
      const c = { candidate: s.candidate.candidate, sdpMid: s.candidate.sdpMid || null, sdpMLineIndex: Number(s.candidate.sdpMLineIndex || 0) };
      if (s.candidate.usernameFragment) c.usernameFragment = s.candidate.usernameFragment;
      if (this.described) await this.addCandidate(c);
      else this.pendingCandidates.push(c);
    }
  }

  async addCandidate(c) {
    if (!c.sdpMid) delete c.sdpMid;
    await this.pc.addIceCandidate(c);
  }

  // play attaches one other participant's stream to an <audio> element.
  play(e) {
    const stream = e.streams[0] || new MediaStream([e.track]);
    let el = this.audio.get(stream.id);
    if (!el) {
      el = document.createElement('audio');
      el.autoplay = true;
      el.dataset.stream = stream.id;
      audioHost().append(el);
      this.audio.set(stream.id, el);
      stream.addEventListener('removetrack', () => {
        if (stream.getTracks().length === 0) this.drop(stream.id);
      });
    }
    el.srcObject = stream;
    el.play().then(
      () => {
        if (this.audioBlocked) {
          this.audioBlocked = false;
          this.calls.changed();
        }
      },
      (err) => {
        if (err.name !== 'NotAllowedError' || this.closed) return;
        this.audioBlocked = true; // autoplay policy: the UI offers a button
        this.calls.changed();
      },
    );
  }

  // resumeAudio plays what autoplay blocked (called from a click).
  resumeAudio() {
    for (const el of this.audio.values()) el.play().catch(() => {});
    this.audioBlocked = false;
    this.calls.changed();
  }

  drop(id) {
    this.audio.get(id)?.remove();
    this.audio.delete(id);
  }

  setMuted(muted) {
    // Muting is ours to do (§19.6): the track sends silence while disabled.
    this.muted = muted;
    if (this.micTrack) this.micTrack.enabled = !muted;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.pc.close();
    for (const el of this.audio.values()) {
      el.srcObject = null;
      el.remove();
    }
    this.audio.clear();
    this.mic.then((s) => s?.getTracks().forEach((t) => t.stop()));
  }
}

function participant(p) {
  return { userId: p.userId, state: p.state || 'CALL_PARTICIPANT_STATE_UNSPECIFIED', muted: !!p.muted, deviceId: p.deviceId || '', reason: p.reason || '' };
}

function getMic() {
  if (!navigator.mediaDevices?.getUserMedia) return Promise.reject(Object.assign(new Error('no mediaDevices'), { name: 'NotFoundError' }));
  return navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true }, video: false });
}

function audioHost() {
  let el = document.getElementById('call-audio');
  if (!el) {
    el = document.createElement('div');
    el.id = 'call-audio';
    el.hidden = true;
    document.body.append(el);
  }
  return el;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function readStored() {
  try {
    return JSON.parse(localStorage.getItem(STORE_KEY) || 'null');
  } catch {
    return null;
  }
}

function writeStored(v) {
  try {
    if (v) localStorage.setItem(STORE_KEY, JSON.stringify(v));
    else localStorage.removeItem(STORE_KEY);
  } catch {
    // storage disabled: a reload then leaves the call by media timeout
  }
}
