// Unit tests of the channel state (js/channels.js): replies, presence
// events, the in-memory log, invitations. node --test web/test/channels.test.mjs
// (run by web/webchan_test.go).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChannelEvent, ChannelModel, InvitationState, Level, normalizeChannel } from '../js/channels.js';

const ME = 'uaaaaaaaaaaaaaaaaaaaaaaaaaa';
const BOB = 'ubbbbbbbbbbbbbbbbbbbbbbbbbb';
const CAROL = 'uccccccccccccccccccccccccccc';
const CH = 'c0123456789abcdef01234567';

function full(extra = {}) {
  return {
    id: CH,
    title: 'Standup',
    level: Level.ADMIN,
    present: [BOB],
    members: [
      { userId: ME, level: Level.ADMIN },
      { userId: BOB, level: Level.MEMBER, present: true },
      { userId: CAROL },
    ],
    ...extra,
  };
}

function events(model) {
  const got = [];
  for (const t of ['list', 'channel', 'invitations']) model.addEventListener(t, () => got.push(t));
  return got;
}

test('a full reply sets members, levels and presence; a brief one keeps them', () => {
  const m = new ChannelModel(ME);
  const c = m.apply(full());
  assert.equal(c.title, 'Standup');
  assert.equal(c.level, Level.ADMIN);
  assert.equal(c.loaded, true);
  assert.deepEqual([...c.members.values()].map((x) => [x.userId, x.level, x.present]), [
    [ME, Level.ADMIN, false],
    [BOB, Level.MEMBER, true],
    [CAROL, Level.MEMBER, false],
  ]);
  m.apply({ id: CH, title: 'Standup', level: Level.MEMBER }); // join/leave reply
  assert.equal(c.members.size, 3);
  assert.equal(c.level, Level.MEMBER);
  assert.equal(c.members.get(ME).level, Level.MEMBER);
  assert.equal(normalizeChannel({ id: CH }).members, null);
});

test('presence events move members; an unknown member asks for a refresh', () => {
  const m = new ChannelModel(ME);
  const c = m.apply(full());
  m.setPresent(CH, true);
  assert.equal(c.present, true);
  assert.equal(c.members.get(ME).present, true);
  assert.equal(m.onEvent({ channelId: CH, kind: ChannelEvent.PRESENT, userId: CAROL }), false);
  assert.equal(c.members.get(CAROL).present, true);
  assert.equal(m.onEvent({ channelId: CH, kind: ChannelEvent.ABSENT, userId: BOB }), false);
  assert.equal(c.members.get(BOB).present, false);
  const dave = 'uddddddddddddddddddddddddddd';
  assert.equal(m.onEvent({ channelId: CH, kind: ChannelEvent.PRESENT, userId: dave }), true);
  assert.equal(c.members.get(dave).present, true);
  m.onEvent({ channelId: CH, kind: ChannelEvent.REMOVED, userId: CAROL });
  assert.equal(c.members.has(CAROL), false);
  assert.deepEqual(c.log.filter((e) => e.kind === 'note').map((e) => e.what), ['joined', 'member-joined', 'member-left', 'member-joined', 'member-removed']);
  assert.equal(m.onEvent({ channelId: 'cother', kind: ChannelEvent.PRESENT, userId: BOB }), false, 'events of unknown channels are ignored');
});

test('being removed ends presence and the wish to rejoin', () => {
  const m = new ChannelModel(ME);
  const c = m.apply(full());
  c.want = true;
  m.setPresent(CH, true);
  m.onEvent({ channelId: CH, kind: ChannelEvent.REMOVED, userId: ME });
  assert.equal(c.removed, true);
  assert.equal(c.present, false);
  assert.equal(c.want, false);
  assert.equal(c.members.has(ME), false);
  m.apply(full()); // added again: a member once more
  assert.equal(c.removed, false);
});

test('a lost link makes everyone absent (presence does not survive it)', () => {
  const m = new ChannelModel(ME);
  const c = m.apply(full());
  m.setPresent(CH, true);
  m.linkLost();
  assert.equal(c.present, false);
  assert.ok([...c.members.values()].every((x) => !x.present));
  assert.equal(c.log.at(-1).what, 'lost');
  const n = c.log.length;
  m.linkLost();
  assert.equal(c.log.length, n, 'a second state change adds nothing');
});

test('own messages: pending, then confirmed by the echo and the reply; others appended', () => {
  const m = new ChannelModel(ME);
  const c = m.apply(full());
  m.pending(CH, 'k1', 'hello');
  assert.equal(c.log.at(-1).state, 'sending');
  m.onMessage({ channelId: CH, sender: ME, senderDevice: 'web-1', clientId: 'k1', timeMs: '5', text: 'hello' }, 'web-1');
  m.sendResult(CH, 'k1', { recipients: 2 });
  const msgs = c.log.filter((e) => e.kind === 'msg');
  assert.equal(msgs.length, 1);
  assert.deepEqual([msgs[0].state, msgs[0].recipients, msgs[0].timeMs], ['sent', 2, 5]);
  // The same client id from another device of mine is another message.
  m.onMessage({ channelId: CH, sender: ME, senderDevice: 'phone', clientId: 'k1', timeMs: '6', text: 'from my phone' }, 'web-1');
  m.onMessage({ channelId: CH, sender: BOB, senderDevice: 'b', clientId: 'x', timeMs: '7', text: 'hi' }, 'web-1');
  assert.deepEqual(c.log.filter((e) => e.kind === 'msg').map((e) => e.text), ['hello', 'from my phone', 'hi']);
  m.pending(CH, 'k2', 'lost');
  m.sendResult(CH, 'k2', { error: 'not_member' });
  assert.equal(c.log.at(-1).state, 'failed');
});

