package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley/gateway/gatewaytest"
)

// tusjsDir holds the tus-js-client script and its pinned dependencies.
const tusjsDir = "testdata/tusjs"

// A real third-party client: the npm tus-js-client, run by node, uploads
// into Parley (cut after its first chunk and resumed by a second client
// from the server's offset); the Go SDK downloads the same bytes.
func TestTusJSClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed; this test needs it: apt-get install -y nodejs npm && (cd gateway/%s && npm ci)", tusjsDir)
	}
	if _, err := os.Stat(filepath.Join(tusjsDir, "node_modules", "tus-js-client")); err != nil {
		t.Fatalf("tus-js-client is not installed; run: (cd gateway/%s && npm ci)", tusjsDir)
	}
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, aliceLogin := srv.User(t, "alice", "a1")
	bob, _ := srv.User(t, "bob", "b1")
	g, err := alice.CreateGroup(ctx, "tus", bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 3<<20+1234)
	path := filepath.Join(t.TempDir(), "tus.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, node, "upload.js", "http://"+srv.Addr+"/files/uploads/", aliceLogin.Token, g.Id, path)
	cmd.Dir = tusjsDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node upload.js: %v\n%s", err, stderr.String())
	}
	var res struct {
		URL       string `json:"url"`
		FileID    string `json:"fileId"`
		ResumedAt int64  `json:"resumedAt"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	t.Logf("tus-js-client: %+v", res)
	if res.FileID != sha(data) {
		t.Fatalf("file id %q, want %s", res.FileID, sha(data))
	}
	if res.ResumedAt != 1<<20 {
		t.Fatalf("the second client resumed at %d, want the first chunk's end %d", res.ResumedAt, 1<<20)
	}
	m := fileMessage(t, ctx, bob, g.Id, res.FileID)
	if m.File.Name != "tus.bin" || m.File.Mime != "application/x-tus-test" || m.Sender != alice.UserID() {
		t.Fatalf("file message %v", m)
	}
	var buf bytes.Buffer
	if _, err := bob.Download(ctx, res.FileID, &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("SDK download of the tus-js upload: %v", err)
	}
}
