package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// TestChaosRebuild: 50 clients reach a real server process through a proxy
// that cuts links at random points (mid-frame too) while 10,000 messages and
// membership session events flow, and the server is restarted three times
// (once by SIGKILL). Every client must end with every message of its groups
// exactly once and in order, and the proxy's frame log must show that the
// server never wrote a message twice on one link, nor one at or below the
// cursor the client resumed from. PARLEY_CHAOS_SEED replays a run.
func TestChaosRebuild(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PARLEY_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (PARLEY_CHAOS_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	const users, groupSize, perSender = 50, 5, 1000 // 10 groups x 1000 = 10,000 messages

	dir, addr := t.TempDir(), freeAddr(t)
	srv := startChild(t, addr, dir)
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
	proxy := newChaosProxy(t, addr, seed)
	url := "ws://" + proxy.ln.Addr().String() + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	clients := make([]*client.Client, users)
	recv := make([]*receiver, users)
	for i := range clients {
		c, err := client.Dial(ctx, client.Options{URL: url, Device: &pb.Device{Id: fmt.Sprintf("dev%d", i)}, Reconnect: true, Timeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		name := fmt.Sprintf("user%02d", i)
		if _, err := c.Register(ctx, name, "password-"+name, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Login(ctx, name, "password-"+name); err != nil {
			t.Fatal(err)
		}
		clients[i] = c
		recv[i] = newReceiver(t, c)
	}
	groups := make([]string, users/groupSize)
	for g := range groups {
		var members []string
		for k := 1; k < groupSize; k++ {
			members = append(members, clients[g*groupSize+k].UserID())
		}
		conv, err := clients[g*groupSize].CreateGroup(ctx, fmt.Sprintf("g%d", g), members...)
		if err != nil {
			t.Fatal(err)
		}
		groups[g] = conv.Id
	}

	// Senders: one per group, pipelining nothing, retrying through cuts
	// and restarts with the same client id.
	var sent sync.WaitGroup
	var progress atomicCounter
	for g := range groups {
		sent.Add(1)
		go func(g int) {
			defer sent.Done()
			c := clients[g*groupSize+1]
			for i := 0; i < perSender; i++ {
				if _, err := c.SendMessage(ctx, &pb.Send{ConversationId: groups[g], Text: fmt.Sprintf("g%d-%d", g, i), ClientId: fmt.Sprintf("g%d-%d", g, i)}); err != nil {
					t.Errorf("group %d send %d: %v", g, i, err)
					return
				}
				progress.add(1)
			}
		}(g)
	}
	// Membership session events: new groups created during the run.
	extra := make(chan [2]string, 64) // conv, member index
	var joins sync.WaitGroup
	joins.Add(1)
	joinRng := rand.New(rand.NewPCG(seed, 2))
	go func() {
		defer joins.Done()
		defer close(extra)
		for i := 0; i < 10; i++ {
			m := 1 + joinRng.IntN(users-1)
			conv, err := clients[0].CreateGroup(ctx, fmt.Sprintf("extra%d", i), clients[m].UserID())
			if err != nil {
				t.Errorf("extra group: %v", err)
				return
			}
			if _, err := clients[0].SendMessage(ctx, &pb.Send{ConversationId: conv.Id, Text: "welcome", ClientId: "w" + conv.Id}); err != nil {
				t.Errorf("extra send: %v", err)
				return
			}
			extra <- [2]string{conv.Id, strconv.Itoa(m)}
			time.Sleep(time.Duration(100+joinRng.IntN(300)) * time.Millisecond)
		}
	}()
	// Chaos: cuts all along, restarts at 25%, 50% (SIGKILL) and 75%.
	stopCuts := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopCuts:
				return
			case <-time.After(time.Duration(10+rng.IntN(40)) * time.Millisecond):
				proxy.cutRandom()
			}
		}
	}()
	total := int64(len(groups) * perSender)
	for _, r := range []struct {
		at  int64
		sig syscall.Signal
	}{{total / 4, syscall.SIGTERM}, {total / 2, syscall.SIGKILL}, {3 * total / 4, syscall.SIGTERM}} {
		for progress.get() < r.at {
			if ctx.Err() != nil {
				t.Fatalf("stuck at %d of %d messages", progress.get(), total)
			}
			time.Sleep(20 * time.Millisecond)
		}
		srv.Process.Signal(r.sig)
		srv.Wait()
		t.Logf("restarted (%v) at %d messages", r.sig, progress.get())
		srv = startChild(t, addr, dir)
	}
	sent.Wait()
	joins.Wait()
	close(stopCuts)
	if t.Failed() {
		return
	}

	// Every member of every group gets all of its messages once, in order.
	for g, conv := range groups {
		for k := 0; k < groupSize; k++ {
			recv[g*groupSize+k].waitTexts(t, ctx, conv, perSender)
		}
	}
	for e := range extra {
		m, _ := strconv.Atoi(e[1])
		recv[m].waitTexts(t, ctx, e[0], 1)
	}
	for i, r := range recv {
		r.check(t, i)
	}
	proxy.check(t)
	t.Logf("%d links cut, %d proxied links", proxy.cuts.Load(), len(proxy.conns))
}

type atomicCounter struct {
	mu sync.Mutex
	n  int64
}

func (a *atomicCounter) add(d int64) { a.mu.Lock(); a.n += d; a.mu.Unlock() }
func (a *atomicCounter) get() int64  { a.mu.Lock(); defer a.mu.Unlock(); return a.n }

// receiver records a client's event stream and checks it is gap-free and
// duplicate-free per conversation.
type receiver struct {
	mu      sync.Mutex
	last    map[string]int64
	texts   map[string]map[string]int
	errs    []string
	changed chan struct{}
}

func newReceiver(t *testing.T, c *client.Client) *receiver {
	r := &receiver{last: map[string]int64{}, texts: map[string]map[string]int{}, changed: make(chan struct{}, 1)}
	go func() {
		for ev := range c.Events() {
			m := ev.Message
			if m == nil {
				continue
			}
			r.mu.Lock()
			if m.Seq != r.last[m.ConversationId]+1 {
				r.errs = append(r.errs, fmt.Sprintf("%s: seq %d after %d", m.ConversationId, m.Seq, r.last[m.ConversationId]))
			}
			r.last[m.ConversationId] = m.Seq
			if m.Kind == pb.MessageKind_MESSAGE_KIND_TEXT {
				if r.texts[m.ConversationId] == nil {
					r.texts[m.ConversationId] = map[string]int{}
				}
				r.texts[m.ConversationId][m.Text]++
			}
			r.mu.Unlock()
			select {
			case r.changed <- struct{}{}:
			default:
			}
		}
	}()
	return r
}

func (r *receiver) waitTexts(t *testing.T, ctx context.Context, conv string, n int) {
	t.Helper()
	for {
		r.mu.Lock()
		got := len(r.texts[conv])
		r.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			r.mu.Lock()
			last := r.last[conv]
			r.mu.Unlock()
			t.Fatalf("%s: %d of %d messages (stream at seq %d)", conv, got, n, last)
		}
	}
}

