// The right pane: one conversation's log (scroll-back loads older pages),
// the sends still in the outbox (pending, sent, failed), the uploads in
// progress and the composer with its attach button.

import { ConvKind, Kind, MAX_TEXT_BYTES, directPeer, newClientId, utf8Length } from '../protocol.js';
import { Upload } from '../files.js';
import { $, frame, h } from './dom.js';
import { bytes, clock, convTitle, fullTime, systemText, userLabel } from './format.js';
import { avatar } from './sidebar.js';
import { SubgroupPicker } from './subgroups.js';

const GROUP_MS = 5 * 60 * 1000; // consecutive messages of one sender share a header
const MAX_FRAME_TEXT = 60000;

export class ConversationView {
  constructor(app) {
    this.app = app;
    this.store = null;
    this.sync = null;
    this.id = '';
    this.items = new Map(); // seq -> <li>
    this.drawPending = frame(() => this.renderPending());
    this.uploads = []; // {key, conversationId, upload, state, error}, kept across conversations
    this.drawUploads = frame(() => this.renderUploads());
    this.onConv = (e) => this.id === e.detail.id && this.update(e.detail);
    this.onOutbox = (e) => this.id === e.detail.id && this.drawPending();
    this.onList = () => this.id && this.header();
    this.target = new SubgroupPicker(); // sub-group of a message (§17.4)

    $('composer').addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    $('compose').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.submit();
      }
    });
    $('compose').addEventListener('input', () => this.autosize());
    $('attach').addEventListener('click', () => $('file-input').click());
    $('file-input').addEventListener('change', () => {
      for (const f of $('file-input').files) this.attach(f);
      $('file-input').value = '';
    });
    $('messages').addEventListener('scroll', () => {
      if ($('messages').scrollTop < 120) this.older();
    });
    $('load-older').addEventListener('click', () => this.older());
    $('back').addEventListener('click', () => this.app.back());
    $('members-btn').addEventListener('click', () => this.app.dialogs.members(this.id));
  }

  bind(store, sync) {
    this.unbind();
    this.store = store;
    this.sync = sync;
    store.addEventListener('conv', this.onConv);
    store.addEventListener('outbox', this.onOutbox);
    store.addEventListener('list', this.onList);
  }

  unbind() {
    if (!this.store) return;
    this.store.removeEventListener('conv', this.onConv);
    this.store.removeEventListener('outbox', this.onOutbox);
    this.store.removeEventListener('list', this.onList);
    this.store = null;
    for (const u of this.uploads) u.upload.abort();
    this.uploads = [];
    this.close();
  }

  open(id) {
    if (this.id === id) return;
    this.id = id;
    this.items.clear();
    $('conv-placeholder').hidden = true;
    $('conv-pane').hidden = false;
    $('log').replaceChildren();
    $('compose').value = '';
    this.target.reset();
    this.autosize();
    this.append(this.store.messages(id));
    this.renderPending();
    this.renderUploads();
    this.header();
    this.toBottom();
    this.sync.show(id);
    // A short log leaves no room to scroll: offer older pages right away.
    requestAnimationFrame(() => this.id === id && $('messages').scrollHeight <= $('messages').clientHeight && this.older());
  }

  close() {
    this.id = '';
    this.items.clear();
    $('log').replaceChildren();
    $('pending').replaceChildren();
    $('uploads').replaceChildren();
    $('conv-pane').hidden = true;
    $('conv-placeholder').hidden = false;
    this.sync?.show(null);
  }

  focusComposer() {
    if (!$('compose').disabled) $('compose').focus();
  }

  header() {
    const c = this.store.get(this.id);
    const me = this.store.me;
    const title = c ? convTitle(c, me) : 'Loading…';
    $('conv-title').textContent = title;
    avatar($('conv-avatar'), title, this.id);
    let sub = '';
    if (c?.kind === ConvKind.DIRECT) sub = directPeer(c.id, me);
    else if (c?.members.length) sub = `${c.members.length} member${c.members.length === 1 ? '' : 's'}`;
    if (c?.subgroups?.length) sub += ` · sub-groups: ${c.subgroups.join(', ')}`;
    this.target.update(c);
    $('conv-sub').textContent = sub;
    const left = !!c?.left;
    $('composer').hidden = left;
    $('left-note').hidden = !left;
    $('compose').disabled = left;
    $('attach').disabled = left;
    $('load-older').hidden = !c || c.low <= 1;
  }

  // update applies a store change to the open conversation.
  update({ appended, prepended, changed, meta }) {
    const box = $('messages');
    if (appended?.length) {
      const stick = this.atBottom();
      this.append(appended);
      if (stick) this.toBottom();
    }
    if (prepended?.length) {
      const before = box.scrollHeight;
      const first = $('log').firstElementChild;
      const frag = document.createDocumentFragment();
      let prev = null;
      for (const m of prepended) {
        const li = this.render(m, prev);
        if (li) {
          frag.append(li);
          prev = m;
        }
      }
      $('log').prepend(frag);
      if (first) this.regroup(first, prev);
      box.scrollTop += box.scrollHeight - before;
    }
    for (const seq of changed || []) {
      const old = this.items.get(seq);
      const m = this.store.get(this.id)?.msgs.get(seq);
      if (old && m) {
        const li = this.render(m, null);
        li.classList.toggle('cont', old.classList.contains('cont'));
        old.replaceWith(li);
        this.items.set(seq, li);
      }
    }
    this.header();
  }

  append(msgs) {
    const log = $('log');
    const frag = document.createDocumentFragment();
    let prev = this.lastRendered();
    for (const m of msgs) {
      if (this.items.has(m.seq)) continue;
      const li = this.render(m, prev);
      if (li) {
        frag.append(li);
        prev = m;
      }
    }
    log.append(frag);
  }

  lastRendered() {
    const li = $('log').lastElementChild;
    return li ? this.store.get(this.id)?.msgs.get(Number(li.dataset.seq)) || null : null;
  }

  // regroup re-evaluates the header of el after older messages were put
  // before it.
  regroup(el, prev) {
    const m = this.store.get(this.id)?.msgs.get(Number(el.dataset.seq));
    if (m && m.kind === Kind.TEXT) el.classList.toggle('cont', continues(prev, m));
  }

  render(m, prev) {
    const me = this.store.me;
    const c = this.store.get(this.id);
    let li;
    if (m.kind === Kind.DELETE) return null; // its effect is the tombstone
    if (m.kind === Kind.TEXT || m.kind === Kind.DELETED || (m.kind === Kind.FILE && m.file)) {
      const mine = m.sender === me;
      const deleted = m.kind === Kind.DELETED;
      const body = m.kind === Kind.FILE ? this.fileCard(m.file) : h('p', { class: 'text', text: deleted ? 'Message deleted' : m.text });
      li = h(
        'li',
        {
          class: `msg ${mine ? 'mine' : 'theirs'}${deleted ? ' deleted' : ''}${continues(prev, m) ? ' cont' : ''}`,
          dataset: { seq: String(m.seq), sender: m.sender, state: 'sent', clientId: m.clientId || null },
        },
        h('div', { class: 'meta' }, h('span', { class: 'who', title: m.sender, text: userLabel(m.sender, me) }), m.subgroup ? h('span', { class: 'to', text: `to ${m.subgroup}` }) : null, h('time', { title: fullTime(m.timeMs), text: clock(m.timeMs) })),
        h('div', { class: 'bubble' }, body, mine && !deleted ? h('span', { class: 'tick', title: 'Sent', 'aria-label': 'sent', text: '✓' }) : null),
      );
    } else if (m.kind === Kind.HIDDEN) {
      // A message for a sub-group you are not in (§17.4): only its place.
      li = h('li', { class: 'msg system hidden-msg', dataset: { seq: String(m.seq), kind: 'hidden' } }, h('span', { class: 'note', text: m.subgroup ? `A message for ${m.subgroup}` : 'A message for a sub-group' }));
    } else {
      li = h('li', { class: 'msg system', dataset: { seq: String(m.seq) } }, h('span', { class: 'text', text: systemText(m, me, c?.kind) }));
    }
    this.items.set(m.seq, li);
    return li;
  }

  // fileCard shows a FILE message: name, size and a download link. The
  // link carries the token as ?token= (§15.1): a browser download cannot
  // send an Authorization header.
  fileCard(f) {
    const url = `/files/${encodeURIComponent(f.fileId)}?token=${encodeURIComponent(this.app.conn.token)}`;
    return h(
      'div',
      { class: 'file-card', dataset: { fileId: f.fileId } },
      h('span', { class: 'file-icon', 'aria-hidden': 'true', text: fileBadge(f.name) }),
      h('span', { class: 'file-main' }, h('span', { class: 'file-name', text: f.name }), h('span', { class: 'file-size', text: `${bytes(f.size)} · ${f.mime}` })),
      h('a', { class: 'file-get', href: url, download: f.name, rel: 'noopener', text: 'Download' }),
    );
  }

  renderPending() {
    if (!this.id) return;
    const stick = this.atBottom();
    const rows = this.store.outboxFor(this.id).map((e) => {
      const label = e.state === 'failed' ? `Not sent${e.error ? ` (${e.error})` : ''}` : e.state === 'sent' ? 'Sent' : 'Sending…';
      return h(
        'li',
        { class: `msg mine out ${e.state}`, dataset: { clientId: e.clientId, state: e.state } },
        h('div', { class: 'bubble' }, h('p', { class: 'text', text: e.text }), h('span', { class: 'tick', text: e.state === 'sent' ? '✓' : e.state === 'failed' ? '!' : '…', 'aria-hidden': 'true' })),
        h(
          'div',
          { class: 'out-state' },
          h('span', { text: label }),
          e.state === 'failed' ? h('button', { type: 'button', class: 'link', onclick: () => this.sync.retry(e.clientId), text: 'Retry' }) : null,
          e.state === 'failed' ? h('button', { type: 'button', class: 'link', onclick: () => this.store.outboxRemove(e.clientId), text: 'Discard' }) : null,
        ),
      );
    });
    $('pending').replaceChildren(...rows);
    if (stick) this.toBottom();
  }

  // attach uploads a file into the open conversation; the FILE message
  // reaches the log like any other entry once the upload completes.
  attach(file) {
    if (!this.id) return;
    if (!file.size) {
      this.app.toast('Empty files cannot be sent.');
      return;
    }
    const upload = new Upload({ file, conversationId: this.id, token: this.app.conn.token });
    const u = { key: `u${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`, conversationId: this.id, upload, state: 'uploading', error: '' };
    upload.addEventListener('progress', () => this.drawUploads());
    this.uploads.push(u);
    this.run(u);
    this.toBottom();
  }

  async run(u) {
    u.state = 'uploading';
    u.error = '';
    this.drawUploads();
    try {
      await u.upload.start();
      this.uploads = this.uploads.filter((x) => x !== u);
    } catch (e) {
      if (e.code === 'aborted') return;
      u.state = 'failed';
      u.error = e.code || 'network';
    }
    this.drawUploads();
  }

  renderUploads() {
    if (!this.id) return;
    const stick = this.atBottom();
    const rows = this.uploads
      .filter((u) => u.conversationId === this.id)
      .map((u) => {
        const { name, size, offset } = u.upload;
        const pct = size ? Math.floor((offset * 100) / size) : 0;
        const failed = u.state === 'failed';
        const drop = () => {
          u.upload.abort();
          this.uploads = this.uploads.filter((x) => x !== u);
          this.drawUploads();
        };
        return h(
          'li',
          { class: `msg mine out upload-row ${u.state}`, dataset: { upload: u.key, state: u.state, progress: String(pct) } },
          h('div', { class: 'bubble upload' }, h('span', { class: 'file-name', text: name }), h('progress', { max: String(size), value: String(offset), 'aria-label': `Uploading ${name}` })),
          h(
            'div',
            { class: 'out-state' },
            h('span', { text: failed ? `Upload failed (${u.error})` : `Uploading… ${pct}% of ${bytes(size)}` }),
            failed ? h('button', { type: 'button', class: 'link', onclick: () => this.run(u), text: 'Retry' }) : null,
            h('button', { type: 'button', class: 'link', onclick: drop, text: failed ? 'Discard' : 'Cancel' }),
          ),
        );
      });
    $('uploads').replaceChildren(...rows);
    if (stick) this.toBottom();
  }

  submit() {
    const text = $('compose').value;
    if (!text.trim() || !this.id) return;
    // Control characters grow sixfold in JSON; the frame limit is 64 KiB.
    if (utf8Length(text) > MAX_TEXT_BYTES || utf8Length(JSON.stringify(text)) > MAX_FRAME_TEXT) {
      this.app.toast(`Message too long (max ${MAX_TEXT_BYTES} bytes).`);
      return;
    }
    $('compose').value = '';
    this.autosize();
    this.sync.send(this.id, text, newClientId(), this.target.value());
    this.toBottom();
  }

  async older() {
    const id = this.id;
    const c = this.store.get(id);
    if (!c || c.low <= 1 || c.loadingOlder) return;
    await this.sync.loadOlder(id);
  }

  autosize() {
    const t = $('compose');
    t.style.height = 'auto';
    t.style.height = `${Math.min(t.scrollHeight, 160)}px`;
  }

  atBottom() {
    const b = $('messages');
    return b.scrollHeight - b.scrollTop - b.clientHeight < 80;
  }

  toBottom() {
    const b = $('messages');
    b.scrollTop = b.scrollHeight;
  }
}

function continues(prev, m) {
  return !!prev && prev.kind === Kind.TEXT && m.kind === Kind.TEXT && prev.sender === m.sender && prev.subgroup === m.subgroup && m.timeMs - prev.timeMs < GROUP_MS;
}

// fileBadge is the short label of a file's icon: its extension, or FILE.
function fileBadge(name) {
  const m = /\.([A-Za-z0-9]{1,4})$/.exec(name);
  return m ? m[1].toUpperCase() : 'FILE';
}
