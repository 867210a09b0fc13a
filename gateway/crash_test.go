package gateway_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/parley-chat/parley/gateway"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// TestAckedMessagesSurviveCrash runs a real server on Pebble's
// crash-simulating filesystem, takes crash clones (only synced data plus a
// random share of unsynced data survives) while pipelined senders are in
// flight, and checks every message acknowledged before the clone is in it,
// and that a server restarted on the clone never reuses a seq.
func TestAckedMessagesSurviveCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	srv := gatewaytest.Start(t, gatewaytest.Options{DataDir: "/data", AppFS: func(o *gateway.AppOptions) { o.FS = fs }})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, _ := srv.User(t, "alice", "a1")
	bob, _ := srv.User(t, "bob", "b1")
	g, err := alice.CreateGroup(ctx, "crash", bob.UserID())
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	acked := map[int64]string{} // seq -> text, acknowledged to the sender
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, c := range []*struct{ name string }{{"alice"}, {"bob"}} {
		sender := alice
		if w == 1 {
			sender = bob
		}
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				text := fmt.Sprintf("%s-%d", name, i)
				s, err := sender.Send(ctx, g.Id, text)
				if err != nil {
					t.Errorf("send: %v", err)
					return
				}
				mu.Lock()
				if prev, ok := acked[s.Seq]; ok {
					t.Errorf("seq %d acknowledged twice (%q and %q)", s.Seq, prev, text)
				}
				acked[s.Seq] = text
				mu.Unlock()
			}
		}(c.name)
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var clones []*vfs.MemFS
	var ackedAt []map[int64]string
	for i := 0; i < 3; i++ {
		time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
		mu.Lock()
		snap := make(map[int64]string, len(acked))
		for k, v := range acked {
			snap[k] = v
		}
		mu.Unlock()
		clones = append(clones, fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(100), RNG: rng}))
		ackedAt = append(ackedAt, snap)
	}
	close(stop)
	wg.Wait()

	for i, clone := range clones {
		if len(ackedAt[i]) == 0 {
			t.Fatalf("clone %d: nothing was acknowledged before it", i)
		}
		stored := readLog(t, clone, g.Id)
		for seq, text := range ackedAt[i] {
			m, ok := stored[seq]
			if !ok {
				t.Fatalf("clone %d: acknowledged seq %d (%q) lost", i, seq, text)
			}
			if m.Text != text {
				t.Fatalf("clone %d: seq %d holds %q, acknowledged %q", i, seq, m.Text, text)
			}
		}
		t.Logf("clone %d: %d acknowledged, %d stored", i, len(ackedAt[i]), len(stored))
	}

	// Restart on the last clone: the next seq follows the stored log.
	last := clones[len(clones)-1]
	stored := readLog(t, last, g.Id)
	var maxSeq int64
	for s := range stored {
		maxSeq = max(maxSeq, s)
	}
	srv.Stop()
	srv2 := gatewaytest.Start(t, gatewaytest.Options{DataDir: "/data", AppFS: func(o *gateway.AppOptions) { o.FS = last }})
	alice2 := srv2.Dial(t, "a1", "", nil)
	if _, err := alice2.Login(ctx, "alice", "password-alice"); err != nil {
		t.Fatal(err)
	}
	s, err := alice2.Send(ctx, g.Id, "after restart")
	if err != nil {
		t.Fatal(err)
	}
	if s.Seq != maxSeq+1 {
		t.Fatalf("after restart got seq %d, stored log ends at %d", s.Seq, maxSeq)
	}
}

// readLog opens a store on fs and returns conv's log by seq, checking the
// seqs are gap-free from 1.
func readLog(t *testing.T, fs vfs.FS, conv string) map[int64]*pb.Message {
	t.Helper()
	st, err := persistence.Open(persistence.Options{Dir: "/data", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := map[int64]*pb.Message{}
	p := persistence.EntityPrefix(persistence.KindMessage, conv)
	var decErr error
	err = st.Scan(p, persistence.PrefixEnd(p), 0, func(_, v []byte) bool {
		m := &pb.Message{}
		if decErr = proto.Unmarshal(v, m); decErr != nil {
			return false
		}
		out[m.Seq] = m
		return true
	})
	if err != nil || decErr != nil {
		t.Fatal(err, decErr)
	}
	for s := int64(1); s <= int64(len(out)); s++ {
		if _, ok := out[s]; !ok {
			t.Fatalf("gap at seq %d in a log of %d", s, len(out))
		}
	}
	return out
}
