// The left pane: who you are (with your user id to share), the link
// status, and the conversation list with unread counts.

import { Kind } from '../protocol.js';
import { $, frame, h } from './dom.js';
import { convTitle, hue, initials, userLabel, when } from './format.js';

export class SidebarView {
  constructor(app) {
    this.app = app;
    this.store = null;
    this.current = '';
    this.render = frame(() => this.draw());
    this.onList = () => this.render();
    $('copy-id').addEventListener('click', () => this.copyId());
  }

  bind(store, username) {
    this.unbind();
    this.store = store;
    store.addEventListener('list', this.onList);
    store.addEventListener('outbox', this.onList);
    const me = store.me;
    $('me-name').textContent = username || userLabel(me, '');
    $('my-user-id').textContent = me;
    avatar($('me-avatar'), username || me, me);
    this.render();
  }

  unbind() {
    if (!this.store) return;
    this.store.removeEventListener('list', this.onList);
    this.store.removeEventListener('outbox', this.onList);
    this.store = null;
  }

  select(id) {
    this.current = id;
    this.render();
  }

  async copyId() {
    const id = this.store?.me;
    if (!id) return;
    try {
      await navigator.clipboard.writeText(id);
      this.app.toast('User id copied');
    } catch {
      // No clipboard permission: select the text so Ctrl+C works.
      const r = document.createRange();
      r.selectNodeContents($('my-user-id'));
      getSelection().removeAllRanges();
      getSelection().addRange(r);
    }
  }

  setStatus(text, kind) {
    $('status-text').textContent = text;
    $('status').dataset.kind = kind;
  }

  draw() {
    const store = this.store;
    if (!store) return;
    const list = [...store.convs.values()].sort((a, b) => b.lastTime - a.lastTime || convTitle(a, store.me).localeCompare(convTitle(b, store.me)));
    const ul = $('conv-list');
    const focused = document.activeElement?.closest?.('.conv-item')?.dataset.convId;
    ul.replaceChildren(...list.map((c) => this.item(c)));
    $('conv-empty').hidden = list.length > 0;
    if (focused) ul.querySelector(`[data-conv-id="${CSS.escape(focused)}"]`)?.focus();
  }

  item(c) {
    const store = this.store;
    const title = convTitle(c, store.me);
    const unread = c.id === this.current ? 0 : store.unread(c.id);
    const last = store.lastText(c.id);
    const pending = store.outboxFor(c.id);
    let preview = '';
    if (pending.length) preview = `You: ${pending[pending.length - 1].text}`;
    else if (last?.kind === Kind.TEXT) preview = `${userLabel(last.sender, store.me)}: ${last.text}`;
    else if (last?.kind === Kind.FILE) preview = `${userLabel(last.sender, store.me)}: File ${last.file?.name || ''}`;
    else if (last?.kind === Kind.DELETED) preview = 'Message deleted';
    else if (c.left) preview = 'You left';
    const badge = unread > 0 ? h('span', { class: 'badge', 'aria-label': `${unread} unread`, text: unread > 99 ? '99+' : String(unread) }) : null;
    const btn = h(
      'button',
      {
        type: 'button',
        class: `conv-item${c.id === this.current ? ' active' : ''}${unread ? ' has-unread' : ''}${c.left ? ' left' : ''}`,
        dataset: { convId: c.id, unread: String(unread) },
        'aria-current': c.id === this.current ? 'true' : null,
        onclick: () => this.app.navigate(c.id),
      },
      avatar(h('span', { class: 'avatar', 'aria-hidden': 'true' }), title, c.id),
      h('span', { class: 'conv-main' }, h('span', { class: 'conv-top' }, h('span', { class: 'conv-title', text: title }), h('time', { class: 'conv-time', text: when(c.lastTime) })), h('span', { class: 'conv-bottom' }, h('span', { class: 'conv-preview', text: preview.replace(/\s+/g, ' ') }), badge)),
    );
    return h('li', {}, btn);
  }
}

// avatar fills el with initials on a color derived from id.
export function avatar(el, label, id) {
  el.textContent = initials(label);
  el.style.setProperty('--hue', String(hue(id)));
  return el;
}
