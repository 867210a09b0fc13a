package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/upload"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	"github.com/parley-chat/parley/persistence"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func uploadChecksum(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256 " + base64.StdEncoding.EncodeToString(s[:])
}

// Every malformed or misdirected tus request gets its precise status, and
// none of them ever makes a blob: the only blob at the end is the one good
// upload, and its bytes hash to its name.
func TestFileBadInput(t *testing.T) {
	var skew atomic.Int64
	srv := gatewaytest.Start(t, gatewaytest.Options{Actors: actors.Options{
		Uploads: upload.Limits{MaxSize: 1 << 20},
		Clock:   func() time.Time { return time.Now().Add(time.Duration(skew.Load())) },
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, aliceLogin := srv.User(t, "alice", "a1")
	_, bobLogin := srv.User(t, "bob", "b1")
	g, err := alice.CreateGroup(ctx, "bad input")
	if err != nil {
		t.Fatal(err)
	}
	at, bt := aliceLogin.Token, bobLogin.Token
	meta := "conversation " + b64(g.Id) + ",filename " + b64("x.bin")
	create := func(size int) string {
		t.Helper()
		res, _ := httpDo(t, srv, http.MethodPost, "/files/uploads/", at, map[string]string{
			"Tus-Resumable": "1.0.0", "Upload-Length": strconv.Itoa(size), "Upload-Metadata": meta}, nil)
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("create: %s", res.Status)
		}
		return res.Header.Get("Location")
	}
	up := create(100)
	data := randomBytes(t, 100)
	tus := func(extra map[string]string) map[string]string {
		h := map[string]string{"Tus-Resumable": "1.0.0"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	patch := func(off string, extra map[string]string) map[string]string {
		h := tus(map[string]string{"Content-Type": "application/offset+octet-stream", "Upload-Offset": off})
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	unknown := "/files/uploads/up000000000000000000000000"

	for _, tc := range []struct {
		name, method, path, token string
		hdr                       map[string]string
		body                      []byte
		want                      int
		code                      string
	}{
		{"create without Tus-Resumable", "POST", "/files/uploads/", at, map[string]string{"Upload-Length": "10", "Upload-Metadata": meta}, nil, 412, "unsupported_version"},
		{"create without a token", "POST", "/files/uploads/", "", tus(map[string]string{"Upload-Length": "10", "Upload-Metadata": meta}), nil, 401, "unauthenticated"},
		{"create with a bad token", "POST", "/files/uploads/", "uxxxxxxxxxxxxxxxxxxxxxxxxxx.bogus", tus(map[string]string{"Upload-Length": "10", "Upload-Metadata": meta}), nil, 401, "bad_token"},
		{"create without Upload-Length", "POST", "/files/uploads/", at, tus(map[string]string{"Upload-Metadata": meta}), nil, 400, "invalid_argument"},
		{"create with a negative length", "POST", "/files/uploads/", at, tus(map[string]string{"Upload-Length": "-5", "Upload-Metadata": meta}), nil, 400, "invalid_argument"},
		{"create with deferred length", "POST", "/files/uploads/", at, tus(map[string]string{"Upload-Defer-Length": "1", "Upload-Metadata": meta}), nil, 400, "invalid_argument"},
		{"create over the size limit", "POST", "/files/uploads/", at, tus(map[string]string{"Upload-Length": strconv.Itoa(1<<20 + 1), "Upload-Metadata": meta}), nil, 413, upload.CodeTooLarge},
		{"create with malformed metadata", "POST", "/files/uploads/", at, tus(map[string]string{"Upload-Length": "10", "Upload-Metadata": "conversation !!notbase64"}), nil, 400, "invalid_argument"},
		{"create without a conversation", "POST", "/files/uploads/", at, tus(map[string]string{"Upload-Length": "10", "Upload-Metadata": "filename " + b64("a")}), nil, 400, "invalid_argument"},
		{"create with a slash in the name", "POST", "/files/uploads/", at, tus(map[string]string{"Upload-Length": "10", "Upload-Metadata": "conversation " + b64(g.Id) + ",filename " + b64("../x")}), nil, 400, "invalid_argument"},
		{"create into a foreign conversation", "POST", "/files/uploads/", bt, tus(map[string]string{"Upload-Length": "10", "Upload-Metadata": meta}), nil, 403, "not_member"},
		{"create into a missing conversation", "POST", "/files/uploads/", at, tus(map[string]string{"Upload-Length": "10", "Upload-Metadata": "conversation " + b64("gnope")}), nil, 403, "not_member"},
		{"patch with the wrong content type", "PATCH", up, at, patch("0", map[string]string{"Content-Type": "text/plain"}), data, 415, "invalid_argument"},
		{"patch without Upload-Offset", "PATCH", up, at, tus(map[string]string{"Content-Type": "application/offset+octet-stream"}), data, 400, "invalid_argument"},
		{"patch at a wrong offset", "PATCH", up, at, patch("10", nil), data[10:], 409, upload.CodeOffset},
		{"patch with an overlong chunk", "PATCH", up, at, patch("0", nil), append(data, 'x'), 413, upload.CodeTooLarge},
		{"patch with a checksum mismatch", "PATCH", up, at, patch("0", map[string]string{"Upload-Checksum": uploadChecksum(data[1:])}), data, 460, "checksum_mismatch"},
		{"patch with an unsupported checksum", "PATCH", up, at, patch("0", map[string]string{"Upload-Checksum": "md5 " + b64("0123456789abcdef")}), data, 400, "invalid_argument"},
		{"patch with a malformed checksum", "PATCH", up, at, patch("0", map[string]string{"Upload-Checksum": "sha256 !!"}), data, 400, "invalid_argument"},
		{"patch an unknown upload", "PATCH", unknown, at, patch("0", nil), data, 404, "not_found"},
		{"patch with a foreign token", "PATCH", up, bt, patch("0", nil), data, 403, "forbidden"},
		{"head with a foreign token", "HEAD", up, bt, tus(nil), nil, 403, "forbidden"},
		{"delete with a foreign token", "DELETE", up, bt, tus(nil), nil, 403, "forbidden"},
		{"head an unknown upload", "HEAD", unknown, at, tus(nil), nil, 404, "not_found"},
		{"download a malformed id", "GET", "/files/nope", at, nil, nil, 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := httpDo(t, srv, tc.method, tc.path, tc.token, tc.hdr, tc.body)
			if res.StatusCode != tc.want || res.Header.Get("Parley-Error") != tc.code {
				t.Fatalf("got %s (%s) %q, want %d %s", res.Status, res.Header.Get("Parley-Error"), body, tc.want, tc.code)
			}
			if tc.method != "GET" && res.Header.Get("Tus-Resumable") != "1.0.0" {
				t.Fatal("no Tus-Resumable header")
			}
		})
	}
	// An overlong chunk without Content-Length (chunked transfer) too.
	req, _ := http.NewRequest(http.MethodPatch, "http://"+srv.Addr+up, io.MultiReader(bytes.NewReader(data), bytes.NewReader(data)))
	for k, v := range patch("0", nil) {
		req.Header.Set(k, v)
	}
	req.Header.Set("Authorization", "Bearer "+at)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("overlong chunked PATCH: %v %v", res, err)
	}
	// Nothing was accepted.
	head := func(path string) *http.Response {
		res, _ := httpDo(t, srv, http.MethodHead, path, at, tus(nil), nil)
		return res
	}
	if res := head(up); res.StatusCode != 200 || res.Header.Get("Upload-Offset") != "0" || res.Header.Get("Upload-Length") != "100" {
		t.Fatalf("after the refusals: %s offset %s", res.Status, res.Header.Get("Upload-Offset"))
	}
	// Good chunks, with a mismatching one between them.
	if res, _ := httpDo(t, srv, "PATCH", up, at, patch("0", map[string]string{"Upload-Checksum": uploadChecksum(data[:40])}), data[:40]); res.StatusCode != 204 || res.Header.Get("Upload-Offset") != "40" {
		t.Fatalf("first chunk: %s", res.Status)
	}
	if res, _ := httpDo(t, srv, "PATCH", up, at, patch("40", map[string]string{"Upload-Checksum": uploadChecksum(data[:60])}), data[40:]); res.StatusCode != 460 || res.Header.Get("Upload-Offset") != "40" {
		t.Fatalf("mismatching chunk: %s offset %s", res.Status, res.Header.Get("Upload-Offset"))
	}
	res, _ := httpDo(t, srv, "PATCH", up, at, patch("40", map[string]string{"Upload-Checksum": uploadChecksum(data[40:])}), data[40:])
	if res.StatusCode != 204 || res.Header.Get("Parley-File-Id") != sha(data) || res.Header.Get("Parley-Upload-State") != "done" {
		t.Fatalf("last chunk: %s %v", res.Status, res.Header)
	}
	if res, _ := httpDo(t, srv, "PATCH", up, at, patch("100", nil), []byte{}); res.StatusCode != 409 {
		t.Fatalf("patch after completion: %s", res.Status)
	}
	// Termination removes the upload and its bytes.
	term := create(10)
	if res, _ := httpDo(t, srv, "PATCH", term, at, patch("0", nil), []byte("12345")); res.StatusCode != 204 {
		t.Fatalf("patch: %s", res.Status)
	}
	if res, _ := httpDo(t, srv, "DELETE", term, at, tus(nil), nil); res.StatusCode != 204 {
		t.Fatalf("delete: %s", res.Status)
	}
	if res := head(term); res.StatusCode != 404 {
		t.Fatalf("head after delete: %s", res.Status)
	}
	tempFile := func(loc string) string { return srv.App.Node.Blobs().UploadPath(path.Base(loc)) }
	if _, err := os.Stat(tempFile(term)); !os.IsNotExist(err) {
		t.Fatalf("temp file of a terminated upload: %v", err)
	}
	// An abandoned upload expires: 410 once due, 404 and no bytes after the
	// sweep.
	idle := create(10)
	httpDo(t, srv, "PATCH", idle, at, patch("0", nil), []byte("123"))
	skew.Store(int64(25 * time.Hour))
	if res := head(idle); res.StatusCode != 410 || res.Header.Get("Parley-Error") != upload.CodeGone {
		t.Fatalf("head of an expired upload: %s", res.Status)
	}
	if res, _ := httpDo(t, srv, "PATCH", idle, at, patch("3", nil), []byte("4567")); res.StatusCode != 410 {
		t.Fatalf("patch of an expired upload: %s", res.Status)
	}
	if err := srv.App.Node.SweepUploads(); err != nil {
		t.Fatal(err)
	}
	if res := head(idle); res.StatusCode != 404 {
		t.Fatalf("head after the sweep: %s", res.Status)
	}
	if _, err := os.Stat(tempFile(idle)); !os.IsNotExist(err) {
		t.Fatalf("temp file of an expired upload: %v", err)
	}
	// An upload whose received bytes are gone (a cluster node that held
	// them died) is refused with its own code, not a retryable 500.
	lost := create(10)
	httpDo(t, srv, "PATCH", lost, at, patch("0", nil), []byte("123"))
	if err := os.Remove(tempFile(lost)); err != nil {
		t.Fatal(err)
	}
	if res, _ := httpDo(t, srv, "PATCH", lost, at, patch("3", nil), []byte("4567")); res.StatusCode != 410 || res.Header.Get("Parley-Error") != upload.CodeLost {
		t.Fatalf("patch of an upload whose bytes are gone: %s %s", res.Status, res.Header.Get("Parley-Error"))
	}
	// The one blob is the good upload, intact.
	var blobs []string
	srv.App.Node.Blobs().List(func(h string) { blobs = append(blobs, h) })
	if len(blobs) != 1 || blobs[0] != sha(data) {
		t.Fatalf("blobs %v, want only %s", blobs, sha(data))
	}
	f, _ := srv.App.Node.Blobs().Open(blobs[0])
	d, err := persistence.HashReader(f, persistence.DefaultPieceSize)
	f.Close()
	if err != nil || d.SHA256 != blobs[0] {
		t.Fatalf("blob content %s: %v", d.SHA256, err)
	}
	_, got := httpDo(t, srv, "GET", "/files/"+sha(data), at, nil, nil)
	if !bytes.Equal(got, data) {
		t.Fatal("downloaded bytes differ")
	}
}
