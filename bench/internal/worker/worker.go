// Package worker is a bench client process: it holds thousands of raw
// WebSocket links to a Parley (or baseline) server, speaks the JSON
// protocol directly, and obeys the orchestrator's commands (package
// control) read line by line from stdin, answering each on stdout.
package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/bench/internal/control"
	"github.com/parley-chat/parley/bench/internal/histogram"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// Config configures a worker.
type Config struct {
	// URL is the server's WebSocket URL (ws://127.0.0.1:port/ws).
	URL string
	// Source is the local address links are opened from (nil: any).
	Source net.IP
}

// Worker is one client process's state.
type Worker struct {
	cfg   Config
	conns []*conn
	pubs  []*publisher

	open          atomic.Int64
	delivered     atomic.Uint64
	created       atomic.Uint64
	otherEvents   atomic.Uint64
	sentCount     atomic.Uint64
	acked         atomic.Uint64
	dups          atomic.Uint64
	gaps          atomic.Uint64
	sessionDups   atomic.Uint64
	sessionGaps   atomic.Uint64
	channelEvents atomic.Uint64
	latency       histogram.Histogram
	ackLatency    histogram.Histogram

	mu     sync.Mutex
	errors map[string]uint64
	closes map[string]uint64
}

// Run serves commands from in until OpExit or the end of in.
func Run(ctx context.Context, cfg Config, in io.Reader, out io.Writer) error {
	w := &Worker{cfg: cfg, errors: map[string]uint64{}, closes: map[string]uint64{}}
	defer w.closeAll()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var cmd control.Command
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			return fmt.Errorf("worker: bad command: %w", err)
		}
		r := w.handle(ctx, &cmd)
		r.Op = cmd.Op
		if err := enc.Encode(r); err != nil {
			return err
		}
		if cmd.Op == control.OpExit {
			return nil
		}
	}
	return sc.Err()
}

func (w *Worker) handle(ctx context.Context, cmd *control.Command) *control.Reply {
	switch cmd.Op {
	case control.OpConnect:
		return w.connect(ctx, cmd.Accounts, cmd.Concurrency, cmd.Rebuild)
	case control.OpCreate:
		return w.create(ctx, cmd.Groups)
	case control.OpPublish:
		return w.publish(cmd.Publishers)
	case control.OpStop:
		w.stopPublishers()
		return &control.Reply{}
	case control.OpReset:
		w.latency.Reset()
		w.ackLatency.Reset()
		return &control.Reply{}
	case control.OpStats:
		return &control.Reply{Stats: w.stats()}
	case control.OpExit:
		w.closeAll()
		return &control.Reply{}
	case control.OpSend:
		return w.send(ctx, cmd.Sends, cmd.Depth)
	case control.OpExpect:
		return w.expectAll(cmd.Expect, time.Duration(cmd.Timeout))
	case control.OpCut:
		return w.cutLinks(cmd.Links)
	case control.OpRebuild:
		return w.rebuild(ctx, cmd.Expect, time.Duration(cmd.Jitter), time.Duration(cmd.Timeout), cmd.Plain)
	case control.OpChannel:
		return w.createChannel(ctx, cmd.Conn, cmd.Title, cmd.Members)
	case control.OpJoin:
		return w.join(ctx, cmd.Channel, cmd.Concurrency)
	}
	return &control.Reply{Err: "unknown op " + cmd.Op}
}

// count adds one to a counter of a map guarded by w.mu.
func (w *Worker) count(m *map[string]uint64, key string) {
	if key == "" {
		key = "unknown"
	}
	w.mu.Lock()
	(*m)[key]++
	w.mu.Unlock()
}

