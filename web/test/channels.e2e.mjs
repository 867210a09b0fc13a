// End-to-end test of the channel and import screens in headless Chromium,
// against a real server (the same harness as e2e.mjs).
//
//   node web/test/channels.e2e.mjs <baseURL> <artifactsDir>
//
// web/webchan_test.go starts a server whose import limit is 2 per hour and
// runs this script. It exits non-zero on the first failed check, or if any
// page logged a console error or threw. Screenshots (ch-*.png, desktop
// 1280x800 and phone 390x844) are written to artifactsDir.
//
// alice (desktop) creates a channel with bob (desktop) and carol (phone);
// dave is a user whose last device is a phone app (a raw WebSocket opened
// from alice's page), so imports put him in another sub-group. They join,
// see each other present, talk; carol leaves and misses a message; alice
// manages levels and members; alice imports the channel into a group by
// invitation: bob accepts and gets the group's messages, carol declines and
// is removed from the channel; bob's imports are refused (not an admin of
// the group, of the channel); a direct import creates sub-groups and a
// message for one sub-group leaves a placeholder, without a gap, for bob;
// the third import of the hour is refused with its retry time.

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [baseURL, artifacts] = process.argv.slice(2);
if (!baseURL || !artifacts) {
  console.error('usage: node channels.e2e.mjs <baseURL> <artifactsDir>');
  process.exit(2);
}
fs.mkdirSync(artifacts, { recursive: true });

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const WAIT = 30000;
const suffix = Math.random().toString(36).slice(2, 7);
const password = 'correct horse battery';
const problems = [];

