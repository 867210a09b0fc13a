package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// TestMain lets the test binary act as the server: with PARLEY_CHILD set it
// runs main() with the arguments after "--".
func TestMain(m *testing.M) {
	if os.Getenv("PARLEY_CHILD") == "1" {
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{"parley"}, os.Args[i+1:]...)
				break
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// freeAddr returns a 127.0.0.1 address that is free now, for a child.
// The port is below the kernel's ephemeral range (32768-60999 on Linux by
// default): a port found by listening on :0 and closing could be taken,
// before the child binds it, as the source port of any outgoing
// connection or by another :0 bind (a CI run failed on that: "bind:
// address already in use" for a cluster node's raft port). A port is
// handed out once per test process: it is free only until its user binds
// it, and a second freeAddr before that found it free again (a CI run
// failed so: a partition test's proxy took a node's raft port before the
// node started).
func freeAddr(t *testing.T) string {
	t.Helper()
	givenPorts.mu.Lock()
	defer givenPorts.mu.Unlock()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		if givenPorts.m[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			addr := ln.Addr().String()
			ln.Close()
			givenPorts.m[port] = true
			return addr
		}
	}
	t.Fatal("no free port in 20000-31999")
	return ""
}

// givenPorts are the ports freeAddr handed out.
var givenPorts = struct {
	mu sync.Mutex
	m  map[int]bool
}{m: map[int]bool{}}

// startChild runs `parley serve` as a child process and waits until healthy.
func startChild(t *testing.T, addr, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "--", "serve", "-addr", addr, "-data", dir,
		"-argon-memory-kib", "64", "-argon-time", "1", "-log-level", "warn")
	cmd.Env = append(os.Environ(), "PARLEY_CHILD=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get("http://" + addr + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return cmd
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	t.Fatal("server did not become healthy")
	return nil
}

// TestSIGKILLRestart kills a real server process mid-stream and restarts it
// on the same data directory: every acknowledged message is in the history,
// in order, and new sends continue the seq.
func TestSIGKILLRestart(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	srv := startChild(t, addr, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := "ws://" + addr + "/ws"
	dev := &pb.Device{Id: "k1", Type: pb.DeviceType_DEVICE_TYPE_BOT}
	c, err := client.Dial(ctx, client.Options{URL: url, Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx, "killer", "password-killer", ""); err != nil {
		t.Fatal(err)
	}
	li, err := c.Login(ctx, "killer", "password-killer")
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.CreateGroup(ctx, "survivors")
	if err != nil {
		t.Fatal(err)
	}
	acked := map[int64]string{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			text := fmt.Sprintf("m%d", i)
			s, err := c.Send(ctx, g.Id, text)
			if err != nil {
				return // the server died
			}
			acked[s.Seq] = text
		}
	}()
	time.Sleep(700 * time.Millisecond)
	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.Wait()
	<-done
	if len(acked) == 0 {
		t.Fatal("nothing acknowledged before the kill")
	}

	srv = startChild(t, addr, dir)
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
	c2, err := client.Dial(ctx, client.Options{URL: url, Device: dev, Token: li.Token})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	var last int64
	texts := map[int64]string{}
	for {
		page, err := c2.History(ctx, g.Id, last, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Messages {
			if m.Seq != last+1 {
				t.Fatalf("gap: seq %d after %d", m.Seq, last)
			}
			last = m.Seq
			texts[m.Seq] = m.Text
		}
		if len(page.Messages) == 0 {
			break
		}
	}
	for seq, text := range acked {
		if texts[seq] != text {
			t.Fatalf("acknowledged seq %d %q: after restart %q", seq, text, texts[seq])
		}
	}
	s, err := c2.Send(ctx, g.Id, "after")
	if err != nil || s.Seq != last+1 {
		t.Fatalf("send after restart: %v %v (log ends at %d)", s, err, last)
	}
	t.Logf("%d acknowledged before SIGKILL, log of %d after restart", len(acked), last)
}