func (r *receiver) check(t *testing.T, i int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		t.Errorf("client %d: %s", i, e)
	}
	for conv, texts := range r.texts {
		for text, n := range texts {
			if n != 1 {
				t.Errorf("client %d: %s %q delivered %d times", i, conv, text, n)
			}
		}
	}
}

// check asserts the server wrote no message twice on any link, and none at
// or below the cursor the client gave in its hello.
func (p *chaosProxy) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	rebuilt := 0
	for n, pc := range p.conns {
		pc.mu.Lock()
		if pc.rebuilt {
			rebuilt++
		}
		for conv, seqs := range pc.messages {
			floor := pc.cursors[conv]
			for _, s := range seqs {
				if s <= floor {
					t.Errorf("link %d: %s seq %d written again (at or below the cursor %d, rebuilt=%v)", n, conv, s, floor, pc.rebuilt)
				}
				floor = s
			}
		}
		for i := 1; i < len(pc.sessionSeqs); i++ {
			if pc.sessionSeqs[i] <= pc.sessionSeqs[i-1] {
				t.Errorf("link %d: session event %d written after %d", n, pc.sessionSeqs[i], pc.sessionSeqs[i-1])
			}
		}
		pc.mu.Unlock()
	}
	if rebuilt == 0 {
		t.Error("no link was rebuilt: the test did not exercise rebuild")
	}
	t.Logf("%d links rebuilt", rebuilt)
}
