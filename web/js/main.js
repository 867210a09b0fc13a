// Parley web client: wires the connection, the store, sync and the views.
//
// Start-up: with a stored token the app shows the stored conversations at
// once and connects with hello+token; without one it shows the sign-in
// screen and opens a link only when the user submits it.

import { Calls } from './calls.js';
import { Channels, clearChannelList } from './channels.js';
import { Connection } from './connection.js';
import { CLOSE_LOGGED_OUT, CLOSE_MOVED, CLOSE_REPLACED } from './protocol.js';
import { Saver, clearAccount, clearSnapshot, deviceId, loadAccount, loadSnapshot, saveAccount } from './persist.js';
import { Store } from './store.js';
import { Sync } from './sync.js';
import { ConversationView } from './ui/conversation.js';
import { Dialogs } from './ui/dialogs.js';
import { CallView } from './ui/call.js';
import { ChannelsUI } from './ui/channels.js';
import { $ } from './ui/dom.js';
import { LoginView } from './ui/login.js';
import { SidebarView } from './ui/sidebar.js';

const wsURL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;

class App {
  constructor() {
    this.conn = new Connection({ url: wsURL, deviceId: deviceId() });
    this.account = null;
    this.store = null;
    this.sync = null;
    this.saver = null;
    this.navigated = false;
    this.lastFocus = null;
    this.login = new LoginView((mode, u, p, name) => this.signIn(mode, u, p, name));
    this.sidebar = new SidebarView(this);
    this.conversation = new ConversationView(this);
    this.dialogs = new Dialogs(this);
    this.calls = new Calls(this.conn);
    this.callView = new CallView(this, this.calls);
    this.channelsUI = new ChannelsUI(this);
    this.conn.cursors = () => (this.store ? this.store.cursors() : []);
    this.conn.addEventListener('resume-state', (e) => {
      if (!this.account) return;
      this.account.session = e.detail;
      saveAccount(this.account);
    });
    this.conn.addEventListener('session', (e) => this.onSession(e.detail));
    this.conn.addEventListener('state', (e) => this.onState(e.detail));
    this.conn.addEventListener('auth-failed', () => this.signedOut('Your session has expired. Please sign in again.'));
    this.conn.addEventListener('stopped', (e) => this.onStopped(e.detail.code));
    addEventListener('hashchange', () => this.route());
    $('logout').addEventListener('click', () => this.logout());
    $('banner-action').addEventListener('click', () => this.bannerAction?.());
    document.addEventListener('visibilitychange', () => (document.visibilityState === 'visible' ? this.sync?.readLater() : this.sync?.flushRead()));
    document.addEventListener('focusin', (e) => {
      if (!e.target.closest('dialog')) this.lastFocus = e.target;
    });
  }

  boot() {
    const acct = loadAccount();
    if (acct && acct.deviceId === this.conn.device.id) {
      this.enter(acct);
      this.conn.restoreSession(acct.session);
      this.conn.start(acct.token);
    } else {
      this.login.show();
    }
  }

  async signIn(mode, username, password, displayName) {
    if (mode === 'register') await this.conn.register(username, password, displayName);
    this.pendingUsername = username;
    await this.conn.login(username, password); // onSession follows
  }

  // onSession runs on every authenticated link (login or reconnect).
  onSession(session) {
    if (!this.store || this.store.me !== session.userId) {
      const acct = { token: this.conn.token, userId: session.userId, deviceId: this.conn.device.id, username: this.pendingUsername || '' };
      this.enter(acct);
    }
    this.account.session = this.conn.resumeState();
    if (this.account.token !== this.conn.token) {
      this.account.token = this.conn.token;
    }
    saveAccount(this.account);
    this.sync.onSession(session);
    this.channels.onSession();
  }

  // enter shows the main screen for an account, from its stored snapshot.
  enter(acct) {
    this.leave();
    this.account = acct;
    const store = new Store(acct.userId);
    store.restore(loadSnapshot(acct.userId));
    this.store = store;
    this.saver = new Saver(store);
    store.addEventListener('conv', () => this.saver.later());
    store.addEventListener('list', () => this.saver.later());
    store.addEventListener('outbox', () => this.saver.now());
    this.sync = new Sync(this.conn, store);
    this.sidebar.bind(store, acct.username);
    this.conversation.bind(store, this.sync);
    this.calls.bind(acct.userId);
    this.callView.bind(store);
    this.channels = new Channels(this.conn, acct.userId);
    this.channelsUI.bind(this.channels);
    this.login.hide();
    $('main').hidden = false;
    this.route();
  }

