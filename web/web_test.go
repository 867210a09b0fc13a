package web_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/gateway/gatewaytest"
	"github.com/parley-chat/parley/web"
)

const installHelp = `the browser tests need Node.js, Debian's chromium and playwright-core:
    apt-get install -y nodejs npm chromium
    make web-deps          # (cd web/test && npm ci); never downloads a browser
(.ci/run installs all of them)`

func TestHandlerServesFiles(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		path, ctype, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="/js/main.js">`},
		{"/index.html", "text/html; charset=utf-8", "<title>Parley</title>"},
		{"/js/main.js", "text/javascript; charset=utf-8", "import"},
		{"/js/ui/conversation.js", "text/javascript; charset=utf-8", "export class ConversationView"},
		{"/css/app.css", "text/css; charset=utf-8", ":root"},
		{"/icon.svg", "image/svg+xml", "<svg"},
	} {
		res, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != tc.ctype || !strings.Contains(string(body), tc.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", tc.path, res.StatusCode, res.Header.Get("Content-Type"), tc.contains, strings.Contains(string(body), tc.contains))
		}
		if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q", tc.path, cc)
		}
		// Revalidation is a cheap 304.
		req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
		req.Header.Set("If-None-Match", res.Header.Get("ETag"))
		res2, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res2.Body.Close()
		if res2.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", tc.path, res2.StatusCode)
		}
	}
	for _, p := range []string{"/nope", "/js/", "/test/e2e.mjs", "/web.go", "/js/../web.go"} {
		res, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, res.StatusCode)
		}
	}
	res, err := http.Post(srv.URL+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", res.StatusCode)
	}
}

// TestAppServesClient checks the client is mounted at "/" of a real server
// next to /healthz and /ws.
func TestAppServesClient(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	for path, want := range map[string]int{"/": 200, "/js/store.js": 200, "/healthz": 200, "/missing": 404} {
		res, err := http.Get("http://" + srv.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, res.StatusCode, want)
		}
	}
}

// browserDeps finds node, chromium and playwright-core, or fails the test
// with how to install them (the browser tests are part of make test).
func browserDeps(t *testing.T) string {
	t.Helper()
	node := nodePath(t)
	chromium := os.Getenv("PARLEY_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium not found: %v\n%s", err, installHelp)
	}
	if _, err := os.Stat(filepath.Join("test", "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatalf("playwright-core is not installed in web/test/node_modules: %v\n%s", err, installHelp)
	}
	return node
}

func nodePath(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: %v\n%s", err, installHelp)
	}
	return node
}

func runNode(t *testing.T, node string, timeout time.Duration, args ...string) {
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
}

// TestStoreUnit runs the unit tests of the client's merge rule and outbox
// (web/test/store.test.mjs) with node's test runner.
func TestStoreUnit(t *testing.T) {
	runNode(t, nodePath(t), 2*time.Minute, "--test", "test/store.test.mjs")
}

// TestBrowser drives the client in headless Chromium against a real server
// (real Pebble in a temp dir): group chat between two browser contexts, a
// user who closes the browser and comes back, a network cut, screenshots.
func TestBrowser(t *testing.T) {
	node := browserDeps(t)
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	artifacts := os.Getenv("PARLEY_WEB_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(os.TempDir(), "parley-web-artifacts")
	}
	if err := os.RemoveAll(artifacts); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots go to %s", artifacts)
	runNode(t, node, 5*time.Minute, "test/e2e.mjs", "http://"+srv.Addr+"/", artifacts)
	shots, _ := filepath.Glob(filepath.Join(artifacts, "*.png"))
	if len(shots) < 10 {
		t.Fatalf("expected at least 10 screenshots in %s, found %d", artifacts, len(shots))
	}
	t.Logf("%d screenshots in %s", len(shots), artifacts)
}
