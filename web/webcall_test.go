package web_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley/gateway/gatewaytest"
)

// TestCallDeviceUnit runs the browser's call device machine
// (web/js/calldevice.js) against the Go machine's transcripts
// (actors/call/testdata/device) under node's test runner.
func TestCallDeviceUnit(t *testing.T) {
	runNode(t, nodePath(t), 2*time.Minute, "--test", "test/calls.test.mjs")
}

// TestBrowserCalls drives a group call between three headless Chromium
// contexts with fake microphones against a real server, whose SFU listens
// on loopback (web/test/calls.mjs): ringing on every device, accept,
// answered elsewhere, audio from each to the two others checked with
// getStats() (packets, energy, and the inbound SSRCs of each tab equal to
// the outbound SSRCs of the others), mute, a network cut with a session
// rebuild, a fresh session, a reload and rejoin, hang-ups, a declined and a
// cancelled direct call. Screenshots of the call screen go to the artifacts
// directory of TestBrowser (call-*.png). This file sorts after web_test.go,
// so it runs after TestBrowser, which empties that directory first.
func TestBrowserCalls(t *testing.T) {
	node := browserDeps(t)
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	if ep := srv.App.Media.Endpoint(); ep == nil || ep.UdpAddr == "" {
		t.Fatalf("the test server has no SFU endpoint: %v", ep)
	} else {
		t.Logf("SFU on %s", ep.UdpAddr)
	}
	artifacts := os.Getenv("PARLEY_WEB_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(os.TempDir(), "parley-web-artifacts")
	}
	old, _ := filepath.Glob(filepath.Join(artifacts, "call-*.png"))
	for _, f := range old {
		os.Remove(f)
	}
	runNode(t, node, 6*time.Minute, "test/calls.mjs", "http://"+srv.Addr+"/", artifacts)
	shots, _ := filepath.Glob(filepath.Join(artifacts, "call-*.png"))
	if len(shots) < 10 {
		t.Fatalf("expected at least 10 call screenshots in %s, found %d", artifacts, len(shots))
	}
	t.Logf("%d call screenshots in %s", len(shots), artifacts)
}
