// The device side of calls: a port of actors/call/device.go (the Go SDK's
// machine) to JavaScript, with the same states, inputs and effects. It is
// pure (no I/O, no clock, no DOM) and tested against the Go machine's own
// transcripts (actors/call/testdata/device, web/test/calls.test.mjs).
//
// A device has at most one active local call session (state, call, join)
// plus the invitations ringing on it. Every input that does not fit the
// state is ignored. Calls and joins the device is done with are remembered
// (goneCalls, goneJoins), so late messages about them change nothing: a
// late invitation does not ring, a late confirm of an attempt the user hung
// up on is answered with a cancel.
//
// Inputs (step(ev)), user actions:
//   {type: 'start', conv, join}   {type: 'accept', call, join}
//   {type: 'decline', call}       {type: 'hangup'}      {type: 'mute', muted}
// and messages from the server:
//   {type: 'answer', reply: {op, call, join, err: {code, message} | null}}
//   {type: 'incoming', call, conv, caller, expires, now}
//   {type: 'ringStopped', call, reason, device}
//   {type: 'ended', call, join, reason}
//
// Effects: {err, send: [{op, call, join, conv, muted}], startMedia,
// stopMedia, ring: [call], stopRing: [call], over: reason | ''}.

export const State = Object.freeze({
  NONE: 'none',
  CALL_REQUESTING: 'call_requesting',
  CALL_REQUESTED: 'call_requested',
  ENTER_REQUESTING: 'enter_requesting',
  ENTER_REQUESTED: 'enter_requested',
  IN_ROOM: 'in_room',
});

// Op names the requests (as in the Go machine's transcripts).
export const Op = Object.freeze({
  CREATE: 'create',
  CREATE_ROOM: 'create-room',
  ENTER: 'enter',
  JOIN: 'join',
  DECLINE: 'decline',
  CANCEL: 'cancel',
  LEAVE: 'leave',
  MUTE: 'mute',
});

export const MAX_GONE = 32;

// Error codes after which nothing happened at the server (§19.3): the
// attempt goes on.
const KEEP_GOING = new Set(['call_state', 'unavailable', 'rate_limited', 'storage']);
const SETUP_OPS = new Set([Op.CREATE, Op.CREATE_ROOM, Op.ENTER, Op.JOIN]);

function effects() {
  return { err: null, send: [], startMedia: false, stopMedia: false, ring: [], stopRing: [], over: '' };
}

export class CallDevice {
  constructor(id) {
    this.id = id;
    this.state = State.NONE;
    this.call = '';
    this.join = '';
    this.conv = '';
    this.caller = false; // the active join was opened by create
    this.muted = false;
    this.ringing = []; // [{call, conv, caller, expires}], sorted by call
    this.goneCalls = [];
    this.goneJoins = [];
  }

  active() {
    return this.state !== State.NONE;
  }

  isRinging(call) {
    return this.ringing.some((i) => i.call === call);
  }

