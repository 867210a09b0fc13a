// Modal dialogs: new group, new direct conversation, members (and adding
// members by user id; there is no user search in protocol v1).

import { ConvKind, Role, USER_ID, parseUserIds } from '../protocol.js';
import { $, h } from './dom.js';
import { role, shortUser } from './format.js';

const ERRORS = {
  not_found: 'No user with that id.',
  forbidden: 'You are not allowed to do that here.',
  not_member: 'You are not a member of this conversation.',
  invalid_argument: 'The server refused the input.',
  closed: 'Not connected. Try again when the connection is back.',
  timeout: 'The server did not answer. Try again.',
};

export function errorText(e) {
  return ERRORS[e.code] || `Failed: ${e.code || e.message}`;
}

export class Dialogs {
  constructor(app) {
    this.app = app;
    this.membersOf = '';
    for (const d of document.querySelectorAll('dialog')) {
      d.querySelector('button[value=cancel]').addEventListener('click', () => d.close());
      d.addEventListener('close', () => this.app.restoreFocus());
    }
    $('new-group').addEventListener('click', () => this.open('dlg-group', 'group-title'));
    $('new-direct').addEventListener('click', () => this.open('dlg-direct', 'direct-user'));
    this.form('form-group', () => this.createGroup());
    this.form('form-direct', () => this.openDirect());
    this.form('form-members', () => this.addMembers());
  }

  open(id, focusId) {
    const d = $(id);
    d.querySelector('form').reset();
    this.error(d, '');
    d.showModal();
    if (focusId) $(focusId).focus();
  }

  // form runs action on submit; the dialog closes when it resolves.
  form(id, action) {
    const f = $(id);
    f.addEventListener('submit', async (e) => {
      e.preventDefault();
      const d = f.closest('dialog');
      const submit = f.querySelector('button[type=submit]');
      if (submit.disabled) return;
      submit.disabled = true;
      this.error(d, '');
      try {
        if ((await action()) !== false) d.close();
      } catch (err) {
        this.error(d, errorText(err));
      } finally {
        submit.disabled = false;
      }
    });
  }

  error(d, text) {
    d.querySelector('.error').textContent = text;
  }

  async createGroup() {
    const d = $('dlg-group');
    const title = $('group-title').value.trim();
    if (!title) {
      this.error(d, 'Give the group a title.');
      return false;
    }
    const { ids, bad } = parseUserIds($('group-members').value);
    if (bad.length) {
      this.error(d, `Not a user id: ${bad[0]}`);
      return false;
    }
    const me = this.app.store.me;
    const id = await this.app.sync.createGroup(title, ids.filter((u) => u !== me));
    this.app.navigate(id);
  }

  async openDirect() {
    const d = $('dlg-direct');
    const user = $('direct-user').value.trim();
    if (!USER_ID.test(user)) {
      this.error(d, 'A user id is “u” followed by 26 letters and digits.');
      return false;
    }
    if (user === this.app.store.me) {
      this.error(d, 'That is your own user id.');
      return false;
    }
    const id = await this.app.sync.openDirect(user);
    this.app.navigate(id);
  }

  // members shows the member list of conversation id; admins and owners of
  // a group also get the form to add people.
  async members(id) {
    const d = $('dlg-members');
    this.membersOf = id;
    d.querySelector('form').reset();
    this.error(d, '');
    this.drawMembers();
    d.showModal();
    try {
      await this.app.sync.info(id);
      if (this.membersOf === id) this.drawMembers();
    } catch (e) {
      this.error(d, errorText(e));
    }
  }

  drawMembers() {
    const store = this.app.store;
    const c = store.get(this.membersOf);
    const me = store.me;
    const members = c?.members || [];
    $('member-list').replaceChildren(
      ...members.map((m) =>
        h(
          'li',
          { dataset: { userId: m.userId } },
          h('code', { class: 'userid', title: m.userId, text: m.userId }),
          h('span', { class: 'role', text: `${role(m.role)}${m.subgroup ? ` · ${m.subgroup}` : ''}${m.userId === me ? ' · you' : ''}` }),
        ),
      ),
    );
    if (!members.length) $('member-list').append(h('li', { class: 'hint', text: 'Loading…' }));
    const mine = members.find((m) => m.userId === me);
    const canAdd = c?.kind === ConvKind.GROUP && !c.left && (mine?.role === Role.ADMIN || mine?.role === Role.OWNER);
    $('add-members').hidden = !canAdd;
    $('add-members-submit').hidden = !canAdd;
    if (canAdd && document.activeElement === document.body) $('add-member-ids').focus();
  }

  async addMembers() {
    const d = $('dlg-members');
    const { ids, bad } = parseUserIds($('add-member-ids').value);
    if (bad.length) {
      this.error(d, `Not a user id: ${bad[0]}`);
      return false;
    }
    if (!ids.length) {
      this.error(d, 'Enter at least one user id.');
      return false;
    }
    await this.app.sync.addMembers(this.membersOf, ids);
    $('add-member-ids').value = '';
    this.drawMembers();
    this.app.toast(`Added ${ids.map(shortUser).join(', ')}`);
    return false; // keep the dialog open on the updated list
  }
}