// connect opens and logs in one link per account, concurrency at a time.
func (w *Worker) connect(ctx context.Context, accounts []control.Account, concurrency int, track bool) *control.Reply {
	if concurrency < 1 {
		concurrency = 64
	}
	r := &control.Reply{Failures: map[string]int{}, UserIDs: make([]string, len(accounts))}
	conns := make([]*conn, len(accounts))
	var setup histogram.Histogram
	var mu sync.Mutex
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, a := range accounts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			start := time.Now()
			c, uid, err := w.open1(ctx, a, track)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.Failures[reason(err)]++
				return
			}
			setup.Record(time.Since(start))
			conns[i], r.UserIDs[i] = c, uid
			r.Connected++
		}()
	}
	wg.Wait()
	// Indexes in later commands refer to this call's accounts.
	w.conns = conns
	r.Setup = setup.Snapshot()
	return r
}

func (w *Worker) open1(ctx context.Context, a control.Account, track bool) (*conn, string, error) {
	c, err := w.dial()
	if err != nil {
		return nil, "", err
	}
	uid, err := c.login(ctx, a, track)
	if err != nil {
		c.close()
		return nil, "", err
	}
	return c, uid, nil
}

// reason shortens an error to a countable reason.
func reason(err error) string {
	s := err.Error()
	if i := strings.Index(s, "127.0.0."); i > 0 {
		// Drop addresses: "dial: dial tcp 127.0.0.2:0->...: connect: ..."
		if j := strings.LastIndex(s, ": "); j > i {
			return s[:i] + "…" + s[j:]
		}
	}
	return s
}

// create creates groups, 16 at a time.
func (w *Worker) create(ctx context.Context, groups []control.Group) *control.Reply {
	r := &control.Reply{Convs: make([]string, len(groups))}
	var mu sync.Mutex
	var errs []string
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, g := range groups {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c := w.link(g.Conn)
			if c == nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("group %d: link %d is not open", i, g.Conn))
				mu.Unlock()
				return
			}
			res, err := c.call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_CreateGroup{CreateGroup: &pb.CreateGroup{Title: g.Title, Members: g.Members}}})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Sprintf("group %d: %v", i, err))
				return
			}
			r.Convs[i] = res.GetConversation().GetId()
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		r.Err = fmt.Sprintf("%d of %d groups failed; first: %s", len(errs), len(groups), errs[0])
	}
	return r
}

func (w *Worker) link(i int) *conn {
	if i < 0 || i >= len(w.conns) {
		return nil
	}
	return w.conns[i]
}

func (w *Worker) publish(specs []control.Publisher) *control.Reply {
	for _, s := range specs {
		c := w.link(s.Conn)
		if c == nil {
			return &control.Reply{Err: fmt.Sprintf("publisher %d: link %d is not open", s.ID, s.Conn)}
		}
		p := newPublisher(c, s)
		c.pub.Store(p)
		w.pubs = append(w.pubs, p)
		go p.run()
	}
	return &control.Reply{}
}

func (w *Worker) stopPublishers() {
	for _, p := range w.pubs {
		p.halt()
		<-p.done
	}
}

func (w *Worker) stats() *control.Stats {
	s := &control.Stats{
		Delivered: w.delivered.Load(), Created: w.created.Load(), OtherEvents: w.otherEvents.Load(),
		Sent: w.sentCount.Load(), Acked: w.acked.Load(), Open: int(w.open.Load()),
		Latency: w.latency.Snapshot(), AckLatency: w.ackLatency.Snapshot(),
		Errors: map[string]uint64{}, Closes: map[string]uint64{},
		Dups: w.dups.Load(), Gaps: w.gaps.Load(), SessionDups: w.sessionDups.Load(), SessionGaps: w.sessionGaps.Load(),
		ChannelEvents: w.channelEvents.Load(),
	}
	w.mu.Lock()
	for k, v := range w.errors {
		s.Errors[k] = v
	}
	for k, v := range w.closes {
		s.Closes[k] = v
	}
	w.mu.Unlock()
	return s
}

// closeAll stops publishers and closes every link, 256 at a time.
func (w *Worker) closeAll() {
	w.stopPublishers()
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for _, c := range w.conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c.close()
		}()
	}
	wg.Wait()
	w.conns = nil
}
