package gateway_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
)

// An upload's durable offset survives a server restart, the upload resumes
// on the new process, and the start-up sweep removes what a crash can leave
// behind: temp files without an upload record and blobs no file record
// stores.
func TestFileUploadSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	srv := gatewaytest.Start(t, gatewaytest.Options{DataDir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, login := srv.User(t, "alice", "a1")
	g, err := alice.CreateGroup(ctx, "restart")
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 3<<20)
	var url string
	cut, stop := context.WithCancel(ctx)
	_, err = alice.Upload(cut, bytes.NewReader(data), int64(len(data)), client.UploadOptions{
		Conversation: g.Id, Name: "r.bin", ChunkSize: 1 << 20,
		OnCreate: func(u string) { url = u },
		Progress: func(done, _ int64) {
			// Progress counts bytes read from the body: past the first
			// chunk means the first PATCH was answered (its offset stored).
			if done >= 3<<19 {
				stop()
			}
		},
	})
	if err == nil {
		t.Fatal("the cut upload finished")
	}
	// What a crash can leave: a temp file without a record, a blob without
	// a record.
	orphanTemp := filepath.Join(dir, "uploads", "up-orphan")
	orphanBlob := filepath.Join(dir, "blobs", "ab", strings.Repeat("c", 62))
	os.WriteFile(orphanTemp, []byte("x"), 0o644)
	os.MkdirAll(filepath.Dir(orphanBlob), 0o755)
	os.WriteFile(orphanBlob, []byte("y"), 0o644)
	alice.Close()
	srv.Stop()

	srv2 := gatewaytest.Start(t, gatewaytest.Options{DataDir: dir})
	for _, p := range []string{orphanTemp, orphanBlob} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s survived the start-up sweep: %v", p, err)
		}
	}
	url = strings.Replace(url, srv.Addr, srv2.Addr, 1)
	res, _ := httpDo(t, srv2, http.MethodHead, url, login.Token, map[string]string{"Tus-Resumable": "1.0.0"}, nil)
	if res.StatusCode != 200 || res.Header.Get("Upload-Offset") == "0" {
		t.Fatalf("after restart: %s offset %s", res.Status, res.Header.Get("Upload-Offset"))
	}
	alice2 := srv2.Dial(t, "a1", login.Token, nil)
	up, err := alice2.Upload(ctx, bytes.NewReader(data), int64(len(data)), client.UploadOptions{Conversation: g.Id, URL: url})
	if err != nil {
		t.Fatalf("resume after restart: %v", err)
	}
	var buf bytes.Buffer
	if _, err := alice2.Download(ctx, up.FileID, &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("download after restart: %v", err)
	}
}
