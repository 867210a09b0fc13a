// Browser test of calls (docs/protocol.md §19, issue 7): real headless
// Chromium (Debian's /usr/bin/chromium via playwright-core) with a fake
// microphone, against a real server whose SFU listens on loopback.
//
//   node web/test/calls.mjs <baseURL> <artifactsDir>
//
// Three users in three browser contexts (alice and bob on desktops, carol on
// a phone viewport) and a second device of bob. Alice calls their group;
// both of bob's devices ring, he accepts on one and the other stops
// ringing (answered_elsewhere); carol accepts with the keyboard. In every
// tab getStats() must show inbound audio with packetsReceived > 0 and
// totalAudioEnergy > 0 from each of the other two, and the inbound SSRCs of
// each tab must equal the outbound SSRCs of the other two. Then: mute seen
// by the others, alice's network is cut and restored (session rebuild)
// while carol hangs up, the audio goes on and alice sees carol leave; alice
// hangs up, bob sees her leave; bob hangs up: call ended everywhere.
// Then bob calls alice in a direct conversation: she declines; he calls
// again and hangs up before she answers (her ringing stops).
// Also: carol reloads the page mid-call (her old join is left, she
// rejoins) and bob gets a fresh session (his device takes his participant
// over with a new join and a new stream).
// Exits non-zero on a failed check or any console error or page error.

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [baseURL, artifacts] = process.argv.slice(2);
if (!baseURL || !artifacts) {
  console.error('usage: node calls.mjs <baseURL> <artifactsDir>');
  process.exit(2);
}
fs.mkdirSync(artifacts, { recursive: true });

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const WAIT = 45000; // two shared cores, three WebRTC peers: be generous
const suffix = Math.random().toString(36).slice(2, 7);
const password = 'correct horse battery';
const problems = [];

