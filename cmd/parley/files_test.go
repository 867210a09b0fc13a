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

	"github.com/parley-chat/parley/gateway/gatewaytest"
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
