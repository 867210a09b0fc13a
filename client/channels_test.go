package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// The SDK's channel list: a member added to a channel sees it in
// ListChannels and gets ChannelAdded in the event stream; removed, the
// list drops it and ChannelRemoved arrives.
func TestSDKChannelList(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, bob := p2spUser(t, srv, "alice", false), p2spUser(t, srv, "bob", false)

	ch, err := alice.CreateChannel(ctx, "Standup", bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	if e := nextChannelEvent(t, ctx, bob); e.ChannelAdded().GetId() != ch.Id || e.ChannelAdded().GetTitle() != "Standup" {
		t.Fatalf("first channel event: %v", e.Session)
	}
	list, err := bob.ListChannels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Id != ch.Id || list[0].Level != pb.ChannelLevel_CHANNEL_LEVEL_MEMBER {
		t.Fatalf("bob's channels: %v", list)
	}

	if _, err := alice.RemoveChannelMember(ctx, ch.Id, bob.UserID()); err != nil {
		t.Fatal(err)
	}
	if e := nextChannelEvent(t, ctx, bob); e.ChannelRemoved() != ch.Id {
		t.Fatalf("second channel event: %v", e.Session)
	}
	if list, err = bob.ListChannels(ctx); err != nil || len(list) != 0 {
		t.Fatalf("bob's channels after removal: %v, %v", list, err)
	}
}

// nextChannelEvent skips other events until a channel list event.
func nextChannelEvent(t *testing.T, ctx context.Context, c *client.Client) client.Event {
	t.Helper()
	for {
		select {
		case e, ok := <-c.Events():
			if !ok {
				t.Fatal("event stream closed")
			}
			if e.ChannelAdded() != nil || e.ChannelRemoved() != "" {
				return e
			}
		case <-ctx.Done():
			t.Fatal("no channel event")
		}
	}
}
