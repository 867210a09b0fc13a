// The calls screen: the Call button of a conversation, an incoming-call
// card per ringing invitation (Accept / Decline), and the call panel
// (conversation, status and duration, participants with their state and
// mute, Mute and Hang up; "Call ended" with the reason afterwards). On
// wide screens the panel floats over the conversation; on a phone it is a
// full screen that can be hidden to a bar while you chat.

import { $, h } from './dom.js';
import { convTitle, shortUser } from './format.js';
import { REJOINABLE } from '../calls.js';
import { State } from '../calldevice.js';
import { avatar } from './sidebar.js';

const PARTICIPANT = {
  CALL_PARTICIPANT_STATE_RINGING: 'Ringing…',
  CALL_PARTICIPANT_STATE_JOINING: 'Joining…',
  CALL_PARTICIPANT_STATE_IN_ROOM: 'In call',
  CALL_PARTICIPANT_STATE_DECLINED: 'Declined',
  CALL_PARTICIPANT_STATE_BUSY: 'Busy',
  CALL_PARTICIPANT_STATE_MISSED: 'Missed',
  CALL_PARTICIPANT_STATE_LEFT: 'Left',
};
// Order in the list: in the room first, then on the way, then the rest.
const RANK = { IN_ROOM: 0, JOINING: 1, RINGING: 2, DECLINED: 3, BUSY: 3, MISSED: 3, LEFT: 4 };

const ENDED = {
  left: 'You left the call.',
  cancelled: 'The call was cancelled.',
  busy: 'You are already in another call.',
  answered_elsewhere: 'Answered on another device.',
  call_ended: 'The call has ended.',
  not_member: 'You are not a member of this conversation.',
  not_found: 'This call or conversation does not exist.',
  media_unavailable: 'Calls are not available on this server.',
  already_joined: 'This device is already in the call.',
  link_lost: 'You were disconnected from the call.',
  setup_timeout: 'The call could not be set up in time.',
  media_failed: 'The audio connection failed.',
  media_error: 'The audio connection failed.',
  media_lost: 'The call server restarted.',
  replaced: 'The call moved to another session of this device.',
  reload: 'You left the call when the page reloaded.',
  moved: 'Parley was opened in another tab: the call stopped here.',
};

const STATUS = {
  [State.CALL_REQUESTING]: 'Starting call…',
  [State.CALL_REQUESTED]: 'Starting call…',
  [State.ENTER_REQUESTING]: 'Joining…',
  [State.ENTER_REQUESTED]: 'Joining…',
};