const browser = await chromium.launch({
  executablePath: process.env.PARLEY_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

let step = '';
function log(s) {
  step = s;
  console.log(`[calls] ${s}`);
}

async function main() {
  log('alice, bob and carol register; bob signs in on a second device');
  const alice = await open('alice', DESKTOP);
  const bob = await open('bob', DESKTOP);
  const carol = await open('carol', PHONE);
  await register(alice, `alice-${suffix}`);
  await register(bob, `bob-${suffix}`);
  await register(carol, `carol-${suffix}`);
  const bob2 = await open('bob-2', DESKTOP);
  await login(bob2, `bob-${suffix}`);
  const ids = { alice: await myId(alice), bob: await myId(bob), carol: await myId(carol) };

  log('alice creates a group with bob and carol');
  await alice.page.click('#new-group');
  await alice.page.fill('#group-title', 'Standup');
  await alice.page.fill('#group-members', `${ids.bob}\n${ids.carol}`);
  await alice.page.click('#form-group button[type=submit]');
  await waitText(alice, '#conv-title', 'Standup');
  for (const u of [bob, bob2, carol]) await u.page.waitForSelector('.conv-item:has-text("Standup")', { timeout: WAIT });
  await openConv(bob, 'Standup');

  log('alice starts a call from the conversation header');
  await alice.page.click('#call-btn');
  await waitFn(alice, () => document.getElementById('call-panel').dataset.state === 'in_room', 'alice in the room');
  check(await alice.page.isDisabled('#call-btn'), 'call button disabled while in a call');
  await waitParticipant(alice, ids.bob, 'RINGING');
  await waitParticipant(alice, ids.carol, 'RINGING');

  log('every device of bob and carol rings');
  for (const u of [bob, bob2, carol]) {
    await u.page.waitForSelector('.call-ring', { timeout: WAIT });
    await waitText(u, '.call-ring .call-ring-title', 'Standup');
  }
  await shot(bob, 'call-01-ringing-desktop');
  await shot(carol, 'call-02-ringing-phone');

  log('bob accepts on his first device; the second stops ringing (answered elsewhere)');
  await bob.page.click('.call-ring .call-accept');
  await bob2.page.waitForSelector('.call-ring', { state: 'detached', timeout: WAIT });
  check(await bob2.page.isHidden('#call-panel'), 'bob-2 shows no call panel');
  check(!(await bob2.page.evaluate(() => window.parley.calls.dev.active())), 'bob-2 is not in the call');

  log('carol accepts with the keyboard');
  await carol.page.focus('.call-ring .call-accept');
  await carol.page.keyboard.press('Enter');

  for (const u of [alice, bob, carol]) {
    await waitInRoom(u);
    for (const id of Object.values(ids)) await waitParticipant(u, id, 'IN_ROOM');
  }

  log('every tab receives audio from the two others, with their SSRCs');
  const users = [alice, bob, carol];
  const stats = new Map();
  for (const u of users) stats.set(u, await waitAudio(u));
  for (const u of users) {
    const others = users.filter((x) => x !== u);
    const want = others.flatMap((x) => stats.get(x).outbound).sort();
    const got = stats.get(u).inbound.map((i) => i.ssrc).sort();
    console.log(`[calls] ${u.name}: outbound ssrc ${stats.get(u).outbound.join(',')}; inbound ${stats.get(u).inbound.map((i) => `${i.ssrc} (packets ${i.packetsReceived}, energy ${i.totalAudioEnergy.toPrecision(3)})`).join(', ')}`);
    check(stats.get(u).outbound.length === 1, `${u.name} publishes exactly one audio track: ${stats.get(u).outbound}`);
    check(JSON.stringify(got) === JSON.stringify(want), `${u.name}: inbound SSRCs ${got} equal the others' outbound SSRCs ${want}`);
  }
  await shot(alice, 'call-03-in-call-desktop');
  await shot(carol, 'call-04-in-call-phone');

  log('bob mutes: the others see it; he unmutes');
  await bob.page.click('#call-mute');
  check((await bob.page.getAttribute('#call-mute', 'aria-pressed')) === 'true', 'mute button pressed');
  for (const u of [alice, carol]) await waitFn(u, (id) => document.querySelector(`#call-participants li[data-user-id="${id}"]`)?.dataset.muted === 'true', `${u.name} sees bob muted`, ids.bob);
  await shot(alice, 'call-05-muted-desktop');
  await bob.page.click('#call-mute');
  for (const u of [alice, carol]) await waitFn(u, (id) => document.querySelector(`#call-participants li[data-user-id="${id}"]`)?.dataset.muted === 'false', `${u.name} sees bob unmuted`, ids.bob);

  log('carol hides the call screen to chat, then shows it again');
  await carol.page.click('#call-collapse');
  await carol.page.waitForSelector('#call-participants', { state: 'hidden', timeout: WAIT });
  await openConv(carol, 'Standup');
  check(await carol.page.isVisible('#compose'), 'carol can chat during the call');
  await shot(carol, 'call-06-bar-phone');
  await carol.page.click('#call-collapse');
  await carol.page.waitForSelector('#call-participants', { state: 'visible', timeout: WAIT });

  log('carol reloads the page: her old join is left (the others see it) and she rejoins');
  await carol.page.reload();
  await waitFn(carol, () => document.getElementById('call-panel').dataset.state === 'ended', 'carol: call ended by the reload');
  await waitText(carol, '#call-note', 'reloaded');
  await waitParticipant(alice, ids.carol, 'LEFT');
  await shot(carol, 'call-07-rejoin-phone');
  await carol.page.click('#call-rejoin');
  await waitInRoom(carol);
  for (const u of [alice, bob]) await waitParticipant(u, ids.carol, 'IN_ROOM');
  const carolSSRC = (await waitAudio(carol)).outbound[0];
  await waitInbound(alice, carolSSRC);
  await waitInbound(bob, carolSSRC);

  log('alice loses her network; carol hangs up meanwhile; alice comes back (session rebuild)');
  const before = await debugOf(alice);
  const packetsBefore = await packets(alice);
  await alice.ctx.setOffline(true);
  await waitText(alice, '#status-text', 'Offline');
  await carol.page.click('#call-hangup');
  await waitFn(carol, () => document.getElementById('call-panel').dataset.state === 'ended', 'carol sees the call ended');
  await waitText(carol, '#call-status', 'Call ended');
  await shot(carol, 'call-08-ended-phone');
  await waitText(carol, '#call-btn', 'Join call'); // the call goes on without her
  await waitParticipant(bob, ids.carol, 'LEFT');
  await alice.ctx.setOffline(false);
  await waitText(alice, '#status-text', 'Online');
  await waitParticipant(alice, ids.carol, 'LEFT');
  const after = await debugOf(alice);
  check(after.sessionId === before.sessionId && after.rebuilt && after.rebuilds > before.rebuilds, `alice's session was rebuilt: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
  check((await alice.page.getAttribute('#call-panel', 'data-state')) === 'in_room', 'alice is still in the call');
  const bobSSRC = stats.get(bob).outbound[0];
  await waitMore(alice, { [bobSSRC]: packetsBefore[bobSSRC] }); // carol's stream stopped, bob's goes on
  check((await alice.page.evaluate(() => window.parley.calls.debug.errors)).length === 0, 'no signalling errors in alice\'s tab');

  log('bob gets a fresh session (no rebuild): his device takes his part in the call over with a new join');
  const bobOld = (await audioStats(bob)).outbound[0];
  await bob.page.evaluate(() => window.parley.conn.restoreSession(null)); // the rebuild secret is lost
  await bob.ctx.setOffline(true);
  await waitText(bob, '#status-text', 'Offline');
  await bob.ctx.setOffline(false);
  await waitText(bob, '#status-text', 'Online');
  check(!(await debugOf(bob)).rebuilt, 'bob got a fresh session');
  await waitFn(bob, () => window.parley.calls.debug.takeovers === 1, 'bob took his participant over');
  await waitInRoom(bob);
  const bobNew = (await waitAudio(bob, 1)).outbound[0];
  check(bobNew !== bobOld, `bob publishes a new stream: ${bobOld} -> ${bobNew}`);
  await waitInbound(alice, bobNew);
  await waitParticipant(alice, ids.bob, 'IN_ROOM');

  log('alice hangs up: bob sees her leave; bob hangs up: the call is over');
  await alice.page.click('#call-hangup');
  await waitText(alice, '#call-status', 'Call ended');
  await waitParticipant(bob, ids.alice, 'LEFT');
  await shot(bob, 'call-09-others-left-desktop');
  await bob.page.keyboard.press('Tab'); // keyboard reaches the controls
  await bob.page.focus('#call-hangup');
  await bob.page.keyboard.press('Enter');
  await waitText(bob, '#call-status', 'Call ended');
  for (const u of [alice, bob, carol]) {
    check(!(await u.page.evaluate(() => window.parley.calls.dev.active())), `${u.name} is idle`);
    check((await u.page.evaluate(() => window.parley.calls.debug.errors)).length === 0, `${u.name}: no signalling errors`);
    check((await u.page.$$('#call-audio audio')).length === 0, `${u.name}: audio elements removed`);
  }
  // The ended summary goes away by itself.
  await alice.page.waitForSelector('#call-panel', { state: 'hidden', timeout: WAIT });
  check(!(await alice.page.isDisabled('#call-btn')), 'call button enabled again');
  await waitFn(alice, () => document.getElementById('call-btn').textContent === 'Call', 'alice: the call is over, "Call" again');

  log('bob calls alice in a direct conversation; she declines');
  await bob.page.click('#new-direct');
  await bob.page.fill('#direct-user', ids.alice);
  await bob.page.press('#direct-user', 'Enter');
  await waitText(bob, '#conv-title', 'Direct');
  await bob.page.click('#call-btn');
  await alice.page.waitForSelector('.call-ring', { timeout: WAIT });
  await waitText(alice, '.call-ring .call-ring-title', 'Direct');
  await alice.page.click('.call-ring .call-decline');
  await alice.page.waitForSelector('.call-ring', { state: 'detached', timeout: WAIT });
  await waitParticipant(bob, ids.alice, 'DECLINED');
  await shot(bob, 'call-10-declined-desktop');
  await bob.page.click('#call-hangup');
  await waitText(bob, '#call-status', 'Call ended');

  log('bob calls again and hangs up before she answers: her ringing stops');
  await bob.page.click('#call-btn');
  await alice.page.waitForSelector('.call-ring', { timeout: WAIT });
  await bob.page.click('#call-hangup');
  await alice.page.waitForSelector('.call-ring', { state: 'detached', timeout: WAIT });
  check(await alice.page.isHidden('#call-panel'), 'alice was never in that call');
  for (const u of [alice, bob, bob2]) check(!(await u.page.evaluate(() => window.parley.calls.dev.active())), `${u.name} is idle`);
}

// --- helpers ---

async function open(name, viewport) {
  const ctx = await browser.newContext({ viewport });
  await ctx.grantPermissions(['microphone'], { origin: new URL(baseURL).origin });
  const page = await ctx.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${name}: console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.stack || e}`));
  await page.goto(baseURL);
  return { name, ctx, page };
}

async function register(u, username) {
  await u.page.waitForSelector('#login-form', { state: 'visible', timeout: WAIT });
  await u.page.click('#tab-register');
  await u.page.fill('#username', username);
  await u.page.fill('#password', password);
  await u.page.press('#password', 'Enter');
  await u.page.waitForSelector('#my-user-id:not(:empty)', { timeout: WAIT });
  await waitText(u, '#status-text', 'Online');
}

async function login(u, username) {
  await u.page.waitForSelector('#login-form', { state: 'visible', timeout: WAIT });
  await u.page.fill('#username', username);
  await u.page.fill('#password', password);
  await u.page.click('#login-submit');
  await u.page.waitForSelector('#my-user-id:not(:empty)', { timeout: WAIT });
  await waitText(u, '#status-text', 'Online');
}

async function myId(u) {
  return (await u.page.textContent('#my-user-id')).trim();
}

async function openConv(u, title) {
  if ((await u.page.isVisible('#conv-pane')) && (await u.page.textContent('#conv-title')).includes(title)) return;
  const item = u.page.locator('.conv-item', { hasText: title }).first();
  await item.waitFor({ timeout: WAIT });
  await item.click();
  await waitText(u, '#conv-title', title);
}

async function debugOf(u) {
  return u.page.evaluate(() => JSON.parse(JSON.stringify(window.__parleyDebug)));
}

async function waitParticipant(u, userId, state) {
  await waitFn(u, ([id, s]) => document.querySelector(`#call-participants li[data-user-id="${id}"]`)?.dataset.state === s, `${u.name} sees ${userId} ${state}`, [userId, state]);
}

// audioStats reads the tab's peer connection stats: the SSRC of its one
// outbound audio stream and every inbound audio stream.
async function audioStats(u) {
  return u.page.evaluate(async () => {
    const pc = window.parley.calls.pc();
    if (!pc) return { outbound: [], inbound: [] };
    const r = await pc.getStats();
    const all = [...r.values()];
    return {
      outbound: all.filter((s) => s.type === 'outbound-rtp' && s.kind === 'audio').map((s) => s.ssrc),
      inbound: all
        .filter((s) => s.type === 'inbound-rtp' && s.kind === 'audio')
        .map((s) => ({ ssrc: s.ssrc, packetsReceived: s.packetsReceived || 0, totalAudioEnergy: s.totalAudioEnergy || 0 })),
    };
  });
}

async function waitInRoom(u) {
  await waitFn(u, () => {
    const p = document.getElementById('call-panel');
    return p.dataset.state === 'in_room' && p.dataset.connection === 'connected';
  }, `${u.name} in the room, audio connected`);
}

// waitInbound waits until the tab receives packets with audio energy from ssrc.
async function waitInbound(u, ssrc) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const st = await audioStats(u);
    if (st.inbound.some((i) => i.ssrc === ssrc && i.packetsReceived > 0 && i.totalAudioEnergy > 0)) return;
    if (Date.now() > deadline) throw new Error(`${u.name}: no audio from ssrc ${ssrc}: ${JSON.stringify(st)}`);
    await u.page.waitForTimeout(250); // polling interval, not an assertion
  }
}

