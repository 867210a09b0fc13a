// The sign-in / create-account screen.

import { $ } from './dom.js';

const MESSAGES = {
  bad_credentials: 'Wrong username or password.',
  username_taken: 'That username is taken. Pick another one.',
  invalid_argument: 'Check the username (3–32 of a–z, 0–9, _ . -) and the password (at least 8 characters).',
  closed: 'Cannot reach the server. Check your connection and try again.',
  timeout: 'The server did not answer. Try again.',
  rate_limited: 'Too many attempts. Wait a moment and try again.',
};

export class LoginView {
  // submit(mode, username, password, displayName) resolves on success and
  // rejects with a ProtocolError.
  constructor(submit) {
    this.submit = submit;
    this.mode = 'login';
    this.busy = false;
    $('tab-login').addEventListener('click', () => this.setMode('login'));
    $('tab-register').addEventListener('click', () => this.setMode('register'));
    $('login-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.onSubmit();
    });
  }

  show(message = '') {
    $('main').hidden = true;
    $('login').hidden = false;
    $('password').value = '';
    this.error(message);
    this.setBusy(false);
    $('username').focus();
  }

  hide() {
    $('login').hidden = true;
  }

  setMode(mode) {
    this.mode = mode;
    const reg = mode === 'register';
    $('tab-login').setAttribute('aria-selected', String(!reg));
    $('tab-register').setAttribute('aria-selected', String(reg));
    $('display-row').hidden = !reg;
    $('password').autocomplete = reg ? 'new-password' : 'current-password';
    $('login-submit').textContent = reg ? 'Create account' : 'Sign in';
    this.error('');
  }

  error(text) {
    $('login-error').textContent = text;
  }

  setBusy(busy) {
    this.busy = busy;
    $('login-submit').disabled = busy;
    $('login-form').setAttribute('aria-busy', String(busy));
  }

  async onSubmit() {
    if (this.busy) return;
    const username = $('username').value.trim();
    const password = $('password').value;
    if (!/^[a-z0-9_.-]{3,32}$/.test(username)) {
      this.error('Usernames are 3–32 characters of a–z, 0–9, _ . -');
      $('username').focus();
      return;
    }
    if (password.length < 8) {
      this.error('Passwords have at least 8 characters.');
      $('password').focus();
      return;
    }
    this.error('');
    this.setBusy(true);
    try {
      await this.submit(this.mode, username, password, $('display-name').value.trim());
    } catch (e) {
      this.error(MESSAGES[e.code] || `Failed: ${e.code || e.message}`);
      this.setBusy(false);
    }
  }
}
