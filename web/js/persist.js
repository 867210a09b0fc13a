// localStorage: the account (token, user id, device id) and, per user, a
// snapshot of the store (cursors saved together with their messages, read
// markers, the outbox). A cursor is only ever saved in the same write as
// the messages below it, so a reload never skips or repeats a message.

import { newDeviceId } from './protocol.js';

const PREFIX = 'parley.v1.';

function read(key) {
  try {
    const raw = localStorage.getItem(PREFIX + key);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function write(key, value) {
  try {
    if (value === null) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, JSON.stringify(value));
    return true;
  } catch {
    return false; // quota or storage disabled: the app still works, without offline state
  }
}

// deviceId is this browser profile's device id, created once. Every tab of
// one profile shares it, so a second tab takes the session over (4004).
export function deviceId() {
  let id = read('device');
  if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    id = newDeviceId();
    write('device', id);
  }
  return id;
}

export function loadAccount() {
  const a = read('account');
  return a && typeof a.token === 'string' && typeof a.userId === 'string' ? a : null;
}

export function saveAccount(a) {
  write('account', a);
}

export function clearAccount() {
  write('account', null);
}

export function loadSnapshot(userId) {
  return read(`user.${userId}`);
}

export function clearSnapshot(userId) {
  write(`user.${userId}`, null);
}

// Saver writes the store's snapshot at most every delayMs, at once when
// asked (outbox changes), and when the page is hidden or closed.
export class Saver {
  constructor(store, delayMs = 400) {
    this.store = store;
    this.delayMs = delayMs;
    this.timer = 0;
    this.stopped = false;
    this.onHide = () => this.now();
    addEventListener('pagehide', this.onHide);
    document.addEventListener('visibilitychange', this.onHide);
  }

  later() {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => this.now(), this.delayMs);
  }

  now() {
    clearTimeout(this.timer);
    this.timer = 0;
    if (this.stopped) return;
    const snap = this.store.snapshot();
    if (!write(`user.${this.store.me}`, snap)) {
      // Over quota: keep cursors and outbox, drop stored messages.
      for (const c of snap.convs) {
        c.cursor = 0;
        c.msgs = [];
      }
      write(`user.${this.store.me}`, snap);
    }
  }

  stop() {
    clearTimeout(this.timer);
    this.stopped = true;
    removeEventListener('pagehide', this.onHide);
    document.removeEventListener('visibilitychange', this.onHide);
  }
}