export class CallView {
  constructor(app, calls) {
    this.app = app;
    this.calls = calls;
    this.store = null;
    this.collapsed = false;
    this.endedTimer = 0;
    this.tick = 0;
    this.wasActive = false;
    calls.addEventListener('change', () => this.render());
    $('call-btn').addEventListener('click', () => this.startHere());
    $('call-hangup').addEventListener('click', () => this.calls.hangup());
    $('call-mute').addEventListener('click', () => this.calls.setMuted(!this.calls.dev.muted));
    $('call-collapse').addEventListener('click', () => this.setCollapsed(!this.collapsed));
    $('call-audio-btn').addEventListener('click', () => this.calls.media?.resumeAudio());
    $('call-close').addEventListener('click', () => this.calls.dismissEnded());
    $('call-rejoin').addEventListener('click', () => this.rejoin());
    $('call-panel').addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && !this.collapsed && this.calls.dev.active()) {
        e.preventDefault();
        this.setCollapsed(true);
      }
    });
    this.onList = () => this.render();
    addEventListener('hashchange', () => setTimeout(() => this.renderButton())); // after the app routed
  }

  bind(store) {
    this.unbind();
    this.store = store;
    store.addEventListener('list', this.onList);
    this.render();
  }

  unbind() {
    this.store?.removeEventListener('list', this.onList);
    this.store = null;
  }

  title(conv) {
    const c = conv && this.store?.get(conv);
    return c ? convTitle(c, this.store.me) : 'Call';
  }

  startHere() {
    const id = this.app.conversation.id;
    if (!id) return;
    const join = $('call-btn').dataset.join; // a call that lasts: join it
    const err = join ? this.calls.accept(join) : this.calls.start(id);
    if (err) this.app.toast(err.message || err.code);
    else this.focusControls();
  }

  accept(call) {
    if (this.calls.dev.active()) this.calls.hangup(); // "Hang up and accept"
    const err = this.calls.accept(call);
    if (err) this.app.toast(err.message || err.code);
    else this.focusControls();
  }

  rejoin() {
    const e = this.calls.ended;
    if (!e?.call) return;
    const err = this.calls.accept(e.call);
    if (err) this.app.toast(err.message || err.code);
  }

  focusControls() {
    this.setCollapsed(false);
    // The panel itself, not Hang up: a second Enter must not end the call.
    requestAnimationFrame(() => $('call-panel').focus());
  }

  setCollapsed(v) {
    this.collapsed = v;
    this.render();
    if (v && $('call-panel').contains(document.activeElement)) $('call-collapse').focus();
  }

  render() {
    this.renderButton();
    this.renderRings();
    this.renderPanel();
  }

  renderButton() {
    const btn = $('call-btn');
    const id = this.app.conversation?.id;
    const c = id && this.store?.get(id);
    const busy = this.calls.dev.active();
    btn.disabled = !c || c.left || busy;
    btn.title = busy ? 'You are in a call' : 'Start a voice call with everyone here';
    const label = (join) => {
      btn.dataset.join = join;
      btn.textContent = join ? 'Join call' : 'Call';
      btn.setAttribute('aria-label', join ? 'Join the call in progress' : 'Start a call');
      btn.classList.toggle('call-live', !!join);
    };
    if (busy || !c) return label('');
    // A call you declined, missed or left may still be going on here.
    if (!this.calls.recent.has(id)) return label('');
    this.calls.ongoingIn(id).then((call) => {
      if (this.app.conversation?.id !== id || this.calls.dev.active()) return;
      label(call);
      // Look again later: the call ends without telling non-participants.
      clearTimeout(this.recheck);
      if (call) this.recheck = setTimeout(() => this.renderButton(), 6000);
    });
  }

  renderRings() {
    const host = $('call-rings');
    const want = new Set(this.calls.invites.keys());
    for (const el of [...host.children]) if (!want.has(el.dataset.callId)) el.remove();
    for (const inv of this.calls.invites.values()) {
      let el = host.querySelector(`[data-call-id="${CSS.escape(inv.call)}"]`);
      if (!el) {
        el = this.ringCard(inv);
        host.append(el);
        // Focus Accept unless the user is typing somewhere.
        if (!document.activeElement || document.activeElement === document.body) el.querySelector('.call-accept').focus();
      }
      el.querySelector('.call-ring-title').textContent = this.title(inv.conv);
      el.querySelector('.call-accept').textContent = this.calls.dev.active() ? 'Hang up & accept' : 'Accept';
    }
    host.hidden = want.size === 0;
  }

  ringCard(inv) {
    const av = h('span', { class: 'avatar', 'aria-hidden': 'true' });
    avatar(av, this.title(inv.conv), inv.conv);
    return h(
      'div',
      { class: 'call-ring', role: 'alertdialog', 'aria-label': 'Incoming call', dataset: { callId: inv.call } },
      av,
      h('div', { class: 'call-ring-text' }, h('div', { class: 'call-ring-title' }), h('div', { class: 'call-ring-sub', text: `Incoming call from ${shortUser(inv.caller)}`, title: inv.caller })),
      h('div', { class: 'call-ring-buttons' }, h('button', { type: 'button', class: 'call-decline danger', onclick: () => this.calls.decline(inv.call) }, 'Decline'), h('button', { type: 'button', class: 'call-accept primary', onclick: () => this.accept(inv.call) }, 'Accept')),
    );
  }

  renderPanel() {
    const calls = this.calls;
    const panel = $('call-panel');
    const cur = calls.current;
    const active = calls.dev.active() && cur;
    const ended = !active && calls.ended;
    document.body.classList.toggle('in-call', !!active);
    if (active && !this.wasActive) this.collapsed = false;
    this.wasActive = !!active;
    clearInterval(this.tick);
    clearTimeout(this.endedTimer);
    if (!active && !ended) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    panel.dataset.state = active ? calls.dev.state : 'ended';
    panel.dataset.collapsed = String(!!active && this.collapsed);
    $('call-title').textContent = this.title(active ? cur.conv : ended.conv);
    $('call-collapse').hidden = !active;
    $('call-collapse').textContent = this.collapsed ? 'Show' : 'Hide';
    $('call-collapse').setAttribute('aria-expanded', String(!this.collapsed));
    $('call-body').hidden = !!active && this.collapsed;
    $('call-mute').hidden = !active || calls.dev.state !== State.IN_ROOM;
    $('call-hangup').hidden = !active;
    $('call-audio-btn').hidden = !(active && calls.media?.audioBlocked);
    $('call-close').hidden = !ended;
    $('call-rejoin').hidden = !(ended && REJOINABLE.has(ended.reason));
    const muted = calls.dev.muted;
    $('call-mute').textContent = muted ? 'Unmute' : 'Mute';
    $('call-mute').setAttribute('aria-pressed', String(muted));
    if (ended) {
      $('call-status').textContent = 'Call ended';
      this.note(ENDED[ended.reason] || `The call ended (${ended.reason}).`);
      $('call-participants').replaceChildren();
      // The summary goes away by itself unless it offers to rejoin.
      if (!REJOINABLE.has(ended.reason)) this.endedTimer = setTimeout(() => calls.ended === ended && calls.dismissEnded(), 6000);
      return;
    }
    this.status();
    if (calls.dev.state === State.IN_ROOM) this.tick = setInterval(() => this.status(), 1000);
    this.note(calls.micError);
    this.renderParticipants(cur);
  }

  status() {
    const calls = this.calls;
    const cur = calls.current;
    if (!cur) return;
    let text = STATUS[calls.dev.state] || '';
    if (calls.dev.state === State.IN_ROOM) {
      if (cur.connection === 'connected') {
        const s = Math.floor((Date.now() - cur.enteredAt) / 1000);
        text = `In call · ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
      } else if (cur.connection === 'disconnected') text = 'Reconnecting audio…';
      else text = 'Connecting audio…';
      if (calls.dev.muted) text += ' · muted';
    }
    const el = $('call-status');
    if (el.textContent !== text) el.textContent = text;
    $('call-panel').dataset.connection = cur.connection || '';
  }

  note(text) {
    $('call-note').textContent = text || '';
    $('call-note').hidden = !text;
  }

  renderParticipants(cur) {
    const me = this.calls.me;
    const list = [...cur.participants.values()];
    if (!cur.participants.has(me)) list.push({ userId: me, state: 'CALL_PARTICIPANT_STATE_JOINING', muted: false });
    const key = (p) => RANK[p.state.replace('CALL_PARTICIPANT_STATE_', '')] ?? 5;
    list.sort((a, b) => key(a) - key(b) || (a.userId === me ? -1 : b.userId === me ? 1 : a.userId < b.userId ? -1 : 1));
    const items = list.map((p) => {
      const mine = p.userId === me;
      const muted = mine ? this.calls.dev.muted : p.muted;
      const name = mine ? 'You' : shortUser(p.userId);
      const av = h('span', { class: 'avatar small', 'aria-hidden': 'true' });
      avatar(av, name, p.userId);
      const state = PARTICIPANT[p.state] || '';
      return h(
        'li',
        { dataset: { userId: p.userId, state: p.state.replace('CALL_PARTICIPANT_STATE_', ''), muted: String(muted) }, class: mine ? 'me' : '' },
        av,
        h('span', { class: 'call-name', title: p.userId, text: name }),
        muted && p.state === 'CALL_PARTICIPANT_STATE_IN_ROOM' ? h('span', { class: 'call-muted', text: 'Muted' }) : null,
        h('span', { class: 'call-pstate', text: state }),
      );
    });
    $('call-participants').replaceChildren(...items);
  }
}
