// Unit tests of the client's merge rule (docs/protocol.md §8), outbox and
// snapshots: node --test web/test/store.test.mjs (run by web/web_test.go).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kind, parseUserIds } from '../js/protocol.js';
import { Store } from '../js/store.js';

const ME = 'uaaaaaaaaaaaaaaaaaaaaaaaaaa';
const BOB = 'ubbbbbbbbbbbbbbbbbbbbbbbbbb';
const G = 'g000000000000000000000001';

function msg(seq, extra = {}) {
  return { conversationId: G, seq, kind: Kind.TEXT, sender: BOB, senderDevice: 'd', clientId: '', timeMs: 1000 + seq, text: `m${seq}`, replyTo: 0, targetSeq: 0, users: [], ...extra };
}

// applied records every message the store hands to the app, in order.
function recorder(store) {
  const applied = [];
  store.addEventListener('conv', (e) => {
    for (const m of e.detail.appended || []) applied.push(m.seq);
  });
  return applied;
}

test('in-order live messages are applied once; duplicates dropped', () => {
  const s = new Store(ME);
  const applied = recorder(s);
  assert.equal(s.deliver(msg(1)), false);
  assert.equal(s.deliver(msg(2)), false);
  assert.equal(s.deliver(msg(2)), false);
  assert.equal(s.deliver(msg(1)), false);
  assert.deepEqual(applied, [1, 2]);
  assert.equal(s.get(G).cursor, 2);
});

test('a live message above a gap is held until history fills the gap', () => {
  const s = new Store(ME);
  const applied = recorder(s);
  s.deliver(msg(1));
  assert.equal(s.deliver(msg(4)), true, 'gap: caller must catch up');
  assert.equal(s.deliver(msg(5)), true);
  assert.deepEqual(applied, [1]);
  // The history page overlaps the held messages: each is applied once.
  assert.equal(s.deliverPage(G, [msg(2), msg(3), msg(4)]), false);
  assert.deepEqual(applied, [1, 2, 3, 4, 5]);
  assert.equal(s.get(G).cursor, 5);
  assert.equal(s.get(G).held.size, 0);
  s.deliverPage(G, [msg(4), msg(5)]);
  assert.deepEqual(applied, [1, 2, 3, 4, 5]);
});

test('a page that stops short keeps the rest held', () => {
  const s = new Store(ME);
  s.deliver(msg(6));
  assert.equal(s.deliverPage(G, [msg(1), msg(2), msg(3)]), true);
  assert.equal(s.get(G).cursor, 3);
  assert.equal(s.deliverPage(G, [msg(4), msg(5)]), false);
  assert.equal(s.get(G).cursor, 6);
  assert.deepEqual(s.messages(G).map((m) => m.seq), [1, 2, 3, 4, 5, 6]);
});

test('a delete notice turns its target into a tombstone, also on older pages', () => {
  const s = new Store(ME);
  s.setBase(G, 0);
  s.deliverPage(G, [msg(1), msg(2), msg(3)]);
  const changed = [];
  s.addEventListener('conv', (e) => changed.push(...(e.detail.changed || [])));
  s.deliver(msg(4, { kind: Kind.DELETE, targetSeq: 2, text: '' }));
  assert.deepEqual(changed, [2]);
  assert.equal(s.get(G).msgs.get(2).kind, Kind.DELETED);
  assert.equal(s.get(G).msgs.get(2).text, '');

  // A new device starting at base 10 gets a notice for seq 8, then loads
  // the older page, which was read before the delete (still TEXT).
  const t = new Store(ME);
  t.ensure(G);
  t.setBase(G, 10);
  t.deliverPage(G, [msg(11, { kind: Kind.DELETE, targetSeq: 8 })]);
  t.prepend(G, [msg(6), msg(7), msg(8), msg(9), msg(10)]);
  assert.equal(t.get(G).low, 6);
  assert.equal(t.get(G).msgs.get(8).kind, Kind.DELETED);
  assert.equal(t.get(G).msgs.get(9).kind, Kind.TEXT);
});

test('prepend only accepts a page that ends right below the window', () => {
  const s = new Store(ME);
  s.ensure(G);
  s.setBase(G, 10);
  s.deliverPage(G, [msg(11), msg(12)]);
  s.prepend(G, [msg(3), msg(4)]); // hole between 4 and 11: refused
  assert.equal(s.get(G).low, 11);
  s.prepend(G, [msg(9), msg(10), msg(11)]);
  assert.equal(s.get(G).low, 9);
  assert.deepEqual(s.messages(G).map((m) => m.seq), [9, 10, 11, 12]);
});

test('setBase starts a new conversation near its end and keeps held messages above it', () => {
  const s = new Store(ME);
  const applied = recorder(s);
  s.deliver(msg(151));
  s.deliver(msg(99));
  s.setBase(G, 150);
  assert.deepEqual(applied, [151]);
  assert.equal(s.get(G).cursor, 151);
  assert.equal(s.get(G).low, 151);
  s.setBase(G, 5); // only for a conversation at cursor 0
  assert.equal(s.get(G).cursor, 151);
});

