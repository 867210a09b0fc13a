package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// server is a server child process (Parley or the baseline) listening on
// 127.0.0.1 at a port it chose; its stderr goes to a log file and its
// WARN/ERROR lines are counted.
type server struct {
	name    string
	cmd     *exec.Cmd
	addr    string
	logPath string
	exited  chan struct{}
	waitErr error
	// pprof is the server's pprof address, if it logged one.
	pprof atomic.Pointer[string]

	mu     sync.Mutex
	warns  int
	errs   int
	issues []string
}

// maxIssues is how many WARN/ERROR lines a report quotes.
const maxIssues = 8

// startParley starts `parley serve` on a fresh port with cheap argon2 and a
// rate limit high enough never to refuse the bench's load.
func startParley(bin, dataDir, logPath string, noSync bool, extra ...string) (*server, error) {
	args := []string{"serve",
		"-addr", "127.0.0.1:0", "-data", dataDir, "-log-level", "info",
		"-argon-memory-kib", "64", "-argon-time", "1",
		"-rate", "1000000000", "-rate-burst", "1000000000",
		// Links sit idle between phases; set-up of 10k links can queue.
		"-idle-timeout", "10m", "-auth-timeout", "60s",
	}
	if noSync {
		args = append(args, "-unsafe-no-sync")
	}
	args = append(args, extra...)
	return startServer("parley", bin, args, logPath)
}

// startBaseline starts this binary in -baseline mode.
func startBaseline(self, logPath string) (*server, error) {
	return startServer("baseline", self, []string{"-baseline", "-addr", "127.0.0.1:0"}, logPath)
}

func startServer(name, bin string, args []string, logPath string) (*server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	s := &server{name: name, logPath: logPath, exited: make(chan struct{})}
	if name == "parley" && pprofAddr != "" {
		args = append(args[:len(args):len(args)], "-pprof-addr", pprofAddr)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = cleanEnv()
	s.cmd.SysProcAttr = childAttr()
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ready := make(chan string, 1)
	go s.readLog(stderr, logf, ready)
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	select {
	case s.addr = <-ready:
	case <-s.exited:
		return nil, fmt.Errorf("%s exited before serving (%v); log: %s", name, s.waitErr, logPath)
	case <-time.After(60 * time.Second):
		s.kill()
		return nil, fmt.Errorf("%s did not start within 60s; log: %s", name, logPath)
	}
	if err := s.waitHealthy(); err != nil {
		s.kill()
		return nil, err
	}
	return s, nil
}

// pprofAddr, if set (-pprof), is passed to Parley servers as -pprof-addr
// (net/http/pprof on its own listener).
var pprofAddr string

// profile fetches a CPU profile of d from the server's pprof endpoint into
// path, in the background; the returned function waits for it and reports
// the outcome. Without -pprof it does nothing.
func (h *harness) profile(name string, d time.Duration) func() {
	if pprofAddr == "" {
		return func() {}
	}
	path := filepath.Join(h.tmp, name+".pprof")
	// Allocation snapshots bracket the window: go tool pprof -diff_base
	// NAME.allocs0 NAME.allocs1 shows what the window allocated.
	h.saveAllocs(filepath.Join(h.tmp, name+".allocs0"))
	done := make(chan error, 1)
	go func() {
		c := http.Client{Timeout: d + 30*time.Second}
		resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, int(d.Round(time.Second)/time.Second)))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("pprof: %s", resp.Status)
			return
		}
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	return func() {
		h.saveAllocs(filepath.Join(h.tmp, name+".allocs1"))
		if err := <-done; err != nil {
			h.printf("  profile %s: %v\n", name, err)
			return
		}
		h.printf("  server CPU profile (%s): %s (allocations: .allocs0/.allocs1)\n", d, path)
	}
}

// saveAllocs writes the server's cumulative allocation profile to path.
func (h *harness) saveAllocs(path string) {
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/allocs", pprofAddr))
	if err != nil {
		h.printf("  allocation profile: %v\n", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		h.printf("  allocation profile: %v\n", err)
		return
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		h.printf("  allocation profile: %v\n", err)
	}
	f.Close()
}

// cleanEnv drops PARLEY_* variables: the bench sets every flag it needs.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			env = append(env, kv)
		}
	}
	return env
}

// readLog copies stderr to the log file, reports the address of the
// "... serving ... addr=HOST:PORT" line and counts warnings and errors.
func (s *server) readLog(r io.Reader, logf *os.File, ready chan<- string) {
	defer logf.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	announced := false
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(logf, line)
		if !announced && strings.Contains(line, "serving") {
			if addr := field(line, "addr="); addr != "" {
				announced = true
				ready <- addr
			}
		}
		if strings.Contains(line, "pprof listening") {
			if addr := field(line, "pprof="); addr != "" {
				s.pprof.Store(&addr)
			}
		}
		isWarn, isErr := strings.Contains(line, "level=WARN"), strings.Contains(line, "level=ERROR")
		if !isWarn && !isErr {
			continue
		}
		s.mu.Lock()
		if isWarn {
			s.warns++
		} else {
			s.errs++
		}
		if len(s.issues) < maxIssues {
			if len(line) > 300 {
				line = line[:300] + "…"
			}
			s.issues = append(s.issues, line)
		}
		s.mu.Unlock()
	}
}

// field returns the value after key in a logfmt line.
func field(line, key string) string {
	i := strings.Index(line, key)
	if i < 0 {
		return ""
	}
	v := line[i+len(key):]
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return strings.Trim(v, `"`)
}

func (s *server) waitHealthy() error {
	c := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get("http://" + s.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s at %s not healthy within 30s", s.name, s.addr)
}

// url is the WebSocket endpoint.
func (s *server) url() string { return "ws://" + s.addr + "/ws" }

func (s *server) pid() int { return s.cmd.Process.Pid }

// alive reports whether the process is still running.
func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// logSummary is the count of WARN and ERROR lines and the first of them.
func (s *server) logSummary() (warns, errs int, issues []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.warns, s.errs, append([]string(nil), s.issues...)
}

// stop sends SIGTERM (ordered shutdown) and kills after 30s.
func (s *server) stop() error {
	if !s.alive() {
		return s.exitError()
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.exitError()
	case <-time.After(30 * time.Second):
		s.kill()
		return fmt.Errorf("%s did not stop within 30s of SIGTERM; killed", s.name)
	}
}

func (s *server) exitError() error {
	var ee *exec.ExitError
	if errors.As(s.waitErr, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() {
		return nil
	}
	return s.waitErr
}

func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// buildParley builds ./cmd/parley into dir with `go build`.
func buildParley(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "parley")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/parley-chat/parley/cmd/parley")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/parley (run from the module, or pass -server): %w", err)
	}
	return out, nil
}
