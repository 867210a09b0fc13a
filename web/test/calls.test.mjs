// Unit tests of the browser's call device machine (web/js/calldevice.js):
// it must behave exactly like the Go machine (actors/call/device.go), so
// this runs the Go machine's own transcripts (actors/call/testdata/device,
// datadriven format) against the port and compares every output.
//
//   node --test web/test/calls.test.mjs

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CallDevice, Op } from '../js/calldevice.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = path.join(here, '..', '..', 'actors', 'call', 'testdata', 'device');

// parse reads a datadriven file: [{line, cmd, args: Map, want}].
function parse(text) {
  const lines = text.split('\n');
  const cases = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i].trim();
    if (!l || l.startsWith('#')) continue;
    const [cmd, ...rest] = l.split(/\s+/);
    const args = new Map();
    for (const a of rest) {
      const eq = a.indexOf('=');
      if (eq < 0) args.set(a, '');
      else args.set(a.slice(0, eq), a.slice(eq + 1));
    }
    assert.equal(lines[++i], '----', `line ${i + 1}: want ----`);
    const want = [];
    while (i + 1 < lines.length && lines[i + 1] !== '') want.push(lines[++i]);
    cases.push({ line: i + 1, cmd, args, want: want.join('\n') + '\n' });
  }
  return cases;
}

// render mirrors DeviceEffects.String and Device.String of machine_test.go.
function renderFx(fx) {
  let b = '';
  if (fx.err) b += `refused ${fx.err.code}\n`;
  for (const s of fx.send) {
    b += `send ${s.op} call=${s.call} join=${s.join}`;
    if (s.conv) b += ` conv=${s.conv}`;
    if (s.op === Op.MUTE) b += ` muted=${s.muted}`;
    b += '\n';
  }
  if (fx.startMedia) b += 'start media\n';
  if (fx.stopMedia) b += 'stop media\n';
  for (const c of fx.ring) b += `ring ${c}\n`;
  for (const c of fx.stopRing) b += `stop ringing ${c}\n`;
  if (fx.over) b += `over ${fx.over}\n`;
  return b || 'no effects\n';
}

function renderDevice(d) {
  let b = d.state;
  if (d.active()) {
    b += ` call=${d.call} join=${d.join} caller=${d.caller}`;
    if (d.muted) b += ' muted';
  }
  return `${b} ringing=[${d.ringing.map((r) => r.call).join(' ')}] gone-calls=[${d.goneCalls.join(' ')}] gone-joins=[${d.goneJoins.join(' ')}]\n`;
}

function event(cmd, a) {
  const s = (k) => a.get(k) || '';
  const n = (k) => Number(a.get(k) || 0);
  switch (cmd) {
    case 'start':
      return { type: 'start', conv: s('conv'), join: s('join') };
    case 'accept':
      return { type: 'accept', call: s('call'), join: s('join') };
    case 'decline':
      return { type: 'decline', call: s('call') };
    case 'hangup':
      return { type: 'hangup' };
    case 'mute':
      return { type: 'mute', muted: !a.has('off') };
    case 'reply': {
      const code = s('err');
      return { type: 'answer', reply: { op: s('op'), call: s('call'), join: s('join'), duplicate: a.has('dup'), err: code ? { code, message: code } : null } };
    }
    case 'invited':
      return { type: 'incoming', call: s('call'), conv: s('conv'), caller: s('caller'), expires: n('expires'), now: n('now') };
    case 'ring-stopped':
      return { type: 'ringStopped', call: s('call'), reason: s('reason'), device: s('device') };
    case 'ended':
      return { type: 'ended', call: s('call'), join: s('join'), reason: s('reason') };
  }
  throw new Error(`unknown command ${cmd}`);
}

const files = fs.readdirSync(dir).filter((f) => !f.startsWith('.'));

test('the Go transcripts exist', () => {
  assert.ok(files.length >= 2, `transcripts in ${dir}: ${files}`);
});

for (const f of files) {
  test(`transcript ${f}`, () => {
    const dev = new CallDevice('d1');
    const cases = parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    assert.ok(cases.length > 5);
    for (const c of cases) {
      const got = c.cmd === 'state' ? renderDevice(dev) : renderFx(dev.step(event(c.cmd, c.args)));
      assert.equal(got, c.want, `${f}:${c.line}: ${c.cmd} ${[...c.args].map(([k, v]) => (v ? `${k}=${v}` : k)).join(' ')}`);
    }
  });
}

test('gone lists are bounded', () => {
  const dev = new CallDevice('d1');
  for (let i = 0; i < 40; i++) {
    dev.step({ type: 'start', conv: 'g', join: `j${i}` });
    dev.step({ type: 'hangup' });
  }
  assert.equal(dev.goneJoins.length, 32);
  assert.equal(dev.goneJoins[0], 'j8');
});