test('the outbox entry goes away when its message reaches the log', () => {
  const s = new Store(ME);
  s.deliver(msg(1));
  s.outboxAdd({ clientId: 'c1', conversationId: G, text: 'hi', time: 1, state: 'pending' });
  s.outboxAdd({ clientId: 'c2', conversationId: G, text: 'yo', time: 2, state: 'pending' });
  // Reply first, then the message.
  s.outboxSent('c1', 2);
  assert.equal(s.outboxFind('c1').state, 'sent');
  s.deliver(msg(2, { sender: ME, clientId: 'c1', text: 'hi' }));
  assert.equal(s.outboxFind('c1'), undefined);
  // Message first (e.g. through catch-up after a reconnect), then the reply.
  s.deliver(msg(3, { sender: ME, clientId: 'c2', text: 'yo' }));
  assert.equal(s.outboxFind('c2'), undefined);
  s.outboxSent('c2', 3);
  assert.equal(s.outbox.length, 0);
  // Someone else's message with a colliding client id does not count.
  s.outboxAdd({ clientId: 'c3', conversationId: G, text: 'x', time: 3, state: 'pending' });
  s.deliver(msg(4, { clientId: 'c3' }));
  assert.equal(s.outboxFind('c3').state, 'pending');
});

test('unread counts text from others above the read marker', () => {
  const s = new Store(ME);
  s.deliverPage(G, [msg(1, { kind: Kind.CREATED, sender: ME }), msg(2), msg(3, { sender: ME }), msg(4), msg(5)]);
  assert.equal(s.unread(G), 3);
  s.markRead(G, 4);
  assert.equal(s.unread(G), 1);
  assert.equal(s.markRead(G, 2), false, 'markers only move forward');
});

test('membership entries about me set and clear left', () => {
  const s = new Store(ME);
  s.deliver(msg(1, { kind: Kind.CREATED, sender: BOB, users: [BOB, ME], text: 'T' }));
  assert.equal(s.get(G).title, 'T');
  s.deliver(msg(2, { kind: Kind.MEMBER_REMOVED, sender: BOB, users: [ME] }));
  assert.equal(s.get(G).left, true);
  s.deliver(msg(3, { kind: Kind.MEMBER_ADDED, sender: BOB, users: [ME] }));
  assert.equal(s.get(G).left, false);
  s.deliver(msg(4, { kind: Kind.RENAMED, text: 'New' }));
  assert.equal(s.get(G).title, 'New');
});

test('a snapshot restores cursors with their messages and the outbox', () => {
  const s = new Store(ME);
  const msgs = [];
  for (let i = 1; i <= 250; i++) msgs.push(msg(i));
  s.deliverPage(G, msgs);
  s.markRead(G, 240);
  s.outboxAdd({ clientId: 'c1', conversationId: G, text: 'hi', time: 1, state: 'pending', inflight: true });
  const snap = JSON.parse(JSON.stringify(s.snapshot()));
  assert.equal(snap.convs[0].msgs.length, 200);
  assert.equal(snap.outbox[0].inflight, undefined);

  const r = new Store(ME);
  r.restore(snap);
  const c = r.get(G);
  assert.equal(c.cursor, 250);
  assert.equal(c.low, 51);
  assert.equal(c.readSeq, 240);
  assert.equal(r.unread(G), 10);
  assert.equal(r.outbox[0].state, 'pending');
  // Catch-up after the restore continues from the cursor without repeats.
  const applied = recorder(r);
  r.deliverPage(G, [msg(249), msg(250), msg(251)]);
  assert.deepEqual(applied, [251]);

  // Another user's snapshot is ignored; a broken run starts over from 0.
  const o = new Store(BOB);
  o.restore(snap);
  assert.equal(o.convs.size, 0);
  snap.convs[0].msgs.splice(10, 1);
  const b = new Store(ME);
  b.restore(snap);
  assert.equal(b.get(G).cursor, 0);
});

test('parseUserIds splits on spaces, commas and new lines', () => {
  const { ids, bad } = parseUserIds(` ${BOB},${ME}\n${BOB} nope `);
  assert.deepEqual(ids, [BOB, ME]);
  assert.deepEqual(bad, ['nope']);
});

test('cursors name conversations with messages, newest first, not left ones', () => {
  const s = new Store(ME);
  const H = 'g000000000000000000000002';
  const L = 'g000000000000000000000003';
  s.ensure('g000000000000000000000009'); // cursor 0: left to history
  s.deliver(msg(1));
  s.deliver(msg(1, { conversationId: H, timeMs: 5000 }));
  s.deliver(msg(2, { conversationId: H, timeMs: 5001 }));
  s.deliver(msg(1, { conversationId: L }));
  s.markLeft(L);
  assert.deepEqual(s.cursors(), [
    { conversationId: H, seq: '2' },
    { conversationId: G, seq: '1' },
  ]);
  assert.equal(s.cursors(1).length, 1);
});

test('a deleted FILE message becomes a tombstone without its file', () => {
  const s = new Store(ME);
  const file = { fileId: 'ab'.repeat(32), name: 'a.bin', size: 3, mime: 'application/octet-stream', uploader: BOB };
  s.deliver(msg(1, { kind: Kind.FILE, text: '', file }));
  assert.equal(s.unread(G), 1);
  s.deliver(msg(2, { kind: Kind.DELETE, targetSeq: 1 }));
  const m = s.get(G).msgs.get(1);
  assert.equal(m.kind, Kind.DELETED);
  assert.equal(m.file, null);
});
