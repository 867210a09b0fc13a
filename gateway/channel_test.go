package gateway_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// typedUser registers username and logs it in from a device of type typ.
func typedUser(t *testing.T, srv *gatewaytest.Server, username, device string, typ pb.DeviceType, opts client.Options) (*client.Client, *pb.LoggedIn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts.URL, opts.Device = srv.URL, &pb.Device{Id: device, Type: typ}
	c, err := client.Dial(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Register(ctx, username, "password-"+username, "Name "+username); err != nil && client.Code(err) != pb.CodeUsernameTaken {
		t.Fatalf("register %s: %v", username, err)
	}
	li, err := c.Login(ctx, username, "password-"+username)
	if err != nil {
		t.Fatalf("login %s: %v", username, err)
	}
	return c, li
}

// channelEvents reads c's events until pred accepts a channel frame; it
// returns the channel messages seen on the way (pred's included).
func channelEvents(t *testing.T, c *client.Client, within time.Duration, pred func(client.Event) bool) []*pb.ChannelMessage {
	t.Helper()
	var msgs []*pb.ChannelMessage
	deadline := time.After(within)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatal("stream closed")
			}
			if ev.ChannelMessage != nil {
				msgs = append(msgs, ev.ChannelMessage)
			}
			if (ev.ChannelMessage != nil || ev.ChannelEvent != nil) && pred(ev) {
				return msgs
			}
		case <-deadline:
			t.Fatalf("channel frame not seen; messages so far: %v", msgs)
		}
	}
}

func isText(text string) func(client.Event) bool {
	return func(ev client.Event) bool { return ev.ChannelMessage != nil && ev.ChannelMessage.Text == text }
}

func isPresence(kind pb.ChannelEventKind, user string) func(client.Event) bool {
	return func(ev client.Event) bool {
		return ev.ChannelEvent != nil && ev.ChannelEvent.Kind == kind && ev.ChannelEvent.UserId == user
	}
}

// noChannelMessage asserts that no channel message arrives for a while.
func noChannelMessage(t *testing.T, c *client.Client, wait time.Duration) {
	t.Helper()
	timer := time.After(wait)
	for {
		select {
		case ev := <-c.Events():
			if ev.ChannelMessage != nil {
				t.Fatalf("unexpected channel message %q", ev.ChannelMessage.Text)
			}
		case <-timer:
			return
		}
	}
}

// TestChannelPresentOnly: a channel message reaches the members present at
// that moment and nobody else; a member whose link drops is absent at
// once, and never sees what was said meanwhile, not even after the
// session is rebuilt (channel frames are not session events).
func TestChannelPresentOnly(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var online atomic.Bool
	online.Store(true)
	dial := func() (net.Conn, error) {
		if !online.Load() {
			return nil, errors.New("network down")
		}
		return net.Dial("tcp", srv.Addr)
	}
	alice, _ := srv.User(t, "alice", "a1")
	bob, _ := typedUser(t, srv, "bob", "b1", pb.DeviceType_DEVICE_TYPE_MOBILE, client.Options{Reconnect: true, Dialer: dial})
	carol, _ := srv.User(t, "carol", "c1")
	dave, _ := srv.User(t, "dave", "d1")

	ch, err := alice.CreateChannel(ctx, "voice room", bob.UserID(), carol.UserID(), dave.UserID())
	if err != nil {
		t.Fatal(err)
	}
	if ch.Level != pb.ChannelLevel_CHANNEL_LEVEL_ADMIN || len(ch.Members) != 4 {
		t.Fatalf("channel %v", ch)
	}
	for _, c := range []*client.Client{alice, bob, carol} {
		if _, err := c.JoinChannel(ctx, ch.Id); err != nil {
			t.Fatal(err)
		}
	}
	// Everyone present saw carol arrive last.
	for _, c := range []*client.Client{alice, bob, carol} {
		channelEvents(t, c, 10*time.Second, isPresence(pb.ChannelEventKind_CHANNEL_EVENT_KIND_PRESENT, carol.UserID()))
	}
	info, err := dave.ChannelInfo(ctx, ch.Id)
	if err != nil || len(info.Present) != 3 || slices.Contains(info.Present, dave.UserID()) {
		t.Fatalf("info %v %v", info, err)
	}

	sent, err := alice.ChannelSend(ctx, ch.Id, "one")
	if err != nil || sent.Recipients != 3 {
		t.Fatalf("send: %v %v", sent, err)
	}
	for _, c := range []*client.Client{alice, bob, carol} {
		if m := channelEvents(t, c, 10*time.Second, isText("one")); len(m) != 1 || m[0].Sender != alice.UserID() {
			t.Fatalf("got %v", m)
		}
	}

	// Bob's link drops and stays down: he is absent at once.
	online.Store(false)
	bob.Drop()
	channelEvents(t, alice, 10*time.Second, isPresence(pb.ChannelEventKind_CHANNEL_EVENT_KIND_ABSENT, bob.UserID()))
	sent, err = alice.ChannelSend(ctx, ch.Id, "while bob is away")
	if err != nil || sent.Recipients != 2 {
		t.Fatalf("send while away: %v %v", sent, err)
	}
	channelEvents(t, carol, 10*time.Second, isText("while bob is away"))

	// Bob comes back: the session is rebuilt (its events replayed), the
	// SDK joins the channel again, and only what is said from then on
	// reaches him.
	sid := bob.Session().SessionId
	online.Store(true)
	channelEvents(t, alice, 20*time.Second, isPresence(pb.ChannelEventKind_CHANNEL_EVENT_KIND_PRESENT, bob.UserID()))
	if s := bob.Session(); s.SessionId != sid || !s.Rebuilt {
		t.Fatalf("session not rebuilt: %v", s)
	}
	if _, err := alice.ChannelSend(ctx, ch.Id, "welcome back"); err != nil {
		t.Fatal(err)
	}
	got := channelEvents(t, bob, 10*time.Second, isText("welcome back"))
	for _, m := range got {
		if m.Text != "one" && m.Text != "welcome back" {
			t.Fatalf("bob saw %q", m.Text)
		}
	}
	noChannelMessage(t, bob, 300*time.Millisecond)
	// Dave, a member who never joined, saw nothing at all.
	noChannelMessage(t, dave, 100*time.Millisecond)

	// Leaving is absence too; a non-member can neither join nor send.
	if _, err := carol.LeaveChannel(ctx, ch.Id); err != nil {
		t.Fatal(err)
	}
	channelEvents(t, alice, 10*time.Second, isPresence(pb.ChannelEventKind_CHANNEL_EVENT_KIND_ABSENT, carol.UserID()))
	eve, _ := srv.User(t, "eve", "e1")
	if _, err := eve.JoinChannel(ctx, ch.Id); client.Code(err) != pb.CodeNotMember {
		t.Fatalf("non-member join: %v", err)
	}
	if _, err := eve.ChannelSend(ctx, ch.Id, "x"); client.Code(err) != pb.CodeNotMember {
		t.Fatalf("non-member send: %v", err)
	}
	// Closing the link (not only dropping it) makes alice absent too.
	alice.Close()
	for {
		info, err := dave.ChannelInfo(ctx, ch.Id)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(info.Present, alice.UserID()) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}
