package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/parley-chat/parley/bench/baseline"
	"github.com/parley-chat/parley/bench/internal/control"
)

// TestWorkerAgainstBaseline drives a worker over its stdin/stdout protocol
// against the in-process baseline server: links log in, a group is made,
// a publisher runs, and every member receives what was acknowledged.
func TestWorkerAgainstBaseline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = baseline.New().Serve(ctx, ln) }()

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{URL: "ws://" + ln.Addr().String() + "/ws"}, inR, outW) }()
	replies := bufio.NewScanner(outR)
	do := func(cmd control.Command) *control.Reply {
		t.Helper()
		b, _ := json.Marshal(cmd)
		if _, err := inW.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
		if !replies.Scan() {
			t.Fatalf("%s: no reply", cmd.Op)
		}
		var r control.Reply
		if err := json.Unmarshal(replies.Bytes(), &r); err != nil || r.Err != "" {
			t.Fatalf("%s: %v %s", cmd.Op, err, r.Err)
		}
		return &r
	}

	const n = 20
	var accts []control.Account
	for i := range n {
		accts = append(accts, control.Account{Username: fmt.Sprintf("u%d", i), Password: "password", Device: fmt.Sprintf("d%d", i)})
	}
	if r := do(control.Command{Op: control.OpConnect, Accounts: accts, Concurrency: 8}); r.Connected != n {
		t.Fatalf("connected %d: %v", r.Connected, r.Failures)
	}
	r := do(control.Command{Op: control.OpCreate, Groups: []control.Group{{Conn: 0, Title: "t"}}})
	do(control.Command{Op: control.OpPublish, Publishers: []control.Publisher{{Conn: 0, Conv: r.Convs[0], ID: 1, Depth: 8, Pace: control.PaceEcho, Size: 32}}})
	time.Sleep(300 * time.Millisecond)
	do(control.Command{Op: control.OpStop})
	// Up to Depth sends are in flight at the stop: wait until their acks,
	// deliveries and latencies are all counted (the counters move one
	// after the other, so a snapshot between them is not settled).
	var s *control.Stats
	for range 50 {
		s = do(control.Command{Op: control.OpStats}).Stats
		if s.Acked > 0 && s.Sent == s.Acked && s.Delivered == s.Acked*n && s.Latency.Count == s.Delivered {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s.Created != n || s.Acked == 0 || s.Delivered != s.Acked*n || s.Latency.Count != s.Delivered {
		t.Fatalf("stats: %+v", s)
	}
	if len(s.Errors) > 0 || len(s.Closes) > 0 || s.Open != n {
		t.Fatalf("errors %v closes %v open %d", s.Errors, s.Closes, s.Open)
	}
	do(control.Command{Op: control.OpExit})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
