// Channel screens (docs/protocol.md §16, §17): the channel list and the
// invitations in the sidebar, one channel (presence list, live messages that
// are not stored, join/leave, composer), and the dialogs: new channel, open
// a channel by id, manage (members, levels, remove, leave for good) and
// import a channel into a group.

import { CHANNEL_ID, ImportMode, Level } from '../channels.js';
import { ConvKind, MAX_TEXT_BYTES, Role, newClientId, parseUserIds, utf8Length } from '../protocol.js';
import { $, frame, h } from './dom.js';
import { clock, fullTime, shortUser, userLabel, when } from './format.js';
import { avatar } from './sidebar.js';

const levelName = { [Level.ADMIN]: 'admin', [Level.MEMBER]: 'member' };

const NOTES = {
  joined: () => 'You joined. Messages said from now on appear here while you stay.',
  left: () => 'You left. You will not see what is said until you join again.',
  lost: () => 'Connection lost: you are not present until it is back, and miss what is said meanwhile.',
  removed: () => 'You are no longer a member of this channel.',
  'member-joined': (u, me) => `${userLabel(u, me)} joined`,
  'member-left': (u, me) => `${userLabel(u, me)} left`,
  'member-removed': (u, me) => `${userLabel(u, me)} was removed from the channel`,
  'member-added': (u, me) => `${userLabel(u, me)} was added to the channel`,
};

// channelError turns a channel command's error into words.
export function channelError(e) {
  switch (e.code) {
    case 'not_found':
      return 'No such channel or user (or you are not a member).';
    case 'not_member':
      return 'You are not a member of this channel.';
    case 'forbidden':
      return /admin/.test(e.message || '') && /last|least/.test(e.message || '') ? 'A channel keeps at least one admin: make someone else admin first.' : 'Only channel admins can do that.';
    case 'invalid_argument':
      return `The server refused the input${e.message ? ` (${e.message.replace(/^invalid_argument: /, '')})` : ''}.`;
    case 'text_too_long':
      return `Message too long (max ${MAX_TEXT_BYTES} bytes).`;
    case 'closed':
      return 'Not connected. Try again when the connection is back.';
    case 'timeout':
    case 'unavailable':
      return 'The server did not answer. Try again.';
    case 'rate_limited':
      return `Too many requests: try again in ${duration(e.retryAfterMs)}.`;
    default:
      return `Failed: ${e.code || e.message}`;
  }
}

