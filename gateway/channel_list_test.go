package gateway_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/grainpb"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
)

// channelListEvent reads c's events until a channelAdded or channelRemoved
// of channel arrives and returns it (other events are skipped).
func channelListEvent(t *testing.T, c *client.Client, channel string, within time.Duration) *pb.SessionEvent {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatal("stream closed")
			}
			if a := ev.ChannelAdded(); a != nil && a.Id == channel {
				return ev.Session
			}
			if ev.ChannelRemoved() == channel {
				return ev.Session
			}
		case <-deadline:
			t.Fatalf("no channelAdded/channelRemoved for %s", channel)
		}
	}
}

// listed returns the entry of channel in c's listChannels, or nil.
func listed(t *testing.T, ctx context.Context, c *client.Client, channel string) *pb.Channel {
	t.Helper()
	list, err := c.ListChannels(ctx)
	if err != nil {
		t.Fatalf("listChannels: %v", err)
	}
	if !slices.IsSortedFunc(list, func(a, b *pb.Channel) int {
		if a.Id < b.Id {
			return -1
		}
		return 1
	}) {
		t.Fatalf("listChannels not sorted: %v", list)
	}
	for _, ch := range list {
		if ch.Id == channel {
			return ch
		}
	}
	return nil
}

// channelOutbox counts the channel outbox entries on disk.
func channelOutbox(t *testing.T, srv *gatewaytest.Server) int {
	t.Helper()
	n := 0
	for shard := 0; shard < persistence.NumShards; shard++ {
		lo := []byte{byte(shard), byte(persistence.KindChannelOutbox)}
		if err := srv.App.Store.Scan(lo, persistence.PrefixEnd(lo), 0, func(_, _ []byte) bool { n++; return true }); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// TestChannelList: the user's channel list follows every membership change
// (create, level change, removal) as listChannels and as channelAdded /
// channelRemoved session events, which a rebuilt session replays; a notice
// that cannot be delivered (an injected failure, then a restart before it
// is) is delivered after the restart without any request to the channel.
func TestChannelList(t *testing.T) {
	var fail atomic.Bool
	fault := func(rec *grainpb.OutboxRecord) error {
		if rec.Channel != nil && fail.Load() {
			return errors.New("injected: user grain unreachable")
		}
		return nil
	}
	dir := t.TempDir()
	o := gatewaytest.Options{DataDir: dir, Actors: actors.Options{OutboxFault: fault}}
	srv := gatewaytest.Start(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, ali := srv.User(t, "alice", "a1")
	srv.User(t, "bob", "setup")
	bob := dialReconnecting(t, srv, "b-phone")
	_, err := bob.Login(ctx, "bob", "password-bob")
	if err != nil {
		t.Fatal(err)
	}
	sid := bob.Session().SessionId

	// Created with bob: his session learns it and his list shows it.
	room, err := alice.CreateChannel(ctx, "room", bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	ev := channelListEvent(t, bob, room.Id, 10*time.Second)
	if a := ev.GetChannelAdded().GetChannel(); a.Title != "room" || a.Level != pb.ChannelLevel_CHANNEL_LEVEL_MEMBER || ev.Seq == 0 {
		t.Fatalf("channelAdded: %v", ev)
	}
	if ch := listed(t, ctx, bob, room.Id); ch == nil || ch.Title != "room" || ch.Level != pb.ChannelLevel_CHANNEL_LEVEL_MEMBER {
		t.Fatalf("bob's list: %v", ch)
	}
	if ch := listed(t, ctx, alice, room.Id); ch == nil || ch.Level != pb.ChannelLevel_CHANNEL_LEVEL_ADMIN {
		t.Fatalf("alice's list: %v", ch)
	}

	// Added while bob is cut: the rebuilt session delivers channelAdded.
	bob.Drop()
	cut, err := alice.CreateChannel(ctx, "while cut", bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	channelListEvent(t, bob, cut.Id, 20*time.Second)
	if s := bob.Session(); s.SessionId != sid || !s.Rebuilt {
		t.Fatalf("session not rebuilt: %v (was %s)", s, sid)
	}
	if listed(t, ctx, bob, cut.Id) == nil {
		t.Fatal("channel added while cut is not listed")
	}

	// A level change: bob's session learns his new level, and the present
	// links of the channel get a MEMBER event.
	if _, err := alice.JoinChannel(ctx, room.Id); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddChannelMembers(ctx, room.Id, pb.ChannelLevel_CHANNEL_LEVEL_ADMIN, bob.UserID()); err != nil {
		t.Fatal(err)
	}
	channelEvents(t, alice, 10*time.Second, func(e client.Event) bool {
		c := e.ChannelEvent
		return c != nil && c.Kind == pb.ChannelEventKind_CHANNEL_EVENT_KIND_MEMBER && c.UserId == bob.UserID() && c.Level == pb.ChannelLevel_CHANNEL_LEVEL_ADMIN
	})
	if a := channelListEvent(t, bob, room.Id, 10*time.Second).GetChannelAdded().GetChannel(); a.GetLevel() != pb.ChannelLevel_CHANNEL_LEVEL_ADMIN {
		t.Fatalf("level change: %v", a)
	}
	if ch := listed(t, ctx, bob, room.Id); ch.GetLevel() != pb.ChannelLevel_CHANNEL_LEVEL_ADMIN {
		t.Fatalf("bob's level: %v", ch)
	}

	// Removal: channelRemoved, and the list drops it.
	if _, err := alice.RemoveChannelMember(ctx, cut.Id, bob.UserID()); err != nil {
		t.Fatal(err)
	}
	if ev := channelListEvent(t, bob, cut.Id, 10*time.Second); ev.GetChannelRemoved() == nil {
		t.Fatalf("want channelRemoved, got %v", ev)
	}
	if ch := listed(t, ctx, bob, cut.Id); ch != nil {
		t.Fatalf("removed channel still listed: %v", ch)
	}

	// The dispatch fails: the membership is committed, the notice waits in
	// the channel's outbox; the server stops before it is delivered.
	fail.Store(true)
	late, err := alice.CreateChannel(ctx, "late", bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if listed(t, ctx, bob, late.Id) != nil {
		t.Fatal("listed although the notice failed")
	}
	if n := channelOutbox(t, srv); n == 0 {
		t.Fatal("no pending outbox entry")
	}
	bob.Close()
	srv.Stop()
	fail.Store(false)

	// After the restart the node wakes the channel and the notice lands:
	// a fresh device of bob lists the channel, no channel request needed.
	srv = gatewaytest.Start(t, o)
	phone := srv.Dial(t, "b-tablet", "", nil)
	if _, err := phone.Login(ctx, "bob", "password-bob"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for listed(t, ctx, phone, late.Id) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the notice was not delivered after the restart")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for channelOutbox(t, srv) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the outbox was not emptied")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ch := listed(t, ctx, phone, room.Id); ch.GetLevel() != pb.ChannelLevel_CHANNEL_LEVEL_ADMIN {
		t.Fatalf("room after restart: %v", ch)
	}
	if listed(t, ctx, phone, cut.Id) != nil {
		t.Fatal("removed channel listed after restart")
	}
	alice = srv.Dial(t, "a1", ali.Token, nil)
	if ch := listed(t, ctx, alice, late.Id); ch.GetLevel() != pb.ChannelLevel_CHANNEL_LEVEL_ADMIN {
		t.Fatalf("alice's late channel: %v", ch)
	}
}
