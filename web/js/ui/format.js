// Human-readable labels for ids, times and system entries.

import { ConvKind, Kind, Role, directPeer } from '../protocol.js';

// shortUser abbreviates a user id ("uv3kqab…6n4e"); the protocol has no
// user directory yet, so ids are what people see.
export function shortUser(id) {
  return id && id.length > 14 ? `${id.slice(0, 7)}…${id.slice(-4)}` : id || '?';
}

export function userLabel(id, me) {
  return id === me ? 'You' : shortUser(id);
}

export function convTitle(c, me) {
  if (!c) return '';
  if (c.kind === ConvKind.DIRECT) return `Direct · ${shortUser(directPeer(c.id, me))}`;
  return c.title || 'Untitled group';
}

// hue gives every user id a stable color.
export function hue(id) {
  let x = 0;
  for (let i = 0; i < id.length; i++) x = (x * 31 + id.charCodeAt(i)) >>> 0;
  return x % 360;
}

export function initials(label) {
  const t = label.replace(/^Direct · /, '').replace(/[^\p{L}\p{N}]/gu, '');
  return (t.slice(0, 2) || '?').toUpperCase();
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function clock(ms) {
  return ms ? timeFmt.format(ms) : '';
}

// when is "14:05" for today, "Mar 3" before.
export function when(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  const now = new Date();
  return d.toDateString() === now.toDateString() ? timeFmt.format(d) : dateFmt.format(d);
}

export function fullTime(ms) {
  return ms ? fullFmt.format(ms) : '';
}

const roleName = { [Role.MEMBER]: 'member', [Role.ADMIN]: 'admin', [Role.OWNER]: 'owner' };

export function role(r) {
  return roleName[r] || 'member';
}

function users(list, me) {
  return list.map((u) => (u === me ? 'you' : shortUser(u))).join(', ');
}

// systemText describes a log entry that is not a text message.
export function systemText(m, me, kind) {
  const who = userLabel(m.sender, me);
  switch (m.kind) {
    case Kind.CREATED:
      return kind === ConvKind.DIRECT ? `${who} started this conversation` : `${who} created the group “${m.text}”`;
    case Kind.MEMBER_ADDED:
      return `${who} added ${users(m.users, me)}`;
    case Kind.MEMBER_REMOVED:
      return m.users.length === 1 && m.users[0] === m.sender ? `${who} left` : `${who} removed ${users(m.users, me)}`;
    case Kind.RENAMED:
      return `${who} renamed the group to “${m.text}”`;
    case Kind.ROLE_CHANGED:
      return `${who} made ${users(m.users, me)} ${role(m.text)}`;
    default:
      return '';
  }
}

// bytes formats a size: "812 B", "300 KiB", "4.2 MiB".
export function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1024 && u < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}
