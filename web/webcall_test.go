package web_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	out := runNodeOutput(t, node, 6*time.Minute, "test/calls.mjs", "http://"+srv.Addr+"/", artifacts)
	// Count the screenshots this run wrote (the node script fails if one
	// cannot be written): other test runs on the machine may share and
	// clear the artifacts directory meanwhile.
	if n := strings.Count(out, "[calls] screenshot "); n < 10 {
		t.Fatalf("expected at least 10 call screenshots, the script wrote %d", n)
	}
	t.Logf("call screenshots (call-*.png) in %s", artifacts)
}

// runNodeOutput is runNode returning node's output.
func runNodeOutput(t *testing.T, node string, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("node %s:\n%s", strings.Join(args, " "), out)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("node %s: timed out after %s", args[0], timeout)
	}
	if err != nil {
		t.Fatalf("node %s: %v", args[0], err)
	}
	return string(out)
}
