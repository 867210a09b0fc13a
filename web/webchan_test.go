package web_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/conversation"
	"github.com/parley-chat/parley/gateway/gatewaytest"
)

// This file sorts after web_test.go, so TestBrowser (which empties the
// artifacts folder) runs first and the channel screenshots stay next to
// the others.

// TestChannelsUnit runs the unit tests of the channel state (presence,
// events, the in-memory log, invitations): web/test/channels.test.mjs.
func TestChannelsUnit(t *testing.T) {
	runNode(t, nodePath(t), 2*time.Minute, "--test", "test/channels.test.mjs")
}

// TestBrowserChannels drives the channel and import screens in headless
// Chromium against a real server whose import limit is 2 per hour, so the
// third import shows the rate-limit error with its retry time.
func TestBrowserChannels(t *testing.T) {
	node := browserDeps(t)
	srv := gatewaytest.Start(t, gatewaytest.Options{Actors: actors.Options{Limits: conversation.Limits{ImportLimit: 2}}})
	artifacts := os.Getenv("PARLEY_WEB_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(os.TempDir(), "parley-web-artifacts")
	}
	old, _ := filepath.Glob(filepath.Join(artifacts, "ch-*.png"))
	for _, f := range old {
		os.Remove(f)
	}
	t.Logf("screenshots go to %s", artifacts)
	runNode(t, node, 5*time.Minute, "test/channels.e2e.mjs", "http://"+srv.Addr+"/", artifacts)
	shots, _ := filepath.Glob(filepath.Join(artifacts, "ch-*.png"))
	if len(shots) < 13 {
		t.Fatalf("expected 13 channel screenshots in %s, found %d", artifacts, len(shots))
	}
}