// waitAudio waits until the tab receives audio on two inbound streams (at
// least a second of packets, and audio energy) and publishes one.
async function waitAudio(u, streams = 2) {
  const deadline = Date.now() + WAIT;
  let st;
  for (;;) {
    st = await audioStats(u);
    const live = st.inbound.filter((i) => i.packetsReceived >= 50 && i.totalAudioEnergy > 0);
    if (st.outbound.length === 1 && live.length >= streams && (streams !== 2 || st.inbound.length === 2)) return st;
    if (Date.now() > deadline) throw new Error(`${u.name}: no audio from both others: ${JSON.stringify(st)}`);
    await u.page.waitForTimeout(250); // polling interval, not an assertion
  }
}

// waitMore waits until every inbound stream that had packets got more.
async function waitMore(u, before) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const now = await packets(u);
    if (Object.keys(before).length && Object.entries(before).every(([ssrc, n]) => now[ssrc] > n)) return;
    if (Date.now() > deadline) throw new Error(`${u.name}: audio stopped: before ${JSON.stringify(before)}, now ${JSON.stringify(now)}`);
    await u.page.waitForTimeout(250); // polling interval, not an assertion
  }
}

async function packets(u) {
  const st = await audioStats(u);
  return Object.fromEntries(st.inbound.map((i) => [i.ssrc, i.packetsReceived]));
}

