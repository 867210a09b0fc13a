// Wire-protocol constants and helpers (docs/protocol.md). Frames are JSON
// text frames: {"id": ..., "<command>": {...}} out, {"re": ..., "<body>": {...}}
// or an event {"message": ...} / {"sessionEvent": ...} in.

export const PROTOCOL_VERSION = 1;

export const Kind = Object.freeze({
  TEXT: 'MESSAGE_KIND_TEXT',
  DELETED: 'MESSAGE_KIND_DELETED',
  DELETE: 'MESSAGE_KIND_DELETE',
  MEMBER_ADDED: 'MESSAGE_KIND_MEMBER_ADDED',
  MEMBER_REMOVED: 'MESSAGE_KIND_MEMBER_REMOVED',
  RENAMED: 'MESSAGE_KIND_RENAMED',
  CREATED: 'MESSAGE_KIND_CREATED',
  ROLE_CHANGED: 'MESSAGE_KIND_ROLE_CHANGED',
  FILE: 'MESSAGE_KIND_FILE',
  HIDDEN: 'MESSAGE_KIND_HIDDEN',
});

export const ConvKind = Object.freeze({
  GROUP: 'CONVERSATION_KIND_GROUP',
  DIRECT: 'CONVERSATION_KIND_DIRECT',
});

export const Role = Object.freeze({
  MEMBER: 'ROLE_MEMBER',
  ADMIN: 'ROLE_ADMIN',
  OWNER: 'ROLE_OWNER',
});

// Close codes after which the client must not reconnect on its own (§12).
// 4008: the session moved to a newer link (a resume elsewhere, §10.7).
export const NO_RECONNECT = new Set([4004, 4005, 4006, 4008]);
export const CLOSE_REPLACED = 4004;
export const CLOSE_LOGGED_OUT = 4005;
export const CLOSE_UNSUPPORTED = 4006;
export const CLOSE_MOVED = 4008;

// Refusals of a session rebuild (§10.6): the link still waits for hello,
// so the client sends a plain hello (token + cursors) on it.
export const REBUILD_REFUSED = new Set(['session_unknown', 'session_foreign', 'session_expired', 'bad_rebuild_token', 'seq_in_future', 'buffer_overflowed']);

// Error codes after which a send is worth retransmitting (same clientId).
// "closed" and "timeout" are the client's own codes for a lost link and an
// unanswered command.
export const TRANSIENT = new Set(['unavailable', 'storage', 'rate_limited', 'too_many_in_flight', 'closed', 'timeout']);

// Limits the server enforces (defaults); checked early for a clear message.
export const MAX_TEXT_BYTES = 16384;
export const HISTORY_MAX = 500;

export class ProtocolError extends Error {
  constructor(code, message, retryAfterMs = 0) {
    super(message ? `${code}: ${message}` : code);
    this.name = 'ProtocolError';
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

// num reads a protojson int64 (a string, a number or absent) as a Number.
// Seqs and millisecond times stay far below 2^53.
export function num(v) {
  if (v === undefined || v === null || v === '') return 0;
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : 0;
}

// normalizeMessage turns a wire Message into the client's shape: numbers
// for seqs and times, defaults for omitted fields.
export function normalizeMessage(m) {
  return {
    conversationId: m.conversationId || '',
    seq: num(m.seq),
    kind: m.kind || 'MESSAGE_KIND_UNSPECIFIED',
    sender: m.sender || '',
    senderDevice: m.senderDevice || '',
    clientId: m.clientId || '',
    timeMs: num(m.timeMs),
    text: m.text || '',
    replyTo: num(m.replyTo),
    targetSeq: num(m.targetSeq),
    users: m.users || [],
    file: m.file ? normalizeFile(m.file) : null,
    subgroup: m.subgroup || '',
  };
}

// normalizeFile reads a FILE message's file (§15.3).
export function normalizeFile(f) {
  return { fileId: f.fileId || '', name: f.name || 'file', size: num(f.size), mime: f.mime || 'application/octet-stream', uploader: f.uploader || '' };
}

// normalizeConversation does the same for a Conversation.
export function normalizeConversation(c) {
  return {
    id: c.id || '',
    kind: c.kind || kindFromId(c.id || ''),
    title: c.title || '',
    lastSeq: num(c.lastSeq),
    readSeq: num(c.readSeq),
    members: (c.members || []).map((m) => ({ userId: m.userId, role: m.role || Role.MEMBER, readSeq: num(m.readSeq), subgroup: m.subgroup || '', displayName: m.displayName || '' })),
    subgroups: c.subgroups || [], // sub-groups made by channel imports (§17.4)
  };
}

// kindFromId guesses a conversation's kind from its id (direct ids start
// with "d."), for conversations first seen through a live message.
export function kindFromId(id) {
  return id.startsWith('d.') ? ConvKind.DIRECT : ConvKind.GROUP;
}

// directPeer is the other user of a direct conversation id.
export function directPeer(convId, me) {
  const parts = convId.split('.');
  if (parts.length !== 3 || parts[0] !== 'd') return '';
  return parts[1] === me ? parts[2] : parts[1];
}

function randomHex(bytes) {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// newClientId is a send's idempotency key: time-ordered, then random.
export function newClientId() {
  return `w${Date.now().toString(36)}-${randomHex(8)}`;
}

// newDeviceId names this browser install ([A-Za-z0-9_-], ≤ 64 bytes).
export function newDeviceId() {
  return `web-${randomHex(8)}`;
}

// USER_ID matches a user id: "u" + 26 base32 characters.
export const USER_ID = /^u[a-z2-7]{26}$/;

// parseUserIds splits free text (spaces, commas, new lines) into user ids;
// it returns the valid ids and the tokens that are not ids.
export function parseUserIds(text) {
  const ids = [];
  const bad = [];
  for (const tok of text.split(/[\s,;]+/)) {
    if (!tok) continue;
    if (USER_ID.test(tok)) {
      if (!ids.includes(tok)) ids.push(tok);
    } else bad.push(tok);
  }
  return { ids, bad };
}

export function utf8Length(s) {
  return new TextEncoder().encode(s).length;
}
