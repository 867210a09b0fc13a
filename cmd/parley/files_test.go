package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// send-file and get-file against a real server, and the same through chat.
func TestSendFileGetFile(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, _ := srv.User(t, "alice", "a1")
	bob, _ := srv.User(t, "bob", "b1")
	g, err := alice.CreateGroup(ctx, "cli", bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := make([]byte, 3<<20+5)
	rand.Read(data)
	src := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	id := hex.EncodeToString(sum[:])
	if err := sendFile([]string{"-addr", srv.Addr, "-user", "alice", "-password", "password-alice", "-conv", g.Id, src}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "got.txt")
	if err := getFile([]string{"-addr", srv.Addr, "-user", "bob", "-password", "password-bob", "-o", out, id}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatal("get-file wrote other bytes")
	}
	if err := getFile([]string{"-addr", srv.Addr, "-user", "alice", "-password", "password-alice", "-o", out, strings.Repeat("0", 64)}); err == nil {
		t.Fatal("get-file of a missing file succeeded")
	}
	// P2SP (the default) with a seed online: peers only; and -http-only.
	seed, err := client.Dial(ctx, client.Options{URL: srv.URL, Device: &pb.Device{Id: "a2"}, Peers: client.PeerOptions{Loopback: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Close()
	if _, err := seed.Login(ctx, "alice", "password-alice"); err != nil {
		t.Fatal(err)
	}
	if err := seed.Seed(ctx, id, src); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(dir, "p2sp.txt")
	if err := getFile([]string{"-addr", srv.Addr, "-user", "bob", "-password", "password-bob", "-peer-loopback", "-cache", t.TempDir(), "-o", out2, id}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out2); !bytes.Equal(got, data) {
		t.Fatal("get-file (P2SP) wrote other bytes")
	}
	// Both get-files so far were P2SP downloads, reported complete.
	if st, err := srv.App.Node.FileStats(id); err != nil || st.Completed != 2 {
		t.Fatalf("stats after a P2SP get-file: %v %v", st, err)
	}
	out3 := filepath.Join(dir, "http.txt")
	if err := getFile([]string{"-addr", srv.Addr, "-user", "bob", "-password", "password-bob", "-http-only", "-o", out3, id}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out3); !bytes.Equal(got, data) {
		t.Fatal("get-file -http-only wrote other bytes")
	}

	// In chat: /send-file shows the file message, /get-file saves it.
	cr := startChat(t, chatOptions{Addr: srv.Addr, User: "bob", Password: "password-bob", Device: "bob-chat"})
	cr.out.waitFor(t, "logged in as bob")
	cr.say("/open " + g.Id)
	cr.out.waitFor(t, "[file] notes.txt (text/plain; charset=utf-8, 3145733 bytes) /get-file "+id)
	small := filepath.Join(dir, "small.bin")
	os.WriteFile(small, []byte("hello file"), 0o644)
	cr.say("/send-file " + small)
	cr.out.waitFor(t, "* sent "+small+" as file ")
	cr.out.waitFor(t, "[file] small.bin (application/octet-stream, 10 bytes)")
	saved := filepath.Join(dir, "saved.txt")
	cr.say("/get-file " + id + " " + saved)
	cr.out.waitFor(t, "* saved "+saved+" (3145733 bytes, sha256 verified)")
}

func TestRenderSources(t *testing.T) {
	lines := renderSources(client.P2SPProgress{Done: 3 << 20, Total: 4 << 20, Sources: []client.SourceProgress{
		{Name: "server", Bytes: 1 << 20, Pieces: 4, State: "active"},
		{Name: "peer uabcdefghijklmnop/s0123456789", Peer: true, Bytes: 2 << 20, Pieces: 8, State: "active"},
		{Name: "peer ubad/s9", Peer: true, Bad: 1, State: "reported"},
	}}, 2*time.Second)
	got := strings.Join(lines, "\n")
	for _, want := range []string{"download [", " 75%", "server", "1.0 MiB", "peer uabcdefgh/s012345", "2.0 MiB", "8 pieces", "1 bad pieces (reported)"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}
