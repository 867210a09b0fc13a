// A small tus 1.0 client (docs/protocol.md §15.2) on fetch: POST creates
// the upload, PATCH sends chunks of CHUNK bytes, each with
// Upload-Checksum: sha256 <base64> computed by crypto.subtle, and after a
// failure HEAD asks the server's offset and the upload goes on from there.
// The PATCH that completes the file answers Parley-File-Id; the server
// posts the FILE message into the conversation itself.
//
// Events (CustomEvent): "progress" ({sent, size}).

export const CHUNK = 1 << 20;
const TUS = { 'Tus-Resumable': '1.0.0' };
const ATTEMPTS = 8;

export class UploadError extends Error {
  constructor(code, status) {
    super(status ? `${code} (${status})` : code);
    this.name = 'UploadError';
    this.code = code;
    this.status = status;
  }
}

export class Upload extends EventTarget {
  // file: a File or Blob; token: the login token; base: the server origin.
  constructor({ file, name, conversationId, token, base = location.origin, chunk = CHUNK }) {
    super();
    this.file = file;
    this.name = safeName(name || file.name);
    this.mime = safeMime(file.type);
    this.size = file.size;
    this.conversationId = conversationId;
    this.token = token;
    this.base = base;
    this.chunk = chunk;
    this.url = ''; // the upload's URL once created
    this.offset = 0;
    this.aborted = false;
    this.result = null; // {fileId, seq}
  }

  headers(extra) {
    return { ...TUS, Authorization: `Bearer ${this.token}`, ...extra };
  }

  // start runs (or resumes) the upload; it resolves with {fileId, seq}.
  // Transient failures (network, 423, 5xx, a checksum mismatch) are retried
  // from the server's offset with backoff.
  async start() {
    this.aborted = false;
    let failures = 0;
    for (;;) {
      try {
        if (!this.url) await this.create();
        else await this.head();
        while (!this.result) await this.patch();
        return this.result;
      } catch (e) {
        if (this.aborted) throw new UploadError('aborted');
        if (e instanceof UploadError && !retryable(e)) throw e;
        if (++failures >= ATTEMPTS) throw e instanceof UploadError ? e : new UploadError('network');
        await sleep(Math.min(8000, 500 * 2 ** failures) * (0.5 + Math.random() / 2));
      }
    }
  }

  // abort stops the upload and terminates it on the server.
  abort() {
    this.aborted = true;
    this.ctl?.abort();
    if (this.url && !this.result) fetch(this.url, { method: 'DELETE', headers: this.headers() }).catch(() => {});
  }

  async create() {
    const meta = [['conversation', this.conversationId], ['filename', this.name], ['filetype', this.mime]].map(([k, v]) => `${k} ${b64(new TextEncoder().encode(v))}`).join(',');
    const res = await this.fetch(`${this.base}/files/uploads/`, { method: 'POST', headers: this.headers({ 'Upload-Length': String(this.size), 'Upload-Metadata': meta }) });
    if (res.status !== 201) throw failure(res);
    this.url = new URL(res.headers.get('Location'), res.url).href;
    this.offset = Number(res.headers.get('Upload-Offset') || 0);
    this.progress();
  }

  // head reads the server's offset (and the result of a finished upload
  // whose final answer was lost).
  async head() {
    for (;;) {
      const res = await this.fetch(this.url, { method: 'HEAD', headers: this.headers(), cache: 'no-store' });
      if (res.status === 404) {
        this.url = ''; // gone (expired or swept): start over
        throw new UploadError('not_found', 404);
      }
      if (!res.ok) throw failure(res);
      this.offset = Number(res.headers.get('Upload-Offset') || 0);
      this.progress();
      const state = res.headers.get('Parley-Upload-State');
      if (state === 'done') {
        this.done(res);
        return;
      }
      if (this.offset < this.size || !state) return;
      await sleep(500); // completing on the server: poll until done
    }
  }

  async patch() {
    const end = Math.min(this.size, this.offset + this.chunk);
    const body = await this.file.slice(this.offset, end).arrayBuffer();
    const sum = b64(new Uint8Array(await crypto.subtle.digest('SHA-256', body)));
    const res = await this.fetch(this.url, {
      method: 'PATCH',
      headers: this.headers({ 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(this.offset), 'Upload-Checksum': `sha256 ${sum}` }),
      body,
    });
    if (res.status !== 204) throw failure(res);
    this.offset = Number(res.headers.get('Upload-Offset'));
    this.progress();
    if (res.headers.get('Parley-Upload-State') === 'done') this.done(res);
    else if (this.offset >= this.size) throw new Error('completing'); // HEAD polls until done
  }

  done(res) {
    const fileId = res.headers.get('Parley-File-Id');
    if (!fileId) throw new UploadError('no_file_id');
    this.result = { fileId, seq: Number(res.headers.get('Parley-Seq') || 0) };
  }

  async fetch(url, init) {
    if (this.aborted) throw new UploadError('aborted');
    this.ctl = new AbortController();
    try {
      return await fetch(url, { ...init, signal: this.ctl.signal, credentials: 'omit' });
    } catch {
      throw new Error('network'); // retried from the server's offset
    }
  }

  progress() {
    this.dispatchEvent(new CustomEvent('progress', { detail: { sent: this.offset, size: this.size } }));
  }
}

function failure(res) {
  return new UploadError(res.headers.get('Parley-Error') || `http_${res.status}`, res.status);
}

// Worth another try: the server's offset decides where to go on.
function retryable(e) {
  return ['upload_locked', 'checksum_mismatch', 'offset_mismatch', 'unavailable', 'chunk_interrupted', 'not_found'].includes(e.code) || e.status >= 500 || e.status === 423;
}

function b64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// safeName makes a file name the server accepts: 1..255 bytes of UTF-8
// without "/", "\" or control characters.
export function safeName(name) {
  let n = String(name || '').replace(/[\\/\p{Cc}]/gu, '_').trim() || 'file';
  const enc = new TextEncoder();
  while (enc.encode(n).length > 255) n = n.slice(0, -1);
  return n;
}

function safeMime(t) {
  return /^[\x21-\x7e]+\/[\x21-\x7e]+$/.test(t || '') ? t : 'application/octet-stream';
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