test('the log keeps the newest entries only', () => {
  const m = new ChannelModel(ME);
  const c = m.apply(full());
  for (let i = 0; i < 600; i++) m.onMessage({ channelId: CH, sender: BOB, text: `m${i}` }, 'w');
  assert.equal(c.log.length, 500);
  assert.equal(c.log[0].text, 'm100');
});

test('invitations: only pending ones are listed', () => {
  const m = new ChannelModel(ME);
  const got = events(m);
  m.setInvitations([
    { id: 'g1/01', groupId: 'g1', state: InvitationState.PENDING, expiresAtMs: '10' },
    { id: 'g2/02', groupId: 'g2', state: InvitationState.EXPIRED },
  ]);
  assert.deepEqual([...m.invitations.keys()], ['g1/01']);
  assert.equal(m.invitations.get('g1/01').expiresAtMs, 10);
  m.addInvitation({ id: 'g3/03', groupId: 'g3', state: InvitationState.PENDING });
  m.addInvitation({ id: 'g4/04', groupId: 'g4', state: InvitationState.ACCEPTED });
  assert.deepEqual([...m.invitations.keys()], ['g1/01', 'g3/03']);
  m.dropInvitation('g1/01');
  assert.deepEqual([...m.invitations.keys()], ['g3/03']);
  assert.deepEqual(got, ['invitations', 'invitations', 'invitations']);
});

test('serial and restore keep ids, titles and removal only', () => {
  const m = new ChannelModel(ME);
  m.apply(full());
  m.ensure('c1111111111111111111111111', 'Other');
  m.markRemoved('c1111111111111111111111111');
  const m2 = new ChannelModel(ME);
  m2.restore(JSON.parse(JSON.stringify(m.serial())));
  assert.deepEqual(m2.list().map((c) => [c.id, c.title, c.removed, c.present, c.members.size]), [
    [CH, 'Standup', false, false, 0],
    ['c1111111111111111111111111', 'Other', true, false, 0],
  ]);
});

test('listChannels and channelAdded/channelRemoved keep the list', () => {
  const m = new ChannelModel(ME);
  const got = events(m);
  const ids = m.setList([{ id: CH, title: 'Standup' }, { id: 'c00000000000000000000000a', title: 'Ops', level: Level.ADMIN }]);
  assert.deepEqual([...ids].sort(), ['c00000000000000000000000a', CH].sort());
  assert.equal(m.get(CH).level, Level.MEMBER, 'an omitted level is member');
  assert.equal(m.get('c00000000000000000000000a').level, Level.ADMIN);
  assert.ok(got.includes('list'));
  got.length = 0;
  m.setList([{ id: CH, title: 'Standup' }]);
  assert.equal(got.length, 0, 'an unchanged entry emits nothing');
  m.onSessionEvent({ seq: '3', channelAdded: { channel: { id: CH, title: 'Standup', level: Level.ADMIN } } });
  assert.equal(m.get(CH).level, Level.ADMIN, 'channelAdded carries a level change');
  m.onSessionEvent({ seq: '4', channelRemoved: { channelId: CH } });
  assert.equal(m.get(CH).removed, true);
  m.onSessionEvent({ seq: '5', channelAdded: { channel: { id: CH, title: 'Standup' } } });
  assert.equal(m.get(CH).removed, false, 'added again');
  m.onSessionEvent({ seq: '6', channelRemoved: { channelId: 'cunknown' } });
  assert.equal(m.get('cunknown'), undefined, 'removal of an unknown channel is ignored');
});

test('MEMBER events add members and change levels without a refresh', () => {
  const m = new ChannelModel(ME);
  m.apply(full());
  const dave = 'udddddddddddddddddddddddddd';
  assert.equal(m.onEvent({ channelId: CH, kind: ChannelEvent.MEMBER, userId: dave }), false);
  assert.equal(m.get(CH).members.get(dave).level, Level.MEMBER);
  assert.equal(m.get(CH).log.at(-1).what, 'member-added');
  assert.equal(m.onEvent({ channelId: CH, kind: ChannelEvent.MEMBER, userId: BOB, level: Level.ADMIN }), false);
  assert.equal(m.get(CH).members.get(BOB).level, Level.ADMIN);
  m.onEvent({ channelId: CH, kind: ChannelEvent.MEMBER, userId: ME, level: Level.MEMBER });
  assert.equal(m.get(CH).level, Level.MEMBER, 'our own level follows');
});