  leave() {
    this.saver?.now();
    this.saver?.stop();
    this.sync?.detach();
    this.sidebar.unbind();
    this.conversation.unbind();
    this.callView.unbind();
    this.calls.unbind();
    this.channels?.detach();
    this.channelsUI.unbind();
    this.store = this.sync = this.saver = this.channels = null;
  }

  async logout() {
    if (this.store?.outbox.some((e) => e.state !== 'sent') && !confirm('Some messages are not sent yet. Sign out and discard them?')) return;
    const me = this.store?.me;
    this.calls.unbind(); // hang up while the link is still there
    await this.conn.logout();
    this.signedOut('');
    if (me) clearSnapshot(me);
    if (me) clearChannelList(me);
  }

  signedOut(message) {
    this.leave();
    clearAccount();
    this.account = null;
    history.replaceState(null, '', location.pathname);
    this.showBanner('');
    this.login.show(message);
  }

  onStopped(code) {
    if (!this.account) return; // signed out already
    if (code === CLOSE_REPLACED || code === CLOSE_MOVED) {
      this.showBanner('Parley is open in another tab or window.', 'Use here', () => this.conn.start(this.account.token));
    } else if (code === CLOSE_LOGGED_OUT) {
      this.signedOut('You were signed out.');
    } else {
      this.showBanner('This server speaks another protocol version. Reload the page.', 'Reload', () => location.reload());
    }
  }

  onState({ state, retryAt }) {
    const text = {
      ready: 'Online',
      connecting: 'Connecting…',
      unauthenticated: 'Connecting…',
      waiting: 'Reconnecting…',
      offline: 'Offline',
      idle: 'Disconnected',
      stopped: 'Disconnected',
    }[state];
    this.sidebar.setStatus(text, state);
    if (!this.store || state === 'stopped') return;
    if (state === 'ready' || state === 'connecting' || state === 'unauthenticated') this.showBanner('');
    else if (state === 'offline') this.showBanner('You are offline. Messages you send are queued and go out when the connection is back.');
    else if (state === 'waiting') {
      const s = Math.max(1, Math.round((retryAt - Date.now()) / 1000));
      this.showBanner(`Connection lost. Reconnecting in ${s} s…`, 'Retry now', () => this.conn.onOnline());
    }
  }

  showBanner(text, action, fn) {
    $('banner').hidden = !text;
    $('banner-text').textContent = text;
    $('banner-action').hidden = !action;
    $('banner-action').textContent = action || '';
    this.bannerAction = fn;
  }

  // navigate opens conversation id (or channel id, with kind 'ch') through
  // the URL hash, so the browser's back button returns to the list on
  // phones. History holds at most the list and one conversation: switching
  // conversations replaces the entry.
  navigate(id, kind = 'c') {
    const hash = `#/${kind}/${encodeURIComponent(id)}`;
    if (location.hash === hash) this.route();
    else if (/^#\/(c|ch)\//.test(location.hash)) location.replace(hash);
    else {
      this.navigated = true;
      location.hash = hash;
    }
  }

  // back returns to the conversation list.
  back() {
    if (this.navigated) {
      this.navigated = false;
      history.back();
    } else {
      history.replaceState(null, '', location.pathname);
      this.route();
    }
  }

  route() {
    if (!this.store) return;
    const m = /^#\/c\/(.+)$/.exec(location.hash);
    const id = m ? decodeURIComponent(m[1]) : '';
    const ch = /^#\/ch\/(.+)$/.exec(location.hash);
    const chId = ch ? decodeURIComponent(ch[1]) : '';
    if (!id && !chId) this.navigated = false;
    $('main').dataset.view = id || chId ? 'conv' : 'list';
    this.sidebar.select(id);
    if (chId) {
      this.conversation.close();
      this.channelsUI.open(chId);
      if (matchMedia('(pointer: fine)').matches) this.channelsUI.focusComposer();
      return;
    }
    this.channelsUI.close();
    if (id) {
      this.conversation.open(id);
      // Not on touch screens, where focus would pop up the keyboard.
      if (matchMedia('(pointer: fine)').matches) this.conversation.focusComposer();
    } else {
      this.conversation.close();
    }
  }

  restoreFocus() {
    if (this.lastFocus?.isConnected) this.lastFocus.focus();
  }

  toast(text) {
    const t = $('toast');
    t.textContent = text;
    t.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => (t.hidden = true), 2500);
  }
}

const app = new App();
app.boot();
// For debugging from the console and for tests; not an API.
window.parley = app;
window.__parleyDebug = app.conn.debug;