const browser = await chromium.launch({
  executablePath: process.env.PARLEY_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

let step = '';
function log(s) {
  step = s;
  console.log(`[channels-e2e] ${s}`);
}

async function main() {
  log('alice, bob (desktop) and carol (phone) register; dave signs up from a phone app');
  const alice = await open('alice', DESKTOP);
  await register(alice, `alice-${suffix}`);
  const aliceId = await myId(alice);
  const bob = await open('bob', DESKTOP);
  await register(bob, `bob-${suffix}`);
  const bobId = await myId(bob);
  const carol = await open('carol', PHONE);
  await register(carol, `carol-${suffix}`);
  const carolId = await myId(carol);
  const daveId = await rawUser(alice, `dave-${suffix}`, 'DEVICE_TYPE_MOBILE');
  check(new Set([aliceId, bobId, carolId, daveId]).size === 4, 'four users');

  log('alice creates a channel with bob and carol');
  await alice.page.click('#new-channel');
  await alice.page.fill('#channel-title', 'Standup room');
  await alice.page.fill('#channel-members', `${bobId}\n${carolId}`);
  await alice.page.press('#channel-title', 'Enter');
  await waitText(alice, '#chan-title', 'Standup room');
  await alice.page.waitForSelector('.chan-item:has-text("Standup room")', { timeout: WAIT });
  await waitText(alice, '#chan-sub', 'you are admin');
  check(await alice.page.isVisible('.chan-banner'), 'the channel screen says messages are not stored');

  log('alice manages the channel: levels, adding dave, the channel id');
  await alice.page.click('#chan-manage');
  await alice.page.waitForSelector(`#chan-member-list li[data-user-id="${bobId}"]`, { timeout: WAIT });
  const chanId = (await alice.page.textContent('#chan-id')).trim();
  check(/^c[0-9a-f]{24}$/.test(chanId), `channel id shown: ${chanId}`);
  await alice.page.click(`#chan-member-list li[data-user-id="${bobId}"] .set-level`);
  await alice.page.waitForSelector(`#chan-member-list li[data-user-id="${bobId}"][data-level="CHANNEL_LEVEL_ADMIN"]`, { timeout: WAIT });
  await alice.page.click(`#chan-member-list li[data-user-id="${bobId}"] .set-level`);
  await alice.page.waitForSelector(`#chan-member-list li[data-user-id="${bobId}"][data-level="CHANNEL_LEVEL_MEMBER"]`, { timeout: WAIT });
  await alice.page.fill('#chan-add-ids', daveId);
  await alice.page.click('#chan-add-submit');
  await alice.page.waitForSelector(`#chan-member-list li[data-user-id="${daveId}"]`, { timeout: WAIT });
  await shot(alice, 'ch-01-manage-desktop');
  await alice.page.keyboard.press('Escape');
  await alice.page.waitForSelector('#dlg-channel-manage', { state: 'hidden', timeout: WAIT });

  log('bob\'s list shows the channel without opening it by id (channelAdded); a wrong id is refused');
  await bob.page.waitForSelector(`.chan-item[data-channel-id="${chanId}"]:has-text("Standup room")`, { timeout: WAIT });
  await bob.page.click('#open-channel');
  await bob.page.fill('#channel-id-input', 'c0123456789abcdef01234567');
  await bob.page.press('#channel-id-input', 'Enter');
  await waitText(bob, '#dlg-channel-open .error', 'not a member');
  await bob.page.keyboard.press('Escape');
  await bob.page.waitForSelector('#dlg-channel-open', { state: 'hidden', timeout: WAIT });
  await bob.page.click(`.chan-item[data-channel-id="${chanId}"]`);
  await waitText(bob, '#chan-title', 'Standup room');

  log('a fresh device of bob lists the channel at login (listChannels), without "Open by id"');
  const bob2 = await open('bob-2', DESKTOP);
  await login(bob2, `bob-${suffix}`);
  await bob2.page.waitForSelector(`.chan-item[data-channel-id="${chanId}"]:has-text("Standup room")`, { timeout: WAIT });
  check(await bob2.page.isHidden('#dlg-channel-open'), 'bob-2 did not open the channel by id');
  await bob2.ctx.close();

  log('carol opens the channel by its id');
  await carol.page.click('#open-channel');
  await carol.page.fill('#channel-id-input', chanId);
  await carol.page.click('#form-channel-open button[type=submit]');
  await waitText(carol, '#chan-title', 'Standup room');
  check(await carol.page.isHidden('#sidebar'), 'phone: the list is hidden on the channel screen');
  check(await carol.page.isDisabled('#chan-compose'), 'the composer is disabled until you join');

  log('all three join (bob with the keyboard); presence shows them on every page');
  await alice.page.click('#chan-join');
  await waitPresent(alice, [aliceId]);
  await bob.page.focus('#chan-join');
  await bob.page.keyboard.press('Enter');
  await carol.page.click('#chan-join');
  for (const u of [alice, bob, carol]) await waitPresent(u, [aliceId, bobId, carolId]);
  await waitFn(bob, () => document.activeElement?.id === 'chan-compose', 'bob: composer focused after joining');
  await waitAbsent(alice, [daveId]);

  log('channel messages reach the present members');
  const all = [];
  await say(alice, 'Good morning <b>team</b>', all);
  await say(bob, 'Morning!', all);
  for (const u of [alice, bob, carol]) await expectChan(u, all);
  check((await bob.page.$$('#chan-log b')).length === 0, 'message text is not parsed as HTML');
  await waitFn(alice, () => /Delivered to 3 present links/.test(document.querySelector('#chan-log .msg.mine .out-state')?.textContent || ''), 'alice sees how many links got her message');

  log('bob\'s link drops: presence ends with it, and the client joins again on the new link');
  await bob.page.evaluate(() => window.parley.conn.drop(4000, 'waiting'));
  await waitFn(bob, () => !!document.querySelector('#chan-log [data-note="lost"] ~ [data-note="joined"]'), 'bob: link lost, then joined again');
  await waitPresent(bob, [aliceId, bobId, carolId]);
  await waitPresent(alice, [aliceId, bobId, carolId]);
  await say(alice, 'Are you back, bob?', all);
  for (const u of [alice, bob, carol]) await expectChan(u, all);

  log('carol leaves: the others see her absent, she misses what is said meanwhile');
  await carol.page.click('#chan-join');
  await waitFn(carol, () => document.getElementById('chan-pane').dataset.present === 'false', 'carol absent');
  await waitAbsent(alice, [carolId]);
  await waitAbsent(bob, [carolId]);
  await say(alice, 'Only for those present', all);
  await expectChan(alice, all);
  await expectChan(bob, all);
  await carol.page.click('#chan-join');
  await waitPresent(alice, [aliceId, bobId, carolId]);
  await say(alice, 'Welcome back, carol', all);
  await expectChan(bob, all);
  // Messages arrive in order on one link: "Welcome back" after nothing
  // means carol never got "Only for those present".
  await expectChan(carol, all.filter((t) => t !== 'Only for those present'));
  check(!(await chanTexts(carol)).includes('Only for those present'), 'carol never got the message said while she was away');
  await say(carol, 'Back on my phone', all);
  await expectChan(alice, all);
  await shot(alice, 'ch-02-channel-desktop');
  await shot(carol, 'ch-03-channel-phone');
  await carol.page.click('#chan-people');
  await carol.page.waitForSelector('#chan-people-panel', { state: 'visible', timeout: WAIT });
  await shot(carol, 'ch-04-channel-people-phone');
  await carol.page.click('#chan-people');

  log('alice creates the group "Team" and imports the channel by invitation');
  await alice.page.click('#new-group');
  await alice.page.fill('#group-title', 'Team');
  await alice.page.press('#group-title', 'Enter');
  await waitText(alice, '#conv-title', 'Team');
  await alice.page.click('.chan-item:has-text("Standup room")');
  await waitText(alice, '#chan-title', 'Standup room');
  await alice.page.click('#chan-manage');
  await alice.page.click('#chan-import');
  await importForm(alice, 'Team', 'Standup room', 'invite');
  await alice.page.waitForSelector('#import-result:not([hidden])', { timeout: WAIT });
  const invited = await alice.page.getAttribute('#import-result', 'data-count');
  check(invited === '3', `bob, carol and dave invited (${invited}): ${await alice.page.textContent('#import-result')}`);
  await shot(alice, 'ch-05-import-desktop');
  await alice.page.keyboard.press('Escape');

  log('bob accepts the invitation and gets the group\'s messages');
  await bob.page.waitForSelector('#invite-list .invite:has-text("Team")', { timeout: WAIT });
  await shot(bob, 'ch-06-invitation-desktop');
  await bob.page.click('#invite-list .invite:has-text("Team") .accept');
  await waitText(bob, '#conv-title', 'Team');
  await bob.page.waitForSelector('#invites', { state: 'hidden', timeout: WAIT });
  await openConv(alice, 'Team');
  const team = [];
  await sayConv(alice, 'Welcome to the team group', team);
  await expectLog(bob, team, 'Team');

  log('carol declines: she is removed from the channel');
  await carol.page.click('#chan-back');
  await carol.page.waitForSelector('#invite-list .invite:has-text("Team")', { timeout: WAIT });
  await shot(carol, 'ch-07-invitation-phone');
  await carol.page.click('#invite-list .invite:has-text("Team") .decline');
  await carol.page.waitForSelector('#invites', { state: 'hidden', timeout: WAIT });
  await carol.page.waitForSelector('.chan-item:has-text("Not a member")', { timeout: WAIT });
  await carol.page.click('.chan-item:has-text("Standup room")');
  await waitText(carol, '#chan-state-note', 'no longer a member');
  check(await carol.page.isHidden('#chan-join'), 'carol cannot join any more');
  check(!(await carol.page.$$eval('.conv-item .conv-title', (els) => els.map((e) => e.textContent))).includes('Team'), 'carol is not in the group');
  await shot(carol, 'ch-08-removed-phone');
  await alice.page.click('.chan-item:has-text("Standup room")');
  await waitFn(alice, (id) => !document.querySelector(`#chan-people-panel [data-user-id="${id}"]`), 'carol gone from alice\'s people list', carolId);
  await waitFn(alice, () => !!document.querySelector('#chan-log [data-note="member-removed"]'), 'alice sees that carol was removed');

  log('bob is refused with the precise reason: not admin of the group, not admin of the channel');
  await bob.page.click('#import-channel');
  await importForm(bob, 'Team', 'Standup room', 'direct');
  await waitText(bob, '#dlg-import .error', 'not an admin of the group “Team”');
  await bob.page.keyboard.press('Escape');
  await bob.page.click('#new-group');
  await bob.page.fill('#group-title', 'Bob crew');
  await bob.page.press('#group-title', 'Enter');
  await waitText(bob, '#conv-title', 'Bob crew');
  await bob.page.click('#import-channel');
  await importForm(bob, 'Bob crew', 'Standup room', 'direct');
  await waitText(bob, '#dlg-import .error', 'not an admin of the channel “Standup room”');
  await shot(bob, 'ch-09-import-refused-desktop');
  await bob.page.keyboard.press('Escape');

  log('a direct import makes sub-groups by client type; a sub-group message leaves bob a placeholder, no gap');
  await alice.page.click('#new-group');
  await alice.page.fill('#group-title', 'Field');
  await alice.page.press('#group-title', 'Enter');
  await waitText(alice, '#conv-title', 'Field');
  await alice.page.click('#import-channel');
  await importForm(alice, 'Field', 'Standup room', 'direct');
  await alice.page.waitForSelector('#import-result:not([hidden])', { timeout: WAIT });
  const result = await alice.page.textContent('#import-result');
  check(/Added 2 members/.test(result) && /Sub-groups created: .*mobile/.test(result) && /web/.test(result), `direct import of bob and dave: ${result}`);
  await alice.page.keyboard.press('Escape');
  await waitFn(alice, () => [...document.querySelectorAll('#compose-target option')].map((o) => o.value).join(',').includes('mobile'), 'alice can send to a sub-group');
  const field = [];
  await sayConv(alice, 'Before the sub-group message', field);
  await alice.page.selectOption('#compose-target', 'mobile');
  await sayConv(alice, 'Phones only: new build', null);
  await alice.page.selectOption('#compose-target', '');
  await sayConv(alice, 'Everyone again', field);
  await alice.page.waitForSelector('#log .msg .to:has-text("to mobile")', { timeout: WAIT });
  await expectLog(bob, field, 'Field');
  await waitFn(bob, () => document.querySelector('#log .hidden-msg')?.textContent.includes('A message for mobile'), 'bob sees the placeholder');
  const seqs = await bob.page.$$eval('#log [data-seq]', (els) => els.map((e) => Number(e.dataset.seq)));
  check(seqs.length > 0 && seqs.every((s, i) => i === 0 || s === seqs[i - 1] + 1), `bob's log has no gap: ${seqs}`);
  await waitFn(alice, () => (window.__raw?.[Object.keys(window.__raw)[0]]?.got || []).some((f) => f.message?.text === 'Phones only: new build'), 'dave (mobile) got the sub-group message');
  await shot(bob, 'ch-10-subgroup-placeholder-desktop');
  await expectLog(alice, [...field.slice(0, 1), 'Phones only: new build', ...field.slice(1)]);

  log('the third import of the hour is refused with the time to wait');
  await alice.page.click('#import-channel');
  await importForm(alice, 'Team', 'Standup room', 'invite');
  await waitText(alice, '#dlg-import .error', 'Try again in');
  const limited = await alice.page.textContent('#dlg-import .error');
  check(/Import limit reached.*Try again in \d+ (min|h)/.test(limited), `rate limit with retry time: ${limited}`);
  await shot(alice, 'ch-11-import-rate-limited-desktop');
  await alice.page.keyboard.press('Escape');

  log('phone screens of alice\'s channel');
  await alice.page.click('.chan-item:has-text("Standup room")');
  await waitPresent(alice, [aliceId, bobId]);
  await alice.page.setViewportSize(PHONE);
  check(await alice.page.isHidden('#sidebar'), 'phone: list hidden on the channel screen');
  await shot(alice, 'ch-12-channel-phone');
  await alice.page.click('#chan-back');
  await alice.page.waitForSelector('#sidebar', { state: 'visible', timeout: WAIT });
  await shot(alice, 'ch-13-list-phone');

  for (const u of [alice, bob, carol]) await u.ctx.close();
}

// --- helpers (as in e2e.mjs) ---

async function open(name, viewport) {
  const ctx = await browser.newContext({ viewport });
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

// rawUser registers and signs in a user over a WebSocket of u's page, as a
// device of the given type, and keeps the link open; the frames it gets
// collect in window.__raw[username].got.
async function login(u, username) {
  await u.page.waitForSelector('#login-form', { state: 'visible', timeout: WAIT });
  await u.page.fill('#username', username);
  await u.page.fill('#password', password);
  await u.page.click('#login-submit');
  await u.page.waitForSelector('#my-user-id:not(:empty)', { timeout: WAIT });
}

async function rawUser(u, username, type) {
  return u.page.evaluate(
    async ([username, password, type]) => {
      const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
      const got = [];
      window.__raw = window.__raw || {};
      window.__raw[username] = { ws, got };
      let n = 0;
      const waiting = new Map();
      const call = (name, body) =>
        new Promise((resolve, reject) => {
          const id = `r${++n}`;
          waiting.set(id, { resolve, reject });
          ws.send(JSON.stringify({ id, [name]: body }));
        });
      ws.onmessage = (ev) => {
        const f = JSON.parse(ev.data);
        const w = f.re && waiting.get(f.re);
        if (!w) return got.push(f);
        waiting.delete(f.re);
        if (f.error) w.reject(new Error(`${f.error.code}: ${f.error.message}`));
        else w.resolve(f);
      };
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = reject;
      });
      await call('hello', { versions: [1] });
      const reg = await call('register', { username, password });
      await call('login', { username, password, device: { id: `app-${username}`, type } });
      setInterval(() => ws.readyState === 1 && ws.send(JSON.stringify({ id: `p${++n}`, ping: {} })), 15000);
      return reg.registered.userId;
    },
    [username, password, type],
  );
}

async function myId(u) {
  return (await u.page.textContent('#my-user-id')).trim();
}

async function openConv(u, title) {
  if ((await u.page.isVisible('#conv-pane')) && (await u.page.textContent('#conv-title')).includes(title)) return;
  if (await u.page.isVisible('#chan-back')) await u.page.click('#chan-back');
  const item = u.page.locator('.conv-item:not(.chan-item)', { hasText: title }).first();
  await item.waitFor({ timeout: WAIT });
  await item.click();
  await waitText(u, '#conv-title', title);
}

// importForm fills the open import dialog and submits it.
async function importForm(u, group, channel, mode) {
  await u.page.waitForSelector('#dlg-import', { state: 'visible', timeout: WAIT });
  await u.page.selectOption('#import-channel-select', { label: await optionLabel(u, '#import-channel-select', channel) });
  await u.page.selectOption('#import-group', { label: await optionLabel(u, '#import-group', group) });
  await u.page.check(`#import-mode-${mode}`);
  await u.page.click('#form-import button[type=submit]');
}

async function optionLabel(u, select, start) {
  const labels = await u.page.$$eval(`${select} option`, (os) => os.map((o) => o.textContent));
  const l = labels.find((x) => x.startsWith(start));
  if (!l) throw new Error(`${u.name}: no option "${start}" in ${select}: ${JSON.stringify(labels)}`);
  return l;
}

// say sends a channel message with Enter.
async function say(u, text, expected) {
  await u.page.fill('#chan-compose', text);
  await u.page.press('#chan-compose', 'Enter');
  if (expected) expected.push(text);
  await waitFn(u, () => document.getElementById('chan-compose').value === '', 'channel composer cleared');
}

async function sayConv(u, text, expected) {
  await u.page.fill('#compose', text);
  await u.page.press('#compose', 'Enter');
  if (expected) expected.push(text);
  await waitFn(u, () => document.getElementById('compose').value === '', 'composer cleared');
}

async function chanTexts(u) {
  return u.page.$$eval('#chan-log .msg:not(.system) .text', (els) => els.map((e) => e.textContent));
}

// expectChan waits until the channel log shows exactly expected, all sent.
async function expectChan(u, expected) {
  try {
    await u.page.waitForFunction(
      (want) => {
        const got = [...document.querySelectorAll('#chan-log .msg:not(.system)')];
        return got.every((e) => e.dataset.state === 'sent') && JSON.stringify(got.map((e) => e.querySelector('.text').textContent)) === JSON.stringify(want);
      },
      expected,
      { timeout: WAIT },
    );
  } catch {
    throw new Error(`${u.name}: channel log mismatch\n  want ${JSON.stringify(expected)}\n  got  ${JSON.stringify(await chanTexts(u))}`);
  }
}

async function expectLog(u, expected, title) {
  if (title) await openConv(u, title);
  try {
    await u.page.waitForFunction(
      (want) => {
        const got = [...document.querySelectorAll('#log .msg:not(.system) .text')].map((e) => e.textContent);
        const seqs = [...document.querySelectorAll('#log [data-seq]')].map((e) => Number(e.dataset.seq));
        return document.querySelectorAll('#pending li').length === 0 && seqs.every((s, i) => i === 0 || s > seqs[i - 1]) && JSON.stringify(got) === JSON.stringify(want);
      },
      expected,
      { timeout: WAIT },
    );
  } catch {
    const got = await u.page.$$eval('#log .msg:not(.system) .text', (els) => els.map((e) => e.textContent));
    throw new Error(`${u.name}: log mismatch\n  want ${JSON.stringify(expected)}\n  got  ${JSON.stringify(got)}`);
  }
}

async function waitPresent(u, ids) {
  await waitFn(u, (ids) => ids.every((id) => document.querySelector(`#chan-present [data-user-id="${id}"][data-present="true"]`)), `present: ${ids.join(', ')}`, ids);
}

async function waitAbsent(u, ids) {
  await waitFn(u, (ids) => ids.every((id) => document.querySelector(`#chan-absent [data-user-id="${id}"][data-present="false"]`)), `absent: ${ids.join(', ')}`, ids);
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
    await u.page.waitForFunction(fn, arg, { timeout: WAIT });
  } catch {
    throw new Error(`${u.name}: timed out waiting for: ${what}`);
  }
}

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

async function shot(u, name) {
  const file = path.join(artifacts, `${name}.png`);
  await u.page.screenshot({ path: file });
  console.log(`[channels-e2e] screenshot ${file}`);
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  console.error(`[channels-e2e] FAILED during "${step}": ${e.stack || e}`);
}
await browser.close();
if (problems.length) {
  failed = true;
  console.error(`[channels-e2e] ${problems.length} console/page error(s):\n  ${problems.join('\n  ')}`);
}
console.log(failed ? '[channels-e2e] FAIL' : '[channels-e2e] PASS');
process.exit(failed ? 1 : 0);
