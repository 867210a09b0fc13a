package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// sessionEvent waits for the next session event of c.
func sessionEvent(t *testing.T, c *client.Client, within time.Duration) *pb.SessionEvent {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatal("stream closed")
			}
			if ev.Session != nil {
				return ev.Session
			}
		case <-deadline:
			t.Fatal("no session event")
		}
	}
}

// TestIdleGrainsPassivate: the User and Session grains of online users are
// stopped when idle; the next request re-activates them from the store,
// and a session re-activated while its link is open still sends its
// events to that link, in order, and can still be rebuilt after a cut.
func TestIdleGrainsPassivate(t *testing.T) {
	const idle = 20 * time.Millisecond
	srv := gatewaytest.Start(t, gatewaytest.Options{Actors: actors.Options{GrainIdle: idle}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob, _ := srv.User(t, "bob", "b1")
	srv.User(t, "alice", "setup")
	alice := dialReconnecting(t, srv, "a-phone")
	if _, err := alice.Login(ctx, "alice", "password-alice"); err != nil {
		t.Fatal(err)
	}
	sid := alice.Session().SessionId
	// settle waits until every User and Session grain is stopped.
	settle := func() {
		t.Helper()
		for start := time.Now(); ; time.Sleep(idle) {
			u := srv.App.Node.Cluster.GetClusterKind(actors.KindUser).Count()
			s := srv.App.Node.Cluster.GetClusterKind(actors.KindSession).Count()
			// /metrics shows the same counts (parley_grains).
			mu := metric(t, srv.Addr, `parley_grains{kind="User"}`)
			ms := metric(t, srv.Addr, `parley_grains{kind="Session"}`)
			if u == 0 && s == 0 && mu == 0 && ms == 0 {
				return
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("still activated: %d User, %d Session grains (parley_grains: %v, %v)", u, s, mu, ms)
			}
		}
	}

	var groups []string
	for i := range 3 {
		settle()
		g, err := bob.CreateGroup(ctx, "g", alice.UserID())
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g.Id)
		ev := sessionEvent(t, alice, 10*time.Second)
		if j := ev.GetConversationJoined(); j == nil || j.Conversation.Id != g.Id || ev.Seq != int64(i+1) {
			t.Fatalf("event %d: %v", i+1, ev)
		}
		settle()
		if _, err := bob.Send(ctx, g.Id, "hi"); err != nil {
			t.Fatal(err)
		}
		collect(t, alice, g.Id, 1, 10*time.Second)
	}
	// Each event and each ack above found the session grain stopped.
	if a := metric(t, srv.Addr, `parley_grain_activations_total{kind="Session"}`); a < 3 {
		t.Fatalf("parley_grain_activations_total{kind=\"Session\"} = %v after 3 re-activations", a)
	}
	settle()
	list, err := alice.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_ListConversations{ListConversations: &pb.ListConversations{}}})
	if err != nil || len(list.GetConversationList().GetConversations()) != len(groups) {
		t.Fatalf("list: %v %v", list, err)
	}

	// Cut while the session grain is stopped: it is re-activated by the
	// cut, and the client rebuilds the same session.
	settle()
	alice.Drop()
	settle()
	g, err := bob.CreateGroup(ctx, "while cut", alice.UserID())
	if err != nil {
		t.Fatal(err)
	}
	if ev := sessionEvent(t, alice, 20*time.Second); ev.GetConversationJoined().GetConversation().GetId() != g.Id || ev.Seq != 4 {
		t.Fatalf("event after rebuild: %v", ev)
	}
	// The replayed event may arrive before the hello reply that ends the
	// rebuild.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s := alice.Session()
		if s.SessionId == sid && s.Rebuilt {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session not rebuilt: %v (was %s)", s, sid)
		}
	}
}