async function waitText(u, selector, text) {
  try {
    await u.page.waitForFunction(([s, t]) => (document.querySelector(s)?.textContent || '').toLowerCase().includes(t.toLowerCase()), [selector, text], { timeout: WAIT });
  } catch {
    throw new Error(`${u.name}: ${selector} never contained "${text}" (has "${await u.page.textContent(selector).catch(() => '?')}")`);
  }
}

async function waitFn(u, fn, what, arg) {
  try {
    await u.page.waitForFunction(fn, arg, { timeout: WAIT, polling: 100 });
  } catch (e) {
    const state = await u.page.evaluate(() => {
      const c = window.parley?.calls;
      return c && { state: c.dev.state, ended: c.ended, errors: c.debug.errors, debug: c.debug, participants: [...document.querySelectorAll('#call-participants li')].map((l) => `${l.dataset.userId}:${l.dataset.state}:${l.dataset.muted}`) };
    }).catch(() => null);
    throw new Error(`${u.name}: timed out waiting for: ${what} (${e.message.split('\n')[0]}); calls: ${JSON.stringify(state)}`);
  }
}

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

async function shot(u, name) {
  const file = path.join(artifacts, `${name}.png`);
  await u.page.screenshot({ path: file });
  console.log(`[calls] screenshot ${file}`);
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  console.error(`[calls] FAILED during "${step}": ${e.stack || e}`);
}
await browser.close();
if (problems.length) {
  failed = true;
  console.error(`[calls] ${problems.length} console/page error(s):\n  ${problems.join('\n  ')}`);
}
console.log(failed ? '[calls] FAIL' : '[calls] PASS');
process.exit(failed ? 1 : 0);