  step(ev) {
    const fx = effects();
    switch (ev.type) {
      case 'start':
        if (this.active()) {
          fx.err = { code: 'busy', message: `already in call ${this.call}` };
          return fx;
        }
        this.set(State.CALL_REQUESTING, '', ev.join, ev.conv, true);
        fx.send.push({ op: Op.CREATE, call: '', join: ev.join, conv: ev.conv });
        break;
      case 'accept':
        if (this.active()) {
          fx.err = { code: 'busy', message: `already in call ${this.call}: leave it first` };
          return fx;
        }
        if (this.isRinging(ev.call)) this.stopRinging(ev.call, fx);
        this.set(State.ENTER_REQUESTING, ev.call, ev.join, '', false);
        fx.send.push({ op: Op.ENTER, call: ev.call, join: ev.join });
        break;
      case 'decline':
        if (!this.isRinging(ev.call)) {
          fx.err = { code: 'call_state', message: `call ${ev.call} is not ringing` };
          return fx;
        }
        this.stopRinging(ev.call, fx);
        this.gone(ev.call, '');
        fx.send.push({ op: Op.DECLINE, call: ev.call, join: '' });
        break;
      case 'hangup':
        this.hangup(fx);
        break;
      case 'mute':
        if (this.state !== State.IN_ROOM) {
          fx.err = { code: 'not_in_call', message: 'not in a room' };
          return fx;
        }
        if (this.muted !== !!ev.muted) {
          this.muted = !!ev.muted;
          fx.send.push({ op: Op.MUTE, call: this.call, join: this.join, muted: this.muted });
        }
        break;
      case 'answer':
        this.answer(ev.reply, fx);
        break;
      case 'incoming':
        if ((ev.call === this.call && this.active()) || this.isRinging(ev.call) || this.goneCalls.includes(ev.call)) {
          // already known
        } else if (ev.expires > 0 && ev.now >= ev.expires) {
          this.gone(ev.call, '');
        } else {
          this.ringing.push({ call: ev.call, conv: ev.conv, caller: ev.caller, expires: ev.expires });
          this.ringing.sort((a, b) => (a.call < b.call ? -1 : a.call > b.call ? 1 : 0));
          fx.ring.push(ev.call);
        }
        break;
      case 'ringStopped':
        if (ev.device && ev.device === this.id) return fx; // this device answered or declined
        if (this.isRinging(ev.call)) this.stopRinging(ev.call, fx);
        if (!(this.active() && this.call === ev.call)) this.gone(ev.call, '');
        break;
      case 'ended':
        // Before the create confirm the device does not know the call id
        // yet: the join names the attempt.
        if (this.active() && (this.call === ev.call || this.call === '') && this.join === ev.join) this.over(ev.reason, fx);
        break;
      default:
        throw new Error(`calldevice: unknown event ${ev.type}`);
    }
    return fx;
  }

  set(state, call, join, conv, caller) {
    Object.assign(this, { state, call, join, conv, caller, muted: false });
  }

  stopRinging(call, fx) {
    this.ringing = this.ringing.filter((i) => i.call !== call);
    fx.stopRing.push(call);
  }

  gone(call, join) {
    const add = (xs, x) => {
      if (!x || xs.includes(x)) return xs;
      xs = [...xs, x];
      return xs.length > MAX_GONE ? xs.slice(xs.length - MAX_GONE) : xs;
    };
    this.goneCalls = add(this.goneCalls, call);
    this.goneJoins = add(this.goneJoins, join);
  }

  // over ends the active session.
  over(reason, fx) {
    if (this.state === State.IN_ROOM) fx.stopMedia = true;
    this.gone(this.call, this.join);
    this.set(State.NONE, '', '', '', false);
    fx.over = reason;
  }

  hangup(fx) {
    if (this.state === State.NONE) {
      fx.err = { code: 'not_in_call', message: 'no call to hang up' };
      return;
    }
    if (this.state === State.CALL_REQUESTING) {
      // The call id comes with the confirm: the cancel goes out then.
    } else if (this.caller) {
      fx.send.push({ op: Op.CANCEL, call: this.call, join: this.join });
    } else {
      fx.send.push({ op: Op.LEAVE, call: this.call, join: this.join });
    }
    this.over('left', fx);
  }

  answer(r, fx) {
    if (r.join !== this.join || !this.active()) {
      // About an attempt that is over. The confirm of a create the user
      // hung up on before it came names the call: cancel it now.
      if (!r.err && r.op === Op.CREATE && this.goneJoins.includes(r.join)) fx.send.push({ op: Op.CANCEL, call: r.call, join: r.join });
      return;
    }
    if (r.err) {
      if (!KEEP_GOING.has(r.err.code) && SETUP_OPS.has(r.op)) this.over(r.err.code, fx);
      return;
    }
    if (r.op === Op.CREATE && this.state === State.CALL_REQUESTING) {
      this.state = State.CALL_REQUESTED;
      this.call = r.call;
      fx.send.push({ op: Op.CREATE_ROOM, call: r.call, join: this.join });
    } else if (r.op === Op.CREATE_ROOM && this.state === State.CALL_REQUESTED && r.call === this.call) {
      this.state = State.IN_ROOM;
      fx.startMedia = true;
    } else if (r.op === Op.ENTER && this.state === State.ENTER_REQUESTING && r.call === this.call) {
      this.state = State.ENTER_REQUESTED;
      fx.send.push({ op: Op.JOIN, call: r.call, join: this.join });
    } else if (r.op === Op.JOIN && this.state === State.ENTER_REQUESTED && r.call === this.call) {
      this.state = State.IN_ROOM;
      fx.startMedia = true;
    }
  }
}
