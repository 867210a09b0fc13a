package main

import (
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
)

// TestClusterCallSurvivesNodeLoss: three users on three nodes hold a call
// (pion peers, Opus-like RTP through the SFU of the node hosting the call
// grain). That node is SIGKILLed: the call ends cleanly for the survivors
// (its media is gone with the node; no participant is left in a room
// that no longer forwards anything), and a new call among the same users
// works on a surviving node.
func TestClusterCallSurvivesNodeLoss(t *testing.T) {
	ctx, nodes, clients, _, g := groupOnCluster(t, "caller", "huddle")
	api, err := client.NewCallAPI(true)
	if err != nil {
		t.Fatal(err)
	}
	opts := client.CallOptions{API: api, SendSilence: true}
	// call starts a call from clients[from] and has the others accept it;
	// it returns once every participant receives the others' audio.
	call := func(from int, cs []*client.Client) map[int]*client.Call {
		t.Helper()
		k, err := cs[from].StartCall(ctx, g.Id, opts)
		if err != nil {
			t.Fatalf("client %d starts a call: %v", from, err)
		}
		calls := map[int]*client.Call{from: k}
		for i, c := range cs {
			if i == from || c == nil {
				continue
			}
			for calls[i] == nil {
				select {
				case inv := <-c.Invitations():
					if inv.CallId != k.ID() {
						continue // a stale invitation of the earlier call
					}
					if calls[i], err = c.AcceptCall(ctx, inv.CallId, opts); err != nil {
						t.Fatalf("client %d accepts: %v", i, err)
					}
				case <-ctx.Done():
					t.Fatalf("client %d: no invitation", i)
				}
			}
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			flowing := true
			for i, k := range calls {
				for j, o := range calls {
					if i != j && k.Received()[o.LocalSSRC()] < 25 {
						flowing = false
					}
				}
			}
			if flowing {
				return calls
			}
			if time.Now().After(deadline) {
				t.Fatal("audio did not flow between the participants")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	calls := call(0, clients)
	host := -1
	for i, n := range nodes {
		if calls[0].Media().GetNode() == n.actor {
			host = i
		}
	}
	if host < 0 {
		t.Fatalf("the call's media node %q is none of the nodes", calls[0].Media().GetNode())
	}
	if err := nodes[host].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	nodes[host].cmd.Wait()
	killed := time.Now()
	for i, k := range calls {
		if i == host {
			continue // its client moves to a survivor with its session
		}
		select {
		case <-k.Done():
			t.Logf("client %d: call ended (%s) %v after its media node %d died", i, k.Reason(), time.Since(killed).Round(time.Millisecond), nodes[host].id)
		case <-time.After(30 * time.Second):
			t.Fatalf("client %d: the call on the dead node %d did not end", i, nodes[host].id)
		}
	}
	// The survivors call again: a new room on a live node.
	var rest []*client.Client
	from := -1
	for i, c := range clients {
		if i == host {
			rest = append(rest, nil)
			continue
		}
		if from < 0 {
			from = i
		}
		rest = append(rest, c)
	}
	again := call(from, rest)
	if again[from].ID() == calls[0].ID() {
		t.Fatal("the new call reused the ended call's id")
	}
}
