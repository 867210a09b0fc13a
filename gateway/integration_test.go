package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// collect reads text messages of conv from c until want arrived or the
// deadline passes; it fails on any duplicate or out-of-order seq.
func collect(t *testing.T, c *client.Client, conv string, want int, within time.Duration) []*pb.Message {
	t.Helper()
	var got []*pb.Message
	last := int64(0)
	deadline := time.After(within)
	for len(got) < want {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("stream closed after %d of %d", len(got), want)
			}
			m := ev.Message
			if m == nil || m.ConversationId != conv {
				continue
			}
			if m.Seq <= last {
				t.Fatalf("seq %d after %d: duplicate or reordered", m.Seq, last)
			}
			last = m.Seq
			if m.Kind == pb.MessageKind_MESSAGE_KIND_TEXT {
				got = append(got, m)
			}
		case <-deadline:
			t.Fatalf("got %d of %d messages", len(got), want)
		}
	}
	return got
}

// noMore asserts that no further text message of conv arrives for a while.
func noMore(t *testing.T, c *client.Client, conv string, wait time.Duration) {
	t.Helper()
	timer := time.After(wait)
	for {
		select {
		case ev := <-c.Events():
			if m := ev.Message; m != nil && m.ConversationId == conv && m.Kind == pb.MessageKind_MESSAGE_KIND_TEXT {
				t.Fatalf("unexpected extra message seq %d %q", m.Seq, m.Text)
			}
		case <-timer:
			return
		}
	}
}

func TestGroupOfflineCatchUpExactlyOnce(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	alice, _ := srv.User(t, "alice", "alice-laptop")
	alice2, aliceLogin := srv.User(t, "alice", "alice-phone")
	bob, _ := srv.User(t, "bob", "bob-laptop")
	carol, carolLogin := srv.User(t, "carol", "carol-laptop")
	carolToken := carolLogin.Token

	g, err := alice.CreateGroup(ctx, "team", bob.UserID(), carol.UserID())
	if err != nil {
		t.Fatal(err)
	}
	if g.Kind != pb.ConversationKind_CONVERSATION_KIND_GROUP || aliceLogin.Session.UserId != alice.UserID() {
		t.Fatalf("unexpected group %v", g)
	}
	// Carol reads the group's first entries live, then goes offline.
	if _, err := bob.Send(ctx, g.Id, "before"); err != nil {
		t.Fatal(err)
	}
	collect(t, carol, g.Id, 1, 10*time.Second)
	carolCursor := carol.Cursors()
	carol.Close()
	<-carol.Done()

	const n = 100
	for i := 0; i < n; i++ {
		sender := []*client.Client{alice, alice2, bob}[i%3]
		if _, err := sender.Send(ctx, g.Id, fmt.Sprintf("m%03d", i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	for name, c := range map[string]*client.Client{"alice-laptop": alice, "alice-phone": alice2, "bob": bob} {
		got := collect(t, c, g.Id, n+1, 20*time.Second)
		for i, m := range got[1:] {
			if m.Text != fmt.Sprintf("m%03d", i) {
				t.Fatalf("%s: message %d is %q", name, i, m.Text)
			}
		}
		noMore(t, c, g.Id, 200*time.Millisecond)
	}

	// Carol returns on the same device with her token and cursor.
	carolBack := srv.Dial(t, "carol-laptop", carolToken, carolCursor)
	got := collect(t, carolBack, g.Id, n, 20*time.Second)
	for i, m := range got {
		if m.Text != fmt.Sprintf("m%03d", i) {
			t.Fatalf("carol: message %d is %q", i, m.Text)
		}
	}
	noMore(t, carolBack, g.Id, 300*time.Millisecond)

	// A retransmitted send is answered with the original seq.
	first, err := bob.SendMessage(ctx, &pb.Send{ConversationId: g.Id, Text: "once", ClientId: "fixed-1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := bob.SendMessage(ctx, &pb.Send{ConversationId: g.Id, Text: "once", ClientId: "fixed-1"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Seq != first.Seq || !again.Duplicate || first.Duplicate {
		t.Fatalf("retransmission: first %v again %v", first, again)
	}
	collect(t, carolBack, g.Id, 1, 10*time.Second)
	noMore(t, carolBack, g.Id, 300*time.Millisecond)
}

func TestDirectConversation(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, _ := srv.User(t, "alice", "a1")
	bob, _ := srv.User(t, "bob", "b1")
	d, err := alice.OpenDirect(ctx, bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	d2, err := bob.OpenDirect(ctx, alice.UserID())
	if err != nil {
		t.Fatal(err)
	}
	if d.Id != d2.Id || d.Kind != pb.ConversationKind_CONVERSATION_KIND_DIRECT {
		t.Fatalf("direct ids differ: %s vs %s", d.Id, d2.Id)
	}
	if _, err := alice.Send(ctx, d.Id, "hi bob"); err != nil {
		t.Fatal(err)
	}
	got := collect(t, bob, d.Id, 1, 10*time.Second)
	if got[0].Text != "hi bob" || got[0].Sender != alice.UserID() {
		t.Fatalf("bob got %v", got[0])
	}
	_, err = alice.AddMembers(ctx, d.Id, alice.UserID())
	if client.Code(err) != pb.CodeForbidden {
		t.Fatalf("adding to a direct conversation: %v", err)
	}
}
