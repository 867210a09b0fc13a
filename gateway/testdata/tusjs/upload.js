// Uploads a file into a Parley conversation with the stock tus-js-client,
// cutting the upload after its first chunk and resuming it from the
// server's offset with a second Upload (HEAD, then PATCHes).
// Usage: node upload.js ENDPOINT TOKEN CONVERSATION PATH
// Prints one JSON line: {"url": ..., "fileId": ..., "resumedAt": ...}.
'use strict';
const fs = require('fs');
const tus = require('tus-js-client');

const [endpoint, token, conversation, path] = process.argv.slice(2);
const data = fs.readFileSync(path);
let fileId = '';
let resumedAt = -1;

function options(extra) {
  return Object.assign({
    endpoint,
    chunkSize: 1 << 20,
    retryDelays: [0, 200, 1000],
    uploadSize: data.length,
    headers: { Authorization: 'Bearer ' + token },
    metadata: { conversation, filename: 'tus.bin', filetype: 'application/x-tus-test' },
    onAfterResponse(req, res) {
      const id = res.getHeader('Parley-File-Id');
      if (id) fileId = id;
    },
    onError(err) {
      console.error('tus upload failed: ' + err);
      process.exit(1);
    },
  }, extra);
}

const first = new tus.Upload(data, options({
  onChunkComplete(chunk, sent) {
    if (sent < data.length) {
      // Cut after the first chunk, then resume with a new client.
      first.abort().then(() => {
        const second = new tus.Upload(data, options({
          uploadUrl: first.url,
          onProgress(sent) { if (resumedAt < 0) resumedAt = sent; },
          onSuccess() {
            console.log(JSON.stringify({ url: second.url, fileId, resumedAt }));
          },
        }));
        second.start();
      });
    }
  },
  onSuccess() {
    console.log(JSON.stringify({ url: first.url, fileId, resumedAt }));
  },
}));
first.start();