// duration is "45 s", "12 min", "1 h 5 min".
export function duration(ms) {
  const s = Math.max(1, Math.ceil((ms || 0) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.ceil(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h${m % 60 ? ` ${m % 60} min` : ''}`;
}

// importError is the precise reason an import was refused (§17.1, §17.2).
export function importError(e, groupTitle, channelTitle) {
  switch (e.code) {
    case 'not_group_admin':
      return `You are not an admin of the group “${groupTitle}”. Only its owner and admins can import into it.`;
    case 'not_channel_admin':
      return `You are not an admin of the channel “${channelTitle}”. Only channel admins can import it.`;
    case 'rate_limited': {
      const at = Date.now() + (e.retryAfterMs || 0);
      return `Import limit reached: you or this group made too many imports recently. Try again in ${duration(e.retryAfterMs)} (at ${clock(at)}).`;
    }
    case 'not_found':
      return 'The group or the channel does not exist any more.';
    case 'conflict':
      return 'This import request was already used for another channel or mode. Press Import again.';
    case 'invalid_argument':
      return `The server refused the import${e.message ? ` (${e.message.replace(/^invalid_argument: /, '')})` : ''}.`;
    case 'closed':
    case 'timeout':
    case 'unavailable':
      return 'No answer from the server. Press Import again: it is safe, the import happens at most once.';
    default:
      return `Import failed: ${e.code || e.message}`;
  }
}

export class ChannelsUI {
  constructor(app) {
    this.app = app;
    this.ch = null; // Channels of the signed-in user
    this.id = ''; // the open channel
    this.manageOf = '';
    this.importOp = null; // {key, opId}: kept while a retry is the same import
    this.drawList = frame(() => this.renderList());
    this.drawInvites = frame(() => this.renderInvites());
    this.drawPane = frame(() => this.renderPane());
    this.drawManage = frame(() => this.renderManage());
    this.onList = () => this.drawList();
    this.onChannel = (e) => {
      if (e.detail.id === this.id) this.drawPane();
      if (e.detail.id === this.manageOf) this.drawManage();
      this.drawList();
    };
    this.onInvites = () => this.drawInvites();
    this.onState = () => this.id && this.drawPane();

    $('new-channel').addEventListener('click', () => this.app.dialogs.open('dlg-channel-new', 'channel-title'));
    $('open-channel').addEventListener('click', () => this.app.dialogs.open('dlg-channel-open', 'channel-id-input'));
    $('import-channel').addEventListener('click', () => this.openImport(''));
    this.app.dialogs.form('form-channel-new', () => this.create());
    this.app.dialogs.form('form-channel-open', () => this.openById());
    this.app.dialogs.form('form-channel-manage', () => this.addMembers());
    this.app.dialogs.form('form-import', () => this.runImport());
    for (const id of ['import-group', 'import-channel-select']) $(id).addEventListener('change', () => this.importChanged());
    for (const r of document.querySelectorAll('input[name=import-mode]')) r.addEventListener('change', () => this.importChanged());

    $('chan-back').addEventListener('click', () => this.app.back());
    $('chan-join').addEventListener('click', () => this.toggleJoin());
    $('chan-manage').addEventListener('click', () => this.openManage());
    $('chan-people').addEventListener('click', () => {
      const open = $('chan-pane').dataset.people !== 'open';
      $('chan-pane').dataset.people = open ? 'open' : '';
      $('chan-people').setAttribute('aria-expanded', String(open));
    });
    $('chan-composer').addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    $('chan-compose').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.submit();
      }
    });
    $('chan-copy-id').addEventListener('click', () => this.copyId());
    $('chan-leave-for-good').addEventListener('click', () => this.leaveForGood());
    $('chan-import').addEventListener('click', () => {
      $('dlg-channel-manage').close();
      this.openImport(this.manageOf);
    });
  }

  bind(channels) {
    this.unbind();
    this.ch = channels;
    channels.addEventListener('list', this.onList);
    channels.addEventListener('channel', this.onChannel);
    channels.addEventListener('invitations', this.onInvites);
    this.app.conn.addEventListener('state', this.onState);
    this.renderList();
    this.renderInvites();
  }

  unbind() {
    if (!this.ch) return;
    this.ch.removeEventListener('list', this.onList);
    this.ch.removeEventListener('channel', this.onChannel);
    this.ch.removeEventListener('invitations', this.onInvites);
    this.app.conn.removeEventListener('state', this.onState);
    this.ch = null;
    this.close();
    $('channel-list').replaceChildren();
    $('invite-list').replaceChildren();
  }

  // --- sidebar: channel list and invitations ---

  renderList() {
    const ch = this.ch;
    if (!ch) return;
    const focused = document.activeElement?.closest?.('.chan-item')?.dataset.channelId;
    const items = ch.list().map((c) => {
      const present = [...c.members.values()].filter((m) => m.present).length;
      const status = c.removed ? 'Not a member' : c.present ? `You are here · ${present} present` : c.loaded ? `${present} present · ${c.members.size} member${c.members.size === 1 ? '' : 's'}` : 'Not joined';
      const btn = h(
        'button',
        {
          type: 'button',
          class: `conv-item chan-item${c.id === this.id ? ' active' : ''}${c.removed ? ' left' : ''}${c.present ? ' here' : ''}`,
          dataset: { channelId: c.id, present: String(c.present) },
          'aria-current': c.id === this.id ? 'true' : null,
          onclick: () => this.app.navigate(c.id, 'ch'),
        },
        h('span', { class: 'avatar chan-avatar', 'aria-hidden': 'true', text: '#' }),
        h('span', { class: 'conv-main' }, h('span', { class: 'conv-top' }, h('span', { class: 'conv-title', text: c.title || shortUser(c.id) }), c.level === Level.ADMIN && !c.removed ? h('span', { class: 'tag', text: 'admin' }) : null), h('span', { class: 'conv-bottom' }, h('span', { class: 'conv-preview', text: status }))),
      );
      return h('li', {}, btn);
    });
    $('channel-list').replaceChildren(...items);
    $('channel-empty').hidden = items.length > 0;
    if (focused) $('channel-list').querySelector(`[data-channel-id="${CSS.escape(focused)}"]`)?.focus();
  }

  renderInvites() {
    const ch = this.ch;
    if (!ch) return;
    const list = [...ch.invitations.values()].sort((a, b) => a.expiresAtMs - b.expiresAtMs);
    $('invites').hidden = list.length === 0;
    $('invite-list').replaceChildren(
      ...list.map((inv) => {
        const chTitle = ch.get(inv.channelId)?.title;
        const busy = (b) => {
          for (const x of b.parentElement.querySelectorAll('button')) x.disabled = true;
        };
        const answer = async (ev, accept) => {
          busy(ev.currentTarget);
          try {
            const got = await ch.answer(inv, accept);
            if (accept) {
              this.app.toast(`You joined “${inv.groupTitle || 'the group'}”`);
              this.app.sync.refresh(got.groupId || inv.groupId);
              this.app.navigate(got.groupId || inv.groupId);
            } else {
              this.app.toast('Invitation declined; you left the channel');
            }
          } catch (e) {
            this.app.toast(e.code === 'invitation_expired' ? 'This invitation has expired.' : channelError(e));
            this.renderInvites();
          }
        };
        return h(
          'li',
          { class: 'invite', dataset: { invitationId: inv.id, groupId: inv.groupId } },
          h('p', { class: 'invite-text' }, 'Join the group ', h('strong', { text: `“${inv.groupTitle || shortUser(inv.groupId)}”` }), `? Invited by ${shortUser(inv.inviter)} from the channel ${chTitle ? `“${chTitle}”` : shortUser(inv.channelId)}${inv.subgroup ? `, sub-group ${inv.subgroup}` : ''}.`),
          h('p', { class: 'hint', text: `Declining also removes you from the channel. Expires ${when(inv.expiresAtMs)}.`, title: fullTime(inv.expiresAtMs) }),
          h(
            'div',
            { class: 'invite-buttons' },
            h('button', { type: 'button', class: 'primary small accept', onclick: (e) => answer(e, true), text: 'Accept' }),
            h('button', { type: 'button', class: 'small decline', onclick: (e) => answer(e, false), text: 'Decline and leave channel' }),
          ),
        );
      }),
    );
  }

  // --- one channel ---

  open(id) {
    if (this.id !== id) {
      this.id = id;
      $('chan-log').replaceChildren();
      $('chan-compose').value = '';
      $('chan-pane').dataset.people = '';
      $('chan-people').setAttribute('aria-expanded', 'false');
    }
    const c = this.ch.ensure(id);
    $('conv-placeholder').hidden = true;
    $('chan-pane').hidden = false;
    this.renderPane();
    this.toBottom();
    this.renderList();
    if (!c.removed) this.ch.refresh(id).catch(() => {});
  }

  close() {
    if (!this.id) return;
    this.id = '';
    $('chan-pane').hidden = true;
    $('chan-log').replaceChildren();
    this.renderList();
  }

  focusComposer() {
    if (!$('chan-compose').disabled) $('chan-compose').focus();
    else if (!$('chan-join').hidden) $('chan-join').focus();
  }

  renderPane() {
    const c = this.ch?.get(this.id);
    if (!c) return;
    const me = this.ch.me;
    const ready = this.app.conn.state === 'ready';
    $('chan-title').textContent = c.title || shortUser(c.id);
    const members = [...c.members.values()];
    const present = members.filter((m) => m.present);
    $('chan-sub').textContent = c.removed ? 'Not a member' : c.loaded ? `${present.length} of ${members.length} present${c.level === Level.ADMIN ? ' · you are admin' : ''}` : 'Loading…';
    const join = $('chan-join');
    join.hidden = c.removed;
    join.disabled = c.joining || !ready;
    join.textContent = c.joining ? 'Joining…' : c.present ? 'Leave' : 'Join';
    join.className = c.present ? 'small' : 'primary small';
    join.setAttribute('aria-label', c.present ? 'Leave the channel (become absent)' : 'Join the channel (become present)');
    $('chan-manage').hidden = c.removed;
    // A former member gets no presence events: no stale list.
    $('chan-people').hidden = c.removed;
    $('chan-people-panel').hidden = c.removed;
    $('chan-pane').dataset.present = String(c.present);

    // Presence list: present first, then absent.
    const sorted = (list) => list.sort((a, b) => Number(b.userId === me) - Number(a.userId === me) || a.userId.localeCompare(b.userId));
    const person = (m) =>
      h(
        'li',
        { class: `person${m.present ? ' present' : ''}`, dataset: { userId: m.userId, present: String(m.present), level: m.level } },
        avatar(h('span', { class: 'avatar small', 'aria-hidden': 'true' }), m.userId === me ? 'You' : m.userId.slice(1), m.userId),
        h('span', { class: 'person-name', title: m.userId, text: m.userId === me ? 'You' : shortUser(m.userId) }),
        m.level === Level.ADMIN ? h('span', { class: 'tag', text: 'admin' }) : null,
        h('span', { class: 'dot', 'aria-label': m.present ? 'present' : 'absent', title: m.present ? 'present' : 'absent' }),
      );
    $('chan-present').replaceChildren(...sorted(present).map(person));
    const absent = members.filter((m) => !m.present);
    $('chan-absent').replaceChildren(...sorted(absent).map(person));
    $('chan-present-count').textContent = `(${present.length})`;
    $('chan-absent-count').textContent = `(${absent.length})`;
    $('chan-people').textContent = `People (${present.length})`;

    // Log: in memory only.
    const stick = this.atBottom();
    $('chan-log').replaceChildren(...c.log.map((e) => this.entry(e)));
    $('chan-empty').hidden = c.log.some((e) => e.kind === 'msg');
    if (stick) this.toBottom();

    // Composer: only while present.
    const can = c.present && ready && !c.removed;
    $('chan-composer').hidden = c.removed;
    $('chan-compose').disabled = !can;
    $('chan-send').disabled = !can;
    $('chan-compose').placeholder = can ? 'Message the people present (not stored)' : 'Join the channel to talk';
    const note = $('chan-state-note');
    note.hidden = can;
    note.textContent = c.removed ? 'You are no longer a member of this channel.' : !ready ? 'Not connected: you are not present in any channel until the connection is back.' : c.present ? '' : 'You are not present. Join to see and send messages; nothing said while you are away is kept for you.';
  }

  entry(e) {
    const me = this.ch.me;
    if (e.kind === 'note') {
      return h('li', { class: 'msg system chan-note', dataset: { note: e.what, userId: e.userId || null } }, h('span', { class: 'text', text: NOTES[e.what]?.(e.userId, me) || '' }));
    }
    const mine = e.sender === me;
    let state = '';
    if (mine) {
      if (e.state === 'sending') state = 'Sending…';
      else if (e.state === 'failed') state = `Not sent (${e.error})`;
      else if (e.recipients !== undefined) state = `Delivered to ${e.recipients} present link${e.recipients === 1 ? '' : 's'}`;
    }
    return h(
      'li',
      { class: `msg ${mine ? 'mine' : 'theirs'}${e.state === 'failed' ? ' out failed' : e.state === 'sending' ? ' out' : ''}`, dataset: { sender: e.sender, clientId: e.clientId, state: e.state } },
      h('div', { class: 'meta' }, h('span', { class: 'who', title: e.sender, text: userLabel(e.sender, me) }), h('time', { title: fullTime(e.timeMs), text: clock(e.timeMs) })),
      h('div', { class: 'bubble' }, h('p', { class: 'text', text: e.text })),
      state ? h('div', { class: 'out-state', text: state }) : null,
    );
  }

  async toggleJoin() {
    const c = this.ch.get(this.id);
    if (!c) return;
    try {
      if (c.present) await this.ch.leave(c.id);
      else {
        await this.ch.join(c.id);
        if (this.id === c.id) {
          this.renderPane(); // enables the composer now, not at the next frame
          $('chan-compose').focus();
        }
      }
    } catch (e) {
      this.app.toast(channelError(e));
    }
  }

  submit() {
    const text = $('chan-compose').value;
    if (!text.trim() || !this.id || $('chan-compose').disabled) return;
    if (utf8Length(text) > MAX_TEXT_BYTES) {
      this.app.toast(`Message too long (max ${MAX_TEXT_BYTES} bytes).`);
      return;
    }
    $('chan-compose').value = '';
    this.ch.send(this.id, text);
    this.toBottom();
  }

  atBottom() {
    const b = $('chan-messages');
    return b.scrollHeight - b.scrollTop - b.clientHeight < 80;
  }

  toBottom() {
    const b = $('chan-messages');
    b.scrollTop = b.scrollHeight;
  }

  // --- dialogs ---

  async create() {
    const d = $('dlg-channel-new');
    const title = $('channel-title').value.trim();
    if (!title) {
      this.app.dialogs.error(d, 'Give the channel a title.');
      return false;
    }
    const { ids, bad } = parseUserIds($('channel-members').value);
    if (bad.length) {
      this.app.dialogs.error(d, `Not a user id: ${bad[0]}`);
      return false;
    }
    try {
      const id = await this.ch.create(title, ids.filter((u) => u !== this.ch.me));
      this.app.navigate(id, 'ch');
    } catch (e) {
      this.app.dialogs.error(d, channelError(e));
      return false;
    }
  }

  async openById() {
    const d = $('dlg-channel-open');
    const id = $('channel-id-input').value.trim();
    if (!CHANNEL_ID.test(id)) {
      this.app.dialogs.error(d, 'A channel id is “c” followed by letters and digits (ask an admin of the channel for it).');
      return false;
    }
    try {
      await this.ch.open(id);
      this.app.navigate(id, 'ch');
    } catch (e) {
      this.app.dialogs.error(d, e.code === 'not_found' || e.code === 'not_member' ? 'No such channel, or you are not a member of it. An admin has to add your user id first.' : channelError(e));
      return false;
    }
  }

  openManage() {
    const c = this.ch.get(this.id);
    if (!c) return;
    this.manageOf = c.id;
    this.app.dialogs.open('dlg-channel-manage', null);
    this.renderManage();
    this.ch.refresh(c.id).catch((e) => this.app.dialogs.error($('dlg-channel-manage'), channelError(e)));
    $('chan-copy-id').focus();
  }

  renderManage() {
    const c = this.ch?.get(this.manageOf);
    if (!c || !$('dlg-channel-manage').open) return;
    const me = this.ch.me;
    const admin = c.level === Level.ADMIN && !c.removed;
    $('dlg-channel-manage-title').textContent = c.title || 'Channel';
    $('chan-id').textContent = c.id;
    const act = (label, cls, fn) =>
      h('button', {
        type: 'button',
        class: `link ${cls}`,
        text: label,
        onclick: async () => {
          this.app.dialogs.error($('dlg-channel-manage'), '');
          try {
            await fn();
          } catch (e) {
            this.app.dialogs.error($('dlg-channel-manage'), channelError(e));
          }
        },
      });
    const members = [...c.members.values()].sort((a, b) => a.userId.localeCompare(b.userId));
    $('chan-member-list').replaceChildren(
      ...members.map((m) =>
        h(
          'li',
          { dataset: { userId: m.userId, level: m.level } },
          h('code', { class: 'userid', title: m.userId, text: m.userId }),
          h('span', { class: 'role', text: `${levelName[m.level] || 'member'}${m.userId === me ? ' · you' : ''}${m.present ? ' · present' : ''}` }),
          admin && m.userId !== me ? act(m.level === Level.ADMIN ? 'Make member' : 'Make admin', 'set-level', () => this.ch.setLevel(c.id, m.userId, m.level === Level.ADMIN ? Level.MEMBER : Level.ADMIN)) : null,
          admin && m.userId !== me ? act('Remove', 'remove', () => this.ch.removeMember(c.id, m.userId)) : null,
        ),
      ),
    );
    if (!members.length) $('chan-member-list').append(h('li', { class: 'hint', text: 'Loading…' }));
    $('chan-add').hidden = !admin;
    $('chan-add-submit').hidden = !admin;
    $('chan-import').hidden = !admin;
    $('chan-leave-for-good').hidden = c.removed;
  }

  async addMembers() {
    const d = $('dlg-channel-manage');
    const { ids, bad } = parseUserIds($('chan-add-ids').value);
    if (bad.length || !ids.length) {
      this.app.dialogs.error(d, bad.length ? `Not a user id: ${bad[0]}` : 'Enter at least one user id.');
      return false;
    }
    try {
      await this.ch.addMembers(this.manageOf, ids, $('chan-add-level').value);
      $('chan-add-ids').value = '';
      this.app.toast(`Added ${ids.map(shortUser).join(', ')}`);
    } catch (e) {
      this.app.dialogs.error(d, channelError(e));
    }
    return false; // keep the dialog open on the updated list
  }

  async leaveForGood() {
    const d = $('dlg-channel-manage');
    const id = this.manageOf;
    try {
      await this.ch.removeMember(id, this.ch.me);
      d.close();
      this.app.toast('You left the channel for good');
    } catch (e) {
      this.app.dialogs.error(d, channelError(e));
    }
  }

  async copyId() {
    try {
      await navigator.clipboard.writeText(this.manageOf);
      this.app.toast('Channel id copied');
    } catch {
      const r = document.createRange();
      r.selectNodeContents($('chan-id'));
      getSelection().removeAllRanges();
      getSelection().addRange(r);
    }
  }

  // --- import ---

  openImport(channelId) {
    const store = this.app.store;
    const me = store.me;
    const groups = [...store.convs.values()].filter((c) => c.kind === ConvKind.GROUP && !c.left).sort((a, b) => (a.title || '').localeCompare(b.title || ''));
    const roleOf = (c) => c.members.find((m) => m.userId === me)?.role;
    $('import-group').replaceChildren(
      h('option', { value: '', text: groups.length ? 'Choose a group' : 'You are in no group yet' }),
      ...groups.map((c) => {
        const r = roleOf(c);
        return h('option', { value: c.id, text: `${c.title || 'Untitled group'}${r === Role.OWNER ? ' (owner)' : r === Role.ADMIN ? ' (admin)' : ''}` });
      }),
    );
    const chans = this.ch.list().filter((c) => !c.removed);
    $('import-channel-select').replaceChildren(
      h('option', { value: '', text: chans.length ? 'Choose a channel' : 'No channels yet' }),
      ...chans.map((c) => h('option', { value: c.id, text: `${c.title || shortUser(c.id)}${c.level === Level.ADMIN ? ' (admin)' : ''}` })),
    );
    this.app.dialogs.open('dlg-import', channelId ? 'import-group' : 'import-channel-select');
    $('import-channel-select').value = channelId || '';
    $('import-result').replaceChildren();
    $('import-result').hidden = true;
    this.importOp = null;
    // Roles may be unknown for groups not opened yet: ask, to mark admins.
    for (const c of groups) if (!c.members.length) this.app.sync.info(c.id).catch(() => {});
  }

  importChanged() {
    this.importOp = null; // a different request: a new operation id
    $('import-result').hidden = true;
    this.app.dialogs.error($('dlg-import'), '');
  }

  async runImport() {
    const d = $('dlg-import');
    const groupId = $('import-group').value;
    const channelId = $('import-channel-select').value;
    const mode = document.querySelector('input[name=import-mode]:checked')?.value || ImportMode.INVITE;
    if (!groupId || !channelId) {
      this.app.dialogs.error(d, !groupId ? 'Choose a group.' : 'Choose a channel.');
      return false;
    }
    const key = `${groupId} ${channelId} ${mode}`;
    if (this.importOp?.key !== key) this.importOp = { key, opId: `imp-${newClientId()}` };
    const groupTitle = this.app.store.get(groupId)?.title || shortUser(groupId);
    const channelTitle = this.ch.get(channelId)?.title || shortUser(channelId);
    $('import-result').hidden = true;
    try {
      const r = await this.ch.importInto(groupId, channelId, mode, this.importOp.opId);
      this.importOp = null; // done: pressing Import again is a new import
      this.showImport(r, groupTitle, channelTitle);
      this.app.sync.info(groupId).catch(() => {});
    } catch (e) {
      if (!['closed', 'timeout', 'unavailable'].includes(e.code)) this.importOp = null; // a retry of a refusal is a new request
      this.app.dialogs.error(d, importError(e, groupTitle, channelTitle));
      d.querySelector('.error').dataset.code = e.code || '';
    }
    return false; // the dialog stays open with the outcome
  }

  showImport(r, groupTitle, channelTitle) {
    const invite = r.mode === ImportMode.INVITE;
    const n = invite ? r.invitedCount ?? (r.invitations || []).length : r.addedCount ?? (r.added || []).length;
    const lines = [
      `${invite ? `Invited ${n} member${n === 1 ? '' : 's'}` : `Added ${n} member${n === 1 ? '' : 's'}`} of “${channelTitle}” ${invite ? 'to' : 'into'} “${groupTitle}”.${r.duplicate ? ' (This import was already done.)' : ''}`,
    ];
    if (r.alreadyMembers?.length) lines.push(`Already in the group: ${r.alreadyMembers.length}.`);
    if (r.alreadyInvited?.length) lines.push(`Already invited: ${r.alreadyInvited.length}.`);
    if (r.subgroupsCreated?.length) lines.push(`Sub-groups created: ${r.subgroupsCreated.join(', ')}.`);
    const who = invite ? (r.invitations || []).map((i) => `${shortUser(i.userId)} → ${i.subgroup || 'no sub-group'}`) : (r.added || []).map((m) => `${m.displayName || shortUser(m.userId)} → ${m.subgroup || 'no sub-group'}`);
    const box = $('import-result');
    box.dataset.mode = r.mode || '';
    box.dataset.count = String(n);
    box.replaceChildren(...lines.map((t) => h('p', { text: t })), who.length ? h('ul', {}, ...who.map((t) => h('li', { text: t }))) : null);
    box.hidden = false;
  }
}
